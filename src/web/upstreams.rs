//! Upstream servers of a workspace (owners only): list with health, add, test, edit, remove.
//! Commands (stdio upstreams) run programs on the gateway host, so only server admins may
//! add them here; workspace owners add HTTP upstreams and the demo server.

use std::net::SocketAddr;

use askama::Template;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;

use super::PageError;
use super::form::PageForm;
use super::format::When;
use super::layout::{Done, Nav};
use super::pages::render;
use super::viewer::{Reject, Viewer};
use crate::app::AppState;
use crate::audit::{Actor, Event, EventKind};
use crate::gateway::probe::{ToolInfo, probe};
use crate::gateway::registry::{self, RegistryError};
use crate::gateway::upstream::{Upstream, UpstreamSpec};

/// The last test of an upstream, for the templates.
pub struct HealthLine {
    pub ok: bool,
    pub at: When,
    pub tools: usize,
    pub millis: u128,
    pub server: Option<String>,
    pub error: Option<String>,
}

pub struct UpstreamLine {
    pub name: String,
    pub kind: &'static str,
    pub target: String,
    pub header_names: String,
    pub health: Option<HealthLine>,
}

/// What the add and edit forms show.
#[derive(Default)]
pub struct UpstreamForm {
    pub name: String,
    pub kind: String,
    pub url: String,
    pub command: String,
    /// Names of the stored headers (values are never shown).
    pub header_names: String,
}

#[derive(Template)]
#[template(path = "upstreams.html")]
pub struct UpstreamsPage {
    pub nav: Nav,
    pub ws_name: String,
    pub slug: String,
    pub mcp_url: String,
    pub rows: Vec<UpstreamLine>,
    pub error: Option<String>,
    pub form: UpstreamForm,
    pub may_run_commands: bool,
}

#[derive(Template)]
#[template(path = "upstream.html")]
pub struct UpstreamPage {
    pub nav: Nav,
    pub ws_name: String,
    pub slug: String,
    pub r: UpstreamLine,
    pub tools: Vec<ToolInfo>,
    pub error: Option<String>,
    pub form: UpstreamForm,
    pub may_run_commands: bool,
    /// How the gateway signs in to it (see `vault`).
    pub sign_in: &'static str,
    /// People connect their own accounts (link to their Connect page).
    pub per_person: bool,
}

fn describe(state: &AppState, ws_id: &str, upstream: &Upstream) -> UpstreamLine {
    let now = state.clock.now();
    let (kind, target, header_names) = match &upstream.spec {
        UpstreamSpec::Http { url, headers } => {
            ("http", url.clone(), headers.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", "))
        }
        UpstreamSpec::Stdio { command, args } => {
            ("command", shell_words::join(std::iter::once(command).chain(args)), String::new())
        }
        UpstreamSpec::Demo => ("demo", "the built-in demo server".to_owned(), String::new()),
    };
    let health = state.upstream_health.get(ws_id, &upstream.name).map(|c| HealthLine {
        ok: c.report.ok,
        at: When::at(c.at, now),
        tools: c.report.tools.len(),
        millis: c.report.elapsed.as_millis(),
        server: c.report.server.clone(),
        error: c.report.error.clone(),
    });
    UpstreamLine { name: upstream.name.clone(), kind, target, header_names, health }
}

fn form_of(upstream: &Upstream) -> UpstreamForm {
    let mut form = UpstreamForm { name: upstream.name.clone(), ..UpstreamForm::default() };
    match &upstream.spec {
        UpstreamSpec::Http { url, headers } => {
            form.kind = "http".into();
            form.url = url.clone();
            form.header_names = headers.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ");
        }
        UpstreamSpec::Stdio { command, args } => {
            form.kind = "stdio".into();
            form.command = shell_words::join(std::iter::once(command).chain(args));
        }
        UpstreamSpec::Demo => form.kind = "demo".into(),
    }
    form
}

/// The registry's messages speak of CLI flags; pages speak of fields.
fn in_page_words(e: &RegistryError) -> String {
    e.to_string().replace("--header ", "Header ").replace("--url ", "URL ").replace("--command ", "Command ")
}

async fn configured(state: &AppState, viewer: &Viewer) -> Result<Vec<Upstream>, Reject> {
    registry::list(&state.store, &state.sealer, &viewer.ws.id).await.map_err(|e| PageError::internal(e).into())
}

async fn list_page(state: &AppState, viewer: &Viewer, nav: Nav) -> Result<UpstreamsPage, Reject> {
    let rows = configured(state, viewer).await?.iter().map(|u| describe(state, &viewer.ws.id, u)).collect();
    Ok(UpstreamsPage {
        nav,
        ws_name: viewer.ws.name.clone(),
        slug: viewer.ws.slug.clone(),
        mcp_url: state.mcp_url(&viewer.ws.slug),
        rows,
        error: None,
        form: UpstreamForm { kind: "http".into(), ..UpstreamForm::default() },
        may_run_commands: viewer.person.user.is_admin,
    })
}

pub async fn upstreams(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(slug): Path<String>,
    Query(done): Query<Done>,
) -> Result<Response, Reject> {
    let viewer = Viewer::load(&state, &headers, &uri, &slug).await?;
    viewer.require_owner()?;
    let nav = Nav::for_workspace(&viewer, "upstreams").with_notice(done.notice());
    Ok(render(&list_page(&state, &viewer, nav).await?))
}

/// The upstream the form describes. `keep` holds the stored headers an edit keeps when the
/// headers field is left empty.
fn spec_from_form(viewer: &Viewer, form: &PageForm, keep: &[(String, String)]) -> Result<UpstreamSpec, String> {
    match form.get("kind").unwrap_or("http") {
        "http" => {
            let url = form.get("url").ok_or("Enter the URL of the MCP server.")?.to_owned();
            let mut headers = Vec::new();
            for line in form.raw("headers").lines().map(str::trim).filter(|l| !l.is_empty()) {
                headers.push(registry::parse_header(line).map_err(|e| in_page_words(&e))?);
            }
            if headers.is_empty() && form.get("clear_headers").is_none() {
                headers = keep.to_vec();
            }
            Ok(UpstreamSpec::Http { url, headers })
        }
        "stdio" if viewer.person.user.is_admin => {
            let command = form.get("command").ok_or("Enter the command to run.")?;
            registry::parse_command(command).map_err(|e| in_page_words(&e))
        }
        "stdio" => Err("Only server admins may add commands: they run on the gateway host.".into()),
        "demo" => Ok(UpstreamSpec::Demo),
        _ => Err("Choose where the upstream runs.".into()),
    }
}

/// Tests an upstream now and remembers the result.
async fn test_now(state: &AppState, ws_id: &str, upstream: &Upstream) {
    let bearer = crate::vault::bearer::for_health_check(&state.vault, &state.store, ws_id, &upstream.name).await;
    let report = probe(upstream, bearer).await;
    state.upstream_health.record(ws_id, &upstream.name, state.clock.now(), report);
}

fn audit_change(
    viewer: &Viewer,
    kind: EventKind,
    name: &str,
    spec: Option<&UpstreamSpec>,
    source: SocketAddr,
) -> Event {
    let mut event = Event::new(kind, Actor::user(viewer.user())).workspace(&viewer.ws.id).subject(None, name);
    event = event.source(source.ip());
    match spec {
        Some(UpstreamSpec::Http { url, headers }) => event
            .detail("kind", "http")
            .detail("url", url.as_str())
            .detail("header_names", headers.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>()),
        Some(UpstreamSpec::Stdio { command, .. }) => event.detail("kind", "stdio").detail("program", command.as_str()),
        Some(UpstreamSpec::Demo) => event.detail("kind", "demo"),
        None => event,
    }
}

/// POST: adds an upstream, tests it and shows its page.
pub async fn add(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(slug): Path<String>,
    form: PageForm,
) -> Result<Response, Reject> {
    let viewer = Viewer::load_for_post(&state, &headers, &form, &slug).await?;
    viewer.require_owner()?;
    let name = form.get("name").unwrap_or_default().to_owned();
    let added = match spec_from_form(&viewer, &form, &[]) {
        Ok(spec) => registry::add(&state.store, &state.sealer, state.clock.as_ref(), &viewer.ws.id, &name, &spec)
            .await
            .map(|_| spec)
            .map_err(|e| match e {
                RegistryError::Store(crate::store::StoreError::Conflict(_)) => {
                    format!("This workspace already has an upstream called `{name}`.")
                }
                other => in_page_words(&other),
            }),
        Err(message) => Err(message),
    };
    let spec = match added {
        Ok(spec) => spec,
        Err(message) => {
            let mut page = list_page(&state, &viewer, Nav::for_workspace(&viewer, "upstreams")).await?;
            page.error = Some(message);
            page.form = UpstreamForm {
                name,
                kind: form.get("kind").unwrap_or("http").to_owned(),
                url: form.get("url").unwrap_or_default().to_owned(),
                command: form.get("command").unwrap_or_default().to_owned(),
                header_names: String::new(),
            };
            let mut res = render(&page);
            *res.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            return Ok(res);
        }
    };
    state.audit(audit_change(&viewer, EventKind::UpstreamAdded, &name, Some(&spec), peer)).await;
    test_now(&state, &viewer.ws.id, &Upstream { name: name.clone(), spec }).await;
    Ok(viewer.back_to(&format!("upstreams/{name}?done=upstream-added")))
}

async fn one(state: &AppState, viewer: &Viewer, name: &str) -> Result<Upstream, Reject> {
    configured(state, viewer).await?.into_iter().find(|u| u.name == name).ok_or_else(|| {
        PageError::new(StatusCode::NOT_FOUND, "No such upstream", "It may have been removed. Go back to the list.")
            .into()
    })
}

async fn sign_in_of(state: &AppState, ws_id: &str, upstream: &Upstream) -> crate::vault::SignIn {
    use crate::vault::{GrantKind, SignIn};
    let credential = match state.store.upstream_by_name(ws_id, &upstream.name).await {
        Ok(Some(row)) => state.vault.credential(&row.id).await.ok().flatten(),
        Ok(None) | Err(_) => None,
    };
    match (credential.map(|c| c.grant), &upstream.spec) {
        (Some(GrantKind::ClientCredentials), _) => SignIn::ClientCredentials,
        (Some(GrantKind::AuthorizationCode), _) => SignIn::AuthorizationCode,
        (None, UpstreamSpec::Http { headers, .. }) if !headers.is_empty() => SignIn::Headers,
        (None, _) => SignIn::None,
    }
}

async fn detail_page(state: &AppState, viewer: &Viewer, upstream: &Upstream) -> UpstreamPage {
    let sign_in = sign_in_of(state, &viewer.ws.id, upstream).await;
    let tools = state
        .upstream_health
        .get(&viewer.ws.id, &upstream.name)
        .filter(|c| c.report.ok)
        .map(|c| c.report.tools)
        .unwrap_or_default();
    UpstreamPage {
        nav: Nav::for_workspace(viewer, "upstreams"),
        ws_name: viewer.ws.name.clone(),
        slug: viewer.ws.slug.clone(),
        r: describe(state, &viewer.ws.id, upstream),
        tools,
        error: None,
        form: form_of(upstream),
        may_run_commands: viewer.person.user.is_admin,
        sign_in: sign_in.label(),
        per_person: sign_in == crate::vault::SignIn::AuthorizationCode,
    }
}

pub async fn upstream(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path((slug, name)): Path<(String, String)>,
    Query(done): Query<Done>,
) -> Result<Response, Reject> {
    let viewer = Viewer::load(&state, &headers, &uri, &slug).await?;
    viewer.require_owner()?;
    let upstream = one(&state, &viewer, &name).await?;
    let mut page = detail_page(&state, &viewer, &upstream).await;
    page.nav.notice = done.notice();
    Ok(render(&page))
}

/// POST: tests the connection now.
pub async fn test(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((slug, name)): Path<(String, String)>,
    form: PageForm,
) -> Result<Response, Reject> {
    let viewer = Viewer::load_for_post(&state, &headers, &form, &slug).await?;
    viewer.require_owner()?;
    let upstream = one(&state, &viewer, &name).await?;
    test_now(&state, &viewer.ws.id, &upstream).await;
    Ok(viewer.back_to(&format!("upstreams/{name}")))
}

/// POST: points the upstream elsewhere, then tests it.
pub async fn edit(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path((slug, name)): Path<(String, String)>,
    form: PageForm,
) -> Result<Response, Reject> {
    let viewer = Viewer::load_for_post(&state, &headers, &form, &slug).await?;
    viewer.require_owner()?;
    let current = one(&state, &viewer, &name).await?;
    let keep = match &current.spec {
        UpstreamSpec::Http { headers, .. } => headers.clone(),
        UpstreamSpec::Stdio { .. } | UpstreamSpec::Demo => Vec::new(),
    };
    let changed = match spec_from_form(&viewer, &form, &keep) {
        Ok(spec) => registry::update(&state.store, &state.sealer, &viewer.ws.id, &name, &spec)
            .await
            .map_err(|e| in_page_words(&e))
            .map(|_| spec),
        Err(message) => Err(message),
    };
    match changed {
        Ok(spec) => {
            state.audit(audit_change(&viewer, EventKind::UpstreamChanged, &name, Some(&spec), peer)).await;
            test_now(&state, &viewer.ws.id, &Upstream { name: name.clone(), spec }).await;
            Ok(viewer.back_to(&format!("upstreams/{name}?done=upstream-changed")))
        }
        Err(message) => {
            let mut page = detail_page(&state, &viewer, &current).await;
            page.error = Some(message);
            let mut res = render(&page);
            *res.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            Ok(res)
        }
    }
}

/// POST: removes the upstream.
pub async fn remove(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path((slug, name)): Path<(String, String)>,
    form: PageForm,
) -> Result<Response, Reject> {
    let viewer = Viewer::load_for_post(&state, &headers, &form, &slug).await?;
    viewer.require_owner()?;
    if state.store.delete_upstream(&viewer.ws.id, &name).await? {
        state.upstream_health.forget(&viewer.ws.id, &name);
        state.audit(audit_change(&viewer, EventKind::UpstreamRemoved, &name, None, peer)).await;
    }
    Ok(viewer.back_to("upstreams?done=upstream-removed"))
}
