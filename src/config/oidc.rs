//! Settings for signing people in through the organisation's OpenID Connect identity providers
//! (`[[oidc_providers]]` in gatehouse.toml), and for switching local passwords off.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{ConfigError, RawSettings};
use crate::workspace::{Role, validate_slug};

/// One identity provider as written in the settings file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawOidcProvider {
    /// Used in URLs: `/login/oidc/{id}` and its callback.
    pub id: String,
    /// Shown on the login button ("Continue with ..."); defaults to the id.
    pub name: Option<String>,
    /// Exactly as the provider's ID tokens carry it in `iss`.
    pub issuer: String,
    pub client_id: String,
    /// The name of an environment variable holding the client secret.
    pub client_secret_env: Option<String>,
    /// A file holding the client secret (surrounding whitespace is ignored).
    pub client_secret_file: Option<PathBuf>,
    pub scopes: Option<Vec<String>>,
    /// The claim that identifies the person for linking (default `sub`).
    pub subject_claim: Option<String>,
    /// The claim holding the email shown and stored (default `email`).
    pub email_claim: Option<String>,
    #[serde(default)]
    pub allowed_email_domains: Vec<String>,
    /// The claim listing the person's groups; memberships follow it when set.
    pub groups_claim: Option<String>,
    #[serde(default)]
    pub group_roles: Vec<RawGroupRole>,
    /// Link a first sign-in to an existing account with the same email when the provider
    /// says the email is verified (`email_verified: true`). Off: such a sign-in is refused.
    #[serde(default)]
    pub link_existing_accounts: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawGroupRole {
    pub group: String,
    pub workspace: String,
    pub role: Option<String>,
}

/// A client secret: never printed.
#[derive(Clone)]
pub struct ClientSecret(String);

impl ClientSecret {
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn new(secret: impl Into<String>) -> Self {
        ClientSecret(secret.into())
    }
}

impl std::fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<secret>")
    }
}

/// A group value that gives a role in a workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRole {
    pub group: String,
    pub workspace: String,
    pub role: Role,
}

/// One checked identity provider.
#[derive(Debug, Clone)]
pub struct OidcProvider {
    pub id: String,
    pub name: String,
    pub issuer: String,
    pub client_id: String,
    /// `None`: a public client (PKCE only, no client authentication).
    pub client_secret: Option<ClientSecret>,
    pub scopes: Vec<String>,
    pub subject_claim: String,
    pub email_claim: String,
    /// Lower case; empty means any domain.
    pub allowed_email_domains: Vec<String>,
    pub groups_claim: Option<String>,
    pub group_roles: Vec<GroupRole>,
    pub link_existing_accounts: bool,
}

impl OidcProvider {
    /// A provider with the defaults, for tests and embedding.
    pub fn new(id: &str, issuer: &str, client_id: &str) -> Self {
        OidcProvider {
            id: id.to_owned(),
            name: id.to_owned(),
            issuer: issuer.to_owned(),
            client_id: client_id.to_owned(),
            client_secret: None,
            scopes: default_scopes(),
            subject_claim: "sub".into(),
            email_claim: "email".into(),
            allowed_email_domains: Vec::new(),
            groups_claim: None,
            group_roles: Vec::new(),
            link_existing_accounts: false,
        }
    }

    /// The workspaces whose memberships this provider's group claims decide.
    pub fn managed_workspaces(&self) -> Vec<&str> {
        let mut slugs: Vec<&str> = self.group_roles.iter().map(|g| g.workspace.as_str()).collect();
        slugs.sort_unstable();
        slugs.dedup();
        slugs
    }
}

fn default_scopes() -> Vec<String> {
    ["openid", "email", "profile"].iter().map(|s| (*s).to_owned()).collect()
}

#[derive(Debug, Clone, Default)]
pub struct OidcSettings {
    pub providers: Vec<OidcProvider>,
    /// Local testing only: issuers on loopback hosts over plain http.
    pub allow_loopback_issuers: bool,
}

/// Whether `host` names this machine (an IP literal or `localhost`).
pub fn is_loopback_host(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    }
}

/// Checks an issuer (or endpoint) URL: https, or http on loopback when allowed.
pub fn check_provider_url(text: &str, allow_loopback: bool) -> Result<url::Url, String> {
    let url = url::Url::parse(text).map_err(|e| format!("`{text}` is not a URL ({e})"))?;
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err(format!("`{text}` must not carry credentials, a query or a fragment"));
    }
    let loopback = url.host().is_some_and(|h| is_loopback_host(&h));
    match url.scheme() {
        "https" if !loopback || allow_loopback => Ok(url),
        "http" if loopback && allow_loopback => Ok(url),
        _ if loopback => Err(format!(
            "`{text}` is on a loopback host: that needs `oidc_allow_loopback_issuers = true` (local testing only)"
        )),
        _ => Err(format!("`{text}` must start with https://")),
    }
}

pub(super) fn check_oidc(
    raw: &RawSettings,
    listen: SocketAddr,
    bad: &dyn Fn(&str, String) -> ConfigError,
) -> Result<OidcSettings, ConfigError> {
    if raw.oidc_allow_loopback_issuers && !listen.ip().is_loopback() {
        return Err(bad(
            "oidc_allow_loopback_issuers",
            "is for local testing only: it needs `listen` on a loopback address such as 127.0.0.1".into(),
        ));
    }
    let mut providers: Vec<OidcProvider> = Vec::new();
    for (i, p) in raw.oidc_providers.iter().enumerate() {
        let key = "oidc_providers";
        let fail = |why: String| bad(key, format!("provider #{} (`{}`): {why}", i + 1, p.id));
        validate_slug(&p.id).map_err(|_| fail("`id` must be 1-63 lowercase letters, digits and hyphens".into()))?;
        if providers.iter().any(|q| q.id == p.id) {
            return Err(fail("another provider has the same `id`".into()));
        }
        check_provider_url(&p.issuer, raw.oidc_allow_loopback_issuers).map_err(|why| fail(format!("issuer {why}")))?;
        if p.client_id.trim().is_empty() {
            return Err(fail("`client_id` is empty".into()));
        }
        let client_secret = match (&p.client_secret_env, &p.client_secret_file) {
            (Some(_), Some(_)) => return Err(fail("set `client_secret_env` or `client_secret_file`, not both".into())),
            (Some(var), None) => match std::env::var(var) {
                Ok(v) if !v.trim().is_empty() => Some(ClientSecret(v.trim().to_owned())),
                _ => return Err(fail(format!("the environment variable {var} (client_secret_env) is not set"))),
            },
            (None, Some(path)) => match std::fs::read_to_string(path) {
                Ok(v) if !v.trim().is_empty() => Some(ClientSecret(v.trim().to_owned())),
                Ok(_) => return Err(fail(format!("{} (client_secret_file) is empty", path.display()))),
                Err(e) => return Err(fail(format!("cannot read {} (client_secret_file): {e}", path.display()))),
            },
            (None, None) => None,
        };
        let mut scopes = p.scopes.clone().unwrap_or_else(default_scopes);
        if !scopes.iter().any(|s| s == "openid") {
            scopes.insert(0, "openid".into());
        }
        if scopes.iter().any(|s| s.is_empty() || s.contains(char::is_whitespace)) {
            return Err(fail("`scopes` must be single words such as openid, email, groups".into()));
        }
        let mut group_roles = Vec::new();
        for g in &p.group_roles {
            validate_slug(&g.workspace).map_err(|why| fail(format!("group_roles: {why}")))?;
            let role = g.role.as_deref().unwrap_or("member").parse::<Role>().map_err(&fail)?;
            if g.group.is_empty() {
                return Err(fail("group_roles: `group` is empty".into()));
            }
            group_roles.push(GroupRole { group: g.group.clone(), workspace: g.workspace.clone(), role });
        }
        if !group_roles.is_empty() && p.groups_claim.is_none() {
            return Err(fail("`group_roles` needs `groups_claim` (the claim listing the person's groups)".into()));
        }
        providers.push(OidcProvider {
            id: p.id.clone(),
            name: p.name.clone().unwrap_or_else(|| p.id.clone()),
            issuer: p.issuer.clone(),
            client_id: p.client_id.clone(),
            client_secret,
            scopes,
            subject_claim: p.subject_claim.clone().unwrap_or_else(|| "sub".into()),
            email_claim: p.email_claim.clone().unwrap_or_else(|| "email".into()),
            allowed_email_domains: p
                .allowed_email_domains
                .iter()
                .map(|d| d.trim().trim_start_matches('@').to_ascii_lowercase())
                .filter(|d| !d.is_empty())
                .collect(),
            groups_claim: p.groups_claim.clone(),
            group_roles,
            link_existing_accounts: p.link_existing_accounts,
        });
    }
    Ok(OidcSettings { providers, allow_loopback_issuers: raw.oidc_allow_loopback_issuers })
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return figment::Error
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{FlagSettings, Settings};

    const PROVIDER: &str = r#"
[[oidc_providers]]
id = "corp"
name = "Corp SSO"
issuer = "https://login.corp.example/"
client_id = "gatehouse"
client_secret_env = "CORP_SECRET"
scopes = ["openid", "email", "groups"]
allowed_email_domains = ["Corp.Example"]
groups_claim = "groups"
group_roles = [
  { group = "eng", workspace = "default" },
  { group = "admins", workspace = "default", role = "owner" },
]
"#;

    #[test]
    fn providers_from_the_file_with_the_secret_from_the_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("g.toml", PROVIDER)?;
            jail.set_env("CORP_SECRET", "s3cret-value");
            let s = Settings::load(Some(Path::new("g.toml")), &FlagSettings::default()).unwrap();
            let p = &s.oidc.providers[0];
            assert_eq!(
                (p.id.as_str(), p.name.as_str(), p.issuer.as_str()),
                ("corp", "Corp SSO", "https://login.corp.example/")
            );
            assert_eq!(p.client_secret.as_ref().map(ClientSecret::expose), Some("s3cret-value"));
            assert!(!format!("{s:?}").contains("s3cret"), "the secret is never printed");
            assert_eq!(p.allowed_email_domains, vec!["corp.example".to_owned()]);
            assert_eq!(
                p.group_roles[1],
                GroupRole { group: "admins".into(), workspace: "default".into(), role: Role::Owner }
            );
            assert_eq!(p.managed_workspaces(), vec!["default"]);
            assert_eq!((p.subject_claim.as_str(), p.email_claim.as_str()), ("sub", "email"));
            assert!(s.password_login);
            Ok(())
        });
    }

    #[test]
    fn providers_from_the_environment() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("CORP_SECRET", "from-env");
            jail.set_env(
                "GATEHOUSE_OIDC_PROVIDERS",
                r#"[{id="corp", issuer="https://login.corp.example", client_id="gh", client_secret_env="CORP_SECRET", groups_claim="groups", group_roles=[{group="eng", workspace="default"}]}]"#,
            );
            jail.set_env("GATEHOUSE_PASSWORD_LOGIN", "false");
            let s = Settings::load(None, &FlagSettings::default()).unwrap();
            let p = &s.oidc.providers[0];
            assert_eq!((p.id.as_str(), p.client_id.as_str()), ("corp", "gh"));
            assert_eq!(p.client_secret.as_ref().map(ClientSecret::expose), Some("from-env"));
            assert_eq!(p.group_roles.len(), 1);
            assert!(!s.password_login);
            jail.set_env("GATEHOUSE_OIDC_PROVIDERS", "[]");
            let err = Settings::load(None, &FlagSettings::default()).unwrap_err().to_string();
            assert!(err.contains("password_login") && err.contains("nobody could sign in"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn provider_mistakes_are_named() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("CORP_SECRET", "x");
            let refused = |toml: &str, says: &str| {
                jail.create_file("g.toml", toml).unwrap();
                let err = Settings::load(Some(Path::new("g.toml")), &FlagSettings::default()).unwrap_err().to_string();
                assert!(err.contains(says), "{toml}: {err}");
            };
            refused(&PROVIDER.replace("CORP_SECRET", "UNSET_SECRET_VAR"), "UNSET_SECRET_VAR");
            refused(&PROVIDER.replace("https://login", "http://login"), "must start with https://");
            refused(
                &PROVIDER.replace("https://login.corp.example/", "http://127.0.0.1:9/"),
                "oidc_allow_loopback_issuers",
            );
            refused(&PROVIDER.replace("groups_claim = \"groups\"", ""), "needs `groups_claim`");
            refused(&PROVIDER.replace("id = \"corp\"", "id = \"Corp SSO\""), "`id`");
            refused(&PROVIDER.replace("role = \"owner\"", "role = \"boss\""), "unknown role");
            refused(&format!("{PROVIDER}{PROVIDER}"), "same `id`");
            refused(&PROVIDER.replace("client_id", "clientid"), "clientid");
            let loopback = PROVIDER.replace("https://login.corp.example/", "http://127.0.0.1:9/");
            refused(
                &format!("oidc_allow_loopback_issuers = true\nlisten = \"0.0.0.0:80\"\n{loopback}"),
                "local testing only",
            );
            jail.create_file("g.toml", &format!("oidc_allow_loopback_issuers = true\n{loopback}"))?;
            assert!(Settings::load(Some(Path::new("g.toml")), &FlagSettings::default()).is_ok());
            Ok(())
        });
    }
}
