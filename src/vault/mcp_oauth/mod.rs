//! The gateway as an MCP OAuth client of an upstream MCP server that answers 401: discovery
//! ([`discovery`]), registration (pre-registered credentials, else a Client ID Metadata
//! Document when the server supports it and ours has an https URL, else Dynamic Client
//! Registration), the authorization request (PKCE S256, `state`, `resource` exactly as the
//! server published it, scope from the challenge, else the resource's `scopes_supported`,
//! else none), the callback checks (`state`, RFC 9207 `iss`) and the token request; plus the
//! `client_credentials` grant for machine access.
//!
//! A hand-written client on reqwest rather than rmcp's `AuthorizationManager`: the vault
//! needs the pieces separately (the person's browser goes to the authorization URL, the
//! callback arrives on another request, tokens are sealed in our own tables, requests go
//! through the SSRF guard) and control over the conformance details (exact `resource`,
//! issuer checks, step-up with the union of scopes, retry limits).

pub mod challenge;
pub mod discovery;
pub mod guard;

use serde_json::json;
use url::Url;

use self::discovery::Discovered;
use self::guard::GuardedHttp;
use super::credential::{AuthMethod, GrantKind, OAuthCredential};
use super::token_endpoint::{self, Grant, TokenResponse};
use crate::crypto::{constant_time_eq, random_bytes, sha256_b64url};

/// How we are known to an authorization server.
#[derive(Clone, PartialEq, Eq)]
pub struct Registration {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    pub private_key: Option<String>,
    pub auth_method: AuthMethod,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("auth_method", &self.auth_method)
            .finish_non_exhaustive()
    }
}

/// Credentials an operator registered with the upstream's authorization server beforehand.
#[derive(Clone, Default)]
pub struct Preregistered {
    pub client_id: String,
    pub client_secret: Option<String>,
    pub private_key: Option<String>,
    /// Force a token endpoint auth method (else chosen from the server's metadata).
    pub auth_method: Option<AuthMethod>,
}

/// Who we say we are when registering.
#[derive(Clone)]
pub struct ClientIdentity {
    pub client_name: String,
    pub redirect_uri: String,
    /// Our Client ID Metadata Document, used when the server supports CIMD (https only).
    pub metadata_url: Option<String>,
}

/// An authorization request in flight: what the callback must be checked against.
#[derive(Clone)]
pub struct Pending {
    pub authorization_url: String,
    pub state: String,
    pub verifier: String,
    pub redirect_uri: String,
    pub issuer: String,
    /// The server promised RFC 9207 `iss` in its responses.
    pub iss_required: bool,
    pub scope: Option<String>,
}

/// What the token endpoint is asked with (the registration plus this upstream's switches).
pub fn credential_for(
    discovered: &Discovered,
    registration: &Registration,
    grant: GrantKind,
    scope: Option<String>,
) -> OAuthCredential {
    OAuthCredential {
        grant,
        issuer: Some(discovered.server.issuer.clone()),
        authorization_endpoint: discovered.server.authorization_endpoint.clone(),
        token_endpoint: discovered.server.token_endpoint.clone().unwrap_or_default(),
        client_id: registration.client_id.clone(),
        client_secret: registration.client_secret.clone(),
        private_key: registration.private_key.clone(),
        auth_method: registration.auth_method,
        scope,
        resource: discovered.resource.clone(),
        audience: None,
    }
}

/// The scope to ask for: the challenge's, else the resource's `scopes_supported`, else none;
/// joined with `previous` (a step-up keeps what was granted). `offline_access` is added when
/// the server offers it, for a refresh token.
pub fn choose_scope(discovered: &Discovered, challenged: Option<&str>, previous: Option<&str>) -> Option<String> {
    fn add(scopes: &mut Vec<String>, s: &str) {
        for part in s.split_whitespace() {
            if !scopes.iter().any(|have| have == part) {
                scopes.push(part.to_owned());
            }
        }
    }
    let mut scopes: Vec<String> = Vec::new();
    if let Some(previous) = previous {
        add(&mut scopes, previous);
    }
    match (challenged, &discovered.resource_scopes) {
        (Some(challenged), _) => add(&mut scopes, challenged),
        (None, Some(supported)) => add(&mut scopes, &supported.join(" ")),
        (None, None) => {}
    }
    if scopes.is_empty() {
        return None;
    }
    if discovered.server.scopes_supported.as_ref().is_some_and(|s| s.iter().any(|x| x == "offline_access")) {
        add(&mut scopes, "offline_access");
    }
    Some(scopes.join(" "))
}

fn supports(list: &Option<Vec<String>>, method: &str) -> bool {
    list.as_ref().is_some_and(|l| l.iter().any(|m| m == method))
}

/// Picks how we are known to the server: pre-registered, CIMD, or DCR.
pub async fn register(
    http: &GuardedHttp,
    discovered: &Discovered,
    identity: &ClientIdentity,
    preregistered: Option<&Preregistered>,
    grant: GrantKind,
) -> Result<Registration, String> {
    let server = &discovered.server;
    let methods = &server.token_endpoint_auth_methods_supported;
    if let Some(pre) = preregistered {
        let auth_method = pre.auth_method.unwrap_or(match (&pre.private_key, &pre.client_secret) {
            (Some(_), _) => AuthMethod::PrivateKeyJwt,
            (None, Some(_)) if supports(methods, "client_secret_post") && !supports(methods, "client_secret_basic") => {
                AuthMethod::ClientSecretPost
            }
            (None, Some(_)) => AuthMethod::ClientSecretBasic,
            (None, None) => AuthMethod::None,
        });
        return Ok(Registration {
            issuer: server.issuer.clone(),
            client_id: pre.client_id.clone(),
            client_secret: pre.client_secret.clone(),
            private_key: pre.private_key.clone(),
            auth_method,
        });
    }
    if grant == GrantKind::AuthorizationCode
        && server.client_id_metadata_document_supported == Some(true)
        && let Some(url) = &identity.metadata_url
        && url.starts_with("https://")
    {
        return Ok(Registration {
            issuer: server.issuer.clone(),
            client_id: url.clone(),
            client_secret: None,
            private_key: None,
            auth_method: AuthMethod::None,
        });
    }
    let endpoint = server
        .registration_endpoint
        .as_deref()
        .ok_or("the authorization server offers no registration, and no client credentials were given")?;
    let wanted = if methods.is_none() || supports(methods, "none") {
        "none"
    } else if supports(methods, "client_secret_basic") {
        "client_secret_basic"
    } else {
        "client_secret_post"
    };
    let loopback = Url::parse(&identity.redirect_uri)
        .ok()
        .and_then(|u| u.host_str().map(|h| matches!(h, "localhost" | "127.0.0.1" | "[::1]")))
        .unwrap_or(false);
    let body = json!({
        "client_name": identity.client_name,
        "redirect_uris": [identity.redirect_uri],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": wanted,
        "application_type": if loopback { "native" } else { "web" },
    });
    let answer = http.post_json(endpoint, &body).await.map_err(|e| format!("registration failed: {e}"))?;
    if !(200..300).contains(&answer.status) {
        return Err(format!("registration was refused ({}): {}", answer.status, answer.body));
    }
    let client_id = answer.body["client_id"].as_str().ok_or("the registration answer has no client_id")?.to_owned();
    let client_secret = answer.body["client_secret"].as_str().map(str::to_owned);
    let auth_method = match answer.body["token_endpoint_auth_method"].as_str().and_then(AuthMethod::parse) {
        Some(method) => method,
        None if client_secret.is_none() => AuthMethod::None,
        None if supports(methods, "client_secret_basic") || !supports(methods, "client_secret_post") => {
            AuthMethod::ClientSecretBasic
        }
        None => AuthMethod::ClientSecretPost,
    };
    Ok(Registration { issuer: server.issuer.clone(), client_id, client_secret, private_key: None, auth_method })
}

/// Builds the authorization request (PKCE S256, random `state`).
pub fn authorization_request(
    discovered: &Discovered,
    registration: &Registration,
    redirect_uri: &str,
    scope: Option<String>,
) -> Result<Pending, String> {
    let server = &discovered.server;
    if !supports(&server.code_challenge_methods_supported, "S256") {
        return Err("the authorization server does not advertise PKCE S256: refusing to authorize".into());
    }
    let endpoint =
        server.authorization_endpoint.as_deref().ok_or("the authorization server has no authorization endpoint")?;
    let mut url = Url::parse(endpoint).map_err(|e| format!("authorization endpoint: {e}"))?;
    let verifier = b64(&random_bytes::<32>().map_err(|e| e.to_string())?);
    let state = b64(&random_bytes::<32>().map_err(|e| e.to_string())?);
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", &registration.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("code_challenge", &sha256_b64url(verifier.as_bytes()))
            .append_pair("code_challenge_method", "S256")
            .append_pair("state", &state);
        if let Some(scope) = &scope {
            q.append_pair("scope", scope);
        }
        if let Some(resource) = &discovered.resource {
            q.append_pair("resource", resource);
        }
    }
    Ok(Pending {
        authorization_url: url.to_string(),
        state,
        verifier,
        redirect_uri: redirect_uri.to_owned(),
        issuer: server.issuer.clone(),
        iss_required: server.authorization_response_iss_parameter_supported == Some(true),
        scope,
    })
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Checks the callback (`state`, `iss`, errors) and returns the code.
pub fn callback_code(pending: &Pending, callback_url: &str) -> Result<String, String> {
    let url = Url::parse(callback_url).map_err(|e| format!("the callback is not a URL: {e}"))?;
    let param = |name: &str| url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
    let state = param("state").unwrap_or_default();
    if !constant_time_eq(&state, &pending.state) {
        return Err("the callback's state does not match this authorization".into());
    }
    match param("iss") {
        Some(iss) if iss != pending.issuer => {
            return Err(format!("the callback names issuer `{iss}`, not `{}`: possible mix-up attack", pending.issuer));
        }
        None if pending.iss_required => {
            return Err("the authorization server promised an `iss` in its response and sent none".into());
        }
        Some(_) | None => {}
    }
    if let Some(error) = param("error") {
        let description = param("error_description").unwrap_or_default();
        return Err(format!("the authorization server answered {error}: {description}"));
    }
    param("code").ok_or_else(|| "the callback carries no code".into())
}

/// Exchanges the code for tokens.
pub async fn exchange_code(
    http: &GuardedHttp,
    discovered: &Discovered,
    registration: &Registration,
    pending: &Pending,
    code: &str,
    now: i64,
) -> Result<TokenResponse, String> {
    let credential = credential_for(discovered, registration, GrantKind::AuthorizationCode, None);
    http.check(&credential.token_endpoint)?;
    let grant = Grant::AuthorizationCode { code, verifier: &pending.verifier, redirect_uri: &pending.redirect_uri };
    token_endpoint::request(http.client(), &credential, grant, now).await.map_err(|e| format!("token request: {e}"))
}

/// The `client_credentials` grant against a discovered server.
pub async fn client_credentials(
    http: &GuardedHttp,
    discovered: &Discovered,
    registration: &Registration,
    scope: Option<String>,
    now: i64,
) -> Result<TokenResponse, String> {
    let credential = credential_for(discovered, registration, GrantKind::ClientCredentials, scope);
    http.check(&credential.token_endpoint)?;
    token_endpoint::request(http.client(), &credential, Grant::ClientCredentials, now)
        .await
        .map_err(|e| format!("token request: {e}"))
}
