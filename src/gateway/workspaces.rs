//! The MCP servers of each workspace, built on rmcp's Streamable HTTP service with an
//! [`Aggregator`] over the workspace's configured upstreams as the handler.
//!
//! - Session-based clients (MCP 2025-06-18, 2025-11-25): one service per workspace; its handler
//!   is built per MCP session, so each session has its own upstream sessions. The configuration
//!   is read again whenever a client starts a session, so `gatehouse upstream add` takes effect
//!   for new sessions without a restart; live sessions keep the server they were opened on
//!   (see `sessions`).
//! - Stateless requests (MCP 2026-07-28, no `initialize`, no session): one service per
//!   workspace *and principal*, whose handler is one shared aggregator, so upstream
//!   connections (and stdio children) are opened once and reused across requests instead of
//!   per request. Keyed by principal so that nothing an upstream connection holds (its
//!   session, what it was told) is shared between people or clients. At most
//!   [`MAX_STATELESS`] are kept; the least recently used goes first, and any unused for
//!   [`STATELESS_IDLE`] is closed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rmcp::transport::streamable_http_server::StreamableHttpService;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;

use super::aggregate::Aggregator;
use super::listed::Listing;
use super::upstream::{CredentialResolver, Lifecycle};

pub type WorkspaceService = StreamableHttpService<Aggregator, LocalSessionManager>;

/// Stateless servers (workspace x principal) kept at once.
pub const MAX_STATELESS: usize = 256;
/// A stateless server unused this long is closed (its upstream connections with it).
pub const STATELESS_IDLE: Duration = Duration::from_secs(15 * 60);

struct Stateless {
    upstreams: Listing,
    server: StatelessServer,
    last_used: Instant,
}

/// The server for one principal's stateless requests: rmcp's service, and its handler for
/// the requests the endpoint answers itself (`direct`).
#[derive(Clone)]
pub struct StatelessServer {
    pub service: WorkspaceService,
    pub aggregator: Aggregator,
}

#[derive(Default)]
pub struct WorkspaceServers {
    services: Mutex<HashMap<String, (Listing, WorkspaceService)>>,
    /// (workspace id, principal) -> the shared server for their stateless requests.
    stateless: Mutex<HashMap<(String, String), Stateless>>,
    /// Cancelled at shutdown; every service's streams end with it.
    shutdown: tokio_util::sync::CancellationToken,
}

/// The same configuration: usually the very listing kept in `listed`, else compared.
fn same(current: &Listing, upstreams: &Listing) -> bool {
    Arc::ptr_eq(current, upstreams) || current == upstreams
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl WorkspaceServers {
    pub fn new(shutdown: tokio_util::sync::CancellationToken) -> Self {
        WorkspaceServers { shutdown, ..Self::default() }
    }

    fn build(&self, factory: impl Fn() -> Aggregator + Send + Sync + 'static) -> WorkspaceService {
        let mut config = super::demo::config();
        config.cancellation_token = self.shutdown.child_token();
        StreamableHttpService::new(move || Ok(factory()), Arc::new(LocalSessionManager::default()), config)
    }

    /// The service of a workspace whose upstreams are `upstreams` (rebuilt if they changed);
    /// `credentials` picks each caller's upstream credentials.
    pub fn for_config(
        &self,
        workspace_id: &str,
        upstreams: Listing,
        credentials: Option<Arc<dyn CredentialResolver>>,
    ) -> WorkspaceService {
        let mut services = lock(&self.services);
        if let Some((current, service)) = services.get(workspace_id)
            && same(current, &upstreams)
        {
            return service.clone();
        }
        let factory_upstreams = upstreams.as_ref().clone();
        let service =
            self.build(move || Aggregator::lazy(factory_upstreams.clone(), Lifecycle::Session, credentials.clone()));
        services.insert(workspace_id.to_owned(), (upstreams, service.clone()));
        service
    }

    /// The service for stateless requests of `principal` in a workspace whose upstreams are
    /// `upstreams` (rebuilt, with fresh upstream connections, if they changed).
    pub fn stateless(
        &self,
        workspace_id: &str,
        principal: &str,
        upstreams: Listing,
        credentials: Option<Arc<dyn CredentialResolver>>,
    ) -> StatelessServer {
        let now = Instant::now();
        let key = (workspace_id.to_owned(), principal.to_owned());
        let mut map = lock(&self.stateless);
        if let Some(entry) = map.get_mut(&key)
            && same(&entry.upstreams, &upstreams)
        {
            entry.last_used = now;
            return entry.server.clone();
        }
        map.retain(|_, entry| now.duration_since(entry.last_used) < STATELESS_IDLE);
        while map.len() >= MAX_STATELESS {
            let Some(oldest) = map.iter().min_by_key(|(_, entry)| entry.last_used).map(|(key, _)| key.clone()) else {
                break;
            };
            map.remove(&oldest);
        }
        let aggregator = Aggregator::lazy(upstreams.as_ref().clone(), Lifecycle::Stateless, credentials);
        let shared = aggregator.clone();
        let service = self.build(move || shared.clone());
        let server = StatelessServer { service, aggregator };
        map.insert(key, Stateless { upstreams, server: server.clone(), last_used: now });
        server
    }
}
