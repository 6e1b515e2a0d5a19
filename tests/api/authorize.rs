//! `/authorize`, the consent page and the login page: what may redirect where, what is shown
//! as a page instead, and the CSRF and framing defences around them.

use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::*;

const LOOPBACK_ANY_PORT: &str = "http://127.0.0.1/callback";

/// An error page for the person, not a redirect to anyone.
async fn assert_error_page(res: reqwest::Response, status: u16) -> String {
    assert_eq!(res.status().as_u16(), status);
    assert!(res.headers().get("location").is_none(), "an error page, never a redirect");
    let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/html"), "{ct}");
    res.text().await.unwrap()
}

/// A redirect back to the client at `redirect` carrying `error`, `state` and `iss`.
fn assert_error_redirect(app: &TestApp, res: &reqwest::Response, redirect: &str, error: &str) -> String {
    assert_eq!(res.status(), 303);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(redirect), "{location}");
    assert_eq!(query_param(&location, "error").as_deref(), Some(error), "{location}");
    assert_eq!(query_param(&location, "state").as_deref(), Some("xyz"), "state comes back: {location}");
    assert_eq!(query_param(&location, "iss").as_deref(), Some(app.url.as_str()), "RFC 9207 iss: {location}");
    assert!(query_param(&location, "code").is_none());
    location
}

fn session_cookie_set(res: &reqwest::Response) -> bool {
    res.headers().get_all("set-cookie").iter().any(|v| v.to_str().unwrap_or_default().starts_with("gatehouse_session="))
}

async fn client_with(app: &TestApp, redirect_uris: Value) -> String {
    let res = app
        .register(
            json!({"client_name": "Native app", "redirect_uris": redirect_uris, "token_endpoint_auth_method": "none"}),
        )
        .await;
    assert_eq!(res.status(), 201);
    res.json::<Value>().await.unwrap()["client_id"].as_str().unwrap().to_owned()
}

async fn alice(app: &TestApp) -> Browser {
    app.member("alice@example.com", "default").await;
    let browser = Browser::new(app);
    assert_eq!(browser.login("alice@example.com", PASSWORD).await.status(), 303);
    browser
}

both_backends!(unknown_or_missing_client_is_a_page_not_a_redirect, |app: TestApp| async move {
    let browser = alice(&app).await;
    for url in [
        app.authorize_url("no-such-client", &[]),
        app.authorize_url("00000000-0000-0000-0000-000000000000", &[]),
        app.authorize_url_replacing("x", &[("client_id", None)]),
    ] {
        assert_error_page(app.http.get(&url).send().await.unwrap(), 400).await;
        assert_error_page(browser.get(&url).await, 400).await;
    }
    assert_eq!(app.count_rows("authorization_codes").await, 0);
});

both_backends!(unregistered_redirect_uri_is_a_page_not_a_redirect, |app: TestApp| async move {
    let browser = alice(&app).await;
    let client = app.public_client().await;
    for evil in [
        "https://evil.example/callback",
        "http://127.0.0.1:4567/callback/x",
        "http://127.0.0.1:4567/callback?x=1",
        "http://127.0.0.1:4567/callback#frag",
        "http://localhost:4567/callback",
        "https://127.0.0.1:4567/callback",
        "http://127.0.0.1.evil.example:4567/callback",
        "javascript:alert(1)",
        "/callback",
    ] {
        let url = app.authorize_url_replacing(&client, &[("redirect_uri", Some(evil))]);
        // Even with an error elsewhere in the request, nothing is sent to the unregistered URI.
        let broken =
            app.authorize_url_replacing(&client, &[("redirect_uri", Some(evil)), ("response_type", Some("token"))]);
        assert_error_page(browser.get(&url).await, 400).await;
        assert_error_page(browser.get(&broken).await, 400).await;
        assert_error_page(app.http.get(&url).send().await.unwrap(), 400).await;
    }
    assert_eq!(app.count_rows("authorization_codes").await, 0);
});

both_backends!(loopback_redirects_may_use_any_port_but_nothing_else, |app: TestApp| async move {
    let browser = alice(&app).await;
    let client = client_with(&app, json!([LOOPBACK_ANY_PORT])).await;
    let ephemeral = "http://127.0.0.1:53123/callback";
    let url = app.authorize_url_replacing(&client, &[("redirect_uri", Some(ephemeral))]);
    let location = browser.authorize_and_approve(&url).await;
    assert!(location.starts_with(&format!("{ephemeral}?")), "{location}");
    assert_eq!(query_param(&location, "iss").as_deref(), Some(app.url.as_str()));
    let code = query_param(&location, "code").expect("a code");
    let res = app
        .token(&[
            ("grant_type", "authorization_code"),
            ("client_id", &client),
            ("code", &code),
            ("redirect_uri", ephemeral),
            ("code_verifier", VERIFIER),
        ])
        .await;
    assert_eq!(res.status(), 200, "RFC 8252 §7.3: the port may vary");

    for other in [
        "http://127.0.0.1:53123/other",
        "http://127.0.0.1:53123/callback/",
        "http://localhost:53123/callback",
        "http://127.0.0.2:53123/callback",
        "http://[::1]:53123/callback",
        "https://127.0.0.1:53123/callback",
        "http://127.0.0.1:53123/callback?x=1",
        "http://evil@127.0.0.1:53123/callback",
    ] {
        let url = app.authorize_url_replacing(&client, &[("redirect_uri", Some(other))]);
        assert_error_page(browser.get(&url).await, 400).await;
    }
});

both_backends!(signing_in_first_resumes_the_authorization, |app: TestApp| async move {
    app.member("alice@example.com", "default").await;
    let client = app.public_client().await;
    let browser = Browser::new(&app);
    let res = browser.get(&app.authorize_url(&client, &[])).await;
    assert_eq!(res.status(), 303);
    let to_login = res.headers()["location"].to_str().unwrap().to_owned();
    assert!(to_login.starts_with("/login?next="), "{to_login}");
    let next = query_param(&format!("{}{to_login}", app.url), "next").unwrap();
    assert!(next.starts_with("/authorize?"), "{next}");
    assert_eq!(app.count_rows("authorization_codes").await, 0);

    // The login page carries `next`; signing in goes back to /authorize.
    let page = browser.get(&format!("{}{to_login}", app.url)).await.text().await.unwrap();
    // (askama writes `&` as `&#38;`, which a browser decodes before posting.)
    let mut form: Vec<(String, String)> =
        hidden_inputs(&page).into_iter().map(|(k, v)| (k, v.replace("&#38;", "&"))).collect();
    assert!(form.iter().any(|(k, v)| k == "next" && *v == next), "{form:?}");
    form.retain(|(k, _)| k != "email");
    form.push(("email".into(), "alice@example.com".into()));
    form.push(("password".into(), PASSWORD.into()));
    let res = browser.http.post(format!("{}/login", app.url)).form(&form).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert!(session_cookie_set(&res));
    assert_eq!(res.headers()["location"].to_str().unwrap(), next);

    let consent = browser.consent_form(&format!("{}{next}", app.url)).await.expect("the consent page");
    let res = browser.decide(consent, "approve").await;
    assert_eq!(res.status(), 303);
    let location = res.headers()["location"].to_str().unwrap();
    assert!(location.starts_with(REDIRECT));
    assert_eq!(query_param(location, "state").as_deref(), Some("xyz"));
    assert_eq!(query_param(location, "iss").as_deref(), Some(app.url.as_str()));
    let code = query_param(location, "code").unwrap();
    assert_eq!(app.exchange(&client, &code).await.status(), 200);
});

both_backends!(foreign_resource_is_invalid_target, |app: TestApp| async move {
    let browser = alice(&app).await;
    let client = app.public_client().await;
    let ours_with_query = format!("{}?x=1", app.mcp_url("default"));
    let ours_with_fragment = format!("{}#f", app.mcp_url("default"));
    let other_port = app.mcp_url("default").replace("127.0.0.1:", "127.0.0.1:1");
    for resource in [
        "https://evil.example/t/default/mcp",
        "http://evil.example/t/default/mcp",
        ours_with_query.as_str(),
        ours_with_fragment.as_str(),
        other_port.as_str(),
        "not a url",
    ] {
        let url = app.authorize_url_replacing(&client, &[("resource", Some(resource))]);
        // Checked before anyone signs in, and with someone signed in.
        assert_error_redirect(&app, &app.http.get(&url).send().await.unwrap(), REDIRECT, "invalid_target");
        assert_error_redirect(&app, &browser.get(&url).await, REDIRECT, "invalid_target");
    }
    assert_eq!(app.count_rows("authorization_codes").await, 0);
});

both_backends!(workspace_the_person_is_not_in_is_invalid_target, |app: TestApp| async move {
    let browser = alice(&app).await;
    app.member("bob@example.com", "bobs").await;
    let client = app.public_client().await;
    for slug in ["bobs", "nonexistent"] {
        let url = app.authorize_url_replacing(&client, &[("resource", Some(&app.mcp_url(slug)))]);
        assert_error_redirect(&app, &browser.get(&url).await, REDIRECT, "invalid_target");
    }
    assert_eq!(app.count_rows("authorization_codes").await, 0);
    // Her own workspace still works.
    assert!(browser.consent_form(&app.authorize_url(&client, &[])).await.is_ok());
});

both_backends!(resource_is_canonicalised_and_the_audience_is_the_published_url, |app: TestApp| async move {
    let browser = alice(&app).await;
    let client = app.public_client().await;
    let canonical = app.mcp_url("default");
    let variants = [
        format!("{canonical}/"),
        canonical.replacen("http://", "HTTP://", 1),
        format!("{}/", canonical.replacen("http://", "HtTp://", 1)),
    ];
    for resource in &variants {
        let url = app.authorize_url_replacing(&client, &[("resource", Some(resource)), ("prompt", Some("consent"))]);
        let location = browser.authorize_and_approve(&url).await;
        let code = query_param(&location, "code").unwrap_or_else(|| panic!("{resource} accepted: {location}"));
        let res = app.exchange(&client, &code).await;
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        let claims =
            app.state.keys.verify(body["access_token"].as_str().unwrap(), &app.url, app.clock.now_secs()).unwrap();
        assert_eq!(claims.aud, canonical, "aud is exactly the published MCP URL, whatever spelling was asked for");
    }
});

both_backends!(deny_returns_access_denied_and_remembers_nothing, |app: TestApp| async move {
    let browser = alice(&app).await;
    let client = app.public_client().await;
    let form = browser.consent_form(&app.authorize_url(&client, &[])).await.expect("consent page");
    let res = browser.decide(form, "deny").await;
    assert_error_redirect(&app, &res, REDIRECT, "access_denied");
    let user = app.state.store.user_by_email("alice@example.com").await.unwrap().unwrap();
    let ws = app.state.store.workspace_by_slug("default").await.unwrap().unwrap();
    assert!(app.state.store.consented_scope(&user.id, &client, &ws.id).await.unwrap().is_none());
    assert_eq!(app.count_rows("authorization_codes").await, 0);
    // The next attempt asks again.
    assert!(browser.consent_form(&app.authorize_url(&client, &[])).await.is_ok());
});

both_backends!(consent_form_from_another_session_is_refused, |app: TestApp| async move {
    let browser_a = alice(&app).await;
    app.member("bob@example.com", "default").await;
    let browser_b = Browser::new(&app);
    browser_b.login("bob@example.com", PASSWORD).await;
    let client = app.public_client().await;
    let form_a = browser_a.consent_form(&app.authorize_url(&client, &[])).await.expect("consent page");
    let request = form_a.iter().find(|(k, _)| k == "request").expect("a signed request").1.clone();

    // Bob's browser posts Alice's form.
    let res = browser_b.decide(vec![("request".into(), request.clone())], "approve").await;
    assert_error_page(res, 403).await;
    // A tampered form in Alice's own session.
    let mut tampered = request.clone();
    tampered.insert(0, 'A');
    assert_error_page(browser_a.decide(vec![("request".into(), tampered)], "approve").await, 403).await;
    // No session at all.
    let res = app
        .http
        .post(format!("{}/authorize/consent", app.url))
        .form(&[("request", request.as_str()), ("decision", "approve")])
        .send()
        .await
        .unwrap();
    assert!(res.status().is_client_error());
    assert!(res.headers().get("location").is_none());

    assert_eq!(app.count_rows("authorization_codes").await, 0, "no code was issued");
    let ws = app.state.store.workspace_by_slug("default").await.unwrap().unwrap();
    for email in ["alice@example.com", "bob@example.com"] {
        let user = app.state.store.user_by_email(email).await.unwrap().unwrap();
        assert!(app.state.store.consented_scope(&user.id, &client, &ws.id).await.unwrap().is_none(), "{email}");
    }
    // Alice's own form still works.
    let res = browser_a.decide(form_a, "approve").await;
    assert_eq!(res.status(), 303);
    assert!(query_param(res.headers()["location"].to_str().unwrap(), "code").is_some());
});

both_backends!(consent_page_cannot_be_framed, |app: TestApp| async move {
    let browser = alice(&app).await;
    let client = app.public_client().await;
    let res = browser.get(&app.authorize_url(&client, &[])).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-frame-options"], "DENY");
    let csp = res.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(res.headers()["cache-control"], "no-store");
    let login = Browser::new(&app).get(&format!("{}/login", app.url)).await;
    assert_eq!(login.headers()["x-frame-options"], "DENY");
    assert!(login.headers()["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
});

both_backends!(wrong_password_is_401_without_a_session, |app: TestApp| async move {
    app.member("alice@example.com", "default").await;
    let browser = Browser::new(&app);
    for (email, password) in
        [("alice@example.com", "wrong password here"), ("nobody@example.com", PASSWORD), ("alice@example.com", "")]
    {
        let res = browser.login(email, password).await;
        assert!(!session_cookie_set(&res), "no session cookie");
        assert_error_page(res, 401).await;
    }
    assert_eq!(app.count_rows("browser_sessions").await, 0);
    // Still signed out: the home page sends to the login page.
    let home = browser.get(&format!("{}/", app.url)).await;
    assert_eq!(home.status(), 303);
    assert_eq!(home.headers()["location"], "/login");
    // The right password works afterwards, with a cookie scripts and other sites cannot use.
    let res = browser.login("alice@example.com", PASSWORD).await;
    assert_eq!(res.status(), 303);
    let cookie = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("gatehouse_session="))
        .expect("a session cookie");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(cookie.contains("Path=/"), "{cookie}");
});

both_backends!(login_without_csrf_token_is_403, |app: TestApp| async move {
    app.member("alice@example.com", "default").await;
    let creds = [("email", "alice@example.com"), ("password", PASSWORD)];
    // No cookie, no field (a cross-site form post).
    let fresh = Browser::new(&app);
    let res = fresh.http.post(format!("{}/login", app.url)).form(&creds).send().await.unwrap();
    assert!(!session_cookie_set(&res));
    assert_error_page(res, 403).await;
    // Cookie but no field, and cookie with a different field.
    let browser = Browser::new(&app);
    let page = browser.get(&format!("{}/login", app.url)).await.text().await.unwrap();
    let csrf = hidden_inputs(&page).into_iter().find(|(k, _)| k == "csrf").unwrap().1;
    let res = browser.http.post(format!("{}/login", app.url)).form(&creds).send().await.unwrap();
    assert_error_page(res, 403).await;
    let forged = [creds.as_slice(), &[("csrf", "gh_sess_forgedforgedforgedforgedforgedforged")]].concat();
    let res = browser.http.post(format!("{}/login", app.url)).form(&forged).send().await.unwrap();
    assert!(!session_cookie_set(&res));
    assert_error_page(res, 403).await;
    // Field but no cookie (the attacker knows a token, not the victim's cookie).
    let stolen = [creds.as_slice(), &[("csrf", csrf.as_str())]].concat();
    let res = fresh.http.post(format!("{}/login", app.url)).form(&stolen).send().await.unwrap();
    assert_error_page(res, 403).await;
    assert_eq!(app.count_rows("browser_sessions").await, 0);
    // With both, it works.
    let res = browser.http.post(format!("{}/login", app.url)).form(&stolen).send().await.unwrap();
    assert_eq!(res.status(), 303);
});

both_backends!(login_next_cannot_leave_the_site, |app: TestApp| async move {
    app.member("alice@example.com", "default").await;
    let browser = Browser::new(&app);
    let page = browser.get(&format!("{}/login?next=//evil.example", app.url)).await.text().await.unwrap();
    let mut form = hidden_inputs(&page);
    assert!(form.iter().any(|(k, v)| k == "next" && v == "/"), "{form:?}");
    form.retain(|(k, _)| k != "email" && k != "next");
    form.push(("email".into(), "alice@example.com".into()));
    form.push(("password".into(), PASSWORD.into()));
    for next in [
        "//evil.example",
        "//evil.example/path",
        "/\\evil.example",
        "https://evil.example/",
        "javascript:alert(1)",
        "evil.example",
        "\t//evil.example",
        "/\t/evil.example",
    ] {
        let mut f = form.clone();
        f.push(("next".into(), next.into()));
        let res = browser.http.post(format!("{}/login", app.url)).form(&f).send().await.unwrap();
        assert_eq!(res.status(), 303);
        assert_eq!(res.headers()["location"], "/", "next={next:?}");
    }
    // Already signed in, the login page's own redirect is just as careful.
    let res = browser.get(&format!("{}/login?next=%2F%2Fevil.example", app.url)).await;
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/");
    let res = browser.get(&format!("{}/login?next=%2Fauthorize%3Fx%3D1", app.url)).await;
    assert_eq!(res.headers()["location"], "/authorize?x=1", "same-site paths are kept");
});

both_backends!(response_type_token_is_unsupported, |app: TestApp| async move {
    let browser = alice(&app).await;
    let client = app.public_client().await;
    for rt in ["token", "code token", "id_token", "code id_token"] {
        let url = app.authorize_url_replacing(&client, &[("response_type", Some(rt))]);
        assert_error_redirect(&app, &browser.get(&url).await, REDIRECT, "unsupported_response_type");
        assert_error_redirect(&app, &app.http.get(&url).send().await.unwrap(), REDIRECT, "unsupported_response_type");
    }
    let url = app.authorize_url_replacing(&client, &[("response_type", None)]);
    assert_error_redirect(&app, &browser.get(&url).await, REDIRECT, "invalid_request");
    assert_eq!(app.count_rows("authorization_codes").await, 0);
});

both_backends!(every_redirect_to_the_client_carries_iss, |app: TestApp| async move {
    let browser = alice(&app).await;
    let client = app.public_client().await;
    let iss = Some(app.url.clone());
    // Success (first with consent, then remembered), scope error, prompt=none error.
    let first = browser.authorize_and_approve(&app.authorize_url(&client, &[])).await;
    assert_eq!(query_param(&first, "iss"), iss);
    let second = browser.consent_form(&app.authorize_url(&client, &[])).await.expect_err("remembered");
    assert_eq!(query_param(&second, "iss"), iss);
    assert!(query_param(&second, "code").is_some());
    let res = browser.get(&app.authorize_url_replacing(&client, &[("scope", Some("admin"))])).await;
    assert_error_redirect(&app, &res, REDIRECT, "invalid_scope");
    let res = app.http.get(app.authorize_url(&client, &[("prompt", "none")])).send().await.unwrap();
    assert_error_redirect(&app, &res, REDIRECT, "login_required");
    let res = browser
        .get(&app.authorize_url_replacing(
            &client,
            &[("state", None), ("scope", Some("mcp:resources")), ("prompt", Some("none"))],
        ))
        .await;
    assert_eq!(res.status(), 303);
    let location = res.headers()["location"].to_str().unwrap();
    assert_eq!(query_param(location, "iss"), iss, "{location}");
    assert_eq!(query_param(location, "error").as_deref(), Some("consent_required"));
    assert!(query_param(location, "state").is_none());
});

both_backends!(state_comes_back_verbatim_and_safely_encoded, |app: TestApp| async move {
    let browser = alice(&app).await;
    let client = app.public_client().await;
    for state in ["a b&c=d#e", "\"><script>alert(1)</script>", "x\r\nSet-Cookie: evil=1", "caf\u{e9} \u{1f600}"] {
        let url = app.authorize_url_replacing(&client, &[("state", Some(state)), ("prompt", Some("consent"))]);
        let location = browser.authorize_and_approve(&url).await;
        assert!(
            !location.contains('\r') && !location.contains('\n') && !location.contains('<') && !location.contains(' '),
            "{location}"
        );
        assert_eq!(query_param(&location, "state").as_deref(), Some(state), "{location}");
        assert!(query_param(&location, "code").is_some());
        // And on an error redirect.
        let url = app.authorize_url_replacing(&client, &[("state", Some(state)), ("response_type", Some("token"))]);
        let res = browser.get(&url).await;
        assert!(res.headers().get("set-cookie").is_none_or(|c| !c.to_str().unwrap_or_default().contains("evil")));
        let location = res.headers()["location"].to_str().unwrap();
        assert_eq!(query_param(location, "state").as_deref(), Some(state), "{location}");
        assert_eq!(query_param(location, "error").as_deref(), Some("unsupported_response_type"));
    }
});

both_backends!(prompt_none_answers_without_showing_a_page, |app: TestApp| async move {
    app.member("alice@example.com", "default").await;
    let client = app.public_client().await;
    let anonymous = Browser::new(&app);
    let res = anonymous.get(&app.authorize_url(&client, &[("prompt", "none")])).await;
    assert_eq!(res.status(), 303);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(REDIRECT), "{location}");
    assert_eq!(query_param(&location, "error").as_deref(), Some("login_required"));
    assert_eq!(query_param(&location, "state").as_deref(), Some("xyz"));

    let browser = Browser::new(&app);
    browser.login("alice@example.com", PASSWORD).await;
    let location = browser.consent_form(&app.authorize_url(&client, &[("prompt", "none")])).await.unwrap_err();
    assert_eq!(query_param(&location, "error").as_deref(), Some("consent_required"));
    assert_eq!(query_param(&location, "iss").as_deref(), Some(app.url.as_str()));
});
