//! Gatehouse's built-in demo MCP server.
//!
//! A small, dependency-free upstream that every new workspace gets, so that a freshly installed
//! gateway has something to connect to: three tools (`echo`, `add`, `whoami`), one resource
//! (`demo://readme`) and one prompt (`greet`).
//!
//! It is served through rmcp's Streamable HTTP server ([`service`]). The gateway authenticates
//! the HTTP request first and puts a [`Caller`] into the request's extensions; rmcp hands the
//! request's [`Parts`] (extensions included) to every handler through
//! [`RequestContext::extensions`], which is how `whoami` knows who is asking.

use std::sync::Arc;

use axum::http::request::Parts;
use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    handler::server::{
        router::{prompt::PromptRouter, tool::ToolRouter},
        wrapper::Parameters,
    },
    model::{
        Extensions, GetPromptResult, Implementation, ListResourcesResult, PaginatedRequestParams, PromptMessage,
        ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult, Resource, ResourceContents, Role,
        ServerCapabilities, ServerConfig,
    },
    prompt, prompt_handler, prompt_router, schemars,
    service::RequestContext,
    tool, tool_handler, tool_router,
    transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
    },
};
use serde::{Deserialize, Serialize};

/// Name reported in `serverInfo`.
pub const SERVER_NAME: &str = "gatehouse-demo";
/// URI of the one resource the demo server offers.
pub const README_URI: &str = "demo://readme";

const README_TEXT: &str = "This is Gatehouse's built-in demo MCP server.\n\
\n\
It runs inside the Gatehouse process and needs no credentials of its own. It offers three \
tools (echo, add and whoami), this resource and one prompt (greet), so that a client connected \
through the gateway can check that sign-in, consent, scopes and tool calls work end to end. \
`whoami` shows the identity the gateway authenticated for the request: subject, OAuth client, \
workspace and granted scope.\n";

const INSTRUCTIONS: &str = "Gatehouse's built-in demo server. Use `echo` and `add` to check that \
tool calls work, `whoami` to see the identity the gateway authenticated for this connection, \
read `demo://readme` for a short description, and try the `greet` prompt.";

/// The identity the gateway authenticated for an MCP request.
///
/// The gateway inserts it into the `http::Request` extensions before the request reaches the
/// rmcp service; handlers find it inside the request [`Parts`] that rmcp injects into
/// [`RequestContext::extensions`] (see [`caller`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Caller {
    /// `sub` of the access token: the user (or machine token) acting.
    pub subject: String,
    /// The OAuth client the token was issued to.
    pub client_id: String,
    /// Slug of the workspace whose MCP URL the token is bound to.
    pub workspace: String,
    /// Space-separated granted scopes.
    pub scope: String,
}

/// The caller of the current request, if the gateway supplied one.
///
/// Looks first at the rmcp request extensions themselves (for in-process callers that set it
/// directly), then at the HTTP request parts injected by the Streamable HTTP transport.
pub fn caller(extensions: &Extensions) -> Option<&Caller> {
    extensions.get::<Caller>().or_else(|| extensions.get::<Parts>().and_then(|parts| parts.extensions.get::<Caller>()))
}

/// Arguments of the `echo` tool.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct EchoArgs {
    /// The text to send back.
    pub text: String,
}

/// Arguments of the `add` tool.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct AddArgs {
    /// The first addend.
    pub a: f64,
    /// The second addend.
    pub b: f64,
}

/// Arguments of the `greet` prompt.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct GreetArgs {
    /// Who to greet.
    pub name: String,
}

/// The demo MCP server. Cheap to create: one per MCP session.
#[derive(Clone, Debug)]
pub struct DemoServer {
    tool_router: ToolRouter<Self>,
    prompt_router: PromptRouter<Self>,
}

impl Default for DemoServer {
    fn default() -> Self {
        Self::new()
    }
}

#[tool_router]
impl DemoServer {
    pub fn new() -> Self {
        Self { tool_router: Self::tool_router(), prompt_router: Self::prompt_router() }
    }

    /// Send the given text back unchanged.
    #[tool(annotations(title = "Echo", read_only_hint = true, open_world_hint = false))]
    fn echo(&self, Parameters(EchoArgs { text }): Parameters<EchoArgs>) -> String {
        text
    }

    /// Add two numbers and return the sum.
    #[tool(annotations(title = "Add", read_only_hint = true, open_world_hint = false))]
    fn add(&self, Parameters(AddArgs { a, b }): Parameters<AddArgs>) -> String {
        (a + b).to_string()
    }

    /// Show the identity the gateway authenticated for this request (subject, OAuth client,
    /// workspace and granted scope) as JSON, or "anonymous".
    #[tool(annotations(title = "Who am I", read_only_hint = true, open_world_hint = false))]
    fn whoami(&self, context: RequestContext<RoleServer>) -> Result<String, ErrorData> {
        match caller(&context.extensions) {
            Some(caller) => {
                serde_json::to_string(caller).map_err(|error| ErrorData::internal_error(error.to_string(), None))
            }
            None => Ok("anonymous".to_owned()),
        }
    }
}

#[prompt_router]
impl DemoServer {
    /// Greet someone by name.
    #[prompt(name = "greet")]
    fn greet(&self, Parameters(GreetArgs { name }): Parameters<GreetArgs>) -> GetPromptResult {
        GetPromptResult::new(vec![PromptMessage::new_text(
            Role::User,
            format!("Please greet {name} warmly, in one sentence, on behalf of Gatehouse."),
        )])
        .with_description(format!("A greeting for {name}"))
    }
}

fn readme() -> Resource {
    Resource::new(README_URI, "readme")
        .with_title("About this demo server")
        .with_description("What Gatehouse's built-in demo server is for")
        .with_mime_type("text/plain")
        .with_size(README_TEXT.len() as u64)
}

#[tool_handler(router = self.tool_router)]
#[prompt_handler(router = self.prompt_router)]
impl ServerHandler for DemoServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().enable_resources().enable_prompts().build())
            .with_server_info(
                Implementation::new(SERVER_NAME, env!("CARGO_PKG_VERSION")).with_title("Gatehouse demo server"),
            )
            .with_instructions(INSTRUCTIONS)
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        Ok(ListResourcesResult::with_all_items(vec![readme()]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        if request.uri == README_URI {
            Ok(ReadResourceResult::new(vec![
                ResourceContents::text(README_TEXT, README_URI).with_mime_type("text/plain"),
            ])
            .into())
        } else {
            Err(ErrorData::resource_not_found(format!("no resource {}", request.uri), None))
        }
    }
}

/// The demo server as a tower service, for `axum::Router::route_service` / `nest_service`.
pub type DemoService = StreamableHttpService<DemoServer, LocalSessionManager>;

/// rmcp Streamable HTTP settings for a server that sits behind the gateway.
///
/// - Legacy sessions on (`Mcp-Session-Id`, the 2025-06-18 / 2025-11-25 revisions and older);
///   requests carrying 2026-07-28 per-request metadata (`server/discover` lifecycle) are served
///   statelessly by rmcp whatever this setting says.
/// - rmcp's own `Host` allow-list is switched off: its default accepts only loopback hosts
///   (DNS-rebinding defence, RUSTSEC-2026-0189), which would refuse every legitimate request
///   arriving under the gateway's public hostname. The gateway checks `Host`/`Origin` against
///   its public URL before the request gets here. rmcp's `Origin` check is off by default and
///   stays off for the same reason.
/// - Plain JSON (not SSE) answers for simple 2026-07-28 requests.
///
/// Cancel `config.cancellation_token` at shutdown to end open SSE streams and sessions.
pub fn config() -> StreamableHttpServerConfig {
    StreamableHttpServerConfig::default()
        .disable_allowed_hosts()
        .disable_allowed_origins()
        .with_legacy_session_mode(true)
        .with_json_response(true)
}

/// The demo server's Streamable HTTP endpoint with in-memory sessions.
pub fn service(config: StreamableHttpServerConfig) -> DemoService {
    StreamableHttpService::new(|| Ok(DemoServer::new()), Arc::new(LocalSessionManager::default()), config)
}

#[cfg(test)]
mod tests {
    use std::{net::SocketAddr, time::Duration};

    use axum::Router;
    use rmcp::{
        ClientLifecycleMode, ClientServiceExt, ServiceExt,
        model::{
            CallToolRequestParams, ClientConfig, GetPromptRequestParams, JsonObject, ProtocolVersion, ResourceContents,
        },
        service::{RoleClient, RunningService},
        transport::StreamableHttpClientTransport,
    };
    use serde_json::json;

    use super::*;

    const STEP: Duration = Duration::from_secs(10);

    fn test_caller() -> Caller {
        Caller {
            subject: "user-0190-alice".to_owned(),
            client_id: "client-demo".to_owned(),
            workspace: "acme".to_owned(),
            scope: "mcp:read mcp:tools mcp:resources".to_owned(),
        }
    }

    struct Server {
        addr: SocketAddr,
        shutdown: Box<dyn FnOnce() + Send>,
        task: tokio::task::JoinHandle<()>,
    }

    /// Serves `service(config)` at `/mcp` on 127.0.0.1:0, with `wrap` adding layers (the part
    /// the gateway will play: authenticate, then insert a `Caller`).
    async fn start(config: StreamableHttpServerConfig, wrap: impl FnOnce(Router) -> Router) -> Server {
        let token = config.cancellation_token.clone();
        let shutdown = Box::new({
            let token = token.clone();
            move || token.cancel()
        });
        let router = wrap(Router::new().route_service("/mcp", service(config)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move { token.cancelled_owned().await })
                .await
                .unwrap();
        });
        Server { addr, shutdown, task }
    }

    impl Server {
        async fn stop(self) {
            (self.shutdown)();
            tokio::time::timeout(STEP, self.task).await.unwrap().unwrap();
        }
    }

    async fn step<F: Future>(future: F) -> F::Output {
        tokio::time::timeout(STEP, future).await.unwrap()
    }

    fn args(value: serde_json::Value) -> JsonObject {
        value.as_object().cloned().unwrap()
    }

    fn text_of(result: &rmcp::model::CallToolResult) -> String {
        result.content.iter().filter_map(|block| block.as_text()).map(|text| text.text.clone()).collect()
    }

    async fn exercise(client: &RunningService<RoleClient, ClientConfig>, expect_caller: bool) {
        let tools = step(client.list_all_tools()).await.unwrap();
        let mut names: Vec<_> = tools.iter().map(|tool| tool.name.to_string()).collect();
        names.sort();
        assert_eq!(names, ["add", "echo", "whoami"]);

        let sum =
            step(client.call_tool(CallToolRequestParams::new("add").with_arguments(args(json!({"a": 2, "b": 3})))))
                .await
                .unwrap();
        assert_eq!(sum.is_error, Some(false));
        assert_eq!(text_of(&sum), "5");

        let echoed =
            step(client.call_tool(CallToolRequestParams::new("echo").with_arguments(args(json!({"text": "héllo ✓"})))))
                .await
                .unwrap();
        assert_eq!(text_of(&echoed), "héllo ✓");

        let whoami = step(client.call_tool(CallToolRequestParams::new("whoami"))).await.unwrap();
        if expect_caller {
            let reported: serde_json::Value = serde_json::from_str(&text_of(&whoami)).unwrap();
            assert_eq!(
                reported,
                json!({
                    "subject": "user-0190-alice",
                    "client_id": "client-demo",
                    "workspace": "acme",
                    "scope": "mcp:read mcp:tools mcp:resources",
                })
            );
        } else {
            assert_eq!(text_of(&whoami), "anonymous");
        }

        let resources = step(client.list_all_resources()).await.unwrap();
        assert_eq!(resources.len(), 1);
        assert_eq!(resources[0].uri, README_URI);
        assert_eq!(resources[0].mime_type.as_deref(), Some("text/plain"));
        let read = step(client.read_resource(ReadResourceRequestParams::new(README_URI))).await.unwrap();
        match read.contents.as_slice() {
            [ResourceContents::TextResourceContents { text, uri, .. }] => {
                assert_eq!(uri, README_URI);
                assert!(text.contains("built-in demo MCP server"), "{text}");
            }
            other => panic!("unexpected contents {other:?}"),
        }
        let missing = step(client.read_resource(ReadResourceRequestParams::new("demo://nope"))).await;
        assert!(missing.is_err(), "{missing:?}");

        let prompts = step(client.list_all_prompts()).await.unwrap();
        assert_eq!(prompts.len(), 1);
        assert_eq!(prompts[0].name, "greet");
        let argument_names: Vec<_> =
            prompts[0].arguments.iter().flatten().map(|argument| (argument.name.as_str(), argument.required)).collect();
        assert_eq!(argument_names, [("name", Some(true))]);
        let prompt =
            step(client.get_prompt(GetPromptRequestParams::new("greet").with_arguments(args(json!({"name": "Ada"})))))
                .await
                .unwrap();
        assert_eq!(prompt.messages.len(), 1);
        let message = serde_json::to_value(&prompt.messages[0]).unwrap();
        assert_eq!(message["role"], "user");
        assert!(message["content"]["text"].as_str().unwrap().contains("Ada"), "{message}");
    }

    #[tokio::test]
    async fn session_client_sees_tools_resources_prompts_and_caller() {
        let server = start(config(), |router| router.layer(axum::Extension(test_caller()))).await;
        let transport = StreamableHttpClientTransport::from_uri(format!("http://{}/mcp", server.addr));
        let client = step(ClientConfig::default().serve(transport)).await.unwrap();

        let info = client.peer_info().unwrap();
        assert_eq!(info.server_info.as_ref().unwrap().name, SERVER_NAME);
        assert!(info.instructions.as_deref().unwrap().contains("demo"));
        assert_eq!(info.protocol_version, ProtocolVersion::V_2025_11_25);

        exercise(&client, true).await;
        step(client.cancel()).await.unwrap();
        server.stop().await;
    }

    #[tokio::test]
    async fn discover_client_is_served_statelessly() {
        let server = start(config(), |router| router.layer(axum::Extension(test_caller()))).await;
        let transport = StreamableHttpClientTransport::from_uri(format!("http://{}/mcp", server.addr));
        let client = step(ClientConfig::default().serve_with_lifecycle(
            transport,
            ClientLifecycleMode::Discover { preferred_versions: vec![ProtocolVersion::V_2026_07_28] },
        ))
        .await
        .unwrap();
        assert_eq!(client.peer_info().unwrap().protocol_version, ProtocolVersion::V_2026_07_28);
        exercise(&client, true).await;
        step(client.cancel()).await.unwrap();
        server.stop().await;
    }

    #[tokio::test]
    async fn whoami_without_caller_is_anonymous() {
        let server = start(config(), |router| router).await;
        let transport = StreamableHttpClientTransport::from_uri(format!("http://{}/mcp", server.addr));
        let client = step(ClientConfig::default().serve(transport)).await.unwrap();
        exercise(&client, false).await;
        step(client.cancel()).await.unwrap();
        server.stop().await;
    }

    /// A stand-in for the gateway's authentication: the caller's subject comes from a header,
    /// so that each request of one session can carry a different identity.
    async fn caller_from_header(
        mut request: axum::extract::Request,
        next: axum::middleware::Next,
    ) -> axum::response::Response {
        let subject = request.headers().get("x-test-subject").and_then(|value| value.to_str().ok()).map(str::to_owned);
        if let Some(subject) = subject {
            request.extensions_mut().insert(Caller { subject, ..test_caller() });
        }
        next.run(request).await
    }

    struct Reply {
        status: reqwest::StatusCode,
        session: Option<String>,
        /// The JSON-RPC message answering the request, if any (from JSON or SSE).
        message: Option<serde_json::Value>,
    }

    async fn post(http: &reqwest::Client, url: &str, headers: &[(&str, &str)], body: serde_json::Value) -> Reply {
        let mut request = http.post(url).header("accept", "application/json, text/event-stream").json(&body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = step(request.send()).await.unwrap();
        let status = response.status();
        let session = response.headers().get("mcp-session-id").map(|value| value.to_str().unwrap().to_owned());
        // Request-wise SSE streams end after the response, so reading to the end is bounded.
        let text = step(response.text()).await.unwrap();
        let message = text
            .lines()
            .map(|line| line.strip_prefix("data:").unwrap_or(line).trim())
            .filter_map(|data| serde_json::from_str::<serde_json::Value>(data).ok())
            .find(|message| message.get("id").is_some());
        Reply { status, session, message }
    }

    fn whoami_call(id: u64) -> serde_json::Value {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
               "params": {"name": "whoami", "arguments": {}}})
    }

    fn initialize() -> serde_json::Value {
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "raw-test", "version": "0"}}})
    }

    /// The identity is read from each HTTP request, not fixed when the session starts: a token
    /// refreshed (or another user presenting the session id) mid-session is seen as such.
    #[tokio::test]
    async fn caller_is_taken_from_each_request_of_a_session() {
        let server = start(config(), |router| router.layer(axum::middleware::from_fn(caller_from_header))).await;
        let url = format!("http://{}/mcp", server.addr);
        let http = reqwest::Client::new();

        let init = post(&http, &url, &[("x-test-subject", "alice")], initialize()).await;
        assert_eq!(init.status, 200);
        let init_message = init.message.unwrap();
        assert_eq!(init_message["result"]["protocolVersion"], "2025-06-18");
        assert_eq!(init_message["result"]["serverInfo"]["name"], SERVER_NAME);
        let session = init.session.unwrap();
        let headers = |subject| {
            [("mcp-session-id", session.as_str()), ("mcp-protocol-version", "2025-06-18"), ("x-test-subject", subject)]
        };
        let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let ack = post(&http, &url, &headers("alice"), initialized).await;
        assert_eq!(ack.status, 202);

        for (id, subject) in [(2, "alice"), (3, "bob")] {
            let reply = post(&http, &url, &headers(subject), whoami_call(id)).await;
            assert_eq!(reply.status, 200);
            let message = reply.message.unwrap();
            assert_eq!(message["id"], id);
            let text = message["result"]["content"][0]["text"].as_str().unwrap();
            let reported: serde_json::Value = serde_json::from_str(text).unwrap();
            assert_eq!(reported["subject"], subject);
        }
        server.stop().await;
    }

    /// rmcp's own DNS-rebinding defence accepts only loopback `Host`s unless configured; the
    /// gateway config turns it off (the gateway checks `Host`/`Origin` itself) so that requests
    /// under a public hostname are not refused twice over.
    #[tokio::test]
    async fn public_host_is_refused_by_rmcp_defaults_but_not_by_gateway_config() {
        let rmcp_default = start(StreamableHttpServerConfig::default(), |router| router).await;
        let gateway = start(config(), |router| router).await;
        let http = reqwest::Client::new();
        let public = [("host", "mcp.example.com"), ("origin", "https://mcp.example.com")];

        let url = format!("http://{}/mcp", rmcp_default.addr);
        assert_eq!(post(&http, &url, &[], initialize()).await.status, 200);
        let refused = post(&http, &url, &public, initialize()).await;
        assert_eq!(refused.status, 403);

        let url = format!("http://{}/mcp", gateway.addr);
        let accepted = post(&http, &url, &public, initialize()).await;
        assert_eq!(accepted.status, 200);
        assert!(accepted.session.is_some());

        rmcp_default.stop().await;
        gateway.stop().await;
    }
}
