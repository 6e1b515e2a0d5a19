//! The gateway keeps each workspace's listed upstreams in memory per `upstreams_version` (read
//! with the workspace row on every request): a change written by anyone (the CLI, another
//! node: here a second connection pool, as `gatehouse upstream add` opens) is seen on the very
//! next request, every kind of write moves the version, and requests at a version already seen
//! do not read or unseal the upstream rows again.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use gatehouse::gateway::registry;
use gatehouse::gateway::upstream::UpstreamSpec;
use gatehouse::store::Store;
use serde_json::{Value, json};

use crate::both_backends;
use crate::gateway::{access_token, http_upstream, open_session, rpc};
use crate::helpers::*;

/// Another process's view of the same database (what the CLI opens).
async fn other_process(app: &TestApp) -> Store {
    Store::connect(app.state.settings.database_url.as_deref(), &app.state.settings.data_dir).await.unwrap()
}

/// The version as the MCP endpoint reads it: from its one workspace query.
async fn version(app: &TestApp, slug: &str) -> i64 {
    app.state.store.workspace_and_issuer_by_slug(slug).await.unwrap().unwrap().0.upstreams_version
}

/// A stateless (2026-07-28) `tools/list`: no session, the context in `_meta`.
async fn stateless_tools(app: &TestApp, token: &str, id: u64) -> Vec<String> {
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "gatehouse-test", "version": "0"},
        "io.modelcontextprotocol/clientCapabilities": {},
    });
    let res = app
        .http
        .post(app.mcp_url("default"))
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/list")
        .json(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/list", "params": {"_meta": meta}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("mcp-session-id").is_none(), "no session is opened");
    let text = res.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|_| {
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .next_back()
            .unwrap_or(Value::String(text.clone()))
    });
    tool_names(&body)
}

fn tool_names(body: &Value) -> Vec<String> {
    let tools = body["result"]["tools"].as_array().unwrap_or_else(|| panic!("no tools in {body}"));
    let mut names: Vec<String> = tools.iter().map(|t| t["name"].as_str().unwrap().to_owned()).collect();
    names.sort_unstable();
    names
}

async fn session_tools(app: &TestApp, token: &str) -> Vec<String> {
    let session = open_session(app, token).await;
    let list =
        rpc(app, "default", Some(token), Some(&session), json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}));
    tool_names(&list.await.body)
}

const DEMO_ONLY: [&str; 3] = ["add", "echo", "whoami"];
const DEMO_AND_WEB: [&str; 6] = ["demo__add", "demo__echo", "demo__whoami", "web__add", "web__echo", "web__whoami"];

both_backends!(a_change_by_another_process_is_seen_on_the_next_request, |app: TestApp| async move {
    let tokens = access_token(&app, "mcp:read mcp:tools").await;
    let at = tokens["access_token"].as_str().unwrap();
    // First requests: the listing is now in memory.
    assert_eq!(stateless_tools(&app, at, 1).await, DEMO_ONLY);
    assert_eq!(session_tools(&app, at).await, DEMO_ONLY);

    let cli = other_process(&app).await;
    let ws = cli.workspace_by_slug("default").await.unwrap().unwrap();
    let web = UpstreamSpec::Http { url: http_upstream().await, headers: vec![("X-Api-Key".into(), "k".into())] };
    registry::add(&cli, &app.state.sealer, app.clock.as_ref(), &ws.id, "web", &web).await.unwrap();
    assert_eq!(stateless_tools(&app, at, 2).await, DEMO_AND_WEB, "the next stateless request sees the new upstream");
    assert_eq!(session_tools(&app, at).await, DEMO_AND_WEB, "so does the next new session");

    assert!(cli.delete_upstream(&ws.id, "web").await.unwrap());
    assert_eq!(stateless_tools(&app, at, 3).await, DEMO_ONLY, "and its removal, at once");
    assert_eq!(session_tools(&app, at).await, DEMO_ONLY);
});

/// Runs `sql` over a connection of its own: a writer that is not Gatehouse's store at all.
async fn execute_elsewhere(app: &TestApp, sql: &'static str) {
    use sqlx::Connection;
    match &app.state.settings.database_url {
        Some(url) => {
            let mut c = sqlx::PgConnection::connect(url).await.unwrap();
            assert_eq!(sqlx::query(sql).execute(&mut c).await.unwrap().rows_affected(), 1);
            let _ = c.close().await;
        }
        None => {
            let options =
                sqlx::sqlite::SqliteConnectOptions::new().filename(app.state.settings.data_dir.join("gatehouse.db"));
            let mut c = sqlx::SqliteConnection::connect_with(&options).await.unwrap();
            assert_eq!(sqlx::query(sql).execute(&mut c).await.unwrap().rows_affected(), 1);
            let _ = c.close().await;
        }
    }
}

type Step<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

both_backends!(every_write_to_upstreams_moves_the_version, |app: TestApp| async move {
    let (store, sealer, clock) = (&app.state.store, &app.state.sealer, app.clock.as_ref());
    let ws = store.workspace_by_slug("default").await.unwrap().unwrap();
    let other = gatehouse::workspace::create(store, clock, "other", None).await.unwrap();
    let id = &ws.id;
    let http =
        |url: &str| UpstreamSpec::Http { url: url.into(), headers: vec![("Authorization".into(), "Bearer k".into())] };
    let stdio = UpstreamSpec::Stdio { command: "true".into(), args: vec![] };
    let (first, second) = (http("http://127.0.0.1:9/a"), http("http://127.0.0.1:9/b"));
    let sealed = vec![0u8; 40];
    // (what, the write, how far it moves the version)
    let steps: Vec<(&str, Step<'_>, i64)> = vec![
        (
            "add",
            Box::pin(async {
                registry::add(store, sealer, clock, id, "web", &first).await.unwrap();
            }),
            1,
        ),
        (
            "add of another",
            Box::pin(async {
                registry::add(store, sealer, clock, id, "local", &stdio).await.unwrap();
            }),
            1,
        ),
        (
            "add refused: the name is taken",
            Box::pin(async { assert!(registry::add(store, sealer, clock, id, "web", &second).await.is_err()) }),
            0,
        ),
        ("update", Box::pin(async { assert!(registry::update(store, sealer, id, "web", &second).await.unwrap()) }), 1),
        (
            "update of an upstream that does not exist",
            Box::pin(async { assert!(!registry::update(store, sealer, id, "nope", &second).await.unwrap()) }),
            0,
        ),
        (
            "headers resealed (master key rotation)",
            Box::pin(async {
                let row = store.upstream_by_name(id, "web").await.unwrap().unwrap();
                store.reseal_upstream_headers(&row.id, &sealed).await.unwrap();
            }),
            1,
        ),
        (
            "a write by hand in SQL",
            Box::pin(execute_elsewhere(&app, "UPDATE upstreams SET url = 'http://127.0.0.1:9/c' WHERE name = 'web'")),
            1,
        ),
        ("remove", Box::pin(async { assert!(store.delete_upstream(id, "web").await.unwrap()) }), 1),
        (
            "remove of one already gone",
            Box::pin(async { assert!(!store.delete_upstream(id, "web").await.unwrap()) }),
            0,
        ),
    ];
    let untouched = version(&app, "other").await;
    assert_eq!(untouched, other.upstreams_version);
    for (what, write, moves) in steps {
        let before = version(&app, "default").await;
        write.await;
        assert_eq!(version(&app, "default").await - before, moves, "{what}");
        assert_eq!(version(&app, "other").await, untouched, "{what}: another workspace's version stays");
    }
});

both_backends!(requests_at_a_version_already_seen_do_not_read_the_upstreams, |app: TestApp| async move {
    let listed = app.state.listed_upstreams.clone();
    let tokens = access_token(&app, "mcp:read mcp:tools").await;
    let at = tokens["access_token"].as_str().unwrap();
    let loads = listed.loads();
    assert_eq!(stateless_tools(&app, at, 1).await, DEMO_ONLY);
    assert_eq!(listed.loads() - loads, 1, "the first request lists the upstreams");
    for id in 2..5 {
        assert_eq!(stateless_tools(&app, at, id).await, DEMO_ONLY);
    }
    assert_eq!(session_tools(&app, at).await, DEMO_ONLY);
    assert_eq!(listed.loads() - loads, 1, "later requests at the same version use the listing kept");

    let (store, sealer) = (&app.state.store, &app.state.sealer);
    let ws = store.workspace_by_slug("default").await.unwrap().unwrap();
    let kept = listed.get(store, sealer, &ws.id, ws.upstreams_version).await.unwrap();
    let again = listed.get(store, sealer, &ws.id, ws.upstreams_version).await.unwrap();
    assert!(Arc::ptr_eq(&kept, &again), "the very listing kept, not a new read");
    assert_eq!(listed.loads() - loads, 1);

    let web = UpstreamSpec::Http { url: http_upstream().await, headers: vec![] };
    registry::add(store, sealer, app.clock.as_ref(), &ws.id, "web", &web).await.unwrap();
    assert_eq!(stateless_tools(&app, at, 6).await, DEMO_AND_WEB);
    assert_eq!(listed.loads() - loads, 2, "a new version is listed once");
    assert_eq!(stateless_tools(&app, at, 7).await, DEMO_AND_WEB);
    assert_eq!(session_tools(&app, at).await, DEMO_AND_WEB);
    assert_eq!(listed.loads() - loads, 2, "and then kept");
});
