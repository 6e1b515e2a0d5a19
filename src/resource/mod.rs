//! The resource-server side of each workspace's MCP endpoint: protected resource metadata
//! (RFC 9728), bearer authentication (our JWTs and machine tokens), audience and scope checks,
//! and the `WWW-Authenticate` challenges MCP clients act on.

pub mod bearer;
pub mod challenge;
pub mod metadata;
pub mod origin;
pub mod required;

pub use bearer::{Principal, authenticate};
pub use challenge::Refusal;
