//! The audit log table: append-only, read newest first with optional filters.

use super::{Store, StoreResult, with_pool};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuditRow {
    pub id: String,
    pub at: i64,
    pub kind: String,
    pub workspace_id: Option<String>,
    pub actor_id: Option<String>,
    pub actor: String,
    pub subject_id: Option<String>,
    pub subject: Option<String>,
    pub source: Option<String>,
    /// A JSON object.
    pub details: String,
}

/// Which events a reader may see and wants to see.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Events of this workspace, plus server-wide events of its members (sign-ins) and of
    /// the clients used in it (their registration).
    pub workspace_id: String,
    /// Also every server-wide event, whoever it concerns (server admins).
    pub all_server_wide: bool,
    pub kind: Option<String>,
    /// An email (or other label) the actor or subject must have...
    pub person: Option<String>,
    /// ...or the id of that person.
    pub person_id: Option<String>,
    /// Only events older than this (time, id): the next page.
    pub before: Option<(i64, String)>,
    pub limit: i64,
}

impl Store {
    pub async fn insert_audit_event(&self, row: &AuditRow) -> StoreResult<()> {
        with_pool!(self.pool(), p => sqlx::query(
            "INSERT INTO audit_events (id, at, kind, workspace_id, actor_id, actor, subject_id, subject, source, details)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&row.id).bind(row.at).bind(&row.kind).bind(&row.workspace_id).bind(&row.actor_id).bind(&row.actor)
        .bind(&row.subject_id).bind(&row.subject).bind(&row.source).bind(&row.details)
        .execute(p).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Events matching `q`, newest first.
    pub async fn audit_events(&self, q: &AuditQuery) -> StoreResult<Vec<AuditRow>> {
        let (before_at, before_id) = match &q.before {
            Some((at, id)) => (Some(*at), Some(id.clone())),
            None => (None, None),
        };
        Ok(with_pool!(self.pool(), p => sqlx::query_as::<_, AuditRow>(
            "SELECT id, at, kind, workspace_id, actor_id, actor, subject_id, subject, source, details FROM audit_events
             WHERE (workspace_id = $1
                    OR (workspace_id IS NULL
                        AND ($2
                             OR actor_id IN (SELECT user_id FROM memberships WHERE workspace_id = $1)
                             OR actor_id IN (SELECT client_id FROM consents WHERE workspace_id = $1)
                             OR actor_id IN (SELECT client_id FROM grants WHERE workspace_id = $1))))
               AND ($3 IS NULL OR kind = $3)
               AND ($4 IS NULL OR actor = $4 OR subject = $4 OR actor_id = $5 OR subject_id = $5)
               AND ($6 IS NULL OR at < $6 OR (at = $6 AND id < $7))
             ORDER BY at DESC, id DESC
             LIMIT $8",
        )
        .bind(&q.workspace_id).bind(q.all_server_wide).bind(&q.kind).bind(&q.person).bind(&q.person_id)
        .bind(before_at).bind(before_id).bind(q.limit)
        .fetch_all(p).await)?)
    }
}
