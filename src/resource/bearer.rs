//! Bearer authentication at a workspace's MCP endpoint: our RFC 9068 JWTs (signature cached
//! in memory, audience checked, grant checked so revocation is immediate) and machine tokens.
//! Tokens in query strings are refused outright (they end up in logs and histories).

use axum::http::{HeaderMap, header};

use super::challenge::Refusal;
use crate::app::AppState;
use crate::crypto::signing::VerifyError;
use crate::crypto::{SecretKind, hash_secret};
use crate::oauth::scope::ScopeSet;
use crate::store::WorkspaceRow;

/// How the caller authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    AccessToken { grant_id: Option<String>, jti: String },
    MachineToken { id: String },
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

/// Checks the request's bearer token for the workspace `ws`.
pub async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    query: Option<&str>,
    ws: &WorkspaceRow,
) -> Result<Principal, Refusal> {
    if query.is_some_and(|q| q.split('&').any(|p| p.starts_with("access_token="))) {
        return Err(Refusal::BadRequest("send the access token in the Authorization header, never in the URL".into()));
    }
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(Refusal::NoToken);
    };
    let value = value.to_str().map_err(|_| Refusal::BadRequest("malformed Authorization header".into()))?;
    let token = match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => token.trim(),
        _ => return Err(Refusal::InvalidToken("use the Bearer scheme: Authorization: Bearer <token>".into())),
    };
    if token.starts_with(SecretKind::MachineToken.prefix()) {
        machine_token(state, token, ws).await
    } else {
        access_token(state, token, ws).await
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
    if let Some(gid) = &claims.gid {
        let grant = state.store.grant_by_id(gid).await.map_err(|e| {
            tracing::error!(error = %e, "grant lookup failed");
            Refusal::InvalidToken("the token could not be checked; retry".into())
        })?;
        match grant {
            Some(g) if g.revoked_at.is_none() && g.workspace_id == ws.id => {}
            _ => return Err(Refusal::InvalidToken("the access token has been revoked; authorize again".into())),
        }
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
    let row = state.store.machine_token_by_hash(&hash_secret(token)).await.map_err(|e| {
        tracing::error!(error = %e, "machine token lookup failed");
        Refusal::InvalidToken("the token could not be checked; retry".into())
    })?;
    let Some(row) = row else {
        return Err(Refusal::InvalidToken("unknown machine token".into()));
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
