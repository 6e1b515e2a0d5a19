//! Refresh-token rotations, committed in groups.
//!
//! A rotation must be on disk before it is answered, so one commit per rotation made the
//! disk's flush rate the ceiling; on SQLite, concurrent rotations also queued on the write
//! lock in the busy handler's millisecond sleeps. Rotations are instead handed to one writer
//! task. It takes everything waiting, spends all the presented tokens, stores their
//! successors and touches their grants (on PostgreSQL in one statement with data-modifying
//! CTEs; on SQLite in four, in a transaction), and commits once: a group of rotations costs
//! one flush and a fixed number of statements, whatever its size. Nobody waits on purpose: a
//! group is whatever queued while the previous one was being committed.
//!
//! The result is the same as running the group's rotations one after another: each token
//! appears at most once in a group (a second presentation waits for the next group, where it
//! is seen as used), and a failed statement makes the writer roll the group back and run its
//! rotations one at a time, so one bad row cannot fail the others.
//!
//! The writer keeps one pool connection while work keeps coming, and its statements are few:
//! on PostgreSQL one text for any group size (the group comes as arrays), on SQLite four shapes
//! (groups are padded with rows that match nothing). Taking any connection per group, with a
//! statement text per group size, made each of the pool's connections prepare (and PostgreSQL
//! plan) every size again, which cost more than the rotations.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::{Acquire as _, Postgres, Sqlite};
use tokio::sync::{mpsc, oneshot};

use super::grants::{GRANT_COLUMNS, GrantRow, NewRefreshToken, RefreshOutcome};
use super::{Pool, StoreError, StoreResult};

/// Group sizes the statements are written for; a group is padded up to the next one.
const SHAPES: [usize; 4] = [1, 4, 16, 64];
/// Rotations in one group at most (6 bound values each, far below either database's limit).
const MAX_GROUP: usize = SHAPES[SHAPES.len() - 1];
/// The writer gives its connection back to the pool after this long without work (closing
/// the pool waits for it).
const KEEP_IDLE: Duration = Duration::from_millis(100);
/// Rotations waiting for the writer at most; callers beyond that wait to queue.
const MAX_QUEUED: usize = 1024;

/// One presented refresh token to rotate.
#[derive(Debug, Clone)]
pub struct Rotation {
    pub token_hash: String,
    /// Only this client may spend the token.
    pub client_id: String,
    pub now: i64,
    /// A token presented again within this many seconds of its use is a retry, not reuse.
    pub grace_secs: i64,
    /// The successor; its grant id and scope are taken from the token it replaces.
    pub successor: NewRefreshToken,
}

struct Job {
    rotation: Rotation,
    reply: oneshot::Sender<StoreResult<RefreshOutcome>>,
}

/// The handle requests queue their rotations on. The writer task ends when the last handle
/// (so the last clone of the store) is dropped.
#[derive(Debug, Clone)]
pub(super) struct Rotator {
    jobs: mpsc::Sender<Job>,
    counts: Arc<Counts>,
}

/// Groups committed and the rotations they held, since the start.
#[derive(Debug, Default)]
struct Counts {
    groups: AtomicU64,
    rotations: AtomicU64,
}

impl Rotator {
    pub(super) fn start(pool: Pool) -> Self {
        let (jobs, queue) = mpsc::channel(MAX_QUEUED);
        let counts = Arc::new(Counts::default());
        tokio::spawn(write_groups(pool, queue, counts.clone()));
        Rotator { jobs, counts }
    }

    /// (groups committed, rotations they held).
    pub(super) fn counts(&self) -> (u64, u64) {
        (self.counts.groups.load(Ordering::Relaxed), self.counts.rotations.load(Ordering::Relaxed))
    }

    pub(super) async fn rotate(&self, rotation: Rotation) -> StoreResult<RefreshOutcome> {
        let (reply, answer) = oneshot::channel();
        self.jobs.send(Job { rotation, reply }).await.map_err(|_| StoreError::WriterGone)?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }
}

/// The writer's connection, taken from the pool and kept while work keeps coming.
enum Held {
    Sqlite(PoolConnection<Sqlite>),
    Postgres(PoolConnection<Postgres>),
}

impl Held {
    async fn take(pool: &Pool) -> StoreResult<Self> {
        Ok(match pool {
            Pool::Sqlite(p) => Held::Sqlite(p.acquire().await?),
            Pool::Postgres(p) => Held::Postgres(p.acquire().await?),
        })
    }

    /// After a failure the connection is not trusted again: it is closed, not given back.
    fn discard(mut self) {
        match &mut self {
            Held::Sqlite(c) => c.close_on_drop(),
            Held::Postgres(c) => c.close_on_drop(),
        }
    }
}

/// The writer task: one group at a time, until every handle is gone.
async fn write_groups(pool: Pool, mut queue: mpsc::Receiver<Job>, counts: Arc<Counts>) {
    let mut carried: Vec<Job> = Vec::new();
    let mut held: Option<Held> = None;
    loop {
        let mut waiting = std::mem::take(&mut carried);
        if waiting.is_empty() {
            let received = match held {
                Some(_) => match tokio::time::timeout(KEEP_IDLE, queue.recv_many(&mut waiting, MAX_GROUP)).await {
                    Ok(received) => received,
                    Err(_idle) => {
                        held = None;
                        continue;
                    }
                },
                None => queue.recv_many(&mut waiting, MAX_GROUP).await,
            };
            if received == 0 {
                return;
            }
        } else {
            while waiting.len() < MAX_GROUP
                && let Ok(job) = queue.try_recv()
            {
                waiting.push(job);
            }
        }
        // A request whose caller has gone (cancelled, timed out) does not spend its token.
        waiting.retain(|job| !job.reply.is_closed());
        let mut tokens = HashSet::new();
        let (group, later): (Vec<Job>, Vec<Job>) =
            waiting.into_iter().partition(|job| tokens.insert(job.rotation.token_hash.clone()));
        carried = later;
        if !group.is_empty() {
            commit_group(&pool, &mut held, group, &counts).await;
        }
    }
}

/// A group's outcomes, in its order. The outer error means nothing was committed (the group
/// may be run again one by one); an inner one is that rotation's alone, the others stand.
type Outcomes = StoreResult<Vec<StoreResult<RefreshOutcome>>>;

/// Runs one group on the held connection (taking one first if need be).
async fn run_group(pool: &Pool, held: &mut Option<Held>, rotations: &[&Rotation]) -> Outcomes {
    let connection = match held {
        Some(connection) => connection,
        None => held.insert(Held::take(pool).await?),
    };
    let result = rotate_together(connection, rotations).await;
    if result.is_err()
        && let Some(connection) = held.take()
    {
        connection.discard();
    }
    result
}

async fn commit_group(pool: &Pool, held: &mut Option<Held>, group: Vec<Job>, counts: &Counts) {
    let rotations: Vec<&Rotation> = group.iter().map(|job| &job.rotation).collect();
    let started = Instant::now();
    match run_group(pool, held, &rotations).await {
        Ok(outcomes) => {
            tracing::debug!(size = outcomes.len(), took_us = started.elapsed().as_micros(), "rotations committed");
            counts.groups.fetch_add(1, Ordering::Relaxed);
            counts.rotations.fetch_add(outcomes.len() as u64, Ordering::Relaxed);
            for (job, outcome) in group.into_iter().zip(outcomes) {
                let _ = job.reply.send(outcome);
            }
        }
        Err(err) if group.len() == 1 => {
            if let Some(job) = group.into_iter().next() {
                let _ = job.reply.send(Err(err));
            }
        }
        Err(err) => {
            tracing::warn!(error = %err, size = group.len(), "a group of rotations failed; retrying them one by one");
            for job in group {
                let alone = run_group(pool, held, &[&job.rotation]).await;
                let _ = job.reply.send(alone.and_then(|mut one| one.pop().unwrap_or(Err(StoreError::WriterGone))));
            }
        }
    }
}

#[derive(sqlx::FromRow)]
struct Spent {
    token_hash: String,
    grant_id: String,
    scope: String,
}

#[derive(sqlx::FromRow)]
struct TokenState {
    grant_id: String,
    used_at: Option<i64>,
}

/// `$first, ..., $(first + count - 1)`.
fn placeholders(first: usize, count: usize) -> String {
    (first..first + count).map(|n| format!("${n}")).collect::<Vec<_>>().join(", ")
}

/// `($1, $2, $3), ($4, $5, $6), ...`: `rows` tuples of `width` placeholders.
fn tuples(rows: usize, width: usize) -> String {
    (0..rows).map(|row| format!("({})", placeholders(row * width + 1, width))).collect::<Vec<_>>().join(", ")
}

/// PostgreSQL's statement for a group of any size: all four steps in one (data-modifying CTEs,
/// one snapshot). The group comes as six arrays, one element per rotation, not as padded
/// `VALUES` rows: against 64 padded `VALUES` rows the planner often joined by scanning
/// `refresh_tokens` whole while the table held tens of thousands of rows (in one 6 s run, 800
/// sequential scans reading 13 million rows: PostgreSQL's CPU per rotation 99 µs with arrays
/// against 180-220 µs), while `unnest` of parameters is estimated at a few rows and looked up
/// by the key at any table size.
static ROTATE_PG: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH p AS (
       SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::bigint[], $6::bigint[])
         AS p (token_hash, client_id, moment, new_hash, created_at, expires_at)),
     spent AS (
       UPDATE refresh_tokens SET used_at = p.moment FROM p
       WHERE refresh_tokens.token_hash = p.token_hash AND refresh_tokens.used_at IS NULL
         AND refresh_tokens.expires_at > p.moment
         AND refresh_tokens.grant_id IN (SELECT id FROM grants WHERE revoked_at IS NULL AND client_id = p.client_id)
       RETURNING refresh_tokens.token_hash, refresh_tokens.grant_id, refresh_tokens.scope,
                 p.new_hash, p.created_at, p.expires_at, p.moment),
     stored AS (
       INSERT INTO refresh_tokens (token_hash, grant_id, scope, created_at, expires_at)
       SELECT new_hash, grant_id, scope, created_at, expires_at FROM spent),
     touched AS (
       UPDATE grants SET last_used_at = (SELECT max(moment) FROM spent)
       WHERE id IN (SELECT grant_id FROM spent)
       RETURNING {GRANT_COLUMNS})
     SELECT spent.token_hash AS spent_hash, spent.scope AS spent_scope, touched.*
     FROM spent JOIN touched ON touched.id = spent.grant_id"
    )
});

/// Each shape's SQLite statements, written once rather than formatted again for every group.
static STATEMENTS: LazyLock<[Statements; SHAPES.len()]> = LazyLock::new(|| SHAPES.map(Statements::for_shape));

/// The four statements of a group of shape `rows`. Placeholders only: every value is bound,
/// so these texts carry no input. Padding rows are all NULL, which matches nothing.
struct Statements {
    spend: String,
    grants: String,
    insert: String,
    touch: String,
}

impl Statements {
    /// The rows a group of `n` is padded to (the next shape), and its statements.
    fn for_group(n: usize) -> (usize, &'static Statements) {
        let i = SHAPES.iter().position(|&shape| shape >= n).unwrap_or(SHAPES.len() - 1);
        (SHAPES[i], &STATEMENTS[i])
    }

    fn for_shape(rows: usize) -> Self {
        Statements {
            spend: format!(
                "UPDATE refresh_tokens SET used_at = p.column3 FROM (VALUES {}) AS p
                 WHERE refresh_tokens.token_hash = p.column1 AND refresh_tokens.used_at IS NULL
                   AND refresh_tokens.expires_at > p.column3
                   AND refresh_tokens.grant_id IN (SELECT id FROM grants WHERE revoked_at IS NULL AND client_id = p.column2)
                 RETURNING refresh_tokens.token_hash, refresh_tokens.grant_id, refresh_tokens.scope",
                tuples(rows, 3)
            ),
            grants: format!("SELECT {GRANT_COLUMNS} FROM grants WHERE id IN ({})", placeholders(1, rows)),
            // `used_at` is left out: it starts NULL.
            insert: format!(
                "INSERT INTO refresh_tokens (token_hash, grant_id, scope, created_at, expires_at)
                 SELECT column1, column2, column3, column4, column5 FROM (VALUES {}) AS v WHERE column1 IS NOT NULL",
                tuples(rows, 5)
            ),
            touch: format!("UPDATE grants SET last_used_at = $1 WHERE id IN ({})", placeholders(2, rows)),
        }
    }
}

/// Runs `rotations` (distinct tokens) on `connection` with the effect of running them one after
/// another; outcomes in the same order.
async fn rotate_together(connection: &mut Held, rotations: &[&Rotation]) -> Outcomes {
    match connection {
        Held::Sqlite(c) => Ok(rotate_in_steps(c, rotations).await?.into_iter().map(Ok).collect()),
        Held::Postgres(c) => rotate_in_one_statement(c, rotations).await,
    }
}

/// What a presented token that was not spent means, read (and a reuse after the grace acted
/// on: its family is revoked) on `$tx`.
macro_rules! explain_unspent {
    ($tx:expr, $r:expr) => {{
        let r: &Rotation = $r;
        let state = sqlx::query_as::<_, TokenState>(
            "SELECT t.grant_id, t.used_at FROM refresh_tokens t JOIN grants g ON g.id = t.grant_id
             WHERE t.token_hash = $1 AND g.client_id = $2",
        )
        .bind(&r.token_hash)
        .bind(&r.client_id)
        .fetch_optional(&mut *$tx)
        .await?;
        match state {
            Some(TokenState { grant_id, used_at: Some(used_at) }) if r.now - used_at <= r.grace_secs => {
                RefreshOutcome::Reused { grant_id, revoked: false }
            }
            Some(TokenState { grant_id, used_at: Some(_) }) => {
                let revoked = sqlx::query(
                    "UPDATE grants SET revoked_at = $1, revoked_reason = 'refresh token reused' WHERE id = $2 AND revoked_at IS NULL",
                )
                .bind(r.now)
                .bind(&grant_id)
                .execute(&mut *$tx)
                .await?
                .rows_affected()
                    == 1;
                RefreshOutcome::Reused { grant_id, revoked }
            }
            _ => RefreshOutcome::Invalid,
        }
    }};
}

/// SQLite has no data-modifying CTEs: spend, read the grants, store the successors and touch
/// the grants, four statements in one transaction, then the unspent are explained in it too.
async fn rotate_in_steps(c: &mut PoolConnection<Sqlite>, rotations: &[&Rotation]) -> StoreResult<Vec<RefreshOutcome>> {
    let (rows, sql) = Statements::for_group(rotations.len());
    let padding = rows - rotations.len();
    let mut tx = c.begin().await?;
    let mut spend = sqlx::query_as::<_, Spent>(sql.spend.as_str());
    for r in rotations {
        spend = spend.bind(Some(&r.token_hash)).bind(Some(&r.client_id)).bind(Some(r.now));
    }
    for _ in 0..padding {
        spend = spend.bind(None::<&str>).bind(None::<&str>).bind(None::<i64>);
    }
    let spent: HashMap<String, Spent> =
        spend.fetch_all(&mut *tx).await?.into_iter().map(|s| (s.token_hash.clone(), s)).collect();

    let successors: Vec<NewRefreshToken> = rotations
        .iter()
        .filter_map(|r| spent.get(&r.token_hash).map(|s| (r, s)))
        // RFC 6749 §6: the new refresh token keeps the scope of the one it replaces.
        .map(|(r, s)| NewRefreshToken { grant_id: s.grant_id.clone(), scope: s.scope.clone(), ..r.successor.clone() })
        .collect();
    let mut grants: HashMap<String, GrantRow> = HashMap::new();
    if !successors.is_empty() {
        let ids: Vec<&str> = spent.values().map(|s| s.grant_id.as_str()).collect::<HashSet<_>>().into_iter().collect();
        let mut select = sqlx::query_as::<_, GrantRow>(sql.grants.as_str());
        for id in &ids {
            select = select.bind(Some(*id));
        }
        for _ in ids.len()..rows {
            select = select.bind(None::<&str>);
        }
        grants = select.fetch_all(&mut *tx).await?.into_iter().map(|g| (g.id.clone(), g)).collect();

        let mut insert = sqlx::query(sql.insert.as_str());
        for s in &successors {
            insert = insert
                .bind(Some(&s.token_hash))
                .bind(Some(&s.grant_id))
                .bind(Some(&s.scope))
                .bind(Some(s.created_at))
                .bind(Some(s.expires_at));
        }
        for _ in successors.len()..rows {
            insert =
                insert.bind(None::<&str>).bind(None::<&str>).bind(None::<&str>).bind(None::<i64>).bind(None::<i64>);
        }
        insert.execute(&mut *tx).await?;

        let last_used = rotations.iter().map(|r| r.now).max().unwrap_or_default();
        let mut touch = sqlx::query(sql.touch.as_str()).bind(last_used);
        for id in &ids {
            touch = touch.bind(Some(*id));
        }
        for _ in ids.len()..rows {
            touch = touch.bind(None::<&str>);
        }
        touch.execute(&mut *tx).await?;
    }

    let mut outcomes = Vec::with_capacity(rotations.len());
    for r in rotations {
        outcomes.push(match spent.get(&r.token_hash) {
            Some(s) => {
                // Read in this transaction, after its token was spent under it: it is there.
                let grant = grants.get(&s.grant_id).cloned().ok_or(StoreError::Database(sqlx::Error::RowNotFound))?;
                RefreshOutcome::Rotated { grant: Box::new(grant), old_scope: s.scope.clone() }
            }
            None => explain_unspent!(tx, r),
        });
    }
    tx.commit().await?;
    Ok(outcomes)
}

/// A token spent by the PostgreSQL statement, with its grant as the statement left it.
#[derive(sqlx::FromRow)]
struct SpentWithGrant {
    spent_hash: String,
    spent_scope: String,
    #[sqlx(flatten)]
    grant: GrantRow,
}

/// On PostgreSQL the group is one statement, committed on its own: half of PostgreSQL's
/// statements under load were these groups' six (`BEGIN`, four, `COMMIT`), and each costs a
/// round trip and the backend's per-statement work. The tokens not spent (reused, expired,
/// unknown: rare) are explained afterwards, each in a transaction of its own, which is what
/// running them after the group's rotations would do. Once the statement has committed, a
/// failure there is that token's alone: the group must not be run again, or the rotations it
/// committed would find their tokens spent and their callers lose the successors.
async fn rotate_in_one_statement(c: &mut PoolConnection<Postgres>, rotations: &[&Rotation]) -> Outcomes {
    let text = |f: fn(&Rotation) -> &str| rotations.iter().map(|r| f(r)).collect::<Vec<&str>>();
    let number = |f: fn(&Rotation) -> i64| rotations.iter().map(|r| f(r)).collect::<Vec<i64>>();
    let rotate = sqlx::query_as::<_, SpentWithGrant>(ROTATE_PG.as_str())
        .bind(text(|r| &r.token_hash))
        .bind(text(|r| &r.client_id))
        .bind(number(|r| r.now))
        .bind(text(|r| &r.successor.token_hash))
        .bind(number(|r| r.successor.created_at))
        .bind(number(|r| r.successor.expires_at));
    let mut spent: HashMap<String, SpentWithGrant> =
        rotate.fetch_all(&mut **c).await?.into_iter().map(|s| (s.spent_hash.clone(), s)).collect();

    let mut outcomes = Vec::with_capacity(rotations.len());
    for r in rotations {
        outcomes.push(match spent.remove(&r.token_hash) {
            Some(s) => Ok(RefreshOutcome::Rotated { grant: Box::new(s.grant), old_scope: s.spent_scope }),
            None => explain_alone(c, r).await,
        });
    }
    Ok(outcomes)
}

/// Explains one unspent token on PostgreSQL, in its own transaction.
async fn explain_alone(c: &mut PoolConnection<Postgres>, r: &Rotation) -> StoreResult<RefreshOutcome> {
    let mut tx = c.begin().await?;
    let outcome = explain_unspent!(tx, r);
    tx.commit().await?;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::{Statements, placeholders, tuples};

    #[test]
    fn placeholders_are_numbered_on_from_the_first() {
        assert_eq!(placeholders(1, 1), "$1");
        assert_eq!(placeholders(2, 3), "$2, $3, $4");
        assert_eq!(tuples(1, 3), "($1, $2, $3)");
        assert_eq!(tuples(2, 2), "($1, $2), ($3, $4)");
    }

    #[test]
    fn groups_are_padded_to_the_next_shape() {
        assert_eq!([1, 2, 4, 5, 16, 17, 64].map(|n| Statements::for_group(n).0), [1, 4, 4, 16, 16, 64, 64]);
    }
}
