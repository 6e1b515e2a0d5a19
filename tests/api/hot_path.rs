//! What the request hot path keeps in memory must not change what is allowed: a cached access
//! token still expires on time and is still refused at once when its grant is revoked (see
//! also `gateway::revocation_is_seen_on_the_very_next_request`), and issuing access tokens
//! writes nothing to the database beyond the first use of a client each minute.

use serde_json::{Value, json};

use crate::both_backends;
use crate::gateway::{access_token, open_session, rpc};
use crate::helpers::*;

fn echo(id: u64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "x"}}})
}

both_backends!(a_remembered_token_still_expires_on_time, |app: TestApp| async move {
    let tokens = access_token(&app, "mcp:read mcp:tools").await;
    let at = tokens["access_token"].as_str().unwrap();
    let session = open_session(&app, at).await;
    assert_eq!(rpc(&app, "default", Some(at), Some(&session), echo(2)).await.status, 200);
    app.clock.advance(899);
    assert_eq!(rpc(&app, "default", Some(at), Some(&session), echo(3)).await.status, 200, "still inside 15 minutes");
    app.clock.advance(1);
    let late = rpc(&app, "default", Some(at), Some(&session), echo(4)).await;
    assert_eq!(late.status, 401, "expired at exp, although its signature was remembered");
    let www = late.headers["www-authenticate"].to_str().unwrap();
    assert!(www.contains("expired"), "{www}");
});
