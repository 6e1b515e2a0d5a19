//! What validates a bearer token, and what a handler learns about a valid one.

use std::collections::BTreeSet;
use std::future::Future;

use serde_json::{Map, Value};

use crate::challenge::Refusal;

/// Checks one bearer token. [`crate::IssuerValidator`] is the one for an external
/// authorization server; a server with tokens of its own implements this trait.
pub trait TokenValidator: Send + Sync {
    /// Handed to handlers as a request extension.
    type Verified: GrantedScopes + Clone + Send + Sync + 'static;

    fn validate(&self, token: &str) -> impl Future<Output = Result<Self::Verified, Refusal>> + Send;
}

/// The resource scopes a verified token grants, for the per-method scope check.
pub trait GrantedScopes {
    fn granted_scopes(&self) -> impl Iterator<Item = &str>;
}

/// A token that passed every check: issued by the trusted issuer, for this resource, not
/// expired. Handlers find it in the request extensions (with rmcp: in the `http::request::Parts`
/// inside `RequestContext::extensions`).
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedToken {
    pub issuer: String,
    /// `sub`: who the token acts for.
    pub subject: String,
    /// `client_id` (RFC 9068), else `azp` (OpenID, Keycloak, Entra) or `cid` (Okta).
    pub client_id: Option<String>,
    /// The resource's scopes, after the issuer's scopes or roles were mapped.
    pub scopes: BTreeSet<String>,
    pub expires_at: i64,
    /// Every claim of the token (or of the introspection answer), for checks of your own.
    pub claims: Map<String, Value>,
}

impl GrantedScopes for VerifiedToken {
    fn granted_scopes(&self) -> impl Iterator<Item = &str> {
        self.scopes.iter().map(String::as_str)
    }
}

impl VerifiedToken {
    pub fn has_scope(&self, scope: &str) -> bool {
        crate::scopes::covers(self.granted_scopes(), scope)
    }
}
