//! Hostile and broken requests to `/token` (and the PKCE checks at `/authorize`): each must be
//! refused with the RFC status and `error` code, never a 500, always `Cache-Control: no-store`,
//! and must leave nothing half-written behind.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use crate::both_backends;
use crate::helpers::*;

/// Checks an RFC 6749 §5.2 error answer from the token endpoint and returns its body.
async fn token_error(res: reqwest::Response, status: u16, code: &str) -> Value {
    let got = res.status().as_u16();
    assert_ne!(got, 500, "never a server error");
    let no_store = res.headers().get("cache-control").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let content_type = res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let text = res.text().await.unwrap();
    assert_eq!(got, status, "status for {code}; body: {text}");
    assert_eq!(no_store.as_deref(), Some("no-store"), "every /token answer is no-store; body: {text}");
    assert!(content_type.starts_with("application/json"), "an OAuth error is JSON, got `{content_type}`: {text}");
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    assert_eq!(body["error"], code, "{text}");
    body
}

async fn ok_tokens(res: reqwest::Response) -> Value {
    let status = res.status();
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    body
}

fn token_url(app: &TestApp) -> String {
    format!("{}/token", app.url)
}

/// A raw POST to /token with an exact body and content type.
async fn raw_token(app: &TestApp, content_type: Option<&str>, body: impl Into<reqwest::Body>) -> reqwest::Response {
    let mut req = app.http.post(token_url(app)).body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    req.send().await.unwrap()
}

/// Asserts a redirect back to the client carrying `error`, `state` and `iss`, and no code.
fn assert_error_redirect(app: &TestApp, res: &reqwest::Response, error: &str) {
    assert_eq!(res.status(), 303, "errors after the redirect URI is checked go back to the client");
    let location = res.headers()["location"].to_str().unwrap();
    assert!(location.starts_with(REDIRECT), "{location}");
    assert_eq!(query_param(location, "error").as_deref(), Some(error), "{location}");
    assert_eq!(query_param(location, "state").as_deref(), Some("xyz"));
    assert_eq!(query_param(location, "iss").as_deref(), Some(app.url.as_str()));
    assert!(query_param(location, "code").is_none());
}

/// A signed-in member with a public client: (client_id, browser).
async fn signed_in(app: &TestApp) -> (String, Browser) {
    app.member("alice@example.com", "default").await;
    let client = app.public_client().await;
    let browser = Browser::new(app);
    assert_eq!(browser.login("alice@example.com", PASSWORD).await.status(), 303);
    (client, browser)
}

async fn next_code(app: &TestApp, browser: &Browser, client: &str) -> String {
    let location = browser.authorize_and_approve(&app.authorize_url(client, &[])).await;
    query_param(&location, "code").expect("a code")
}

both_backends!(missing_code_verifier_is_invalid_request_and_spends_nothing, |app: TestApp| async move {
    let (client, browser) = signed_in(&app).await;
    let code = next_code(&app, &browser, &client).await;
    let res = app
        .token(&[
            ("grant_type", "authorization_code"),
            ("client_id", &client),
            ("code", &code),
            ("redirect_uri", REDIRECT),
        ])
        .await;
    token_error(res, 400, "invalid_request").await;
    assert_eq!(app.count_rows("grants").await, 0);
    // A malformed request is refused before the code is looked at, so it is still good.
    ok_tokens(app.exchange(&client, &code).await).await;
});

both_backends!(wrong_code_verifier_is_invalid_grant_and_spends_the_code, |app: TestApp| async move {
    let (client, browser) = signed_in(&app).await;
    for wrong in [
        "another-pkce-code-verifier-with-enough-entropy-but-not-the-one",
        "short",
        "has spaces in it which are not allowed by rfc 7636 section 4.1 ok",
        &"a".repeat(129),
    ] {
        let code = next_code(&app, &browser, &client).await;
        let res = app
            .token(&[
                ("grant_type", "authorization_code"),
                ("client_id", &client),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", wrong),
            ])
            .await;
        token_error(res, 400, "invalid_grant").await;
        // The code was consumed by the failed attempt: the right verifier cannot rescue it.
        token_error(app.exchange(&client, &code).await, 400, "invalid_grant").await;
    }
    assert_eq!(app.count_rows("grants").await, 0, "no grant was issued");
    assert_eq!(app.count_rows("refresh_tokens").await, 0);
});

both_backends!(pkce_plain_and_missing_challenge_are_refused_at_authorize, |app: TestApp| async move {
    let (client, browser) = signed_in(&app).await;
    let cases: Vec<Vec<(&str, Option<&str>)>> = vec![
        vec![("code_challenge_method", Some("plain")), ("code_challenge", Some(VERIFIER))],
        vec![("code_challenge_method", Some("plain"))],
        vec![("code_challenge_method", Some("s256"))],
        vec![("code_challenge", None)],
        vec![("code_challenge", None), ("code_challenge_method", None)],
        vec![("code_challenge_method", None)],
        vec![("code_challenge", Some("too-short"))],
    ];
    for case in cases {
        let url = app.authorize_url_replacing(&client, &case);
        // Refused whether or not someone is signed in, before any consent is shown.
        assert_error_redirect(&app, &app.http.get(&url).send().await.unwrap(), "invalid_request");
        assert_error_redirect(&app, &browser.get(&url).await, "invalid_request");
    }
    assert_eq!(app.count_rows("authorization_codes").await, 0);
});

both_backends!(redirect_uri_must_match_exactly_at_token, |app: TestApp| async move {
    let (client, browser) = signed_in(&app).await;
    for wrong in [
        "http://127.0.0.1:4567/other",
        "http://127.0.0.1:9999/callback",
        "http://localhost:4567/callback",
        "https://evil.example/callback",
    ] {
        let code = next_code(&app, &browser, &client).await;
        let res = app
            .token(&[
                ("grant_type", "authorization_code"),
                ("client_id", &client),
                ("code", &code),
                ("redirect_uri", wrong),
                ("code_verifier", VERIFIER),
            ])
            .await;
        token_error(res, 400, "invalid_grant").await;
    }
    assert_eq!(app.count_rows("grants").await, 0);
});

both_backends!(replayed_code_is_refused_and_revokes_what_it_issued, |app: TestApp| async move {
    let (client, browser) = signed_in(&app).await;
    let code = next_code(&app, &browser, &client).await;
    let first = ok_tokens(app.exchange(&client, &code).await).await;
    let rt = first["refresh_token"].as_str().unwrap();
    let gid = app
        .state
        .keys
        .verify(first["access_token"].as_str().unwrap(), &app.url, app.clock.now_secs())
        .unwrap()
        .gid
        .unwrap();
    assert!(app.state.store.grant_by_id(&gid).await.unwrap().unwrap().revoked_at.is_none());

    app.clock.advance(5);
    token_error(app.exchange(&client, &code).await, 400, "invalid_grant").await;
    let grant = app.state.store.grant_by_id(&gid).await.unwrap().unwrap();
    assert!(grant.revoked_at.is_some(), "RFC 6749 §4.1.2: tokens issued from a replayed code are revoked");
    let refresh = app.token(&[("grant_type", "refresh_token"), ("client_id", &client), ("refresh_token", rt)]).await;
    token_error(refresh, 400, "invalid_grant").await;
    // A third presentation is refused too.
    token_error(app.exchange(&client, &code).await, 400, "invalid_grant").await;
    assert_eq!(app.count_rows("grants").await, 1, "the replay issued nothing new");
});

both_backends!(expired_code_is_invalid_grant, |app: TestApp| async move {
    let (client, browser) = signed_in(&app).await;
    // Just inside the 60 s lifetime it still works...
    let code = next_code(&app, &browser, &client).await;
    app.clock.advance(59);
    ok_tokens(app.exchange(&client, &code).await).await;
    // ...past it, it does not.
    let code = next_code(&app, &browser, &client).await;
    app.clock.advance(61);
    token_error(app.exchange(&client, &code).await, 400, "invalid_grant").await;
    assert_eq!(app.count_rows("grants").await, 1);
});

both_backends!(code_of_one_client_is_useless_to_another, |app: TestApp| async move {
    let (client_a, browser) = signed_in(&app).await;
    let client_b = app.public_client().await;
    let (conf_c, secret_c) = app.confidential_client().await;

    let code = next_code(&app, &browser, &client_a).await;
    token_error(app.exchange(&client_b, &code).await, 400, "invalid_grant").await;
    assert_eq!(app.count_rows("grants").await, 0);
    // The attempt spent the code (a stolen code cannot be tried twice).
    token_error(app.exchange(&client_a, &code).await, 400, "invalid_grant").await;

    let code = next_code(&app, &browser, &client_a).await;
    let res = app
        .http
        .post(token_url(&app))
        .basic_auth(&conf_c, Some(&secret_c))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap();
    token_error(res, 400, "invalid_grant").await;
    assert_eq!(app.count_rows("grants").await, 0);
});

both_backends!(wrong_client_secret_is_401_invalid_client, |app: TestApp| async move {
    app.member("alice@example.com", "default").await;
    let (client, secret) = app.confidential_client().await;
    let browser = Browser::new(&app);
    browser.login("alice@example.com", PASSWORD).await;
    let code = next_code(&app, &browser, &client).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ];

    let attempts = [
        app.http.post(token_url(&app)).basic_auth(&client, Some("gh_cs_wrong")).form(&form),
        app.http.post(token_url(&app)).basic_auth(&client, Some(format!("{secret}x"))).form(&form),
        app.http.post(token_url(&app)).basic_auth(&client, None::<&str>).form(&form),
        app.http
            .post(token_url(&app))
            .form(&[form.as_slice(), &[("client_id", client.as_str()), ("client_secret", "nope")]].concat()),
        // A confidential client that sends no secret at all.
        app.http.post(token_url(&app)).form(&[form.as_slice(), &[("client_id", client.as_str())]].concat()),
    ];
    for req in attempts {
        let res = req.send().await.unwrap();
        let challenge = res.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned());
        token_error(res, 401, "invalid_client").await;
        assert!(
            challenge.is_some_and(|c| c.to_ascii_lowercase().starts_with("basic")),
            "RFC 6749 §5.2: 401 carries WWW-Authenticate"
        );
    }
    // Authentication failed before the code was touched: the real client can still use it.
    let res = app.http.post(token_url(&app)).basic_auth(&client, Some(&secret)).form(&form).send().await.unwrap();
    ok_tokens(res).await;
});

both_backends!(unknown_client_id_is_401_invalid_client, |app: TestApp| async move {
    let (client, browser) = signed_in(&app).await;
    let code = next_code(&app, &browser, &client).await;
    for unknown in ["no-such-client", "00000000-0000-0000-0000-000000000000", &format!("{client} ")] {
        let res = app.exchange(unknown, &code).await;
        let challenge = res.headers().get("www-authenticate").cloned();
        token_error(res, 401, "invalid_client").await;
        assert!(challenge.is_some());
    }
    // No client_id at all (and no Basic credentials).
    let res = app
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ])
        .await;
    token_error(res, 401, "invalid_client").await;
    ok_tokens(app.exchange(&client, &code).await).await;
});

both_backends!(unsupported_and_missing_grant_types, |app: TestApp| async move {
    let client = app.public_client().await;
    for grant_type in [
        "password",
        "implicit",
        "urn:ietf:params:oauth:grant-type:device_code",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "AUTHORIZATION_CODE",
    ] {
        let res = app
            .token(&[("grant_type", grant_type), ("client_id", &client), ("username", "a"), ("password", "b")])
            .await;
        token_error(res, 400, "unsupported_grant_type").await;
    }
    token_error(app.token(&[("client_id", &client)]).await, 400, "invalid_request").await;
    token_error(app.token(&[("grant_type", ""), ("client_id", &client)]).await, 400, "invalid_request").await;
});

both_backends!(json_and_other_content_types_are_invalid_request, |app: TestApp| async move {
    let (client, browser) = signed_in(&app).await;
    let code = next_code(&app, &browser, &client).await;
    let body = serde_json::json!({
        "grant_type": "authorization_code", "client_id": client, "code": code,
        "redirect_uri": REDIRECT, "code_verifier": VERIFIER,
    });
    let res = app.http.post(token_url(&app)).json(&body).send().await.unwrap();
    token_error(res, 400, "invalid_request").await;
    let form = serde_urlencoded::to_string([
        ("grant_type", "authorization_code"),
        ("client_id", client.as_str()),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ])
    .unwrap();
    for ct in
        [None, Some("text/plain"), Some("multipart/form-data; boundary=x"), Some("application/x-www-form-urlencodedx")]
    {
        token_error(raw_token(&app, ct, form.clone()).await, 400, "invalid_request").await;
    }
    // None of these touched the code.
    assert_eq!(app.count_rows("grants").await, 0);
    let res = raw_token(&app, Some("application/x-www-form-urlencoded; charset=UTF-8"), form).await;
    ok_tokens(res).await;
});

both_backends!(oversized_bodies_are_413_json_never_500, |app: TestApp| async move {
    let client = app.public_client().await;
    let big = "a".repeat(100 * 1024);
    let form = format!("grant_type=refresh_token&client_id={client}&refresh_token={big}");
    token_error(raw_token(&app, Some("application/x-www-form-urlencoded"), form).await, 413, "invalid_request").await;

    let before = app.count_rows("oauth_clients").await;
    let doc =
        serde_json::json!({"client_name": big, "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"});
    let res = app.register(doc).await;
    assert_eq!(res.status(), 413);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_request");
    assert_eq!(app.count_rows("oauth_clients").await, before, "nothing registered");

    // The server is still fine afterwards.
    token_error(
        app.token(&[("grant_type", "refresh_token"), ("client_id", &client), ("refresh_token", "x")]).await,
        400,
        "invalid_grant",
    )
    .await;
});

both_backends!(bodies_beyond_the_global_limit_are_oauth_errors_too, |app: TestApp| async move {
    let client = app.public_client().await;
    // 1 MB, far past the endpoint's 16 KB: the answer must still be an RFC 6749 JSON error
    // with no-store, not a bare text 413, and reach a client that sends it all.
    let huge = format!("grant_type=refresh_token&client_id={client}&refresh_token={}", "a".repeat(1024 * 1024));
    token_error(raw_token(&app, Some("application/x-www-form-urlencoded"), huge).await, 413, "invalid_request").await;
    let doc = serde_json::json!({"client_name": "a".repeat(1024 * 1024), "redirect_uris": [REDIRECT]});
    let res = app.register(doc).await;
    assert_eq!(res.status(), 413);
    let ct = res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert!(ct.starts_with("application/json"), "RFC 7591 §3.2.2 errors are JSON, got `{ct}`");
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_request");
    assert_eq!(app.count_rows("oauth_clients").await, 1);
});

/// Reads one HTTP/1.1 answer with a `Content-Length` off `tcp`: (status, body).
async fn read_answer(tcp: &mut tokio::net::TcpStream) -> (u16, String) {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = tcp.read(&mut chunk).await.expect("the answer, not a reset");
        assert!(n > 0, "the connection closed before an answer: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&got[..head_end]).to_lowercase();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status line");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("a content-length");
    while got.len() < head_end + length {
        let n = tcp.read(&mut chunk).await.expect("the body, not a reset");
        assert!(n > 0, "the connection closed inside the body");
        got.extend_from_slice(&chunk[..n]);
    }
    (status, String::from_utf8_lossy(&got[head_end..head_end + length]).into_owned())
}

/// A form POST to `/token` on `host`, framed by `framing` (a `content-length` or
/// `transfer-encoding` header line).
fn token_post_head(host: &str, framing: &str) -> String {
    format!(
        "POST /token HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/x-www-form-urlencoded\r\n{framing}\r\n\r\n"
    )
}

/// Sends a small `/token` request on `tcp` and expects its `invalid_grant`: the connection
/// still works.
async fn connection_serves_on(tcp: &mut tokio::net::TcpStream, host: &str, client: &str) {
    use tokio::io::AsyncWriteExt;
    let form = format!("grant_type=refresh_token&client_id={client}&refresh_token=x");
    let next = token_post_head(host, &format!("content-length: {}", form.len())) + &form;
    tcp.write_all(next.as_bytes()).await.expect("the connection is still open");
    let (status, body) = read_answer(tcp).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["error"], "invalid_grant");
}

both_backends!(a_refused_body_is_drained_so_its_connection_serves_on, |app: TestApp| async move {
    use tokio::io::AsyncWriteExt;
    // A client that sends the whole of an oversized body must read our 413, not a connection
    // reset; and having sent it, its connection takes the next request.
    let client = app.public_client().await;
    let host = app.url.trim_start_matches("http://").to_owned();
    let length = 1024 * 1024;

    // An announced length is enough to refuse: the answer comes before the body is sent.
    let mut tcp = tokio::net::TcpStream::connect(&host).await.unwrap();
    tcp.write_all(token_post_head(&host, &format!("content-length: {length}")).as_bytes()).await.unwrap();
    let (status, body) = read_answer(&mut tcp).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["error"], "invalid_request");
    // The client sends the body anyway, as clients that do not wait for an answer do.
    tcp.write_all(&vec![b'a'; length]).await.expect("the server takes the rest of the body");
    connection_serves_on(&mut tcp, &host, &client).await;

    // Chunked, the size is only known once past the limit: all of it is sent before reading.
    let mut tcp = tokio::net::TcpStream::connect(&host).await.unwrap();
    let mut request = token_post_head(&host, "transfer-encoding: chunked").into_bytes();
    let chunk = 64 * 1024;
    for _ in 0..length / chunk {
        request.extend_from_slice(format!("{chunk:x}\r\n").as_bytes());
        request.extend(std::iter::repeat_n(b'a', chunk));
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    tcp.write_all(&request).await.expect("the server takes the whole body");
    let (status, body) = read_answer(&mut tcp).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["error"], "invalid_request");
    connection_serves_on(&mut tcp, &host, &client).await;
});

both_backends!(refresh_token_of_another_client_is_refused_and_left_alone, |app: TestApp| async move {
    let (client_a, browser) = signed_in(&app).await;
    let client_b = app.public_client().await;
    let code = next_code(&app, &browser, &client_a).await;
    let tokens = ok_tokens(app.exchange(&client_a, &code).await).await;
    let rt = tokens["refresh_token"].as_str().unwrap();
    app.clock.advance(10);
    for _ in 0..2 {
        let res = app.token(&[("grant_type", "refresh_token"), ("client_id", &client_b), ("refresh_token", rt)]).await;
        token_error(res, 400, "invalid_grant").await;
    }
    // Client B neither spent A's token nor revoked A's grant.
    ok_tokens(app.token(&[("grant_type", "refresh_token"), ("client_id", &client_a), ("refresh_token", rt)]).await)
        .await;
});

both_backends!(expired_refresh_token_is_invalid_grant, |app: TestApp| async move {
    let (client, browser) = signed_in(&app).await;
    let code = next_code(&app, &browser, &client).await;
    let tokens = ok_tokens(app.exchange(&client, &code).await).await;
    let rt = tokens["refresh_token"].as_str().unwrap();
    app.clock.advance(30 * 86_400 + 1);
    let res = app.token(&[("grant_type", "refresh_token"), ("client_id", &client), ("refresh_token", rt)]).await;
    token_error(res, 400, "invalid_grant").await;
    assert_eq!(app.count_rows("refresh_tokens").await, 1, "nothing rotated");
});

both_backends!(repeated_parameters_are_invalid_request, |app: TestApp| async move {
    let (client, browser) = signed_in(&app).await;
    let code = next_code(&app, &browser, &client).await;
    let base = serde_urlencoded::to_string([
        ("grant_type", "authorization_code"),
        ("client_id", client.as_str()),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ])
    .unwrap();
    for extra in [
        "grant_type=authorization_code",
        "code=gh_code_other",
        &format!("code={code}"),
        "client_id=someone-else",
        "redirect_uri=https%3A%2F%2Fevil.example%2Fcb",
        "code_verifier=another-pkce-code-verifier-with-enough-entropy-0123",
    ] {
        let res = raw_token(&app, Some("application/x-www-form-urlencoded"), format!("{base}&{extra}")).await;
        token_error(res, 400, "invalid_request").await;
    }
    assert_eq!(app.count_rows("grants").await, 0);
    ok_tokens(raw_token(&app, Some("application/x-www-form-urlencoded"), base).await).await;
});

both_backends!(invalid_percent_encoding_is_invalid_request, |app: TestApp| async move {
    let client = app.public_client().await;
    for bad in ["gh_rt_%ZZ", "gh_rt_%", "gh_rt_%4", "%FF%FE", "gh_rt_%C3%28"] {
        let body = format!("grant_type=refresh_token&client_id={client}&refresh_token={bad}");
        let res = raw_token(&app, Some("application/x-www-form-urlencoded"), body).await;
        token_error(res, 400, "invalid_request").await;
    }
});

both_backends!(garbage_bytes_are_refused_cleanly, |app: TestApp| async move {
    // A fixed pseudo-random byte soup, including NUL, high bytes, '&', '=' and '%'.
    let mut x: u32 = 0x1234_5678;
    let soup: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x.to_le_bytes()[0]
        })
        .collect();
    for ct in [Some("application/x-www-form-urlencoded"), Some("application/json"), None] {
        let res = raw_token(&app, ct, soup.clone()).await;
        let status = res.status().as_u16();
        assert!(status == 400 || status == 401, "got {status}");
        let code = if status == 401 { "invalid_client" } else { "invalid_request" };
        token_error(res, status, code).await;
    }
    let res = app
        .http
        .post(format!("{}/register", app.url))
        .header("content-type", "application/json")
        .body(soup)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_client_metadata");
    assert_eq!(app.count_rows("oauth_clients").await, 0);
    // An empty body.
    token_error(raw_token(&app, Some("application/x-www-form-urlencoded"), "").await, 400, "invalid_request").await;
});

both_backends!(malformed_basic_auth_is_invalid_client, |app: TestApp| async move {
    let (client, secret) = app.confidential_client().await;
    let b64 = |s: &[u8]| STANDARD.encode(s);
    let values: Vec<Vec<u8>> = vec![
        b"Basic".to_vec(),
        b"Basic ".to_vec(),
        b"Basic !!!not-base64!!!".to_vec(),
        format!("Basic {}", b64(client.as_bytes())).into_bytes(),
        format!("Basic {}", b64(b"\xff\xfe:\xff")).into_bytes(),
        format!("Basic {}", b64(format!("nobody:{secret}").as_bytes())).into_bytes(),
        format!("Basic {}", b64(format!("{client}:{secret}x").as_bytes())).into_bytes(),
        format!("Bearer {secret}").into_bytes(),
        format!("Digest username=\"{client}\"").into_bytes(),
        b"Basic \xc3\xa9\xff".to_vec(),
    ];
    for value in values {
        let res = app
            .http
            .post(token_url(&app))
            .header("authorization", reqwest::header::HeaderValue::from_bytes(&value).unwrap())
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        let challenge = res.headers().get("www-authenticate").cloned();
        token_error(res, 401, "invalid_client").await;
        assert!(challenge.is_some(), "{}", String::from_utf8_lossy(&value));
    }
    // Basic and client_secret_post at once is ambiguous.
    let res = app
        .http
        .post(token_url(&app))
        .basic_auth(&client, Some(&secret))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", "x"), ("client_secret", secret.as_str())])
        .send()
        .await
        .unwrap();
    token_error(res, 400, "invalid_request").await;
});

both_backends!(resource_of_another_workspace_is_invalid_target, |app: TestApp| async move {
    let (client, browser) = signed_in(&app).await;
    app.member("alice@example.com", "other").await;
    let default_mcp = app.mcp_url("default");
    let other = app.mcp_url("other");
    for resource in [other.as_str(), "https://evil.example/t/default/mcp", "http://127.0.0.1:1/t/default/mcp"] {
        let code = next_code(&app, &browser, &client).await;
        let res = app.exchange_with(&client, &code, &[("resource", resource)]).await;
        token_error(res, 400, "invalid_target").await;
    }
    assert_eq!(app.count_rows("grants").await, 0);

    // The right resource is accepted, and a refresh naming another workspace is refused
    // without spending the refresh token.
    let code = next_code(&app, &browser, &client).await;
    let tokens = ok_tokens(app.exchange_with(&client, &code, &[("resource", &default_mcp)]).await).await;
    let rt = tokens["refresh_token"].as_str().unwrap();
    let res = app
        .token(&[("grant_type", "refresh_token"), ("client_id", &client), ("refresh_token", rt), ("resource", &other)])
        .await;
    token_error(res, 400, "invalid_target").await;
    let res = app
        .token(&[
            ("grant_type", "refresh_token"),
            ("client_id", &client),
            ("refresh_token", rt),
            ("resource", &default_mcp),
        ])
        .await;
    let refreshed = ok_tokens(res).await;
    let claims =
        app.state.keys.verify(refreshed["access_token"].as_str().unwrap(), &app.url, app.clock.now_secs()).unwrap();
    assert_eq!(claims.aud, default_mcp);
});
