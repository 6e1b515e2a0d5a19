//! `gatehouse upstream connect URL --headless`: connect to an MCP server as the gateway
//! would, completing any authorization that needs no person (the authorization server
//! redirects straight back from its authorization endpoint, as in automated tests, or the
//! client_credentials grant), then list its tools.
//!
//! The session reacts to the server rather than guessing: the first request goes without a
//! token; a 401 runs discovery, registration and authorization from its challenge; a 403
//! `insufficient_scope` asks again for the union of the scopes held and challenged; a 401
//! later (say, the resource moved to another authorization server) starts over, registering
//! afresh with a server it has not met. At most [`MAX_AUTHORIZATIONS`] authorizations per run.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Mutex;
use url::Url;

use super::credential::GrantKind;
use super::mcp_oauth::guard::GuardedHttp;
use super::mcp_oauth::{self, ClientIdentity, Preregistered, Registration, challenge};
use crate::clock::SharedClock;
use crate::gateway::probe::{ProbeReport, probe_and_call};
use crate::gateway::upstream::auth::BoxFuture;
use crate::gateway::upstream::{BearerSource, Lifecycle, Upstream, UpstreamSpec};

pub const MAX_AUTHORIZATIONS: u32 = 3;

/// What `connect --headless` is given.
#[derive(Clone)]
pub struct HeadlessOptions {
    pub grant: GrantKind,
    pub identity: ClientIdentity,
    pub preregistered: Option<Preregistered>,
    /// Host names that may be loopback (the one named on the command line, for local servers).
    pub loopback_hosts: Vec<String>,
}

struct State {
    token: Option<String>,
    scope: Option<String>,
    /// Registrations are per authorization server: never shown to another one.
    registrations: HashMap<String, Registration>,
    authorizations: u32,
}

pub struct HeadlessSession {
    http: GuardedHttp,
    mcp_url: Url,
    options: HeadlessOptions,
    clock: SharedClock,
    state: Mutex<State>,
}

impl HeadlessSession {
    pub fn new(mcp_url: &str, options: HeadlessOptions, clock: SharedClock) -> Result<Self, String> {
        let mcp_url = Url::parse(mcp_url).map_err(|e| format!("`{mcp_url}` is not a URL: {e}"))?;
        let http = GuardedHttp::new(options.loopback_hosts.clone())?;
        http.check(mcp_url.as_str())?;
        let state = State { token: None, scope: None, registrations: HashMap::new(), authorizations: 0 };
        Ok(HeadlessSession { http, mcp_url, options, clock, state: Mutex::new(state) })
    }

    async fn authorize(&self, header: &str, step_up: bool) -> Result<Option<String>, String> {
        let mut state = self.state.lock().await;
        if state.authorizations >= MAX_AUTHORIZATIONS {
            return Err(format!("gave up after {MAX_AUTHORIZATIONS} authorizations: the server keeps refusing"));
        }
        state.authorizations += 1;
        let challenge = challenge::parse(header);
        let discovered =
            mcp_oauth::discovery::discover(&self.http, &self.mcp_url, challenge.resource_metadata.as_deref()).await?;
        let issuer = discovered.server.issuer.clone();
        let registration = match state.registrations.get(&issuer) {
            Some(known) => known.clone(),
            None => {
                let registration = mcp_oauth::register(
                    &self.http,
                    &discovered,
                    &self.options.identity,
                    self.options.preregistered.as_ref(),
                    self.options.grant,
                )
                .await?;
                state.registrations.insert(issuer.clone(), registration.clone());
                registration
            }
        };
        let previous = if step_up { state.scope.clone() } else { None };
        let scope = mcp_oauth::choose_scope(&discovered, challenge.scope.as_deref(), previous.as_deref());
        let now = self.clock.now();
        let tokens = match self.options.grant {
            GrantKind::ClientCredentials => {
                mcp_oauth::client_credentials(&self.http, &discovered, &registration, scope.clone(), now).await?
            }
            GrantKind::AuthorizationCode => {
                let redirect_uri = self.options.identity.redirect_uri.clone();
                let pending =
                    mcp_oauth::authorization_request(&discovered, &registration, &redirect_uri, scope.clone())?;
                let (status, location) = self.http.get_redirect(&pending.authorization_url).await?;
                let location = location.filter(|_| (300..400).contains(&status)).ok_or_else(|| {
                    format!("the authorization endpoint answered {status}: it needs a person (use the pages)")
                })?;
                if !location.starts_with(&redirect_uri) {
                    return Err("the authorization endpoint redirected somewhere other than our callback".into());
                }
                let code = mcp_oauth::callback_code(&pending, &location)?;
                mcp_oauth::exchange_code(&self.http, &discovered, &registration, &pending, &code, now).await?
            }
        };
        state.token = Some(tokens.access_token.clone());
        state.scope = tokens.scope.clone().or(scope);
        Ok(Some(tokens.access_token))
    }
}

impl BearerSource for HeadlessSession {
    fn token(&self) -> BoxFuture<'_, Result<Option<String>, String>> {
        Box::pin(async move { Ok(self.state.lock().await.token.clone()) })
    }

    fn refused(&self, _token: Option<String>, challenge: String) -> BoxFuture<'_, Result<Option<String>, String>> {
        Box::pin(self.authorize_owned(challenge, false))
    }

    fn insufficient_scope(
        &self,
        _token: Option<String>,
        challenge: String,
    ) -> BoxFuture<'_, Result<Option<String>, String>> {
        Box::pin(self.authorize_owned(challenge, true))
    }
}

impl HeadlessSession {
    async fn authorize_owned(&self, challenge: String, step_up: bool) -> Result<Option<String>, String> {
        self.authorize(&challenge, step_up).await
    }
}

/// Connects to `url` (authorizing as needed), lists its tools, calls `tool` if given, and
/// disconnects. The 2026-07-28 protocol is tried first, as the gateway does for stateless
/// clients, falling back to a session with older servers.
pub async fn connect(
    url: &str,
    options: HeadlessOptions,
    clock: SharedClock,
    tool: Option<&str>,
) -> Result<ProbeReport, String> {
    let session = Arc::new(HeadlessSession::new(url, options, clock)?);
    let upstream =
        Upstream { name: "upstream".into(), spec: UpstreamSpec::Http { url: url.to_owned(), headers: Vec::new() } };
    Ok(probe_and_call(&upstream, Some(session), Lifecycle::Stateless, tool).await)
}
