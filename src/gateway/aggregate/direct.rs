//! `tools/call` for a stateless (2026-07-28) request that the MCP endpoint answers itself,
//! without rmcp's server side (see `gateway::direct`): the same routing, sign-in refusals and
//! result mapping as the [`rmcp::ServerHandler`] path, with the request's `_meta` in place of
//! an rmcp request context.

use rmcp::{
    ErrorData,
    model::{
        CallToolRequest, CallToolRequestParams, CallToolResponse, ClientCapabilities, ClientRequest, ErrorCode,
        GetExtensions, RequestMetaObject,
    },
};

use super::{
    Aggregator,
    handler::{connect_first, unknown_tool},
};
use crate::gateway::demo::Caller;

impl Aggregator {
    /// Calls a tool for `caller`'s stateless request whose `_meta` is `meta`. `None` when the
    /// request must go through rmcp's server after all, decided before anything is sent
    /// upstream: the upstream speaks a session-based revision, whose server-to-client
    /// requests (sampling, elicitation) only an rmcp session can relay.
    pub async fn call_tool_direct(
        &self,
        mut request: CallToolRequestParams,
        meta: &RequestMetaObject,
        caller: &Caller,
    ) -> Option<Result<CallToolResponse, ErrorData>> {
        self.note_caller(caller);
        let capabilities = meta.client_capabilities();
        let Some((index, inner)) = self.0.naming.route(&request.name) else {
            return Some(Err(unknown_tool(&request.name)));
        };
        let client = match self.client(index).await {
            Ok(client) => client,
            Err(error) => return Some(connect_first(error, capabilities.as_ref())),
        };
        if !client.is_stateless() {
            return None;
        }
        request.name = inner.to_owned().into();
        request.meta = None;
        let mut call = ClientRequest::CallToolRequest(CallToolRequest::new(request));
        call.extensions_mut().insert(caller.clone());
        let forwarded = match client.forward_direct(call, meta).await {
            // As in `forward`: a token that can no longer be renewed fails inside the transport.
            Err(error) if error.code == ErrorCode::INTERNAL_ERROR => {
                Err(self.sign_in_required_now(index).await.unwrap_or(error))
            }
            other => other,
        };
        let response = match forwarded {
            Err(error) => connect_first(error, capabilities.as_ref()),
            Ok(result) => self.call_result(index, result),
        };
        // rmcp's server refuses a task handle to a client that did not declare the tasks
        // extension (SEP-2663), which could not read it; so does this path.
        let declared_tasks = capabilities.as_ref().is_some_and(ClientCapabilities::supports_tasks);
        Some(match response {
            Ok(CallToolResponse::Task(_)) if !declared_tasks => {
                Err(ErrorData::missing_required_client_capability(ClientCapabilities::builder().enable_tasks().build()))
            }
            other => other,
        })
    }
}
