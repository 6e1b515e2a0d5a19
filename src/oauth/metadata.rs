//! RFC 8414 authorization server metadata and the JWKS.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::json;

use super::scope::{KNOWN_SCOPES, OFFLINE_ACCESS};
use crate::app::AppState;

pub async fn authorization_server(State(state): State<AppState>) -> impl IntoResponse {
    let issuer = &state.settings.public_url;
    let mut scopes: Vec<&str> = KNOWN_SCOPES.iter().map(|(s, _)| *s).collect();
    scopes.push(OFFLINE_ACCESS);
    let body = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "registration_endpoint": format!("{issuer}/register"),
        "client_id_metadata_document_supported": state.client_documents.enabled(),
        "revocation_endpoint": format!("{issuer}/revoke"),
        "introspection_endpoint": format!("{issuer}/introspect"),
        "jwks_uri": format!("{issuer}/jwks.json"),
        "scopes_supported": scopes,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": true,
        "resource_indicators_supported": true,
        "access_token_signing_alg_values_supported": [state.keys.signing_alg().name()],
    });
    ([(header::CACHE_CONTROL, "public, max-age=300")], Json(body))
}

pub async fn jwks(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "public, max-age=300")], Json(state.keys.jwks().clone()))
}
