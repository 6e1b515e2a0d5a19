//! The issuer's signing keys (JWKS), cached in memory.
//!
//! - A token naming a `kid` we do not know triggers a refetch (the issuer rotated), at most
//!   once per `min_refetch` seconds, so a flood of made-up `kid`s cannot make us hammer the
//!   issuer.
//! - A refetch replaces the whole set: a key the issuer removed (retired) stops verifying as
//!   soon as we have seen the new set.
//! - Keys are also refreshed after `max_age` (or the JWKS response's `Cache-Control: max-age`,
//!   kept within bounds). If a refresh fails the old keys stay in use: an issuer's brief outage
//!   does not lock every client out.

use std::collections::HashMap;
use std::future::Future;
use std::str::FromStr;
use std::sync::{Arc, RwLock};

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

/// One verification key.
#[derive(Clone)]
pub struct Key {
    pub decoding: DecodingKey,
    /// The `alg` the JWK pins, if any.
    pub alg: Option<Algorithm>,
}

/// Keys by `kid`, plus those without one.
#[derive(Clone, Default)]
pub struct KeySet {
    by_kid: HashMap<String, Key>,
    unnamed: Vec<Key>,
}

impl KeySet {
    /// Parses a JWKS document, skipping what cannot verify signatures: encryption keys,
    /// symmetric (`oct`) keys and keys we cannot read.
    pub fn from_jwks(doc: &Value) -> Self {
        let mut set = KeySet::default();
        let Some(keys) = doc.get("keys").and_then(Value::as_array) else {
            return set;
        };
        for raw in keys.iter().take(100) {
            let Ok(jwk) = serde_json::from_value::<Jwk>(raw.clone()) else {
                continue;
            };
            if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption))
                || matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_))
            {
                continue;
            }
            let alg = match jwk.common.key_algorithm {
                Some(ka) => match Algorithm::from_str(&format!("{ka:?}")) {
                    Ok(alg) => Some(alg),
                    Err(_) => continue, // an encryption algorithm
                },
                None => None,
            };
            let Ok(decoding) = DecodingKey::from_jwk(&jwk) else {
                continue;
            };
            let key = Key { decoding, alg };
            match jwk.common.key_id {
                Some(kid) => {
                    set.by_kid.insert(kid, key);
                }
                None => set.unnamed.push(key),
            }
        }
        set
    }

    pub fn len(&self) -> usize {
        self.by_kid.len() + self.unnamed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The key for `kid`; a token without a `kid` is only accepted when the set has exactly one key.
    fn find(&self, kid: Option<&str>) -> Option<Key> {
        match kid {
            Some(kid) => self.by_kid.get(kid).cloned(),
            None if self.len() == 1 => self.by_kid.values().chain(self.unnamed.iter()).next().cloned(),
            None => None,
        }
    }
}

/// A JWKS fetch: the document and how long the issuer says it may be cached.
pub struct Fetched {
    pub jwks: Value,
    pub max_age: Option<i64>,
}

/// Where keys come from (the issuer over HTTP; a fake in tests).
pub trait FetchKeys: Send + Sync {
    fn fetch(&self) -> impl Future<Output = Result<Fetched, String>> + Send;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// No key with this `kid`, even after a refetch (or refetching was rate-limited).
    UnknownKey,
    /// No keys at all: the issuer could not be reached.
    Unavailable(String),
}

#[derive(Default)]
struct Cached {
    keys: Arc<KeySet>,
    fetched_at: Option<i64>,
    max_age: i64,
    last_attempt: Option<i64>,
}

pub struct JwksCache<F> {
    fetcher: F,
    min_refetch: i64,
    max_age: i64,
    cached: RwLock<Cached>,
    refresh: tokio::sync::Mutex<()>,
}

impl<F: FetchKeys> JwksCache<F> {
    pub fn new(fetcher: F, min_refetch: i64, max_age: i64) -> Self {
        JwksCache {
            fetcher,
            min_refetch: min_refetch.max(0),
            max_age: max_age.max(min_refetch),
            cached: RwLock::new(Cached::default()),
            refresh: tokio::sync::Mutex::new(()),
        }
    }

    fn snapshot(&self) -> (Arc<KeySet>, Option<i64>, i64, Option<i64>) {
        let c = self.cached.read().unwrap_or_else(|p| p.into_inner());
        (c.keys.clone(), c.fetched_at, c.max_age, c.last_attempt)
    }

    /// The key that should verify a token with this `kid`, at time `now`.
    pub async fn key(&self, kid: Option<&str>, now: i64) -> Result<Key, KeyError> {
        let (keys, fetched_at, max_age, last_attempt) = self.snapshot();
        let fresh = fetched_at.is_some_and(|t| now - t < max_age);
        let found = keys.find(kid);
        if let (true, Some(key)) = (fresh, &found) {
            return Ok(key.clone());
        }
        let may_fetch = last_attempt.is_none_or(|t| now - t >= self.min_refetch);
        if !may_fetch {
            return found.ok_or_else(|| self.missing(fetched_at));
        }
        let _one_at_a_time = self.refresh.lock().await;
        // Another request may have refetched while we waited.
        let (keys, fetched_at, _, attempt_now) = self.snapshot();
        if attempt_now != last_attempt {
            return keys.find(kid).ok_or_else(|| self.missing(fetched_at));
        }
        self.cached.write().unwrap_or_else(|p| p.into_inner()).last_attempt = Some(now);
        match self.fetcher.fetch().await {
            Ok(fetched) => {
                let set = Arc::new(KeySet::from_jwks(&fetched.jwks));
                let age = fetched.max_age.unwrap_or(self.max_age).clamp(self.min_refetch, self.max_age);
                let mut c = self.cached.write().unwrap_or_else(|p| p.into_inner());
                c.keys = set.clone();
                c.fetched_at = Some(now);
                c.max_age = age;
                drop(c);
                set.find(kid).ok_or(KeyError::UnknownKey)
            }
            Err(why) => {
                tracing::warn!(error = %why, "cannot fetch the issuer's signing keys; keeping the ones we have");
                match keys.find(kid) {
                    Some(key) => Ok(key),
                    None if fetched_at.is_none() => Err(KeyError::Unavailable(why)),
                    None => Err(KeyError::UnknownKey),
                }
            }
        }
    }

    fn missing(&self, fetched_at: Option<i64>) -> KeyError {
        match fetched_at {
            Some(_) => KeyError::UnknownKey,
            None => KeyError::Unavailable("the issuer's signing keys could not be fetched yet".into()),
        }
    }
}

/// Reads `Cache-Control: max-age=N`.
pub fn max_age(headers: &reqwest::header::HeaderMap) -> Option<i64> {
    let value = headers.get(reqwest::header::CACHE_CONTROL)?.to_str().ok()?;
    value.split(',').find_map(|d| d.trim().strip_prefix("max-age=")?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Two P-256 public keys (x, y), from RFC 7515 A.3 and RFC 7520 3.1-ish test vectors.
    const X1: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
    const Y1: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";
    const X2: &str = "MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4";
    const Y2: &str = "4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM";

    fn jwk(kid: &str, x: &str, y: &str) -> Value {
        serde_json::json!({"kty": "EC", "crv": "P-256", "kid": kid, "x": x, "y": y, "alg": "ES256", "use": "sig"})
    }

    struct Fake {
        served: Mutex<Value>,
        calls: AtomicUsize,
        fail: Mutex<bool>,
    }

    impl FetchKeys for Arc<Fake> {
        async fn fetch(&self) -> Result<Fetched, String> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if *self.fail.lock().unwrap() {
                return Err("down".into());
            }
            Ok(Fetched { jwks: self.served.lock().unwrap().clone(), max_age: None })
        }
    }

    fn fake(keys: Vec<Value>) -> Arc<Fake> {
        Arc::new(Fake {
            served: Mutex::new(serde_json::json!({ "keys": keys })),
            calls: AtomicUsize::new(0),
            fail: Mutex::new(false),
        })
    }

    #[test]
    fn parsing_skips_what_cannot_verify() {
        let doc = serde_json::json!({"keys": [
            jwk("a", X1, Y1),
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"},
            {"kty": "EC", "kid": "broken"},
        ]});
        let set = KeySet::from_jwks(&doc);
        assert_eq!(set.len(), 1);
        assert!(set.find(Some("a")).is_some());
        assert!(set.find(None).is_some(), "one key: a token without kid may use it");
        assert!(set.find(Some("hmac")).is_none());
    }

    #[tokio::test]
    async fn unknown_kid_refetches_with_a_rate_limit() {
        let source = fake(vec![jwk("old", X1, Y1)]);
        let cache = JwksCache::new(source.clone(), 10, 3600);
        assert!(cache.key(Some("old"), 1000).await.is_ok());
        assert!(cache.key(Some("old"), 1001).await.is_ok());
        assert_eq!(source.calls.load(Ordering::SeqCst), 1, "known kid: served from memory");

        // Made-up kids: one refetch, then refused without asking the issuer again.
        assert_eq!(cache.key(Some("bogus"), 1011).await.err(), Some(KeyError::UnknownKey));
        assert_eq!(source.calls.load(Ordering::SeqCst), 2);
        for t in 1012..1020 {
            assert_eq!(cache.key(Some("bogus"), t).await.err(), Some(KeyError::UnknownKey));
        }
        assert_eq!(source.calls.load(Ordering::SeqCst), 2, "rate limited");

        // Rotation: the issuer publishes `new` and removes `old`.
        *source.served.lock().unwrap() = serde_json::json!({"keys": [jwk("new", X2, Y2)]});
        assert!(cache.key(Some("old"), 1021).await.is_ok(), "still cached: the new set was not seen yet");
        assert!(cache.key(Some("new"), 1022).await.is_ok(), "unknown kid after the limit: refetched");
        assert_eq!(source.calls.load(Ordering::SeqCst), 3);
        assert_eq!(cache.key(Some("old"), 1023).await.err(), Some(KeyError::UnknownKey), "retired key refused");
    }

    #[tokio::test]
    async fn stale_keys_refresh_and_survive_an_outage() {
        let source = fake(vec![jwk("a", X1, Y1)]);
        let cache = JwksCache::new(source.clone(), 10, 100);
        assert!(cache.key(Some("a"), 0).await.is_ok());
        *source.fail.lock().unwrap() = true;
        assert!(cache.key(Some("a"), 150).await.is_ok(), "issuer down: old keys keep working");
        assert_eq!(source.calls.load(Ordering::SeqCst), 2);
        *source.fail.lock().unwrap() = false;
        *source.served.lock().unwrap() = serde_json::json!({"keys": [jwk("b", X2, Y2)]});
        assert_eq!(cache.key(Some("a"), 165).await.err(), Some(KeyError::UnknownKey), "stale set refreshed");
        assert_eq!(source.calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn never_reached_is_unavailable() {
        let source = fake(vec![]);
        *source.fail.lock().unwrap() = true;
        let cache = JwksCache::new(source.clone(), 10, 100);
        assert!(matches!(cache.key(Some("a"), 0).await, Err(KeyError::Unavailable(_))));
        assert!(matches!(cache.key(Some("a"), 1).await, Err(KeyError::Unavailable(_))));
        assert_eq!(source.calls.load(Ordering::SeqCst), 1);
    }
}
