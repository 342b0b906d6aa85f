//! The SQL a kernel runs, as a value.
//!
//! `Sql::reference()` is the contract's transaction, the only one `swarm serve` and a run
//! ever use. The kernel runs whatever statements it is given and has no other branch on
//! them: the selftest's deliberately broken kernels are other values of this type, made
//! by `selftest::sabotage` (which rewrites the reference text and asserts every pattern it
//! replaces is there). Invariant: the reference statements only move stock and funds
//! through conditional updates (`… WHERE available >= q`), never from a SUM read.

/// The statements of both backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sql {
    pub sqlite: SqliteSql,
    pub postgres: PgSql,
}

impl Sql {
    /// The contract's transaction.
    pub fn reference() -> Sql {
        Sql {
            sqlite: SqliteSql {
                lookup: "SELECT fingerprint, snapshot FROM intent WHERE idem_key = ?1".into(),
                stock: Take {
                    candidates: "SELECT bucket_id FROM bucket WHERE item_id = ?1 AND available >= ?2"
                        .into(),
                    take: "UPDATE bucket SET available = available - ?2 WHERE bucket_id = ?1 AND available >= ?2"
                        .into(),
                },
                funds: Take {
                    candidates:
                        "SELECT shard_id FROM mandate_shard WHERE mandate_id = ?1 AND remaining >= ?2"
                            .into(),
                    take: "UPDATE mandate_shard SET remaining = remaining - ?2 WHERE shard_id = ?1 AND remaining >= ?2"
                        .into(),
                },
                claim: "INSERT INTO stock_claim (intent_id, bucket_id, item_id, quantity) VALUES (?1, ?2, ?3, ?4)"
                    .into(),
                debit: "INSERT INTO mandate_debit (intent_id, shard_id, mandate_id, amount_minor) VALUES (?1, ?2, ?3, ?4)"
                    .into(),
                ledger_txn: "INSERT INTO ledger_txn (ledger_txn_id, intent_id, amount_minor, currency) \
                             VALUES (?1, ?2, ?3, ?4)"
                    .into(),
                debit_leg: LEG_SQLITE.into(),
                credit_leg: LEG_SQLITE.into(),
                intent: INTENT_SQLITE.into(),
                keep_committed: vec!["RELEASE purchase".into()],
            },
            postgres: PgSql {
                probe: PROBE_SQL.into(),
                settle: SETTLE_SQL.into(),
                finish: "COMMIT".into(),
            },
        }
    }
}

impl Default for Sql {
    fn default() -> Self {
        Sql::reference()
    }
}

/// SQLite: one statement per step, run inside the purchase's savepoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteSql {
    /// `(fingerprint, snapshot)` of the intent stored under key `?1`.
    pub lookup: String,
    /// Stock: the item's buckets.
    pub stock: Take,
    /// Funds: the mandate's shards. Never a SUM across shards.
    pub funds: Take,
    /// The claim row: `(intent_id, bucket_id, item_id, quantity)`.
    pub claim: String,
    /// The debit row: `(intent_id, shard_id, mandate_id, amount_minor)`.
    pub debit: String,
    /// The ledger transaction: `(ledger_txn_id, intent_id, amount_minor, currency)`.
    pub ledger_txn: String,
    /// One leg each: `(leg_id, ledger_txn_id, account, signed_amount_minor, currency)`.
    pub debit_leg: String,
    pub credit_leg: String,
    /// The intent, committed or declined: its 16 columns in schema order.
    pub intent: String,
    /// How a COMMITTED purchase's savepoint ends (the reference: released, so kept).
    pub keep_committed: Vec<String>,
}

/// Where a purchase takes from: the candidate rows of owner `?1` that could give `?2`, and
/// the conditional decrement of row `?1` by `?2` (1 row changed: taken).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Take {
    pub candidates: String,
    pub take: String,
}

/// PostgreSQL: two round trips (see `postgres`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgSql {
    /// Key lookup, candidate counts, claim and debit in one statement.
    pub probe: String,
    /// Claim, debit, ledger transaction, two legs and the intent in one statement.
    pub settle: String,
    /// How a settled purchase ends.
    pub finish: String,
}

const LEG_SQLITE: &str = "INSERT INTO ledger_leg (leg_id, ledger_txn_id, account, signed_amount_minor, currency) \
                          VALUES (?1, ?2, ?3, ?4, ?5)";

const INTENT_SQLITE: &str = "INSERT INTO intent (intent_id, idem_key, fingerprint, merchant_id, mandate_id, item_id, \
                             agent_id, quantity, amount_minor, currency, outcome, failure_code, ledger_txn_id, \
                             attempts, snapshot, created_at_ms) \
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)";

/// Key lookup, candidate counts, claim and debit in one statement. The claim only happens
/// when the key is new and some shard could pay; the debit only when the claim happened.
const PROBE_SQL: &str = "\
WITH existing AS (
    SELECT fingerprint, snapshot FROM intent WHERE idem_key = $1
), stock AS (
    SELECT count(*) AS n FROM bucket WHERE item_id = $2 AND available >= $3
), funds AS (
    SELECT count(*) AS n FROM mandate_shard WHERE mandate_id = $4 AND remaining >= $5
), claim AS (
    UPDATE bucket SET available = available - $3
    WHERE bucket_id = (SELECT bucket_id FROM bucket
                       WHERE item_id = $2 AND available >= $3 ORDER BY random() LIMIT 1)
      AND available >= $3
      AND NOT EXISTS (SELECT 1 FROM existing)
      AND EXISTS (SELECT 1 FROM mandate_shard WHERE mandate_id = $4 AND remaining >= $5)
    RETURNING bucket_id
), debit AS (
    UPDATE mandate_shard SET remaining = remaining - $5
    WHERE shard_id = (SELECT shard_id FROM mandate_shard
                      WHERE mandate_id = $4 AND remaining >= $5 ORDER BY random() LIMIT 1)
      AND remaining >= $5
      AND EXISTS (SELECT 1 FROM claim)
    RETURNING shard_id
)
SELECT (SELECT fingerprint FROM existing), (SELECT snapshot FROM existing),
       (SELECT n FROM stock), (SELECT n FROM funds),
       (SELECT bucket_id FROM claim), (SELECT shard_id FROM debit)";

/// Claim, debit, ledger transaction, two legs and the intent in one statement.
const SETTLE_SQL: &str = "\
WITH claim AS (
    INSERT INTO stock_claim (intent_id, bucket_id, item_id, quantity) VALUES ($1, $17, $6, $8)
), debit AS (
    INSERT INTO mandate_debit (intent_id, shard_id, mandate_id, amount_minor) VALUES ($1, $18, $5, $9)
), txn AS (
    INSERT INTO ledger_txn (ledger_txn_id, intent_id, amount_minor, currency) VALUES ($13, $1, $9, $10)
), legs AS (
    INSERT INTO ledger_leg (leg_id, ledger_txn_id, account, signed_amount_minor, currency)
    VALUES ($19, $13, $21, -$9::BIGINT, $10), ($20, $13, $22, $9, $10)
)
INSERT INTO intent (intent_id, idem_key, fingerprint, merchant_id, mandate_id, item_id, agent_id,
    quantity, amount_minor, currency, outcome, failure_code, ledger_txn_id, attempts, snapshot,
    created_at_ms)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)";
