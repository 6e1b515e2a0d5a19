//! Page templates (askama: compiled, auto-escaped).

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use crate::store::ClientRow;

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
    /// Buttons for the organisation's identity providers, when configured.
    pub providers: &'a [ProviderButton],
    /// Whether the email-and-password form is offered.
    pub password_login: bool,
}

/// "Continue with ..." on the login page.
pub struct ProviderButton {
    pub name: String,
    pub href: String,
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
    /// How the client came to be registered, in words.
    pub registration: &'a str,
    pub workspace_name: &'a str,
    pub workspace_slug: &'a str,
    pub user_email: &'a str,
    pub scopes: Vec<ScopeLine>,
    pub request: &'a str,
}

/// How a client came to be registered, in words for the consent page.
pub fn registration_words(client: &ClientRow) -> String {
    match client.source.as_str() {
        "dynamic" => "On the fly, by the app itself (dynamic client registration)".into(),
        "metadata_document" => {
            format!("By its client metadata document at {}", crate::oauth::redirect::display_host(&client.id))
        }
        "admin" => "Pre-registered by a workspace owner".into(),
        other => format!("Unknown ({other})"),
    }
}

/// The short name of how a client registered, for lists.
pub fn registration_label(source: &str) -> &'static str {
    match source {
        "dynamic" => "DCR",
        "metadata_document" => "Metadata document",
        "admin" => "Pre-registered",
        _ => "Unknown",
    }
}
