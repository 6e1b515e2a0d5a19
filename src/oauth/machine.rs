//! Machine tokens: long-lived bearer tokens for headless use (CI, scripts), bound to one
//! workspace and a scope, shown once and stored as a hash.

use super::scope::ScopeSet;
use crate::clock::Clock;
use crate::crypto::{CryptoError, SecretKind, hash_secret, new_secret};
use crate::store::{MachineTokenRow, Store, StoreError};

pub const DEFAULT_TTL_SECS: i64 = 90 * 86_400;
pub const MAX_TTL_SECS: i64 = 365 * 86_400;

#[derive(Debug, thiserror::Error)]
pub enum MachineTokenError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// Creates a token; returns the secret (to print once) and the stored row.
pub async fn create(
    store: &Store,
    clock: &dyn Clock,
    workspace_slug: &str,
    scope: &str,
    ttl_secs: i64,
    name: &str,
) -> Result<(String, MachineTokenRow), MachineTokenError> {
    create_by(store, clock, workspace_slug, scope, ttl_secs, name, None).await
}

/// [`create`], recording who made the token (`created_by`, a user id) when made on a page.
pub async fn create_by(
    store: &Store,
    clock: &dyn Clock,
    workspace_slug: &str,
    scope: &str,
    ttl_secs: i64,
    name: &str,
    created_by: Option<&str>,
) -> Result<(String, MachineTokenRow), MachineTokenError> {
    if !(60..=MAX_TTL_SECS).contains(&ttl_secs) {
        return Err(MachineTokenError::Invalid("--expires must be between 1m and 365d (one year)".into()));
    }
    if scope.trim().is_empty() {
        return Err(MachineTokenError::Invalid(
            "--scope must name at least one scope, e.g. \"mcp:read mcp:tools\"".into(),
        ));
    }
    let scope = ScopeSet::parse_requested(Some(scope)).map_err(|e| MachineTokenError::Invalid(e.description))?;
    let ws = store.workspace_by_slug(workspace_slug).await?.ok_or_else(|| {
        MachineTokenError::Invalid(format!(
            "no workspace `{workspace_slug}`; list them with `gatehouse workspace list`"
        ))
    })?;
    let token = new_secret(SecretKind::MachineToken)?;
    let now = clock.now();
    let row = MachineTokenRow {
        id: uuid::Uuid::now_v7().to_string(),
        token_hash: hash_secret(&token),
        name: name.chars().filter(|c| !c.is_control()).take(100).collect(),
        workspace_id: ws.id,
        scope: scope.to_scope_string(),
        created_at: now,
        expires_at: now + ttl_secs,
        last_used_at: None,
        revoked_at: None,
        created_by: created_by.map(str::to_owned),
    };
    store.insert_machine_token(&row).await?;
    Ok((token, row))
}
