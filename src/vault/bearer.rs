//! The vault as the gateway sees it: for a connection to an upstream on behalf of a caller,
//! the token source to use, if the upstream signs in with OAuth.
//!
//! - client_credentials upstreams use the workspace's token, for every caller and for health
//!   checks;
//! - authorization-code upstreams use the caller's own token, and nobody else's: a caller
//!   without a connected account (or a machine token, which is no person) gets a sign-in
//!   error carrying the link where they connect it.

use std::sync::{Arc, Mutex, PoisonError};

use super::credential::GrantKind;
use super::tokens::AccessToken;
use super::{Owner, Vault, VaultError};
use crate::gateway::demo::Caller;
use crate::gateway::upstream::auth::BoxFuture;
use crate::gateway::upstream::{BearerSource, CredentialResolver, SignInRequired, Upstream};

/// Resolves upstream credentials within one workspace.
pub struct WorkspaceCredentials {
    pub vault: Arc<Vault>,
    pub store: crate::store::Store,
    pub workspace_id: String,
    /// Base of the Connect links: `{public_url}/w/{slug}/upstreams/`.
    pub pages_url: String,
}

impl WorkspaceCredentials {
    fn connect_url(&self, upstream: &str) -> String {
        format!("{}{upstream}/connect", self.pages_url)
    }

    async fn resolve_inner(
        &self,
        upstream: &Upstream,
        caller: Option<&Caller>,
    ) -> Result<Option<Arc<dyn BearerSource>>, SignInRequired> {
        let unavailable = |reason: String| SignInRequired { reason, connect_url: None };
        let row = self
            .store
            .upstream_by_name(&self.workspace_id, &upstream.name)
            .await
            .map_err(|e| unavailable(format!("its sign-in settings cannot be read ({e})")))?;
        let Some(row) = row else { return Ok(None) };
        let credential =
            self.vault.credential(&row.id).await.map_err(|e| unavailable(format!("its sign-in settings: {e}")))?;
        let Some(credential) = credential else { return Ok(None) };
        let owner = match credential.grant {
            GrantKind::ClientCredentials => String::new(),
            GrantKind::AuthorizationCode => match caller {
                Some(caller) if !caller.subject.is_empty() => caller.subject.clone(),
                _ => {
                    return Err(SignInRequired {
                        reason: "this upstream signs in per person, and this request acts for no person".into(),
                        connect_url: None,
                    });
                }
            },
        };
        let source = VaultBearer { vault: self.vault.clone(), upstream_id: row.id, owner, cached: Mutex::default() };
        // Fail now, with the Connect link, rather than on the upstream's 401.
        source.fetch(None).await.map_err(|e| self.sign_in_required(&upstream.name, &e))?;
        Ok(Some(Arc::new(source)))
    }

    fn sign_in_required(&self, upstream: &str, error: &VaultError) -> SignInRequired {
        let connect_url = match error {
            VaultError::NotConnected | VaultError::NeedsReconnect(_) => Some(self.connect_url(upstream)),
            VaultError::Unavailable(_) | VaultError::Invalid(_) | VaultError::Store(_) | VaultError::Crypto(_) => None,
        };
        SignInRequired { reason: error.to_string(), connect_url }
    }
}

impl CredentialResolver for WorkspaceCredentials {
    fn resolve<'a>(
        &'a self,
        upstream: &'a Upstream,
        caller: Option<&'a Caller>,
    ) -> BoxFuture<'a, Result<Option<Arc<dyn BearerSource>>, SignInRequired>> {
        Box::pin(self.resolve_inner(upstream, caller))
    }
}

/// The token of one owner for one upstream, kept in memory between refreshes so a request
/// costs no database read until the token is due.
pub struct VaultBearer {
    vault: Arc<Vault>,
    upstream_id: String,
    owner: String,
    cached: Mutex<Option<AccessToken>>,
}

impl VaultBearer {
    pub fn new(vault: Arc<Vault>, upstream_id: String, owner: Owner<'_>) -> Self {
        VaultBearer { vault, upstream_id, owner: owner.key().to_owned(), cached: Mutex::default() }
    }

    fn owner(&self) -> Owner<'_> {
        if self.owner.is_empty() { Owner::Workspace } else { Owner::Person(&self.owner) }
    }

    async fn fetch(&self, rejected: Option<&str>) -> Result<String, VaultError> {
        if rejected.is_none() {
            let now = self.vault.clock().now();
            let cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner).clone();
            if let Some(cached) = cached
                && cached.refresh_at.is_none_or(|at| now < at)
            {
                return Ok(cached.token);
            }
        }
        let fresh = self.vault.access_token(&self.upstream_id, self.owner(), rejected).await?;
        let token = fresh.token.clone();
        *self.cached.lock().unwrap_or_else(PoisonError::into_inner) = Some(fresh);
        Ok(token)
    }
}

impl BearerSource for VaultBearer {
    fn token(&self) -> BoxFuture<'_, Result<Option<String>, String>> {
        Box::pin(async move { self.fetch(None).await.map(Some).map_err(|e| e.to_string()) })
    }

    fn refused(&self, token: Option<String>, _challenge: String) -> BoxFuture<'_, Result<Option<String>, String>> {
        Box::pin(async move { self.fetch(token.as_deref().or(Some(""))).await.map(Some).map_err(|e| e.to_string()) })
    }

    /// A stored grant cannot grow: the person must connect again, consenting to more.
    fn insufficient_scope(
        &self,
        _token: Option<String>,
        challenge: String,
    ) -> BoxFuture<'_, Result<Option<String>, String>> {
        let wanted = super::mcp_oauth::challenge::parse(&challenge).scope.unwrap_or_default();
        Box::pin(async move {
            Err(format!("the upstream needs more access ({wanted}); connect your account again to grant it"))
        })
    }
}

/// The credential a health check of `upstream` may use: the workspace's client_credentials
/// token, or none. Never a person's: one person's account would then stand in for everyone.
pub async fn for_health_check(
    vault: &Arc<Vault>,
    store: &crate::store::Store,
    workspace_id: &str,
    upstream: &str,
) -> Option<Arc<dyn BearerSource>> {
    let row = store.upstream_by_name(workspace_id, upstream).await.ok().flatten()?;
    let credential = vault.credential(&row.id).await.ok().flatten()?;
    match credential.grant {
        GrantKind::ClientCredentials => Some(Arc::new(VaultBearer::new(vault.clone(), row.id, Owner::Workspace))),
        GrantKind::AuthorizationCode => None,
    }
}
