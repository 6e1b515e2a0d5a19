//! The pages for people: who may see and change what, CSRF and framing defences, escaping of
//! hostile input. What each page's forms do is in `page_forms`; the helpers here serve both.

use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::*;

pub const OWNER: &str = "owen@example.com";
pub const OWNER_PAGES: &[&str] = &["clients", "upstreams", "upstreams/demo", "members", "audit"];
pub const MEMBER_PAGES: &[&str] = &["apps", "sessions", "tokens"];

/// A person with the owner role in `default`, signed in.
pub async fn owner(app: &TestApp) -> Browser {
    use gatehouse::workspace::{self, Role};
    let store = &app.state.store;
    let user = gatehouse::identity::create_user(store, app.clock.as_ref(), OWNER, PASSWORD, false).await.unwrap();
    let ws = store.workspace_by_slug("default").await.unwrap().unwrap();
    workspace::add_member(store, app.clock.as_ref(), &ws.id, &user.id, Role::Owner).await.unwrap();
    signed_in(app, OWNER).await
}

pub async fn signed_in(app: &TestApp, email: &str) -> Browser {
    let browser = Browser::new(app);
    assert_eq!(browser.login(email, PASSWORD).await.status(), 303, "{email} signs in");
    browser
}

pub async fn member(app: &TestApp, email: &str) -> Browser {
    app.member(email, "default").await;
    signed_in(app, email).await
}

pub fn page_url(app: &TestApp, path: &str) -> String {
    format!("{}/w/default/{path}", app.url)
}

/// GETs a page; returns its status and body.
pub async fn open(browser: &Browser, url: &str) -> (u16, String) {
    let res = browser.get(url).await;
    (res.status().as_u16(), res.text().await.unwrap())
}

/// The CSRF token the page at `url` puts in its forms.
pub async fn csrf(browser: &Browser, url: &str) -> String {
    let (status, html) = open(browser, url).await;
    assert_eq!(status, 200, "{url}");
    hidden_inputs(&html).into_iter().find(|(k, _)| k == "csrf").expect("a csrf field").1
}

/// The value of the input with this id (the read-only boxes that show a secret once).
pub fn input_value(html: &str, id: &str) -> Option<String> {
    let tag = html.split(&format!("id=\"{id}\"")).nth(1)?.split('>').next()?;
    tag.split("value=\"").nth(1)?.split('"').next().map(str::to_owned)
}

pub async fn post(browser: &Browser, url: &str, form: &[(&str, &str)]) -> reqwest::Response {
    browser.http.post(url).form(form).send().await.unwrap()
}

/// Connects `client` for the person signed in to `browser`: login, consent, code exchange.
pub async fn connect(app: &TestApp, browser: &Browser, client: &str) -> Value {
    let location = browser.authorize_and_approve(&app.authorize_url(client, &[])).await;
    let code = query_param(&location, "code").expect("a code");
    let res = app.exchange(client, &code).await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

pub async fn client_named(app: &TestApp, name: &str, redirect: &str) -> String {
    let res = app
        .register(json!({"client_name": name, "redirect_uris": [redirect], "token_endpoint_auth_method": "none"}))
        .await;
    assert_eq!(res.status(), 201, "{name}");
    res.json::<Value>().await.unwrap()["client_id"].as_str().unwrap().to_owned()
}

pub async fn user_id(app: &TestApp, email: &str) -> String {
    app.state.store.user_by_email(email).await.unwrap().unwrap().id
}

pub async fn live_grants(app: &TestApp, email: &str) -> usize {
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
    // A redirect URI carrying a script in its query is not how a browser writes a URL (it
    // would percent-encode `<`), so registration refuses it outright.
    let res = app
        .register(json!({"client_name": "x", "redirect_uris": [format!("https://app.example/cb?q={XSS}")], "token_endpoint_auth_method": "none"}))
        .await;
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_redirect_uri");
    // A client named like a script, with a redirect URI whose query needs escaping in HTML.
    let evil_redirect = "https://app.example/cb?a=1&b=2".to_owned();
    let res = app
        .register(json!({"client_name": XSS, "redirect_uris": [evil_redirect], "token_endpoint_auth_method": "none"}))
        .await;
    assert_eq!(res.status(), 201);
    let client = res.json::<Value>().await.unwrap()["client_id"].as_str().unwrap().to_owned();
    let authorize = app.authorize_url_replacing(&client, &[("redirect_uri", Some(&evil_redirect))]);
    let consent = owner.get(&authorize).await.text().await.unwrap();
    assert!(consent.contains(&format!("<span class=\"client\">{SHOWN}</span>")), "the name is shown, escaped");
    assert!(consent.contains("https://app.example/cb?a=1&#38;b=2"), "the redirect URI, escaped");
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
    assert!(clients.contains("https://app.example/cb?a=1&#38;b=2"), "the redirect URI, escaped");
    let audit = &pages.iter().find(|(n, _)| *n == "audit").unwrap().1;
    assert!(audit.contains(&format!("{SHOWN}@example.com")), "the email, escaped");
    let members = &pages.iter().find(|(n, _)| *n == "members").unwrap().1;
    assert!(members.contains(&format!("{SHOWN}@example.com")), "the email, escaped");
});
