//! The authorization server: metadata, registration (dynamic, by metadata document, or by an
//! operator), authorization, tokens, revocation, introspection, and machine tokens.

pub mod authorize;
pub mod cimd;
pub mod client_auth;
pub mod error;
pub mod introspect;
pub mod issue;
pub mod machine;
pub mod metadata;
pub mod params;
pub mod preregistered;
pub mod redirect;
pub mod register;
pub mod revoke;
pub mod scope;
pub mod token;
pub mod usage;

/// Authorization codes live this long (seconds).
pub const CODE_TTL_SECS: i64 = 60;
/// A refresh token presented again within this many seconds of its use (a retried request)
/// is refused without revoking its family.
pub const REFRESH_REUSE_GRACE_SECS: i64 = 2;
