//! A person's upstream grant revoked while their MCP session (and the gateway's session with
//! the upstream) stays open: the next tool call must still say where to reconnect, not just
//! that the upstream is unavailable.

use gatehouse::vault::Owner;
use serde_json::Value;

use crate::both_backends;
use crate::gateway::{open_session, rpc};
use crate::helpers::*;
use crate::vault::{call, failure_text, gateway_token, person_upstream, upstream_tokens};

both_backends!(a_grant_revoked_during_a_session_answers_with_the_connect_link, |app: TestApp| async move {
    let (upstream, client, _, upstream_id) = person_upstream(&app).await;
    let at = gateway_token(&app, "alice@example.com").await;
    let alice = app.state.store.user_by_email("alice@example.com").await.unwrap().unwrap();
    let tokens = upstream_tokens(&upstream, "alice-upstream@example.com", &client).await;
    app.state.vault.store_tokens(&upstream_id, Owner::Person(&alice.id), &tokens, None).await.unwrap();

    let session = open_session(&app, &at).await;
    let first = rpc(&app, "default", Some(&at), Some(&session), call(2, "whoami")).await.body;
    assert!(first["result"]["isError"] != true && first.get("error").is_none(), "connected: {first}");

    // The upstream revokes the grant (its refresh token, which ends the whole grant there).
    let revoked = upstream
        .http
        .post(format!("{}/revoke", upstream.url))
        .form(&[("token", tokens.refresh_token.as_deref().unwrap()), ("client_id", &client)])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);

    // Same session: the upstream refuses the token, the refresh is invalid_grant.
    let answer: Value = rpc(&app, "default", Some(&at), Some(&session), call(3, "whoami")).await.body;
    assert_eq!(answer["result"]["isError"], true, "a tool error the model can read: {answer}");
    let text = failure_text(&answer);
    assert!(text.contains(&format!("{}/w/default/upstreams/up/connect", app.url)), "the Connect link: {text}");
    let status = app.state.vault.status(&upstream_id, Owner::Person(&alice.id)).await.unwrap().unwrap();
    assert!(status.needs_reconnect, "{status:?}");
});
