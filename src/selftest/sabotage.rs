//! Deliberately broken kernels, each reproducing one real bug, and the schema half of them.
//!
//! A sabotaged kernel is the reference kernel running other statements (`Sql`): each
//! variant rewrites the reference text, and every rewrite asserts that the pattern it
//! replaces is there, so a kernel change that silently defeats a sabotage stops the
//! selftest instead of letting it pass for the wrong reason. Nothing here is reachable
//! from a scenario file or from `swarm serve`: the production path never sees it.

use crate::sut::db::{Database, DbError};
use crate::sut::kernel::{Sql, Take};

/// One bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sabotage {
    /// The claim ignores the stock condition (a clamped decrement): sales go past stock.
    SkipStockCondition,
    /// The key is never looked up (and the UNIQUE index is missing): retries settle again.
    SkipKeyCheck,
    /// Only the debit leg is written.
    OneLedgerLeg,
    /// The debit ignores the cap condition (a clamped decrement).
    SkipCapCondition,
    /// The commit is acknowledged, then rolled back.
    AckThenRollback,
    /// The intent commits without its ledger rows.
    NoLedgerRows,
    /// The claim names the chosen bucket, but another bucket of the item gives the units:
    /// the item's total is right, two buckets are wrong.
    WrongBucketCounter,
    /// The debit names the chosen shard, but another shard of the mandate pays.
    WrongShardCounter,
    /// One unit more than bought leaves stock and is written on the claim.
    ClaimExtraUnit,
    /// The mandate pays twice the price, and the debit row says so.
    DebitTwice,
    /// The legs balance, on swapped accounts: the merchant pays the mandate.
    LegsSwapped,
    /// The intent names a ledger transaction other than the one written and answered.
    IntentLedgerIdWrong,
    /// Another merchant's mandate pays, and every row (intent included) names it.
    ForeignMandate,
}

/// `sql` with `from` replaced by `to`; the pattern must be there.
pub(super) fn rewrite(sql: &mut String, from: &str, to: &str) {
    assert!(sql.contains(from), "sabotage pattern missing: {from}");
    *sql = sql.replace(from, to);
}

impl Sabotage {
    pub const ALL: [Sabotage; 13] = [
        Sabotage::SkipStockCondition,
        Sabotage::SkipKeyCheck,
        Sabotage::OneLedgerLeg,
        Sabotage::SkipCapCondition,
        Sabotage::AckThenRollback,
        Sabotage::NoLedgerRows,
        Sabotage::WrongBucketCounter,
        Sabotage::WrongShardCounter,
        Sabotage::ClaimExtraUnit,
        Sabotage::DebitTwice,
        Sabotage::LegsSwapped,
        Sabotage::IntentLedgerIdWrong,
        Sabotage::ForeignMandate,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Sabotage::SkipStockCondition => "stock condition skipped",
            Sabotage::SkipKeyCheck => "key check skipped",
            Sabotage::OneLedgerLeg => "one ledger leg written",
            Sabotage::SkipCapCondition => "cap condition skipped",
            Sabotage::AckThenRollback => "acknowledged then rolled back",
            Sabotage::NoLedgerRows => "intent without ledger rows",
            Sabotage::WrongBucketCounter => "wrong bucket's counter",
            Sabotage::WrongShardCounter => "wrong shard's counter",
            Sabotage::ClaimExtraUnit => "claim of one unit too many",
            Sabotage::DebitTwice => "debit of twice the amount",
            Sabotage::LegsSwapped => "ledger accounts swapped",
            Sabotage::IntentLedgerIdWrong => "intent's ledger id wrong",
            Sabotage::ForeignMandate => "another merchant's mandate",
        }
    }

    /// The statements of the broken kernel, on both backends.
    pub fn sql(self) -> Sql {
        let mut sql = Sql::reference();
        let (lite, pg) = (&mut sql.sqlite, &mut sql.postgres);
        match self {
            Sabotage::SkipKeyCheck => {
                rewrite(
                    &mut lite.lookup,
                    "WHERE idem_key = ?1",
                    "WHERE idem_key = ?1 AND 0 = 1",
                );
                rewrite(
                    &mut pg.purchase,
                    "WHERE idem_key = $1",
                    "WHERE idem_key = $1 AND 1 = 0",
                );
            }
            // The condition becomes a clamp, so the row never goes negative (no CHECK
            // trips) while the sale goes through anyway: the bug a CHECK does not stop.
            Sabotage::SkipStockCondition => {
                clamp(&mut lite.stock, "available", "bucket_id");
                // Every bucket of the item is a candidate, and the claim is a clamp.
                rewrite(&mut pg.purchase, " AND available >= $3", "");
                rewrite(
                    &mut pg.purchase,
                    "UPDATE bucket SET available = available - $3",
                    "UPDATE bucket SET available = CASE WHEN available >= $3 THEN available - $3 ELSE 0 END",
                );
            }
            Sabotage::SkipCapCondition => {
                clamp(&mut lite.funds, "remaining", "shard_id");
                // Every shard of the mandate can pay, and the debit is a clamp.
                rewrite(&mut pg.purchase, " AND remaining >= $5", "");
                rewrite(
                    &mut pg.purchase,
                    "UPDATE mandate_shard SET remaining = remaining - $5",
                    "UPDATE mandate_shard SET remaining = CASE WHEN remaining >= $5 THEN remaining - $5 ELSE 0 END",
                );
            }
            // The credit leg is gone; its parameters stay bound so the statement prepares.
            Sabotage::OneLedgerLeg => {
                insert_nothing(&mut lite.credit_leg);
                rewrite(
                    &mut pg.purchase,
                    "\n    UNION ALL\n    SELECT $15::UUID, $11, $17, $5, $10 FROM verdict WHERE shard_id IS NOT NULL\n), stored AS (",
                    "\n), unused AS (SELECT $15::UUID, $17::TEXT\n), stored AS (",
                );
            }
            Sabotage::NoLedgerRows => {
                for insert in [
                    &mut lite.ledger_txn,
                    &mut lite.debit_leg,
                    &mut lite.credit_leg,
                ] {
                    insert_nothing(insert);
                }
                rewrite(
                    &mut pg.purchase,
                    "), txn AS (
    INSERT INTO ledger_txn (ledger_txn_id, intent_id, amount_minor, currency)
    SELECT $11, $6, $5, $10 FROM verdict WHERE shard_id IS NOT NULL
), legs AS (
    INSERT INTO ledger_leg (leg_id, ledger_txn_id, account, signed_amount_minor, currency)
    SELECT $14::UUID, $11, $16, -$5, $10 FROM verdict WHERE shard_id IS NOT NULL
    UNION ALL
    SELECT $15::UUID, $11, $17, $5, $10 FROM verdict WHERE shard_id IS NOT NULL
), stored AS (",
                    "), unused AS (SELECT $14::UUID, $15::UUID, $16::TEXT, $17::TEXT
), stored AS (",
                );
            }
            Sabotage::WrongBucketCounter => {
                wrong_counter(
                    &mut lite.stock,
                    "bucket",
                    "bucket_id",
                    "item_id",
                    "available",
                );
                rewrite(
                    &mut pg.purchase,
                    "    RETURNING bucket_id\n",
                    "    RETURNING COALESCE((SELECT o.bucket_id FROM bucket o WHERE o.item_id = $2 \
                     AND o.bucket_id <> bucket.bucket_id ORDER BY o.bucket_id LIMIT 1), bucket.bucket_id) \
                     AS bucket_id\n",
                );
            }
            Sabotage::WrongShardCounter => {
                wrong_counter(
                    &mut lite.funds,
                    "mandate_shard",
                    "shard_id",
                    "mandate_id",
                    "remaining",
                );
                rewrite(
                    &mut pg.purchase,
                    "    RETURNING shard_id\n",
                    "    RETURNING COALESCE((SELECT o.shard_id FROM mandate_shard o WHERE o.mandate_id = $4 \
                     AND o.shard_id <> mandate_shard.shard_id ORDER BY o.shard_id LIMIT 1), mandate_shard.shard_id) \
                     AS shard_id\n",
                );
            }
            // Condition, decrement and row all use the inflated figure, so every counter
            // is conserved and only the row disagrees with its intent.
            Sabotage::ClaimExtraUnit => {
                rewrite(
                    &mut lite.stock.candidates,
                    "available >= ?2",
                    "available >= ?2 + 1",
                );
                rewrite(
                    &mut lite.stock.take,
                    "SET available = available - ?2 WHERE bucket_id = ?1 AND available >= ?2",
                    "SET available = available - (?2 + 1) WHERE bucket_id = ?1 AND available >= ?2 + 1",
                );
                rewrite(&mut lite.claim, "?3, ?4)", "?3, ?4 + 1)");
                rewrite(
                    &mut pg.purchase,
                    "available >= $3",
                    "available >= $3::BIGINT + 1",
                );
                rewrite(
                    &mut pg.purchase,
                    "SET available = available - $3",
                    "SET available = available - ($3::BIGINT + 1)",
                );
                rewrite(
                    &mut pg.purchase,
                    "SELECT $6, bucket_id, $2, $3 FROM verdict",
                    "SELECT $6, bucket_id, $2, $3::BIGINT + 1 FROM verdict",
                );
            }
            Sabotage::DebitTwice => {
                rewrite(
                    &mut lite.funds.candidates,
                    "remaining >= ?2",
                    "remaining >= 2 * ?2",
                );
                rewrite(
                    &mut lite.funds.take,
                    "SET remaining = remaining - ?2 WHERE shard_id = ?1 AND remaining >= ?2",
                    "SET remaining = remaining - 2 * ?2 WHERE shard_id = ?1 AND remaining >= 2 * ?2",
                );
                rewrite(&mut lite.debit, "?3, ?4)", "?3, 2 * ?4)");
                rewrite(
                    &mut pg.purchase,
                    "remaining >= $5",
                    "remaining >= 2 * $5::BIGINT",
                );
                rewrite(
                    &mut pg.purchase,
                    "SET remaining = remaining - $5",
                    "SET remaining = remaining - 2 * $5::BIGINT",
                );
                rewrite(
                    &mut pg.purchase,
                    "SELECT $6, shard_id, $4, $5 FROM verdict",
                    "SELECT $6, shard_id, $4, 2 * $5::BIGINT FROM verdict",
                );
            }
            // The mandate's leg gets the credit and the merchant's the debit.
            Sabotage::LegsSwapped => {
                rewrite(&mut lite.debit_leg, "?3, ?4, ?5)", "?3, -?4, ?5)");
                rewrite(&mut lite.credit_leg, "?3, ?4, ?5)", "?3, -?4, ?5)");
                rewrite(
                    &mut pg.purchase,
                    "$11, $16, -$5, $10 FROM verdict WHERE shard_id IS NOT NULL
    UNION ALL
    SELECT $15::UUID, $11, $17, $5, $10",
                    "$11, $16, $5, $10 FROM verdict WHERE shard_id IS NOT NULL
    UNION ALL
    SELECT $15::UUID, $11, $17, -$5, $10",
                );
            }
            // The intent's id stands where its ledger transaction's should.
            Sabotage::IntentLedgerIdWrong => {
                rewrite(
                    &mut lite.intent,
                    "?12, ?13, ?14",
                    "?12, CASE WHEN ?13 IS NULL THEN NULL ELSE ?1 END, ?14",
                );
                rewrite(
                    &mut pg.purchase,
                    "ELSE $11::UUID END, $12",
                    "ELSE $6 END, $12",
                );
            }
            // The first mandate of another merchant pays; the debit row, the mandate's
            // leg and the intent all name it, so every counter and row agrees.
            Sabotage::ForeignMandate => {
                rewrite(
                    &mut lite.funds.candidates,
                    "WHERE mandate_id = ?1",
                    &format!("WHERE mandate_id = {}", foreign_mandate("?1")),
                );
                rewrite(
                    &mut lite.debit,
                    "?2, ?3, ?4)",
                    "?2, (SELECT s.mandate_id FROM mandate_shard s WHERE s.shard_id = ?2 AND ?3 = ?3), ?4)",
                );
                rewrite(
                    &mut lite.debit_leg,
                    "?2, ?3, ?4",
                    "?2, 'mandate:' || (SELECT d.mandate_id FROM mandate_debit d JOIN ledger_txn t \
                     ON t.intent_id = d.intent_id WHERE t.ledger_txn_id = ?2 AND ?3 = ?3), ?4",
                );
                rewrite(
                    &mut lite.intent,
                    "?4, ?5, ?6",
                    "?4, COALESCE((SELECT d.mandate_id FROM mandate_debit d WHERE d.intent_id = ?1), ?5), ?6",
                );
                rewrite(
                    &mut pg.purchase,
                    "mandate_id = $4 AND",
                    &format!("mandate_id = {} AND", foreign_mandate("$4")),
                );
                let paid = "(SELECT s.mandate_id FROM mandate_shard s WHERE s.shard_id = verdict.shard_id)";
                rewrite(
                    &mut pg.purchase,
                    "SELECT $6, shard_id, $4, $5 FROM verdict",
                    &format!("SELECT $6, shard_id, {paid}, $5 FROM verdict"),
                );
                rewrite(
                    &mut pg.purchase,
                    "$11, $16, -$5, $10",
                    &format!("$11, 'mandate:' || CAST({paid} AS TEXT), -$5, $10"),
                );
                rewrite(
                    &mut pg.purchase,
                    "\n), stored AS (",
                    "\n), unused AS (SELECT $16::TEXT\n), stored AS (",
                );
                // A declined intent names its own mandate: nothing paid.
                rewrite(
                    &mut pg.purchase,
                    "$7, $8, $4, $2",
                    &format!("$7, $8, COALESCE({paid}, $4), $2"),
                );
            }
            Sabotage::AckThenRollback => {
                lite.keep_committed =
                    vec!["ROLLBACK TO purchase".into(), "RELEASE purchase".into()];
                // The same statement inside a transaction that ends in ROLLBACK, in the
                // same write: the kernel answers from the statement's row.
                assert!(
                    pg.begin.is_none() && pg.finish.is_none(),
                    "sabotage pattern missing: a statement that commits itself"
                );
                pg.begin = Some("BEGIN".into());
                pg.finish = Some("ROLLBACK".into());
            }
        }
        sql
    }

    /// The schema half of a bug, applied to an initialised database before the run.
    pub async fn break_schema(self, database: &Database) -> Result<(), DbError> {
        if self == Sabotage::SkipKeyCheck {
            // The migration that "forgot" UNIQUE: same index name, so init keeps it.
            database.execute("DROP INDEX intent_idem_key").await?;
            database
                .execute("CREATE INDEX intent_idem_key ON intent (idem_key)")
                .await?;
        }
        Ok(())
    }
}

/// SQLite's half of a skipped condition: every row is a candidate, and the decrement is a
/// clamp at zero instead of a condition.
fn clamp(take: &mut Take, column: &str, id: &str) {
    rewrite(
        &mut take.candidates,
        &format!("AND {column} >= ?2"),
        "AND ?2 = ?2",
    );
    rewrite(
        &mut take.take,
        &format!("SET {column} = {column} - ?2 WHERE {id} = ?1 AND {column} >= ?2"),
        &format!(
            "SET {column} = CASE WHEN {column} >= ?2 THEN {column} - ?2 ELSE 0 END WHERE {id} = ?1"
        ),
    );
}

/// SQLite's half of a wrong counter: the conditional decrement lands on another row of
/// the same owner that can give the amount (the chosen row when there is none).
fn wrong_counter(take: &mut Take, table: &str, id: &str, owner: &str, column: &str) {
    rewrite(
        &mut take.take,
        &format!("WHERE {id} = ?1 AND"),
        &format!(
            "WHERE {id} = COALESCE((SELECT o.{id} FROM {table} o WHERE o.{owner} = \
             (SELECT w.{owner} FROM {table} w WHERE w.{id} = ?1) AND o.{id} <> ?1 \
             AND o.{column} >= ?2 ORDER BY o.{id} LIMIT 1), ?1) AND"
        ),
    );
}

/// The first mandate (by id) of a merchant other than mandate `param`'s; `param` itself
/// when there is none.
fn foreign_mandate(param: &str) -> String {
    format!(
        "COALESCE((SELECT f.mandate_id FROM mandate f WHERE f.merchant_id <> \
         (SELECT o.merchant_id FROM mandate o WHERE o.mandate_id = {param}) \
         ORDER BY f.mandate_id LIMIT 1), {param})"
    )
}

/// An `INSERT … VALUES (?1, …, ?n)` that writes no row: its values are selected into
/// none, so every parameter stays bound and the statement still prepares.
fn insert_nothing(sql: &mut String) {
    let open = sql
        .rfind("VALUES (")
        .expect("sabotage pattern missing: VALUES (");
    let values = sql[open + "VALUES (".len()..]
        .trim_end()
        .trim_end_matches(')')
        .to_string();
    let from = format!("VALUES ({values})");
    rewrite(sql, &from, &format!("SELECT {values} WHERE 0 = 1"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sabotage_changes_both_backends() {
        let clean = Sql::reference();
        for s in Sabotage::ALL {
            let broken = s.sql();
            assert_ne!(broken.sqlite, clean.sqlite, "{s:?} on SQLite");
            assert_ne!(broken.postgres, clean.postgres, "{s:?} on PostgreSQL");
        }
    }

    /// PostgreSQL's decline-only statement is derived from the (broken) statement, so a
    /// sabotage of the key lookup, the plan or the declined intent reaches it too.
    #[test]
    fn every_sabotage_of_the_declined_path_reaches_the_decline_only_statement() {
        let clean = Sql::reference().postgres.decline_only().expect("derived");
        for s in Sabotage::ALL {
            let broken = s.sql().postgres.decline_only();
            let broken = broken.unwrap_or_else(|| panic!("{s:?}: no decline-only statement"));
            let reaches = matches!(
                s,
                Sabotage::SkipKeyCheck
                    | Sabotage::SkipStockCondition
                    | Sabotage::SkipCapCondition
                    | Sabotage::ClaimExtraUnit
                    | Sabotage::DebitTwice
                    | Sabotage::ForeignMandate
                    // Its rewrite stands in the intent row's text, though a decline's
                    // ledger id is NULL either way.
                    | Sabotage::IntentLedgerIdWrong
            );
            assert_eq!(broken != clean, reaches, "{s:?}");
        }
    }
}
