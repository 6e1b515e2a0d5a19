//! Browser sessions in cookies. The cookie holds a random token; the database holds its hash.
//! On https the cookie is `__Host-` prefixed and `Secure`; it is always `HttpOnly` and
//! `SameSite=Lax` (the consent POST is same-site, and the redirect back from a login is a GET).

use axum::http::HeaderMap;
use axum::http::header::{COOKIE, USER_AGENT};

use crate::app::AppState;
use crate::crypto::{SecretKind, hash_secret, new_secret};
use crate::store::{SessionRow, StoreError, UserRow};

pub const SESSION_TTL_SECS: i64 = 12 * 3_600;

pub fn session_cookie_name(secure: bool) -> &'static str {
    if secure { "__Host-gatehouse_session" } else { "gatehouse_session" }
}

pub fn csrf_cookie_name(secure: bool) -> &'static str {
    if secure { "__Host-gatehouse_csrf" } else { "gatehouse_csrf" }
}

/// Reads one cookie from the request headers.
pub fn read_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// A `Set-Cookie` value with our fixed attributes; `max_age` 0 deletes.
pub fn cookie(name: &str, value: &str, max_age: i64, secure: bool) -> String {
    let secure_attr = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure_attr}")
}

/// The signed-in person and their session's token hash (binds consent forms to the session).
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub user: UserRow,
    pub session_hash: String,
}

/// The person this request's session cookie belongs to, if it is live.
pub async fn current(state: &AppState, headers: &HeaderMap) -> Result<Option<SignedIn>, StoreError> {
    let Some(token) = read_cookie(headers, session_cookie_name(state.settings.is_https())) else {
        return Ok(None);
    };
    let hash = hash_secret(&token);
    let Some(session) = state.store.live_session(&hash, state.clock.now()).await? else {
        return Ok(None);
    };
    Ok(state.store.user_by_id(&session.user_id).await?.map(|user| SignedIn { user, session_hash: hash }))
}

/// Starts a session; returns the `Set-Cookie` value.
pub async fn start(
    state: &AppState,
    user: &UserRow,
    headers: &HeaderMap,
) -> Result<String, crate::oauth::error::OAuthError> {
    let token = new_secret(SecretKind::BrowserSession)?;
    let now = state.clock.now();
    let row = SessionRow {
        token_hash: hash_secret(&token),
        user_id: user.id.clone(),
        created_at: now,
        expires_at: now + SESSION_TTL_SECS,
    };
    let agent = headers.get(USER_AGENT).and_then(|v| v.to_str().ok()).map(|s| s.chars().take(200).collect::<String>());
    state.store.insert_session(&row, agent.as_deref()).await?;
    let secure = state.settings.is_https();
    Ok(cookie(session_cookie_name(secure), &token, SESSION_TTL_SECS, secure))
}
