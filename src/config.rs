//! Settings: `gatehouse.toml` (if present), then `GATEHOUSE_*` environment variables, then flags.
//! Unknown keys are refused and every check names the setting, where it came from, and the fix.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::crypto::signing::SigningAlg;

mod cimd;
mod oidc;
pub use cimd::{CimdSettings, HostList, HostPattern};
pub use oidc::{
    ClientSecret, GroupRole, OidcProvider, OidcSettings, RawGroupRole, RawOidcProvider, check_provider_url,
    is_loopback_host,
};

pub const DEFAULT_CONFIG_FILE: &str = "gatehouse.toml";

/// Settings as written by the operator (before checks).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSettings {
    pub listen: String,
    pub public_url: Option<String>,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub master_key: Option<String>,
    pub signing_alg: String,
    pub access_token_ttl: String,
    pub refresh_token_ttl: String,
    pub registrations_per_minute: u32,
    pub log: String,
    /// Fetch Client ID Metadata Documents for https `client_id`s.
    pub cimd_enabled: bool,
    /// If not empty, only client IDs on these hosts (`claude.ai`, `*.example.com`) are fetched.
    pub cimd_allowed_hosts: HostList,
    /// Client IDs on these hosts are refused.
    pub cimd_denied_hosts: HostList,
    /// Local testing only: hosts whose documents may be fetched from loopback addresses.
    pub cimd_allow_loopback_hosts: HostList,
    /// PEM file of extra root certificates trusted when fetching documents.
    pub cimd_ca_file: Option<PathBuf>,
    pub cimd_cache_min_ttl: String,
    pub cimd_cache_max_ttl: String,
    pub cimd_cache_entries: usize,
    pub cimd_fetch_timeout: String,
    /// If set, `POST /register` requires `Authorization: Bearer <this>` (RFC 7591 §3).
    pub registration_initial_token: Option<String>,
    /// Registered clients never used within this long are deleted (`never` keeps them).
    pub unused_client_ttl: String,
    /// Local testing only: workspaces may trust `http://` issuers on loopback.
    pub external_issuer_allow_http_loopback: bool,
    /// At most one JWKS refetch per this long, per trusted issuer, for unknown key ids.
    pub external_jwks_min_refetch: String,
    /// Local email-and-password sign-in (off: only the identity providers sign people in).
    pub password_login: bool,
    /// Local testing only: identity providers on loopback hosts over plain http.
    pub oidc_allow_loopback_issuers: bool,
    /// The organisation's OpenID Connect identity providers.
    pub oidc_providers: Vec<RawOidcProvider>,
}

impl Default for RawSettings {
    fn default() -> Self {
        RawSettings {
            listen: "127.0.0.1:8080".into(),
            public_url: None,
            data_dir: PathBuf::from("./gatehouse-data"),
            database_url: None,
            master_key: None,
            signing_alg: "RS256".into(),
            access_token_ttl: "15m".into(),
            refresh_token_ttl: "30d".into(),
            registrations_per_minute: 20,
            log: "info".into(),
            cimd_enabled: true,
            cimd_allowed_hosts: HostList::default(),
            cimd_denied_hosts: HostList::default(),
            cimd_allow_loopback_hosts: HostList::default(),
            cimd_ca_file: None,
            cimd_cache_min_ttl: "5m".into(),
            cimd_cache_max_ttl: "24h".into(),
            cimd_cache_entries: 1_000,
            cimd_fetch_timeout: "5s".into(),
            registration_initial_token: None,
            unused_client_ttl: "7d".into(),
            external_issuer_allow_http_loopback: false,
            external_jwks_min_refetch: "10s".into(),
            password_login: true,
            oidc_allow_loopback_issuers: false,
            oidc_providers: Vec::new(),
        }
    }
}

/// Settings given as command-line flags; only those present override.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FlagSettings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
}

/// Checked settings, ready to use.
#[derive(Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    /// The issuer and base of every URL we publish; never ends with `/`.
    pub public_url: String,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub master_key: Option<String>,
    pub signing_alg: SigningAlg,
    pub access_token_ttl: i64,
    pub refresh_token_ttl: i64,
    pub registrations_per_minute: u32,
    pub log: String,
    pub cimd: CimdSettings,
    pub registration_initial_token: Option<String>,
    /// Seconds after which a registration never used is deleted; `None`: never.
    pub unused_client_ttl: Option<i64>,
    pub password_login: bool,
    pub oidc: OidcSettings,
    pub external_issuer: ExternalIssuerSettings,
}

/// How workspaces that trust an external authorization server reach it.
#[derive(Debug, Clone, Copy)]
pub struct ExternalIssuerSettings {
    pub allow_http_loopback: bool,
    pub jwks_min_refetch: i64,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("public_url", &self.public_url)
            .field("data_dir", &self.data_dir)
            .field("database_url", &self.database_url.as_deref().map(redact_url))
            .field("master_key", &self.master_key.as_ref().map(|_| "<set>"))
            .field("signing_alg", &self.signing_alg)
            .field("cimd", &self.cimd)
            .field("registration_initial_token", &self.registration_initial_token.as_ref().map(|_| "<set>"))
            .field("password_login", &self.password_login)
            .field("oidc", &self.oidc)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl Settings {
    /// The defaults, with the given data directory and database: for embedding and tests.
    pub fn defaults(data_dir: PathBuf, database_url: Option<String>) -> Result<Self, ConfigError> {
        let raw = RawSettings { data_dir, database_url, ..RawSettings::default() };
        Self::check(raw, &Figment::new())
    }

    /// Reads file, environment and flags, in that order of precedence (flags win).
    pub fn load(config_file: Option<&Path>, flags: &FlagSettings) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(RawSettings::default()));
        match config_file {
            Some(path) => {
                if !path.exists() {
                    return Err(ConfigError(format!("config file {} does not exist", path.display())));
                }
                figment = figment.merge(Toml::file_exact(path));
            }
            None => figment = figment.merge(Toml::file(DEFAULT_CONFIG_FILE)),
        }
        let figment = figment
            .merge(
                Env::prefixed("GATEHOUSE_")
                    // Variables that are not settings: the config file's path, and the test
                    // harness's own (GATEHOUSE_BIN, GATEHOUSE_TEST_*). Any other unknown one is refused.
                    // Keys reach this filter as written (upper case): compare without case.
                    .filter(|k| {
                        let k = k.as_str().to_ascii_lowercase();
                        !matches!(k.as_str(), "config" | "bin") && !k.starts_with("test_")
                    }),
            )
            .merge(Serialized::globals(flags));
        let raw: RawSettings = figment.extract().map_err(|e| ConfigError(describe_figment_error(e)))?;
        Self::check(raw, &figment)
    }

    fn check(raw: RawSettings, figment: &Figment) -> Result<Self, ConfigError> {
        let bad = |key: &str, why: String| {
            let source = figment
                .find_metadata(key)
                .map(|m| match &m.source {
                    _ if m.name.contains("environment") => format!(" (from GATEHOUSE_{})", key.to_uppercase()),
                    Some(src) => format!(" (from {} {src})", m.name),
                    None => format!(" (from {})", m.name),
                })
                .unwrap_or_default();
            ConfigError(format!("setting `{key}`{source}: {why}"))
        };
        let listen: SocketAddr = raw
            .listen
            .parse()
            .map_err(|_| bad("listen", format!("`{}` is not an address:port such as 127.0.0.1:8080", raw.listen)))?;
        let public_url = match &raw.public_url {
            Some(url) => normalize_public_url(url).map_err(|why| bad("public_url", why))?,
            None => format!("http://{listen}"),
        };
        let signing_alg = raw.signing_alg.parse::<SigningAlg>().map_err(|why| bad("signing_alg", why))?;
        let access_token_ttl = parse_duration(&raw.access_token_ttl).map_err(|why| bad("access_token_ttl", why))?;
        if !(60..=86_400).contains(&access_token_ttl) {
            return Err(bad("access_token_ttl", "must be between 1m and 24h".into()));
        }
        let refresh_token_ttl = parse_duration(&raw.refresh_token_ttl).map_err(|why| bad("refresh_token_ttl", why))?;
        if !(3_600..=366 * 86_400).contains(&refresh_token_ttl) {
            return Err(bad("refresh_token_ttl", "must be between 1h and 366d".into()));
        }
        if raw.registrations_per_minute == 0 {
            return Err(bad("registrations_per_minute", "must be at least 1".into()));
        }
        let cimd = cimd::check_cimd(&raw, listen, &bad)?;
        let oidc = oidc::check_oidc(&raw, listen, &bad)?;
        if !raw.password_login && oidc.providers.is_empty() {
            return Err(bad(
                "password_login",
                "cannot be off without an identity provider in `oidc_providers`: nobody could sign in".into(),
            ));
        }
        let registration_initial_token = match raw.registration_initial_token.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(t) if t.len() < 16 => {
                return Err(bad(
                    "registration_initial_token",
                    "must be at least 16 characters; generate one with `openssl rand -base64 32`".into(),
                ));
            }
            Some(t) => Some(t.to_owned()),
        };
        let unused_client_ttl = match raw.unused_client_ttl.trim() {
            "never" | "0" => None,
            text => {
                let ttl = parse_duration(text).map_err(|why| bad("unused_client_ttl", why))?;
                if ttl < 3_600 {
                    return Err(bad("unused_client_ttl", "must be at least 1h (or `never`)".into()));
                }
                Some(ttl)
            }
        };
        let jwks_min_refetch =
            parse_duration(&raw.external_jwks_min_refetch).map_err(|why| bad("external_jwks_min_refetch", why))?;
        if !(1..=3_600).contains(&jwks_min_refetch) {
            return Err(bad("external_jwks_min_refetch", "must be between 1s and 1h".into()));
        }
        let external_issuer =
            ExternalIssuerSettings { allow_http_loopback: raw.external_issuer_allow_http_loopback, jwks_min_refetch };
        if let Some(url) = &raw.database_url {
            let known = ["postgres://", "postgresql://", "sqlite:"];
            if !known.iter().any(|p| url.starts_with(p)) {
                return Err(bad(
                    "database_url",
                    "must start with postgres:// (or leave it unset for SQLite in the data directory)".into(),
                ));
            }
        }
        Ok(Settings {
            listen,
            public_url,
            data_dir: raw.data_dir,
            database_url: raw.database_url,
            master_key: raw.master_key,
            signing_alg,
            access_token_ttl,
            refresh_token_ttl,
            registrations_per_minute: raw.registrations_per_minute,
            log: raw.log,
            cimd,
            registration_initial_token,
            unused_client_ttl,
            external_issuer,
            password_login: raw.password_login,
            oidc,
        })
    }

    /// Whether cookies can carry the `Secure` attribute (the public URL is https).
    pub fn is_https(&self) -> bool {
        self.public_url.starts_with("https://")
    }
}

fn describe_figment_error(e: figment::Error) -> String {
    let mut out = Vec::new();
    for err in e {
        let source = match (&err.metadata, err.path.first()) {
            (Some(m), _) => match &m.source {
                Some(src) => format!(" in {} {src}", m.name),
                None => format!(" in {}", m.name),
            },
            _ => String::new(),
        };
        out.push(format!("invalid settings{source}: {}", err.kind));
    }
    out.join("\n")
}

/// Checks a public URL and strips a trailing slash, so the issuer is stable byte for byte.
pub fn normalize_public_url(input: &str) -> Result<String, String> {
    let url = url::Url::parse(input).map_err(|e| format!("`{input}` is not a URL ({e})"))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(format!("`{input}` must start with https:// (or http:// for local use)"));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err(format!("`{input}` must not carry credentials, a query or a fragment"));
    }
    let text = url.as_str().trim_end_matches('/').to_owned();
    Ok(text)
}

/// Parses `90d`, `12h`, `15m`, `30s`, `1y` (365 days) or bare seconds into seconds.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: i64 = digits.parse().map_err(|_| format!("`{text}` is not a duration such as 90d, 12h, 15m or 30s"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        "y" => 365 * 86_400,
        _ => return Err(format!("`{text}` is not a duration such as 90d, 12h, 15m or 30s")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("`{text}` is too long"))
}

/// A database URL with any password replaced, for logs.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return figment::Error
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90d"), Ok(90 * 86_400));
        assert_eq!(parse_duration("15m"), Ok(900));
        assert_eq!(parse_duration("42"), Ok(42));
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_duration("1y"), Ok(365 * 86_400));
        assert!(parse_duration("3x").is_err());
    }

    #[test]
    fn public_url_is_normalised_and_checked() {
        assert_eq!(normalize_public_url("https://Gate.Example.com/").unwrap(), "https://gate.example.com");
        assert_eq!(normalize_public_url("https://x.example/base/").unwrap(), "https://x.example/base");
        assert!(normalize_public_url("ftp://x").is_err());
        assert!(normalize_public_url("https://x/?a=b").is_err());
    }

    // Tests that read the environment run inside figment's Jail, which serialises them and
    // gives each a scratch working directory.
    #[test]
    fn unknown_keys_in_the_file_are_named() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("g.toml", "listne = \"127.0.0.1:1\"\n")?;
            let err = Settings::load(Some(Path::new("g.toml")), &FlagSettings::default()).unwrap_err().to_string();
            assert!(err.contains("listne"), "{err}");
            assert!(err.contains("g.toml"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn unknown_environment_variables_are_named() {
        figment::Jail::expect_with(|jail| {
            // The harness's own variables and the config file's path are not settings.
            jail.set_env("GATEHOUSE_TEST_DATABASE_URL", "postgres://ignored");
            jail.set_env("GATEHOUSE_BIN", "/usr/bin/gatehouse");
            jail.set_env("GATEHOUSE_CONFIG", "elsewhere.toml");
            assert!(Settings::load(None, &FlagSettings::default()).is_ok());
            jail.set_env("GATEHOUSE_PUBLIK_URL", "https://x.example");
            let err = Settings::load(None, &FlagSettings::default()).unwrap_err().to_string();
            assert!(err.contains("publik_url"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn precedence_is_file_then_environment_then_flags() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("gatehouse.toml", "listen = \"127.0.0.1:1111\"\nsigning_alg = \"ES256\"\n")?;
            let s = Settings::load(None, &FlagSettings::default()).unwrap();
            assert_eq!(s.listen.port(), 1111);
            assert_eq!(s.signing_alg, SigningAlg::ES256);
            jail.set_env("GATEHOUSE_LISTEN", "127.0.0.1:2222");
            assert_eq!(Settings::load(None, &FlagSettings::default()).unwrap().listen.port(), 2222);
            let flags = FlagSettings { listen: Some("127.0.0.1:3333".into()), ..Default::default() };
            let s = Settings::load(None, &flags).unwrap();
            assert_eq!(s.public_url, "http://127.0.0.1:3333");
            Ok(())
        });
    }

    #[test]
    fn bad_values_name_the_setting_and_where_it_came_from() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("g.toml", "listen = \"nowhere\"\n")?;
            let err = Settings::load(Some(Path::new("g.toml")), &FlagSettings::default()).unwrap_err().to_string();
            assert!(err.contains("setting `listen`") && err.contains("g.toml"), "{err}");
            jail.set_env("GATEHOUSE_ACCESS_TOKEN_TTL", "forever");
            let err = Settings::load(None, &FlagSettings::default()).unwrap_err().to_string();
            assert!(err.contains("access_token_ttl") && err.contains("GATEHOUSE_ACCESS_TOKEN_TTL"), "{err}");
            Ok(())
        });
    }
}
