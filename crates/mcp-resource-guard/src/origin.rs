//! DNS-rebinding defence for an MCP endpoint (MCP Streamable HTTP: servers must validate
//! Origin). A rebinding attack arrives with the attacker's host name in `Host` and the
//! attacker's page in `Origin`; ours name the public URL. Requests without `Origin` come from
//! non-browser clients and pass.

use axum::http::{HeaderMap, header};

use crate::challenge::Refusal;

pub fn check(headers: &HeaderMap, public_url: &str) -> Result<(), Refusal> {
    OriginPolicy::new(public_url).check(headers)
}

/// What [`check`] compares against, worked out once from the public URL: a server checks
/// every request, and parsing the URL each time was a visible part of a cheap request.
#[derive(Debug, Clone)]
pub struct OriginPolicy {
    /// `None` when the public URL is unusable (no host): nothing is checked, as before.
    expected: Option<Expected>,
}

#[derive(Debug, Clone)]
struct Expected {
    host: String,
    origin: String,
}

impl OriginPolicy {
    pub fn new(public_url: &str) -> Self {
        let expected = url::Url::parse(public_url).ok().and_then(|public| {
            let host = match (public.host_str(), public.port()) {
                (Some(h), Some(p)) => format!("{h}:{p}"),
                (Some(h), None) => h.to_owned(),
                _ => return None,
            };
            Some(Expected { host, origin: public.origin().ascii_serialization() })
        });
        OriginPolicy { expected }
    }

    pub fn check(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let Some(Expected { host: expected_host, origin: public_origin }) = &self.expected else {
            return Ok(());
        };
        if let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok())
            && !host.eq_ignore_ascii_case(expected_host)
        {
            return Err(Refusal::ForbiddenOrigin(format!(
                "Host `{}` is not this server's ({expected_host}); if Gatehouse sits behind a proxy, set public_url to the URL clients use",
                host.chars().take(100).collect::<String>()
            )));
        }
        if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok())
            && !origin.eq_ignore_ascii_case(public_origin)
            && !is_loopback_origin(origin)
        {
            return Err(Refusal::ForbiddenOrigin(format!(
                "Origin `{}` may not call this MCP server",
                origin.chars().take(100).collect::<String>()
            )));
        }
        Ok(())
    }
}

/// Local tools in a browser (the MCP Inspector on localhost) are allowed: a page on
/// loopback is already inside the machine a rebinding attack tries to reach.
fn is_loopback_origin(origin: &str) -> bool {
    url::Url::parse(origin).is_ok_and(|u| is_loopback(&u))
}

/// `127.0.0.1`, `[::1]` or `localhost`.
pub fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip == std::net::Ipv4Addr::LOCALHOST,
        Some(url::Host::Ipv6(ip)) => ip == std::net::Ipv6Addr::LOCALHOST,
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(host: Option<&'static str>, origin: Option<&'static str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = host {
            h.insert(header::HOST, HeaderValue::from_static(v));
        }
        if let Some(v) = origin {
            h.insert(header::ORIGIN, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn rebinding_is_refused() {
        let public = "https://gate.example.com";
        assert!(check(&headers(Some("gate.example.com"), None), public).is_ok());
        assert!(check(&headers(Some("GATE.example.com"), Some("https://gate.example.com")), public).is_ok());
        assert!(check(&headers(Some("gate.example.com"), Some("http://localhost:6274")), public).is_ok());
        assert!(check(&headers(Some("evil.example.com"), None), public).is_err());
        assert!(check(&headers(Some("gate.example.com"), Some("https://evil.example.com")), public).is_err());
        assert!(check(&headers(Some("127.0.0.1:8080"), None), "http://127.0.0.1:8080").is_ok());
        assert!(check(&headers(Some("127.0.0.1:9999"), None), "http://127.0.0.1:8080").is_err());
    }
}
