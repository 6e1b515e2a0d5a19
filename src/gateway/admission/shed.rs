//! Admission as the outermost layer of the whole router, so that a refused MCP request costs
//! as little as possible: no tracing span, no header redaction, no routing, no CORS layer, no
//! security-headers middleware (the refusal brings the headers those would add).
//!
//! Why it matters: at twice saturation most requests are refused, and refusing is only worth
//! it while a refusal costs much less than an answer. Measured at 51,000 req/s offered, the
//! refusals behind the router (about 20 µs each, against about 39 µs for an answered call)
//! took more than the core, so the server fell behind and refused and admitted alike waited
//! 80-90 ms.

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use futures::future::Either;

use super::{Admission, Permit};

/// Wraps a service in [`Shed`].
#[derive(Debug, Clone)]
pub struct ShedLayer(pub Arc<Admission>);

impl<S> tower::Layer<S> for ShedLayer {
    type Service = Shed<S>;

    fn layer(&self, inner: S) -> Shed<S> {
        Shed { admission: self.0.clone(), inner }
    }
}

/// Admits or refuses each POST to an MCP endpoint (`/t/{workspace}/mcp`) before the inner
/// service sees it. An admitted request carries its [`super::AdmittedAt`]; its permit is held
/// until the inner service has answered. Everything else passes untouched (SSE streams, GETs,
/// DELETEs and other routes are not counted).
#[derive(Debug, Clone)]
pub struct Shed<S> {
    admission: Arc<Admission>,
    inner: S,
}

impl<S> tower::Service<Request> for Shed<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = ShedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        if req.method() != Method::POST || !is_mcp_endpoint(req.uri().path()) {
            return ShedFuture { answer: Either::Left(self.inner.call(req)), permit: None };
        }
        match self.admission.admit() {
            Ok((permit, admitted)) => {
                req.extensions_mut().insert(admitted);
                ShedFuture { answer: Either::Left(self.inner.call(req)), permit: Some(permit) }
            }
            Err(refused) => ShedFuture { answer: Either::Right(ready(Ok(refused.into_response()))), permit: None },
        }
    }
}

pin_project_lite::pin_project! {
    /// The inner service's answer (or the refusal), holding the admitted request's permit until
    /// it is ready. Not boxed: the requests that only pass through pay nothing for the layer.
    pub struct ShedFuture<F> {
        #[pin]
        answer: Either<F, Ready<Result<Response, Infallible>>>,
        permit: Option<Permit>,
    }
}

impl<F> Future for ShedFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let answer = std::task::ready!(this.answer.poll(cx));
        this.permit.take();
        Poll::Ready(answer)
    }
}

/// `/t/{slug}/mcp`, as the router's route matches it (one segment for the slug).
fn is_mcp_endpoint(path: &str) -> bool {
    path.strip_prefix("/t/")
        .and_then(|rest| rest.strip_suffix("/mcp"))
        .is_some_and(|slug| !slug.is_empty() && !slug.contains('/'))
}

#[cfg(test)]
mod tests {
    use super::super::BUSY_IN_FLIGHT;
    use super::*;
    use axum::http::{StatusCode, header};
    use std::sync::atomic::Ordering;
    use tower::{Layer, ServiceExt};

    /// A service that says whether it saw an admission and how many requests were in flight.
    fn inner(
        admission: Arc<Admission>,
    ) -> impl tower::Service<Request, Response = Response, Error = Infallible, Future: Send + 'static> + Clone + Send + 'static
    {
        tower::service_fn(move |req: Request| {
            let seen = req.extensions().get::<super::super::AdmittedAt>().is_some();
            let in_flight = admission.in_flight.load(Ordering::Relaxed);
            async move { Ok::<_, Infallible>(format!("{seen} {in_flight}").into_response()) }
        })
    }

    fn post(path: &str) -> Request {
        Request::post(path).body(axum::body::Body::empty()).unwrap()
    }

    async fn text(res: Response) -> String {
        String::from_utf8(axum::body::to_bytes(res.into_body(), 1024).await.unwrap().to_vec()).unwrap()
    }

    #[tokio::test]
    async fn a_saturated_gateway_refuses_mcp_posts_before_the_inner_service_with_its_headers() {
        let admission = Arc::new(Admission::default());
        // The CPU reading is set by hand: a window that never ends is never measured again.
        admission.cpu.window_at_us.store(u64::MAX, Ordering::Relaxed);
        admission.cpu.permille.store(950, Ordering::Relaxed);
        let held: Vec<Permit> = (0..BUSY_IN_FLIGHT).map(|_| admission.admit().unwrap().0).collect();
        let shed = ShedLayer(admission.clone()).layer(inner(admission.clone()));

        let refused = shed.clone().oneshot(post("/t/default/mcp")).await.unwrap();
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.headers()[header::RETRY_AFTER], "1");
        assert_eq!(refused.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert_eq!(refused.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(admission.in_flight.load(Ordering::Relaxed), BUSY_IN_FLIGHT, "the refusal's slot came back");

        // Other routes and methods pass untouched, uncounted.
        let other = shed.clone().oneshot(post("/token")).await.unwrap();
        assert_eq!(text(other).await, format!("false {BUSY_IN_FLIGHT}"));
        let stream = Request::get("/t/default/mcp").body(axum::body::Body::empty()).unwrap();
        assert_eq!(text(shed.clone().oneshot(stream).await.unwrap()).await, format!("false {BUSY_IN_FLIGHT}"));

        // Caught up: admitted, counted while the inner service answers, released after.
        drop(held);
        admission.cpu.permille.store(0, Ordering::Relaxed);
        let admitted = shed.oneshot(post("/t/default/mcp")).await.unwrap();
        assert_eq!(text(admitted).await, "true 1");
        assert_eq!(admission.in_flight.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn only_the_mcp_endpoint_is_counted() {
        assert!(is_mcp_endpoint("/t/default/mcp"));
        assert!(!is_mcp_endpoint("/t//mcp"));
        assert!(!is_mcp_endpoint("/t/a/b/mcp"));
        assert!(!is_mcp_endpoint("/t/default/mcp/"));
        assert!(!is_mcp_endpoint("/.well-known/oauth-protected-resource/t/default/mcp"));
        assert!(!is_mcp_endpoint("/token"));
    }
}
