//! Stateless `tools/call` requests answered by the endpoint itself, without rmcp's server side.
//!
//! Why: rmcp serves each stateless (2026-07-28) request by building a server around a
//! one-message transport. It parses the message against every kind of JSON-RPC message,
//! serialises it again to check the SEP-2243 headers, spawns a task to serve it and passes the
//! answer back over a channel, so each call hops between tasks several times and waits behind
//! the whole run queue at each hop (see the README's performance section). Tool calls are most
//! of what clients send, so the endpoint answers one itself when it is sure rmcp would accept
//! it unchanged.
//!
//! Everything else goes to rmcp as before: any other method, and any tool call that is not
//! exactly that shape (anything rmcp would refuse, a progress token or log level that needs a
//! stream, Base64-encoded or `Mcp-Param-*` headers, a tool whose schema maps arguments to
//! headers). So every refusal is still rmcp's own. An answer from here is what rmcp would
//! send: the same JSON-RPC message, serialised from the same types, with the same status.

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, ErrorCode, JsonObject, JsonRpcVersion2_0, ProtocolVersion, RequestId,
    RequestMetaObject, ServerJsonRpcMessage, ServerResult,
};
use rmcp::{ErrorData, ServerHandler};

use super::aggregate::Aggregator;
use super::demo::Caller;

const METHOD: &str = "tools/call";

/// The keys a direct call's `_meta` may hold: the 2026-07-28 request context and nothing that
/// asks for more than one answer (`progressToken`, a log level).
const PLAIN_META: &[&str] = &[
    "io.modelcontextprotocol/protocolVersion",
    "io.modelcontextprotocol/clientCapabilities",
    "io.modelcontextprotocol/clientInfo",
];

/// SEP-2243's marker of a Base64-encoded header value (rmcp's `BASE64_HEADER_PREFIX`).
const BASE64_PREFIX: &str = "=?base64?";

/// A stateless `tools/call` the endpoint can answer itself.
pub struct DirectCall {
    id: RequestId,
    params: CallToolRequestParams,
    meta: RequestMetaObject,
}

/// The request as it must be for a direct answer. Unknown members are refused here (rmcp
/// would ignore them): a message this does not read exactly goes to rmcp.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Message {
    #[allow(dead_code)] // checked by its type: "2.0"
    jsonrpc: JsonRpcVersion2_0,
    id: RequestId,
    method: String,
    params: CallToolRequestParams,
}

/// `message` as a direct call, if it is a stateless `tools/call` that rmcp would accept as it
/// is (given what the headers say).
pub fn recognise(headers: &HeaderMap, message: &Bytes) -> Option<DirectCall> {
    let version = ProtocolVersion::V_2026_07_28;
    if single(headers, "mcp-protocol-version")? != version.as_str()
        || !accepts_json_and_sse(headers)
        || !is_json(single(headers, header::CONTENT_TYPE.as_str())?)
        || single(headers, "mcp-method")? != METHOD
        || headers.keys().any(|name| name.as_str().starts_with("mcp-param-"))
    {
        return None;
    }
    let Message { id, method, mut params, .. } = serde_json::from_slice(message).ok()?;
    let name = single(headers, "mcp-name")?;
    if method != METHOD || name.starts_with(BASE64_PREFIX) || name != params.name {
        return None;
    }
    let meta = params.meta.take()?;
    let plain = meta.0.0.keys().all(|key| PLAIN_META.contains(&key.as_str()));
    let complete = meta.missing_required_keys(&version).is_empty();
    (plain && complete && meta.protocol_version() == Some(version)).then_some(DirectCall { id, params, meta })
}

/// Answers `call` for `caller` from `aggregator`; `None` when it must go to rmcp after all
/// (decided before anything is sent upstream).
pub async fn answer(aggregator: &Aggregator, call: DirectCall, caller: &Caller) -> Option<Response> {
    let DirectCall { id, params, meta } = call;
    if !aggregator.supported_protocol_versions().contains(&ProtocolVersion::V_2026_07_28)
        || aggregator.get_tool(&params.name).is_some_and(|tool| maps_headers(&tool.input_schema))
    {
        return None;
    }
    let outcome = aggregator.call_tool_direct(params, &meta, caller).await?;
    Some(respond(id, outcome))
}

/// The HTTP answer rmcp gives a per-request-negotiated request: the JSON-RPC message, with
/// the status its error code calls for.
fn respond(id: RequestId, outcome: Result<CallToolResponse, ErrorData>) -> Response {
    let (status, message) = match outcome {
        Ok(response) => (StatusCode::OK, ServerJsonRpcMessage::response(ServerResult::from(response), id)),
        Err(mut error) => {
            // As rmcp's server does for 2026-07-28 peers.
            if error.code == ErrorCode::RESOURCE_NOT_FOUND {
                error.code = ErrorCode::INVALID_PARAMS;
            }
            (error_status(error.code), ServerJsonRpcMessage::error(error, Some(id)))
        }
    };
    match serde_json::to_vec(&message) {
        Ok(body) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(error) => {
            tracing::error!(%error, "an upstream's answer could not be encoded");
            (StatusCode::BAD_GATEWAY, "the upstream's answer could not be encoded").into_response()
        }
    }
}

/// rmcp's mapping of JSON-RPC errors to HTTP statuses on the stateless path.
fn error_status(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::UNSUPPORTED_PROTOCOL_VERSION
        | ErrorCode::MISSING_REQUIRED_CLIENT_CAPABILITY
        | ErrorCode::HEADER_MISMATCH => StatusCode::BAD_REQUEST,
        ErrorCode::METHOD_NOT_FOUND => StatusCode::NOT_FOUND,
        _ => StatusCode::OK,
    }
}

/// The one value of header `name`, as text.
fn single<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    let mut values = headers.get_all(name).iter();
    let value = values.next()?;
    values.next().is_none().then_some(())?;
    value.to_str().ok()
}

/// `Accept` names both media types a Streamable HTTP client must accept, without parameters
/// (a quality value is left to rmcp to weigh).
fn accepts_json_and_sse(headers: &HeaderMap) -> bool {
    let (mut json, mut sse) = (false, false);
    for value in headers.get_all(header::ACCEPT) {
        let Ok(value) = value.to_str() else { return false };
        for item in value.split(',').map(str::trim) {
            if item.contains(';') {
                return false;
            }
            json |= item.eq_ignore_ascii_case("application/json");
            sse |= item.eq_ignore_ascii_case("text/event-stream");
        }
    }
    json && sse
}

fn is_json(content_type: &str) -> bool {
    content_type.split(';').next().is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// The schema maps an argument to an `Mcp-Param-*` header (an `x-mcp-header` anywhere in it).
fn maps_headers(schema: &JsonObject) -> bool {
    fn any(value: &serde_json::Value) -> bool {
        match value {
            serde_json::Value::Object(object) => object.contains_key("x-mcp-header") || object.values().any(any),
            serde_json::Value::Array(items) => items.iter().any(any),
            _ => false,
        }
    }
    schema.contains_key("x-mcp-header") || schema.values().any(any)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                axum::http::HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    const STANDARD: &[(&str, &str)] = &[
        ("mcp-protocol-version", "2026-07-28"),
        ("accept", "application/json, text/event-stream"),
        ("content-type", "application/json"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "echo"),
    ];

    fn body(meta: serde_json::Value) -> Bytes {
        let message = serde_json::json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": "hi"}, "_meta": meta}});
        Bytes::from(message.to_string())
    }

    fn plain_meta() -> serde_json::Value {
        serde_json::json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "0"}})
    }

    #[test]
    fn a_plain_stateless_tool_call_is_answered_directly() {
        let call = recognise(&headers(STANDARD), &body(plain_meta())).expect("direct");
        assert_eq!(call.id, RequestId::Number(7));
        assert_eq!(call.params.name, "echo");
        assert!(call.params.meta.is_none(), "the _meta travels separately");
    }

    #[test]
    fn anything_rmcp_might_refuse_or_stream_goes_to_rmcp() {
        let with = |name: &str, value: &str| {
            let mut pairs: Vec<(&str, &str)> = STANDARD.iter().filter(|(n, _)| *n != name).copied().collect();
            pairs.push((name, value));
            headers(&pairs)
        };
        let plain = body(plain_meta());
        assert!(recognise(&with("mcp-protocol-version", "2025-11-25"), &plain).is_none());
        assert!(recognise(&with("mcp-name", "other"), &plain).is_none(), "Mcp-Name must match");
        assert!(recognise(&with("mcp-name", "=?base64?ZWNobw==?="), &plain).is_none(), "Base64 left to rmcp");
        assert!(recognise(&with("mcp-method", "tools/list"), &plain).is_none());
        assert!(recognise(&with("accept", "application/json"), &plain).is_none(), "406 is rmcp's");
        assert!(recognise(&with("accept", "application/json;q=0, text/event-stream"), &plain).is_none());
        assert!(recognise(&with("content-type", "text/plain"), &plain).is_none());
        assert!(recognise(&with("mcp-param-region", "x"), &plain).is_none());
        let mut twice = headers(STANDARD);
        twice.append("mcp-name", "echo".parse().unwrap());
        assert!(recognise(&twice, &plain).is_none(), "duplicate headers are rmcp's to refuse");

        let mut progress = plain_meta();
        progress["progressToken"] = 1.into();
        assert!(recognise(&headers(STANDARD), &body(progress)).is_none(), "progress needs a stream");
        let mut level = plain_meta();
        level["io.modelcontextprotocol/logLevel"] = "debug".into();
        assert!(recognise(&headers(STANDARD), &body(level)).is_none());
        let mut missing = plain_meta();
        missing.as_object_mut().unwrap().remove("io.modelcontextprotocol/clientCapabilities");
        assert!(recognise(&headers(STANDARD), &body(missing)).is_none(), "rmcp's invalid_params");
        let mut other_version = plain_meta();
        other_version["io.modelcontextprotocol/protocolVersion"] = "2025-11-25".into();
        assert!(recognise(&headers(STANDARD), &body(other_version)).is_none(), "rmcp's header mismatch");

        let extra = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","extra":1,"params":{"name":"echo"}}"#;
        assert!(recognise(&headers(STANDARD), &Bytes::from(extra)).is_none());
        assert!(recognise(&headers(STANDARD), &Bytes::from_static(b"{not json")).is_none());
        let version_1 = String::from_utf8(body(plain_meta()).to_vec()).unwrap().replace(r#""2.0""#, r#""1.0""#);
        assert!(recognise(&headers(STANDARD), &Bytes::from(version_1)).is_none());
    }

    #[test]
    fn statuses_follow_rmcp() {
        assert_eq!(error_status(ErrorCode::HEADER_MISMATCH), StatusCode::BAD_REQUEST);
        assert_eq!(error_status(ErrorCode::METHOD_NOT_FOUND), StatusCode::NOT_FOUND);
        assert_eq!(error_status(ErrorCode::INTERNAL_ERROR), StatusCode::OK);
        let unknown = respond(RequestId::Number(1), Err(ErrorData::invalid_params("unknown tool `x`", None)));
        assert_eq!(unknown.status(), StatusCode::OK);
    }

    #[test]
    fn header_annotations_are_found_at_any_depth() {
        let schema = |value: serde_json::Value| value.as_object().cloned().unwrap();
        assert!(!maps_headers(&schema(serde_json::json!({"type": "object", "properties": {"a": {"type": "string"}}}))));
        assert!(maps_headers(&schema(serde_json::json!({"properties": {"a": {"x-mcp-header": "A"}}}))));
        assert!(maps_headers(&schema(
            serde_json::json!({"properties": {"o": {"properties": {"b": {"x-mcp-header": "B"}}}}})
        )));
    }
}
