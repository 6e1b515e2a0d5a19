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
//! Asking costs a hop to the connection's thread, not a query with a row to decode, and
//! concurrent requests share one question: a request takes the answer of the first question
//! started after it arrived, so under load there is one question in flight, not one per
//! request.
//!
//! PostgreSQL has no such cheap question (a revocation on another node is only seen by asking
//! the database), so there the rows are read on every request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection as _};
use tokio::sync::watch;

use super::issuers::WorkspaceAndIssuer;
use super::{ClientRow, Store, StoreResult};

/// Rows kept at most; when full the cache is emptied (a slug costs one read to come back).
const MAX_ROWS: usize = 4096;

/// The database's change marker (see the module docs).
pub struct ChangeMarker {
    progress: Mutex<Progress>,
    /// The latest answer, broadcast: every request waiting for it wakes at once (a lock
    /// handed from waiter to waiter made a convoy under load).
    answers: watch::Sender<Answer>,
    /// Used only by the one request asking at a time.
    connection: tokio::sync::Mutex<Option<SqliteConnection>>,
}

#[derive(Debug, Default)]
struct Progress {
    /// Questions started so far; a request may take the answer of any question numbered after
    /// the count it saw when it arrived.
    started: u64,
    /// A question is in flight.
    asking: bool,
}

#[derive(Debug, Clone, Copy, Default)]
struct Answer {
    /// Which question this answers (0: none yet). A failed question publishes nothing.
    number: u64,
    value: i64,
}

impl std::fmt::Debug for ChangeMarker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeMarker").field("progress", &*self.progress()).finish_non_exhaustive()
    }
}

/// Ends the question in flight even if its asker is cancelled halfway (a client that hung up):
/// the answer is published, or, without one, the waiters are woken to ask again.
struct Asking<'a> {
    marker: &'a ChangeMarker,
    number: u64,
    value: Option<i64>,
}

impl Drop for Asking<'_> {
    fn drop(&mut self) {
        let mut progress = self.marker.progress();
        progress.asking = false;
        match self.value {
            Some(value) => drop(self.marker.answers.send_replace(Answer { number: self.number, value })),
            None => self.marker.answers.send_modify(|_| {}),
        }
    }
}

impl ChangeMarker {
    /// Opens the marker's own connection to the same file as the pool.
    pub async fn open(options: &SqliteConnectOptions) -> Result<Self, sqlx::Error> {
        let connection = options.connect().await?;
        Ok(ChangeMarker {
            progress: Mutex::default(),
            answers: watch::Sender::new(Answer::default()),
            connection: tokio::sync::Mutex::new(Some(connection)),
        })
    }

    fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current marker: equal to an earlier answer only if nothing was committed in between.
    pub async fn current(&self) -> Result<i64, sqlx::Error> {
        let mut answers = self.answers.subscribe();
        let arrived = self.progress().started;
        loop {
            let answer = *answers.borrow_and_update();
            if answer.number > arrived {
                // That question started after this request arrived: its answer covers every
                // commit this request must see.
                return Ok(answer.value);
            }
            let mine = {
                let mut progress = self.progress();
                match progress.asking {
                    true => None,
                    false => {
                        progress.asking = true;
                        progress.started += 1;
                        Some(progress.started)
                    }
                }
            };
            let Some(number) = mine else {
                // Someone is asking; their question may have started before this request
                // arrived, so look again at whatever they answer.
                answers.changed().await.map_err(|_| sqlx::Error::PoolClosed)?;
                continue;
            };
            let mut asking = Asking { marker: self, number, value: None };
            let mut connection = self.connection.lock().await;
            let connection = connection.as_mut().ok_or(sqlx::Error::PoolClosed)?;
            let value: i64 = sqlx::query_scalar("PRAGMA data_version").fetch_one(connection).await?;
            asking.value = Some(value);
            return Ok(value);
        }
    }

    pub async fn close(&self) {
        let connection = self.connection.lock().await.take();
        if let Some(connection) = connection {
            drop(connection.close().await);
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
    pub async fn current_rows(&self) -> CurrentRows<'_> {
        let marker = match &self.changes {
            Some(changes) => match changes.current().await {
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
        let marker = ChangeMarker::open(&options).await.unwrap();
        let first = marker.current().await.unwrap();
        assert_eq!(marker.current().await.unwrap(), first, "nothing was committed");
        sqlx::query("INSERT INTO t VALUES (1)").execute(&mut writer).await.unwrap();
        let second = marker.current().await.unwrap();
        assert_ne!(second, first, "a commit on another connection must move the marker");
        // A read changes nothing.
        sqlx::query("SELECT * FROM t").fetch_all(&mut writer).await.unwrap();
        assert_eq!(marker.current().await.unwrap(), second);
        marker.close().await;
    }

    #[tokio::test]
    async fn concurrent_askers_each_see_a_commit_that_finished_before_they_asked() {
        let (_dir, options) = file_db().await;
        let mut writer = options.connect().await.unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER)").execute(&mut writer).await.unwrap();
        let marker = Arc::new(ChangeMarker::open(&options).await.unwrap());
        for round in 0..20 {
            let before = marker.current().await.unwrap();
            sqlx::query("INSERT INTO t VALUES ($1)").bind(round).execute(&mut writer).await.unwrap();
            let askers: Vec<_> = (0..8)
                .map(|_| {
                    let marker = marker.clone();
                    tokio::spawn(async move { marker.current().await.unwrap() })
                })
                .collect();
            for asker in askers {
                assert_ne!(asker.await.unwrap(), before, "round {round}: an answer from before the commit");
            }
        }
    }

    #[tokio::test]
    async fn an_asker_cancelled_halfway_does_not_leave_the_others_waiting() {
        let (_dir, options) = file_db().await;
        let marker = Arc::new(ChangeMarker::open(&options).await.unwrap());
        // Hold the connection so that the first asker is stuck in its question, then cancel it
        // (as hyper does when the client hangs up).
        let held = marker.connection.lock().await;
        let stuck = tokio::spawn({
            let marker = marker.clone();
            async move { marker.current().await }
        });
        while !marker.progress().asking {
            tokio::task::yield_now().await;
        }
        stuck.abort();
        assert!(stuck.await.unwrap_err().is_cancelled());
        drop(held);
        let answer = tokio::time::timeout(std::time::Duration::from_secs(5), marker.current()).await;
        assert!(answer.expect("the next request must not wait forever").is_ok());
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
