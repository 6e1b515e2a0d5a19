//! `/t/{workspace}/mcp`: the MCP endpoint of a workspace. Checks Host/Origin, the bearer
//! token (audience, revocation) and the scope each JSON-RPC method needs, then hands the
//! request, with the caller's identity but without their token, to the workspace's server.

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower::ServiceExt;

use super::admission::AdmittedAt;
use super::demo::Caller;
use super::direct;
use super::sessions::Binding;
use crate::app::AppState;
use crate::oauth::scope::DEFAULT_SCOPE;
use crate::resource::authenticate;
use crate::resource::challenge::{ChallengeContext, Refusal};
use crate::resource::metadata::metadata_url;
use crate::web::body::{BodyError, read_limited};
use mcp_resource_guard::scopes::MethodScopes;

/// Largest JSON-RPC message accepted from a client.
const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

pub async fn mcp(State(state): State<AppState>, Path(slug): Path<String>, req: Request) -> Response {
    // Admitted (or refused) before routing, by the outermost layer (`admission::shed`).
    let mut admitted = req.extensions().get::<AdmittedAt>().copied();
    let Admitted { request: req, message, owner, workspace_id, upstreams_version, opens_session } =
        match admit(&state, &slug, req).await {
            Ok(admitted) => admitted,
            Err(refusal) => {
                let resource_metadata = metadata_url(&state.settings.public_url, &slug);
                let ctx = ChallengeContext { resource_metadata: &resource_metadata, default_scope: DEFAULT_SCOPE };
                return refusal.into_response_with(&ctx);
            }
        };
    let now = state.clock.now();
    let session = req.headers().get(SESSION_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let service = match &session {
        // Within a session: the server it was opened on, if this principal opened it.
        Some(id) => match state.sessions.check(id, &owner, now) {
            Binding::Same(service) => service,
            // As the transport says for unknown sessions: 404, and the client starts a new one.
            Binding::Foreign => {
                return (StatusCode::NOT_FOUND, "session not found: initialize a new MCP session").into_response();
            }
        },
        // A new session, or a stateless request, uses the workspace's current upstreams;
        // stateless requests share one server per principal (see `workspaces`). Listed again
        // only when the workspace row's version moved (see `listed`).
        None => match state.listed_upstreams.get(&state.store, &state.sealer, &workspace_id, upstreams_version).await {
            Ok(upstreams) if opens_session => {
                state.workspaces.for_config(&workspace_id, upstreams, Some(state.credentials_for(&workspace_id, &slug)))
            }
            Ok(upstreams) => {
                let credentials = state.credentials_for(&workspace_id, &slug);
                let server = state.workspaces.stateless(&workspace_id, &owner, upstreams, Some(credentials));
                // A plain tool call is answered here rather than by rmcp (see `direct`).
                if let Some(message) = &message
                    && let Some(caller) = req.extensions().get::<Caller>()
                    && let Some(call) = direct::recognise(req.headers(), message)
                {
                    state.admission.checked(&mut admitted);
                    if let Some(answered) = direct::answer(&server.aggregator, call, caller).await {
                        return answered;
                    }
                }
                server.service
            }
            Err(e) => {
                tracing::error!(error = %e, workspace = %slug, "cannot read the workspace's upstreams");
                return (StatusCode::SERVICE_UNAVAILABLE, "the workspace's servers cannot be loaded; retry shortly")
                    .into_response();
            }
        },
    };
    let closing = req.method() == Method::DELETE;
    state.admission.checked(&mut admitted);
    let res = match service.clone().oneshot(req).await {
        Ok(res) => res.map(Body::new),
        Err(never) => match never {},
    };
    match (&session, res.headers().get(SESSION_HEADER).and_then(|v| v.to_str().ok())) {
        (None, Some(opened)) => state.sessions.bind(opened, &owner, now, service),
        (Some(id), _) if closing && res.status().is_success() => state.sessions.forget(id),
        _ => {}
    }
    res
}

const SESSION_HEADER: &str = "mcp-session-id";

/// A request that passed every check.
struct Admitted {
    /// To forward: the caller's identity attached, the Authorization header removed (the
    /// client's token never travels upstream).
    request: Request,
    /// A POST's JSON-RPC message, also in `request`'s body.
    message: Option<Bytes>,
    /// Who is calling: the key their MCP sessions and stateless servers are bound to.
    owner: String,
    workspace_id: String,
    /// The workspace row's `upstreams_version`, read with it.
    upstreams_version: i64,
    /// A session-based client's `initialize` (or a GET or DELETE, which only sessions have);
    /// anything else without a session id is a stateless (2026-07-28) request.
    opens_session: bool,
}

/// Runs every check on a request to the MCP endpoint.
async fn admit(state: &AppState, slug: &str, req: Request) -> Result<Admitted, Refusal> {
    state.origin.check(req.headers())?;
    let found = state
        .store
        .current_rows()
        .workspace_by_slug(slug)
        .await
        .map_err(crate::resource::bearer::lookup_failed("workspace lookup failed"))?
        .ok_or_else(|| Refusal::NotFound(crate::resource::bearer::NO_SUCH_WORKSPACE.into()))?;
    let (ws, trusted) = &*found;
    let (mut parts, body) = req.into_parts();
    let principal = authenticate(state, &parts.headers, parts.uri.query(), ws, trusted.as_ref()).await?;
    let (body, message, opens_session) = if parts.method == Method::POST {
        let bytes = read_limited(&parts.headers, body, MAX_MESSAGE_BYTES).await.map_err(|e| match e {
            BodyError::TooLarge => {
                Refusal::BadRequest(format!("JSON-RPC messages are limited to {MAX_MESSAGE_BYTES} bytes"))
            }
            BodyError::Unreadable => Refusal::BadRequest("the request body could not be read".into()),
        })?;
        MethodScopes::default().check_message(principal.scope.iter(), &bytes)?;
        let opens_session = is_legacy_initialize(&bytes);
        (Body::from(bytes.clone()), Some(bytes), opens_session)
    } else {
        (body, None, true)
    };
    parts.headers.remove(header::AUTHORIZATION);
    parts.extensions.insert(Caller {
        subject: principal.subject.clone(),
        client_id: principal.client_id.clone(),
        workspace: principal.workspace_slug.clone(),
        scope: principal.scope.to_scope_string(),
    });
    let owner = format!("{}\0{}\0{}", principal.workspace_id, principal.client_id, principal.subject);
    parts.extensions.insert(principal);
    Ok(Admitted {
        request: Request::from_parts(parts, body),
        message,
        owner,
        workspace_id: ws.id.clone(),
        upstreams_version: ws.upstreams_version,
        opens_session,
    })
}

/// An `initialize` request of the session-based revisions: it names its protocol version in
/// `params` (2026-07-28 has no handshake, and a stateless message names it only in `_meta`).
/// Read for those two fields alone; the rest of the message is skipped, not built.
fn is_legacy_initialize(body: &Bytes) -> bool {
    #[derive(serde::Deserialize)]
    struct Message<'a> {
        #[serde(borrow, default)]
        method: Option<std::borrow::Cow<'a, str>>,
        #[serde(default)]
        params: Option<Params>,
    }
    #[derive(serde::Deserialize)]
    struct Params {
        #[serde(rename = "protocolVersion", default)]
        protocol_version: Option<serde::de::IgnoredAny>,
    }
    serde_json::from_slice::<Message<'_>>(body).is_ok_and(|message| {
        message.method.as_deref() == Some("initialize")
            && message.params.is_some_and(|params| params.protocol_version.is_some())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_legacy_initialize_opens_a_session() {
        let opens = |body: &str| is_legacy_initialize(&Bytes::from(body.to_owned()));
        assert!(opens(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25"}}"#));
        // 2026-07-28 names its version only in _meta, and has no handshake.
        assert!(!opens(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"_meta":{}}}"#));
        assert!(!opens(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{}}}"#));
        assert!(!opens("{not json"));
    }
}
