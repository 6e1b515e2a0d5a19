//! Who is looking at a page, and what they may do there.
//!
//! Every page for signed-in people starts with [`Person::load`] (any page) or
//! [`Viewer::load`] (a workspace page): no session sends the browser to sign in. Every form
//! post starts with the `_for_post` variants, which also check the form's CSRF token (an
//! HMAC of the session, so a token from another session or a forged one fails) and refuse a
//! cross-site `Origin`. A workspace owner, or a server admin, may use the owner pages;
//! everyone else gets a readable 403.

use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use url::Url;

use super::PageError;
use super::form::PageForm;
use crate::app::AppState;
use crate::identity::session;
use crate::store::{StoreError, UserRow, WorkspaceRow};
use crate::workspace::Role;

/// What the CSRF token of pages signs, bound to the session's hash.
const CSRF_PURPOSE: &str = "page forms";

/// A request a page refuses: to the sign-in page, or a readable error page.
#[derive(Debug)]
pub enum Reject {
    SignIn { next: String },
    Page(PageError),
}

impl From<PageError> for Reject {
    fn from(e: PageError) -> Self {
        Reject::Page(e)
    }
}

impl From<StoreError> for Reject {
    fn from(e: StoreError) -> Self {
        Reject::Page(e.into())
    }
}

impl IntoResponse for Reject {
    fn into_response(self) -> Response {
        match self {
            Reject::SignIn { next } if next == "/" => Redirect::to("/login").into_response(),
            Reject::SignIn { next } => {
                let next: String = form_urlencoded::byte_serialize(next.as_bytes()).collect();
                Redirect::to(&format!("/login?next={next}")).into_response()
            }
            Reject::Page(e) => e.into_response(),
        }
    }
}

pub fn forbidden(message: impl Into<String>) -> Reject {
    Reject::Page(PageError::new(StatusCode::FORBIDDEN, "You cannot open this page", message))
}

fn expired_form() -> Reject {
    Reject::Page(PageError::new(
        StatusCode::FORBIDDEN,
        "This form has expired",
        "It was not issued to your current session. Reload the page and try again.",
    ))
}

/// The signed-in person, their CSRF token and the workspaces they can switch to.
#[derive(Debug, Clone)]
pub struct Person {
    pub user: UserRow,
    pub session_hash: String,
    pub csrf: String,
    /// Their workspaces (every workspace, for a server admin).
    pub workspaces: Vec<WorkspaceRow>,
}

impl Person {
    async fn current(state: &AppState, headers: &HeaderMap) -> Result<Option<Self>, Reject> {
        let Some(signed_in) = session::current(state, headers).await? else {
            return Ok(None);
        };
        let workspaces = if signed_in.user.is_admin {
            state.store.all_workspaces().await?
        } else {
            state.store.workspaces_of_user(&signed_in.user.id).await?
        };
        let csrf = page_csrf(state, &signed_in.session_hash)?;
        Ok(Some(Person { user: signed_in.user, session_hash: signed_in.session_hash, csrf, workspaces }))
    }

    /// For a page: the person, or a redirect to sign in and come back to `uri`.
    pub async fn load(state: &AppState, headers: &HeaderMap, uri: &Uri) -> Result<Self, Reject> {
        let path = uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "/".into());
        Self::current(state, headers).await?.ok_or(Reject::SignIn { next: path })
    }

    /// For a form post: the person, if the form carries their CSRF token and came from us.
    pub async fn load_for_post(state: &AppState, headers: &HeaderMap, form: &PageForm) -> Result<Self, Reject> {
        if !same_origin(state, headers) {
            return Err(expired_form());
        }
        let person = Self::current(state, headers).await?.ok_or_else(expired_form)?;
        if !csrf_ok(state, &person.session_hash, form.get("csrf")) {
            return Err(expired_form());
        }
        Ok(person)
    }
}

/// The CSRF token of the session whose token hash is `session_hash`.
pub fn page_csrf(state: &AppState, session_hash: &str) -> Result<String, PageError> {
    state.forms.sign(&CSRF_PURPOSE, session_hash).ok_or_else(|| PageError::internal("could not sign a CSRF token"))
}

pub fn csrf_ok(state: &AppState, session_hash: &str, presented: Option<&str>) -> bool {
    presented.and_then(|t| state.forms.verify::<String>(t, session_hash)).is_some_and(|p| p == CSRF_PURPOSE)
}

/// False when the browser says the form came from another site. Browsers send `Origin:
/// null` under our `no-referrer` policy, and other clients send none: both are let through
/// to the CSRF token check, which is the defence that counts.
fn same_origin(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    if origin == "null" {
        return true;
    }
    let ours = Url::parse(&state.settings.public_url).map(|u| u.origin().ascii_serialization()).unwrap_or_default();
    origin.eq_ignore_ascii_case(&ours)
}

/// A person on a workspace page, with their role there.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub person: Person,
    pub ws: WorkspaceRow,
    /// `None` for a server admin who is not a member.
    pub role: Option<Role>,
}

impl Viewer {
    async fn in_workspace(state: &AppState, person: Person, slug: &str) -> Result<Self, Reject> {
        let not_yours = || forbidden("You are not a member of this workspace. Ask one of its owners to add you.");
        let ws = state.store.workspace_by_slug(slug).await?.ok_or_else(not_yours)?;
        let role = match state.store.membership(&ws.id, &person.user.id).await? {
            Some(m) => m.role.parse::<Role>().ok(),
            None => None,
        };
        if role.is_none() && !person.user.is_admin {
            return Err(not_yours());
        }
        Ok(Viewer { person, ws, role })
    }

    pub async fn load(state: &AppState, headers: &HeaderMap, uri: &Uri, slug: &str) -> Result<Self, Reject> {
        let person = Person::load(state, headers, uri).await?;
        Self::in_workspace(state, person, slug).await
    }

    pub async fn load_for_post(
        state: &AppState,
        headers: &HeaderMap,
        form: &PageForm,
        slug: &str,
    ) -> Result<Self, Reject> {
        let person = Person::load_for_post(state, headers, form).await?;
        Self::in_workspace(state, person, slug).await
    }

    /// Owners of the workspace and server admins run it.
    pub fn is_owner(&self) -> bool {
        self.person.user.is_admin || self.role == Some(Role::Owner)
    }

    pub fn require_owner(&self) -> Result<(), Reject> {
        if self.is_owner() {
            Ok(())
        } else {
            Err(forbidden(format!(
                "Only owners of the workspace {} can open this page. You can still see your own connected apps, sessions and machine tokens.",
                self.ws.name
            )))
        }
    }

    /// The person whose rows a list is limited to: everyone's for owners, their own otherwise.
    pub fn only_own(&self) -> Option<&str> {
        if self.is_owner() { None } else { Some(self.person.user.id.as_str()) }
    }

    pub fn user(&self) -> &UserRow {
        &self.person.user
    }

    /// Where to send the browser after a form on `page` (e.g. `apps`) of this workspace.
    pub fn back_to(&self, page: &str) -> Response {
        Redirect::to(&format!("/w/{}/{page}", self.ws.slug)).into_response()
    }
}
