//! Which scopes a JSON-RPC method needs, and the hierarchy between scopes: `mcp:tools` and
//! `mcp:resources` each include `mcp:read` (a client that may call tools may list them).

use crate::oauth::scope::ScopeSet;

pub const READ: &str = "mcp:read";
pub const TOOLS: &str = "mcp:tools";
pub const RESOURCES: &str = "mcp:resources";

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
pub fn covers(granted: &ScopeSet, needed: &str) -> bool {
    granted.iter().any(|g| g == needed || (needed == READ && (g == TOOLS || g == RESOURCES)))
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
        let tools = ScopeSet::from_stored("mcp:tools");
        assert!(covers(&tools, READ));
        assert!(covers(&tools, TOOLS));
        assert!(!covers(&tools, RESOURCES));
        assert!(!covers(&ScopeSet::from_stored("mcp:read"), TOOLS));
    }
}
