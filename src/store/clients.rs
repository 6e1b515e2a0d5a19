//! OAuth clients: registered dynamically (RFC 7591), created by an operator, or identified by
//! the URL of their metadata document. List-valued metadata is stored as JSON text so both
//! backends read it the same way.
//!
//! Deleting a client deletes what hangs off it (consents, grants and their refresh tokens,
//! authorization codes) through the foreign keys, so a removed client is gone at once and its
//! next request is answered `invalid_client`.

use super::{Store, StoreError, StoreResult, with_pool};

/// Where a client came from; stored as the `source` column.
pub mod source {
    /// RFC 7591 Dynamic Client Registration.
    pub const DYNAMIC: &str = "dynamic";
    /// Created by an operator (CLI or pages).
    pub const ADMIN: &str = "admin";
    /// Identified by the URL of its Client ID Metadata Document; the row mirrors the document.
    pub const METADATA_DOCUMENT: &str = "metadata_document";
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClientRow {
    pub id: String,
    pub secret_hash: Option<String>,
    pub client_name: String,
    /// JSON array of strings.
    pub redirect_uris: String,
    /// JSON array of strings.
    pub grant_types: String,
    pub token_endpoint_auth_method: String,
    pub application_type: String,
    pub scope: Option<String>,
    /// Set for operator-made clients that use `client_credentials` in one workspace.
    pub workspace_id: Option<String>,
    /// One of [`source`].
    pub source: String,
    /// The registration response (or validated metadata document) as JSON, without secrets.
    pub metadata: String,
    pub created_at: i64,
    /// Set whenever the client obtains tokens; registrations never used expire.
    pub last_used_at: Option<i64>,
    /// SHA-256 of the RFC 7592 registration access token (dynamic clients only).
    pub registration_token_hash: Option<String>,
    /// When the metadata last changed (RFC 7592 update, or a re-fetched document).
    pub updated_at: Option<i64>,
}

impl ClientRow {
    /// Whether the client registered this grant type.
    pub fn allows_grant(&self, grant_type: &str) -> bool {
        self.grant_type_list().iter().any(|g| g == grant_type)
    }

    pub fn grant_type_list(&self) -> Vec<String> {
        serde_json::from_str(&self.grant_types).unwrap_or_default()
    }

    pub fn redirect_uri_list(&self) -> Vec<String> {
        serde_json::from_str(&self.redirect_uris).unwrap_or_default()
    }

    /// Public clients hold no secret (`token_endpoint_auth_method: none`).
    pub fn is_public(&self) -> bool {
        self.secret_hash.is_none()
    }
}

/// Everything needed to insert a client; identical to the row.
pub type NewClient = ClientRow;

macro_rules! client_columns {
    () => {
        "id, secret_hash, client_name, redirect_uris, grant_types, token_endpoint_auth_method, \
     application_type, scope, workspace_id, source, metadata, created_at, last_used_at, \
     registration_token_hash, updated_at"
    };
}

/// The metadata an RFC 7592 update may change.
#[derive(Debug, Clone)]
pub struct ClientUpdate {
    pub client_name: String,
    pub redirect_uris: String,
    pub grant_types: String,
    pub token_endpoint_auth_method: String,
    pub application_type: String,
    pub scope: Option<String>,
    pub metadata: String,
    pub updated_at: i64,
}

impl Store {
    pub async fn insert_client(&self, c: &NewClient) -> StoreResult<()> {
        with_pool!(self.pool(), p => sqlx::query(concat!(
            "INSERT INTO oauth_clients (", client_columns!(), ")
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        ))
        .bind(&c.id).bind(&c.secret_hash).bind(&c.client_name).bind(&c.redirect_uris).bind(&c.grant_types)
        .bind(&c.token_endpoint_auth_method).bind(&c.application_type).bind(&c.scope).bind(&c.workspace_id)
        .bind(&c.source).bind(&c.metadata).bind(c.created_at).bind(c.last_used_at)
        .bind(&c.registration_token_hash).bind(c.updated_at)
        .execute(p).await.map(|r| r.rows_affected()))
        .map_err(|e| StoreError::conflict_on_unique(e, "a client with this id"))?;
        Ok(())
    }

    /// Records a client known by its metadata document: inserted the first time, its metadata
    /// replaced by the latest validated document afterwards. Usage and creation times are kept.
    /// Fails with [`StoreError::Conflict`] if the id belongs to a client from another source.
    pub async fn upsert_metadata_document_client(&self, c: &NewClient) -> StoreResult<()> {
        let written = with_pool!(self.pool(), p => sqlx::query(concat!(
            "INSERT INTO oauth_clients (", client_columns!(), ")
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
             ON CONFLICT (id) DO UPDATE SET client_name = excluded.client_name,
                 redirect_uris = excluded.redirect_uris, grant_types = excluded.grant_types,
                 token_endpoint_auth_method = excluded.token_endpoint_auth_method,
                 application_type = excluded.application_type, scope = excluded.scope,
                 metadata = excluded.metadata, updated_at = excluded.updated_at
             WHERE oauth_clients.source = 'metadata_document'",
        ))
        .bind(&c.id).bind(&c.secret_hash).bind(&c.client_name).bind(&c.redirect_uris).bind(&c.grant_types)
        .bind(&c.token_endpoint_auth_method).bind(&c.application_type).bind(&c.scope).bind(&c.workspace_id)
        .bind(&c.source).bind(&c.metadata).bind(c.created_at).bind(c.last_used_at)
        .bind(&c.registration_token_hash).bind(c.updated_at)
        .execute(p).await.map(|r| r.rows_affected()))?;
        match written {
            0 => Err(StoreError::Conflict("a client with this id from another source")),
            _ => Ok(()),
        }
    }

    pub async fn client_by_id(&self, id: &str) -> StoreResult<Option<ClientRow>> {
        let sql = concat!("SELECT ", client_columns!(), " FROM oauth_clients WHERE id = $1");
        Ok(with_pool!(self.pool(), p => sqlx::query_as::<_, ClientRow>(sql).bind(id).fetch_optional(p).await)?)
    }

    /// Every client, newest first; `source` narrows the list to one of [`source`].
    pub async fn list_clients(&self, source: Option<&str>) -> StoreResult<Vec<ClientRow>> {
        let sql = concat!(
            "SELECT ",
            client_columns!(),
            " FROM oauth_clients WHERE ($1 IS NULL OR source = $1) ORDER BY created_at DESC, id"
        );
        Ok(with_pool!(self.pool(), p => sqlx::query_as::<_, ClientRow>(sql).bind(source).fetch_all(p).await)?)
    }

    /// Replaces a dynamic client's metadata (RFC 7592 update). Returns false if there is no
    /// such dynamic client.
    pub async fn update_client(&self, id: &str, u: &ClientUpdate) -> StoreResult<bool> {
        let n = with_pool!(self.pool(), p => sqlx::query(
            "UPDATE oauth_clients SET client_name = $1, redirect_uris = $2, grant_types = $3,
                 token_endpoint_auth_method = $4, application_type = $5, scope = $6, metadata = $7, updated_at = $8
             WHERE id = $9 AND source = 'dynamic'",
        )
        .bind(&u.client_name).bind(&u.redirect_uris).bind(&u.grant_types).bind(&u.token_endpoint_auth_method)
        .bind(&u.application_type).bind(&u.scope).bind(&u.metadata).bind(u.updated_at).bind(id)
        .execute(p).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Deletes a client and, through the foreign keys, its consents, grants, refresh tokens and
    /// authorization codes. Returns false if there was no such client.
    pub async fn delete_client(&self, id: &str) -> StoreResult<bool> {
        let n = with_pool!(self.pool(), p => sqlx::query("DELETE FROM oauth_clients WHERE id = $1")
            .bind(id).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Deletes dynamic and metadata-document clients created before `created_before` that never
    /// obtained a token (operator-made clients are kept). Returns how many were deleted.
    pub async fn purge_unused_clients(&self, created_before: i64) -> StoreResult<u64> {
        Ok(with_pool!(self.pool(), p => sqlx::query(
            "DELETE FROM oauth_clients
             WHERE source IN ('dynamic', 'metadata_document') AND last_used_at IS NULL AND created_at < $1",
        ).bind(created_before).execute(p).await.map(|r| r.rows_affected()))?)
    }

    pub async fn touch_client(&self, id: &str, now: i64) -> StoreResult<()> {
        with_pool!(self.pool(), p => sqlx::query("UPDATE oauth_clients SET last_used_at = $1 WHERE id = $2")
            .bind(now).bind(id).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn clients_in_workspace(&self, workspace_id: &str) -> StoreResult<Vec<ClientRow>> {
        let sql =
            concat!("SELECT ", client_columns!(), " FROM oauth_clients WHERE workspace_id = $1 ORDER BY created_at");
        Ok(with_pool!(self.pool(), p => sqlx::query_as::<_, ClientRow>(sql).bind(workspace_id).fetch_all(p).await)?)
    }

    /// Remembered consent: the scope string the user approved for this client and workspace.
    pub async fn consented_scope(
        &self,
        user_id: &str,
        client_id: &str,
        workspace_id: &str,
    ) -> StoreResult<Option<String>> {
        Ok(with_pool!(self.pool(), p => sqlx::query_scalar::<_, String>(
            "SELECT scope FROM consents WHERE user_id = $1 AND client_id = $2 AND workspace_id = $3",
        ).bind(user_id).bind(client_id).bind(workspace_id).fetch_optional(p).await)?)
    }

    pub async fn remember_consent(
        &self,
        user_id: &str,
        client_id: &str,
        workspace_id: &str,
        scope: &str,
        now: i64,
    ) -> StoreResult<()> {
        with_pool!(self.pool(), p => sqlx::query(
            "INSERT INTO consents (user_id, client_id, workspace_id, scope, created_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (user_id, client_id, workspace_id) DO UPDATE SET scope = excluded.scope, created_at = excluded.created_at",
        ).bind(user_id).bind(client_id).bind(workspace_id).bind(scope).bind(now).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(())
    }
}
