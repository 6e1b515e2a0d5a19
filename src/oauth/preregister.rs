//! Clients a workspace owner registers ahead of time on the OAuth clients page: an app that
//! cannot register itself, with its redirect URIs checked like any registration's. It is
//! bound to that workspace; a confidential one gets a secret shown once.

use serde_json::json;

use super::redirect::validate_registered;
use crate::clock::Clock;
use crate::crypto::{CryptoError, SecretKind, hash_secret, new_secret};
use crate::store::{ClientRow, NewClient, Store, StoreError};

pub const MAX_REDIRECT_URIS: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum PreregisterError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// Registers a client for `workspace_id`. Returns the row and, for a confidential client,
/// the secret (stored only as a hash: this is the only time it exists in the clear).
pub async fn preregister(
    store: &Store,
    clock: &dyn Clock,
    workspace_id: &str,
    name: &str,
    redirect_uris: &[String],
    confidential: bool,
) -> Result<(ClientRow, Option<String>), PreregisterError> {
    let invalid = |m: String| PreregisterError::Invalid(m);
    let name: String = name.chars().filter(|c| !c.is_control()).take(100).collect();
    if name.trim().is_empty() {
        return Err(invalid("Give the client a name people will recognise on the consent page.".into()));
    }
    if redirect_uris.is_empty() {
        return Err(invalid("List at least one redirect URI.".into()));
    }
    if redirect_uris.len() > MAX_REDIRECT_URIS {
        return Err(invalid(format!("At most {MAX_REDIRECT_URIS} redirect URIs may be registered.")));
    }
    for uri in redirect_uris {
        validate_registered(uri).map_err(invalid)?;
    }
    let all_local = redirect_uris.iter().all(|u| url::Url::parse(u).is_ok_and(|u| u.scheme() != "https"));
    let application_type = if all_local { "native" } else { "web" };
    let auth_method = if confidential { "client_secret_basic" } else { "none" };
    let secret = if confidential { Some(new_secret(SecretKind::ClientSecret)?) } else { None };
    let id = uuid::Uuid::now_v7().to_string();
    let now = clock.now();
    let grant_types = ["authorization_code", "refresh_token"];
    let metadata = json!({
        "client_id": id,
        "client_id_issued_at": now,
        "client_name": name,
        "redirect_uris": redirect_uris,
        "grant_types": grant_types,
        "response_types": ["code"],
        "token_endpoint_auth_method": auth_method,
        "application_type": application_type,
    });
    let row = NewClient {
        id,
        secret_hash: secret.as_deref().map(hash_secret),
        client_name: name,
        redirect_uris: json!(redirect_uris).to_string(),
        grant_types: json!(grant_types).to_string(),
        token_endpoint_auth_method: auth_method.to_owned(),
        application_type: application_type.to_owned(),
        scope: None,
        workspace_id: Some(workspace_id.to_owned()),
        source: "admin".into(),
        metadata: metadata.to_string(),
        created_at: now,
        last_used_at: None,
    };
    store.insert_client(&row).await?;
    Ok((row, secret))
}
