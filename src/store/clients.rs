//! OAuth clients: registered dynamically (RFC 7591) or by an operator.
//! List-valued metadata is stored as JSON text so both backends read it the same way.

use super::{Store, StoreResult, with_pool};

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
    pub source: String,
    /// The registration response as JSON, returned again on lookup.
    pub metadata: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

impl ClientRow {
    /// Whether the client registered this grant type.
    pub fn allows_grant(&self, grant_type: &str) -> bool {
        serde_json::from_str::<Vec<String>>(&self.grant_types).is_ok_and(|g| g.iter().any(|g| g == grant_type))
    }
}

/// Everything needed to insert a client; identical to the row minus usage data.
pub type NewClient = ClientRow;

macro_rules! client_columns {
    () => {
        "id, secret_hash, client_name, redirect_uris, grant_types, token_endpoint_auth_method, \
     application_type, scope, workspace_id, source, metadata, created_at, last_used_at"
    };
}

impl Store {
    pub async fn insert_client(&self, c: &NewClient) -> StoreResult<()> {
        with_pool!(self.pool(), p => sqlx::query(
            "INSERT INTO oauth_clients (id, secret_hash, client_name, redirect_uris, grant_types, token_endpoint_auth_method,
                 application_type, scope, workspace_id, source, metadata, created_at, last_used_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(&c.id).bind(&c.secret_hash).bind(&c.client_name).bind(&c.redirect_uris).bind(&c.grant_types)
        .bind(&c.token_endpoint_auth_method).bind(&c.application_type).bind(&c.scope).bind(&c.workspace_id)
        .bind(&c.source).bind(&c.metadata).bind(c.created_at).bind(c.last_used_at)
        .execute(p).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn client_by_id(&self, id: &str) -> StoreResult<Option<ClientRow>> {
        let sql = concat!("SELECT ", client_columns!(), " FROM oauth_clients WHERE id = $1");
        Ok(with_pool!(self.pool(), p => sqlx::query_as::<_, ClientRow>(sql).bind(id).fetch_optional(p).await)?)
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
