//! The authorization code flow with PKCE (S256), `state` and `nonce`:
//! `GET /login/oidc/{id}` sends the browser to the provider, `GET /login/oidc/{id}/callback`
//! takes the answer, redeems the code, verifies the ID token, and signs the person in.
//!
//! The browser gets a random cookie (ten minutes). The state row stores only hashes: of the
//! state, and of that cookie (binding the sign-in to this browser). The PKCE verifier and the
//! nonce are derived from the cookie and the state, so nothing secret is stored and a state
//! copied to another browser is useless. A state is consumed by its first callback.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Query, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::Value;

use super::account::{Identity, account_for, sync_memberships};
use super::error::OidcError;
use super::id_token::{self, Expected};
use super::provider::{ProviderRuntime, post_form};
use crate::app::AppState;
use crate::audit::{Actor, Event, EventKind};
use crate::crypto::{constant_time_eq, hash_secret, random_bytes, sha256_b64url};
use crate::identity::login::{safe_next, with_cookies};
use crate::identity::session::{self, cookie, read_cookie};
use crate::store::OidcLoginState;

/// How long a sign-in may take at the provider.
pub const STATE_TTL_SECS: i64 = 600;

pub fn browser_cookie_name(secure: bool) -> &'static str {
    if secure { "__Host-gatehouse_oidc" } else { "gatehouse_oidc" }
}

fn derive(purpose: &str, browser_secret: &str, state: &str) -> String {
    sha256_b64url(format!("gatehouse oidc {purpose}\0{browser_secret}\0{state}").as_bytes())
}

fn random_token() -> Result<String, OidcError> {
    Ok(URL_SAFE_NO_PAD.encode(random_bytes::<32>()?))
}

pub fn redirect_uri(state: &AppState, provider_id: &str) -> String {
    format!("{}/login/oidc/{provider_id}/callback", state.settings.public_url)
}

#[derive(Deserialize)]
pub struct StartQuery {
    next: Option<String>,
}

/// GET /login/oidc/{id}
pub async fn start(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<StartQuery>,
) -> Response {
    let Some(provider) = state.oidc.get(&id) else {
        return OidcError::UnknownProvider.page(&id).into_response();
    };
    match start_inner(&state, provider, &headers, safe_next(q.next.as_deref())).await {
        Ok(res) => res,
        Err(e) => fail(&state, provider, peer, None, e).await,
    }
}

async fn start_inner(
    state: &AppState,
    provider: &ProviderRuntime,
    headers: &HeaderMap,
    next: &str,
) -> Result<Response, OidcError> {
    let now = state.clock.now();
    let discovery = provider.discovery(&state.oidc.http, now).await?;
    let secure = state.settings.is_https();
    // One cookie per browser, shared by sign-ins started in several tabs; set again each time
    // so it outlives the newest state.
    let browser_secret = match read_cookie(headers, browser_cookie_name(secure)).filter(|c| c.len() >= 43) {
        Some(c) => c,
        None => random_token()?,
    };
    let set_cookie = cookie(browser_cookie_name(secure), &browser_secret, STATE_TTL_SECS, secure);
    let login_state = random_token()?;
    let row = OidcLoginState {
        provider_id: provider.config.id.clone(),
        browser_hash: hash_secret(&browser_secret),
        next_path: next.to_owned(),
    };
    state.store.insert_oidc_login_state(&hash_secret(&login_state), &row, now, now + STATE_TTL_SECS).await?;
    let verifier = derive("pkce", &browser_secret, &login_state);
    let nonce = derive("nonce", &browser_secret, &login_state);
    let mut url = url::Url::parse(&discovery.authorization_endpoint)
        .map_err(|e| OidcError::ProviderGarbage(format!("its authorization_endpoint is not a URL ({e})")))?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &provider.config.client_id)
        .append_pair("redirect_uri", &redirect_uri(state, &provider.config.id))
        .append_pair("scope", &provider.config.scopes.join(" "))
        .append_pair("state", &login_state)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &sha256_b64url(verifier.as_bytes()))
        .append_pair("code_challenge_method", "S256");
    let res = Redirect::to(url.as_str()).into_response();
    Ok(with_cookies(res, [set_cookie]))
}

/// GET /login/oidc/{id}/callback
pub async fn callback(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(provider) = state.oidc.get(&id) else {
        return OidcError::UnknownProvider.page(&id).into_response();
    };
    let params = CallbackParams(
        form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect(),
    );
    let mut seen_email = None;
    match callback_inner(&state, provider, &headers, peer, &params, &mut seen_email).await {
        Ok(res) => res,
        Err(e) => fail(&state, provider, peer, seen_email.as_deref(), e).await,
    }
}

/// The callback's query parameters (the first of each name counts).
struct CallbackParams(Vec<(String, String)>);

impl CallbackParams {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

async fn callback_inner(
    state: &AppState,
    provider: &ProviderRuntime,
    headers: &HeaderMap,
    peer: SocketAddr,
    params: &CallbackParams,
    seen_email: &mut Option<String>,
) -> Result<Response, OidcError> {
    let config = &provider.config;
    let param = |name: &str| params.get(name);
    let now = state.clock.now();
    let login_state = param("state").filter(|s| !s.is_empty()).ok_or(OidcError::StateInvalid)?;
    let row =
        state.store.consume_oidc_login_state(&hash_secret(login_state), now).await?.ok_or(OidcError::StateInvalid)?;
    let secure = state.settings.is_https();
    let browser_secret = read_cookie(headers, browser_cookie_name(secure)).unwrap_or_default();
    if !constant_time_eq(&hash_secret(&browser_secret), &row.browser_hash) {
        return Err(OidcError::OtherBrowser);
    }
    if row.provider_id != config.id {
        return Err(OidcError::ProviderMismatch);
    }
    // RFC 9207: a provider that names itself must name the right issuer.
    if let Some(iss) = param("iss")
        && iss != config.issuer
    {
        return Err(OidcError::IssuerParameterMismatch);
    }
    if let Some(error) = param("error") {
        let clean = |s: &str| s.chars().filter(|c| !c.is_control()).take(200).collect::<String>();
        return Err(OidcError::Denied { error: clean(error), description: param("error_description").map(clean) });
    }
    let code = param("code").filter(|c| !c.is_empty()).ok_or(OidcError::MissingCode)?;
    let discovery = provider.discovery(&state.oidc.http, now).await?;
    let verifier = derive("pkce", &browser_secret, login_state);
    let redirect = redirect_uri(state, &config.id);
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect.as_str()),
        ("code_verifier", verifier.as_str()),
    ];
    let methods = discovery.token_endpoint_auth_methods_supported.as_deref().unwrap_or_default();
    let use_post =
        !methods.iter().any(|m| m == "client_secret_basic") && methods.iter().any(|m| m == "client_secret_post");
    let basic = match &config.client_secret {
        Some(secret) if !use_post => Some((config.client_id.as_str(), secret.expose())),
        Some(secret) => {
            form.push(("client_id", config.client_id.as_str()));
            form.push(("client_secret", secret.expose()));
            None
        }
        None => {
            form.push(("client_id", config.client_id.as_str()));
            None
        }
    };
    let (status, body) = post_form(&state.oidc.http, &discovery.token_endpoint, &form, basic).await?;
    if status >= 500 {
        return Err(OidcError::ProviderUnavailable(format!("its token endpoint answered HTTP {status}")));
    }
    if !(200..300).contains(&status) {
        let error = body.get("error").and_then(Value::as_str).unwrap_or("no error code");
        return Err(OidcError::TokenRefused(format!("HTTP {status}, {}", error.chars().take(80).collect::<String>())));
    }
    if body.is_null() {
        return Err(OidcError::ProviderGarbage("its token endpoint answered something that is not JSON".into()));
    }
    let token = body.get("id_token").and_then(Value::as_str).ok_or(OidcError::NoIdToken)?;
    let (alg, kid) = id_token::inspect_header(token, &discovery.allowed_algs())?;
    let key = provider
        .key(&state.oidc.http, &discovery.jwks_uri, kid.as_deref(), alg, now)
        .await?
        .ok_or(id_token::IdTokenError::UnknownKey)?;
    let nonce = derive("nonce", &browser_secret, login_state);
    let expected = Expected { issuer: &config.issuer, client_id: &config.client_id, nonce: &nonce, now };
    let claims = id_token::verify(token, &key, alg, &expected)?;
    let identity = Identity::from_claims(config, &claims)?;
    seen_email.clone_from(&identity.email);
    identity.check_domain(config)?;
    let (user, account) = account_for(state, config, &identity).await?;
    if let Some(groups) = &identity.groups {
        sync_memberships(state, config, &user, groups, peer.ip()).await?;
    }
    let event = Event::new(EventKind::SignIn, Actor::user(&user))
        .source(peer.ip())
        .detail("method", "oidc")
        .detail("provider", config.id.as_str())
        .detail("account", account.as_str());
    state.audit(event).await;
    let set = session::start(state, &user, headers).await.map_err(|e| OidcError::Session(e.description))?;
    Ok(with_cookies(Redirect::to(&row.next_path).into_response(), [set]))
}

/// Records the failure and shows its page. Nobody is signed in.
async fn fail(
    state: &AppState,
    provider: &ProviderRuntime,
    peer: SocketAddr,
    email: Option<&str>,
    e: OidcError,
) -> Response {
    let config = &provider.config;
    let actor = Actor::unverified(email.unwrap_or(&format!("unknown person at {}", config.id)));
    let mut event = Event::new(EventKind::SignInFailed, actor)
        .source(peer.ip())
        .detail("method", "oidc")
        .detail("provider", config.id.as_str())
        .detail("reason", e.as_reason());
    if let OidcError::Denied { error, .. } = &e {
        event = event.detail("provider_error", error.as_str());
    }
    if let OidcError::Store(_) | OidcError::Crypto(_) | OidcError::Session(_) = &e {
        tracing::error!(error = %e, provider = %config.id, "OIDC sign-in failed inside Gatehouse");
    } else {
        tracing::info!(error = %e, provider = %config.id, "OIDC sign-in refused");
    }
    state.audit(event).await;
    e.page(&config.name).into_response()
}
