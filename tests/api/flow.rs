//! The whole authorization-code journey and what follows it: refresh rotation, reuse
//! detection, revocation, introspection, remembered consent, machine clients and tokens.

use serde_json::Value;

use crate::both_backends;
use crate::helpers::*;

async fn json(res: reqwest::Response) -> Value {
    res.json().await.unwrap()
}

both_backends!(code_flow_issues_a_resource_bound_jwt, |app: TestApp| async move {
    app.member("alice@example.com", "default").await;
    let client = app.public_client().await;
    let code = app.code_for("alice@example.com", &client).await;
    let res = app.exchange(&client, &code).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body = json(res).await;
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["scope"], "mcp:read mcp:tools");
    assert!(body["refresh_token"].as_str().unwrap().starts_with("gh_rt_"));
    let claims = app
        .state
        .keys
        .verify(body["access_token"].as_str().unwrap(), &app.url, app.clock.now_secs())
        .expect("our own JWKS verifies the token");
    assert_eq!(claims.aud, app.mcp_url("default"));
    assert_eq!(claims.client_id, client);
    assert!(claims.gid.is_some());
});

both_backends!(refresh_rotates_and_reuse_kills_the_family, |app: TestApp| async move {
    app.member("alice@example.com", "default").await;
    let client = app.public_client().await;
    let code = app.code_for("alice@example.com", &client).await;
    let first = json(app.exchange(&client, &code).await).await;
    let rt1 = first["refresh_token"].as_str().unwrap().to_owned();
    let refresh = |rt: String| {
        let app = &app;
        let client = client.clone();
        async move { app.token(&[("grant_type", "refresh_token"), ("client_id", &client), ("refresh_token", &rt)]).await }
    };
    let second = refresh(rt1.clone()).await;
    assert_eq!(second.status(), 200);
    let rt2 = json(second).await["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(rt1, rt2);

    app.clock.advance(10); // past the retry grace
    let reuse = refresh(rt1).await;
    assert_eq!(reuse.status(), 400);
    assert_eq!(json(reuse).await["error"], "invalid_grant");
    let after = refresh(rt2).await;
    assert_eq!(json(after).await["error"], "invalid_grant", "the whole family is revoked");
    // ...and so is the access token from the first exchange.
    let gid = app
        .state
        .keys
        .verify(first["access_token"].as_str().unwrap(), &app.url, app.clock.now_secs())
        .unwrap()
        .gid
        .unwrap();
    assert!(app.state.store.grant_by_id(&gid).await.unwrap().unwrap().revoked_at.is_some());
});

both_backends!(refresh_may_narrow_scope_but_never_widen, |app: TestApp| async move {
    app.member("alice@example.com", "default").await;
    let client = app.public_client().await;
    let code = app.code_for("alice@example.com", &client).await;
    let rt = json(app.exchange(&client, &code).await).await["refresh_token"].as_str().unwrap().to_owned();
    let wide = app
        .token(&[
            ("grant_type", "refresh_token"),
            ("client_id", &client),
            ("refresh_token", &rt),
            ("scope", "mcp:read mcp:resources"),
        ])
        .await;
    assert_eq!(json(wide).await["error"], "invalid_scope");
    // The refused request did not spend the token.
    let narrow = app
        .token(&[
            ("grant_type", "refresh_token"),
            ("client_id", &client),
            ("refresh_token", &rt),
            ("scope", "mcp:read"),
        ])
        .await;
    assert_eq!(narrow.status(), 200);
    let body = json(narrow).await;
    assert_eq!(body["scope"], "mcp:read");
    // The rotated refresh token keeps the original scope.
    let rt2 = body["refresh_token"].as_str().unwrap();
    let again =
        json(app.token(&[("grant_type", "refresh_token"), ("client_id", &client), ("refresh_token", rt2)]).await).await;
    assert_eq!(again["scope"], "mcp:read mcp:tools");
});

both_backends!(revocation_and_introspection, |app: TestApp| async move {
    app.member("alice@example.com", "default").await;
    let (client, secret) = app.confidential_client().await;
    let code = app.code_for("alice@example.com", &client).await;
    let tokens = json(
        app.http
            .post(format!("{}/token", app.url))
            .basic_auth(&client, Some(&secret))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", VERIFIER),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;
    let at = tokens["access_token"].as_str().unwrap();
    let rt = tokens["refresh_token"].as_str().unwrap();
    let introspect = |token: &str| {
        app.http
            .post(format!("{}/introspect", app.url))
            .basic_auth(&client, Some(&secret))
            .form(&[("token", token)])
            .send()
    };
    let active = json(introspect(at).await.unwrap()).await;
    assert_eq!(active["active"], true);
    assert_eq!(active["aud"], app.mcp_url("default"));
    assert_eq!(active["client_id"], client);
    assert_eq!(json(introspect(rt).await.unwrap()).await["active"], true);

    let revoked = app
        .http
        .post(format!("{}/revoke", app.url))
        .basic_auth(&client, Some(&secret))
        .form(&[("token", rt)])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    assert_eq!(json(introspect(at).await.unwrap()).await["active"], false, "the access token's grant is revoked");
    assert_eq!(json(introspect(rt).await.unwrap()).await["active"], false);
    let refresh = app
        .http
        .post(format!("{}/token", app.url))
        .basic_auth(&client, Some(&secret))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", rt)])
        .send()
        .await
        .unwrap();
    assert_eq!(json(refresh).await["error"], "invalid_grant");
    // Unknown tokens are answered 200 as RFC 7009 requires.
    let unknown = app
        .http
        .post(format!("{}/revoke", app.url))
        .basic_auth(&client, Some(&secret))
        .form(&[("token", "nonsense")])
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 200);
});

both_backends!(consent_is_remembered_for_the_same_scopes, |app: TestApp| async move {
    app.member("alice@example.com", "default").await;
    let client = app.public_client().await;
    let browser = Browser::new(&app);
    browser.login("alice@example.com", PASSWORD).await;
    let first = browser.consent_form(&app.authorize_url(&client, &[])).await;
    assert!(first.is_ok(), "the first authorization asks");
    browser.decide(first.unwrap(), "approve").await;
    let second = browser.consent_form(&app.authorize_url(&client, &[])).await;
    let location = second.expect_err("the second goes straight back with a code");
    assert!(query_param(&location, "code").is_some());
    assert_eq!(query_param(&location, "iss").as_deref(), Some(app.url.as_str()));
    // More scope, or prompt=consent, asks again.
    let wider =
        app.authorize_url(&client, &[]).replace("mcp%3Aread+mcp%3Atools", "mcp%3Aread+mcp%3Atools+mcp%3Aresources");
    assert!(browser.consent_form(&wider).await.is_ok());
    assert!(browser.consent_form(&app.authorize_url(&client, &[("prompt", "consent")])).await.is_ok());
});

both_backends!(client_credentials_for_operator_clients, |app: TestApp| async move {
    let (id, secret) = app.machine_client("mcp:read").await;
    let body = app.client_credentials_token(&id, &secret).await;
    assert_eq!(body["scope"], "mcp:read");
    assert!(body.get("refresh_token").is_none());
    let wide = app
        .http
        .post(format!("{}/token", app.url))
        .basic_auth(&id, Some(&secret))
        .form(&[("grant_type", "client_credentials"), ("scope", "mcp:tools")])
        .send()
        .await
        .unwrap();
    assert_eq!(json(wide).await["error"], "invalid_scope");
    // A dynamically registered public client may not use the grant.
    let public = app.public_client().await;
    let denied = app.token(&[("grant_type", "client_credentials"), ("client_id", &public)]).await;
    assert_eq!(json(denied).await["error"], "unauthorized_client");
});

both_backends!(machine_tokens_are_hashed_and_revocable, |app: TestApp| async move {
    let (token, row) = gatehouse::oauth::machine::create(
        &app.state.store,
        app.clock.as_ref(),
        "default",
        "mcp:read mcp:tools",
        90 * 86_400,
        "ci",
    )
    .await
    .unwrap();
    assert!(token.starts_with("gh_mt_"));
    assert_ne!(row.token_hash, token);
    assert_eq!(row.expires_at - row.created_at, 90 * 86_400);
    let too_long = gatehouse::oauth::machine::create(
        &app.state.store,
        app.clock.as_ref(),
        "default",
        "mcp:read",
        400 * 86_400,
        "x",
    )
    .await;
    assert!(too_long.is_err());
    let (client, secret) = app.confidential_client().await;
    let introspect = || {
        app.http
            .post(format!("{}/introspect", app.url))
            .basic_auth(&client, Some(&secret))
            .form(&[("token", &token)])
            .send()
    };
    assert_eq!(json(introspect().await.unwrap()).await["active"], true);
    assert!(app.state.store.revoke_machine_token(&row.id, app.clock.now_secs()).await.unwrap());
    assert_eq!(json(introspect().await.unwrap()).await["active"], false);
});

both_backends!(refresh_tokens_only_for_clients_that_registered_the_grant, |app: TestApp| async move {
    app.member("alice@example.com", "default").await;
    let res = app
        .register(serde_json::json!({
            "client_name": "Code only", "redirect_uris": [REDIRECT],
            "token_endpoint_auth_method": "none", "grant_types": ["authorization_code"],
        }))
        .await;
    let client = json(res).await["client_id"].as_str().unwrap().to_owned();
    let code = app.code_for("alice@example.com", &client).await;
    let body = json(app.exchange(&client, &code).await).await;
    assert!(body["access_token"].is_string());
    assert!(body.get("refresh_token").is_none());
    let refused =
        app.token(&[("grant_type", "refresh_token"), ("client_id", &client), ("refresh_token", "gh_rt_x")]).await;
    assert_eq!(json(refused).await["error"], "unauthorized_client");
    // Registering without grant_types gets both, and the response says so.
    let default = json(
        app.register(serde_json::json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"})).await,
    )
    .await;
    assert_eq!(default["grant_types"], serde_json::json!(["authorization_code", "refresh_token"]));
    assert_eq!(default["application_type"], "native");
});
