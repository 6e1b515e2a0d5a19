//! The SSRF guard for metadata fetches: a DNS resolver that hands the HTTP client only public
//! unicast addresses (RFC 6890 special-use ranges, private, loopback, link-local, CGNAT,
//! multicast, documentation, IPv4-mapped and translated IPv6 are all refused).
//!
//! The check runs inside the resolver the HTTP client connects with, so the address checked is
//! the address connected to: a name that resolves to a public address when checked and to
//! 127.0.0.1 a moment later (DNS rebinding) cannot slip between the two. IP literals never reach
//! a resolver; [`super::client_url`] checks them with [`special_use`] before fetching.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Why an address may not be fetched from, if it may not.
pub fn special_use(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => special_use_v4(v4),
        IpAddr::V6(v6) => special_use_v6(v6),
    }
}

fn special_use_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    let reason = match (a, b, c) {
        (0, _, _) => "\"this network\" (0.0.0.0/8)",
        (10, _, _) => "private (10.0.0.0/8)",
        (100, 64..=127, _) => "shared address space (100.64.0.0/10, carrier-grade NAT)",
        (127, _, _) => "loopback (127.0.0.0/8)",
        (169, 254, _) => "link-local (169.254.0.0/16, where cloud metadata services live)",
        (172, 16..=31, _) => "private (172.16.0.0/12)",
        (192, 0, 0) => "IETF protocol assignments (192.0.0.0/24)",
        (192, 0, 2) => "documentation (192.0.2.0/24)",
        (192, 88, 99) => "6to4 relay anycast (192.88.99.0/24)",
        (192, 168, _) => "private (192.168.0.0/16)",
        (198, 18..=19, _) => "benchmarking (198.18.0.0/15)",
        (198, 51, 100) => "documentation (198.51.100.0/24)",
        (203, 0, 113) => "documentation (203.0.113.0/24)",
        (224..=239, _, _) => "multicast (224.0.0.0/4)",
        (240..=255, _, _) => "reserved (240.0.0.0/4) or broadcast",
        _ => return None,
    };
    Some(reason)
}

fn special_use_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    let reason = if ip.is_unspecified() {
        "unspecified (::)"
    } else if ip.is_loopback() {
        "loopback (::1)"
    } else if s[..5] == [0; 5] && s[5] == 0xffff {
        "IPv4-mapped (::ffff:0:0/96)"
    } else if s[..6] == [0; 6] {
        "IPv4-compatible (::/96)"
    } else if s[0] == 0x64 && s[1] == 0xff9b {
        "NAT64 (64:ff9b::/96, 64:ff9b:1::/48)"
    } else if s[0] == 0x100 && s[1..4] == [0; 3] {
        "discard-only (100::/64)"
    } else if s[0] == 0x2001 && s[1] < 0x200 {
        "IETF protocol assignments (2001::/23, Teredo included)"
    } else if s[0] == 0x2001 && s[1] == 0xdb8 {
        "documentation (2001:db8::/32)"
    } else if s[0] == 0x2002 {
        "6to4 (2002::/16)"
    } else if s[0] == 0x3fff && s[1] < 0x1000 {
        "documentation (3fff::/20)"
    } else if s[0] & 0xfe00 == 0xfc00 {
        "unique local (fc00::/7)"
    } else if s[0] & 0xffc0 == 0xfe80 {
        "link-local (fe80::/10)"
    } else if s[0] & 0xffc0 == 0xfec0 {
        "site-local (fec0::/10)"
    } else if s[0] & 0xff00 == 0xff00 {
        "multicast (ff00::/8)"
    } else if s[0] & 0xe000 != 0x2000 {
        "not global unicast (outside 2000::/3)"
    } else {
        return None;
    };
    Some(reason)
}

/// Loopback in the sense of the local-testing allowance: 127.0.0.0/8 or ::1.
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback(),
    }
}

/// A resolution the guard refused; found again in the HTTP client's error chain.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{host} resolves to {addr}, a {reason} address")]
pub struct AddressRefused {
    pub host: String,
    pub addr: IpAddr,
    pub reason: &'static str,
}

/// Checks every address a name resolved to. All must be acceptable, so a name cannot mix a
/// public address with an internal one and hope the internal one is tried.
pub fn check_addresses(host: &str, addrs: &[SocketAddr], loopback_allowed: bool) -> Result<(), AddressRefused> {
    for addr in addrs {
        let ip = addr.ip();
        let refusal = match (loopback_allowed, special_use(ip)) {
            // The local-testing allowance lets the named host be loopback, and nothing else.
            (true, _) if is_loopback(ip) => None,
            (true, _) => Some("non-loopback (this host may only be fetched from loopback)"),
            (false, reason) => reason,
        };
        if let Some(reason) = refusal {
            return Err(AddressRefused { host: host.to_owned(), addr: ip, reason });
        }
    }
    Ok(())
}

/// The resolver given to the metadata-fetching HTTP client.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    /// Lower-case host names allowed to resolve to loopback (local testing only).
    loopback_hosts: Arc<Vec<String>>,
}

impl GuardedResolver {
    pub fn new(loopback_hosts: Vec<String>) -> Self {
        GuardedResolver { loopback_hosts: Arc::new(loopback_hosts) }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().trim_end_matches('.').to_ascii_lowercase();
        let loopback_allowed = self.loopback_hosts.contains(&host);
        Box::pin(async move {
            // getaddrinfo runs on tokio's blocking pool, off the async workers.
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if addrs.is_empty() {
                return Err(format!("{host} has no addresses").into());
            }
            check_addresses(&host, &addrs, loopback_allowed)?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn special_use_ranges_are_refused_and_public_ones_pass() {
        for bad in [
            "0.0.0.0",
            "10.1.2.3",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "127.255.0.1",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.251",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:93.184.216.34",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "2001::1",
            "2001:db8::1",
            "2002:7f00:1::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "3fff::1",
        ] {
            assert!(special_use(ip(bad)).is_some(), "{bad} should be refused");
        }
        for good in ["93.184.216.34", "1.1.1.1", "100.63.255.255", "172.32.0.1", "2606:4700::1111", "2a00:1450::1"] {
            assert_eq!(special_use(ip(good)), None, "{good} is public");
        }
    }

    #[test]
    fn a_name_resolving_to_loopback_is_refused_unless_allowed() {
        let loopback = [SocketAddr::new(ip("127.0.0.1"), 443), SocketAddr::new(ip("::1"), 443)];
        let err = check_addresses("rebind.example", &loopback, false).unwrap_err();
        assert_eq!(err.addr, ip("127.0.0.1"));
        assert!(err.to_string().contains("loopback"), "{err}");
        assert!(check_addresses("localhost", &loopback, true).is_ok());
        // The allowance covers loopback only, not the rest of the private ranges.
        let private = [SocketAddr::new(ip("10.0.0.5"), 443)];
        assert!(check_addresses("localhost", &private, true).is_err());
        // One internal address among public ones spoils the name.
        let mixed = [SocketAddr::new(ip("93.184.216.34"), 443), SocketAddr::new(ip("169.254.169.254"), 443)];
        assert!(check_addresses("mixed.example", &mixed, false).is_err());
        let public = [SocketAddr::new(ip("93.184.216.34"), 443)];
        assert!(check_addresses("example.com", &public, false).is_ok());
    }
}
