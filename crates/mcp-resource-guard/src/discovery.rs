//! Finding an issuer's endpoints: RFC 8414 authorization server metadata, then OpenID
//! Connect discovery. The document must name exactly the issuer we trust (RFC 8414 §3.3),
//! so a document served elsewhere cannot redirect us to someone else's keys.

use serde::Deserialize;

use crate::issuer::IssuerError;

#[derive(Debug, Clone, Deserialize)]
pub struct IssuerMetadata {
    pub issuer: String,
    pub jwks_uri: Option<String>,
    pub introspection_endpoint: Option<String>,
}

/// The discovery URLs of `issuer`, in the order tried.
pub fn discovery_urls(issuer: &str) -> Result<Vec<String>, IssuerError> {
    let url = url::Url::parse(issuer).map_err(|_| IssuerError::BadIssuer(format!("`{issuer}` is not a URL")))?;
    let origin = url.origin().ascii_serialization();
    let path = url.path().trim_end_matches('/');
    Ok(vec![
        // RFC 8414 §3.1: inserted between host and path.
        format!("{origin}/.well-known/oauth-authorization-server{path}"),
        // OpenID Connect Discovery 1.0 §4: appended to the issuer.
        format!("{origin}{path}/.well-known/openid-configuration"),
    ])
}

/// Largest metadata or JWKS document read from an issuer.
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// Reads a JSON body of at most [`MAX_DOCUMENT_BYTES`], so a misbehaving issuer cannot make us
/// buffer without bound.
pub async fn read_json<T: serde::de::DeserializeOwned>(mut res: reqwest::Response) -> Result<T, String> {
    let mut body = Vec::new();
    while let Some(chunk) = res.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(format!("larger than {MAX_DOCUMENT_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| e.to_string())
}

/// Fetches the first discovery document that answers and checks its `issuer`.
pub async fn discover(http: &reqwest::Client, issuer: &str) -> Result<IssuerMetadata, IssuerError> {
    let mut last = String::new();
    for url in discovery_urls(issuer)? {
        let res = match http.get(&url).header("accept", "application/json").send().await {
            Ok(res) => res,
            Err(e) => {
                last = format!("{url}: {e}");
                continue;
            }
        };
        if !res.status().is_success() {
            last = format!("{url}: HTTP {}", res.status());
            continue;
        }
        let meta: IssuerMetadata = match read_json(res).await {
            Ok(meta) => meta,
            Err(e) => {
                last = format!("{url}: not a metadata document ({e})");
                continue;
            }
        };
        if meta.issuer != issuer {
            return Err(IssuerError::Discovery(format!(
                "{url} names issuer `{}`, not the trusted `{issuer}`",
                meta.issuer
            )));
        }
        return Ok(meta);
    }
    Err(IssuerError::Discovery(format!("no discovery document answered ({last})")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            discovery_urls("https://login.example.com/realms/acme").unwrap(),
            vec![
                "https://login.example.com/.well-known/oauth-authorization-server/realms/acme",
                "https://login.example.com/realms/acme/.well-known/openid-configuration",
            ]
        );
        assert_eq!(
            discovery_urls("https://tenant.auth0.com/").unwrap()[1],
            "https://tenant.auth0.com/.well-known/openid-configuration"
        );
    }
}
