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
    /// The protected resource does not exist (for servers that host several); the text
    /// tells the person what a right URL looks like.
    NotFound(String),
    /// The token could not be checked right now (the issuer cannot be reached): 503, so the
    /// client retries instead of throwing its token away.
    Unavailable(String),
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
            Refusal::NotFound(d) => {
                (StatusCode::NOT_FOUND, None, json!({"error": "not_found", "error_description": d}))
            }
            Refusal::Unavailable(d) => (
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                json!({"error": "temporarily_unavailable", "error_description": d}),
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

#[cfg(test)]
mod tests {
    use super::*;

    const CTX: ChallengeContext<'static> = ChallengeContext {
        resource_metadata: "https://mcp.example.com/.well-known/oauth-protected-resource/mcp",
        default_scope: "mcp:read mcp:tools",
    };

    fn challenge(r: Refusal) -> (StatusCode, String) {
        let res = r.into_response_with(&CTX);
        let h = res.headers().get(header::WWW_AUTHENTICATE).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        (res.status(), h)
    }

    #[test]
    fn challenges_name_the_metadata_and_start_with_bearer() {
        let (status, h) = challenge(Refusal::NoToken);
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            h,
            "Bearer resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\", scope=\"mcp:read mcp:tools\""
        );
        let (status, h) = challenge(Refusal::InvalidToken("the access token has \"expired\"".into()));
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(
            h.starts_with("Bearer error=\"invalid_token\", error_description=\"the access token has expired\""),
            "{h}"
        );
        assert!(h.ends_with("resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\""));
        let (status, h) = challenge(Refusal::InsufficientScope {
            scope: "mcp:read mcp:tools".into(),
            description: "this operation needs mcp:tools".into(),
        });
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(h.starts_with("Bearer error=\"insufficient_scope\", scope=\"mcp:read mcp:tools\""), "{h}");
        let (status, h) = challenge(Refusal::BadRequest("no tokens in URLs".into()));
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(h.starts_with("Bearer error=\"invalid_request\""));
        let (status, h) = challenge(Refusal::Unavailable("issuer down".into()));
        assert_eq!((status, h.as_str()), (StatusCode::SERVICE_UNAVAILABLE, ""));
    }
}
