//! The kernel on embedded SQLite.
//!
//! `Group` mode: one writer thread owns the connection and commits many queued purchases
//! in one `BEGIN IMMEDIATE` transaction, each in its own savepoint; every caller is
//! answered only after the COMMIT (group commit). `Optimistic` mode: a pool of threads,
//! each with its own connection, runs `BEGIN DEFERRED` transactions whose snapshot
//! conflicts (BUSY / BUSY_SNAPSHOT) are rolled back, backed off and rerun, counted in
//! `attempts`.
//!
//! (Just over 600 lines on purpose: both modes run the same `execute`/`settle` steps,
//! and keeping the steps beside the two loops that call them is the point of the file.)

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rusqlite::{Connection, ErrorCode, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::catalog::{Catalog, ItemInfo, MandateInfo};
use super::sql::{Sql, SqliteSql, Take};
use super::{
    FailureCode, KernelConfig, KernelError, Link, Outcome, PurchaseRequest, Snapshot, SqliteMode,
    StoredIntent, backoff, credit_account, cut_error, debit_account, new_id, now_ms,
};
use crate::sut::db::{open_sqlite, open_sqlite_server, open_sqlite_writer};

/// Purchases queued per lane before callers wait for room.
const LANE_CAPACITY: usize = 8192;

pub(super) struct Job {
    pub(super) req: PurchaseRequest,
    pub(super) key: String,
    pub(super) fingerprint: String,
    pub(super) link: Link,
    pub(super) reply: oneshot::Sender<Result<Snapshot, KernelError>>,
}

pub struct SqliteKernel {
    path: PathBuf,
    lanes: Vec<mpsc::Sender<Job>>,
    next: AtomicUsize,
}

/// Why one run of the transaction stopped.
pub(super) enum Failure {
    Db(rusqlite::Error),
    Kernel(KernelError),
}

impl From<rusqlite::Error> for Failure {
    fn from(e: rusqlite::Error) -> Self {
        Failure::Db(e)
    }
}

pub(super) fn db_error(e: impl std::fmt::Display) -> KernelError {
    KernelError::Database(e.to_string())
}

/// BUSY (another writer) and BUSY_SNAPSHOT (our snapshot is stale) are SQLite's
/// serialization conflicts.
fn is_conflict(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked)
    )
}

impl SqliteKernel {
    pub fn open(path: &Path, config: &KernelConfig) -> Result<SqliteKernel, KernelError> {
        if !path.exists() {
            return Err(KernelError::Unavailable(format!(
                "{}: no such database (run `swarm db init` and `swarm db seed` first)",
                path.display()
            )));
        }
        let workers = match config.sqlite_mode {
            SqliteMode::Group | SqliteMode::Occ => 1,
            SqliteMode::Optimistic => config.pool_size.max(1),
        };
        let mut lanes = Vec::with_capacity(workers);
        for i in 0..workers {
            let conn = open_sqlite_server(path, config.sqlite_mmap_bytes).map_err(db_error)?;
            let (tx, rx) = mpsc::channel(LANE_CAPACITY);
            let cfg = config.clone();
            let mode = config.sqlite_mode;
            std::thread::Builder::new()
                .name(format!("swarm-sqlite-{i}"))
                .spawn(move || match mode {
                    SqliteMode::Group => group_writer(conn, rx, cfg),
                    SqliteMode::Optimistic => optimistic_worker(conn, rx, cfg),
                    SqliteMode::Occ => super::occ::writer(conn, rx, cfg),
                })
                .map_err(|e| KernelError::Unavailable(format!("cannot start writer: {e}")))?;
            lanes.push(tx);
        }
        Ok(SqliteKernel {
            path: path.to_path_buf(),
            lanes,
            next: AtomicUsize::new(0),
        })
    }

    pub async fn commit(
        &self,
        req: PurchaseRequest,
        key: String,
        fingerprint: String,
        link: Link,
    ) -> Result<Snapshot, KernelError> {
        let (reply, answer) = oneshot::channel();
        let lane = self.next.fetch_add(1, Ordering::Relaxed) % self.lanes.len();
        self.lanes[lane]
            .send(Job {
                req,
                key,
                fingerprint,
                link,
                reply,
            })
            .await
            .map_err(|_| KernelError::Unavailable("the SQLite writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| KernelError::Unavailable("the SQLite writer dropped a purchase".into()))?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, KernelError> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let conn = open_sqlite(&path).map_err(db_error)?;
            f(&conn).map_err(db_error)
        })
        .await
        .map_err(db_error)?
    }

    pub async fn load_catalog(&self) -> Result<Catalog, KernelError> {
        self.read(|conn| {
            let mut c = Catalog::default();
            let mut st = conn.prepare("SELECT merchant_id FROM merchant")?;
            for id in st.query_map([], |r| r.get::<_, String>(0))? {
                if let Ok(u) = Uuid::parse_str(&id?) {
                    c.merchants.insert(u);
                }
            }
            let mut st =
                conn.prepare("SELECT item_id, merchant_id, unit_price_minor, currency FROM item")?;
            let rows = st.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    item_info(r.get(1)?, r.get(2)?, r.get(3)?),
                ))
            })?;
            for row in rows {
                let (id, info) = row?;
                if let (Ok(id), Some(info)) = (Uuid::parse_str(&id), info) {
                    c.items.insert(id, info);
                }
            }
            let mut st = conn.prepare("SELECT mandate_id, merchant_id, currency FROM mandate")?;
            let rows = st.query_map([], |r| {
                Ok((r.get::<_, String>(0)?, mandate_info(r.get(1)?, r.get(2)?)))
            })?;
            for row in rows {
                let (id, info) = row?;
                if let (Ok(id), Some(info)) = (Uuid::parse_str(&id), info) {
                    c.mandates.insert(id, info);
                }
            }
            Ok(c)
        })
        .await
    }

    pub async fn fetch_catalog(
        &self,
        req: &PurchaseRequest,
    ) -> Result<(bool, Option<ItemInfo>, Option<MandateInfo>), KernelError> {
        let (merchant, item, mandate) = (
            req.merchant_id.to_string(),
            req.item_id.to_string(),
            req.mandate_id.to_string(),
        );
        self.read(move |conn| {
            let known = conn
                .query_row(
                    "SELECT 1 FROM merchant WHERE merchant_id = ?1",
                    [&merchant],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            let item = conn
                .query_row(
                    "SELECT merchant_id, unit_price_minor, currency FROM item WHERE item_id = ?1",
                    [&item],
                    |r| Ok(item_info(r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?
                .flatten();
            let mandate = conn
                .query_row(
                    "SELECT merchant_id, currency FROM mandate WHERE mandate_id = ?1",
                    [&mandate],
                    |r| Ok(mandate_info(r.get(0)?, r.get(1)?)),
                )
                .optional()?
                .flatten();
            Ok((known, item, mandate))
        })
        .await
    }

    /// The intent whose `column` (`idem_key` or `intent_id`) equals `value`.
    pub async fn lookup(
        &self,
        column: &'static str,
        value: String,
    ) -> Result<Option<StoredIntent>, KernelError> {
        let row = self
            .read(move |conn| {
                conn.query_row(
                    &format!(
                        "SELECT idem_key, fingerprint, snapshot FROM intent WHERE {column} = ?1"
                    ),
                    [&value],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                        ))
                    },
                )
                .optional()
            })
            .await?;
        row.map(|(idempotency_key, fingerprint, snap)| {
            Ok(StoredIntent {
                idempotency_key,
                fingerprint,
                snapshot: Snapshot::stored(&snap).map_err(db_error)?,
            })
        })
        .transpose()
    }
}

fn item_info(merchant: String, price: i64, currency: String) -> Option<ItemInfo> {
    Some(ItemInfo {
        merchant_id: Uuid::parse_str(&merchant).ok()?,
        unit_price_minor: price,
        currency: super::Currency::parse(&currency).ok()?,
    })
}

fn mandate_info(merchant: String, currency: String) -> Option<MandateInfo> {
    Some(MandateInfo {
        merchant_id: Uuid::parse_str(&merchant).ok()?,
        currency: super::Currency::parse(&currency).ok()?,
    })
}

/// The group-commit writer: drain the lane, settle the batch in one transaction, answer.
fn group_writer(conn: Connection, mut rx: mpsc::Receiver<Job>, config: KernelConfig) {
    let mut rng = SmallRng::from_rng(&mut rand::rng());
    let mut batch: Vec<Job> = Vec::with_capacity(config.group_max);
    let mut results: Vec<Result<Snapshot, KernelError>> = Vec::with_capacity(config.group_max);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < config.group_max {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let committed = conn.execute_batch("BEGIN IMMEDIATE").and_then(|()| {
            for job in &batch {
                results.push(match execute(&conn, job, 1, &config.sql.sqlite, &mut rng) {
                    Ok(s) => Ok(s),
                    Err(Failure::Kernel(e)) => Err(e),
                    Err(Failure::Db(e)) => Err(db_error(e)),
                });
            }
            conn.execute_batch("COMMIT")
        });
        if let Err(e) = committed {
            // Nothing in this batch is durable: every caller may retry the same key.
            let _ = conn.execute_batch("ROLLBACK");
            tracing::warn!("group commit failed: {e}");
            results.clear();
            for job in batch.drain(..) {
                let _ = job.reply.send(Err(KernelError::Unavailable(format!(
                    "group commit failed: {e}"
                ))));
            }
            continue;
        }
        for (job, result) in batch.drain(..).zip(results.drain(..)) {
            let _ = job.reply.send(result);
        }
    }
}

/// One connection of the optimistic pool: deferred transactions, conflicts retried.
fn optimistic_worker(conn: Connection, mut rx: mpsc::Receiver<Job>, config: KernelConfig) {
    // Conflicts should surface as retries we count, not as long waits in SQLite.
    let _ = conn.busy_timeout(Duration::from_millis(20));
    let mut rng = SmallRng::from_rng(&mut rand::rng());
    while let Some(job) = rx.blocking_recv() {
        let result = run_optimistic(&conn, &job, &config, &mut rng);
        let _ = job.reply.send(result);
    }
}

fn run_optimistic(
    conn: &Connection,
    job: &Job,
    config: &KernelConfig,
    rng: &mut SmallRng,
) -> Result<Snapshot, KernelError> {
    for attempt in 1..=config.max_attempts {
        if job.link.is_cut() {
            return Err(cut_error());
        }
        let outcome = conn
            .execute_batch("BEGIN DEFERRED")
            .map_err(Failure::Db)
            .and_then(|()| execute(conn, job, attempt, &config.sql.sqlite, rng))
            .and_then(|s| {
                conn.execute_batch("COMMIT")
                    .map(|()| s)
                    .map_err(Failure::Db)
            });
        match outcome {
            Ok(s) => return Ok(s),
            Err(failure) => {
                let _ = conn.execute_batch("ROLLBACK");
                match failure {
                    Failure::Db(e) if is_conflict(&e) => {
                        if attempt < config.max_attempts {
                            std::thread::sleep(backoff(
                                attempt,
                                config.backoff_base_ms,
                                config.backoff_cap_ms,
                                rng,
                            ));
                        }
                    }
                    Failure::Db(e) => return Err(db_error(e)),
                    Failure::Kernel(e) => return Err(e),
                }
            }
        }
    }
    Err(KernelError::RetryExhausted {
        attempts: config.max_attempts,
    })
}

/// One run of the purchase inside the caller's transaction, wrapped in a savepoint so a
/// failure leaves nothing behind.
fn execute(
    conn: &Connection,
    job: &Job,
    attempts: u32,
    sql: &SqliteSql,
    rng: &mut SmallRng,
) -> Result<Snapshot, Failure> {
    let stored = conn
        .prepare_cached(&sql.lookup)?
        .query_row([&job.key], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })
        .optional()?;
    if let Some((fingerprint, snapshot)) = stored {
        return if fingerprint == job.fingerprint {
            Snapshot::replay_of(&snapshot).map_err(|e| Failure::Kernel(db_error(e)))
        } else {
            Err(Failure::Kernel(KernelError::KeyReused {
                key: job.key.clone(),
            }))
        };
    }
    if job.link.is_cut() {
        return Err(Failure::Kernel(cut_error()));
    }
    conn.prepare_cached("SAVEPOINT purchase")?.execute([])?;
    let settled = settle(conn, job, attempts, sql, rng).and_then(|s| {
        // The client left before the commit point: the server rolls the purchase back.
        if job.link.is_cut() {
            Err(Failure::Kernel(cut_error()))
        } else {
            Ok(s)
        }
    });
    match settled {
        Ok(s) if s.outcome == Outcome::Committed => {
            for end in &sql.keep_committed {
                conn.prepare_cached(end)?.execute([])?;
            }
            Ok(s)
        }
        Ok(s) => {
            conn.prepare_cached("RELEASE purchase")?.execute([])?;
            Ok(s)
        }
        Err(e) => {
            let _ = undo_purchase(conn);
            Err(e)
        }
    }
}

/// Roll the purchase's savepoint back and close it.
pub(super) fn undo_purchase(conn: &Connection) -> rusqlite::Result<()> {
    conn.prepare_cached("ROLLBACK TO purchase")?.execute([])?;
    conn.prepare_cached("RELEASE purchase")?.execute([])?;
    Ok(())
}

/// Claim, debit, ledger, intent: steps 2 to 5 of the transaction in docs/design.md.
fn settle(
    conn: &Connection,
    job: &Job,
    attempts: u32,
    sql: &SqliteSql,
    rng: &mut SmallRng,
) -> Result<Snapshot, Failure> {
    let req = &job.req;
    let intent_id = new_id(rng);
    let Some(bucket) = claim_one(conn, &sql.stock, &req.item_id, req.quantity, rng)? else {
        return record_declined(conn, job, intent_id, FailureCode::OutOfStock, attempts, sql);
    };
    let Some(shard) = claim_one(conn, &sql.funds, &req.mandate_id, req.amount_minor, rng)? else {
        // The claim is not kept.
        conn.prepare_cached("ROLLBACK TO purchase")?.execute([])?;
        return record_declined(
            conn,
            job,
            intent_id,
            FailureCode::MandateRejected,
            attempts,
            sql,
        );
    };
    write_rows(conn, job, intent_id, &bucket, &shard, attempts, sql, rng)
}

/// Steps 2 to 5 once the bucket and shard have given: the claim, debit, ledger and intent
/// rows, and the snapshot the client is answered with.
#[allow(clippy::too_many_arguments)]
pub(super) fn write_rows(
    conn: &Connection,
    job: &Job,
    intent_id: Uuid,
    bucket: &str,
    shard: &str,
    attempts: u32,
    sql: &SqliteSql,
    rng: &mut SmallRng,
) -> Result<Snapshot, Failure> {
    let req = &job.req;
    let bucket_id = Uuid::parse_str(bucket).map_err(|e| Failure::Kernel(db_error(e)))?;
    let ledger_txn_id = new_id(rng);
    let currency = req.currency.as_str();
    let ledger = ledger_txn_id.to_string();
    let intent = intent_id.to_string();
    conn.prepare_cached(&sql.claim)?.execute(params![
        intent,
        bucket,
        req.item_id.to_string(),
        req.quantity
    ])?;
    conn.prepare_cached(&sql.debit)?.execute(params![
        intent,
        shard,
        req.mandate_id.to_string(),
        req.amount_minor
    ])?;
    conn.prepare_cached(&sql.ledger_txn)?.execute(params![
        ledger,
        intent,
        req.amount_minor,
        currency
    ])?;
    conn.prepare_cached(&sql.debit_leg)?.execute(params![
        new_id(rng).to_string(),
        ledger,
        debit_account(&req.mandate_id),
        -req.amount_minor,
        currency
    ])?;
    conn.prepare_cached(&sql.credit_leg)?.execute(params![
        new_id(rng).to_string(),
        ledger,
        credit_account(&req.merchant_id),
        req.amount_minor,
        currency
    ])?;
    let snapshot = Snapshot::fresh(
        Outcome::Committed,
        intent_id,
        Some(ledger_txn_id),
        Some(bucket_id),
        None,
        req.amount_minor,
        currency,
        attempts,
    );
    insert_intent(conn, job, &snapshot, Some(&ledger), sql)?;
    Ok(snapshot)
}

/// Try the owner's rows in random order; the first conditional decrement that takes wins.
/// `None`: no row could give `amount`.
fn claim_one(
    conn: &Connection,
    pool: &Take,
    owner: &Uuid,
    amount: i64,
    rng: &mut SmallRng,
) -> Result<Option<String>, Failure> {
    let mut candidates: Vec<String> = conn
        .prepare_cached(&pool.candidates)?
        .query_map(params![owner.to_string(), amount], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    candidates.shuffle(rng);
    let mut take = conn.prepare_cached(&pool.take)?;
    for row in candidates {
        if take.execute(params![row, amount])? == 1 {
            return Ok(Some(row));
        }
    }
    Ok(None)
}

pub(super) fn record_declined(
    conn: &Connection,
    job: &Job,
    intent_id: Uuid,
    code: FailureCode,
    attempts: u32,
    sql: &SqliteSql,
) -> Result<Snapshot, Failure> {
    let snapshot = Snapshot::fresh(
        Outcome::Declined,
        intent_id,
        None,
        None,
        Some(code),
        job.req.amount_minor,
        job.req.currency.as_str(),
        attempts,
    );
    insert_intent(conn, job, &snapshot, None, sql)?;
    Ok(snapshot)
}

fn insert_intent(
    conn: &Connection,
    job: &Job,
    snapshot: &Snapshot,
    ledger_txn_id: Option<&str>,
    sql: &SqliteSql,
) -> Result<(), Failure> {
    let req = &job.req;
    conn.prepare_cached(&sql.intent)?.execute(params![
        snapshot.intent_id.to_string(),
        job.key,
        job.fingerprint,
        req.merchant_id.to_string(),
        req.mandate_id.to_string(),
        req.item_id.to_string(),
        req.agent_id,
        req.quantity,
        req.amount_minor,
        req.currency.as_str(),
        snapshot.outcome.as_str(),
        snapshot.failure_code.map(|c| c.as_str()),
        ledger_txn_id,
        snapshot.attempts,
        snapshot.json,
        now_ms(),
    ])?;
    Ok(())
}

/// The single-writer limit, for `scripts/bench-kernel.sh`: the kernel's own statements,
/// one `BEGIN IMMEDIATE … COMMIT` per purchase, in a plain loop on one connection (no
/// channel, no threads, no group commit). Returns (committed, declined).
pub fn bare_loop(
    path: &Path,
    purchases: impl Iterator<Item = (PurchaseRequest, String)>,
) -> Result<(u64, u64), KernelError> {
    let conn = open_sqlite_writer(path).map_err(db_error)?;
    let mut rng = SmallRng::from_rng(&mut rand::rng());
    let (mut committed, mut declined) = (0, 0);
    for (req, key) in purchases {
        let (reply, _answer) = oneshot::channel();
        let job = Job {
            fingerprint: req.fingerprint(),
            req,
            key,
            link: Link::never(),
            reply,
        };
        conn.execute_batch("BEGIN IMMEDIATE").map_err(db_error)?;
        match execute(&conn, &job, 1, &Sql::reference().sqlite, &mut rng) {
            Ok(s) if s.outcome == Outcome::Committed => committed += 1,
            Ok(_) => declined += 1,
            Err(Failure::Kernel(e)) => return Err(e),
            Err(Failure::Db(e)) => return Err(db_error(e)),
        }
        conn.execute_batch("COMMIT").map_err(db_error)?;
    }
    Ok((committed, declined))
}
