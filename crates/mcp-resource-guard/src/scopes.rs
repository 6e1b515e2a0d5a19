//! Which scopes a JSON-RPC method needs, and the hierarchy between scopes: `mcp:tools` and
//! `mcp:resources` each include `mcp:read` (a client that may call tools may list them).

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;

use crate::challenge::Refusal;

pub const READ: &str = "mcp:read";
pub const TOOLS: &str = "mcp:tools";
pub const RESOURCES: &str = "mcp:resources";
/// What a client is asked for when it has no token: enough to list and call tools.
pub const DEFAULT_SCOPE: &str = "mcp:read mcp:tools";

/// The scope one method needs, or `None` when any valid token will do
/// (the handshake, pings, notifications and responses to server requests).
pub fn scope_for_method(method: &str) -> Option<&'static str> {
    match method {
        "initialize" | "ping" => None,
        m if m.starts_with("notifications/") => None,
        "tools/call" => Some(TOOLS),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => Some(RESOURCES),
        // Listing, prompts, completion, logging level and anything new: reading.
        _ => Some(READ),
    }
}

/// Whether `granted` covers `needed`, honouring the hierarchy.
pub fn covers<'a>(granted: impl IntoIterator<Item = &'a str>, needed: &str) -> bool {
    granted.into_iter().any(|g| g == needed || (needed == READ && (g == TOOLS || g == RESOURCES)))
}

/// The MCP defaults of [`scope_for_method`], with per-method changes for a server's own scopes
/// (say `tools/call` needs `billing:write`).
#[derive(Debug, Clone, Default)]
pub struct MethodScopes {
    overrides: HashMap<String, Option<String>>,
}

impl MethodScopes {
    /// `method` needs `scope` (`None`: any valid token).
    pub fn with_method(mut self, method: impl Into<String>, scope: Option<&str>) -> Self {
        self.overrides.insert(method.into(), scope.map(str::to_owned));
        self
    }

    pub fn needed(&self, method: &str) -> Option<&str> {
        match self.overrides.get(method) {
            Some(scope) => scope.as_deref(),
            None => scope_for_method(method),
        }
    }

    /// Every method in a POSTed message (one request or a batch) must be covered by
    /// `granted`; the challenge names all scopes needed plus those already granted, so a
    /// client that re-authorizes with exactly that set loses nothing. A body that is not JSON
    /// passes: the MCP server answers it with a JSON-RPC parse error.
    pub fn check_message<'a>(&self, granted: impl IntoIterator<Item = &'a str>, body: &[u8]) -> Result<(), Refusal> {
        let granted: BTreeSet<&str> = granted.into_iter().collect();
        // The usual message, one request, is read for its method alone (the rest is skipped,
        // not built into a tree); batches and odd shapes take the general path below.
        if let Ok(Envelope { method }) = serde_json::from_slice::<Envelope<'_>>(body) {
            return match method.as_deref().and_then(|m| self.needed(m)) {
                Some(needed) if !covers(granted.iter().copied(), needed) => Err(refusal(&granted, [needed].into())),
                _ => Ok(()),
            };
        }
        let Ok(message) = serde_json::from_slice::<Value>(body) else {
            return Ok(());
        };
        let messages = match &message {
            Value::Array(items) => items.iter().collect::<Vec<_>>(),
            single => vec![single],
        };
        let missing: BTreeSet<&str> = messages
            .iter()
            .filter_map(|m| m.get("method").and_then(Value::as_str))
            .filter_map(|m| self.needed(m))
            .filter(|needed| !covers(granted.iter().copied(), needed))
            .collect();
        match missing.is_empty() {
            true => Ok(()),
            false => Err(refusal(&granted, missing)),
        }
    }
}

/// One JSON-RPC message object, as far as the scope check reads it.
#[derive(serde::Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    method: Option<std::borrow::Cow<'a, str>>,
}

/// The challenge names all scopes needed plus those already granted.
fn refusal(granted: &BTreeSet<&str>, missing: BTreeSet<&str>) -> Refusal {
    let mut wanted = granted.clone();
    wanted.extend(missing.iter().copied());
    Refusal::InsufficientScope {
        description: format!("this operation needs {}", missing.into_iter().collect::<Vec<_>>().join(" ")),
        scope: wanted.into_iter().collect::<Vec<_>>().join(" "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_and_hierarchy() {
        assert_eq!(scope_for_method("tools/call"), Some(TOOLS));
        assert_eq!(scope_for_method("tools/list"), Some(READ));
        assert_eq!(scope_for_method("resources/subscribe"), Some(RESOURCES));
        assert_eq!(scope_for_method("initialize"), None);
        assert_eq!(scope_for_method("notifications/initialized"), None);
        assert!(covers(["mcp:tools"], READ));
        assert!(covers(["mcp:tools"], TOOLS));
        assert!(!covers(["mcp:tools"], RESOURCES));
        assert!(!covers(["mcp:read"], TOOLS));
    }

    #[test]
    fn insufficient_scope_names_needed_plus_granted() {
        let rules = MethodScopes::default();
        let call = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}"#;
        assert_eq!(rules.check_message(["mcp:tools"], call), Ok(()));
        assert_eq!(
            rules.check_message(["mcp:read", "profile"], call),
            Err(Refusal::InsufficientScope {
                scope: "mcp:read mcp:tools profile".into(),
                description: "this operation needs mcp:tools".into()
            })
        );
        let batch =
            br#"[{"jsonrpc":"2.0","id":1,"method":"tools/call"},{"jsonrpc":"2.0","id":2,"method":"resources/read"}]"#;
        match rules.check_message(["mcp:read"], batch) {
            Err(Refusal::InsufficientScope { scope, .. }) => assert_eq!(scope, "mcp:read mcp:resources mcp:tools"),
            other => panic!("{other:?}"),
        }
        assert_eq!(rules.check_message([], br#"{"jsonrpc":"2.0","id":1,"method":"initialize"}"#), Ok(()));
        assert_eq!(rules.check_message([], b"not json"), Ok(()));
        // The method is read as JSON reads it, escapes and all, whatever else the message holds.
        let escaped = br#"{"params":{"name":"x","arguments":{"method":"ping"}},"method":"tools\u002fcall","id":1}"#;
        assert!(rules.check_message(["mcp:read"], escaped).is_err());
        // A batch with something odd in it is still checked member by member.
        let odd = br#"[5,{"jsonrpc":"2.0","id":2,"method":"tools/call"}]"#;
        assert!(rules.check_message(["mcp:read"], odd).is_err());
        let custom = MethodScopes::default().with_method("tools/call", Some("billing:write"));
        assert!(custom.check_message(["mcp:tools"], call).is_err());
        assert_eq!(custom.check_message(["billing:write"], call), Ok(()));
    }
}
