//! Machine tokens for headless use: long-lived, workspace-bound, stored as hashes.

use super::{Store, StoreResult, with_pool};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MachineTokenRow {
    pub id: String,
    pub token_hash: String,
    pub name: String,
    pub workspace_id: String,
    pub scope: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// The person who made it on the Machine tokens page; `None` for the CLI.
    pub created_by: Option<String>,
}

macro_rules! machine_token_columns {
    () => {
        "id, token_hash, name, workspace_id, scope, created_at, expires_at, last_used_at, revoked_at, created_by"
    };
}

impl Store {
    pub async fn insert_machine_token(&self, row: &MachineTokenRow) -> StoreResult<()> {
        with_pool!(self.pool(), p => sqlx::query(
            "INSERT INTO machine_tokens (id, token_hash, name, workspace_id, scope, created_at, expires_at, last_used_at, revoked_at, created_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&row.id).bind(&row.token_hash).bind(&row.name).bind(&row.workspace_id).bind(&row.scope)
        .bind(row.created_at).bind(row.expires_at).bind(row.last_used_at).bind(row.revoked_at).bind(&row.created_by)
        .execute(p).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn machine_token_by_hash(&self, token_hash: &str) -> StoreResult<Option<MachineTokenRow>> {
        let sql = concat!("SELECT ", machine_token_columns!(), " FROM machine_tokens WHERE token_hash = $1");
        Ok(
            with_pool!(self.pool(), p => sqlx::query_as::<_, MachineTokenRow>(sql).bind(token_hash).fetch_optional(p).await)?,
        )
    }

    pub async fn machine_tokens_in_workspace(&self, workspace_id: &str) -> StoreResult<Vec<MachineTokenRow>> {
        let sql = concat!(
            "SELECT ",
            machine_token_columns!(),
            " FROM machine_tokens WHERE workspace_id = $1 ORDER BY created_at"
        );
        Ok(
            with_pool!(self.pool(), p => sqlx::query_as::<_, MachineTokenRow>(sql).bind(workspace_id).fetch_all(p).await)?,
        )
    }

    /// Revokes by id; returns false when no live token had that id.
    pub async fn revoke_machine_token(&self, id: &str, now: i64) -> StoreResult<bool> {
        let done = with_pool!(self.pool(), p => sqlx::query(
            "UPDATE machine_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
        ).bind(now).bind(id).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(done == 1)
    }

    /// Machine tokens of a workspace with their creators' emails, newest first; only those
    /// `created_by` made when it is given.
    pub async fn machine_tokens_listed(
        &self,
        workspace_id: &str,
        created_by: Option<&str>,
    ) -> StoreResult<Vec<(MachineTokenRow, Option<String>)>> {
        #[derive(sqlx::FromRow)]
        struct Listed {
            #[sqlx(flatten)]
            row: MachineTokenRow,
            creator_email: Option<String>,
        }
        let rows = with_pool!(self.pool(), p => sqlx::query_as::<_, Listed>(
            "SELECT t.id, t.token_hash, t.name, t.workspace_id, t.scope, t.created_at, t.expires_at, t.last_used_at,
                    t.revoked_at, t.created_by, u.email AS creator_email
             FROM machine_tokens t LEFT JOIN users u ON u.id = t.created_by
             WHERE t.workspace_id = $1 AND ($2 IS NULL OR t.created_by = $2)
             ORDER BY t.created_at DESC, t.id DESC",
        ).bind(workspace_id).bind(created_by).fetch_all(p).await)?;
        Ok(rows.into_iter().map(|l| (l.row, l.creator_email)).collect())
    }

    /// Revokes a token of this workspace (only one `created_by` made, when given).
    pub async fn revoke_machine_token_in(
        &self,
        workspace_id: &str,
        id: &str,
        created_by: Option<&str>,
        now: i64,
    ) -> StoreResult<Option<MachineTokenRow>> {
        let sql = concat!(
            "UPDATE machine_tokens SET revoked_at = $1
             WHERE id = $2 AND workspace_id = $3 AND revoked_at IS NULL AND ($4 IS NULL OR created_by = $4)
             RETURNING ",
            machine_token_columns!()
        );
        Ok(with_pool!(self.pool(), p => sqlx::query_as::<_, MachineTokenRow>(sql)
            .bind(now).bind(id).bind(workspace_id).bind(created_by).fetch_optional(p).await)?)
    }
}
