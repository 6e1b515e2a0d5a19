//! What the request hot path keeps in memory must not change what is allowed: a cached access
//! token still expires on time and is still refused at once when its grant is revoked (see
//! also `gateway::revocation_is_seen_on_the_very_next_request`), and issuing access tokens
//! writes nothing to the database beyond the first use of a client each minute.

use serde_json::{Value, json};

use crate::both_backends;
use crate::gateway::{access_token, open_session, rpc};
use crate::helpers::*;

fn echo(id: u64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "x"}}})
}

both_backends!(a_remembered_token_still_expires_on_time, |app: TestApp| async move {
    let tokens = access_token(&app, "mcp:read mcp:tools").await;
    let at = tokens["access_token"].as_str().unwrap();
    let session = open_session(&app, at).await;
    assert_eq!(rpc(&app, "default", Some(at), Some(&session), echo(2)).await.status, 200);
    app.clock.advance(899);
    assert_eq!(rpc(&app, "default", Some(at), Some(&session), echo(3)).await.status, 200, "still inside 15 minutes");
    app.clock.advance(1);
    let late = rpc(&app, "default", Some(at), Some(&session), echo(4)).await;
    assert_eq!(late.status, 401, "expired at exp, although its signature was remembered");
    let www = late.headers["www-authenticate"].to_str().unwrap();
    assert!(www.contains("expired"), "{www}");
});

both_backends!(client_credentials_tokens_write_nothing_per_token, |app: TestApp| async move {
    let (id, secret) = app.machine_client("mcp:read mcp:tools").await;
    let issue =
        || async { app.client_credentials_token(&id, &secret).await["access_token"].as_str().unwrap().to_owned() };
    let last_used = || async { app.state.store.client_by_id(&id).await.unwrap().unwrap().last_used_at };
    let first = issue().await;
    let audited = app.count_rows("audit_events").await;
    let used_at = last_used().await;
    assert_eq!(used_at, Some(app.clock.now_secs()), "the first token of a minute records the client's use");
    app.clock.advance(30);
    let mut tokens = vec![first];
    for _ in 0..5 {
        tokens.push(issue().await);
    }
    assert_eq!(app.count_rows("audit_events").await, audited, "no audit row per token");
    assert_eq!(last_used().await, used_at, "no last-use write per token");
    // Every one of them works.
    for t in &tokens {
        open_session(&app, t).await;
    }
    app.clock.advance(30);
    issue().await;
    assert_eq!(app.count_rows("audit_events").await, audited + 1, "a new minute is recorded again");
    assert_eq!(last_used().await, Some(app.clock.now_secs()));
});

both_backends!(a_workspace_created_after_a_miss_is_found_at_once, |app: TestApp| async move {
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}});
    assert_eq!(rpc(&app, "later", None, None, init.clone()).await.status, 404);
    gatehouse::workspace::create(&app.state.store, app.clock.as_ref(), "later", None).await.unwrap();
    let r = rpc(&app, "later", None, None, init).await;
    assert_eq!(r.status, 401, "the new workspace exists: its challenge, not a 404");
});

both_backends!(a_refresh_writes_the_rotation_and_last_use_once_a_minute, |app: TestApp| async move {
    let tokens = access_token(&app, "mcp:read mcp:tools").await;
    let client = tokens["client_id"].as_str().unwrap().to_owned();
    let mut refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    let last_used = || async { app.state.store.client_by_id(&client).await.unwrap().unwrap().last_used_at };
    let rotate = async |rt: &str| {
        let res = app.token(&[("grant_type", "refresh_token"), ("client_id", &client), ("refresh_token", rt)]).await;
        assert_eq!(res.status(), 200);
        res.json::<Value>().await.unwrap()["refresh_token"].as_str().unwrap().to_owned()
    };
    app.clock.advance(5);
    refresh = rotate(&refresh).await;
    let first = last_used().await;
    assert_eq!(first, Some(app.clock.now_secs()));
    app.clock.advance(5);
    refresh = rotate(&refresh).await;
    assert_eq!(last_used().await, first, "no last-use write for every rotation");
    app.clock.advance(60);
    rotate(&refresh).await;
    assert_eq!(last_used().await, Some(app.clock.now_secs()), "a new minute is recorded");
});

// The client and workspace rows read for every token (and the workspace row read for every MCP
// request) are kept in memory while no kept row changes (see `store::changes`). A change
// written straight to the database by another process (the CLI, another node) must be seen on
// the very next request: a client's secret rotated, a client deleted, a workspace renamed.
both_backends!(clients_and_workspaces_changed_by_another_process_are_seen_at_once, |app: TestApp| async move {
    let basic_token = |id: String, secret: String| {
        let app = &app;
        async move {
            app.http
                .post(format!("{}/token", app.url))
                .basic_auth(id, Some(secret))
                .form(&[("grant_type", "client_credentials"), ("resource", &app.mcp_url("default"))])
                .send()
                .await
                .unwrap()
        }
    };
    let (id, secret) = app.machine_client("mcp:read mcp:tools").await;
    for _ in 0..2 {
        assert_eq!(basic_token(id.clone(), secret.clone()).await.status(), 200);
    }
    let rotated = gatehouse::crypto::hash_secret("a-new-secret");
    let sql = format!("UPDATE oauth_clients SET secret_hash = '{rotated}' WHERE id = '{id}'");
    assert_eq!(app.execute_elsewhere(&sql).await, 1);
    let old = basic_token(id.clone(), secret.clone()).await;
    assert_eq!(old.status(), 401, "the old secret must stop working at once");
    assert_eq!(old.json::<Value>().await.unwrap()["error"], "invalid_client");
    assert_eq!(basic_token(id.clone(), "a-new-secret".into()).await.status(), 200);

    assert_eq!(app.execute_elsewhere(&format!("DELETE FROM oauth_clients WHERE id = '{id}'")).await, 1);
    let gone = basic_token(id.clone(), "a-new-secret".into()).await;
    assert_eq!(gone.status(), 401, "a client deleted elsewhere gets no more tokens");

    let (id, secret) = app.machine_client("mcp:read mcp:tools").await;
    let at = app.client_credentials_token(&id, &secret).await["access_token"].as_str().unwrap().to_owned();
    let session = open_session(&app, &at).await;
    assert_eq!(rpc(&app, "default", Some(&at), Some(&session), echo(2)).await.status, 200);
    assert_eq!(app.execute_elsewhere("UPDATE workspaces SET slug = 'moved' WHERE slug = 'default'").await, 1);
    let moved = basic_token(id.clone(), secret.clone()).await;
    assert_eq!(moved.status(), 400, "the resource no longer names the client's workspace");
    assert_eq!(moved.json::<Value>().await.unwrap()["error"], "invalid_target");
    let r = rpc(&app, "default", Some(&at), Some(&session), echo(3)).await;
    assert_eq!(r.status, 404, "no workspace `default` any more");
});

// Kept rows are trusted while the counter of migration 0010 stands still; its triggers must move
// it for every change to a kept row, and only then: a rotation or a client's last use (the
// writes of the token hot path) must leave it, or every token request would read its rows again.
both_backends!(the_kept_rows_counter_moves_with_every_change_to_a_kept_row_only, |app: TestApp| async move {
    const COUNTER: &str = "SELECT version FROM kept_rows_version";
    let tokens = access_token(&app, "mcp:read mcp:tools").await;
    let client = tokens["client_id"].as_str().unwrap().to_owned();
    let before = app.scalar_elsewhere(COUNTER).await;
    app.clock.advance(61);
    let form = [
        ("grant_type", "refresh_token"),
        ("client_id", client.as_str()),
        ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
    ];
    let res = app.token(&form).await;
    assert_eq!(res.status(), 200);
    let rotated: Value = res.json().await.unwrap();
    assert_eq!(
        app.state.store.client_by_id(&client).await.unwrap().unwrap().last_used_at,
        Some(app.clock.now_secs()),
        "the rotation wrote the client's last use too"
    );
    assert_eq!(app.scalar_elsewhere(COUNTER).await, before, "a rotation and a last use change no kept row");

    // Every column of a client but its last use is kept: a column added to the table without
    // being added to the trigger fails here.
    let columns = match app.backend {
        Backend::Sqlite => "SELECT name FROM pragma_table_info('oauth_clients')",
        Backend::Postgres => {
            "SELECT column_name::text FROM information_schema.columns WHERE table_name = 'oauth_clients'"
        }
    };
    let columns = app.strings_elsewhere(columns).await;
    assert!(columns.len() >= 15, "{columns:?}");
    for column in columns.iter().filter(|c| *c != "last_used_at") {
        let before = app.scalar_elsewhere(COUNTER).await;
        let sql = format!("UPDATE oauth_clients SET {column} = {column} WHERE id = '{client}'");
        assert_eq!(app.execute_elsewhere(&sql).await, 1);
        assert_ne!(app.scalar_elsewhere(COUNTER).await, before, "a change of oauth_clients.{column}");
    }
    let changes = [
        "UPDATE workspaces SET name = 'Renamed' WHERE slug = 'default'".to_owned(),
        "INSERT INTO workspace_issuers (workspace_id, issuer, scope_map, updated_at)
         SELECT id, 'https://idp.example', '[]', 0 FROM workspaces WHERE slug = 'default'"
            .to_owned(),
        "UPDATE workspace_issuers SET audience = 'x'".to_owned(),
        "DELETE FROM workspace_issuers".to_owned(),
        // A revocation moves the workspace's revocation counter, and so this one.
        format!("UPDATE grants SET revoked_at = 1 WHERE client_id = '{client}'"),
        format!("DELETE FROM oauth_clients WHERE id = '{client}'"),
    ];
    for sql in &changes {
        let before = app.scalar_elsewhere(COUNTER).await;
        assert!(app.execute_elsewhere(sql).await >= 1, "{sql}");
        assert_ne!(app.scalar_elsewhere(COUNTER).await, before, "{sql}");
    }
    // The rotated token went with its grant's revocation.
    let form = [
        ("grant_type", "refresh_token"),
        ("client_id", client.as_str()),
        ("refresh_token", rotated["refresh_token"].as_str().unwrap()),
    ];
    assert_eq!(app.token(&form).await.status(), 401, "the client is gone");
});

// PostgreSQL only (SQLite has one writer at a time): the counter's triggers are deferred to the
// commit, so its one row is the last lock a transaction takes. Were a client change to lock it at
// once, a transaction changing a client and then a workspace would deadlock with one changing
// that workspace (its trigger wanting the counter): PostgreSQL breaks that by failing one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crossed_transactions_over_kept_rows_do_not_deadlock_on_postgres() {
    use sqlx::Connection;
    let mut app = TestApp::spawn(Backend::Postgres).await;
    let _data_dir = app.data_dir.take();
    let _database = app.pg_database.take();
    let client = app.public_client().await;
    let before = app.scalar_elsewhere("SELECT version FROM kept_rows_version").await;
    let url = app.state.settings.database_url.clone().unwrap();
    let mut one = sqlx::PgConnection::connect(&url).await.unwrap();
    let mut two = sqlx::PgConnection::connect(&url).await.unwrap();
    async fn run(c: &mut sqlx::PgConnection, sql: &str) -> Result<(), sqlx::Error> {
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())).execute(c).await.map(drop)
    }
    run(&mut one, "BEGIN").await.unwrap();
    run(&mut one, &format!("UPDATE oauth_clients SET client_name = 'one' WHERE id = '{client}'")).await.unwrap();
    // The second transaction's steps must not wait for the first (a bounded wait each).
    let within = std::time::Duration::from_secs(5);
    run(&mut two, "BEGIN").await.unwrap();
    let changed =
        tokio::time::timeout(within, run(&mut two, "UPDATE workspaces SET name = 'two' WHERE slug = 'default'")).await;
    assert!(matches!(changed, Ok(Ok(()))), "the second transaction's change waited for the first: {changed:?}");
    // `one` now waits for the workspace row `two` holds...
    let one = tokio::spawn(async move {
        run(&mut one, "UPDATE workspaces SET name = 'one' WHERE slug = 'default'").await?;
        run(&mut one, "COMMIT").await
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    // ...and `two` commits without waiting for `one`.
    let committed = tokio::time::timeout(within, run(&mut two, "COMMIT")).await;
    assert!(matches!(committed, Ok(Ok(()))), "the second transaction's commit: {committed:?}");
    let first = tokio::time::timeout(within, one).await.expect("the first transaction went on").unwrap();
    assert!(first.is_ok(), "the first transaction: {first:?}");
    assert_eq!(
        app.scalar_elsewhere("SELECT version FROM kept_rows_version").await,
        before + 3,
        "one bump per changed row"
    );
}
