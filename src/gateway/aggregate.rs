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
//!   on a later request, at most once per [`RETRY_AFTER`], which also restarts a stdio child that
//!   exited.
//!
//! Meant to be created per downstream MCP session: the upstream sessions (and stdio children)
//! belong to that session, and what upstreams send on their own goes back to its client.

mod names;
#[cfg(test)]
mod tests;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use rmcp::{
    ErrorData, Peer, RoleServer, ServerHandler,
    model::{
        CallToolRequest, CallToolRequestParams, CallToolResponse, ClientRequest, GetExtensions, GetPromptRequest,
        GetPromptRequestParams, GetPromptResponse, Implementation, ListPromptsResult, ListResourceTemplatesResult,
        ListResourcesResult, ListToolsResult, PaginatedRequestParams, ReadResourceRequest, ReadResourceRequestParams,
        ReadResourceResponse, ServerCapabilities, ServerConfig, ServerResult,
    },
    service::{NotificationContext, RequestContext},
};
use tokio::{sync::Mutex as AsyncMutex, task::JoinSet, time::Instant};

pub use names::Naming;

use super::{
    demo,
    upstream::{Upstream, UpstreamClient, UpstreamError, connect, unavailable},
};

/// A broken upstream is not retried more often than this.
pub const RETRY_AFTER: Duration = Duration::from_secs(5);
/// How long one upstream may take to answer a listing before it is left out of the result.
const LIST_TIMEOUT: Duration = Duration::from_secs(10);

/// The merged server. Cheap to clone (shared state).
#[derive(Clone)]
pub struct Aggregator(Arc<Inner>);

struct Inner {
    slots: Vec<Slot>,
    naming: Naming,
    instructions: Option<String>,
    /// Resource URI -> index of the upstream that listed it.
    resource_owners: Mutex<HashMap<String, usize>>,
    /// Literal start of each resource template -> index of its upstream.
    template_prefixes: Mutex<Vec<(String, usize)>>,
    downstream: Mutex<Option<Peer<RoleServer>>>,
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
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Aggregator {
    /// Connects to every upstream at once; those that fail are kept, as unavailable, and
    /// retried later.
    pub async fn connect(upstreams: &[Upstream]) -> Self {
        let mut connecting = JoinSet::new();
        for (index, upstream) in upstreams.iter().enumerate() {
            let upstream = upstream.clone();
            connecting.spawn(async move { (index, connect(&upstream).await) });
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
        Self::new(connected)
    }

    /// Builds the merged server from upstreams already connected (or not).
    pub fn new(upstreams: Vec<(Upstream, Result<UpstreamClient, UpstreamError>)>) -> Self {
        let naming = Naming::new(upstreams.iter().map(|(upstream, _)| upstream.name.as_str()));
        let mut instructions = Vec::new();
        let slots = upstreams
            .into_iter()
            .map(|(upstream, result)| {
                let (client, problem) = match result {
                    Ok(client) => {
                        if let Some(text) = client.peer_info().and_then(|info| info.instructions.clone()) {
                            instructions.push(format!("{}: {text}", upstream.name));
                        }
                        (Some(Arc::new(client)), String::new())
                    }
                    Err(error) => {
                        tracing::warn!(upstream = %upstream.name, %error, "upstream unavailable");
                        (None, error.to_string())
                    }
                };
                Slot { upstream, state: AsyncMutex::new(SlotState { client, problem, last_attempt: Instant::now() }) }
            })
            .collect();
        Self(Arc::new(Inner {
            slots,
            naming,
            instructions: (!instructions.is_empty()).then(|| instructions.join("\n\n")),
            resource_owners: Mutex::default(),
            template_prefixes: Mutex::default(),
            downstream: Mutex::default(),
        }))
    }

    /// A merged server that connects to each upstream on first use. rmcp builds one handler
    /// per MCP session from a synchronous factory, so connecting cannot happen up front.
    pub fn lazy(upstreams: Vec<Upstream>) -> Self {
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
                }),
            })
            .collect();
        Self(Arc::new(Inner {
            slots,
            naming,
            instructions: None,
            resource_owners: Mutex::default(),
            template_prefixes: Mutex::default(),
            downstream: Mutex::default(),
        }))
    }

    fn name_of(&self, index: usize) -> &str {
        self.0.slots.get(index).map_or("?", |slot| slot.upstream.name.as_str())
    }

    /// The live session of upstream `index`, reconnecting if it is down and was not tried
    /// within [`RETRY_AFTER`].
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
        if state.last_attempt.elapsed() >= RETRY_AFTER {
            state.last_attempt = Instant::now();
            match connect(&slot.upstream).await {
                Ok(client) => {
                    if let Some(peer) = lock(&self.0.downstream).clone() {
                        client.relay().attach(&peer);
                    }
                    let client = Arc::new(client);
                    state.client = Some(client.clone());
                    return Ok(client);
                }
                Err(error) => {
                    tracing::warn!(upstream = %slot.upstream.name, %error, "upstream still unavailable");
                    state.problem = error.to_string();
                }
            }
        }
        Err(unavailable(&slot.upstream.name, &state.problem))
    }

    /// Remembers the downstream client, so that upstreams can reach it between requests.
    fn note(&self, peer: &Peer<RoleServer>) {
        *lock(&self.0.downstream) = Some(peer.clone());
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
        self.note(&context.peer);
        let client = self.client(index).await?;
        if let Some(caller) = demo::caller(&context.extensions) {
            request.extensions_mut().insert(caller.clone());
        }
        client.forward(request, context).await
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
}

fn unexpected(upstream: &str) -> ErrorData {
    ErrorData::internal_error(format!("upstream `{upstream}` sent an unexpected answer"), None)
}

impl ServerHandler for Aggregator {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_tool_list_changed()
            .enable_resources()
            .enable_resources_list_changed()
            .enable_prompts()
            .enable_prompts_list_changed()
            .build();
        let config = ServerConfig::new(capabilities)
            .with_server_info(Implementation::new("gatehouse", env!("CARGO_PKG_VERSION")).with_title("Gatehouse"));
        match &self.0.instructions {
            Some(instructions) => config.with_instructions(instructions.clone()),
            None => config,
        }
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        self.note(&context.peer);
        for slot in &self.0.slots {
            if let Some(client) = &slot.state.lock().await.client {
                client.relay().attach(&context.peer);
            }
        }
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        self.note(&context.peer);
        let gathered = self.gather("tools/list", |client| async move { client.peer().list_all_tools().await }).await;
        let tools = gathered
            .into_iter()
            .flat_map(|(index, tools)| {
                tools.into_iter().map(move |mut tool| {
                    tool.name = self.0.naming.outer(index, &tool.name).into();
                    tool
                })
            })
            .collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        mut request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let Some((index, inner)) = self.0.naming.route(&request.name) else {
            return Err(ErrorData::invalid_params(format!("unknown tool `{}`", request.name), None));
        };
        request.name = inner.to_owned().into();
        match self.forward(index, ClientRequest::CallToolRequest(CallToolRequest::new(request)), &context).await? {
            ServerResult::CallToolResult(result) => Ok(CallToolResponse::Complete(result)),
            ServerResult::InputRequiredResult(result) => Ok(CallToolResponse::InputRequired(result)),
            ServerResult::CreateTaskResult(result) => Ok(CallToolResponse::Task(result)),
            _ => Err(unexpected(self.name_of(index))),
        }
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        self.note(&context.peer);
        let gathered =
            self.gather("prompts/list", |client| async move { client.peer().list_all_prompts().await }).await;
        let prompts = gathered
            .into_iter()
            .flat_map(|(index, prompts)| {
                prompts.into_iter().map(move |mut prompt| {
                    prompt.name = self.0.naming.outer(index, &prompt.name);
                    prompt
                })
            })
            .collect();
        Ok(ListPromptsResult::with_all_items(prompts))
    }

    async fn get_prompt(
        &self,
        mut request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let Some((index, inner)) = self.0.naming.route(&request.name) else {
            return Err(ErrorData::invalid_params(format!("unknown prompt `{}`", request.name), None));
        };
        request.name = inner.to_owned();
        match self.forward(index, ClientRequest::GetPromptRequest(GetPromptRequest::new(request)), &context).await? {
            ServerResult::GetPromptResult(result) => Ok(GetPromptResponse::Complete(result)),
            ServerResult::InputRequiredResult(result) => Ok(GetPromptResponse::InputRequired(result)),
            _ => Err(unexpected(self.name_of(index))),
        }
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        self.note(&context.peer);
        let gathered =
            self.gather("resources/list", |client| async move { client.peer().list_all_resources().await }).await;
        let mut owners = lock(&self.0.resource_owners);
        let mut resources = Vec::new();
        for (index, listed) in gathered {
            for resource in listed {
                match owners.get(&resource.uri) {
                    Some(owner) if *owner != index => {
                        tracing::debug!(uri = %resource.uri, upstream = %self.name_of(index), "duplicate resource left out");
                    }
                    _ => {
                        owners.insert(resource.uri.clone(), index);
                        resources.push(resource);
                    }
                }
            }
        }
        Ok(ListResourcesResult::with_all_items(resources))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        self.note(&context.peer);
        let gathered =
            self.gather("resources/templates/list", |client| async move {
                client.peer().list_all_resource_templates().await
            })
            .await;
        let mut prefixes = Vec::new();
        let mut templates = Vec::new();
        for (index, listed) in gathered {
            for template in listed {
                let literal = template.uri_template.split('{').next().unwrap_or_default().to_owned();
                prefixes.push((literal, index));
                templates.push(template);
            }
        }
        *lock(&self.0.template_prefixes) = prefixes;
        Ok(ListResourceTemplatesResult::with_all_items(templates))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let candidates: Vec<usize> = match self.owner_of(&request.uri) {
            Some(index) => vec![index],
            None => (0..self.0.slots.len()).collect(),
        };
        let mut last_error = ErrorData::resource_not_found(format!("no resource {}", request.uri), None);
        for index in candidates {
            let read = ClientRequest::ReadResourceRequest(ReadResourceRequest::new(request.clone()));
            match self.forward(index, read, &context).await {
                Ok(ServerResult::ReadResourceResult(result)) => return Ok(ReadResourceResponse::Complete(result)),
                Ok(ServerResult::InputRequiredResult(result)) => {
                    return Ok(ReadResourceResponse::InputRequired(result));
                }
                Ok(_) => last_error = unexpected(self.name_of(index)),
                Err(error) => last_error = error,
            }
        }
        Err(last_error)
    }
}
