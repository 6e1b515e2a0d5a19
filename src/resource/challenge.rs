//! Refusals at the MCP endpoint and their one mapping to HTTP (RFC 6750 §3, RFC 9728 §5.1,
//! MCP authorization): the `Bearer` challenge always comes first and always names the
//! resource metadata, so clients can (re)discover how to get a token.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No credentials at all: 401 with the scopes to ask for.
    NoToken,
    /// Credentials sent in a way we refuse (query string, malformed header): 400.
    BadRequest(String),
    /// A bad, expired, revoked or foreign token: 401 `invalid_token`.
    InvalidToken(String),
    /// A valid token without the scope this operation needs: 403 `insufficient_scope`,
    /// naming every scope needed together with those already granted.
    InsufficientScope { scope: String, description: String },
    /// The workspace does not exist.
    UnknownWorkspace,
    /// Host or Origin not ours (DNS rebinding defence): 403.
    ForbiddenOrigin(String),
}

/// Everything a challenge needs to name.
pub struct ChallengeContext<'a> {
    pub resource_metadata: &'a str,
    pub default_scope: &'a str,
}

fn quote(s: &str) -> String {
    s.chars().filter(|c| *c != '"' && *c != '\\' && !c.is_control()).collect()
}

impl Refusal {
    pub fn into_response_with(self, ctx: &ChallengeContext<'_>) -> Response {
        let rm = quote(ctx.resource_metadata);
        let (status, challenge, body) = match self {
            Refusal::NoToken => (
                StatusCode::UNAUTHORIZED,
                Some(format!("Bearer resource_metadata=\"{rm}\", scope=\"{}\"", quote(ctx.default_scope))),
                json!({"error": "invalid_token", "error_description": "this MCP server needs an access token: see the resource metadata"}),
            ),
            Refusal::BadRequest(d) => (
                StatusCode::BAD_REQUEST,
                Some(format!(
                    "Bearer error=\"invalid_request\", error_description=\"{}\", resource_metadata=\"{rm}\"",
                    quote(&d)
                )),
                json!({"error": "invalid_request", "error_description": d}),
            ),
            Refusal::InvalidToken(d) => (
                StatusCode::UNAUTHORIZED,
                Some(format!(
                    "Bearer error=\"invalid_token\", error_description=\"{}\", resource_metadata=\"{rm}\"",
                    quote(&d)
                )),
                json!({"error": "invalid_token", "error_description": d}),
            ),
            Refusal::InsufficientScope { scope, description } => (
                StatusCode::FORBIDDEN,
                Some(format!(
                    "Bearer error=\"insufficient_scope\", scope=\"{}\", error_description=\"{}\", resource_metadata=\"{rm}\"",
                    quote(&scope),
                    quote(&description)
                )),
                json!({"error": "insufficient_scope", "error_description": description, "scope": scope}),
            ),
            Refusal::UnknownWorkspace => (
                StatusCode::NOT_FOUND,
                None,
                json!({"error": "not_found", "error_description": "no such workspace: check the MCP URL (it looks like /t/<workspace>/mcp)"}),
            ),
            Refusal::ForbiddenOrigin(d) => {
                (StatusCode::FORBIDDEN, None, json!({"error": "forbidden", "error_description": d}))
            }
        };
        let mut res = (status, Json(body)).into_response();
        if let Some(value) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            res.headers_mut().insert(header::WWW_AUTHENTICATE, value);
        }
        res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res
    }
}
