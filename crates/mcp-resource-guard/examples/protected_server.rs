//! An rmcp Streamable HTTP MCP server with one tool, protected by `mcp-resource-guard`
//! against an external authorization server. The guard is the few lines in `main` marked
//! "the guard"; everything else is an ordinary rmcp server.
//!
//! ```sh
//! GUARD_ISSUER=https://login.example.com/ GUARD_RESOURCE=https://mcp.example.com/mcp \
//!   cargo run -p mcp-resource-guard --example protected_server
//! ```
//!
//! Settings (environment):
//! - `GUARD_ISSUER` (required): the trusted issuer, exactly as its tokens' `iss`.
//! - `GUARD_LISTEN` (default `127.0.0.1:3000`; port 0 picks one).
//! - `GUARD_RESOURCE` (default `http://<listen address>/mcp`): the URL clients connect to.
//! - `GUARD_AUDIENCE`: accept this `aud` instead (providers without RFC 8707).
//! - `GUARD_ALLOW_HTTP_LOOPBACK=1`: testing only, trust an http issuer on loopback.
//! - `GUARD_JWKS_MIN_REFETCH`: seconds between JWKS refetches for unknown key ids (default 10).

use std::sync::Arc;

use axum::http::request::Parts;
use mcp_resource_guard::{IssuerConfig, IssuerValidator, ResourceGuard, VerifiedToken};
use rmcp::handler::server::{router::tool::ToolRouter, wrapper::Parameters};
use rmcp::model::{Implementation, ServerCapabilities, ServerConfig};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
};
use rmcp::{ErrorData, RoleServer, ServerHandler, schemars, tool, tool_handler, tool_router};
use serde::Deserialize;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
struct EchoArgs {
    /// The text to send back.
    text: String,
}

#[derive(Clone)]
struct Example {
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Example {
    fn new() -> Self {
        Example { tool_router: Self::tool_router() }
    }

    /// Send the given text back unchanged.
    #[tool]
    fn echo(&self, Parameters(EchoArgs { text }): Parameters<EchoArgs>) -> String {
        text
    }

    /// Who the verified access token says is calling, and with which scopes.
    #[tool]
    fn whoami(&self, context: RequestContext<RoleServer>) -> Result<String, ErrorData> {
        // The guard put the verified token into the HTTP request; rmcp hands handlers its parts.
        let token = context
            .extensions
            .get::<Parts>()
            .and_then(|parts| parts.extensions.get::<VerifiedToken>())
            .ok_or_else(|| ErrorData::internal_error("no verified token", None))?;
        let scopes: Vec<&str> = token.scopes.iter().map(String::as_str).collect();
        Ok(serde_json::json!({"sub": token.subject, "client_id": token.client_id, "iss": token.issuer, "scope": scopes.join(" ")})
            .to_string())
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Example {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("guarded-example", env!("CARGO_PKG_VERSION")))
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let issuer = env("GUARD_ISSUER").ok_or("set GUARD_ISSUER to the authorization server's issuer URL")?;
    let listener = tokio::net::TcpListener::bind(env("GUARD_LISTEN").as_deref().unwrap_or("127.0.0.1:3000")).await?;
    let resource = env("GUARD_RESOURCE").unwrap_or(format!("http://{}/mcp", listener.local_addr()?));

    // rmcp's defaults accept only loopback `Host`s (DNS-rebinding defence); behind a public
    // host name, list it with `StreamableHttpServerConfig::with_allowed_hosts`.
    let mcp = StreamableHttpService::new(
        || Ok(Example::new()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );

    // The guard: trust the issuer for this resource, and put one layer in front.
    let mut config = IssuerConfig::new(&issuer, &resource);
    if let Some(audience) = env("GUARD_AUDIENCE") {
        config = config.with_audience(audience);
    }
    config.allow_http_loopback = env("GUARD_ALLOW_HTTP_LOOPBACK").as_deref() == Some("1");
    if let Some(secs) = env("GUARD_JWKS_MIN_REFETCH") {
        config.jwks_min_refetch = secs.parse()?;
    }
    let guard = ResourceGuard::new(&resource, &issuer, IssuerValidator::new(config)?);
    let app = axum::Router::new().nest_service("/mcp", mcp).layer(guard.layer());

    println!("protected MCP server at {resource} (tokens from {issuer})");
    axum::serve(listener, app).await?;
    Ok(())
}
