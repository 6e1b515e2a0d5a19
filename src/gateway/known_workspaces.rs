//! Workspaces looked up by slug on every MCP request, remembered once found.
//!
//! A workspace row never changes once created: no statement renames or deletes one (see
//! `store::workspaces`), so a slug found once maps to the same workspace for the life of the
//! process and need not cost a database round trip per request. Slugs not found are asked
//! again each time, so a workspace created meanwhile (by the CLI, another node) is seen at
//! once. If workspaces ever become deletable or renamable, this cache must learn about it.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use crate::store::{Store, StoreResult, WorkspaceRow};

/// Workspaces remembered at once; past this the map starts over (and refills from the database).
pub const CAPACITY: usize = 4_096;

#[derive(Debug, Default)]
pub struct KnownWorkspaces {
    by_slug: RwLock<HashMap<String, WorkspaceRow>>,
}

impl KnownWorkspaces {
    pub async fn by_slug(&self, store: &Store, slug: &str) -> StoreResult<Option<WorkspaceRow>> {
        if let Some(ws) = self.by_slug.read().unwrap_or_else(PoisonError::into_inner).get(slug) {
            return Ok(Some(ws.clone()));
        }
        let found = store.workspace_by_slug(slug).await?;
        if let Some(ws) = &found {
            let mut map = self.by_slug.write().unwrap_or_else(PoisonError::into_inner);
            if map.len() >= CAPACITY {
                map.clear();
            }
            map.insert(slug.to_owned(), ws.clone());
        }
        Ok(found)
    }
}
