//! The credential vault: the gateway is itself an OAuth client of upstream services, and holds
//! the credentials it signs in with, sealed at rest, never shown to the MCP client.
//!
//! An upstream signs in in one of four ways ([`SignIn`]):
//! - not at all;
//! - with static secret headers (API keys): sealed in `upstreams.headers` by the registry and
//!   sent on every request, the same for everyone;
//! - OAuth `client_credentials`: one token shared by the workspace (owner [`Owner::Workspace`]);
//! - OAuth authorization code with PKCE: each person connects their own account and the
//!   gateway uses *their* token for *their* requests (owner [`Owner::Person`]).
//!
//! Tokens are refreshed at 80 % of their lifetime ([`schedule`]), rotated refresh tokens are
//! kept, transient failures back off exponentially, and `invalid_grant` (or three failures in a
//! row) marks the connection as needing a reconnection, with an audit event.

pub mod bearer;
pub mod connect;
pub mod credential;
pub mod document;
pub mod headless;
pub mod mcp_oauth;
pub mod rotate;
pub mod schedule;
pub mod token_endpoint;
pub mod tokens;

pub use credential::{AuthMethod, GrantKind, OAuthCredential, SignIn};
pub use tokens::{TokenStatus, Vault};

use crate::crypto::CryptoError;
use crate::store::StoreError;

/// Where Gatehouse publishes its own Client ID Metadata Document, under its public URL.
pub const CLIENT_DOCUMENT_PATH: &str = "/oauth/upstream/client.json";
/// Where upstream authorization servers send people back to.
pub const CALLBACK_PATH: &str = "/oauth/upstream/callback";

/// Whose token: the workspace's (shared, client_credentials) or one person's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner<'a> {
    Workspace,
    Person(&'a str),
}

impl Owner<'_> {
    /// The `upstream_tokens.owner` column.
    pub fn key(&self) -> &str {
        match self {
            Owner::Workspace => crate::store::WORKSPACE_OWNER,
            Owner::Person(user_id) => user_id,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The person has not connected their account for this upstream.
    #[error("you have not connected your account for this upstream yet")]
    NotConnected,
    /// The upstream refused the stored grant (revoked, expired) or kept failing: only a new
    /// connection helps.
    #[error("the connection to this upstream must be renewed: {0}")]
    NeedsReconnect(String),
    /// The upstream's authorization server could not be reached or answered with an error
    /// that may pass; retried later.
    #[error("the upstream's authorization server is unavailable: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}
