//! Binds MCP sessions (`Mcp-Session-Id`) to the principal that opened them. The MCP server
//! behind us accepts any valid session id; a session id is not a credential (MCP security
//! best practices), so a request may only use a session opened by the same person, client
//! and workspace.
//!
//! Each binding also keeps the server the session was opened on: when the workspace's
//! upstreams change, new sessions get a server for the new configuration while live ones go on
//! with the one they started with (rather than being cut off with 404), until they end.

use std::collections::HashMap;
use std::sync::Mutex;

use super::workspaces::WorkspaceService;

/// Forget bindings idle this long (longer than the MCP server keeps idle sessions).
const IDLE_SECS: i64 = 3_600;
/// Sessions tracked at once; beyond this, idle ones are dropped first.
const MAX_SESSIONS: usize = 100_000;

pub struct SessionBindings<S = WorkspaceService> {
    /// session id -> (owner, last seen, the server it lives on)
    map: Mutex<HashMap<String, (String, i64, S)>>,
}

impl<S> Default for SessionBindings<S> {
    fn default() -> Self {
        Self { map: Mutex::default() }
    }
}

pub enum Binding<S> {
    /// Opened by this principal, on this server: go on.
    Same(S),
    /// Opened by someone else, or unknown to us: treat as a session that does not exist.
    Foreign,
}

impl<S: Clone> SessionBindings<S> {
    /// Remembers that `session`, opened on `server`, belongs to `owner` (called when the
    /// server opens one).
    pub fn bind(&self, session: &str, owner: &str, now: i64, server: S) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_SESSIONS {
            map.retain(|_, (_, seen, _)| now - *seen < IDLE_SECS);
        }
        if map.len() < MAX_SESSIONS {
            map.insert(session.to_owned(), (owner.to_owned(), now, server));
        }
    }

    pub fn check(&self, session: &str, owner: &str, now: i64) -> Binding<S> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        match map.get_mut(session) {
            Some((bound, seen, server)) if bound == owner && now - *seen < IDLE_SECS => {
                *seen = now;
                Binding::Same(server.clone())
            }
            _ => Binding::Foreign,
        }
    }

    pub fn forget(&self, session: &str) {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).remove(session);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_belong_to_who_opened_them() {
        let b = SessionBindings::<u8>::default();
        b.bind("s1", "alice", 0, 7);
        assert!(matches!(b.check("s1", "alice", 10), Binding::Same(7)));
        assert!(matches!(b.check("s1", "bob", 10), Binding::Foreign));
        assert!(matches!(b.check("s2", "alice", 10), Binding::Foreign));
        assert!(matches!(b.check("s1", "alice", 10 + IDLE_SECS), Binding::Foreign));
        b.forget("s1");
        assert!(matches!(b.check("s1", "alice", 11), Binding::Foreign));
    }
}
