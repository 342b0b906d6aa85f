//! The SQL a kernel runs, as a value.
//!
//! `Sql::reference()` is the contract's transaction, the only one `swarm serve` and a run
//! ever use. The kernel runs whatever statements it is given and has no other branch on
//! them (the one statement it makes itself, PostgreSQL's `PgSql::decline_only`, is cut
//! from the text it was given): the selftest's deliberately broken kernels are other values of this type, made
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
                    candidates: "SELECT bucket_id, available FROM bucket WHERE item_id = ?1 AND available >= ?2"
                        .into(),
                    take: "UPDATE bucket SET available = available - ?2 WHERE bucket_id = ?1 AND available >= ?2"
                        .into(),
                },
                funds: Take {
                    candidates:
                        "SELECT shard_id, remaining FROM mandate_shard WHERE mandate_id = ?1 AND remaining >= ?2"
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
                purchase: PURCHASE_SQL.into(),
                begin: None,
                finish: None,
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

/// Where a purchase takes from: the candidate rows of owner `?1` that could give `?2` (each
/// row's id and the value it holds), and the conditional decrement of row `?1` by `?2` (1
/// row changed: taken).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Take {
    pub candidates: String,
    pub take: String,
}

/// PostgreSQL: one statement, one round trip (see `postgres`; a declined item or mandate's
/// next purchase may take two, `decline_only` first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgSql {
    /// The whole purchase: key lookup, claim, debit and every row, in one statement.
    pub purchase: String,
    /// Sent before `purchase` in the same write; `None` (the reference): the statement
    /// is its own transaction, at the connection's default isolation level.
    pub begin: Option<String>,
    /// Sent after `purchase` in the same write; `None` (the reference): nothing, the
    /// statement commits itself.
    pub finish: Option<String>,
}

impl PgSql {
    /// The declined path of `purchase` alone: the same key lookup, the same plan and the
    /// same intent row, without the claim, the debit and the rows only a commit writes.
    /// It declines exactly when `purchase` would (both decide on the plan, read on the
    /// statement's snapshot) and writes nothing, answering no verdict, when the plan says
    /// the purchase could go through. PostgreSQL opens and locks every table a statement
    /// names even when it writes none of them, so a decline by this statement costs about
    /// two thirds of one by `purchase` (docs/design.md, "Measured"). Derived from the text
    /// the kernel is given, so a rewrite of the key lookup, the plan or the intent row
    /// (the selftest's sabotage) reaches it too; `None` when the text lacks the
    /// reference's shape.
    pub fn decline_only(&self) -> Option<String> {
        let text = cut(&self.purchase, "), claim AS (", "), verdict AS (")?;
        let text = cut(&text, "), claim_row AS (", "), stored AS (")?;
        let text = replace_one(
            &text,
            "SELECT claim.bucket_id, debit.shard_id,",
            "SELECT NULL::UUID AS bucket_id, NULL::UUID AS shard_id,",
        )?;
        replace_one(
            &text,
            "FROM plan LEFT JOIN claim ON TRUE LEFT JOIN debit ON TRUE",
            "FROM plan",
        )
    }
}

/// `text` without the part that starts at `from` and ends before the first `to` after it.
fn cut(text: &str, from: &str, to: &str) -> Option<String> {
    let start = text.find(from)?;
    let end = start + text[start..].find(to)?;
    Some(format!("{}{}", &text[..start], &text[end..]))
}

/// `text` with its only `from` replaced by `to`.
fn replace_one(text: &str, from: &str, to: &str) -> Option<String> {
    (text.matches(from).count() == 1).then(|| text.replacen(from, to, 1))
}

const LEG_SQLITE: &str = "INSERT INTO ledger_leg (leg_id, ledger_txn_id, account, signed_amount_minor, currency) \
                          VALUES (?1, ?2, ?3, ?4, ?5)";

const INTENT_SQLITE: &str = "INSERT INTO intent (intent_id, idem_key, fingerprint, merchant_id, mandate_id, item_id, \
                             agent_id, quantity, amount_minor, currency, outcome, failure_code, ledger_txn_id, \
                             attempts, snapshot, created_at_ms) \
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)";

/// The whole purchase in one statement, its own transaction. Parameters: `$1` key, `$2`
/// item, `$3` quantity, `$4` mandate, `$5` amount, `$6` intent id, `$7` fingerprint, `$8`
/// merchant, `$9` agent, `$10` currency, `$11` ledger transaction id, `$12` attempts,
/// `$13` created_at_ms, `$14` and `$15` the legs' ids, `$16` and `$17` their accounts
/// (debit, credit), `$18` and `$19` the COMMITTED snapshot's bytes before and after its
/// bucket id, `$20` the OUT_OF_STOCK and `$21` the MANDATE_REJECTED snapshot.
///
/// `plan` reads, on the statement's snapshot, whether the key is new and whether some
/// bucket and some shard could give. The claim and the debit are conditional updates of
/// one random candidate row each, chosen without a lock: under READ COMMITTED an update
/// that finds the row changed waits for its writer and re-checks the condition on the
/// newest version (under REPEATABLE READ and SERIALIZABLE a row changed since the snapshot
/// is a serialization failure instead). A statement waits for at most one bucket and then
/// one shard, always in that order, so purchases cannot deadlock each other (locking each
/// candidate `FOR UPDATE` in random order did: a skipped candidate stays locked). The debit
/// only runs after a claim, the claim only when a shard could pay. `verdict` is the
/// outcome: committed (a bucket and a shard), declined (a failure code, decided on the
/// snapshot), nothing (the key exists: the first two columns hold its fingerprint and
/// snapshot) or lost (the chosen bucket went while waiting: rerun). Every row is written
/// from `verdict`, so all of them or none. A claim with no debit (READ COMMITTED: the
/// chosen shard went while waiting) must not survive: the last column's cast then fails,
/// which aborts the statement and its claim (`UNDONE`), and the kernel reruns the purchase.
const PURCHASE_SQL: &str = "\
WITH existing AS (
    SELECT fingerprint, snapshot FROM intent WHERE idem_key = $1
), plan AS (
    SELECT NOT EXISTS (SELECT 1 FROM existing) AS fresh,
           EXISTS (SELECT 1 FROM bucket WHERE item_id = $2 AND available >= $3) AS stock,
           EXISTS (SELECT 1 FROM mandate_shard WHERE mandate_id = $4 AND remaining >= $5) AS funds
), claim AS (
    UPDATE bucket SET available = available - $3
    WHERE bucket_id = (SELECT bucket_id FROM bucket
                       WHERE item_id = $2 AND available >= $3
                         AND (SELECT fresh AND stock AND funds FROM plan)
                       ORDER BY random() LIMIT 1)
      AND available >= $3
    RETURNING bucket_id
), debit AS (
    UPDATE mandate_shard SET remaining = remaining - $5
    WHERE shard_id = (SELECT shard_id FROM mandate_shard
                      WHERE mandate_id = $4 AND remaining >= $5
                        AND EXISTS (SELECT 1 FROM claim)
                      ORDER BY random() LIMIT 1)
      AND remaining >= $5
    RETURNING shard_id
), verdict AS (
    SELECT claim.bucket_id, debit.shard_id,
           CASE WHEN NOT fresh OR (stock AND funds) THEN NULL
                WHEN NOT stock THEN 'OUT_OF_STOCK'
                ELSE 'MANDATE_REJECTED' END AS failure_code
    FROM plan LEFT JOIN claim ON TRUE LEFT JOIN debit ON TRUE
), claim_row AS (
    INSERT INTO stock_claim (intent_id, bucket_id, item_id, quantity)
    SELECT $6, bucket_id, $2, $3 FROM verdict WHERE shard_id IS NOT NULL
), debit_row AS (
    INSERT INTO mandate_debit (intent_id, shard_id, mandate_id, amount_minor)
    SELECT $6, shard_id, $4, $5 FROM verdict WHERE shard_id IS NOT NULL
), txn AS (
    INSERT INTO ledger_txn (ledger_txn_id, intent_id, amount_minor, currency)
    SELECT $11, $6, $5, $10 FROM verdict WHERE shard_id IS NOT NULL
), legs AS (
    INSERT INTO ledger_leg (leg_id, ledger_txn_id, account, signed_amount_minor, currency)
    SELECT $14::UUID, $11, $16, -$5, $10 FROM verdict WHERE shard_id IS NOT NULL
    UNION ALL
    SELECT $15::UUID, $11, $17, $5, $10 FROM verdict WHERE shard_id IS NOT NULL
), stored AS (
    INSERT INTO intent (intent_id, idem_key, fingerprint, merchant_id, mandate_id, item_id, agent_id,
        quantity, amount_minor, currency, outcome, failure_code, ledger_txn_id, attempts, snapshot,
        created_at_ms)
    SELECT $6, $1, $7, $8, $4, $2, $9, $3, $5, $10,
           CASE WHEN shard_id IS NULL THEN 'DECLINED' ELSE 'COMMITTED' END, failure_code,
           CASE WHEN shard_id IS NULL THEN NULL ELSE $11::UUID END, $12,
           CASE WHEN shard_id IS NOT NULL THEN $18::TEXT || bucket_id::TEXT || $19::TEXT
                WHEN failure_code = 'OUT_OF_STOCK' THEN $20::TEXT ELSE $21::TEXT END,
           $13
    FROM verdict WHERE shard_id IS NOT NULL OR failure_code IS NOT NULL
)
SELECT (SELECT fingerprint FROM existing), (SELECT snapshot FROM existing),
       bucket_id, shard_id, failure_code,
       CAST(CASE WHEN bucket_id IS NOT NULL AND shard_id IS NULL
                 THEN 'no shard could pay: the claim is undone' END AS INTEGER)
FROM verdict";

/// What the failing cast of `PURCHASE_SQL` says (SQLSTATE 22P02) when a claim found no
/// shard to debit: the statement, claim included, was rolled back; rerun the purchase.
pub const UNDONE: &str = "the claim is undone";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_decline_only_statement_keeps_the_lookup_plan_and_intent_and_nothing_else() {
        let decline = Sql::reference().postgres.decline_only().expect("derived");
        for kept in [
            "WHERE idem_key = $1",
            "available >= $3) AS stock",
            "remaining >= $5) AS funds",
            "WHEN NOT stock THEN 'OUT_OF_STOCK'",
            "INSERT INTO intent",
        ] {
            assert!(decline.contains(kept), "{kept} is gone");
        }
        for gone in [
            "UPDATE",
            "stock_claim",
            "mandate_debit",
            "ledger_txn (",
            "ledger_leg",
            "claim.",
        ] {
            assert!(!decline.contains(gone), "{gone} is still there");
        }
        // A text of another shape has no decline-only statement.
        let other = PgSql {
            purchase: "SELECT 1".into(),
            begin: None,
            finish: None,
        };
        assert_eq!(other.decline_only(), None);
    }
}
