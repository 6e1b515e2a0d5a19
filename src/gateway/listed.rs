//! Each workspace's upstreams as last listed, kept per `upstreams_version` (see migration
//! 0008): the MCP endpoint reads the version with the workspace row it reads anyway, so a
//! request at a version already seen neither reads the upstream rows nor unseals their
//! headers, while a change by any process (the CLI, another node) moves the version and is
//! listed on the very next request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::registry::{self, RegistryError};
use super::upstream::Upstream;
use crate::crypto::aead::Sealer;
use crate::store::Store;

/// Workspaces whose listing is kept at once; past that, one is dropped (and listed again
/// when next used).
pub const MAX_WORKSPACES: usize = 1024;

/// A workspace's upstreams as listed, shared by every request at its version.
pub type Listing = Arc<Vec<Upstream>>;

/// workspace id -> (version, its upstreams at that version or later).
type ByWorkspace = HashMap<String, (i64, Listing)>;

#[derive(Default)]
pub struct ListedUpstreams {
    by_workspace: Mutex<ByWorkspace>,
    /// How many times the upstreams were read from the database (for tests and metrics).
    loads: AtomicU64,
}

impl ListedUpstreams {
    /// The upstreams of a workspace whose row said `version`, listed again only if the
    /// version differs from the one kept.
    pub async fn get(
        &self,
        store: &Store,
        sealer: &Sealer,
        workspace_id: &str,
        version: i64,
    ) -> Result<Listing, RegistryError> {
        if let Some((kept, upstreams)) = self.lock().get(workspace_id)
            && *kept == version
        {
            return Ok(upstreams.clone());
        }
        self.loads.fetch_add(1, Ordering::Relaxed);
        // Read after the version was, so at least as new as `version`: keeping it under
        // `version` can only make a later request see a newer configuration, never an older one.
        let upstreams = Arc::new(registry::list(store, sealer, workspace_id).await?);
        let mut map = self.lock();
        match map.get(workspace_id) {
            // A racing request listed a newer version meanwhile: keep that one.
            Some((kept, _)) if *kept > version => {}
            Some(_) => {
                map.insert(workspace_id.to_owned(), (version, upstreams.clone()));
            }
            None => {
                if map.len() >= MAX_WORKSPACES
                    && let Some(evicted) = map.keys().next().cloned()
                {
                    map.remove(&evicted);
                }
                map.insert(workspace_id.to_owned(), (version, upstreams.clone()));
            }
        }
        Ok(upstreams)
    }

    /// How many times upstreams were read from the database since start.
    pub fn loads(&self) -> u64 {
        self.loads.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ByWorkspace> {
        self.by_workspace.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
