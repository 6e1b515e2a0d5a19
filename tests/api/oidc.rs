//! Signing in through the organisation's OpenID provider (the in-test provider of `idp.rs`):
//! the happy path into an MCP authorization, linking rules, memberships from group claims, key
//! rotation, and every way the answer can be wrong: each shows a page, writes an audit event
//! and signs nobody in.

use gatehouse::config::{ClientSecret, GroupRole, OidcProvider};
use gatehouse::store::AuditQuery;
use gatehouse::workspace::Role;
use serde_json::{Value, json};

use crate::gateway::rpc;
use crate::helpers::*;
use crate::idp::{Answer, CLIENT_ID, CLIENT_SECRET, Key, TestIdp};

/// One test per backend, with a provider `corp` pointing at a fresh [`TestIdp`].
macro_rules! oidc_test {
    ($name:ident, $body:expr) => {
        oidc_test!($name, provider = |_p: &mut OidcProvider| {}, $body);
    };
    ($name:ident, provider = $adjust:expr, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                Corp::run(Backend::Sqlite, $adjust, $body).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                Corp::run(Backend::Postgres, $adjust, $body).await;
            }
        }
    };
}

pub struct Corp {
    pub app: TestApp,
    pub idp: TestIdp,
    pub key: Key,
}

impl Corp {
    pub async fn run<F, Fut>(backend: Backend, adjust: impl FnOnce(&mut OidcProvider), body: F)
    where
        F: FnOnce(Corp) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let idp = TestIdp::start().await;
        let key = Key::generate("key-1");
        idp.publish(&[&key]);
        let mut provider = OidcProvider::new("corp", &idp.issuer, CLIENT_ID);
        provider.name = "Corp SSO".into();
        provider.client_secret = Some(ClientSecret::new(CLIENT_SECRET));
        provider.scopes = vec!["openid".into(), "email".into(), "groups".into()];
        provider.allowed_email_domains = vec!["corp.example".into()];
        provider.groups_claim = Some("groups".into());
        provider.group_roles = vec![
            GroupRole { group: "eng".into(), workspace: "default".into(), role: Role::Member },
            GroupRole { group: "leads".into(), workspace: "default".into(), role: Role::Owner },
            GroupRole { group: "ops".into(), workspace: "ops".into(), role: Role::Member },
        ];
        adjust(&mut provider);
        let mut app = TestApp::spawn_with(backend, move |s| {
            s.oidc.allow_loopback_issuers = true;
            s.oidc.providers = vec![provider];
        })
        .await;
        let _data_dir = app.data_dir.take();
        gatehouse::workspace::create(&app.state.store, app.clock.as_ref(), "ops", None).await.unwrap();
        body(Corp { app, idp, key }).await;
    }

    /// GETs the provider button's link; returns the authorization request the browser is sent to.
    pub async fn start(&self, browser: &Browser, next: &str) -> String {
        let next: String = form_urlencoded::byte_serialize(next.as_bytes()).collect();
        let res = browser.get(&format!("{}/login/oidc/corp?next={next}", self.app.url)).await;
        assert_eq!(res.status(), 303, "{}", res.text().await.unwrap());
        let location = res.headers()["location"].to_str().unwrap().to_owned();
        assert!(location.starts_with(&format!("{}/authorize?", self.idp.issuer)), "{location}");
        location
    }

    /// The claims a well-behaved provider would sign for this authorization request.
    pub fn claims(&self, authorize_url: &str, sub: &str, email: &str, groups: &[&str]) -> Value {
        let now = self.app.clock.now_secs();
        json!({
            "iss": self.idp.issuer, "aud": CLIENT_ID, "sub": sub, "email": email, "email_verified": true,
            "groups": groups, "nonce": query_param(authorize_url, "nonce").unwrap(), "iat": now, "exp": now + 300,
        })
    }

    /// The browser comes back to Gatehouse with a code for `answer`.
    pub async fn finish(&self, browser: &Browser, authorize_url: &str, answer: Answer) -> reqwest::Response {
        let code = self.idp.issue_code(authorize_url, answer);
        let state = query_param(authorize_url, "state").unwrap();
        browser.get(&format!("{}/login/oidc/corp/callback?code={code}&state={state}", self.app.url)).await
    }

    /// A whole sign-in; returns Gatehouse's answer to the callback.
    pub async fn sign_in(&self, browser: &Browser, sub: &str, email: &str, groups: &[&str]) -> reqwest::Response {
        let url = self.start(browser, "/").await;
        let token = self.key.sign(&self.claims(&url, sub, email, groups));
        self.finish(browser, &url, Answer::IdToken(token)).await
    }

    /// The reasons of the failed sign-ins recorded, newest first.
    pub async fn failure_reasons(&self) -> Vec<String> {
        let q =
            AuditQuery { all_server_wide: true, kind: Some("sign_in_failed".into()), limit: 100, ..Default::default() };
        let rows = self.app.state.store.audit_events(&q).await.unwrap();
        rows.iter()
            .map(|r| {
                serde_json::from_str::<Value>(&r.details).unwrap()["reason"].as_str().unwrap_or_default().to_owned()
            })
            .collect()
    }

    /// Events of `kind`, server-wide ones and those of workspace `slug`.
    pub async fn events(&self, kind: &str, slug: &str) -> Vec<gatehouse::store::AuditRow> {
        let ws = self.app.state.store.workspace_by_slug(slug).await.unwrap().unwrap();
        let q = AuditQuery {
            workspace_id: ws.id,
            all_server_wide: true,
            kind: Some(kind.into()),
            limit: 100,
            ..Default::default()
        };
        self.app.state.store.audit_events(&q).await.unwrap()
    }
}

/// Opens an MCP session in `slug` with `token`; returns its id.
async fn open_session_in(app: &TestApp, slug: &str, token: &str) -> String {
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "oidc-test", "version": "0"}}});
    let res = rpc(app, slug, Some(token), None, init).await;
    assert_eq!(res.status, 200, "{}", res.body);
    let session = res.headers["mcp-session-id"].to_str().unwrap().to_owned();
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    assert!(rpc(app, slug, Some(token), Some(&session), note).await.status < 300);
    session
}

async fn signed_in(app: &TestApp, browser: &Browser) -> bool {
    browser.get(&format!("{}/", app.url)).await.status() == 200
}

oidc_test!(sign_in_continues_to_consent_and_the_mcp_client_gets_a_working_token, |t: Corp| async move {
    let app = &t.app;
    let client_id = app.public_client().await;
    let login = Browser::new(app).get(&app.authorize_url(&client_id, &[])).await;
    let login_url = format!("{}{}", app.url, login.headers()["location"].to_str().unwrap());
    let page = Browser::new(app).get(&login_url).await.text().await.unwrap();
    assert!(page.contains("Continue with Corp SSO"), "a button per provider");
    let next = query_param(&login_url, "next").unwrap();
    assert!(page.contains("/login/oidc/corp?next=%2Fauthorize%3F"), "the button keeps where the person was going");

    let browser = Browser::new(app);
    let url = t.start(&browser, &next).await;
    for (name, want) in [("response_type", "code"), ("code_challenge_method", "S256"), ("scope", "openid email groups")]
    {
        assert_eq!(query_param(&url, name).as_deref(), Some(want), "{name}");
    }
    assert_eq!(query_param(&url, "redirect_uri").unwrap(), format!("{}/login/oidc/corp/callback", app.url));
    let token = t.key.sign(&t.claims(&url, "corp-user-1", "Ann@Corp.Example", &["eng"]));
    let back = t.finish(&browser, &url, Answer::IdToken(token)).await;
    assert_eq!(back.status(), 303, "{}", back.text().await.unwrap());
    assert_eq!(back.headers()["location"].to_str().unwrap(), next, "continues where the person was going");
    let user = app.state.store.user_by_email("ann@corp.example").await.unwrap().expect("account created");
    assert!(user.password_hash.is_none(), "no password: this person signs in at the provider");
    // On to consent, a code, a token, and a tool call through the gateway.
    let location = browser.authorize_and_approve(&app.authorize_url(&client_id, &[])).await;
    let code = query_param(&location, "code").unwrap();
    let tokens: Value = app.exchange(&client_id, &code).await.json().await.unwrap();
    let at = tokens["access_token"].as_str().unwrap();
    let call =
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}});
    let session = open_session_in(app, "default", at).await;
    let res = rpc(app, "default", Some(at), Some(&session), call).await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert!(res.body.to_string().contains(&user.id), "the tool sees the person: {}", res.body);
    let sign_ins = t.events("sign_in", "default").await;
    let details: Value = serde_json::from_str(&sign_ins[0].details).unwrap();
    assert_eq!((details["method"].as_str(), details["provider"].as_str()), (Some("oidc"), Some("corp")));
    assert_eq!(details["account"], "created");

    // Later sign-ins find the same person by subject, even with another email.
    let again = Browser::new(app);
    assert_eq!(t.sign_in(&again, "corp-user-1", "ann.other@corp.example", &["eng"]).await.status(), 303);
    let users_before = app.count_rows("users").await;
    assert_eq!(t.sign_in(&Browser::new(app), "corp-user-1", "ann@corp.example", &["eng"]).await.status(), 303);
    assert_eq!(app.count_rows("users").await, users_before, "linked by (provider, subject), not a new account");
    assert_eq!(app.count_rows("oidc_identities").await, 1);

    // Logging out ends the Gatehouse session.
    let home = again.get(&format!("{}/", app.url)).await.text().await.unwrap();
    let out = again.http.post(format!("{}/logout", app.url)).form(&hidden_inputs(&home)).send().await.unwrap();
    assert_eq!(out.status(), 303);
    assert!(!signed_in(app, &again).await);
});

oidc_test!(tampered_id_tokens_sign_nobody_in, |t: Corp| async move {
    let app = &t.app;
    let stranger = Key::generate("key-1"); // the right kid, the wrong key
    let users_before = app.count_rows("users").await;
    type Tamper = Box<dyn Fn(&Corp, &mut Value) -> String>;
    let sign = |t: &Corp, c: &mut Value| t.key.sign(c);
    let cases: Vec<(&str, Tamper, &str, &str)> = vec![
        (
            "wrong signature",
            Box::new(move |_, c| stranger.sign(c)),
            "signature does not verify",
            "id_token signature invalid",
        ),
        (
            "wrong audience",
            Box::new(move |t, c| {
                c["aud"] = json!("someone-else");
                sign(t, c)
            }),
            "another application",
            "id_token audience mismatch",
        ),
        (
            "wrong issuer",
            Box::new(move |t, c| {
                c["iss"] = json!("https://evil.example");
                sign(t, c)
            }),
            "issued by someone else",
            "id_token issuer mismatch",
        ),
        (
            "wrong nonce",
            Box::new(move |t, c| {
                c["nonce"] = json!("not-this-sign-in");
                sign(t, c)
            }),
            "nonce mismatch",
            "id_token nonce mismatch",
        ),
        (
            "expired",
            Box::new(move |t, c| {
                let now = t.app.clock.now_secs();
                c["iat"] = json!(now - 900);
                c["exp"] = json!(now - 300);
                sign(t, c)
            }),
            "has expired",
            "id_token expired",
        ),
        (
            "several audiences, azp of another app",
            Box::new(move |t, c| {
                c["aud"] = json!([CLIENT_ID, "other"]);
                c["azp"] = json!("other");
                sign(t, c)
            }),
            "authorized party",
            "id_token azp mismatch",
        ),
        (
            "dated in the future",
            Box::new(move |t, c| {
                c["iat"] = json!(t.app.clock.now_secs() + 3_600);
                sign(t, c)
            }),
            "in the future",
            "id_token issued in the future",
        ),
        ("alg none", Box::new(move |_, c| unsigned(c)), "not allowed", "id_token algorithm not allowed"),
        (
            "HS256 with the public key as secret",
            Box::new(move |t, c| hs256_with_public_key(t, c)),
            "not allowed",
            "id_token algorithm not allowed",
        ),
        (
            "unknown key id",
            Box::new(move |_, c| Key::generate("key-nobody-published").sign(c)),
            "does not publish",
            "id_token signed by an unknown key",
        ),
        ("not a JWT", Box::new(move |_, _| "eyJ.garbage".into()), "not a well-formed JWT", "id_token malformed"),
    ];
    for (name, tamper, says, reason) in cases {
        let browser = Browser::new(app);
        let url = t.start(&browser, "/").await;
        let mut claims = t.claims(&url, "corp-user-1", "ann@corp.example", &["eng"]);
        let token = tamper(&t, &mut claims);
        let res = t.finish(&browser, &url, Answer::IdToken(token)).await;
        assert_eq!(res.status(), 502, "{name}");
        let page = res.text().await.unwrap();
        assert!(page.contains("The sign-in could not be verified") && page.contains(says), "{name}: {page}");
        assert!(!signed_in(app, &browser).await, "{name}: nobody is signed in");
        assert_eq!(t.failure_reasons().await.first().map(String::as_str), Some(reason), "{name}");
    }
    assert_eq!(app.count_rows("users").await, users_before, "no account was created");
    assert_eq!(app.count_rows("browser_sessions").await, 0);
    // The unknown kid did not make Gatehouse fetch the JWKS again within the rate limit.
    assert_eq!(t.idp.jwks_hits(), 1);
});

fn unsigned(claims: &Value) -> String {
    use base64::Engine;
    let enc = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!("{}.{}.", enc(&json!({"alg": "none", "kid": "key-1"})), enc(claims))
}

fn hs256_with_public_key(t: &Corp, claims: &Value) -> String {
    let secret = serde_json::to_vec(&t.key.jwk).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("key-1".into());
    jsonwebtoken::encode(&header, claims, &jsonwebtoken::EncodingKey::from_secret(&secret)).unwrap()
}

oidc_test!(a_state_works_once_and_only_in_its_browser, |t: Corp| async move {
    let app = &t.app;
    let browser = Browser::new(app);
    let url = t.start(&browser, "/").await;
    let token = t.key.sign(&t.claims(&url, "corp-user-1", "ann@corp.example", &["eng"]));
    let code = t.idp.issue_code(&url, Answer::IdToken(token.clone()));
    let state = query_param(&url, "state").unwrap();
    let callback = format!("{}/login/oidc/corp/callback?code={code}&state={state}", app.url);
    assert_eq!(browser.get(&callback).await.status(), 303);
    // Replayed: in the same browser, and in another.
    for replayer in [&browser, &Browser::new(app)] {
        let replay = replayer.get(&callback).await;
        assert_eq!(replay.status(), 400);
        assert!(replay.text().await.unwrap().contains("expired or was already used"));
        assert_eq!(t.failure_reasons().await[0], "unknown, expired or replayed state");
    }
    // A state started in one browser and finished in another (a login CSRF) is refused.
    let victim = Browser::new(app);
    let url = t.start(&Browser::new(app), "/").await;
    let token = t.key.sign(&t.claims(&url, "corp-attacker", "mallory@corp.example", &["eng"]));
    let res = t.finish(&victim, &url, Answer::IdToken(token)).await;
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("started in another browser"));
    assert!(!signed_in(app, &victim).await);
    assert_eq!(t.failure_reasons().await[0], "state bound to another browser");
    // A state older than ten minutes is gone; and a made-up one never existed.
    let late = Browser::new(app);
    let url = t.start(&late, "/").await;
    app.clock.advance(601);
    let token = t.key.sign(&t.claims(&url, "corp-user-1", "ann@corp.example", &["eng"]));
    assert_eq!(t.finish(&late, &url, Answer::IdToken(token)).await.status(), 400);
    let made_up = late.get(&format!("{}/login/oidc/corp/callback?code=x&state=made-up", app.url)).await;
    assert_eq!(made_up.status(), 400);
    assert!(!signed_in(app, &late).await);
});

oidc_test!(a_provider_that_is_down_or_answers_garbage_signs_nobody_in, |t: Corp| async move {
    let app = &t.app;
    let cases: Vec<(Answer, u16, &str, &str)> = vec![
        (Answer::Status(200, "this is not json".into()), 502, "not JSON", "provider answer unusable"),
        (Answer::Status(200, "{\"access_token\": \"x\"}".into()), 502, "no ID token", "no id_token"),
        (Answer::Status(500, "{}".into()), 502, "HTTP 500", "provider unavailable"),
        (
            Answer::Status(400, "{\"error\": \"invalid_grant\"}".into()),
            502,
            "invalid_grant",
            "code refused by the provider",
        ),
    ];
    for (answer, status, says, reason) in cases {
        let browser = Browser::new(app);
        let url = t.start(&browser, "/").await;
        let res = t.finish(&browser, &url, answer).await;
        assert_eq!(res.status(), status, "{reason}");
        let page = res.text().await.unwrap();
        assert!(page.contains(says), "{reason}: {page}");
        assert!(!signed_in(app, &browser).await);
        assert_eq!(t.failure_reasons().await[0], reason);
    }
    // The person declines at the provider.
    let browser = Browser::new(app);
    let url = t.start(&browser, "/").await;
    let state = query_param(&url, "state").unwrap();
    let denied = browser
        .get(&format!(
            "{}/login/oidc/corp/callback?error=access_denied&error_description=User+said+no&state={state}",
            app.url
        ))
        .await;
    assert_eq!(denied.status(), 403);
    let page = denied.text().await.unwrap();
    assert!(page.contains("Corp SSO did not sign you in") && page.contains("User said no"), "{page}");
    assert_eq!(t.failure_reasons().await[0], "denied at the provider");

    // The provider goes down between the start and the callback (discovery is cached)...
    let browser = Browser::new(app);
    let url = t.start(&browser, "/").await;
    t.idp.stop();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let token = t.key.sign(&t.claims(&url, "corp-user-1", "ann@corp.example", &["eng"]));
    let res = browser
        .get(&format!("{}/login/oidc/corp/callback?code=c&state={}", app.url, query_param(&url, "state").unwrap()))
        .await;
    drop(token);
    assert_eq!(res.status(), 502);
    assert!(res.text().await.unwrap().contains("Corp SSO is not working right now"));
    assert_eq!(t.failure_reasons().await[0], "provider unavailable");
    assert_eq!(app.count_rows("browser_sessions").await, 0);
});

oidc_test!(discovery_that_is_down_or_garbage_shows_a_page, |t: Corp| async move {
    let app = &t.app;
    t.idp.serve_garbage_discovery(true);
    let res = Browser::new(app).get(&format!("{}/login/oidc/corp", app.url)).await;
    assert_eq!(res.status(), 502);
    assert!(res.text().await.unwrap().contains("Corp SSO is not working right now"));
    assert_eq!(t.failure_reasons().await[0], "provider answer unusable");
    t.idp.stop();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let res = Browser::new(app).get(&format!("{}/login/oidc/corp", app.url)).await;
    assert_eq!(res.status(), 502);
    assert_eq!(t.failure_reasons().await[0], "provider unavailable");
    let unknown = Browser::new(app).get(&format!("{}/login/oidc/nope", app.url)).await;
    assert_eq!(unknown.status(), 404);
    // The return path stays on this server: an absolute or scheme-relative `next` becomes `/`.
    assert_eq!(app.count_rows("oidc_login_states").await, 0, "no state was stored for a failed start");
});

oidc_test!(open_redirects_are_not_possible_through_next, |t: Corp| async move {
    let app = &t.app;
    for evil in ["https://evil.example/", "//evil.example", "/\\evil.example"] {
        let browser = Browser::new(app);
        let url = t.start(&browser, evil).await;
        let token = t.key.sign(&t.claims(&url, "corp-user-1", "ann@corp.example", &["eng"]));
        let res = t.finish(&browser, &url, Answer::IdToken(token)).await;
        assert_eq!(res.status(), 303);
        assert_eq!(res.headers()["location"], "/", "{evil}");
    }
});

oidc_test!(email_rules_domains_and_existing_accounts, |t: Corp| async move {
    let app = &t.app;
    let browser = Browser::new(app);
    let res = t.sign_in(&browser, "outsider", "eve@evil.example", &["eng"]).await;
    assert_eq!(res.status(), 403);
    assert!(res.text().await.unwrap().contains("Accounts at evil.example cannot sign in"));
    assert_eq!(t.failure_reasons().await[0], "email domain not allowed");
    assert!(app.state.store.user_by_email("eve@evil.example").await.unwrap().is_none());
    // An existing local account is not taken over by a provider's sign-in with its email.
    app.member("bob@corp.example", "default").await;
    let res = t.sign_in(&browser, "corp-bob", "bob@corp.example", &["eng"]).await;
    assert_eq!(res.status(), 409);
    assert!(res.text().await.unwrap().contains("does not take over accounts by email"));
    assert_eq!(t.failure_reasons().await[0], "local account with this email exists");
    assert!(!signed_in(app, &browser).await);
    assert_eq!(app.count_rows("oidc_identities").await, 0);
});

oidc_test!(
    verified_emails_link_existing_accounts_when_allowed,
    provider = |p: &mut OidcProvider| p.link_existing_accounts = true,
    |t: Corp| async move {
        let app = &t.app;
        app.member("bob@corp.example", "default").await;
        let bob = app.state.store.user_by_email("bob@corp.example").await.unwrap().unwrap();
        // Unverified: refused even so.
        let browser = Browser::new(app);
        let url = t.start(&browser, "/").await;
        let mut claims = t.claims(&url, "corp-bob", "bob@corp.example", &["eng"]);
        claims["email_verified"] = json!(false);
        // (the domain rule refuses an explicitly unverified email outright)
        let res = t.finish(&browser, &url, Answer::IdToken(t.key.sign(&claims))).await;
        assert_eq!(res.status(), 403);
        assert_eq!(t.failure_reasons().await[0], "email not verified");
        let url = t.start(&browser, "/").await;
        let mut claims = t.claims(&url, "corp-bob", "bob@corp.example", &["eng"]);
        claims.as_object_mut().unwrap().remove("email_verified");
        let res = t.finish(&browser, &url, Answer::IdToken(t.key.sign(&claims))).await;
        assert_eq!(res.status(), 409, "without email_verified: true the account is not linked");
        // Verified: linked to the existing account.
        assert_eq!(t.sign_in(&browser, "corp-bob", "bob@corp.example", &["eng"]).await.status(), 303);
        assert_eq!(app.state.store.user_id_by_oidc_identity("corp", "corp-bob").await.unwrap(), Some(bob.id));
    }
);

oidc_test!(group_claims_decide_workspaces_at_each_sign_in, |t: Corp| async move {
    let app = &t.app;
    let store = &app.state.store;
    let browser = Browser::new(app);
    assert_eq!(t.sign_in(&browser, "corp-ann", "ann@corp.example", &["eng", "ops", "visitors"]).await.status(), 303);
    let ann = store.user_by_email("ann@corp.example").await.unwrap().unwrap();
    let role = |slug: &'static str| {
        let id = ann.id.clone();
        async move {
            let ws = store.workspace_by_slug(slug).await.unwrap().unwrap();
            store.membership(&ws.id, &id).await.unwrap().map(|m| m.role)
        }
    };
    assert_eq!(role("default").await.as_deref(), Some("member"));
    assert_eq!(role("ops").await.as_deref(), Some("member"));
    // An app authorized in `ops`, and a machine token there.
    let client_id = app.public_client().await;
    let ops_url = app.authorize_url_replacing(&client_id, &[("resource", Some(&app.mcp_url("ops")))]);
    let location = browser.authorize_and_approve(&ops_url).await;
    let code = query_param(&location, "code").unwrap();
    let tokens: Value =
        app.exchange_with(&client_id, &code, &[("resource", &app.mcp_url("ops"))]).await.json().await.unwrap();
    let at = tokens["access_token"].as_str().expect("an access token for ops").to_owned();
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}});
    let session = open_session_in(app, "ops", &at).await;
    assert_eq!(rpc(app, "ops", Some(&at), Some(&session), list.clone()).await.status, 200);

    // Promoted to owner of default, removed from ops.
    assert_eq!(t.sign_in(&Browser::new(app), "corp-ann", "ann@corp.example", &["leads", "eng"]).await.status(), 303);
    assert_eq!(role("default").await.as_deref(), Some("owner"));
    assert_eq!(role("ops").await, None);
    assert_eq!(
        rpc(app, "ops", Some(&at), Some(&session), list.clone()).await.status,
        401,
        "the removed workspace's grant stops working"
    );
    let refresh = app
        .token(&[
            ("grant_type", "refresh_token"),
            ("client_id", &client_id),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
        ])
        .await;
    assert_eq!(refresh.status(), 400, "and its refresh token too");
    let removed = t.events("member_removed", "ops").await;
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].subject.as_deref(), Some("ann@corp.example"));
    assert!(removed[0].details.contains("oidc group claims"));
    assert_eq!(t.events("member_role_changed", "default").await.len(), 1);
    // Workspaces the mapping does not name are left alone.
    gatehouse::workspace::create(store, app.clock.as_ref(), "side", None).await.unwrap();
    app.member("ann@corp.example", "side").await;
    assert_eq!(t.sign_in(&Browser::new(app), "corp-ann", "ann@corp.example", &[]).await.status(), 303);
    assert_eq!(role("default").await, None, "no groups: no managed workspaces");
    assert_eq!(role("side").await.as_deref(), Some("member"));
});

oidc_test!(provider_key_rotation_is_followed, |t: Corp| async move {
    let app = &t.app;
    assert_eq!(t.sign_in(&Browser::new(app), "corp-ann", "ann@corp.example", &["eng"]).await.status(), 303);
    assert_eq!(t.idp.jwks_hits(), 1, "the JWKS is cached");
    assert_eq!(t.sign_in(&Browser::new(app), "corp-ann", "ann@corp.example", &["eng"]).await.status(), 303);
    assert_eq!(t.idp.jwks_hits(), 1);
    // The provider rotates to a new key and retires the old one.
    let next = Key::generate("key-2");
    t.idp.publish(&[&next]);
    app.clock.advance(31);
    let browser = Browser::new(app);
    let url = t.start(&browser, "/").await;
    let res = t
        .finish(&browser, &url, Answer::IdToken(next.sign(&t.claims(&url, "corp-ann", "ann@corp.example", &["eng"]))))
        .await;
    assert_eq!(res.status(), 303, "the unknown kid made Gatehouse fetch the new keys");
    assert_eq!(t.idp.jwks_hits(), 2);
    // A token still signed with the retired key is refused.
    app.clock.advance(31);
    let browser = Browser::new(app);
    let url = t.start(&browser, "/").await;
    let old = t.key.sign(&t.claims(&url, "corp-ann", "ann@corp.example", &["eng"]));
    assert_eq!(t.finish(&browser, &url, Answer::IdToken(old)).await.status(), 502);
});

mod passwords_off {
    use super::*;
    use crate::idp::TestIdp;

    async fn body(backend: Backend) {
        let idp = TestIdp::start().await;
        let issuer = idp.issuer.clone();
        let mut app = TestApp::spawn_with(backend, move |s| {
            s.oidc.allow_loopback_issuers = true;
            s.oidc.providers = vec![OidcProvider::new("corp", &issuer, CLIENT_ID)];
            s.password_login = false;
        })
        .await;
        let _dir = app.data_dir.take();
        app.member("alice@example.com", "default").await;
        let page = Browser::new(&app).get(&format!("{}/login", app.url)).await.text().await.unwrap();
        assert!(!page.contains("type=\"password\""), "no password field");
        assert!(page.contains("Continue with corp"));
        let res = Browser::new(&app).login("alice@example.com", PASSWORD).await;
        assert_eq!(res.status(), 403);
        assert!(res.text().await.unwrap().contains("Passwords are switched off"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        body(Backend::Sqlite).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        body(Backend::Postgres).await;
    }
}

oidc_test!(
    a_discovery_document_for_another_issuer_is_refused,
    provider = |p: &mut OidcProvider| p.issuer.push('/'),
    |t: Corp| async move {
        // The provider publishes `http://127.0.0.1:port`, the settings say `.../`: not the same issuer.
        let res = Browser::new(&t.app).get(&format!("{}/login/oidc/corp", t.app.url)).await;
        assert_eq!(res.status(), 502);
        assert!(res.text().await.unwrap().contains("names the issuer"));
        assert_eq!(t.failure_reasons().await[0], "provider answer unusable");
    }
);
