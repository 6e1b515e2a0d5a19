//! Every real MCP client, replayed: its registration (a Client ID Metadata Document it
//! publishes, or the Dynamic Client Registration body it sends) and its authorization and token
//! requests, as documented in the shared client notes (`reference/clients.md`) and the issue
//! threads they cite; then a tool call with the token it got.
//!
//! The documents are served from loopback (the local-testing allowance is on) with the real
//! documents' contents; only their URL differs, since a document's client_id is its own URL.

use gatehouse::config::Settings;
use serde_json::{Value, json};

use crate::both_backends;
use crate::docserver::DocServer;
use crate::helpers::*;
use crate::journey::*;

pub fn loopback_documents(s: &mut Settings) {
    s.cimd.allow_loopback_hosts = vec!["localhost".into()];
}

/// What a CIMD client checks in the metadata before using its document URL as client_id
/// (Claude.ai uses CIMD only when both hold).
async fn assert_cimd_advertised(app: &TestApp) {
    let meta: Value = app
        .http
        .get(format!("{}/.well-known/oauth-authorization-server", app.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["client_id_metadata_document_supported"], true, "{meta}");
    assert!(meta["token_endpoint_auth_methods_supported"].as_array().unwrap().contains(&json!("none")), "{meta}");
}

both_backends!(claude_ai_with_its_metadata_document, settings = loopback_documents, |app: TestApp| async move {
    assert_cimd_advertised(&app).await;
    let docs = DocServer::start().await;
    let client_id = docs.serve_document(
        "/oauth/mcp-oauth-client-metadata",
        json!({
            "client_name": "Claude",
            "client_uri": "https://claude.ai",
            "logo_uri": "https://claude.ai/images/claude_app_icon.png",
            "redirect_uris": ["https://claude.ai/api/mcp/auth_callback", "https://claude.com/api/mcp/auth_callback"],
            "grant_types": ["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:jwt-bearer"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        }),
    );
    let redirect = "https://claude.ai/api/mcp/auth_callback";
    let resource = app.mcp_url("default");
    let browser = alice(&app).await;
    let url = authorization_url(
        &app,
        &client_id,
        redirect,
        &[("scope", "mcp:read mcp:tools offline_access"), ("resource", &resource), ("prompt", "consent")],
    );
    // prompt=consent: the page is shown, naming the app and where its document lives.
    let page = browser.get(&url).await.text().await.unwrap();
    assert!(page.contains("<span class=\"client\">Claude</span>"), "consent names the client");
    assert!(page.contains(crate::client_documents::DOCUMENT_HOST_LINE), "and where its document lives");
    let code = approve(&app, &browser, &url, redirect).await;
    let tokens = redeem(&app, &client_id, ClientAuth::None, &code, redirect, &[("resource", &resource)]).await;
    let refresh_token = tokens["refresh_token"].as_str().expect("the document lists refresh_token");
    let renewed = refresh(&app, &client_id, ClientAuth::None, refresh_token, &[("resource", &resource)]).await;
    call_echo(&app, renewed["access_token"].as_str().unwrap(), &client_id, "hello from Claude.ai").await;

    let row = app.state.store.client_by_id(&client_id).await.unwrap().expect("recorded");
    assert_eq!(row.source, "metadata_document");
    assert_eq!(row.grant_types, r#"["authorization_code","refresh_token"]"#, "jwt-bearer negotiated away");
    assert_eq!(docs.hits("/oauth/mcp-oauth-client-metadata"), 1, "fetched once, then cached");
});

both_backends!(claude_ai_falls_back_to_registration_with_client_secret_post, |app: TestApp| async move {
    let reg = registered(
        &app,
        json!({
            "client_name": "Claude",
            "redirect_uris": ["https://claude.ai/api/mcp/auth_callback"],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "client_secret_post",
        }),
    )
    .await;
    let (client_id, secret) = (reg["client_id"].as_str().unwrap(), reg["client_secret"].as_str().unwrap());
    assert_eq!(reg["token_endpoint_auth_method"], "client_secret_post");
    let redirect = "https://claude.ai/api/mcp/auth_callback";
    let resource = app.mcp_url("default");
    let browser = alice(&app).await;
    let url = authorization_url(
        &app,
        client_id,
        redirect,
        &[("scope", "mcp:read mcp:tools offline_access"), ("resource", &resource), ("prompt", "consent")],
    );
    let code = approve(&app, &browser, &url, redirect).await;
    let tokens = redeem(&app, client_id, ClientAuth::Post(secret), &code, redirect, &[("resource", &resource)]).await;
    let renewed = refresh(
        &app,
        client_id,
        ClientAuth::Post(secret),
        tokens["refresh_token"].as_str().unwrap(),
        &[("resource", &resource)],
    )
    .await;
    call_echo(&app, renewed["access_token"].as_str().unwrap(), client_id, "hello from Claude.ai (DCR)").await;
});

both_backends!(
    claude_code_with_port_less_loopback_redirects,
    settings = loopback_documents,
    |app: TestApp| async move {
        assert_cimd_advertised(&app).await;
        let docs = DocServer::start().await;
        let client_id = docs.serve_document(
            "/oauth/claude-code-client-metadata",
            json!({
                "client_name": "Claude Code",
                "client_uri": "https://claude.com/claude-code",
                "redirect_uris": ["http://localhost/callback", "http://127.0.0.1/callback"],
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "token_endpoint_auth_method": "none",
                "application_type": "native",
            }),
        );
        // Claude Code listens on an ephemeral port; the document cannot know which.
        let redirect = "http://localhost:54817/callback";
        let resource = app.mcp_url("default");
        let browser = alice(&app).await;
        let url =
            authorization_url(&app, &client_id, redirect, &[("scope", "mcp:read mcp:tools"), ("resource", &resource)]);
        let page = browser.get(&url).await.text().await.unwrap();
        assert!(page.contains("this computer"), "localhost-only clients get the loopback warning");
        let code = approve(&app, &browser, &url, redirect).await;
        let tokens = redeem(&app, &client_id, ClientAuth::None, &code, redirect, &[("resource", &resource)]).await;
        assert!(tokens["refresh_token"].is_string());
        call_echo(&app, tokens["access_token"].as_str().unwrap(), &client_id, "hello from Claude Code").await;

        // Another ephemeral port next time, on the other loopback spelling the document lists.
        let redirect = "http://127.0.0.1:61002/callback";
        let url =
            authorization_url(&app, &client_id, redirect, &[("scope", "mcp:read mcp:tools"), ("resource", &resource)]);
        let code = approve(&app, &browser, &url, redirect).await;
        redeem(&app, &client_id, ClientAuth::None, &code, redirect, &[("resource", &resource)]).await;
    }
);

both_backends!(chatgpt_with_offline_access_and_resource, settings = loopback_documents, |app: TestApp| async move {
    assert_cimd_advertised(&app).await;
    let docs = DocServer::start().await;
    // ChatGPT prefers private_key_jwt and says it can also use none: Gatehouse uses none.
    let client_id = docs.serve_document(
        "/oauth/client.json",
        json!({
            "client_name": "ChatGPT",
            "client_uri": "https://chatgpt.com",
            "redirect_uris": [
                "https://chatgpt.com/connector_platform_oauth_redirect",
                "https://chatgpt.com/connector/oauth/c0nn3ct0r1d"
            ],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "private_key_jwt",
            "token_endpoint_auth_methods_supported": ["private_key_jwt", "none"],
            "jwks_uri": "https://chatgpt.com/oauth/jwks.json",
            "application_type": "web",
        }),
    );
    let redirect = "https://chatgpt.com/connector_platform_oauth_redirect";
    let resource = app.mcp_url("default");
    let browser = alice(&app).await;
    let url = authorization_url(
        &app,
        &client_id,
        redirect,
        &[("scope", "mcp:read mcp:tools offline_access"), ("resource", &resource)],
    );
    let code = approve(&app, &browser, &url, redirect).await;
    let tokens = redeem(&app, &client_id, ClientAuth::None, &code, redirect, &[("resource", &resource)]).await;
    assert!(tokens["refresh_token"].is_string(), "offline_access: a refresh token");
    assert_eq!(tokens["scope"], "mcp:read mcp:tools");
    let claims = decode_claims(tokens["access_token"].as_str().unwrap());
    assert_eq!(claims["aud"], resource, "the token is bound to the resource");
    assert_eq!(claims["client_id"], client_id);
    call_echo(&app, tokens["access_token"].as_str().unwrap(), &client_id, "hello from ChatGPT").await;

    // The connector-specific callback is registered too.
    let redirect = "https://chatgpt.com/connector/oauth/c0nn3ct0r1d";
    let url = authorization_url(&app, &client_id, redirect, &[("scope", "mcp:read"), ("resource", &resource)]);
    let code = approve(&app, &browser, &url, redirect).await;
    redeem(&app, &client_id, ClientAuth::None, &code, redirect, &[("resource", &resource)]).await;
});

both_backends!(cursor_with_three_redirect_uris_including_its_scheme, |app: TestApp| async move {
    let reg = registered(
        &app,
        json!({
            "client_name": "Cursor",
            "redirect_uris": [
                "cursor://anysphere.cursor-mcp/oauth/callback",
                "https://www.cursor.com/agents/mcp/oauth/callback",
                "http://localhost:8787/callback"
            ],
            "application_type": "web",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        }),
    )
    .await;
    let client_id = reg["client_id"].as_str().unwrap();
    assert_eq!(reg["redirect_uris"].as_array().unwrap().len(), 3);
    let resource = app.mcp_url("default");
    let browser = alice(&app).await;
    for (i, redirect) in
        ["cursor://anysphere.cursor-mcp/oauth/callback", "https://www.cursor.com/agents/mcp/oauth/callback"]
            .into_iter()
            .enumerate()
    {
        let url = authorization_url(&app, client_id, redirect, &[("resource", &resource)]);
        if i == 0 {
            // The browser must be allowed to follow the consent form to the app's scheme.
            let res = browser.get(&url).await;
            let csp = res.headers()["content-security-policy"].to_str().unwrap().to_owned();
            assert!(csp.contains("form-action 'self' cursor:"), "{csp}");
        }
        let code = approve(&app, &browser, &url, redirect).await;
        let tokens = redeem(&app, client_id, ClientAuth::None, &code, redirect, &[("resource", &resource)]).await;
        call_echo(&app, tokens["access_token"].as_str().unwrap(), client_id, "hello from Cursor").await;
    }
});

both_backends!(vs_code_on_a_random_loopback_port_and_on_vscode_dev, |app: TestApp| async move {
    let reg = registered(
        &app,
        json!({
            "client_name": "Visual Studio Code",
            "redirect_uris": ["https://vscode.dev/redirect", "http://127.0.0.1/", "http://127.0.0.1:33418/"],
            "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": "none",
        }),
    )
    .await;
    let client_id = reg["client_id"].as_str().unwrap();
    let resource = app.mcp_url("default");
    let browser = alice(&app).await;
    for redirect in ["http://127.0.0.1:49213/", "http://127.0.0.1:33418/", "https://vscode.dev/redirect"] {
        let url =
            authorization_url(&app, client_id, redirect, &[("scope", "mcp:read mcp:tools"), ("resource", &resource)]);
        let code = approve(&app, &browser, &url, redirect).await;
        let tokens = redeem(&app, client_id, ClientAuth::None, &code, redirect, &[("resource", &resource)]).await;
        call_echo(&app, tokens["access_token"].as_str().unwrap(), client_id, "hello from VS Code").await;
    }
});

both_backends!(mcp_remote_registers_again_after_its_client_is_removed, |app: TestApp| async move {
    // mcp-remote's registration body (its callback server on a local port).
    let body = json!({
        "redirect_uris": ["http://localhost:15273/oauth/callback"],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "client_name": "MCP CLI Proxy",
        "client_uri": "https://github.com/modelcontextprotocol/mcp-cli",
        "software_id": "2e6dc280-f3c3-4e01-99a7-8181dbd1d23d",
        "software_version": "0.1.29",
    });
    let reg = registered(&app, body.clone()).await;
    let client_id = reg["client_id"].as_str().unwrap().to_owned();
    assert_eq!(reg["software_id"], "2e6dc280-f3c3-4e01-99a7-8181dbd1d23d");
    let redirect = "http://localhost:15273/oauth/callback";
    let resource = app.mcp_url("default");
    let browser = alice(&app).await;
    let url =
        authorization_url(&app, &client_id, redirect, &[("scope", "mcp:read mcp:tools"), ("resource", &resource)]);
    let code = approve(&app, &browser, &url, redirect).await;
    let tokens = redeem(&app, &client_id, ClientAuth::None, &code, redirect, &[("resource", &resource)]).await;
    call_echo(&app, tokens["access_token"].as_str().unwrap(), &client_id, "hello through mcp-remote").await;

    // An operator removes the client; mcp-remote still has it cached in ~/.mcp-auth.
    assert!(app.state.store.delete_client(&client_id).await.unwrap());
    let res = token_request(
        &app,
        &client_id,
        ClientAuth::None,
        &[("grant_type", "refresh_token"), ("refresh_token", tokens["refresh_token"].as_str().unwrap())],
    )
    .await;
    assert_eq!(res.status(), 401);
    let err: Value = res.json().await.unwrap();
    assert_eq!(err["error"], "invalid_client", "the SDK re-registers on invalid_client: {err}");
    // The access token died with its grant.
    let probe = crate::gateway::rpc(
        &app,
        "default",
        tokens["access_token"].as_str(),
        None,
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
    )
    .await;
    assert_eq!(probe.status, 401);
    // So it registers again, and the journey works as the first time.
    let again = registered(&app, body).await;
    let client_id = again["client_id"].as_str().unwrap();
    let url = authorization_url(&app, client_id, redirect, &[("scope", "mcp:read mcp:tools"), ("resource", &resource)]);
    let code = approve(&app, &browser, &url, redirect).await;
    let tokens = redeem(&app, client_id, ClientAuth::None, &code, redirect, &[("resource", &resource)]).await;
    call_echo(&app, tokens["access_token"].as_str().unwrap(), client_id, "hello again through mcp-remote").await;
});

both_backends!(mcp_inspector_with_its_debug_callback, |app: TestApp| async move {
    let reg = registered(
        &app,
        json!({
            "redirect_uris": ["http://localhost:6274/oauth/callback", "http://localhost:6274/oauth/callback/debug"],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "client_name": "MCP Inspector",
            "client_uri": "https://github.com/modelcontextprotocol/inspector",
        }),
    )
    .await;
    let client_id = reg["client_id"].as_str().unwrap();
    let resource = app.mcp_url("default");
    let browser = alice(&app).await;
    for redirect in ["http://localhost:6274/oauth/callback/debug", "http://localhost:6274/oauth/callback"] {
        let url =
            authorization_url(&app, client_id, redirect, &[("scope", "mcp:read mcp:tools"), ("resource", &resource)]);
        let code = approve(&app, &browser, &url, redirect).await;
        let tokens = redeem(&app, client_id, ClientAuth::None, &code, redirect, &[("resource", &resource)]).await;
        call_echo(&app, tokens["access_token"].as_str().unwrap(), client_id, "hello from the Inspector").await;
    }
});

/// The payload of a JWT, unverified (the gateway verifies it when the token is used).
pub fn decode_claims(jwt: &str) -> Value {
    use base64::Engine;
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}
