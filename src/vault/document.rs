//! Gatehouse's own Client ID Metadata Document, for upstream authorization servers that
//! accept URL client ids: `GET {public_url}/oauth/upstream/client.json`. Its URL is its
//! client id, so it must stay stable; it is public (no secret, `token_endpoint_auth_method`
//! `none`: PKCE protects the code).

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::json;

use super::{CALLBACK_PATH, CLIENT_DOCUMENT_PATH};
use crate::app::AppState;

pub fn document(public_url: &str) -> serde_json::Value {
    let base = public_url.trim_end_matches('/');
    json!({
        "client_id": format!("{base}{CLIENT_DOCUMENT_PATH}"),
        "client_name": "Gatehouse",
        "client_uri": base,
        "redirect_uris": [format!("{base}{CALLBACK_PATH}")],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "application_type": "web",
    })
}

pub async fn client_document(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "public, max-age=3600")], Json(document(&state.settings.public_url)))
}
