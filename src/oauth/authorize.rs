//! `/authorize` (code flow with PKCE S256 only) and the consent decision.
//!
//! Errors about the client or its redirect URI cannot be trusted to redirect and are shown
//! as a page; every other error goes back to the client with `state` and `iss` (RFC 9207).
//! The consent form carries the validated request signed and bound to the browser session.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};
use url::Url;

use super::cimd::client_url;
use super::error::{ErrorCode, OAuthError};
use super::params::{FormParams, Params};
use super::redirect::{display_host, is_loopback, matches};
use super::scope::{ScopeSet, describe};
use super::{CODE_TTL_SECS, issue};
use crate::app::AppState;
use crate::audit::{Actor, Event, EventKind};
use crate::identity::session::{self, SignedIn};
use crate::store::{ClientRow, StoreError, WorkspaceRow, client_source};
use crate::web::PageError;
use crate::web::pages::{ConsentPage, ScopeLine, registration_words, render};
use crate::workspace::slug_from_resource;

/// How long a consent page stays valid.
const CONSENT_TTL_SECS: i64 = 600;

/// A checked authorization request, as carried through the consent form.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    client_id: String,
    redirect_uri: String,
    state: Option<String>,
    code_challenge: String,
    scope: String,
    /// The `resource` the client named, if any.
    resource_slug: Option<String>,
    force_consent: bool,
    expires_at: i64,
}

/// Where errors may safely be sent once client and redirect URI are known.
struct Reply<'a> {
    state: &'a AppState,
    redirect_uri: &'a str,
    client_state: Option<&'a str>,
}

impl Reply<'_> {
    fn to_client(&self, pairs: &[(&str, &str)]) -> Response {
        let Ok(mut url) = Url::parse(self.redirect_uri) else {
            return PageError::bad_request("Invalid redirect URI", "The app's redirect URI cannot be used.")
                .into_response();
        };
        {
            let mut q = url.query_pairs_mut();
            for (k, v) in pairs {
                q.append_pair(k, v);
            }
            if let Some(s) = self.client_state {
                q.append_pair("state", s);
            }
            q.append_pair("iss", &self.state.settings.public_url);
        }
        let mut res = Redirect::to(url.as_str()).into_response();
        res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res
    }

    fn error(&self, err: OAuthError) -> Response {
        self.to_client(&[("error", err.code.as_str()), ("error_description", &err.description)])
    }
}

/// GET /authorize
pub async fn authorize(State(state): State<AppState>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    match authorize_inner(&state, &headers, query.as_deref().unwrap_or_default()).await {
        Ok(res) | Err(res) => res,
    }
}

async fn authorize_inner(state: &AppState, headers: &HeaderMap, raw_query: &str) -> Result<Response, Response> {
    let page = |title: &str, msg: String| PageError::bad_request(title, msg).into_response();
    let params =
        Params::parse(raw_query.as_bytes()).map_err(|e| page("Invalid authorization request", e.description))?;
    let client_id = params.get("client_id").ok_or_else(|| {
        page("Invalid authorization request", "The request does not name an app (client_id is missing).".into())
    })?;
    let client = find_client(state, client_id).await?;
    let redirect_uri =
        choose_redirect(&client, params.get("redirect_uri")).map_err(|msg| page("Invalid redirect URI", msg))?;
    let reply = Reply { state, redirect_uri: &redirect_uri, client_state: params.get("state") };

    let pending = check_request(state, &client, &params, &redirect_uri).map_err(|e| reply.error(e))?;

    let Some(signed_in) = session::current(state, headers).await.map_err(|e| PageError::from(e).into_response())?
    else {
        if params.get("prompt").is_some_and(|p| p.split(' ').any(|p| p == "none")) {
            return Err(reply.error(OAuthError::new(ErrorCode::LoginRequired, "prompt=none, and nobody is signed in")));
        }
        let next = format!("/authorize?{raw_query}");
        let login = format!("/login?next={}", form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>());
        return Ok(Redirect::to(&login).into_response());
    };
    if client.source == client_source::METADATA_DOCUMENT {
        // Consents, grants and codes refer to the client's row: write (or refresh) it now that
        // a person is about to authorize it, not for every anonymous request.
        state.store.upsert_metadata_document_client(&client).await.map_err(|e| match e {
            StoreError::Conflict(_) => page(
                "This app cannot connect",
                "Its client ID is already used by another client registered here.".into(),
            ),
            e @ (StoreError::Database(_)
            | StoreError::Migrate(_)
            | StoreError::BadUrl(_)
            | StoreError::WriterGone
            | StoreError::Marker(_)) => PageError::from(e).into_response(),
        })?;
    }
    decide(state, &signed_in, &client, pending, &reply, params.get("prompt")).await
}

/// The client a request names: a URL is resolved through its metadata document (fetched or
/// cached), anything else is looked up among registered clients.
async fn find_client(state: &AppState, client_id: &str) -> Result<ClientRow, Response> {
    if client_url::looks_like_url(client_id) {
        return state.client_documents.resolve(client_id, state.clock.now()).await.map_err(|e| {
            let status = if e.is_temporary() { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::BAD_REQUEST };
            let shown: String = client_id.chars().take(200).collect();
            PageError::new(
                status,
                "This app cannot connect",
                format!(
                    "Gatehouse could not accept the app's client ID {shown}: {e} (OAuth error: invalid_client). If you develop this app, fix its client metadata document; otherwise tell its developer."
                ),
            )
            .into_response()
        });
    }
    state.store.client_by_id(client_id).await.map_err(|e| PageError::from(e).into_response())?.ok_or_else(|| {
        PageError::bad_request(
            "Unknown app",
            "This app is not registered with Gatehouse (it may have been deleted). Remove the server in your MCP client and add it again so it can register afresh.",
        )
        .into_response()
    })
}

/// The redirect URI to use: the one requested if registered, or the only one registered.
fn choose_redirect(client: &ClientRow, requested: Option<&str>) -> Result<String, String> {
    let registered = client.redirect_uri_list();
    match requested {
        Some(r) if registered.iter().any(|reg| matches(reg, r)) => Ok(r.to_owned()),
        Some(_) => Err(
            "The redirect URI in this request is not registered for this app. If the app changed its callback address, remove and re-add the server in your MCP client.".into(),
        ),
        None => match registered.as_slice() {
            [only] => Ok(only.clone()),
            _ => Err("The request must name its redirect_uri: this app registered several.".into()),
        },
    }
}

/// Checks everything that does not need the person: response type, PKCE, scope, resource.
fn check_request(
    state: &AppState,
    client: &ClientRow,
    params: &Params,
    redirect_uri: &str,
) -> Result<Pending, OAuthError> {
    match params.get("response_type") {
        Some("code") => {}
        Some(_) => {
            return Err(OAuthError::new(ErrorCode::UnsupportedResponseType, "only response_type=code is supported"));
        }
        None => return Err(OAuthError::invalid_request("missing parameter `response_type`")),
    }
    if params.get("request").is_some() || params.get("request_uri").is_some() {
        return Err(OAuthError::invalid_request("request objects are not supported"));
    }
    let challenge = params.get("code_challenge").ok_or_else(|| {
        OAuthError::invalid_request("PKCE is required: send code_challenge with code_challenge_method=S256")
    })?;
    match params.get("code_challenge_method") {
        Some("S256") => {}
        Some(other) => {
            return Err(OAuthError::invalid_request(format!(
                "code_challenge_method `{}` is not supported: use S256",
                other.chars().take(20).collect::<String>()
            )));
        }
        None => return Err(OAuthError::invalid_request("code_challenge_method is required and must be S256")),
    }
    if challenge.len() != 43 || !challenge.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(OAuthError::invalid_request("code_challenge must be a base64url SHA-256 (43 characters)"));
    }
    let scope = ScopeSet::parse_requested(params.get("scope"))?;
    if let Some(allowed) = &client.scope
        && !scope.is_subset_of(&ScopeSet::from_stored(allowed))
    {
        return Err(OAuthError::invalid_scope("the requested scope exceeds what this client registered"));
    }
    let resource_slug = match params.get("resource") {
        Some(resource) => Some(slug_from_resource(&state.settings.public_url, resource).ok_or_else(|| {
            OAuthError::invalid_target(format!(
                "resource is not a workspace MCP URL of this server (expected {}/t/<workspace>/mcp)",
                state.settings.public_url
            ))
        })?),
        None => None,
    };
    let force_consent = params.get("prompt").is_some_and(|p| p.split(' ').any(|p| p == "consent"));
    Ok(Pending {
        client_id: client.id.clone(),
        redirect_uri: redirect_uri.to_owned(),
        state: params.get("state").map(str::to_owned),
        code_challenge: challenge.to_owned(),
        scope: scope.to_scope_string(),
        resource_slug,
        force_consent,
        expires_at: state.clock.now() + CONSENT_TTL_SECS,
    })
}

/// The workspace this authorization is for: the one named by `resource`, or, when the client
/// named none, the person's only workspace. The person must belong to it.
async fn resolve_workspace(state: &AppState, who: &SignedIn, slug: Option<&str>) -> Result<WorkspaceRow, OAuthError> {
    let Some(slug) = slug else {
        let mut mine = state.store.workspaces_of_user(&who.user.id).await?;
        return match (mine.pop(), mine.is_empty()) {
            (Some(only), true) => {
                crate::resource::external::refuse_if_trusted(&state.store, &only).await?;
                Ok(only)
            }
            _ => Err(OAuthError::invalid_target(
                "send resource=<workspace MCP URL>: you belong to several workspaces (or none)",
            )),
        };
    };
    let not_yours =
        || OAuthError::invalid_target(format!("you are not a member of a workspace `{slug}` on this server"));
    let ws = state.store.workspace_by_slug(slug).await?.ok_or_else(not_yours)?;
    state.store.membership(&ws.id, &who.user.id).await?.ok_or_else(not_yours)?;
    crate::resource::external::refuse_if_trusted(&state.store, &ws).await?;
    Ok(ws)
}

/// A client an owner pre-registered for one workspace is only authorized there.
fn check_client_workspace(client: &ClientRow, ws: &WorkspaceRow) -> Result<(), OAuthError> {
    match &client.workspace_id {
        Some(bound) if *bound != ws.id => {
            Err(OAuthError::invalid_target("this app was registered for another workspace of this server"))
        }
        _ => Ok(()),
    }
}

/// After sign-in: issue at once if consent is remembered, else show the consent page.
async fn decide(
    state: &AppState,
    who: &SignedIn,
    client: &ClientRow,
    pending: Pending,
    reply: &Reply<'_>,
    prompt: Option<&str>,
) -> Result<Response, Response> {
    let ws = resolve_workspace(state, who, pending.resource_slug.as_deref()).await.map_err(|e| reply.error(e))?;
    check_client_workspace(client, &ws).map_err(|e| reply.error(e))?;
    let remembered = state
        .store
        .consented_scope(&who.user.id, &client.id, &ws.id)
        .await
        .map_err(|e| reply.error(e.into()))?
        .is_some_and(|granted| ScopeSet::from_stored(&pending.scope).is_subset_of(&ScopeSet::from_stored(&granted)));
    if remembered && !pending.force_consent {
        return issue_code(state, who, &pending, &ws, reply).await;
    }
    if prompt.is_some_and(|p| p.split(' ').any(|p| p == "none")) {
        return Err(reply.error(OAuthError::new(
            ErrorCode::ConsentRequired,
            "prompt=none, and this app has not been authorized for these scopes",
        )));
    }
    let signed = state
        .forms
        .sign(&pending, &who.session_hash)
        .ok_or_else(|| reply.error(OAuthError::internal("could not sign the consent form")))?;
    let redirect_host = display_host(&pending.redirect_uri);
    let registered = client.redirect_uri_list();
    let loopback_only =
        !registered.is_empty() && registered.iter().all(|u| Url::parse(u).is_ok_and(|u| is_loopback(&u)));
    // A metadata-document client is known by where its document lives: show that host (§8.5).
    let document_host = (client.source == client_source::METADATA_DOCUMENT)
        .then(|| Url::parse(&client.id).ok().and_then(|u| u.host_str().map(str::to_owned)))
        .flatten();
    let page = ConsentPage {
        client_name: &client.client_name,
        client_id: &client.id,
        redirect_host: &redirect_host,
        redirect_uri: &pending.redirect_uri,
        dynamic_client: client.source == client_source::DYNAMIC,
        document_host: document_host.as_deref(),
        loopback_only,
        registration: &registration_words(client),
        workspace_name: &ws.name,
        workspace_slug: &ws.slug,
        user_email: &who.user.email,
        scopes: ScopeSet::from_stored(&pending.scope)
            .iter()
            .map(|s| ScopeLine { name: s.to_owned(), description: describe(s) })
            .collect(),
        request: &signed,
    };
    let mut res = render(&page);
    if let Ok(csp) = HeaderValue::from_str(&consent_csp(&pending.redirect_uri)) {
        res.headers_mut().insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    Ok(res)
}

/// Browsers apply `form-action` to the redirect that follows a form post, so the consent
/// page must allow the client's redirect target besides itself.
fn consent_csp(redirect_uri: &str) -> String {
    let target = match Url::parse(redirect_uri) {
        Ok(u) if u.scheme() == "http" || u.scheme() == "https" => u.origin().ascii_serialization(),
        Ok(u) => format!("{}:", u.scheme()),
        Err(_) => String::new(),
    };
    format!(
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self' {target}; frame-ancestors 'none'; base-uri 'none'"
    )
}

async fn issue_code(
    state: &AppState,
    who: &SignedIn,
    pending: &Pending,
    ws: &WorkspaceRow,
    reply: &Reply<'_>,
) -> Result<Response, Response> {
    let code = issue::authorization_code(
        state,
        &issue::CodeGrant {
            client_id: &pending.client_id,
            user_id: &who.user.id,
            workspace_id: &ws.id,
            redirect_uri: &pending.redirect_uri,
            code_challenge: &pending.code_challenge,
            scope: &pending.scope,
        },
        CODE_TTL_SECS,
    )
    .await
    .map_err(|e| reply.error(e))?;
    Ok(reply.to_client(&[("code", &code)]))
}

/// POST /authorize/consent
pub async fn consent(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: Result<FormParams, OAuthError>,
) -> Response {
    let expired = || {
        PageError::new(
            StatusCode::BAD_REQUEST,
            "This authorization request has expired",
            "Go back to your MCP client and start connecting again.",
        )
        .into_response()
    };
    let Ok(FormParams(form)) = form else { return expired() };
    let who = match session::current(&state, &headers).await {
        Ok(Some(who)) => who,
        Ok(None) => return expired(),
        Err(e) => return PageError::from(e).into_response(),
    };
    let Some(pending) = form.get("request").and_then(|r| state.forms.verify::<Pending>(r, &who.session_hash)) else {
        return PageError::new(
            StatusCode::FORBIDDEN,
            "This consent form is not valid",
            "It was not issued to this browser session. Start connecting again from your MCP client.",
        )
        .into_response();
    };
    if pending.expires_at <= state.clock.now() {
        return expired();
    }
    let reply = Reply { state: &state, redirect_uri: &pending.redirect_uri, client_state: pending.state.as_deref() };
    if form.get("decision") != Some("approve") {
        let event = Event::new(EventKind::ConsentDenied, Actor::user(&who.user))
            .subject(Some(&pending.client_id), &pending.client_id)
            .source(peer.ip())
            .detail("scope", pending.scope.as_str());
        state.audit(event).await;
        return reply.error(OAuthError::new(ErrorCode::AccessDenied, "the person declined the request"));
    }
    let result = async {
        let client = state
            .store
            .client_by_id(&pending.client_id)
            .await
            .map_err(|e| reply.error(e.into()))?
            .ok_or_else(expired)?;
        let ws = resolve_workspace(&state, &who, pending.resource_slug.as_deref()).await.map_err(|e| reply.error(e))?;
        check_client_workspace(&client, &ws).map_err(|e| reply.error(e))?;
        state
            .store
            .remember_consent(&who.user.id, &client.id, &ws.id, &pending.scope, state.clock.now())
            .await
            .map_err(|e| reply.error(e.into()))?;
        let event = Event::new(EventKind::ConsentGranted, Actor::user(&who.user))
            .workspace(&ws.id)
            .subject(Some(&client.id), &client.client_name)
            .source(peer.ip())
            .detail("scope", pending.scope.as_str())
            .detail("redirect_host", display_host(&pending.redirect_uri));
        state.audit(event).await;
        issue_code(&state, &who, &pending, &ws, &reply).await
    }
    .await;
    match result {
        Ok(res) | Err(res) => res,
    }
}
