//! One MCP server made of a workspace's upstreams: their tools, resources, resource templates
//! and prompts merged, and each call routed back to the upstream it came from.
//!
//! - Tool and prompt names: see [`names`] (prefixed `{upstream}__` when there is more than one
//!   upstream).
//! - Resource URIs are passed through unchanged, because they also appear inside tool results
//!   (resource links, embedded resources) where the gateway does not rewrite them. A read is
//!   routed to the upstream that listed the URI; failing that, to the upstream with the longest
//!   matching resource-template prefix (the template up to its first `{`); failing that, each
//!   reachable upstream is tried in turn. When two upstreams list the same URI, the first one
//!   configured owns it and the duplicate is left out of the merged list.
//! - An upstream that cannot be reached is left out of listings (with a warning in the log), and
//!   requests routed to it fail with a JSON-RPC error naming it. A dead session is reconnected
//!   on a later request, which also restarts a stdio child that exited; after a failed attempt
//!   the next waits [`RETRY_AFTER`], doubling with each further failure up to [`RETRY_MAX`].
//!
//! Two ways to use it, one per protocol era ([`Lifecycle`]):
//! - per downstream MCP session (2025-06-18, 2025-11-25): the upstream sessions (and stdio
//!   children) belong to that session, and what upstreams send on their own goes back to its
//!   client;
//! - shared by the stateless (2026-07-28) requests of one principal in one workspace: upstream
//!   connections are opened once and reused across requests; what upstreams announce reaches
//!   that principal's `subscriptions/listen` streams.

mod direct;
mod handler;
mod listen;
mod names;
mod tasks;
#[cfg(test)]
mod tests;

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, PoisonError, atomic::AtomicBool},
    time::Duration,
};

use rmcp::{
    ErrorData, Peer, RoleServer,
    model::{ClientRequest, ErrorCode, GetExtensions, ResultType, ServerResult, Tool},
    service::RequestContext,
};
use tokio::{sync::Mutex as AsyncMutex, task::JoinSet, time::Instant};

pub use names::Naming;

use super::{
    demo::{self, Caller},
    upstream::{
        CredentialResolver, Lifecycle, Listeners, SignInRequired, Upstream, UpstreamClient, UpstreamError, connect,
        unavailable,
    },
};

/// In the `data` of the error for an upstream the caller must connect first: where to.
pub const CONNECT_URL_KEY: &str = "connectUrl";

/// A broken upstream is not retried more often than this.
pub const RETRY_AFTER: Duration = Duration::from_secs(5);
/// Repeated failures space the attempts out, up to this.
pub const RETRY_MAX: Duration = Duration::from_secs(60);
/// How long one upstream may take to answer a listing before it is left out of the result.
const LIST_TIMEOUT: Duration = Duration::from_secs(10);

/// The merged server. Cheap to clone (shared state).
#[derive(Clone)]
pub struct Aggregator(Arc<Inner>);

struct Inner {
    slots: Vec<Slot>,
    naming: Naming,
    lifecycle: Lifecycle,
    instructions: Option<String>,
    /// Open `subscriptions/listen` streams; every upstream's relay tells them of changes.
    listeners: Listeners,
    /// The merged tools as last listed, by the name the client sees (for SEP-2243 header checks).
    tools: Mutex<HashMap<String, Tool>>,
    /// Some upstream reached so far offers the tasks extension.
    offers_tasks: AtomicBool,
    /// Task id -> index of the upstream running it (ids in the order they were created).
    task_owners: Mutex<(VecDeque<String>, HashMap<String, usize>)>,
    /// Resource URI -> index of the upstream that listed it.
    resource_owners: Mutex<HashMap<String, usize>>,
    /// Literal start of each resource template -> index of its upstream.
    template_prefixes: Mutex<Vec<(String, usize)>>,
    downstream: Mutex<Option<Peer<RoleServer>>>,
    /// Picks each upstream's credential for the caller (none: no upstream signs in).
    credentials: Option<Arc<dyn CredentialResolver>>,
    /// Who this server acts for: one MCP session's principal, or one principal's stateless
    /// requests (see `workspaces`), so a person's upstream tokens serve only them.
    caller: Mutex<Option<Caller>>,
}

struct Slot {
    upstream: Upstream,
    state: AsyncMutex<SlotState>,
}

struct SlotState {
    client: Option<Arc<UpstreamClient>>,
    /// Why the upstream is unavailable, for the error the client sees.
    problem: String,
    last_attempt: Instant,
    /// Connection attempts that failed in a row (for the backoff).
    failures: u32,
}

impl SlotState {
    /// How long after the last attempt the next may start.
    fn backoff(&self) -> Duration {
        let doublings = self.failures.saturating_sub(1).min(8);
        RETRY_AFTER.saturating_mul(1 << doublings).min(RETRY_MAX)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Aggregator {
    /// Connects to every upstream at once (for one downstream session); those that fail are
    /// kept, as unavailable, and retried later.
    pub async fn connect(upstreams: &[Upstream]) -> Self {
        let listeners = Listeners::default();
        let mut connecting = JoinSet::new();
        for (index, upstream) in upstreams.iter().enumerate() {
            let upstream = upstream.clone();
            let listeners = listeners.clone();
            connecting.spawn(async move { (index, connect(&upstream, Lifecycle::Session, &listeners, None).await) });
        }
        let mut results: Vec<Option<Result<UpstreamClient, UpstreamError>>> = upstreams.iter().map(|_| None).collect();
        while let Some(joined) = connecting.join_next().await {
            if let Ok((index, result)) = joined
                && let Some(entry) = results.get_mut(index)
            {
                *entry = Some(result);
            }
        }
        let connected = upstreams
            .iter()
            .zip(results)
            .map(|(upstream, result)| {
                let result = result.unwrap_or_else(|| {
                    Err(UpstreamError::Handshake {
                        upstream: upstream.name.clone(),
                        reason: "connect task failed".into(),
                    })
                });
                (upstream.clone(), result)
            })
            .collect();
        Self::new(connected, listeners)
    }

    /// Builds the merged server (for one downstream session) from upstreams already connected
    /// (or not), whose relays tell `listeners` of changes.
    pub fn new(upstreams: Vec<(Upstream, Result<UpstreamClient, UpstreamError>)>, listeners: Listeners) -> Self {
        let naming = Naming::new(upstreams.iter().map(|(upstream, _)| upstream.name.as_str()));
        let mut instructions = Vec::new();
        let mut offers_tasks = false;
        let slots = upstreams
            .into_iter()
            .map(|(upstream, result)| {
                let (client, problem) = match result {
                    Ok(client) => {
                        if let Some(info) = client.peer_info() {
                            if let Some(text) = &info.instructions {
                                instructions.push(format!("{}: {text}", upstream.name));
                            }
                            offers_tasks |= tasks::offered(&info.capabilities);
                        }
                        (Some(Arc::new(client)), String::new())
                    }
                    Err(error) => {
                        tracing::warn!(upstream = %upstream.name, %error, "upstream unavailable");
                        (None, error.to_string())
                    }
                };
                let failures = u32::from(client.is_none());
                let state = SlotState { client, problem, last_attempt: Instant::now(), failures };
                Slot { upstream, state: AsyncMutex::new(state) }
            })
            .collect();
        let offers_tasks = AtomicBool::new(offers_tasks);
        Self(Arc::new(Inner {
            slots,
            naming,
            lifecycle: Lifecycle::Session,
            instructions: (!instructions.is_empty()).then(|| instructions.join("\n\n")),
            listeners,
            tools: Mutex::default(),
            offers_tasks,
            task_owners: Mutex::default(),
            resource_owners: Mutex::default(),
            template_prefixes: Mutex::default(),
            downstream: Mutex::default(),
            credentials: None,
            caller: Mutex::default(),
        }))
    }

    /// A merged server that connects to each upstream on first use. rmcp builds one handler
    /// per MCP session (or, shared, for stateless requests) from a synchronous factory, so
    /// connecting cannot happen up front.
    pub fn lazy(
        upstreams: Vec<Upstream>,
        lifecycle: Lifecycle,
        credentials: Option<Arc<dyn CredentialResolver>>,
    ) -> Self {
        let naming = Naming::new(upstreams.iter().map(|upstream| upstream.name.as_str()));
        // "Last attempted long ago": the first request connects at once.
        let long_ago = Instant::now().checked_sub(RETRY_AFTER).unwrap_or_else(Instant::now);
        let slots = upstreams
            .into_iter()
            .map(|upstream| Slot {
                upstream,
                state: AsyncMutex::new(SlotState {
                    client: None,
                    problem: "not connected yet".to_owned(),
                    last_attempt: long_ago,
                    failures: 0,
                }),
            })
            .collect();
        Self(Arc::new(Inner {
            slots,
            naming,
            lifecycle,
            instructions: None,
            listeners: Listeners::default(),
            tools: Mutex::default(),
            offers_tasks: AtomicBool::new(false),
            task_owners: Mutex::default(),
            resource_owners: Mutex::default(),
            template_prefixes: Mutex::default(),
            downstream: Mutex::default(),
            credentials,
            caller: Mutex::default(),
        }))
    }

    fn name_of(&self, index: usize) -> &str {
        self.0.slots.get(index).map_or("?", |slot| slot.upstream.name.as_str())
    }

    /// The live session of upstream `index`, reconnecting if it is down and its backoff has
    /// passed.
    async fn client(&self, index: usize) -> Result<Arc<UpstreamClient>, ErrorData> {
        let Some(slot) = self.0.slots.get(index) else {
            return Err(ErrorData::internal_error("no such upstream", None));
        };
        let mut state = slot.state.lock().await;
        if let Some(client) = &state.client {
            if !client.is_closed() {
                return Ok(client.clone());
            }
            tracing::warn!(upstream = %slot.upstream.name, "upstream session ended");
            state.client = None;
            state.problem = "its session ended".to_owned();
        }
        if state.failures == 0 || state.last_attempt.elapsed() >= state.backoff() {
            let bearer = match &self.0.credentials {
                Some(credentials) => {
                    let caller = lock(&self.0.caller).clone();
                    match credentials.resolve(&slot.upstream, caller.as_ref()).await {
                        Ok(bearer) => bearer,
                        // Not a broken upstream: no backoff, so a person who has just
                        // connected their account is served on their next request.
                        Err(required) => return Err(sign_in_refusal(&slot.upstream.name, required)),
                    }
                }
                None => None,
            };
            state.last_attempt = Instant::now();
            match connect(&slot.upstream, self.0.lifecycle, &self.0.listeners, bearer).await {
                Ok(client) => {
                    if let Some(peer) = lock(&self.0.downstream).clone() {
                        client.relay().attach(&peer);
                    }
                    if let Some(info) = client.peer_info() {
                        self.note_capabilities(&info.capabilities);
                    }
                    let client = Arc::new(client);
                    state.client = Some(client.clone());
                    state.failures = 0;
                    return Ok(client);
                }
                Err(error) => {
                    state.failures = state.failures.saturating_add(1);
                    tracing::warn!(
                        upstream = %slot.upstream.name, %error, retry_in = ?state.backoff(), "upstream still unavailable"
                    );
                    state.problem = error.to_string();
                }
            }
        }
        Err(unavailable(&slot.upstream.name, &state.problem))
    }

    /// Remembers the downstream client, so that upstreams can reach it between requests,
    /// and who it acts for (the first caller seen: a session or stateless server belongs to
    /// one principal).
    fn note(&self, peer: &Peer<RoleServer>, extensions: &rmcp::model::Extensions) {
        *lock(&self.0.downstream) = Some(peer.clone());
        if let Some(caller) = demo::caller(extensions) {
            self.note_caller(caller);
        }
    }

    fn note_caller(&self, caller: &Caller) {
        let mut noted = lock(&self.0.caller);
        if noted.is_none() {
            *noted = Some(caller.clone());
        }
    }

    /// Runs `list` against every reachable upstream concurrently; returns the successes in
    /// configuration order. Failures are logged and skipped.
    async fn gather<T, F, Fut>(&self, what: &'static str, list: F) -> Vec<(usize, Vec<T>)>
    where
        T: Send + 'static,
        F: Fn(Arc<UpstreamClient>) -> Fut,
        Fut: Future<Output = Result<Vec<T>, rmcp::ServiceError>> + Send + 'static,
    {
        let mut tasks = JoinSet::new();
        for index in 0..self.0.slots.len() {
            let this = self.clone();
            let client = match this.client(index).await {
                Ok(client) => client,
                Err(error) => {
                    tracing::warn!(upstream = %this.name_of(index), error = %error.message, "skipped in {what}");
                    continue;
                }
            };
            let listing = list(client);
            tasks.spawn(async move { (index, tokio::time::timeout(LIST_TIMEOUT, listing).await) });
        }
        let mut gathered = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((index, Ok(Ok(items)))) => gathered.push((index, items)),
                Ok((index, Ok(Err(error)))) => {
                    tracing::warn!(upstream = %self.name_of(index), %error, "skipped in {what}");
                }
                Ok((index, Err(_))) => tracing::warn!(upstream = %self.name_of(index), "skipped in {what}: timed out"),
                Err(error) => tracing::warn!(%error, "{what} task failed"),
            }
        }
        gathered.sort_by_key(|(index, _)| *index);
        gathered
    }

    /// Forwards `request` to upstream `index`, carrying the caller's identity along for the
    /// in-process demo server (the extension never leaves the process).
    async fn forward(
        &self,
        index: usize,
        mut request: ClientRequest,
        context: &RequestContext<RoleServer>,
    ) -> Result<ServerResult, ErrorData> {
        self.note(&context.peer, &context.extensions);
        let client = self.client(index).await?;
        if let Some(caller) = demo::caller(&context.extensions) {
            request.extensions_mut().insert(caller.clone());
        }
        match client.forward(request, context).await {
            // A live session whose token can no longer be renewed (the upstream revoked the
            // grant) fails inside the transport: ask the vault why, so that the person gets
            // the Connect link rather than "unavailable".
            Err(error) if error.code == ErrorCode::INTERNAL_ERROR => match self.sign_in_required_now(index).await {
                Some(refusal) => Err(refusal),
                None => Err(error),
            },
            other => other,
        }
    }

    /// The refusal with the Connect link, when the caller must (re)connect their account at
    /// upstream `index` now.
    async fn sign_in_required_now(&self, index: usize) -> Option<ErrorData> {
        let credentials = self.0.credentials.as_ref()?;
        let slot = self.0.slots.get(index)?;
        let caller = lock(&self.0.caller).clone();
        match credentials.resolve(&slot.upstream, caller.as_ref()).await {
            Err(required) if required.connect_url.is_some() => Some(sign_in_refusal(&slot.upstream.name, required)),
            Err(_) | Ok(_) => None,
        }
    }

    /// The upstream a resource URI belongs to, if it can be told without asking.
    fn owner_of(&self, uri: &str) -> Option<usize> {
        if self.0.slots.len() == 1 {
            return Some(0);
        }
        if let Some(index) = lock(&self.0.resource_owners).get(uri) {
            return Some(*index);
        }
        lock(&self.0.template_prefixes)
            .iter()
            .filter(|(prefix, _)| !prefix.is_empty() && uri.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(_, index)| *index)
    }

    /// Every upstream that can be reached now, in configuration order.
    async fn reachable(&self) -> Vec<(usize, Arc<UpstreamClient>)> {
        let mut reachable = Vec::new();
        for index in 0..self.0.slots.len() {
            match self.client(index).await {
                Ok(client) => reachable.push((index, client)),
                Err(error) => tracing::warn!(upstream = %self.name_of(index), error = %error.message, "unreachable"),
            }
        }
        reachable
    }
}

/// The error for a request to an upstream the caller cannot be signed in to; with the
/// Connect link in its data when the person can fix it there.
fn sign_in_refusal(upstream: &str, required: SignInRequired) -> ErrorData {
    let connect_url = required.connect_url.clone();
    let error = UpstreamError::SignIn { upstream: upstream.to_owned(), required };
    let mut refusal = unavailable(upstream, &error.to_string());
    if let Some(url) = connect_url {
        refusal.data = Some(serde_json::json!({ "upstream": upstream, CONNECT_URL_KEY: url }));
    }
    refusal
}

/// Results from upstreams on the session-based revisions carry no `resultType`; 2026-07-28
/// requires it on every result (rmcp removes it again for session-based clients).
fn mark_complete(result_type: &mut Option<ResultType>) {
    result_type.get_or_insert(ResultType::COMPLETE);
}
