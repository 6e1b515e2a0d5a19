//! Grants and their refresh-token families.
//!
//! A grant is what one authorization issued. Its refresh tokens form one family: each use
//! rotates the token, and a used token presented again (after a short grace) revokes the grant,
//! which every access token carrying the grant id also loses on its next use.

use super::rotations::Rotation;
use super::{Store, StoreResult, with_pool};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct GrantRow {
    pub id: String,
    pub user_id: Option<String>,
    pub client_id: String,
    pub workspace_id: String,
    pub scope: String,
    pub redirect_uri: Option<String>,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub revoked_reason: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewRefreshToken {
    pub token_hash: String,
    pub grant_id: String,
    pub scope: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// What presenting a refresh token found.
#[derive(Debug)]
pub enum RefreshOutcome {
    /// Rotated: the old token is spent and `new` is stored in the same transaction.
    Rotated { grant: Box<GrantRow>, old_scope: String },
    /// Presented again after use. `revoked` is true when this revoked the family `grant_id`.
    Reused { grant_id: String, revoked: bool },
    /// Unknown, expired, issued to another client, or its grant is revoked.
    Invalid,
}

macro_rules! grant_columns {
    () => {
        "id, user_id, client_id, workspace_id, scope, redirect_uri, created_at, last_used_at, revoked_at, revoked_reason"
    };
}

/// The columns of [`GrantRow`], for statements built at run time.
pub(super) const GRANT_COLUMNS: &str = grant_columns!();

/// Inserts one refresh-token row on an open transaction.
macro_rules! insert_refresh {
    ($conn:expr, $r:expr) => {
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, grant_id, scope, created_at, expires_at, used_at) VALUES ($1, $2, $3, $4, $5, NULL)",
        )
        .bind(&$r.token_hash)
        .bind(&$r.grant_id)
        .bind(&$r.scope)
        .bind($r.created_at)
        .bind($r.expires_at)
        .execute($conn)
        .await?
    };
}

impl Store {
    /// Issues a grant from a consumed authorization code: the grant, its first refresh token (if any),
    /// and the code's link to the grant, all or nothing. Returns false (writing nothing) when
    /// the code was replayed meanwhile.
    pub async fn issue_grant_from_code(
        &self,
        code_hash: &str,
        grant: &GrantRow,
        refresh: Option<&NewRefreshToken>,
    ) -> StoreResult<bool> {
        with_pool!(self.pool(), p => {
            let mut tx = p.begin().await?;
            sqlx::query(
                "INSERT INTO grants (id, user_id, client_id, workspace_id, scope, redirect_uri, created_at, last_used_at, revoked_at, revoked_reason)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, NULL)",
            )
            .bind(&grant.id).bind(&grant.user_id).bind(&grant.client_id).bind(&grant.workspace_id)
            .bind(&grant.scope).bind(&grant.redirect_uri).bind(grant.created_at).bind(grant.last_used_at)
            .execute(&mut *tx).await?;
            if let Some(refresh) = refresh {
                insert_refresh!(&mut *tx, refresh);
            }
            let linked = sqlx::query(
                "UPDATE authorization_codes SET grant_id = $1 WHERE code_hash = $2 AND replayed_at IS NULL",
            ).bind(&grant.id).bind(code_hash).execute(&mut *tx).await?;
            if linked.rows_affected() != 1 {
                tx.rollback().await?;
                return Ok(false);
            }
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Records a grant that has no refresh token (client_credentials).
    pub async fn insert_grant(&self, grant: &GrantRow) -> StoreResult<()> {
        with_pool!(self.pool(), p => sqlx::query(
            "INSERT INTO grants (id, user_id, client_id, workspace_id, scope, redirect_uri, created_at, last_used_at, revoked_at, revoked_reason)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, NULL)",
        )
        .bind(&grant.id).bind(&grant.user_id).bind(&grant.client_id).bind(&grant.workspace_id)
        .bind(&grant.scope).bind(&grant.redirect_uri).bind(grant.created_at).bind(grant.last_used_at)
        .execute(p).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Rotates a refresh token: spends the presented token (only if unused, unexpired, issued
    /// to `client_id` and its grant live) and stores `new` in its place, in one transaction
    /// shared with the rotations presented at the same time (see [`super::rotations`]).
    /// A token used more than `grace_secs` ago revokes its whole family.
    pub async fn rotate_refresh_token(
        &self,
        token_hash: &str,
        client_id: &str,
        now: i64,
        grace_secs: i64,
        new: &NewRefreshToken,
    ) -> StoreResult<RefreshOutcome> {
        self.rotations
            .rotate(Rotation {
                token_hash: token_hash.to_owned(),
                client_id: client_id.to_owned(),
                now,
                grace_secs,
                successor: new.clone(),
            })
            .await
    }

    /// How well rotations share commits: (groups committed, rotations they held) since the
    /// store was opened.
    pub fn rotation_groups(&self) -> (u64, u64) {
        self.rotations.counts()
    }

    /// Deletes refresh tokens past their expiry. Used ones are kept until then, because a
    /// used token presented again must still be recognised as reuse.
    pub async fn purge_refresh_tokens(&self, now: i64) -> StoreResult<u64> {
        Ok(with_pool!(self.pool(), p => sqlx::query("DELETE FROM refresh_tokens WHERE expires_at <= $1")
            .bind(now).execute(p).await.map(|r| r.rows_affected()))?)
    }

    /// The grant a live refresh token belongs to (for introspection and revocation).
    pub async fn grant_of_refresh_token(
        &self,
        token_hash: &str,
        now: i64,
    ) -> StoreResult<Option<(GrantRow, String, i64)>> {
        #[derive(sqlx::FromRow)]
        struct Live {
            grant_id: String,
            scope: String,
            expires_at: i64,
        }
        let live = with_pool!(self.pool(), p => sqlx::query_as::<_, Live>(
            "SELECT grant_id, scope, expires_at FROM refresh_tokens WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2",
        ).bind(token_hash).bind(now).fetch_optional(p).await)?;
        let Some(live) = live else { return Ok(None) };
        Ok(self.grant_by_id(&live.grant_id).await?.map(|g| (g, live.scope, live.expires_at)))
    }

    pub async fn grant_by_id(&self, id: &str) -> StoreResult<Option<GrantRow>> {
        let sql = concat!("SELECT ", grant_columns!(), " FROM grants WHERE id = $1");
        Ok(with_pool!(self.pool(), p => sqlx::query_as::<_, GrantRow>(sql).bind(id).fetch_optional(p).await)?)
    }

    /// Revokes a grant and so its refresh tokens and access tokens. True if it was live.
    pub async fn revoke_grant(&self, id: &str, now: i64, reason: &str) -> StoreResult<bool> {
        let done = with_pool!(self.pool(), p => sqlx::query(
            "UPDATE grants SET revoked_at = $1, revoked_reason = $2 WHERE id = $3 AND revoked_at IS NULL",
        ).bind(now).bind(reason).bind(id).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(done == 1)
    }

    /// On re-authorization, the older grants of the same person, app, workspace and
    /// redirect URI are superseded: one live grant per (user, app) connection.
    pub async fn supersede_grants(&self, keep: &GrantRow, now: i64) -> StoreResult<u64> {
        let done = with_pool!(self.pool(), p => sqlx::query(
            "UPDATE grants SET revoked_at = $1, revoked_reason = 'superseded by a new authorization'
             WHERE revoked_at IS NULL AND id <> $2 AND client_id = $3 AND user_id = $4 AND workspace_id = $5 AND redirect_uri = $6",
        ).bind(now).bind(&keep.id).bind(&keep.client_id).bind(&keep.user_id).bind(&keep.workspace_id).bind(&keep.redirect_uri)
        .execute(p).await.map(|r| r.rows_affected()))?;
        Ok(done)
    }
}
