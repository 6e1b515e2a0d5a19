//! Tool calls to a 2026-07-28 HTTP upstream, posted from the downstream request's own task.
//!
//! Why: through rmcp's client a call crosses the client's service task, the transport's
//! worker task and a task per POST, each over a channel, and the worker serialises every
//! message once more to a `serde_json::Value` to derive its SEP-2243 headers. A stateless
//! upstream keeps no session, so nothing ties a call to that machinery: the request is built
//! here and posted with rmcp's own HTTP client code ([`StreamableHttpClient`]), the same
//! headers, the same vault-token handling ([`BearerClient`]) and the same parsing of the
//! answer, JSON or an SSE stream.
//!
//! What rmcp's client would do beyond that, and this does not: send `Mcp-Param-*` headers
//! (tools whose schema asks for them take the rmcp path, see `gateway::direct`), encode a
//! tool name as Base64 (such names take the rmcp path, see [`DirectHttp::can_call`]), and
//! resume an SSE answer whose stream broke (the call fails as "unavailable").

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use axum::http::{HeaderName, HeaderValue};
use futures::StreamExt;
use rmcp::ErrorData;
use rmcp::model::{
    CallToolRequest, CallToolRequestParams, ClientJsonRpcMessage, ClientRequest, ProtocolVersion, RequestId,
    RequestMetaObject, ServerJsonRpcMessage, ServerResult,
};
use rmcp::transport::streamable_http_client::{StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse};

use super::auth::BearerClient;
use super::unavailable;

/// How one upstream's HTTP requests are sent: as configured, or with the caller's vault token.
#[derive(Clone)]
pub enum Poster {
    Plain(reqwest::Client),
    Bearer(BearerClient),
}

pub struct DirectHttp {
    upstream: String,
    uri: Arc<str>,
    /// The configured headers, and `MCP-Protocol-Version`.
    headers: HashMap<HeaderName, HeaderValue>,
    poster: Poster,
    /// What the gateway says of itself in every request's `_meta` (rmcp's client does the same).
    sender: RequestMetaObject,
    /// Ids of the requests sent this way (a stateless upstream has no session they must be
    /// unique in; counting keeps them apart in its logs).
    next_id: AtomicI64,
}

impl DirectHttp {
    pub fn new(
        upstream: &str,
        uri: &str,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        poster: Poster,
        config: &rmcp::model::ClientConfig,
    ) -> Self {
        let version = ProtocolVersion::V_2026_07_28;
        let mut headers = custom_headers;
        if let Ok(value) = HeaderValue::from_str(version.as_str()) {
            headers.insert(HeaderName::from_static("mcp-protocol-version"), value);
        }
        let mut sender = RequestMetaObject::default();
        sender.set_protocol_version(version);
        sender.set_client_info(config.client_info.clone());
        sender.set_client_capabilities(config.capabilities.clone());
        DirectHttp {
            upstream: upstream.to_owned(),
            uri: uri.into(),
            headers,
            poster,
            sender,
            next_id: AtomicI64::new(1),
        }
    }

    /// A tool of this name can be called this way: its name goes into `Mcp-Name` as it is.
    pub fn can_call(&self, tool: &str) -> bool {
        let plain = tool.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
        plain && !tool.starts_with(' ') && !tool.ends_with(' ') && !tool.starts_with("=?base64?")
    }

    /// Calls the tool `params.name` (as the upstream names it), with `meta` (what of the
    /// downstream request's `_meta` may travel upstream) added to the gateway's own.
    pub async fn call_tool(
        &self,
        mut params: CallToolRequestParams,
        meta: RequestMetaObject,
    ) -> Result<ServerResult, ErrorData> {
        let mut headers = self.headers.clone();
        headers.insert(HeaderName::from_static("mcp-method"), HeaderValue::from_static("tools/call"));
        let name =
            HeaderValue::from_str(&params.name).map_err(|_| self.unavailable("tool name is not a header value"))?;
        headers.insert(HeaderName::from_static("mcp-name"), name);
        let mut full_meta = self.sender.clone();
        full_meta.extend(meta);
        params.meta = Some(full_meta);
        let id = RequestId::Number(self.next_id.fetch_add(1, Ordering::Relaxed));
        let message =
            ClientJsonRpcMessage::request(ClientRequest::CallToolRequest(CallToolRequest::new(params)), id.clone());
        let posted = match &self.poster {
            Poster::Plain(client) => client.post_message(self.uri.clone(), message, None, None, headers).await,
            Poster::Bearer(client) => client.post_message(self.uri.clone(), message, None, None, headers).await,
        };
        match posted {
            Ok(StreamableHttpPostResponse::Json(message, _)) => {
                self.answer_to(&id, message).unwrap_or_else(|| Err(self.unavailable("it answered another request")))
            }
            Ok(StreamableHttpPostResponse::Sse(mut events, _)) => {
                while let Some(event) = events.next().await {
                    let event = event.map_err(|error| self.unavailable(&format!("its answer broke off: {error}")))?;
                    let Some(data) = event.data.filter(|data| !data.trim().is_empty()) else { continue };
                    // Notifications (progress, logs) are not asked for on this path; skipped.
                    if let Ok(message) = serde_json::from_str::<ServerJsonRpcMessage>(&data)
                        && let Some(answer) = self.answer_to(&id, message)
                    {
                        return answer;
                    }
                }
                Err(self.unavailable("its answer stream ended without an answer"))
            }
            Ok(StreamableHttpPostResponse::Accepted) => {
                Err(self.unavailable("it accepted a request without answering"))
            }
            // The type is non-exhaustive: an answer of a kind rmcp learns later is not understood here.
            Ok(_) => Err(self.unavailable("it answered in a form the gateway does not read")),
            Err(error) => Err(self.transport_error(error)),
        }
    }

    /// The result or error in `message`, if it answers request `id`.
    fn answer_to(&self, id: &RequestId, message: ServerJsonRpcMessage) -> Option<Result<ServerResult, ErrorData>> {
        match message {
            ServerJsonRpcMessage::Response(response) if &response.id == id => Some(Ok(response.result)),
            ServerJsonRpcMessage::Error(error) if error.id.as_ref().is_none_or(|answered| answered == id) => {
                Some(Err(error.error))
            }
            ServerJsonRpcMessage::Response(_)
            | ServerJsonRpcMessage::Error(_)
            | ServerJsonRpcMessage::Request(_)
            | ServerJsonRpcMessage::Notification(_) => None,
        }
    }

    fn transport_error(&self, error: StreamableHttpError<reqwest::Error>) -> ErrorData {
        self.unavailable(&error.to_string())
    }

    fn unavailable(&self, reason: &str) -> ErrorData {
        unavailable(&self.upstream, reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn direct() -> DirectHttp {
        let config = rmcp::model::ClientConfig::default();
        DirectHttp::new("up", "http://127.0.0.1:9/mcp", HashMap::new(), Poster::Plain(reqwest::Client::new()), &config)
    }

    #[test]
    fn only_names_that_are_plain_header_values_are_called_directly() {
        let direct = direct();
        assert!(direct.can_call("search_docs"));
        assert!(direct.can_call("get-item.v2"));
        assert!(!direct.can_call("météo"), "non-ASCII needs Base64");
        assert!(!direct.can_call(" padded"));
        assert!(!direct.can_call("=?base64?abc?="));
        assert!(!direct.can_call("tab\tname"));
    }

    #[test]
    fn only_the_answer_to_this_request_counts() {
        let direct = direct();
        let ours = RequestId::Number(3);
        let other = ServerJsonRpcMessage::response(ServerResult::empty(()), RequestId::Number(4));
        assert!(direct.answer_to(&ours, other).is_none());
        let answer = ServerJsonRpcMessage::response(ServerResult::empty(()), RequestId::Number(3));
        assert!(matches!(direct.answer_to(&ours, answer), Some(Ok(_))));
        let refused = ServerJsonRpcMessage::error(ErrorData::invalid_params("no", None), None);
        assert!(matches!(direct.answer_to(&ours, refused), Some(Err(_))), "an error without an id answers it");
    }
}
