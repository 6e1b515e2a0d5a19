//! The account page: who you are, your workspaces, and changing your password (which signs
//! out your other sessions).

use std::net::SocketAddr;

use askama::Template;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};

use super::form::PageForm;
use super::format::When;
use super::layout::{Done, Nav};
use super::pages::render;
use super::viewer::{Person, Reject};
use crate::app::AppState;
use crate::audit::{Actor, Event, EventKind};
use crate::identity::password;

pub struct MembershipLine {
    pub slug: String,
    pub name: String,
    pub role: String,
}

#[derive(Template)]
#[template(path = "account.html")]
pub struct AccountPage {
    pub nav: Nav,
    pub is_admin: bool,
    pub since: String,
    pub memberships: Vec<MembershipLine>,
    pub error: Option<String>,
}

async fn page(state: &AppState, person: &Person, nav: Nav) -> Result<AccountPage, Reject> {
    let mut memberships = Vec::new();
    for w in state.store.workspaces_of_user(&person.user.id).await? {
        let role = state.store.membership(&w.id, &person.user.id).await?.map(|m| m.role).unwrap_or_default();
        memberships.push(MembershipLine { slug: w.slug, name: w.name, role });
    }
    Ok(AccountPage {
        nav,
        is_admin: person.user.is_admin,
        since: When::at(person.user.created_at, state.clock.now()).absolute,
        memberships,
        error: None,
    })
}

fn account_nav(person: &Person) -> Nav {
    let mut nav = Nav::for_person(person, None);
    nav.account_active = true;
    nav
}

pub async fn account(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Query(done): Query<Done>,
) -> Result<Response, Reject> {
    let person = Person::load(&state, &headers, &uri).await?;
    let nav = account_nav(&person).with_notice(done.notice());
    Ok(render(&page(&state, &person, nav).await?))
}

/// POST: changes the password after checking the current one.
pub async fn change_password(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: PageForm,
) -> Result<Response, Reject> {
    let person = Person::load_for_post(&state, &headers, &form).await?;
    let refuse = |mut p: AccountPage, message: &str| {
        p.error = Some(message.to_owned());
        let mut res = render(&p);
        *res.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
        res
    };
    let current_ok = password::verify_async(form.raw("current").to_owned(), person.user.password_hash.clone()).await;
    if !current_ok {
        return Ok(refuse(page(&state, &person, account_nav(&person)).await?, "Your current password is not right."));
    }
    let new = form.raw("new");
    if let Err(message) = password::check_strength(new) {
        let message = format!("The new password is too weak: {message}.");
        return Ok(refuse(page(&state, &person, account_nav(&person)).await?, &message));
    }
    if new != form.raw("confirm") {
        let message = "The two new passwords differ.";
        return Ok(refuse(page(&state, &person, account_nav(&person)).await?, message));
    }
    let hash = password::hash_async(new.to_owned()).await.map_err(super::PageError::from)?;
    state.store.set_password_hash(&person.user.id, &hash).await?;
    let ended = state.store.delete_other_sessions(&person.user.id, &person.session_hash).await?;
    let event = Event::new(EventKind::PasswordChanged, Actor::user(&person.user))
        .source(peer.ip())
        .detail("other_sessions_ended", ended);
    state.audit(event).await;
    Ok(Redirect::to("/account?done=password-changed").into_response())
}
