//! The MCP endpoint as an OAuth-protected resource: metadata, challenges, audience, scope,
//! instant revocation, machine tokens, DNS-rebinding defence and session binding, talking
//! JSON-RPC to the built-in demo server through the gateway.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::*;

/// A JSON-RPC exchange with the MCP endpoint; the answer may come as JSON or as one SSE event.
pub struct Rpc {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

pub async fn rpc(app: &TestApp, slug: &str, token: Option<&str>, session: Option<&str>, message: Value) -> Rpc {
    let mut req = app
        .http
        .post(app.mcp_url(slug))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .json(&message);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(s) = session {
        req = req.header("mcp-session-id", s);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| {
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .next_back()
            .unwrap_or(Value::String(text.clone()))
    });
    Rpc { status, headers, body }
}

fn initialize() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "gatehouse-test", "version": "0"}}})
}

/// Opens an MCP session with `token`; returns its id.
pub async fn open_session(app: &TestApp, token: &str) -> String {
    let init = rpc(app, "default", Some(token), None, initialize()).await;
    assert_eq!(init.status, 200, "{}", init.body);
    let session = init.headers["mcp-session-id"].to_str().unwrap().to_owned();
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    assert!(rpc(app, "default", Some(token), Some(&session), note).await.status < 300);
    session
}

/// An access token for alice in `default` with `scope`, through the real code flow.
pub async fn access_token(app: &TestApp, scope: &str) -> Value {
    app.member("alice@example.com", "default").await;
    let client = app.public_client().await;
    let browser = Browser::new(app);
    browser.login("alice@example.com", PASSWORD).await;
    let url = app
        .authorize_url(&client, &[])
        .replace("scope=mcp%3Aread+mcp%3Atools", &format!("scope={}", scope.replace(' ', "+").replace(':', "%3A")));
    let location = browser.authorize_and_approve(&url).await;
    let code = query_param(&location, "code").expect("code");
    let mut tokens: Value = app.exchange(&client, &code).await.json().await.unwrap();
    tokens["client_id"] = json!(client);
    tokens
}

fn challenge(r: &Rpc) -> String {
    r.headers.get("www-authenticate").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

fn call(id: u64, tool: &str, args: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": args}})
}

both_backends!(no_token_gets_a_challenge_pointing_at_the_metadata, |app: TestApp| async move {
    let r = rpc(&app, "default", None, None, initialize()).await;
    assert_eq!(r.status, 401);
    let www = challenge(&r);
    let prm = format!("{}/.well-known/oauth-protected-resource/t/default/mcp", app.url);
    assert!(www.starts_with("Bearer "), "Bearer first: {www}");
    assert!(www.contains(&format!("resource_metadata=\"{prm}\"")), "{www}");
    assert!(www.contains("scope=\"mcp:read mcp:tools\""), "{www}");

    let meta: Value = app.http.get(&prm).send().await.unwrap().json().await.unwrap();
    assert_eq!(meta["resource"], app.mcp_url("default"));
    assert_eq!(meta["authorization_servers"], json!([app.url]));
    assert_eq!(meta["bearer_methods_supported"], json!(["header"]));
    assert!(!meta["scopes_supported"].as_array().unwrap().contains(&json!("offline_access")));
    let missing =
        app.http.get(format!("{}/.well-known/oauth-protected-resource/t/nope/mcp", app.url)).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(rpc(&app, "nope", None, None, initialize()).await.status, 404);
});

both_backends!(a_token_lists_and_calls_tools_as_its_owner, |app: TestApp| async move {
    let tokens = access_token(&app, "mcp:read mcp:tools").await;
    let at = tokens["access_token"].as_str().unwrap();
    let session = open_session(&app, at).await;
    let list =
        rpc(&app, "default", Some(at), Some(&session), json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}))
            .await;
    let names: Vec<&str> =
        list.body["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"echo") && names.contains(&"add") && names.contains(&"whoami"), "{names:?}");
    let sum = rpc(&app, "default", Some(at), Some(&session), call(3, "add", json!({"a": 2, "b": 3}))).await;
    assert_eq!(sum.body["result"]["content"][0]["text"], "5", "{}", sum.body);
    let who = rpc(&app, "default", Some(at), Some(&session), call(4, "whoami", json!({}))).await;
    let text = who.body["result"]["content"][0]["text"].as_str().unwrap().to_owned();
    let alice = app.state.store.user_by_email("alice@example.com").await.unwrap().unwrap();
    assert!(text.contains(&alice.id), "whoami names the signed-in person: {text}");
    assert!(text.contains(tokens["client_id"].as_str().unwrap()), "{text}");
});

both_backends!(missing_scope_is_a_403_naming_all_needed_scopes, |app: TestApp| async move {
    let tokens = access_token(&app, "mcp:read").await;
    let at = tokens["access_token"].as_str().unwrap();
    let session = open_session(&app, at).await;
    let listed =
        rpc(&app, "default", Some(at), Some(&session), json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}))
            .await;
    assert_eq!(listed.status, 200);
    let r = rpc(&app, "default", Some(at), Some(&session), call(3, "echo", json!({"text": "hi"}))).await;
    assert_eq!(r.status, 403);
    let www = challenge(&r);
    assert!(www.starts_with("Bearer error=\"insufficient_scope\""), "{www}");
    assert!(www.contains("scope=\"mcp:read mcp:tools\""), "needed plus granted: {www}");
    assert!(www.contains("resource_metadata="), "{www}");
});

both_backends!(tokens_for_another_workspace_are_refused, |app: TestApp| async move {
    let tokens = access_token(&app, "mcp:read mcp:tools").await;
    app.member("alice@example.com", "other").await;
    let r = rpc(&app, "other", Some(tokens["access_token"].as_str().unwrap()), None, initialize()).await;
    assert_eq!(r.status, 401);
    let www = challenge(&r);
    assert!(www.contains("error=\"invalid_token\"") && www.contains("audience does not match"), "{www}");
    assert!(www.contains("/.well-known/oauth-protected-resource/t/other/mcp"), "{www}");
});

both_backends!(revocation_is_seen_on_the_very_next_request, |app: TestApp| async move {
    let tokens = access_token(&app, "mcp:read mcp:tools").await;
    let at = tokens["access_token"].as_str().unwrap();
    let session = open_session(&app, at).await;
    let revoke = app
        .http
        .post(format!("{}/revoke", app.url))
        .form(&[
            ("token", tokens["refresh_token"].as_str().unwrap()),
            ("client_id", tokens["client_id"].as_str().unwrap()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status(), 200);
    let r = rpc(&app, "default", Some(at), Some(&session), call(2, "echo", json!({"text": "x"}))).await;
    assert_eq!(r.status, 401, "the 15-minute JWT is dead at once");
    assert!(challenge(&r).contains("revoked"), "{}", challenge(&r));
});

// A `client_credentials` token has no grant: deleting its client is what revokes it, and the
// gateway sees that on the next request too.
both_backends!(deleting_a_machine_client_stops_its_tokens_at_once, |app: TestApp| async move {
    let (id, secret) = app.machine_client("mcp:read mcp:tools").await;
    let body = app.client_credentials_token(&id, &secret).await;
    let at = body["access_token"].as_str().unwrap();
    let session = open_session(&app, at).await;
    let r = rpc(&app, "default", Some(at), Some(&session), call(2, "echo", json!({"text": "x"}))).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // The same token is refused by another workspace: client_credentials clients belong to one.
    gatehouse::workspace::create(&app.state.store, app.clock.as_ref(), "other", None).await.unwrap();
    let other = rpc(&app, "other", Some(at), None, call(3, "echo", json!({"text": "x"}))).await;
    assert_eq!(other.status, 401);
    assert!(app.state.store.delete_client(&id).await.unwrap());
    let r = rpc(&app, "default", Some(at), Some(&session), call(4, "echo", json!({"text": "x"}))).await;
    assert_eq!(r.status, 401, "the JWT died with its client");
    assert!(challenge(&r).contains("client of this token has been removed"), "{}", challenge(&r));
});

// What the gateway found alive is remembered (no read of the grant on every request), so a
// revocation it never hears of, written straight to the database by another process, must
// still be seen on the very next request: by the grant's revocation, by the grant's deletion
// (a person deleted), by the client's deletion, and by a machine token's revocation.
both_backends!(revocations_written_by_another_process_are_seen_at_once, |app: TestApp| async move {
    let echo = |n: u64| call(n, "echo", json!({"text": "x"}));
    let tokens = access_token(&app, "mcp:read mcp:tools").await;
    let at = tokens["access_token"].as_str().unwrap();
    let session = open_session(&app, at).await;
    for n in 2..4 {
        assert_eq!(rpc(&app, "default", Some(at), Some(&session), echo(n)).await.status, 200);
    }
    assert_eq!(app.execute_elsewhere("UPDATE grants SET revoked_at = 1, revoked_reason = 'elsewhere'").await, 1);
    let r = rpc(&app, "default", Some(at), Some(&session), echo(4)).await;
    assert_eq!(r.status, 401, "revoked by another process");

    let tokens = access_token(&app, "mcp:read mcp:tools").await;
    let at = tokens["access_token"].as_str().unwrap();
    let session = open_session(&app, at).await;
    assert_eq!(rpc(&app, "default", Some(at), Some(&session), echo(2)).await.status, 200);
    assert_eq!(app.execute_elsewhere("DELETE FROM users WHERE email = 'alice@example.com'").await, 1);
    assert_eq!(rpc(&app, "default", Some(at), Some(&session), echo(3)).await.status, 401, "grant gone with its person");

    let (id, secret) = app.machine_client("mcp:read mcp:tools").await;
    let body = app.client_credentials_token(&id, &secret).await;
    let at = body["access_token"].as_str().unwrap();
    let session = open_session(&app, at).await;
    assert_eq!(rpc(&app, "default", Some(at), Some(&session), echo(2)).await.status, 200);
    assert_eq!(app.execute_elsewhere(&format!("DELETE FROM oauth_clients WHERE id = '{id}'")).await, 1);
    let r = rpc(&app, "default", Some(at), Some(&session), echo(3)).await;
    assert_eq!(r.status, 401, "client deleted elsewhere");

    let (token, row) = app.machine_token("mcp:read mcp:tools", "ci").await;
    let session = open_session(&app, &token).await;
    assert_eq!(rpc(&app, "default", Some(&token), Some(&session), echo(2)).await.status, 200);
    let sql = format!("UPDATE machine_tokens SET revoked_at = 1 WHERE id = '{}'", row.id);
    assert_eq!(app.execute_elsewhere(&sql).await, 1);
    let r = rpc(&app, "default", Some(&token), Some(&session), echo(3)).await;
    assert_eq!(r.status, 401, "machine token revoked elsewhere");
});

both_backends!(machine_tokens_work_until_revoked, |app: TestApp| async move {
    let (token, row) = app.machine_token("mcp:read mcp:tools", "ci").await;
    let session = open_session(&app, &token).await;
    let echo = rpc(&app, "default", Some(&token), Some(&session), call(2, "echo", json!({"text": "hello"}))).await;
    assert_eq!(echo.body["result"]["content"][0]["text"], "hello", "{}", echo.body);
    app.state.store.revoke_machine_token(&row.id, app.clock.now_secs()).await.unwrap();
    let r = rpc(&app, "default", Some(&token), Some(&session), call(3, "echo", json!({"text": "x"}))).await;
    assert_eq!(r.status, 401);
    // Workspace-bound like JWTs.
    let (other, _) =
        gatehouse::oauth::machine::create(&app.state.store, app.clock.as_ref(), "default", "mcp:read", 86_400, "x")
            .await
            .unwrap();
    gatehouse::workspace::create(&app.state.store, app.clock.as_ref(), "other", None).await.unwrap();
    assert_eq!(rpc(&app, "other", Some(&other), None, initialize()).await.status, 401);
});

both_backends!(tokens_in_the_url_and_rebinding_are_refused, |app: TestApp| async move {
    let tokens = access_token(&app, "mcp:read mcp:tools").await;
    let at = tokens["access_token"].as_str().unwrap();
    let in_query = app
        .http
        .post(format!("{}?access_token={at}", app.mcp_url("default")))
        .json(&initialize())
        .send()
        .await
        .unwrap();
    assert_eq!(in_query.status(), 400);
    let initialize_with = |name: &'static str, value: &'static str| {
        app.http
            .post(app.mcp_url("default"))
            .bearer_auth(at)
            .header(name, value)
            .header("accept", "application/json, text/event-stream")
            .json(&initialize())
            .send()
    };
    assert_eq!(initialize_with("origin", "https://evil.example.com").await.unwrap().status(), 403);
    assert_eq!(initialize_with("host", "evil.example.com").await.unwrap().status(), 403);
    assert_eq!(
        initialize_with("origin", "http://localhost:6274").await.unwrap().status(),
        200,
        "a local inspector may"
    );
});

both_backends!(sessions_are_bound_to_who_opened_them, |app: TestApp| async move {
    let alice = access_token(&app, "mcp:read mcp:tools").await;
    let session = open_session(&app, alice["access_token"].as_str().unwrap()).await;
    let (machine, _) = app.machine_token("mcp:read mcp:tools", "m").await;
    let hijack = rpc(&app, "default", Some(&machine), Some(&session), call(2, "whoami", json!({}))).await;
    assert_eq!(hijack.status, 404, "another principal cannot use alice's session");
    let made_up = rpc(
        &app,
        "default",
        Some(alice["access_token"].as_str().unwrap()),
        Some("not-a-session"),
        call(3, "echo", json!({"text": "x"})),
    )
    .await;
    assert_eq!(made_up.status, 404);
});

/// Serves the built-in demo over Streamable HTTP on a loopback port, as an upstream would be.
pub async fn http_upstream() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = gatehouse::gateway::demo::service(gatehouse::gateway::demo::config());
    let router = axum::Router::new().route_service("/mcp", service);
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}/mcp")
}

/// [`http_upstream`], counting the TCP connections it accepts.
async fn counting_http_upstream() -> (String, Arc<AtomicUsize>) {
    use axum::serve::ListenerExt;
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let listener = listener.tap_io(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    let service = gatehouse::gateway::demo::service(gatehouse::gateway::demo::config());
    let router = axum::Router::new().route_service("/mcp", service);
    tokio::spawn(async move { axum::serve(listener, router).await });
    (format!("http://{addr}/mcp"), accepted)
}

// Each message to an HTTP upstream used to open a TCP connection of its own (rmcp's default
// client keeps none): a connect per tools/call and a socket left in TIME_WAIT. Calls now share
// kept connections.
both_backends!(calls_to_an_http_upstream_reuse_its_connection, |app: TestApp| async move {
    use gatehouse::gateway::{registry, upstream::UpstreamSpec};
    let tokens = access_token(&app, "mcp:read mcp:tools").await;
    let at = tokens["access_token"].as_str().unwrap();
    let ws = app.state.store.workspace_by_slug("default").await.unwrap().unwrap();
    let (url, accepted) = counting_http_upstream().await;
    let web = UpstreamSpec::Http { url, headers: vec![] };
    registry::add(&app.state.store, &app.state.sealer, app.clock.as_ref(), &ws.id, "web", &web).await.unwrap();
    let session = open_session(&app, at).await;
    for n in 0..20 {
        let r = rpc(&app, "default", Some(at), Some(&session), call(2 + n, "web__echo", json!({"text": "x"}))).await;
        assert_eq!(r.body["result"]["content"][0]["text"], "x", "{}", r.body);
    }
    let connections = accepted.load(Ordering::SeqCst);
    assert!((1..=3).contains(&connections), "20 calls took {connections} TCP connections to the upstream");
});

both_backends!(upstreams_are_merged_and_a_dead_one_is_named, |app: TestApp| async move {
    use gatehouse::gateway::{registry, upstream::UpstreamSpec};
    let tokens = access_token(&app, "mcp:read mcp:tools").await;
    let at = tokens["access_token"].as_str().unwrap();
    let ws = app.state.store.workspace_by_slug("default").await.unwrap().unwrap();
    let web = UpstreamSpec::Http { url: http_upstream().await, headers: vec![("X-Api-Key".into(), "k".into())] };
    registry::add(&app.state.store, &app.state.sealer, app.clock.as_ref(), &ws.id, "web", &web).await.unwrap();
    // A port that was open a moment ago and is closed now: nothing listens there.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let down = UpstreamSpec::Http { url: format!("http://{closed}/mcp"), headers: vec![] };
    registry::add(&app.state.store, &app.state.sealer, app.clock.as_ref(), &ws.id, "down", &down).await.unwrap();

    // A new session sees the new configuration, names prefixed by upstream.
    let session = open_session(&app, at).await;
    let list =
        rpc(&app, "default", Some(at), Some(&session), json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}))
            .await;
    let mut names: Vec<&str> =
        list.body["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["demo__add", "demo__echo", "demo__whoami", "web__add", "web__echo", "web__whoami"],
        "{}",
        list.body
    );
    let sum = rpc(&app, "default", Some(at), Some(&session), call(3, "web__add", json!({"a": 2, "b": 3}))).await;
    assert_eq!(sum.body["result"]["content"][0]["text"], "5", "{}", sum.body);
    let who = rpc(&app, "default", Some(at), Some(&session), call(4, "demo__whoami", json!({}))).await;
    assert!(who.body["result"]["content"][0]["text"].as_str().unwrap().contains(tokens["client_id"].as_str().unwrap()));
    let dead = rpc(&app, "default", Some(at), Some(&session), call(5, "down__echo", json!({"text": "x"}))).await;
    let message = dead.body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("down") && message.contains("unavailable"), "{}", dead.body);
});

both_backends!(broken_and_oversized_messages_get_clear_answers, |app: TestApp| async move {
    let tokens = access_token(&app, "mcp:read mcp:tools").await;
    let at = tokens["access_token"].as_str().unwrap();
    let post = |body: Vec<u8>| {
        app.http
            .post(app.mcp_url("default"))
            .bearer_auth(at)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body)
            .send()
    };
    // Just over the cap: the server stops reading at 4 MiB and answers, and the few bytes it
    // leaves unread fit in the socket buffers, so the client always gets to read that answer
    // (a far larger body races the answer against a reset connection).
    let huge = post(vec![b' '; 4 * 1024 * 1024 + 64]).await.unwrap();
    assert_eq!(huge.status(), 400, "over the 4 MiB message cap");
    assert!(huge.headers()["www-authenticate"].to_str().unwrap().contains("invalid_request"));
    for garbage in [&b"{not json"[..], b"[]", b"\xff\xfe", b"{\"jsonrpc\":\"2.0\",\"id\":1}"] {
        let res = post(garbage.to_vec()).await.unwrap();
        let status = res.status().as_u16();
        assert!((400..500).contains(&status), "{status} for {}", String::from_utf8_lossy(garbage));
    }
    // Without a token, a body is never read: the challenge comes first.
    let anonymous = app.http.post(app.mcp_url("default")).body(vec![b'x'; 1024]).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
});

both_backends!(live_sessions_survive_a_configuration_change, |app: TestApp| async move {
    use gatehouse::gateway::{registry, upstream::UpstreamSpec};
    let tokens = access_token(&app, "mcp:read mcp:tools").await;
    let at = tokens["access_token"].as_str().unwrap();
    let before = open_session(&app, at).await;
    let echo = rpc(&app, "default", Some(at), Some(&before), call(2, "echo", json!({"text": "one"}))).await;
    assert_eq!(echo.body["result"]["content"][0]["text"], "one", "{}", echo.body);

    let ws = app.state.store.workspace_by_slug("default").await.unwrap().unwrap();
    let web = UpstreamSpec::Http { url: http_upstream().await, headers: vec![] };
    registry::add(&app.state.store, &app.state.sealer, app.clock.as_ref(), &ws.id, "web", &web).await.unwrap();
    let after = open_session(&app, at).await;

    // The session opened before goes on with the servers it started with (no 404)...
    let again = rpc(&app, "default", Some(at), Some(&before), call(3, "echo", json!({"text": "two"}))).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["result"]["content"][0]["text"], "two", "{}", again.body);
    // ...while a new one sees the new configuration.
    let prefixed = rpc(&app, "default", Some(at), Some(&after), call(4, "web__echo", json!({"text": "three"}))).await;
    assert_eq!(prefixed.body["result"]["content"][0]["text"], "three", "{}", prefixed.body);
    // Sessions stay bound to who opened them, whichever server they live on.
    let (machine, _) = app.machine_token("mcp:read mcp:tools", "m").await;
    assert_eq!(
        rpc(&app, "default", Some(&machine), Some(&before), call(5, "echo", json!({"text": "x"}))).await.status,
        404
    );
});
