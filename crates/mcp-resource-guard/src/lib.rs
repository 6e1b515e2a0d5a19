//! Make any Rust MCP server an OAuth 2.1 resource server with one tower layer.
//!
//! [`ResourceGuard`] serves the RFC 9728 protected resource metadata, takes the bearer token
//! from the `Authorization` header (never from the query string), validates it with a
//! [`TokenValidator`] — [`IssuerValidator`] checks JWTs against an external issuer's JWKS found
//! through its RFC 8414 / OpenID discovery document, or opaque tokens by RFC 7662
//! introspection — enforces the scope each JSON-RPC method needs, answers refusals with the
//! `WWW-Authenticate` challenges MCP clients act on, and hands the verified token to handlers
//! as a request extension.
//!
//! ```no_run
//! use mcp_resource_guard::{IssuerConfig, IssuerValidator, ResourceGuard};
//! # async fn run(mcp_service: axum::Router) {
//! let resource = "https://mcp.example.com/mcp";
//! let validator = IssuerValidator::new(IssuerConfig::new("https://login.example.com/", resource)).unwrap();
//! let app: axum::Router = axum::Router::new()
//!     .nest_service("/mcp", mcp_service)
//!     .layer(ResourceGuard::new(resource, "https://login.example.com/", validator).layer());
//! # }
//! ```
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::await_holding_lock)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod bearer;
pub mod challenge;
pub mod clock;
pub mod discovery;
pub mod introspect;
pub mod issuer;
pub mod jwks;
pub mod layer;
pub mod metadata;
pub mod origin;
pub mod scopes;
pub mod validator;

pub use challenge::{ChallengeContext, Refusal};
pub use clock::{Clock, SystemClock};
pub use issuer::{IssuerConfig, IssuerError, IssuerValidator, ScopeMap};
pub use layer::{ResourceGuard, ResourceGuardLayer, ResourceGuardService};
pub use metadata::{ProtectedResourceMetadata, metadata_url};
pub use validator::{GrantedScopes, TokenValidator, VerifiedToken};
