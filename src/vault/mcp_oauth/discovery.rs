//! Finding an upstream MCP server's authorization server: its protected resource metadata
//! (RFC 9728: the `resource_metadata` of its challenge, then the path-aware well-known URL,
//! then the root one), then the authorization server's metadata in the MCP spec's order
//! (RFC 8414 path-inserted, OpenID Connect path-inserted, OpenID Connect path-appended), whose
//! `issuer` must be exactly the identifier it was looked up by.

use serde::Deserialize;
use url::Url;

use super::guard::GuardedHttp;

#[derive(Debug, Clone, Deserialize)]
pub struct ResourceMetadata {
    pub resource: String,
    #[serde(default)]
    pub authorization_servers: Vec<String>,
    #[serde(default)]
    pub scopes_supported: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServerMetadata {
    pub issuer: String,
    pub authorization_endpoint: Option<String>,
    pub token_endpoint: Option<String>,
    #[serde(default)]
    pub registration_endpoint: Option<String>,
    #[serde(default)]
    pub scopes_supported: Option<Vec<String>>,
    #[serde(default)]
    pub code_challenge_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    pub client_id_metadata_document_supported: Option<bool>,
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: Option<bool>,
    #[serde(default)]
    pub grant_types_supported: Option<Vec<String>>,
}

/// Everything discovery found.
#[derive(Debug, Clone)]
pub struct Discovered {
    /// The resource identifier exactly as published (sent back as `resource`); `None` when the
    /// server publishes no protected resource metadata (MCP 2025-03-26).
    pub resource: Option<String>,
    pub resource_scopes: Option<Vec<String>>,
    pub server: ServerMetadata,
}

/// The well-known protected resource metadata URLs for `mcp_url`, most specific first.
fn resource_metadata_urls(mcp_url: &Url) -> Vec<String> {
    let origin = mcp_url.origin().ascii_serialization();
    let path = mcp_url.path().trim_end_matches('/');
    let mut urls = Vec::new();
    if !path.is_empty() {
        urls.push(format!("{origin}/.well-known/oauth-protected-resource{path}"));
    }
    urls.push(format!("{origin}/.well-known/oauth-protected-resource"));
    urls
}

/// The metadata URLs of an authorization server, in the MCP spec's order.
pub fn server_metadata_urls(issuer: &Url) -> Vec<String> {
    let origin = issuer.origin().ascii_serialization();
    let path = issuer.path().trim_end_matches('/');
    if path.is_empty() {
        vec![
            format!("{origin}/.well-known/oauth-authorization-server"),
            format!("{origin}/.well-known/openid-configuration"),
        ]
    } else {
        vec![
            format!("{origin}/.well-known/oauth-authorization-server{path}"),
            format!("{origin}/.well-known/openid-configuration{path}"),
            format!("{origin}{path}/.well-known/openid-configuration"),
        ]
    }
}

/// RFC 9728 §3.3 (and what MCP clients enforce): the metadata must describe the server we
/// connected to: same origin, and our URL at or below its path.
fn resource_matches(resource: &str, mcp_url: &Url) -> bool {
    let Ok(resource) = Url::parse(resource) else { return false };
    let prefix = resource.path().trim_end_matches('/');
    resource.origin() == mcp_url.origin()
        && (mcp_url.path() == resource.path()
            || mcp_url.path().trim_end_matches('/') == prefix
            || mcp_url.path().starts_with(&format!("{prefix}/")))
}

pub async fn protected_resource(
    http: &GuardedHttp,
    mcp_url: &Url,
    from_challenge: Option<&str>,
) -> Result<Option<ResourceMetadata>, String> {
    let mut candidates: Vec<String> = from_challenge.map(str::to_owned).into_iter().collect();
    candidates.extend(resource_metadata_urls(mcp_url));
    let mut last_error = None;
    for url in candidates {
        match http.get_json(&url).await {
            Ok(answer) if answer.status == 200 => {
                let metadata: ResourceMetadata = serde_json::from_value(answer.body)
                    .map_err(|e| format!("the protected resource metadata at {url} is not valid: {e}"))?;
                if !resource_matches(&metadata.resource, mcp_url) {
                    return Err(format!(
                        "the protected resource metadata names `{}`, not the server at {mcp_url}: refusing to authorize",
                        metadata.resource
                    ));
                }
                return Ok(Some(metadata));
            }
            Ok(_) => {}
            Err(e) => last_error = Some(e),
        }
    }
    match last_error {
        // A refused URL (SSRF guard) is an error, not "no metadata".
        Some(e) if e.contains("only https") || e.contains("address") => Err(e),
        _ => Ok(None),
    }
}

pub async fn server_metadata(http: &GuardedHttp, issuer: &str) -> Result<Option<ServerMetadata>, String> {
    let parsed = Url::parse(issuer).map_err(|e| format!("authorization server `{issuer}` is not a URL: {e}"))?;
    for url in server_metadata_urls(&parsed) {
        let Ok(answer) = http.get_json(&url).await else { continue };
        if answer.status != 200 {
            continue;
        }
        let metadata: ServerMetadata = serde_json::from_value(answer.body)
            .map_err(|e| format!("the authorization server metadata at {url} is not valid: {e}"))?;
        if metadata.issuer != issuer {
            return Err(format!(
                "the authorization server metadata at {url} names issuer `{}`, not `{issuer}`: refusing to use it",
                metadata.issuer
            ));
        }
        return Ok(Some(metadata));
    }
    Ok(None)
}

/// Discovery from a 401's challenge, with the MCP 2025-03-26 fallbacks for servers that
/// publish no protected resource metadata (the MCP server's origin is the authorization
/// server, at default endpoint paths when it has no metadata either).
pub async fn discover(
    http: &GuardedHttp,
    mcp_url: &Url,
    resource_metadata: Option<&str>,
) -> Result<Discovered, String> {
    let resource = protected_resource(http, mcp_url, resource_metadata).await?;
    let Some(resource) = resource else {
        let origin = mcp_url.origin().ascii_serialization();
        let server = match server_metadata(http, &origin).await? {
            Some(server) => server,
            None => ServerMetadata {
                issuer: origin.clone(),
                authorization_endpoint: Some(format!("{origin}/authorize")),
                token_endpoint: Some(format!("{origin}/token")),
                registration_endpoint: Some(format!("{origin}/register")),
                scopes_supported: None,
                code_challenge_methods_supported: Some(vec!["S256".into()]),
                token_endpoint_auth_methods_supported: None,
                client_id_metadata_document_supported: None,
                authorization_response_iss_parameter_supported: None,
                grant_types_supported: None,
            },
        };
        return Ok(Discovered { resource: None, resource_scopes: None, server });
    };
    let issuer = resource
        .authorization_servers
        .first()
        .ok_or("the protected resource metadata names no authorization server")?
        .clone();
    let server = server_metadata(http, &issuer)
        .await?
        .ok_or_else(|| format!("authorization server `{issuer}` publishes no metadata"))?;
    Ok(Discovered { resource: Some(resource.resource), resource_scopes: resource.scopes_supported, server })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_orders() {
        let mcp = Url::parse("https://mcp.example.com/t/acme/mcp").unwrap();
        assert_eq!(
            resource_metadata_urls(&mcp),
            vec![
                "https://mcp.example.com/.well-known/oauth-protected-resource/t/acme/mcp",
                "https://mcp.example.com/.well-known/oauth-protected-resource"
            ]
        );
        let issuer = Url::parse("https://auth.example.com/tenant1").unwrap();
        assert_eq!(
            server_metadata_urls(&issuer),
            vec![
                "https://auth.example.com/.well-known/oauth-authorization-server/tenant1",
                "https://auth.example.com/.well-known/openid-configuration/tenant1",
                "https://auth.example.com/tenant1/.well-known/openid-configuration"
            ]
        );
        assert_eq!(server_metadata_urls(&Url::parse("https://a.example").unwrap()).len(), 2);
    }

    #[test]
    fn resource_must_describe_the_server() {
        let mcp = Url::parse("http://localhost:3000/mcp").unwrap();
        assert!(resource_matches("http://localhost:3000/mcp", &mcp));
        assert!(resource_matches("http://localhost:3000/", &mcp));
        assert!(resource_matches("http://localhost:3000", &mcp));
        assert!(!resource_matches("https://evil.example.com/mcp", &mcp));
        assert!(!resource_matches("http://localhost:3001/mcp", &mcp));
        assert!(!resource_matches("http://localhost:3000/mcp-other", &mcp));
    }
}
