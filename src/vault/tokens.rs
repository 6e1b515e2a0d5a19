//! The vault itself: sign-in settings per upstream, and the tokens held for the workspace or
//! each person, sealed, refreshed before they expire.
//!
//! Refreshes are claimed in the database first (one atomic `UPDATE`), so two requests or two
//! nodes never spend the same rotating refresh token twice (the second would read as
//! `invalid_grant` and cut the person off). The claim doubles as the backoff: a failed refresh
//! leaves `retry_at` in the future.

use std::sync::Arc;

use super::credential::{GrantKind, OAuthCredential, slot};
use super::schedule::{self, CLAIM_SECS};
use super::token_endpoint::{self, Grant, TokenError, TokenResponse};
use super::{Owner, VaultError};
use crate::audit::{self, Actor, Event, EventKind};
use crate::clock::SharedClock;
use crate::crypto::aead::Sealer;
use crate::store::{Store, TokenRow};

/// Holds and renews upstream credentials. Cheap to share (`Arc`).
pub struct Vault {
    store: Store,
    sealer: Arc<Sealer>,
    clock: SharedClock,
    http: reqwest::Client,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault").finish_non_exhaustive()
    }
}

/// What the pages show about one held token (no secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenStatus {
    pub needs_reconnect: bool,
    pub expires_at: Option<i64>,
    pub scope: Option<String>,
    pub problem: Option<String>,
    pub failures: i64,
}

/// A usable access token and when it should next be refreshed.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken {
    pub token: String,
    pub refresh_at: Option<i64>,
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken").field("refresh_at", &self.refresh_at).finish_non_exhaustive()
    }
}

fn token_row_key(upstream_id: &str, owner: &str) -> String {
    format!("{upstream_id}/{owner}")
}

impl Vault {
    pub fn new(store: Store, sealer: Arc<Sealer>, clock: SharedClock) -> Result<Self, VaultError> {
        let http = token_endpoint::http_client().map_err(VaultError::Invalid)?;
        Ok(Vault { store, sealer, clock, http })
    }

    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// Sets how an upstream signs in with OAuth. Tokens held under earlier settings are
    /// dropped: they belong to another client or server.
    pub async fn set_credential(&self, upstream_id: &str, credential: &OAuthCredential) -> Result<(), VaultError> {
        credential.validate()?;
        let row = credential.seal(&self.sealer, upstream_id, self.clock.now())?;
        if self.store.upstream_credential(upstream_id).await?.is_some_and(|old| {
            old.token_endpoint != row.token_endpoint || old.client_id != row.client_id || old.kind != row.kind
        }) {
            self.store.delete_upstream_credential(upstream_id).await?;
        }
        self.store.put_upstream_credential(&row).await?;
        Ok(())
    }

    pub async fn credential(&self, upstream_id: &str) -> Result<Option<OAuthCredential>, VaultError> {
        match self.store.upstream_credential(upstream_id).await? {
            Some(row) => Ok(Some(OAuthCredential::open(&self.sealer, &row)?)),
            None => Ok(None),
        }
    }

    /// Stores a token response for `owner` (a new connection or a refresh), sealed. A refresh
    /// response without a new refresh token keeps the old one (RFC 6749 §6).
    pub async fn store_tokens(
        &self,
        upstream_id: &str,
        owner: Owner<'_>,
        response: &TokenResponse,
        previous_refresh: Option<&str>,
    ) -> Result<AccessToken, VaultError> {
        let now = self.clock.now();
        let key = token_row_key(upstream_id, owner.key());
        let access =
            self.sealer.seal(response.access_token.as_bytes(), &slot("upstream_tokens", &key, "access_token"))?;
        let refresh_plain = response.refresh_token.as_deref().or(previous_refresh);
        let refresh = refresh_plain
            .map(|t| self.sealer.seal(t.as_bytes(), &slot("upstream_tokens", &key, "refresh_token")))
            .transpose()?;
        let refresh_at = schedule::refresh_at(now, response.expires_in);
        let row = TokenRow {
            upstream_id: upstream_id.to_owned(),
            owner: owner.key().to_owned(),
            access_token: access,
            refresh_token: refresh,
            scope: response.scope.clone(),
            expires_at: response.expires_in.map(|secs| now.saturating_add(secs.max(0))),
            refresh_at,
            failures: 0,
            retry_at: None,
            status: "active".to_owned(),
            problem: None,
            updated_at: now,
        };
        self.store.put_upstream_token(&row).await?;
        Ok(AccessToken { token: response.access_token.clone(), refresh_at })
    }

    fn open_token(&self, row: &TokenRow, column: &str, sealed: &[u8]) -> Result<String, VaultError> {
        let key = token_row_key(&row.upstream_id, &row.owner);
        let plain = self.sealer.open(sealed, &slot("upstream_tokens", &key, column))?;
        String::from_utf8(plain).map_err(|_| VaultError::Invalid("a stored token is not text".into()))
    }

    /// What the pages may show about `owner`'s token for an upstream.
    pub async fn status(&self, upstream_id: &str, owner: Owner<'_>) -> Result<Option<TokenStatus>, VaultError> {
        Ok(self.store.upstream_token(upstream_id, owner.key()).await?.map(|row| TokenStatus {
            needs_reconnect: row.status == "needs_reconnect",
            expires_at: row.expires_at,
            scope: row.scope,
            problem: row.problem,
            failures: row.failures,
        }))
    }

    /// Forgets `owner`'s token (a person disconnecting their account).
    pub async fn disconnect(&self, upstream_id: &str, owner: Owner<'_>) -> Result<bool, VaultError> {
        Ok(self.store.delete_upstream_token(upstream_id, owner.key()).await?)
    }

    /// The access token to send to an upstream for `owner`, refreshed first if it has
    /// expired (or, for a workspace token, obtained if there is none yet). `rejected` is a
    /// token the upstream just refused: then a new one is needed even if it looks valid.
    pub async fn access_token(
        &self,
        upstream_id: &str,
        owner: Owner<'_>,
        rejected: Option<&str>,
    ) -> Result<AccessToken, VaultError> {
        let credential = self.credential(upstream_id).await?.ok_or(VaultError::NotConnected)?;
        // A bounded wait (about the token endpoint timeout) for a refresh another request or
        // node has claimed.
        for _ in 0..150 {
            let now = self.clock.now();
            let Some(row) = self.store.upstream_token(upstream_id, owner.key()).await? else {
                return match credential.grant {
                    GrantKind::AuthorizationCode => Err(VaultError::NotConnected),
                    GrantKind::ClientCredentials => self.obtain_workspace_token(upstream_id, &credential, None).await,
                };
            };
            if row.status == "needs_reconnect" {
                let reason = row.problem.clone().unwrap_or_else(|| "the upstream refused the stored grant".into());
                // A workspace credential is retried after its backoff (an operator may have fixed
                // the upstream); a person's needs them to connect again.
                let retry = credential.grant == GrantKind::ClientCredentials && row.retry_at.is_none_or(|at| at <= now);
                if !retry {
                    return Err(VaultError::NeedsReconnect(reason));
                }
            }
            let token = self.open_token(&row, "access_token", &row.access_token)?;
            let refused = rejected.is_some_and(|r| crate::crypto::constant_time_eq(r, &token));
            let expired = row.expires_at.is_some_and(|at| at <= now);
            let due = row.refresh_at.is_some_and(|at| at <= now);
            let usable = row.status == "active" && !refused && !expired;
            let backing_off = row.retry_at.is_some_and(|at| at > now);
            if usable && (!due || backing_off) {
                return Ok(AccessToken { token, refresh_at: row.refresh_at });
            }
            if backing_off {
                // No retry storm: an expired or refused token waits out the backoff.
                return Err(VaultError::Unavailable(row.problem.unwrap_or_else(|| "retrying later".into())));
            }
            if self
                .store
                .claim_upstream_token_refresh(upstream_id, owner.key(), &row.access_token, now, now + CLAIM_SECS)
                .await?
            {
                return self.refresh_claimed(upstream_id, owner, &credential, &row).await;
            }
            if usable {
                // Due, and someone else is refreshing it: this one is still valid.
                return Ok(AccessToken { token, refresh_at: row.refresh_at });
            }
            // Someone else is refreshing it (or just did): read it again shortly.
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Err(VaultError::Unavailable("a refresh of this token is taking too long".into()))
    }

    /// Refreshes a token this caller has claimed; records the outcome either way.
    async fn refresh_claimed(
        &self,
        upstream_id: &str,
        owner: Owner<'_>,
        credential: &OAuthCredential,
        row: &TokenRow,
    ) -> Result<AccessToken, VaultError> {
        let refresh_token =
            row.refresh_token.as_ref().map(|sealed| self.open_token(row, "refresh_token", sealed)).transpose()?;
        let now = self.clock.now();
        let result = match (&refresh_token, credential.grant) {
            (Some(rt), _) => token_endpoint::request(&self.http, credential, Grant::RefreshToken(rt), now).await,
            (None, GrantKind::ClientCredentials) => {
                return self.obtain_workspace_token(upstream_id, credential, Some(row)).await;
            }
            (None, GrantKind::AuthorizationCode) => Err(TokenError::Refused {
                error: "invalid_grant".into(),
                description: Some("the access token expired and the server issued no refresh token".into()),
            }),
        };
        match result {
            Ok(response) => self.store_tokens(upstream_id, owner, &response, refresh_token.as_deref()).await,
            Err(error) => Err(self.record_failure(upstream_id, owner, row, &error).await),
        }
    }

    /// A new workspace token by the client_credentials grant.
    async fn obtain_workspace_token(
        &self,
        upstream_id: &str,
        credential: &OAuthCredential,
        row: Option<&TokenRow>,
    ) -> Result<AccessToken, VaultError> {
        let now = self.clock.now();
        match token_endpoint::request(&self.http, credential, Grant::ClientCredentials, now).await {
            Ok(response) => self.store_tokens(upstream_id, Owner::Workspace, &response, None).await,
            Err(error) => match row {
                Some(row) => Err(self.record_failure(upstream_id, Owner::Workspace, row, &error).await),
                None => Err(classify(&error)),
            },
        }
    }

    /// Counts a failed refresh (backing off), or ends the connection on `invalid_grant` or the
    /// third failure in a row, with an audit event. Returns what the caller should see.
    async fn record_failure(
        &self,
        upstream_id: &str,
        owner: Owner<'_>,
        row: &TokenRow,
        error: &TokenError,
    ) -> VaultError {
        let now = self.clock.now();
        let failures = row.failures.saturating_add(1);
        let give_up = error.is_invalid_grant() || schedule::gives_up(failures);
        let problem = error.to_string();
        let retry_at = now.saturating_add(schedule::backoff_secs(failures));
        if let Err(e) =
            self.store.note_upstream_token_failure(upstream_id, owner.key(), retry_at, give_up, &problem, now).await
        {
            tracing::error!(error = %e, "could not record a failed upstream token refresh");
        }
        tracing::warn!(upstream = %upstream_id, failures, give_up, %problem, "upstream token refresh failed");
        if give_up {
            if row.status != "needs_reconnect" {
                self.audit_needs_reconnect(upstream_id, owner, &problem).await;
            }
            VaultError::NeedsReconnect(problem)
        } else {
            classify(error)
        }
    }

    async fn audit_needs_reconnect(&self, upstream_id: &str, owner: Owner<'_>, problem: &str) {
        let upstream = self.store.upstream_by_id(upstream_id).await.ok().flatten();
        let mut event = Event::new(EventKind::UpstreamNeedsReconnect, Actor::system()).detail("reason", problem);
        if let Some(upstream) = &upstream {
            event = event.workspace(&upstream.workspace_id).subject(Some(&upstream.id), &upstream.name);
        }
        if let Owner::Person(user_id) = owner {
            event = event.detail("user_id", user_id);
        }
        audit::record(&self.store, self.clock.as_ref(), event).await;
    }

    /// Refreshes every token that is due (the background refresher's tick); returns how many
    /// were attempted. A token that fails waits out its backoff before it is tried again, so a
    /// dead upstream costs one request per token per backoff period, not a storm.
    pub async fn refresh_due(&self, limit: i64) -> Result<usize, VaultError> {
        let due = self.store.upstream_tokens_due(self.clock.now(), limit).await?;
        let mut attempted = 0;
        for row in &due {
            let owner =
                if row.owner == crate::store::WORKSPACE_OWNER { Owner::Workspace } else { Owner::Person(&row.owner) };
            attempted += 1;
            match self.access_token(&row.upstream_id, owner, None).await {
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(upstream = %row.upstream_id, %error, "background refresh did not succeed")
                }
            }
        }
        Ok(attempted)
    }
}

/// The caller-facing error for a failed token request without a stored row to count against.
fn classify(error: &TokenError) -> VaultError {
    match error {
        TokenError::Transient(reason) => VaultError::Unavailable(reason.clone()),
        TokenError::Refused { .. } if error.is_invalid_grant() => VaultError::NeedsReconnect(error.to_string()),
        TokenError::Refused { .. } | TokenError::Invalid(_) => VaultError::Unavailable(error.to_string()),
    }
}

impl Vault {
    /// Exchanges an authorization code from the Connect flow and keeps the person's tokens.
    pub async fn exchange_code(
        &self,
        upstream_id: &str,
        owner: Owner<'_>,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
    ) -> Result<AccessToken, VaultError> {
        let credential = self.credential(upstream_id).await?.ok_or(VaultError::NotConnected)?;
        let grant = Grant::AuthorizationCode { code, verifier, redirect_uri };
        let response = token_endpoint::request(&self.http, &credential, grant, self.clock.now())
            .await
            .map_err(|e| VaultError::Unavailable(format!("the code exchange failed: {e}")))?;
        self.store_tokens(upstream_id, owner, &response, None).await
    }

    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }
}
