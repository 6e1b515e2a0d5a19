//! Storage: one set of SQL statements run on SQLite or PostgreSQL.
//!
//! Every statement is written once with `$N` placeholders (SQLite accepts them too);
//! [`with_pool!`] expands a block once per backend so query methods never branch by hand.

mod audit;
mod changes;
mod clients;
mod codes;
mod connections;
mod counter;
mod grants;
mod issuers;
mod keys;
mod machine_tokens;
mod members;
mod oidc;
mod rotations;
mod sessions;
mod upstreams;
mod users;
mod vault;
mod workspaces;

pub use audit::{AuditQuery, AuditRow};
pub use changes::CurrentRows;
pub use clients::{ClientRow, ClientUpdate, NewClient, source as client_source};
pub use codes::{CodeRedemption, CodeRow, NewCode};
pub use connections::{ConnectedAppRow, SessionFamilyRow, WorkspaceClientRow};
pub use grants::{GrantRow, NewRefreshToken, RefreshOutcome};
pub use issuers::{WorkspaceAndIssuer, WorkspaceIssuerRow};
pub use keys::SigningKeyRow;
pub use machine_tokens::MachineTokenRow;
pub use members::MemberRow;
pub use oidc::OidcLoginState;
pub use sessions::SessionRow;
pub use upstreams::UpstreamRow;
pub use users::UserRow;
pub use vault::{CredentialRow, OAuthStateRow, TokenRow, WORKSPACE_OWNER};
pub use workspaces::{MembershipRow, WorkspaceRow};

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

/// Errors from the storage layer. Callers map them to responses; details stay in logs.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0} already exists")]
    Conflict(&'static str),
    #[error("invalid database URL: {0}")]
    BadUrl(String),
    #[error("the refresh-token writer stopped before answering")]
    WriterGone,
    #[error("database change marker: {0}")]
    Marker(#[from] changes::MarkerError),
}

impl StoreError {
    /// Turns a unique-constraint violation into [`StoreError::Conflict`].
    fn conflict_on_unique(err: sqlx::Error, what: &'static str) -> Self {
        match &err {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(what),
            _ => StoreError::Database(err),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Clone, Debug)]
pub enum Pool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

/// Runs `$body` with `$p` bound to the concrete pool of whichever backend is in use.
/// The body is the same text for both backends, so the SQL is written once.
macro_rules! with_pool {
    ($pool:expr, $p:ident => $body:expr) => {
        match $pool {
            $crate::store::Pool::Sqlite($p) => $body,
            $crate::store::Pool::Postgres($p) => $body,
        }
    };
}
pub(crate) use with_pool;

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Clone, Debug)]
pub struct Store {
    pool: Pool,
    /// SQLite on a file only: reads the kept rows' counter on the request's thread (see [`changes`]).
    changes: Option<Arc<changes::ChangeMarker>>,
    /// Reads the kept rows' counter through the pool where there is no marker (see [`counter`]).
    counter: counter::CounterReader,
    /// Rows read on every MCP request or token, kept under the marker.
    kept: Arc<changes::KeptRows>,
    /// The one writer of refresh-token rotations (see [`rotations`]).
    rotations: rotations::Rotator,
}

impl Store {
    /// Opens the database named by `database_url` (PostgreSQL), or the SQLite file
    /// `gatehouse.db` inside `data_dir` when no URL is given.
    pub async fn connect(database_url: Option<&str>, data_dir: &Path) -> StoreResult<Self> {
        match database_url {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                let options = PgConnectOptions::from_str(url).map_err(|e| StoreError::BadUrl(format!("{e}")))?;
                // No ping before each use: it was a third round trip per statement (sqlx also
                // pings each connection as it is released). A connection that died with the
                // server fails one statement and is then replaced.
                let pool = PgPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(10))
                    .test_before_acquire(false)
                    .connect_with(options)
                    .await?;
                let pool = Pool::Postgres(pool);
                let rotations = rotations::Rotator::start(pool.clone());
                let counter = counter::CounterReader::start(pool.clone());
                Ok(Store { pool, changes: None, counter, kept: Arc::default(), rotations })
            }
            Some(url) if url.starts_with("sqlite:") => {
                let options = SqliteConnectOptions::from_str(url)
                    .map_err(|e| StoreError::BadUrl(format!("{e}")))?
                    .create_if_missing(true);
                // An in-memory database is private to each connection (or shared only within
                // one cache): no marker could see its commits.
                let on_file = !(url.contains(":memory:") || url.contains("mode=memory"));
                Self::open_sqlite(options, on_file).await
            }
            Some(other) => Err(StoreError::BadUrl(format!(
                "`{}` is neither postgres:// nor sqlite:",
                other.split(':').next().unwrap_or_default()
            ))),
            None => {
                let options =
                    SqliteConnectOptions::new().filename(data_dir.join("gatehouse.db")).create_if_missing(true);
                Self::open_sqlite(options, true).await
            }
        }
    }

    async fn open_sqlite(options: SqliteConnectOptions, on_file: bool) -> StoreResult<Self> {
        let options = options
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit is on disk before it is answered. With NORMAL a power loss may roll
            // back the last commits, and among them a revocation, which would bring a revoked
            // grant back to life; durable revocation is worth an fsync per write.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        // No ping before each use: the database is a local file, so a connection does not go
        // stale, and the ping was a second hop to the connection's thread on every query.
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await?;
        let changes = match on_file {
            true => {
                // Opening a file may wait on the disk: not on the async runtime's thread.
                let path = options.get_filename().to_path_buf();
                let marker = tokio::task::spawn_blocking(move || changes::ChangeMarker::open(&path))
                    .await
                    .map_err(|_| StoreError::Marker(changes::MarkerError::OpenInterrupted))??;
                Some(Arc::new(marker))
            }
            false => None,
        };
        let pool = Pool::Sqlite(pool);
        let rotations = rotations::Rotator::start(pool.clone());
        let counter = counter::CounterReader::start(pool.clone());
        Ok(Store { pool, changes, counter, kept: Arc::default(), rotations })
    }

    pub fn backend_name(&self) -> &'static str {
        match self.pool {
            Pool::Sqlite(_) => "sqlite",
            Pool::Postgres(_) => "postgres",
        }
    }

    /// Applies any migrations not yet applied. Safe to call on every start.
    pub async fn migrate(&self) -> StoreResult<()> {
        match &self.pool {
            Pool::Sqlite(p) => SQLITE_MIGRATOR.run(p).await?,
            Pool::Postgres(p) => POSTGRES_MIGRATOR.run(p).await?,
        }
        Ok(())
    }

    /// A cheap round trip, for `/readyz`.
    pub async fn ping(&self) -> StoreResult<()> {
        with_pool!(&self.pool, p => sqlx::query("SELECT 1").execute(p).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn close(&self) {
        if let Some(changes) = &self.changes {
            changes.close();
        }
        with_pool!(&self.pool, p => p.close().await)
    }

    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }
}
