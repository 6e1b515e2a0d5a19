//! One identity provider at run time: its discovery document and JWKS, fetched on first use and
//! cached; the JWKS is fetched again when a token names a key we do not have (the provider
//! rotated its keys), at most once per [`JWKS_REFETCH_SECS`], so forged `kid`s cannot make us
//! hammer the provider.

use std::time::Duration;

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::Mutex;
use url::Url;

use super::error::OidcError;
use super::id_token::SUPPORTED_ALGS;
use crate::config::{OidcProvider, check_provider_url};

/// How long a discovery document is trusted before it is fetched again.
pub const DISCOVERY_TTL_SECS: i64 = 3_600;
/// How long the JWKS is kept when no unknown key shows up.
pub const JWKS_TTL_SECS: i64 = 3_600;
/// The least time between two JWKS fetches.
pub const JWKS_REFETCH_SECS: i64 = 30;
/// Largest response read from a provider.
const MAX_RESPONSE_BYTES: usize = 256 * 1024;
const TIMEOUT: Duration = Duration::from_secs(10);

/// The parts of the discovery document (OpenID Connect Discovery §3) we use.
#[derive(Debug, Clone, Deserialize)]
pub struct Discovery {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    #[serde(default)]
    pub id_token_signing_alg_values_supported: Option<Vec<String>>,
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
}

impl Discovery {
    /// The algorithms we accept from this provider: asymmetric ones it says it uses (RS256
    /// when it says nothing, as Discovery §3 makes RS256 the default).
    pub fn allowed_algs(&self) -> Vec<Algorithm> {
        match &self.id_token_signing_alg_values_supported {
            Some(list) => {
                SUPPORTED_ALGS.iter().copied().filter(|a| list.iter().any(|n| *n == format!("{a:?}"))).collect()
            }
            None => vec![Algorithm::RS256],
        }
    }
}

struct Cached<T> {
    value: T,
    fetched_at: i64,
    /// The last fetch tried, successful or not: failures are not retried on every sign-in.
    attempted_at: i64,
}

/// After a failed refresh of a cached document, how long the cached copy is used before
/// the next try.
const RETRY_AFTER_FAILURE_SECS: i64 = 60;

/// The HTTP client for providers: no redirects (an endpoint that moves is a misconfiguration,
/// and a redirect could point anywhere), bounded time and size. Providers are chosen by the
/// operator, so private addresses are allowed (an in-house Keycloak).
pub fn http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .timeout(TIMEOUT)
        .user_agent(concat!("Gatehouse/", env!("CARGO_PKG_VERSION"), " (OpenID Connect sign-in)"))
        .build()
        .map_err(|e| e.to_string())
}

pub struct ProviderRuntime {
    pub config: OidcProvider,
    allow_loopback: bool,
    discovery: Mutex<Option<Cached<Discovery>>>,
    jwks: Mutex<Option<Cached<JwkSet>>>,
}

impl ProviderRuntime {
    pub fn new(config: OidcProvider, allow_loopback: bool) -> Self {
        ProviderRuntime { config, allow_loopback, discovery: Mutex::new(None), jwks: Mutex::new(None) }
    }

    /// The discovery document, cached; a stale copy is used while the provider cannot be reached.
    pub async fn discovery(&self, http: &reqwest::Client, now: i64) -> Result<Discovery, OidcError> {
        let mut cached = self.discovery.lock().await;
        if let Some(c) = cached.as_ref()
            && (now - c.fetched_at < DISCOVERY_TTL_SECS || now - c.attempted_at < RETRY_AFTER_FAILURE_SECS)
        {
            return Ok(c.value.clone());
        }
        match self.fetch_discovery(http).await {
            Ok(doc) => {
                *cached = Some(Cached { value: doc.clone(), fetched_at: now, attempted_at: now });
                Ok(doc)
            }
            Err(e) => match cached.as_mut() {
                Some(stale) => {
                    stale.attempted_at = now;
                    tracing::warn!(provider = %self.config.id, error = %e, "discovery refresh failed; using the cached document");
                    Ok(stale.value.clone())
                }
                None => Err(e),
            },
        }
    }

    async fn fetch_discovery(&self, http: &reqwest::Client) -> Result<Discovery, OidcError> {
        let url = format!("{}/.well-known/openid-configuration", self.config.issuer.trim_end_matches('/'));
        let body = get_json(http, &url).await?;
        let doc: Discovery = serde_json::from_value(body)
            .map_err(|e| OidcError::ProviderGarbage(format!("its discovery document is incomplete ({e})")))?;
        // Discovery §4.3: the document must name exactly the issuer we asked.
        if doc.issuer != self.config.issuer {
            return Err(OidcError::ProviderGarbage(format!(
                "its discovery document names the issuer `{}`, not `{}`",
                doc.issuer.chars().take(200).collect::<String>(),
                self.config.issuer
            )));
        }
        for (name, endpoint) in [
            ("authorization_endpoint", &doc.authorization_endpoint),
            ("token_endpoint", &doc.token_endpoint),
            ("jwks_uri", &doc.jwks_uri),
        ] {
            check_provider_url(endpoint, self.allow_loopback)
                .map_err(|why| OidcError::ProviderGarbage(format!("its {name} is unusable: {why}")))?;
        }
        Ok(doc)
    }

    /// The key that signed a token, fetching the JWKS again (rate limited) if it is not known.
    pub async fn key(
        &self,
        http: &reqwest::Client,
        jwks_uri: &str,
        kid: Option<&str>,
        alg: Algorithm,
        now: i64,
    ) -> Result<Option<DecodingKey>, OidcError> {
        let mut cached = self.jwks.lock().await;
        let fresh = cached.as_ref().is_some_and(|c| now - c.fetched_at < JWKS_TTL_SECS);
        if fresh && let Some(key) = cached.as_ref().and_then(|c| super::id_token::select_key(&c.value, kid, alg)) {
            return Ok(Some(key));
        }
        let may_fetch = cached.as_ref().is_none_or(|c| now - c.attempted_at >= JWKS_REFETCH_SECS);
        if may_fetch {
            match fetch_jwks(http, jwks_uri).await {
                Ok(set) => *cached = Some(Cached { value: set, fetched_at: now, attempted_at: now }),
                Err(e) => match cached.as_mut() {
                    None => return Err(e),
                    Some(c) => {
                        c.attempted_at = now;
                        tracing::warn!(provider = %self.config.id, error = %e, "JWKS refresh failed; using the cached keys");
                    }
                },
            }
        }
        Ok(cached.as_ref().and_then(|c| super::id_token::select_key(&c.value, kid, alg)))
    }
}

/// Keys are read one by one so one key of a type we do not know (an encryption key) does not
/// make the whole set unreadable.
async fn fetch_jwks(http: &reqwest::Client, url: &str) -> Result<JwkSet, OidcError> {
    let body = get_json(http, url).await?;
    let keys = body
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| OidcError::ProviderGarbage("its JWKS has no `keys`".into()))?;
    let keys: Vec<Jwk> = keys.iter().filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok()).collect();
    Ok(JwkSet { keys })
}

async fn get_json(http: &reqwest::Client, url: &str) -> Result<Value, OidcError> {
    let url = Url::parse(url).map_err(|e| OidcError::ProviderGarbage(format!("bad URL ({e})")))?;
    let res = http.get(url).header(ACCEPT, "application/json").send().await.map_err(unreachable)?;
    let status = res.status();
    if !status.is_success() {
        return Err(OidcError::ProviderUnavailable(format!("it answered HTTP {}", status.as_u16())));
    }
    let body = read_capped(res).await?;
    serde_json::from_slice(&body)
        .map_err(|_| OidcError::ProviderGarbage("it answered something that is not JSON".into()))
}

/// POSTs a form; returns the status and the JSON body (`Null` if it is not JSON).
pub async fn post_form(
    http: &reqwest::Client,
    url: &str,
    form: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> Result<(u16, Value), OidcError> {
    let url = Url::parse(url).map_err(|e| OidcError::ProviderGarbage(format!("bad URL ({e})")))?;
    let body: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
    let mut req = http
        .post(url)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(ACCEPT, "application/json")
        .body(body);
    if let Some((id, secret)) = basic {
        // RFC 6749 §2.3.1: both are form-encoded before going into the Basic credentials.
        let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        req = req.basic_auth(enc(id), Some(enc(secret)));
    }
    let res = req.send().await.map_err(unreachable)?;
    let status = res.status().as_u16();
    let body = read_capped(res).await?;
    Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

async fn read_capped(mut res: reqwest::Response) -> Result<Vec<u8>, OidcError> {
    if res.content_length().is_some_and(|n| n > MAX_RESPONSE_BYTES as u64) {
        return Err(OidcError::ProviderGarbage("its answer is too large".into()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = res.chunk().await.map_err(unreachable)? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(OidcError::ProviderGarbage("its answer is too large".into()));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn unreachable(err: reqwest::Error) -> OidcError {
    if err.is_timeout() {
        return OidcError::ProviderUnavailable("it did not answer in time".into());
    }
    if err.is_connect() {
        return OidcError::ProviderUnavailable("it cannot be reached".into());
    }
    OidcError::ProviderUnavailable("the connection to it failed".into())
}
