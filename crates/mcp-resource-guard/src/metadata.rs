//! RFC 9728 protected resource metadata: the document, and the path-inserted well-known URL
//! it is served at (`https://host/.well-known/oauth-protected-resource/<path of the resource>`).

use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ProtectedResourceMetadata {
    /// Exactly the URL clients connect to (and the audience they ask tokens for, RFC 8707).
    pub resource: String,
    pub authorization_servers: Vec<String>,
    pub scopes_supported: Vec<String>,
    pub bearer_methods_supported: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_name: Option<String>,
}

impl ProtectedResourceMetadata {
    pub fn new(resource: impl Into<String>, authorization_server: impl Into<String>) -> Self {
        ProtectedResourceMetadata {
            resource: resource.into(),
            authorization_servers: vec![authorization_server.into()],
            // Never offline_access here (MCP authorization).
            scopes_supported: [crate::scopes::READ, crate::scopes::TOOLS, crate::scopes::RESOURCES]
                .map(str::to_owned)
                .to_vec(),
            bearer_methods_supported: vec!["header".into()],
            resource_name: None,
        }
    }
}

/// Where the metadata of `resource` lives: the well-known segment inserted between the
/// origin and the resource's path (RFC 9728 §3.1).
pub fn metadata_url(resource: &str) -> String {
    match url::Url::parse(resource) {
        Ok(url) => format!(
            "{}/.well-known/oauth-protected-resource{}",
            url.origin().ascii_serialization(),
            url.path().trim_end_matches('/')
        ),
        Err(_) => String::new(),
    }
}

/// The path part of [`metadata_url`], which a server routes.
pub fn metadata_path(resource: &str) -> String {
    let path = url::Url::parse(resource).map(|u| u.path().trim_end_matches('/').to_owned()).unwrap_or_default();
    format!("/.well-known/oauth-protected-resource{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_insertion() {
        assert_eq!(
            metadata_url("https://gate.example.com/base/t/acme/mcp"),
            "https://gate.example.com/.well-known/oauth-protected-resource/base/t/acme/mcp"
        );
        assert_eq!(
            metadata_url("http://127.0.0.1:9/mcp"),
            "http://127.0.0.1:9/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(metadata_path("https://x.example/"), "/.well-known/oauth-protected-resource");
    }
}
