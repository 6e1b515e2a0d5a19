//! RFC 7592 client configuration endpoint, `/register/{client_id}`: a dynamically registered
//! client reads (GET), replaces (PUT) or deletes (DELETE) its registration with the registration
//! access token it was given. Any failure to authenticate, including an unknown client, is a
//! 401 `invalid_token` (RFC 7592 §2), so the endpoint does not reveal which client ids exist.

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::metadata::{self, Origin, bad_metadata};
use super::{bearer, client_information, read_json_object};
use crate::app::AppState;
use crate::crypto::secret_matches;
use crate::oauth::error::{ErrorCode, OAuthError};
use crate::store::{ClientRow, ClientUpdate, client_source};

/// The dynamic client the request's registration access token belongs to.
async fn authorised(state: &AppState, headers: &HeaderMap, client_id: &str) -> Result<ClientRow, OAuthError> {
    let refused = || {
        OAuthError::new(
            ErrorCode::InvalidToken,
            "the registration access token is missing or not valid for this client (it may have been deleted: register again)",
        )
    };
    let token = bearer(headers).ok_or_else(refused)?;
    let client = state.store.client_by_id(client_id).await?.ok_or_else(refused)?;
    match (&client.registration_token_hash, client.source.as_str()) {
        (Some(hash), client_source::DYNAMIC) if secret_matches(token, hash) => Ok(client),
        _ => Err(refused()),
    }
}

fn no_store(body: Value) -> Response {
    ([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

/// GET /register/{client_id}
pub async fn read(
    State(state): State<AppState>,
    Path(client_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, OAuthError> {
    let client = authorised(&state, &headers, &client_id).await?;
    Ok(no_store(Value::Object(client_information(&state, &client))))
}

/// PUT /register/{client_id}: the body replaces the registered metadata (RFC 7592 §2.2).
pub async fn update(
    State(state): State<AppState>,
    Path(client_id): Path<String>,
    req: Request,
) -> Result<Response, OAuthError> {
    let client = authorised(&state, req.headers(), &client_id).await?;
    let doc = read_json_object(req).await?;
    match doc.get("client_id") {
        Some(Value::String(id)) if *id == client.id => {}
        Some(_) => return Err(OAuthError::invalid_request("client_id in the body differs from the one in the URL")),
        None => return Err(OAuthError::invalid_request("an update must repeat the client_id")),
    }
    // RFC 7592 §2.2: a client_secret in the request must be the current one.
    if let Some(presented) = doc.get("client_secret") {
        let matches = match (presented, &client.secret_hash) {
            (Value::String(s), Some(hash)) => secret_matches(s, hash),
            _ => false,
        };
        if !matches {
            return Err(OAuthError::invalid_client("client_secret does not match this client's secret"));
        }
    }
    let checked = metadata::check(&doc, Origin::Registration)?;
    if checked.is_public() != client.is_public() {
        return Err(bad_metadata(
            "token_endpoint_auth_method cannot change between none and a secret method; register a new client",
        ));
    }
    let now = state.clock.now();
    let mut stored = checked.to_json();
    stored.insert("client_id".into(), json!(client.id));
    let original: Value = serde_json::from_str(&client.metadata).unwrap_or(Value::Null);
    if let Some(issued) = original.get("client_id_issued_at") {
        stored.insert("client_id_issued_at".into(), issued.clone());
    }
    if !checked.is_public() {
        stored.insert("client_secret_expires_at".into(), json!(0));
    }
    let update = ClientUpdate {
        client_name: checked.client_name.clone(),
        redirect_uris: serde_json::to_string(&checked.redirect_uris).map_err(OAuthError::internal)?,
        grant_types: serde_json::to_string(&checked.grant_types).map_err(OAuthError::internal)?,
        token_endpoint_auth_method: checked.token_endpoint_auth_method.clone(),
        application_type: checked.application_type.clone(),
        scope: checked.scope.clone(),
        metadata: Value::Object(stored).to_string(),
        updated_at: now,
    };
    if !state.store.update_client(&client.id, &update).await? {
        // Deleted between the check and the update.
        return Err(OAuthError::new(ErrorCode::InvalidToken, "this client no longer exists; register again"));
    }
    tracing::info!(client_id = %client.id, "client registration updated");
    let updated = state
        .store
        .client_by_id(&client.id)
        .await?
        .ok_or_else(|| OAuthError::new(ErrorCode::InvalidToken, "this client no longer exists; register again"))?;
    Ok(no_store(Value::Object(client_information(&state, &updated))))
}

/// DELETE /register/{client_id}: the client and everything issued to it are gone.
pub async fn delete(
    State(state): State<AppState>,
    Path(client_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, OAuthError> {
    let client = authorised(&state, &headers, &client_id).await?;
    state.store.delete_client(&client.id).await?;
    tracing::info!(client_id = %client.id, "client deleted its registration");
    Ok((StatusCode::NO_CONTENT, [(header::CACHE_CONTROL, "no-store")]).into_response())
}
