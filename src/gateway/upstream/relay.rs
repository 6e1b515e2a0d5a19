//! The gateway's client-side handler for one upstream session: passes what the upstream sends
//! on its own initiative (progress, log messages, list changes, and the server-to-client
//! requests sampling, elicitation and roots) on to the downstream MCP client.
//!
//! Which downstream client? The one whose request is being forwarded when the message arrives
//! (progress is matched exactly by its token); failing that, the client that last used this
//! upstream session. With one aggregator per downstream session, as the gateway runs it for
//! session-based clients, that is always the right client. List changes and resource updates
//! also go to every open `subscriptions/listen` stream ([`Listeners`]), which is how stateless
//! (2026-07-28) clients hear of them; those clients get no unsolicited notifications otherwise.

// Sampling, roots and logging are deprecated by SEP-2577 but still part of the revisions the
// gateway serves (2025-06-18, 2025-11-25), so they are relayed.
#![allow(deprecated)]

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
};

use rmcp::{
    ClientHandler, ErrorData, Peer, RoleClient, RoleServer,
    model::{
        ClientConfig, ClientResult, CreateMessageRequest, CreateMessageRequestParams, CreateMessageResult,
        ElicitRequest, ElicitRequestParams, ElicitResult, ErrorCode, GetExtensions, ListRootsRequest, ListRootsResult,
        LoggingMessageNotificationParam, ProgressNotificationParam, ProgressToken, PromptListChangedNotification,
        RequestId, ResourceListChangedNotification, ResourceUpdatedNotification, ResourceUpdatedNotificationParam,
        ServerNotification, ServerRequest, ToolListChangedNotification,
    },
    service::SubscriptionSink,
    service::{NotificationContext, OriginatingRequestId, RequestContext},
};

/// Open `subscriptions/listen` streams of one merged server, told about list changes and
/// resource updates from every upstream. Closed streams are dropped on the next send.
#[derive(Clone, Default)]
pub struct Listeners(Arc<Mutex<Vec<SubscriptionSink>>>);

impl Listeners {
    pub fn add(&self, sink: SubscriptionSink) {
        lock(&self.0).push(sink);
    }

    pub fn remove(&self, id: &RequestId) {
        lock(&self.0).retain(|sink| sink.id() != id);
    }

    /// Sends `notification` to every stream whose filter accepts it.
    pub async fn send(&self, notification: ServerNotification) {
        let sinks = lock(&self.0).clone();
        for sink in sinks {
            match sink.send(notification.clone()).await {
                Ok(()) | Err(rmcp::service::SubscriptionSendError::NotificationNotAccepted(_)) => {}
                Err(_) => self.remove(sink.id()),
            }
        }
    }
}

/// Client handler of an upstream session; cheap to clone (shared state).
#[derive(Clone)]
pub struct Relay(Arc<Inner>);

struct Inner {
    upstream: String,
    config: ClientConfig,
    listeners: Listeners,
    /// Downstream clients hold sessions, so unsolicited notifications may go to them directly.
    session_clients: bool,
    /// The downstream client that last sent a request through this session.
    latest: Mutex<Option<Peer<RoleServer>>>,
    /// Requests being forwarded, by the progress token the gateway gave them upstream.
    forwards: Mutex<HashMap<ProgressToken, Forward>>,
    sequence: AtomicU64,
    /// Notification handlers running now (see [`Relay::settle`]).
    relaying: AtomicUsize,
}

#[derive(Clone)]
struct Forward {
    peer: Peer<RoleServer>,
    /// The downstream request: server-to-client requests are sent in its context, so that a
    /// Streamable HTTP client receives them on that request's response stream.
    request: RequestId,
    /// The downstream client's progress token, if it asked for progress.
    progress: Option<ProgressToken>,
    order: Arc<ProgressOrder>,
    sequence: u64,
}

/// How long a progress notification waits for others of the same burst.
const PROGRESS_BATCH: std::time::Duration = std::time::Duration::from_millis(10);

/// Keeps a request's relayed progress increasing. rmcp hands each notification to its own
/// task, so notifications that arrive together can reach the handler in any order; progress
/// must increase (MCP), so its value is the order: a burst is sent sorted, and a straggler
/// older than what was already sent is dropped rather than sent backwards.
#[derive(Default)]
struct ProgressOrder {
    pending: Mutex<Vec<ProgressNotificationParam>>,
    /// Held while sending; the last progress value sent.
    sent: tokio::sync::Mutex<Option<f64>>,
}

struct Relaying<'a>(&'a AtomicUsize);

impl Drop for Relaying<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Marks a request as being forwarded until dropped.
pub struct Forwarding {
    relay: Relay,
    token: ProgressToken,
}

impl Drop for Forwarding {
    fn drop(&mut self) {
        lock(&self.relay.0.forwards).remove(&self.token);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded maps stay consistent even if a holder panicked.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Relay {
    pub fn new(upstream: &str, config: ClientConfig, listeners: Listeners, session_clients: bool) -> Self {
        Self(Arc::new(Inner {
            upstream: upstream.to_owned(),
            config,
            listeners,
            session_clients,
            latest: Mutex::default(),
            forwards: Mutex::default(),
            sequence: AtomicU64::new(0),
            relaying: AtomicUsize::new(0),
        }))
    }

    /// Waits, briefly, for progress and log messages that arrived before a response to be
    /// passed on. rmcp runs each notification handler as its own task, so a response can
    /// overtake the notifications sent ahead of it; relayed after the response, they would
    /// find the downstream request finished (and a stateless client's stream closed).
    pub async fn settle(&self) {
        const ROUNDS: usize = 200;
        for round in 0..ROUNDS {
            tokio::task::yield_now().await;
            if round >= 3 && self.0.relaying.load(Ordering::Acquire) == 0 {
                return;
            }
            if round >= 3 {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        }
    }

    /// Counts a running notification handler until dropped.
    fn relaying(&self) -> Relaying<'_> {
        self.0.relaying.fetch_add(1, Ordering::AcqRel);
        Relaying(&self.0.relaying)
    }

    /// Makes `peer` the downstream client for messages not tied to a forwarded request.
    pub fn attach(&self, peer: &Peer<RoleServer>) {
        *lock(&self.0.latest) = Some(peer.clone());
    }

    /// Records that the upstream request tagged `upstream_token` is forwarded for `context`.
    pub fn begin(&self, upstream_token: &ProgressToken, context: &RequestContext<RoleServer>) -> Forwarding {
        let forward = Forward {
            peer: context.peer.clone(),
            request: context.id.clone(),
            progress: context.meta.get_progress_token(),
            order: Arc::default(),
            sequence: self.0.sequence.fetch_add(1, Ordering::Relaxed),
        };
        lock(&self.0.forwards).insert(upstream_token.clone(), forward);
        Forwarding { relay: self.clone(), token: upstream_token.clone() }
    }

    fn latest_peer(&self) -> Option<Peer<RoleServer>> {
        lock(&self.0.latest).clone()
    }

    /// Where a notification that belongs to no particular request goes: the session client,
    /// if clients hold sessions (stateless clients only hear through their listen streams).
    fn session_peer(&self) -> Option<Peer<RoleServer>> {
        if self.0.session_clients { self.latest_peer() } else { None }
    }

    /// Passes a list change or resource update on to the session client and every listener.
    async fn announce(&self, notification: ServerNotification) {
        if let Some(peer) = self.session_peer() {
            drop(peer.send_notification(notification.clone()).await);
        }
        self.0.listeners.send(notification).await;
    }

    /// The most recent forwarded request still in flight.
    fn current(&self) -> Option<Forward> {
        lock(&self.0.forwards).values().max_by_key(|forward| forward.sequence).cloned()
    }

    /// Sends a server-to-client request to the downstream client, in the context of the
    /// forwarded request it most likely belongs to.
    async fn ask_downstream(
        &self,
        mut request: ServerRequest,
        context: &RequestContext<RoleClient>,
    ) -> Result<ClientResult, ErrorData> {
        let (peer, origin) = match self.current() {
            Some(forward) => (forward.peer, Some(forward.request)),
            None => match self.latest_peer() {
                Some(peer) => (peer, None),
                None => return Err(ErrorData::new(ErrorCode::INTERNAL_ERROR, "no client is connected", None)),
            },
        };
        if let Some(origin) = origin {
            request.extensions_mut().insert(OriginatingRequestId(origin));
        }
        // rmcp stamps outbound requests with the request being handled on this task (here: the
        // upstream's), which would override the marker set above; a fresh task has none.
        let send = tokio::spawn(async move { peer.send_request(request).await });
        let upstream = self.0.upstream.clone();
        tokio::select! {
            joined = send => match joined {
                Ok(Ok(result)) => Ok(result),
                Ok(Err(rmcp::ServiceError::McpError(error))) => Err(error),
                Ok(Err(other)) => Err(ErrorData::internal_error(format!("the client did not answer: {other}"), None)),
                Err(_) => Err(ErrorData::internal_error("relaying to the client failed", None)),
            },
            () = context.ct.cancelled() => {
                tracing::debug!(%upstream, "upstream cancelled its request to the client");
                Err(ErrorData::internal_error("cancelled by the server", None))
            }
        }
    }
}

fn unexpected() -> ErrorData {
    ErrorData::internal_error("the client sent an unexpected answer", None)
}

impl ClientHandler for Relay {
    fn get_info(&self) -> ClientConfig {
        self.0.config.clone()
    }

    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        let request = ServerRequest::CreateMessageRequest(CreateMessageRequest::new(params));
        match self.ask_downstream(request, &context).await? {
            ClientResult::CreateMessageResult(result) => Ok(*result),
            _ => Err(unexpected()),
        }
    }

    async fn list_roots(&self, context: RequestContext<RoleClient>) -> Result<ListRootsResult, ErrorData> {
        let request = ServerRequest::ListRootsRequest(ListRootsRequest::default());
        match self.ask_downstream(request, &context).await? {
            ClientResult::ListRootsResult(result) => Ok(result),
            _ => Err(unexpected()),
        }
    }

    async fn create_elicitation(
        &self,
        params: ElicitRequestParams,
        context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        let request = ServerRequest::ElicitRequest(ElicitRequest::new(params));
        match self.ask_downstream(request, &context).await? {
            ClientResult::ElicitResult(result) => Ok(result),
            _ => Err(unexpected()),
        }
    }

    async fn on_progress(&self, mut params: ProgressNotificationParam, _context: NotificationContext<RoleClient>) {
        let _relaying = self.relaying();
        let forward = lock(&self.0.forwards).get(&params.progress_token).cloned();
        // Progress nobody asked for (no downstream token) has nowhere to go.
        let Some(Forward { peer, progress: Some(token), order, .. }) = forward else {
            return;
        };
        params.progress_token = token;
        lock(&order.pending).push(params);
        // Lets the other notifications of a burst join the batch.
        tokio::time::sleep(PROGRESS_BATCH).await;
        let mut sent = order.sent.lock().await;
        let mut batch = std::mem::take(&mut *lock(&order.pending));
        batch.sort_by(|a, b| a.progress.total_cmp(&b.progress));
        for params in batch {
            if sent.is_some_and(|last| params.progress < last) {
                continue;
            }
            *sent = Some(params.progress);
            drop(peer.notify_progress(params).await);
        }
    }

    async fn on_logging_message(
        &self,
        mut params: LoggingMessageNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let _relaying = self.relaying();
        // The logger names the upstream, so that the client can tell merged servers apart.
        params.logger = Some(match params.logger.take() {
            Some(logger) => format!("{}/{logger}", self.0.upstream),
            None => self.0.upstream.clone(),
        });
        // A log message belongs with the request being forwarded, if there is one (for a
        // stateless client, the only place it can go).
        let peer = self.current().map(|forward| forward.peer).or_else(|| self.session_peer());
        if let Some(peer) = peer {
            drop(peer.notify_logging_message(params).await);
        }
    }

    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let notification = ResourceUpdatedNotification::new(params);
        self.announce(ServerNotification::ResourceUpdatedNotification(notification)).await;
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        let notification = ToolListChangedNotification::default();
        self.announce(ServerNotification::ToolListChangedNotification(notification)).await;
    }

    async fn on_prompt_list_changed(&self, _context: NotificationContext<RoleClient>) {
        let notification = PromptListChangedNotification::default();
        self.announce(ServerNotification::PromptListChangedNotification(notification)).await;
    }

    async fn on_resource_list_changed(&self, _context: NotificationContext<RoleClient>) {
        let notification = ResourceListChangedNotification::default();
        self.announce(ServerNotification::ResourceListChangedNotification(notification)).await;
    }
}
