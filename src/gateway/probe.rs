//! Testing an upstream's connection for the Upstreams page: connect as the gateway would,
//! list its tools, disconnect. Built only on the public functions of [`super::upstream`], so
//! rmcp types stay inside the gateway.

use std::time::{Duration, Instant};

use std::sync::Arc;

use super::upstream::{self, BearerSource, CONNECT_TIMEOUT, Lifecycle, Listeners, Upstream};

/// A tool as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolInfo {
    pub name: String,
    pub description: String,
}

/// What one connection test found.
#[derive(Debug, Clone)]
pub struct ProbeReport {
    /// Connected and listed its tools.
    pub ok: bool,
    pub elapsed: Duration,
    /// `name version` from its `initialize` answer.
    pub server: Option<String>,
    pub tools: Vec<ToolInfo>,
    /// Why it failed (no secret: header values never appear in these messages).
    pub error: Option<String>,
    /// The text of the tool called after listing, if one was asked for.
    pub called: Option<String>,
}

/// Connects to `upstream`, lists its tools and disconnects; bounded by two connect timeouts.
/// `bearer` is a workspace credential at most: a health check never borrows one person's
/// token for everyone.
pub async fn probe(upstream: &Upstream, bearer: Option<Arc<dyn BearerSource>>) -> ProbeReport {
    probe_and_call(upstream, bearer, Lifecycle::Session, None).await
}

/// [`probe`], on the given protocol lifecycle, then calling `tool` (no arguments) if given.
pub async fn probe_and_call(
    upstream: &Upstream,
    bearer: Option<Arc<dyn BearerSource>>,
    lifecycle: Lifecycle,
    tool: Option<&str>,
) -> ProbeReport {
    let started = Instant::now();
    let failed = |error: String| ProbeReport {
        ok: false,
        elapsed: started.elapsed(),
        server: None,
        tools: Vec::new(),
        error: Some(error),
        called: None,
    };
    // A session handshake works with every upstream revision; nobody listens for list
    // changes on a connection that closes right away.
    let client = match upstream::connect(upstream, lifecycle, &Listeners::default(), bearer).await {
        Ok(client) => client,
        Err(e) => return failed(e.to_string()),
    };
    let server =
        client.peer_info().and_then(|info| info.server_info.as_ref().map(|s| format!("{} {}", s.name, s.version)));
    let listed = tokio::time::timeout(CONNECT_TIMEOUT, client.peer().list_all_tools()).await;
    let mut report = match listed {
        Ok(Ok(tools)) => ProbeReport {
            ok: true,
            elapsed: started.elapsed(),
            server,
            tools: tools
                .into_iter()
                .map(|t| ToolInfo {
                    name: t.name.into_owned(),
                    description: t.description.map(|d| d.into_owned()).unwrap_or_default(),
                })
                .collect(),
            error: None,
            called: None,
        },
        Ok(Err(e)) => failed(format!("connected, but tools/list failed: {e}")),
        Err(_) => failed(format!("connected, but tools/list did not answer within {}s", CONNECT_TIMEOUT.as_secs())),
    };
    if let Some(tool) = tool.filter(|_| report.ok) {
        let request = rmcp::model::CallToolRequestParams::new(tool.to_owned());
        match tokio::time::timeout(CONNECT_TIMEOUT, client.peer().call_tool(request)).await {
            Ok(Ok(result)) => {
                let text: Vec<String> =
                    result.content.iter().filter_map(|c| c.as_text().map(|t| t.text.clone())).collect();
                report.called = Some(text.join("\n"));
            }
            Ok(Err(e)) => {
                report.ok = false;
                report.error = Some(format!("calling {tool} failed: {e}"));
            }
            Err(_) => {
                report.ok = false;
                report.error = Some(format!("calling {tool} did not answer within {}s", CONNECT_TIMEOUT.as_secs()));
            }
        }
    }
    client.close().await;
    report
}
