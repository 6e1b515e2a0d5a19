//! RFC 9728 protected resource metadata, one document per workspace, at the path-inserted
//! well-known URL. `resource` is exactly the MCP URL clients connect to; the authorization
//! server is ours, or the external issuer the workspace trusts.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use mcp_resource_guard::ProtectedResourceMetadata;

use super::challenge::{ChallengeContext, Refusal};
use crate::app::AppState;
use crate::oauth::scope::KNOWN_SCOPES;
use crate::workspace::mcp_url;

/// `/.well-known/oauth-protected-resource/t/{slug}/mcp`
pub fn metadata_url(public_url: &str, slug: &str) -> String {
    mcp_resource_guard::metadata_url(&mcp_url(public_url, slug))
}

pub async fn protected_resource(State(state): State<AppState>, Path(slug): Path<String>) -> Response {
    let (ws, issuer) = match state.store.workspace_and_issuer_by_slug(&slug).await {
        Ok(Some(found)) => found,
        Ok(None) => {
            let ctx = ChallengeContext { resource_metadata: "", default_scope: "" };
            return Refusal::NotFound(super::bearer::NO_SUCH_WORKSPACE.into()).into_response_with(&ctx);
        }
        Err(e) => return crate::oauth::error::OAuthError::from(e).into_response(),
    };
    let authorization_server = issuer.map(|row| row.issuer).unwrap_or_else(|| state.settings.public_url.clone());
    let mut body = ProtectedResourceMetadata::new(state.mcp_url(&ws.slug), authorization_server);
    body.scopes_supported = KNOWN_SCOPES.iter().map(|(s, _)| (*s).to_owned()).collect();
    body.resource_name = Some(ws.name);
    ([(header::CACHE_CONTROL, "public, max-age=300")], Json(body)).into_response()
}
