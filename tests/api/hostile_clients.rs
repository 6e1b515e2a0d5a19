//! Hostile client identities, table by table: client ID URLs that point into private networks
//! (literally or through DNS), documents that redirect, overflow, lie about their client_id or
//! carry dangerous redirect URIs, and registrations with every redirect-URI trick of issue
//! point 2. Each is refused with its own error, nobody is redirected, and nothing is written.

use std::time::Duration;

use serde_json::{Value, json};

use crate::both_backends;
use crate::compat::loopback_documents;
use crate::docserver::{DocServer, Served};
use crate::helpers::*;
use crate::journey::*;

/// GETs /authorize for `client_id` as signed-in alice; asserts an error page (never a redirect)
/// whose text contains `why`, and that no client row exists.
async fn refused_page(app: &TestApp, browser: &Browser, client_id: &str, redirect_uri: &str, why: &str) {
    let url = authorization_url(app, client_id, redirect_uri, &[("resource", &app.mcp_url("default"))]);
    let res = browser.get(&url).await;
    let status = res.status().as_u16();
    assert!(res.headers().get("location").is_none(), "{client_id}: an error page, never a redirect");
    let html = res.text().await.unwrap();
    let text = html
        .replace("&#39;", "'")
        .replace("&#34;", "\"")
        .replace("&quot;", "\"")
        .replace("&#60;", "<")
        .replace("&#62;", ">")
        .replace("&#38;", "&");
    assert_eq!(status, 400, "{client_id}: {text}");
    assert!(text.contains(why), "{client_id}: expected `{why}` in:\n{text}");
    assert_eq!(app.count_rows("oauth_clients").await, 0, "{client_id}: nothing written");
}

const GOOD_REDIRECT: &str = "https://app.example/cb";

fn good() -> Value {
    json!({"client_name": "App", "redirect_uris": [GOOD_REDIRECT], "token_endpoint_auth_method": "none"})
}

both_backends!(client_id_urls_into_private_networks_are_refused, |app: TestApp| async move {
    let browser = alice(&app).await;
    // A live server on loopback: without the allowance it must never be reached.
    let docs = DocServer::start().await;
    docs.serve("/client.json", Served::json(&good()));
    let port = docs.port;
    let cases: Vec<(String, &str)> = vec![
        // A DNS name that resolves to loopback.
        (format!("https://localhost:{port}/client.json"), "resolves to 127.0.0.1, a loopback"),
        (format!("http://localhost:{port}/client.json"), "it is not https"),
        // IP literals of every special-use kind.
        ("https://127.0.0.1/client.json".into(), "loopback"),
        ("https://[::1]/client.json".into(), "loopback (::1)"),
        ("https://10.0.0.7/client.json".into(), "private (10.0.0.0/8)"),
        ("https://192.168.1.1/client.json".into(), "private (192.168.0.0/16)"),
        ("https://172.20.0.1/client.json".into(), "private (172.16.0.0/12)"),
        ("https://169.254.169.254/latest/meta-data".into(), "link-local"),
        ("https://100.64.0.1/client.json".into(), "carrier-grade NAT"),
        ("https://0.0.0.0/client.json".into(), "this network"),
        ("https://224.0.0.1/client.json".into(), "multicast"),
        ("https://[fd00::1]/client.json".into(), "unique local"),
        ("https://[fe80::1]/client.json".into(), "link-local (fe80::/10)"),
        ("https://[::ffff:7f00:1]/client.json".into(), "IPv4-mapped"),
        ("https://[64:ff9b::a00:1]/client.json".into(), "NAT64"),
        // Public literals too: a client publishing its identity names a domain.
        ("https://93.184.216.34/client.json".into(), "its host is the IP address"),
        // Look-alikes a parser would rewrite.
        ("https://127.1/client.json".into(), "canonical form"),
        ("https://0x7f.0.0.1/client.json".into(), "canonical form"),
        ("https://2130706433/client.json".into(), "canonical form"),
        ("https://[::ffff:127.0.0.1]/client.json".into(), "canonical form"),
        ("https://CLIENT.example/client.json".into(), "canonical form"),
        ("https://client.example:443/client.json".into(), "canonical form"),
        ("https://client.example/a/../client.json".into(), "canonical form"),
        ("https://client.example/a/%2e%2e/client.json".into(), "canonical form"),
        ("https://client.example\\@evil.example/client.json".into(), "canonical form"),
        ("https://client.example/client.json ".into(), "spaces"),
        ("https://clіent.example/client.json".into(), "non-ASCII"),
        // The draft's URL rules.
        ("https://client.example/".into(), "no path"),
        ("https://user:pw@client.example/client.json".into(), "credentials"),
        ("https://client.example/client.json#me".into(), "fragment"),
        (format!("https://client.example/{}", "a".repeat(2_100)), "longer than 2000"),
    ];
    for (client_id, why) in cases {
        refused_page(&app, &browser, &client_id, GOOD_REDIRECT, why).await;
    }
    assert_eq!(docs.hits("/client.json"), 0, "the loopback server was never contacted");
});

both_backends!(
    allow_and_deny_lists_are_applied_before_fetching,
    settings = |s: &mut gatehouse::config::Settings| {
        s.cimd.allowed_hosts = vec![
            gatehouse::config::HostPattern::Exact("claude.ai".into()),
            gatehouse::config::HostPattern::Subdomains(".trusted.example".into()),
        ];
        s.cimd.denied_hosts = vec![gatehouse::config::HostPattern::Exact("bad.trusted.example".into())];
    },
    |app: TestApp| async move {
        let browser = alice(&app).await;
        refused_page(
            &app,
            &browser,
            "https://chatgpt.com/oauth/client.json",
            GOOD_REDIRECT,
            "chatgpt.com is not one of them",
        )
        .await;
        refused_page(&app, &browser, "https://trusted.example/client.json", GOOD_REDIRECT, "not one of them").await;
        refused_page(
            &app,
            &browser,
            "https://bad.trusted.example/client.json",
            GOOD_REDIRECT,
            "refused by this server's operator",
        )
        .await;
    }
);

both_backends!(
    hostile_documents_are_refused_with_their_reason,
    settings = |s: &mut gatehouse::config::Settings| {
        loopback_documents(s);
        s.cimd.fetch_timeout_secs = 1;
    },
    |app: TestApp| async move {
        let browser = alice(&app).await;
        let docs = DocServer::start().await;
        let url = |path: &str| docs.url(path);
        let with = |path: &str, change: &dyn Fn(&mut Value)| {
            let mut doc = good();
            doc["client_id"] = json!(docs.url(path));
            change(&mut doc);
            Served::json(&doc)
        };
        let big_name = "x".repeat(6_000);
        let mut cases: Vec<(&str, Served, &str)> = vec![
            (
                "/redirect.json",
                Served::json(&json!({})).status(302).header("Location", &url("/good.json")),
                "redirect (HTTP 302)",
            ),
            (
                "/moved.json",
                Served::json(&json!({})).status(301).header("Location", &url("/good.json")),
                "redirect (HTTP 301)",
            ),
            ("/gone.json", with("/gone.json", &|_| {}).status(404), "HTTP 404"),
            ("/broken.json", with("/broken.json", &|_| {}).status(500), "HTTP 500"),
            ("/accepted.json", with("/accepted.json", &|_| {}).status(203), "HTTP 203"),
            (
                "/html.json",
                with("/html.json", &|_| {}).header("Content-Type", "text/html"),
                "not JSON (Content-Type `text/html`)",
            ),
            ("/big.json", with("/big.json", &|d| d["client_name"] = json!(big_name)), "larger than 5 KB"),
            (
                "/malformed.json",
                Served { body: b"{\"client_id\": ".to_vec(), ..with("/malformed.json", &|_| {}) },
                "not valid JSON",
            ),
            ("/array.json", Served::json(&json!([good()])), "not a JSON object"),
            (
                "/mismatch.json",
                with("/mismatch.json", &|d| {
                    d["client_id"] = json!("https://claude.ai/oauth/mcp-oauth-client-metadata")
                }),
                "is not the URL it was fetched from",
            ),
            (
                "/slash.json",
                with("/slash.json", &|d| d["client_id"] = json!(format!("{}/", d["client_id"].as_str().unwrap()))),
                "is not the URL it was fetched from",
            ),
            (
                "/noid.json",
                with("/noid.json", &|d| {
                    d.as_object_mut().unwrap().remove("client_id");
                }),
                "has no client_id",
            ),
            (
                "/noname.json",
                with("/noname.json", &|d| {
                    d.as_object_mut().unwrap().remove("client_name");
                }),
                "no client_name",
            ),
            (
                "/noredirects.json",
                with("/noredirects.json", &|d| {
                    d.as_object_mut().unwrap().remove("redirect_uris");
                }),
                "redirect_uris must list",
            ),
            (
                "/emptyredirects.json",
                with("/emptyredirects.json", &|d| d["redirect_uris"] = json!([])),
                "redirect_uris must list",
            ),
            (
                "/secret.json",
                with("/secret.json", &|d| d["client_secret"] = json!("hunter2")),
                "must not carry `client_secret`",
            ),
            (
                "/basic.json",
                with("/basic.json", &|d| d["token_endpoint_auth_method"] = json!("client_secret_basic")),
                "shared-secret method",
            ),
            (
                "/jwt.json",
                with("/jwt.json", &|d| d["token_endpoint_auth_method"] = json!("private_key_jwt")),
                "private_key_jwt",
            ),
            (
                "/grants.json",
                with("/grants.json", &|d| d["grant_types"] = json!(["client_credentials"])),
                "must include authorization_code",
            ),
            ("/responses.json", with("/responses.json", &|d| d["response_types"] = json!(["token"])), "response_types"),
            (
                "/privatekey.json",
                with("/privatekey.json", &|d| {
                    d["jwks"] = json!({"keys": [{"kty": "RSA", "n": "x", "e": "AQAB", "d": "secret"}]})
                }),
                "private or symmetric key",
            ),
        ];
        // Every redirect-URI trick of issue point 2, inside a document.
        let point2: Vec<(&str, &str, &str)> = vec![
            ("/r-js.json", "javascript:alert(document.cookie)", "`javascript:` is not allowed"),
            ("/r-data.json", "data:text/html,<script>alert(1)</script>", "`data:` is not allowed"),
            ("/r-file.json", "file:///etc/passwd", "`file:` is not allowed"),
            ("/r-frag.json", "https://app.example/cb#token", "must not contain a fragment"),
            ("/r-user.json", "https://user@app.example/cb", "must not contain credentials"),
            ("/r-http.json", "http://app.example/cb", "uses http on a host other than"),
            ("/r-127.json", "http://127.1/cb", "is not written the way it is read"),
            ("/r-upper.json", "https://APP.example/cb", "is not written the way it is read"),
            ("/r-idn.json", "https://аpp.example/cb", "non-ASCII"),
            ("/r-lookalike.json", "http://127.0.0.1.evil.example/cb", "uses http on a host other than"),
        ];
        for (path, redirect, why) in &point2 {
            cases.push((path, with(path, &|d| d["redirect_uris"] = json!([GOOD_REDIRECT, redirect])), why));
        }
        // Sizes: announced and not.
        let chunked = Served { chunked: true, ..with("/chunked.json", &|d| d["client_name"] = json!(big_name)) };
        cases.push(("/chunked.json", chunked, "larger than 5 KB"));
        let slow = Served { delay: Some(Duration::from_secs(3)), ..with("/slow.json", &|_| {}) };
        cases.push(("/slow.json", slow, "took too long"));

        for (path, served, why) in cases {
            docs.serve(path, served);
            refused_page(&app, &browser, &docs.url(path), GOOD_REDIRECT, why).await;
            assert_eq!(docs.hits(path), 1, "{path}: fetched once");
        }
        assert_eq!(docs.hits("/good.json"), 0, "redirects were not followed");

        // A valid document, and a redirect URI it does not list.
        docs.serve("/good.json", with("/good.json", &|_| {}));
        for outside in [
            "https://evil.example/cb",
            "https://app.example/cb/",
            "https://app.example/cb?x=1",
            "http://127.0.0.1:9/cb",
        ] {
            refused_page(&app, &browser, &docs.url("/good.json"), outside, "not registered for this app").await;
        }
    }
);

// Registration with each redirect-URI trick of issue point 2: `invalid_redirect_uri`.
both_backends!(hostile_registrations_are_invalid_redirect_uri, |app: TestApp| async move {
    for bad in [
        "javascript:alert(1)",
        "javascript://%0aalert(1)",
        "JAVASCRIPT:alert(1)",
        "data:text/html;base64,PHNjcmlwdD4=",
        "file:///etc/passwd",
        "vbscript:msgbox",
        "chrome-extension://abc/cb",
        "https://app.example/cb#x",
        "https://app.example/cb#",
        "https://user@app.example/cb",
        "http://localhost@evil.example/cb",
        "http://app.example/cb",
        "http://0.0.0.0/cb",
        "http://127.0.0.2/cb",
        "http://[::ffff:127.0.0.1]/cb",
        "http://127.0.0.1.evil.example/cb",
        "http://localhost.evil.example/cb",
        "http://127.1/cb",
        "http://0x7f.0.0.1/cb",
        "http://2130706433/cb",
        "HTTPS://app.example/cb",
        "https://APP.example/cb",
        "https://app.example:443/cb",
        "https://app.example/a/../cb",
        "https://app.example\\@good.example/cb",
        "https://аpp.example/cb",
        "https:app.example/cb",
        "cursor:",
        "/cb",
    ] {
        let res = app
            .register(json!({"client_name": "App", "redirect_uris": [bad], "token_endpoint_auth_method": "none"}))
            .await;
        let status = res.status();
        let body: Value = res.json().await.unwrap();
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"], "invalid_redirect_uri", "{bad}: {body}");
    }
    assert_eq!(app.count_rows("oauth_clients").await, 0);
});

// At authorization, a requested redirect URI that merely resembles a registered one is a page,
// never a redirect.
both_backends!(look_alike_redirects_at_authorization_are_pages, |app: TestApp| async move {
    let browser = alice(&app).await;
    let reg = registered(
        &app,
        json!({"client_name": "App", "redirect_uris": ["http://127.0.0.1/callback", "https://app.example/cb", "cursor://app/cb"], "token_endpoint_auth_method": "none"}),
    )
    .await;
    let client_id = reg["client_id"].as_str().unwrap();
    for requested in [
        "http://127.0.0.1:5000/callback/",
        "http://127.0.0.1:5000/callback?next=x",
        "http://127.0.0.1:5000/Callback",
        "http://localhost:5000/callback",
        "http://127.1:5000/callback",
        "http://127.0.0.1.evil.example:5000/callback",
        "http://user@127.0.0.1:5000/callback",
        "https://127.0.0.1:5000/callback",
        "https://app.example:8443/cb",
        "https://APP.example/cb",
        "https://app.example/cb/../cb",
        "https://app.example/cb#x",
        "https://app.example.evil.example/cb",
        "cursor://app/cb/",
        "javascript:alert(1)",
    ] {
        let url = authorization_url(&app, client_id, requested, &[]);
        let res = browser.get(&url).await;
        assert_eq!(res.status(), 400, "{requested}");
        assert!(res.headers().get("location").is_none(), "{requested}: never redirected");
    }
    // The genuine ones work.
    for ok in ["http://127.0.0.1:5000/callback", "https://app.example/cb", "cursor://app/cb"] {
        approve(&app, &browser, &authorization_url(&app, client_id, ok, &[]), ok).await;
    }
});
