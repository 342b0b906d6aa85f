//! The commit transaction: one idempotent ACID purchase, on SQLite or PostgreSQL.
//!
//! Invariants: validation happens before anything is written and names the field; a key
//! settles at most once (UNIQUE index, replay of the stored bytes); stock and mandate
//! shards move only through conditional updates (`… WHERE available >= q`), never from a
//! SUM read; a COMMITTED intent always has one claim, one debit and one ledger transaction
//! with two legs summing to zero; serialization conflicts rerun the whole transaction up
//! to a bound and are counted in `attempts`. The kernel knows nothing of agents, regions,
//! metrics or the auditor.

mod catalog;
mod checkpoint;
mod error;
mod occ;
mod postgres;
pub mod request;
mod retry;
pub mod snapshot;
mod sql;
mod sqlite;
mod sqlite_steps;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use uuid::Uuid;

use crate::addr::DbUrl;
pub use error::KernelError;
pub use request::{Currency, PurchaseRequest, check_key};
pub use retry::backoff;
pub use snapshot::{FailureCode, Outcome, Snapshot};
pub use sql::{PgSql, Sql, SqliteSql, Take};

use catalog::Catalog;

/// How the kernel runs.
#[derive(Debug, Clone)]
pub struct KernelConfig {
    pub sqlite_mode: SqliteMode,
    pub isolation: Isolation,
    /// Whole-transaction runs before RETRY_EXHAUSTED (1 + OCC retries).
    pub max_attempts: u32,
    /// PostgreSQL connections, or optimistic SQLite connections.
    pub pool_size: usize,
    /// Backoff between reruns: full jitter up to `min(cap, base * 2^n)`. PostgreSQL and
    /// the optimistic SQLite pool wait it; the OCC writer reruns a loser in the next round
    /// of its batch without waiting (`occ`).
    pub backoff_base_ms: u64,
    pub backoff_cap_ms: u64,
    /// Most purchases committed together by the SQLite group writer.
    pub group_max: usize,
    /// The statements it runs: `Sql::reference()` except under `swarm selftest`.
    pub sql: Sql,
    /// SQLite: read the database through a memory map of this size (`swarm serve`).
    pub sqlite_mmap_bytes: u64,
}

impl Default for KernelConfig {
    fn default() -> Self {
        KernelConfig {
            sqlite_mode: SqliteMode::Occ,
            isolation: Isolation::RepeatableRead,
            max_attempts: 16,
            pool_size: 16,
            backoff_base_ms: 1,
            backoff_cap_ms: 50,
            group_max: 512,
            sql: Sql::reference(),
            sqlite_mmap_bytes: 0,
        }
    }
}

/// How the embedded SQLite kernel serialises writers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SqliteMode {
    /// One writer thread, many purchases per transaction (each in its own savepoint).
    Group,
    /// A pool of deferred transactions; snapshot conflicts are retried and counted.
    Optimistic,
    /// Row-level optimistic concurrency (`occ`): each purchase reads on the state its round
    /// of the batch starts from, and commits only if the bucket and shard it read are
    /// unchanged (first committer wins per row); a loser reruns in the next round, counted
    /// in `attempts`. The default.
    #[default]
    Occ,
}

/// PostgreSQL transaction isolation for the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Isolation {
    ReadCommitted,
    /// What Aurora DSQL offers; the default.
    #[default]
    RepeatableRead,
    Serializable,
}

impl Isolation {
    pub fn sql(self) -> &'static str {
        match self {
            Isolation::ReadCommitted => "READ COMMITTED",
            Isolation::RepeatableRead => "REPEATABLE READ",
            Isolation::Serializable => "SERIALIZABLE",
        }
    }
}

enum Backend {
    Sqlite(sqlite::SqliteKernel),
    Postgres(Arc<postgres::PgKernel>),
}

/// The client's connection as the kernel sees it. A server whose client connection is cut
/// before the commit point rolls the purchase back; after it, the commit stands and only
/// the answer is lost. A link is cut when the epoch it was opened in has passed.
#[derive(Debug, Clone, Default)]
pub struct Link {
    epoch: Option<Arc<AtomicU64>>,
    opened: u64,
}

impl Link {
    /// A link on `epoch`, opened now.
    pub fn new(epoch: Arc<AtomicU64>) -> Link {
        let opened = epoch.load(Ordering::Acquire);
        Link {
            epoch: Some(epoch),
            opened,
        }
    }

    /// A link nobody cuts.
    pub fn never() -> Link {
        Link::default()
    }

    pub fn is_cut(&self) -> bool {
        self.epoch
            .as_ref()
            .is_some_and(|e| e.load(Ordering::Acquire) != self.opened)
    }
}

fn cut_error() -> KernelError {
    KernelError::Unavailable("the client connection was cut before the commit".into())
}

struct Inner {
    catalog: Catalog,
    backend: Backend,
}

/// A handle to the commit kernel; cheap to clone, shared by every caller.
#[derive(Clone)]
pub struct Kernel {
    inner: Arc<Inner>,
}

/// What a lookup by key or intent id finds.
#[derive(Debug, Clone)]
pub struct StoredIntent {
    pub idempotency_key: String,
    pub fingerprint: String,
    /// The stored snapshot bytes, `replayed: false`.
    pub snapshot: Snapshot,
}

impl Kernel {
    /// Open the kernel over an initialised, seeded database.
    pub async fn open(url: &DbUrl, config: KernelConfig) -> Result<Kernel, KernelError> {
        let (catalog, backend) = match url {
            DbUrl::Sqlite(path) => {
                let k = sqlite::SqliteKernel::open(path, &config)?;
                (k.load_catalog().await?, Backend::Sqlite(k))
            }
            DbUrl::Postgres(u) => {
                let k = postgres::PgKernel::open(u, &config).await?;
                (k.load_catalog().await?, Backend::Postgres(Arc::new(k)))
            }
        };
        Ok(Kernel {
            inner: Arc::new(Inner { catalog, backend }),
        })
    }

    /// Settle one purchase under `key`. Same key and payload → the stored snapshot with
    /// `replayed: true`; same key, other payload → `KeyReused`; nothing else changes.
    pub async fn commit(&self, req: &PurchaseRequest, key: &str) -> Result<Snapshot, KernelError> {
        self.commit_on(req, key, &Link::never()).await
    }

    /// `commit` for a client on `link`. Cancel-safe: once handed to the database side the
    /// purchase runs to its end (or to the rollback a cut link causes) even if this future
    /// is dropped, as it would on a server whose client went away.
    pub async fn commit_on(
        &self,
        req: &PurchaseRequest,
        key: &str,
        link: &Link,
    ) -> Result<Snapshot, KernelError> {
        check_key(key)?;
        req.check_shape()?;
        self.validate(req).await?;
        let fingerprint = req.fingerprint();
        match &self.inner.backend {
            Backend::Sqlite(k) => {
                k.commit(req.clone(), key.to_string(), fingerprint, link.clone())
                    .await
            }
            Backend::Postgres(k) => {
                let (k, req, key, link) = (k.clone(), req.clone(), key.to_string(), link.clone());
                tokio::spawn(async move { k.commit(&req, &key, &fingerprint, &link).await })
                    .await
                    .map_err(|e| KernelError::Database(format!("kernel task failed: {e}")))?
            }
        }
    }

    async fn validate(&self, req: &PurchaseRequest) -> Result<(), KernelError> {
        let c = &self.inner.catalog;
        let merchant = c.merchants.contains(&req.merchant_id);
        let item = c.items.get(&req.item_id).copied();
        let mandate = c.mandates.get(&req.mandate_id).copied();
        if merchant && item.is_some() && mandate.is_some() {
            return catalog::check(req, merchant, item, mandate);
        }
        // Something was seeded after we opened, or it does not exist: ask the database.
        let (merchant, item, mandate) = match &self.inner.backend {
            Backend::Sqlite(k) => k.fetch_catalog(req).await?,
            Backend::Postgres(k) => k.fetch_catalog(req).await?,
        };
        catalog::check(req, merchant, item, mandate)
    }

    /// Purchases PostgreSQL's decline-only statement answered (declined, replayed or
    /// refused as KEY_REUSED; `postgres`): a count for
    /// the benchmark and the tests; 0 on SQLite, which has no such statement.
    pub fn declined_by_plan(&self) -> u64 {
        match &self.inner.backend {
            Backend::Sqlite(_) => 0,
            Backend::Postgres(k) => k.declined_by_plan(),
        }
    }

    /// The intent stored under `key`, if any (to resolve an ambiguous outcome).
    pub async fn lookup_key(&self, key: &str) -> Result<Option<StoredIntent>, KernelError> {
        match &self.inner.backend {
            Backend::Sqlite(k) => k.lookup("idem_key", key.to_string()).await,
            Backend::Postgres(k) => k.lookup_key(key).await,
        }
    }

    /// The intent with id `intent_id`, if any.
    pub async fn lookup_intent(
        &self,
        intent_id: Uuid,
    ) -> Result<Option<StoredIntent>, KernelError> {
        match &self.inner.backend {
            Backend::Sqlite(k) => k.lookup("intent_id", intent_id.to_string()).await,
            Backend::Postgres(k) => k.lookup_intent(intent_id).await,
        }
    }
}

/// Benchmark hooks: the bare single-writer SQLite loop the kernel is measured against.
pub mod bench {
    pub use crate::sut::kernel::sqlite::bare_loop;
}

/// Milliseconds since the Unix epoch, for `created_at_ms`.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A time-ordered (v7) UUID: random in its low bits, increasing in its high bits, so
/// new rows land at the end of their primary-key index instead of on random pages.
fn new_id(rng: &mut impl rand::Rng) -> Uuid {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    uuid::Builder::from_unix_timestamp_millis(ms, &rng.random()).into_uuid()
}

/// Ledger account names: the mandate pays, the merchant is paid.
fn debit_account(mandate_id: &Uuid) -> String {
    format!("mandate:{mandate_id}")
}

fn credit_account(merchant_id: &Uuid) -> String {
    format!("merchant:{merchant_id}")
}
