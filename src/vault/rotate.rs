//! `gatehouse keys rotate-master`: everything sealed under the master key (signing keys,
//! upstream headers, upstream client secrets and private keys, upstream tokens, Connect
//! verifiers, external issuers' introspection secrets) is opened with the key ring and sealed again under the new current key. The
//! earlier key stays in the ring, so data a running node writes meanwhile under the old key
//! stays readable; nothing is lost if the rotation stops half-way (run it again).

use super::credential::slot;
use crate::crypto::CryptoError;
use crate::crypto::aead::{Sealer, Slot};
use crate::store::{Store, StoreError};

/// How many sealed values were re-sealed, per kind.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Resealed {
    pub signing_keys: usize,
    pub upstream_headers: usize,
    pub upstream_secrets: usize,
    pub upstream_tokens: usize,
    pub connect_states: usize,
    /// Introspection client secrets of workspaces that trust an external issuer.
    pub issuer_secrets: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{what}: {source}")]
    Crypto { what: String, source: CryptoError },
}

fn reseal(sealer: &Sealer, sealed: &[u8], at: &Slot<'_>) -> Result<Vec<u8>, RotateError> {
    let what = || format!("{} {} {}", at.table, at.row, at.column);
    let plain = sealer.open(sealed, at).map_err(|source| RotateError::Crypto { what: what(), source })?;
    sealer.seal(&plain, at).map_err(|source| RotateError::Crypto { what: what(), source })
}

/// Re-seals everything under `sealer`'s current key (it must also hold the earlier keys).
pub async fn reseal_all(store: &Store, sealer: &Sealer, now: i64) -> Result<Resealed, RotateError> {
    let mut done = Resealed::default();
    for key in store.all_signing_keys().await? {
        let sealed = reseal(sealer, &key.private_key, &slot("signing_keys", &key.kid, "private_key"))?;
        store.reseal_signing_key(&key.kid, &sealed).await?;
        done.signing_keys += 1;
    }
    for upstream in store.all_upstreams().await? {
        if let Some(headers) = &upstream.headers {
            let sealed = reseal(sealer, headers, &slot("upstreams", &upstream.id, "headers"))?;
            store.reseal_upstream_headers(&upstream.id, &sealed).await?;
            done.upstream_headers += 1;
        }
    }
    for mut credential in store.all_upstream_credentials().await? {
        let id = credential.upstream_id.clone();
        if let Some(secret) = &credential.client_secret {
            credential.client_secret =
                Some(reseal(sealer, secret, &slot("upstream_credentials", &id, "client_secret"))?);
            done.upstream_secrets += 1;
        }
        if let Some(key) = &credential.private_key {
            credential.private_key = Some(reseal(sealer, key, &slot("upstream_credentials", &id, "private_key"))?);
            done.upstream_secrets += 1;
        }
        store.put_upstream_credential(&credential).await?;
    }
    for token in store.all_upstream_tokens().await? {
        let row = format!("{}/{}", token.upstream_id, token.owner);
        let access = reseal(sealer, &token.access_token, &slot("upstream_tokens", &row, "access_token"))?;
        let refresh = token
            .refresh_token
            .as_ref()
            .map(|rt| reseal(sealer, rt, &slot("upstream_tokens", &row, "refresh_token")))
            .transpose()?;
        if store
            .reseal_upstream_token(&token.upstream_id, &token.owner, &token.access_token, &access, refresh.as_deref())
            .await?
        {
            done.upstream_tokens += 1;
        }
    }
    for state in store.live_upstream_oauth_states(now).await? {
        let sealed = reseal(sealer, &state.verifier, &slot("upstream_oauth_states", &state.state_hash, "verifier"))?;
        store.reseal_upstream_oauth_state(&state.state_hash, &sealed).await?;
        done.connect_states += 1;
    }
    for (workspace_id, secret) in store.sealed_introspection_secrets().await? {
        let sealed = reseal(sealer, &secret, &slot("workspace_issuers", &workspace_id, "introspection_secret"))?;
        store.reseal_introspection_secret(&workspace_id, &sealed).await?;
        done.issuer_secrets += 1;
    }
    Ok(done)
}
