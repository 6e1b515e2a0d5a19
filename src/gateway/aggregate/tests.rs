use std::{
    io::Write,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::Router;
use rmcp::{
    ServiceExt,
    model::{CallToolRequestParams, ClientConfig, GetPromptRequestParams, JsonObject, ReadResourceRequestParams},
    service::{RoleClient, RunningService},
};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::gateway::upstream::UpstreamSpec;

const STEP: Duration = Duration::from_secs(15);

async fn step<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(STEP, future).await.unwrap()
}

/// The demo server over Streamable HTTP at `http://{addr}/mcp`, until the token is cancelled.
async fn http_demo() -> (SocketAddr, CancellationToken) {
    let config = demo::config();
    let token = config.cancellation_token.clone();
    let router = Router::new().route_service("/mcp", demo::service(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = token.clone();
    tokio::spawn(async move {
        axum::serve(listener, router).with_graceful_shutdown(async move { shutdown.cancelled_owned().await }).await
    });
    (addr, token)
}

/// Serves `aggregator` over an in-process byte pipe and connects an rmcp client to it.
async fn client_of(aggregator: Aggregator) -> RunningService<RoleClient, ClientConfig> {
    client_with(aggregator, ClientConfig::default()).await
}

async fn client_with<H: rmcp::ClientHandler>(aggregator: Aggregator, handler: H) -> RunningService<RoleClient, H> {
    let (server_io, client_io) = tokio::io::duplex(1 << 16);
    tokio::spawn(async move {
        if let Ok(running) = aggregator.serve(server_io).await {
            let _ = running.waiting().await;
        }
    });
    step(handler.serve(client_io)).await.unwrap()
}

fn upstream(name: &str, spec: UpstreamSpec) -> Upstream {
    Upstream { name: name.to_owned(), spec }
}

fn args(value: serde_json::Value) -> JsonObject {
    value.as_object().cloned().unwrap()
}

fn text_of(result: &rmcp::model::CallToolResult) -> String {
    result.content.iter().filter_map(|block| block.as_text()).map(|text| text.text.clone()).collect()
}

async fn tool_names<H: rmcp::ClientHandler>(client: &RunningService<RoleClient, H>) -> Vec<String> {
    let mut names: Vec<String> =
        step(client.list_all_tools()).await.unwrap().into_iter().map(|tool| tool.name.to_string()).collect();
    names.sort();
    names
}

#[tokio::test]
async fn merges_an_in_process_and_an_http_upstream() {
    let (addr, stop) = http_demo().await;
    let web = UpstreamSpec::Http { url: format!("http://{addr}/mcp"), headers: vec![("x-api-key".into(), "k".into())] };
    let aggregator = step(Aggregator::connect(&[upstream("demo", UpstreamSpec::Demo), upstream("web", web)])).await;
    let client = client_of(aggregator).await;

    let info = client.peer_info().unwrap();
    assert_eq!(info.server_info.as_ref().unwrap().name, "gatehouse");
    assert!(info.instructions.as_deref().unwrap().contains("demo: "), "{info:?}");

    assert_eq!(
        tool_names(&client).await,
        ["demo__add", "demo__echo", "demo__whoami", "web__add", "web__echo", "web__whoami"]
    );
    let sum = CallToolRequestParams::new("web__add").with_arguments(args(json!({"a": 2, "b": 3})));
    assert_eq!(text_of(&step(client.call_tool(sum)).await.unwrap()), "5");
    let echo = CallToolRequestParams::new("demo__echo").with_arguments(args(json!({"text": "héllo"})));
    assert_eq!(text_of(&step(client.call_tool(echo)).await.unwrap()), "héllo");
    let unknown = step(client.call_tool(CallToolRequestParams::new("echo"))).await;
    assert!(format!("{unknown:?}").contains("unknown tool"), "{unknown:?}");

    // Both upstreams list demo://readme; the first configured owns it, listed once.
    let resources = step(client.list_all_resources()).await.unwrap();
    assert_eq!(resources.iter().map(|r| r.uri.as_str()).collect::<Vec<_>>(), [demo::README_URI]);
    let read = step(client.read_resource(ReadResourceRequestParams::new(demo::README_URI))).await.unwrap();
    assert!(format!("{:?}", read.contents).contains("built-in demo MCP server"));
    assert!(step(client.read_resource(ReadResourceRequestParams::new("demo://nope"))).await.is_err());

    let prompts: Vec<String> = step(client.list_all_prompts()).await.unwrap().into_iter().map(|p| p.name).collect();
    assert_eq!(prompts, ["demo__greet", "web__greet"]);
    let greet = GetPromptRequestParams::new("web__greet").with_arguments(args(json!({"name": "Ada"})));
    let prompt = step(client.get_prompt(greet)).await.unwrap();
    assert!(serde_json::to_string(&prompt.messages).unwrap().contains("Ada"));

    step(client.cancel()).await.unwrap();
    stop.cancel();
}

#[tokio::test]
async fn a_single_upstream_keeps_its_names() {
    let aggregator = step(Aggregator::connect(&[upstream("demo", UpstreamSpec::Demo)])).await;
    let client = client_of(aggregator).await;
    assert_eq!(tool_names(&client).await, ["add", "echo", "whoami"]);
    let sum = CallToolRequestParams::new("add").with_arguments(args(json!({"a": 1, "b": 1})));
    assert_eq!(text_of(&step(client.call_tool(sum)).await.unwrap()), "2");
    step(client.cancel()).await.unwrap();
}

#[tokio::test]
async fn an_upstream_that_is_down_is_skipped_and_named_in_errors() {
    // A loopback port nobody listens on any more.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let web = UpstreamSpec::Http { url: format!("http://{closed}/mcp"), headers: vec![] };
    let aggregator = step(Aggregator::connect(&[upstream("web", web), upstream("demo", UpstreamSpec::Demo)])).await;
    let client = client_of(aggregator).await;

    assert_eq!(tool_names(&client).await, ["demo__add", "demo__echo", "demo__whoami"]);
    let call = CallToolRequestParams::new("web__add").with_arguments(args(json!({"a": 2, "b": 3})));
    let error = match step(client.call_tool(call)).await.unwrap_err() {
        rmcp::ServiceError::McpError(error) => error,
        other => panic!("expected a JSON-RPC error, got {other:?}"),
    };
    assert!(error.message.contains("upstream `web` is unavailable"), "{error:?}");
    assert_eq!(error.data, Some(json!({"upstream": "web"})));
    // The other upstream still works.
    let echo = CallToolRequestParams::new("demo__echo").with_arguments(args(json!({"text": "still here"})));
    assert_eq!(text_of(&step(client.call_tool(echo)).await.unwrap()), "still here");
    step(client.cancel()).await.unwrap();
}

/// A minimal stdio MCP server: newline-delimited JSON-RPC, one tool, a line on stderr.
const TINY_SERVER: &str = r#"
import json, sys
sys.stderr.write("tiny-server starting\n")
sys.stderr.flush()
for line in sys.stdin:
    if not line.strip():
        continue
    msg = json.loads(line)
    mid, method = msg.get("id"), msg.get("method")
    if mid is None or method is None:
        continue
    params = msg.get("params") or {}
    if method == "initialize":
        result = {"protocolVersion": params.get("protocolVersion", "2025-06-18"),
                  "capabilities": {"tools": {}}, "serverInfo": {"name": "tiny", "version": "0"}}
    elif method == "tools/list":
        result = {"tools": [{"name": "shout", "description": "Upper-case the text",
                             "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}},
                                             "required": ["text"]}}]}
    elif method == "tools/call":
        token = (params.get("_meta") or {}).get("progressToken")
        if token is not None:
            note = {"progressToken": token, "progress": 1, "total": 2, "message": "halfway"}
            sys.stdout.write(json.dumps({"jsonrpc": "2.0", "method": "notifications/progress", "params": note}) + "\n")
            sys.stdout.flush()
        result = {"content": [{"type": "text", "text": params["arguments"]["text"].upper()}]}
    elif method == "ping":
        result = {}
    else:
        reply = {"jsonrpc": "2.0", "id": mid, "error": {"code": -32601, "message": "no " + method}}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
        continue
    sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": mid, "result": result}) + "\n")
    sys.stdout.flush()
"#;

/// A client that records the progress notifications it receives.
#[derive(Clone, Default)]
struct ProgressSink(Arc<Mutex<Vec<rmcp::model::ProgressNotificationParam>>>);

impl rmcp::ClientHandler for ProgressSink {
    async fn on_progress(
        &self,
        params: rmcp::model::ProgressNotificationParam,
        _context: rmcp::service::NotificationContext<RoleClient>,
    ) {
        self.0.lock().unwrap().push(params);
    }
}

/// Collects formatted log output.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

// Single-threaded runtime: every task runs on this thread, so the thread-local subscriber below
// sees the stderr reader's events.
#[tokio::test(flavor = "current_thread")]
async fn a_stdio_upstream_is_spawned_and_its_stderr_logged() {
    let logs = Capture::default();
    let subscriber = tracing_subscriber::fmt().with_writer(logs.clone()).with_ansi(false).finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("tiny_server.py");
    std::fs::write(&script, TINY_SERVER).unwrap();
    let tiny = UpstreamSpec::Stdio { command: "python3".into(), args: vec![script.display().to_string()] };
    let aggregator = step(Aggregator::connect(&[upstream("tiny", tiny), upstream("demo", UpstreamSpec::Demo)])).await;
    let progress = ProgressSink::default();
    let client = client_with(aggregator, progress.clone()).await;

    assert_eq!(tool_names(&client).await, ["demo__add", "demo__echo", "demo__whoami", "tiny__shout"]);
    let shout = CallToolRequestParams::new("tiny__shout").with_arguments(args(json!({"text": "quiet"})));
    assert_eq!(text_of(&step(client.call_tool(shout)).await.unwrap()), "QUIET");
    // The upstream's progress reached us (under our own token, which rmcp chose).
    let deadline = tokio::time::Instant::now() + STEP;
    while progress.0.lock().unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no progress relayed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(progress.0.lock().unwrap()[0].message.as_deref(), Some("halfway"));

    let deadline = tokio::time::Instant::now() + STEP;
    while !logs.text().contains("tiny-server starting") {
        assert!(tokio::time::Instant::now() < deadline, "stderr line not logged: {}", logs.text());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let line = logs.text().lines().find(|line| line.contains("tiny-server starting")).unwrap().to_owned();
    assert!(line.contains("upstream=tiny"), "{line}");
    step(client.cancel()).await.unwrap();
}

#[tokio::test]
async fn a_missing_command_is_reported_as_unavailable() {
    let missing = UpstreamSpec::Stdio { command: "/nonexistent/gatehouse-test-server".into(), args: vec![] };
    let aggregator =
        step(Aggregator::connect(&[upstream("gone", missing), upstream("demo", UpstreamSpec::Demo)])).await;
    let client = client_of(aggregator).await;
    let error = step(client.call_tool(CallToolRequestParams::new("gone__x"))).await.unwrap_err();
    assert!(error.to_string().contains("upstream `gone` is unavailable"), "{error}");
    step(client.cancel()).await.unwrap();
}

#[test]
fn reconnect_attempts_back_off_while_an_upstream_keeps_failing() {
    let state = |failures| SlotState { client: None, problem: String::new(), last_attempt: Instant::now(), failures };
    assert_eq!(state(1).backoff(), RETRY_AFTER);
    assert_eq!(state(2).backoff(), RETRY_AFTER * 2);
    assert_eq!(state(3).backoff(), RETRY_AFTER * 4);
    assert_eq!(state(5).backoff(), RETRY_MAX, "capped");
    assert_eq!(state(u32::MAX).backoff(), RETRY_MAX, "no overflow");
}

#[tokio::test]
async fn a_shared_stateless_aggregator_connects_once_and_speaks_2026() {
    let aggregator = Aggregator::lazy(vec![upstream("demo", UpstreamSpec::Demo)], Lifecycle::Stateless, None);
    let first = step(aggregator.client(0)).await.unwrap();
    let again = step(aggregator.client(0)).await.unwrap();
    assert!(Arc::ptr_eq(&first, &again), "the connection is reused");
    assert!(first.is_stateless(), "the in-process demo server speaks 2026-07-28");
}
