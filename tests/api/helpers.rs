//! `spawn_app()`: a real server on 127.0.0.1:0 with a fresh database and a manual clock,
//! and a cookie-keeping browser for the login and consent pages.

use std::sync::Arc;

use gatehouse::app::{self, AppState};
use gatehouse::clock::ManualClock;
use gatehouse::config::Settings;
use gatehouse::crypto::sha256_b64url;
use gatehouse::workspace::{self, Role};
use reqwest::redirect::Policy;
use serde_json::{Value, json};
use tokio::sync::OnceCell;

pub const PASSWORD: &str = "correct horse battery staple";
pub const VERIFIER: &str = "a-very-long-pkce-code-verifier-with-enough-entropy-0123456789";
pub const REDIRECT: &str = "http://127.0.0.1:4567/callback";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs one test body on each backend: `both_backends!(name, |app| async move { ... });`
#[macro_export]
macro_rules! both_backends {
    ($name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let mut app = $crate::helpers::TestApp::spawn($crate::helpers::Backend::Sqlite).await;
                // Held here until the test ends: the body's `async move` captures only the
                // fields it uses, so a directory left inside `app` would be deleted at once.
                let _data_dir = app.data_dir.take();
                let _database = app.pg_database.take();
                ($body)(app).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let mut app = $crate::helpers::TestApp::spawn($crate::helpers::Backend::Postgres).await;
                let _data_dir = app.data_dir.take();
                let _database = app.pg_database.take();
                ($body)(app).await;
            }
        }
    };
    // The same, with the settings adjusted first: `both_backends!(name, settings = |s| ..., |app| ...)`.
    ($name:ident, settings = $adjust:expr, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let mut app = $crate::helpers::TestApp::spawn_with($crate::helpers::Backend::Sqlite, $adjust).await;
                let _data_dir = app.data_dir.take();
                let _database = app.pg_database.take();
                ($body)(app).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let mut app = $crate::helpers::TestApp::spawn_with($crate::helpers::Backend::Postgres, $adjust).await;
                let _data_dir = app.data_dir.take();
                let _database = app.pg_database.take();
                ($body)(app).await;
            }
        }
    };
}

/// Runs `$body` with `$c` bound to a new connection of its own to the test's database (not
/// the server's pool), closed afterwards.
macro_rules! on_separate_connection {
    ($app:expr, $c:ident => $body:expr) => {{
        use sqlx::Connection;
        match &$app.state.settings.database_url {
            Some(url) => {
                let mut $c = sqlx::PgConnection::connect(url).await.expect("connect");
                let out = $body;
                let _ = $c.close().await;
                out
            }
            None => {
                let options = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename($app.state.settings.data_dir.join("gatehouse.db"))
                    .foreign_keys(true);
                let mut $c = sqlx::SqliteConnection::connect_with(&options).await.expect("connect");
                let out = $body;
                let _ = $c.close().await;
                out
            }
        }
    }};
}

pub struct TestApp {
    pub url: String,
    pub state: AppState,
    pub clock: Arc<ManualClock>,
    /// A client that follows no redirects and keeps no cookies (an OAuth client).
    pub http: reqwest::Client,
    pub backend: Backend,
    /// The data directory (SQLite file, master key); see `both_backends!` for who holds it.
    pub data_dir: Option<tempfile::TempDir>,
    /// The PostgreSQL database made for this test, dropped when the guard is (like `data_dir`).
    pub pg_database: Option<PgDatabase>,
}

/// Drops its test database when dropped, so a run leaves no databases behind (each is several
/// megabytes, and a run makes hundreds). A test that aborts the process leaves its database to
/// the sweep in [`fresh_pg_database`].
pub struct PgDatabase(pub String);

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let name = std::mem::take(&mut self.0);
        // Drop runs inside the test's runtime, which cannot block on a future: a short-lived
        // thread with its own runtime does the one statement. WITH (FORCE) ends the server's
        // pool connections, which outlive the test body.
        let dropped = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async {
                use sqlx::Connection;
                if let Ok(mut c) = sqlx::PgConnection::connect(&pg_admin_url()).await {
                    let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                    let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut c).await;
                }
            });
        });
        let _ = dropped.join();
    }
}

static PG_SWEEP: OnceCell<()> = OnceCell::const_new();

fn pg_admin_url() -> String {
    std::env::var("GATEHOUSE_TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "PostgreSQL tests need GATEHOUSE_TEST_DATABASE_URL, e.g. postgres://postgres@127.0.0.1:5432/postgres \
             (scripts/test sets it)"
        )
    })
}

/// Whether `gh_test_<uuidv7>` was created over an hour ago (or has a name we did not make).
fn stale_test_database(name: &str) -> bool {
    let created_ms =
        name.strip_prefix("gh_test_").and_then(|id| id.get(..12)).and_then(|hex| u64::from_str_radix(hex, 16).ok());
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    created_ms.is_none_or(|created| now_ms.saturating_sub(created) > 3_600_000)
}

/// A fresh PostgreSQL database for one test. Databases left by earlier runs are swept first.
pub async fn fresh_pg_database() -> String {
    use sqlx::Connection;
    let admin = pg_admin_url();
    let mut conn = sqlx::PgConnection::connect(&admin).await.expect("connect to GATEHOUSE_TEST_DATABASE_URL");
    PG_SWEEP
        .get_or_init(|| async {
            let mut c = sqlx::PgConnection::connect(&admin).await.expect("connect");
            let old: Vec<String> = sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'gh_test_%'")
                .fetch_all(&mut c)
                .await
                .unwrap_or_default();
            // Only databases of runs long gone: other worktrees may be testing against the same
            // server right now (the name carries its creation time, a UUIDv7).
            for db in old.into_iter().filter(|db| stale_test_database(db)) {
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)")))
                    .execute(&mut c)
                    .await;
            }
        })
        .await;
    let name = format!("gh_test_{}", uuid::Uuid::now_v7().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut conn)
        .await
        .expect("create database");
    let mut url = url::Url::parse(&admin).expect("GATEHOUSE_TEST_DATABASE_URL is a URL");
    url.set_path(&name);
    url.to_string()
}

/// The database a `fresh_pg_database` URL names.
pub fn database_name(url: &str) -> Option<String> {
    let url = url::Url::parse(url).ok()?;
    Some(url.path().trim_start_matches('/').to_owned()).filter(|name| name.starts_with("gh_test_"))
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, |_| {}).await
    }

    /// Like [`TestApp::spawn`], with `adjust` applied to the settings last (e.g. a low
    /// registration rate limit).
    pub async fn spawn_with(backend: Backend, adjust: impl FnOnce(&mut Settings)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let database_url = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(fresh_pg_database().await),
        };
        let pg_database = database_url.as_deref().and_then(database_name).map(PgDatabase);
        let mut settings = Settings::defaults(dir.path().to_path_buf(), database_url).expect("settings");
        settings.listen = "127.0.0.1:0".parse().expect("addr");
        settings.registrations_per_minute = 1000;
        adjust(&mut settings);
        let clock = Arc::new(ManualClock::starting_now());
        let running = app::start(settings, clock.clone(), false).await.expect("server starts");
        let http = reqwest::Client::builder().redirect(Policy::none()).build().expect("client");
        TestApp {
            url: format!("http://{}", running.addr),
            state: running.state,
            clock,
            http,
            backend,
            data_dir: Some(dir),
            pg_database,
        }
    }

    /// Rows in `table`, counted over a separate connection (to show that a refused request
    /// wrote nothing). `table` is one of our own table names.
    pub async fn count_rows(&self, table: &str) -> i64 {
        self.scalar_elsewhere(&format!("SELECT COUNT(*) FROM {table}")).await
    }

    /// The one integer `sql` selects, read over a separate connection.
    pub async fn scalar_elsewhere(&self, sql: &str) -> i64 {
        let sql = sql.to_owned();
        on_separate_connection!(self, c => {
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql)).fetch_one(&mut c).await.expect("select")
        })
    }

    /// The strings `sql` selects (one column), read over a separate connection.
    pub async fn strings_elsewhere(&self, sql: &str) -> Vec<String> {
        let sql = sql.to_owned();
        on_separate_connection!(self, c => {
            sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql)).fetch_all(&mut c).await.expect("select")
        })
    }

    /// Runs `sql` over a separate connection, as another process (the CLI, another node) would:
    /// nothing in this server's code sees it happen. Returns the rows affected.
    pub async fn execute_elsewhere(&self, sql: &str) -> u64 {
        let sql = sql.to_owned();
        on_separate_connection!(self, c => {
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut c).await.expect("execute").rows_affected()
        })
    }

    /// Holds the refresh-token table's write lock from another connection, calls `start`
    /// (which sets requests going), keeps the lock for `hold` more and releases it: the
    /// requests' writes pile up behind it meanwhile. Returns what `start` returned.
    pub async fn with_refresh_tokens_locked<T>(&self, hold: std::time::Duration, start: impl FnOnce() -> T) -> T {
        let lock = match self.backend {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN; LOCK TABLE refresh_tokens IN EXCLUSIVE MODE",
        };
        on_separate_connection!(self, c => {
            sqlx::raw_sql(lock).execute(&mut c).await.expect("lock");
            let started = start();
            tokio::time::sleep(hold).await;
            sqlx::raw_sql("COMMIT").execute(&mut c).await.expect("unlock");
            started
        })
    }

    /// A machine token for `default` (one day), as `gatehouse token create` makes it.
    pub async fn machine_token(&self, scope: &str, name: &str) -> (String, gatehouse::store::MachineTokenRow) {
        gatehouse::oauth::machine::create(&self.state.store, self.clock.as_ref(), "default", scope, 86_400, name)
            .await
            .unwrap()
    }

    /// [`TestApp::authorize_url`] with some parameters replaced (`Some`) or removed (`None`);
    /// parameters not already present are appended.
    pub fn authorize_url_replacing(&self, client_id: &str, changes: &[(&str, Option<&str>)]) -> String {
        let base = url::Url::parse(&self.authorize_url(client_id, &[])).unwrap();
        let mut pairs: Vec<(String, String)> =
            base.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        for (name, value) in changes {
            match pairs.iter().position(|(k, _)| k == name) {
                Some(i) => match value {
                    Some(v) => pairs[i].1 = (*v).to_owned(),
                    None => {
                        pairs.remove(i);
                    }
                },
                None => {
                    if let Some(v) = value {
                        pairs.push(((*name).to_owned(), (*v).to_owned()));
                    }
                }
            }
        }
        let mut url = base.clone();
        url.query_pairs_mut().clear().extend_pairs(pairs);
        url.to_string()
    }

    pub fn mcp_url(&self, slug: &str) -> String {
        format!("{}/t/{slug}/mcp", self.url)
    }

    /// A person with a password who belongs to `workspace` (created if needed).
    pub async fn member(&self, email: &str, slug: &str) {
        let store = &self.state.store;
        let ws = match store.workspace_by_slug(slug).await.unwrap() {
            Some(ws) => ws,
            None => workspace::create(store, self.clock.as_ref(), slug, None).await.unwrap(),
        };
        let user = match store.user_by_email(email).await.unwrap() {
            Some(u) => u,
            None => gatehouse::identity::create_user(store, self.clock.as_ref(), email, PASSWORD, false).await.unwrap(),
        };
        workspace::add_member(store, self.clock.as_ref(), &ws.id, &user.id, Role::Member).await.unwrap();
    }

    pub async fn register(&self, metadata: Value) -> reqwest::Response {
        self.http.post(format!("{}/register", self.url)).json(&metadata).send().await.unwrap()
    }

    /// Registers a public client with [`REDIRECT`]; returns its client_id.
    pub async fn public_client(&self) -> String {
        let res = self
            .register(json!({"client_name": "Test client", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}))
            .await;
        assert_eq!(res.status(), 201);
        res.json::<Value>().await.unwrap()["client_id"].as_str().unwrap().to_owned()
    }

    /// An operator-made `client_credentials` client of `default` ("CI bot"); returns
    /// (client_id, client_secret).
    pub async fn machine_client(&self, scope: &str) -> (String, String) {
        gatehouse::oauth::register::create_machine_client(
            &self.state.store,
            self.clock.as_ref(),
            "default",
            "CI bot",
            scope,
        )
        .await
        .unwrap()
    }

    /// A `client_credentials` token for `default`'s MCP URL (asserting 200); the token response.
    pub async fn client_credentials_token(&self, id: &str, secret: &str) -> Value {
        let res = self
            .http
            .post(format!("{}/token", self.url))
            .basic_auth(id, Some(secret))
            .form(&[("grant_type", "client_credentials"), ("resource", &self.mcp_url("default"))])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        res.json().await.unwrap()
    }

    /// Registers a confidential client; returns (client_id, client_secret).
    pub async fn confidential_client(&self) -> (String, String) {
        let res = self
            .register(json!({"client_name": "Server app", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "client_secret_basic"}))
            .await;
        assert_eq!(res.status(), 201);
        let body: Value = res.json().await.unwrap();
        (body["client_id"].as_str().unwrap().to_owned(), body["client_secret"].as_str().unwrap().to_owned())
    }

    pub fn authorize_url(&self, client_id: &str, extra: &[(&str, &str)]) -> String {
        let challenge = sha256_b64url(VERIFIER.as_bytes());
        let mut url = url::Url::parse(&format!("{}/authorize", self.url)).unwrap();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", client_id)
                .append_pair("redirect_uri", REDIRECT)
                .append_pair("code_challenge", &challenge)
                .append_pair("code_challenge_method", "S256")
                .append_pair("state", "xyz")
                .append_pair("scope", "mcp:read mcp:tools")
                .append_pair("resource", &self.mcp_url("default"));
            for (k, v) in extra {
                q.append_pair(k, v);
            }
        }
        url.to_string()
    }

    pub async fn token(&self, form: &[(&str, &str)]) -> reqwest::Response {
        self.http.post(format!("{}/token", self.url)).form(form).send().await.unwrap()
    }

    /// Code exchange for a public client.
    pub async fn exchange(&self, client_id: &str, code: &str) -> reqwest::Response {
        self.token(&[
            ("grant_type", "authorization_code"),
            ("client_id", client_id),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ])
        .await
    }

    /// Code exchange for a public client, with extra parameters (e.g. `resource`).
    pub async fn exchange_with(&self, client_id: &str, code: &str, extra: &[(&str, &str)]) -> reqwest::Response {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("client_id", client_id),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ];
        form.extend_from_slice(extra);
        self.token(&form).await
    }

    /// The whole browser part for `email`: returns the code from the redirect.
    pub async fn code_for(&self, email: &str, client_id: &str) -> String {
        let browser = Browser::new(self);
        browser.login(email, PASSWORD).await;
        let location = browser.authorize_and_approve(&self.authorize_url(client_id, &[])).await;
        query_param(&location, "code").expect("a code in the redirect")
    }
}

pub fn query_param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url).ok()?.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// Pulls `name="..." value="..."` of every input out of a page (our own templates).
pub fn hidden_inputs(html: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for chunk in html.split("<input").skip(1) {
        let tag = chunk.split('>').next().unwrap_or_default();
        let attr = |a: &str| {
            tag.split(&format!("{a}=\"")).nth(1).and_then(|r| r.split('"').next()).map(|v| {
                v.replace("&#x2f;", "/")
                    .replace("&#38;", "&")
                    .replace("&amp;", "&")
                    .replace("&quot;", "\"")
                    .replace("&#x27;", "'")
            })
        };
        if let (Some(n), Some(v)) = (attr("name"), attr("value")) {
            out.push((n, v));
        }
    }
    out
}

/// A person's browser: keeps cookies, follows no redirects by itself.
pub struct Browser {
    pub http: reqwest::Client,
    base: String,
}

impl Browser {
    pub fn new(app: &TestApp) -> Self {
        let http = reqwest::Client::builder().redirect(Policy::none()).cookie_store(true).build().unwrap();
        Browser { http, base: app.url.clone() }
    }

    pub async fn get(&self, url: &str) -> reqwest::Response {
        self.http.get(url).send().await.unwrap()
    }

    pub async fn login(&self, email: &str, password: &str) -> reqwest::Response {
        let page = self.get(&format!("{}/login", self.base)).await.text().await.unwrap();
        let mut form = hidden_inputs(&page);
        form.retain(|(k, _)| k != "email");
        form.push(("email".into(), email.into()));
        form.push(("password".into(), password.into()));
        self.http.post(format!("{}/login", self.base)).form(&form).send().await.unwrap()
    }

    /// GETs /authorize; returns the consent page's fields, or the redirect if none was shown.
    pub async fn consent_form(&self, authorize_url: &str) -> Result<Vec<(String, String)>, String> {
        let res = self.get(authorize_url).await;
        if res.status().is_redirection() {
            return Err(res.headers()["location"].to_str().unwrap().to_owned());
        }
        assert_eq!(res.status(), 200, "consent page");
        Ok(hidden_inputs(&res.text().await.unwrap()))
    }

    pub async fn decide(&self, mut form: Vec<(String, String)>, decision: &str) -> reqwest::Response {
        form.push(("decision".into(), decision.into()));
        self.http.post(format!("{}/authorize/consent", self.base)).form(&form).send().await.unwrap()
    }

    /// Follows the flow through consent (approving) to the client's redirect; returns its URL.
    pub async fn authorize_and_approve(&self, authorize_url: &str) -> String {
        match self.consent_form(authorize_url).await {
            Err(location) => location,
            Ok(form) => {
                let res = self.decide(form, "approve").await;
                assert_eq!(res.status(), 303, "approve redirects");
                res.headers()["location"].to_str().unwrap().to_owned()
            }
        }
    }
}
