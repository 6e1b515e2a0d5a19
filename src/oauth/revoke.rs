//! Token revocation (RFC 7009). Revoking a refresh or access token revokes the grant behind it,
//! so the whole family and every access token carrying the grant id stop working.
//! Unknown, foreign or already revoked tokens get the same empty 200, as the RFC requires.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::client_auth::authenticate;
use super::error::OAuthError;
use super::params::FormParams;
use crate::app::AppState;
use crate::audit::{Actor, Event, EventKind};
use crate::crypto::{SecretKind, hash_secret};

pub async fn revoke(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: Result<FormParams, OAuthError>,
) -> Response {
    let result = async {
        let FormParams(params) = form?;
        let client = authenticate(&state, &headers, &params).await?;
        let token = params.require("token")?;
        let now = state.clock.now();
        let grant_id = if token.starts_with(SecretKind::RefreshToken.prefix()) {
            state
                .store
                .grant_of_refresh_token(&hash_secret(token), now)
                .await?
                .filter(|(g, _, _)| g.client_id == client.id)
                .map(|(g, _, _)| g.id)
        } else {
            // An access token: expired ones need no revoking, so full verification is fine.
            state
                .keys
                .verify(token, &state.settings.public_url, now)
                .ok()
                .filter(|c| c.client_id == client.id)
                .and_then(|c| c.gid)
        };
        if let Some(gid) = grant_id
            && state.store.revoke_grant(&gid, now, "revoked by the client").await?
        {
            let mut event = Event::new(EventKind::GrantRevoked, Actor::client(&client))
                .source(peer.ip())
                .detail("grant", gid.as_str())
                .detail("by", "the client (RFC 7009)");
            if let Some(grant) = state.store.grant_by_id(&gid).await? {
                event = event.workspace(&grant.workspace_id);
            }
            state.audit(event).await;
        }
        Ok::<_, OAuthError>(())
    }
    .await;
    match result {
        Ok(()) => {
            let mut res = StatusCode::OK.into_response();
            res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            res
        }
        Err(e) => e.into_response(),
    }
}
