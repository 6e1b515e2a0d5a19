//! The Connect button: a person links their own account at an upstream's authorization
//! server (authorization code with PKCE). `begin` stores a state (random, kept as its hash,
//! ten minutes, bound to the browser session) and returns where to send the browser;
//! `finish` takes the callback, uses the state up (once), checks `iss`, exchanges the code and
//! keeps the tokens, sealed, for that person only.

use url::Url;

use super::credential::{GrantKind, slot};
use super::mcp_oauth::discovery::{Discovered, ServerMetadata};
use super::mcp_oauth::{self, Pending, Registration};
use super::{CALLBACK_PATH, Owner, Vault, VaultError};
use crate::crypto::hash_secret;
use crate::store::{OAuthStateRow, Store};

/// How long a Connect attempt may take.
pub const STATE_TTL_SECS: i64 = 600;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("this sign-in link is unknown; start again from the Connect button")]
    UnknownState,
    #[error("this sign-in link was already used; start again from the Connect button")]
    Replayed,
    #[error("this sign-in link expired (they last ten minutes); start again from the Connect button")]
    Expired,
    #[error("this sign-in was started in another browser session; start again from the Connect button here")]
    OtherBrowser,
    #[error("{0}")]
    Refused(String),
    #[error("this upstream is not set up for people to connect their accounts")]
    NotConnectable,
    #[error("the upstream's sign-in could not be discovered: {0}")]
    Discovery(String),
    #[error(transparent)]
    Vault(#[from] VaultError),
}

impl From<crate::crypto::CryptoError> for ConnectError {
    fn from(e: crate::crypto::CryptoError) -> Self {
        ConnectError::Vault(VaultError::Crypto(e))
    }
}

impl From<crate::store::StoreError> for ConnectError {
    fn from(e: crate::store::StoreError) -> Self {
        ConnectError::Vault(VaultError::Store(e))
    }
}

pub fn callback_url(public_url: &str) -> String {
    format!("{}{CALLBACK_PATH}", public_url.trim_end_matches('/'))
}

/// What discovery would have found, from an upstream's stored sign-in settings.
fn discovered_from(credential: &super::OAuthCredential) -> Discovered {
    let issuer = credential.issuer.clone().unwrap_or_else(|| {
        Url::parse(&credential.token_endpoint).map(|u| u.origin().ascii_serialization()).unwrap_or_default()
    });
    Discovered {
        resource: credential.resource.clone(),
        resource_scopes: None,
        server: ServerMetadata {
            issuer,
            authorization_endpoint: credential.authorization_endpoint.clone(),
            token_endpoint: Some(credential.token_endpoint.clone()),
            registration_endpoint: None,
            scopes_supported: None,
            // We always send PKCE S256; servers that ignore it lose nothing.
            code_challenge_methods_supported: Some(vec!["S256".into()]),
            token_endpoint_auth_methods_supported: None,
            client_id_metadata_document_supported: None,
            authorization_response_iss_parameter_supported: None,
            grant_types_supported: None,
        },
    }
}

/// For an HTTP upstream with no sign-in settings that answers 401: MCP-native discovery and
/// registration (Gatehouse's Client ID Metadata Document when our public URL is https and the
/// server supports it, else DCR), kept as the upstream's per-person sign-in settings.
/// `Ok(false)` when the upstream wants no token.
pub async fn discover_sign_in(
    vault: &Vault,
    upstream_id: &str,
    upstream_url: &str,
    public_url: &str,
    loopback_hosts: Vec<String>,
) -> Result<bool, ConnectError> {
    let http = mcp_oauth::guard::GuardedHttp::new(loopback_hosts).map_err(ConnectError::Discovery)?;
    let Some(header) = http.challenge_of(upstream_url).await.map_err(ConnectError::Discovery)? else {
        return Ok(false);
    };
    let challenge = mcp_oauth::challenge::parse(&header);
    let mcp_url = Url::parse(upstream_url).map_err(|e| ConnectError::Discovery(e.to_string()))?;
    let discovered = mcp_oauth::discovery::discover(&http, &mcp_url, challenge.resource_metadata.as_deref())
        .await
        .map_err(ConnectError::Discovery)?;
    let base = public_url.trim_end_matches('/');
    let identity = mcp_oauth::ClientIdentity {
        client_name: "Gatehouse".into(),
        redirect_uri: callback_url(public_url),
        metadata_url: base.starts_with("https://").then(|| format!("{base}{}", super::CLIENT_DOCUMENT_PATH)),
    };
    let registration = mcp_oauth::register(&http, &discovered, &identity, None, GrantKind::AuthorizationCode)
        .await
        .map_err(ConnectError::Discovery)?;
    let scope = mcp_oauth::choose_scope(&discovered, challenge.scope.as_deref(), None);
    let credential = mcp_oauth::credential_for(&discovered, &registration, GrantKind::AuthorizationCode, scope);
    vault.set_credential(upstream_id, &credential).await?;
    Ok(true)
}

/// Starts a connection for `user_id` in the browser session `session_hash`; returns the
/// authorization URL to redirect to.
pub async fn begin(
    vault: &Vault,
    store: &Store,
    upstream_id: &str,
    user_id: &str,
    session_hash: &str,
    public_url: &str,
) -> Result<String, ConnectError> {
    let credential = vault.credential(upstream_id).await?.ok_or(ConnectError::NotConnectable)?;
    if credential.grant != GrantKind::AuthorizationCode {
        return Err(ConnectError::NotConnectable);
    }
    let discovered = discovered_from(&credential);
    let registration = Registration {
        issuer: discovered.server.issuer.clone(),
        client_id: credential.client_id.clone(),
        client_secret: credential.client_secret.clone(),
        private_key: credential.private_key.clone(),
        auth_method: credential.auth_method,
    };
    let redirect_uri = callback_url(public_url);
    let pending = mcp_oauth::authorization_request(&discovered, &registration, &redirect_uri, credential.scope.clone())
        .map_err(ConnectError::Refused)?;
    let now = vault.clock().now();
    let state_hash = hash_secret(&pending.state);
    let verifier =
        vault.sealer().seal(pending.verifier.as_bytes(), &slot("upstream_oauth_states", &state_hash, "verifier"))?;
    store
        .insert_upstream_oauth_state(&OAuthStateRow {
            state_hash,
            upstream_id: upstream_id.to_owned(),
            user_id: user_id.to_owned(),
            session_hash: session_hash.to_owned(),
            verifier,
            redirect_uri,
            issuer: pending.issuer.clone(),
            iss_required: i64::from(pending.iss_required),
            created_at: now,
            expires_at: now + STATE_TTL_SECS,
            consumed_at: None,
        })
        .await?;
    Ok(pending.authorization_url)
}

/// What a finished connection was for.
#[derive(Debug, Clone)]
pub struct Connected {
    pub upstream_id: String,
    pub user_id: String,
}

/// Completes a connection from the callback URL the browser arrived at.
pub async fn finish(
    vault: &Vault,
    store: &Store,
    session_hash: &str,
    callback: &str,
) -> Result<Connected, ConnectError> {
    let url = Url::parse(callback).map_err(|e| ConnectError::Refused(e.to_string()))?;
    let state = url.query_pairs().find(|(k, _)| k == "state").map(|(_, v)| v.into_owned()).unwrap_or_default();
    let state_hash = hash_secret(&state);
    let now = vault.clock().now();
    let Some(row) = store.consume_upstream_oauth_state(&state_hash, session_hash, now).await? else {
        return Err(match store.upstream_oauth_state(&state_hash).await? {
            None => ConnectError::UnknownState,
            Some(row) if row.consumed_at.is_some() => ConnectError::Replayed,
            Some(row) if row.expires_at <= now => ConnectError::Expired,
            Some(_) => ConnectError::OtherBrowser,
        });
    };
    let verifier = vault.sealer().open(&row.verifier, &slot("upstream_oauth_states", &row.state_hash, "verifier"))?;
    let verifier =
        String::from_utf8(verifier).map_err(|_| ConnectError::Refused("stored verifier unreadable".into()))?;
    let pending = Pending {
        authorization_url: String::new(),
        state,
        verifier,
        redirect_uri: row.redirect_uri.clone(),
        issuer: row.issuer.clone(),
        iss_required: row.iss_required != 0,
        scope: None,
    };
    let code = mcp_oauth::callback_code(&pending, callback).map_err(ConnectError::Refused)?;
    vault
        .exchange_code(&row.upstream_id, Owner::Person(&row.user_id), &code, &pending.verifier, &pending.redirect_uri)
        .await?;
    Ok(Connected { upstream_id: row.upstream_id, user_id: row.user_id })
}
