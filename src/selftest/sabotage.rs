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
}

/// `sql` with `from` replaced by `to`; the pattern must be there.
fn rewrite(sql: &mut String, from: &str, to: &str) {
    assert!(sql.contains(from), "sabotage pattern missing: {from}");
    *sql = sql.replace(from, to);
}

impl Sabotage {
    pub const ALL: [Sabotage; 6] = [
        Sabotage::SkipStockCondition,
        Sabotage::SkipKeyCheck,
        Sabotage::OneLedgerLeg,
        Sabotage::SkipCapCondition,
        Sabotage::AckThenRollback,
        Sabotage::NoLedgerRows,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Sabotage::SkipStockCondition => "stock condition skipped",
            Sabotage::SkipKeyCheck => "key check skipped",
            Sabotage::OneLedgerLeg => "one ledger leg written",
            Sabotage::SkipCapCondition => "cap condition skipped",
            Sabotage::AckThenRollback => "acknowledged then rolled back",
            Sabotage::NoLedgerRows => "intent without ledger rows",
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
                    &mut pg.probe,
                    "WHERE idem_key = $1",
                    "WHERE idem_key = $1 AND 1 = 0",
                );
            }
            // The condition becomes a clamp, so the row never goes negative (no CHECK
            // trips) while the sale goes through anyway: the bug a CHECK does not stop.
            Sabotage::SkipStockCondition => {
                clamp(&mut lite.stock, "available", "bucket_id");
                rewrite(
                    &mut pg.probe,
                    "UPDATE bucket SET available = available - $3",
                    "UPDATE bucket SET available = CASE WHEN available >= $3 THEN available - $3 ELSE 0 END",
                );
                rewrite(
                    &mut pg.probe,
                    "WHERE item_id = $2 AND available >= $3 ORDER BY",
                    "WHERE item_id = $2 ORDER BY",
                );
                rewrite(
                    &mut pg.probe,
                    "      AND available >= $3\n      AND NOT EXISTS",
                    "      AND NOT EXISTS",
                );
            }
            Sabotage::SkipCapCondition => {
                clamp(&mut lite.funds, "remaining", "shard_id");
                rewrite(
                    &mut pg.probe,
                    "      AND EXISTS (SELECT 1 FROM mandate_shard WHERE mandate_id = $4 AND remaining >= $5)\n",
                    "",
                );
                rewrite(
                    &mut pg.probe,
                    "UPDATE mandate_shard SET remaining = remaining - $5",
                    "UPDATE mandate_shard SET remaining = CASE WHEN remaining >= $5 THEN remaining - $5 ELSE 0 END",
                );
                rewrite(
                    &mut pg.probe,
                    "WHERE mandate_id = $4 AND remaining >= $5 ORDER BY",
                    "WHERE mandate_id = $4 ORDER BY",
                );
                rewrite(
                    &mut pg.probe,
                    "      AND remaining >= $5\n      AND EXISTS (SELECT 1 FROM claim)",
                    "      AND EXISTS (SELECT 1 FROM claim)",
                );
            }
            // The credit leg is gone; its parameters stay bound so the statement prepares.
            Sabotage::OneLedgerLeg => {
                insert_nothing(&mut lite.credit_leg);
                rewrite(
                    &mut pg.settle,
                    ", ($20, $13, $22, $9, $10)\n)",
                    "\n), unused AS (SELECT $20::uuid, $22::text)",
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
                    &mut pg.settle,
                    "), txn AS (\n    INSERT INTO ledger_txn (ledger_txn_id, intent_id, amount_minor, currency) VALUES ($13, $1, $9, $10)\n), legs AS (\n    INSERT INTO ledger_leg (leg_id, ledger_txn_id, account, signed_amount_minor, currency)\n    VALUES ($19, $13, $21, -$9::BIGINT, $10), ($20, $13, $22, $9, $10)\n)",
                    "), unused AS (SELECT $19::uuid, $20::uuid, $21::text, $22::text)",
                );
            }
            Sabotage::AckThenRollback => {
                lite.keep_committed =
                    vec!["ROLLBACK TO purchase".into(), "RELEASE purchase".into()];
                rewrite(&mut pg.finish, "COMMIT", "ROLLBACK");
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
}
