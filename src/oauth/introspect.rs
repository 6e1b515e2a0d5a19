//! Token introspection (RFC 7662) for confidential clients, e.g. a resource server of
//! another product. Answers for our access tokens, refresh tokens (to their own client only)
//! and machine tokens; anything else, or anything revoked or expired, is `{"active": false}`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::client_auth::authenticate;
use super::error::OAuthError;
use super::params::FormParams;
use crate::app::AppState;
use crate::crypto::{SecretKind, hash_secret};

pub async fn introspect(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<FormParams, OAuthError>,
) -> Response {
    let result = async {
        let FormParams(params) = form?;
        let client = authenticate(&state, &headers, &params).await?;
        if client.secret_hash.is_none() {
            return Err(OAuthError::invalid_client("introspection is for confidential clients (with a client secret)"));
        }
        let token = params.require("token")?;
        look_up(&state, token, &client.id).await
    }
    .await;
    match result {
        Ok(body) => {
            let mut res = Json(body).into_response();
            res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            res
        }
        Err(e) => e.into_response(),
    }
}

fn inactive() -> Value {
    json!({ "active": false })
}

async fn look_up(state: &AppState, token: &str, caller: &str) -> Result<Value, OAuthError> {
    let now = state.clock.now();
    let issuer = &state.settings.public_url;
    if token.starts_with(SecretKind::RefreshToken.prefix()) {
        let Some((grant, scope, exp)) = state.store.grant_of_refresh_token(&hash_secret(token), now).await? else {
            return Ok(inactive());
        };
        if grant.revoked_at.is_some() || grant.client_id != caller {
            return Ok(inactive());
        }
        let ws = state.store.workspace_by_id(&grant.workspace_id).await?;
        return Ok(json!({
            "active": true,
            "token_type": "refresh_token",
            "scope": scope,
            "client_id": grant.client_id,
            "sub": grant.user_id,
            "aud": ws.map(|w| state.mcp_url(&w.slug)),
            "iss": issuer,
            "exp": exp,
        }));
    }
    if token.starts_with(SecretKind::MachineToken.prefix()) {
        let Some(row) = state.store.machine_token_by_hash(&hash_secret(token)).await? else {
            return Ok(inactive());
        };
        if row.revoked_at.is_some() || row.expires_at <= now {
            return Ok(inactive());
        }
        let ws = state.store.workspace_by_id(&row.workspace_id).await?;
        return Ok(json!({
            "active": true,
            "token_type": "Bearer",
            "scope": row.scope,
            "sub": format!("machine:{}", row.id),
            "aud": ws.map(|w| state.mcp_url(&w.slug)),
            "iss": issuer,
            "iat": row.created_at,
            "exp": row.expires_at,
        }));
    }
    let Ok(claims) = state.keys.verify(token, issuer, now) else {
        return Ok(inactive());
    };
    if let Some(gid) = &claims.gid {
        let live = state.store.grant_by_id(gid).await?.is_some_and(|g| g.revoked_at.is_none());
        if !live {
            return Ok(inactive());
        }
    }
    Ok(json!({
        "active": true,
        "token_type": "Bearer",
        "scope": claims.scope,
        "client_id": claims.client_id,
        "sub": claims.sub,
        "aud": claims.aud,
        "iss": claims.iss,
        "iat": claims.iat,
        "exp": claims.exp,
        "jti": claims.jti,
    }))
}
