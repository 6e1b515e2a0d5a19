//! Redirect URIs: what may be registered, and whether a requested one matches.
//!
//! Registration accepts https URLs, http only on loopback (RFC 8252 §7.3: `127.0.0.1`, `[::1]`
//! and `localhost`), and private-use schemes for native apps (RFC 8252 §7.1, e.g.
//! `cursor://anysphere.cursor-mcp/oauth/callback`), except schemes a browser would execute or
//! read instead of handing to an app. Look-alikes are refused: a URI must be written the way a
//! URL parser (and so a browser) reads it, which rules out `127.1`, `0x7f.0.0.1`, upper-case
//! hosts, explicit default ports, dot segments, backslashes and non-ASCII letters that would be
//! rewritten into a different host. Matching is exact string comparison, except that a loopback
//! http URI matches on any port.

use url::{Host, Url};

/// Schemes that would run code or read local data in the browser instead of reaching an app.
const FORBIDDEN_SCHEMES: &[&str] = &[
    "javascript",
    "data",
    "vbscript",
    "file",
    "blob",
    "about",
    "filesystem",
    "view-source",
    "ws",
    "wss",
    "ftp",
    "chrome",
    "chrome-extension",
    "moz-extension",
    "intent",
];

/// Longest redirect URI accepted.
const MAX_LEN: usize = 2_000;

/// Checks one redirect URI offered at registration (or listed in a metadata document); the
/// error says what is wrong.
pub fn validate_registered(uri: &str) -> Result<Url, String> {
    if uri.len() > MAX_LEN {
        return Err(format!("a redirect URI is longer than {MAX_LEN} characters"));
    }
    if uri.is_empty() {
        return Err("a redirect URI is empty".into());
    }
    if uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("redirect URI `{}` contains spaces or control characters", shorten(uri)));
    }
    if !uri.is_ascii() {
        return Err(format!(
            "redirect URI `{}` contains non-ASCII characters; write internationalised host names in punycode",
            shorten(uri)
        ));
    }
    if uri.contains('\\') {
        return Err(format!("redirect URI `{}` contains a backslash", shorten(uri)));
    }
    if uri.contains('#') {
        return Err(format!("redirect URI `{}` must not contain a fragment", shorten(uri)));
    }
    let url = Url::parse(uri).map_err(|e| format!("redirect URI `{}` is not an absolute URL ({e})", shorten(uri)))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("redirect URI `{}` must not contain credentials", shorten(uri)));
    }
    match url.scheme() {
        "https" | "http" => {
            if url.host().is_none() {
                return Err(format!("redirect URI `{}` has no host", shorten(uri)));
            }
            if url.scheme() == "http" && !is_loopback(&url) {
                return Err(format!(
                    "redirect URI `{}` uses http on a host other than 127.0.0.1, [::1] or localhost; use https (http is for apps on this device)",
                    shorten(uri)
                ));
            }
        }
        scheme if FORBIDDEN_SCHEMES.contains(&scheme) => {
            return Err(format!("redirect URI scheme `{scheme}:` is not allowed"));
        }
        _ => {
            if url.host().is_none() && url.path().trim_matches('/').is_empty() {
                return Err(format!("redirect URI `{}` names no callback after its scheme", shorten(uri)));
            }
        }
    }
    if !is_canonical(uri, &url) {
        return Err(format!(
            "redirect URI `{}` is not written the way it is read (a parser reads it as `{}`); register that form",
            shorten(uri),
            shorten(url.as_str())
        ));
    }
    Ok(url)
}

/// Whether `raw` is exactly how `parsed` serialises, allowing only the `/` a parser adds to an
/// origin-only http(s) URL (`https://app.example` reads as `https://app.example/`).
fn is_canonical(raw: &str, parsed: &Url) -> bool {
    let serialised = parsed.as_str();
    serialised == raw
        || (parsed.path() == "/"
            && parsed.query().is_none()
            && serialised.len() == raw.len() + 1
            && serialised.starts_with(raw)
            && serialised.ends_with('/'))
}

/// True when `requested` may be used with a client that registered `registered`.
pub fn matches(registered: &str, requested: &str) -> bool {
    if registered == requested {
        return true;
    }
    let (Ok(reg), Ok(req)) = (Url::parse(registered), Url::parse(requested)) else {
        return false;
    };
    // RFC 8252 §7.3: a native app's loopback redirect may use any port. Only the port may
    // differ, and the request must be written canonically, so no look-alike slips through.
    if !(reg.scheme() == "http" && is_loopback(&reg) && req.scheme() == "http" && is_loopback(&req)) {
        return false;
    }
    if !requested.is_ascii() || requested.contains(['\\', '#']) || !is_canonical(requested, &req) {
        return false;
    }
    without_port(reg) == without_port(req)
}

fn without_port(mut url: Url) -> String {
    // Cannot fail for http URLs with a host, which is all this is called with.
    let _ = url.set_port(None);
    url.to_string()
}

/// Loopback as RFC 8252 §7.3 and §8.3 name it: `127.0.0.1`, `[::1]`, or `localhost`.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => ip == std::net::Ipv4Addr::LOCALHOST,
        Some(Host::Ipv6(ip)) => ip == std::net::Ipv6Addr::LOCALHOST,
        Some(Host::Domain(d)) => d == "localhost",
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
            "https://chatgpt.com/connector/oauth/abc123",
            "http://127.0.0.1/callback",
            "http://127.0.0.1/",
            "http://127.0.0.1",
            "http://localhost:6274/oauth/callback",
            "http://[::1]:33418/",
            "https://app.example/cb?tenant=1",
            "cursor://anysphere.cursor-mcp/oauth/callback",
            "com.example.app:/oauth2redirect",
        ] {
            assert!(validate_registered(ok).is_ok(), "{ok}: {:?}", validate_registered(ok));
        }
        for bad in [
            "javascript:alert(1)",
            "JavaScript:alert(1)",
            " javascript:alert(1)",
            "java\tscript:alert(1)",
            "data:text/html,hi",
            "file:///etc/passwd",
            "vbscript:x",
            "https://app.example/cb#frag",
            "https://app.example/cb#",
            "http://app.example/cb",
            "http://10.0.0.1/cb",
            "http://127.0.0.2/cb",
            "http://0.0.0.0/cb",
            "http://[::ffff:127.0.0.1]/cb",
            "http://127.0.0.1.evil.example/cb",
            "http://localhost.evil.example/cb",
            "https://user:pw@app.example/cb",
            "http://localhost@evil.example/cb",
            "http://127.1/cb",
            "http://0x7f.0.0.1/cb",
            "http://2130706433/cb",
            "HTTPS://app.example/cb",
            "https://APP.example/cb",
            "https://app.example:443/cb",
            "https://app.example/a/../cb",
            "https://app.example\\@good.example/cb",
            "https://аpp.example/cb",
            "https:app.example/cb",
            "cursor:",
            "/relative",
            "",
        ] {
            assert!(validate_registered(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn matching_is_exact_except_loopback_ports() {
        assert!(matches("https://a.example/cb", "https://a.example/cb"));
        assert!(!matches("https://a.example/cb", "https://a.example/cb/"));
        assert!(!matches("https://a.example/cb", "https://a.example:444/cb"));
        assert!(!matches("https://a.example/cb", "https://A.example/cb"));
        assert!(!matches("https://a.example/cb", "https://a.example/cb?x=1"));
        assert!(matches("http://127.0.0.1/callback", "http://127.0.0.1:51234/callback"));
        assert!(matches("http://localhost:1/callback", "http://localhost:9/callback"));
        assert!(matches("http://[::1]/cb", "http://[::1]:9/cb"));
        assert!(matches("http://127.0.0.1/", "http://127.0.0.1:33418/"));
        assert!(matches("http://127.0.0.1", "http://127.0.0.1:33418"));
        assert!(!matches("http://127.0.0.1/callback", "http://127.0.0.1:5/other"));
        assert!(!matches("http://127.0.0.1/callback", "http://127.0.0.1:5/callback/"));
        assert!(!matches("http://127.0.0.1/callback", "http://127.0.0.1:5/callback?x=1"));
        assert!(!matches("http://127.0.0.1/callback", "http://127.0.0.1:5/callback#x"));
        assert!(!matches("http://127.0.0.1/callback", "http://localhost:5/callback"));
        assert!(!matches("http://127.0.0.1/callback", "http://127.1:5/callback"));
        assert!(!matches("http://127.0.0.1/callback", "https://127.0.0.1:5/callback"));
        assert!(!matches("http://127.0.0.1/callback", "http://127.0.0.1.evil.example/callback"));
        assert!(!matches("http://127.0.0.1/callback", "http://user@127.0.0.1:5/callback"));
        assert!(!matches("http://localhost/callback", "http://LOCALHOST:5/callback"));
        assert!(!matches(
            "cursor://anysphere.cursor-mcp/oauth/callback",
            "cursor://anysphere.cursor-mcp/oauth/callback/"
        ));
    }
}
