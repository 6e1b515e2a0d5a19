//! Clients created by an operator (the CLI, and the admin pages): confidential
//! `client_credentials` clients bound to one workspace, and authorization-code clients with
//! fixed redirect URIs, public or confidential. A secret is returned once and stored only as
//! a hash.

use serde_json::{Map, Value, json};

use super::error::OAuthError;
use super::register::metadata::{self, Origin, clean_name};
use super::scope::ScopeSet;
use crate::clock::Clock;
use crate::crypto::{SecretKind, hash_secret, new_secret};
use crate::store::{NewClient, Store, client_source};

/// A client just created, with its secret (if confidential), which cannot be shown again.
#[derive(Debug)]
pub struct Created {
    pub client_id: String,
    pub client_name: String,
    pub token_endpoint_auth_method: String,
    pub client_secret: Option<String>,
}

/// Creates a confidential `client_credentials` client bound to one workspace (operator CLI).
/// Returns its id and its secret, which is not stored and cannot be shown again.
pub async fn create_machine_client(
    store: &Store,
    clock: &dyn Clock,
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
    let name = clean_name(name);
    let metadata = json!({
        "client_id": client_id,
        "client_name": name,
        "grant_types": ["client_credentials"],
        "token_endpoint_auth_method": "client_secret_basic",
        "scope": scope,
    });
    store
        .insert_client(&NewClient {
            id: client_id.clone(),
            secret_hash: Some(hash_secret(&secret)),
            client_name: name,
            redirect_uris: "[]".into(),
            grant_types: r#"["client_credentials"]"#.into(),
            token_endpoint_auth_method: "client_secret_basic".into(),
            application_type: "web".into(),
            scope: Some(scope),
            workspace_id: Some(ws.id),
            source: client_source::ADMIN.into(),
            metadata: metadata.to_string(),
            created_at: now,
            last_used_at: None,
            registration_token_hash: None,
            updated_at: None,
        })
        .await?;
    Ok((client_id, secret))
}

/// What an operator gives to create an authorization-code client.
#[derive(Debug, Clone)]
pub struct AuthorizationCodeClient<'a> {
    pub name: &'a str,
    pub redirect_uris: &'a [String],
    /// Public clients (native and browser apps) hold no secret and rely on PKCE.
    pub public: bool,
    /// Limits what the client may ask for; `None` lets consent decide.
    pub scope: Option<&'a str>,
    /// A client pre-registered on a workspace's pages may be authorized in that workspace
    /// only; `None` (the CLI) lets it ask for any workspace its user belongs to.
    pub workspace_id: Option<&'a str>,
}

/// Creates an authorization-code client with refresh tokens. Redirect URIs follow the same
/// rules as registration; errors are `invalid_redirect_uri` or `invalid_client_metadata`.
pub async fn create_authorization_code_client(
    store: &Store,
    clock: &dyn Clock,
    spec: &AuthorizationCodeClient<'_>,
) -> Result<Created, OAuthError> {
    let mut doc = Map::new();
    doc.insert("client_name".into(), json!(spec.name));
    doc.insert("redirect_uris".into(), json!(spec.redirect_uris));
    let method = if spec.public { "none" } else { "client_secret_basic" };
    doc.insert("token_endpoint_auth_method".into(), json!(method));
    if let Some(scope) = spec.scope {
        doc.insert("scope".into(), json!(scope));
    }
    let checked = metadata::check(&doc, Origin::Registration)?;
    if clean_name(spec.name).is_empty() {
        return Err(metadata::bad_metadata("give the client a name"));
    }
    let client_id = uuid::Uuid::now_v7().to_string();
    let secret = if spec.public { None } else { Some(new_secret(SecretKind::ClientSecret)?) };
    let now = clock.now();
    let mut stored = checked.to_json();
    stored.insert("client_id".into(), json!(client_id));
    stored.insert("client_id_issued_at".into(), json!(now));
    store
        .insert_client(&NewClient {
            id: client_id.clone(),
            secret_hash: secret.as_deref().map(hash_secret),
            client_name: checked.client_name.clone(),
            redirect_uris: serde_json::to_string(&checked.redirect_uris).map_err(OAuthError::internal)?,
            grant_types: serde_json::to_string(&checked.grant_types).map_err(OAuthError::internal)?,
            token_endpoint_auth_method: checked.token_endpoint_auth_method.clone(),
            application_type: checked.application_type.clone(),
            scope: checked.scope.clone(),
            workspace_id: spec.workspace_id.map(str::to_owned),
            source: client_source::ADMIN.into(),
            metadata: Value::Object(stored).to_string(),
            created_at: now,
            last_used_at: None,
            registration_token_hash: None,
            updated_at: None,
        })
        .await?;
    Ok(Created {
        client_id,
        client_name: checked.client_name,
        token_endpoint_auth_method: checked.token_endpoint_auth_method,
        client_secret: secret,
    })
}
