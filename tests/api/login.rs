//! Password sign-in: sessions, logout, and the per-address attempt limit.

use crate::both_backends;
use crate::helpers::*;

both_backends!(password_guessing_is_paused_per_address, |app: TestApp| async move {
    use gatehouse::identity::throttle::{MAX_FAILURES, WINDOW_SECS};
    app.member("alice@example.com", "default").await;
    let browser = Browser::new(&app);
    // Successful sign-ins do not count: many people may share one address.
    for _ in 0..MAX_FAILURES + 2 {
        assert_eq!(Browser::new(&app).login("alice@example.com", PASSWORD).await.status(), 303);
    }
    for _ in 0..MAX_FAILURES {
        assert_eq!(browser.login("alice@example.com", "wrong password").await.status(), 401);
    }
    let paused = browser.login("alice@example.com", PASSWORD).await;
    assert_eq!(paused.status(), 429, "even the right password waits once the limit is reached");
    assert!(paused.text().await.unwrap().contains("Too many failed sign-in attempts"));
    assert_eq!(browser.get(&format!("{}/login", app.url)).await.status(), 200, "the page itself still loads");
    app.clock.advance(WINDOW_SECS);
    assert_eq!(browser.login("alice@example.com", PASSWORD).await.status(), 303, "the pause ends with the window");
});

both_backends!(logout_ends_the_session, |app: TestApp| async move {
    app.member("alice@example.com", "default").await;
    let browser = Browser::new(&app);
    let signed_in = browser.login("alice@example.com", PASSWORD).await;
    assert_eq!(signed_in.status(), 303);
    let session_cookie = signed_in
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .find(|c| c.starts_with("gatehouse_session="))
        .expect("a session cookie");
    let home = browser.get(&format!("{}/", app.url)).await;
    assert_eq!(home.status(), 200);
    let page = home.text().await.unwrap();
    assert!(page.contains(&app.mcp_url("default")), "the home page shows the MCP URL to paste");
    let form = hidden_inputs(&page);
    let out = browser.http.post(format!("{}/logout", app.url)).form(&form).send().await.unwrap();
    assert_eq!(out.status(), 303);
    let after = browser.get(&format!("{}/", app.url)).await;
    assert_eq!(after.status(), 303, "signed out: back to the login page");
    assert_eq!(after.headers()["location"], "/login");
    // The old cookie, replayed by someone who copied it, is dead on the server too.
    let replay = app.http.get(format!("{}/", app.url)).header("cookie", session_cookie).send().await.unwrap();
    assert_eq!(replay.status(), 303);
});
