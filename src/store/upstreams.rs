//! Upstream MCP servers per workspace.

use super::{Store, StoreError, StoreResult, with_pool};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UpstreamRow {
    pub id: String,
    pub workspace_id: String,
    pub name: String,
    /// `http`, `stdio` or `demo`.
    pub kind: String,
    pub url: Option<String>,
    /// JSON array: program and arguments.
    pub command: Option<String>,
    /// Sealed JSON array of [name, value] pairs.
    pub headers: Option<Vec<u8>>,
    pub created_at: i64,
}

impl Store {
    pub async fn insert_upstream(&self, row: &UpstreamRow) -> StoreResult<()> {
        with_pool!(self.pool(), p => sqlx::query(
            "INSERT INTO upstreams (id, workspace_id, name, kind, url, command, headers, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&row.id).bind(&row.workspace_id).bind(&row.name).bind(&row.kind).bind(&row.url)
        .bind(&row.command).bind(&row.headers).bind(row.created_at)
        .execute(p).await.map(|r| r.rows_affected()))
        .map_err(|e| StoreError::conflict_on_unique(e, "an upstream with this name in the workspace"))?;
        Ok(())
    }

    pub async fn upstreams_of_workspace(&self, workspace_id: &str) -> StoreResult<Vec<UpstreamRow>> {
        Ok(with_pool!(self.pool(), p => sqlx::query_as::<_, UpstreamRow>(
            "SELECT id, workspace_id, name, kind, url, command, headers, created_at FROM upstreams
             WHERE workspace_id = $1 ORDER BY name",
        ).bind(workspace_id).fetch_all(p).await)?)
    }

    pub async fn delete_upstream(&self, workspace_id: &str, name: &str) -> StoreResult<bool> {
        let done = with_pool!(self.pool(), p => sqlx::query("DELETE FROM upstreams WHERE workspace_id = $1 AND name = $2")
            .bind(workspace_id).bind(name).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(done == 1)
    }

    pub async fn upstream_by_name(&self, workspace_id: &str, name: &str) -> StoreResult<Option<UpstreamRow>> {
        Ok(with_pool!(self.pool(), p => sqlx::query_as::<_, UpstreamRow>(
            "SELECT id, workspace_id, name, kind, url, command, headers, created_at FROM upstreams
             WHERE workspace_id = $1 AND name = $2",
        ).bind(workspace_id).bind(name).fetch_optional(p).await)?)
    }

    pub async fn upstream_by_id(&self, id: &str) -> StoreResult<Option<UpstreamRow>> {
        Ok(with_pool!(self.pool(), p => sqlx::query_as::<_, UpstreamRow>(
            "SELECT id, workspace_id, name, kind, url, command, headers, created_at FROM upstreams WHERE id = $1",
        ).bind(id).fetch_optional(p).await)?)
    }

    /// Every upstream of every workspace (for master key rotation).
    pub async fn all_upstreams(&self) -> StoreResult<Vec<UpstreamRow>> {
        Ok(with_pool!(self.pool(), p => sqlx::query_as::<_, UpstreamRow>(
            "SELECT id, workspace_id, name, kind, url, command, headers, created_at FROM upstreams ORDER BY id",
        ).fetch_all(p).await)?)
    }

    /// Replaces where an upstream lives (kind, URL or command, headers); id and name stay.
    pub async fn update_upstream(&self, row: &UpstreamRow) -> StoreResult<bool> {
        let done = with_pool!(self.pool(), p => sqlx::query(
            "UPDATE upstreams SET kind = $1, url = $2, command = $3, headers = $4 WHERE id = $5 AND workspace_id = $6",
        )
        .bind(&row.kind).bind(&row.url).bind(&row.command).bind(&row.headers).bind(&row.id).bind(&row.workspace_id)
        .execute(p).await.map(|r| r.rows_affected()))?;
        Ok(done == 1)
    }

    /// Replaces the sealed headers of one upstream (master key rotation).
    pub async fn reseal_upstream_headers(&self, id: &str, headers: &[u8]) -> StoreResult<()> {
        with_pool!(self.pool(), p => sqlx::query("UPDATE upstreams SET headers = $1 WHERE id = $2")
            .bind(headers).bind(id).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(())
    }
}
