//! "Has anything been committed since?", answered cheaply, so that the rows read on every MCP
//! request (the workspace, with the counters that reveal revocations) and every token request
//! (the client, its workspace) can be kept in memory without ever serving them stale.
//!
//! SQLite's `PRAGMA data_version`, asked on a connection of its own that never writes, changes
//! whenever any other connection commits: the pool's, the CLI's, another process's. A row read
//! after the marker was taken may be kept under that marker; when the marker moves, it is read
//! again. There is no window: the marker is asked anew for each request, after the request
//! arrived, so a commit that finished before the request was received is always seen.
//!
//! The question is asked on the request's own thread, through rusqlite, not through sqlx: sqlx
//! runs every statement on its connection's worker thread, and the two thread switches of that
//! hop cost more than the question (profiled: with the server on one core they were a third of
//! its time on the token endpoint). In WAL mode the question reads the shared-memory index
//! and takes and drops a read lock (two `fcntl` calls, a few microseconds), and the database
//! header page after a commit, which the commit has just left in the OS page cache. It never
//! waits for a writer: WAL readers do not block, and the connection's busy timeout is zero, so
//! a lock that is held anyway (a WAL reset, a recovery) is an error and the request reads
//! its rows instead.
//!
//! PostgreSQL has no such cheap question (a revocation on another node is only seen by asking
//! the database), so there the rows are read on every request.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::{Connection, OpenFlags};

use super::issuers::WorkspaceAndIssuer;
use super::{ClientRow, Store, StoreResult};

/// Rows kept at most; when full the cache is emptied (a slug costs one read to come back).
const MAX_ROWS: usize = 4096;

/// The database's change marker (see the module docs).
pub struct ChangeMarker {
    /// `None` once closed. Held for one statement at a time, a few microseconds.
    connection: Mutex<Option<Connection>>,
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
}

impl ChangeMarker {
    /// Opens the marker's own connection to the database file the pool has already created.
    pub fn open(path: &Path) -> Result<Self, MarkerError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let connection = Connection::open_with_flags(path, flags)?;
        // Never wait on the async runtime's thread (see the module docs).
        connection.busy_timeout(std::time::Duration::ZERO)?;
        Ok(ChangeMarker { connection: Mutex::new(Some(connection)) })
    }

    /// The current marker: equal to an earlier answer only if nothing was committed in between.
    pub fn current(&self) -> Result<i64, MarkerError> {
        let connection = self.connection.lock().unwrap_or_else(PoisonError::into_inner);
        let connection = connection.as_ref().ok_or(MarkerError::Closed)?;
        Ok(connection.prepare_cached("PRAGMA data_version")?.query_row([], |row| row.get(0))?)
    }

    pub fn close(&self) {
        let connection = self.connection.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(connection) = connection
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
    /// The rows a request needs, as of now: the marker is asked once, and each row is then
    /// served from memory if it was read under that same marker, else read (and kept).
    /// A row is never older than this call: take it when the request arrives, once, and read
    /// through it what the request needs. Without a marker (PostgreSQL, or an
    /// in-memory SQLite database, or the marker's connection failing) every row is read.
    pub fn current_rows(&self) -> CurrentRows<'_> {
        let marker = match &self.changes {
            Some(changes) => match changes.current() {
                Ok(marker) => Some(marker),
                Err(error) => {
                    tracing::warn!(%error, "database change marker unavailable; reading rows instead");
                    None
                }
            },
            None => None,
        };
        CurrentRows { store: self, marker }
    }
}

/// See [`Store::current_rows`].
pub struct CurrentRows<'a> {
    store: &'a Store,
    marker: Option<i64>,
}

impl CurrentRows<'_> {
    async fn kept<T>(
        &self,
        rows: &MarkedRows<T>,
        key: &str,
        read: impl Future<Output = StoreResult<Option<T>>>,
    ) -> StoreResult<Option<Arc<T>>> {
        if let Some(marker) = self.marker
            && let Some(row) = rows.get(key, marker)
        {
            return Ok(Some(row));
        }
        let Some(row) = read.await? else {
            return Ok(None);
        };
        let row = Arc::new(row);
        if let Some(marker) = self.marker {
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

    #[tokio::test]
    async fn the_marker_moves_with_every_commit_made_elsewhere_and_only_then() {
        let (_dir, options) = file_db().await;
        let mut writer = options.connect().await.unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER)").execute(&mut writer).await.unwrap();
        let marker = ChangeMarker::open(options.get_filename()).unwrap();
        let first = marker.current().unwrap();
        assert_eq!(marker.current().unwrap(), first, "nothing was committed");
        sqlx::query("INSERT INTO t VALUES (1)").execute(&mut writer).await.unwrap();
        let second = marker.current().unwrap();
        assert_ne!(second, first, "a commit on another connection must move the marker");
        // A read changes nothing.
        sqlx::query("SELECT * FROM t").fetch_all(&mut writer).await.unwrap();
        assert_eq!(marker.current().unwrap(), second);
        marker.close();
        assert!(matches!(marker.current(), Err(MarkerError::Closed)));
    }

    #[tokio::test]
    async fn every_commit_that_finished_before_the_question_is_seen_across_threads() {
        let (_dir, options) = file_db().await;
        let mut writer = options.connect().await.unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER)").execute(&mut writer).await.unwrap();
        let marker = Arc::new(ChangeMarker::open(options.get_filename()).unwrap());
        for round in 0..20 {
            let before = marker.current().unwrap();
            sqlx::query("INSERT INTO t VALUES ($1)").bind(round).execute(&mut writer).await.unwrap();
            let askers: Vec<_> = (0..8)
                .map(|_| {
                    let marker = marker.clone();
                    std::thread::spawn(move || marker.current().unwrap())
                })
                .collect();
            for asker in askers {
                assert_ne!(asker.join().unwrap(), before, "round {round}: an answer from before the commit");
            }
        }
    }

    #[tokio::test]
    async fn a_held_write_lock_neither_blocks_the_question_nor_hides_the_commit() {
        let (_dir, options) = file_db().await;
        let mut writer = options.connect().await.unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER)").execute(&mut writer).await.unwrap();
        let marker = ChangeMarker::open(options.get_filename()).unwrap();
        let before = marker.current().unwrap();
        // A writer in the middle of a transaction: WAL readers do not wait for it.
        sqlx::query("BEGIN IMMEDIATE").execute(&mut writer).await.unwrap();
        sqlx::query("INSERT INTO t VALUES (1)").execute(&mut writer).await.unwrap();
        let started = std::time::Instant::now();
        assert_eq!(marker.current().unwrap(), before, "nothing is committed yet");
        assert!(started.elapsed() < std::time::Duration::from_secs(1), "the question waited for the writer");
        sqlx::query("COMMIT").execute(&mut writer).await.unwrap();
        assert_ne!(marker.current().unwrap(), before);
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
