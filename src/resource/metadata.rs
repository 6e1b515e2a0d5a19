//! RFC 9728 protected resource metadata, one document per workspace, at the path-inserted
//! well-known URL. `resource` is exactly the MCP URL clients connect to.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::challenge::{ChallengeContext, Refusal};
use crate::app::AppState;
use crate::oauth::scope::KNOWN_SCOPES;

/// `/.well-known/oauth-protected-resource/t/{slug}/mcp`
pub fn metadata_url(public_url: &str, slug: &str) -> String {
    let url = url::Url::parse(public_url).ok();
    let origin = url.as_ref().map(|u| u.origin().ascii_serialization()).unwrap_or_default();
    let base_path = url.as_ref().map(|u| u.path().trim_end_matches('/').to_owned()).unwrap_or_default();
    format!("{origin}/.well-known/oauth-protected-resource{base_path}/t/{slug}/mcp")
}

pub async fn protected_resource(State(state): State<AppState>, Path(slug): Path<String>) -> Response {
    let ws = match state.store.workspace_by_slug(&slug).await {
        Ok(Some(ws)) => ws,
        Ok(None) => {
            let ctx = ChallengeContext { resource_metadata: "", default_scope: "" };
            return Refusal::UnknownWorkspace.into_response_with(&ctx);
        }
        Err(e) => return crate::oauth::error::OAuthError::from(e).into_response(),
    };
    let body = json!({
        "resource": state.mcp_url(&ws.slug),
        "authorization_servers": [state.settings.public_url],
        // Never offline_access here (MCP authorization, R7).
        "scopes_supported": KNOWN_SCOPES.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        "bearer_methods_supported": ["header"],
        "resource_name": ws.name,
    });
    ([(header::CACHE_CONTROL, "public, max-age=300")], Json(body)).into_response()
}
