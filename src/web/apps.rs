//! Connected apps (one row per person and app) and Sessions (one row per live refresh-token
//! family). Members see and revoke their own; owners see and revoke everyone's.

use std::net::SocketAddr;

use askama::Template;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;

use super::PageError;
use super::form::PageForm;
use super::format::When;
use super::layout::{Done, Nav};
use super::pages::{ScopeLine, registration_label, render};
use super::viewer::{Reject, Viewer};
use crate::app::AppState;
use crate::audit::{Actor, Event, EventKind};
use crate::oauth::scope::{ScopeSet, describe};

pub fn scope_lines(scope: &str) -> Vec<ScopeLine> {
    ScopeSet::from_stored(scope).iter().map(|s| ScopeLine { name: s.to_owned(), description: describe(s) }).collect()
}

pub struct AppLine {
    pub user_id: String,
    pub email: String,
    pub client_id: String,
    pub client_name: String,
    pub how: &'static str,
    pub scopes: Vec<ScopeLine>,
    pub consented: When,
    pub last_used: Option<When>,
    pub live: i64,
}

#[derive(Template)]
#[template(path = "apps.html")]
pub struct AppsPage {
    pub nav: Nav,
    pub ws_name: String,
    pub slug: String,
    pub mcp_url: String,
    pub everyone: bool,
    pub rows: Vec<AppLine>,
}

pub async fn apps(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(slug): Path<String>,
    Query(done): Query<Done>,
) -> Result<Response, Reject> {
    let viewer = Viewer::load(&state, &headers, &uri, &slug).await?;
    let now = state.clock.now();
    let rows = state
        .store
        .connected_apps(&viewer.ws.id, viewer.only_own())
        .await?
        .into_iter()
        .map(|r| AppLine {
            how: registration_label(&r.client_source),
            scopes: scope_lines(&r.scope),
            consented: When::at(r.consented_at, now),
            last_used: When::maybe(r.last_used_at, now),
            live: r.live_grants,
            user_id: r.user_id,
            email: r.email,
            client_id: r.client_id,
            client_name: r.client_name,
        })
        .collect();
    let page = AppsPage {
        nav: Nav::for_workspace(&viewer, "apps").with_notice(done.notice()),
        ws_name: viewer.ws.name.clone(),
        slug: viewer.ws.slug.clone(),
        mcp_url: state.mcp_url(&viewer.ws.slug),
        everyone: viewer.is_owner(),
        rows,
    };
    Ok(render(&page))
}

/// POST: disconnects one app from one person (a member may only name themselves).
pub async fn revoke_app(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(slug): Path<String>,
    form: PageForm,
) -> Result<Response, Reject> {
    let viewer = Viewer::load_for_post(&state, &headers, &form, &slug).await?;
    let (Some(client_id), Some(user_id)) = (form.get("client_id"), form.get("user_id")) else {
        return Err(PageError::bad_request("Nothing to revoke", "Choose an app from the list.").into());
    };
    if viewer.only_own().is_some_and(|me| me != user_id) {
        return Err(super::viewer::forbidden("You can only revoke your own apps."));
    }
    let now = state.clock.now();
    let (grants, had_consent) = state
        .store
        .revoke_connection(&viewer.ws.id, user_id, client_id, now, "revoked on the Connected apps page")
        .await?;
    if grants > 0 || had_consent {
        let client = state.store.client_by_id(client_id).await?;
        let person = state.store.user_by_id(user_id).await?;
        let event = Event::new(EventKind::ConsentRevoked, Actor::user(viewer.user()))
            .workspace(&viewer.ws.id)
            .subject(Some(client_id), client.as_ref().map_or(client_id, |c| c.client_name.as_str()))
            .source(peer.ip())
            .detail("person", person.map(|p| p.email).unwrap_or_default())
            .detail("grants_revoked", grants);
        state.audit(event).await;
    }
    Ok(viewer.back_to("apps?done=app-revoked"))
}

pub struct SessionLine {
    pub grant_id: String,
    pub email: String,
    pub client_name: String,
    pub scopes: Vec<ScopeLine>,
    pub started: When,
    pub last_used: Option<When>,
    pub expires: When,
}

#[derive(Template)]
#[template(path = "sessions.html")]
pub struct SessionsPage {
    pub nav: Nav,
    pub ws_name: String,
    pub slug: String,
    pub everyone: bool,
    pub rows: Vec<SessionLine>,
}

pub async fn sessions(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(slug): Path<String>,
    Query(done): Query<Done>,
) -> Result<Response, Reject> {
    let viewer = Viewer::load(&state, &headers, &uri, &slug).await?;
    let now = state.clock.now();
    let rows = state
        .store
        .session_families(&viewer.ws.id, viewer.only_own(), now)
        .await?
        .into_iter()
        .map(|r| SessionLine {
            scopes: scope_lines(&r.scope),
            started: When::at(r.started_at, now),
            last_used: When::maybe(r.last_used_at, now),
            expires: When::at(r.expires_at, now),
            grant_id: r.grant_id,
            email: r.email.unwrap_or_else(|| "(no person)".into()),
            client_name: r.client_name,
        })
        .collect();
    let page = SessionsPage {
        nav: Nav::for_workspace(&viewer, "sessions").with_notice(done.notice()),
        ws_name: viewer.ws.name.clone(),
        slug: viewer.ws.slug.clone(),
        everyone: viewer.is_owner(),
        rows,
    };
    Ok(render(&page))
}

/// POST: revokes one refresh-token family (a member's own only).
pub async fn revoke_session(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(slug): Path<String>,
    form: PageForm,
) -> Result<Response, Reject> {
    let viewer = Viewer::load_for_post(&state, &headers, &form, &slug).await?;
    let Some(grant_id) = form.get("grant_id") else {
        return Err(PageError::bad_request("Nothing to revoke", "Choose a session from the list.").into());
    };
    let now = state.clock.now();
    let revoked = state
        .store
        .revoke_grant_in(&viewer.ws.id, grant_id, viewer.only_own(), now, "revoked on the Sessions page")
        .await?;
    if !revoked {
        return Err(PageError::new(
            axum::http::StatusCode::NOT_FOUND,
            "No such session",
            "It may have been revoked already, or it is not yours to revoke.",
        )
        .into());
    }
    let grant = state.store.grant_by_id(grant_id).await?;
    let client = match &grant {
        Some(g) => state.store.client_by_id(&g.client_id).await?,
        None => None,
    };
    let event = Event::new(EventKind::GrantRevoked, Actor::user(viewer.user()))
        .workspace(&viewer.ws.id)
        .subject(client.as_ref().map(|c| c.id.as_str()), client.as_ref().map_or("", |c| c.client_name.as_str()))
        .source(peer.ip())
        .detail("grant", grant_id)
        .detail("by", "the Sessions page");
    state.audit(event).await;
    Ok(viewer.back_to("sessions?done=session-revoked"))
}
