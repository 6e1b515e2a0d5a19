//! Binds MCP sessions (`Mcp-Session-Id`) to the principal that opened them. The MCP server
//! behind us accepts any valid session id; a session id is not a credential (MCP security
//! best practices), so a request may only use a session opened by the same person, client
//! and workspace.

use std::collections::HashMap;
use std::sync::Mutex;

/// Forget bindings idle this long (longer than the MCP server keeps idle sessions).
const IDLE_SECS: i64 = 3_600;
/// Sessions tracked at once; beyond this, idle ones are dropped first.
const MAX_SESSIONS: usize = 100_000;

#[derive(Debug, Default)]
pub struct SessionBindings {
    map: Mutex<HashMap<String, (String, i64)>>,
}

pub enum Binding {
    /// Opened by this principal: go on.
    Same,
    /// Opened by someone else, or unknown to us: treat as a session that does not exist.
    Foreign,
}

impl SessionBindings {
    /// Remembers that `session` belongs to `owner` (called when the server opens one).
    pub fn bind(&self, session: &str, owner: &str, now: i64) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_SESSIONS {
            map.retain(|_, (_, seen)| now - *seen < IDLE_SECS);
        }
        if map.len() < MAX_SESSIONS {
            map.insert(session.to_owned(), (owner.to_owned(), now));
        }
    }

    pub fn check(&self, session: &str, owner: &str, now: i64) -> Binding {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        match map.get_mut(session) {
            Some((bound, seen)) if bound == owner && now - *seen < IDLE_SECS => {
                *seen = now;
                Binding::Same
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
        let b = SessionBindings::default();
        b.bind("s1", "alice", 0);
        assert!(matches!(b.check("s1", "alice", 10), Binding::Same));
        assert!(matches!(b.check("s1", "bob", 10), Binding::Foreign));
        assert!(matches!(b.check("s2", "alice", 10), Binding::Foreign));
        assert!(matches!(b.check("s1", "alice", 10 + IDLE_SECS), Binding::Foreign));
        b.forget("s1");
        assert!(matches!(b.check("s1", "alice", 11), Binding::Foreign));
    }
}
