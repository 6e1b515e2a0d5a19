//! The audit log: security events with who did what, in which workspace, when (from the
//! injected clock) and from which address.
//!
//! Each event is written twice: as a row in `audit_events` (the Audit log page reads it) and
//! as one structured `tracing` line on the `gatehouse::audit` target (for log shipping).
//! Details are facts such as ids, names, scopes and reasons, never a secret.
//!
//! Recording never fails the caller's request: a failed write is logged as an error.
//! Nothing here runs per MCP request (access tokens are checked without any write).

mod kind;

use std::net::IpAddr;

use serde_json::{Map, Value};

pub use kind::EventKind;

use crate::app::AppState;
use crate::clock::Clock;
use crate::store::{AuditRow, ClientRow, Store, UserRow};

/// Who acted: a person, an OAuth client, the server itself, or someone unidentified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// A user id or a client id; `None` for the server or an unknown person.
    pub id: Option<String>,
    /// How the actor is shown: an email, a client name, `system`.
    pub label: String,
}

impl Actor {
    pub fn user(user: &UserRow) -> Self {
        Actor { id: Some(user.id.clone()), label: user.email.clone() }
    }

    pub fn client(client: &ClientRow) -> Self {
        Actor { id: Some(client.id.clone()), label: client.client_name.clone() }
    }

    /// Someone who did not prove who they are (e.g. a failed sign-in with this email).
    pub fn unverified(label: &str) -> Self {
        Actor { id: None, label: label.chars().filter(|c| !c.is_control()).take(254).collect() }
    }

    pub fn system() -> Self {
        Actor { id: None, label: "system".into() }
    }
}

/// One security event, built with [`Event::new`] and the chained setters.
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: EventKind,
    pub actor: Actor,
    pub workspace_id: Option<String>,
    pub subject_id: Option<String>,
    pub subject: Option<String>,
    pub source: Option<IpAddr>,
    pub details: Map<String, Value>,
}

impl Event {
    pub fn new(kind: EventKind, actor: Actor) -> Self {
        Event { kind, actor, workspace_id: None, subject_id: None, subject: None, source: None, details: Map::new() }
    }

    pub fn workspace(mut self, workspace_id: &str) -> Self {
        self.workspace_id = Some(workspace_id.to_owned());
        self
    }

    /// What the event is about: a member (id, email), a client (id, name), an upstream...
    pub fn subject(mut self, id: Option<&str>, label: &str) -> Self {
        self.subject_id = id.map(str::to_owned);
        self.subject = Some(label.chars().filter(|c| !c.is_control()).take(300).collect());
        self
    }

    pub fn source(mut self, address: IpAddr) -> Self {
        self.source = Some(address);
        self
    }

    /// A non-secret fact about the event.
    pub fn detail(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details.insert(key.to_owned(), value.into());
        self
    }

    fn log(&self) {
        let details = Value::Object(self.details.clone());
        tracing::info!(
            target: "gatehouse::audit",
            kind = self.kind.as_str(),
            actor = ?self.actor.label,
            actor_id = self.actor.id.as_deref().unwrap_or("-"),
            workspace = self.workspace_id.as_deref().unwrap_or("-"),
            subject = ?self.subject.as_deref().unwrap_or("-"),
            source = %self.source.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
            details = %details,
            "audit event"
        );
    }
}

/// Writes `event` to the log and the audit table. Never fails: a storage error is logged.
pub async fn record(store: &Store, clock: &dyn Clock, event: Event) {
    event.log();
    let row = AuditRow {
        id: uuid::Uuid::now_v7().to_string(),
        at: clock.now(),
        kind: event.kind.as_str().to_owned(),
        workspace_id: event.workspace_id,
        actor_id: event.actor.id,
        actor: event.actor.label,
        subject_id: event.subject_id,
        subject: event.subject,
        source: event.source.map(|s| s.to_string()),
        details: Value::Object(event.details).to_string(),
    };
    if let Err(error) = store.insert_audit_event(&row).await {
        tracing::error!(%error, kind = %row.kind, "could not write an audit event to the database");
    }
}

impl AppState {
    /// [`record`] with this server's store and clock.
    pub async fn audit(&self, event: Event) {
        record(&self.store, self.clock.as_ref(), event).await;
    }
}
