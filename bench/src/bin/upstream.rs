//! The bare upstream: an MCP server (rmcp, Streamable HTTP, JSON answers) whose `payload`
//! tool answers every `tools/call` with 1 KiB of text. The latency baseline is this server
//! asked directly; the gateway figure is the same request through Gatehouse to it.

use std::sync::Arc;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ServerHandler, schemars, tool, tool_handler, tool_router};
use serde::Deserialize;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
struct PayloadArgs {
    /// Ignored: the answer is always 1 KiB.
    #[allow(dead_code)]
    text: Option<String>,
}

#[derive(Clone)]
struct Upstream {
    tool_router: ToolRouter<Self>,
    payload: Arc<str>,
}

#[tool_router]
impl Upstream {
    /// Answer with 1 KiB of text.
    #[tool]
    fn payload(&self, Parameters(_args): Parameters<PayloadArgs>) -> String {
        self.payload.to_string()
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Upstream {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

fn main() -> anyhow::Result<()> {
    let args = gatehouse_bench::Args::from_env();
    let addr = args.str_or("--listen", "127.0.0.1:0");
    gatehouse_bench::current_thread().block_on(async move {
        let payload: Arc<str> = gatehouse_bench::kib_text().into();
        let config = StreamableHttpServerConfig::default()
            .disable_allowed_hosts()
            .disable_allowed_origins()
            .with_legacy_session_mode(true)
            .with_json_response(true);
        let service = StreamableHttpService::new(
            move || Ok(Upstream { tool_router: Upstream::tool_router(), payload: payload.clone() }),
            Arc::new(LocalSessionManager::default()),
            config,
        );
        let app = axum::Router::new().route_service("/mcp", service);
        let listener = gatehouse_bench::listen(&addr).await?;
        axum::serve(listener, app).await?;
        Ok(())
    })
}
