//! Machine tokens of a workspace: create (name, scopes, expiry: 90 days by default, at most a
//! year; shown once), list and revoke. Members see and revoke the tokens they made; owners
//! see and revoke all, including those made with the CLI.

use std::net::SocketAddr;

use askama::Template;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;

use super::PageError;
use super::apps::scope_lines;
use super::form::PageForm;
use super::format::When;
use super::layout::{Done, Nav};
use super::pages::{ScopeLine, render};
use super::viewer::{Reject, Viewer};
use crate::app::AppState;
use crate::audit::{Actor, Event, EventKind};
use crate::oauth::machine::{self, DEFAULT_TTL_SECS, MAX_TTL_SECS, MachineTokenError};
use crate::oauth::scope::KNOWN_SCOPES;

pub struct TokenLine {
    pub id: String,
    pub name: String,
    pub scopes: Vec<ScopeLine>,
    pub creator: String,
    pub created: When,
    pub expires: When,
    pub live: bool,
    pub status: &'static str,
    pub status_class: &'static str,
}

pub struct ScopeChoice {
    pub name: &'static str,
    pub description: &'static str,
    pub checked: bool,
}

pub struct CreatedToken {
    pub name: String,
    pub token: String,
    pub expires: When,
}

#[derive(Template)]
#[template(path = "tokens.html")]
pub struct TokensPage {
    pub nav: Nav,
    pub ws_name: String,
    pub slug: String,
    pub mcp_url: String,
    pub everyone: bool,
    pub rows: Vec<TokenLine>,
    pub created: Option<CreatedToken>,
    pub error: Option<String>,
    pub form_name: String,
    pub form_days: i64,
    pub scope_choices: Vec<ScopeChoice>,
}

fn choices(checked: &[&str]) -> Vec<ScopeChoice> {
    KNOWN_SCOPES
        .iter()
        .map(|(name, description)| ScopeChoice { name, description, checked: checked.contains(name) })
        .collect()
}

impl TokensPage {
    async fn load(state: &AppState, viewer: &Viewer, nav: Nav) -> Result<Self, Reject> {
        let now = state.clock.now();
        let rows = state
            .store
            .machine_tokens_listed(&viewer.ws.id, viewer.only_own())
            .await?
            .into_iter()
            .map(|(t, creator)| {
                let (live, status, status_class) = match (t.revoked_at, t.expires_at <= now) {
                    (Some(_), _) => (false, "revoked", "bad"),
                    (None, true) => (false, "expired", "warn"),
                    (None, false) => (true, "active", "ok"),
                };
                TokenLine {
                    scopes: scope_lines(&t.scope),
                    creator: creator.unwrap_or_else(|| "command line".into()),
                    created: When::at(t.created_at, now),
                    expires: When::at(t.expires_at, now),
                    live,
                    status,
                    status_class,
                    id: t.id,
                    name: t.name,
                }
            })
            .collect();
        Ok(TokensPage {
            nav,
            ws_name: viewer.ws.name.clone(),
            slug: viewer.ws.slug.clone(),
            mcp_url: state.mcp_url(&viewer.ws.slug),
            everyone: viewer.is_owner(),
            rows,
            created: None,
            error: None,
            form_name: String::new(),
            form_days: DEFAULT_TTL_SECS / 86_400,
            scope_choices: choices(&["mcp:read", "mcp:tools"]),
        })
    }
}

pub async fn tokens(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(slug): Path<String>,
    Query(done): Query<Done>,
) -> Result<Response, Reject> {
    let viewer = Viewer::load(&state, &headers, &uri, &slug).await?;
    let nav = Nav::for_workspace(&viewer, "tokens").with_notice(done.notice());
    Ok(render(&TokensPage::load(&state, &viewer, nav).await?))
}

/// What the form asks for, checked: (name, scope, lifetime in seconds).
fn read_form(form: &PageForm) -> Result<(String, String, i64), String> {
    let name: String = form.get("name").unwrap_or_default().chars().filter(|c| !c.is_control()).take(100).collect();
    if name.is_empty() {
        return Err("Give the token a name that says what uses it.".into());
    }
    let scopes = form.all("scope");
    if scopes.is_empty() {
        return Err("Choose at least one scope.".into());
    }
    if let Some(unknown) = scopes.iter().find(|s| !KNOWN_SCOPES.iter().any(|(k, _)| k == *s)) {
        return Err(format!("`{unknown}` is not a scope of this server."));
    }
    let days = match form.get("days") {
        None => DEFAULT_TTL_SECS / 86_400,
        Some(d) => d.parse::<i64>().map_err(|_| "Expiry must be a whole number of days.".to_owned())?,
    };
    if !(1..=MAX_TTL_SECS / 86_400).contains(&days) {
        return Err(format!("Expiry must be between 1 and {} days.", MAX_TTL_SECS / 86_400));
    }
    Ok((name, scopes.join(" "), days * 86_400))
}

/// POST: creates a token and shows it once.
pub async fn create(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(slug): Path<String>,
    form: PageForm,
) -> Result<Response, Reject> {
    let viewer = Viewer::load_for_post(&state, &headers, &form, &slug).await?;
    let nav = Nav::for_workspace(&viewer, "tokens");
    let refuse = |mut page: TokensPage, message: String| {
        page.error = Some(message);
        page.form_name = form.get("name").unwrap_or_default().to_owned();
        page.form_days = form.get("days").and_then(|d| d.parse().ok()).unwrap_or(DEFAULT_TTL_SECS / 86_400);
        page.scope_choices = choices(&form.all("scope"));
        let mut res = render(&page);
        *res.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
        res
    };
    let (name, scope, ttl) = match read_form(&form) {
        Ok(ok) => ok,
        Err(message) => return Ok(refuse(TokensPage::load(&state, &viewer, nav).await?, message)),
    };
    let created = machine::create_by(
        &state.store,
        state.clock.as_ref(),
        &viewer.ws.slug,
        &scope,
        ttl,
        &name,
        Some(&viewer.user().id),
    )
    .await;
    let (token, row) = match created {
        Ok(ok) => ok,
        Err(MachineTokenError::Invalid(message)) => {
            return Ok(refuse(TokensPage::load(&state, &viewer, nav).await?, message));
        }
        Err(MachineTokenError::Store(e)) => return Err(e.into()),
        Err(MachineTokenError::Crypto(e)) => return Err(PageError::from(e).into()),
    };
    let event = Event::new(EventKind::MachineTokenCreated, Actor::user(viewer.user()))
        .workspace(&viewer.ws.id)
        .subject(Some(&row.id), &row.name)
        .source(peer.ip())
        .detail("scope", row.scope.as_str())
        .detail("expires_at", row.expires_at);
    state.audit(event).await;
    let mut page = TokensPage::load(&state, &viewer, nav).await?;
    page.created = Some(CreatedToken { name: row.name, token, expires: When::at(row.expires_at, state.clock.now()) });
    Ok(render(&page))
}

/// POST: revokes a token (a member's own only).
pub async fn revoke(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(slug): Path<String>,
    form: PageForm,
) -> Result<Response, Reject> {
    let viewer = Viewer::load_for_post(&state, &headers, &form, &slug).await?;
    let id = form.get("id").unwrap_or_default();
    let revoked = state.store.revoke_machine_token_in(&viewer.ws.id, id, viewer.only_own(), state.clock.now()).await?;
    let Some(row) = revoked else {
        return Err(PageError::new(
            StatusCode::NOT_FOUND,
            "No such token",
            "It may have been revoked already, or it is not yours to revoke.",
        )
        .into());
    };
    let event = Event::new(EventKind::MachineTokenRevoked, Actor::user(viewer.user()))
        .workspace(&viewer.ws.id)
        .subject(Some(&row.id), &row.name)
        .source(peer.ip());
    state.audit(event).await;
    Ok(viewer.back_to("tokens?done=token-revoked"))
}
