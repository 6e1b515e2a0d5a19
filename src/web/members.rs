//! Members of a workspace (owners only): add by email (creating the account, with a password
//! shown once, when there is none), change roles, remove. A workspace always keeps an owner.

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
use crate::identity::{self, UserError, normalize_email, password};
use crate::workspace::{self, Role};

pub struct MemberLine {
    pub user_id: String,
    pub email: String,
    pub role: String,
    pub is_admin: bool,
    pub is_you: bool,
    pub joined: When,
}

pub struct CreatedAccount {
    pub email: String,
    pub password: String,
}

#[derive(Template)]
#[template(path = "members.html")]
pub struct MembersPage {
    pub nav: Nav,
    pub ws_name: String,
    pub slug: String,
    pub rows: Vec<MemberLine>,
    pub created: Option<CreatedAccount>,
    pub error: Option<String>,
    pub form_email: String,
}

async fn page(state: &AppState, viewer: &Viewer, nav: Nav) -> Result<MembersPage, Reject> {
    let now = state.clock.now();
    let rows = state
        .store
        .members_of(&viewer.ws.id)
        .await?
        .into_iter()
        .map(|m| MemberLine {
            is_you: m.user_id == viewer.user().id,
            joined: When::at(m.joined_at, now),
            user_id: m.user_id,
            email: m.email,
            role: m.role,
            is_admin: m.is_admin,
        })
        .collect();
    Ok(MembersPage {
        nav,
        ws_name: viewer.ws.name.clone(),
        slug: viewer.ws.slug.clone(),
        rows,
        created: None,
        error: None,
        form_email: String::new(),
    })
}

pub async fn members(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(slug): Path<String>,
    Query(done): Query<Done>,
) -> Result<Response, Reject> {
    let viewer = Viewer::load(&state, &headers, &uri, &slug).await?;
    viewer.require_owner()?;
    let nav = Nav::for_workspace(&viewer, "members").with_notice(done.notice());
    Ok(render(&page(&state, &viewer, nav).await?))
}

fn role_of(form: &PageForm) -> Result<Role, Reject> {
    form.get("role")
        .unwrap_or("member")
        .parse::<Role>()
        .map_err(|_| PageError::bad_request("Unknown role", "Choose Member or Owner.").into())
}

/// POST: adds a person by email.
pub async fn add(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(slug): Path<String>,
    form: PageForm,
) -> Result<Response, Reject> {
    let viewer = Viewer::load_for_post(&state, &headers, &form, &slug).await?;
    viewer.require_owner()?;
    let role = role_of(&form)?;
    let typed = form.get("email").unwrap_or_default();
    let refuse = |mut p: MembersPage, message: String| {
        p.error = Some(message);
        p.form_email = typed.to_owned();
        let mut res = render(&p);
        *res.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
        res
    };
    let email = match normalize_email(typed) {
        Ok(email) => email,
        Err(message) => {
            return Ok(refuse(page(&state, &viewer, Nav::for_workspace(&viewer, "members")).await?, message));
        }
    };
    let mut created = None;
    let user = match state.store.user_by_email(&email).await? {
        Some(user) => user,
        None => {
            let first_password = password::generate().map_err(PageError::from)?;
            let user = identity::create_user(&state.store, state.clock.as_ref(), &email, &first_password, false)
                .await
                .map_err(|e| match e {
                    UserError::Invalid(m) => PageError::bad_request("This account cannot be created", m),
                    UserError::Store(e) => e.into(),
                    UserError::Crypto(e) => e.into(),
                })?;
            created = Some(CreatedAccount { email: user.email.clone(), password: first_password });
            user
        }
    };
    if state.store.membership(&viewer.ws.id, &user.id).await?.is_some() {
        let message = format!("{email} is already a member; change their role in the list.");
        return Ok(refuse(page(&state, &viewer, Nav::for_workspace(&viewer, "members")).await?, message));
    }
    workspace::add_member(&state.store, state.clock.as_ref(), &viewer.ws.id, &user.id, role).await?;
    let event = Event::new(EventKind::MemberAdded, Actor::user(viewer.user()))
        .workspace(&viewer.ws.id)
        .subject(Some(&user.id), &user.email)
        .source(peer.ip())
        .detail("role", role.as_str())
        .detail("account_created", created.is_some());
    state.audit(event).await;
    let mut p = page(&state, &viewer, Nav::for_workspace(&viewer, "members")).await?;
    p.nav.notice = Some("Added.");
    p.created = created;
    Ok(render(&p))
}

/// Refuses a change that would leave the workspace without an owner.
async fn keeps_an_owner(state: &AppState, viewer: &Viewer, user_id: &str) -> Result<(), Reject> {
    let is_owner = state.store.membership(&viewer.ws.id, user_id).await?.is_some_and(|m| m.role == "owner");
    if is_owner && state.store.count_owners(&viewer.ws.id).await? <= 1 {
        return Err(PageError::new(
            StatusCode::CONFLICT,
            "A workspace needs an owner",
            "Make someone else an owner first.",
        )
        .into());
    }
    Ok(())
}

/// POST: changes a member's role.
pub async fn change_role(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(slug): Path<String>,
    form: PageForm,
) -> Result<Response, Reject> {
    let viewer = Viewer::load_for_post(&state, &headers, &form, &slug).await?;
    viewer.require_owner()?;
    let role = role_of(&form)?;
    let user_id = form.get("user_id").unwrap_or_default();
    let Some(current) = state.store.membership(&viewer.ws.id, user_id).await? else {
        return Err(PageError::new(StatusCode::NOT_FOUND, "No such member", "They may have been removed.").into());
    };
    if current.role == role.as_str() {
        return Ok(viewer.back_to("members"));
    }
    if role == Role::Member {
        keeps_an_owner(&state, &viewer, user_id).await?;
    }
    workspace::add_member(&state.store, state.clock.as_ref(), &viewer.ws.id, user_id, role).await?;
    let email = state.store.user_by_id(user_id).await?.map(|u| u.email).unwrap_or_default();
    let event = Event::new(EventKind::MemberRoleChanged, Actor::user(viewer.user()))
        .workspace(&viewer.ws.id)
        .subject(Some(user_id), &email)
        .source(peer.ip())
        .detail("from", current.role.as_str())
        .detail("to", role.as_str());
    state.audit(event).await;
    Ok(viewer.back_to("members?done=role-changed"))
}

/// POST: removes a member and what let them act in the workspace.
pub async fn remove(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(slug): Path<String>,
    form: PageForm,
) -> Result<Response, Reject> {
    let viewer = Viewer::load_for_post(&state, &headers, &form, &slug).await?;
    viewer.require_owner()?;
    let user_id = form.get("user_id").unwrap_or_default();
    keeps_an_owner(&state, &viewer, user_id).await?;
    if state.store.remove_member(&viewer.ws.id, user_id, state.clock.now()).await? {
        let email = state.store.user_by_id(user_id).await?.map(|u| u.email).unwrap_or_default();
        let event = Event::new(EventKind::MemberRemoved, Actor::user(viewer.user()))
            .workspace(&viewer.ws.id)
            .subject(Some(user_id), &email)
            .source(peer.ip());
        state.audit(event).await;
    }
    if user_id == viewer.user().id && !viewer.person.user.is_admin {
        return Ok(axum::response::IntoResponse::into_response(axum::response::Redirect::to("/")));
    }
    Ok(viewer.back_to("members?done=member-removed"))
}
