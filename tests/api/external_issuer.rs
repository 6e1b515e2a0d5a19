//! A workspace that trusts an external authorization server: a small issuer runs in the test
//! on 127.0.0.1:0 (discovery document, JWKS that can rotate, introspection), and the gateway
//! must accept its tokens for the workspace and refuse everything else with the right
//! challenge. The built-in authorization server stops issuing tokens for the workspace.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use axum::extract::State;
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gatehouse::resource::external::{self, TrustRequest};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};

use crate::both_backends;
use crate::gateway::{access_token, rpc};
use crate::helpers::*;

struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    jwk: Value,
}

fn new_key(kid: &str) -> SigningKey {
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let point = pair.public_key().as_ref(); // 0x04 || x || y
    let jwk = json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65])});
    SigningKey { kid: kid.into(), encoding: EncodingKey::from_ec_der(pkcs8.as_ref()), jwk }
}

#[derive(Default)]
struct IssuerState {
    issuer: String,
    published: Mutex<Vec<Value>>,
    jwks_fetches: AtomicUsize,
    introspections: AtomicUsize,
    /// Opaque token → introspection answer.
    opaque: Mutex<Vec<(String, Value)>>,
}

/// An authorization server of someone else's, as far as the gateway can tell.
struct TestIssuer {
    url: String,
    state: Arc<IssuerState>,
    current: SigningKey,
}

impl TestIssuer {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let current = new_key("key-1");
        let state = Arc::new(IssuerState {
            issuer: url.clone(),
            published: Mutex::new(vec![current.jwk.clone()]),
            ..Default::default()
        });
        let router = axum::Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/introspect", post(introspect))
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        TestIssuer { url, state, current }
    }

    fn sign_with(&self, key: &SigningKey, claims: Value) -> String {
        let mut header = Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(key.kid.clone());
        header.typ = Some("at+jwt".into());
        jsonwebtoken::encode(&header, &claims, &key.encoding).unwrap()
    }

    /// A token as a well-behaved issuer issues it for `aud`.
    fn token(&self, app: &TestApp, aud: &str, scope: &str) -> String {
        self.sign_with(&self.current, self.claims(app, aud, scope))
    }

    fn claims(&self, app: &TestApp, aud: &str, scope: &str) -> Value {
        let now = app.clock.now_secs();
        json!({"iss": self.url, "sub": "carol@idp", "aud": aud, "client_id": "mcp-app", "scope": scope,
            "iat": now, "exp": now + 300, "jti": format!("{now}-{scope}")})
    }

    /// A new signing key; the old one is no longer published. Returns the old one.
    fn rotate(&mut self, kid: &str) -> SigningKey {
        let next = new_key(kid);
        *self.state.published.lock().unwrap() = vec![next.jwk.clone()];
        std::mem::replace(&mut self.current, next)
    }
}

async fn discovery(State(s): State<Arc<IssuerState>>) -> axum::Json<Value> {
    axum::Json(json!({"issuer": s.issuer, "jwks_uri": format!("{}/jwks", s.issuer),
        "introspection_endpoint": format!("{}/introspect", s.issuer)}))
}

async fn jwks(State(s): State<Arc<IssuerState>>) -> axum::Json<Value> {
    s.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    axum::Json(json!({"keys": *s.published.lock().unwrap()}))
}

async fn introspect(
    State(s): State<Arc<IssuerState>>,
    headers: axum::http::HeaderMap,
    axum::Form(form): axum::Form<Vec<(String, String)>>,
) -> Result<axum::Json<Value>, axum::http::StatusCode> {
    s.introspections.fetch_add(1, Ordering::SeqCst);
    let expected = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("gatehouse:s3cret-value"));
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return Err(axum::http::StatusCode::UNAUTHORIZED);
    }
    let token = form.iter().find(|(k, _)| k == "token").map(|(_, v)| v.clone()).unwrap_or_default();
    let answer = s.opaque.lock().unwrap().iter().find(|(t, _)| *t == token).map(|(_, a)| a.clone());
    Ok(axum::Json(answer.unwrap_or_else(|| json!({"active": false}))))
}

fn loopback_allowed(s: &mut gatehouse::config::Settings) {
    s.external_issuer.allow_http_loopback = true;
}

async fn trust(app: &TestApp, req: TrustRequest) -> Result<(), String> {
    let ws = app.state.store.workspace_by_slug("default").await.unwrap().unwrap();
    external::trust(&app.state.store, &app.state.sealer, &app.state.settings, app.clock.now_secs(), &ws, req)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn trusting(issuer: &TestIssuer) -> TrustRequest {
    TrustRequest { issuer: issuer.url.clone(), ..Default::default() }
}

fn init() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}})
}

fn tools_call(tool: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": tool, "arguments": {"text": "hi"}}})
}

fn www(r: &crate::gateway::Rpc) -> String {
    r.headers.get("www-authenticate").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

/// `message` with `token`: an `initialize` alone, anything else inside a new session
/// (the answer to `initialize` if that was refused).
async fn call_with(app: &TestApp, token: &str, message: Value) -> crate::gateway::Rpc {
    let opened = rpc(app, "default", Some(token), None, init()).await;
    if message["method"] == "initialize" || opened.status != 200 {
        return opened;
    }
    let session = opened.headers["mcp-session-id"].to_str().unwrap().to_owned();
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    rpc(app, "default", Some(token), Some(&session), note).await;
    rpc(app, "default", Some(token), Some(&session), message).await
}

both_backends!(
    trusted_issuer_tokens_are_accepted_and_others_refused,
    settings = loopback_allowed,
    |app: TestApp| async move {
        let issuer = TestIssuer::start().await;
        // Made before the workspace trusted someone else: stops working once it does.
        let builtin = access_token(&app, "mcp:read mcp:tools").await["access_token"].as_str().unwrap().to_owned();
        trust(&app, trusting(&issuer)).await.unwrap();
        let resource = app.mcp_url("default");

        let prm: Value = app
            .http
            .get(format!("{}/.well-known/oauth-protected-resource/t/default/mcp", app.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(prm["authorization_servers"], json!([issuer.url]));
        assert_eq!(prm["resource"], resource);

        let anonymous = rpc(&app, "default", None, None, init()).await;
        assert_eq!(anonymous.status, 401);
        assert!(www(&anonymous).starts_with(&format!(
            "Bearer resource_metadata=\"{}/.well-known/oauth-protected-resource/t/default/mcp\"",
            app.url
        )));

        let good = issuer.token(&app, &resource, "mcp:read mcp:tools openid");
        let init_res = call_with(&app, &good, init()).await;
        assert_eq!(init_res.status, 200, "{}", init_res.body);
        let echo = call_with(&app, &good, tools_call("echo")).await;
        assert_eq!(echo.status, 200);
        assert_eq!(echo.body["result"]["content"][0]["text"], "hi", "{}", echo.body);
        let who = call_with(&app, &good, tools_call("whoami")).await;
        let who = who.body["result"]["content"][0]["text"].as_str().unwrap().to_owned();
        assert!(who.contains("carol@idp") && who.contains("mcp-app") && who.contains("mcp:read mcp:tools"), "{who}");
        assert!(!who.contains("openid"), "provider scopes are not workspace scopes: {who}");

        let read_only = issuer.token(&app, &resource, "mcp:read");
        let refused = call_with(&app, &read_only, tools_call("echo")).await;
        assert_eq!(refused.status, 403);
        assert!(
            www(&refused).starts_with("Bearer error=\"insufficient_scope\", scope=\"mcp:read mcp:tools\""),
            "{}",
            www(&refused)
        );

        let cases = [
            (
                "another issuer, its own key",
                TestIssuer::start().await.token(&app, &resource, "mcp:read mcp:tools"),
                "signature does not verify",
            ),
            (
                "another issuer named in a token signed by the trusted key",
                {
                    let mut claims = issuer.claims(&app, &resource, "mcp:read mcp:tools");
                    claims["iss"] = json!("https://evil.example.com");
                    issuer.sign_with(&issuer.current, claims)
                },
                "issued by `https://evil.example.com`, not by the issuer this resource trusts",
            ),
            (
                "another audience",
                issuer.token(&app, &app.mcp_url("other"), "mcp:read mcp:tools"),
                "audience does not match",
            ),
            ("the built-in issuer", builtin.clone(), "does not publish"),
            ("not a JWT", "opaque-token-value".to_owned(), "not a JWT"),
        ];
        for (what, token, says) in cases {
            let r = call_with(&app, &token, init()).await;
            assert_eq!(r.status, 401, "{what}");
            let w = www(&r);
            assert!(
                w.starts_with("Bearer error=\"invalid_token\"") && w.contains(says) && w.contains("resource_metadata="),
                "{what}: {w}"
            );
        }
        let forged = {
            let stranger = new_key("key-1"); // same kid, different key
            issuer.sign_with(&stranger, issuer.claims(&app, &resource, "mcp:read mcp:tools"))
        };
        assert!(www(&call_with(&app, &forged, init()).await).contains("signature does not verify"));

        // Expiry (30 s leeway) follows the gateway's clock.
        app.clock.advance(300 + 31);
        let late = call_with(&app, &good, init()).await;
        assert_eq!(late.status, 401);
        assert!(www(&late).contains("expired"), "{}", www(&late));

        // The built-in authorization server no longer issues tokens for this workspace.
        let client = app.public_client().await;
        let browser = Browser::new(&app);
        browser.login("alice@example.com", PASSWORD).await;
        let location = browser.authorize_and_approve(&app.authorize_url(&client, &[])).await;
        assert_eq!(query_param(&location, "error").as_deref(), Some("invalid_target"), "{location}");
        assert!(query_param(&location, "error_description").unwrap().contains(&issuer.url));

        // Back to the built-in server: its metadata and tokens again.
        let ws = app.state.store.workspace_by_slug("default").await.unwrap().unwrap();
        assert!(app.state.store.delete_workspace_issuer(&ws.id).await.unwrap());
        let prm: Value = app
            .http
            .get(format!("{}/.well-known/oauth-protected-resource/t/default/mcp", app.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(prm["authorization_servers"], json!([app.url]));
        let fresh = access_token(&app, "mcp:read mcp:tools").await["access_token"].as_str().unwrap().to_owned();
        assert_eq!(call_with(&app, &fresh, init()).await.status, 200);
        assert_eq!(call_with(&app, &good, init()).await.status, 401);
    }
);

both_backends!(
    key_rotation_is_followed_and_refetches_are_limited,
    settings = loopback_allowed,
    |app: TestApp| async move {
        let mut issuer = TestIssuer::start().await;
        trust(&app, trusting(&issuer)).await.unwrap();
        let resource = app.mcp_url("default");
        let first = issuer.token(&app, &resource, "mcp:read mcp:tools");
        assert_eq!(call_with(&app, &first, init()).await.status, 200);
        assert_eq!(call_with(&app, &first, init()).await.status, 200);
        assert_eq!(issuer.state.jwks_fetches.load(Ordering::SeqCst), 1, "keys are cached");

        // Made-up key ids: at most one refetch per 10 s, however many arrive.
        app.clock.advance(11);
        for i in 0..20 {
            let mut header = Header::new(jsonwebtoken::Algorithm::ES256);
            header.kid = Some(format!("bogus-{i}"));
            let t =
                jsonwebtoken::encode(&header, &issuer.claims(&app, &resource, "mcp:read"), &issuer.current.encoding)
                    .unwrap();
            let r = call_with(&app, &t, init()).await;
            assert_eq!(r.status, 401);
            assert!(www(&r).contains("does not publish"), "{}", www(&r));
        }
        assert_eq!(issuer.state.jwks_fetches.load(Ordering::SeqCst), 2, "one refetch for twenty unknown kids");

        // Rotation: key-2 published, key-1 removed. No restart.
        app.clock.advance(11);
        let retired = issuer.rotate("key-2");
        let second = issuer.token(&app, &resource, "mcp:read mcp:tools");
        assert_eq!(call_with(&app, &second, init()).await.status, 200, "the new key is fetched on first sight");
        assert_eq!(issuer.state.jwks_fetches.load(Ordering::SeqCst), 3);
        let old = issuer.sign_with(&retired, issuer.claims(&app, &resource, "mcp:read mcp:tools"));
        let r = call_with(&app, &old, init()).await;
        assert_eq!(r.status, 401);
        assert!(
            www(&r).starts_with("Bearer error=\"invalid_token\"") && www(&r).contains("does not publish"),
            "{}",
            www(&r)
        );
        assert_eq!(call_with(&app, &first, init()).await.status, 401, "tokens of the retired key stop working");
    }
);

both_backends!(configured_audience_and_scope_map, settings = loopback_allowed, |app: TestApp| async move {
    let issuer = TestIssuer::start().await;
    trust(
        &app,
        TrustRequest {
            audience: Some("https://api.example.com".into()),
            scope_map: vec!["api:read=mcp:read".into(), "api:call=mcp:tools".into()],
            ..trusting(&issuer)
        },
    )
    .await
    .unwrap();
    let api = issuer.token(&app, "https://api.example.com", "api:read api:call");
    assert_eq!(call_with(&app, &api, tools_call("echo")).await.status, 200);
    let unmapped = issuer.token(&app, "https://api.example.com", "mcp:read mcp:tools");
    let r = call_with(&app, &unmapped, tools_call("echo")).await;
    assert_eq!(r.status, 403, "only mapped scopes count");
    assert!(www(&r).contains("insufficient_scope"));
    let resource_aud = issuer.token(&app, &app.mcp_url("default"), "api:read api:call");
    assert!(www(&call_with(&app, &resource_aud, init()).await).contains("audience does not match"));
});

both_backends!(opaque_tokens_are_introspected_and_cached, settings = loopback_allowed, |app: TestApp| async move {
    let issuer = TestIssuer::start().await;
    trust(
        &app,
        TrustRequest {
            introspection_client_id: Some("gatehouse".into()),
            introspection_secret: Some("s3cret-value".into()),
            ..trusting(&issuer)
        },
    )
    .await
    .unwrap();
    let row = app
        .state
        .store
        .workspace_issuer(&app.state.store.workspace_by_slug("default").await.unwrap().unwrap().id)
        .await
        .unwrap()
        .unwrap();
    let sealed = row.introspection_secret.unwrap();
    assert!(!sealed.windows(12).any(|w| w == b"s3cret-value"), "the secret is sealed at rest");

    let now = app.clock.now_secs();
    issuer.state.opaque.lock().unwrap().push((
        "opaque-good".into(),
        json!({"active": true, "iss": issuer.url,
        "aud": app.mcp_url("default"), "sub": "dave", "scope": "mcp:read mcp:tools", "exp": now + 600}),
    ));
    issuer.state.opaque.lock().unwrap().push((
        "opaque-elsewhere".into(),
        json!({"active": true,
        "aud": "https://other.example.com", "sub": "dave", "scope": "mcp:tools", "exp": now + 600}),
    ));
    assert_eq!(call_with(&app, "opaque-good", tools_call("echo")).await.status, 200);
    assert_eq!(call_with(&app, "opaque-good", tools_call("echo")).await.status, 200);
    assert_eq!(issuer.state.introspections.load(Ordering::SeqCst), 1, "answers are cached");
    let r = call_with(&app, "opaque-revoked", init()).await;
    assert_eq!(r.status, 401);
    assert!(www(&r).contains("not active"));
    assert!(www(&call_with(&app, "opaque-elsewhere", init()).await).contains("audience does not match"));
    // After the cache lifetime the issuer is asked again (and may have revoked it).
    issuer.state.opaque.lock().unwrap().retain(|(t, _)| t != "opaque-good");
    app.clock.advance(61);
    assert_eq!(call_with(&app, "opaque-good", init()).await.status, 401);
});

both_backends!(trust_settings_are_checked, |app: TestApp| async move {
    let issuer = TestIssuer::start().await;
    let err = trust(&app, trusting(&issuer)).await.unwrap_err();
    assert!(err.contains("testing allowance"), "loopback http needs the allowance: {err}");
    for (req, says) in [
        (TrustRequest { issuer: "http://login.example.com".into(), ..Default::default() }, "https"),
        (TrustRequest { issuer: "https://login.example.com/?x=1".into(), ..Default::default() }, "query"),
        (TrustRequest { issuer: "not a url".into(), ..Default::default() }, "not a URL"),
        (
            TrustRequest {
                issuer: "https://login.example.com".into(),
                scope_map: vec!["nonsense".into()],
                ..Default::default()
            },
            "scope map",
        ),
        (
            TrustRequest {
                issuer: "https://login.example.com".into(),
                introspection_client_id: Some("x".into()),
                ..Default::default()
            },
            "secret",
        ),
        (TrustRequest { issuer: app.url.clone(), ..Default::default() }, "own issuer"),
    ] {
        let err = trust(&app, req).await.unwrap_err();
        assert!(err.contains(says), "{err}");
    }
    assert_eq!(app.count_rows("workspace_issuers").await, 0, "nothing half-written");
    trust(&app, TrustRequest { issuer: "https://login.example.com/".into(), ..Default::default() }).await.unwrap();
    assert_eq!(app.count_rows("workspace_issuers").await, 1);
});

both_backends!(an_unreachable_issuer_means_retry, settings = loopback_allowed, |app: TestApp| async move {
    let issuer = TestIssuer::start().await;
    // Port 1 on loopback: nothing listens, the connection is refused at once.
    trust(&app, TrustRequest { issuer: "http://127.0.0.1:1".into(), ..Default::default() }).await.unwrap();
    let token = issuer.token(&app, &app.mcp_url("default"), "mcp:read");
    let r = call_with(&app, &token, init()).await;
    assert_eq!(r.status, 503, "the client should retry, not throw its token away: {}", r.body);
    assert_eq!(www(&r), "");
});
