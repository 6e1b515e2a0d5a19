//! What the MCP endpoint already found alive (a grant, a machine client, a machine token),
//! remembered under the workspace's `revocations_version` it was found with.
//!
//! The counter is bumped by database triggers (migration 0009) in the same statement as any
//! revocation in the workspace, whichever process makes it, and the endpoint reads it with
//! the workspace row it reads on every request anyway. A remembered entry counts only while
//! the counter still has the value read *before* the entry was looked up, so a revocation
//! committed after that read moves the counter and the next request looks again: revocation
//! stays immediate, and a steady stream of requests costs one database read each (the
//! workspace row) instead of two.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use crate::store::MachineTokenRow;

/// Entries kept per kind; when full, all are dropped (they are refilled by one read each).
pub const MAX_ENTRIES: usize = 16_384;

/// Entries of one kind: key (grant id, client id, machine token hash) -> what was found.
pub struct Confirmed<V> {
    entries: Mutex<HashMap<String, Entry<V>>>,
}

struct Entry<V> {
    workspace_id: String,
    revocations_version: i64,
    value: V,
}

impl<V: Clone> Default for Confirmed<V> {
    fn default() -> Self {
        Confirmed { entries: Mutex::default() }
    }
}

impl<V: Clone> Confirmed<V> {
    /// What was found alive for `key` in this workspace, if no revocation happened there since.
    pub fn get(&self, key: &str, workspace_id: &str, revocations_version: i64) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .get(key)
            .filter(|e| e.workspace_id == workspace_id && e.revocations_version == revocations_version)
            .map(|e| e.value.clone())
    }

    /// Remembers that `key` was found alive in a workspace whose counter, read before the
    /// lookup, was `revocations_version`.
    pub fn remember(&self, key: &str, workspace_id: &str, revocations_version: i64, value: V) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(key) {
            entries.clear();
        }
        entries.insert(key.to_owned(), Entry { workspace_id: workspace_id.to_owned(), revocations_version, value });
    }
}

/// Everything the MCP endpoint remembers as alive.
#[derive(Default)]
pub struct ConfirmedCredentials {
    /// Grant ids of our access tokens.
    pub grants: Confirmed<()>,
    /// Client ids of `client_credentials` tokens (which carry no grant).
    pub machine_clients: Confirmed<()>,
    /// Machine tokens by hash, with their row (expiry is checked on every request).
    pub machine_tokens: Confirmed<MachineTokenRow>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_counts_only_in_its_workspace_and_under_its_version() {
        let grants = Confirmed::<()>::default();
        grants.remember("g1", "ws-a", 7, ());
        assert!(grants.get("g1", "ws-a", 7).is_some());
        // A revocation in the workspace moved the counter: look again.
        assert!(grants.get("g1", "ws-a", 8).is_none());
        // The same grant id presented for another workspace is not vouched for.
        assert!(grants.get("g1", "ws-b", 7).is_none());
        assert!(grants.get("g2", "ws-a", 7).is_none());
    }

    #[test]
    fn a_full_cache_starts_over_instead_of_growing() {
        let grants = Confirmed::<()>::default();
        for i in 0..MAX_ENTRIES {
            grants.remember(&format!("g{i}"), "ws", 0, ());
        }
        assert!(grants.get("g0", "ws", 0).is_some());
        grants.remember("one-more", "ws", 0, ());
        assert!(grants.get("g0", "ws", 0).is_none());
        assert!(grants.get("one-more", "ws", 0).is_some());
        let len = grants.entries.lock().map(|e| e.len()).unwrap_or_default();
        assert_eq!(len, 1);
    }
}
