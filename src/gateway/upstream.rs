//! Sessions from the gateway to a workspace's upstream MCP servers.
//!
//! Three kinds of upstream, all ending as one rmcp client session ([`UpstreamClient`]):
//! - Streamable HTTP: a URL, plus static headers (API keys and the like) sent on every request.
//! - stdio: a command the gateway spawns; it speaks newline-delimited JSON-RPC on stdin/stdout,
//!   and each line it writes to stderr goes to our logs, tagged with the upstream's name.
//! - The built-in demo server ([`super::demo::DemoServer`]), served in process over a pair of
//!   channels, so that messages are never serialised and the caller's identity travels with
//!   each request as an in-memory extension.
//!
//! Towards upstreams the gateway introduces itself as `gatehouse`. The client's own token is
//! never among what is sent: HTTP upstreams get only the headers configured for them.

pub mod auth;
mod direct_http;
mod relay;

use std::{collections::HashMap, process::Stdio, sync::Arc, time::Duration};

use axum::http::{HeaderName, HeaderValue};
use rmcp::{
    ClientLifecycleMode, ClientServiceExt, ErrorData, RoleClient, RoleServer, ServiceExt,
    model::{
        ClientCapabilities, ClientConfig, ClientNotification, ClientRequest, ErrorCode, GetMeta, Implementation,
        ProtocolVersion, RequestMetaObject, ServerResult,
    },
    service::{
        PeerRequestOptions, RequestContext, RequestHandle, RunningService, RxJsonRpcMessage, ServiceError, ServiceRole,
        TxJsonRpcMessage,
    },
    transport::{
        StreamableHttpClientTransport, TokioChildProcess, Transport,
        streamable_http_client::StreamableHttpClientTransportConfig,
    },
};
use tokio::{io::AsyncBufReadExt, sync::mpsc};

pub use auth::{BearerSource, CredentialResolver, SignInRequired};
use direct_http::{DirectHttp, Poster};
pub use relay::{Listeners, Relay};

use super::demo::DemoServer;

/// How long connecting (spawning or reaching the server, plus the MCP handshake) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Environment variables a stdio upstream inherits from the gateway. Everything else is
/// withheld: the gateway's environment may hold its master key or database password, which a
/// third-party MCP server has no business seeing.
const INHERITED_ENV: &[&str] = &["PATH", "HOME", "USER", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "SYSTEMROOT"];

/// One configured upstream MCP server of a workspace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    /// Unique within the workspace; used as the prefix of its tool and prompt names.
    pub name: String,
    pub spec: UpstreamSpec,
}

/// Where an upstream lives and how to talk to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpstreamSpec {
    /// A Streamable HTTP MCP endpoint, with headers added to every request.
    Http { url: String, headers: Vec<(String, String)> },
    /// A child process speaking MCP over stdio.
    Stdio { command: String, args: Vec<String> },
    /// Gatehouse's built-in demo server, in process.
    Demo,
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream `{upstream}`: header {header:?} is not a valid HTTP header")]
    InvalidHeader { upstream: String, header: String },
    #[error("upstream `{upstream}`: could not start `{command}`: {source}")]
    Spawn { upstream: String, command: String, source: std::io::Error },
    #[error("upstream `{upstream}` did not complete the MCP handshake within {}s", CONNECT_TIMEOUT.as_secs())]
    Timeout { upstream: String },
    #[error("upstream `{upstream}`: MCP handshake failed: {reason}")]
    Handshake { upstream: String, reason: String },
    #[error("upstream `{upstream}`: {}{}", required.reason, required.connect_url.as_deref().map(|u| format!(" (connect your account at {u})")).unwrap_or_default())]
    SignIn { upstream: String, required: SignInRequired },
}

/// How the gateway opens its connection to an upstream, following the downstream client it
/// serves (the two protocol eras cannot be bridged request by request: a 2025 session relays
/// sampling and elicitation as server-to-client requests, 2026-07-28 returns them inside
/// results as input requests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifecycle {
    /// The `initialize` handshake and a session (MCP 2025-06-18 and 2025-11-25).
    Session,
    /// `server/discover` and self-contained requests (MCP 2026-07-28), falling back to a
    /// session when the upstream predates 2026-07-28.
    Stateless,
}

/// Keys of the reserved `_meta` namespace that describe the sender of a request; the gateway
/// sends its own (rmcp fills them in), never the downstream client's.
const SENDER_META: &[&str] =
    &["io.modelcontextprotocol/protocolVersion", "io.modelcontextprotocol/clientInfo", "progressToken"];
const RESERVED_META_PREFIX: &str = "io.modelcontextprotocol/";

/// A live MCP client session with one upstream. Dropping it ends the session (and kills a
/// stdio child).
pub struct UpstreamClient {
    name: String,
    service: RunningService<RoleClient, Relay>,
    /// The upstream speaks 2026-07-28 (requests carry their own context in `_meta`).
    stateless: bool,
    /// A stateless HTTP upstream: tool calls for stateless clients are posted directly.
    direct: Option<DirectHttp>,
}

/// Who the gateway says it is, and what it can relay back to its own client.
#[allow(deprecated)] // sampling and roots: deprecated by SEP-2577, still in the revisions we serve
fn client_config() -> ClientConfig {
    // Sampling, elicitation and roots are relayed to the downstream client (see `Relay`), so
    // they are offered to upstreams; if the downstream client lacks one, the relayed request
    // fails there and the upstream gets that error.
    let capabilities = ClientCapabilities::builder().enable_roots().enable_sampling().enable_elicitation().build();
    ClientConfig::new(capabilities, Implementation::new("gatehouse", env!("CARGO_PKG_VERSION")))
}

/// Opens an MCP session to `upstream`, with a fresh [`Relay`] (not yet attached to any
/// downstream client) that also tells `listeners` of list changes. An HTTP upstream that
/// signs in gets its token from `bearer` on every request.
pub async fn connect(
    upstream: &Upstream,
    lifecycle: Lifecycle,
    listeners: &Listeners,
    bearer: Option<Arc<dyn BearerSource>>,
) -> Result<UpstreamClient, UpstreamError> {
    let relay = Relay::new(&upstream.name, client_config(), listeners.clone(), lifecycle == Lifecycle::Session);
    connect_with(upstream, relay, lifecycle, bearer).await
}

async fn connect_with(
    upstream: &Upstream,
    relay: Relay,
    lifecycle: Lifecycle,
    bearer: Option<Arc<dyn BearerSource>>,
) -> Result<UpstreamClient, UpstreamError> {
    let name = upstream.name.clone();
    let mode = match lifecycle {
        Lifecycle::Session => ClientLifecycleMode::Initialize,
        Lifecycle::Stateless => {
            ClientLifecycleMode::Auto { preferred_versions: vec![ProtocolVersion::V_2026_07_28], legacy_version: None }
        }
    };
    let handshake = async {
        match &upstream.spec {
            UpstreamSpec::Http { url, headers } => {
                let headers = header_map(&name, headers)?;
                let config = StreamableHttpClientTransportConfig::with_uri(url.as_str())
                    .custom_headers(headers.clone())
                    // An upstream restarted behind us forgets our session; start a new one
                    // rather than failing every later call.
                    .reinit_on_expired_session(true);
                // One client (one connection pool) for rmcp's transport and the direct calls.
                let poster = match bearer {
                    Some(source) => Poster::Bearer(auth::BearerClient::new(source)),
                    None => Poster::Plain(http_client()),
                };
                let service = match poster.clone() {
                    Poster::Bearer(client) => {
                        let transport = StreamableHttpClientTransport::with_client(client, config);
                        relay.serve_with_lifecycle(transport, mode).await
                    }
                    Poster::Plain(client) => {
                        let transport = StreamableHttpClientTransport::with_client(client, config);
                        relay.serve_with_lifecycle(transport, mode).await
                    }
                };
                let service = service.map_err(|e| handshake_error(&name, e))?;
                Ok((service, Some((url.as_str(), headers, poster))))
            }
            UpstreamSpec::Stdio { command, args } => {
                let transport = spawn_stdio(&name, command, args)?;
                let service =
                    relay.serve_with_lifecycle(transport, mode).await.map_err(|e| handshake_error(&name, e))?;
                Ok((service, None))
            }
            UpstreamSpec::Demo => {
                let (client_side, server_side) = channel_pair();
                tokio::spawn(async move {
                    // Ends when the client side is dropped (its channels close).
                    match DemoServer::new().serve(server_side).await {
                        Ok(running) => drop(running.waiting().await),
                        Err(error) => tracing::warn!(%error, "in-process demo server failed to start"),
                    }
                });
                let service =
                    relay.serve_with_lifecycle(client_side, mode).await.map_err(|e| handshake_error(&name, e))?;
                Ok((service, None))
            }
        }
    };
    let (service, http) = tokio::time::timeout(CONNECT_TIMEOUT, handshake)
        .await
        .map_err(|_| UpstreamError::Timeout { upstream: name.clone() })??;
    let stateless = service.peer().peer_info().is_some_and(|info| !info.protocol_version.has_initialize());
    tracing::info!(upstream = %name, stateless, "connected to upstream MCP server");
    let direct = match http {
        Some((url, headers, poster)) if stateless => {
            Some(DirectHttp::new(&name, url, headers, poster, &client_config()))
        }
        Some(_) | None => None,
    };
    Ok(UpstreamClient { name, service, stateless, direct })
}

/// The HTTP client of one upstream connection. Unlike rmcp's default client it keeps idle
/// connections: rmcp's opens a TCP connection for every message (its pool is off), which
/// cost a stateless `tools/call` a connect and left a socket in TIME_WAIT per request. A
/// response is always read to its end or the connection dropped with it (hyper never reuses a
/// connection whose body was not consumed), so a kept connection carries no leftover bytes.
/// Redirects are never followed: an upstream's URL is configured, and a redirect must not
/// carry its headers or token somewhere else.
pub(crate) fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .pool_idle_timeout(UPSTREAM_IDLE)
        .build()
        .unwrap_or_default()
}

/// An idle connection to an upstream is closed after this (servers close theirs too).
const UPSTREAM_IDLE: Duration = Duration::from_secs(30);

fn handshake_error(upstream: &str, error: impl std::fmt::Display) -> UpstreamError {
    UpstreamError::Handshake { upstream: upstream.to_owned(), reason: error.to_string() }
}

fn header_map(upstream: &str, headers: &[(String, String)]) -> Result<HashMap<HeaderName, HeaderValue>, UpstreamError> {
    headers
        .iter()
        .map(|(name, value)| {
            let invalid = || UpstreamError::InvalidHeader { upstream: upstream.to_owned(), header: name.clone() };
            let name = HeaderName::try_from(name.as_str()).map_err(|_| invalid())?;
            let mut value = HeaderValue::try_from(value.as_str()).map_err(|_| invalid())?;
            // Keeps credentials out of any debug output of the transport.
            value.set_sensitive(true);
            Ok((name, value))
        })
        .collect()
}

/// Spawns a stdio upstream with a scrubbed environment and its stderr piped into our logs.
fn spawn_stdio(upstream: &str, command: &str, args: &[String]) -> Result<TokioChildProcess, UpstreamError> {
    let mut cmd = tokio::process::Command::new(command);
    cmd.args(args).env_clear().kill_on_drop(true);
    for key in INHERITED_ENV {
        if let Some(value) = std::env::var_os(key) {
            cmd.env(key, value);
        }
    }
    let spawn_error =
        |source| UpstreamError::Spawn { upstream: upstream.to_owned(), command: command.to_owned(), source };
    let (process, stderr) = TokioChildProcess::builder(cmd).stderr(Stdio::piped()).spawn().map_err(spawn_error)?;
    if let Some(stderr) = stderr {
        // Reading stderr continuously also keeps a chatty child from blocking on a full pipe.
        let upstream = upstream.to_owned();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::info!(target: "gatehouse::upstream::stderr", upstream = %upstream, "{line}");
            }
        });
    }
    Ok(process)
}

impl UpstreamClient {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The upstream's `initialize` answer (server info, capabilities, instructions).
    pub fn peer_info(&self) -> Option<Arc<rmcp::model::ServerPeerInfo>> {
        self.service.peer().peer_info()
    }

    /// The rmcp client peer, for requests that need no relaying (listings).
    pub fn peer(&self) -> &rmcp::Peer<RoleClient> {
        self.service.peer()
    }

    /// The session ended (the process exited, the connection broke, or the server closed it).
    pub fn is_closed(&self) -> bool {
        self.service.is_closed() || self.service.peer().is_transport_closed()
    }

    pub fn relay(&self) -> &Relay {
        self.service.service()
    }

    /// The upstream speaks the stateless 2026-07-28 protocol.
    pub fn is_stateless(&self) -> bool {
        self.stateless
    }

    /// The downstream request's `_meta` as it may travel upstream: never the client's identity
    /// or its progress token (rmcp puts in the gateway's own); towards a 2026-07-28 upstream
    /// its declared capabilities and the rest of the reserved keys (such as the log level)
    /// travel on, since what the gateway can do for an upstream is what its client can;
    /// towards a session-based upstream only the application's own keys.
    fn forwarded_meta(&self, downstream: &RequestMetaObject) -> RequestMetaObject {
        let mut meta = RequestMetaObject::default();
        for (key, value) in downstream.0.0.iter() {
            let reserved = key.starts_with(RESERVED_META_PREFIX);
            let keep = !SENDER_META.contains(&key.as_str()) && (!reserved || self.stateless);
            if keep {
                meta.0.0.insert(key.clone(), value.clone());
            }
        }
        meta
    }

    /// Sends `request` upstream on behalf of the downstream request `context`: progress the
    /// upstream reports is passed on under the downstream client's progress token, server-to-
    /// client requests it makes meanwhile go to that client, and if the downstream client
    /// cancels, the upstream request is cancelled too.
    pub async fn forward(
        &self,
        request: ClientRequest,
        context: &RequestContext<RoleServer>,
    ) -> Result<ServerResult, ErrorData> {
        let relay = self.relay();
        relay.attach(&context.peer);
        let handle = self.send(request, &context.meta).await?;
        let _forwarding = relay.begin(&handle.progress_token, context);
        let (id, peer) = (handle.id.clone(), handle.peer.clone());
        tokio::select! {
            result = handle.await_response() => {
                relay.settle().await;
                result.map_err(|error| self.error(error))
            }
            () = context.ct.cancelled() => {
                // Best effort: the upstream may already have finished or gone away.
                drop(peer.send_notification(cancelled(id)).await);
                Err(ErrorData::new(ErrorCode::INTERNAL_ERROR, "request cancelled", None))
            }
        }
    }

    /// Sends `request` upstream for a stateless downstream request that the endpoint answers
    /// itself (see `gateway::direct`), whose `_meta` is `meta`. Nothing is relayed: such a
    /// request asked for no progress, and a 2026-07-28 upstream sends no server-to-client
    /// requests (it returns them inside results). If this future is dropped first (the client
    /// went away), the upstream request is cancelled.
    pub async fn forward_direct(
        &self,
        request: ClientRequest,
        meta: &RequestMetaObject,
    ) -> Result<ServerResult, ErrorData> {
        let request = match (request, &self.direct) {
            (ClientRequest::CallToolRequest(call), Some(direct)) if direct.can_call(&call.params.name) => {
                return direct.call_tool(call.params, self.forwarded_meta(meta)).await;
            }
            (request, _) => request,
        };
        let handle = self.send(request, meta).await?;
        let mut pending = CancelOnDrop(Some((handle.id.clone(), handle.peer.clone())));
        let result = handle.await_response().await;
        pending.0 = None;
        result.map_err(|error| self.error(error))
    }

    /// Sends `request` through rmcp's client session, its `_meta` replaced by what of the
    /// downstream request's `meta` may travel upstream.
    async fn send(
        &self,
        mut request: ClientRequest,
        meta: &RequestMetaObject,
    ) -> Result<RequestHandle<RoleClient>, ErrorData> {
        *request.get_meta_mut() = RequestMetaObject::default();
        let options = PeerRequestOptions::no_options().with_meta(self.forwarded_meta(meta));
        self.service.peer().send_request_with_option(request, options).await.map_err(|error| self.error(error))
    }

    /// Maps a failure talking to the upstream to the JSON-RPC error the client sees: the
    /// upstream's own error as it is, anything else as "unavailable", naming the upstream.
    pub fn error(&self, error: ServiceError) -> ErrorData {
        match error {
            ServiceError::McpError(error) => error,
            ServiceError::Timeout { timeout } => unavailable(&self.name, &format!("no answer within {timeout:?}")),
            other => unavailable(&self.name, &other.to_string()),
        }
    }

    /// Ends the session, waiting briefly for a stdio child to exit.
    pub async fn close(mut self) {
        drop(self.service.close_with_timeout(Duration::from_secs(5)).await);
    }
}

/// The notification that cancels upstream request `id`.
fn cancelled(id: rmcp::model::RequestId) -> ClientNotification {
    ClientNotification::CancelledNotification(rmcp::model::CancelledNotification::new(
        rmcp::model::CancelledNotificationParam::new(Some(id), Some("cancelled by the client".to_owned())),
    ))
}

/// Cancels an upstream request when dropped while still armed (its downstream request was
/// abandoned before the answer came).
struct CancelOnDrop(Option<(rmcp::model::RequestId, rmcp::Peer<RoleClient>)>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some((id, peer)) = self.0.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            // Best effort, as above; a drop cannot wait for the send.
            runtime.spawn(async move { drop(peer.send_notification(cancelled(id)).await) });
        }
    }
}

/// The JSON-RPC error for a request that needs an upstream which cannot be reached.
pub fn unavailable(upstream: &str, reason: &str) -> ErrorData {
    ErrorData::new(
        ErrorCode::INTERNAL_ERROR,
        format!("upstream `{upstream}` is unavailable: {reason}"),
        Some(serde_json::json!({ "upstream": upstream })),
    )
}

/// An in-memory transport: messages cross as values, extensions included.
struct Channel<R: ServiceRole> {
    tx: mpsc::Sender<TxJsonRpcMessage<R>>,
    rx: mpsc::Receiver<RxJsonRpcMessage<R>>,
}

/// Two connected in-memory transports. What one role transmits is, type for type, what the
/// other receives, so the channels connect directly.
fn channel_pair() -> (Channel<RoleClient>, Channel<RoleServer>) {
    let (to_server, from_client) = mpsc::channel(64);
    let (to_client, from_server) = mpsc::channel(64);
    (Channel { tx: to_server, rx: from_server }, Channel { tx: to_client, rx: from_client })
}

impl<R: ServiceRole> Transport<R> for Channel<R> {
    type Error = std::io::Error;

    fn send(&mut self, item: TxJsonRpcMessage<R>) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let tx = self.tx.clone();
        async move {
            tx.send(item)
                .await
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "in-process peer is gone"))
        }
    }

    fn receive(&mut self) -> impl Future<Output = Option<RxJsonRpcMessage<R>>> + Send {
        self.rx.recv()
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.rx.close();
        Ok(())
    }
}
