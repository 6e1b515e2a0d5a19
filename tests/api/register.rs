//! Dynamic Client Registration (RFC 7591): what is accepted, what is refused with which
//! error, that secrets are stored only as hashes, and that refusals write nothing.

use gatehouse::crypto::hash_secret;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::*;

/// Asserts an RFC 7591 §3.2.2 error and that no client row was written.
async fn refused(app: &TestApp, res: reqwest::Response, status: u16, code: &str, clients_before: i64) {
    let got = res.status().as_u16();
    let ct = res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let text = res.text().await.unwrap();
    assert_eq!(got, status, "{text}");
    assert!(ct.starts_with("application/json"), "{ct}: {text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"], code, "{text}");
    assert!(body["error_description"].is_string());
    assert_eq!(app.count_rows("oauth_clients").await, clients_before, "a refused registration writes nothing");
}

fn with_redirects(uris: Value) -> Value {
    json!({"client_name": "App", "redirect_uris": uris, "token_endpoint_auth_method": "none"})
}

async fn raw_register(app: &TestApp, content_type: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
    app.http.post(format!("{}/register", app.url)).header("content-type", content_type).body(body).send().await.unwrap()
}

both_backends!(public_client_gets_no_secret, |app: TestApp| async move {
    let res = app
        .register(json!({
            "client_name": "Claude Code",
            "redirect_uris": ["http://localhost:33418/callback", "https://claude.ai/api/mcp/auth_callback"],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "logo_uri": "javascript:alert(1)",
            "client_uri": "https://claude.ai",
        }))
        .await;
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body: Value = res.json().await.unwrap();
    assert!(body.get("client_secret").is_none(), "{body}");
    assert!(body.get("client_secret_expires_at").is_none());
    assert_eq!(body["token_endpoint_auth_method"], "none");
    assert_eq!(
        body["redirect_uris"],
        json!(["http://localhost:33418/callback", "https://claude.ai/api/mcp/auth_callback"])
    );
    assert_eq!(body["grant_types"], json!(["authorization_code", "refresh_token"]));
    assert!(body["client_id_issued_at"].is_i64());
    assert!(body.get("logo_uri").is_none(), "a non-https logo is not echoed");
    assert_eq!(body["client_uri"], "https://claude.ai");
    let id = body["client_id"].as_str().unwrap();
    let row = app.state.store.client_by_id(id).await.unwrap().expect("stored");
    assert!(row.secret_hash.is_none());
    assert_eq!(row.source, "dynamic");
    assert!(row.workspace_id.is_none(), "a registered client is bound to no workspace");
    assert_eq!(row.client_name, "Claude Code");
    assert_eq!(app.count_rows("oauth_clients").await, 1);
});

both_backends!(confidential_client_secret_is_shown_once_and_stored_hashed, |app: TestApp| async move {
    for method in [Some("client_secret_basic"), Some("client_secret_post"), None] {
        let mut doc = json!({"client_name": "Server app", "redirect_uris": ["https://app.example/cb"]});
        if let Some(m) = method {
            doc["token_endpoint_auth_method"] = json!(m);
        }
        let res = app.register(doc).await;
        assert_eq!(res.status(), 201);
        assert_eq!(res.headers()["cache-control"], "no-store");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["token_endpoint_auth_method"], method.unwrap_or("client_secret_basic"));
        let secret = body["client_secret"].as_str().expect("a secret").to_owned();
        assert!(secret.starts_with("gh_cs_"), "{secret}");
        assert!(secret.len() >= 6 + 43, "256 bits of randomness");
        assert_eq!(body["client_secret_expires_at"], 0);
        let row = app.state.store.client_by_id(body["client_id"].as_str().unwrap()).await.unwrap().unwrap();
        let hash = row.secret_hash.expect("a hash");
        assert_ne!(hash, secret);
        assert_eq!(hash, hash_secret(&secret), "SHA-256 of the secret");
        assert!(!row.metadata.contains(&secret), "the stored metadata does not keep the secret");
    }
});

both_backends!(dangerous_redirect_uris_are_invalid_redirect_uri, |app: TestApp| async move {
    let before = app.count_rows("oauth_clients").await;
    for bad in [
        "javascript:alert(1)",
        "JavaScript:alert(document.cookie)",
        " javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox(1)",
        "file:///etc/passwd",
        "https://app.example/cb#fragment",
        "https://app.example/cb#",
        "http://app.example/cb",
        "http://10.0.0.1/cb",
        "http://127.0.0.1.evil.example/cb",
        "/relative/callback",
        "callback",
        "",
        "https://user:pw@app.example/cb",
        "https://app.example/c b",
    ] {
        refused(&app, app.register(with_redirects(json!([bad]))).await, 400, "invalid_redirect_uri", before).await;
        // One bad URI among good ones spoils the registration.
        let mixed = with_redirects(json!(["https://app.example/cb", bad]));
        refused(&app, app.register(mixed).await, 400, "invalid_redirect_uri", before).await;
    }
});

both_backends!(missing_or_empty_redirect_uris_are_invalid_redirect_uri, |app: TestApp| async move {
    let before = app.count_rows("oauth_clients").await;
    refused(&app, app.register(with_redirects(json!([]))).await, 400, "invalid_redirect_uri", before).await;
    refused(
        &app,
        app.register(json!({"client_name": "App", "token_endpoint_auth_method": "none"})).await,
        400,
        "invalid_redirect_uri",
        before,
    )
    .await;
    refused(&app, app.register(with_redirects(Value::Null)).await, 400, "invalid_redirect_uri", before).await;
    let many: Vec<String> = (0..21).map(|i| format!("https://app.example/cb{i}")).collect();
    refused(&app, app.register(with_redirects(json!(many))).await, 400, "invalid_redirect_uri", before).await;
});

both_backends!(unsupported_grants_and_auth_methods_are_invalid_client_metadata, |app: TestApp| async move {
    let before = app.count_rows("oauth_clients").await;
    let base = || json!({"client_name": "App", "redirect_uris": ["https://app.example/cb"]});
    let mut cases = Vec::new();
    for grants in [
        json!(["client_credentials"]),
        json!(["authorization_code", "client_credentials"]),
        json!(["password"]),
        json!(["implicit"]),
        json!(["refresh_token"]),
        json!([]),
    ] {
        let mut doc = base();
        doc["grant_types"] = grants;
        cases.push(doc);
    }
    for method in ["private_key_jwt", "client_secret_jwt", "tls_client_auth", "NONE", ""] {
        let mut doc = base();
        doc["token_endpoint_auth_method"] = json!(method);
        cases.push(doc);
    }
    for response_types in [json!(["token"]), json!(["code", "token"]), json!([])] {
        let mut doc = base();
        doc["response_types"] = response_types;
        cases.push(doc);
    }
    let mut doc = base();
    doc["scope"] = json!("mcp:read admin");
    cases.push(doc);
    let mut doc = base();
    doc["application_type"] = json!("browser");
    cases.push(doc);
    for doc in cases {
        let res = app.register(doc.clone()).await;
        assert_eq!(res.status(), 400, "{doc}");
        refused(&app, res, 400, "invalid_client_metadata", before).await;
    }
});

both_backends!(bodies_that_are_not_a_json_object_are_400, |app: TestApp| async move {
    let before = app.count_rows("oauth_clients").await;
    // Not JSON at all, declared as JSON.
    for body in [
        "not json",
        "{",
        "",
        "[]",
        "[{\"redirect_uris\":[\"https://app.example/cb\"]}]",
        "null",
        "42",
        "\"https://app.example/cb\"",
    ] {
        refused(&app, raw_register(&app, "application/json", body).await, 400, "invalid_client_metadata", before).await;
    }
    // Not declared as JSON.
    let form = "redirect_uris=https%3A%2F%2Fapp.example%2Fcb&token_endpoint_auth_method=none";
    refused(&app, raw_register(&app, "application/x-www-form-urlencoded", form).await, 400, "invalid_request", before)
        .await;
    let json_text = with_redirects(json!(["https://app.example/cb"])).to_string();
    refused(&app, raw_register(&app, "text/plain", json_text.clone()).await, 400, "invalid_request", before).await;
    let res = app.http.post(format!("{}/register", app.url)).body(json_text.clone()).send().await.unwrap();
    refused(&app, res, 400, "invalid_request", before).await;
    // The same document with the right content type is fine.
    assert_eq!(raw_register(&app, "application/json; charset=utf-8", json_text).await.status(), 201);
});

both_backends!(fields_of_the_wrong_type_are_invalid_client_metadata, |app: TestApp| async move {
    let before = app.count_rows("oauth_clients").await;
    for doc in [
        json!({"redirect_uris": "https://app.example/cb", "token_endpoint_auth_method": "none"}),
        json!({"redirect_uris": "x"}),
        json!({"redirect_uris": [1, 2]}),
        json!({"redirect_uris": [["https://app.example/cb"]]}),
        json!({"redirect_uris": {"a": "https://app.example/cb"}}),
        json!({"redirect_uris": ["https://app.example/cb"], "client_name": 5}),
        json!({"redirect_uris": ["https://app.example/cb"], "grant_types": "authorization_code"}),
        json!({"redirect_uris": ["https://app.example/cb"], "token_endpoint_auth_method": ["none"]}),
        json!({"redirect_uris": ["https://app.example/cb"], "scope": ["mcp:read"]}),
    ] {
        refused(&app, app.register(doc).await, 400, "invalid_client_metadata", before).await;
    }
});

/// The N+1th registration from one address within a minute is refused with 429.
async fn rate_limited(backend: Backend) {
    const PER_MINUTE: u32 = 3;
    let app = TestApp::spawn_with(backend, |s| s.registrations_per_minute = PER_MINUTE).await;
    for _ in 0..PER_MINUTE {
        app.public_client().await;
    }
    let res = app.register(with_redirects(json!([REDIRECT]))).await;
    assert_eq!(res.status(), 429);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request", "{body}");
    assert!(body["error_description"].is_string());
    assert_eq!(app.count_rows("oauth_clients").await, i64::from(PER_MINUTE), "the refused registration wrote nothing");
    // Only registration is limited: the token endpoint still answers normally.
    let res = app.token(&[("grant_type", "refresh_token"), ("client_id", "nobody"), ("refresh_token", "x")]).await;
    assert_eq!(res.status(), 401);
}

mod registration_is_rate_limited_per_address {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::rate_limited(crate::helpers::Backend::Sqlite).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::rate_limited(crate::helpers::Backend::Postgres).await;
    }
}
