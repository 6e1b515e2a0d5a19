//! Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document-02, the MCP
//! 2025-11-25 and 2026-07-28 default): a `client_id` that is an https URL names a JSON document
//! describing the client, which this server fetches, validates and caches.
//!
//! - [`client_url`]: which URLs may be fetched (https, a path, no credentials, no IP literals, the
//!   operator's allow and deny lists), checked before any network traffic;
//! - [`resolver`]: the SSRF guard, refusing names that resolve to special-use addresses;
//! - [`fetch`]: one bounded GET (no redirects, no proxy, timeouts, 5 KB);
//! - [`document`]: the document's rules (client_id equal to its URL, required fields, redirect
//!   URIs under the registration rules, no secrets);
//! - [`cache`]: validated documents kept as their `Cache-Control` allows; errors never kept.
//!
//! A resolved client is written to `oauth_clients` (source `metadata_document`) once a person
//! is signed in to authorize it, because consents, grants and codes refer to clients by row.

pub mod cache;
pub mod client_url;
pub mod document;
pub mod fetch;
pub mod resolver;

use std::time::Duration;

use tokio::sync::Semaphore;

use crate::config::CimdSettings;
use crate::store::ClientRow;
use cache::DocumentCache;
use fetch::{Fetcher, FetcherError};

/// Documents fetched at the same time, at most (the rest wait, then give up).
const MAX_IN_FLIGHT: usize = 32;

/// Why a client ID URL cannot be used. Each says what is wrong in words a developer can act on.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CimdError {
    #[error("this server does not accept client metadata documents")]
    Disabled,
    #[error("the client ID URL cannot be used: {0}")]
    BadUrl(String),
    #[error("client IDs on {0} are refused by this server's operator")]
    HostDenied(String),
    #[error("this server accepts client IDs only on hosts its operator allowed, and {0} is not one of them")]
    HostNotAllowed(String),
    #[error("the client ID URL points into a private network: {0}")]
    PrivateAddress(String),
    #[error("the document could not be fetched: {0}")]
    Unreachable(String),
    #[error("fetching the document took too long")]
    Timeout,
    #[error("the document URL answered with a redirect (HTTP {0}); redirects are not followed")]
    Redirect(u16),
    #[error("the document URL answered HTTP {0} instead of 200")]
    HttpStatus(u16),
    #[error("the document is not JSON (Content-Type `{0}`)")]
    NotJson(String),
    #[error("the document is larger than 5 KB")]
    TooLarge,
    #[error("the document is malformed: {0}")]
    Malformed(String),
    #[error("the document's client_id (`{0}`) is not the URL it was fetched from")]
    ClientIdMismatch(String),
    #[error("the document is not acceptable: {0}")]
    Invalid(String),
    #[error("too many client metadata documents are being fetched right now; try again in a moment")]
    Busy,
}

impl CimdError {
    /// Whether trying again later may succeed without anyone changing anything.
    pub fn is_temporary(&self) -> bool {
        match self {
            CimdError::Busy => true,
            CimdError::Disabled
            | CimdError::BadUrl(_)
            | CimdError::HostDenied(_)
            | CimdError::HostNotAllowed(_)
            | CimdError::PrivateAddress(_)
            | CimdError::Unreachable(_)
            | CimdError::Timeout
            | CimdError::Redirect(_)
            | CimdError::HttpStatus(_)
            | CimdError::NotJson(_)
            | CimdError::TooLarge
            | CimdError::Malformed(_)
            | CimdError::ClientIdMismatch(_)
            | CimdError::Invalid(_) => false,
        }
    }
}

/// Fetches, validates and caches metadata documents. One per server, shared by all requests.
pub struct MetadataDocuments {
    settings: CimdSettings,
    fetcher: Fetcher,
    cache: DocumentCache,
    in_flight: Semaphore,
}

impl MetadataDocuments {
    pub fn new(settings: &CimdSettings) -> Result<Self, FetcherError> {
        Ok(MetadataDocuments {
            settings: settings.clone(),
            fetcher: Fetcher::new(settings)?,
            cache: DocumentCache::new(settings.cache_entries),
            in_flight: Semaphore::new(MAX_IN_FLIGHT),
        })
    }

    pub fn enabled(&self) -> bool {
        self.settings.enabled
    }

    /// The client a URL `client_id` names, from the cache or by fetching its document.
    pub async fn resolve(&self, client_id: &str, now: i64) -> Result<ClientRow, CimdError> {
        if !self.settings.enabled {
            return Err(CimdError::Disabled);
        }
        let url = client_url::check(client_id, &self.settings)?;
        if let Some(client) = self.cache.get(client_id, now) {
            return Ok(client);
        }
        let wait = Duration::from_secs(self.settings.fetch_timeout_secs);
        let _permit = match tokio::time::timeout(wait, self.in_flight.acquire()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) | Err(_) => return Err(CimdError::Busy),
        };
        let fetched = self.fetcher.get(&url).await.inspect_err(|e| log_refusal(client_id, e))?;
        let client =
            document::client_from_document(client_id, &fetched.body, now).inspect_err(|e| log_refusal(client_id, e))?;
        let freshness = cache::freshness(fetched.cache_control.as_deref(), fetched.age.as_deref());
        let ttl = cache::ttl(freshness, self.settings.cache_min_ttl, self.settings.cache_max_ttl);
        if let Some(ttl) = ttl {
            self.cache.insert(client_id, client.clone(), now + ttl, now);
        }
        tracing::info!(client_id, name = %client.client_name, cache_secs = ttl.unwrap_or(0), "client metadata document fetched");
        Ok(client)
    }

    /// Drops a cached document, so the next authorization fetches it again.
    pub fn forget(&self, client_id: &str) {
        self.cache.forget(client_id);
    }
}

fn log_refusal(client_id: &str, err: &CimdError) {
    tracing::warn!(client_id, error = %err, "client metadata document refused");
}
