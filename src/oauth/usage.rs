//! When a client's use is worth writing down.
//!
//! A client_credentials client may fetch a token every few seconds; recording its last use and
//! an audit event each time would cost a database write per access token, which Gatehouse
//! promises never to do. So use is recorded at most once per [`WINDOW`] per client (per
//! process): the first token of a window is written (last use, audit event), the rest of that
//! window's tokens are not. Pages that show "last used" are at most a minute behind.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// Use of one client is written down at most once this often (seconds).
pub const WINDOW: i64 = 60;
/// Clients tracked at once; past this, entries older than the window are dropped first.
pub const CAPACITY: usize = 4_096;

#[derive(Debug, Default)]
pub struct ClientUsage {
    recorded: Mutex<HashMap<String, i64>>,
}

impl ClientUsage {
    /// True if the use of `client_id` at `now` should be written: none was in the last
    /// [`WINDOW`] seconds. Marks it written.
    pub fn due(&self, client_id: &str, now: i64) -> bool {
        let mut recorded = self.recorded.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(at) = recorded.get(client_id)
            && now - at < WINDOW
        {
            return false;
        }
        if recorded.len() >= CAPACITY && !recorded.contains_key(client_id) {
            recorded.retain(|_, at| now - *at < WINDOW);
            if recorded.len() >= CAPACITY {
                // More clients than we track, all active: forget them (they are written
                // once more, which is only an extra write, never a lost revocation).
                recorded.clear();
            }
        }
        recorded.insert(client_id.to_owned(), now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_per_window_per_client() {
        let usage = ClientUsage::default();
        assert!(usage.due("a", 1000));
        assert!(!usage.due("a", 1001));
        assert!(!usage.due("a", 1000 + WINDOW - 1));
        assert!(usage.due("b", 1001), "clients are counted apart");
        assert!(usage.due("a", 1000 + WINDOW));
    }

    #[test]
    fn bounded() {
        let usage = ClientUsage::default();
        for i in 0..(CAPACITY + 100) {
            assert!(usage.due(&format!("c{i}"), 5));
        }
        let len = usage.recorded.lock().unwrap().len();
        assert!(len <= CAPACITY, "{len}");
    }
}
