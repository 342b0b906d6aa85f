//! The embedded SQLite side of `db`: connection settings, schema, seed, stats.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use super::{DATA_TABLES, DbError, Dialect, SCHEMA_VERSION, SeedPlan, Stats, schema_statements};

/// Open `path` with the settings every swarm connection uses: WAL, `synchronous=NORMAL`
/// (durable across process crashes, which is what the fault modes simulate) and a busy
/// timeout so a second writer waits instead of failing at once.
pub fn open_sqlite(path: &Path) -> Result<Connection, DbError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// WAL pages after which the writer checkpoints on its own thread. Every caller waits while
/// it does, for as long as the pages it copies (a background thread copies most of them
/// beside it: `kernel::checkpoint`); so small and often beats large and rare for the tail.
/// On million.toml (this machine, side by side): p99.9 from intended start 16 ms at 1024
/// pages, 17–19 ms at 2048, 26–28 ms at 8192, 53–56 ms at 65536, and 13 ms with the writer
/// never checkpointing (which lets the WAL grow without bound).
const WRITER_AUTOCHECKPOINT_PAGES: i64 = 1024;

/// `open_sqlite` for a connection that writes purchases: a bigger page cache keeps the
/// key indexes hot, and frequent small checkpoints keep the writer's pauses short.
pub fn open_sqlite_writer(path: &Path) -> Result<Connection, DbError> {
    let conn = open_sqlite(path)?;
    conn.pragma_update(None, "cache_size", -16384)?;
    conn.pragma_update(None, "wal_autocheckpoint", WRITER_AUTOCHECKPOINT_PAGES)?;
    Ok(conn)
}

/// `open_sqlite_writer` that also reads the database through a memory map of up to
/// `mmap_bytes` (0: none). A long-lived server replaying keys from all over a large
/// database then reads pages without a system call each.
pub fn open_sqlite_server(path: &Path, mmap_bytes: u64) -> Result<Connection, DbError> {
    let conn = open_sqlite_writer(path)?;
    if mmap_bytes > 0 {
        conn.pragma_update(None, "mmap_size", mmap_bytes as i64)?;
    }
    Ok(conn)
}

pub fn init(path: &Path) -> Result<(), DbError> {
    let conn = open_sqlite(path)?;
    for ddl in schema_statements(Dialect::Sqlite) {
        conn.execute_batch(&ddl)?;
    }
    conn.execute(
        "INSERT INTO swarm_meta (meta_key, meta_value) VALUES ('schema_version', ?1) \
         ON CONFLICT (meta_key) DO NOTHING",
        params![SCHEMA_VERSION],
    )?;
    Ok(())
}

pub fn seed(path: &Path, plan: &SeedPlan) -> Result<(), DbError> {
    let mut conn = open_sqlite(path)?;
    let tx = conn.transaction()?;
    {
        let mut merchant = tx.prepare(
            "INSERT INTO merchant (merchant_id, name, sandbox) VALUES (?1, ?2, ?3) \
             ON CONFLICT (merchant_id) DO NOTHING",
        )?;
        for m in &plan.merchants {
            merchant.execute(params![m.merchant_id.to_string(), m.name, m.sandbox])?;
        }
        let mut item = tx.prepare(
            "INSERT INTO item (item_id, merchant_id, sku, unit_price_minor, currency, initial_stock, sandbox) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (item_id) DO NOTHING",
        )?;
        let mut bucket = tx.prepare(
            "INSERT INTO bucket (bucket_id, item_id, initial_available, available) \
             VALUES (?1, ?2, ?3, ?3) ON CONFLICT (bucket_id) DO NOTHING",
        )?;
        for it in &plan.items {
            let item_id = it.item_id.to_string();
            item.execute(params![
                item_id,
                it.merchant_id.to_string(),
                it.sku,
                it.unit_price_minor,
                it.currency,
                it.initial_stock,
                it.sandbox
            ])?;
            for (bucket_id, units) in &it.buckets {
                bucket.execute(params![bucket_id.to_string(), item_id, units])?;
            }
        }
        let mut mandate = tx.prepare(
            "INSERT INTO mandate (mandate_id, merchant_id, currency, cap_minor, sandbox) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (mandate_id) DO NOTHING",
        )?;
        let mut shard = tx.prepare(
            "INSERT INTO mandate_shard (shard_id, mandate_id, initial_remaining_minor, remaining) \
             VALUES (?1, ?2, ?3, ?3) ON CONFLICT (shard_id) DO NOTHING",
        )?;
        for m in &plan.mandates {
            let mandate_id = m.mandate_id.to_string();
            mandate.execute(params![
                mandate_id,
                m.merchant_id.to_string(),
                m.currency,
                m.cap_minor,
                m.sandbox
            ])?;
            for (shard_id, cap) in &m.shards {
                shard.execute(params![shard_id.to_string(), mandate_id, cap])?;
            }
        }
        tx.execute(
            "INSERT INTO swarm_meta (meta_key, meta_value) VALUES ('seed', ?1) \
             ON CONFLICT (meta_key) DO NOTHING",
            params![plan.seed.to_string()],
        )?;
    }
    tx.commit()?;
    Ok(())
}

pub fn stats(path: &Path) -> Result<Stats, DbError> {
    if !path.exists() {
        return Err(DbError::Other(format!(
            "{}: no such database file",
            path.display()
        )));
    }
    let conn = open_sqlite(path)?;
    let mut stats = Stats::default();
    for table in DATA_TABLES {
        let n: i64 = conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?;
        stats.counts.push((table.to_string(), n));
    }
    let row: Option<(i64, i64, i64, i64)> = conn
        .query_row(
            "SELECT \
               (SELECT count(*) FROM intent WHERE outcome = 'COMMITTED'), \
               (SELECT count(*) FROM intent WHERE outcome = 'DECLINED'), \
               (SELECT COALESCE(SUM(b.available), 0) FROM bucket b \
                  JOIN item i ON i.item_id = b.item_id WHERE i.sandbox = 0), \
               (SELECT COALESCE(SUM(signed_amount_minor), 0) FROM ledger_leg)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    if let Some((c, d, a, l)) = row {
        stats.committed = c;
        stats.declined = d;
        stats.available_units = a;
        stats.ledger_sum_minor = l;
    }
    Ok(stats)
}
