//! Browser sessions: the cookie holds a random token, the table only its hash.

use super::{Store, StoreResult, with_pool};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRow {
    pub token_hash: String,
    pub user_id: String,
    pub created_at: i64,
    pub expires_at: i64,
}

impl Store {
    pub async fn insert_session(&self, row: &SessionRow, user_agent: Option<&str>) -> StoreResult<()> {
        with_pool!(self.pool(), p => sqlx::query(
            "INSERT INTO browser_sessions (token_hash, user_id, created_at, expires_at, user_agent) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&row.token_hash).bind(&row.user_id).bind(row.created_at).bind(row.expires_at).bind(user_agent)
        .execute(p).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// The live session with this token hash, if it has not expired at `now`.
    pub async fn live_session(&self, token_hash: &str, now: i64) -> StoreResult<Option<SessionRow>> {
        Ok(with_pool!(self.pool(), p => sqlx::query_as::<_, SessionRow>(
            "SELECT token_hash, user_id, created_at, expires_at FROM browser_sessions WHERE token_hash = $1 AND expires_at > $2",
        )
        .bind(token_hash).bind(now).fetch_optional(p).await)?)
    }

    pub async fn purge_sessions(&self, now: i64) -> StoreResult<u64> {
        Ok(with_pool!(self.pool(), p => sqlx::query("DELETE FROM browser_sessions WHERE expires_at <= $1")
            .bind(now).execute(p).await.map(|r| r.rows_affected()))?)
    }

    pub async fn delete_session(&self, token_hash: &str) -> StoreResult<()> {
        with_pool!(self.pool(), p => sqlx::query("DELETE FROM browser_sessions WHERE token_hash = $1")
            .bind(token_hash).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Ends every session of a user but the one whose hash is `keep` (after a password change).
    pub async fn delete_other_sessions(&self, user_id: &str, keep: &str) -> StoreResult<u64> {
        Ok(
            with_pool!(self.pool(), p => sqlx::query("DELETE FROM browser_sessions WHERE user_id = $1 AND token_hash <> $2")
            .bind(user_id).bind(keep).execute(p).await.map(|r| r.rows_affected()))?,
        )
    }
}
