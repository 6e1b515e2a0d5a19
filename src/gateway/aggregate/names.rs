//! How merged tool and prompt names are formed and taken apart again.
//!
//! Rule: with exactly one upstream configured, names pass through unchanged (a workspace with
//! a single server looks exactly like that server). With more, every tool and prompt name
//! becomes `{upstream}__{name}`, whether or not it collides today, so that names stay stable
//! when another upstream adds a tool of the same name or goes down. The rule depends on how
//! many upstreams are configured, not on how many are currently reachable, for the same reason.
//!
//! MCP tool names are limited to `A-Z a-z 0-9 _ - .` (SEP-986), so the upstream name is
//! reduced to that set for the prefix (other characters become `_`). Routing matches the
//! longest configured prefix, so an upstream name that itself contains `__` still routes.

/// Separator between the upstream prefix and the upstream's own name.
pub const SEPARATOR: &str = "__";

/// The upstream name reduced to MCP's tool-name charset.
pub fn prefix_of(upstream: &str) -> String {
    let cleaned: String = upstream
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') { c } else { '_' })
        .collect();
    if cleaned.is_empty() { "upstream".to_owned() } else { cleaned }
}

/// Names of merged tools and prompts, for a fixed list of upstream prefixes.
#[derive(Clone, Debug)]
pub struct Naming {
    prefixes: Vec<String>,
}

impl Naming {
    pub fn new<'a>(upstreams: impl IntoIterator<Item = &'a str>) -> Self {
        Self { prefixes: upstreams.into_iter().map(prefix_of).collect() }
    }

    fn prefixed(&self) -> bool {
        self.prefixes.len() != 1
    }

    /// The name the client sees for `name` of upstream number `index`.
    pub fn outer(&self, index: usize, name: &str) -> String {
        match self.prefixes.get(index) {
            Some(prefix) if self.prefixed() => format!("{prefix}{SEPARATOR}{name}"),
            _ => name.to_owned(),
        }
    }

    /// The upstream (by index) and its own name for a name the client used.
    pub fn route<'n>(&self, outer: &'n str) -> Option<(usize, &'n str)> {
        if !self.prefixed() {
            return if self.prefixes.is_empty() { None } else { Some((0, outer)) };
        }
        self.prefixes
            .iter()
            .enumerate()
            .filter_map(|(index, prefix)| {
                let inner = outer.strip_prefix(prefix.as_str())?.strip_prefix(SEPARATOR)?;
                Some((prefix.len(), index, inner))
            })
            .max_by_key(|(len, _, _)| *len)
            .map(|(_, index, inner)| (index, inner))
            .filter(|(_, inner)| !inner.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_upstream_names_pass_through() {
        let naming = Naming::new(["demo"]);
        assert_eq!(naming.outer(0, "echo"), "echo");
        assert_eq!(naming.route("echo"), Some((0, "echo")));
        assert_eq!(naming.route("demo__echo"), Some((0, "demo__echo")));
    }

    #[test]
    fn several_upstreams_are_prefixed_and_routed_back() {
        let naming = Naming::new(["demo", "my web", "my"]);
        assert_eq!(naming.outer(0, "echo"), "demo__echo");
        assert_eq!(naming.outer(1, "add"), "my_web__add");
        assert_eq!(naming.route("demo__echo"), Some((0, "echo")));
        assert_eq!(naming.route("my_web__add"), Some((1, "add")));
        assert_eq!(naming.route("my__web__add"), Some((2, "web__add")));
        assert_eq!(naming.route("demo__a__b"), Some((0, "a__b")));
        assert_eq!(naming.route("echo"), None);
        assert_eq!(naming.route("demo__"), None);
        assert_eq!(naming.route("other__echo"), None);
    }

    #[test]
    fn prefixes_keep_to_the_tool_name_charset() {
        assert_eq!(prefix_of("Acme CRM/v2"), "Acme_CRM_v2");
        assert_eq!(prefix_of("a.b-c_d"), "a.b-c_d");
        assert_eq!(prefix_of(""), "upstream");
    }

    #[test]
    fn no_upstreams_route_nothing() {
        assert_eq!(Naming::new([]).route("echo"), None);
    }
}
