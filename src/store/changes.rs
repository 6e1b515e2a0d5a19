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
//! Asking takes a few microseconds on the caller's thread (see [`super::data_version`]): no
//! query with a row to decode, no hop to a sqlx connection thread.
//!
//! PostgreSQL has no such cheap question (a revocation on another node is only seen by asking
//! the database), so there the rows are read on every request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use sqlx::sqlite::SqliteConnectOptions;

use super::data_version::{DataVersion, DataVersionError};
use super::{ClientRow, Store, StoreResult, WorkspaceIssuerRow, WorkspaceRow};

/// Rows kept at most; when full the cache is emptied (a slug costs one read to come back).
const MAX_ROWS: usize = 4096;

/// The database's change marker (see the module docs).
pub struct ChangeMarker {
    connection: Mutex<DataVersion>,
}

impl std::fmt::Debug for ChangeMarker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeMarker").finish_non_exhaustive()
    }
}

impl ChangeMarker {
    /// Opens the marker's own connection to the pool's database file (which must exist).
    pub fn open(options: &SqliteConnectOptions) -> Result<Self, DataVersionError> {
        Ok(ChangeMarker { connection: Mutex::new(DataVersion::open(options.get_filename())?) })
    }

    /// The current marker: equal to an earlier answer only if nothing was committed in between.
    pub fn current(&self) -> Result<i64, DataVersionError> {
        self.connection.lock().unwrap_or_else(PoisonError::into_inner).current()
    }
}

/// A workspace row with the external issuer it trusts, if any.
pub type WorkspaceAndIssuer = (WorkspaceRow, Option<WorkspaceIssuerRow>);

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
    pub async fn current_rows(&self) -> CurrentRows<'_> {
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
        let read = async {
            let Some(workspace) = self.store.workspace_by_id(id).await? else {
                return Ok(None);
            };
            let issuer = self.store.workspace_issuer(&workspace.id).await?;
            Ok(Some((workspace, issuer)))
        };
        self.kept(&self.store.kept.workspaces_by_id, id, read).await
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
    use sqlx::sqlite::SqliteJournalMode;

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
        let marker = ChangeMarker::open(&options).unwrap();
        let first = marker.current().unwrap();
        assert_eq!(marker.current().unwrap(), first, "nothing was committed");
        sqlx::query("INSERT INTO t VALUES (1)").execute(&mut writer).await.unwrap();
        let second = marker.current().unwrap();
        assert_ne!(second, first, "a commit on another connection must move the marker");
        // A read changes nothing.
        sqlx::query("SELECT * FROM t").fetch_all(&mut writer).await.unwrap();
        assert_eq!(marker.current().unwrap(), second);
        // Nor does a transaction that is rolled back.
        let mut tx = sqlx::Connection::begin(&mut writer).await.unwrap();
        sqlx::query("INSERT INTO t VALUES (2)").execute(&mut *tx).await.unwrap();
        tx.rollback().await.unwrap();
        assert_eq!(marker.current().unwrap(), second);
    }

    #[tokio::test]
    async fn askers_on_other_threads_each_see_a_commit_that_finished_before_they_asked() {
        let (_dir, options) = file_db().await;
        let mut writer = options.connect().await.unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER)").execute(&mut writer).await.unwrap();
        let marker = Arc::new(ChangeMarker::open(&options).unwrap());
        for round in 0..20 {
            let before = marker.current().unwrap();
            sqlx::query("INSERT INTO t VALUES ($1)").bind(round).execute(&mut writer).await.unwrap();
            let askers: Vec<_> = (0..4)
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

    #[test]
    fn a_row_is_served_only_under_the_marker_it_was_read_at() {
        let rows = MarkedRows::default();
        rows.put("acme", 7, Arc::new("row"));
        assert_eq!(rows.get("acme", 7).as_deref(), Some(&"row"));
        assert!(rows.get("acme", 8).is_none());
        assert!(rows.get("other", 7).is_none());
    }
}
