//! Storage guarantees, on both backends: idempotent migrations, unique constraints surfacing
//! as conflicts, race-safe single use of refresh tokens and codes, and workspace slug rules.

use gatehouse::identity::UserError;
use gatehouse::store::{StoreError, UserRow};
use gatehouse::workspace::{self, CreateError};
use serde_json::Value;

use crate::both_backends;
use crate::helpers::*;

both_backends!(migrations_are_idempotent, |app: TestApp| async move {
    let expected = match app.backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    assert_eq!(app.state.store.backend_name(), expected, "the test runs on the backend it names");
    app.member("alice@example.com", "default").await;
    let users = app.count_rows("users").await;
    app.state.store.migrate().await.expect("a second migrate is a no-op");
    app.state.store.migrate().await.expect("and a third");
    assert_eq!(app.count_rows("users").await, users, "data survives");
    assert!(app.state.store.user_by_email("alice@example.com").await.unwrap().is_some());
    // The server still works on the re-migrated database.
    let res = app.http.get(format!("{}/readyz", app.url)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    app.public_client().await;
});

both_backends!(duplicate_email_is_a_conflict, |app: TestApp| async move {
    let store = &app.state.store;
    let clock = app.clock.as_ref();
    gatehouse::identity::create_user(store, clock, "alice@example.com", PASSWORD, false).await.unwrap();
    let users = app.count_rows("users").await;
    for email in ["alice@example.com", "Alice@Example.COM", "  alice@example.com "] {
        match gatehouse::identity::create_user(store, clock, email, PASSWORD, false).await {
            Err(UserError::Store(StoreError::Conflict(_))) => {}
            other => panic!("{email}: expected a conflict, got {other:?}"),
        }
    }
    // The store itself enforces it too, whatever the caller did.
    let row = UserRow {
        id: uuid::Uuid::now_v7().to_string(),
        email: "alice@example.com".into(),
        password_hash: None,
        is_admin: false,
        created_at: app.clock.now_secs(),
    };
    assert!(matches!(store.insert_user(&row).await, Err(StoreError::Conflict(_))));
    assert_eq!(app.count_rows("users").await, users, "nothing written");
    // The original account is untouched and still signs in.
    assert_eq!(Browser::new(&app).login("alice@example.com", PASSWORD).await.status(), 303);
});

both_backends!(concurrent_refreshes_rotate_exactly_once, |app: TestApp| async move {
    app.member("alice@example.com", "default").await;
    let client = app.public_client().await;
    let code = app.code_for("alice@example.com", &client).await;
    let first: Value = app.exchange(&client, &code).await.json().await.unwrap();
    let mut rt = first["refresh_token"].as_str().unwrap().to_owned();
    for round in 0..8 {
        let form = [("grant_type", "refresh_token"), ("client_id", client.as_str()), ("refresh_token", rt.as_str())];
        let (a, b) = tokio::join!(app.token(&form), app.token(&form));
        let mut results = Vec::new();
        for res in [a, b] {
            let status = res.status().as_u16();
            let body: Value = res.json().await.unwrap();
            results.push((status, body));
        }
        results.sort_by_key(|(s, _)| *s);
        let statuses: Vec<u16> = results.iter().map(|(s, _)| *s).collect();
        assert_eq!(statuses, [200, 400], "round {round}: exactly one rotation wins: {results:?}");
        assert_eq!(results[1].1["error"], "invalid_grant");
        // The loser came within the retry grace, so the winner's new token is still good.
        rt = results[0].1["refresh_token"].as_str().unwrap().to_owned();
    }
    let res = app.token(&[("grant_type", "refresh_token"), ("client_id", &client), ("refresh_token", &rt)]).await;
    assert_eq!(res.status(), 200);
    // One live refresh token per family: 1 from the code + 8 rounds + the last = 10 rows, one unused.
    assert_eq!(app.count_rows("refresh_tokens").await, 10);
});

/// Alice, a member of `default`, connected to `n` public clients: (client_id, refresh token) each.
async fn alices_apps(app: &TestApp, n: usize) -> Vec<(String, String)> {
    app.member("alice@example.com", "default").await;
    let mut apps = Vec::new();
    for _ in 0..n {
        let client = app.public_client().await;
        let code = app.code_for("alice@example.com", &client).await;
        let body: Value = app.exchange(&client, &code).await.json().await.unwrap();
        apps.push((client, body["refresh_token"].as_str().unwrap().to_owned()));
    }
    apps
}

both_backends!(rotations_presented_together_are_answered_as_if_one_after_another, |app: TestApp| async move {
    // Twelve connected apps, each with a live refresh token.
    let mut apps = alices_apps(&app, 12).await;
    let form = |(client, token): &(String, String)| {
        vec![
            ("grant_type".to_owned(), "refresh_token".to_owned()),
            ("client_id".to_owned(), client.clone()),
            ("refresh_token".to_owned(), token.clone()),
        ]
    };
    // The last app's first token is spent now and presented again below, past the retry grace.
    let spent = apps[11].clone();
    let body: Value =
        app.http.post(format!("{}/token", app.url)).form(&form(&spent)).send().await.unwrap().json().await.unwrap();
    apps[11].1 = body["refresh_token"].as_str().unwrap().to_owned();
    app.clock.advance(10);

    // Apps 0..8 rotate their own tokens, app 8 twice at once, app 10 presents app 9's
    // token, and app 11's spent token comes back.
    let mut presented: Vec<(String, String)> = apps[..9].to_vec();
    presented.push(apps[8].clone());
    presented.push((apps[10].0.clone(), apps[9].1.clone()));
    presented.push(spent);
    let (groups_before, rotations_before) = app.state.store.rotation_groups();
    let requests = app
        .with_refresh_tokens_locked(std::time::Duration::from_millis(300), || {
            presented
                .iter()
                .map(|p| tokio::spawn(app.http.post(format!("{}/token", app.url)).form(&form(p)).send()))
                .collect::<Vec<_>>()
        })
        .await;
    let mut answers = Vec::new();
    for request in requests {
        let res = request.await.unwrap().unwrap();
        answers.push((res.status().as_u16(), res.json::<Value>().await.unwrap()));
    }
    let (groups, rotations) = app.state.store.rotation_groups();
    assert!(
        rotations - rotations_before > groups - groups_before,
        "rotations that queued behind the lock shared a commit: {} rotations in {} groups",
        rotations - rotations_before,
        groups - groups_before
    );

    for (i, (status, body)) in answers[..8].iter().enumerate() {
        assert_eq!(*status, 200, "app {i} rotates: {body}");
    }
    let mut twice: Vec<&(u16, Value)> = answers[8..10].iter().collect();
    twice.sort_by_key(|(status, _)| *status);
    assert_eq!((twice[0].0, twice[1].0), (200, 400), "one of the two presentations wins: {twice:?}");
    assert_eq!(twice[1].1["error"], "invalid_grant");
    assert_eq!(answers[10].0, 400, "another app's token is refused: {:?}", answers[10]);
    assert_eq!(answers[10].1["error"], "invalid_grant");
    assert_eq!(answers[11].0, 400, "a spent token is refused: {:?}", answers[11]);
    assert_eq!(answers[11].1["error"], "invalid_grant");

    let refresh = |client: &str, token: &str| {
        let request = app.http.post(format!("{}/token", app.url)).form(&form(&(client.to_owned(), token.to_owned())));
        async move { request.send().await.unwrap() }
    };
    // Every new token works: the duplicate came within the grace, so app 8 keeps its family.
    let winners = answers[..8].iter().chain([twice[0]]);
    for ((client, _), (_, body)) in apps[..9].iter().zip(winners) {
        let res = refresh(client, body["refresh_token"].as_str().unwrap()).await;
        assert_eq!(res.status(), 200, "{client}'s new token works");
    }
    // App 9's token was not spent by app 10's attempt.
    assert_eq!(refresh(&apps[9].0, &apps[9].1).await.status(), 200, "app 9's token is still good");
    // App 11's family was revoked by the reuse, current token included.
    let res = refresh(&apps[11].0, &apps[11].1).await;
    assert_eq!(res.status(), 400, "the reused family is revoked");
});

both_backends!(a_failure_explaining_one_token_costs_its_group_nothing, |app: TestApp| async move {
    let apps = alices_apps(&app, 3).await;
    let refresh = |client: &str, token: &str| {
        let form = [("grant_type", "refresh_token"), ("client_id", client), ("refresh_token", token)];
        app.http.post(format!("{}/token", app.url)).form(&form).send()
    };
    // App 1's first token is spent now and comes back past the grace, so answering it means
    // revoking its family; the database is made to refuse that revocation.
    let spent = apps[1].1.clone();
    let body: Value = refresh(&apps[1].0, &spent).await.unwrap().json().await.unwrap();
    assert!(body["refresh_token"].is_string(), "{body}");
    app.clock.advance(10);
    match app.backend {
        Backend::Sqlite => {
            app.execute_elsewhere(
                "CREATE TRIGGER refuse_reuse BEFORE UPDATE OF revoked_at ON grants
                 WHEN NEW.revoked_reason = 'refresh token reused' BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
            )
            .await;
        }
        Backend::Postgres => {
            app.execute_elsewhere(
                "CREATE FUNCTION refuse_reuse() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$
                 LANGUAGE plpgsql",
            )
            .await;
            app.execute_elsewhere(
                "CREATE TRIGGER refuse_reuse BEFORE UPDATE ON grants FOR EACH ROW
                 WHEN (NEW.revoked_reason = 'refresh token reused') EXECUTE FUNCTION refuse_reuse()",
            )
            .await;
        }
    }

    // App 2's rotation holds the writer at the lock; app 0's rotation and app 1's reuse queue
    // behind it meanwhile and are taken as the next group.
    let (groups_before, _) = app.state.store.rotation_groups();
    let (pilot, pair) =
        (refresh(&apps[2].0, &apps[2].1), (refresh(&apps[0].0, &apps[0].1), refresh(&apps[1].0, &spent)));
    let requests = app
        .with_refresh_tokens_locked(std::time::Duration::from_millis(400), || {
            tokio::spawn(async move {
                let pilot = tokio::spawn(pilot);
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                (pilot, tokio::spawn(pair.0), tokio::spawn(pair.1))
            })
        })
        .await;
    let (pilot, rotation, reuse) = requests.await.unwrap();
    assert_eq!(pilot.await.unwrap().unwrap().status(), 200);
    let (rotation, reuse) = (rotation.await.unwrap().unwrap(), reuse.await.unwrap().unwrap());
    assert_ne!(reuse.status(), 200, "the reuse could not be answered");
    let status = rotation.status();
    let body: Value = rotation.json().await.unwrap();
    assert_eq!(status, 200, "app 0's rotation stands: {body}");
    // Its successor is the live token: app 0 was not made to look like it reused its own.
    let next = refresh(&apps[0].0, body["refresh_token"].as_str().unwrap()).await.unwrap();
    assert_eq!(next.status(), 200, "app 0's new token works");
    if app.backend == Backend::Postgres {
        // The pair did share a group: the pilot's, the pair's, then app 0's next rotation.
        // (On SQLite the failed group is rolled back and run again one by one, uncounted.)
        assert_eq!(app.state.store.rotation_groups().0 - groups_before, 3, "{:?}", app.state.store.rotation_groups());
    }
});

both_backends!(concurrent_code_exchanges_issue_at_most_one_live_grant, |app: TestApp| async move {
    app.member("alice@example.com", "default").await;
    let client = app.public_client().await;
    let browser = Browser::new(&app);
    browser.login("alice@example.com", PASSWORD).await;
    for round in 0..6 {
        let location = browser.authorize_and_approve(&app.authorize_url(&client, &[])).await;
        let code = query_param(&location, "code").unwrap();
        let (a, b) = tokio::join!(app.exchange(&client, &code), app.exchange(&client, &code));
        let mut results = Vec::new();
        for res in [a, b] {
            let status = res.status().as_u16();
            let body: Value = res.json().await.unwrap();
            results.push((status, body));
        }
        let winners: Vec<&Value> = results.iter().filter(|(s, _)| *s == 200).map(|(_, b)| b).collect();
        assert!(winners.len() <= 1, "round {round}: a code is single use: {results:?}");
        for (status, body) in &results {
            assert!(
                *status == 200 || (*status == 400 && body["error"] == "invalid_grant"),
                "round {round}: {results:?}"
            );
        }
        assert!(results.iter().any(|(s, _)| *s == 400), "round {round}: the second presentation is refused");
        // RFC 6749 §4.1.2: a replayed code revokes what it issued, so whichever way the race
        // went, what the winner got is dead (the loser was a replay of the same code).
        if let Some(winner) = winners.first() {
            let rt = winner["refresh_token"].as_str().unwrap();
            let res =
                app.token(&[("grant_type", "refresh_token"), ("client_id", &client), ("refresh_token", rt)]).await;
            assert_eq!(res.status(), 400, "round {round}");
            let gid = app
                .state
                .keys
                .verify(winner["access_token"].as_str().unwrap(), &app.url, app.clock.now_secs())
                .unwrap()
                .gid
                .unwrap();
            assert!(app.state.store.grant_by_id(&gid).await.unwrap().unwrap().revoked_at.is_some());
        }
    }
    // Every grant that exists is revoked; no half-issued grant without its refresh token.
    assert_eq!(app.count_rows("grants").await, app.count_rows("refresh_tokens").await);
});

both_backends!(workspace_slugs_are_checked_before_anything_is_written, |app: TestApp| async move {
    let store = &app.state.store;
    let clock = app.clock.as_ref();
    let before = app.count_rows("workspaces").await;
    let too_long = "a".repeat(64);
    for bad in [
        "",
        "Acme",
        "acme corp",
        "-acme",
        "acme-",
        "a/b",
        "../etc",
        "a.b",
        "acme_2",
        "ácme",
        "acme\n",
        too_long.as_str(),
    ] {
        match workspace::create(store, clock, bad, Some("Name")).await {
            Err(CreateError::Invalid(msg)) => assert!(!msg.is_empty()),
            other => panic!("{bad:?}: expected Invalid, got {other:?}"),
        }
        assert!(store.workspace_by_slug(bad).await.unwrap().is_none());
    }
    assert_eq!(app.count_rows("workspaces").await, before, "nothing written");
    // A taken slug is a conflict, not a second row.
    assert!(matches!(
        workspace::create(store, clock, "default", None).await,
        Err(CreateError::Store(StoreError::Conflict(_)))
    ));
    assert_eq!(app.count_rows("workspaces").await, before);
    // Good slugs work, up to 63 characters, and name their MCP URL.
    let longest = "a".repeat(63);
    for good in ["acme-2", "x", "0", longest.as_str()] {
        let ws = workspace::create(store, clock, good, None).await.unwrap();
        assert_eq!(ws.slug, good);
        assert_eq!(ws.name, good, "the name defaults to the slug");
        assert_eq!(store.workspace_by_slug(good).await.unwrap().unwrap().id, ws.id);
    }
    assert_eq!(app.count_rows("workspaces").await, before + 4);
});

both_backends!(housekeeping_keeps_used_refresh_tokens_until_they_expire, |app: TestApp| async move {
    app.member("alice@example.com", "default").await;
    let client = app.public_client().await;
    let code = app.code_for("alice@example.com", &client).await;
    let first: serde_json::Value = app.exchange(&client, &code).await.json().await.unwrap();
    let rt1 = first["refresh_token"].as_str().unwrap().to_owned();
    let rotated = app.token(&[("grant_type", "refresh_token"), ("client_id", &client), ("refresh_token", &rt1)]).await;
    assert_eq!(rotated.status(), 200);
    let store = &app.state.store;
    let now = app.clock.now_secs();
    assert_eq!(store.purge_refresh_tokens(now).await.unwrap(), 0, "nothing has expired");
    assert_eq!(store.purge_codes(now).await.unwrap(), 0, "the used code is kept a day to recognise replays");
    // A day and a minute later the code goes; the used refresh token stays until its own expiry,
    // so a reuse is still recognised (and still revokes the family).
    assert_eq!(store.purge_codes(now + 86_400 + 61).await.unwrap(), 1);
    app.clock.advance(60);
    let reuse: serde_json::Value = app
        .token(&[("grant_type", "refresh_token"), ("client_id", &client), ("refresh_token", &rt1)])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(reuse["error"], "invalid_grant");
    assert!(reuse["error_description"].as_str().unwrap().contains("already used"));
    assert_eq!(store.purge_refresh_tokens(now + 31 * 86_400).await.unwrap(), 2);
    assert_eq!(store.purge_sessions(now + 86_400).await.unwrap(), 1, "the browser session expired");
});

both_backends!(upstreams_are_stored_with_sealed_headers, |app: TestApp| async move {
    use gatehouse::gateway::registry;
    use gatehouse::gateway::upstream::{Upstream, UpstreamSpec};
    let store = &app.state.store;
    let ws = store.workspace_by_slug("default").await.unwrap().unwrap();
    let first = registry::list(store, &app.state.sealer, &ws.id).await.unwrap();
    assert_eq!(
        first,
        vec![Upstream { name: "demo".into(), spec: UpstreamSpec::Demo }],
        "first run gives default the demo"
    );

    let secret = "Bearer sk-live-very-secret";
    let http = UpstreamSpec::Http {
        url: "https://api.example.com/mcp".into(),
        headers: vec![("Authorization".into(), secret.into())],
    };
    let row = registry::add(store, &app.state.sealer, app.clock.as_ref(), &ws.id, "api", &http).await.unwrap();
    let sealed = row.headers.clone().unwrap();
    assert!(!String::from_utf8_lossy(&sealed).contains("sk-live"), "headers are sealed at rest");
    let stdio = UpstreamSpec::Stdio { command: "python3".into(), args: vec!["server.py".into()] };
    registry::add(store, &app.state.sealer, app.clock.as_ref(), &ws.id, "local", &stdio).await.unwrap();
    let listed = registry::list(store, &app.state.sealer, &ws.id).await.unwrap();
    assert_eq!(listed.len(), 3);
    assert!(listed.contains(&Upstream { name: "api".into(), spec: http.clone() }));
    assert!(listed.contains(&Upstream { name: "local".into(), spec: stdio }));

    let again = registry::add(store, &app.state.sealer, app.clock.as_ref(), &ws.id, "api", &UpstreamSpec::Demo).await;
    assert!(matches!(again, Err(registry::RegistryError::Store(gatehouse::store::StoreError::Conflict(_)))));
    let bad = registry::add(store, &app.state.sealer, app.clock.as_ref(), &ws.id, "a__b", &UpstreamSpec::Demo).await;
    assert!(matches!(bad, Err(registry::RegistryError::Invalid(_))));
    let bad_url = UpstreamSpec::Http { url: "ftp://x".into(), headers: vec![] };
    assert!(registry::add(store, &app.state.sealer, app.clock.as_ref(), &ws.id, "ftp", &bad_url).await.is_err());
    assert_eq!(registry::list(store, &app.state.sealer, &ws.id).await.unwrap().len(), 3, "refusals wrote nothing");
    assert!(store.delete_upstream(&ws.id, "api").await.unwrap());
    assert!(!store.delete_upstream(&ws.id, "api").await.unwrap());
});
