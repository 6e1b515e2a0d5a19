//! Dynamic Client Registration (RFC 7591), and the registration's lifecycle (RFC 7592, in
//! [`manage`]). Rate-limited per source address in the router; optionally closed behind an
//! initial access token (RFC 7591 §3, setting `registration_initial_token`).
//!
//! Public clients (`token_endpoint_auth_method: none`) get no secret; confidential ones get
//! a secret shown once and stored as a hash. Every registration gets a registration access
//! token, also shown once and stored as a hash, to read, update or delete it later.
//! `client_credentials` is not offered here: such clients act without a person and are created
//! by an operator, bound to one workspace.

pub mod manage;
pub mod metadata;

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::error::{ErrorCode, OAuthError};
use super::params::read_capped;
use crate::app::AppState;
use crate::audit::{Actor, Event, EventKind};
use crate::crypto::{SecretKind, constant_time_eq, hash_secret, new_secret};
use crate::store::{ClientRow, NewClient, client_source};
use metadata::{Origin, bad_metadata};

pub use super::preregistered::create_machine_client;

pub(crate) const MAX_REGISTRATION_BYTES: usize = 16 * 1024;

/// POST /register
pub async fn register(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Result<Response, OAuthError> {
    check_initial_access_token(&state, req.headers())?;
    let doc = read_json_object(req).await?;
    let checked = metadata::check(&doc, Origin::Registration)?;

    let now = state.clock.now();
    let client_id = uuid::Uuid::now_v7().to_string();
    let secret = if checked.is_public() { None } else { Some(new_secret(SecretKind::ClientSecret)?) };
    let registration_token = new_secret(SecretKind::RegistrationAccessToken)?;

    let mut stored = checked.to_json();
    stored.insert("client_id".into(), json!(client_id));
    stored.insert("client_id_issued_at".into(), json!(now));
    if secret.is_some() {
        // RFC 7591 §3.2.1: required with a secret; 0 means it does not expire.
        stored.insert("client_secret_expires_at".into(), json!(0));
    }
    let row = NewClient {
        id: client_id,
        secret_hash: secret.as_deref().map(hash_secret),
        client_name: checked.client_name.clone(),
        redirect_uris: serde_json::to_string(&checked.redirect_uris).map_err(OAuthError::internal)?,
        grant_types: serde_json::to_string(&checked.grant_types).map_err(OAuthError::internal)?,
        token_endpoint_auth_method: checked.token_endpoint_auth_method.clone(),
        application_type: checked.application_type.clone(),
        scope: checked.scope.clone(),
        workspace_id: None,
        source: client_source::DYNAMIC.into(),
        metadata: Value::Object(stored).to_string(),
        created_at: now,
        last_used_at: None,
        registration_token_hash: Some(hash_secret(&registration_token)),
        updated_at: None,
    };
    state.store.insert_client(&row).await?;
    let event = Event::new(EventKind::ClientRegistered, Actor::client(&row))
        .subject(Some(&row.id), &row.client_name)
        .source(peer.ip())
        .detail("how", "dynamic client registration")
        .detail("auth_method", row.token_endpoint_auth_method.as_str())
        .detail("redirect_uris", checked.redirect_uris.clone());
    state.audit(event).await;

    let mut response = client_information(&state, &row);
    response.insert("registration_access_token".into(), json!(registration_token));
    if let Some(secret) = secret {
        response.insert("client_secret".into(), json!(secret));
    }
    Ok((StatusCode::CREATED, [(header::CACHE_CONTROL, "no-store")], Json(Value::Object(response))).into_response())
}

/// RFC 7591 §3.2.1 client information (without secrets) for a dynamic client, with its RFC 7592
/// management URL.
pub(crate) fn client_information(state: &AppState, row: &ClientRow) -> Map<String, Value> {
    let mut info = match serde_json::from_str::<Value>(&row.metadata) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    info.insert("client_id".into(), json!(row.id));
    info.insert("registration_client_uri".into(), json!(registration_client_uri(state, &row.id)));
    info
}

pub(crate) fn registration_client_uri(state: &AppState, client_id: &str) -> String {
    let id: String = form_urlencoded::byte_serialize(client_id.as_bytes()).collect();
    format!("{}/register/{id}", state.settings.public_url)
}

/// When `registration_initial_token` is set, registration needs `Authorization: Bearer <it>`.
fn check_initial_access_token(state: &AppState, headers: &HeaderMap) -> Result<(), OAuthError> {
    let Some(expected) = state.settings.registration_initial_token.as_deref() else {
        return Ok(());
    };
    let presented = bearer(headers).ok_or_else(|| {
        OAuthError::new(
            ErrorCode::InvalidToken,
            "this server requires an initial access token for registration (Authorization: Bearer ...); ask its operator, or use a client ID metadata document",
        )
    })?;
    // Both sides hashed first, so the comparison takes the same time whatever their lengths.
    if constant_time_eq(&hash_secret(presented), &hash_secret(expected)) {
        Ok(())
    } else {
        Err(OAuthError::new(ErrorCode::InvalidToken, "the initial access token is not valid"))
    }
}

/// The token of an `Authorization: Bearer` header, if that is what was sent.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Reads a capped `application/json` body that must be one JSON object.
pub(crate) async fn read_json_object(req: Request) -> Result<Map<String, Value>, OAuthError> {
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(OAuthError::invalid_request("registration requests must be application/json"));
    }
    let body = read_capped(req, MAX_REGISTRATION_BYTES).await?;
    serde_json::from_slice(&body).map_err(|e| bad_metadata(format!("the body is not a JSON object: {e}")))
}
