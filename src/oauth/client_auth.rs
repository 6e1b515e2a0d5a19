//! Client authentication at the token, revocation and introspection endpoints
//! (RFC 6749 §2.3): `client_secret_basic`, `client_secret_post`, or `none` for public clients.
//! Confidential clients may use either secret method (clients disagree on which they use).

use std::sync::Arc;

use axum::http::{HeaderMap, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::error::OAuthError;
use super::params::{Params, decode_component};
use crate::app::AppState;
use crate::crypto::secret_matches;
use crate::store::{ClientRow, CurrentRows};

struct Presented {
    client_id: String,
    secret: Option<String>,
}

fn from_basic(headers: &HeaderMap) -> Result<Option<Presented>, OAuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| OAuthError::invalid_client("malformed Authorization header"))?;
    let Some((scheme, rest)) = value.split_once(' ') else {
        return Err(OAuthError::invalid_client("malformed Authorization header"));
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(OAuthError::invalid_client("clients authenticate with HTTP Basic or client_secret_post"));
    }
    let decoded = STANDARD
        .decode(rest.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| OAuthError::invalid_client("malformed Basic credentials"))?;
    let (id, secret) =
        decoded.split_once(':').ok_or_else(|| OAuthError::invalid_client("malformed Basic credentials"))?;
    // RFC 6749 §2.3.1: both halves are form-urlencoded before Basic encoding.
    let unescape =
        |s: &str| decode_component(s.as_bytes()).map_err(|_| OAuthError::invalid_client("malformed Basic credentials"));
    Ok(Some(Presented { client_id: unescape(id)?, secret: Some(unescape(secret)?) }))
}

/// Identifies and authenticates the calling client.
pub async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    params: &Params,
) -> Result<Arc<ClientRow>, OAuthError> {
    authenticate_in(&state.store.current_rows(), headers, params).await
}

/// [`authenticate`], with the client read from `rows` (taken by the caller, who reads more).
pub async fn authenticate_in(
    rows: &CurrentRows<'_>,
    headers: &HeaderMap,
    params: &Params,
) -> Result<Arc<ClientRow>, OAuthError> {
    let presented = match from_basic(headers)? {
        Some(basic) => {
            if params.get("client_secret").is_some() {
                return Err(OAuthError::invalid_request("use one client authentication method, not two"));
            }
            if params.get("client_id").is_some_and(|id| id != basic.client_id) {
                return Err(OAuthError::invalid_client("client_id in the body differs from the Basic credentials"));
            }
            basic
        }
        None => Presented {
            client_id: params
                .get("client_id")
                .ok_or_else(|| OAuthError::invalid_client("client authentication required: send client_id"))?
                .to_owned(),
            secret: params.get("client_secret").map(str::to_owned),
        },
    };
    let client = rows.client(&presented.client_id).await?.ok_or_else(|| {
        OAuthError::invalid_client("unknown client_id; the client may have been deleted: register again")
    })?;
    match (&client.secret_hash, &presented.secret) {
        (Some(hash), Some(secret)) if secret_matches(secret, hash) => Ok(client),
        (Some(_), Some(_)) => Err(OAuthError::invalid_client("client authentication failed")),
        (Some(_), None) => Err(OAuthError::invalid_client("this client is confidential: send its client_secret")),
        (None, Some(_)) => {
            Err(OAuthError::invalid_client("this client is public and has no secret: send client_id only"))
        }
        (None, None) => Ok(client),
    }
}
