//! The kernel on embedded SQLite.
//!
//! `Group` mode: one writer thread owns the connection and commits many queued purchases
//! in one `BEGIN IMMEDIATE` transaction, each in its own savepoint; every caller is
//! answered only after the COMMIT (group commit). `Optimistic` mode: a pool of threads,
//! each with its own connection, runs `BEGIN DEFERRED` transactions whose snapshot
//! conflicts (BUSY / BUSY_SNAPSHOT) are rolled back, backed off and rerun, counted in
//! `attempts`.
//!
//! The steps every writer runs are in `sqlite_steps`; the row-level OCC writer is `occ`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use rusqlite::{Connection, ErrorCode, OptionalExtension};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::catalog::{Catalog, ItemInfo, MandateInfo};
use super::checkpoint::Checkpointer;
use super::sql::Sql;
use super::sqlite_steps::{Failure, Job, db_error, execute};
use super::{
    KernelConfig, KernelError, Link, Outcome, PurchaseRequest, Snapshot, SqliteMode, StoredIntent,
    backoff, cut_error,
};
use crate::sut::db::{open_sqlite, open_sqlite_server, open_sqlite_writer};

/// Purchases queued per lane before callers wait for room.
const LANE_CAPACITY: usize = 8192;

pub struct SqliteKernel {
    path: PathBuf,
    lanes: Vec<mpsc::Sender<Job>>,
    next: AtomicUsize,
    /// Reader connections kept between lookups (opening one costs more than the lookup).
    readers: std::sync::Arc<std::sync::Mutex<Vec<Connection>>>,
    /// One permit per reader connection: lookups beyond wait their turn here rather than
    /// each taking a blocking thread and a connection of its own.
    reader_permits: std::sync::Arc<tokio::sync::Semaphore>,
}

/// Lookups run at once, and so reader connections and blocking threads held for them.
/// Each connection keeps its own page cache and each thread its own allocator arena: 32
/// at once (the end-of-run final reads) took 170 threads and over 100 MB of a 10M-agent
/// run; on two cores more than a handful of concurrent B-tree lookups only queue anyway.
const MAX_READERS: usize = 8;

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
            // The single-writer modes copy the WAL back on another thread (`checkpoint`).
            let checkpointer = match mode {
                SqliteMode::Group | SqliteMode::Occ => Checkpointer::spawn(path),
                SqliteMode::Optimistic => None,
            };
            std::thread::Builder::new()
                .name(format!("swarm-sqlite-{i}"))
                .spawn(move || {
                    let _checkpointer = checkpointer;
                    match mode {
                        SqliteMode::Group => group_writer(conn, rx, cfg),
                        SqliteMode::Optimistic => optimistic_worker(conn, rx, cfg),
                        SqliteMode::Occ => super::occ::writer(conn, rx, cfg),
                    }
                })
                .map_err(|e| KernelError::Unavailable(format!("cannot start writer: {e}")))?;
            lanes.push(tx);
        }
        Ok(SqliteKernel {
            path: path.to_path_buf(),
            lanes,
            next: AtomicUsize::new(0),
            readers: Default::default(),
            reader_permits: std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_READERS)),
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
        // The permit goes into the closure: a caller that gives up (a client gone away, a
        // timeout) leaves the lookup running on its thread, and the permit with it.
        let permit = self
            .reader_permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| KernelError::Unavailable("the SQLite readers have stopped".into()))?;
        let (path, readers) = (self.path.clone(), self.readers.clone());
        tokio::task::spawn_blocking(move || {
            let idle = readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let conn = match idle {
                Some(conn) => conn,
                None => open_sqlite(&path).map_err(db_error)?,
            };
            // A statement outside a transaction holds no snapshot once it is done: an idle
            // reader never keeps the WAL from being checkpointed.
            let result = f(&conn).map_err(db_error);
            let mut idle = readers.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < MAX_READERS {
                idle.push(conn);
            }
            drop(idle);
            drop(permit);
            result
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
                conn.prepare_cached(&format!(
                    "SELECT idem_key, fingerprint, snapshot FROM intent WHERE {column} = ?1"
                ))?
                .query_row([&value], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                })
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
                    // SQLite rolled the whole transaction back (a full disk, an I/O
                    // error): what the batch wrote is gone, and a later statement would
                    // commit on its own. The batch ends here, answered unavailable.
                    Err(Failure::Db(e)) if conn.is_autocommit() => return Err(e),
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
    let sql = Sql::reference().sqlite;
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
        match execute(&conn, &job, 1, &sql, &mut rng) {
            Ok(s) if s.outcome == Outcome::Committed => committed += 1,
            Ok(_) => declined += 1,
            Err(Failure::Kernel(e)) => return Err(e),
            Err(Failure::Db(e)) => return Err(db_error(e)),
        }
        conn.execute_batch("COMMIT").map_err(db_error)?;
    }
    Ok((committed, declined))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::addr::DbUrl;
    use crate::sut::db::Database;

    /// Hundreds of lookups at once never run more than `MAX_READERS` at a time, and never
    /// leave more connections open than that, even when half their callers give up while
    /// the lookup still runs (a client gone away).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lookups_beyond_the_readers_wait_their_turn() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("swarm.db");
        let db = Database::connect(&DbUrl::sqlite(path.clone())).expect("connect");
        db.init().await.expect("init");
        let kernel = Arc::new(SqliteKernel::open(&path, &KernelConfig::default()).expect("open"));
        let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let mut tasks = Vec::new();
        for i in 0..200 {
            let (kernel, running, most) = (kernel.clone(), running.clone(), most.clone());
            tasks.push(tokio::spawn(async move {
                let read = kernel.read(move |conn| {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(5));
                    running.fetch_sub(1, Ordering::SeqCst);
                    conn.query_row("SELECT COUNT(*) FROM intent", [], |r| r.get::<_, i64>(0))
                });
                match i % 2 {
                    0 => Some(read.await),
                    _ => tokio::time::timeout(Duration::from_millis(1), read)
                        .await
                        .ok(),
                }
            }));
        }
        for task in tasks {
            if let Some(read) = task.await.expect("task") {
                assert_eq!(read.expect("read"), 0);
            }
        }
        // Lookups whose callers gave up may still be running: wait for the last to end.
        for _ in 0..1000 {
            if running.load(Ordering::SeqCst) == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let most = most.load(Ordering::SeqCst);
        assert!(most <= MAX_READERS, "{most} lookups ran at once");
        let idle = kernel.readers.lock().expect("readers").len();
        assert!(idle <= MAX_READERS, "{idle} connections kept");
    }

    #[test]
    fn the_group_writer_undoes_a_purchase_whose_keeping_fails() {
        // As in the OCC writer: a keep statement that fails leaves nothing of its
        // purchase for the batch's COMMIT, and its caller hears a database error.
        use crate::sut::kernel::occ::tests::{left_and_rows, purchases, seeded};
        let (dir, conn, plan) = seeded(100, 4);
        let mut config = KernelConfig::default();
        config.sql.sqlite.keep_committed = vec!["RELEASE no_such_savepoint".into()];
        let (jobs, answers) = purchases(&plan, "g", 3);
        let (tx, rx) = mpsc::channel(8);
        for job in jobs {
            tx.try_send(job).map_err(|_| "queue full").expect("queued");
        }
        drop(tx);
        group_writer(conn, rx, config);
        for mut answer in answers {
            match answer.try_recv().expect("answered") {
                Err(KernelError::Database(_)) => {}
                other => panic!("unexpected answer: {other:?}"),
            }
        }
        let check = crate::sut::db::open_sqlite_writer(&dir.path().join("occ.db")).expect("open");
        assert_eq!(left_and_rows(&check, &plan, "intent"), (100, 0));
    }
}
