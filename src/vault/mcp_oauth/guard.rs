//! The HTTP client for everything an upstream tells us to fetch (protected resource metadata,
//! authorization server metadata, registration and token endpoints): a server we do not
//! control names these URLs, so they are SSRF-guarded like client metadata documents.
//!
//! https only, no redirects followed, no proxy, bounded time and size, and the addresses a
//! name resolves to are checked by the same [`GuardedResolver`] (no private, link-local or
//! other special-use ranges). Loopback is allowed only for the host names in `loopback_hosts`
//! (local testing, or the upstream the operator named on the command line), over http too.

use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_TYPE};
use url::{Host, Url};

use crate::oauth::cimd::fetch::innermost_cause;
use crate::oauth::cimd::resolver::{GuardedResolver, special_use};

const MAX_BODY_BYTES: usize = 256 * 1024;
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct GuardedHttp {
    client: reqwest::Client,
    loopback_hosts: Vec<String>,
}

/// A fetched JSON answer.
pub struct JsonAnswer {
    pub status: u16,
    pub body: serde_json::Value,
}

impl GuardedHttp {
    pub fn new(loopback_hosts: Vec<String>) -> Result<Self, String> {
        let loopback_hosts: Vec<String> = loopback_hosts.into_iter().map(|h| h.to_ascii_lowercase()).collect();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(Duration::from_secs(5))
            .timeout(TIMEOUT)
            .dns_resolver(GuardedResolver::new(loopback_hosts.clone()))
            .user_agent(concat!("Gatehouse/", env!("CARGO_PKG_VERSION"), " (upstream OAuth client)"))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(GuardedHttp { client, loopback_hosts })
    }

    /// The client, for token requests (call [`GuardedHttp::check`] on the URL first).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Whether we may connect to `url` at all.
    pub fn check(&self, url: &str) -> Result<Url, String> {
        let parsed = Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
        let host = parsed.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
        let allowed_loopback =
            self.loopback_hosts.iter().any(|h| h.trim_start_matches('[').trim_end_matches(']') == host);
        match parsed.scheme() {
            "https" => {}
            "http" if allowed_loopback => {}
            other => return Err(format!("`{url}`: only https URLs are fetched (got {other})")),
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(format!("`{url}` carries credentials"));
        }
        // IP literals never reach the resolver: check them here.
        let ip = match parsed.host() {
            Some(Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
            Some(Host::Domain(_)) => None,
            None => return Err(format!("`{url}` has no host")),
        };
        if let Some(ip) = ip
            && let Some(range) = special_use(ip)
            && !(allowed_loopback && ip.is_loopback())
        {
            return Err(format!("`{url}` points at a {range} address"));
        }
        Ok(parsed)
    }

    /// GETs a JSON document.
    pub async fn get_json(&self, url: &str) -> Result<JsonAnswer, String> {
        let parsed = self.check(url)?;
        let res = self.client.get(parsed).header(ACCEPT, "application/json").send().await.map_err(describe)?;
        read_json(res).await
    }

    /// POSTs a JSON body and reads a JSON answer.
    pub async fn post_json(&self, url: &str, body: &serde_json::Value) -> Result<JsonAnswer, String> {
        let parsed = self.check(url)?;
        let res = self
            .client
            .post(parsed)
            .header(ACCEPT, "application/json")
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(describe)?;
        read_json(res).await
    }

    /// Sends an unauthenticated MCP `initialize` to `url`; returns its `WWW-Authenticate`
    /// when it answers 401 (the server wants a token), else `None`.
    pub async fn challenge_of(&self, url: &str) -> Result<Option<String>, String> {
        let parsed = self.check(url)?;
        let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "gatehouse", "version": env!("CARGO_PKG_VERSION")}}});
        let res = self
            .client
            .post(parsed)
            .header(ACCEPT, "application/json, text/event-stream")
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(describe)?;
        if res.status() != reqwest::StatusCode::UNAUTHORIZED {
            return Ok(None);
        }
        Ok(Some(
            res.headers()
                .get(reqwest::header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned(),
        ))
    }

    /// GETs `url` without following its redirect; returns the status and `Location`.
    pub async fn get_redirect(&self, url: &str) -> Result<(u16, Option<String>), String> {
        let parsed = self.check(url)?;
        let res = self.client.get(parsed).send().await.map_err(describe)?;
        let location = res.headers().get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
        Ok((res.status().as_u16(), location))
    }
}

async fn read_json(mut res: reqwest::Response) -> Result<JsonAnswer, String> {
    let status = res.status().as_u16();
    let mut bytes = Vec::new();
    while let Some(chunk) = res.chunk().await.map_err(describe)? {
        if bytes.len() + chunk.len() > MAX_BODY_BYTES {
            return Err("the answer is too large".into());
        }
        bytes.extend_from_slice(&chunk);
    }
    let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    Ok(JsonAnswer { status, body })
}

fn describe(err: reqwest::Error) -> String {
    if err.is_timeout() {
        return "no answer in time".into();
    }
    innermost_cause(&err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_and_named_loopback() {
        let g = GuardedHttp::new(vec!["localhost".into()]).unwrap();
        assert!(g.check("https://as.example.com/.well-known/x").is_ok());
        assert!(g.check("http://as.example.com/x").is_err());
        assert!(g.check("http://localhost:3000/x").is_ok());
        assert!(g.check("https://10.0.0.1/x").is_err());
        assert!(g.check("https://169.254.169.254/latest").is_err());
        assert!(g.check("https://127.0.0.1/x").is_err(), "loopback literal not named");
        assert!(g.check("https://user:pw@as.example.com/").is_err());
        assert!(g.check("file:///etc/passwd").is_err());
        let g = GuardedHttp::new(vec!["127.0.0.1".into()]).unwrap();
        assert!(g.check("http://127.0.0.1:9/x").is_ok());
    }
}
