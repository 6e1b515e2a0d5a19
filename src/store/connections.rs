//! What people have connected: remembered consents (one per person and app in a workspace)
//! and the live refresh-token families behind them, as the Connected apps, Sessions and
//! OAuth clients pages list and revoke them.

use super::{ClientRow, Store, StoreResult, with_pool};

/// One (person, app) connection in a workspace.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ConnectedAppRow {
    pub user_id: String,
    pub email: String,
    pub client_id: String,
    pub client_name: String,
    pub client_source: String,
    /// The scope the person approved.
    pub scope: String,
    pub consented_at: i64,
    /// Grants not revoked (each is one signed-in copy of the app).
    pub live_grants: i64,
    /// The last time any of its grants was issued or refreshed.
    pub last_used_at: Option<i64>,
}

/// One live refresh-token family: a grant with an unused, unexpired refresh token.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionFamilyRow {
    pub grant_id: String,
    pub user_id: Option<String>,
    pub email: Option<String>,
    pub client_id: String,
    pub client_name: String,
    pub scope: String,
    pub started_at: i64,
    pub last_used_at: Option<i64>,
    /// When its current refresh token expires.
    pub expires_at: i64,
}

/// A client known to a workspace: made for it, or consented to or used in it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WorkspaceClientRow {
    #[sqlx(flatten)]
    pub client: ClientRow,
    /// People in this workspace who approved it.
    pub consents: i64,
    pub live_grants: i64,
    /// Other workspaces where it holds consents or grants.
    pub other_workspaces: i64,
}

impl Store {
    /// Connected apps of a workspace, of one person when `user_id` is given.
    pub async fn connected_apps(&self, workspace_id: &str, user_id: Option<&str>) -> StoreResult<Vec<ConnectedAppRow>> {
        Ok(with_pool!(self.pool(), p => sqlx::query_as::<_, ConnectedAppRow>(
            "SELECT c.user_id, u.email, c.client_id, k.client_name, k.source AS client_source, c.scope,
                    c.created_at AS consented_at,
                    (SELECT COUNT(*) FROM grants g WHERE g.user_id = c.user_id AND g.client_id = c.client_id
                        AND g.workspace_id = c.workspace_id AND g.revoked_at IS NULL) AS live_grants,
                    (SELECT MAX(g.last_used_at) FROM grants g WHERE g.user_id = c.user_id AND g.client_id = c.client_id
                        AND g.workspace_id = c.workspace_id) AS last_used_at
             FROM consents c JOIN users u ON u.id = c.user_id JOIN oauth_clients k ON k.id = c.client_id
             WHERE c.workspace_id = $1 AND ($2 IS NULL OR c.user_id = $2)
             ORDER BY u.email, k.client_name, c.client_id",
        ).bind(workspace_id).bind(user_id).fetch_all(p).await)?)
    }

    /// Disconnects an app from a person in a workspace: revokes its grants (so its tokens fail
    /// on their next use) and forgets the consent (so it must ask again). Returns the number of
    /// grants revoked and whether a consent existed.
    pub async fn revoke_connection(
        &self,
        workspace_id: &str,
        user_id: &str,
        client_id: &str,
        now: i64,
        reason: &str,
    ) -> StoreResult<(u64, bool)> {
        with_pool!(self.pool(), p => {
            let mut tx = p.begin().await?;
            let grants = sqlx::query(
                "UPDATE grants SET revoked_at = $1, revoked_reason = $2
                 WHERE workspace_id = $3 AND user_id = $4 AND client_id = $5 AND revoked_at IS NULL",
            ).bind(now).bind(reason).bind(workspace_id).bind(user_id).bind(client_id).execute(&mut *tx).await?;
            let consent = sqlx::query("DELETE FROM consents WHERE workspace_id = $1 AND user_id = $2 AND client_id = $3")
                .bind(workspace_id).bind(user_id).bind(client_id).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok((grants.rows_affected(), consent.rows_affected() > 0))
        })
    }

    /// Live refresh-token families of a workspace, of one person when `user_id` is given.
    pub async fn session_families(
        &self,
        workspace_id: &str,
        user_id: Option<&str>,
        now: i64,
    ) -> StoreResult<Vec<SessionFamilyRow>> {
        Ok(with_pool!(self.pool(), p => sqlx::query_as::<_, SessionFamilyRow>(
            "SELECT g.id AS grant_id, g.user_id, u.email, g.client_id, k.client_name, g.scope,
                    g.created_at AS started_at, g.last_used_at, MAX(t.expires_at) AS expires_at
             FROM grants g
             JOIN refresh_tokens t ON t.grant_id = g.id AND t.used_at IS NULL AND t.expires_at > $2
             JOIN oauth_clients k ON k.id = g.client_id
             LEFT JOIN users u ON u.id = g.user_id
             WHERE g.workspace_id = $1 AND g.revoked_at IS NULL AND ($3 IS NULL OR g.user_id = $3)
             GROUP BY g.id, g.user_id, u.email, g.client_id, k.client_name, g.scope, g.created_at, g.last_used_at
             ORDER BY g.created_at DESC, g.id",
        ).bind(workspace_id).bind(now).bind(user_id).fetch_all(p).await)?)
    }

    /// Revokes one grant of a workspace (of one person when `user_id` is given). True if it was live.
    pub async fn revoke_grant_in(
        &self,
        workspace_id: &str,
        grant_id: &str,
        user_id: Option<&str>,
        now: i64,
        reason: &str,
    ) -> StoreResult<bool> {
        let done = with_pool!(self.pool(), p => sqlx::query(
            "UPDATE grants SET revoked_at = $1, revoked_reason = $2
             WHERE id = $3 AND workspace_id = $4 AND revoked_at IS NULL AND ($5 IS NULL OR user_id = $5)",
        ).bind(now).bind(reason).bind(grant_id).bind(workspace_id).bind(user_id)
        .execute(p).await.map(|r| r.rows_affected()))?;
        Ok(done == 1)
    }

    /// The clients a workspace knows, newest first.
    pub async fn clients_of_workspace(&self, workspace_id: &str) -> StoreResult<Vec<WorkspaceClientRow>> {
        Ok(with_pool!(self.pool(), p => sqlx::query_as::<_, WorkspaceClientRow>(
            "SELECT k.id, k.secret_hash, k.client_name, k.redirect_uris, k.grant_types, k.token_endpoint_auth_method,
                    k.application_type, k.scope, k.workspace_id, k.source, k.metadata, k.created_at, k.last_used_at,
                    k.registration_token_hash, k.updated_at,
                    (SELECT COUNT(*) FROM consents c WHERE c.client_id = k.id AND c.workspace_id = $1) AS consents,
                    (SELECT COUNT(*) FROM grants g WHERE g.client_id = k.id AND g.workspace_id = $1
                        AND g.revoked_at IS NULL) AS live_grants,
                    (SELECT COUNT(*) FROM (SELECT c.workspace_id FROM consents c WHERE c.client_id = k.id
                                           UNION SELECT g.workspace_id FROM grants g WHERE g.client_id = k.id) w
                     WHERE w.workspace_id <> $1) AS other_workspaces
             FROM oauth_clients k
             WHERE k.workspace_id = $1
                OR k.id IN (SELECT client_id FROM consents WHERE workspace_id = $1)
                OR k.id IN (SELECT client_id FROM grants WHERE workspace_id = $1)
             ORDER BY k.created_at DESC, k.id",
        ).bind(workspace_id).fetch_all(p).await)?)
    }

    /// Forgets every consent to a client in a workspace and revokes its grants there; the
    /// registration stays. Returns (consents removed, grants revoked).
    pub async fn revoke_client_in_workspace(
        &self,
        workspace_id: &str,
        client_id: &str,
        now: i64,
    ) -> StoreResult<(u64, u64)> {
        with_pool!(self.pool(), p => {
            let mut tx = p.begin().await?;
            let consents = sqlx::query("DELETE FROM consents WHERE workspace_id = $1 AND client_id = $2")
                .bind(workspace_id).bind(client_id).execute(&mut *tx).await?;
            let grants = sqlx::query(
                "UPDATE grants SET revoked_at = $1, revoked_reason = 'consent revoked by a workspace owner'
                 WHERE workspace_id = $2 AND client_id = $3 AND revoked_at IS NULL",
            ).bind(now).bind(workspace_id).bind(client_id).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok((consents.rows_affected(), grants.rows_affected()))
        })
    }
}
