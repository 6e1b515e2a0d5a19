//! Trusting an external authorization server (Auth0, Okta, Keycloak, Entra, oidc-provider…):
//! its JWT access tokens are verified with the keys its discovery document points to, and
//! `iss`, `aud`, `exp` and `nbf` are checked; opaque tokens go to its RFC 7662 introspection.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use crate::challenge::Refusal;
use crate::clock::{Clock, SystemClock};
use crate::discovery;
use crate::introspect::{IntrospectionConfig, Introspector};
use crate::jwks::{FetchKeys, Fetched, JwksCache, KeyError};
use crate::validator::{TokenValidator, VerifiedToken};

/// Asymmetric algorithms only: a symmetric one would let anyone holding the "public" key sign.
pub const DEFAULT_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// How the issuer's scopes (or roles) become this resource's scopes. Empty: the issuer's
/// `scope`/`scp` values are taken as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeMap {
    entries: Vec<(String, Vec<String>)>,
}

impl ScopeMap {
    /// Parses `provider-value=resource-scope [resource-scope…]` entries.
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Self, IssuerError> {
        let mut map = ScopeMap::default();
        for entry in entries {
            let (from, to) = entry
                .rsplit_once('=')
                .filter(|(from, to)| !from.trim().is_empty() && !to.trim().is_empty())
                .ok_or_else(|| {
                    IssuerError::BadScopeMap(format!(
                        "`{entry}` is not provider-scope=resource-scope (for example `api://mcp/tools.call=mcp:tools`)"
                    ))
                })?;
            map.entries.push((from.trim().to_owned(), to.split_whitespace().map(str::to_owned).collect()));
        }
        Ok(map)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries as written, for storing and showing.
    pub fn to_entries(&self) -> Vec<String> {
        self.entries.iter().map(|(from, to)| format!("{from}={}", to.join(" "))).collect()
    }

    /// The resource scopes granted by the claims `scope` (space-separated), `scp` (string or
    /// array, Okta and Entra) and `roles` (Entra app roles; only through the map).
    pub fn resource_scopes(&self, claims: &Map<String, Value>) -> BTreeSet<String> {
        let mut provider: BTreeSet<&str> = BTreeSet::new();
        for name in ["scope", "scp"] {
            match claims.get(name) {
                Some(Value::String(s)) => provider.extend(s.split_whitespace()),
                Some(Value::Array(items)) => provider.extend(items.iter().filter_map(Value::as_str)),
                _ => {}
            }
        }
        if self.entries.is_empty() {
            return provider.into_iter().map(str::to_owned).collect();
        }
        if let Some(Value::Array(roles)) = claims.get("roles") {
            provider.extend(roles.iter().filter_map(Value::as_str));
        }
        self.entries
            .iter()
            .filter(|(from, _)| provider.contains(from.as_str()))
            .flat_map(|(_, to)| to.iter().cloned())
            .collect()
    }
}

/// What to trust and how strictly.
#[derive(Debug, Clone)]
pub struct IssuerConfig {
    /// Exactly the `iss` of its tokens and the `issuer` of its discovery document.
    pub issuer: String,
    /// Accepted `aud` values: the resource URL (RFC 8707), or what a provider that cannot do
    /// resource indicators puts there (an Auth0 API identifier, an Entra application ID URI).
    pub audiences: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    /// Seconds of clock difference tolerated on `exp` and `nbf`.
    pub leeway: i64,
    pub scope_map: ScopeMap,
    pub introspection: Option<IntrospectionConfig>,
    /// At most one JWKS refetch per this many seconds for unknown `kid`s.
    pub jwks_min_refetch: i64,
    /// Keys are refreshed after this many seconds even without an unknown `kid`.
    pub jwks_max_age: i64,
    /// Testing only: allow `http://` issuers on loopback (127.0.0.1, [::1], localhost).
    pub allow_http_loopback: bool,
    pub timeout: Duration,
}

impl IssuerConfig {
    pub fn new(issuer: impl Into<String>, resource: impl Into<String>) -> Self {
        IssuerConfig {
            issuer: issuer.into(),
            audiences: vec![resource.into()],
            algorithms: DEFAULT_ALGORITHMS.to_vec(),
            leeway: 30,
            scope_map: ScopeMap::default(),
            introspection: None,
            jwks_min_refetch: 10,
            jwks_max_age: 900,
            allow_http_loopback: false,
            timeout: Duration::from_secs(5),
        }
    }

    /// Accept this `aud` instead of the resource URL.
    pub fn with_audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences = vec![audience.into()];
        self
    }

    pub fn with_scope_map(mut self, map: ScopeMap) -> Self {
        self.scope_map = map;
        self
    }

    pub fn with_introspection(mut self, introspection: IntrospectionConfig) -> Self {
        self.introspection = Some(introspection);
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssuerError {
    BadIssuer(String),
    BadScopeMap(String),
    Discovery(String),
    Http(String),
}

impl std::fmt::Display for IssuerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IssuerError::BadIssuer(s) => write!(f, "issuer: {s}"),
            IssuerError::BadScopeMap(s) => write!(f, "scope map: {s}"),
            IssuerError::Discovery(s) => write!(f, "discovery: {s}"),
            IssuerError::Http(s) => write!(f, "HTTP: {s}"),
        }
    }
}

impl std::error::Error for IssuerError {}

/// An issuer URL we may talk to: https, or http on loopback when testing allows it; no
/// query, fragment or credentials.
pub fn check_endpoint_url(url: &str, allow_http_loopback: bool) -> Result<url::Url, IssuerError> {
    let parsed = url::Url::parse(url).map_err(|_| IssuerError::BadIssuer(format!("`{url}` is not a URL")))?;
    let loopback = crate::origin::is_loopback(&parsed);
    match parsed.scheme() {
        "https" => {}
        "http" if loopback && allow_http_loopback => {}
        "http" if loopback => {
            return Err(IssuerError::BadIssuer(format!(
                "`{url}` is http: only https issuers are trusted (plain http on loopback needs the testing allowance)"
            )));
        }
        _ => return Err(IssuerError::BadIssuer(format!("`{url}` must be an https URL"))),
    }
    if parsed.query().is_some()
        || parsed.fragment().is_some()
        || !parsed.username().is_empty()
        || parsed.password().is_some()
    {
        return Err(IssuerError::BadIssuer(format!("`{url}` must not have a query, fragment or user name")));
    }
    Ok(parsed)
}

/// Keys over HTTP: discovery document → `jwks_uri` → JWKS.
pub struct HttpKeys {
    http: reqwest::Client,
    issuer: String,
    allow_http_loopback: bool,
}

impl FetchKeys for HttpKeys {
    async fn fetch(&self) -> Result<Fetched, String> {
        let meta = discovery::discover(&self.http, &self.issuer).await.map_err(|e| e.to_string())?;
        let jwks_uri = meta.jwks_uri.ok_or("the discovery document has no jwks_uri")?;
        check_endpoint_url(&jwks_uri, self.allow_http_loopback).map_err(|e| e.to_string())?;
        let res = self.http.get(&jwks_uri).send().await.map_err(|e| format!("{jwks_uri}: {e}"))?;
        if !res.status().is_success() {
            return Err(format!("{jwks_uri}: HTTP {}", res.status()));
        }
        let max_age = crate::jwks::max_age(res.headers());
        let jwks = discovery::read_json::<Value>(res).await.map_err(|e| format!("{jwks_uri}: not a JWKS ({e})"))?;
        Ok(Fetched { jwks, max_age })
    }
}

/// Validates the tokens of one external issuer. Cheap to clone (shared caches).
#[derive(Clone)]
pub struct IssuerValidator {
    inner: Arc<Inner>,
}

struct Inner {
    config: IssuerConfig,
    keys: JwksCache<HttpKeys>,
    introspector: Option<Introspector>,
    clock: Arc<dyn Clock>,
}

impl IssuerValidator {
    pub fn new(config: IssuerConfig) -> Result<Self, IssuerError> {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    pub fn with_clock(config: IssuerConfig, clock: Arc<dyn Clock>) -> Result<Self, IssuerError> {
        check_endpoint_url(&config.issuer, config.allow_http_loopback)?;
        if config.audiences.is_empty() {
            return Err(IssuerError::BadIssuer("at least one accepted audience is needed".into()));
        }
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("mcp-resource-guard/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| IssuerError::Http(e.to_string()))?;
        let fetcher = HttpKeys {
            http: http.clone(),
            issuer: config.issuer.clone(),
            allow_http_loopback: config.allow_http_loopback,
        };
        let keys = JwksCache::new(fetcher, config.jwks_min_refetch, config.jwks_max_age);
        let introspector = config.introspection.clone().map(|c| Introspector::new(c, http, config.allow_http_loopback));
        Ok(IssuerValidator { inner: Arc::new(Inner { config, keys, introspector, clock }) })
    }

    pub fn config(&self) -> &IssuerConfig {
        &self.inner.config
    }

    async fn jwt(&self, token: &str, now: i64) -> Result<VerifiedToken, Refusal> {
        let config = &self.inner.config;
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| Refusal::InvalidToken("the access token is not a readable JWT".into()))?;
        if !config.algorithms.contains(&header.alg) {
            return Err(Refusal::InvalidToken(format!("tokens signed with {:?} are not accepted", header.alg)));
        }
        let key = self.inner.keys.key(header.kid.as_deref(), now).await.map_err(|e| match e {
            KeyError::UnknownKey => Refusal::InvalidToken(
                "the token is signed with a key its issuer does not publish (any more); authorize again".into(),
            ),
            KeyError::Unavailable(why) => {
                tracing::warn!(issuer = %config.issuer, error = %why, "issuer keys unavailable");
                Refusal::Unavailable("the token's issuer cannot be reached to check it; retry shortly".into())
            }
        })?;
        if key.alg.is_some_and(|alg| alg != header.alg) {
            return Err(Refusal::InvalidToken("the token's algorithm does not match its key".into()));
        }
        let mut validation = Validation::new(header.alg);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding, &validation).map_err(|e| {
            Refusal::InvalidToken(match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => "the token's signature does not verify".into(),
                _ => "the access token is not a readable JWT".into(),
            })
        })?;
        check_claims(config, data.claims, now, true)
    }
}

/// `iss`, `aud`, `exp`, `nbf` and the scope mapping, for a JWT's claims or an introspection
/// answer (which may leave out `iss`: it came from the issuer itself).
pub(crate) fn check_claims(
    config: &IssuerConfig,
    claims: Map<String, Value>,
    now: i64,
    iss_required: bool,
) -> Result<VerifiedToken, Refusal> {
    match claims.get("iss").and_then(Value::as_str) {
        Some(iss) if iss == config.issuer => {}
        None if !iss_required => {}
        Some(other) => {
            return Err(Refusal::InvalidToken(format!(
                "this token was issued by `{}`, not by the issuer this resource trusts ({})",
                other.chars().take(100).collect::<String>(),
                config.issuer
            )));
        }
        None => return Err(Refusal::InvalidToken("the token names no issuer".into())),
    }
    let exp = claims.get("exp").and_then(Value::as_i64);
    let expires_at = match exp {
        Some(exp) if exp + config.leeway <= now => {
            return Err(Refusal::InvalidToken("the access token has expired; refresh it".into()));
        }
        Some(exp) => exp,
        None if iss_required => return Err(Refusal::InvalidToken("the token has no expiry (exp)".into())),
        None => now,
    };
    if claims.get("nbf").and_then(Value::as_i64).is_some_and(|nbf| nbf - config.leeway > now) {
        return Err(Refusal::InvalidToken("the access token is not valid yet".into()));
    }
    let audience_ok = match claims.get("aud") {
        Some(Value::String(aud)) => config.audiences.iter().any(|a| a == aud),
        Some(Value::Array(auds)) => {
            auds.iter().filter_map(Value::as_str).any(|aud| config.audiences.iter().any(|a| a == aud))
        }
        _ => false,
    };
    if !audience_ok {
        return Err(Refusal::InvalidToken(
            "audience does not match: this token was issued for another resource; authorize again".into(),
        ));
    }
    let subject = claims.get("sub").and_then(Value::as_str).unwrap_or_default().to_owned();
    let client_id = ["client_id", "azp", "cid"]
        .iter()
        .find_map(|name| claims.get(*name).and_then(Value::as_str))
        .map(str::to_owned);
    Ok(VerifiedToken {
        issuer: config.issuer.clone(),
        subject,
        client_id,
        scopes: config.scope_map.resource_scopes(&claims),
        expires_at,
        claims,
    })
}

/// A JWS compact serialization: three base64url parts.
fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3
}

impl TokenValidator for IssuerValidator {
    type Verified = VerifiedToken;

    async fn validate(&self, token: &str) -> Result<VerifiedToken, Refusal> {
        let now = self.inner.clock.now();
        match (&self.inner.introspector, looks_like_jwt(token)) {
            (_, true) => self.jwt(token, now).await,
            (Some(introspector), false) => introspector.check(&self.inner.config, token, now).await,
            (None, false) => Err(Refusal::InvalidToken("the access token is not a JWT from the trusted issuer".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config() -> IssuerConfig {
        IssuerConfig::new("https://login.example.com/", "https://mcp.example.com/mcp")
    }

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn refusal(r: Result<VerifiedToken, Refusal>) -> String {
        match r {
            Err(Refusal::InvalidToken(d)) => d,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn claim_checks() {
        let c = config();
        let good = json!({"iss": "https://login.example.com/", "aud": ["other", "https://mcp.example.com/mcp"],
            "sub": "alice", "azp": "app", "exp": 1100, "nbf": 990, "scope": "mcp:read mcp:tools openid"});
        let v = check_claims(&c, claims(good.clone()), 1000, true).unwrap();
        assert_eq!(v.subject, "alice");
        assert_eq!(v.client_id.as_deref(), Some("app"));
        assert!(v.has_scope("mcp:tools") && v.has_scope("mcp:read") && !v.has_scope("mcp:resources"));

        let mut t = good.clone();
        t["iss"] = json!("https://evil.example.com/");
        assert!(refusal(check_claims(&c, claims(t), 1000, true)).contains("not by the issuer"));
        let mut t = good.clone();
        t["aud"] = json!("https://other.example.com/mcp");
        assert!(refusal(check_claims(&c, claims(t), 1000, true)).starts_with("audience does not match"));
        assert!(refusal(check_claims(&c, claims(good.clone()), 1130, true)).contains("expired"));
        assert!(check_claims(&c, claims(good.clone()), 1129, true).is_ok(), "within the leeway");
        assert!(refusal(check_claims(&c, claims(good.clone()), 959, true)).contains("not valid yet"));
        let mut t = good.clone();
        t.as_object_mut().unwrap().remove("exp");
        assert!(refusal(check_claims(&c, claims(t), 1000, true)).contains("no expiry"));
        let mut t = good.clone();
        t.as_object_mut().unwrap().remove("iss");
        assert!(check_claims(&c, claims(t.clone()), 1000, true).is_err());
        assert!(check_claims(&c, claims(t), 1000, false).is_ok(), "introspection answers may omit iss");

        // A provider that cannot do RFC 8707: a configured audience instead.
        let auth0 = config().with_audience("https://api.example.com");
        let mut t = good.clone();
        t["aud"] = json!(["https://api.example.com", "https://tenant.auth0.com/userinfo"]);
        assert!(check_claims(&auth0, claims(t), 1000, true).is_ok());
        assert!(check_claims(&auth0, claims(good), 1000, true).is_err());
    }

    #[test]
    fn scope_mapping() {
        let map = ScopeMap::parse(["api://mcp/read=mcp:read", "Tools.Call=mcp:tools mcp:read"]).unwrap();
        let got = map.resource_scopes(&claims(json!({"scp": "api://mcp/read openid"})));
        assert_eq!(got.into_iter().collect::<Vec<_>>(), ["mcp:read"]);
        let got = map.resource_scopes(&claims(json!({"roles": ["Tools.Call"], "scope": "mcp:resources"})));
        assert_eq!(got.into_iter().collect::<Vec<_>>(), ["mcp:read", "mcp:tools"], "unmapped values grant nothing");
        let passthrough = ScopeMap::default().resource_scopes(&claims(json!({"scp": ["mcp:read", "x"]})));
        assert_eq!(passthrough.into_iter().collect::<Vec<_>>(), ["mcp:read", "x"]);
        assert!(ScopeMap::parse(["nothing"]).is_err());
        assert!(ScopeMap::parse(["=mcp:read"]).is_err());
        assert_eq!(map.to_entries(), ["api://mcp/read=mcp:read", "Tools.Call=mcp:tools mcp:read"]);
    }

    #[test]
    fn issuer_urls() {
        assert!(check_endpoint_url("https://login.example.com/", false).is_ok());
        assert!(check_endpoint_url("http://login.example.com/", true).is_err());
        assert!(check_endpoint_url("http://127.0.0.1:9000", false).is_err());
        assert!(check_endpoint_url("http://127.0.0.1:9000", true).is_ok());
        assert!(check_endpoint_url("https://login.example.com/?x=1", false).is_err());
        assert!(check_endpoint_url("https://user@login.example.com/", false).is_err());
        assert!(check_endpoint_url("ftp://login.example.com/", false).is_err());
    }
}
