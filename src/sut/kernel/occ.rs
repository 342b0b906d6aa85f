//! Row-level optimistic concurrency on embedded SQLite: the way PostgreSQL at REPEATABLE
//! READ and Aurora DSQL behave, with SQLite's one writer.
//!
//! The writer takes a batch of purchases and runs it in rounds inside one `BEGIN
//! IMMEDIATE`. A round starts at most as many buyers of an item (and of a mandate) as
//! there are rows that could give (`Admitted`); the others wait for a later round without
//! running. It first reads every plan of the purchases it starts on the state the round
//! starts from (is the key known, which bucket and shard it would take and the value each
//! had), as concurrent transactions that began together would. It then writes them in
//! order, each in its own savepoint: a purchase commits only if the bucket and the shard
//! it read still hold the values it read (first committer wins per row); otherwise it is a
//! conflict, undone, and rerun in the next round, which reads the winner's write (as a
//! rerun after a serialization failure reads the winner's commit), counted in `attempts`,
//! up to `max_attempts` → RETRY_EXHAUSTED. New intents never conflict with each other (a
//! twin of the same key in the batch is answered with the winner's snapshot), and a
//! decline that found no stock does not retry: stock only goes down. One COMMIT answers
//! the whole batch (group commit): no caller hears of a round before every round is
//! durable.
//!
//! Cost: a commit costs about as much as forty declines, so the writer keeps batches from
//! being tiny (`gather`); asks each question once (`SnapshotReads`: once stock is gone,
//! every purchase of a batch asks "which bucket of this item has stock?"; an answer lasts
//! from round to round until a purchase moves a row it names, or a row of its owner);
//! knows a row lost within a round without asking SQLite (`Moved`); reruns losers at once
//! instead of in a later batch, which paid the key lookup, the wait and another COMMIT
//! again (12k commits/s on `bench-kernel.sh`'s 16 hot buckets, 25k now); starts no buyer
//! that could only lose (on `contention.toml`'s two buckets in this mode, about 460
//! RETRY_EXHAUSTED and 4.2k purchases/s before, none and 25k now); and leaves copying the
//! WAL back to the database to a thread beside it (`checkpoint`).
//!
//! Invariant: the rows a purchase moves are still conditional updates (the `Sql` value's
//! `take` statements, so the selftest's sabotage reaches this mode too); the version
//! check only decides who goes first.
//!
//! It stays one file: a round's admission (`Admitted`), its reads (`SnapshotReads`) and its
//! writes share the batch's transaction and each other's types; about 510 lines are the
//! writer, the rest its tests.

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
    Failure, Job, candidates, db_error, end_purchase, known, record_declined, undo_purchase,
    write_rows,
};
use super::{FailureCode, KernelConfig, KernelError, PurchaseRequest, Snapshot, cut_error, new_id};

/// What a purchase read on the state its round starts from.
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

/// How one run of a purchase in a round ended.
enum Ended {
    Done(Result<Snapshot, KernelError>),
    /// A row it read was changed by an earlier purchase of the round: run it again.
    Conflict,
}

pub(super) fn writer(conn: Connection, mut rx: mpsc::Receiver<Job>, config: KernelConfig) {
    let mut rng = SmallRng::from_rng(&mut rand::rng());
    let mut batch: Vec<Job> = Vec::with_capacity(config.group_max);
    // How many purchases the last batch answered: their callers are likely to be back soon.
    let mut last_batch = 0;
    loop {
        let mut open = take_queued(&mut rx, &mut batch, config.group_max);
        if !batch.is_empty() && open {
            open = gather(
                &mut rx,
                &mut batch,
                last_batch.min(GATHER_MIN),
                config.group_max,
            );
        }
        if !batch.is_empty() {
            last_batch = batch.len();
            run_batch(&conn, &mut batch, &config, &mut rng);
        }
        if !open {
            return;
        }
        match rx.blocking_recv() {
            Some(job) => batch.push(job),
            None => return,
        }
    }
}

/// A batch smaller than this waits a little for more (see `gather`).
const GATHER_MIN: usize = 16;
/// How long one wait for more purchases lasts, and the longest a batch is held back.
const GATHER_QUANTUM: Duration = Duration::from_micros(50);
const GATHER_MAX: Duration = Duration::from_micros(500);

/// Move what the queue holds into `batch`, up to `max`. False once the queue is closed.
fn take_queued(rx: &mut mpsc::Receiver<Job>, batch: &mut Vec<Job>, max: usize) -> bool {
    while batch.len() < max {
        match rx.try_recv() {
            Ok(job) => batch.push(job),
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
fn gather(rx: &mut mpsc::Receiver<Job>, batch: &mut Vec<Job>, want: usize, max: usize) -> bool {
    let until = Instant::now() + GATHER_MAX;
    while batch.len() < want && Instant::now() < until {
        std::thread::sleep(GATHER_QUANTUM);
        let before = batch.len();
        if !take_queued(rx, batch, max) {
            return false;
        }
        if batch.len() == before {
            break;
        }
    }
    true
}

/// Run a batch in rounds inside one transaction, commit, answer. A round reads the plans
/// of its purchases on the state it starts from, then writes them in order; a purchase
/// that lost a row to an earlier one of the round runs again in the next round, on a
/// state that holds the winner's write (as a rerun after a serialization failure reads
/// the winner's commit). No purchase runs more than `max_attempts` times, so the rounds
/// end whatever the statements do; with the reference statements a round also finishes
/// at least its first purchase (nothing of the round was written before it).
fn run_batch(conn: &Connection, batch: &mut Vec<Job>, config: &KernelConfig, rng: &mut SmallRng) {
    let sql = &config.sql.sqlite;
    let mut results: Vec<Option<Result<Snapshot, KernelError>>> =
        (0..batch.len()).map(|_| None).collect();
    let mut attempts: Vec<u32> = vec![1; batch.len()];
    let mut looked_up: Vec<bool> = vec![false; batch.len()];
    // Keys this batch has written an intent for: only a twin of one of them needs the key
    // looked up again before it writes.
    let mut written: HashSet<&str> = HashSet::default();
    let committed = conn.execute_batch("BEGIN IMMEDIATE").and_then(|()| {
        let mut round: Vec<usize> = (0..batch.len()).collect();
        let mut reads = SnapshotReads::default();
        while !round.is_empty() {
            // A round starts at most as many buyers of one item (and of one mandate) as it
            // has rows that could give: no more than that many can win, so more would only
            // add certain losers. The others wait for a later round without running, as
            // transactions not yet begun (their attempts are not counted).
            let mut admitted = Admitted::default();
            let mut held = Vec::new();
            let mut plans: Vec<(usize, Result<Plan, Failure>)> = Vec::with_capacity(round.len());
            for &i in &round {
                if admitted.full(&reads, &batch[i].req) {
                    held.push(i);
                    continue;
                }
                let planned = plan(conn, &batch[i], !looked_up[i], sql, &mut reads, rng);
                looked_up[i] = true;
                if matches!(planned, Ok(Plan::Buy { .. })) && !admitted.admit(&reads, &batch[i].req)
                {
                    held.push(i);
                    continue;
                }
                plans.push((i, planned));
            }
            // The loop ends because every round starts someone: a round holds a buyer
            // back only once as many buyers as rows could give have started in it.
            assert!(
                !plans.is_empty(),
                "an OCC round started none of its {} purchases: the batch would never end",
                round.len()
            );
            let mut moved = Moved::default();
            let mut again = Vec::new();
            for (i, plan) in plans {
                let job = &batch[i];
                let twin = written.contains(job.key.as_str());
                let end =
                    plan.and_then(|p| write(conn, job, attempts[i], p, twin, &mut moved, sql, rng));
                // SQLite rolled the whole transaction back (a full disk, an I/O error): stop
                // here, before a later statement commits on its own; nothing stands.
                let end = match end {
                    Err(Failure::Db(e)) if conn.is_autocommit() => return Err(e),
                    end => end,
                };
                results[i] = match end {
                    Ok(Ended::Conflict) if attempts[i] < config.max_attempts => {
                        attempts[i] += 1;
                        again.push(i);
                        continue;
                    }
                    Ok(Ended::Conflict) => Some(Err(KernelError::RetryExhausted {
                        attempts: attempts[i],
                    })),
                    Ok(Ended::Done(r)) => {
                        if r.is_ok() {
                            written.insert(job.key.as_str());
                        }
                        Some(r)
                    }
                    Err(Failure::Kernel(e)) => Some(Err(e)),
                    Err(Failure::Db(e)) => Some(Err(db_error(e))),
                };
            }
            reads.forget(&moved);
            again.extend(held);
            round = again;
        }
        conn.execute_batch("COMMIT")
    });
    if let Err(e) = committed {
        // Nothing in this batch is durable: every caller may retry the same key.
        let _ = conn.execute_batch("ROLLBACK");
        tracing::warn!("occ group commit failed: {e}");
        for job in batch.drain(..) {
            let _ = job.reply.send(Err(KernelError::Unavailable(format!(
                "group commit failed: {e}"
            ))));
        }
        return;
    }
    for (job, result) in batch.drain(..).zip(results) {
        let result = result.unwrap_or_else(|| {
            Err(KernelError::Unavailable(
                "the writer left a purchase of its batch unanswered".into(),
            ))
        });
        let _ = job.reply.send(result);
    }
}

/// What the state a round starts from holds, each question asked once: the candidate rows
/// of an owner that could give an amount, with the value each had. Every plan of a round
/// reads the same state (nothing of the round is written before its last plan), so two
/// purchases asking the same question get the same rows; an answer lasts into later rounds
/// until `forget` drops it. Asking once instead of once per purchase is what keeps a batch
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
    /// How many rows of `owner` could give `amount`, as last read (`None`: not read).
    fn room(&self, pool: Pool, owner: &Uuid, amount: i64) -> Option<usize> {
        self.rows.get(&(pool, *owner, amount)).map(Vec::len)
    }

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
            Entry::Vacant(e) => e.insert(candidates(conn, pool.take(sql), owner, amount, rng)?),
        };
        Ok(rows.choose(rng).cloned())
    }

    /// Forget every answer that names a row a purchase of the round moved, or that is about
    /// the owner it bought for: the next round reads those again. The others still hold:
    /// rows change only when a purchase is written (an undone one leaves them as they
    /// were). Both, because the statements are a value: a rewritten one may take from a row
    /// of the owner other than the one chosen, or choose rows of another owner.
    fn forget(&mut self, moved: &Moved) {
        self.rows.retain(|(pool, owner, _), rows| {
            !moved.owners.contains(&(*pool, *owner))
                && !rows.iter().any(|(row, _)| moved.rows.contains(row))
        });
    }
}

/// How many buyers of each item and each mandate a round has started.
#[derive(Default)]
struct Admitted {
    started: HashMap<(Pool, Uuid), usize>,
}

impl Admitted {
    /// Whether the round already started as many buyers of `req`'s item as the item has
    /// rows that could give `req`'s quantity (known without planning `req`; not when
    /// those rows were not read, or there are none: then `req` is planned).
    fn full(&self, reads: &SnapshotReads, req: &PurchaseRequest) -> bool {
        let started = self
            .started
            .get(&(Pool::Stock, req.item_id))
            .copied()
            .unwrap_or(0);
        match reads.room(Pool::Stock, &req.item_id, req.quantity) {
            Some(room) => room > 0 && started >= room,
            None => false,
        }
    }

    /// Start `req` if fewer buyers of its item, and of its mandate, started in this round
    /// than there are rows that could give; count it if so.
    fn admit(&mut self, reads: &SnapshotReads, req: &PurchaseRequest) -> bool {
        let stock = (Pool::Stock, req.item_id);
        let funds = (Pool::Funds, req.mandate_id);
        let room = |key: &(Pool, Uuid), amount| reads.room(key.0, &key.1, amount).unwrap_or(0);
        let fits = |key: &(Pool, Uuid), amount| {
            self.started.get(key).copied().unwrap_or(0) < room(key, amount)
        };
        if !(fits(&stock, req.quantity) && fits(&funds, req.amount_minor)) {
            return false;
        }
        *self.started.entry(stock).or_default() += 1;
        *self.started.entry(funds).or_default() += 1;
        true
    }
}

/// What the purchases of a round wrote so far.
#[derive(Default)]
struct Moved {
    /// Buckets and shards: a later plan of the round that read one of them read a value
    /// that is gone (first committer wins), known without asking SQLite.
    rows: HashSet<String>,
    /// Whose rows: the item's buckets, the mandate's shards.
    owners: HashSet<(Pool, Uuid)>,
}

const BUCKET_VALUE: &str = "SELECT available FROM bucket WHERE bucket_id = ?1";
const SHARD_VALUE: &str = "SELECT remaining FROM mandate_shard WHERE shard_id = ?1";

/// What the purchase reads on its round's state (nothing of the round is written yet). The
/// key is looked up on its first run only: a rerun's key was absent when its batch began,
/// and the batch is the only writer (a twin of it in the batch is `write`'s to see).
fn plan(
    conn: &Connection,
    job: &Job,
    first_run: bool,
    sql: &SqliteSql,
    reads: &mut SnapshotReads,
    rng: &mut SmallRng,
) -> Result<Plan, Failure> {
    if first_run && let Some(answer) = known(conn, job, sql)? {
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

/// Validate the plan against what earlier purchases of the round wrote, and write it.
/// `twin`: an earlier purchase of the batch wrote an intent under the same key.
#[allow(clippy::too_many_arguments)]
fn write(
    conn: &Connection,
    job: &Job,
    attempt: u32,
    plan: Plan,
    twin: bool,
    moved: &mut Moved,
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
    if let Plan::Buy { bucket, shard, .. } = &plan
        && (moved.rows.contains(bucket) || moved.rows.contains(shard))
    {
        return Ok(Ended::Conflict);
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
                    let rows = write_rows(conn, job, intent_id, &bucket, &shard, attempt, sql, rng);
                    // Counted as moved even if the purchase is undone below: a moved row
                    // only costs its cached reads.
                    moved.rows.insert(bucket);
                    moved.rows.insert(shard);
                    moved.owners.insert((Pool::Stock, req.item_id));
                    moved.owners.insert((Pool::Funds, req.mandate_id));
                    rows.map(Some)
                }
                Ok(false) => Ok(None),
                Err(e) => Err(e),
            }
        }
        Plan::Known(_) => unreachable!("answered above"),
    };
    match written.transpose() {
        None => {
            undo_purchase(conn)?;
            Ok(Ended::Conflict)
        }
        Some(settled) => end_purchase(conn, job, sql, settled).map(|s| Ended::Done(Ok(s))),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::addr::DbUrl;
    use crate::sut::db::Database;
    use crate::sut::db::seed::{CatalogSpec, MandateSpec, SeedPlan};
    use crate::sut::kernel::sql::Sql;
    use crate::sut::kernel::{Currency, Outcome, PurchaseRequest};
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
        // The round's state is what was read first: a change after it is not seen by these
        // reads (the writer changes nothing before a round's last plan) until forgotten.
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
        let mut batch = vec![job(0)];
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

    /// A scratch SQLite database seeded with one item of `stock` units in `buckets`
    /// buckets and 4 mandates that can pay for everything; its writer connection.
    pub(in crate::sut::kernel) fn seeded(
        stock: i64,
        buckets: u32,
    ) -> (tempfile::TempDir, Connection, SeedPlan) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("occ.db");
        let plan = SeedPlan::new(
            7,
            &CatalogSpec {
                items: 1,
                stock,
                buckets,
                ..CatalogSpec::default()
            },
            &MandateSpec {
                count: 4,
                cap_minor: 1_000_000_000,
                shards: 2,
            },
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let db = Database::connect(&DbUrl::sqlite(path.clone())).expect("connect");
            db.init().await.expect("init");
            db.seed(&plan).await.expect("seed");
        });
        let conn = crate::sut::db::open_sqlite_writer(&path).expect("writer");
        (dir, conn, plan)
    }

    pub(in crate::sut::kernel) fn item_of(plan: &SeedPlan) -> String {
        plan.catalog_items()
            .next()
            .expect("an item")
            .item_id
            .to_string()
    }

    /// A purchase of one unit under `key`, paid by mandate `m`, and where its answer goes.
    pub(in crate::sut::kernel) fn purchase(
        plan: &SeedPlan,
        m: usize,
        key: &str,
    ) -> (Job, oneshot::Receiver<Result<Snapshot, KernelError>>) {
        let item = plan.catalog_items().next().expect("an item");
        let mandate = plan.catalog_mandates().nth(m).expect("a mandate");
        let req = PurchaseRequest {
            merchant_id: item.merchant_id,
            mandate_id: mandate.mandate_id,
            item_id: item.item_id,
            agent_id: "a".into(),
            quantity: 1,
            amount_minor: item.unit_price_minor,
            currency: Currency::parse(&item.currency).expect("currency"),
        };
        let (reply, answer) = oneshot::channel();
        let job = Job {
            fingerprint: req.fingerprint(),
            req,
            key: key.into(),
            link: crate::sut::kernel::Link::never(),
            reply,
        };
        (job, answer)
    }

    /// `n` purchases of one unit under keys `{prefix}{i}`, the mandates taken in turn.
    #[allow(clippy::type_complexity)]
    pub(in crate::sut::kernel) fn purchases(
        plan: &SeedPlan,
        prefix: &str,
        n: usize,
    ) -> (
        Vec<Job>,
        Vec<oneshot::Receiver<Result<Snapshot, KernelError>>>,
    ) {
        (0..n)
            .map(|i| purchase(plan, i % 4, &format!("{prefix}{i}")))
            .unzip()
    }

    /// The item's units left and the count of rows in `table`.
    pub(in crate::sut::kernel) fn left_and_rows(
        conn: &Connection,
        plan: &SeedPlan,
        table: &str,
    ) -> (i64, i64) {
        conn.query_row(
            &format!(
                "SELECT (SELECT SUM(available) FROM bucket WHERE item_id = ?1), \
                 (SELECT COUNT(*) FROM {table})"
            ),
            [item_of(plan)],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("state")
    }

    #[test]
    fn a_batch_on_one_bucket_commits_every_buyer_without_running_the_ones_that_would_lose() {
        // One bucket, six buyers: each round starts one of them (a second would lose for
        // certain) and the others wait without running, so all six commit in one batch at
        // their first attempt. A twin of a key answers with the winner's snapshot.
        let (_dir, conn, plan) = seeded(100, 1);
        let mut rng = SmallRng::seed_from_u64(3);
        let (mut batch, answers) = purchases(&plan, "k", 6);
        let (twin, mut twin_answer) = purchase(&plan, 0, "k0");
        batch.push(twin);
        run_batch(&conn, &mut batch, &KernelConfig::default(), &mut rng);
        let mut intents = std::collections::BTreeSet::new();
        for mut answer in answers {
            let s = answer.try_recv().expect("answered").expect("committed");
            assert_eq!((s.outcome, s.attempts), (Outcome::Committed, 1));
            intents.insert(s.intent_id);
        }
        assert_eq!(intents.len(), 6);
        let twin = twin_answer.try_recv().expect("answered").expect("replayed");
        assert!(
            intents.contains(&twin.intent_id),
            "the twin is the winner's sale"
        );
        assert_eq!(left_and_rows(&conn, &plan, "stock_claim"), (94, 6));
    }

    #[test]
    fn buyers_that_meet_on_a_row_conflict_and_the_loser_reruns_on_the_winners_write() {
        // Two buckets, forty buyers: each round starts two, who choose a bucket at random;
        // when both choose the same one, the second loses, counted in its attempts, and runs
        // again in the next round. Every buyer still commits once, in one batch.
        let (_dir, conn, plan) = seeded(1000, 2);
        let mut rng = SmallRng::seed_from_u64(5);
        let (mut batch, answers) = purchases(&plan, "c", 40);
        run_batch(&conn, &mut batch, &KernelConfig::default(), &mut rng);
        let attempts: Vec<u32> = answers
            .into_iter()
            .map(|mut a| {
                let s = a.try_recv().expect("answered").expect("committed");
                assert_eq!(s.outcome, Outcome::Committed);
                s.attempts
            })
            .collect();
        assert!(attempts.iter().any(|&a| a > 1), "no conflict: {attempts:?}");
        assert_eq!(left_and_rows(&conn, &plan, "stock_claim"), (960, 40));
    }

    #[test]
    fn a_purchase_that_keeps_losing_stops_at_max_attempts_and_leaves_nothing() {
        // A take that never takes: every run is a lost race, up to `max_attempts`.
        let (_dir, conn, plan) = seeded(100, 2);
        let mut config = KernelConfig {
            max_attempts: 3,
            ..KernelConfig::default()
        };
        config.sql.sqlite.stock.take =
            "UPDATE bucket SET available = available - ?2 WHERE bucket_id = ?1 AND ?2 < 0".into();
        let mut rng = SmallRng::seed_from_u64(4);
        let (mut batch, answers) = purchases(&plan, "x", 5);
        run_batch(&conn, &mut batch, &config, &mut rng);
        for mut answer in answers {
            match answer.try_recv().expect("answered") {
                Err(KernelError::RetryExhausted { attempts: 3 }) => {}
                other => panic!("unexpected answer: {other:?}"),
            }
        }
        assert_eq!(left_and_rows(&conn, &plan, "intent"), (100, 0));
    }

    #[test]
    fn an_answer_naming_a_moved_row_is_read_again_whoever_asked() {
        // Statements that pay every mandate from the first mandate's shards (a rewrite the
        // selftest makes): a sale moves a shard that answers about other mandates name too,
        // and those must be read again, or their buyers lose to a value long gone.
        let (_dir, conn, plan) = seeded(100, 4);
        let first = plan
            .catalog_mandates()
            .next()
            .expect("a mandate")
            .mandate_id;
        let mut config = KernelConfig::default();
        config.sql.sqlite.funds.candidates = format!(
            "SELECT shard_id, remaining FROM mandate_shard \
             WHERE mandate_id = '{first}' AND ?1 = ?1 AND remaining >= ?2"
        );
        let mut rng = SmallRng::seed_from_u64(6);
        let (mut batch, answers) = purchases(&plan, "f", 24);
        run_batch(&conn, &mut batch, &config, &mut rng);
        for mut answer in answers {
            let s = answer.try_recv().expect("answered").expect("committed");
            assert_eq!(s.outcome, Outcome::Committed);
        }
        assert_eq!(left_and_rows(&conn, &plan, "mandate_debit"), (76, 24));
    }

    #[test]
    fn a_purchase_whose_keeping_fails_is_undone_not_committed_with_the_batch() {
        // A keep statement that fails: the caller hears a database error and nothing of
        // the purchase survives the batch's COMMIT.
        let (_dir, conn, plan) = seeded(100, 4);
        let mut config = KernelConfig::default();
        config.sql.sqlite.keep_committed = vec!["RELEASE no_such_savepoint".into()];
        let mut rng = SmallRng::seed_from_u64(7);
        let (mut batch, answers) = purchases(&plan, "u", 3);
        run_batch(&conn, &mut batch, &config, &mut rng);
        for mut answer in answers {
            match answer.try_recv().expect("answered") {
                Err(KernelError::Database(_)) => {}
                other => panic!("unexpected answer: {other:?}"),
            }
        }
        assert_eq!(left_and_rows(&conn, &plan, "intent"), (100, 0));
    }
}
