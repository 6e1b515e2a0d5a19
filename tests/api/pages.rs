//! The pages for people: who may see and change what, CSRF and framing defences, escaping of
//! hostile input, and what each page's forms do to the data behind it.

use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::*;

const OWNER: &str = "owen@example.com";
const OWNER_PAGES: &[&str] = &["clients", "upstreams", "upstreams/demo", "members", "audit"];
const MEMBER_PAGES: &[&str] = &["apps", "sessions", "tokens"];

/// A person with the owner role in `default`, signed in.
async fn owner(app: &TestApp) -> Browser {
    use gatehouse::workspace::{self, Role};
    let store = &app.state.store;
    let user = gatehouse::identity::create_user(store, app.clock.as_ref(), OWNER, PASSWORD, false).await.unwrap();
    let ws = store.workspace_by_slug("default").await.unwrap().unwrap();
    workspace::add_member(store, app.clock.as_ref(), &ws.id, &user.id, Role::Owner).await.unwrap();
    signed_in(app, OWNER).await
}

async fn signed_in(app: &TestApp, email: &str) -> Browser {
    let browser = Browser::new(app);
    assert_eq!(browser.login(email, PASSWORD).await.status(), 303, "{email} signs in");
    browser
}

async fn member(app: &TestApp, email: &str) -> Browser {
    app.member(email, "default").await;
    signed_in(app, email).await
}

fn page_url(app: &TestApp, path: &str) -> String {
    format!("{}/w/default/{path}", app.url)
}

/// GETs a page; returns its status and body.
async fn open(browser: &Browser, url: &str) -> (u16, String) {
    let res = browser.get(url).await;
    (res.status().as_u16(), res.text().await.unwrap())
}

/// The CSRF token the page at `url` puts in its forms.
async fn csrf(browser: &Browser, url: &str) -> String {
    let (status, html) = open(browser, url).await;
    assert_eq!(status, 200, "{url}");
    hidden_inputs(&html).into_iter().find(|(k, _)| k == "csrf").expect("a csrf field").1
}

/// The value of the input with this id (the read-only boxes that show a secret once).
fn input_value(html: &str, id: &str) -> Option<String> {
    let tag = html.split(&format!("id=\"{id}\"")).nth(1)?.split('>').next()?;
    tag.split("value=\"").nth(1)?.split('"').next().map(str::to_owned)
}

async fn post(browser: &Browser, url: &str, form: &[(&str, &str)]) -> reqwest::Response {
    browser.http.post(url).form(form).send().await.unwrap()
}

/// Connects `client` for the person signed in to `browser`: login, consent, code exchange.
async fn connect(app: &TestApp, browser: &Browser, client: &str) -> Value {
    let location = browser.authorize_and_approve(&app.authorize_url(client, &[])).await;
    let code = query_param(&location, "code").expect("a code");
    let res = app.exchange(client, &code).await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

async fn client_named(app: &TestApp, name: &str, redirect: &str) -> String {
    let res = app
        .register(json!({"client_name": name, "redirect_uris": [redirect], "token_endpoint_auth_method": "none"}))
        .await;
    assert_eq!(res.status(), 201, "{name}");
    res.json::<Value>().await.unwrap()["client_id"].as_str().unwrap().to_owned()
}

async fn user_id(app: &TestApp, email: &str) -> String {
    app.state.store.user_by_email(email).await.unwrap().unwrap().id
}

async fn live_grants(app: &TestApp, email: &str) -> usize {
    let ws = app.state.store.workspace_by_slug("default").await.unwrap().unwrap();
    let id = user_id(app, email).await;
    app.state.store.session_families(&ws.id, Some(&id), app.clock.now_secs()).await.unwrap().len()
}

both_backends!(members_get_403_on_owner_pages_and_owners_see_them, |app: TestApp| async move {
    let owner = owner(&app).await;
    let alice = member(&app, "alice@example.com").await;
    for page in OWNER_PAGES {
        let (status, html) = open(&alice, &page_url(&app, page)).await;
        assert_eq!(status, 403, "{page}");
        assert!(html.contains("You cannot open this page"), "{page}: a readable page");
        assert_eq!(open(&owner, &page_url(&app, page)).await.0, 200, "{page} for the owner");
    }
    for page in MEMBER_PAGES {
        let (status, html) = open(&alice, &page_url(&app, page)).await;
        assert_eq!(status, 200, "{page}");
        assert!(!html.contains("/w/default/members"), "{page}: owner tabs are not offered to members");
    }
    // Owner forms are refused too, with a valid token.
    let token = csrf(&alice, &page_url(&app, "apps")).await;
    for (path, form) in [
        ("members", vec![("email", "mallory@example.com"), ("role", "owner")]),
        ("upstreams", vec![("name", "evil"), ("kind", "demo")]),
        ("clients", vec![("name", "x"), ("redirect_uris", "https://x.example/cb")]),
    ] {
        let mut form = form;
        form.push(("csrf", token.as_str()));
        assert_eq!(post(&alice, &page_url(&app, path), &form).await.status(), 403, "POST {path}");
    }
    assert!(app.state.store.user_by_email("mallory@example.com").await.unwrap().is_none());
    let ws = app.state.store.workspace_by_slug("default").await.unwrap().unwrap();
    assert!(app.state.store.upstream_by_name(&ws.id, "evil").await.unwrap().is_none());

    // Someone outside the workspace sees none of it; without a session, the way is to sign in.
    app.member("olga@example.com", "other").await;
    let olga = signed_in(&app, "olga@example.com").await;
    assert_eq!(open(&olga, &page_url(&app, "apps")).await.0, 403);
    let res = app.http.get(page_url(&app, "apps")).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/login?next=%2Fw%2Fdefault%2Fapps");
});

both_backends!(members_see_and_revoke_only_their_own, |app: TestApp| async move {
    let owner = owner(&app).await;
    let alice = member(&app, "alice@example.com").await;
    let bob = member(&app, "bob@example.com").await;
    let alice_app = client_named(&app, "Alice's editor", REDIRECT).await;
    let bob_app = client_named(&app, "Bob's agent", REDIRECT).await;
    connect(&app, &alice, &alice_app).await;
    connect(&app, &bob, &bob_app).await;

    for page in ["apps", "sessions"] {
        let (_, html) = open(&alice, &page_url(&app, page)).await;
        assert!(html.contains("Alice&#39;s editor") || html.contains("Alice&#x27;s editor"), "{page}: her own app");
        assert!(!html.contains("Bob"), "{page}: nothing of Bob's");
        let (_, html) = open(&owner, &page_url(&app, page)).await;
        assert!(html.contains("Bob&#39;s agent") || html.contains("Bob&#x27;s agent"), "{page}: the owner sees Bob's");
        assert!(html.contains("bob@example.com") && html.contains("alice@example.com"), "{page}");
    }

    // Alice forges a revoke of Bob's app and of Bob's session: refused, nothing changes.
    let token = csrf(&alice, &page_url(&app, "apps")).await;
    let bob_id = user_id(&app, "bob@example.com").await;
    let res = post(
        &alice,
        &page_url(&app, "apps/revoke"),
        &[("csrf", &token), ("client_id", &bob_app), ("user_id", &bob_id)],
    )
    .await;
    assert_eq!(res.status(), 403);
    let ws = app.state.store.workspace_by_slug("default").await.unwrap().unwrap();
    let bob_grant = app.state.store.session_families(&ws.id, Some(&bob_id), app.clock.now_secs()).await.unwrap();
    let res =
        post(&alice, &page_url(&app, "sessions/revoke"), &[("csrf", &token), ("grant_id", &bob_grant[0].grant_id)])
            .await;
    assert_eq!(res.status(), 404);
    assert_eq!(live_grants(&app, "bob@example.com").await, 1, "Bob's session survives");
    assert!(app.state.store.consented_scope(&bob_id, &bob_app, &ws.id).await.unwrap().is_some());

    // Her own: revoked, and the consent is forgotten (the app must ask again).
    let alice_id = user_id(&app, "alice@example.com").await;
    let res = post(
        &alice,
        &page_url(&app, "apps/revoke"),
        &[("csrf", &token), ("client_id", &alice_app), ("user_id", &alice_id)],
    )
    .await;
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/w/default/apps?done=app-revoked");
    assert_eq!(live_grants(&app, "alice@example.com").await, 0);
    assert!(alice.consent_form(&app.authorize_url(&alice_app, &[])).await.is_ok(), "consent is asked again");

    // The owner revokes Bob's one session from the Sessions page.
    let token = csrf(&owner, &page_url(&app, "sessions")).await;
    let res =
        post(&owner, &page_url(&app, "sessions/revoke"), &[("csrf", &token), ("grant_id", &bob_grant[0].grant_id)])
            .await;
    assert_eq!(res.status(), 303);
    assert_eq!(live_grants(&app, "bob@example.com").await, 0);
});

both_backends!(forms_without_a_valid_csrf_token_are_refused, |app: TestApp| async move {
    let owner = owner(&app).await;
    let alice = member(&app, "alice@example.com").await;
    let owner_token = csrf(&owner, &page_url(&app, "members")).await;
    let alice_token = csrf(&alice, &page_url(&app, "apps")).await;
    for form in [
        vec![("email", "eve@example.com"), ("role", "member")],
        vec![("email", "eve@example.com"), ("role", "member"), ("csrf", "gh_forged_token.bm90IGEgbWFj")],
        // A real token, of another session.
        vec![("email", "eve@example.com"), ("role", "member"), ("csrf", alice_token.as_str())],
    ] {
        let res = post(&owner, &page_url(&app, "members"), &form).await;
        assert_eq!(res.status(), 403, "{form:?}");
        assert!(res.text().await.unwrap().contains("This form has expired"));
    }
    // The right token from another site's page: the browser says where the form came from.
    let res = owner
        .http
        .post(page_url(&app, "members"))
        .header("origin", "https://evil.example")
        .form(&[("email", "eve@example.com"), ("role", "member"), ("csrf", owner_token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    // Not even a session: the same answer, no redirect to follow.
    let res = app.http.post(page_url(&app, "members")).form(&[("email", "eve@example.com")]).send().await.unwrap();
    assert_eq!(res.status(), 403);
    assert!(app.state.store.user_by_email("eve@example.com").await.unwrap().is_none(), "nothing was written");

    // With its own token (and Origin: null, as chromium sends under no-referrer) it works.
    let res = owner
        .http
        .post(page_url(&app, "members"))
        .header("origin", "null")
        .form(&[("email", "eve@example.com"), ("role", "member"), ("csrf", owner_token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(app.state.store.user_by_email("eve@example.com").await.unwrap().is_some());

    // Sign-out takes the page token; a forged one does not sign anyone out.
    assert_eq!(post(&owner, &format!("{}/logout", app.url), &[("csrf", "forged")]).await.status(), 403);
    assert_eq!(open(&owner, &page_url(&app, "apps")).await.0, 200, "still signed in");
    assert_eq!(post(&owner, &format!("{}/logout", app.url), &[("csrf", &owner_token)]).await.status(), 303);
    assert_eq!(owner.get(&page_url(&app, "apps")).await.status(), 303, "signed out");
});

both_backends!(every_page_refuses_framing_and_inline_script, |app: TestApp| async move {
    let owner = owner(&app).await;
    let mut urls: Vec<String> = OWNER_PAGES.iter().chain(MEMBER_PAGES).map(|p| page_url(&app, p)).collect();
    urls.extend([format!("{}/", app.url), format!("{}/account", app.url), format!("{}/login", app.url)]);
    for url in urls {
        let res = owner.get(&url).await;
        assert!(res.status().is_success() || res.status().is_redirection(), "{url}");
        assert_eq!(res.headers()["x-frame-options"], "DENY", "{url}");
        let csp = res.headers()["content-security-policy"].to_str().unwrap().to_owned();
        assert!(csp.contains("frame-ancestors 'none'"), "{url}: {csp}");
        assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{url}: {csp}");
        let html = res.text().await.unwrap();
        assert!(!html.contains("<script>"), "{url}: no inline script");
    }
    let script = app.http.get(format!("{}/static/copy.js", app.url)).send().await.unwrap();
    assert_eq!(script.status(), 200);
    assert!(script.headers()["content-type"].to_str().unwrap().starts_with("text/javascript"));
});

both_backends!(script_in_names_uris_and_emails_is_escaped, |app: TestApp| async move {
    const XSS: &str = "<script>alert(1)</script>";
    // askama writes `<` and `>` as numeric character references.
    const SHOWN: &str = "&#60;script&#62;alert(1)&#60;/script&#62;";
    let owner = owner(&app).await;
    // A client named like a script, with a redirect URI carrying one in its query.
    let evil_redirect = format!("https://app.example/cb?q={XSS}");
    let res = app
        .register(json!({"client_name": XSS, "redirect_uris": [evil_redirect], "token_endpoint_auth_method": "none"}))
        .await;
    assert_eq!(res.status(), 201);
    let client = res.json::<Value>().await.unwrap()["client_id"].as_str().unwrap().to_owned();
    let authorize = app.authorize_url_replacing(&client, &[("redirect_uri", Some(&evil_redirect))]);
    let consent = owner.get(&authorize).await.text().await.unwrap();
    assert!(consent.contains(&format!("<span class=\"client\">{SHOWN}</span>")), "the name is shown, escaped");
    assert!(consent.contains(&format!("https://app.example/cb?q={SHOWN}")), "the redirect URI, escaped");
    let form = hidden_inputs(&consent);
    let res = owner.decide(form, "approve").await;
    assert_eq!(res.status(), 303);

    // An account whose email is a script, added on the Members page.
    let token = csrf(&owner, &page_url(&app, "members")).await;
    let evil_email = format!("{XSS}@example.com");
    let res =
        post(&owner, &page_url(&app, "members"), &[("csrf", &token), ("email", &evil_email), ("role", "member")]).await;
    assert_eq!(res.status(), 200);
    let members_page = res.text().await.unwrap();
    // And a failed sign-in as that address, reflected on the login page and in the audit log.
    let res = Browser::new(&app).login(&evil_email, "wrong password").await;
    assert_eq!(res.status(), 401);
    let login_page = res.text().await.unwrap();

    let mut pages = vec![("consent", consent), ("members", members_page), ("login", login_page)];
    for page in ["apps", "sessions", "clients", "members", "audit"] {
        pages.push((page, open(&owner, &page_url(&app, page)).await.1));
    }
    for (name, html) in &pages {
        assert!(!html.contains(XSS), "{name}: the script is never echoed raw");
        assert!(!html.contains("<script>alert"), "{name}");
    }
    for name in ["apps", "clients", "audit"] {
        let html = &pages.iter().find(|(n, _)| *n == name).unwrap().1;
        assert!(html.contains(SHOWN), "{name} shows the name, escaped");
    }
    let clients = &pages.iter().find(|(n, _)| *n == "clients").unwrap().1;
    assert!(clients.contains(&format!("https://app.example/cb?q={SHOWN}")), "the redirect URI, escaped");
    let audit = &pages.iter().find(|(n, _)| *n == "audit").unwrap().1;
    assert!(audit.contains(&format!("{SHOWN}@example.com")), "the email, escaped");
    let members = &pages.iter().find(|(n, _)| *n == "members").unwrap().1;
    assert!(members.contains(&format!("{SHOWN}@example.com")), "the email, escaped");
});

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
    assert!(bad.text().await.unwrap().contains("uses http on a non-loopback host"));
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
