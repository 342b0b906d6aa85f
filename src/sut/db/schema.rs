//! The schema, portable across SQLite, PostgreSQL and wire-compatible engines.
//!
//! Rules (docs/design.md "Schema rules"): ids are UUIDs made by the client, no sequences, no
//! triggers, no stored procedures, no foreign keys (the auditor checks integrity itself),
//! money is BIGINT minor units, and every statement below is one DDL run in its own
//! transaction so the same list runs on Aurora DSQL and CockroachDB. Every statement is
//! `IF NOT EXISTS`, so `swarm db init` run twice changes nothing.

use super::Dialect;

/// Bumped when a table changes shape; recorded in `swarm_meta`.
pub const SCHEMA_VERSION: &str = "1";

/// Table definitions with `{uuid}` standing for the dialect's UUID type.
const TABLES: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS swarm_meta (
        meta_key TEXT PRIMARY KEY,
        meta_value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS merchant (
        merchant_id {uuid} PRIMARY KEY,
        name TEXT NOT NULL,
        sandbox BIGINT NOT NULL DEFAULT 0)",
    // initial_stock is recorded at seed time and never updated: the auditor's anchor.
    "CREATE TABLE IF NOT EXISTS item (
        item_id {uuid} PRIMARY KEY,
        merchant_id {uuid} NOT NULL,
        sku TEXT NOT NULL,
        unit_price_minor BIGINT NOT NULL,
        currency TEXT NOT NULL,
        initial_stock BIGINT NOT NULL,
        sandbox BIGINT NOT NULL DEFAULT 0)",
    "CREATE TABLE IF NOT EXISTS bucket (
        bucket_id {uuid} PRIMARY KEY,
        item_id {uuid} NOT NULL,
        initial_available BIGINT NOT NULL,
        available BIGINT NOT NULL CHECK (available >= 0))",
    // cap_minor is recorded at seed time and never updated: the auditor's anchor.
    "CREATE TABLE IF NOT EXISTS mandate (
        mandate_id {uuid} PRIMARY KEY,
        merchant_id {uuid} NOT NULL,
        currency TEXT NOT NULL,
        cap_minor BIGINT NOT NULL,
        sandbox BIGINT NOT NULL DEFAULT 0)",
    "CREATE TABLE IF NOT EXISTS mandate_shard (
        shard_id {uuid} PRIMARY KEY,
        mandate_id {uuid} NOT NULL,
        initial_remaining_minor BIGINT NOT NULL,
        remaining BIGINT NOT NULL CHECK (remaining >= 0))",
    // One row per idempotency key: the registry replays are served from.
    "CREATE TABLE IF NOT EXISTS intent (
        intent_id {uuid} PRIMARY KEY,
        idem_key TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        merchant_id {uuid} NOT NULL,
        mandate_id {uuid} NOT NULL,
        item_id {uuid} NOT NULL,
        agent_id TEXT NOT NULL,
        quantity BIGINT NOT NULL,
        amount_minor BIGINT NOT NULL,
        currency TEXT NOT NULL,
        outcome TEXT NOT NULL,
        failure_code TEXT,
        ledger_txn_id {uuid},
        attempts BIGINT NOT NULL,
        snapshot TEXT NOT NULL,
        created_at_ms BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS stock_claim (
        intent_id {uuid} PRIMARY KEY,
        bucket_id {uuid} NOT NULL,
        item_id {uuid} NOT NULL,
        quantity BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS mandate_debit (
        intent_id {uuid} PRIMARY KEY,
        shard_id {uuid} NOT NULL,
        mandate_id {uuid} NOT NULL,
        amount_minor BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS ledger_txn (
        ledger_txn_id {uuid} PRIMARY KEY,
        intent_id {uuid} NOT NULL,
        amount_minor BIGINT NOT NULL,
        currency TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS ledger_leg (
        leg_id {uuid} PRIMARY KEY,
        ledger_txn_id {uuid} NOT NULL,
        account TEXT NOT NULL,
        signed_amount_minor BIGINT NOT NULL,
        currency TEXT NOT NULL)",
];

/// Indexes; the key index is UNIQUE: it is what makes a concurrent twin lose.
const INDEXES: &[&str] = &[
    "CREATE UNIQUE INDEX IF NOT EXISTS intent_idem_key ON intent (idem_key)",
    "CREATE INDEX IF NOT EXISTS bucket_item ON bucket (item_id)",
    "CREATE INDEX IF NOT EXISTS mandate_shard_mandate ON mandate_shard (mandate_id)",
    "CREATE INDEX IF NOT EXISTS ledger_leg_txn ON ledger_leg (ledger_txn_id)",
    "CREATE INDEX IF NOT EXISTS ledger_txn_intent ON ledger_txn (intent_id)",
];

/// The DDL statements for `dialect`, in order, one per transaction.
pub fn statements(dialect: Dialect) -> Vec<String> {
    let uuid = match dialect {
        Dialect::Sqlite => "TEXT",
        Dialect::Postgres => "UUID",
    };
    TABLES
        .iter()
        .map(|t| t.replace("{uuid}", uuid))
        .chain(INDEXES.iter().map(|s| s.to_string()))
        .collect()
}

/// Tables that hold data, in the order `stats` prints them.
pub const DATA_TABLES: &[&str] = &[
    "merchant",
    "item",
    "bucket",
    "mandate",
    "mandate_shard",
    "intent",
    "stock_claim",
    "mandate_debit",
    "ledger_txn",
    "ledger_leg",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_statement_is_one_idempotent_ddl() {
        for dialect in [Dialect::Sqlite, Dialect::Postgres] {
            for s in statements(dialect) {
                assert!(s.contains("IF NOT EXISTS"), "{s}");
                assert!(!s.contains(';'), "one DDL per statement: {s}");
                assert!(!s.contains("{uuid}"));
                assert!(!s.to_uppercase().contains("REFERENCES"), "no foreign keys");
                assert!(!s.to_uppercase().contains("SERIAL"), "no sequences");
            }
        }
    }
}
