//! The tower layer: metadata, bearer token, validation, scope per JSON-RPC method, and the
//! verified token handed on as a request extension.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Json;
use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, Method, Request, Response, header};
use axum::response::IntoResponse;
use tower::{Layer, Service};

use crate::bearer::bearer_token;
use crate::challenge::{ChallengeContext, Refusal};
use crate::metadata::{ProtectedResourceMetadata, metadata_path, metadata_url};
use crate::scopes::{DEFAULT_SCOPE, MethodScopes};
use crate::validator::{GrantedScopes, TokenValidator};

/// Largest JSON-RPC message read for the scope check, by default.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// How one MCP resource is protected. Build it, then call [`ResourceGuard::layer`].
pub struct ResourceGuard<V> {
    metadata: ProtectedResourceMetadata,
    default_scope: String,
    scopes: MethodScopes,
    max_message_bytes: usize,
    validator: V,
}

impl<V: TokenValidator> ResourceGuard<V> {
    /// `resource`: the MCP URL clients connect to; `authorization_server`: the issuer that
    /// grants tokens for it.
    pub fn new(resource: impl Into<String>, authorization_server: impl Into<String>, validator: V) -> Self {
        ResourceGuard {
            metadata: ProtectedResourceMetadata::new(resource, authorization_server),
            default_scope: DEFAULT_SCOPE.to_owned(),
            scopes: MethodScopes::default(),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            validator,
        }
    }

    /// Change what the metadata document says (scopes offered, name…).
    pub fn with_metadata(mut self, edit: impl FnOnce(&mut ProtectedResourceMetadata)) -> Self {
        edit(&mut self.metadata);
        self
    }

    /// The scopes named in the challenge to a client without a token.
    pub fn with_default_scope(mut self, scope: impl Into<String>) -> Self {
        self.default_scope = scope.into();
        self
    }

    pub fn with_method_scopes(mut self, scopes: MethodScopes) -> Self {
        self.scopes = scopes;
        self
    }

    pub fn with_max_message_bytes(mut self, max: usize) -> Self {
        self.max_message_bytes = max;
        self
    }

    pub fn layer(self) -> ResourceGuardLayer<V> {
        let metadata_url = metadata_url(&self.metadata.resource);
        let metadata_path = metadata_path(&self.metadata.resource);
        ResourceGuardLayer { guard: Arc::new(Shared { guard: self, metadata_url, metadata_path }) }
    }
}

struct Shared<V> {
    guard: ResourceGuard<V>,
    metadata_url: String,
    metadata_path: String,
}

pub struct ResourceGuardLayer<V> {
    guard: Arc<Shared<V>>,
}

impl<V> Clone for ResourceGuardLayer<V> {
    fn clone(&self) -> Self {
        ResourceGuardLayer { guard: self.guard.clone() }
    }
}

impl<S, V> Layer<S> for ResourceGuardLayer<V> {
    type Service = ResourceGuardService<S, V>;

    fn layer(&self, inner: S) -> Self::Service {
        ResourceGuardService { inner, guard: self.guard.clone() }
    }
}

pub struct ResourceGuardService<S, V> {
    inner: S,
    guard: Arc<Shared<V>>,
}

impl<S: Clone, V> Clone for ResourceGuardService<S, V> {
    fn clone(&self) -> Self {
        ResourceGuardService { inner: self.inner.clone(), guard: self.guard.clone() }
    }
}

impl<S, V, ReqBody, ResBody> Service<Request<ReqBody>> for ResourceGuardService<S, V>
where
    S: Service<Request<Body>, Response = Response<ResBody>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
    V: TokenValidator + 'static,
    ReqBody: axum::body::HttpBody<Data = Bytes> + Send + 'static,
    ReqBody::Error: Into<axum::BoxError>,
    ResBody: axum::body::HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<axum::BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // The clone that was polled ready serves this request (tower's usual pattern).
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let guard = self.guard.clone();
        Box::pin(async move {
            let req = req.map(Body::new);
            let ctx =
                ChallengeContext { resource_metadata: &guard.metadata_url, default_scope: &guard.guard.default_scope };
            match admit(&guard, req).await {
                Ok(Admitted::Metadata) => Ok(metadata_response(&guard.guard.metadata)),
                Ok(Admitted::Forward(req)) => {
                    let mut inner = inner;
                    inner.call(*req).await.map(|res| res.map(Body::new))
                }
                Err(refusal) => Ok(refusal.into_response_with(&ctx)),
            }
        })
    }
}

enum Admitted {
    Metadata,
    Forward(Box<Request<Body>>),
}

async fn admit<V: TokenValidator>(shared: &Shared<V>, req: Request<Body>) -> Result<Admitted, Refusal> {
    let guard = &shared.guard;
    let path = req.uri().path();
    if path == shared.metadata_path || path == "/.well-known/oauth-protected-resource" {
        return match *req.method() {
            Method::GET | Method::HEAD => Ok(Admitted::Metadata),
            _ => Err(Refusal::BadRequest("the resource metadata is read with GET".into())),
        };
    }
    // CORS preflights carry no credentials by design.
    if req.method() == Method::OPTIONS {
        return Ok(Admitted::Forward(Box::new(req)));
    }
    let (mut parts, body) = req.into_parts();
    let verified = guard.validator.validate(bearer_token(&parts.headers, parts.uri.query())?).await?;
    let body = if parts.method == Method::POST {
        let max = guard.max_message_bytes;
        let bytes = axum::body::to_bytes(body, max)
            .await
            .map_err(|_| Refusal::BadRequest(format!("JSON-RPC messages are limited to {max} bytes")))?;
        guard.scopes.check_message(verified.granted_scopes(), &bytes)?;
        Body::from(bytes)
    } else {
        body
    };
    parts.extensions.insert(verified);
    Ok(Admitted::Forward(Box::new(Request::from_parts(parts, body))))
}

fn metadata_response(metadata: &ProtectedResourceMetadata) -> Response<Body> {
    let mut res = Json(metadata).into_response();
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    res.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validator::VerifiedToken;
    use axum::http::StatusCode;
    use tower::ServiceExt;

    /// Accepts `good-<scopes>` tokens.
    struct Fixed;

    impl TokenValidator for Fixed {
        type Verified = VerifiedToken;

        async fn validate(&self, token: &str) -> Result<VerifiedToken, Refusal> {
            let scopes = token.strip_prefix("good-").ok_or(Refusal::InvalidToken("unknown token".into()))?;
            Ok(VerifiedToken {
                issuer: "https://as.example.com".into(),
                subject: "alice".into(),
                client_id: None,
                scopes: scopes.split(',').map(str::to_owned).collect(),
                expires_at: 0,
                claims: Default::default(),
            })
        }
    }

    fn app() -> axum::Router {
        let handler = |req: Request<Body>| async move {
            let who = req.extensions().get::<VerifiedToken>().map(|v| v.subject.clone()).unwrap_or_default();
            who.into_response()
        };
        axum::Router::new()
            .route("/mcp", axum::routing::any(handler))
            .layer(ResourceGuard::new("https://mcp.example.com/mcp", "https://as.example.com", Fixed).layer())
    }

    fn post(token: Option<&str>, body: &'static str) -> Request<Body> {
        let mut b = Request::post("/mcp").header("content-type", "application/json");
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        b.body(Body::from(body)).unwrap()
    }

    async fn send(req: Request<Body>) -> (StatusCode, String, String) {
        let res = app().oneshot(req).await.unwrap();
        let status = res.status();
        let challenge =
            res.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        let body = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
        (status, challenge, String::from_utf8_lossy(&body).into_owned())
    }

    const CALL: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#;

    #[tokio::test]
    async fn the_layer_guards_and_hands_on_claims() {
        let (status, _, body) =
            send(Request::get("/.well-known/oauth-protected-resource/mcp").body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(doc["resource"], "https://mcp.example.com/mcp");
        assert_eq!(doc["authorization_servers"][0], "https://as.example.com");

        let (status, challenge, _) = send(post(None, CALL)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            challenge,
            "Bearer resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\", scope=\"mcp:read mcp:tools\""
        );
        let (status, challenge, _) = send(post(Some("forged"), CALL)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(challenge.starts_with("Bearer error=\"invalid_token\""), "{challenge}");
        let (status, challenge, _) = send(post(Some("good-mcp:read"), CALL)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(
            challenge.starts_with("Bearer error=\"insufficient_scope\", scope=\"mcp:read mcp:tools\""),
            "{challenge}"
        );
        let (status, _, body) = send(post(Some("good-mcp:tools"), CALL)).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "alice"));

        let in_url = Request::post("/mcp?access_token=good-mcp:tools").body(Body::from(CALL)).unwrap();
        assert_eq!(send(in_url).await.0, StatusCode::BAD_REQUEST);
    }
}
