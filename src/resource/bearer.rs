//! Bearer authentication at a workspace's MCP endpoint: our RFC 9068 JWTs (signature cached
//! in memory, audience checked, grant checked so revocation is immediate), machine tokens,
//! and, for a workspace that trusts an external issuer, that issuer's tokens (checked by
//! `mcp-resource-guard`). Tokens in query strings are refused outright (they end up in logs
//! and histories).

use axum::http::HeaderMap;
use mcp_resource_guard::bearer::bearer_token;
use mcp_resource_guard::{GrantedScopes, TokenValidator, VerifiedToken};

use super::challenge::Refusal;
use super::external;
use crate::app::AppState;
use crate::crypto::signing::VerifyError;
use crate::crypto::{SecretKind, hash_secret};
use crate::oauth::scope::ScopeSet;
use crate::store::{WorkspaceIssuerRow, WorkspaceRow};

/// How the caller authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    AccessToken {
        grant_id: Option<String>,
        jti: String,
    },
    MachineToken {
        id: String,
    },
    /// A token of the external issuer the workspace trusts.
    External {
        issuer: String,
    },
}

/// Who is calling, on whose behalf, with what rights. Passed to upstreams as identity,
/// never as the token itself.
#[derive(Debug, Clone)]
pub struct Principal {
    pub subject: String,
    pub client_id: String,
    pub workspace_id: String,
    pub workspace_slug: String,
    pub scope: ScopeSet,
    pub credential: Credential,
}

pub const NO_SUCH_WORKSPACE: &str = "no such workspace: check the MCP URL (it looks like /t/<workspace>/mcp)";

impl GrantedScopes for Principal {
    fn granted_scopes(&self) -> impl Iterator<Item = &str> {
        self.scope.iter()
    }
}

/// The tokens one workspace accepts, as the guard crate's validator: machine tokens always;
/// then either our own access tokens or, if the workspace trusts one, the external issuer's.
pub struct WorkspaceTokens<'a> {
    pub state: &'a AppState,
    pub ws: &'a WorkspaceRow,
    /// The external issuer the workspace trusts, if any.
    pub trusted: Option<&'a WorkspaceIssuerRow>,
}

impl TokenValidator for WorkspaceTokens<'_> {
    type Verified = Principal;

    async fn validate(&self, token: &str) -> Result<Principal, Refusal> {
        let (state, ws) = (self.state, self.ws);
        if token.starts_with(SecretKind::MachineToken.prefix()) {
            return machine_token(state, token, ws).await;
        }
        match self.trusted {
            None => access_token(state, token, ws).await,
            Some(row) => {
                let validator = state.external_issuers.validator(state, ws, row)?;
                let verified = validator.validate(token).await?;
                Ok(external_principal(ws, verified))
            }
        }
    }
}

/// Checks the request's bearer token for the workspace `ws`.
pub async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    query: Option<&str>,
    ws: &WorkspaceRow,
    trusted: Option<&WorkspaceIssuerRow>,
) -> Result<Principal, Refusal> {
    WorkspaceTokens { state, ws, trusted }.validate(bearer_token(headers, query)?).await
}

/// An external issuer's subject, under the workspace's scopes (other provider scopes such as
/// `openid` are not this workspace's to grant).
fn external_principal(ws: &WorkspaceRow, verified: VerifiedToken) -> Principal {
    let scope = verified
        .scopes
        .iter()
        .filter(|s| crate::oauth::scope::KNOWN_SCOPES.iter().any(|(k, _)| k == s))
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(" ");
    Principal {
        subject: verified.subject,
        client_id: verified.client_id.unwrap_or_else(|| external::UNNAMED_CLIENT.to_owned()),
        workspace_id: ws.id.clone(),
        workspace_slug: ws.slug.clone(),
        scope: ScopeSet::from_stored(&scope),
        credential: Credential::External { issuer: verified.issuer },
    }
}

/// A failed database read while checking a token: logged (the client learns nothing of the
/// database), and answered as a token that could not be checked, so the client retries.
pub fn lookup_failed(what: &'static str) -> impl FnOnce(crate::store::StoreError) -> Refusal {
    move |e| {
        tracing::error!(error = %e, "{what}");
        Refusal::InvalidToken("the token could not be checked; retry".into())
    }
}

fn wrong_audience() -> Refusal {
    Refusal::InvalidToken(
        "audience does not match: this token was issued for another workspace; authorize again".into(),
    )
}

async fn access_token(state: &AppState, token: &str, ws: &WorkspaceRow) -> Result<Principal, Refusal> {
    let now = state.clock.now();
    let claims = state.verified_tokens.verify(&state.keys, token, &state.settings.public_url, now).map_err(|e| {
        Refusal::InvalidToken(match e {
            VerifyError::Expired => "the access token has expired; refresh it".into(),
            other => other.to_string(),
        })
    })?;
    // RFC 8707 / 9068: the audience must be exactly this workspace's MCP URL.
    if claims.aud != state.mcp_url(&ws.slug) {
        return Err(wrong_audience());
    }
    let claims = std::sync::Arc::unwrap_or_clone(claims);
    let version = ws.revocations_version;
    if let Some(gid) = &claims.gid {
        if state.confirmed.grants.get(gid, &ws.id, version).is_none() {
            let grant = state.store.grant_by_id(gid).await.map_err(lookup_failed("grant lookup failed"))?;
            match grant {
                Some(g) if g.revoked_at.is_none() && g.workspace_id == ws.id => {}
                _ => return Err(Refusal::InvalidToken("the access token has been revoked; authorize again".into())),
            }
            state.confirmed.grants.remember(gid, &ws.id, version, ());
        }
    } else if state.confirmed.machine_clients.get(&claims.client_id, &ws.id, version).is_none() {
        // No grant: a client_credentials token. Deleting the client is its revocation, seen on
        // the next request like a revoked grant.
        let client =
            state.store.client_by_id(&claims.client_id).await.map_err(lookup_failed("client lookup failed"))?;
        match client {
            Some(c) if c.workspace_id.as_deref() == Some(ws.id.as_str()) => {}
            _ => return Err(Refusal::InvalidToken("the client of this token has been removed".into())),
        }
        state.confirmed.machine_clients.remember(&claims.client_id, &ws.id, version, ());
    }
    Ok(Principal {
        subject: claims.sub,
        client_id: claims.client_id,
        workspace_id: ws.id.clone(),
        workspace_slug: ws.slug.clone(),
        scope: ScopeSet::from_stored(&claims.scope),
        credential: Credential::AccessToken { grant_id: claims.gid, jti: claims.jti },
    })
}

async fn machine_token(state: &AppState, token: &str, ws: &WorkspaceRow) -> Result<Principal, Refusal> {
    let hash = hash_secret(token);
    let version = ws.revocations_version;
    let row = match state.confirmed.machine_tokens.get(&hash, &ws.id, version) {
        Some(row) => row,
        None => {
            let row =
                state.store.machine_token_by_hash(&hash).await.map_err(lookup_failed("machine token lookup failed"))?;
            let Some(row) = row else {
                return Err(Refusal::InvalidToken("unknown machine token".into()));
            };
            if row.revoked_at.is_none() && row.workspace_id == ws.id {
                state.confirmed.machine_tokens.remember(&hash, &ws.id, version, row.clone());
            }
            row
        }
    };
    if row.revoked_at.is_some() {
        return Err(Refusal::InvalidToken("this machine token has been revoked".into()));
    }
    if row.expires_at <= state.clock.now() {
        return Err(Refusal::InvalidToken("this machine token has expired; create a new one".into()));
    }
    if row.workspace_id != ws.id {
        return Err(wrong_audience());
    }
    Ok(Principal {
        subject: format!("machine:{}", row.id),
        client_id: format!("machine:{}", row.name),
        workspace_id: ws.id.clone(),
        workspace_slug: ws.slug.clone(),
        scope: ScopeSet::from_stored(&row.scope),
        credential: Credential::MachineToken { id: row.id },
    })
}
