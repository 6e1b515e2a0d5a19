//! Scopes: what an access token lets a client do in one workspace.

use std::collections::BTreeSet;

use super::error::OAuthError;

/// The scopes every workspace offers, with the words the consent page uses for them.
pub const KNOWN_SCOPES: &[(&str, &str)] = &[
    ("mcp:read", "See the tools, resources and prompts this workspace offers, and read prompts"),
    ("mcp:tools", "Call tools on your behalf"),
    ("mcp:resources", "Read and subscribe to resources"),
];

/// Asked for by clients that want refresh tokens (Claude, ChatGPT). We issue refresh tokens
/// to every authorization-code client anyway, so it is accepted and not recorded.
pub const OFFLINE_ACCESS: &str = "offline_access";

/// Granted when a client asks for no scope at all: enough to list and call tools.
pub const DEFAULT_SCOPE: &str = "mcp:read mcp:tools";

/// A set of known scopes, kept sorted so equal sets print equally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeSet(BTreeSet<String>);

impl ScopeSet {
    /// Parses a requested scope string; `None` or empty means [`DEFAULT_SCOPE`].
    pub fn parse_requested(requested: Option<&str>) -> Result<Self, OAuthError> {
        let text = requested.map(str::trim).filter(|s| !s.is_empty()).unwrap_or(DEFAULT_SCOPE);
        let mut set = BTreeSet::new();
        for s in text.split(' ').filter(|s| !s.is_empty()) {
            if s == OFFLINE_ACCESS {
                continue;
            }
            if !KNOWN_SCOPES.iter().any(|(k, _)| *k == s) {
                return Err(OAuthError::invalid_scope(format!(
                    "unknown scope `{}`; this server offers {}",
                    s.chars().take(64).collect::<String>(),
                    KNOWN_SCOPES.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
                )));
            }
            set.insert(s.to_owned());
        }
        if set.is_empty() {
            // Only offline_access was asked for.
            return Self::parse_requested(None);
        }
        Ok(ScopeSet(set))
    }

    /// A scope string we stored ourselves.
    pub fn from_stored(text: &str) -> Self {
        ScopeSet(text.split(' ').filter(|s| !s.is_empty()).map(str::to_owned).collect())
    }

    pub fn is_subset_of(&self, other: &ScopeSet) -> bool {
        self.0.is_subset(&other.0)
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    pub fn to_scope_string(&self) -> String {
        self.0.iter().map(String::as_str).collect::<Vec<_>>().join(" ")
    }
}

pub fn describe(scope: &str) -> &'static str {
    KNOWN_SCOPES.iter().find(|(k, _)| *k == scope).map(|(_, d)| *d).unwrap_or("A scope of this workspace")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing() {
        assert_eq!(ScopeSet::parse_requested(None).unwrap().to_scope_string(), "mcp:read mcp:tools");
        assert_eq!(
            ScopeSet::parse_requested(Some("mcp:tools offline_access mcp:read")).unwrap().to_scope_string(),
            "mcp:read mcp:tools"
        );
        assert_eq!(ScopeSet::parse_requested(Some("offline_access")).unwrap().to_scope_string(), DEFAULT_SCOPE);
        assert!(ScopeSet::parse_requested(Some("admin")).is_err());
        let small = ScopeSet::parse_requested(Some("mcp:read")).unwrap();
        assert!(small.is_subset_of(&ScopeSet::from_stored("mcp:read mcp:tools")));
        assert!(!ScopeSet::from_stored("mcp:resources").is_subset_of(&small));
    }
}
