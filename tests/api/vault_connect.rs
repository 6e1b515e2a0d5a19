//! The Connect button: a person links their own account at an upstream's authorization
//! server (another Gatehouse, playing the upstream service), through real browsers with
//! cookies on both sides. State: random, single use, ten minutes, bound to the browser session.

use gatehouse::gateway::registry;
use gatehouse::gateway::upstream::UpstreamSpec;
use gatehouse::vault::{AuthMethod, GrantKind, OAuthCredential, Owner};
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::*;

struct Setup {
    upstream: TestApp,
    upstream_id: String,
}

/// The gateway gets upstream `up` (the other Gatehouse's MCP endpoint) whose people sign in
/// at the other Gatehouse, registered there as a public client with our callback.
async fn setup(app: &TestApp) -> Setup {
    let upstream = TestApp::spawn(Backend::Sqlite).await;
    let callback = format!("{}/oauth/upstream/callback", app.url);
    let res = upstream
        .register(json!({"client_name": "Gatehouse gateway", "redirect_uris": [callback], "token_endpoint_auth_method": "none"}))
        .await;
    assert_eq!(res.status(), 201);
    let client: Value = res.json().await.unwrap();
    let store = &app.state.store;
    let ws = store.workspace_by_slug("default").await.unwrap().unwrap();
    let spec = UpstreamSpec::Http { url: upstream.mcp_url("default"), headers: vec![] };
    let row = registry::add(store, &app.state.sealer, app.clock.as_ref(), &ws.id, "up", &spec).await.unwrap();
    let credential = OAuthCredential {
        grant: GrantKind::AuthorizationCode,
        issuer: Some(upstream.url.clone()),
        authorization_endpoint: Some(format!("{}/authorize", upstream.url)),
        token_endpoint: format!("{}/token", upstream.url),
        client_id: client["client_id"].as_str().unwrap().to_owned(),
        client_secret: None,
        private_key: None,
        auth_method: AuthMethod::None,
        scope: Some("mcp:read mcp:tools".into()),
        resource: Some(upstream.mcp_url("default")),
        audience: None,
    };
    app.state.vault.set_credential(&row.id, &credential).await.unwrap();
    upstream.member("alice-upstream@example.com", "default").await;
    Setup { upstream, upstream_id: row.id }
}

/// Alice, signed in to the gateway, presses Connect; returns the upstream's authorization URL.
async fn press_connect(app: &TestApp, browser: &Browser) -> String {
    let page = browser.get(&format!("{}/w/default/upstreams/up/connect", app.url)).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("Not connected") || html.contains("Connected"), "{html}");
    let form = hidden_inputs(&html);
    let res =
        browser.http.post(format!("{}/w/default/upstreams/up/connect", app.url)).form(&form).send().await.unwrap();
    assert!(res.status().is_redirection(), "{}", res.status());
    res.headers()["location"].to_str().unwrap().to_owned()
}

/// The person signs in at the upstream and approves; returns our callback URL with the code.
async fn approve_upstream(setup: &Setup, authorize_url: &str) -> String {
    let theirs = Browser::new(&setup.upstream);
    theirs.login("alice-upstream@example.com", PASSWORD).await;
    let location = theirs.authorize_and_approve(authorize_url).await;
    assert!(location.contains("/oauth/upstream/callback?"), "{location}");
    location
}

async fn alice(app: &TestApp) -> (Browser, String) {
    app.member("alice@example.com", "default").await;
    let browser = Browser::new(app);
    browser.login("alice@example.com", PASSWORD).await;
    let id = app.state.store.user_by_email("alice@example.com").await.unwrap().unwrap().id;
    (browser, id)
}

both_backends!(a_person_connects_their_upstream_account, |app: TestApp| async move {
    let setup = setup(&app).await;
    let (browser, alice_id) = alice(&app).await;
    // Browsers apply the page's form-action to the redirect after the Connect form: the page
    // must allow the upstream's authorization server (and nothing else besides itself).
    let page = browser.get(&format!("{}/w/default/upstreams/up/connect", app.url)).await;
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains(&format!("form-action 'self' {};", setup.upstream.url)), "{csp}");
    let authorize = press_connect(&app, &browser).await;
    assert!(authorize.starts_with(&format!("{}/authorize?", setup.upstream.url)), "{authorize}");
    assert_eq!(query_param(&authorize, "code_challenge_method").as_deref(), Some("S256"));
    assert_eq!(query_param(&authorize, "resource"), Some(setup.upstream.mcp_url("default")));
    let state = query_param(&authorize, "state").unwrap();
    assert!(state.len() >= 43, "a 256-bit state");
    assert_eq!(app.count_rows("upstream_oauth_states").await, 1);
    let dumped = app.count_rows(&format!("upstream_oauth_states WHERE state_hash = '{state}'")).await;
    assert_eq!(dumped, 0, "the state is stored as a hash only");

    let callback = approve_upstream(&setup, &authorize).await;
    let done = browser.get(&callback).await;
    assert_eq!(done.status(), 303, "{}", done.text().await.unwrap());
    let back = done.headers()["location"].to_str().unwrap().to_owned();
    assert!(back.ends_with("/w/default/upstreams/up/connect?done=upstream-connected"), "{back}");
    let page = browser.get(&format!("{}{back}", app.url)).await.text().await.unwrap();
    assert!(page.contains("Your account is connected") && page.contains(">Connected<"), "{page}");
    let status = app.state.vault.status(&setup.upstream_id, Owner::Person(&alice_id)).await.unwrap().unwrap();
    assert!(!status.needs_reconnect);
    assert_eq!(app.count_rows("audit_events WHERE kind = 'upstream_account_connected'").await, 1);

    // The owners' page of the upstream says how it signs in and links to the Connect page.
    let store = &app.state.store;
    let owner = gatehouse::identity::create_user(store, app.clock.as_ref(), "owner@example.com", PASSWORD, false)
        .await
        .unwrap();
    let ws = store.workspace_by_slug("default").await.unwrap().unwrap();
    gatehouse::workspace::add_member(store, app.clock.as_ref(), &ws.id, &owner.id, gatehouse::workspace::Role::Owner)
        .await
        .unwrap();
    let owners = Browser::new(&app);
    owners.login("owner@example.com", PASSWORD).await;
    let page = owners.get(&format!("{}/w/default/upstreams/up", app.url)).await.text().await.unwrap();
    assert!(page.contains("OAuth, each person connects their account"), "{page}");
    assert!(page.contains("href=\"/w/default/upstreams/up/connect\""), "{page}");

    // The same callback again is a replay: refused, and nothing changes.
    let replay = browser.get(&callback).await;
    assert_eq!(replay.status(), 400);
    assert!(replay.text().await.unwrap().contains("already used"));

    // Disconnect forgets the tokens.
    let html = browser.get(&format!("{}/w/default/upstreams/up/connect", app.url)).await.text().await.unwrap();
    let form = hidden_inputs(&html);
    let res =
        browser.http.post(format!("{}/w/default/upstreams/up/disconnect", app.url)).form(&form).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert!(app.state.vault.status(&setup.upstream_id, Owner::Person(&alice_id)).await.unwrap().is_none());
});

both_backends!(connect_state_is_bound_to_the_browser_and_expires, |app: TestApp| async move {
    let setup = setup(&app).await;
    let (browser, alice_id) = alice(&app).await;
    let authorize = press_connect(&app, &browser).await;
    let callback = approve_upstream(&setup, &authorize).await;

    // Another browser session (mallory's, or alice's other browser) cannot use it...
    app.member("mallory@example.com", "default").await;
    let mallory = Browser::new(&app);
    mallory.login("mallory@example.com", PASSWORD).await;
    let stolen = mallory.get(&callback).await;
    assert_eq!(stolen.status(), 400);
    assert!(stolen.text().await.unwrap().contains("another browser session"));
    let mallory_id = app.state.store.user_by_email("mallory@example.com").await.unwrap().unwrap().id;
    assert!(app.state.vault.status(&setup.upstream_id, Owner::Person(&mallory_id)).await.unwrap().is_none());
    // ...and without a session the browser is sent to sign in first.
    let anonymous = Browser::new(&app).get(&callback).await;
    assert!(anonymous.headers()["location"].to_str().unwrap().starts_with("/login?next="));
    // A made-up state is unknown.
    let forged = callback.replace(&query_param(&callback, "state").unwrap(), "forged-state");
    let res = browser.get(&forged).await;
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("unknown"));

    // Ten minutes later the real one has expired, even in the right browser.
    app.clock.advance(601);
    let late = browser.get(&callback).await;
    assert_eq!(late.status(), 400);
    assert!(late.text().await.unwrap().contains("expired"));
    assert!(app.state.vault.status(&setup.upstream_id, Owner::Person(&alice_id)).await.unwrap().is_none());

    // A mix-up: a response naming another issuer is refused (the state is used up by it).
    let (browser, _) = alice(&app).await;
    let authorize = press_connect(&app, &browser).await;
    let callback = approve_upstream(&setup, &authorize).await;
    let iss = query_param(&callback, "iss").expect("the upstream sends RFC 9207 iss");
    let mixed = callback
        .replace(&form_urlencoded::byte_serialize(iss.as_bytes()).collect::<String>(), "https%3A%2F%2Fevil.example");
    let res = browser.get(&mixed).await;
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("mix-up"));
});

both_backends!(connect_is_refused_for_upstreams_without_per_person_sign_in, |app: TestApp| async move {
    let (browser, _) = alice(&app).await;
    let page = browser.get(&format!("{}/w/default/upstreams/demo/connect", app.url)).await.text().await.unwrap();
    assert!(page.contains("nothing to connect"), "{page}");
    let form = hidden_inputs(&page);
    let res =
        browser.http.post(format!("{}/w/default/upstreams/demo/connect", app.url)).form(&form).send().await.unwrap();
    assert_eq!(res.status(), 422);
    // A form without the session's CSRF token is refused.
    let res = browser
        .http
        .post(format!("{}/w/default/upstreams/demo/connect", app.url))
        .form(&[("csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(app.count_rows("upstream_oauth_states").await, 0);
});

both_backends!(
    an_upstream_that_answers_401_is_discovered_and_registered_on_connect,
    settings = |s: &mut gatehouse::config::Settings| s.cimd.allow_loopback_hosts = vec!["127.0.0.1".into()],
    |app: TestApp| async move {
        // No sign-in settings at all: only the upstream's 401 says what it wants.
        let upstream = TestApp::spawn(Backend::Sqlite).await;
        upstream.member("alice-upstream@example.com", "default").await;
        let store = &app.state.store;
        let ws = store.workspace_by_slug("default").await.unwrap().unwrap();
        let spec = UpstreamSpec::Http { url: upstream.mcp_url("default"), headers: vec![] };
        let row = registry::add(store, &app.state.sealer, app.clock.as_ref(), &ws.id, "up", &spec).await.unwrap();
        let (browser, alice_id) = alice(&app).await;
        let setup = Setup { upstream, upstream_id: row.id.clone() };
        // The first press discovers and registers, then comes back to the page: the page it was
        // pressed on could not allow the then unknown server in its form-action (browsers would
        // block the redirect), the page now does.
        let back = press_connect(&app, &browser).await;
        assert_eq!(back, "/w/default/upstreams/up/connect?done=upstream-discovered");
        let page = browser.get(&format!("{}{back}", app.url)).await;
        let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
        assert!(csp.contains(&format!("form-action 'self' {};", setup.upstream.url)), "{csp}");
        assert!(page.text().await.unwrap().contains("Press Connect to sign in"));
        let authorize = press_connect(&app, &browser).await;
        assert!(authorize.starts_with(&format!("{}/authorize?", setup.upstream.url)), "{authorize}");
        assert_eq!(query_param(&authorize, "resource"), Some(setup.upstream.mcp_url("default")));
        let scope = query_param(&authorize, "scope");
        assert_eq!(
            scope.as_deref(),
            Some("mcp:read mcp:tools offline_access"),
            "the challenge, plus offline_access the server offers"
        );
        let credential = app.state.vault.credential(&row.id).await.unwrap().unwrap();
        assert_eq!(credential.grant, GrantKind::AuthorizationCode);
        assert_eq!(credential.token_endpoint, format!("{}/token", setup.upstream.url));
        let registered = setup.upstream.state.store.client_by_id(&credential.client_id).await.unwrap();
        assert!(registered.is_some(), "registered at the upstream by DCR");
        let callback = approve_upstream(&setup, &authorize).await;
        assert_eq!(browser.get(&callback).await.status(), 303);
        let status = app.state.vault.status(&row.id, Owner::Person(&alice_id)).await.unwrap().unwrap();
        assert!(!status.needs_reconnect);
    }
);
