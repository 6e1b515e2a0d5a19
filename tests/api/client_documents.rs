//! Client ID Metadata Documents: advertised, fetched once a person is about to authorize,
//! cached as the document's Cache-Control says (within bounds), refetched when stale, never
//! cached when broken, and kept in step with the document.

use serde_json::{Value, json};

use crate::both_backends;
use crate::compat::loopback_documents;
use crate::docserver::{DocServer, Served};
use crate::helpers::*;
use crate::journey::*;

const PATH: &str = "/client.json";
const REDIRECT: &str = "http://127.0.0.1/callback";
/// How the consent page names where a metadata document lives (here: the loopback server).
pub const DOCUMENT_HOST_LINE: &str = "published at <strong class=\"host\">localhost</strong>";

fn document() -> Value {
    json!({"client_name": "Doc Client", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"})
}

fn request(app: &TestApp, client_id: &str) -> String {
    authorization_url(app, client_id, "http://127.0.0.1:40000/callback", &[("resource", &app.mcp_url("default"))])
}

both_backends!(metadata_advertises_support_unless_disabled, |app: TestApp| async move {
    let meta: Value = app
        .http
        .get(format!("{}/.well-known/oauth-authorization-server", app.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["client_id_metadata_document_supported"], true);

    let off = TestApp::spawn_with(app.backend, |s| s.cimd.enabled = false).await;
    let meta: Value = off
        .http
        .get(format!("{}/.well-known/oauth-authorization-server", off.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["client_id_metadata_document_supported"], false);
    let browser = alice(&off).await;
    let res = browser.get(&request(&off, "https://client.example/client.json")).await;
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("does not accept client metadata documents"));
});

both_backends!(
    the_row_is_written_only_once_someone_signs_in,
    settings = loopback_documents,
    |app: TestApp| async move {
        let docs = DocServer::start().await;
        let client_id = docs.serve_document(PATH, document());
        // Anonymous: the document is fetched and checked (the redirect URI must be validated before
        // anything else), then the person is sent to sign in. Nothing is written.
        let res = app.http.get(request(&app, &client_id)).send().await.unwrap();
        assert_eq!(res.status(), 303);
        assert!(res.headers()["location"].to_str().unwrap().starts_with("/login?"));
        assert_eq!(app.count_rows("oauth_clients").await, 0);
        assert_eq!(docs.hits(PATH), 1);

        let browser = alice(&app).await;
        let page = browser.get(&request(&app, &client_id)).await;
        assert_eq!(page.status(), 200);
        let html = page.text().await.unwrap();
        assert!(html.contains("Doc Client"));
        assert!(html.contains(DOCUMENT_HOST_LINE), "the document's host is shown: {html}");
        let row = app.state.store.client_by_id(&client_id).await.unwrap().expect("written at consent");
        assert_eq!(row.source, "metadata_document");
        assert!(row.secret_hash.is_none() && row.registration_token_hash.is_none());
        assert_eq!(row.last_used_at, None);
        assert_eq!(docs.hits(PATH), 1, "served from the cache");

        // A URL-identified client is public: a secret at the token endpoint is refused.
        let code = approve(&app, &browser, &request(&app, &client_id), "http://127.0.0.1:40000/callback").await;
        let res = token_request(
            &app,
            &client_id,
            ClientAuth::Post("made-up"),
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", "http://127.0.0.1:40000/callback"),
                ("code_verifier", VERIFIER),
            ],
        )
        .await;
        assert_eq!(res.status(), 401);
        assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_client");
    }
);

both_backends!(
    cache_control_decides_when_to_fetch_again,
    settings = |s: &mut gatehouse::config::Settings| {
        loopback_documents(s);
        s.cimd.cache_min_ttl = 60;
        s.cimd.cache_max_ttl = 3_600;
    },
    |app: TestApp| async move {
        let docs = DocServer::start().await;
        let browser = alice(&app).await;
        let fetch = |id: String| {
            let url = request(&app, &id);
            let browser = &browser;
            async move { browser.get(&url).await.status().as_u16() }
        };

        // max-age=600: one fetch serves every request for ten minutes.
        let cached = docs.serve_document("/cached.json", document());
        docs.serve(
            "/cached.json",
            Served::json(&json!({"client_id": cached, "client_name": "Cached", "redirect_uris": [REDIRECT]}))
                .header("Cache-Control", "public, max-age=600"),
        );
        assert_eq!(fetch(cached.clone()).await, 200);
        assert_eq!(fetch(cached.clone()).await, 200);
        assert_eq!(docs.hits("/cached.json"), 1);
        app.clock.advance(601);
        assert_eq!(fetch(cached.clone()).await, 200);
        assert_eq!(docs.hits("/cached.json"), 2, "stale after max-age");

        // max-age beyond the operator's maximum is cut to it.
        let long = docs.url("/long.json");
        docs.serve(
            "/long.json",
            Served::json(&json!({"client_id": long, "client_name": "Long", "redirect_uris": [REDIRECT]}))
                .header("Cache-Control", "max-age=31536000"),
        );
        assert_eq!(fetch(long.clone()).await, 200);
        app.clock.advance(3_601);
        assert_eq!(fetch(long.clone()).await, 200);
        assert_eq!(docs.hits("/long.json"), 2, "cut to cimd_cache_max_ttl");

        // no-store: fetched every time.
        let fresh = docs.url("/fresh.json");
        docs.serve(
            "/fresh.json",
            Served::json(&json!({"client_id": fresh, "client_name": "Fresh", "redirect_uris": [REDIRECT]}))
                .header("Cache-Control", "no-store"),
        );
        for _ in 0..3 {
            assert_eq!(fetch(fresh.clone()).await, 200);
        }
        assert_eq!(docs.hits("/fresh.json"), 3);

        // No header: kept for the minimum.
        let plain = docs.serve_document("/plain.json", document());
        assert_eq!(fetch(plain.clone()).await, 200);
        assert_eq!(fetch(plain.clone()).await, 200);
        assert_eq!(docs.hits("/plain.json"), 1);
        app.clock.advance(61);
        assert_eq!(fetch(plain.clone()).await, 200);
        assert_eq!(docs.hits("/plain.json"), 2);
    }
);

both_backends!(
    errors_are_not_cached_and_changes_are_picked_up,
    settings = loopback_documents,
    |app: TestApp| async move {
        let docs = DocServer::start().await;
        let browser = alice(&app).await;
        let client_id = docs.url(PATH);
        docs.serve(PATH, Served::json(&json!({"oops": true})).status(500));
        let res = browser.get(&request(&app, &client_id)).await;
        assert_eq!(res.status(), 400);
        assert!(res.text().await.unwrap().contains("HTTP 500"));
        // A broken document is not cached either.
        docs.serve(PATH, Served::json(&json!({"client_id": client_id, "redirect_uris": [REDIRECT]})));
        let res = browser.get(&request(&app, &client_id)).await;
        assert!(res.text().await.unwrap().contains("client_name"));
        // Fixed: the very next request fetches again and works.
        docs.serve(
            PATH,
            Served::json(&json!({"client_id": client_id, "client_name": "Fixed", "redirect_uris": [REDIRECT]}))
                .header("Cache-Control", "max-age=60"),
        );
        assert_eq!(browser.get(&request(&app, &client_id)).await.status(), 200);
        assert_eq!(docs.hits(PATH), 3);

        // The document changes its name and redirect URIs; once the cache expires, the client's
        // row follows, and the old redirect URI stops working.
        docs.serve(
            PATH,
            Served::json(
                &json!({"client_id": client_id, "client_name": "Renamed", "redirect_uris": ["https://app.example/cb"]}),
            ),
        );
        // max-age=60 is raised to the default minimum of five minutes.
        app.clock.advance(61);
        let res = browser.get(&authorization_url(&app, &client_id, "https://app.example/cb", &[])).await;
        assert_eq!(res.status(), 400, "still the cached document");
        app.clock.advance(240);
        let res = browser.get(&authorization_url(&app, &client_id, "https://app.example/cb", &[])).await;
        let status = res.status();
        assert_eq!(status, 200, "{}", res.text().await.unwrap());
        let row = app.state.store.client_by_id(&client_id).await.unwrap().unwrap();
        assert_eq!(row.client_name, "Renamed");
        assert_eq!(row.redirect_uris, r#"["https://app.example/cb"]"#);
        let res = browser.get(&request(&app, &client_id)).await;
        assert_eq!(res.status(), 400, "the old loopback redirect is no longer in the document");
        assert_eq!(app.count_rows("oauth_clients").await, 1);
    }
);
