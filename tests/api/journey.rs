//! One client's whole journey, as the client would make it: the authorization request (with
//! whatever parameters that client sends), alice signing in and approving, the code exchange
//! with the client's own authentication, and a tool call through the gateway.

use gatehouse::crypto::sha256_b64url;
use serde_json::{Value, json};

use crate::gateway::{open_session, rpc};
use crate::helpers::*;

/// How a client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy)]
pub enum ClientAuth<'a> {
    None,
    Post(&'a str),
    Basic(&'a str),
}

pub const ALICE: &str = "alice@example.com";

/// An authorization request with PKCE (the helpers' verifier) and `state=xyz`, plus `params`.
pub fn authorization_url(app: &TestApp, client_id: &str, redirect_uri: &str, params: &[(&str, &str)]) -> String {
    let mut url = url::Url::parse(&format!("{}/authorize", app.url)).unwrap();
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("code_challenge", &sha256_b64url(VERIFIER.as_bytes()))
            .append_pair("code_challenge_method", "S256")
            .append_pair("state", "xyz");
        for (k, v) in params {
            q.append_pair(k, v);
        }
    }
    url.to_string()
}

/// alice (a member of `default`) signs in.
pub async fn alice(app: &TestApp) -> Browser {
    app.member(ALICE, "default").await;
    let browser = Browser::new(app);
    assert_eq!(browser.login(ALICE, PASSWORD).await.status(), 303);
    browser
}

/// alice approves the request; returns the code, after checking the redirect goes to
/// `redirect_uri` with `state` and `iss`.
pub async fn approve(app: &TestApp, browser: &Browser, authorize_url: &str, redirect_uri: &str) -> String {
    let location = browser.authorize_and_approve(authorize_url).await;
    assert!(location.starts_with(&format!("{redirect_uri}?")), "redirected to {location}, expected {redirect_uri}");
    assert_eq!(query_param(&location, "state").as_deref(), Some("xyz"), "{location}");
    assert_eq!(query_param(&location, "iss").as_deref(), Some(app.url.as_str()), "{location}");
    assert!(query_param(&location, "error").is_none(), "{location}");
    query_param(&location, "code").expect("a code in the redirect")
}

/// A token request with the client's authentication; returns the response.
pub async fn token_request(
    app: &TestApp,
    client_id: &str,
    auth: ClientAuth<'_>,
    form: &[(&str, &str)],
) -> reqwest::Response {
    let mut form: Vec<(&str, &str)> = form.to_vec();
    let mut req = app.http.post(format!("{}/token", app.url));
    match auth {
        ClientAuth::None => form.push(("client_id", client_id)),
        ClientAuth::Post(secret) => {
            form.push(("client_id", client_id));
            form.push(("client_secret", secret));
        }
        ClientAuth::Basic(secret) => req = req.basic_auth(client_id, Some(secret)),
    }
    req.form(&form).send().await.unwrap()
}

/// Exchanges a code; asserts success and returns the token response.
pub async fn redeem(
    app: &TestApp,
    client_id: &str,
    auth: ClientAuth<'_>,
    code: &str,
    redirect_uri: &str,
    extra: &[(&str, &str)],
) -> Value {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("code_verifier", VERIFIER),
    ];
    form.extend_from_slice(extra);
    let res = token_request(app, client_id, auth, &form).await;
    assert_eq!(res.headers().get("cache-control").map(|v| v.to_str().unwrap()), Some("no-store"));
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, 200, "token response: {body}");
    assert_eq!(body["token_type"], "Bearer");
    body
}

/// Refreshes; asserts success and returns the token response.
pub async fn refresh(
    app: &TestApp,
    client_id: &str,
    auth: ClientAuth<'_>,
    refresh_token: &str,
    extra: &[(&str, &str)],
) -> Value {
    let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", refresh_token)];
    form.extend_from_slice(extra);
    let res = token_request(app, client_id, auth, &form).await;
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, 200, "refresh response: {body}");
    body
}

/// Opens an MCP session with `access_token`, calls `echo`, and checks the answer and that
/// `whoami` names `client_id`.
pub async fn call_echo(app: &TestApp, access_token: &str, client_id: &str, text: &str) {
    let session = open_session(app, access_token).await;
    let call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": text}}});
    let echoed = rpc(app, "default", Some(access_token), Some(&session), call).await;
    assert_eq!(echoed.status, 200, "{}", echoed.body);
    assert_eq!(echoed.body["result"]["content"][0]["text"], text, "{}", echoed.body);
    let who = json!({"jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}});
    let who = rpc(app, "default", Some(access_token), Some(&session), who).await;
    let me: Value = serde_json::from_str(who.body["result"]["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(me["client_id"], client_id, "{me}");
    assert_eq!(me["workspace"], "default");
}

/// The JSON of a registration (asserting 201).
pub async fn registered(app: &TestApp, metadata: Value) -> Value {
    let res = app.register(metadata).await;
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, 201, "registration: {body}");
    body
}
