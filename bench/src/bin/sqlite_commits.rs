//! Single-connection durable SQLite commits per second (WAL, synchronous FULL): one small
//! INSERT per transaction for the given time. The baseline for refresh-token rotations on SQLite.

use std::str::FromStr;
use std::time::Instant;

use sqlx::ConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};

fn main() -> anyhow::Result<()> {
    let args = gatehouse_bench::Args::from_env();
    let path = args.str_or("--db", "bench-commits.db");
    let seconds: f64 = args.num_or("--seconds", 3.0);
    gatehouse_bench::current_thread().block_on(async move {
        let _ = std::fs::remove_file(&path);
        let mut conn = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .connect()
            .await?;
        sqlx::query("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER NOT NULL)").execute(&mut conn).await?;
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed().as_secs_f64() < seconds {
            let mut tx = sqlx::Connection::begin(&mut conn).await?;
            sqlx::query("INSERT INTO t (k, v) VALUES ($1, $2)").bind(format!("key-{n}")).bind(n as i64).execute(&mut *tx).await?;
            tx.commit().await?;
            n += 1;
        }
        let per_sec = n as f64 / start.elapsed().as_secs_f64();
        drop(conn);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{path}{suffix}"));
        }
        println!("{}", serde_json::json!({"commits_per_sec": per_sec}));
        Ok(())
    })
}
