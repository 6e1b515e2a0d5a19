//! The MCP gateway: the Streamable HTTP endpoint at `/t/{workspace}/mcp`, upstream sessions
//! (HTTP, stdio, and the built-in demo server) and their aggregation.
//!
//! rmcp (the official Rust MCP SDK) is used only inside this module, so that its frequent major
//! releases touch one place.

pub mod admission;
pub mod aggregate;
pub mod demo;
pub mod direct;
pub mod endpoint;
pub mod listed;
pub mod probe;
pub mod registry;
pub mod sessions;
pub mod upstream;
pub mod workspaces;
