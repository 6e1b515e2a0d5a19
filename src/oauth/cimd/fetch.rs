//! Fetching a metadata document: one GET, no redirects followed, no proxy, bounded in time and
//! size (5 KB, draft-ietf-oauth-client-id-metadata-document §8.7), connecting only to addresses
//! the [`GuardedResolver`] accepts, and only `200 OK` with a JSON body counts (§5).

use std::time::Duration;

use reqwest::header::{ACCEPT, AGE, CACHE_CONTROL, CONTENT_TYPE};
use reqwest::redirect::Policy;
use url::Url;

use super::CimdError;
use super::resolver::{AddressRefused, GuardedResolver};
use crate::config::CimdSettings;

/// Largest document read (the draft's recommended 5 kilobytes).
pub const MAX_DOCUMENT_BYTES: usize = 5 * 1024;

/// A fetched document and the headers that say how long it may be cached.
#[derive(Debug)]
pub struct Fetched {
    pub body: Vec<u8>,
    pub cache_control: Option<String>,
    pub age: Option<String>,
}

pub struct Fetcher {
    client: reqwest::Client,
    timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum FetcherError {
    #[error("cannot read cimd_ca_file {0}: {1}")]
    CaFile(String, String),
    #[error("cannot build the HTTP client for metadata documents: {0}")]
    Client(String),
}

impl Fetcher {
    pub fn new(settings: &CimdSettings) -> Result<Self, FetcherError> {
        let timeout = Duration::from_secs(settings.fetch_timeout_secs);
        let mut builder = reqwest::Client::builder()
            .redirect(Policy::none())
            // A proxy from the environment would connect on our behalf, past the resolver.
            .no_proxy()
            .connect_timeout(timeout.min(Duration::from_secs(3)))
            .timeout(timeout)
            .dns_resolver(GuardedResolver::new(settings.allow_loopback_hosts.clone()))
            .user_agent(concat!("Gatehouse/", env!("CARGO_PKG_VERSION"), " (client metadata document fetch)"));
        if let Some(path) = &settings.ca_file {
            let shown = path.display().to_string();
            let pem = std::fs::read(path).map_err(|e| FetcherError::CaFile(shown.clone(), e.to_string()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| FetcherError::CaFile(shown.clone(), e.to_string()))?;
            if certs.is_empty() {
                return Err(FetcherError::CaFile(shown, "no PEM certificates in it".into()));
            }
            builder = builder.tls_certs_merge(certs);
        }
        let client = builder.build().map_err(|e| FetcherError::Client(e.to_string()))?;
        Ok(Fetcher { client, timeout })
    }

    /// GETs `url` (already checked by [`super::client_url::check`]).
    pub async fn get(&self, url: &Url) -> Result<Fetched, CimdError> {
        // The client's own timeout covers the exchange; this one also bounds the body reads.
        match tokio::time::timeout(self.timeout, self.get_inner(url)).await {
            Ok(result) => result,
            Err(_) => Err(CimdError::Timeout),
        }
    }

    async fn get_inner(&self, url: &Url) -> Result<Fetched, CimdError> {
        let mut res =
            self.client.get(url.clone()).header(ACCEPT, "application/json").send().await.map_err(network_error)?;
        let status = res.status();
        if status.is_redirection() {
            return Err(CimdError::Redirect(status.as_u16()));
        }
        if status != reqwest::StatusCode::OK {
            return Err(CimdError::HttpStatus(status.as_u16()));
        }
        let header = |name| res.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let content_type = header(CONTENT_TYPE).unwrap_or_default();
        if !is_json(&content_type) {
            return Err(CimdError::NotJson(content_type.chars().take(60).collect()));
        }
        let (cache_control, age) = (header(CACHE_CONTROL), header(AGE));
        if res.content_length().is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64) {
            return Err(CimdError::TooLarge);
        }
        let mut body = Vec::with_capacity(1024);
        while let Some(chunk) = res.chunk().await.map_err(network_error)? {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(CimdError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched { body, cache_control, age })
    }
}

/// `application/json`, or a more specific `application/...+json` (§4).
fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// What a failed exchange means for the person reading the error page.
fn network_error(err: reqwest::Error) -> CimdError {
    if err.is_timeout() {
        return CimdError::Timeout;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(e) = source {
        if let Some(refused) = e.downcast_ref::<AddressRefused>() {
            return CimdError::PrivateAddress(refused.to_string());
        }
        source = e.source();
    }
    CimdError::Unreachable(innermost_cause(&err))
}

/// A failed HTTP exchange's innermost cause (the refused connection, the TLS alert), which says
/// more than reqwest's own message; at most 200 characters, for an error page or a log line.
pub(crate) fn innermost_cause(err: &reqwest::Error) -> String {
    let mut cause = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        let message = e.to_string();
        if !message.is_empty() {
            cause = message;
        }
        source = e.source();
    }
    cause.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        assert!(is_json("application/json"));
        assert!(is_json("application/json; charset=utf-8"));
        assert!(is_json("Application/JSON"));
        assert!(is_json("application/oauth-client-metadata+json"));
        assert!(!is_json("text/html"));
        assert!(!is_json("text/plain"));
        assert!(!is_json(""));
        assert!(!is_json("application/jsonp"));
    }
}
