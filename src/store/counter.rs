//! The kept-rows counter (see [`super::changes`]) read through the pool, where there is no
//! marker connection (PostgreSQL, an in-memory SQLite database): one query for all the requests
//! waiting. Each request needs a value read after it arrived, and a value read by a query sent
//! after several requests arrived serves them all, so under load a pool acquire, a round trip
//! and sqlx's ping on release (it pings every connection that goes back to the pool) are paid
//! once per round trip instead of once per request.

use tokio::sync::{mpsc, oneshot};

use super::changes::KEPT_ROWS_VERSION;
use super::{Pool, with_pool};

/// Requests waiting at most; more wait to be queued.
const MAX_WAITING: usize = 4096;

type Waiter = oneshot::Sender<Option<i64>>;

#[derive(Debug, Clone)]
pub(super) struct CounterReader {
    waiters: mpsc::Sender<Waiter>,
}

impl CounterReader {
    /// Starts the reader's task on the current runtime.
    pub(super) fn start(pool: Pool) -> Self {
        let (waiters, queue) = mpsc::channel(MAX_WAITING);
        tokio::spawn(read_for_waiters(pool, queue));
        CounterReader { waiters }
    }

    /// The counter, read by a query sent after this call began; `None` if it could not be read.
    pub(super) async fn read(&self) -> Option<i64> {
        let (waiter, answer) = oneshot::channel();
        self.waiters.send(waiter).await.ok()?;
        answer.await.ok().flatten()
    }
}

async fn read_for_waiters(pool: Pool, mut queue: mpsc::Receiver<Waiter>) {
    let mut waiting = Vec::new();
    while queue.recv_many(&mut waiting, MAX_WAITING).await > 0 {
        // Everyone in `waiting` was queued before this query is sent.
        let read = with_pool!(&pool, p => sqlx::query_scalar::<_, i64>(KEPT_ROWS_VERSION).fetch_one(p).await);
        let answer = match read {
            Ok(counter) => Some(counter),
            Err(error) => {
                tracing::warn!(%error, "kept-rows counter unavailable; reading rows instead");
                None
            }
        };
        for waiter in waiting.drain(..) {
            // A request that went away does not need its answer.
            let _ = waiter.send(answer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::sqlite::SqlitePoolOptions;

    #[tokio::test]
    async fn every_read_sees_the_bumps_committed_before_it_began() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}?mode=rwc", dir.path().join("t.db").display());
        let pool = SqlitePoolOptions::new().max_connections(2).connect(&url).await.unwrap();
        for sql in [
            "CREATE TABLE kept_rows_version (only_row INTEGER PRIMARY KEY, version BIGINT NOT NULL)",
            "INSERT INTO kept_rows_version VALUES (1, 0)",
        ] {
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
        let reader = CounterReader::start(Pool::Sqlite(pool.clone()));
        for round in 1..=20 {
            sqlx::query("UPDATE kept_rows_version SET version = version + 1").execute(&pool).await.unwrap();
            // Many at once: they share queries, and each answer is from after the bump.
            let reads = (0..50).map(|_| reader.read());
            for answer in futures::future::join_all(reads).await {
                assert_eq!(answer, Some(round), "round {round}");
            }
        }
        sqlx::query("DROP TABLE kept_rows_version").execute(&pool).await.unwrap();
        assert_eq!(reader.read().await, None, "an unreadable counter is no answer, not an old one");
    }
}
