//! Stateless (2026-07-28) tool calls that the endpoint answers itself, without rmcp's server
//! side (`gateway::direct`), must get exactly what rmcp's path gives: here each call is made
//! both ways (a quality value in `Accept` sends a request down rmcp's path, since the direct
//! path leaves weighing those to rmcp) and the answers compared, status, type and body. The
//! upstreams: the in-process demo, and the demo server over HTTP answering in JSON and in SSE
//! (calls to stateless HTTP upstreams are posted without rmcp's client too).

use serde_json::{Value, json};

use crate::both_backends;
use crate::gateway::{access_token, http_upstream};
use crate::helpers::*;

const DIRECT_ACCEPT: &str = "application/json, text/event-stream";
const RMCP_ACCEPT: &str = "application/json;q=1, text/event-stream;q=1";

struct Answer {
    status: u16,
    content_type: String,
    body: Value,
}

fn meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "gatehouse-test", "version": "0"},
        "io.modelcontextprotocol/clientCapabilities": {},
    })
}

/// A stateless `tools/call` of `tool`, with `headers` on top of the standard ones.
async fn call(
    app: &TestApp,
    token: &str,
    accept: &str,
    tool: &str,
    arguments: Value,
    headers: &[(&str, &str)],
) -> Answer {
    let message = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
        "params": {"name": tool, "arguments": arguments, "_meta": meta()}});
    let mut req = app.http.post(app.mcp_url("default")).bearer_auth(token).header("accept", accept);
    let standard = [("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/call"), ("mcp-name", tool)];
    for (name, value) in standard {
        if !headers.iter().any(|(overridden, _)| *overridden == name) {
            req = req.header(name, value);
        }
    }
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let res = req.json(&message).send().await.unwrap();
    assert!(res.headers().get("mcp-session-id").is_none(), "no session is opened");
    let status = res.status().as_u16();
    let content_type = res.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let text = res.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer { status, content_type, body }
}

/// The same call both ways; returns the answer after checking they agree.
async fn both_ways(app: &TestApp, token: &str, tool: &str, arguments: Value, headers: &[(&str, &str)]) -> Answer {
    let direct = call(app, token, DIRECT_ACCEPT, tool, arguments.clone(), headers).await;
    let rmcp = call(app, token, RMCP_ACCEPT, tool, arguments, headers).await;
    assert_eq!((direct.status, &direct.body), (rmcp.status, &rmcp.body), "{tool}: direct and rmcp answers differ");
    assert_eq!(direct.content_type, rmcp.content_type, "{tool}");
    direct
}

/// The demo server over HTTP, answering every request with an SSE stream rather than JSON.
async fn sse_upstream() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = gatehouse::gateway::demo::config().with_json_response(false);
    let router = axum::Router::new().route_service("/mcp", gatehouse::gateway::demo::service(config));
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}/mcp")
}

both_backends!(stateless_tool_calls_are_answered_as_rmcp_answers_them, |app: TestApp| async move {
    use gatehouse::gateway::{registry, upstream::UpstreamSpec};
    let tokens = access_token(&app, "mcp:read mcp:tools").await;
    let at = tokens["access_token"].as_str().unwrap();
    let ws = app.state.store.workspace_by_slug("default").await.unwrap().unwrap();
    let web = UpstreamSpec::Http { url: http_upstream().await, headers: vec![] };
    registry::add(&app.state.store, &app.state.sealer, app.clock.as_ref(), &ws.id, "web", &web).await.unwrap();
    let streaming = UpstreamSpec::Http { url: sse_upstream().await, headers: vec![] };
    registry::add(&app.state.store, &app.state.sealer, app.clock.as_ref(), &ws.id, "sse", &streaming).await.unwrap();

    let echo = both_ways(&app, at, "demo__echo", json!({"text": "hello"}), &[]).await;
    assert_eq!(echo.status, 200);
    assert!(echo.content_type.starts_with("application/json"), "{}", echo.content_type);
    assert_eq!(echo.body["id"], 9);
    assert_eq!(echo.body["result"]["content"][0]["text"], "hello", "{}", echo.body);
    assert_eq!(echo.body["result"]["resultType"], "complete", "2026-07-28 results say they are complete");

    // The caller's identity reaches the in-process upstream on the direct path too.
    let whoami = both_ways(&app, at, "demo__whoami", json!({}), &[]).await;
    let identity: Value = serde_json::from_str(whoami.body["result"]["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(identity["workspace"], "default", "{identity}");
    assert!(identity["scope"].as_str().unwrap().contains("mcp:tools"), "{identity}");

    let over_http = both_ways(&app, at, "web__echo", json!({"text": "via http"}), &[]).await;
    assert_eq!(over_http.body["result"]["content"][0]["text"], "via http", "{}", over_http.body);
    let streamed = both_ways(&app, at, "sse__echo", json!({"text": "as an event"}), &[]).await;
    assert_eq!(streamed.body["result"]["content"][0]["text"], "as an event", "{}", streamed.body);
    let streamed_error = both_ways(&app, at, "sse__add", json!({"a": 1}), &[]).await;
    assert_eq!(streamed_error.body["result"]["isError"], true, "{}", streamed_error.body);

    // Errors: the upstream's own (bad arguments: a tool error), and the gateway's (no such tool).
    let bad_arguments = both_ways(&app, at, "demo__add", json!({"a": "one"}), &[]).await;
    assert_eq!(bad_arguments.body["result"]["isError"], true, "{}", bad_arguments.body);
    let unknown = both_ways(&app, at, "nope__nothing", json!({}), &[]).await;
    assert_eq!(unknown.status, 200, "an unknown tool is an in-band JSON-RPC error");
    assert_eq!(unknown.body["error"]["code"], -32602, "{}", unknown.body);
    assert!(unknown.body["error"]["message"].as_str().unwrap().contains("nope__nothing"), "{}", unknown.body);
});

both_backends!(stateless_tool_calls_with_contradicting_headers_are_still_refused, |app: TestApp| async move {
    let tokens = access_token(&app, "mcp:read mcp:tools").await;
    let at = tokens["access_token"].as_str().unwrap();
    let mismatch = call(&app, at, DIRECT_ACCEPT, "echo", json!({"text": "x"}), &[("mcp-name", "whoami")]).await;
    assert_eq!(mismatch.status, 400, "{}", mismatch.body);
    assert_eq!(mismatch.body["error"]["code"], -32020, "SEP-2243 header mismatch: {}", mismatch.body);
    let wrong_version =
        call(&app, at, DIRECT_ACCEPT, "echo", json!({"text": "x"}), &[("mcp-protocol-version", "2099-01-01")]).await;
    assert_eq!(wrong_version.status, 400, "{}", wrong_version.body);
    let json_only = call(&app, at, "application/json", "echo", json!({"text": "x"}), &[]).await;
    assert_eq!(json_only.status, 406, "{}", json_only.body);
});

// A person's upstream account on the direct path: the Connect link before they connect, their
// own token after, and a token the upstream refuses refreshed once and the call retried.
both_backends!(stateless_calls_to_a_signed_in_upstream_use_the_callers_account, |app: TestApp| async move {
    use crate::vault::{failure_text, gateway_token, person_upstream, upstream_tokens};
    use gatehouse::vault::Owner;
    let (upstream, client, _, upstream_id) = person_upstream(&app).await;
    let alice_at = gateway_token(&app, "alice@example.com").await;
    let alice = app.state.store.user_by_email("alice@example.com").await.unwrap().unwrap();

    let before = both_ways(&app, &alice_at, "whoami", json!({}), &[]).await;
    let message = failure_text(&before.body);
    assert!(message.contains(&format!("{}/w/default/upstreams/up", app.url)), "the Connect link: {message}");

    let tokens = upstream_tokens(&upstream, "alice-upstream@example.com", &client).await;
    app.state.vault.store_tokens(&upstream_id, Owner::Person(&alice.id), &tokens, None).await.unwrap();
    // The upstream's clock runs ahead: it refuses the token our clock still thinks is fresh.
    upstream.clock.advance(tokens.expires_in.unwrap() + 1);
    let who = both_ways(&app, &alice_at, "whoami", json!({}), &[]).await;
    let upstream_alice = upstream.state.store.user_by_email("alice-upstream@example.com").await.unwrap().unwrap();
    assert!(who.body.to_string().contains(&upstream_alice.id), "alice acts as her upstream account: {}", who.body);
    let held = app.state.vault.access_token(&upstream_id, Owner::Person(&alice.id), None).await.unwrap();
    assert_ne!(held.token, tokens.access_token, "refreshed on the 401, and the new token is held");
});
