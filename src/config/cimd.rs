//! Settings for how clients get an identity: Client ID Metadata Document fetching (host lists,
//! the local-testing loopback allowance, extra roots, cache bounds, timeout).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{ConfigError, RawSettings, parse_duration};

/// A list of host names, given as a TOML array or as one string separated by commas or spaces
/// (the form environment variables allow).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum HostList {
    Text(String),
    List(Vec<String>),
}

impl Default for HostList {
    fn default() -> Self {
        HostList::List(Vec::new())
    }
}

impl HostList {
    fn entries(&self) -> Vec<String> {
        let items: Vec<&str> = match self {
            HostList::Text(t) => t.split([',', ' ']).collect(),
            HostList::List(l) => l.iter().map(String::as_str).collect(),
        };
        items.iter().map(|h| h.trim().to_ascii_lowercase()).filter(|h| !h.is_empty()).collect()
    }
}

/// A host, or every subdomain of one (`*.example.com`), in an allow or deny list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Exact(String),
    /// Held with its leading dot: `.example.com`.
    Subdomains(String),
}

impl HostPattern {
    fn parse(text: &str) -> Result<Self, String> {
        let (subdomains, host) = match text.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let valid = !host.is_empty()
            && host.len() <= 253
            && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            && !host.starts_with('.')
            && !host.ends_with('.');
        if !valid {
            return Err(format!("`{text}` is not a host name such as claude.ai or *.example.com"));
        }
        Ok(if subdomains { HostPattern::Subdomains(format!(".{host}")) } else { HostPattern::Exact(host.to_owned()) })
    }

    /// `host` is lower case, as URL parsing leaves it.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(h) => host == h,
            HostPattern::Subdomains(suffix) => host.ends_with(suffix.as_str()),
        }
    }
}

/// How Client ID Metadata Documents are fetched and cached.
#[derive(Debug, Clone)]
pub struct CimdSettings {
    pub enabled: bool,
    pub allowed_hosts: Vec<HostPattern>,
    pub denied_hosts: Vec<HostPattern>,
    /// Host names (or loopback IP literals) whose documents may come from loopback addresses,
    /// over http or https. Empty unless set for local testing.
    pub allow_loopback_hosts: Vec<String>,
    pub ca_file: Option<PathBuf>,
    /// Bounds on how long a document is cached (seconds); `max-age` is clamped into them, and a
    /// document with no cache headers is kept for the minimum.
    pub cache_min_ttl: i64,
    pub cache_max_ttl: i64,
    pub cache_entries: usize,
    /// Whole fetch, connection included.
    pub fetch_timeout_secs: u64,
}

/// Checks the Client ID Metadata Document settings.
pub(super) fn check_cimd(
    raw: &RawSettings,
    listen: SocketAddr,
    bad: &dyn Fn(&str, String) -> ConfigError,
) -> Result<CimdSettings, ConfigError> {
    let patterns = |key: &str, list: &HostList| -> Result<Vec<HostPattern>, ConfigError> {
        list.entries().iter().map(|h| HostPattern::parse(h).map_err(|why| bad(key, why))).collect()
    };
    let allowed_hosts = patterns("cimd_allowed_hosts", &raw.cimd_allowed_hosts)?;
    let denied_hosts = patterns("cimd_denied_hosts", &raw.cimd_denied_hosts)?;
    let allow_loopback_hosts = raw.cimd_allow_loopback_hosts.entries();
    for host in &allow_loopback_hosts {
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        match literal.parse::<std::net::IpAddr>() {
            Ok(ip) if !ip.is_loopback() => {
                return Err(bad("cimd_allow_loopback_hosts", format!("`{host}` is not a loopback address")));
            }
            Ok(_) => {}
            Err(_) => {
                HostPattern::parse(host).map_err(|why| bad("cimd_allow_loopback_hosts", why))?;
            }
        }
    }
    // draft-ietf-oauth-client-id-metadata-document §8.6: only a server that itself runs on
    // loopback may fetch documents from loopback; never a deployment others reach.
    if !allow_loopback_hosts.is_empty() && !listen.ip().is_loopback() {
        return Err(bad(
            "cimd_allow_loopback_hosts",
            "is for local testing only: it needs `listen` on a loopback address such as 127.0.0.1".into(),
        ));
    }
    if let Some(path) = &raw.cimd_ca_file
        && !path.is_file()
    {
        return Err(bad("cimd_ca_file", format!("{} is not a readable file", path.display())));
    }
    let cache_min_ttl = parse_duration(&raw.cimd_cache_min_ttl).map_err(|why| bad("cimd_cache_min_ttl", why))?;
    let cache_max_ttl = parse_duration(&raw.cimd_cache_max_ttl).map_err(|why| bad("cimd_cache_max_ttl", why))?;
    if cache_max_ttl > 7 * 86_400 {
        return Err(bad("cimd_cache_max_ttl", "must be at most 7d".into()));
    }
    if cache_min_ttl > cache_max_ttl {
        return Err(bad("cimd_cache_min_ttl", "must not exceed cimd_cache_max_ttl".into()));
    }
    if !(1..=100_000).contains(&raw.cimd_cache_entries) {
        return Err(bad("cimd_cache_entries", "must be between 1 and 100000".into()));
    }
    let timeout = parse_duration(&raw.cimd_fetch_timeout).map_err(|why| bad("cimd_fetch_timeout", why))?;
    if !(1..=30).contains(&timeout) {
        return Err(bad("cimd_fetch_timeout", "must be between 1s and 30s".into()));
    }
    Ok(CimdSettings {
        enabled: raw.cimd_enabled,
        allowed_hosts,
        denied_hosts,
        allow_loopback_hosts,
        ca_file: raw.cimd_ca_file.clone(),
        cache_min_ttl,
        cache_max_ttl,
        cache_entries: raw.cimd_cache_entries,
        fetch_timeout_secs: timeout.unsigned_abs(),
    })
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return figment::Error
mod tests {
    use super::*;
    use crate::config::{FlagSettings, Settings};

    #[test]
    fn client_registration_settings() {
        figment::Jail::expect_with(|jail| {
            let s = Settings::load(None, &FlagSettings::default()).unwrap();
            assert!(s.cimd.enabled && s.cimd.allow_loopback_hosts.is_empty(), "loopback documents are off by default");
            assert_eq!((s.cimd.cache_min_ttl, s.cimd.cache_max_ttl), (300, 86_400));
            assert_eq!(s.unused_client_ttl, Some(7 * 86_400));
            // Lists come as one comma- or space-separated variable, or as a TOML array.
            jail.set_env("GATEHOUSE_CIMD_ALLOWED_HOSTS", "claude.ai, *.Example.com chatgpt.com");
            jail.set_env("GATEHOUSE_CIMD_ALLOW_LOOPBACK_HOSTS", "localhost");
            jail.set_env("GATEHOUSE_UNUSED_CLIENT_TTL", "never");
            let s = Settings::load(None, &FlagSettings::default()).unwrap();
            assert_eq!(
                s.cimd.allowed_hosts,
                vec![
                    HostPattern::Exact("claude.ai".into()),
                    HostPattern::Subdomains(".example.com".into()),
                    HostPattern::Exact("chatgpt.com".into())
                ]
            );
            assert!(s.cimd.allowed_hosts[1].matches("app.example.com"));
            assert!(
                !s.cimd.allowed_hosts[1].matches("example.com") && !s.cimd.allowed_hosts[1].matches("evilexample.com")
            );
            assert_eq!(s.cimd.allow_loopback_hosts, vec!["localhost".to_owned()]);
            assert_eq!(s.unused_client_ttl, None);
            jail.create_file("gatehouse.toml", "cimd_denied_hosts = [\"evil.example\"]\n")?;
            let s = Settings::load(None, &FlagSettings::default()).unwrap();
            assert_eq!(s.cimd.denied_hosts, vec![HostPattern::Exact("evil.example".into())]);
            Ok(())
        });
    }

    #[test]
    fn client_registration_settings_are_checked() {
        figment::Jail::expect_with(|jail| {
            let mut refused = |var: &str, value: &str, says: &str| {
                jail.clear_env();
                jail.set_env(var, value);
                let err = Settings::load(None, &FlagSettings::default()).unwrap_err().to_string();
                assert!(
                    err.contains(&var["GATEHOUSE_".len()..].to_lowercase()) && err.contains(says),
                    "{var}={value}: {err}"
                );
            };
            refused("GATEHOUSE_CIMD_ALLOW_LOOPBACK_HOSTS", "10.0.0.1", "not a loopback address");
            refused("GATEHOUSE_CIMD_ALLOWED_HOSTS", "https://claude.ai", "not a host name");
            refused("GATEHOUSE_REGISTRATION_INITIAL_TOKEN", "short", "at least 16");
            refused("GATEHOUSE_UNUSED_CLIENT_TTL", "10m", "at least 1h");
            refused("GATEHOUSE_CIMD_FETCH_TIMEOUT", "1m", "between 1s and 30s");
            refused("GATEHOUSE_CIMD_CA_FILE", "/nonexistent/ca.pem", "not a readable file");
            jail.clear_env();
            jail.set_env("GATEHOUSE_CIMD_CACHE_MIN_TTL", "2d");
            let err = Settings::load(None, &FlagSettings::default()).unwrap_err().to_string();
            assert!(err.contains("must not exceed cimd_cache_max_ttl"), "{err}");
            // Loopback documents only for a server that itself listens on loopback (draft §8.6).
            jail.clear_env();
            jail.set_env("GATEHOUSE_CIMD_ALLOW_LOOPBACK_HOSTS", "localhost");
            jail.set_env("GATEHOUSE_LISTEN", "0.0.0.0:8080");
            let err = Settings::load(None, &FlagSettings::default()).unwrap_err().to_string();
            assert!(err.contains("local testing only"), "{err}");
            Ok(())
        });
    }
}
