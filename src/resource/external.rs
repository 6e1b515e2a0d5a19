//! Workspaces that trust an external authorization server: the setting (checked, stored,
//! client secret sealed) and one cached validator per workspace, rebuilt when the setting
//! changes, so the issuer's keys are fetched once per workspace and shared by its requests.

use std::collections::HashMap;
use std::sync::Mutex;

use mcp_resource_guard::introspect::IntrospectionConfig;
use mcp_resource_guard::issuer::check_endpoint_url;
use mcp_resource_guard::{IssuerConfig, IssuerError, IssuerValidator, ScopeMap};

use super::challenge::Refusal;
use crate::app::AppState;
use crate::clock::SharedClock;
use crate::config::{ExternalIssuerSettings, Settings};
use crate::crypto::aead::{Sealer, Slot};
use crate::store::{Store, StoreError, WorkspaceIssuerRow, WorkspaceRow};

/// `client_id` of a principal whose token names no client.
pub const UNNAMED_CLIENT: &str = "external";

/// Seconds an introspection answer is reused.
const INTROSPECTION_CACHE_SECS: i64 = 60;

/// What `gatehouse workspace trust` asks for.
#[derive(Debug, Clone, Default)]
pub struct TrustRequest {
    pub issuer: String,
    pub audience: Option<String>,
    pub scope_map: Vec<String>,
    pub introspection_client_id: Option<String>,
    pub introspection_secret: Option<String>,
    pub introspection_endpoint: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot seal the introspection secret: {0}")]
    Crypto(#[from] crate::crypto::CryptoError),
}

fn secret_slot(workspace_id: &str) -> Slot<'_> {
    Slot { table: "workspace_issuers", row: workspace_id, column: "introspection_secret" }
}

/// Trusts `req.issuer` for `ws` (replacing any earlier setting): the built-in authorization
/// server stops issuing tokens for it and its MCP endpoint accepts that issuer's tokens.
pub async fn trust(
    store: &Store,
    sealer: &Sealer,
    settings: &Settings,
    now: i64,
    ws: &WorkspaceRow,
    req: TrustRequest,
) -> Result<WorkspaceIssuerRow, TrustError> {
    let allow = settings.external_issuer.allow_http_loopback;
    let invalid = |e: IssuerError| TrustError::Invalid(e.to_string());
    if req.issuer.trim_end_matches('/') == settings.public_url {
        return Err(TrustError::Invalid("that is this server's own issuer: use `workspace untrust` instead".into()));
    }
    check_endpoint_url(&req.issuer, allow).map_err(invalid)?;
    if let Some(aud) = &req.audience
        && aud.trim().is_empty()
    {
        return Err(TrustError::Invalid("--audience must not be empty".into()));
    }
    let map = ScopeMap::parse(req.scope_map.iter().map(String::as_str)).map_err(invalid)?;
    if let Some(endpoint) = &req.introspection_endpoint {
        check_endpoint_url(endpoint, allow).map_err(invalid)?;
    }
    let introspection_secret = match (&req.introspection_client_id, req.introspection_secret) {
        (Some(_), Some(secret)) if !secret.is_empty() => Some(sealer.seal(secret.as_bytes(), &secret_slot(&ws.id))?),
        (None, None) if req.introspection_endpoint.is_none() => None,
        _ => {
            return Err(TrustError::Invalid(
                "introspection needs both --introspection-client-id and a secret (--introspection-secret-stdin)".into(),
            ));
        }
    };
    let row = WorkspaceIssuerRow {
        workspace_id: ws.id.clone(),
        issuer: req.issuer,
        audience: req.audience,
        scope_map: serde_json::to_string(&map.to_entries()).unwrap_or_else(|_| "[]".into()),
        introspection_client_id: req.introspection_client_id,
        introspection_secret,
        introspection_endpoint: req.introspection_endpoint,
        updated_at: now,
    };
    store.upsert_workspace_issuer(&row).await?;
    Ok(row)
}

/// The built-in authorization server issues no tokens for a workspace that trusts another
/// issuer: they would be refused at its MCP endpoint anyway, and the client should be sent
/// to the issuer its protected resource metadata names.
pub async fn refuse_if_trusted(store: &Store, ws: &WorkspaceRow) -> Result<(), crate::oauth::error::OAuthError> {
    refusal_if_trusted(ws, store.workspace_issuer(&ws.id).await?.as_ref())
}

/// [`refuse_if_trusted`] with the workspace's issuer already read.
pub fn refusal_if_trusted(
    ws: &WorkspaceRow,
    issuer: Option<&WorkspaceIssuerRow>,
) -> Result<(), crate::oauth::error::OAuthError> {
    match issuer {
        None => Ok(()),
        Some(row) => Err(crate::oauth::error::OAuthError::invalid_target(format!(
            "workspace `{}` takes its tokens from {}, not from this server: get a token there",
            ws.slug, row.issuer
        ))),
    }
}

/// The validators of trusting workspaces, by workspace id, each with the setting it was
/// built from.
pub struct ExternalIssuers {
    validators: Mutex<HashMap<String, (WorkspaceIssuerRow, IssuerValidator)>>,
    settings: ExternalIssuerSettings,
    clock: SharedClock,
}

impl ExternalIssuers {
    pub fn new(settings: ExternalIssuerSettings, clock: SharedClock) -> Self {
        ExternalIssuers { validators: Mutex::new(HashMap::new()), settings, clock }
    }

    /// The validator for a workspace's current setting (built on first use or after a change).
    pub fn validator(
        &self,
        state: &AppState,
        ws: &WorkspaceRow,
        row: &WorkspaceIssuerRow,
    ) -> Result<IssuerValidator, Refusal> {
        let mut validators = self.validators.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((built_from, validator)) = validators.get(&row.workspace_id)
            && built_from == row
        {
            return Ok(validator.clone());
        }
        let config = self.config(state, ws, row).map_err(|why| {
            tracing::error!(workspace = %row.workspace_id, error = %why, "the trusted issuer setting cannot be used");
            Refusal::Unavailable("this workspace's token issuer is misconfigured; tell its administrator".into())
        })?;
        let validator = IssuerValidator::with_clock(config, self.clock.clone()).map_err(|why| {
            tracing::error!(workspace = %row.workspace_id, error = %why, "the trusted issuer setting cannot be used");
            Refusal::Unavailable("this workspace's token issuer is misconfigured; tell its administrator".into())
        })?;
        validators.insert(row.workspace_id.clone(), (row.clone(), validator.clone()));
        Ok(validator)
    }

    fn config(&self, state: &AppState, ws: &WorkspaceRow, row: &WorkspaceIssuerRow) -> Result<IssuerConfig, String> {
        let mut config = IssuerConfig::new(&row.issuer, state.mcp_url(&ws.slug));
        if let Some(aud) = &row.audience {
            config = config.with_audience(aud);
        }
        let entries: Vec<String> = serde_json::from_str(&row.scope_map).map_err(|e| e.to_string())?;
        config = config.with_scope_map(ScopeMap::parse(entries.iter().map(String::as_str)).map_err(|e| e.to_string())?);
        config.allow_http_loopback = self.settings.allow_http_loopback;
        config.jwks_min_refetch = self.settings.jwks_min_refetch;
        if let (Some(client_id), Some(sealed)) = (&row.introspection_client_id, &row.introspection_secret) {
            let secret = state.sealer.open(sealed, &secret_slot(&row.workspace_id)).map_err(|e| e.to_string())?;
            config = config.with_introspection(IntrospectionConfig {
                client_id: client_id.clone(),
                client_secret: String::from_utf8(secret).map_err(|e| e.to_string())?,
                endpoint: row.introspection_endpoint.clone(),
                cache_ttl: INTROSPECTION_CACHE_SECS,
            });
        }
        Ok(config)
    }
}
