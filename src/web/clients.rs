//! OAuth clients of a workspace (owners only): how each registered, where it redirects,
//! who consented; revoke consent (the registration stays) or delete the client; and a form
//! to pre-register a client, whose secret is shown once.

use std::net::SocketAddr;

use askama::Template;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;

use super::PageError;
use super::form::PageForm;
use super::format::When;
use super::layout::{Done, Nav};
use super::pages::{registration_label, render};
use super::viewer::{Reject, Viewer, forbidden};
use crate::app::AppState;
use crate::audit::{Actor, Event, EventKind};
use crate::oauth::error::ErrorCode;
use crate::oauth::preregistered::{AuthorizationCodeClient, create_authorization_code_client};
use crate::store::WorkspaceClientRow;

pub struct ClientLine {
    pub client_id: String,
    pub name: String,
    pub how: &'static str,
    pub confidential: bool,
    pub redirect_uris: Vec<String>,
    pub registered: When,
    pub last_used: Option<When>,
    pub consents: i64,
    pub live_grants: i64,
    pub deletable: bool,
}

pub struct Created {
    pub name: String,
    pub client_id: String,
    pub secret: Option<String>,
}

#[derive(Template)]
#[template(path = "clients.html")]
pub struct ClientsPage {
    pub nav: Nav,
    pub ws_name: String,
    pub slug: String,
    pub rows: Vec<ClientLine>,
    pub created: Option<Created>,
    pub error: Option<String>,
    pub form_name: String,
    pub form_uris: String,
    pub form_confidential: bool,
}

impl ClientsPage {
    async fn load(state: &AppState, viewer: &Viewer, nav: Nav) -> Result<Self, Reject> {
        let now = state.clock.now();
        let rows = state
            .store
            .clients_of_workspace(&viewer.ws.id)
            .await?
            .into_iter()
            .map(|r| ClientLine {
                deletable: deletable(viewer, &r),
                how: registration_label(&r.client.source),
                confidential: r.client.secret_hash.is_some(),
                redirect_uris: serde_json::from_str(&r.client.redirect_uris).unwrap_or_default(),
                registered: When::at(r.client.created_at, now),
                last_used: When::maybe(r.client.last_used_at, now),
                consents: r.consents,
                live_grants: r.live_grants,
                client_id: r.client.id,
                name: r.client.client_name,
            })
            .collect();
        Ok(ClientsPage {
            nav,
            ws_name: viewer.ws.name.clone(),
            slug: viewer.ws.slug.clone(),
            rows,
            created: None,
            error: None,
            form_name: String::new(),
            form_uris: String::new(),
            form_confidential: false,
        })
    }
}

/// An owner may delete a client used only here; one also used elsewhere needs a server admin.
fn deletable(viewer: &Viewer, row: &WorkspaceClientRow) -> bool {
    viewer.person.user.is_admin || row.other_workspaces == 0
}

pub async fn clients(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(slug): Path<String>,
    Query(done): Query<Done>,
) -> Result<Response, Reject> {
    let viewer = Viewer::load(&state, &headers, &uri, &slug).await?;
    viewer.require_owner()?;
    let nav = Nav::for_workspace(&viewer, "clients").with_notice(done.notice());
    Ok(render(&ClientsPage::load(&state, &viewer, nav).await?))
}

/// POST: pre-registers a client and shows its id (and secret) once.
pub async fn create(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(slug): Path<String>,
    form: PageForm,
) -> Result<Response, Reject> {
    let viewer = Viewer::load_for_post(&state, &headers, &form, &slug).await?;
    viewer.require_owner()?;
    let name = form.get("name").unwrap_or_default();
    let uris: Vec<String> =
        form.raw("redirect_uris").lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect();
    let confidential = form.get("type") == Some("confidential");
    let spec = AuthorizationCodeClient {
        name,
        redirect_uris: &uris,
        public: !confidential,
        scope: None,
        workspace_id: Some(&viewer.ws.id),
    };
    let result = create_authorization_code_client(&state.store, state.clock.as_ref(), &spec).await;
    let nav = Nav::for_workspace(&viewer, "clients");
    let mut page = match result {
        Ok(client) => {
            let event = Event::new(EventKind::ClientRegistered, Actor::user(viewer.user()))
                .workspace(&viewer.ws.id)
                .subject(Some(&client.client_id), &client.client_name)
                .source(peer.ip())
                .detail("how", "pre-registered by an owner")
                .detail("auth_method", client.token_endpoint_auth_method.as_str())
                .detail("redirect_uris", uris);
            state.audit(event).await;
            let mut page = ClientsPage::load(&state, &viewer, nav).await?;
            let secret = client.client_secret;
            page.created = Some(Created { name: client.client_name, client_id: client.client_id, secret });
            page
        }
        Err(e) if is_operator_mistake(e.code) => {
            let mut page = ClientsPage::load(&state, &viewer, nav).await?;
            page.error = Some(e.description);
            page.form_name = name.to_owned();
            page.form_uris = uris.join("\n");
            page.form_confidential = confidential;
            let mut res = render(&page);
            *res.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            return Ok(res);
        }
        Err(e) => return Err(PageError::internal(e.description).into()),
    };
    page.nav.notice = None;
    Ok(render(&page))
}

/// Whether a refused pre-registration is the owner's to fix (shown on the form) rather than
/// the server's failure.
fn is_operator_mistake(code: ErrorCode) -> bool {
    match code {
        ErrorCode::InvalidRedirectUri | ErrorCode::InvalidClientMetadata | ErrorCode::InvalidScope => true,
        ErrorCode::InvalidRequest
        | ErrorCode::InvalidClient
        | ErrorCode::InvalidGrant
        | ErrorCode::UnauthorizedClient
        | ErrorCode::UnsupportedGrantType
        | ErrorCode::UnsupportedResponseType
        | ErrorCode::UnsupportedTokenType
        | ErrorCode::InvalidTarget
        | ErrorCode::AccessDenied
        | ErrorCode::LoginRequired
        | ErrorCode::ConsentRequired
        | ErrorCode::InvalidToken
        | ErrorCode::ServerError
        | ErrorCode::TemporarilyUnavailable => false,
    }
}

/// The client named by the form, if this workspace knows it.
async fn known_client(state: &AppState, viewer: &Viewer, form: &PageForm) -> Result<WorkspaceClientRow, Reject> {
    let id = form.get("client_id").unwrap_or_default();
    state.store.clients_of_workspace(&viewer.ws.id).await?.into_iter().find(|r| r.client.id == id).ok_or_else(|| {
        PageError::new(StatusCode::NOT_FOUND, "No such client", "It may have been deleted already.").into()
    })
}

/// POST: forgets every consent to the client here and revokes its sessions here.
pub async fn revoke_consent(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(slug): Path<String>,
    form: PageForm,
) -> Result<Response, Reject> {
    let viewer = Viewer::load_for_post(&state, &headers, &form, &slug).await?;
    viewer.require_owner()?;
    let row = known_client(&state, &viewer, &form).await?;
    let (consents, grants) =
        state.store.revoke_client_in_workspace(&viewer.ws.id, &row.client.id, state.clock.now()).await?;
    let event = Event::new(EventKind::ConsentRevoked, Actor::user(viewer.user()))
        .workspace(&viewer.ws.id)
        .subject(Some(&row.client.id), &row.client.client_name)
        .source(peer.ip())
        .detail("person", "everyone in the workspace")
        .detail("consents_removed", consents)
        .detail("grants_revoked", grants);
    state.audit(event).await;
    Ok(viewer.back_to("clients?done=consent-revoked"))
}

/// POST: deletes the client with all it holds.
pub async fn delete(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(slug): Path<String>,
    form: PageForm,
) -> Result<Response, Reject> {
    let viewer = Viewer::load_for_post(&state, &headers, &form, &slug).await?;
    viewer.require_owner()?;
    let row = known_client(&state, &viewer, &form).await?;
    if !deletable(&viewer, &row) {
        return Err(forbidden(
            "This client is also used in other workspaces. Revoke consent here instead, or ask a server admin to delete it.",
        ));
    }
    if state.store.delete_client(&row.client.id).await? {
        // A metadata-document client comes back at its next authorization; drop the cached
        // document so that comes from a fresh fetch.
        state.client_documents.forget(&row.client.id);
        let event = Event::new(EventKind::ClientDeleted, Actor::user(viewer.user()))
            .workspace(&viewer.ws.id)
            .subject(Some(&row.client.id), &row.client.client_name)
            .source(peer.ip())
            .detail("how_registered", row.client.source.as_str());
        state.audit(event).await;
    }
    Ok(viewer.back_to("clients?done=client-deleted"))
}
