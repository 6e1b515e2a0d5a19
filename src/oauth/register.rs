//! Dynamic Client Registration (RFC 7591). Rate-limited per source address in the router.
//!
//! Public clients (`token_endpoint_auth_method: none`) get no secret; confidential ones get
//! a secret shown once and stored as a hash. `client_credentials` is not offered here: such
//! clients act without a person and are created by an operator, bound to one workspace.

use axum::Json;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::error::{ErrorCode, OAuthError};
use super::params::read_capped;
use super::redirect::validate_registered;
use super::scope::ScopeSet;
use crate::app::AppState;
use crate::audit::{Actor, Event, EventKind};
use crate::crypto::{SecretKind, hash_secret, new_secret};
use crate::store::NewClient;

const MAX_REGISTRATION_BYTES: usize = 16 * 1024;
const MAX_REDIRECT_URIS: usize = 20;

fn bad_metadata(d: impl Into<String>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidClientMetadata, d)
}

fn bad_redirect(d: impl Into<String>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidRedirectUri, d)
}

/// The metadata fields we act on; the rest of the document is kept as informational.
#[derive(Debug, Deserialize)]
struct Requested {
    redirect_uris: Option<Vec<String>>,
    token_endpoint_auth_method: Option<String>,
    grant_types: Option<Vec<String>>,
    response_types: Option<Vec<String>>,
    client_name: Option<String>,
    application_type: Option<String>,
    scope: Option<String>,
}

/// Informational fields echoed back when they are of the right type.
const INFORMATIONAL_URLS: &[&str] = &["client_uri", "logo_uri", "tos_uri", "policy_uri"];
const INFORMATIONAL_TEXT: &[&str] = &["software_id", "software_version"];

pub async fn register(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Result<Response, OAuthError> {
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(OAuthError::invalid_request("registration requests must be application/json"));
    }
    let body = read_capped(req, &(), MAX_REGISTRATION_BYTES).await?;
    let doc: Map<String, Value> =
        serde_json::from_slice(&body).map_err(|e| bad_metadata(format!("the body is not a JSON object: {e}")))?;
    let requested: Requested = serde_json::from_value(Value::Object(doc.clone()))
        .map_err(|e| bad_metadata(format!("a metadata field has the wrong type: {e}")))?;

    let auth_method = requested.token_endpoint_auth_method.as_deref().unwrap_or("client_secret_basic");
    if !["none", "client_secret_basic", "client_secret_post"].contains(&auth_method) {
        return Err(bad_metadata(format!(
            "token_endpoint_auth_method `{}` is not supported; use none, client_secret_basic or client_secret_post",
            clip(auth_method)
        )));
    }
    // Without grant_types we register both code and refresh (and say so in the response):
    // every MCP client wants refresh tokens, and RFC 7591 lets the server choose the values.
    let grant_types =
        requested.grant_types.unwrap_or_else(|| vec!["authorization_code".into(), "refresh_token".into()]);
    for g in &grant_types {
        match g.as_str() {
            "authorization_code" | "refresh_token" => {}
            "client_credentials" => {
                return Err(bad_metadata(
                    "client_credentials clients are created by an operator (gatehouse client add), not by registration",
                ));
            }
            other => return Err(bad_metadata(format!("grant type `{}` is not supported", clip(other)))),
        }
    }
    if !grant_types.iter().any(|g| g == "authorization_code") {
        return Err(bad_metadata("grant_types must include authorization_code"));
    }
    let response_types = requested.response_types.unwrap_or_else(|| vec!["code".into()]);
    if response_types != ["code"] {
        return Err(bad_metadata("response_types must be [\"code\"]"));
    }
    let redirect_uris = requested.redirect_uris.unwrap_or_default();
    if redirect_uris.is_empty() {
        return Err(bad_redirect("redirect_uris must list at least one URI"));
    }
    if redirect_uris.len() > MAX_REDIRECT_URIS {
        return Err(bad_redirect(format!("at most {MAX_REDIRECT_URIS} redirect URIs may be registered")));
    }
    for uri in &redirect_uris {
        validate_registered(uri).map_err(bad_redirect)?;
    }
    // Unstated: a client whose redirects all stay on this device is a native app.
    let all_local = redirect_uris.iter().all(|u| url::Url::parse(u).is_ok_and(|u| u.scheme() != "https"));
    let application_type = requested.application_type.as_deref().unwrap_or(if all_local { "native" } else { "web" });
    if application_type != "web" && application_type != "native" {
        return Err(bad_metadata("application_type must be web or native"));
    }
    let scope = match requested.scope.as_deref() {
        Some(s) => Some(ScopeSet::parse_requested(Some(s)).map_err(|e| bad_metadata(e.description))?.to_scope_string()),
        None => None,
    };
    let client_name = requested
        .client_name
        .as_deref()
        .map(|n| n.chars().filter(|c| !c.is_control()).take(100).collect::<String>())
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| "Unnamed client".to_owned());

    let now = state.clock.now();
    let client_id = uuid::Uuid::now_v7().to_string();
    let secret = if auth_method == "none" { None } else { Some(new_secret(SecretKind::ClientSecret)?) };

    let mut response = json!({
        "client_id": client_id,
        "client_id_issued_at": now,
        "client_name": client_name,
        "redirect_uris": redirect_uris,
        "grant_types": grant_types,
        "response_types": response_types,
        "token_endpoint_auth_method": auth_method,
        "application_type": application_type,
    });
    if let Some(obj) = response.as_object_mut() {
        if let Some(scope) = &scope {
            obj.insert("scope".into(), json!(scope));
        }
        for key in INFORMATIONAL_URLS {
            if let Some(Value::String(u)) = doc.get(*key)
                && u.len() <= 2_000
                && url::Url::parse(u).is_ok_and(|p| p.scheme() == "https")
            {
                obj.insert((*key).into(), json!(u));
            }
        }
        for key in INFORMATIONAL_TEXT {
            if let Some(Value::String(t)) = doc.get(*key) {
                obj.insert((*key).into(), json!(clip(t)));
            }
        }
    }
    let row = NewClient {
        id: client_id,
        secret_hash: secret.as_deref().map(hash_secret),
        client_name,
        redirect_uris: serde_json::to_string(&redirect_uris).map_err(OAuthError::internal)?,
        grant_types: serde_json::to_string(&grant_types).map_err(OAuthError::internal)?,
        token_endpoint_auth_method: auth_method.to_owned(),
        application_type: application_type.to_owned(),
        scope,
        workspace_id: None,
        source: "dynamic".into(),
        metadata: response.to_string(),
        created_at: now,
        last_used_at: None,
    };
    state.store.insert_client(&row).await?;
    let event = Event::new(EventKind::ClientRegistered, Actor::client(&row))
        .subject(Some(&row.id), &row.client_name)
        .source(peer.ip())
        .detail("how", "dynamic client registration")
        .detail("auth_method", auth_method)
        .detail("redirect_uris", redirect_uris.clone());
    state.audit(event).await;
    if let (Some(obj), Some(secret)) = (response.as_object_mut(), secret) {
        obj.insert("client_secret".into(), json!(secret));
        obj.insert("client_secret_expires_at".into(), json!(0));
    }
    Ok((StatusCode::CREATED, [(header::CACHE_CONTROL, "no-store")], Json(response)).into_response())
}

fn clip(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(100).collect()
}

/// Creates a confidential `client_credentials` client bound to one workspace (operator CLI).
/// Returns its id and its secret, which is not stored and cannot be shown again.
pub async fn create_machine_client(
    store: &crate::store::Store,
    clock: &dyn crate::clock::Clock,
    workspace_slug: &str,
    name: &str,
    scope: &str,
) -> Result<(String, String), OAuthError> {
    let scope = ScopeSet::parse_requested(Some(scope))?.to_scope_string();
    let ws = store
        .workspace_by_slug(workspace_slug)
        .await?
        .ok_or_else(|| OAuthError::invalid_request(format!("no workspace `{workspace_slug}`")))?;
    let client_id = uuid::Uuid::now_v7().to_string();
    let secret = new_secret(SecretKind::ClientSecret)?;
    let now = clock.now();
    let metadata = json!({
        "client_id": client_id,
        "client_name": clip(name),
        "grant_types": ["client_credentials"],
        "token_endpoint_auth_method": "client_secret_basic",
        "scope": scope,
    });
    store
        .insert_client(&NewClient {
            id: client_id.clone(),
            secret_hash: Some(hash_secret(&secret)),
            client_name: clip(name),
            redirect_uris: "[]".into(),
            grant_types: r#"["client_credentials"]"#.into(),
            token_endpoint_auth_method: "client_secret_basic".into(),
            application_type: "web".into(),
            scope: Some(scope),
            workspace_id: Some(ws.id),
            source: "admin".into(),
            metadata: metadata.to_string(),
            created_at: now,
            last_used_at: None,
        })
        .await?;
    Ok((client_id, secret))
}
