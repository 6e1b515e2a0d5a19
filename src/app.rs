//! Wiring: shared state, the router, first-run set-up, and serving.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::HeaderName;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{any, get, post};
use tokio::net::TcpListener;
use tower_http::cors::CorsLayer;
use tower_http::sensitive_headers::{SetSensitiveRequestHeadersLayer, SetSensitiveResponseHeadersLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};

use crate::clock::SharedClock;
use crate::config::Settings;
use crate::crypto::aead::Sealer;
use crate::crypto::master::MasterKey;
use crate::crypto::signing::KeyRing;
use crate::crypto::verified::VerifiedTokens;
use crate::gateway;
use crate::identity::throttle::LoginThrottle;
use crate::identity::{self, password};
use crate::oauth::{self, error::OAuthError};
use crate::resource;
use crate::store::Store;
use crate::web::{self, csrf::FormSigner, limit};
use crate::workspace::{self, DEFAULT_WORKSPACE, Role, mcp_url};

/// Everything a request handler may need. Cheap to clone: one reference count, however many
/// parts it has. (It was cloned by value before: axum clones the state into every layer of the
/// route for every request, and a by-value clone of some twenty reference counts and the form
/// signer's HMAC context was a sixth of the CPU time of a refused request.)
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The parts of [`AppState`].
pub struct Shared {
    pub settings: Arc<Settings>,
    pub store: Store,
    pub keys: Arc<KeyRing>,
    /// Access tokens whose signature was already checked (see `crypto::verified`).
    pub verified_tokens: Arc<VerifiedTokens>,
    /// Grants, machine clients and machine tokens found alive, per `revocations_version`.
    pub confirmed: Arc<resource::confirmed::ConfirmedCredentials>,
    pub sealer: Arc<Sealer>,
    pub forms: FormSigner,
    pub clock: SharedClock,
    pub login_throttle: Arc<LoginThrottle>,
    /// When a client's use was last written down (no database write per access token).
    pub client_usage: Arc<oauth::usage::ClientUsage>,
    /// Each workspace's MCP server: its upstreams, aggregated.
    pub workspaces: Arc<gateway::workspaces::WorkspaceServers>,
    /// Each workspace's upstreams as last listed, per `upstreams_version`.
    pub listed_upstreams: Arc<gateway::listed::ListedUpstreams>,
    pub sessions: Arc<gateway::sessions::SessionBindings>,
    /// Load shedding at the MCP endpoint.
    pub admission: Arc<gateway::admission::Admission>,
    /// The Host and Origin the MCP endpoint accepts, from the public URL.
    pub origin: resource::origin::OriginPolicy,
    /// The last connection test of each upstream (Upstreams pages).
    pub upstream_health: Arc<web::health::HealthBoard>,
    /// Client ID Metadata Documents: fetched, validated and cached.
    pub client_documents: Arc<oauth::cimd::MetadataDocuments>,
    /// Upstream credentials: sign-in settings and the tokens held for them.
    pub vault: Arc<crate::vault::Vault>,
    /// Validators of the external issuers workspaces trust (keys cached per issuer).
    pub external_issuers: Arc<resource::external::ExternalIssuers>,
    /// The organisation's identity providers (OpenID Connect sign-in).
    pub oidc: Arc<identity::oidc::OidcProviders>,
    /// Cancelled at shutdown: ends open MCP streams so the server can stop.
    pub shutdown: tokio_util::sync::CancellationToken,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create the data directory {0}: {1}")]
    DataDir(String, std::io::Error),
    #[error("cannot open the database: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("{0}")]
    Crypto(#[from] crate::crypto::CryptoError),
    #[error("signing keys: {0}")]
    Keys(#[from] crate::crypto::signing::KeyRingError),
    #[error("cannot listen on {0}: {1} (is another server using this port? choose another with --listen)")]
    Listen(SocketAddr, std::io::Error),
    #[error("first-run set-up failed: {0}")]
    Bootstrap(String),
    #[error("{0}")]
    ClientDocuments(#[from] oauth::cimd::fetch::FetcherError),
    #[error("credential vault: {0}")]
    Vault(#[from] crate::vault::VaultError),
    #[error("cannot build the HTTP client for identity providers: {0}")]
    IdentityProviders(String),
}

/// What the first start on an empty database created, to be printed once.
#[derive(Debug, Clone)]
pub struct FirstRun {
    pub admin_email: String,
    pub admin_password: String,
}

pub const BOOTSTRAP_ADMIN_EMAIL: &str = "admin@gatehouse.local";

/// Opens storage (migrating it) and the master key. Shared by `serve` and every CLI command.
pub async fn open(settings: &Settings) -> Result<(Store, Sealer, FormSigner), StartError> {
    if settings.database_url.is_none() || !settings.data_dir.exists() {
        std::fs::create_dir_all(&settings.data_dir)
            .map_err(|e| StartError::DataDir(settings.data_dir.display().to_string(), e))?;
    }
    let store = Store::connect(settings.database_url.as_deref(), &settings.data_dir).await?;
    store.migrate().await?;
    let (ring, created) = MasterKey::load_ring(settings.master_key.as_deref(), &settings.data_dir)?;
    if created {
        tracing::warn!(
            path = %settings.data_dir.join(crate::crypto::master::KEY_FILE_NAME).display(),
            "created a new master key; back it up: without it the signing keys and vault cannot be read"
        );
    }
    let sealer = Sealer::with_ring(&ring)?;
    let master = ring.first().ok_or_else(|| crate::crypto::CryptoError::MasterKey("no master key".into()))?;
    let forms = FormSigner::new(&master.derive("form signing"));
    Ok((store, sealer, forms))
}

impl AppState {
    pub async fn build(settings: Settings, clock: SharedClock) -> Result<(Self, Option<FirstRun>), StartError> {
        let (store, sealer, forms) = open(&settings).await?;
        let shutdown = tokio_util::sync::CancellationToken::new();
        let keys = KeyRing::load_or_create(&store, &sealer, settings.signing_alg, clock.now()).await?;
        let first_run = bootstrap(&store, &sealer, &clock).await?;
        let client_documents = Arc::new(oauth::cimd::MetadataDocuments::new(&settings.cimd)?);
        let sealer = Arc::new(sealer);
        let vault = Arc::new(crate::vault::Vault::new(store.clone(), sealer.clone(), clock.clone())?);
        let (settings_external, clock_for_issuers) = (settings.external_issuer, clock.clone());
        let oidc = Arc::new(identity::oidc::OidcProviders::new(&settings.oidc).map_err(StartError::IdentityProviders)?);
        let origin = resource::origin::OriginPolicy::new(&settings.public_url);
        let state = AppState(Arc::new(Shared {
            origin,
            settings: Arc::new(settings),
            store,
            keys: Arc::new(keys),
            verified_tokens: Arc::new(VerifiedTokens::default()),
            confirmed: Arc::default(),
            sealer,
            forms,
            clock,
            login_throttle: Arc::new(LoginThrottle::default()),
            client_usage: Arc::new(oauth::usage::ClientUsage::default()),
            workspaces: Arc::new(gateway::workspaces::WorkspaceServers::new(shutdown.clone())),
            listed_upstreams: Arc::new(gateway::listed::ListedUpstreams::default()),
            sessions: Arc::new(gateway::sessions::SessionBindings::default()),
            admission: Arc::new(gateway::admission::Admission::default()),
            upstream_health: Arc::new(web::health::HealthBoard::default()),
            client_documents,
            vault,
            external_issuers: Arc::new(resource::external::ExternalIssuers::new(settings_external, clock_for_issuers)),
            oidc,
            shutdown,
        }));
        Ok((state, first_run))
    }

    pub fn mcp_url(&self, slug: &str) -> String {
        mcp_url(&self.settings.public_url, slug)
    }

    /// How the gateway picks upstream credentials for callers in a workspace.
    pub fn credentials_for(&self, workspace_id: &str, slug: &str) -> Arc<crate::vault::bearer::WorkspaceCredentials> {
        Arc::new(crate::vault::bearer::WorkspaceCredentials {
            vault: self.vault.clone(),
            store: self.store.clone(),
            workspace_id: workspace_id.to_owned(),
            pages_url: format!("{}/w/{slug}/upstreams/", self.settings.public_url.trim_end_matches('/')),
        })
    }
}

/// On an empty database: the `default` workspace and an admin who owns it.
async fn bootstrap(store: &Store, sealer: &Sealer, clock: &SharedClock) -> Result<Option<FirstRun>, StartError> {
    if store.count_users().await? > 0 {
        return Ok(None);
    }
    let fail = |e: &dyn std::fmt::Display| StartError::Bootstrap(e.to_string());
    let ws = match store.workspace_by_slug(DEFAULT_WORKSPACE).await? {
        Some(ws) => ws,
        None => {
            let ws = workspace::create(store, clock.as_ref(), DEFAULT_WORKSPACE, Some("Default"))
                .await
                .map_err(|e| fail(&e))?;
            let demo = gateway::upstream::UpstreamSpec::Demo;
            gateway::registry::add(store, sealer, clock.as_ref(), &ws.id, "demo", &demo).await.map_err(|e| fail(&e))?;
            ws
        }
    };
    let admin_password = password::generate()?;
    let admin = identity::create_user(store, clock.as_ref(), BOOTSTRAP_ADMIN_EMAIL, &admin_password, true)
        .await
        .map_err(|e| fail(&e))?;
    workspace::add_member(store, clock.as_ref(), &ws.id, &admin.id, Role::Owner).await?;
    Ok(Some(FirstRun { admin_email: admin.email, admin_password }))
}

pub fn router(state: AppState) -> Router {
    let register_limit = limit::per_address(state.settings.registrations_per_minute, || {
        OAuthError::invalid_request("too many registrations from this address; wait a minute and retry")
            .with_status(StatusCode::TOO_MANY_REQUESTS)
            .into_response()
    });

    // Endpoints that browser-based MCP clients call cross-origin. No cookies are involved.
    let mut oauth_api = Router::new()
        .route("/.well-known/oauth-authorization-server", get(oauth::metadata::authorization_server))
        .route("/jwks.json", get(oauth::metadata::jwks))
        .route(crate::vault::CLIENT_DOCUMENT_PATH, get(crate::vault::document::client_document))
        .route("/token", post(oauth::token::token))
        .route("/revoke", post(oauth::revoke::revoke))
        .route("/introspect", post(oauth::introspect::introspect));
    // Registration and RFC 7592 management share the per-address limit: both are open to
    // anyone, and management guesses at registration access tokens should be slow.
    let register = Router::new().route("/register", post(oauth::register::register)).route(
        "/register/{client_id}",
        get(oauth::register::manage::read).put(oauth::register::manage::update).delete(oauth::register::manage::delete),
    );
    oauth_api = match register_limit {
        Some(limit) => oauth_api.merge(register.layer(limit)),
        None => oauth_api.merge(register),
    };
    // OAuth endpoints and pages answer quickly or not at all; MCP calls may legitimately run
    // long (a slow tool), so the timeout is not applied to them.
    let timeout = TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, Duration::from_secs(30));
    let oauth_api = oauth_api.layer(CorsLayer::permissive().allow_credentials(false)).layer(timeout);

    let pages = Router::new()
        .route("/", get(web::home::home))
        .route("/login", get(identity::login::login_page).post(identity::login::login_submit))
        .route("/logout", post(identity::login::logout))
        .route("/login/oidc/{id}", get(identity::oidc::flow::start))
        .route("/login/oidc/{id}/callback", get(identity::oidc::flow::callback))
        .route("/authorize", get(oauth::authorize::authorize))
        .route("/authorize/consent", post(oauth::authorize::consent))
        .merge(web::routes())
        .route("/static/style.css", get(web::stylesheet))
        .route("/static/copy.js", get(web::copy_script))
        .layer(timeout);

    // The MCP endpoints and their metadata. CORS lets browser-based MCP clients call them;
    // no cookies are involved, the bearer token is the credential.
    let mcp = Router::new()
        .route("/t/{slug}/mcp", any(gateway::endpoint::mcp))
        .route("/.well-known/oauth-protected-resource/t/{slug}/mcp", get(resource::metadata::protected_resource))
        .layer(
            CorsLayer::permissive()
                .allow_credentials(false)
                .expose_headers([header::WWW_AUTHENTICATE, HeaderName::from_static("mcp-session-id")]),
        );

    Router::new()
        .merge(oauth_api)
        .merge(mcp)
        .merge(pages)
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state)
        .layer(axum::middleware::from_fn(web::security_headers))
        // The span names the path only: query strings carry authorization codes and state
        // (`/oauth/upstream/callback?code=...`), which must not reach the logs at any level.
        // A failed response is logged at debug only: the handler that failed has logged why,
        // at the level it deserves, and a 503 from load shedding is no error at all; logged
        // at error, each refused request wrote a line just when the gateway had least to spare.
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &axum::http::Request<axum::body::Body>| {
                    tracing::debug_span!("request", method = %req.method(), path = %req.uri().path())
                })
                .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG)),
        )
        .layer(SetSensitiveResponseHeadersLayer::new([header::SET_COOKIE, header::LOCATION]))
        .layer(SetSensitiveRequestHeadersLayer::new([header::AUTHORIZATION, header::COOKIE]))
}

async fn readyz(axum::extract::State(state): axum::extract::State<AppState>) -> axum::response::Response {
    match state.store.ping().await {
        Ok(()) => "ready".into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable").into_response()
        }
    }
}

/// What one round of housekeeping deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub codes: u64,
    pub sessions: u64,
    pub refresh_tokens: u64,
    pub unused_clients: u64,
    pub oidc_login_states: u64,
}

/// Deletes what has expired: codes, sessions, refresh tokens, and client registrations never
/// used within `unused_client_ttl`.
pub async fn housekeeping(state: &AppState) -> Result<Swept, crate::store::StoreError> {
    let now = state.clock.now();
    let store = &state.store;
    let unused_clients = match state.settings.unused_client_ttl {
        Some(ttl) => store.purge_unused_clients(now - ttl).await?,
        None => 0,
    };
    store.purge_upstream_oauth_states(now).await?;
    Ok(Swept {
        codes: store.purge_codes(now).await?,
        sessions: store.purge_sessions(now).await?,
        refresh_tokens: store.purge_refresh_tokens(now).await?,
        unused_clients,
        oidc_login_states: store.purge_oidc_login_states(now).await?,
    })
}

/// Runs [`housekeeping`] once an hour.
fn spawn_housekeeping(state: AppState) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3_600));
        loop {
            tick.tick().await;
            match housekeeping(&state).await {
                Ok(swept) => tracing::debug!(?swept, "housekeeping removed expired rows"),
                Err(e) => tracing::warn!(error = %e, "housekeeping failed; will retry in an hour"),
            }
        }
    });
}

/// Refreshes upstream tokens before they expire (at 80 % of their lifetime), every 30 s.
/// Tokens that fail wait out their backoff, so this never hammers a broken upstream.
fn spawn_refresher(state: AppState) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        loop {
            tick.tick().await;
            if let Err(e) = state.vault.refresh_due(100).await {
                tracing::warn!(error = %e, "upstream token refresh round failed; will retry");
            }
        }
    });
}

/// A bound, running server.
pub struct Running {
    pub addr: SocketAddr,
    pub state: AppState,
    pub first_run: Option<FirstRun>,
    pub handle: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Binds the listener first (so port 0 works and the public URL can follow the real port),
/// then builds the state and serves in a background task.
pub async fn start(mut settings: Settings, clock: SharedClock, public_url_given: bool) -> Result<Running, StartError> {
    let listener = TcpListener::bind(settings.listen).await.map_err(|e| StartError::Listen(settings.listen, e))?;
    let addr = listener.local_addr().map_err(|e| StartError::Listen(settings.listen, e))?;
    if !public_url_given {
        settings.public_url = format!("http://{addr}");
    }
    let (state, first_run) = AppState::build(settings, clock).await?;
    spawn_housekeeping(state.clone());
    spawn_refresher(state.clone());
    // Load shedding wraps the whole router: a refusal skips routing and every layer.
    let app = tower::Layer::layer(&gateway::admission::ShedLayer(state.admission.clone()), router(state.clone()));
    let app = axum::ServiceExt::<axum::extract::Request>::into_make_service_with_connect_info::<SocketAddr>(app);
    let streams = state.shutdown.clone();
    let handle = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                shutdown_signal().await;
                // Open SSE streams would otherwise hold the graceful shutdown forever.
                streams.cancel();
            })
            .await
    });
    Ok(Running { addr, state, first_run, handle })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
