//! Pages for people: templates, the error page, CSRF tokens and security headers.

pub mod account;
pub mod apps;
pub mod audit_log;
pub mod body;
pub mod clients;
pub mod csrf;
pub mod form;
pub mod format;
pub mod health;
pub mod home;
pub mod layout;
pub mod limit;
pub mod members;
pub mod pages;
pub mod tokens;
pub mod upstream_connect;
pub mod upstreams;
pub mod viewer;

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The default policy: nothing from elsewhere, no inline script, no framing, forms post
/// only to us. The one script (`copy.js`, the copy buttons) is served from here.
pub const DEFAULT_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Adds the headers every response carries; a handler that set its own CSP keeps it.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    add_security_headers(res.headers_mut());
    res
}

/// What [`security_headers`] adds to every response (a page may bring its own CSP).
pub fn add_security_headers(h: &mut axum::http::HeaderMap) {
    h.entry(header::CONTENT_SECURITY_POLICY).or_insert(HeaderValue::from_static(DEFAULT_CSP));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
}

/// The pages of signed-in people, each workspace's under `/w/{slug}/`.
pub fn routes() -> axum::Router<crate::app::AppState> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/w/{slug}", get(workspace_home))
        .route("/w/{slug}/apps", get(apps::apps))
        .route("/w/{slug}/apps/revoke", post(apps::revoke_app))
        .route("/w/{slug}/sessions", get(apps::sessions))
        .route("/w/{slug}/sessions/revoke", post(apps::revoke_session))
        .route("/w/{slug}/clients", get(clients::clients).post(clients::create))
        .route("/w/{slug}/clients/revoke", post(clients::revoke_consent))
        .route("/w/{slug}/clients/delete", post(clients::delete))
        .route("/w/{slug}/tokens", get(tokens::tokens).post(tokens::create))
        .route("/w/{slug}/tokens/revoke", post(tokens::revoke))
        .route("/w/{slug}/upstreams", get(upstreams::upstreams).post(upstreams::add))
        .route("/w/{slug}/upstreams/{name}", get(upstreams::upstream))
        .route("/w/{slug}/upstreams/{name}/test", post(upstreams::test))
        .route("/w/{slug}/upstreams/{name}/edit", post(upstreams::edit))
        .route("/w/{slug}/upstreams/{name}/remove", post(upstreams::remove))
        .route(
            "/w/{slug}/upstreams/{name}/connect",
            get(upstream_connect::connect_page).post(upstream_connect::connect_start),
        )
        .route("/w/{slug}/upstreams/{name}/disconnect", post(upstream_connect::disconnect))
        .route(crate::vault::CALLBACK_PATH, get(upstream_connect::callback))
        .route("/w/{slug}/members", get(members::members).post(members::add))
        .route("/w/{slug}/members/role", post(members::change_role))
        .route("/w/{slug}/members/remove", post(members::remove))
        .route("/w/{slug}/audit", get(audit_log::audit_log))
        .route("/account", get(account::account))
        .route("/account/password", post(account::change_password))
}

async fn workspace_home(axum::extract::Path(slug): axum::extract::Path<String>) -> axum::response::Redirect {
    // Slugs are checked when the page loads; here it only goes back into a path.
    let slug: String = form_urlencoded::byte_serialize(slug.as_bytes()).collect();
    axum::response::Redirect::to(&format!("/w/{slug}/apps"))
}

pub async fn stylesheet() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")],
        include_str!("../../static/style.css"),
    )
}

pub async fn copy_script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")],
        include_str!("../../static/copy.js"),
    )
}

/// A readable error page: what went wrong and what to do next.
#[derive(Debug)]
pub struct PageError {
    pub status: StatusCode,
    pub title: String,
    pub message: String,
}

impl PageError {
    pub fn new(status: StatusCode, title: impl Into<String>, message: impl Into<String>) -> Self {
        PageError { status, title: title.into(), message: message.into() }
    }

    pub fn bad_request(title: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, title, message)
    }

    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error while rendering a page");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong",
            "The server could not finish this request. Try again in a moment.",
        )
    }
}

impl From<crate::store::StoreError> for PageError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::internal(e)
    }
}

impl From<crate::crypto::CryptoError> for PageError {
    fn from(e: crate::crypto::CryptoError) -> Self {
        Self::internal(e)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let page = pages::ErrorPage { title: &self.title, message: &self.message };
        let mut res = pages::render(&page);
        *res.status_mut() = self.status;
        res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res
    }
}
