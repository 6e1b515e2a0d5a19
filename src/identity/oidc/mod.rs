//! Signing in through the organisation's OpenID Connect identity providers: a small relying
//! party on reqwest and jsonwebtoken (one HTTP client, one crypto stack).
//!
//! - [`provider`]: discovery and JWKS, cached, with key rotation;
//! - [`flow`]: the two routes (start, callback): code flow with PKCE, state and nonce;
//! - [`id_token`]: ID token validation;
//! - [`account`]: linking by (provider, subject), and memberships from group claims;
//! - [`error`]: every way a sign-in can fail, with its audit reason and page.

pub mod account;
pub mod error;
pub mod flow;
pub mod id_token;
pub mod provider;

use std::sync::Arc;

use crate::config::OidcSettings;
use provider::ProviderRuntime;

/// The configured identity providers, with their caches and the HTTP client they share.
pub struct OidcProviders {
    pub http: reqwest::Client,
    providers: Vec<Arc<ProviderRuntime>>,
}

impl OidcProviders {
    pub fn new(settings: &OidcSettings) -> Result<Self, String> {
        let providers = settings
            .providers
            .iter()
            .map(|p| Arc::new(ProviderRuntime::new(p.clone(), settings.allow_loopback_issuers)))
            .collect();
        Ok(OidcProviders { http: provider::http_client()?, providers })
    }

    pub fn get(&self, id: &str) -> Option<&ProviderRuntime> {
        self.providers.iter().find(|p| p.config.id == id).map(Arc::as_ref)
    }

    /// (id, display name) of each provider, in the order configured.
    pub fn buttons(&self) -> impl Iterator<Item = (&str, &str)> {
        self.providers.iter().map(|p| (p.config.id.as_str(), p.config.name.as_str()))
    }
}
