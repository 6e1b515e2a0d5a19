//! Workspaces and who belongs to them.

use super::{Store, StoreError, StoreResult, with_pool};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WorkspaceRow {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub created_at: i64,
    /// Bumped (by a trigger, see migration 0008) with every change to the workspace's
    /// upstreams: the gateway lists them again only when it moved. 0 for a new workspace.
    pub upstreams_version: i64,
    /// Bumped (by triggers, see migration 0009) with every revocation in the workspace: what
    /// the gateway found alive counts only under the value it was found with.
    pub revocations_version: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MembershipRow {
    pub workspace_id: String,
    pub user_id: String,
    pub role: String,
    pub created_at: i64,
}

impl Store {
    pub async fn insert_workspace(&self, row: &WorkspaceRow) -> StoreResult<()> {
        with_pool!(self.pool(), p => sqlx::query(
            "INSERT INTO workspaces (id, slug, name, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&row.id).bind(&row.slug).bind(&row.name).bind(row.created_at)
        .execute(p).await.map(|r| r.rows_affected()))
        .map_err(|e| StoreError::conflict_on_unique(e, "a workspace with this slug"))?;
        Ok(())
    }

    pub async fn workspace_by_slug(&self, slug: &str) -> StoreResult<Option<WorkspaceRow>> {
        Ok(with_pool!(self.pool(), p => sqlx::query_as::<_, WorkspaceRow>(
            "SELECT id, slug, name, created_at, upstreams_version, revocations_version FROM workspaces WHERE slug = $1",
        ).bind(slug).fetch_optional(p).await)?)
    }

    pub async fn workspace_by_id(&self, id: &str) -> StoreResult<Option<WorkspaceRow>> {
        Ok(with_pool!(self.pool(), p => sqlx::query_as::<_, WorkspaceRow>(
            "SELECT id, slug, name, created_at, upstreams_version, revocations_version FROM workspaces WHERE id = $1",
        ).bind(id).fetch_optional(p).await)?)
    }

    /// Adds a member or changes the role of an existing one.
    pub async fn upsert_membership(&self, row: &MembershipRow) -> StoreResult<()> {
        with_pool!(self.pool(), p => sqlx::query(
            "INSERT INTO memberships (workspace_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (workspace_id, user_id) DO UPDATE SET role = excluded.role",
        )
        .bind(&row.workspace_id).bind(&row.user_id).bind(&row.role).bind(row.created_at)
        .execute(p).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn membership(&self, workspace_id: &str, user_id: &str) -> StoreResult<Option<MembershipRow>> {
        Ok(with_pool!(self.pool(), p => sqlx::query_as::<_, MembershipRow>(
            "SELECT workspace_id, user_id, role, created_at FROM memberships WHERE workspace_id = $1 AND user_id = $2",
        ).bind(workspace_id).bind(user_id).fetch_optional(p).await)?)
    }

    /// The workspaces a user belongs to, by slug.
    pub async fn workspaces_of_user(&self, user_id: &str) -> StoreResult<Vec<WorkspaceRow>> {
        Ok(with_pool!(self.pool(), p => sqlx::query_as::<_, WorkspaceRow>(
            "SELECT w.id, w.slug, w.name, w.created_at, w.upstreams_version, w.revocations_version FROM workspaces w
             JOIN memberships m ON m.workspace_id = w.id WHERE m.user_id = $1 ORDER BY w.slug",
        ).bind(user_id).fetch_all(p).await)?)
    }
}
