//! "Has anything the server keeps in memory changed since?", answered cheaply, so that the rows
//! read on every MCP request (the workspace, with the counters that reveal revocations) and every
//! token request (the client, its workspace) can be kept without ever serving them stale.
//!
//! The answer is the counter of migration 0010, `kept_rows_version`, which triggers bump in the
//! same transaction as any change to those rows, whoever makes it: a page, the CLI, another
//! process or node. A row read after the counter was read may be kept under that value; when the
//! counter moves, it is read again. There is no window: the counter is read anew for each
//! request, after the request arrived, so a commit that finished before the request was received
//! is always seen. Commits that change no kept row (a refresh-token rotation, a code, an audit
//! event) leave the counter, and so the kept rows, in place.
//!
//! On SQLite on a file the counter is read on the request's own thread, through rusqlite, not
//! through sqlx: sqlx runs every statement on its connection's worker thread, and the two thread
//! switches of that hop cost more than the question (profiled: with the server on one core they
//! were a third of its time on the token endpoint). And it is read only when `PRAGMA
//! data_version` says something was committed at all since it was last read: that pragma, asked
//! on a connection of its own that never writes, changes whenever another connection commits.
//! In WAL mode either question reads the shared-memory index and takes and drops a read lock
//! (two `fcntl` calls, a few microseconds); the counter's page after a commit is in the OS page
//! cache. Neither waits for a writer: WAL readers do not block, and the connection's busy
//! timeout is zero, so a lock that is held anyway (a WAL reset, a recovery) is an error and the
//! request reads its rows instead.
//!
//! On PostgreSQL (and an in-memory SQLite database, which no second connection can see) the
//! counter is read through the pool, only for a request that needs a kept row, by one query for
//! all the requests waiting ([`super::counter`]): in place of a query per row per request.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::{Connection, OpenFlags};

use super::issuers::WorkspaceAndIssuer;
use super::{ClientRow, Store, StoreResult};

/// Rows kept at most; when full the cache is emptied (a slug costs one read to come back).
const MAX_ROWS: usize = 4096;

/// The counter's value, as one statement reads it.
pub(super) const KEPT_ROWS_VERSION: &str = "SELECT version FROM kept_rows_version";

/// The database's change marker (see the module docs).
pub struct ChangeMarker {
    /// `None` once closed. Held for one or two statements at a time, a few microseconds.
    connection: Mutex<Option<MarkerConnection>>,
}

struct MarkerConnection {
    connection: Connection,
    /// The last `data_version` seen, and the counter read after it.
    last: Option<(i64, i64)>,
}

impl std::fmt::Debug for ChangeMarker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeMarker").finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MarkerError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error("the store is closed")]
    Closed,
    #[error("opening the change marker was interrupted (the runtime is shutting down)")]
    OpenInterrupted,
}

impl ChangeMarker {
    /// Opens the marker's own connection to the database file the pool has already created.
    pub fn open(path: &Path) -> Result<Self, MarkerError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let connection = Connection::open_with_flags(path, flags)?;
        // Never wait on the async runtime's thread (see the module docs).
        connection.busy_timeout(std::time::Duration::ZERO)?;
        Ok(ChangeMarker { connection: Mutex::new(Some(MarkerConnection { connection, last: None })) })
    }

    /// The current marker: equal to an earlier answer only if no kept row changed in between.
    pub fn current(&self) -> Result<i64, MarkerError> {
        let mut guard = self.connection.lock().unwrap_or_else(PoisonError::into_inner);
        let marker = guard.as_mut().ok_or(MarkerError::Closed)?;
        let data_version: i64 =
            marker.connection.prepare_cached("PRAGMA data_version")?.query_row([], |row| row.get(0))?;
        if let Some((seen, version)) = marker.last
            && seen == data_version
        {
            // Nothing was committed since the counter was read after `seen`.
            return Ok(version);
        }
        // Read after `data_version`: a commit in between moves `data_version` again, so the
        // next question reads the counter again rather than trusting this answer too long.
        let version = marker.connection.prepare_cached(KEPT_ROWS_VERSION)?.query_row([], |row| row.get(0))?;
        marker.last = Some((data_version, version));
        Ok(version)
    }

    pub fn close(&self) {
        let connection = self.connection.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(MarkerConnection { connection, .. }) = connection
            && let Err((_, error)) = connection.close()
        {
            tracing::warn!(%error, "could not close the database change marker's connection");
        }
    }
}

/// The rows that are read on every MCP request or token request.
#[derive(Debug, Default)]
pub struct KeptRows {
    workspaces_by_slug: MarkedRows<WorkspaceAndIssuer>,
    workspaces_by_id: MarkedRows<WorkspaceAndIssuer>,
    clients: MarkedRows<ClientRow>,
}

impl Store {
    /// The rows a request needs, as of now: the marker is read once (see the module docs), and
    /// each row is then served from memory if it was read under that same marker, else read (and
    /// kept). A row is never older than this call: take it when the request arrives, once, and
    /// read through it what the request needs. If the marker cannot be read, every row is read.
    pub fn current_rows(&self) -> CurrentRows<'_> {
        // Known now on SQLite on a file; otherwise read by the first row asked for.
        let known = self.changes.as_ref().and_then(|changes| match changes.current() {
            Ok(marker) => Some(Some(marker)),
            Err(error) => {
                tracing::warn!(%error, "database change marker unavailable; reading the counter through the pool");
                None
            }
        });
        CurrentRows { store: self, marker: tokio::sync::OnceCell::new_with(known) }
    }
}

/// See [`Store::current_rows`].
pub struct CurrentRows<'a> {
    store: &'a Store,
    /// Set when the rows were asked for (SQLite on a file), else by the first row asked for
    /// (through the pool, see [`super::counter`]). `None`: every row is read.
    marker: tokio::sync::OnceCell<Option<i64>>,
}

impl CurrentRows<'_> {
    async fn marker(&self) -> Option<i64> {
        *self.marker.get_or_init(|| self.store.counter.read()).await
    }

    async fn kept<T>(
        &self,
        rows: &MarkedRows<T>,
        key: &str,
        read: impl Future<Output = StoreResult<Option<T>>>,
    ) -> StoreResult<Option<Arc<T>>> {
        let marker = self.marker().await;
        if let Some(marker) = marker
            && let Some(row) = rows.get(key, marker)
        {
            return Ok(Some(row));
        }
        let Some(row) = read.await? else {
            return Ok(None);
        };
        let row = Arc::new(row);
        if let Some(marker) = marker {
            // Read after the marker was taken: at least as new as the marker says.
            rows.put(key, marker, row.clone());
        }
        Ok(Some(row))
    }

    /// The workspace named `slug`, with the issuer it trusts.
    pub async fn workspace_by_slug(&self, slug: &str) -> StoreResult<Option<Arc<WorkspaceAndIssuer>>> {
        self.kept(&self.store.kept.workspaces_by_slug, slug, self.store.workspace_and_issuer_by_slug(slug)).await
    }

    /// The workspace with this id, with the issuer it trusts.
    pub async fn workspace_by_id(&self, id: &str) -> StoreResult<Option<Arc<WorkspaceAndIssuer>>> {
        self.kept(&self.store.kept.workspaces_by_id, id, self.store.workspace_and_issuer_by_id(id)).await
    }

    /// The OAuth client with this id.
    pub async fn client(&self, id: &str) -> StoreResult<Option<Arc<ClientRow>>> {
        self.kept(&self.store.kept.clients, id, self.store.client_by_id(id)).await
    }
}

/// Rows kept under the marker they were read at.
struct MarkedRows<T> {
    rows: Mutex<HashMap<String, (i64, Arc<T>)>>,
}

impl<T> std::fmt::Debug for MarkedRows<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MarkedRows").field("rows", &self.lock().len()).finish()
    }
}

impl<T> Default for MarkedRows<T> {
    fn default() -> Self {
        MarkedRows { rows: Mutex::default() }
    }
}

impl<T> MarkedRows<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (i64, Arc<T>)>> {
        self.rows.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The row kept for `key`, if it was read at `marker`.
    fn get(&self, key: &str, marker: i64) -> Option<Arc<T>> {
        match self.lock().get(key) {
            Some((at, row)) if *at == marker => Some(row.clone()),
            _ => None,
        }
    }

    /// Keeps `row`, read after `marker` was taken.
    fn put(&self, key: &str, marker: i64, row: Arc<T>) {
        let mut rows = self.lock();
        if rows.len() >= MAX_ROWS && !rows.contains_key(key) {
            rows.clear();
        }
        rows.insert(key.to_owned(), (marker, row));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::ConnectOptions;
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};

    async fn file_db() -> (tempfile::TempDir, SqliteConnectOptions) {
        let dir = tempfile::tempdir().unwrap();
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("t.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal);
        (dir, options)
    }

    /// A database with the counter (as migration 0010 makes it) and a table of other writes.
    async fn with_counter(options: &SqliteConnectOptions) -> sqlx::SqliteConnection {
        let mut writer = options.connect().await.unwrap();
        for sql in [
            "CREATE TABLE t (x INTEGER)",
            "CREATE TABLE kept_rows_version (only_row INTEGER PRIMARY KEY, version BIGINT NOT NULL)",
            "INSERT INTO kept_rows_version VALUES (1, 0)",
        ] {
            sqlx::query(sql).execute(&mut writer).await.unwrap();
        }
        writer
    }

    const BUMP: &str = "UPDATE kept_rows_version SET version = version + 1";

    #[tokio::test]
    async fn the_marker_moves_with_every_bump_made_elsewhere_and_only_then() {
        let (_dir, options) = file_db().await;
        let mut writer = with_counter(&options).await;
        let marker = ChangeMarker::open(options.get_filename()).unwrap();
        let first = marker.current().unwrap();
        assert_eq!(marker.current().unwrap(), first, "nothing was committed");
        sqlx::query("INSERT INTO t VALUES (1)").execute(&mut writer).await.unwrap();
        assert_eq!(marker.current().unwrap(), first, "a commit that changes no kept row keeps the marker");
        sqlx::query(BUMP).execute(&mut writer).await.unwrap();
        let second = marker.current().unwrap();
        assert_ne!(second, first, "a bump on another connection must move the marker");
        // A read changes nothing; nor do other commits after the bump.
        sqlx::query("SELECT * FROM t").fetch_all(&mut writer).await.unwrap();
        sqlx::query("INSERT INTO t VALUES (2)").execute(&mut writer).await.unwrap();
        assert_eq!(marker.current().unwrap(), second);
        // A bump in the same transaction as other writes.
        sqlx::query("BEGIN").execute(&mut writer).await.unwrap();
        sqlx::query("INSERT INTO t VALUES (3)").execute(&mut writer).await.unwrap();
        sqlx::query(BUMP).execute(&mut writer).await.unwrap();
        sqlx::query("COMMIT").execute(&mut writer).await.unwrap();
        assert_ne!(marker.current().unwrap(), second);
        marker.close();
        assert!(matches!(marker.current(), Err(MarkerError::Closed)));
    }

    #[tokio::test]
    async fn every_bump_that_finished_before_the_question_is_seen_across_threads() {
        let (_dir, options) = file_db().await;
        let mut writer = with_counter(&options).await;
        let marker = Arc::new(ChangeMarker::open(options.get_filename()).unwrap());
        for round in 0..20 {
            let before = marker.current().unwrap();
            // Other commits in between, so `data_version` moves more often than the counter.
            sqlx::query("INSERT INTO t VALUES ($1)").bind(round).execute(&mut writer).await.unwrap();
            assert_eq!(marker.current().unwrap(), before);
            sqlx::query(BUMP).execute(&mut writer).await.unwrap();
            let askers: Vec<_> = (0..8)
                .map(|_| {
                    let marker = marker.clone();
                    std::thread::spawn(move || marker.current().unwrap())
                })
                .collect();
            for asker in askers {
                assert_ne!(asker.join().unwrap(), before, "round {round}: an answer from before the bump");
            }
        }
    }

    #[tokio::test]
    async fn a_held_write_lock_neither_blocks_the_question_nor_hides_the_bump() {
        let (_dir, options) = file_db().await;
        let mut writer = with_counter(&options).await;
        let marker = ChangeMarker::open(options.get_filename()).unwrap();
        let before = marker.current().unwrap();
        // A writer in the middle of a transaction: WAL readers do not wait for it.
        sqlx::query("BEGIN IMMEDIATE").execute(&mut writer).await.unwrap();
        sqlx::query(BUMP).execute(&mut writer).await.unwrap();
        let started = std::time::Instant::now();
        assert_eq!(marker.current().unwrap(), before, "nothing is committed yet");
        assert!(started.elapsed() < std::time::Duration::from_secs(1), "the question waited for the writer");
        sqlx::query("COMMIT").execute(&mut writer).await.unwrap();
        assert_ne!(marker.current().unwrap(), before);
    }

    #[tokio::test]
    async fn without_the_counter_the_marker_is_an_error_not_a_stale_answer() {
        let (_dir, options) = file_db().await;
        let mut writer = options.connect().await.unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER)").execute(&mut writer).await.unwrap();
        let marker = ChangeMarker::open(options.get_filename()).unwrap();
        assert!(matches!(marker.current(), Err(MarkerError::Sqlite(_))), "a database not yet migrated");
    }

    #[test]
    fn a_row_is_served_only_under_the_marker_it_was_read_at() {
        let rows = MarkedRows::default();
        rows.put("acme", 7, Arc::new("row"));
        assert_eq!(rows.get("acme", 7).as_deref(), Some(&"row"));
        assert!(rows.get("other", 7).is_none());
        assert!(rows.get("acme", 8).is_none());
    }
}
