//! A person's own account at an upstream: the Connect page (any member), the Connect and
//! Disconnect buttons, and the callback the upstream's authorization server sends the browser
//! back to (`/oauth/upstream/callback`).

use std::net::SocketAddr;

use askama::Template;
use axum::extract::{ConnectInfo, OriginalUri, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};

use super::PageError;
use super::form::PageForm;
use super::format::When;
use super::layout::{Done, Nav};
use super::pages::render;
use super::viewer::{Person, Reject, Viewer};
use crate::app::AppState;
use crate::audit::{Actor, Event, EventKind};
use crate::vault::connect::{self, ConnectError};
use crate::vault::{GrantKind, Owner};

#[derive(Template)]
#[template(path = "upstream_connect.html")]
pub struct ConnectPage {
    pub nav: Nav,
    pub slug: String,
    pub name: String,
    pub connectable: bool,
    pub connected: bool,
    pub needs_reconnect: bool,
    pub problem: Option<String>,
    pub scope: Option<String>,
    pub expires: Option<String>,
    pub error: Option<String>,
    /// Origin of the upstream's authorization endpoint, where the Connect form's redirect goes.
    pub sign_in_origin: Option<String>,
}

/// Browsers apply `form-action` to the redirect that follows a form post, so the page with the
/// Connect button must allow the upstream's authorization server besides ourselves.
fn render_connect(page: &ConnectPage) -> Response {
    let mut res = render(page);
    if let Some(origin) = &page.sign_in_origin {
        let csp = super::DEFAULT_CSP.replace("form-action 'self'", &format!("form-action 'self' {origin}"));
        if let Ok(value) = HeaderValue::from_str(&csp) {
            res.headers_mut().insert(header::CONTENT_SECURITY_POLICY, value);
        }
    }
    res
}

/// The origin of an http(s) URL, as CSP names it.
fn origin_of(endpoint: &str) -> Option<String> {
    let url = url::Url::parse(endpoint).ok()?;
    matches!(url.scheme(), "http" | "https").then(|| url.origin().ascii_serialization())
}

async fn upstream_id(state: &AppState, viewer: &Viewer, name: &str) -> Result<String, Reject> {
    let row = state.store.upstream_by_name(&viewer.ws.id, name).await?.ok_or_else(|| {
        Reject::Page(PageError::new(StatusCode::NOT_FOUND, "No such upstream", "It may have been removed."))
    })?;
    Ok(row.id)
}

async fn page(state: &AppState, viewer: &Viewer, name: &str, nav: Nav) -> Result<ConnectPage, Reject> {
    let id = upstream_id(state, viewer, name).await?;
    let vault_error = |e: crate::vault::VaultError| Reject::Page(PageError::internal(e));
    let credential = state.vault.credential(&id).await.map_err(vault_error)?;
    let status = state.vault.status(&id, Owner::Person(&viewer.user().id)).await.map_err(vault_error)?;
    let now = state.clock.now();
    let sign_in_origin = credential.as_ref().and_then(|c| c.authorization_endpoint.as_deref()).and_then(origin_of);
    Ok(ConnectPage {
        sign_in_origin,
        nav,
        slug: viewer.ws.slug.clone(),
        name: name.to_owned(),
        connectable: credential.is_some_and(|c| c.grant == GrantKind::AuthorizationCode),
        connected: status.as_ref().is_some_and(|s| !s.needs_reconnect),
        needs_reconnect: status.as_ref().is_some_and(|s| s.needs_reconnect),
        problem: status.as_ref().and_then(|s| s.problem.clone()),
        scope: status.as_ref().and_then(|s| s.scope.clone()),
        expires: status.as_ref().and_then(|s| s.expires_at).map(|at| When::at(at, now).relative),
        error: None,
    })
}

/// GET: the person's connection to this upstream.
pub async fn connect_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path((slug, name)): Path<(String, String)>,
    Query(done): Query<Done>,
) -> Result<Response, Reject> {
    let viewer = Viewer::load(&state, &headers, &uri, &slug).await?;
    let nav = Nav::for_workspace(&viewer, "upstreams").with_notice(done.notice());
    Ok(render_connect(&page(&state, &viewer, &name, nav).await?))
}

/// POST: starts the authorization at the upstream's server.
pub async fn connect_start(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((slug, name)): Path<(String, String)>,
    form: PageForm,
) -> Result<Response, Reject> {
    let viewer = Viewer::load_for_post(&state, &headers, &form, &slug).await?;
    let id = upstream_id(&state, &viewer, &name).await?;
    let discovered = discover_if_needed(&state, &viewer, &id).await;
    let started = match discovered {
        Err(error) => Err(error),
        // The page this form came from could not name the server just discovered in its
        // form-action, so a browser would block the redirect there: back to the page (which
        // now names it), where Connect goes straight to the server.
        Ok(true) => return Ok(viewer.back_to(&format!("upstreams/{name}/connect?done=upstream-discovered"))),
        Ok(false) => {
            connect::begin(
                &state.vault,
                &state.store,
                &id,
                &viewer.user().id,
                &viewer.person.session_hash,
                &state.settings.public_url,
            )
            .await
        }
    };
    match started {
        Ok(url) => Ok(Redirect::to(&url).into_response()),
        Err(error) => {
            let mut page = page(&state, &viewer, &name, Nav::for_workspace(&viewer, "upstreams")).await?;
            page.error = Some(error.to_string());
            let mut res = render_connect(&page);
            *res.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            Ok(res)
        }
    }
}

/// An HTTP upstream without sign-in settings may still want a token (it answers 401): then
/// its sign-in is discovered and registered the MCP way, once, by whoever connects first.
/// `Ok(true)` when that happened now.
async fn discover_if_needed(state: &AppState, viewer: &Viewer, upstream_id: &str) -> Result<bool, ConnectError> {
    if state.vault.credential(upstream_id).await?.is_some() {
        return Ok(false);
    }
    let Some(row) = state.store.upstream_by_id(upstream_id).await?.filter(|row| row.workspace_id == viewer.ws.id)
    else {
        return Err(ConnectError::NotConnectable);
    };
    let Some(url) = row.url.filter(|_| row.kind == "http") else { return Err(ConnectError::NotConnectable) };
    let loopback = state.settings.cimd.allow_loopback_hosts.clone();
    match connect::discover_sign_in(&state.vault, upstream_id, &url, &state.settings.public_url, loopback).await? {
        true => Ok(true),
        false => Err(ConnectError::NotConnectable),
    }
}

/// POST: forgets the person's tokens for this upstream.
pub async fn disconnect(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((slug, name)): Path<(String, String)>,
    form: PageForm,
) -> Result<Response, Reject> {
    let viewer = Viewer::load_for_post(&state, &headers, &form, &slug).await?;
    let id = upstream_id(&state, &viewer, &name).await?;
    state
        .vault
        .disconnect(&id, Owner::Person(&viewer.user().id))
        .await
        .map_err(|e| Reject::Page(PageError::internal(e)))?;
    Ok(viewer.back_to(&format!("upstreams/{name}/connect?done=upstream-disconnected")))
}

/// GET `/oauth/upstream/callback`: the upstream's authorization server sends the browser back.
pub async fn callback(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
) -> Result<Response, Reject> {
    let person = Person::load(&state, &headers, &uri).await?;
    let full = format!("{}{}", state.settings.public_url.trim_end_matches('/'), uri);
    let failed = |error: &ConnectError| {
        let status = match error {
            ConnectError::Vault(crate::vault::VaultError::Store(_) | crate::vault::VaultError::Crypto(_)) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            ConnectError::Vault(crate::vault::VaultError::Unavailable(_)) => StatusCode::BAD_GATEWAY,
            ConnectError::UnknownState
            | ConnectError::Replayed
            | ConnectError::Expired
            | ConnectError::OtherBrowser
            | ConnectError::Refused(_)
            | ConnectError::NotConnectable
            | ConnectError::Discovery(_)
            | ConnectError::Vault(_) => StatusCode::BAD_REQUEST,
        };
        Reject::Page(PageError::new(status, "The account was not connected", error.to_string()))
    };
    let connected = connect::finish(&state.vault, &state.store, &person.session_hash, &full).await.map_err(|e| {
        tracing::info!(error = %e, "an upstream connection did not complete");
        failed(&e)
    })?;
    let upstream = state.store.upstream_by_id(&connected.upstream_id).await?.ok_or_else(|| {
        Reject::Page(PageError::new(StatusCode::NOT_FOUND, "No such upstream", "It was removed meanwhile."))
    })?;
    let ws = state.store.workspace_by_id(&upstream.workspace_id).await?;
    let event = Event::new(EventKind::UpstreamAccountConnected, Actor::user(&person.user))
        .workspace(&upstream.workspace_id)
        .subject(Some(&upstream.id), &upstream.name)
        .source(peer.ip());
    state.audit(event).await;
    let slug = ws.map(|w| w.slug).unwrap_or_default();
    Ok(Redirect::to(&format!("/w/{slug}/upstreams/{}/connect?done=upstream-connected", upstream.name)).into_response())
}
