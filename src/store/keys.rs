//! Signing keys. The private half is an AES-256-GCM envelope made by `crypto::aead`.

use super::{Store, StoreResult, with_pool};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SigningKeyRow {
    pub kid: String,
    pub alg: String,
    pub private_key: Vec<u8>,
    pub public_jwk: String,
    pub created_at: i64,
    pub retired_at: Option<i64>,
}

impl Store {
    pub async fn insert_signing_key(&self, row: &SigningKeyRow) -> StoreResult<()> {
        with_pool!(self.pool(), p => sqlx::query(
            "INSERT INTO signing_keys (kid, alg, private_key, public_jwk, created_at, retired_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&row.kid).bind(&row.alg).bind(&row.private_key).bind(&row.public_jwk).bind(row.created_at).bind(row.retired_at)
        .execute(p).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Keys not yet retired, newest first: the first signs, all verify.
    pub async fn active_signing_keys(&self) -> StoreResult<Vec<SigningKeyRow>> {
        Ok(with_pool!(self.pool(), p => sqlx::query_as::<_, SigningKeyRow>(
            "SELECT kid, alg, private_key, public_jwk, created_at, retired_at FROM signing_keys
             WHERE retired_at IS NULL ORDER BY created_at DESC, kid DESC",
        ).fetch_all(p).await)?)
    }

    /// Every signing key, retired ones too (master key rotation).
    pub async fn all_signing_keys(&self) -> StoreResult<Vec<SigningKeyRow>> {
        Ok(with_pool!(self.pool(), p => sqlx::query_as::<_, SigningKeyRow>(
            "SELECT kid, alg, private_key, public_jwk, created_at, retired_at FROM signing_keys ORDER BY kid",
        ).fetch_all(p).await)?)
    }

    pub async fn reseal_signing_key(&self, kid: &str, private_key: &[u8]) -> StoreResult<()> {
        with_pool!(self.pool(), p => sqlx::query("UPDATE signing_keys SET private_key = $1 WHERE kid = $2")
            .bind(private_key).bind(kid).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(())
    }
}
