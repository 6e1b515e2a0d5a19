//! The merged server as an MCP server: each request answered from the upstreams (listings
//! merged, everything else routed to the one upstream it concerns).

// Logging and resource subscriptions are deprecated by SEP-2577 but still part of the
// session-based revisions the gateway serves (2025-06-18, 2025-11-25), so they are relayed.
#![allow(deprecated)]

use std::sync::Arc;

use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    model::{
        CallToolRequest, CallToolRequestParams, CallToolResponse, CancelTaskParams, ClientCapabilities, ClientRequest,
        CompleteRequest, CompleteRequestParams, CompleteResult, DiscoverResult, GetPromptRequest,
        GetPromptRequestParams, GetPromptResponse, GetTaskParams, GetTaskResult, Implementation, ListPromptsResult,
        ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams, ReadResourceRequest,
        ReadResourceRequestParams, ReadResourceResponse, Reference, ServerCapabilities, ServerConfig, ServerResult,
        SetLevelRequest, SetLevelRequestParams, SubscribeRequest, SubscribeRequestParams, SubscriptionFilter,
        TASKS_EXTENSION_ID, Tool, UnsubscribeRequest, UnsubscribeRequestParams, UpdateTaskParams,
    },
    service::{NotificationContext, RequestContext, SubscriptionContext},
};

use super::{Aggregator, CONNECT_URL_KEY, lock, mark_complete};

/// JSON-RPC error code of MCP's URLElicitationRequiredError (2025-11-25).
const URL_ELICITATION_REQUIRED: i32 = -32042;

/// A tool call to an upstream the caller has not connected (or must reconnect): a client that
/// supports URL-mode elicitation gets URLElicitationRequiredError with the Connect page, so it
/// can open it for the person; any other client gets a tool error whose text carries the link
/// (the model can pass it on). Other errors stay as they are.
/// `capabilities`: what the client declared (in its `initialize`, or a stateless request's
/// `_meta`).
pub(super) fn connect_first(
    error: ErrorData,
    capabilities: Option<&ClientCapabilities>,
) -> Result<CallToolResponse, ErrorData> {
    let Some(url) =
        error.data.as_ref().and_then(|d| d.get(CONNECT_URL_KEY)).and_then(|u| u.as_str()).map(str::to_owned)
    else {
        return Err(error);
    };
    let supports_url =
        capabilities.is_some_and(|capabilities| capabilities.elicitation.as_ref().is_some_and(|e| e.url.is_some()));
    let message = format!("{} Open {url} to connect your account, then try again.", error.message);
    if supports_url {
        let elicitation_id = uuid::Uuid::now_v7().to_string();
        return Err(ErrorData::new(
            rmcp::model::ErrorCode(URL_ELICITATION_REQUIRED),
            message.clone(),
            Some(serde_json::json!({
                "elicitations": [{ "mode": "url", "elicitationId": elicitation_id, "url": url, "message": message }]
            })),
        ));
    }
    let result = rmcp::model::CallToolResult::error(vec![rmcp::model::ContentBlock::text(message)]);
    Ok(CallToolResponse::Complete(result))
}

pub(super) fn unknown_tool(name: &str) -> ErrorData {
    ErrorData::invalid_params(format!("unknown tool `{name}`"), None)
}

fn unexpected(upstream: &str) -> ErrorData {
    ErrorData::internal_error(format!("upstream `{upstream}` sent an unexpected answer"), None)
}

impl Aggregator {
    /// What upstream `index` answered to a `tools/call`, as the client gets it.
    pub(super) fn call_result(&self, index: usize, forwarded: ServerResult) -> Result<CallToolResponse, ErrorData> {
        match forwarded {
            ServerResult::CallToolResult(mut result) => {
                mark_complete(&mut result.result_type);
                Ok(CallToolResponse::Complete(result))
            }
            ServerResult::InputRequiredResult(result) => Ok(CallToolResponse::InputRequired(result)),
            ServerResult::CreateTaskResult(result) => {
                self.own_task(&result.task.task_id, index);
                Ok(CallToolResponse::Task(result))
            }
            _ => Err(unexpected(self.name_of(index))),
        }
    }

    /// Sends `request` to the upstream owning `uri` (or, when that cannot be told, to each in
    /// turn until one accepts it).
    async fn by_resource(
        &self,
        uri: &str,
        request: impl Fn() -> ClientRequest,
        context: &RequestContext<RoleServer>,
    ) -> Result<ServerResult, ErrorData> {
        let candidates: Vec<usize> = match self.owner_of(uri) {
            Some(index) => vec![index],
            None => (0..self.0.slots.len()).collect(),
        };
        let mut last_error =
            ErrorData::resource_not_found(format!("no resource {uri}"), Some(serde_json::json!({ "uri": uri })));
        for index in candidates {
            match self.forward(index, request(), context).await {
                Ok(result) => return Ok(result),
                Err(error) => last_error = error,
            }
        }
        Err(last_error)
    }
}

// Every request handler returns a boxed future. rmcp awaits its request dispatch (a future as
// large as the largest handler's, and ours hold upstream connects and forwards) inside each
// MCP session's task, which lives as long as the session: unboxed, that was ~15 KiB per idle
// session (the whole task, as heaptrack measured it); boxed, only the handler that runs
// allocates its state, and only while it runs.
impl ServerHandler for Aggregator {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_tool_list_changed()
            .enable_resources()
            .enable_resources_list_changed()
            .enable_resources_subscribe()
            .enable_prompts()
            .enable_prompts_list_changed()
            .enable_logging()
            .enable_completions()
            .build();
        let mut capabilities = capabilities;
        if self.offers_tasks() {
            capabilities.extensions.get_or_insert_default().insert(TASKS_EXTENSION_ID.to_owned(), Default::default());
        }
        let config = ServerConfig::new(capabilities)
            .with_server_info(Implementation::new("gatehouse", env!("CARGO_PKG_VERSION")).with_title("Gatehouse"));
        match &self.0.instructions {
            Some(instructions) => config.with_instructions(instructions.clone()),
            None => config,
        }
    }

    /// Reaches the upstreams first, so that what is announced (the tasks extension) is what
    /// they offer.
    fn discover(
        &self,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<DiscoverResult, ErrorData>> + Send + '_ {
        Box::pin(async move {
            self.note(&context.peer, &context.extensions);
            drop(self.reachable().await);
            Ok(DiscoverResult::from_server_info(self.supported_protocol_versions().into_owned(), self.get_info()))
        })
    }

    fn get_task(
        &self,
        request: GetTaskParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<GetTaskResult, ErrorData>> + Send + '_ {
        Box::pin(async move { self.relay_get_task(request, &context).await })
    }

    fn update_task(
        &self,
        request: UpdateTaskParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<(), ErrorData>> + Send + '_ {
        Box::pin(async move { self.relay_update_task(request, &context).await })
    }

    fn cancel_task(
        &self,
        request: CancelTaskParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<(), ErrorData>> + Send + '_ {
        Box::pin(async move { self.relay_cancel_task(request, &context).await })
    }

    fn on_initialized(&self, context: NotificationContext<RoleServer>) -> impl Future<Output = ()> + Send + '_ {
        Box::pin(async move {
            self.note(&context.peer, &context.extensions);
            for slot in &self.0.slots {
                if let Some(client) = &slot.state.lock().await.client {
                    client.relay().attach(&context.peer);
                }
            }
        })
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        lock(&self.0.tools).get(name).cloned()
    }

    fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<ListToolsResult, ErrorData>> + Send + '_ {
        Box::pin(async move {
            self.note(&context.peer, &context.extensions);
            let gathered =
                self.gather("tools/list", |client| async move { client.peer().list_all_tools().await }).await;
            let tools: Vec<Tool> = gathered
                .into_iter()
                .flat_map(|(index, tools)| {
                    tools.into_iter().map(move |mut tool| {
                        tool.name = self.0.naming.outer(index, &tool.name).into();
                        tool
                    })
                })
                .collect();
            *lock(&self.0.tools) = tools.iter().map(|tool| (tool.name.to_string(), tool.clone())).collect();
            Ok(ListToolsResult::with_all_items(tools))
        })
    }

    fn call_tool(
        &self,
        mut request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<CallToolResponse, ErrorData>> + Send + '_ {
        Box::pin(async move {
            let Some((index, inner)) = self.0.naming.route(&request.name) else {
                return Err(unknown_tool(&request.name));
            };
            request.name = inner.to_owned().into();
            request.meta = None;
            let forwarded =
                self.forward(index, ClientRequest::CallToolRequest(CallToolRequest::new(request)), &context).await;
            match forwarded {
                Err(error) => connect_first(error, context.client_capabilities().as_ref()),
                Ok(result) => self.call_result(index, result),
            }
        })
    }

    fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<ListPromptsResult, ErrorData>> + Send + '_ {
        Box::pin(async move {
            self.note(&context.peer, &context.extensions);
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
        })
    }

    fn get_prompt(
        &self,
        mut request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<GetPromptResponse, ErrorData>> + Send + '_ {
        Box::pin(async move {
            let Some((index, inner)) = self.0.naming.route(&request.name) else {
                return Err(ErrorData::invalid_params(format!("unknown prompt `{}`", request.name), None));
            };
            request.name = inner.to_owned();
            request.meta = None;
            match self.forward(index, ClientRequest::GetPromptRequest(GetPromptRequest::new(request)), &context).await?
            {
                ServerResult::GetPromptResult(mut result) => {
                    mark_complete(&mut result.result_type);
                    Ok(GetPromptResponse::Complete(result))
                }
                ServerResult::InputRequiredResult(result) => Ok(GetPromptResponse::InputRequired(result)),
                _ => Err(unexpected(self.name_of(index))),
            }
        })
    }

    fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<ListResourcesResult, ErrorData>> + Send + '_ {
        Box::pin(async move {
            self.note(&context.peer, &context.extensions);
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
        })
    }

    fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<ListResourceTemplatesResult, ErrorData>> + Send + '_ {
        Box::pin(async move {
            self.note(&context.peer, &context.extensions);
            let gathered = self
                .gather("resources/templates/list", |client| async move {
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
        })
    }

    fn read_resource(
        &self,
        mut request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<ReadResourceResponse, ErrorData>> + Send + '_ {
        Box::pin(async move {
            request.meta = None;
            let uri = request.uri.clone();
            let read = || ClientRequest::ReadResourceRequest(ReadResourceRequest::new(request.clone()));
            match self.by_resource(&uri, read, &context).await? {
                ServerResult::ReadResourceResult(mut result) => {
                    mark_complete(&mut result.result_type);
                    Ok(ReadResourceResponse::Complete(result))
                }
                ServerResult::InputRequiredResult(result) => Ok(ReadResourceResponse::InputRequired(result)),
                _ => Err(ErrorData::internal_error("an upstream sent an unexpected answer", None)),
            }
        })
    }

    fn subscribe(
        &self,
        mut request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<(), ErrorData>> + Send + '_ {
        Box::pin(async move {
            request.meta = None;
            let uri = request.uri.clone();
            let subscribe = || ClientRequest::SubscribeRequest(SubscribeRequest::new(request.clone()));
            self.by_resource(&uri, subscribe, &context).await.map(drop)
        })
    }

    fn unsubscribe(
        &self,
        mut request: UnsubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<(), ErrorData>> + Send + '_ {
        Box::pin(async move {
            request.meta = None;
            let uri = request.uri.clone();
            let unsubscribe = || ClientRequest::UnsubscribeRequest(UnsubscribeRequest::new(request.clone()));
            self.by_resource(&uri, unsubscribe, &context).await.map(drop)
        })
    }

    /// The level applies to every upstream that logs; one that does not is left alone.
    fn set_level(
        &self,
        mut request: SetLevelRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<(), ErrorData>> + Send + '_ {
        Box::pin(async move {
            self.note(&context.peer, &context.extensions);
            request.meta = None;
            for (index, client) in self.reachable().await {
                if client.peer_info().is_some_and(|info| info.capabilities.logging.is_none()) {
                    continue;
                }
                let set = ClientRequest::SetLevelRequest(SetLevelRequest::new(request.clone()));
                if let Err(error) = client.forward(set, &context).await {
                    tracing::warn!(upstream = %self.name_of(index), error = %error.message, "logging/setLevel refused");
                }
            }
            Ok(())
        })
    }

    /// Completions are asked of the upstream that owns the prompt or resource template.
    fn complete(
        &self,
        mut request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<CompleteResult, ErrorData>> + Send + '_ {
        Box::pin(async move {
            request.meta = None;
            let index = match &mut request.r#ref {
                Reference::Prompt(prompt) => {
                    let Some((index, inner)) = self.0.naming.route(&prompt.name) else {
                        return Err(ErrorData::invalid_params(format!("unknown prompt `{}`", prompt.name), None));
                    };
                    prompt.name = inner.to_owned();
                    index
                }
                Reference::Resource(resource) => self.owner_of(&resource.uri).unwrap_or(0),
                // `Reference` is non-exhaustive: a kind rmcp learns later has no owner we know.
                _ => return Err(ErrorData::invalid_params("unsupported completion reference", None)),
            };
            match self.forward(index, ClientRequest::CompleteRequest(CompleteRequest::new(request)), &context).await? {
                ServerResult::CompleteResult(mut result) => {
                    mark_complete(&mut result.result_type);
                    Ok(result)
                }
                _ => Err(unexpected(self.name_of(index))),
            }
        })
    }

    fn accepted_subscription_filter(&self, requested: &SubscriptionFilter) -> Option<SubscriptionFilter> {
        Some(requested.clone())
    }

    fn listen(&self, subscription: SubscriptionContext) -> impl Future<Output = Result<(), ErrorData>> + Send + '_ {
        Box::pin(async move { Arc::new(self.clone()).relay_subscription(subscription).await })
    }
}
