//! OpenID Connect sign-in: identities linked to accounts, and the sign-ins under way.

use super::{Store, StoreError, StoreResult, with_pool};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OidcLoginState {
    pub provider_id: String,
    pub browser_hash: String,
    pub next_path: String,
}

impl Store {
    pub async fn insert_oidc_login_state(
        &self,
        state_hash: &str,
        login: &OidcLoginState,
        now: i64,
        expires_at: i64,
    ) -> StoreResult<()> {
        with_pool!(self.pool(), p => sqlx::query(
            "INSERT INTO oidc_login_states (state_hash, provider_id, browser_hash, next_path, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(state_hash).bind(&login.provider_id).bind(&login.browser_hash).bind(&login.next_path)
        .bind(now).bind(expires_at)
        .execute(p).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Marks a sign-in's state used and returns it, once: a second call (a replay), an
    /// unknown state or an expired one gets `None`. One statement, so two racing callbacks
    /// cannot both succeed.
    pub async fn consume_oidc_login_state(&self, state_hash: &str, now: i64) -> StoreResult<Option<OidcLoginState>> {
        Ok(with_pool!(self.pool(), p => sqlx::query_as::<_, OidcLoginState>(
            "UPDATE oidc_login_states SET consumed_at = $1
             WHERE state_hash = $2 AND consumed_at IS NULL AND expires_at > $1
             RETURNING provider_id, browser_hash, next_path",
        ).bind(now).bind(state_hash).fetch_optional(p).await)?)
    }

    pub async fn purge_oidc_login_states(&self, now: i64) -> StoreResult<u64> {
        Ok(with_pool!(self.pool(), p => sqlx::query("DELETE FROM oidc_login_states WHERE expires_at <= $1")
            .bind(now).execute(p).await.map(|r| r.rows_affected()))?)
    }

    /// The account a provider's subject is linked to.
    pub async fn user_id_by_oidc_identity(&self, provider_id: &str, subject: &str) -> StoreResult<Option<String>> {
        Ok(with_pool!(self.pool(), p => sqlx::query_scalar::<_, String>(
            "SELECT user_id FROM oidc_identities WHERE provider_id = $1 AND subject = $2",
        ).bind(provider_id).bind(subject).fetch_optional(p).await)?)
    }

    pub async fn link_oidc_identity(
        &self,
        provider_id: &str,
        subject: &str,
        user_id: &str,
        email: Option<&str>,
        now: i64,
    ) -> StoreResult<()> {
        with_pool!(self.pool(), p => sqlx::query(
            "INSERT INTO oidc_identities (provider_id, subject, user_id, email, created_at, last_login_at)
             VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .bind(provider_id).bind(subject).bind(user_id).bind(email).bind(now)
        .execute(p).await.map(|r| r.rows_affected()))
        .map_err(|e| StoreError::conflict_on_unique(e, "this identity"))?;
        Ok(())
    }

    pub async fn touch_oidc_identity(
        &self,
        provider_id: &str,
        subject: &str,
        email: Option<&str>,
        now: i64,
    ) -> StoreResult<()> {
        with_pool!(self.pool(), p => sqlx::query(
            "UPDATE oidc_identities SET last_login_at = $1, email = $2 WHERE provider_id = $3 AND subject = $4",
        )
        .bind(now).bind(email).bind(provider_id).bind(subject)
        .execute(p).await.map(|r| r.rows_affected()))?;
        Ok(())
    }
}
