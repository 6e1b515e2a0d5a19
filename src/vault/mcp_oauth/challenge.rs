//! `WWW-Authenticate: Bearer ...` challenges from upstream MCP servers (RFC 6750 §3, RFC 9728
//! §5.1): the parameters a client acts on.

/// The parameters of a Bearer challenge that matter to an MCP client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Challenge {
    pub error: Option<String>,
    pub scope: Option<String>,
    pub resource_metadata: Option<String>,
}

/// Parses the first Bearer challenge of a `WWW-Authenticate` value; other schemes are skipped.
pub fn parse(header: &str) -> Challenge {
    let mut out = Challenge::default();
    let Some(start) = find_bearer(header) else { return out };
    let mut rest = header.get(start + "bearer".len()..).unwrap_or_default();
    loop {
        rest = rest.trim_start_matches([' ', ',', '\t']);
        let Some(eq) = rest.find('=') else { break };
        let name = rest.get(..eq).unwrap_or_default().trim().to_ascii_lowercase();
        if name.contains(' ') {
            break; // the next challenge (another scheme) starts here
        }
        rest = rest.get(eq + 1..).unwrap_or_default().trim_start();
        let value;
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut text = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            text.push(escaped);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    other => text.push(other),
                }
            }
            value = text;
            rest = quoted.get(end..).unwrap_or_default();
        } else {
            let end = rest.find([',', ' ']).unwrap_or(rest.len());
            value = rest.get(..end).unwrap_or_default().to_owned();
            rest = rest.get(end..).unwrap_or_default();
        }
        match name.as_str() {
            "error" => out.error = Some(value),
            "scope" => out.scope = Some(value),
            "resource_metadata" => out.resource_metadata = Some(value),
            _ => {}
        }
    }
    out
}

fn find_bearer(header: &str) -> Option<usize> {
    let lower = header.to_ascii_lowercase();
    let mut from = 0;
    while let Some(i) = lower.get(from..)?.find("bearer") {
        let at = from + i;
        let before_ok = at == 0 || lower.as_bytes().get(at - 1).is_some_and(|b| *b == b' ' || *b == b',');
        let after_ok = lower.as_bytes().get(at + 6).is_none_or(|b| *b == b' ');
        if before_ok && after_ok {
            return Some(at);
        }
        from = at + 6;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_scope_and_metadata() {
        let c = parse(r#"Bearer error="insufficient_scope", scope="mcp:admin mcp:x", resource_metadata="https://a/b""#);
        assert_eq!(c.error.as_deref(), Some("insufficient_scope"));
        assert_eq!(c.scope.as_deref(), Some("mcp:admin mcp:x"));
        assert_eq!(c.resource_metadata.as_deref(), Some("https://a/b"));
        let c = parse(r#"Basic realm="x", Bearer scope="a\"b",error=invalid_token"#);
        assert_eq!(c.scope.as_deref(), Some("a\"b"));
        assert_eq!(c.error.as_deref(), Some("invalid_token"));
        assert_eq!(parse("Basic realm=x"), Challenge::default());
        assert_eq!(parse("Bearer"), Challenge::default());
        assert_eq!(parse(r#"Bearer scope="unterminated"#).scope.as_deref(), Some("unterminated"));
    }
}
