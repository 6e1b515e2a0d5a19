//! The token endpoint: `authorization_code`, `refresh_token` and `client_credentials`.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use super::REFRESH_REUSE_GRACE_SECS;
use super::client_auth::authenticate_in;
use super::error::{ErrorCode, OAuthError};
use super::issue::{self, AccessGrant, TokenResponse};
use super::params::{FormParams, Params};
use super::scope::ScopeSet;
use crate::app::AppState;
use crate::audit::{Actor, Event, EventKind};
use crate::crypto::{constant_time_eq, hash_secret, sha256_b64url};
use crate::store::{ClientRow, CodeRedemption, CurrentRows, GrantRow, RefreshOutcome, WorkspaceRow};
use crate::workspace::resource_names;

pub async fn token(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: Result<FormParams, OAuthError>,
) -> Response {
    let result = async {
        let FormParams(params) = form?;
        let grant_type = params.require("grant_type")?.to_owned();
        // One look at what changed serves the whole request (client, then workspace).
        let rows = state.store.current_rows();
        let client = authenticate_in(&rows, &headers, &params).await?;
        match grant_type.as_str() {
            "authorization_code" => authorization_code(&state, &rows, &client, &params, peer.ip()).await,
            "refresh_token" => refresh(&state, &rows, &client, &params, peer.ip()).await,
            "client_credentials" => client_credentials(&state, &rows, &client, &params, peer.ip()).await,
            other => Err(OAuthError::new(
                ErrorCode::UnsupportedGrantType,
                format!("grant_type `{}` is not supported", other.chars().take(40).collect::<String>()),
            )),
        }
    }
    .await;
    match result {
        Ok(tokens) => tokens.into_response(),
        Err(e) => e.into_response(),
    }
}

/// Checks an optional `resource` against the workspace a grant is bound to (RFC 8707 §2.2).
fn check_resource(state: &AppState, params: &Params, ws: &WorkspaceRow) -> Result<(), OAuthError> {
    match params.get("resource") {
        None => Ok(()),
        Some(r) if resource_names(&state.settings.public_url, r, &ws.slug) => Ok(()),
        Some(_) => Err(OAuthError::invalid_target("resource does not match the workspace this grant is for")),
    }
}

/// The workspace a token would be for; never one that trusts an external issuer.
async fn workspace(rows: &CurrentRows<'_>, id: &str) -> Result<WorkspaceRow, OAuthError> {
    let found = rows
        .workspace_by_id(id)
        .await?
        .ok_or_else(|| OAuthError::invalid_grant("the workspace of this grant no longer exists"))?;
    let (ws, issuer) = &*found;
    crate::resource::external::refusal_if_trusted(ws, issuer.as_ref())?;
    Ok(ws.clone())
}

fn valid_verifier(v: &str) -> bool {
    (43..=128).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

async fn authorization_code(
    state: &AppState,
    rows: &CurrentRows<'_>,
    client: &ClientRow,
    params: &Params,
    source: IpAddr,
) -> Result<TokenResponse, OAuthError> {
    let code = params.require("code")?;
    let verifier = params
        .get("code_verifier")
        .ok_or_else(|| OAuthError::invalid_request("PKCE is required: send code_verifier"))?;
    let redirect_uri = params.require("redirect_uri")?;
    let now = state.clock.now();
    let code_hash = hash_secret(code);
    let found = match state.store.redeem_code(&code_hash, now).await? {
        CodeRedemption::Fresh(found) => found,
        CodeRedemption::Replayed { grant_id } => {
            let mut event = Event::new(EventKind::CodeReplayDetected, Actor::client(client)).source(source);
            if let Some(gid) = grant_id {
                let revoked = state.store.revoke_grant(&gid, now, "authorization code replayed").await?;
                if let Some(grant) = state.store.grant_by_id(&gid).await? {
                    event = event.workspace(&grant.workspace_id);
                }
                event = event.detail("grant", gid).detail("revoked", revoked);
            }
            state.audit(event).await;
            return Err(OAuthError::invalid_grant(
                "this authorization code was already used; the tokens it issued are revoked",
            ));
        }
        CodeRedemption::Unknown => return Err(OAuthError::invalid_grant("unknown authorization code")),
    };
    // The code is now spent whatever happens below: a failed attempt cannot be retried.
    if found.client_id != client.id {
        return Err(OAuthError::invalid_grant("this authorization code was issued to another client"));
    }
    if found.expires_at <= now {
        return Err(OAuthError::invalid_grant("this authorization code has expired"));
    }
    if found.redirect_uri != redirect_uri {
        return Err(OAuthError::invalid_grant("redirect_uri differs from the one in the authorization request"));
    }
    if !valid_verifier(verifier) || !constant_time_eq(&sha256_b64url(verifier.as_bytes()), &found.code_challenge) {
        return Err(OAuthError::invalid_grant("code_verifier does not match the code_challenge"));
    }
    let ws = workspace(rows, &found.workspace_id).await?;
    check_resource(state, params, &ws)?;

    let grant = GrantRow {
        id: uuid::Uuid::now_v7().to_string(),
        user_id: Some(found.user_id.clone()),
        client_id: client.id.clone(),
        workspace_id: ws.id.clone(),
        scope: found.scope.clone(),
        redirect_uri: Some(found.redirect_uri.clone()),
        created_at: now,
        last_used_at: Some(now),
        revoked_at: None,
        revoked_reason: None,
    };
    // Refresh tokens go to clients that registered the grant (the default at registration).
    let refresh = match client.allows_grant("refresh_token") {
        true => Some(issue::refresh_token(state, &grant.id, &grant.scope)?),
        false => None,
    };
    if !state.store.issue_grant_from_code(&code_hash, &grant, refresh.as_ref().map(|(_, row)| row)).await? {
        return Err(OAuthError::invalid_grant("this authorization code was already used"));
    }
    state.store.supersede_grants(&grant, now).await?;
    state.store.touch_client(&client.id, now).await?;
    let audience = state.mcp_url(&ws.slug);
    let (access_token, expires_in) = issue::access_token(
        state,
        &AccessGrant {
            subject: &found.user_id,
            audience: &audience,
            client_id: &client.id,
            scope: &grant.scope,
            grant_id: Some(&grant.id),
        },
    )?;
    let person = state.store.user_by_id(&found.user_id).await?.map(|u| u.email).unwrap_or_default();
    let event = Event::new(EventKind::TokenIssued, Actor::client(client))
        .workspace(&ws.id)
        .subject(Some(&found.user_id), &person)
        .source(source)
        .detail("grant_type", "authorization_code")
        .detail("grant", grant.id.as_str())
        .detail("scope", grant.scope.as_str());
    state.audit(event).await;
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in,
        scope: grant.scope,
        refresh_token: refresh.map(|(token, _)| token),
    })
}

async fn refresh(
    state: &AppState,
    rows: &CurrentRows<'_>,
    client: &ClientRow,
    params: &Params,
    source: IpAddr,
) -> Result<TokenResponse, OAuthError> {
    if !client.allows_grant("refresh_token") {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "this client did not register the refresh_token grant",
        ));
    }
    let presented = params.require("refresh_token")?;
    let token_hash = hash_secret(presented);
    let now = state.clock.now();
    // Scope and resource are checked before rotating, so a bad request does not spend the token.
    let requested_scope = match params.get("scope") {
        Some(s) => Some(ScopeSet::parse_requested(Some(s))?),
        None => None,
    };
    if (requested_scope.is_some() || params.get("resource").is_some())
        && let Some((grant, scope, _)) = state.store.grant_of_refresh_token(&token_hash, now).await?
    {
        if let Some(req) = &requested_scope
            && !req.is_subset_of(&ScopeSet::from_stored(&scope))
        {
            return Err(OAuthError::invalid_scope("a refresh may narrow the scope, never widen it"));
        }
        check_resource(state, params, &workspace(rows, &grant.workspace_id).await?)?;
    }
    // Grant id and scope are left blank: the store fills both in from the token it spends,
    // which is only known inside the rotation transaction.
    let (new_token, new_row) = issue::refresh_token(state, "", "")?;
    let (grant, granted_scope) =
        match state.store.rotate_refresh_token(&token_hash, &client.id, now, REFRESH_REUSE_GRACE_SECS, &new_row).await?
        {
            RefreshOutcome::Rotated { grant, old_scope } => (grant, old_scope),
            RefreshOutcome::Reused { grant_id, revoked } => {
                // Within the grace period this is a retried request, not an attack.
                if revoked {
                    let mut event = Event::new(EventKind::RefreshReuseDetected, Actor::client(client))
                        .source(source)
                        .detail("grant", grant_id.as_str())
                        .detail("revoked", true);
                    if let Some(grant) = state.store.grant_by_id(&grant_id).await? {
                        event = event.workspace(&grant.workspace_id);
                        if let Some(user) = grant.user_id.as_deref() {
                            let person = state.store.user_by_id(user).await?.map(|u| u.email).unwrap_or_default();
                            event = event.subject(Some(user), &person);
                        }
                    }
                    state.audit(event).await;
                }
                return Err(OAuthError::invalid_grant(
                    "this refresh token was already used; sign in again (the session it belonged to is revoked)",
                ));
            }
            RefreshOutcome::Invalid => {
                return Err(OAuthError::invalid_grant("the refresh token is invalid, expired or revoked"));
            }
        };
    let scope = requested_scope.map(|s| s.to_scope_string()).unwrap_or(granted_scope);
    let ws = workspace(rows, &grant.workspace_id).await?;
    let audience = state.mcp_url(&ws.slug);
    let subject = grant.user_id.clone().unwrap_or_else(|| client.id.clone());
    let (access_token, expires_in) = issue::access_token(
        state,
        &AccessGrant {
            subject: &subject,
            audience: &audience,
            client_id: &client.id,
            scope: &scope,
            grant_id: Some(&grant.id),
        },
    )?;
    // The rotation is the one write a refresh needs; last use is written once a minute (see `usage`).
    if state.client_usage.due(&client.id, now) {
        state.store.touch_client(&client.id, now).await?;
    }
    Ok(TokenResponse { access_token, token_type: "Bearer", expires_in, scope, refresh_token: Some(new_token) })
}

async fn client_credentials(
    state: &AppState,
    rows: &CurrentRows<'_>,
    client: &ClientRow,
    params: &Params,
    source: IpAddr,
) -> Result<TokenResponse, OAuthError> {
    let (Some(ws_id), Some(_), true) =
        (&client.workspace_id, &client.secret_hash, client.allows_grant("client_credentials"))
    else {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "this client may not use client_credentials (only operator-made confidential clients bound to a workspace may)",
        ));
    };
    let ws = workspace(rows, ws_id).await?;
    check_resource(state, params, &ws)?;
    let client_scope = ScopeSet::from_stored(client.scope.as_deref().unwrap_or_default());
    let scope = match params.get("scope") {
        Some(s) => {
            let req = ScopeSet::parse_requested(Some(s))?;
            if !req.is_subset_of(&client_scope) {
                return Err(OAuthError::invalid_scope("the requested scope exceeds what this client was given"));
            }
            req
        }
        None => client_scope,
    };
    let scope = scope.to_scope_string();
    let audience = state.mcp_url(&ws.slug);
    let (access_token, expires_in) = issue::access_token(
        state,
        &AccessGrant { subject: &client.id, audience: &audience, client_id: &client.id, scope: &scope, grant_id: None },
    )?;
    // No database write per access token: last use and the audit event are written for the
    // first token of each minute per client (see `usage`).
    let now = state.clock.now();
    if state.client_usage.due(&client.id, now) {
        state.store.touch_client(&client.id, now).await?;
        let event = Event::new(EventKind::TokenIssued, Actor::client(client))
            .workspace(&ws.id)
            .source(source)
            .detail("grant_type", "client_credentials")
            .detail("scope", scope.as_str());
        state.audit(event).await;
    }
    Ok(TokenResponse { access_token, token_type: "Bearer", expires_in, scope, refresh_token: None })
}
