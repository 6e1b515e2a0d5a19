//! The credential vault against a real authorization server and MCP resource: a second
//! Gatehouse (`upstream`, on SQLite) plays the upstream service, with its own OAuth server,
//! refresh-token rotation, revocation and an MCP endpoint that demands its own tokens. The
//! gateway under test (either backend) signs in to it for the workspace or for each person.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use gatehouse::gateway::registry;
use gatehouse::gateway::upstream::UpstreamSpec;
use gatehouse::vault::token_endpoint::TokenResponse;
use gatehouse::vault::{AuthMethod, GrantKind, OAuthCredential, Owner, VaultError};
use serde_json::{Value, json};

use crate::both_backends;
use crate::gateway::{open_session, rpc};
use crate::helpers::*;

pub(crate) fn call(id: u64, tool: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": {}}})
}

/// An access token of the gateway itself for `email` (a member of `default`).
pub(crate) async fn gateway_token(app: &TestApp, email: &str) -> String {
    app.member(email, "default").await;
    let client = app.public_client().await;
    let code = app.code_for(email, &client).await;
    let tokens: Value = app.exchange(&client, &code).await.json().await.unwrap();
    tokens["access_token"].as_str().unwrap().to_owned()
}

/// Tokens of the upstream service for `email`, through its real code flow (what the Connect
/// button will do), with its `resource` set to its MCP URL.
pub(crate) async fn upstream_tokens(upstream: &TestApp, email: &str, client: &str) -> TokenResponse {
    upstream.member(email, "default").await;
    let code = upstream.code_for(email, client).await;
    let res = upstream.exchange_with(client, &code, &[("resource", &upstream.mcp_url("default"))]).await;
    assert_eq!(res.status(), 200);
    serde_json::from_value(res.json::<Value>().await.unwrap()).unwrap()
}

/// Replaces the gateway's upstreams with one HTTP upstream `up` pointing at `upstream`'s MCP
/// endpoint; returns its id.
pub(crate) async fn add_upstream(app: &TestApp, upstream: &TestApp) -> (String, String) {
    let store = &app.state.store;
    let ws = store.workspace_by_slug("default").await.unwrap().unwrap();
    assert!(store.delete_upstream(&ws.id, "demo").await.unwrap());
    let spec = UpstreamSpec::Http { url: upstream.mcp_url("default"), headers: vec![] };
    let row = registry::add(store, &app.state.sealer, app.clock.as_ref(), &ws.id, "up", &spec).await.unwrap();
    (ws.id, row.id)
}

/// A second Gatehouse as the gateway's only upstream `up`, with a public client there whose
/// credential in the vault signs each person in with their own account. Returns the upstream,
/// that client's id, and the gateway's workspace and upstream ids.
pub(crate) async fn person_upstream(app: &TestApp) -> (TestApp, String, String, String) {
    let upstream = TestApp::spawn(Backend::Sqlite).await;
    let client = upstream.public_client().await;
    let (ws_id, upstream_id) = add_upstream(app, &upstream).await;
    app.state.vault.set_credential(&upstream_id, &person_credential(&upstream, &client)).await.unwrap();
    (upstream, client, ws_id, upstream_id)
}

pub(crate) fn person_credential(upstream: &TestApp, client: &str) -> OAuthCredential {
    OAuthCredential {
        grant: GrantKind::AuthorizationCode,
        issuer: Some(upstream.url.clone()),
        authorization_endpoint: Some(format!("{}/authorize", upstream.url)),
        token_endpoint: format!("{}/token", upstream.url),
        client_id: client.to_owned(),
        client_secret: None,
        private_key: None,
        auth_method: AuthMethod::None,
        scope: Some("mcp:read mcp:tools".into()),
        resource: Some(upstream.mcp_url("default")),
        audience: None,
    }
}

/// What `whoami` of the upstream's demo server says, called through the gateway as `token`.
async fn whoami(app: &TestApp, token: &str) -> Value {
    let session = open_session(app, token).await;
    rpc(app, "default", Some(token), Some(&session), call(9, "whoami")).await.body
}

/// The text of a failed call: a JSON-RPC error's message, or a tool error's text.
pub(crate) fn failure_text(answer: &Value) -> String {
    if let Some(message) = answer["error"]["message"].as_str() {
        return message.to_owned();
    }
    assert_eq!(answer["result"]["isError"], true, "a failure: {answer}");
    answer["result"]["content"][0]["text"].as_str().unwrap_or_default().to_owned()
}

/// Every byte of the gateway's database, as text: the SQLite file (with its WAL), or every
/// column of every table of PostgreSQL.
async fn dump(app: &TestApp) -> String {
    use sqlx::{Connection, Row};
    match &app.state.settings.database_url {
        None => {
            let mut all = Vec::new();
            for file in ["gatehouse.db", "gatehouse.db-wal"] {
                all.extend(std::fs::read(app.state.settings.data_dir.join(file)).unwrap_or_default());
            }
            String::from_utf8_lossy(&all).into_owned()
        }
        Some(url) => {
            let mut c = sqlx::PgConnection::connect(url).await.unwrap();
            let tables: Vec<String> =
                sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'")
                    .fetch_all(&mut c)
                    .await
                    .unwrap();
            let mut out = String::new();
            for table in tables {
                let sql = format!("SELECT row_to_json(t)::text FROM \"{table}\" t");
                for row in sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&mut c).await.unwrap() {
                    out.push_str(&row.get::<String, _>(0));
                    out.push('\n');
                }
            }
            // bytea columns appear hex-encoded in JSON; decode them so a plain-text secret
            // inside one would still be found.
            let decoded: Vec<u8> = out
                .split("\\\\x")
                .skip(1)
                .flat_map(|chunk| {
                    let hex: String = chunk.chars().take_while(char::is_ascii_hexdigit).collect();
                    (0..hex.len() / 2).filter_map(move |i| u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).ok())
                })
                .collect();
            let _ = c.close().await;
            out + &String::from_utf8_lossy(&decoded)
        }
    }
}

both_backends!(workspace_client_credentials_sign_in_sealed_at_rest, |app: TestApp| async move {
    let upstream = TestApp::spawn(Backend::Sqlite).await;
    let (client_id, secret) = gatehouse::oauth::register::create_machine_client(
        &upstream.state.store,
        upstream.clock.as_ref(),
        "default",
        "gateway",
        "mcp:read mcp:tools",
    )
    .await
    .unwrap();
    let (_, upstream_id) = add_upstream(&app, &upstream).await;
    let at = gateway_token(&app, "alice@example.com").await;
    // Before any credential: the upstream answers 401, so its tools are missing.
    let before = whoami(&app, &at).await;
    let refused = before["error"]["message"].as_str().unwrap_or_default();
    assert!(refused.contains("upstream `up` is unavailable"), "{before}");

    for method in [AuthMethod::ClientSecretBasic, AuthMethod::ClientSecretPost] {
        let credential = OAuthCredential {
            grant: GrantKind::ClientCredentials,
            issuer: None,
            authorization_endpoint: None,
            token_endpoint: format!("{}/token", upstream.url),
            client_id: client_id.clone(),
            client_secret: Some(secret.clone()),
            private_key: None,
            auth_method: method,
            scope: Some("mcp:read mcp:tools".into()),
            resource: Some(upstream.mcp_url("default")),
            audience: None,
        };
        app.state.vault.set_credential(&upstream_id, &credential).await.unwrap();
        assert_eq!(app.state.vault.credential(&upstream_id).await.unwrap().as_ref(), Some(&credential));
        let who = whoami(&app, &at).await;
        let text = who["result"]["content"][0]["text"].as_str().unwrap_or_default().to_owned();
        assert!(text.contains(&client_id), "the upstream saw the workspace's client ({method:?}): {who}");
        app.state.vault.disconnect(&upstream_id, Owner::Workspace).await.unwrap();
    }
    let held = app.state.vault.access_token(&upstream_id, Owner::Workspace, None).await.unwrap();
    let dumped = dump(&app).await;
    assert!(dumped.contains(&client_id), "the dump is readable (client ids are not secret)");
    assert!(!dumped.contains(&secret), "the client secret is sealed");
    assert!(!dumped.contains(&held.token), "the upstream access token is sealed");
    assert!(!dumped.contains(&held.token[..40]), "not even a prefix of it");
});

both_backends!(person_tokens_serve_only_their_owner_and_refresh_before_expiry, |app: TestApp| async move {
    let (upstream, client, _, upstream_id) = person_upstream(&app).await;
    let alice_at = gateway_token(&app, "alice@example.com").await;
    let bob_at = gateway_token(&app, "bob@example.com").await;
    let alice = app.state.store.user_by_email("alice@example.com").await.unwrap().unwrap();

    // Bob has not connected: he is told where to, and never gets anyone else's account.
    let bob_sees = whoami(&app, &bob_at).await;
    assert_eq!(bob_sees["result"]["isError"], true, "a tool error the model can read: {bob_sees}");
    let message = failure_text(&bob_sees);
    assert!(message.contains("not connected your account"), "{bob_sees}");
    assert!(message.contains(&format!("{}/w/default/upstreams/up", app.url)), "carries the Connect link: {message}");

    let first = upstream_tokens(&upstream, "alice-upstream@example.com", &client).await;
    let first_refresh = first.refresh_token.clone().unwrap();
    app.state.vault.store_tokens(&upstream_id, Owner::Person(&alice.id), &first, None).await.unwrap();
    let dumped = dump(&app).await;
    assert!(!dumped.contains(&first.access_token) && !dumped.contains(&first_refresh), "a person's tokens are sealed");
    let upstream_alice = upstream.state.store.user_by_email("alice-upstream@example.com").await.unwrap().unwrap();
    let who = whoami(&app, &alice_at).await;
    assert!(who.to_string().contains(&upstream_alice.id), "alice acts as her upstream account: {who}");
    let bob_again = whoami(&app, &bob_at).await;
    assert!(!bob_again.to_string().contains(&upstream_alice.id), "bob never borrows alice's account: {bob_again}");

    // 80 % into the 15-minute lifetime the refresher renews it, honouring rotation.
    let lifetime = first.expires_in.unwrap();
    app.clock.advance(lifetime * 8 / 10 - 5);
    assert_eq!(app.state.vault.refresh_due(10).await.unwrap(), 0, "not yet due");
    app.clock.advance(10);
    upstream.clock.advance(lifetime * 8 / 10 + 5);
    assert_eq!(app.state.vault.refresh_due(10).await.unwrap(), 1);
    let status = app.state.vault.status(&upstream_id, Owner::Person(&alice.id)).await.unwrap().unwrap();
    assert!(!status.needs_reconnect && status.failures == 0, "{status:?}");
    // Past the upstream's grace for retried requests, the old refresh token is a replay.
    upstream.clock.advance(60);
    let replay = upstream
        .token(&[("grant_type", "refresh_token"), ("client_id", &client), ("refresh_token", &first_refresh)])
        .await;
    assert_eq!(replay.status(), 400, "the old refresh token was rotated away (and replaying it revokes the family)");

    // Past the first token's expiry, alice's calls go on (a new session reads the vault).
    app.clock.advance(lifetime);
    upstream.clock.advance(lifetime);
    let state = app.state.vault.status(&upstream_id, Owner::Person(&alice.id)).await.unwrap().unwrap();
    assert!(state.expires_at.unwrap() <= app.clock.now_secs(), "the refreshed token has expired too");
    // The replay above revoked the family at the upstream: the next refresh is invalid_grant.
    let alice_at = gateway_token(&app, "alice@example.com").await;
    let after = whoami(&app, &alice_at).await;
    let text = failure_text(&after);
    assert!(text.contains("must be renewed"), "{after}");
    assert!(text.contains("/w/default/upstreams/up"), "with the link to reconnect: {text}");
    let state = app.state.vault.status(&upstream_id, Owner::Person(&alice.id)).await.unwrap().unwrap();
    assert!(state.needs_reconnect, "{state:?}");
    let events = app.count_rows("audit_events WHERE kind = 'upstream_needs_reconnect'").await;
    assert_eq!(events, 1);
    // Further calls neither retry the dead grant nor write more events.
    let _ = whoami(&app, &alice_at).await;
    assert_eq!(app.count_rows("audit_events WHERE kind = 'upstream_needs_reconnect'").await, 1);
});

both_backends!(an_access_token_refused_upstream_is_refreshed_once, |app: TestApp| async move {
    let (upstream, client, _, upstream_id) = person_upstream(&app).await;
    let alice_at = gateway_token(&app, "alice@example.com").await;
    let alice = app.state.store.user_by_email("alice@example.com").await.unwrap().unwrap();
    let tokens = upstream_tokens(&upstream, "alice-upstream@example.com", &client).await;
    app.state.vault.store_tokens(&upstream_id, Owner::Person(&alice.id), &tokens, None).await.unwrap();
    // The upstream's clock runs ahead: it refuses the token our clock still thinks is fresh.
    upstream.clock.advance(tokens.expires_in.unwrap() + 1);
    let who = whoami(&app, &alice_at).await;
    let upstream_alice = upstream.state.store.user_by_email("alice-upstream@example.com").await.unwrap().unwrap();
    assert!(who.to_string().contains(&upstream_alice.id), "refreshed on the 401 and retried: {who}");
    let held = app.state.vault.access_token(&upstream_id, Owner::Person(&alice.id), None).await.unwrap();
    assert_ne!(held.token, tokens.access_token, "a new token is held");
});

/// A token endpoint that fails with 503 (or answers slowly with a token), counting requests.
async fn flaky_token_endpoint(ok: bool) -> (String, Arc<AtomicUsize>) {
    use axum::routing::post;
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let router = axum::Router::new().route(
        "/token",
        post(move || {
            let counter = counter.clone();
            async move {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                if ok {
                    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                    let body = json!({"access_token": format!("fresh-{n}"), "token_type": "Bearer",
                        "expires_in": 600, "refresh_token": format!("rt-{n}")});
                    (axum::http::StatusCode::OK, axum::Json(body))
                } else {
                    (
                        axum::http::StatusCode::SERVICE_UNAVAILABLE,
                        axum::Json(json!({"error": "temporarily_unavailable"})),
                    )
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (format!("http://{addr}/token"), hits)
}

async fn stored_person_token(app: &TestApp, token_endpoint: &str) -> (String, String) {
    let store = &app.state.store;
    let ws = store.workspace_by_slug("default").await.unwrap().unwrap();
    let spec = UpstreamSpec::Http { url: "http://127.0.0.1:9/mcp".into(), headers: vec![] };
    let row = registry::add(store, &app.state.sealer, app.clock.as_ref(), &ws.id, "flaky", &spec).await.unwrap();
    let credential = OAuthCredential {
        grant: GrantKind::AuthorizationCode,
        issuer: None,
        authorization_endpoint: Some("http://127.0.0.1:9/authorize".into()),
        token_endpoint: token_endpoint.to_owned(),
        client_id: "gateway".into(),
        client_secret: None,
        private_key: None,
        auth_method: AuthMethod::None,
        scope: None,
        resource: None,
        audience: None,
    };
    app.state.vault.set_credential(&row.id, &credential).await.unwrap();
    app.member("alice@example.com", "default").await;
    let alice = store.user_by_email("alice@example.com").await.unwrap().unwrap();
    let tokens: TokenResponse = serde_json::from_value(
        json!({"access_token": "first-token", "expires_in": 100, "refresh_token": "first-refresh"}),
    )
    .unwrap();
    app.state.vault.store_tokens(&row.id, Owner::Person(&alice.id), &tokens, None).await.unwrap();
    (row.id, alice.id)
}

both_backends!(transient_failures_back_off_then_ask_for_a_reconnection, |app: TestApp| async move {
    let (endpoint, hits) = flaky_token_endpoint(false).await;
    let (upstream_id, alice) = stored_person_token(&app, &endpoint).await;
    let vault = &app.state.vault;
    app.clock.advance(81);
    assert_eq!(vault.refresh_due(10).await.unwrap(), 1);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    // The token is still valid: callers keep using it while the refresh backs off.
    assert_eq!(vault.access_token(&upstream_id, Owner::Person(&alice), None).await.unwrap().token, "first-token");
    // No retry storm: nothing is attempted again until the backoff (30 s, then 60 s) passes.
    for _ in 0..5 {
        vault.refresh_due(10).await.unwrap();
        let _ = vault.access_token(&upstream_id, Owner::Person(&alice), None).await;
    }
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    app.clock.advance(30);
    vault.refresh_due(10).await.unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    app.clock.advance(30);
    vault.refresh_due(10).await.unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 2, "the second backoff is 60 s");
    // Expired meanwhile, and the upstream refuses it: still no request during the backoff.
    let refused = vault.access_token(&upstream_id, Owner::Person(&alice), Some("first-token")).await;
    assert!(matches!(refused, Err(VaultError::Unavailable(_))), "{refused:?}");
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    app.clock.advance(30);
    vault.refresh_due(10).await.unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    let status = vault.status(&upstream_id, Owner::Person(&alice)).await.unwrap().unwrap();
    assert!(status.needs_reconnect, "three failures in a row: {status:?}");
    assert_eq!(app.count_rows("audit_events WHERE kind = 'upstream_needs_reconnect'").await, 1);
    app.clock.advance(7_200);
    vault.refresh_due(10).await.unwrap();
    let after = vault.access_token(&upstream_id, Owner::Person(&alice), None).await;
    assert!(matches!(after, Err(VaultError::NeedsReconnect(_))), "{after:?}");
    assert_eq!(hits.load(Ordering::SeqCst), 3, "a connection that needs reconnecting is not tried again");
});

both_backends!(concurrent_refreshes_spend_the_refresh_token_once, |app: TestApp| async move {
    let (endpoint, hits) = flaky_token_endpoint(true).await;
    let (upstream_id, alice) = stored_person_token(&app, &endpoint).await;
    app.clock.advance(101);
    let vault = app.state.vault.clone();
    let mut racing = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (vault, upstream_id, alice) = (vault.clone(), upstream_id.clone(), alice.clone());
        racing.spawn(async move { vault.access_token(&upstream_id, Owner::Person(&alice), None).await });
    }
    while let Some(result) = racing.join_next().await {
        assert_eq!(result.unwrap().unwrap().token, "fresh-0", "every caller gets the one refreshed token");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 1, "one refresh for eight expired callers");
});

both_backends!(sealed_tokens_are_bound_to_their_row, |app: TestApp| async move {
    let (endpoint, _hits) = flaky_token_endpoint(true).await;
    let (upstream_id, alice) = stored_person_token(&app, &endpoint).await;
    app.member("mallory@example.com", "default").await;
    let mallory = app.state.store.user_by_email("mallory@example.com").await.unwrap().unwrap();
    let mine: TokenResponse =
        serde_json::from_value(json!({"access_token": "mallory-token", "expires_in": 100})).unwrap();
    app.state.vault.store_tokens(&upstream_id, Owner::Person(&mallory.id), &mine, None).await.unwrap();
    // Someone with write access to the database copies alice's sealed token into mallory's row.
    let alice_row = app.state.store.upstream_token(&upstream_id, &alice).await.unwrap().unwrap();
    let mut stolen = app.state.store.upstream_token(&upstream_id, &mallory.id).await.unwrap().unwrap();
    stolen.access_token = alice_row.access_token.clone();
    app.state.store.put_upstream_token(&stolen).await.unwrap();
    let got = app.state.vault.access_token(&upstream_id, Owner::Person(&mallory.id), None).await;
    assert!(matches!(got, Err(VaultError::Crypto(_))), "the envelope does not open in another row: {got:?}");
    // Settings that do not hang together are refused before anything is written.
    let mut bad = person_credential(&app, "x");
    bad.auth_method = AuthMethod::ClientSecretPost;
    assert!(matches!(app.state.vault.set_credential(&upstream_id, &bad).await, Err(VaultError::Invalid(_))));
    bad.auth_method = AuthMethod::None;
    bad.token_endpoint = "file:///etc/passwd".into();
    assert!(matches!(app.state.vault.set_credential(&upstream_id, &bad).await, Err(VaultError::Invalid(_))));
    assert_eq!(app.state.vault.credential(&upstream_id).await.unwrap().unwrap().token_endpoint, endpoint);
});

both_backends!(health_checks_never_borrow_a_persons_account, |app: TestApp| async move {
    let (upstream, client, ws_id, upstream_id) = person_upstream(&app).await;
    app.member("alice@example.com", "default").await;
    let alice = app.state.store.user_by_email("alice@example.com").await.unwrap().unwrap();
    let tokens = upstream_tokens(&upstream, "alice-upstream@example.com", &client).await;
    app.state.vault.store_tokens(&upstream_id, Owner::Person(&alice.id), &tokens, None).await.unwrap();
    let bearer = gatehouse::vault::bearer::for_health_check(&app.state.vault, &app.state.store, &ws_id, "up").await;
    assert!(bearer.is_none(), "an authorization-code upstream is checked without anyone's token");
    let spec = UpstreamSpec::Http { url: upstream.mcp_url("default"), headers: vec![] };
    let upstream_def = gatehouse::gateway::upstream::Upstream { name: "up".into(), spec };
    let report = gatehouse::gateway::probe::probe(&upstream_def, bearer).await;
    assert!(!report.ok, "the upstream demands a token, and the check has none of alice's");
});

both_backends!(clients_with_url_elicitation_are_sent_to_the_connect_page, |app: TestApp| async move {
    let (_upstream, _, _, _) = person_upstream(&app).await;
    let at = gateway_token(&app, "alice@example.com").await;
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {"elicitation": {"form": {}, "url": {}}},
        "clientInfo": {"name": "url-capable", "version": "0"}}});
    let opened = rpc(&app, "default", Some(&at), None, init).await;
    let session = opened.headers["mcp-session-id"].to_str().unwrap().to_owned();
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    rpc(&app, "default", Some(&at), Some(&session), note).await;
    let answer = rpc(&app, "default", Some(&at), Some(&session), call(2, "whoami")).await.body;
    assert_eq!(answer["error"]["code"], -32042, "URLElicitationRequiredError: {answer}");
    let elicitation = &answer["error"]["data"]["elicitations"][0];
    assert_eq!(elicitation["mode"], "url");
    assert_eq!(elicitation["url"], format!("{}/w/default/upstreams/up/connect", app.url));
    assert!(!elicitation["elicitationId"].as_str().unwrap().is_empty());
});

both_backends!(rotating_the_master_key_reseals_everything_and_loses_nothing, |app: TestApp| async move {
    use gatehouse::crypto::aead::Sealer;
    use gatehouse::crypto::master::MasterKey;
    let upstream = TestApp::spawn(Backend::Sqlite).await;
    let (client_id, secret) = gatehouse::oauth::register::create_machine_client(
        &upstream.state.store,
        upstream.clock.as_ref(),
        "default",
        "gateway",
        "mcp:read mcp:tools",
    )
    .await
    .unwrap();
    let store = &app.state.store;
    let (ws_id, upstream_id) = add_upstream(&app, &upstream).await;
    let credential = OAuthCredential {
        grant: GrantKind::ClientCredentials,
        issuer: None,
        authorization_endpoint: None,
        token_endpoint: format!("{}/token", upstream.url),
        client_id: client_id.clone(),
        client_secret: Some(secret.clone()),
        private_key: None,
        auth_method: AuthMethod::ClientSecretBasic,
        scope: Some("mcp:read mcp:tools".into()),
        resource: Some(upstream.mcp_url("default")),
        audience: None,
    };
    app.state.vault.set_credential(&upstream_id, &credential).await.unwrap();
    let held = app.state.vault.access_token(&upstream_id, Owner::Workspace, None).await.unwrap();
    let headers = UpstreamSpec::Http {
        url: "https://api.example.com/mcp".into(),
        headers: vec![("Authorization".into(), "Bearer sk-header-secret".into())],
    };
    registry::add(store, &app.state.sealer, app.clock.as_ref(), &ws_id, "hdr", &headers).await.unwrap();

    let data_dir = app.state.settings.data_dir.clone();
    let (old_ring, _) = MasterKey::load_ring(None, &data_dir).unwrap();
    let old = MasterKey::parse(&old_ring[0].encoded()).unwrap();
    let new = MasterKey::generate().unwrap();
    let ring = vec![MasterKey::parse(&new.encoded()).unwrap(), MasterKey::parse(&old.encoded()).unwrap()];
    let both = Sealer::with_ring(&ring).unwrap();
    let done = gatehouse::vault::rotate::reseal_all(store, &both, app.clock.now_secs()).await.unwrap();
    assert!(done.signing_keys >= 1 && done.upstream_headers == 1 && done.upstream_secrets == 1, "{done:?}");
    assert_eq!(done.upstream_tokens, 1);

    // Every envelope now names the new key...
    let kid = new.kid();
    for key in store.all_signing_keys().await.unwrap() {
        assert_eq!(Sealer::envelope_kid(&key.private_key), Some(kid));
    }
    for row in store.all_upstreams().await.unwrap().iter().filter_map(|u| u.headers.clone()) {
        assert_eq!(Sealer::envelope_kid(&row), Some(kid));
    }
    for row in store.all_upstream_tokens().await.unwrap() {
        assert_eq!(Sealer::envelope_kid(&row.access_token), Some(kid));
    }
    // ...and the new key alone opens every credential, which still works.
    let only_new = Arc::new(Sealer::new(&new).unwrap());
    let vault = gatehouse::vault::Vault::new(store.clone(), only_new.clone(), app.state.clock.clone()).unwrap();
    assert_eq!(vault.credential(&upstream_id).await.unwrap().unwrap().client_secret.as_deref(), Some(secret.as_str()));
    assert_eq!(vault.access_token(&upstream_id, Owner::Workspace, None).await.unwrap().token, held.token);
    vault.disconnect(&upstream_id, Owner::Workspace).await.unwrap();
    let fresh = vault.access_token(&upstream_id, Owner::Workspace, None).await.unwrap();
    assert_ne!(fresh.token, held.token, "the re-sealed client secret still signs in to the upstream");
    let listed = registry::list(store, &only_new, &ws_id).await.unwrap();
    assert!(listed.iter().any(|u| u.spec == headers), "headers open under the new key");
    let keys = gatehouse::crypto::signing::KeyRing::load_or_create(
        store,
        &only_new,
        app.state.settings.signing_alg,
        app.clock.now_secs(),
    )
    .await
    .unwrap();
    drop(keys);
    assert_eq!(store.all_signing_keys().await.unwrap().len(), done.signing_keys, "no signing key was replaced");
    // The old key alone no longer opens anything re-sealed.
    let only_old = Sealer::new(&old).unwrap();
    assert!(registry::list(store, &only_old, &ws_id).await.is_err());
});
