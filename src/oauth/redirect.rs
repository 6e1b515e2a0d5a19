//! Redirect URIs: what may be registered, and whether a requested one matches.
//!
//! Registration accepts https URLs, http only on loopback (RFC 8252 §7.3), and private-use
//! schemes for native apps (RFC 8252 §7.1) except those a browser would execute or read.
//! Matching is exact, except that a loopback URI matches on any port.

use url::{Host, Url};

/// Schemes that would run code or read local data in the browser instead of reaching an app.
const FORBIDDEN_SCHEMES: &[&str] =
    &["javascript", "data", "vbscript", "file", "blob", "about", "filesystem", "view-source", "ws", "wss", "ftp"];

/// Checks one redirect URI offered at registration; the error says what is wrong.
pub fn validate_registered(uri: &str) -> Result<Url, String> {
    if uri.len() > 2_000 {
        return Err("a redirect URI is longer than 2000 characters".into());
    }
    if uri.chars().any(|c| c.is_whitespace() || c.is_control()) || uri.trim() != uri {
        return Err(format!("redirect URI `{}` contains spaces or control characters", shorten(uri)));
    }
    let url = Url::parse(uri).map_err(|e| format!("redirect URI `{}` is not an absolute URL ({e})", shorten(uri)))?;
    if url.fragment().is_some() || uri.contains('#') {
        return Err(format!("redirect URI `{}` must not contain a fragment", shorten(uri)));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("redirect URI `{}` must not contain credentials", shorten(uri)));
    }
    match url.scheme() {
        "https" if url.host().is_none() => {
            return Err(format!("redirect URI `{}` has no host", shorten(uri)));
        }
        "http" if !is_loopback(&url) => {
            return Err(format!(
                "redirect URI `{}` uses http on a non-loopback host; use https, or http://127.0.0.1 for native apps",
                shorten(uri)
            ));
        }
        "https" | "http" => {}
        scheme if FORBIDDEN_SCHEMES.contains(&scheme) => {
            return Err(format!("redirect URI scheme `{scheme}:` is not allowed"));
        }
        _ => {}
    }
    Ok(url)
}

/// True when `requested` may be used with a client that registered `registered`.
pub fn matches(registered: &str, requested: &str) -> bool {
    if registered == requested {
        return true;
    }
    let (Ok(reg), Ok(req)) = (Url::parse(registered), Url::parse(requested)) else {
        return false;
    };
    // RFC 8252 §7.3: loopback redirects may use any port; everything else must match.
    reg.scheme() == "http"
        && req.scheme() == "http"
        && is_loopback(&reg)
        && reg.host() == req.host()
        && reg.path() == req.path()
        && reg.query() == req.query()
        && req.fragment().is_none()
        && req.username().is_empty()
        && req.password().is_none()
        && requested.chars().all(|c| !c.is_whitespace() && !c.is_control())
}

pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// The part of a redirect URI a person should check on the consent page.
pub fn display_host(uri: &str) -> String {
    match Url::parse(uri) {
        Ok(url) => match url.host_str() {
            Some(host) => host.to_owned(),
            None => format!("{}: (an app on this device)", url.scheme()),
        },
        Err(_) => shorten(uri),
    }
}

fn shorten(s: &str) -> String {
    let mut out: String = s.chars().filter(|c| !c.is_control()).take(80).collect();
    if s.chars().count() > 80 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_rules() {
        for ok in [
            "https://claude.ai/api/mcp/auth_callback",
            "http://127.0.0.1/callback",
            "http://localhost:6274/oauth/callback",
            "http://[::1]:33418/",
            "cursor://anysphere.cursor-mcp/oauth/callback",
        ] {
            assert!(validate_registered(ok).is_ok(), "{ok}");
        }
        for bad in [
            "javascript:alert(1)",
            "JavaScript:alert(1)",
            " javascript:alert(1)",
            "data:text/html,hi",
            "https://app.example/cb#frag",
            "https://app.example/cb#",
            "http://app.example/cb",
            "http://10.0.0.1/cb",
            "https://user:pw@app.example/cb",
            "/relative",
            "file:///etc/passwd",
        ] {
            assert!(validate_registered(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn matching_is_exact_except_loopback_ports() {
        assert!(matches("https://a.example/cb", "https://a.example/cb"));
        assert!(!matches("https://a.example/cb", "https://a.example/cb/"));
        assert!(!matches("https://a.example/cb", "https://a.example:444/cb"));
        assert!(!matches("https://a.example/cb", "https://A.example/cb?x=1"));
        assert!(matches("http://127.0.0.1/callback", "http://127.0.0.1:51234/callback"));
        assert!(matches("http://localhost:1/callback", "http://localhost:9/callback"));
        assert!(!matches("http://127.0.0.1/callback", "http://127.0.0.1:5/other"));
        assert!(!matches("http://127.0.0.1/callback", "http://localhost:5/callback"));
        assert!(!matches("http://127.0.0.1/callback", "http://127.0.0.1.evil.example/callback"));
    }
}
