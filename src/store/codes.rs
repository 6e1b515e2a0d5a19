//! Authorization codes: 60 seconds, single use. Consumption is one conditional UPDATE,
//! so two racing redemptions cannot both succeed, on either backend.

use super::{Store, StoreResult, with_pool};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CodeRow {
    pub code_hash: String,
    pub client_id: String,
    pub user_id: String,
    pub workspace_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub scope: String,
    pub created_at: i64,
    pub expires_at: i64,
}

pub type NewCode = CodeRow;

/// What presenting a code found.
#[derive(Debug)]
pub enum CodeRedemption {
    /// First presentation: the code is now consumed and its details returned.
    Fresh(CodeRow),
    /// The code was consumed before; whatever it issued must be revoked.
    Replayed {
        grant_id: Option<String>,
    },
    Unknown,
}

macro_rules! code_columns {
    () => {
        "code_hash, client_id, user_id, workspace_id, redirect_uri, code_challenge, scope, created_at, expires_at"
    };
}

impl Store {
    pub async fn insert_code(&self, c: &NewCode) -> StoreResult<()> {
        with_pool!(self.pool(), p => sqlx::query(
            "INSERT INTO authorization_codes (code_hash, client_id, user_id, workspace_id, redirect_uri, code_challenge, scope, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&c.code_hash).bind(&c.client_id).bind(&c.user_id).bind(&c.workspace_id).bind(&c.redirect_uri)
        .bind(&c.code_challenge).bind(&c.scope).bind(c.created_at).bind(c.expires_at)
        .execute(p).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Consumes the code (whatever happens next, it cannot be used again) or reports a replay,
    /// marking it so that a grant still being issued from it is refused.
    pub async fn redeem_code(&self, code_hash: &str, now: i64) -> StoreResult<CodeRedemption> {
        let sql = concat!(
            "UPDATE authorization_codes SET consumed_at = $1 WHERE code_hash = $2 AND consumed_at IS NULL RETURNING ",
            code_columns!()
        );
        let fresh = with_pool!(self.pool(), p => sqlx::query_as::<_, CodeRow>(sql).bind(now).bind(code_hash).fetch_optional(p).await)?;
        if let Some(code) = fresh {
            return Ok(CodeRedemption::Fresh(code));
        }
        let replayed = with_pool!(self.pool(), p => sqlx::query_scalar::<_, Option<String>>(
            "UPDATE authorization_codes SET replayed_at = $1 WHERE code_hash = $2 RETURNING grant_id",
        ).bind(now).bind(code_hash).fetch_optional(p).await)?;
        Ok(match replayed {
            Some(grant_id) => CodeRedemption::Replayed { grant_id },
            None => CodeRedemption::Unknown,
        })
    }

    /// Deletes codes that expired more than a day ago (kept that long so replays are still recognised).
    pub async fn purge_codes(&self, now: i64) -> StoreResult<u64> {
        let done = with_pool!(self.pool(), p => sqlx::query("DELETE FROM authorization_codes WHERE expires_at < $1")
            .bind(now - 86_400).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(done)
    }
}
