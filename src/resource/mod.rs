//! The resource-server side of each workspace's MCP endpoint: protected resource metadata
//! (RFC 9728), bearer authentication (our JWTs and machine tokens, or an external issuer's
//! tokens), audience and scope checks, and the `WWW-Authenticate` challenges MCP clients act
//! on. The generic parts live in the `mcp-resource-guard` crate, which any Rust MCP server
//! can use; what is Gatehouse's own (its keys, grants, machine tokens, workspaces) is here.

pub mod bearer;
pub mod confirmed;
pub mod external;
pub mod metadata;

pub use bearer::{Principal, authenticate};
pub use mcp_resource_guard::challenge::{self, Refusal};
pub use mcp_resource_guard::{origin, scopes as required};
