//! Members of a workspace as the Members page shows and changes them.

use super::{Store, StoreResult, WorkspaceRow, with_pool};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MemberRow {
    pub user_id: String,
    pub email: String,
    pub role: String,
    pub is_admin: bool,
    pub joined_at: i64,
}

impl Store {
    pub async fn members_of(&self, workspace_id: &str) -> StoreResult<Vec<MemberRow>> {
        Ok(with_pool!(self.pool(), p => sqlx::query_as::<_, MemberRow>(
            "SELECT u.id AS user_id, u.email, m.role, u.is_admin, m.created_at AS joined_at
             FROM memberships m JOIN users u ON u.id = m.user_id
             WHERE m.workspace_id = $1 ORDER BY u.email",
        ).bind(workspace_id).fetch_all(p).await)?)
    }

    pub async fn count_owners(&self, workspace_id: &str) -> StoreResult<i64> {
        Ok(with_pool!(self.pool(), p => sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM memberships WHERE workspace_id = $1 AND role = 'owner'",
        ).bind(workspace_id).fetch_one(p).await)?)
    }

    /// Removes a person from a workspace and, in the same transaction, everything that let
    /// them act there: their grants are revoked, their consents forgotten and the machine
    /// tokens they created revoked. False if they were not a member.
    pub async fn remove_member(&self, workspace_id: &str, user_id: &str, now: i64) -> StoreResult<bool> {
        with_pool!(self.pool(), p => {
            let mut tx = p.begin().await?;
            let gone = sqlx::query("DELETE FROM memberships WHERE workspace_id = $1 AND user_id = $2")
                .bind(workspace_id).bind(user_id).execute(&mut *tx).await?;
            if gone.rows_affected() == 0 {
                tx.rollback().await?;
                return Ok(false);
            }
            sqlx::query(
                "UPDATE grants SET revoked_at = $1, revoked_reason = 'removed from the workspace'
                 WHERE workspace_id = $2 AND user_id = $3 AND revoked_at IS NULL",
            ).bind(now).bind(workspace_id).bind(user_id).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM consents WHERE workspace_id = $1 AND user_id = $2")
                .bind(workspace_id).bind(user_id).execute(&mut *tx).await?;
            sqlx::query(
                "UPDATE machine_tokens SET revoked_at = $1 WHERE workspace_id = $2 AND created_by = $3 AND revoked_at IS NULL",
            ).bind(now).bind(workspace_id).bind(user_id).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Every workspace, by slug (the switcher of server admins).
    pub async fn all_workspaces(&self) -> StoreResult<Vec<WorkspaceRow>> {
        Ok(with_pool!(self.pool(), p => sqlx::query_as::<_, WorkspaceRow>(
            "SELECT id, slug, name, created_at, upstreams_version, revocations_version FROM workspaces ORDER BY slug",
        ).fetch_all(p).await)?)
    }
}
