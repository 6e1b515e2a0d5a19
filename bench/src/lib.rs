//! Shared bits of the benchmark tools.

use std::time::Duration;

/// The 1 KiB of text every benchmarked `tools/call` carries and gets back.
pub fn kib_text() -> String {
    "x".repeat(1024)
}

/// A 2026-07-28 stateless `tools/call` of `tool` with `{"text": <1 KiB>}`.
pub fn tools_call(tool: &str) -> String {
    serde_json::json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {
            "name": tool,
            "arguments": {"text": kib_text()},
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
                "io.modelcontextprotocol/clientInfo": {"name": "gatehouse-bench", "version": "0"}
            }
        }
    })
    .to_string()
}

/// Parses `--name value` style arguments.
pub struct Args(Vec<String>);

impl Args {
    pub fn from_env() -> Self {
        Args(std::env::args().skip(1).collect())
    }
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().position(|a| a == name).and_then(|i| self.0.get(i + 1)).map(String::as_str)
    }
    /// True if the flag `name` (which takes no value) is present.
    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|a| a == name)
    }
    pub fn str_or(&self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or(default).to_owned()
    }
    pub fn num_or<T: std::str::FromStr>(&self, name: &str, default: T) -> T {
        self.get(name).and_then(|v| v.parse().ok()).unwrap_or(default)
    }
    pub fn secs_or(&self, name: &str, default: f64) -> Duration {
        Duration::from_secs_f64(self.num_or(name, default))
    }
    pub fn positional(&self, i: usize) -> Option<&str> {
        self.0.get(i).map(String::as_str)
    }
}

/// Binds `addr`, prints the bound address on stdout (the driver reads it) and returns the listener.
pub async fn listen(addr: &str) -> anyhow::Result<tokio::net::TcpListener> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on {}", listener.local_addr()?);
    Ok(listener)
}

/// A single-threaded runtime: baselines run on one core, as the gateway does under `taskset`.
pub fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}
