//! Row-level optimistic concurrency on embedded SQLite: the way PostgreSQL at REPEATABLE
//! READ and Aurora DSQL behave, with SQLite's one writer.
//!
//! The writer takes a batch of purchases and, inside one `BEGIN IMMEDIATE`, first reads
//! every purchase's plan on the snapshot the batch starts from (is the key known, which
//! bucket and shard it would take and the value each had), as concurrent transactions
//! that began together would. It then writes them in order, each in its own savepoint:
//! a purchase commits only if the bucket and the shard it read still hold the values it
//! read (first committer wins per row); otherwise it is a conflict, undone, and rerun in a
//! later batch after a jittered backoff, counted in `attempts`, up to `max_attempts` →
//! RETRY_EXHAUSTED. New intents never conflict with each other (a twin of the same key in
//! the batch is answered with the winner's snapshot), and a decline that found no stock
//! does not retry: stock only goes down. One COMMIT answers the whole batch (group commit).
//!
//! Cost: a commit costs about as much as forty declines, so the writer keeps batches from
//! being tiny (`gather`), asks the snapshot each question once per batch (`SnapshotReads`:
//! once stock is gone, every purchase of a batch asks "which bucket of this item has
//! stock?"), and leaves copying the WAL back to the database to a thread beside it
//! (`checkpoint`).
//!
//! Invariant: the rows a purchase moves are still conditional updates (the `Sql` value's
//! `take` statements, so the selftest's sabotage reaches this mode too); the version
//! check only decides who goes first.

use std::collections::hash_map::Entry;
use std::time::{Duration, Instant};

use foldhash::{HashMap, HashSet};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use rand::seq::IndexedRandom;
use rusqlite::{Connection, params};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::sql::{SqliteSql, Take};
use super::sqlite_steps::{
    Failure, Job, candidates, db_error, known, record_declined, undo_purchase, write_rows,
};
use super::{
    FailureCode, KernelConfig, KernelError, Outcome, Snapshot, backoff, cut_error, new_id,
};

/// What a purchase read on its batch's snapshot.
enum Plan {
    /// Decided by the key alone: a replay, or the key reused for another payload.
    Known(Result<Snapshot, KernelError>),
    /// Nothing to take from (no stock, or no shard that could pay).
    Decline(FailureCode),
    /// The rows it would take from, and the values it read there.
    Buy {
        bucket: String,
        available: i64,
        shard: String,
        remaining: i64,
    },
}

/// How one purchase of a batch ended.
enum Ended {
    Done(Result<Snapshot, KernelError>),
    /// A row it read was changed by an earlier purchase of the batch: run it again.
    Conflict,
}

/// A purchase and the run it is on.
struct Queued {
    job: Job,
    attempt: u32,
    /// Not before (a conflict's backoff).
    ready_at: Instant,
}

impl Queued {
    /// A purchase on its first run, taken at `now`.
    fn new(job: Job, now: Instant) -> Queued {
        Queued {
            job,
            attempt: 1,
            ready_at: now,
        }
    }
}

pub(super) fn writer(conn: Connection, mut rx: mpsc::Receiver<Job>, config: KernelConfig) {
    let mut rng = SmallRng::from_rng(&mut rand::rng());
    let mut waiting: Vec<Queued> = Vec::new();
    let mut batch: Vec<Queued> = Vec::with_capacity(config.group_max);
    let mut open = true;
    // How many purchases the last batch answered: their callers are likely to be back soon.
    let mut last_batch = 0;
    while open || !waiting.is_empty() {
        // Reruns whose backoff is over go first; then new purchases, up to `group_max`.
        let now = Instant::now();
        let mut i = 0;
        while i < waiting.len() && batch.len() < config.group_max {
            if waiting[i].ready_at <= now {
                batch.push(waiting.swap_remove(i));
            } else {
                i += 1;
            }
        }
        open = take_queued(&mut rx, &mut batch, config.group_max, now) && open;
        if !batch.is_empty() && open {
            open = gather(
                &mut rx,
                &mut batch,
                last_batch.min(GATHER_MIN),
                config.group_max,
            );
        }
        if batch.is_empty() {
            match waiting.iter().map(|q| q.ready_at).min() {
                // Only reruns in backoff: sleep until the first is due (a few ms at most).
                Some(at) => std::thread::sleep(at.saturating_duration_since(Instant::now())),
                None => match rx.blocking_recv() {
                    Some(job) => batch.push(Queued::new(job, Instant::now())),
                    None => open = false,
                },
            }
            continue;
        }
        last_batch = batch.len();
        run_batch(&conn, &mut batch, &mut waiting, &config, &mut rng);
    }
}

/// A batch smaller than this waits a little for more (see `gather`).
const GATHER_MIN: usize = 16;
/// How long one wait for more purchases lasts, and the longest a batch is held back.
const GATHER_QUANTUM: Duration = Duration::from_micros(50);
const GATHER_MAX: Duration = Duration::from_micros(500);

/// Move what the queue holds into `batch`, up to `max`, as taken at `now`. False once the
/// queue is closed.
fn take_queued(
    rx: &mut mpsc::Receiver<Job>,
    batch: &mut Vec<Queued>,
    max: usize,
    now: Instant,
) -> bool {
    while batch.len() < max {
        match rx.try_recv() {
            Ok(job) => batch.push(Queued::new(job, now)),
            Err(mpsc::error::TryRecvError::Empty) => return true,
            Err(mpsc::error::TryRecvError::Disconnected) => return false,
        }
    }
    true
}

/// Hold a small batch back while more purchases keep arriving, up to `want` of them: a
/// commit costs about as much as forty declines, and right after a batch is answered its
/// callers come back a few at a time, so the next batch would otherwise start with the
/// first one or two and the rest would wait for the one after (batches of 1 to 8 were a
/// third of all batches on million.toml). Stops at the first quantum that brings nothing,
/// so a lone caller (`want` 1: its last batch was itself) never waits. False once the
/// queue is closed.
fn gather(rx: &mut mpsc::Receiver<Job>, batch: &mut Vec<Queued>, want: usize, max: usize) -> bool {
    let until = Instant::now() + GATHER_MAX;
    while batch.len() < want && Instant::now() < until {
        std::thread::sleep(GATHER_QUANTUM);
        let before = batch.len();
        if !take_queued(rx, batch, max, Instant::now()) {
            return false;
        }
        if batch.len() == before {
            break;
        }
    }
    true
}

/// Read every plan on the batch's snapshot, write them in order, commit, answer; conflicts
/// go back to `waiting` with their backoff.
fn run_batch(
    conn: &Connection,
    batch: &mut Vec<Queued>,
    waiting: &mut Vec<Queued>,
    config: &KernelConfig,
    rng: &mut SmallRng,
) {
    let sql = &config.sql.sqlite;
    let mut ended: Vec<Ended> = Vec::with_capacity(batch.len());
    // Keys this batch has written an intent for: only a twin of one of them needs the key
    // looked up again before it writes.
    let mut written: HashSet<&str> = HashSet::default();
    let committed = conn.execute_batch("BEGIN IMMEDIATE").and_then(|()| {
        let mut reads = SnapshotReads::default();
        let plans: Vec<Result<Plan, Failure>> = batch
            .iter()
            .map(|q| plan(conn, &q.job, sql, &mut reads, rng))
            .collect();
        for (q, plan) in batch.iter().zip(plans) {
            let twin = written.contains(q.job.key.as_str());
            let end = plan.and_then(|p| write(conn, &q.job, q.attempt, p, twin, sql, rng));
            if matches!(end, Ok(Ended::Done(Ok(_)))) {
                written.insert(q.job.key.as_str());
            }
            ended.push(match end {
                Ok(e) => e,
                Err(Failure::Kernel(e)) => Ended::Done(Err(e)),
                Err(Failure::Db(e)) => Ended::Done(Err(db_error(e))),
            });
        }
        conn.execute_batch("COMMIT")
    });
    if let Err(e) = committed {
        // Nothing in this batch is durable: every caller may retry the same key.
        let _ = conn.execute_batch("ROLLBACK");
        tracing::warn!("occ group commit failed: {e}");
        for q in batch.drain(..) {
            let _ = q.job.reply.send(Err(KernelError::Unavailable(format!(
                "group commit failed: {e}"
            ))));
        }
        return;
    }
    for (q, end) in batch.drain(..).zip(ended) {
        match end {
            Ended::Done(result) => {
                let _ = q.job.reply.send(result);
            }
            Ended::Conflict if q.attempt >= config.max_attempts => {
                let _ = q.job.reply.send(Err(KernelError::RetryExhausted {
                    attempts: q.attempt,
                }));
            }
            Ended::Conflict => {
                let pause = backoff(
                    q.attempt,
                    config.backoff_base_ms,
                    config.backoff_cap_ms,
                    rng,
                );
                waiting.push(Queued {
                    ready_at: Instant::now() + pause,
                    attempt: q.attempt + 1,
                    job: q.job,
                });
            }
        }
    }
}

/// What the batch's snapshot holds, read once: the candidate rows of an owner that could
/// give an amount, with the value each had. Every plan of a batch reads the same snapshot
/// (nothing is written before the last plan), so two purchases asking the same question get
/// the same rows; asking once per batch instead of once per purchase is what keeps a batch
/// of declines cheap once stock is gone.
#[derive(Default)]
struct SnapshotReads {
    rows: HashMap<(Pool, Uuid, i64), Vec<(String, i64)>>,
}

/// What a read is about: the item's buckets or the mandate's shards.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Pool {
    Stock,
    Funds,
}

impl Pool {
    fn take(self, sql: &SqliteSql) -> &Take {
        match self {
            Pool::Stock => &sql.stock,
            Pool::Funds => &sql.funds,
        }
    }

    /// The value a purchase checks again before it writes (first committer wins).
    fn value_sql(self) -> &'static str {
        match self {
            Pool::Stock => BUCKET_VALUE,
            Pool::Funds => SHARD_VALUE,
        }
    }
}

impl SnapshotReads {
    /// A row of `owner` that could give `amount`, chosen at random among the pool's
    /// candidates, and its value.
    fn choose(
        &mut self,
        conn: &Connection,
        sql: &SqliteSql,
        pool: Pool,
        owner: &Uuid,
        amount: i64,
        rng: &mut SmallRng,
    ) -> Result<Option<(String, i64)>, Failure> {
        let rows = match self.rows.entry((pool, *owner, amount)) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                let mut value = conn.prepare_cached(pool.value_sql())?;
                let rows = candidates(conn, pool.take(sql), owner, amount, rng)?
                    .into_iter()
                    .map(|row| {
                        let v: i64 = value.query_row([&row], |r| r.get(0))?;
                        Ok((row, v))
                    })
                    .collect::<Result<Vec<_>, rusqlite::Error>>()?;
                e.insert(rows)
            }
        };
        Ok(rows.choose(rng).cloned())
    }
}

const BUCKET_VALUE: &str = "SELECT available FROM bucket WHERE bucket_id = ?1";
const SHARD_VALUE: &str = "SELECT remaining FROM mandate_shard WHERE shard_id = ?1";

/// What the purchase reads on the snapshot (nothing is written yet).
fn plan(
    conn: &Connection,
    job: &Job,
    sql: &SqliteSql,
    reads: &mut SnapshotReads,
    rng: &mut SmallRng,
) -> Result<Plan, Failure> {
    if let Some(answer) = known(conn, job, sql)? {
        return Ok(Plan::Known(answer));
    }
    let req = &job.req;
    let Some((bucket, available)) =
        reads.choose(conn, sql, Pool::Stock, &req.item_id, req.quantity, rng)?
    else {
        return Ok(Plan::Decline(FailureCode::OutOfStock));
    };
    let Some((shard, remaining)) = reads.choose(
        conn,
        sql,
        Pool::Funds,
        &req.mandate_id,
        req.amount_minor,
        rng,
    )?
    else {
        return Ok(Plan::Decline(FailureCode::MandateRejected));
    };
    Ok(Plan::Buy {
        bucket,
        available,
        shard,
        remaining,
    })
}

/// Whether `row` still holds `value` and the pool's `take` gives `amount` from it.
fn still_gives(
    conn: &Connection,
    sql: &SqliteSql,
    pool: Pool,
    row: &str,
    value: i64,
    amount: i64,
) -> Result<bool, Failure> {
    let now: i64 = conn
        .prepare_cached(pool.value_sql())?
        .query_row([row], |r| r.get(0))?;
    Ok(now == value
        && conn
            .prepare_cached(&pool.take(sql).take)?
            .execute(params![row, amount])?
            == 1)
}

/// Validate the plan against what earlier purchases of the batch wrote, and write it.
/// `twin`: an earlier purchase of the batch wrote an intent under the same key.
#[allow(clippy::too_many_arguments)]
fn write(
    conn: &Connection,
    job: &Job,
    attempt: u32,
    plan: Plan,
    twin: bool,
    sql: &SqliteSql,
    rng: &mut SmallRng,
) -> Result<Ended, Failure> {
    let plan = match plan {
        Plan::Known(answer) => return Ok(Ended::Done(answer)),
        other => other,
    };
    // A twin of this key earlier in the batch has written: answer with its snapshot.
    if twin && let Some(answer) = known(conn, job, sql)? {
        return Ok(Ended::Done(answer));
    }
    if job.link.is_cut() {
        return Ok(Ended::Done(Err(cut_error())));
    }
    let intent_id = new_id(rng);
    // A decline writes one row, in one statement: nothing to undo, no savepoint.
    if let Plan::Decline(code) = plan {
        let declined = record_declined(conn, job, intent_id, code, attempt, sql)?;
        return Ok(Ended::Done(Ok(declined)));
    }
    conn.prepare_cached("SAVEPOINT purchase")?.execute([])?;
    let written = match plan {
        Plan::Decline(_) => unreachable!("written above"),
        Plan::Buy {
            bucket,
            available,
            shard,
            remaining,
        } => {
            let req = &job.req;
            let won = still_gives(conn, sql, Pool::Stock, &bucket, available, req.quantity)
                .and_then(|won| {
                    Ok(won
                        && still_gives(
                            conn,
                            sql,
                            Pool::Funds,
                            &shard,
                            remaining,
                            req.amount_minor,
                        )?)
                });
            match won {
                Ok(true) => {
                    write_rows(conn, job, intent_id, &bucket, &shard, attempt, sql, rng).map(Some)
                }
                Ok(false) => Ok(None),
                Err(e) => Err(e),
            }
        }
        Plan::Known(_) => unreachable!("answered above"),
    };
    match written {
        Ok(Some(s)) if s.outcome == Outcome::Committed => {
            for end in &sql.keep_committed {
                conn.prepare_cached(end)?.execute([])?;
            }
            Ok(Ended::Done(Ok(s)))
        }
        Ok(Some(s)) => {
            conn.prepare_cached("RELEASE purchase")?.execute([])?;
            Ok(Ended::Done(Ok(s)))
        }
        Ok(None) => {
            undo_purchase(conn)?;
            Ok(Ended::Conflict)
        }
        Err(e) => {
            let _ = undo_purchase(conn);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sut::kernel::sql::Sql;
    use crate::sut::kernel::{Currency, PurchaseRequest};
    use tokio::sync::oneshot;

    fn buckets(available: &[i64]) -> Connection {
        let conn = Connection::open_in_memory().expect("memory db");
        conn.execute_batch("CREATE TABLE bucket (bucket_id TEXT, item_id TEXT, available INTEGER)")
            .expect("table");
        for (i, a) in available.iter().enumerate() {
            conn.execute(
                "INSERT INTO bucket VALUES (?1, ?2, ?3)",
                params![format!("b{i}"), Uuid::from_u128(3).to_string(), a],
            )
            .expect("bucket");
        }
        conn
    }

    #[test]
    fn snapshot_reads_answer_one_question_once_per_batch() {
        let conn = buckets(&[0, 5, 7]);
        let sql = Sql::reference().sqlite;
        let item = Uuid::from_u128(3);
        let mut rng = SmallRng::seed_from_u64(1);
        let mut reads = SnapshotReads::default();
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..64 {
            let (row, value) = reads
                .choose(&conn, &sql, Pool::Stock, &item, 1, &mut rng)
                .expect("read")
                .expect("a bucket with stock");
            assert_eq!(value, if row == "b1" { 5 } else { 7 }, "{row}");
            seen.insert(row);
        }
        // Chosen at random among the rows that could give, never the empty one.
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["b1", "b2"]);
        // The batch's snapshot is what was read first: a change after it is not seen by
        // this batch (the writer changes nothing before its last plan) but by the next.
        conn.execute("UPDATE bucket SET available = 0", [])
            .expect("empty");
        assert!(
            reads
                .choose(&conn, &sql, Pool::Stock, &item, 1, &mut rng)
                .expect("read")
                .is_some()
        );
        // Another amount is another question.
        assert!(
            reads
                .choose(&conn, &sql, Pool::Stock, &item, 2, &mut rng)
                .expect("read")
                .is_none()
        );
        let mut next = SnapshotReads::default();
        assert!(
            next.choose(&conn, &sql, Pool::Stock, &item, 1, &mut rng)
                .expect("read")
                .is_none()
        );
    }

    fn job(n: u32) -> Job {
        let req = PurchaseRequest {
            merchant_id: Uuid::from_u128(1),
            mandate_id: Uuid::from_u128(2),
            item_id: Uuid::from_u128(3),
            agent_id: format!("a{n}"),
            quantity: 1,
            amount_minor: 2500,
            currency: Currency::parse("USD").expect("usd"),
        };
        let (reply, _) = oneshot::channel();
        Job {
            fingerprint: req.fingerprint(),
            req,
            key: format!("k{n}"),
            link: crate::sut::kernel::Link::never(),
            reply,
        }
    }

    #[test]
    fn gather_takes_what_is_queued_and_stops_when_the_queue_closes() {
        let (tx, mut rx) = mpsc::channel(64);
        let mut batch = vec![Queued::new(job(0), Instant::now())];
        // Nobody else is coming: one quantum, and the batch goes as it is.
        assert!(gather(&mut rx, &mut batch, 16, 512));
        assert_eq!(batch.len(), 1);
        // A lone caller (its last batch was itself) does not wait at all.
        assert!(gather(&mut rx, &mut batch, 1, 512));
        // Purchases queued by the time it looks join it, all of them (up to `max`).
        for n in 1..=20 {
            tx.try_send(job(n)).expect("send");
        }
        assert!(gather(&mut rx, &mut batch, 16, 512));
        assert_eq!(batch.len(), 21);
        for n in 21..=30 {
            tx.try_send(job(n)).expect("send");
        }
        assert!(gather(&mut rx, &mut batch, 32, 25));
        assert_eq!(batch.len(), 25);
        // The queue closing ends the wait and says so; what was queued is kept.
        drop(tx);
        assert!(!gather(&mut rx, &mut batch, 64, 512));
        assert_eq!(batch.len(), 31);
    }
}
