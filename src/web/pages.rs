//! Page templates (askama: compiled, auto-escaped).

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

/// Renders a template as an HTML response (never cached: pages carry per-session data).
pub fn render<T: Template>(page: &T) -> Response {
    match page.render() {
        Ok(html) => {
            let mut res = Html(html).into_response();
            res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            res
        }
        Err(e) => {
            tracing::error!(error = %e, "template rendering failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "The page could not be rendered.").into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage<'a> {
    pub title: &'a str,
    pub message: &'a str,
}

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage<'a> {
    pub csrf: &'a str,
    pub next: &'a str,
    pub email: &'a str,
    pub error: Option<&'a str>,
}

pub struct ScopeLine {
    pub name: String,
    pub description: &'static str,
}

#[derive(Template)]
#[template(path = "consent.html")]
pub struct ConsentPage<'a> {
    pub client_name: &'a str,
    pub client_id: &'a str,
    pub redirect_host: &'a str,
    pub redirect_uri: &'a str,
    pub dynamic_client: bool,
    /// For a client identified by its metadata document: the host serving that document.
    pub document_host: Option<&'a str>,
    pub loopback_only: bool,
    pub workspace_name: &'a str,
    pub workspace_slug: &'a str,
    pub user_email: &'a str,
    pub scopes: Vec<ScopeLine>,
    pub request: &'a str,
}

pub struct WorkspaceLine {
    pub name: String,
    pub slug: String,
    pub mcp_url: String,
}

#[derive(Template)]
#[template(path = "home.html")]
pub struct HomePage<'a> {
    pub email: &'a str,
    pub csrf: &'a str,
    pub workspaces: Vec<WorkspaceLine>,
}
