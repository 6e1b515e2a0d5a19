//! The login page, logout, and the signed-in home page.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::session::{self, cookie, csrf_cookie_name, read_cookie, session_cookie_name};
use crate::app::AppState;
use crate::crypto::{SecretKind, hash_secret, new_secret};
use crate::oauth::params::FormParams;
use crate::web::PageError;
use crate::web::csrf::double_submit_ok;
use crate::web::pages::{HomePage, LoginPage, WorkspaceLine, render};
use crate::workspace::mcp_url;

#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// Only same-origin paths may follow a login: no `//host`, no `/\host`, no scheme.
pub fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && !n.chars().any(char::is_control) =>
        {
            n
        }
        _ => "/",
    }
}

/// The double-submit CSRF token of this browser, minting one (and its cookie) if needed.
fn csrf_token(state: &AppState, headers: &HeaderMap) -> Result<(String, Option<String>), PageError> {
    let secure = state.settings.is_https();
    match read_cookie(headers, csrf_cookie_name(secure)).filter(|t| t.len() >= 32) {
        Some(t) => Ok((t, None)),
        None => {
            let t = new_secret(SecretKind::BrowserSession)?;
            let set = cookie(csrf_cookie_name(secure), &t, 12 * 3_600, secure);
            Ok((t, Some(set)))
        }
    }
}

fn with_cookies(mut res: Response, cookies: impl IntoIterator<Item = String>) -> Response {
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(&c) {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    res
}

pub async fn login_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Result<Response, PageError> {
    let next = safe_next(q.next.as_deref());
    if session::current(&state, &headers).await?.is_some() {
        return Ok(Redirect::to(next).into_response());
    }
    let (token, set) = csrf_token(&state, &headers)?;
    let page = LoginPage { csrf: &token, next, email: "", error: None };
    Ok(with_cookies(render(&page), set))
}

pub async fn login_submit(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    FormParams(form): FormParams,
) -> Result<Response, PageError> {
    let secure = state.settings.is_https();
    let cookie_token = read_cookie(&headers, csrf_cookie_name(secure));
    if !double_submit_ok(cookie_token.as_deref(), form.get("csrf")) {
        return Err(PageError::new(
            StatusCode::FORBIDDEN,
            "This form has expired",
            "Go back, reload the sign-in page and try again. (Cookies must be enabled.)",
        ));
    }
    let now = state.clock.now();
    if let Some(wait) = state.login_throttle.blocked_for(peer.ip(), now) {
        return Err(PageError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many failed sign-in attempts",
            format!("Sign-in from your address is paused; try again in {} minutes.", (wait + 59) / 60),
        ));
    }
    let next = safe_next(form.get("next")).to_owned();
    let email = form.get("email").unwrap_or_default().trim().to_lowercase();
    let password = form.get("password").unwrap_or_default().to_owned();
    let user = state.store.user_by_email(&email).await?;
    let ok = super::password::verify_async(password, user.as_ref().and_then(|u| u.password_hash.clone())).await;
    let (Some(user), true) = (user, ok) else {
        state.login_throttle.record_failure(peer.ip(), now);
        let token = cookie_token.unwrap_or_default();
        let page = LoginPage { csrf: &token, next: &next, email: &email, error: Some("Wrong email or password.") };
        let mut res = render(&page);
        *res.status_mut() = StatusCode::UNAUTHORIZED;
        return Ok(res);
    };
    tracing::info!(user = %user.id, "signed in");
    let set = session::start(&state, &user, &headers).await.map_err(|e| PageError::internal(e.description))?;
    Ok(with_cookies(Redirect::to(&next).into_response(), [set]))
}

pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    FormParams(form): FormParams,
) -> Result<Response, PageError> {
    let secure = state.settings.is_https();
    if !double_submit_ok(read_cookie(&headers, csrf_cookie_name(secure)).as_deref(), form.get("csrf")) {
        return Err(PageError::new(StatusCode::FORBIDDEN, "This form has expired", "Reload the page and try again."));
    }
    if let Some(token) = read_cookie(&headers, session_cookie_name(secure)) {
        state.store.delete_session(&hash_secret(&token)).await?;
    }
    let clear = cookie(session_cookie_name(secure), "", 0, secure);
    Ok(with_cookies(Redirect::to("/login").into_response(), [clear]))
}

pub async fn home(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, PageError> {
    let Some(signed_in) = session::current(&state, &headers).await? else {
        return Ok(Redirect::to("/login").into_response());
    };
    let (token, set) = csrf_token(&state, &headers)?;
    let workspaces = state
        .store
        .workspaces_of_user(&signed_in.user.id)
        .await?
        .into_iter()
        .map(|w| WorkspaceLine { mcp_url: mcp_url(&state.settings.public_url, &w.slug), name: w.name, slug: w.slug })
        .collect();
    let page = HomePage { email: &signed_in.user.email, csrf: &token, workspaces };
    Ok(with_cookies(render(&page), set))
}
