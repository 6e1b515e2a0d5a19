//! Requests to an upstream authorization server's token endpoint (RFC 6749 §3.2): the
//! client_credentials, authorization_code and refresh_token grants, with the client
//! authenticating by `none`, `client_secret_basic`, `client_secret_post` or `private_key_jwt`
//! (RFC 7523), plus the per-upstream `resource` and `audience` parameters.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use serde::Deserialize;

use super::credential::{AuthMethod, OAuthCredential};

/// A token response is small; anything larger is not one.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// How long a client assertion is valid.
const ASSERTION_SECS: i64 = 60;
pub const TIMEOUT: Duration = Duration::from_secs(15);

/// The grant being exchanged at the token endpoint.
pub enum Grant<'a> {
    ClientCredentials,
    AuthorizationCode { code: &'a str, verifier: &'a str, redirect_uri: &'a str },
    RefreshToken(&'a str),
}

/// A successful token response (RFC 6749 §5.1).
#[derive(Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    #[serde(default)]
    pub token_type: Option<String>,
    #[serde(default)]
    pub expires_in: Option<i64>,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse").field("expires_in", &self.expires_in).field("scope", &self.scope).finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The server answered with an OAuth error (RFC 6749 §5.2): `invalid_grant`,
    /// `invalid_client`...
    #[error("{error}{}", description.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Refused { error: String, description: Option<String> },
    /// Network trouble, a timeout, a 5xx or 429: worth retrying later.
    #[error("{0}")]
    Transient(String),
    /// A request we cannot build, or an answer that is not a token response.
    #[error("{0}")]
    Invalid(String),
}

impl TokenError {
    /// The grant itself is dead (revoked, expired, used): only a new authorization helps.
    pub fn is_invalid_grant(&self) -> bool {
        matches!(self, TokenError::Refused { error, .. } if error == "invalid_grant")
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// The HTTP client for token endpoints: no redirects (a token request is never re-sent
/// elsewhere), no proxy from the environment, bounded in time.
pub fn http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .timeout(TIMEOUT)
        .user_agent(concat!("Gatehouse/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.to_string())
}

/// Exchanges `grant` at the credential's token endpoint.
pub async fn request(
    http: &reqwest::Client,
    credential: &OAuthCredential,
    grant: Grant<'_>,
    now: i64,
) -> Result<TokenResponse, TokenError> {
    let mut form: Vec<(&str, String)> = Vec::new();
    match grant {
        Grant::ClientCredentials => {
            form.push(("grant_type", "client_credentials".into()));
            if let Some(scope) = &credential.scope {
                form.push(("scope", scope.clone()));
            }
        }
        Grant::AuthorizationCode { code, verifier, redirect_uri } => {
            form.push(("grant_type", "authorization_code".into()));
            form.push(("code", code.to_owned()));
            form.push(("code_verifier", verifier.to_owned()));
            form.push(("redirect_uri", redirect_uri.to_owned()));
        }
        Grant::RefreshToken(refresh_token) => {
            form.push(("grant_type", "refresh_token".into()));
            form.push(("refresh_token", refresh_token.to_owned()));
        }
    }
    if let Some(resource) = &credential.resource {
        form.push(("resource", resource.clone()));
    }
    if let Some(audience) = &credential.audience {
        form.push(("audience", audience.clone()));
    }
    let mut req = http.post(&credential.token_endpoint).header(ACCEPT, "application/json");
    match credential.auth_method {
        AuthMethod::None => form.push(("client_id", credential.client_id.clone())),
        AuthMethod::ClientSecretBasic => {
            let secret = credential.client_secret.as_deref().unwrap_or_default();
            req = req.header(AUTHORIZATION, basic_auth(&credential.client_id, secret));
        }
        AuthMethod::ClientSecretPost => {
            form.push(("client_id", credential.client_id.clone()));
            form.push(("client_secret", credential.client_secret.clone().unwrap_or_default()));
        }
        AuthMethod::PrivateKeyJwt => {
            form.push(("client_id", credential.client_id.clone()));
            form.push(("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into()));
            form.push(("client_assertion", client_assertion(credential, now)?));
        }
    }
    let body = serde_urlencoded::to_string(&form).map_err(|e| TokenError::Invalid(e.to_string()))?;
    let mut res = req
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .map_err(|e| TokenError::Transient(describe(&e)))?;
    let status = res.status();
    let mut bytes = Vec::new();
    while let Some(chunk) = res.chunk().await.map_err(|e| TokenError::Transient(describe(&e)))? {
        if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(TokenError::Invalid("the token response is too large".into()));
        }
        bytes.extend_from_slice(&chunk);
    }
    if status.is_success() {
        let token: TokenResponse = serde_json::from_slice(&bytes)
            .map_err(|e| TokenError::Invalid(format!("the token endpoint's answer is not a token response: {e}")))?;
        if let Some(kind) = &token.token_type
            && !kind.eq_ignore_ascii_case("bearer")
        {
            return Err(TokenError::Invalid(format!("token type `{kind}` is not supported (only Bearer)")));
        }
        return Ok(token);
    }
    if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        return Err(TokenError::Transient(format!("the token endpoint answered {status}")));
    }
    match serde_json::from_slice::<ErrorBody>(&bytes) {
        Ok(body) => Err(TokenError::Refused {
            error: body.error.chars().take(64).collect(),
            description: body.error_description.map(|d| d.chars().take(300).collect()),
        }),
        Err(_) => Err(TokenError::Invalid(format!("the token endpoint answered {status} without an OAuth error"))),
    }
}

/// RFC 6749 §2.3.1: id and secret form-urlencoded, then base64.
pub fn basic_auth(client_id: &str, secret: &str) -> String {
    let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!("Basic {}", STANDARD.encode(format!("{}:{}", encode(client_id), encode(secret))))
}

/// An RFC 7523 client assertion: issued by and about our client, for the token endpoint
/// (and the issuer, which some servers expect as the audience instead).
fn client_assertion(credential: &OAuthCredential, now: i64) -> Result<String, TokenError> {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let pem = credential.private_key.as_deref().unwrap_or_default().as_bytes();
    let (key, alg) = match EncodingKey::from_ec_pem(pem) {
        Ok(key) => (key, Algorithm::ES256),
        Err(_) => match EncodingKey::from_rsa_pem(pem) {
            Ok(key) => (key, Algorithm::RS256),
            Err(_) => return Err(TokenError::Invalid("the private key is neither an EC P-256 nor an RSA PEM".into())),
        },
    };
    let jti = crate::crypto::random_bytes::<16>().map_err(|e| TokenError::Invalid(e.to_string()))?;
    let audience = match &credential.issuer {
        Some(issuer) => serde_json::json!([credential.token_endpoint, issuer]),
        None => serde_json::json!(credential.token_endpoint),
    };
    let claims = serde_json::json!({
        "iss": credential.client_id,
        "sub": credential.client_id,
        "aud": audience,
        "iat": now,
        "exp": now + ASSERTION_SECS,
        "jti": crate::crypto::hex_encode(&jti),
    });
    jsonwebtoken::encode(&Header::new(alg), &claims, &key).map_err(|e| TokenError::Invalid(e.to_string()))
}

/// A network error's innermost cause, without the URL's query (none is sent) or any secret.
fn describe(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        return "the token endpoint did not answer in time".into();
    }
    crate::oauth::cimd::fetch::innermost_cause(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_encodes_before_base64() {
        // RFC 6749 §2.3.1: "a:b" becomes "a%3Ab".
        assert_eq!(basic_auth("a:b", "s p"), format!("Basic {}", STANDARD.encode("a%3Ab:s+p")));
        assert!(TokenError::Refused { error: "invalid_grant".into(), description: None }.is_invalid_grant());
        assert!(!TokenError::Transient("x".into()).is_invalid_grant());
    }
}
