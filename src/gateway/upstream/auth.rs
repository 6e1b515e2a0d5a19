//! Signing in to HTTP upstreams: a [`BearerSource`] (the vault, for one upstream and one
//! owner) supplies the access token for every request, and when the upstream refuses it
//! (401) is asked once for a fresh one before the request is retried. A refreshed token is
//! thus used without reconnecting, and the downstream client notices nothing.
//!
//! The gateway side only knows these traits; what is behind them lives in `vault`.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use axum::http::{HeaderName, HeaderValue};
use futures::stream::BoxStream;
use rmcp::model::ClientJsonRpcMessage;
use rmcp::transport::streamable_http_client::{
    SseError, StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
};
use sse_stream::Sse;

use super::Upstream;
use crate::gateway::demo::Caller;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Access tokens for one upstream connection. Errors are messages for the client (no secret).
pub trait BearerSource: Send + Sync + 'static {
    /// The token for the next request; `None` sends the request without one (so the server's
    /// challenge can say what it wants).
    fn token(&self) -> BoxFuture<'_, Result<Option<String>, String>>;
    /// The upstream refused `token` (401) with `challenge` (its `WWW-Authenticate`): a fresh
    /// token, if one can be had.
    fn refused(&self, token: Option<String>, challenge: String) -> BoxFuture<'_, Result<Option<String>, String>>;
    /// The upstream wants more scope (403 `insufficient_scope`): a token with it, if one can
    /// be had.
    fn insufficient_scope(
        &self,
        token: Option<String>,
        challenge: String,
    ) -> BoxFuture<'_, Result<Option<String>, String>>;
}

/// Why an upstream cannot be signed in to for this caller.
#[derive(Debug, Clone)]
pub struct SignInRequired {
    pub reason: String,
    /// Where the person connects (or reconnects) their account.
    pub connect_url: Option<String>,
}

/// Picks the credential for a connection to an upstream on behalf of a caller.
pub trait CredentialResolver: Send + Sync + 'static {
    /// `Ok(None)`: the upstream needs no token (none, or static headers only).
    fn resolve<'a>(
        &'a self,
        upstream: &'a Upstream,
        caller: Option<&'a Caller>,
    ) -> BoxFuture<'a, Result<Option<Arc<dyn BearerSource>>, SignInRequired>>;
}

/// rmcp's reqwest client with the token from a [`BearerSource`] on every request.
#[derive(Clone)]
pub struct BearerClient {
    http: reqwest::Client,
    source: Arc<dyn BearerSource>,
}

impl BearerClient {
    pub fn new(source: Arc<dyn BearerSource>) -> Self {
        BearerClient { http: super::http_client(), source }
    }

    /// Runs `call` with the current token; after a 401 or a 403 for scope, again with what
    /// the source offers instead, a bounded number of times.
    async fn with_token<T, F, Fut>(&self, call: F) -> Result<T, StreamableHttpError<reqwest::Error>>
    where
        F: Fn(Option<String>) -> Fut,
        Fut: Future<Output = Result<T, StreamableHttpError<reqwest::Error>>>,
    {
        let mut token = self.source.token().await.map_err(sign_in_failed)?;
        let mut attempts = 0;
        loop {
            let outcome = call(token.clone()).await;
            attempts += 1;
            let fresh = match outcome {
                Err(StreamableHttpError::AuthRequired(challenge)) if attempts <= MAX_RETRIES => {
                    match self.source.refused(token.clone(), challenge.www_authenticate_header.clone()).await {
                        Ok(Some(fresh)) if token.as_ref() != Some(&fresh) => fresh,
                        Ok(_) => return Err(StreamableHttpError::AuthRequired(challenge)),
                        Err(reason) => return Err(sign_in_failed(reason)),
                    }
                }
                Err(StreamableHttpError::InsufficientScope(challenge)) if attempts <= MAX_RETRIES => {
                    match self.source.insufficient_scope(token.clone(), challenge.www_authenticate_header.clone()).await
                    {
                        Ok(Some(fresh)) => fresh,
                        Ok(None) => return Err(StreamableHttpError::InsufficientScope(challenge)),
                        Err(reason) => return Err(sign_in_failed(reason)),
                    }
                }
                other => return other,
            };
            token = Some(fresh);
        }
    }
}

/// Re-authorizations one request may cause (a server that keeps refusing is not asked forever).
const MAX_RETRIES: u32 = 3;

fn sign_in_failed(reason: String) -> StreamableHttpError<reqwest::Error> {
    StreamableHttpError::UnexpectedServerResponse(format!("cannot sign in to the upstream: {reason}").into())
}

type SseStream = BoxStream<'static, Result<Sse, SseError>>;

impl StreamableHttpClient for BearerClient {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        self.with_token(|token| {
            self.http.post_message(uri.clone(), message.clone(), session_id.clone(), token, custom_headers.clone())
        })
        .await
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        self.with_token(|token| {
            self.http.post_message_with_max_sse_event_size(
                uri.clone(),
                message.clone(),
                session_id.clone(),
                token,
                custom_headers.clone(),
                max_sse_event_size,
            )
        })
        .await
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), StreamableHttpError<Self::Error>> {
        self.with_token(|token| {
            self.http.delete_session(uri.clone(), session_id.clone(), token, custom_headers.clone())
        })
        .await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<SseStream, StreamableHttpError<Self::Error>> {
        self.with_token(|token| {
            self.http.get_stream(uri.clone(), session_id.clone(), last_event_id.clone(), token, custom_headers.clone())
        })
        .await
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<SseStream, StreamableHttpError<Self::Error>> {
        self.with_token(|token| {
            self.http.get_stream_with_max_sse_event_size(
                uri.clone(),
                session_id.clone(),
                last_event_id.clone(),
                token,
                custom_headers.clone(),
                max_sse_event_size,
            )
        })
        .await
    }
}
