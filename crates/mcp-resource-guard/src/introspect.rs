//! RFC 7662 token introspection for opaque access tokens, with a short in-memory cache
//! (keyed by the token's SHA-256, never the token itself) so that a busy client costs the
//! issuer one call per token per `cache_ttl`, not one per request.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{Map, Value};

use crate::challenge::Refusal;
use crate::issuer::{IssuerConfig, check_claims, check_endpoint_url};
use crate::validator::VerifiedToken;

/// Most answers kept; when full, expired ones go first, then everything.
const MAX_ENTRIES: usize = 10_000;

#[derive(Clone)]
pub struct IntrospectionConfig {
    /// This resource server's own client at the issuer.
    pub client_id: String,
    pub client_secret: String,
    /// Defaults to the discovery document's `introspection_endpoint`.
    pub endpoint: Option<String>,
    /// Seconds an answer is reused (never beyond the token's `exp`).
    pub cache_ttl: i64,
}

impl std::fmt::Debug for IntrospectionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntrospectionConfig")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("endpoint", &self.endpoint)
            .field("cache_ttl", &self.cache_ttl)
            .finish()
    }
}

/// An answer (active or not) and until when it may be reused.
type CachedAnswer = (Result<VerifiedToken, Refusal>, i64);

pub(crate) struct Introspector {
    config: IntrospectionConfig,
    http: reqwest::Client,
    allow_http_loopback: bool,
    endpoint: tokio::sync::OnceCell<String>,
    cache: Mutex<HashMap<[u8; 32], CachedAnswer>>,
}

fn digest(token: &str) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

impl Introspector {
    pub(crate) fn new(config: IntrospectionConfig, http: reqwest::Client, allow_http_loopback: bool) -> Self {
        Introspector {
            config,
            http,
            allow_http_loopback,
            endpoint: tokio::sync::OnceCell::new(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    async fn endpoint(&self, issuer: &str) -> Result<&str, Refusal> {
        let unavailable = |why: String| {
            tracing::warn!(issuer, error = %why, "no introspection endpoint");
            Refusal::Unavailable("the token's issuer cannot be reached to check it; retry shortly".into())
        };
        self.endpoint
            .get_or_try_init(|| async {
                let url = match &self.config.endpoint {
                    Some(url) => url.clone(),
                    None => crate::discovery::discover(&self.http, issuer)
                        .await
                        .map_err(|e| e.to_string())?
                        .introspection_endpoint
                        .ok_or_else(|| "the discovery document has no introspection_endpoint".to_owned())?,
                };
                check_endpoint_url(&url, self.allow_http_loopback).map_err(|e| e.to_string())?;
                Ok(url)
            })
            .await
            .map(String::as_str)
            .map_err(unavailable)
    }

    pub(crate) async fn check(&self, config: &IssuerConfig, token: &str, now: i64) -> Result<VerifiedToken, Refusal> {
        let key = digest(token);
        if let Some((answer, until)) = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(&key)
            && *until > now
        {
            return answer.clone();
        }
        let endpoint = self.endpoint(&config.issuer).await?;
        let res = self
            .http
            .post(endpoint)
            .basic_auth(&self.config.client_id, Some(&self.config.client_secret))
            .form(&[("token", token), ("token_type_hint", "access_token")])
            .send()
            .await;
        let body = match res {
            Ok(res) if res.status().is_success() => crate::discovery::read_json::<Map<String, Value>>(res).await.ok(),
            Ok(res) => {
                tracing::warn!(status = %res.status(), "introspection refused our request (check the client id and secret)");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "introspection failed");
                None
            }
        };
        let Some(body) = body else {
            return Err(Refusal::Unavailable("the token's issuer cannot be reached to check it; retry shortly".into()));
        };
        let answer = if body.get("active").and_then(Value::as_bool) == Some(true) {
            check_claims(config, body, now, false)
        } else {
            Err(Refusal::InvalidToken("the access token is not active (expired or revoked); authorize again".into()))
        };
        let until = match &answer {
            Ok(v) => (now + self.config.cache_ttl).min(v.expires_at.max(now)),
            Err(_) => now + self.config.cache_ttl,
        };
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= MAX_ENTRIES {
            cache.retain(|_, (_, until)| *until > now);
            if cache.len() >= MAX_ENTRIES {
                cache.clear();
            }
        }
        if until > now {
            cache.insert(key, (answer.clone(), until));
        }
        answer
    }
}
