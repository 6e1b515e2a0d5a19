//! Minting what the authorization server hands out: codes, access tokens, refresh tokens.

use axum::Json;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::error::OAuthError;
use crate::app::AppState;
use crate::crypto::signing::AccessClaims;
use crate::crypto::{SecretKind, hash_secret, new_secret};
use crate::store::{NewCode, NewRefreshToken};

pub struct CodeGrant<'a> {
    pub client_id: &'a str,
    pub user_id: &'a str,
    pub workspace_id: &'a str,
    pub redirect_uri: &'a str,
    pub code_challenge: &'a str,
    pub scope: &'a str,
}

/// Stores a new authorization code (its hash) and returns the code itself.
pub async fn authorization_code(state: &AppState, g: &CodeGrant<'_>, ttl: i64) -> Result<String, OAuthError> {
    let code = new_secret(SecretKind::AuthorizationCode)?;
    let now = state.clock.now();
    state
        .store
        .insert_code(&NewCode {
            code_hash: hash_secret(&code),
            client_id: g.client_id.to_owned(),
            user_id: g.user_id.to_owned(),
            workspace_id: g.workspace_id.to_owned(),
            redirect_uri: g.redirect_uri.to_owned(),
            code_challenge: g.code_challenge.to_owned(),
            scope: g.scope.to_owned(),
            created_at: now,
            expires_at: now + ttl,
        })
        .await?;
    Ok(code)
}

/// Who an access token is for and what it allows.
pub struct AccessGrant<'a> {
    pub subject: &'a str,
    pub audience: &'a str,
    pub client_id: &'a str,
    pub scope: &'a str,
    pub grant_id: Option<&'a str>,
}

/// A signed RFC 9068 access token and its lifetime in seconds. No database write.
pub fn access_token(state: &AppState, g: &AccessGrant<'_>) -> Result<(String, i64), OAuthError> {
    let now = state.clock.now();
    let ttl = state.settings.access_token_ttl;
    let claims = AccessClaims {
        iss: state.settings.public_url.clone(),
        sub: g.subject.to_owned(),
        aud: g.audience.to_owned(),
        client_id: g.client_id.to_owned(),
        scope: g.scope.to_owned(),
        iat: now,
        exp: now + ttl,
        jti: uuid::Uuid::now_v7().to_string(),
        gid: g.grant_id.map(str::to_owned),
    };
    Ok((state.keys.sign(&claims)?, ttl))
}

/// A new refresh token for `grant_id`: the token, and the row that stores its hash.
pub fn refresh_token(state: &AppState, grant_id: &str, scope: &str) -> Result<(String, NewRefreshToken), OAuthError> {
    let token = new_secret(SecretKind::RefreshToken)?;
    let now = state.clock.now();
    let row = NewRefreshToken {
        token_hash: hash_secret(&token),
        grant_id: grant_id.to_owned(),
        scope: scope.to_owned(),
        created_at: now,
        expires_at: now + state.settings.refresh_token_ttl,
    };
    Ok((token, row))
}

#[derive(Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

impl IntoResponse for TokenResponse {
    fn into_response(self) -> Response {
        let mut res = Json(self).into_response();
        res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res.headers_mut().insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        res
    }
}
