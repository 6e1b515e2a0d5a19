//! The login page and logout.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::session::{self, cookie, csrf_cookie_name, read_cookie, session_cookie_name};
use crate::app::AppState;
use crate::audit::{Actor, Event, EventKind};
use crate::crypto::{SecretKind, hash_secret, new_secret};
use crate::oauth::params::FormParams;
use crate::web::PageError;
use crate::web::csrf::double_submit_ok;
use crate::web::pages::{LoginPage, ProviderButton, render};
use crate::web::viewer::csrf_ok;

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
pub(crate) fn csrf_token(state: &AppState, headers: &HeaderMap) -> Result<(String, Option<String>), PageError> {
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

pub(crate) fn with_cookies(mut res: Response, cookies: impl IntoIterator<Item = String>) -> Response {
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(&c) {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    res
}

/// A "Continue with ..." button per identity provider, carrying where to go afterwards.
fn provider_buttons(state: &AppState, next: &str) -> Vec<ProviderButton> {
    let next: String = form_urlencoded::byte_serialize(next.as_bytes()).collect();
    state
        .oidc
        .buttons()
        .map(|(id, name)| ProviderButton { name: name.to_owned(), href: format!("/login/oidc/{id}?next={next}") })
        .collect()
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
    let providers = provider_buttons(&state, next);
    let page = LoginPage {
        csrf: &token,
        next,
        email: "",
        error: None,
        providers: &providers,
        password_login: state.settings.password_login,
    };
    Ok(with_cookies(render(&page), set))
}

pub async fn login_submit(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    FormParams(form): FormParams,
) -> Result<Response, PageError> {
    if !state.settings.password_login {
        return Err(PageError::new(
            StatusCode::FORBIDDEN,
            "Passwords are switched off",
            "Sign in with your organisation's identity provider on the sign-in page.",
        ));
    }
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
    let (Some(user), true) = (user.clone(), ok) else {
        state.login_throttle.record_failure(peer.ip(), now);
        let actor = match &user {
            Some(u) => Actor::user(u),
            None => Actor::unverified(&email),
        };
        let reason = if user.is_some() { "wrong password" } else { "no such account" };
        state.audit(Event::new(EventKind::SignInFailed, actor).source(peer.ip()).detail("reason", reason)).await;
        let token = cookie_token.unwrap_or_default();
        let providers = provider_buttons(&state, &next);
        let page = LoginPage {
            csrf: &token,
            next: &next,
            email: &email,
            error: Some("Wrong email or password."),
            providers: &providers,
            password_login: true,
        };
        let mut res = render(&page);
        *res.status_mut() = StatusCode::UNAUTHORIZED;
        return Ok(res);
    };
    state.audit(Event::new(EventKind::SignIn, Actor::user(&user)).source(peer.ip()).detail("method", "password")).await;
    let set = session::start(&state, &user, &headers).await.map_err(|e| PageError::internal(e.description))?;
    Ok(with_cookies(Redirect::to(&next).into_response(), [set]))
}

pub async fn logout(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    FormParams(form): FormParams,
) -> Result<Response, PageError> {
    let secure = state.settings.is_https();
    let signed_in = session::current(&state, &headers).await?;
    // The sign-out button of signed-in pages carries the session's page token; the login
    // page's double-submitted token is accepted too.
    let page_token_ok = signed_in.as_ref().is_some_and(|s| csrf_ok(&state, &s.session_hash, form.get("csrf")));
    if !page_token_ok && !double_submit_ok(read_cookie(&headers, csrf_cookie_name(secure)).as_deref(), form.get("csrf"))
    {
        return Err(PageError::new(StatusCode::FORBIDDEN, "This form has expired", "Reload the page and try again."));
    }
    if let Some(token) = read_cookie(&headers, session_cookie_name(secure)) {
        state.store.delete_session(&hash_secret(&token)).await?;
    }
    if let Some(who) = signed_in {
        state.audit(Event::new(EventKind::SignOut, Actor::user(&who.user)).source(peer.ip())).await;
    }
    let clear = cookie(session_cookie_name(secure), "", 0, secure);
    Ok(with_cookies(Redirect::to("/login").into_response(), [clear]))
}
