//! A registration's life: RFC 7592 read, update and delete with the registration access token,
//! the optional initial access token, expiry of registrations never used, removal (with
//! everything issued to the client) answered `invalid_client`, operator-made clients, and the
//! migration that made room for all of it without losing a row.

use gatehouse::crypto::hash_secret;
use gatehouse::oauth::preregistered::{self, AuthorizationCodeClient};
use serde_json::{Value, json};

use crate::both_backends;
use crate::compat::loopback_documents;
use crate::docserver::DocServer;
use crate::helpers::*;
use crate::journey::*;

const CB: &str = "https://app.example/cb";

async fn manage(
    app: &TestApp,
    method: reqwest::Method,
    uri: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = app.http.request(method, uri);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    let (status, headers) = (res.status().as_u16(), res.headers().clone());
    let text = res.text().await.unwrap();
    (status, headers, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn assert_invalid_token(status: u16, headers: &reqwest::header::HeaderMap, body: &Value) {
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "invalid_token", "{body}");
    assert!(headers["www-authenticate"].to_str().unwrap().starts_with("Bearer "), "{headers:?}");
}

both_backends!(rfc7592_read_update_delete_with_the_registration_access_token, |app: TestApp| async move {
    let reg = registered(
        &app,
        json!({"client_name": "Managed", "redirect_uris": [CB], "token_endpoint_auth_method": "none"}),
    )
    .await;
    let id = reg["client_id"].as_str().unwrap().to_owned();
    let uri = reg["registration_client_uri"].as_str().unwrap().to_owned();
    assert_eq!(uri, format!("{}/register/{id}", app.url));
    let token = reg["registration_access_token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("gh_rat_") && token.len() >= 7 + 43, "{token}");
    let row = app.state.store.client_by_id(&id).await.unwrap().unwrap();
    assert_eq!(row.registration_token_hash.as_deref(), Some(hash_secret(&token).as_str()), "stored as a hash");
    assert!(!row.metadata.contains(&token));

    // Read.
    let (status, headers, body) = manage(&app, reqwest::Method::GET, &uri, Some(&token), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(body["client_id"], id.as_str());
    assert_eq!(body["client_name"], "Managed");
    assert_eq!(body["registration_client_uri"], uri.as_str());
    assert!(body.get("registration_access_token").is_none() && body.get("client_secret").is_none());

    // Wrong or missing tokens, another client's token, an unknown client: all 401 invalid_token.
    let other = registered(&app, json!({"redirect_uris": [CB], "token_endpoint_auth_method": "none"})).await;
    let other_token = other["registration_access_token"].as_str().unwrap();
    for (t, u) in [
        (None, uri.clone()),
        (Some("gh_rat_wrong"), uri.clone()),
        (Some(other_token), uri.clone()),
        (Some(token.as_str()), format!("{}/register/00000000-0000-0000-0000-000000000000", app.url)),
    ] {
        let (status, headers, body) = manage(&app, reqwest::Method::GET, &u, t, None).await;
        assert_invalid_token(status, &headers, &body);
        let (status, headers, body) = manage(&app, reqwest::Method::DELETE, &u, t, None).await;
        assert_invalid_token(status, &headers, &body);
    }

    // Update: the body replaces the metadata.
    let mut update = body.clone();
    update["client_name"] = json!("Managed v2");
    update["redirect_uris"] = json!(["https://app.example/cb2", "http://127.0.0.1/cb"]);
    let (status, _, updated) = manage(&app, reqwest::Method::PUT, &uri, Some(&token), Some(update.clone())).await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["client_name"], "Managed v2");
    assert_eq!(updated["redirect_uris"], json!(["https://app.example/cb2", "http://127.0.0.1/cb"]));
    assert_eq!(updated["client_id_issued_at"], body["client_id_issued_at"]);
    let row = app.state.store.client_by_id(&id).await.unwrap().unwrap();
    assert_eq!(row.client_name, "Managed v2");
    assert!(row.updated_at.is_some());
    let browser = alice(&app).await;
    approve(&app, &browser, &authorization_url(&app, &id, "http://127.0.0.1:5/cb", &[]), "http://127.0.0.1:5/cb").await;
    let res = browser.get(&authorization_url(&app, &id, CB, &[])).await;
    assert_eq!(res.status(), 400, "the old redirect URI is gone");

    // Bad updates change nothing.
    let bad_updates = [
        (json!({"client_id": "someone-else", "redirect_uris": [CB]}), 400, "invalid_request"),
        (json!({"redirect_uris": [CB]}), 400, "invalid_request"),
        (json!({"client_id": id, "redirect_uris": ["javascript:alert(1)"]}), 400, "invalid_redirect_uri"),
        (
            json!({"client_id": id, "redirect_uris": [CB], "token_endpoint_auth_method": "client_secret_basic"}),
            400,
            "invalid_client_metadata",
        ),
        (
            json!({"client_id": id, "redirect_uris": [CB], "grant_types": ["client_credentials"]}),
            400,
            "invalid_client_metadata",
        ),
    ];
    for (doc, want_status, want_error) in bad_updates {
        let (status, _, body) = manage(&app, reqwest::Method::PUT, &uri, Some(&token), Some(doc.clone())).await;
        assert_eq!((status, body["error"].as_str().unwrap_or_default()), (want_status, want_error), "{doc}: {body}");
    }
    assert_eq!(app.state.store.client_by_id(&id).await.unwrap().unwrap().client_name, "Managed v2");

    // Delete: gone, with everything issued to it.
    let code =
        approve(&app, &browser, &authorization_url(&app, &id, "http://127.0.0.1:5/cb", &[]), "http://127.0.0.1:5/cb")
            .await;
    let tokens = redeem(&app, &id, ClientAuth::None, &code, "http://127.0.0.1:5/cb", &[]).await;
    let (status, headers, _) = manage(&app, reqwest::Method::DELETE, &uri, Some(&token), None).await;
    assert_eq!(status, 204);
    assert_eq!(headers["cache-control"], "no-store");
    let (status, headers, body) = manage(&app, reqwest::Method::GET, &uri, Some(&token), None).await;
    assert_invalid_token(status, &headers, &body);
    let res = token_request(
        &app,
        &id,
        ClientAuth::None,
        &[("grant_type", "refresh_token"), ("refresh_token", tokens["refresh_token"].as_str().unwrap())],
    )
    .await;
    assert_eq!(res.status(), 401);
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_client");
    let res = browser.get(&authorization_url(&app, &id, "http://127.0.0.1:5/cb", &[])).await;
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("add it again"), "the page says how to recover");
    for table in ["grants", "consents", "refresh_tokens", "authorization_codes"] {
        assert_eq!(app.count_rows(table).await, 0, "{table} emptied with the client");
    }
});

both_backends!(confidential_updates_must_present_the_current_secret, |app: TestApp| async move {
    let reg = registered(
        &app,
        json!({"client_name": "Server", "redirect_uris": [CB], "token_endpoint_auth_method": "client_secret_post"}),
    )
    .await;
    let (uri, token, secret) = (
        reg["registration_client_uri"].as_str().unwrap(),
        reg["registration_access_token"].as_str().unwrap(),
        reg["client_secret"].as_str().unwrap(),
    );
    let mut doc = json!({"client_id": reg["client_id"], "redirect_uris": [CB], "token_endpoint_auth_method": "client_secret_basic", "client_secret": "wrong"});
    let (status, _, body) = manage(&app, reqwest::Method::PUT, uri, Some(token), Some(doc.clone())).await;
    assert_eq!((status, body["error"].clone()), (401, json!("invalid_client")), "{body}");
    doc["client_secret"] = json!(secret);
    let (status, _, body) = manage(&app, reqwest::Method::PUT, uri, Some(token), Some(doc)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_endpoint_auth_method"], "client_secret_basic");
    assert!(body.get("client_secret").is_none(), "the secret is never shown again");
    assert_eq!(body["client_secret_expires_at"], 0);
});

both_backends!(
    an_initial_access_token_can_close_registration,
    settings = |s: &mut gatehouse::config::Settings| {
        s.registration_initial_token = Some("initial-access-token-for-tests-0123".into());
    },
    |app: TestApp| async move {
        let doc = json!({"redirect_uris": [CB], "token_endpoint_auth_method": "none"});
        for auth in [None, Some("Bearer wrong-token"), Some("Basic aW5pdGlhbDp4"), Some("Bearer ")] {
            let mut req = app.http.post(format!("{}/register", app.url)).json(&doc);
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), 401, "{auth:?}");
            assert!(res.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
            assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_token");
        }
        assert_eq!(app.count_rows("oauth_clients").await, 0);
        let res = app
            .http
            .post(format!("{}/register", app.url))
            .bearer_auth("initial-access-token-for-tests-0123")
            .json(&doc)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
    }
);

both_backends!(
    registrations_never_used_expire,
    settings = |s: &mut gatehouse::config::Settings| {
        loopback_documents(s);
        s.unused_client_ttl = Some(3_600);
    },
    |app: TestApp| async move {
        let unused = registered(&app, json!({"redirect_uris": [CB], "token_endpoint_auth_method": "none"})).await;
        let unused = unused["client_id"].as_str().unwrap().to_owned();
        let browser = alice(&app).await;
        let used = app.public_client().await;
        let code = app.code_for("alice@example.com", &used).await;
        assert_eq!(app.exchange(&used, &code).await.status(), 200);
        let (machine, _) = gatehouse::oauth::register::create_machine_client(
            &app.state.store,
            app.clock.as_ref(),
            "default",
            "bot",
            "mcp:read",
        )
        .await
        .unwrap();
        // A metadata-document client shown a consent page but never used.
        let docs = DocServer::start().await;
        let document = docs.serve_document("/c.json", json!({"client_name": "Doc", "redirect_uris": [CB]}));
        assert_eq!(browser.get(&authorization_url(&app, &document, CB, &[])).await.status(), 200);
        assert_eq!(app.count_rows("oauth_clients").await, 4);

        // Within the hour nothing goes.
        app.clock.advance(3_000);
        assert_eq!(gatehouse::app::housekeeping(&app.state).await.unwrap().unused_clients, 0);
        app.clock.advance(700);
        let swept = gatehouse::app::housekeeping(&app.state).await.unwrap();
        assert_eq!(swept.unused_clients, 2);
        let store = &app.state.store;
        assert!(store.client_by_id(&unused).await.unwrap().is_none());
        assert!(store.client_by_id(&document).await.unwrap().is_none());
        assert!(store.client_by_id(&used).await.unwrap().is_some(), "used clients stay");
        assert!(store.client_by_id(&machine).await.unwrap().is_some(), "operator-made clients stay");
        // The expired client gets a clean answer.
        let res = app.token(&[("grant_type", "authorization_code"), ("client_id", &unused), ("code", "x")]).await;
        assert_eq!(res.status(), 401);
        assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_client");
    }
);

both_backends!(operator_made_authorization_code_clients, |app: TestApp| async move {
    let store = &app.state.store;
    let uris = vec![CB.to_owned(), "http://127.0.0.1/callback".to_owned()];
    let spec = AuthorizationCodeClient {
        name: "Internal portal",
        redirect_uris: &uris,
        public: false,
        scope: None,
        workspace_id: None,
    };
    let created = preregistered::create_authorization_code_client(store, app.clock.as_ref(), &spec).await.unwrap();
    let secret = created.client_secret.expect("confidential clients get a secret");
    let row = store.client_by_id(&created.client_id).await.unwrap().unwrap();
    assert_eq!(row.source, "admin");
    assert_eq!(row.secret_hash.as_deref(), Some(hash_secret(&secret).as_str()));
    assert!(!row.metadata.contains(&secret));
    assert!(row.allows_grant("refresh_token"));

    let browser = alice(&app).await;
    let code = approve(&app, &browser, &authorization_url(&app, &created.client_id, CB, &[]), CB).await;
    let tokens = redeem(&app, &created.client_id, ClientAuth::Basic(&secret), &code, CB, &[]).await;
    call_echo(&app, tokens["access_token"].as_str().unwrap(), &created.client_id, "from the portal").await;

    let public = AuthorizationCodeClient {
        name: "Desktop app",
        redirect_uris: &uris,
        public: true,
        scope: Some("mcp:read"),
        workspace_id: None,
    };
    let created = preregistered::create_authorization_code_client(store, app.clock.as_ref(), &public).await.unwrap();
    assert!(created.client_secret.is_none());
    let row = store.client_by_id(&created.client_id).await.unwrap().unwrap();
    assert_eq!((row.token_endpoint_auth_method.as_str(), row.scope.as_deref()), ("none", Some("mcp:read")));
    // Its scope limits what it may ask for.
    let res = browser.get(&authorization_url(&app, &created.client_id, CB, &[("scope", "mcp:tools")])).await;
    assert_eq!(res.status(), 303);
    assert_eq!(query_param(res.headers()["location"].to_str().unwrap(), "error").as_deref(), Some("invalid_scope"));

    let bad = vec!["javascript:alert(1)".to_owned()];
    let spec =
        AuthorizationCodeClient { name: "Bad", redirect_uris: &bad, public: true, scope: None, workspace_id: None };
    let err = preregistered::create_authorization_code_client(store, app.clock.as_ref(), &spec).await.unwrap_err();
    assert_eq!(err.code.as_str(), "invalid_redirect_uri");

    let listed = store.list_clients(Some("admin")).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(store.delete_client(&created.client_id).await.unwrap());
    assert!(!store.delete_client(&created.client_id).await.unwrap());
    assert_eq!(store.list_clients(None).await.unwrap().len(), 1);
});

/// Migration 0003 rebuilds `oauth_clients` on SQLite: rows from before it, and the consents,
/// grants and codes that point at them, must all survive, and deleting a client must still
/// cascade.
async fn migration_keeps_clients_and_their_foreign_keys(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let database_url = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(fresh_pg_database().await),
    };
    let _database = database_url.as_deref().and_then(database_name).map(PgDatabase);
    let store = gatehouse::store::Store::connect(database_url.as_deref(), dir.path()).await.unwrap();
    let path = match backend {
        Backend::Sqlite => "migrations/sqlite",
        Backend::Postgres => "migrations/postgres",
    };
    let migrator = sqlx::migrate::Migrator::new(std::path::Path::new(path)).await.unwrap();
    let statements = [
        "INSERT INTO users (id, email, created_at) VALUES ('u1', 'a@example.com', 1)",
        "INSERT INTO workspaces (id, slug, name, created_at) VALUES ('w1', 'ws', 'WS', 1)",
        "INSERT INTO oauth_clients (id, client_name, redirect_uris, grant_types, token_endpoint_auth_method,
            application_type, source, metadata, created_at) VALUES ('c1', 'Old', '[]', '[]', 'none', 'web', 'dynamic', '{}', 1)",
        "INSERT INTO consents (user_id, client_id, workspace_id, scope, created_at) VALUES ('u1', 'c1', 'w1', 'mcp:read', 1)",
        "INSERT INTO grants (id, user_id, client_id, workspace_id, scope, created_at) VALUES ('g1', 'u1', 'c1', 'w1', 'mcp:read', 1)",
        "INSERT INTO refresh_tokens (token_hash, grant_id, scope, created_at, expires_at) VALUES ('h1', 'g1', 'mcp:read', 1, 99)",
        "INSERT INTO authorization_codes (code_hash, client_id, user_id, workspace_id, redirect_uri, code_challenge,
            scope, created_at, expires_at) VALUES ('k1', 'c1', 'u1', 'w1', 'x', 'y', 'mcp:read', 1, 2)",
    ];
    match &database_url {
        None => {
            let opts =
                sqlx::sqlite::SqliteConnectOptions::new().filename(dir.path().join("gatehouse.db")).foreign_keys(true);
            let pool = sqlx::SqlitePool::connect_with(opts).await.unwrap();
            migrator.run_to(2, &pool).await.unwrap();
            for sql in statements {
                sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await.unwrap();
            }
            pool.close().await;
        }
        Some(url) => {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            migrator.run_to(2, &pool).await.unwrap();
            for sql in statements {
                sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await.unwrap();
            }
            pool.close().await;
        }
    }
    store.migrate().await.unwrap();
    let old = store.client_by_id("c1").await.unwrap().expect("the client survived");
    assert_eq!((old.client_name.as_str(), old.source.as_str()), ("Old", "dynamic"));
    assert_eq!(store.consented_scope("u1", "c1", "w1").await.unwrap().as_deref(), Some("mcp:read"));
    assert_eq!(store.list_clients(None).await.unwrap().len(), 1);
    // The new source value is accepted; an unknown one still is not.
    let mut doc_client = old.clone();
    doc_client.id = "https://client.example/c.json".into();
    doc_client.source = "metadata_document".into();
    store.upsert_metadata_document_client(&doc_client).await.unwrap();
    let mut odd = old.clone();
    odd.id = "c9".into();
    odd.source = "somewhere".into();
    assert!(store.insert_client(&odd).await.is_err());
    // Deleting the old client still cascades to what points at it.
    assert!(store.delete_client("c1").await.unwrap());
    assert_eq!(store.consented_scope("u1", "c1", "w1").await.unwrap(), None);
    for table in ["grants", "refresh_tokens", "authorization_codes", "consents"] {
        assert_eq!(count_rows(dir.path(), database_url.as_deref(), table).await, 0, "{table} cascaded");
    }
    store.close().await;
}

async fn count_rows(dir: &std::path::Path, database_url: Option<&str>, table: &str) -> i64 {
    let sql = format!("SELECT COUNT(*) FROM {table}");
    match database_url {
        None => {
            let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(dir.join("gatehouse.db"));
            let pool = sqlx::SqlitePool::connect_with(opts).await.unwrap();
            let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&pool).await.unwrap();
            pool.close().await;
            n
        }
        Some(url) => {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&pool).await.unwrap();
            pool.close().await;
            n
        }
    }
}

mod migration_0003_keeps_clients_and_their_foreign_keys {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::migration_keeps_clients_and_their_foreign_keys(crate::helpers::Backend::Sqlite).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::migration_keeps_clients_and_their_foreign_keys(crate::helpers::Backend::Postgres).await;
    }
}
