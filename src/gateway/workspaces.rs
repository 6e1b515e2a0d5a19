//! One MCP server per workspace: rmcp's Streamable HTTP service whose handler, built once per
//! MCP session, is an [`Aggregator`] over the workspace's configured upstreams.
//!
//! The configuration is read again whenever a client starts a session (a request without
//! `Mcp-Session-Id`), so `gatehouse upstream add` takes effect for new sessions without a
//! restart; sessions opened on an older configuration end, and their clients start anew.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use rmcp::transport::streamable_http_server::StreamableHttpService;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;

use super::aggregate::Aggregator;
use super::upstream::Upstream;

pub type WorkspaceService = StreamableHttpService<Aggregator, LocalSessionManager>;

#[derive(Default)]
pub struct WorkspaceServers {
    services: Mutex<HashMap<String, (Vec<Upstream>, WorkspaceService)>>,
    /// Cancelled at shutdown; every service's streams end with it.
    shutdown: tokio_util::sync::CancellationToken,
}

impl WorkspaceServers {
    pub fn new(shutdown: tokio_util::sync::CancellationToken) -> Self {
        WorkspaceServers { services: Mutex::default(), shutdown }
    }

    /// The service of a workspace whose upstreams are `upstreams` (rebuilt if they changed).
    pub fn for_config(&self, workspace_id: &str, upstreams: Vec<Upstream>) -> WorkspaceService {
        let mut services = self.services.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((current, service)) = services.get(workspace_id)
            && *current == upstreams
        {
            return service.clone();
        }
        let mut config = super::demo::config();
        config.cancellation_token = self.shutdown.child_token();
        let factory_upstreams = upstreams.clone();
        let service = StreamableHttpService::new(
            move || Ok(Aggregator::lazy(factory_upstreams.clone())),
            Arc::new(LocalSessionManager::default()),
            config,
        );
        services.insert(workspace_id.to_owned(), (upstreams, service.clone()));
        service
    }

    /// The service already built for a workspace, for requests within a session.
    pub fn current(&self, workspace_id: &str) -> Option<WorkspaceService> {
        let services = self.services.lock().unwrap_or_else(PoisonError::into_inner);
        services.get(workspace_id).map(|(_, service)| service.clone())
    }
}
