//! The one shared logical database: connecting, the schema, seed data and counts.
//!
//! Invariants: the schema is portable (see `schema`); seeding is deterministic and
//! idempotent (rows are keyed by seeded UUIDs and inserted only if absent); nothing in this
//! module knows about purchases beyond the rows they leave.

mod schema;
pub mod seed;
mod sqlite;

use std::time::Duration;

use deadpool_postgres::{Hook, HookError, Manager, ManagerConfig, Pool, RecyclingMethod};
use thiserror::Error;
use tokio_postgres::NoTls;

pub use schema::{DATA_TABLES, SCHEMA_VERSION, statements as schema_statements};
pub use seed::SeedPlan;
pub use sqlite::{open_sqlite, open_sqlite_server, open_sqlite_writer};

use crate::addr::{DbUrl, Dialect, redact};

#[derive(Debug, Error)]
pub enum DbError {
    #[error("bad database URL `{url}`: {reason}")]
    BadUrl { url: String, reason: String },
    #[error(transparent)]
    Addr(#[from] crate::addr::AddrError),
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("postgres pool: {0}")]
    Pool(String),
    #[error("{0}")]
    Other(String),
}

impl From<deadpool_postgres::PoolError> for DbError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => DbError::Postgres(e),
            other => DbError::Pool(other.to_string()),
        }
    }
}

/// Run one `IF NOT EXISTS` DDL statement while another process may run the same one (the
/// shards of one run start together on a fresh database): PostgreSQL's catalog then
/// reports the twin's table as a duplicate or a unique violation instead of "exists",
/// and the statement, run again once the twin committed, changes nothing.
async fn ddl_tolerating_a_twin(
    client: &tokio_postgres::Client,
    ddl: &str,
) -> Result<(), tokio_postgres::Error> {
    use tokio_postgres::error::SqlState;
    const TRIES: u64 = 8;
    let mut tries = 0;
    loop {
        tries += 1;
        match client.batch_execute(ddl).await {
            Ok(()) => return Ok(()),
            Err(e)
                if tries < TRIES
                    && e.code().is_some_and(|c| {
                        [
                            SqlState::DUPLICATE_TABLE,
                            SqlState::DUPLICATE_OBJECT,
                            SqlState::UNIQUE_VIOLATION,
                            SqlState::T_R_SERIALIZATION_FAILURE,
                            SqlState::T_R_DEADLOCK_DETECTED,
                        ]
                        .contains(c)
                    }) =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(20 * tries)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// A PostgreSQL connection pool of `size` connections for `url`.
pub fn pg_pool(url: &str, size: usize) -> Result<Pool, DbError> {
    pg_pool_with(url, size, None)
}

/// `pg_pool`, each new connection first running `session` (e.g. its default isolation
/// level: the session lasts as long as the connection, and connections are recycled as
/// they are, never reset).
pub fn pg_pool_with(url: &str, size: usize, session: Option<String>) -> Result<Pool, DbError> {
    let config: tokio_postgres::Config = url.parse().map_err(|e| DbError::BadUrl {
        url: redact(url),
        reason: format!("{e}"),
    })?;
    let mut config = config;
    // The URL's own `connect_timeout` wins: a cluster with a paused node wants a short one,
    // so a connection moves on to the next host instead of waiting on the frozen one.
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    config.application_name("swarm");
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let mut builder = Pool::builder(manager);
    if let Some(sql) = session {
        let sql: std::sync::Arc<str> = sql.into();
        builder = builder.post_create(Hook::async_fn(move |client, _| {
            let sql = sql.clone();
            Box::pin(async move { client.batch_execute(&sql).await.map_err(HookError::Backend) })
        }));
    }
    builder
        .max_size(size.max(1))
        .wait_timeout(Some(Duration::from_secs(30)))
        .create_timeout(Some(Duration::from_secs(10)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| DbError::Pool(e.to_string()))
}

/// Row counts and the sums an operator wants at a glance.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Stats {
    pub counts: Vec<(String, i64)>,
    pub committed: i64,
    pub declined: i64,
    pub available_units: i64,
    pub ledger_sum_minor: i64,
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (table, n) in &self.counts {
            writeln!(f, "{table:<14} {n:>12}")?;
        }
        writeln!(f, "{:<14} {:>12}", "committed", self.committed)?;
        writeln!(f, "{:<14} {:>12}", "declined", self.declined)?;
        writeln!(f, "{:<14} {:>12}", "units left", self.available_units)?;
        write!(f, "{:<14} {:>12}", "ledger sum", self.ledger_sum_minor)
    }
}

/// Administrative access: schema, seed, stats. Purchases go through `kernel`.
#[derive(Clone)]
pub struct Database {
    url: DbUrl,
    pg: Option<Pool>,
}

impl Database {
    pub fn connect(url: &DbUrl) -> Result<Database, DbError> {
        let pg = match url {
            DbUrl::Postgres(u) => Some(pg_pool(u, 4)?),
            DbUrl::Sqlite(_) => None,
        };
        Ok(Database {
            url: url.clone(),
            pg,
        })
    }

    pub fn url(&self) -> &DbUrl {
        &self.url
    }

    /// Create every table and index that is missing; a second run changes nothing.
    pub async fn init(&self) -> Result<(), DbError> {
        match (&self.url, &self.pg) {
            (DbUrl::Sqlite(path), _) => {
                let path = path.clone();
                blocking(move || sqlite::init(&path)).await
            }
            (DbUrl::Postgres(_), Some(pool)) => {
                let client = pool.get().await?;
                for ddl in schema_statements(Dialect::Postgres) {
                    // One DDL per (implicit) transaction: what DSQL and CockroachDB accept.
                    ddl_tolerating_a_twin(&client, &ddl).await?;
                }
                client
                    .execute(
                        "INSERT INTO swarm_meta (meta_key, meta_value) VALUES ('schema_version', $1) \
                         ON CONFLICT (meta_key) DO NOTHING",
                        &[&SCHEMA_VERSION],
                    )
                    .await?;
                Ok(())
            }
            (DbUrl::Postgres(_), None) => Err(DbError::Other("no pool".into())),
        }
    }

    /// Insert the plan's rows that are not there yet.
    pub async fn seed(&self, plan: &SeedPlan) -> Result<(), DbError> {
        match (&self.url, &self.pg) {
            (DbUrl::Sqlite(path), _) => {
                let path = path.clone();
                let plan = plan.clone();
                blocking(move || sqlite::seed(&path, &plan)).await
            }
            (DbUrl::Postgres(_), Some(pool)) => {
                let mut client = pool.get().await?;
                postgres_seed(&mut client, plan).await
            }
            (DbUrl::Postgres(_), None) => Err(DbError::Other("no pool".into())),
        }
    }

    pub async fn stats(&self) -> Result<Stats, DbError> {
        match (&self.url, &self.pg) {
            (DbUrl::Sqlite(path), _) => {
                let path = path.clone();
                blocking(move || sqlite::stats(&path)).await
            }
            (DbUrl::Postgres(_), Some(pool)) => {
                let client = pool.get().await?;
                let mut stats = Stats::default();
                for table in DATA_TABLES {
                    let row = client
                        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
                        .await?;
                    stats.counts.push((table.to_string(), row.try_get(0)?));
                }
                let row = client
                    .query_one(
                        "SELECT \
                           (SELECT count(*) FROM intent WHERE outcome = 'COMMITTED'), \
                           (SELECT count(*) FROM intent WHERE outcome = 'DECLINED'), \
                           (SELECT COALESCE(SUM(b.available), 0)::BIGINT FROM bucket b \
                              JOIN item i ON i.item_id = b.item_id WHERE i.sandbox = 0), \
                           (SELECT COALESCE(SUM(signed_amount_minor), 0)::BIGINT FROM ledger_leg)",
                        &[],
                    )
                    .await?;
                stats.committed = row.try_get(0)?;
                stats.declined = row.try_get(1)?;
                stats.available_units = row.try_get(2)?;
                stats.ledger_sum_minor = row.try_get(3)?;
                Ok(stats)
            }
            (DbUrl::Postgres(_), None) => Err(DbError::Other("no pool".into())),
        }
    }

    /// Record `key = value` in `swarm_meta` (replacing an earlier value). Both are plain
    /// tokens (letters, digits, `_`, `.`), so the statement is the same on both dialects.
    pub async fn set_meta(&self, key: &str, value: &str) -> Result<(), DbError> {
        let plain = |t: &str| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        };
        if !plain(key) || !plain(value) {
            return Err(DbError::Other(format!(
                "swarm_meta: `{key}` = `{value}` is not a plain token"
            )));
        }
        self.execute(&format!(
            "INSERT INTO swarm_meta (meta_key, meta_value) VALUES ('{key}', '{value}') \
             ON CONFLICT (meta_key) DO UPDATE SET meta_value = excluded.meta_value"
        ))
        .await
    }

    /// The value of `key` in `swarm_meta`, if any (the schema must exist).
    pub async fn get_meta(&self, key: &str) -> Result<Option<String>, DbError> {
        let sql = "SELECT meta_value FROM swarm_meta WHERE meta_key = ";
        match (&self.url, &self.pg) {
            (DbUrl::Sqlite(path), _) => {
                let (path, key) = (path.clone(), key.to_string());
                blocking(move || {
                    use rusqlite::OptionalExtension;
                    Ok(open_sqlite(&path)?
                        .query_row(&format!("{sql}?1"), [&key], |r| r.get::<_, String>(0))
                        .optional()?)
                })
                .await
            }
            (DbUrl::Postgres(_), Some(pool)) => {
                let row = pool
                    .get()
                    .await?
                    .query_opt(&format!("{sql}$1"), &[&key])
                    .await?;
                Ok(row.map(|r| r.try_get::<_, String>(0)).transpose()?)
            }
            (DbUrl::Postgres(_), None) => Err(DbError::Other("no pool".into())),
        }
    }

    /// Whether a purchase of a catalog item (the sandbox's aside) is recorded under a key
    /// that does not start with `key_prefix`.
    pub async fn has_intents_besides(&self, key_prefix: &str) -> Result<bool, DbError> {
        let sql = |p: &str| {
            format!(
                "SELECT 1 FROM intent n WHERE substr(n.idem_key, 1, {}) <> {p} \
                 AND NOT EXISTS (SELECT 1 FROM item i WHERE i.item_id = n.item_id AND i.sandbox = 1) LIMIT 1",
                key_prefix.chars().count()
            )
        };
        match (&self.url, &self.pg) {
            (DbUrl::Sqlite(path), _) => {
                let (path, prefix, sql) = (path.clone(), key_prefix.to_string(), sql("?1"));
                blocking(move || {
                    use rusqlite::OptionalExtension;
                    Ok(open_sqlite(&path)?
                        .query_row(&sql, [&prefix], |_| Ok(()))
                        .optional()?
                        .is_some())
                })
                .await
            }
            (DbUrl::Postgres(_), Some(pool)) => Ok(pool
                .get()
                .await?
                .query_opt(&sql("$1"), &[&key_prefix])
                .await?
                .is_some()),
            (DbUrl::Postgres(_), None) => Err(DbError::Other("no pool".into())),
        }
    }

    /// Forget every purchase: delete intents, claims, debits and ledger rows, put every
    /// bucket and shard back at its seeded figure and drop the `swarm_meta` keys named,
    /// in one transaction. The catalog (merchants, items, mandates) stays.
    pub async fn reset_purchases(&self, forget_meta: &[&str]) -> Result<(), DbError> {
        let mut sql = String::from(
            "BEGIN; \
             DELETE FROM ledger_leg; DELETE FROM ledger_txn; DELETE FROM mandate_debit; \
             DELETE FROM stock_claim; DELETE FROM intent; \
             UPDATE bucket SET available = initial_available; \
             UPDATE mandate_shard SET remaining = initial_remaining_minor;",
        );
        for key in forget_meta {
            if !key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
            {
                return Err(DbError::Other(format!(
                    "swarm_meta: `{key}` is not a plain token"
                )));
            }
            sql.push_str(&format!(
                " DELETE FROM swarm_meta WHERE meta_key = '{key}';"
            ));
        }
        sql.push_str(" COMMIT");
        self.execute(&sql).await
    }

    /// Drop every table swarm made (data and `swarm_meta`), each in its own statement:
    /// the database is as before `init`.
    pub async fn drop_tables(&self) -> Result<(), DbError> {
        for table in DATA_TABLES.iter().chain(["swarm_meta"].iter()) {
            self.execute(&format!("DROP TABLE IF EXISTS {table}"))
                .await?;
        }
        Ok(())
    }

    /// Run one statement outside any purchase (administration, selftest set-up).
    pub async fn execute(&self, sql: &str) -> Result<(), DbError> {
        match (&self.url, &self.pg) {
            (DbUrl::Sqlite(path), _) => {
                let (path, sql) = (path.clone(), sql.to_string());
                blocking(move || Ok(open_sqlite(&path)?.execute_batch(&sql)?)).await
            }
            (DbUrl::Postgres(_), Some(pool)) => Ok(pool.get().await?.batch_execute(sql).await?),
            (DbUrl::Postgres(_), None) => Err(DbError::Other("no pool".into())),
        }
    }

    /// The server's engine and version, e.g. `PostgreSQL 15.18` or `SQLite 3.50.2`.
    pub async fn engine_version(&self) -> Result<String, DbError> {
        match &self.pg {
            None => Ok(format!("SQLite {}", rusqlite::version())),
            Some(pool) => {
                let client = pool.get().await?;
                let row = client.query_one("SHOW server_version", &[]).await?;
                Ok(format!("PostgreSQL {}", row.try_get::<_, String>(0)?))
            }
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DbError> + Send + 'static,
) -> Result<T, DbError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| DbError::Other(format!("worker thread failed: {e}")))?
}

/// Rows go in as arrays through `unnest`, a few thousand per statement.
async fn postgres_seed(
    client: &mut deadpool_postgres::Client,
    plan: &SeedPlan,
) -> Result<(), DbError> {
    const CHUNK: usize = 5000;
    let tx = client.transaction().await?;
    for m in &plan.merchants {
        tx.execute(
            "INSERT INTO merchant (merchant_id, name, sandbox) VALUES ($1, $2, $3) \
             ON CONFLICT (merchant_id) DO NOTHING",
            &[&m.merchant_id, &m.name, &i64::from(m.sandbox)],
        )
        .await?;
    }
    for it in &plan.items {
        tx.execute(
            "INSERT INTO item (item_id, merchant_id, sku, unit_price_minor, currency, initial_stock, sandbox) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (item_id) DO NOTHING",
            &[
                &it.item_id,
                &it.merchant_id,
                &it.sku,
                &it.unit_price_minor,
                &it.currency,
                &it.initial_stock,
                &i64::from(it.sandbox),
            ],
        )
        .await?;
        let ids: Vec<uuid::Uuid> = it.buckets.iter().map(|b| b.0).collect();
        let units: Vec<i64> = it.buckets.iter().map(|b| b.1).collect();
        tx.execute(
            "INSERT INTO bucket (bucket_id, item_id, initial_available, available) \
             SELECT b, $2, u, u FROM unnest($1::uuid[], $3::bigint[]) AS t(b, u) \
             ON CONFLICT (bucket_id) DO NOTHING",
            &[&ids, &it.item_id, &units],
        )
        .await?;
    }
    for chunk in plan.mandates.chunks(CHUNK) {
        let ids: Vec<uuid::Uuid> = chunk.iter().map(|m| m.mandate_id).collect();
        let merchants: Vec<uuid::Uuid> = chunk.iter().map(|m| m.merchant_id).collect();
        let currencies: Vec<&str> = chunk.iter().map(|m| m.currency.as_str()).collect();
        let caps: Vec<i64> = chunk.iter().map(|m| m.cap_minor).collect();
        let sandbox: Vec<i64> = chunk.iter().map(|m| i64::from(m.sandbox)).collect();
        tx.execute(
            "INSERT INTO mandate (mandate_id, merchant_id, currency, cap_minor, sandbox) \
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::bigint[], $5::bigint[]) \
             ON CONFLICT (mandate_id) DO NOTHING",
            &[&ids, &merchants, &currencies, &caps, &sandbox],
        )
        .await?;
        let mut shard_ids = Vec::new();
        let mut owners = Vec::new();
        let mut remaining = Vec::new();
        for m in chunk {
            for (id, cap) in &m.shards {
                shard_ids.push(*id);
                owners.push(m.mandate_id);
                remaining.push(*cap);
            }
        }
        tx.execute(
            "INSERT INTO mandate_shard (shard_id, mandate_id, initial_remaining_minor, remaining) \
             SELECT s, m, r, r FROM unnest($1::uuid[], $2::uuid[], $3::bigint[]) AS t(s, m, r) \
             ON CONFLICT (shard_id) DO NOTHING",
            &[&shard_ids, &owners, &remaining],
        )
        .await?;
    }
    tx.execute(
        "INSERT INTO swarm_meta (meta_key, meta_value) VALUES ('seed', $1) \
         ON CONFLICT (meta_key) DO NOTHING",
        &[&plan.seed.to_string()],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
