//! Workspaces: each one is an MCP resource whose identifier is its MCP URL,
//! `{public_url}/t/{slug}/mcp`.

use url::Url;

use crate::clock::Clock;
use crate::store::{MembershipRow, Store, StoreError, WorkspaceRow};

pub const DEFAULT_WORKSPACE: &str = "default";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Owner,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Member => "member",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "owner" => Ok(Role::Owner),
            "member" => Ok(Role::Member),
            other => Err(format!("unknown role `{other}`: use owner or member")),
        }
    }
}

/// Slugs appear in URLs: lowercase letters, digits and inner hyphens, at most 63.
pub fn validate_slug(slug: &str) -> Result<(), String> {
    let ok = !slug.is_empty()
        && slug.len() <= 63
        && slug.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !slug.starts_with('-')
        && !slug.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{slug}` is not a valid workspace slug: use 1-63 lowercase letters, digits and hyphens (not at either end)"
        ))
    }
}

pub fn mcp_url(public_url: &str, slug: &str) -> String {
    format!("{public_url}/t/{slug}/mcp")
}

/// The workspace slug a `resource` parameter names, if it names one of ours.
/// Scheme and host compare case-insensitively, default ports are implied, and one
/// trailing slash is tolerated (Claude adds one); anything else must match exactly.
pub fn slug_from_resource(public_url: &str, resource: &str) -> Option<String> {
    let public = Url::parse(public_url).ok()?;
    let res = Url::parse(resource).ok()?;
    if res.scheme() != public.scheme()
        || res.host() != public.host()
        || res.port_or_known_default() != public.port_or_known_default()
        || res.query().is_some()
        || res.fragment().is_some()
        || !res.username().is_empty()
        || res.password().is_some()
    {
        return None;
    }
    let base = public.path().trim_end_matches('/');
    let path = res.path();
    let path = path.strip_suffix('/').unwrap_or(path);
    let slug = path.strip_prefix(base)?.strip_prefix("/t/")?.strip_suffix("/mcp")?;
    validate_slug(slug).ok()?;
    Some(slug.to_owned())
}

/// True if `resource` names workspace `slug`'s MCP endpoint. The canonical spelling (what the
/// metadata advertises and clients send back) is recognised without parsing a URL, which was
/// a measurable part of issuing a token; any other spelling is canonicalised first.
pub fn resource_names(public_url: &str, resource: &str, slug: &str) -> bool {
    resource == mcp_url(public_url, slug) || slug_from_resource(public_url, resource).as_deref() == Some(slug)
}

pub async fn create(
    store: &Store,
    clock: &dyn Clock,
    slug: &str,
    name: Option<&str>,
) -> Result<WorkspaceRow, CreateError> {
    validate_slug(slug).map_err(CreateError::Invalid)?;
    let row = WorkspaceRow {
        id: uuid::Uuid::now_v7().to_string(),
        slug: slug.to_owned(),
        name: name.unwrap_or(slug).to_owned(),
        created_at: clock.now(),
        upstreams_version: 0,
        revocations_version: 0,
    };
    store.insert_workspace(&row).await?;
    Ok(row)
}

pub async fn add_member(
    store: &Store,
    clock: &dyn Clock,
    workspace_id: &str,
    user_id: &str,
    role: Role,
) -> Result<(), StoreError> {
    store
        .upsert_membership(&MembershipRow {
            workspace_id: workspace_id.to_owned(),
            user_id: user_id.to_owned(),
            role: role.as_str().to_owned(),
            created_at: clock.now(),
        })
        .await
}

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_canonical_resource_and_its_other_spellings_name_the_same_workspace() {
        for public in ["https://gate.example.com", "http://127.0.0.1:8080/base"] {
            let canonical = mcp_url(public, "acme");
            assert_eq!(slug_from_resource(public, &canonical).as_deref(), Some("acme"), "{canonical}");
            assert!(resource_names(public, &canonical, "acme"));
            assert!(resource_names(public, &format!("{canonical}/"), "acme"));
            assert!(!resource_names(public, &canonical, "other"));
            assert!(!resource_names(public, &format!("{canonical}?x=1"), "acme"));
        }
        assert!(resource_names("https://gate.example.com", "HTTPS://GATE.example.COM/t/acme/mcp", "acme"));
    }

    #[test]
    fn resources_are_canonicalised() {
        let p = "https://gate.example.com";
        assert_eq!(slug_from_resource(p, "https://gate.example.com/t/acme/mcp").as_deref(), Some("acme"));
        assert_eq!(slug_from_resource(p, "HTTPS://GATE.example.COM/t/acme/mcp/").as_deref(), Some("acme"));
        assert_eq!(slug_from_resource(p, "https://gate.example.com:443/t/acme/mcp").as_deref(), Some("acme"));
        assert_eq!(slug_from_resource(p, "https://gate.example.com/t/Acme/mcp"), None);
        assert_eq!(slug_from_resource(p, "https://gate.example.com/t/acme/mcp?x=1"), None);
        assert_eq!(slug_from_resource(p, "https://evil.example.com/t/acme/mcp"), None);
        assert_eq!(slug_from_resource(p, "http://gate.example.com/t/acme/mcp"), None);
        assert_eq!(slug_from_resource(p, "https://gate.example.com/t/acme/mcp//"), None);
        assert_eq!(slug_from_resource(p, "https://gate.example.com/t/a/b/mcp"), None);
        assert_eq!(
            slug_from_resource("http://127.0.0.1:8080/base", "http://127.0.0.1:8080/base/t/x/mcp").as_deref(),
            Some("x")
        );
    }

    #[test]
    fn slugs() {
        assert!(validate_slug("acme-2").is_ok());
        for bad in ["", "-a", "a-", "A", "a/b", "a.b", &"a".repeat(64)] {
            assert!(validate_slug(bad).is_err(), "{bad}");
        }
    }
}
