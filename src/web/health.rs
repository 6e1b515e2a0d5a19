//! The last connection test of each upstream, kept in memory for the Upstreams pages.
//! One entry per configured upstream (removed with it), so it stays small; each gateway node
//! keeps its own, and a restart forgets them until the next test.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use crate::gateway::probe::ProbeReport;

#[derive(Debug, Clone)]
pub struct Checked {
    pub at: i64,
    pub report: ProbeReport,
}

#[derive(Debug, Default)]
pub struct HealthBoard {
    last: Mutex<HashMap<(String, String), Checked>>,
}

impl HealthBoard {
    pub fn record(&self, workspace_id: &str, name: &str, at: i64, report: ProbeReport) {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        last.insert((workspace_id.to_owned(), name.to_owned()), Checked { at, report });
    }

    pub fn get(&self, workspace_id: &str, name: &str) -> Option<Checked> {
        let last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        last.get(&(workspace_id.to_owned(), name.to_owned())).cloned()
    }

    pub fn forget(&self, workspace_id: &str, name: &str) {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        last.remove(&(workspace_id.to_owned(), name.to_owned()));
    }
}
