//! The credential vault's tables: how each upstream signs in (`upstream_credentials`) and the
//! tokens held for it (`upstream_tokens`). Secret columns hold sealed envelopes only; sealing
//! and opening happen in `vault`, never here.

use super::{Store, StoreResult, with_pool};

/// Owner of a workspace-shared token (client_credentials).
pub const WORKSPACE_OWNER: &str = "";

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CredentialRow {
    pub upstream_id: String,
    /// `client_credentials` or `authorization_code`.
    pub kind: String,
    pub issuer: Option<String>,
    pub authorization_endpoint: Option<String>,
    pub token_endpoint: String,
    pub client_id: String,
    /// Sealed.
    pub client_secret: Option<Vec<u8>>,
    /// Sealed PEM.
    pub private_key: Option<Vec<u8>>,
    pub auth_method: String,
    pub scope: Option<String>,
    pub resource: Option<String>,
    pub audience: Option<String>,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TokenRow {
    pub upstream_id: String,
    pub owner: String,
    /// Sealed.
    pub access_token: Vec<u8>,
    /// Sealed.
    pub refresh_token: Option<Vec<u8>>,
    pub scope: Option<String>,
    pub expires_at: Option<i64>,
    pub refresh_at: Option<i64>,
    pub failures: i64,
    pub retry_at: Option<i64>,
    /// `active` or `needs_reconnect`.
    pub status: String,
    pub problem: Option<String>,
    pub updated_at: i64,
}

macro_rules! credential_columns {
    () => {
        "upstream_id, kind, issuer, authorization_endpoint, token_endpoint, client_id, client_secret, private_key, auth_method, scope, resource, audience, updated_at"
    };
}
macro_rules! token_columns {
    () => {
        "upstream_id, owner, access_token, refresh_token, scope, expires_at, refresh_at, failures, retry_at, status, problem, updated_at"
    };
}

impl Store {
    /// Sets (or replaces) how an upstream signs in.
    pub async fn put_upstream_credential(&self, row: &CredentialRow) -> StoreResult<()> {
        let sql = concat!(
            "INSERT INTO upstream_credentials (",
            credential_columns!(),
            ")
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
             ON CONFLICT (upstream_id) DO UPDATE SET kind = excluded.kind, issuer = excluded.issuer,
               authorization_endpoint = excluded.authorization_endpoint, token_endpoint = excluded.token_endpoint,
               client_id = excluded.client_id, client_secret = excluded.client_secret,
               private_key = excluded.private_key, auth_method = excluded.auth_method, scope = excluded.scope,
               resource = excluded.resource, audience = excluded.audience, updated_at = excluded.updated_at"
        );
        with_pool!(self.pool(), p => sqlx::query(sql)
            .bind(&row.upstream_id).bind(&row.kind).bind(&row.issuer).bind(&row.authorization_endpoint)
            .bind(&row.token_endpoint).bind(&row.client_id).bind(&row.client_secret).bind(&row.private_key)
            .bind(&row.auth_method).bind(&row.scope).bind(&row.resource).bind(&row.audience).bind(row.updated_at)
            .execute(p).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn upstream_credential(&self, upstream_id: &str) -> StoreResult<Option<CredentialRow>> {
        let sql = concat!("SELECT ", credential_columns!(), " FROM upstream_credentials WHERE upstream_id = $1");
        Ok(with_pool!(self.pool(), p => sqlx::query_as::<_, CredentialRow>(sql)
            .bind(upstream_id).fetch_optional(p).await)?)
    }

    /// Every upstream's sign-in settings (for master key rotation).
    pub async fn all_upstream_credentials(&self) -> StoreResult<Vec<CredentialRow>> {
        let sql = concat!("SELECT ", credential_columns!(), " FROM upstream_credentials ORDER BY upstream_id");
        Ok(with_pool!(self.pool(), p => sqlx::query_as::<_, CredentialRow>(sql).fetch_all(p).await)?)
    }

    /// Removes an upstream's sign-in settings and every token held for it.
    pub async fn delete_upstream_credential(&self, upstream_id: &str) -> StoreResult<bool> {
        // One transaction: a failure between the two deletes must not leave tokens without the
        // credential they were obtained under (or the credential without its tokens gone).
        let done = with_pool!(self.pool(), p => {
            let mut tx = p.begin().await?;
            sqlx::query("DELETE FROM upstream_tokens WHERE upstream_id = $1").bind(upstream_id).execute(&mut *tx).await?;
            let done = sqlx::query("DELETE FROM upstream_credentials WHERE upstream_id = $1")
                .bind(upstream_id).execute(&mut *tx).await?.rows_affected();
            tx.commit().await?;
            done
        });
        Ok(done == 1)
    }

    /// Stores a freshly obtained token (a new connection, or a successful refresh), clearing
    /// any failure count and reconnect mark.
    pub async fn put_upstream_token(&self, row: &TokenRow) -> StoreResult<()> {
        let sql = concat!(
            "INSERT INTO upstream_tokens (",
            token_columns!(),
            ")
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (upstream_id, owner) DO UPDATE SET access_token = excluded.access_token,
               refresh_token = excluded.refresh_token, scope = excluded.scope, expires_at = excluded.expires_at,
               refresh_at = excluded.refresh_at, failures = excluded.failures, retry_at = excluded.retry_at,
               status = excluded.status, problem = excluded.problem, updated_at = excluded.updated_at,
               refreshing_until = NULL"
        );
        with_pool!(self.pool(), p => sqlx::query(sql)
            .bind(&row.upstream_id).bind(&row.owner).bind(&row.access_token).bind(&row.refresh_token)
            .bind(&row.scope).bind(row.expires_at).bind(row.refresh_at).bind(row.failures).bind(row.retry_at)
            .bind(&row.status).bind(&row.problem).bind(row.updated_at)
            .execute(p).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn upstream_token(&self, upstream_id: &str, owner: &str) -> StoreResult<Option<TokenRow>> {
        let sql = concat!("SELECT ", token_columns!(), " FROM upstream_tokens WHERE upstream_id = $1 AND owner = $2");
        Ok(with_pool!(self.pool(), p => sqlx::query_as::<_, TokenRow>(sql)
            .bind(upstream_id).bind(owner).fetch_optional(p).await)?)
    }

    /// Every token held (for master key rotation).
    pub async fn all_upstream_tokens(&self) -> StoreResult<Vec<TokenRow>> {
        let sql = concat!("SELECT ", token_columns!(), " FROM upstream_tokens ORDER BY upstream_id, owner");
        Ok(with_pool!(self.pool(), p => sqlx::query_as::<_, TokenRow>(sql).fetch_all(p).await)?)
    }

    /// The tokens of one person, for the pages.
    pub async fn upstream_tokens_of_owner(&self, owner: &str) -> StoreResult<Vec<TokenRow>> {
        let sql = concat!("SELECT ", token_columns!(), " FROM upstream_tokens WHERE owner = $1 ORDER BY upstream_id");
        Ok(with_pool!(self.pool(), p => sqlx::query_as::<_, TokenRow>(sql).bind(owner).fetch_all(p).await)?)
    }

    /// Active tokens due for a refresh at `now` whose backoff (if any) has passed, soonest first.
    pub async fn upstream_tokens_due(&self, now: i64, limit: i64) -> StoreResult<Vec<TokenRow>> {
        let sql = concat!(
            "SELECT ",
            token_columns!(),
            " FROM upstream_tokens
             WHERE status = 'active' AND refresh_at IS NOT NULL AND refresh_at <= $1
               AND (retry_at IS NULL OR retry_at <= $1)
             ORDER BY refresh_at LIMIT $2"
        );
        Ok(with_pool!(self.pool(), p => sqlx::query_as::<_, TokenRow>(sql).bind(now).bind(limit).fetch_all(p).await)?)
    }

    /// Claims the refresh of one token until `lease_until`, unless another request or node
    /// holds the claim or has already replaced the token (`seen` is the sealed access token the
    /// caller read: every seal is unique, so a row refreshed meanwhile no longer matches). One
    /// atomic statement, so of two racing refreshers exactly one wins, and nobody refreshes
    /// with a refresh token that was already spent.
    pub async fn claim_upstream_token_refresh(
        &self,
        upstream_id: &str,
        owner: &str,
        seen: &[u8],
        now: i64,
        lease_until: i64,
    ) -> StoreResult<bool> {
        let done = with_pool!(self.pool(), p => sqlx::query(
            "UPDATE upstream_tokens SET refreshing_until = $1
             WHERE upstream_id = $2 AND owner = $3 AND access_token = $5
               AND (refreshing_until IS NULL OR refreshing_until <= $4)",
        )
        .bind(lease_until).bind(upstream_id).bind(owner).bind(now).bind(seen)
        .execute(p).await.map(|r| r.rows_affected()))?;
        Ok(done == 1)
    }

    /// Counts a failed refresh and releases its claim: the next attempt waits until
    /// `retry_at`; with `give_up` the token is marked as needing a reconnection.
    pub async fn note_upstream_token_failure(
        &self,
        upstream_id: &str,
        owner: &str,
        retry_at: i64,
        give_up: bool,
        problem: &str,
        now: i64,
    ) -> StoreResult<()> {
        let status = if give_up { "needs_reconnect" } else { "active" };
        with_pool!(self.pool(), p => sqlx::query(
            "UPDATE upstream_tokens SET failures = failures + 1, retry_at = $1, status = $2, problem = $3,
               updated_at = $4, refreshing_until = NULL WHERE upstream_id = $5 AND owner = $6",
        )
        .bind(retry_at).bind(status).bind(problem).bind(now).bind(upstream_id).bind(owner)
        .execute(p).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Replaces the sealed columns of one token row (master key rotation), unless the row
    /// changed since `seen` (its sealed access token) was read: a refresh meanwhile wins, and
    /// its envelope is still readable under the earlier key. False if not replaced.
    pub async fn reseal_upstream_token(
        &self,
        upstream_id: &str,
        owner: &str,
        seen: &[u8],
        access_token: &[u8],
        refresh_token: Option<&[u8]>,
    ) -> StoreResult<bool> {
        let done = with_pool!(self.pool(), p => sqlx::query(
            "UPDATE upstream_tokens SET access_token = $1, refresh_token = $2
             WHERE upstream_id = $3 AND owner = $4 AND access_token = $5",
        )
        .bind(access_token).bind(refresh_token).bind(upstream_id).bind(owner).bind(seen)
        .execute(p).await.map(|r| r.rows_affected()))?;
        Ok(done == 1)
    }

    pub async fn delete_upstream_token(&self, upstream_id: &str, owner: &str) -> StoreResult<bool> {
        let done = with_pool!(self.pool(), p => sqlx::query(
            "DELETE FROM upstream_tokens WHERE upstream_id = $1 AND owner = $2",
        ).bind(upstream_id).bind(owner).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(done == 1)
    }
}

/// An authorization request started with the Connect button.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OAuthStateRow {
    pub state_hash: String,
    pub upstream_id: String,
    pub user_id: String,
    pub session_hash: String,
    /// Sealed PKCE verifier.
    pub verifier: Vec<u8>,
    pub redirect_uri: String,
    pub issuer: String,
    pub iss_required: i64,
    pub created_at: i64,
    pub expires_at: i64,
    pub consumed_at: Option<i64>,
}

macro_rules! state_columns {
    () => {
        "state_hash, upstream_id, user_id, session_hash, verifier, redirect_uri, issuer, iss_required, created_at, expires_at, consumed_at"
    };
}

impl Store {
    pub async fn insert_upstream_oauth_state(&self, row: &OAuthStateRow) -> StoreResult<()> {
        let sql = concat!(
            "INSERT INTO upstream_oauth_states (",
            state_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        );
        with_pool!(self.pool(), p => sqlx::query(sql)
            .bind(&row.state_hash).bind(&row.upstream_id).bind(&row.user_id).bind(&row.session_hash)
            .bind(&row.verifier).bind(&row.redirect_uri).bind(&row.issuer).bind(row.iss_required)
            .bind(row.created_at).bind(row.expires_at).bind(row.consumed_at)
            .execute(p).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Uses up a state: only once, only before it expires, only from the browser session that
    /// started it. One atomic statement; `None` when any of that fails.
    pub async fn consume_upstream_oauth_state(
        &self,
        state_hash: &str,
        session_hash: &str,
        now: i64,
    ) -> StoreResult<Option<OAuthStateRow>> {
        let sql = concat!(
            "UPDATE upstream_oauth_states SET consumed_at = $1
             WHERE state_hash = $2 AND session_hash = $3 AND consumed_at IS NULL AND expires_at > $1
             RETURNING ",
            state_columns!()
        );
        Ok(with_pool!(self.pool(), p => sqlx::query_as::<_, OAuthStateRow>(sql)
            .bind(now).bind(state_hash).bind(session_hash).fetch_optional(p).await)?)
    }

    /// A state as it is (to tell why consuming it failed).
    pub async fn upstream_oauth_state(&self, state_hash: &str) -> StoreResult<Option<OAuthStateRow>> {
        let sql = concat!("SELECT ", state_columns!(), " FROM upstream_oauth_states WHERE state_hash = $1");
        Ok(with_pool!(self.pool(), p => sqlx::query_as::<_, OAuthStateRow>(sql)
            .bind(state_hash).fetch_optional(p).await)?)
    }

    /// Every state not yet expired (master key rotation).
    pub async fn live_upstream_oauth_states(&self, now: i64) -> StoreResult<Vec<OAuthStateRow>> {
        let sql = concat!("SELECT ", state_columns!(), " FROM upstream_oauth_states WHERE expires_at > $1");
        Ok(with_pool!(self.pool(), p => sqlx::query_as::<_, OAuthStateRow>(sql).bind(now).fetch_all(p).await)?)
    }

    pub async fn reseal_upstream_oauth_state(&self, state_hash: &str, verifier: &[u8]) -> StoreResult<()> {
        with_pool!(self.pool(), p => sqlx::query("UPDATE upstream_oauth_states SET verifier = $1 WHERE state_hash = $2")
            .bind(verifier).bind(state_hash).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Deletes states expired more than a day ago (kept that long to name a replay as such).
    pub async fn purge_upstream_oauth_states(&self, now: i64) -> StoreResult<u64> {
        Ok(with_pool!(self.pool(), p => sqlx::query("DELETE FROM upstream_oauth_states WHERE expires_at < $1")
            .bind(now - 86_400).execute(p).await.map(|r| r.rows_affected()))?)
    }
}

impl Store {
    /// The sealed introspection secrets of workspaces that trust an external issuer
    /// (workspace id, envelope), for master key rotation.
    pub async fn sealed_introspection_secrets(&self) -> StoreResult<Vec<(String, Vec<u8>)>> {
        Ok(with_pool!(self.pool(), p => sqlx::query_as::<_, (String, Vec<u8>)>(
            "SELECT workspace_id, introspection_secret FROM workspace_issuers WHERE introspection_secret IS NOT NULL
             ORDER BY workspace_id",
        ).fetch_all(p).await)?)
    }

    pub async fn reseal_introspection_secret(&self, workspace_id: &str, sealed: &[u8]) -> StoreResult<()> {
        with_pool!(self.pool(), p => sqlx::query(
            "UPDATE workspace_issuers SET introspection_secret = $1 WHERE workspace_id = $2",
        ).bind(sealed).bind(workspace_id).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(())
    }
}
