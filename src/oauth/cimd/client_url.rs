//! Which `client_id` URLs may be fetched (draft-ietf-oauth-client-id-metadata-document §3 and
//! §8.6, plus this deployment's host lists), checked before any network traffic.

use std::net::IpAddr;

use url::{Host, Url};

use super::CimdError;
use super::resolver::special_use;
use crate::config::CimdSettings;

/// Longest client ID URL accepted.
const MAX_LEN: usize = 2_000;

/// Whether a `client_id` is a URL, to be resolved as a metadata document rather than looked up.
pub fn looks_like_url(client_id: &str) -> bool {
    let lower = client_id.get(..8).map(str::to_ascii_lowercase).unwrap_or_default();
    lower.starts_with("https://") || lower.starts_with("http://")
}

/// Checks a client ID URL; returns it parsed.
pub fn check(raw: &str, settings: &CimdSettings) -> Result<Url, CimdError> {
    let bad = |why: &str| CimdError::BadUrl(why.to_owned());
    if raw.len() > MAX_LEN {
        return Err(bad("it is longer than 2000 characters"));
    }
    if !raw.is_ascii() || raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("it contains spaces, control or non-ASCII characters"));
    }
    let url = Url::parse(raw).map_err(|_| bad("it is not a URL"))?;
    // Compared as strings everywhere (§3), so it must be written the way it is read: this
    // refuses upper-case hosts, explicit default ports, backslashes and dot segments, which a
    // parser would silently rewrite.
    if url.as_str() != raw {
        return Err(bad("it is not in canonical form (lower-case host, no default port, no dot segments)"));
    }
    if url.fragment().is_some() {
        return Err(bad("it has a fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("it contains credentials"));
    }
    if url.path() == "/" || url.path().is_empty() {
        return Err(bad("it has no path (the document must live at a path such as /oauth/client.json)"));
    }
    let Some(host) = url.host() else { return Err(bad("it has no host")) };
    let host_text = url.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_owned();
    let loopback_allowed = settings.allow_loopback_hosts.iter().any(|h| h.trim_matches(['[', ']']) == host_text);
    match url.scheme() {
        "https" => {}
        "http" if loopback_allowed => {}
        "http" => return Err(bad("it is not https")),
        _ => return Err(bad("it is not an https URL")),
    }
    match host {
        Host::Ipv4(ip) => check_literal(IpAddr::V4(ip), loopback_allowed)?,
        Host::Ipv6(ip) => check_literal(IpAddr::V6(ip), loopback_allowed)?,
        Host::Domain(_) => {}
    }
    if settings.denied_hosts.iter().any(|p| p.matches(&host_text)) {
        return Err(CimdError::HostDenied(host_text));
    }
    if !settings.allowed_hosts.is_empty() && !settings.allowed_hosts.iter().any(|p| p.matches(&host_text)) {
        return Err(CimdError::HostNotAllowed(host_text));
    }
    Ok(url)
}

/// IP literals are refused: a client that publishes its identity names itself by domain. The
/// one exception is a loopback literal named in the local-testing allowance.
fn check_literal(ip: IpAddr, loopback_allowed: bool) -> Result<(), CimdError> {
    match (loopback_allowed, special_use(ip)) {
        (true, _) => Ok(()),
        (false, Some(reason)) => Err(CimdError::PrivateAddress(format!("{ip} is a {reason} address"))),
        (false, None) => Err(CimdError::BadUrl(format!("its host is the IP address {ip}; client IDs name a domain"))),
    }
}
