//! Who a verified ID token is here: the claims we read, the account they are linked to (created
//! on first sign-in), and the workspace memberships their group claims give.
//!
//! Linking rule: a person is found by (provider, subject) only. A first sign-in whose email
//! belongs to an existing account is refused, unless the provider is set to
//! `link_existing_accounts` and the ID token says `email_verified: true`; an unverified email
//! never reaches an existing account.

use std::collections::HashMap;
use std::net::IpAddr;

use serde_json::{Map, Value};

use super::error::OidcError;
use crate::app::AppState;
use crate::audit::{Actor, Event, EventKind};
use crate::config::OidcProvider;
use crate::identity::normalize_email;
use crate::store::{StoreError, UserRow};
use crate::workspace::{self, Role};

/// What Gatehouse uses of a verified ID token.
#[derive(Debug, Clone)]
pub struct Identity {
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: Option<bool>,
    /// `None` when the provider has no groups claim configured.
    pub groups: Option<Vec<String>>,
}

impl Identity {
    pub fn from_claims(provider: &OidcProvider, claims: &Map<String, Value>) -> Result<Self, OidcError> {
        // Core §2: at most 255 ASCII characters.
        let subject = match claims.get(&provider.subject_claim) {
            Some(Value::String(s)) if !s.is_empty() && s.len() <= 255 => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(OidcError::MissingClaim(provider.subject_claim.clone())),
        };
        let email = claims.get(&provider.email_claim).and_then(Value::as_str).and_then(|e| normalize_email(e).ok());
        let email_verified = match claims.get("email_verified") {
            Some(Value::Bool(b)) => Some(*b),
            // Some providers send it as a string.
            Some(Value::String(s)) => s.parse().ok(),
            _ => None,
        };
        let groups = provider.groups_claim.as_ref().map(|claim| match claims.get(claim) {
            Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
            Some(Value::String(one)) => vec![one.clone()],
            // No claim: no groups (Okta, for one, leaves it out when nothing matches).
            _ => Vec::new(),
        });
        Ok(Identity { subject, email, email_verified, groups })
    }

    /// The email domain rule, applied at every sign-in.
    pub fn check_domain(&self, provider: &OidcProvider) -> Result<(), OidcError> {
        if provider.allowed_email_domains.is_empty() {
            return Ok(());
        }
        let email = self.email.as_deref().ok_or_else(|| OidcError::MissingClaim(provider.email_claim.clone()))?;
        let domain = email.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
        if !provider.allowed_email_domains.iter().any(|d| d == domain) {
            return Err(OidcError::EmailDomainNotAllowed(domain.to_owned()));
        }
        if self.email_verified == Some(false) {
            return Err(OidcError::EmailNotVerified);
        }
        Ok(())
    }
}

/// How a sign-in found its account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountOutcome {
    /// Linked at an earlier sign-in.
    Known,
    /// An existing account with the same, verified, email, linked now.
    LinkedExisting,
    Created,
}

impl AccountOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountOutcome::Known => "known",
            AccountOutcome::LinkedExisting => "linked existing account",
            AccountOutcome::Created => "created",
        }
    }
}

/// The account for this identity: linked before, linked now, or created now.
pub async fn account_for(
    state: &AppState,
    provider: &OidcProvider,
    identity: &Identity,
) -> Result<(UserRow, AccountOutcome), OidcError> {
    let store = &state.store;
    let now = state.clock.now();
    if let Some(user_id) = store.user_id_by_oidc_identity(&provider.id, &identity.subject).await?
        && let Some(user) = store.user_by_id(&user_id).await?
    {
        store.touch_oidc_identity(&provider.id, &identity.subject, identity.email.as_deref(), now).await?;
        return Ok((user, AccountOutcome::Known));
    }
    let email = identity.email.clone().ok_or_else(|| OidcError::MissingClaim(provider.email_claim.clone()))?;
    if let Some(existing) = store.user_by_email(&email).await? {
        if !(provider.link_existing_accounts && identity.email_verified == Some(true)) {
            return Err(OidcError::AccountExists);
        }
        store.link_oidc_identity(&provider.id, &identity.subject, &existing.id, Some(&email), now).await?;
        return Ok((existing, AccountOutcome::LinkedExisting));
    }
    let user =
        UserRow { id: uuid::Uuid::now_v7().to_string(), email, password_hash: None, is_admin: false, created_at: now };
    store.insert_user(&user).await.map_err(|e| match e {
        // Someone took the email between our look-up and the insert.
        StoreError::Conflict(_) => OidcError::AccountExists,
        e @ (StoreError::Database(_)
        | StoreError::Migrate(_)
        | StoreError::BadUrl(_)
        | StoreError::WriterGone
        | StoreError::Marker(_)) => e.into(),
    })?;
    store.link_oidc_identity(&provider.id, &identity.subject, &user.id, user.email.as_str().into(), now).await?;
    Ok((user, AccountOutcome::Created))
}

/// The role each managed workspace should give, from the person's groups (owner wins).
pub fn desired_roles(provider: &OidcProvider, groups: &[String]) -> HashMap<String, Role> {
    let mut roles: HashMap<String, Role> = HashMap::new();
    for g in provider.group_roles.iter().filter(|g| groups.contains(&g.group)) {
        let role = roles.entry(g.workspace.clone()).or_insert(g.role);
        if g.role == Role::Owner {
            *role = Role::Owner;
        }
    }
    roles
}

/// Brings the person's memberships of the workspaces this provider manages in line with their
/// groups: added, role changed, or removed (which revokes their grants, consents and machine
/// tokens there). Workspaces the provider's mapping does not name are left alone.
pub async fn sync_memberships(
    state: &AppState,
    provider: &OidcProvider,
    user: &UserRow,
    groups: &[String],
    source: IpAddr,
) -> Result<(), StoreError> {
    let store = &state.store;
    let desired = desired_roles(provider, groups);
    let actor = Actor { id: None, label: format!("identity provider {}", provider.id) };
    for slug in provider.managed_workspaces() {
        let Some(ws) = store.workspace_by_slug(slug).await? else {
            tracing::warn!(provider = %provider.id, workspace = slug, "group_roles names a workspace that does not exist");
            continue;
        };
        let current = store.membership(&ws.id, &user.id).await?;
        let want = desired.get(slug).copied();
        let event = |kind| {
            Event::new(kind, actor.clone())
                .workspace(&ws.id)
                .subject(Some(&user.id), &user.email)
                .source(source)
                .detail("source", "oidc group claims")
                .detail("provider", provider.id.as_str())
        };
        match (current, want) {
            (None, Some(role)) => {
                workspace::add_member(store, state.clock.as_ref(), &ws.id, &user.id, role).await?;
                state.audit(event(EventKind::MemberAdded).detail("role", role.as_str())).await;
            }
            (Some(m), Some(role)) if m.role != role.as_str() => {
                workspace::add_member(store, state.clock.as_ref(), &ws.id, &user.id, role).await?;
                let e = event(EventKind::MemberRoleChanged).detail("from", m.role.as_str()).detail("to", role.as_str());
                state.audit(e).await;
            }
            (Some(_), None) => {
                if store.remove_member(&ws.id, &user.id, state.clock.now()).await? {
                    state.audit(event(EventKind::MemberRemoved)).await;
                }
            }
            (Some(_), Some(_)) | (None, None) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GroupRole;
    use serde_json::json;

    fn provider() -> OidcProvider {
        let mut p = OidcProvider::new("corp", "https://idp.example", "gh");
        p.groups_claim = Some("groups".into());
        p.allowed_email_domains = vec!["corp.example".into()];
        p.group_roles = vec![
            GroupRole { group: "eng".into(), workspace: "default".into(), role: Role::Member },
            GroupRole { group: "leads".into(), workspace: "default".into(), role: Role::Owner },
            GroupRole { group: "ops".into(), workspace: "ops".into(), role: Role::Member },
        ];
        p
    }

    #[test]
    fn owner_wins_and_unmapped_groups_give_nothing() {
        let p = provider();
        let g = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let roles = desired_roles(&p, &g(&["leads", "eng", "visitors"]));
        assert_eq!(roles.get("default"), Some(&Role::Owner));
        assert_eq!(roles.get("ops"), None);
        assert!(desired_roles(&p, &g(&["visitors"])).is_empty());
    }

    #[test]
    fn claims_and_the_domain_rule() {
        let p = provider();
        let claims = |v: Value| v.as_object().unwrap().clone();
        let id = Identity::from_claims(&p, &claims(json!({"sub": "u1", "email": "Ann@Corp.Example", "groups": "eng"})))
            .unwrap();
        assert_eq!((id.email.as_deref(), id.groups.clone()), (Some("ann@corp.example"), Some(vec!["eng".to_owned()])));
        assert!(id.check_domain(&p).is_ok());
        let other = Identity::from_claims(&p, &claims(json!({"sub": "u2", "email": "eve@evil.example"}))).unwrap();
        assert_eq!(other.groups, Some(vec![]), "a missing groups claim is no groups");
        assert!(matches!(other.check_domain(&p), Err(OidcError::EmailDomainNotAllowed(d)) if d == "evil.example"));
        let suffix = Identity::from_claims(&p, &claims(json!({"sub": "u3", "email": "eve@evilcorp.example"}))).unwrap();
        assert!(suffix.check_domain(&p).is_err(), "a domain that merely ends the same is not allowed");
        let unverified = Identity::from_claims(
            &p,
            &claims(json!({"sub": "u4", "email": "a@corp.example", "email_verified": false})),
        )
        .unwrap();
        assert!(matches!(unverified.check_domain(&p), Err(OidcError::EmailNotVerified)));
        assert!(matches!(
            Identity::from_claims(&p, &claims(json!({"email": "a@corp.example"}))),
            Err(OidcError::MissingClaim(_))
        ));
    }
}
