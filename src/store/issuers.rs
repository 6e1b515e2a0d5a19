//! External authorization servers trusted by workspaces.

use super::{Store, StoreResult, WorkspaceRow, with_pool};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct WorkspaceIssuerRow {
    pub workspace_id: String,
    pub issuer: String,
    pub audience: Option<String>,
    /// JSON array of `provider-scope=workspace-scope…` entries.
    pub scope_map: String,
    pub introspection_client_id: Option<String>,
    /// Sealed.
    pub introspection_secret: Option<Vec<u8>>,
    pub introspection_endpoint: Option<String>,
    pub updated_at: i64,
}

/// A workspace row with the external issuer it trusts, if any.
pub type WorkspaceAndIssuer = (WorkspaceRow, Option<WorkspaceIssuerRow>);

/// A workspace and the issuer it trusts, read together (one query on the MCP hot path).
#[derive(sqlx::FromRow)]
struct JoinedRow {
    id: String,
    slug: String,
    name: String,
    created_at: i64,
    upstreams_version: i64,
    revocations_version: i64,
    issuer: Option<String>,
    audience: Option<String>,
    scope_map: Option<String>,
    introspection_client_id: Option<String>,
    introspection_secret: Option<Vec<u8>>,
    introspection_endpoint: Option<String>,
    updated_at: Option<i64>,
}

/// The query both lookups share; the caller adds the `WHERE`.
macro_rules! workspace_and_issuer {
    () => {
        "SELECT w.id, w.slug, w.name, w.created_at, w.upstreams_version, w.revocations_version, i.issuer, i.audience, i.scope_map,
             i.introspection_client_id, i.introspection_secret, i.introspection_endpoint, i.updated_at
         FROM workspaces w LEFT JOIN workspace_issuers i ON i.workspace_id = w.id"
    };
}

impl JoinedRow {
    /// The workspace, and its issuer when the join found one.
    fn split(self) -> WorkspaceAndIssuer {
        let issuer = match (self.issuer, self.scope_map, self.updated_at) {
            (Some(issuer), Some(scope_map), Some(updated_at)) => Some(WorkspaceIssuerRow {
                workspace_id: self.id.clone(),
                issuer,
                audience: self.audience,
                scope_map,
                introspection_client_id: self.introspection_client_id,
                introspection_secret: self.introspection_secret,
                introspection_endpoint: self.introspection_endpoint,
                updated_at,
            }),
            _ => None,
        };
        (
            WorkspaceRow {
                id: self.id,
                slug: self.slug,
                name: self.name,
                created_at: self.created_at,
                upstreams_version: self.upstreams_version,
                revocations_version: self.revocations_version,
            },
            issuer,
        )
    }
}

impl Store {
    /// The workspace with this slug and, if it trusts one, its external issuer.
    pub async fn workspace_and_issuer_by_slug(&self, slug: &str) -> StoreResult<Option<WorkspaceAndIssuer>> {
        let sql = concat!(workspace_and_issuer!(), " WHERE w.slug = $1");
        let row = with_pool!(self.pool(), p => sqlx::query_as::<_, JoinedRow>(sql).bind(slug).fetch_optional(p).await)?;
        Ok(row.map(JoinedRow::split))
    }

    /// The workspace with this id and, if it trusts one, its external issuer (one query: the
    /// token endpoint reads both for every token when they are not kept).
    pub async fn workspace_and_issuer_by_id(&self, id: &str) -> StoreResult<Option<WorkspaceAndIssuer>> {
        let sql = concat!(workspace_and_issuer!(), " WHERE w.id = $1");
        let row = with_pool!(self.pool(), p => sqlx::query_as::<_, JoinedRow>(sql).bind(id).fetch_optional(p).await)?;
        Ok(row.map(JoinedRow::split))
    }

    /// Trusts an issuer for a workspace, replacing any earlier setting.
    pub async fn upsert_workspace_issuer(&self, row: &WorkspaceIssuerRow) -> StoreResult<()> {
        with_pool!(self.pool(), p => sqlx::query(
            "INSERT INTO workspace_issuers (workspace_id, issuer, audience, scope_map, introspection_client_id,
                 introspection_secret, introspection_endpoint, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (workspace_id) DO UPDATE SET issuer = excluded.issuer, audience = excluded.audience,
                 scope_map = excluded.scope_map, introspection_client_id = excluded.introspection_client_id,
                 introspection_secret = excluded.introspection_secret,
                 introspection_endpoint = excluded.introspection_endpoint, updated_at = excluded.updated_at",
        )
        .bind(&row.workspace_id).bind(&row.issuer).bind(&row.audience).bind(&row.scope_map)
        .bind(&row.introspection_client_id).bind(&row.introspection_secret).bind(&row.introspection_endpoint)
        .bind(row.updated_at)
        .execute(p).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn workspace_issuer(&self, workspace_id: &str) -> StoreResult<Option<WorkspaceIssuerRow>> {
        Ok(with_pool!(self.pool(), p => sqlx::query_as::<_, WorkspaceIssuerRow>(
            "SELECT workspace_id, issuer, audience, scope_map, introspection_client_id, introspection_secret,
                 introspection_endpoint, updated_at
             FROM workspace_issuers WHERE workspace_id = $1",
        ).bind(workspace_id).fetch_optional(p).await)?)
    }

    /// Back to the built-in authorization server. False if the workspace trusted none.
    pub async fn delete_workspace_issuer(&self, workspace_id: &str) -> StoreResult<bool> {
        let done = with_pool!(self.pool(), p => sqlx::query("DELETE FROM workspace_issuers WHERE workspace_id = $1")
            .bind(workspace_id).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(done == 1)
    }
}
