//! What the forms of the pages do to the data behind them: clients, machine tokens, members,
//! the audit log and the account page.

use serde_json::Value;

use crate::both_backends;
use crate::helpers::*;
use crate::pages::*;

both_backends!(revoke_consent_keeps_the_client_and_delete_forces_a_new_registration, |app: TestApp| async move {
    let owner = owner(&app).await;
    let client = client_named(&app, "Desktop app", REDIRECT).await;
    let tokens = connect(&app, &owner, &client).await;
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();

    let token = csrf(&owner, &page_url(&app, "clients")).await;
    let res = post(&owner, &page_url(&app, "clients/revoke"), &[("csrf", &token), ("client_id", &client)]).await;
    assert_eq!(res.status(), 303);
    assert!(app.state.store.client_by_id(&client).await.unwrap().is_some(), "the registration stays");
    let res = app.token(&[("grant_type", "refresh_token"), ("client_id", &client), ("refresh_token", &refresh)]).await;
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_grant", "its session is gone");
    assert!(owner.consent_form(&app.authorize_url(&client, &[])).await.is_ok(), "consent is asked again");

    let tokens = connect(&app, &owner, &client).await;
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    let res = post(&owner, &page_url(&app, "clients/delete"), &[("csrf", &token), ("client_id", &client)]).await;
    assert_eq!(res.status(), 303);
    assert!(app.state.store.client_by_id(&client).await.unwrap().is_none());
    let res = app.token(&[("grant_type", "refresh_token"), ("client_id", &client), ("refresh_token", &refresh)]).await;
    assert_eq!(res.status(), 401);
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_client", "the next connection must register");
    assert_eq!(app.count_rows("grants").await, 0, "its grants went with it");

    // A client also used in another workspace is not the owner's to delete.
    let shared = client_named(&app, "Shared app", REDIRECT).await;
    connect(&app, &owner, &shared).await;
    app.member("olga@example.com", "other").await;
    let olga = signed_in(&app, "olga@example.com").await;
    let url = app.authorize_url_replacing(&shared, &[("resource", Some(&app.mcp_url("other")))]);
    let location = olga.authorize_and_approve(&url).await;
    assert!(query_param(&location, "code").is_some());
    let res = post(&owner, &page_url(&app, "clients/delete"), &[("csrf", &token), ("client_id", &shared)]).await;
    assert_eq!(res.status(), 403);
    assert!(app.state.store.client_by_id(&shared).await.unwrap().is_some());
});

both_backends!(preregistered_clients_show_their_secret_once_and_stay_in_their_workspace, |app: TestApp| async move {
    let owner = owner(&app).await;
    let token = csrf(&owner, &page_url(&app, "clients")).await;
    let bad = post(
        &owner,
        &page_url(&app, "clients"),
        &[("csrf", &token), ("name", "Bad"), ("redirect_uris", "http://app.example/cb"), ("type", "public")],
    )
    .await;
    assert_eq!(bad.status(), 422);
    assert!(bad.text().await.unwrap().contains("uses http on a host other than 127.0.0.1"));
    let res = post(
        &owner,
        &page_url(&app, "clients"),
        &[("csrf", &token), ("name", "Reports"), ("redirect_uris", REDIRECT), ("type", "confidential")],
    )
    .await;
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    let secret = input_value(&html, "new-client-secret").expect("the secret, shown");
    assert!(secret.starts_with("gh_cs_"));
    let client_id = input_value(&html, "new-client-id");
    let row = app
        .state
        .store
        .clients_in_workspace(&app.state.store.workspace_by_slug("default").await.unwrap().unwrap().id)
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.client_name == "Reports")
        .unwrap();
    assert_eq!(client_id.as_deref(), Some(row.id.as_str()));
    assert_eq!(row.source, "admin");
    assert!(!open(&owner, &page_url(&app, "clients")).await.1.contains(&secret), "shown once");

    // It authorizes and redeems with its secret in its own workspace only.
    let location = owner.authorize_and_approve(&app.authorize_url(&row.id, &[])).await;
    let code = query_param(&location, "code").expect("a code");
    let res = app
        .http
        .post(format!("{}/token", app.url))
        .basic_auth(&row.id, Some(&secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    app.member(OWNER, "other").await;
    let elsewhere = app.authorize_url_replacing(&row.id, &[("resource", Some(&app.mcp_url("other")))]);
    let location = owner.authorize_and_approve(&elsewhere).await;
    assert_eq!(query_param(&location, "error").as_deref(), Some("invalid_target"));
});

both_backends!(machine_tokens_default_to_90_days_and_are_capped_at_a_year, |app: TestApp| async move {
    let alice = member(&app, "alice@example.com").await;
    let token = csrf(&alice, &page_url(&app, "tokens")).await;
    let too_long = post(
        &alice,
        &page_url(&app, "tokens"),
        &[("csrf", &token), ("name", "ci"), ("scope", "mcp:read"), ("days", "366")],
    )
    .await;
    assert_eq!(too_long.status(), 422);
    assert!(too_long.text().await.unwrap().contains("between 1 and 365 days"));
    let res = post(
        &alice,
        &page_url(&app, "tokens"),
        &[("csrf", &token), ("name", "ci"), ("scope", "mcp:read"), ("scope", "mcp:tools")],
    )
    .await;
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    let secret = input_value(&html, "new-token").expect("shown once");
    let ws = app.state.store.workspace_by_slug("default").await.unwrap().unwrap();
    let listed = app.state.store.machine_tokens_listed(&ws.id, None).await.unwrap();
    let (row, creator) = &listed[0];
    assert_eq!(row.expires_at - row.created_at, 90 * 86_400);
    assert_eq!(row.scope, "mcp:read mcp:tools");
    assert_eq!(creator.as_deref(), Some("alice@example.com"));
    assert_eq!(row.token_hash, gatehouse::crypto::hash_secret(&secret), "stored as a hash");
    assert!(!open(&alice, &page_url(&app, "tokens")).await.1.contains(&secret), "never shown again");

    // Bob cannot see or revoke it; the owner can.
    let bob = member(&app, "bob@example.com").await;
    assert!(!open(&bob, &page_url(&app, "tokens")).await.1.contains(">ci<"));
    let bob_token = csrf(&bob, &page_url(&app, "tokens")).await;
    let res = post(&bob, &page_url(&app, "tokens/revoke"), &[("csrf", &bob_token), ("id", &row.id)]).await;
    assert_eq!(res.status(), 404);
    let owner = owner(&app).await;
    let owner_token = csrf(&owner, &page_url(&app, "tokens")).await;
    assert!(open(&owner, &page_url(&app, "tokens")).await.1.contains("alice@example.com"));
    let res = post(&owner, &page_url(&app, "tokens/revoke"), &[("csrf", &owner_token), ("id", &row.id)]).await;
    assert_eq!(res.status(), 303);
    let listed = app.state.store.machine_tokens_listed(&ws.id, None).await.unwrap();
    assert!(listed[0].0.revoked_at.is_some());
});

both_backends!(members_are_added_by_email_and_removal_revokes_their_access, |app: TestApp| async move {
    let owner = owner(&app).await;
    let token = csrf(&owner, &page_url(&app, "members")).await;
    let res = post(
        &owner,
        &page_url(&app, "members"),
        &[("csrf", &token), ("email", "New.Person@Example.com"), ("role", "member")],
    )
    .await;
    assert_eq!(res.status(), 200);
    let password = input_value(&res.text().await.unwrap(), "new-password").expect("a first password, shown once");
    let html = open(&owner, &page_url(&app, "members")).await.1;
    assert!(html.contains("new.person@example.com"), "emails are stored in lower case");
    assert!(!html.contains(&password), "shown once");
    assert_eq!(Browser::new(&app).login("new.person@example.com", &password).await.status(), 303, "it works");

    // The first-run admin owns `default` too; once removed, Owen is the last owner, who
    // cannot be removed or demoted.
    let admin_id = user_id(&app, gatehouse::app::BOOTSTRAP_ADMIN_EMAIL).await;
    let res = post(&owner, &page_url(&app, "members/remove"), &[("csrf", &token), ("user_id", &admin_id)]).await;
    assert_eq!(res.status(), 303);
    let owner_id = user_id(&app, OWNER).await;
    let res = post(&owner, &page_url(&app, "members/remove"), &[("csrf", &token), ("user_id", &owner_id)]).await;
    assert_eq!(res.status(), 409);
    let res =
        post(&owner, &page_url(&app, "members/role"), &[("csrf", &token), ("user_id", &owner_id), ("role", "member")])
            .await;
    assert_eq!(res.status(), 409);

    // Removing Alice revokes her sessions here at once.
    let alice = member(&app, "alice@example.com").await;
    let client = app.public_client().await;
    let tokens = connect(&app, &alice, &client).await;
    assert_eq!(live_grants(&app, "alice@example.com").await, 1);
    let alice_id = user_id(&app, "alice@example.com").await;
    let res =
        post(&owner, &page_url(&app, "members/role"), &[("csrf", &token), ("user_id", &alice_id), ("role", "owner")])
            .await;
    assert_eq!(res.status(), 303);
    assert_eq!(open(&alice, &page_url(&app, "members")).await.0, 200, "an owner now");
    let res = post(&owner, &page_url(&app, "members/remove"), &[("csrf", &token), ("user_id", &alice_id)]).await;
    assert_eq!(res.status(), 303);
    assert_eq!(live_grants(&app, "alice@example.com").await, 0);
    assert_eq!(open(&alice, &page_url(&app, "apps")).await.0, 403, "no longer a member");
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let res = app.token(&[("grant_type", "refresh_token"), ("client_id", &client), ("refresh_token", refresh)]).await;
    assert_eq!(res.status(), 400);
});

both_backends!(the_audit_log_records_security_events_and_filters_them, |app: TestApp| async move {
    let owner = owner(&app).await;
    app.member("alice@example.com", "default").await;
    assert_eq!(Browser::new(&app).login("alice@example.com", "wrong password").await.status(), 401);
    let alice = signed_in(&app, "alice@example.com").await;
    let client = client_named(&app, "Audited app", REDIRECT).await;
    let tokens = connect(&app, &alice, &client).await;
    // A refresh token replayed after its grace period: the family is revoked and it is logged.
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    let form = [("grant_type", "refresh_token"), ("client_id", client.as_str()), ("refresh_token", refresh.as_str())];
    assert_eq!(app.token(&form).await.status(), 200);
    app.clock.advance(60);
    assert_eq!(app.token(&form).await.status(), 400);

    let ws = app.state.store.workspace_by_slug("default").await.unwrap().unwrap();
    let all = app
        .state
        .store
        .audit_events(&gatehouse::store::AuditQuery { workspace_id: ws.id.clone(), limit: 100, ..Default::default() })
        .await
        .unwrap();
    let kinds: Vec<&str> = all.iter().map(|e| e.kind.as_str()).collect();
    for kind in
        ["sign_in_failed", "sign_in", "client_registered", "consent_granted", "token_issued", "refresh_reuse_detected"]
    {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    let reuse = all.iter().find(|e| e.kind == "refresh_reuse_detected").unwrap();
    assert_eq!(reuse.workspace_id.as_deref(), Some(ws.id.as_str()));
    assert_eq!(reuse.source.as_deref(), Some("127.0.0.1"));
    assert_eq!(reuse.at, app.clock.now_secs(), "time comes from the injected clock");
    assert!(!reuse.details.contains(&refresh) && !all.iter().any(|e| e.details.contains("gh_rt_")), "no secret");

    let (status, html) = open(&owner, &format!("{}?kind=refresh_reuse_detected", page_url(&app, "audit"))).await;
    assert_eq!(status, 200);
    assert!(html.contains("Refresh token reuse detected"));
    assert!(!html.contains("<strong>Signed in</strong>"), "only the chosen kind");
    let html = open(&owner, &format!("{}?person=alice%40example.com", page_url(&app, "audit"))).await.1;
    assert!(html.contains("Sign-in failed") && html.contains("App authorized"));
    assert!(!html.contains("class=\"name\">owen@example.com<"), "only events by or about Alice");
    // Sign-ins of people outside the workspace are not its business.
    app.member("olga@example.com", "other").await;
    signed_in(&app, "olga@example.com").await;
    assert!(!open(&owner, &page_url(&app, "audit")).await.1.contains("olga@example.com"));
});

both_backends!(people_change_their_password_on_the_account_page, |app: TestApp| async move {
    let alice = member(&app, "alice@example.com").await;
    let elsewhere = signed_in(&app, "alice@example.com").await;
    let url = format!("{}/account", app.url);
    let token = csrf(&alice, &url).await;
    let change = |current: &'static str, new: &'static str, confirm: &'static str| {
        vec![("csrf", token.clone()), ("current", current.into()), ("new", new.into()), ("confirm", confirm.into())]
    };
    let submit = |form: Vec<(&'static str, String)>| {
        let http = alice.http.clone();
        let target = format!("{url}/password");
        async move { http.post(target).form(&form).send().await.unwrap() }
    };
    assert_eq!(submit(change("wrong", "a new long password", "a new long password")).await.status(), 422);
    assert_eq!(submit(change(PASSWORD, "short", "short")).await.status(), 422);
    assert_eq!(submit(change(PASSWORD, "a new long password", "another one")).await.status(), 422);
    let res = submit(change(PASSWORD, "a new long password", "a new long password")).await;
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/account?done=password-changed");
    assert_eq!(Browser::new(&app).login("alice@example.com", PASSWORD).await.status(), 401);
    assert_eq!(Browser::new(&app).login("alice@example.com", "a new long password").await.status(), 303);
    assert_eq!(open(&alice, &url).await.0, 200, "this session goes on");
    assert_eq!(elsewhere.get(&url).await.status(), 303, "other sessions are signed out");
});
