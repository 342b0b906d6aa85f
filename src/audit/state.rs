//! State checks: the four invariants and torn commits, read from raw rows.
//!
//! Every figure is recomputed from the rows; the anchors are `item.initial_stock`,
//! `bucket.initial_available`, `mandate.cap_minor` and `mandate_shard.initial_remaining_minor`,
//! written at seed time and never updated by a purchase.
//!
//! It stays one file: most of it is `run`, every state check one after another, each query
//! beside the reading of its rows and timed as it ends.

use super::intents::{self, Found, Scan};
use super::source::{Source, Val};
use crate::sut::db::DbError;
use std::time::Instant;

use super::verdict::{Check, Invariant, Timing};

/// Run a query-backed check; a query that fails makes the check unknown, never valid.
async fn check_rows(
    src: &Source,
    name: &'static str,
    invariant: Invariant,
    sql: &str,
    detail: &str,
) -> Check {
    // Streamed: a database broken everywhere costs a count, not a row each.
    let mut found = Found::default();
    let read = src
        .for_each_row(sql, |r| {
            let id = r.text(0)?.unwrap_or("");
            found.add(|| id.to_string());
            Ok(())
        })
        .await;
    match read {
        Ok(()) => Check::violations(name, invariant, found.count, found.examples, detail),
        Err(e) => Check::unknown(name, invariant, format!("could not run: {e}")),
    }
}

/// A check fed by the pass over every intent and by a commit-sized query.
fn merged(
    name: &'static str,
    invariant: Invariant,
    scan: &Result<Scan, String>,
    from_scan: impl Fn(&Scan) -> &Found,
    rows: Result<Found, String>,
    detail: &str,
) -> Check {
    match (scan, rows) {
        (Ok(scan), Ok(mut found)) => {
            let seen = from_scan(scan);
            found.count += seen.count;
            found.examples.extend(seen.examples.iter().cloned());
            Check::violations(name, invariant, found.count, found.examples, detail)
        }
        (Err(e), _) => Check::unknown(name, invariant, format!("could not read every intent: {e}")),
        (_, Err(e)) => Check::unknown(name, invariant, format!("could not run: {e}")),
    }
}

/// Every state check, each with the time it took. `scan`: the pass over every intent
/// (or why it failed), which the snapshot and reference checks finish.
#[allow(unused_assignments)] // the last lap's mark is never read
pub async fn run(src: &Source, scan: &Result<Scan, String>) -> (Vec<Check>, Vec<Timing>) {
    let mut checks: Vec<Check> = Vec::new();
    let mut timings = Vec::new();
    let mut mark = (Instant::now(), 0usize);
    // Time the checks pushed since the last lap.
    macro_rules! lap {
        () => {
            let names: Vec<&str> = checks[mark.1..].iter().map(|c| c.name.as_str()).collect();
            timings.push(Timing::since(
                format!("state: {}", names.join(" + ")),
                mark.0,
            ));
            mark = (Instant::now(), checks.len());
        };
    }

    // Oversell.
    checks.push(
        check_rows(
            src,
            "oversell.negative_bucket",
            Invariant::Oversell,
            "SELECT CAST(bucket_id AS TEXT) FROM bucket WHERE available < 0",
            "buckets below zero",
        )
        .await,
    );
    lap!();
    checks.push(match scan {
        Ok(scan) => Check::violations(
            "oversell.committed_over_stock",
            Invariant::Oversell,
            scan.committed_over_stock.count,
            scan.committed_over_stock.examples.clone(),
            "items whose committed units exceed the initial stock",
        ),
        Err(e) => Check::unknown(
            "oversell.committed_over_stock",
            Invariant::Oversell,
            format!("could not read every intent: {e}"),
        ),
    });
    lap!();
    checks.push(match src
        .rows(
            "SELECT CAST(i.item_id AS TEXT), i.initial_stock, \
               CAST((SELECT COALESCE(SUM(b.available), 0) FROM bucket b WHERE b.item_id = i.item_id) AS BIGINT), \
               CAST((SELECT COALESCE(SUM(c.quantity), 0) FROM stock_claim c WHERE c.item_id = i.item_id) AS BIGINT), \
               CAST((SELECT COALESCE(SUM(b.initial_available), 0) FROM bucket b WHERE b.item_id = i.item_id) AS BIGINT) \
             FROM item i",
        )
        .await
    {
        Ok(rows) => {
            let bad: Vec<String> = rows
                .iter()
                .filter(|r| {
                    let (initial, left, claimed, seeded) = (r[1].int(), r[2].int(), r[3].int(), r[4].int());
                    initial != left + claimed || initial != seeded
                })
                .map(|r| r[0].text())
                .collect();
            Check::violations(
                "oversell.stock_not_conserved",
                Invariant::Oversell,
                bad.len() as u64,
                bad,
                "items where initial stock != remaining + claimed",
            )
        }
        Err(e) => Check::unknown("oversell.stock_not_conserved", Invariant::Oversell, format!("could not run: {e}")),
    });
    lap!();
    checks.push(
        check_rows(
            src,
            "oversell.bucket_not_conserved",
            Invariant::Oversell,
            "SELECT CAST(b.bucket_id AS TEXT) FROM bucket b \
             LEFT JOIN (SELECT bucket_id, SUM(quantity) AS claimed FROM stock_claim GROUP BY bucket_id) c \
               ON c.bucket_id = b.bucket_id \
             WHERE b.initial_available - b.available <> COALESCE(c.claimed, 0)",
            "buckets where initial - remaining != the units claimed on them",
        )
        .await,
    );
    lap!();
    checks.push(
        check_rows(
            src,
            "oversell.claim_mismatch",
            Invariant::Oversell,
            "SELECT CAST(c.intent_id AS TEXT) FROM stock_claim c \
             JOIN intent n ON n.intent_id = c.intent_id \
             LEFT JOIN bucket b ON b.bucket_id = c.bucket_id \
             WHERE c.item_id <> n.item_id OR c.quantity <> n.quantity \
                OR b.bucket_id IS NULL OR b.item_id <> n.item_id",
            "claims whose item, quantity or bucket differ from their intent's",
        )
        .await,
    );
    lap!();

    // Duplicate settlement.
    checks.push(duplicate_keys(src).await);
    lap!();
    checks.push(
        check_rows(
            src,
            "duplicate_settlement.ledger",
            Invariant::DuplicateSettlement,
            "SELECT CAST(intent_id AS TEXT) FROM ledger_txn GROUP BY intent_id HAVING count(*) > 1",
            "intents with more than one ledger transaction",
        )
        .await,
    );
    lap!();

    // Ledger drift.
    checks.push(match src
        .rows("SELECT CAST(COALESCE(SUM(signed_amount_minor), 0) AS BIGINT), count(*) FROM ledger_leg")
        .await
    {
        Ok(rows) => {
            let sum = rows.first().map_or(0, |r| r[0].int());
            Check::violations(
                "ledger_drift.global_sum",
                Invariant::LedgerDrift,
                u64::from(sum != 0),
                if sum != 0 { vec![format!("sum={sum}")] } else { vec![] },
                format!("sum of all signed legs = {sum}"),
            )
        }
        Err(e) => Check::unknown("ledger_drift.global_sum", Invariant::LedgerDrift, format!("could not run: {e}")),
    });
    lap!();
    checks.push(
        check_rows(
            src,
            "ledger_drift.unbalanced_txn",
            Invariant::LedgerDrift,
            "SELECT CAST(t.ledger_txn_id AS TEXT) FROM ledger_txn t \
             LEFT JOIN ledger_leg l ON l.ledger_txn_id = t.ledger_txn_id \
             GROUP BY t.ledger_txn_id \
             HAVING count(l.leg_id) <> 2 OR COALESCE(SUM(l.signed_amount_minor), 0) <> 0",
            "ledger transactions without exactly two legs summing to 0",
        )
        .await,
    );
    lap!();
    checks.push(
        check_rows(
            src,
            "ledger_drift.amount_mismatch",
            Invariant::LedgerDrift,
            "SELECT CAST(t.ledger_txn_id AS TEXT) FROM ledger_txn t \
             JOIN intent n ON n.intent_id = t.intent_id \
             WHERE t.amount_minor <> n.amount_minor OR t.currency <> n.currency \
                OR EXISTS (SELECT 1 FROM ledger_leg l WHERE l.ledger_txn_id = t.ledger_txn_id \
                   AND (l.currency <> t.currency \
                        OR (l.signed_amount_minor <> t.amount_minor AND l.signed_amount_minor <> -t.amount_minor)))",
            "ledger amounts that differ from their intent's",
        )
        .await,
    );
    lap!();
    checks.push(
        check_rows(
            src,
            "ledger_drift.wrong_legs",
            Invariant::LedgerDrift,
            "SELECT CAST(t.ledger_txn_id AS TEXT) FROM ledger_txn t \
             JOIN intent n ON n.intent_id = t.intent_id \
             WHERE NOT EXISTS (SELECT 1 FROM ledger_leg l WHERE l.ledger_txn_id = t.ledger_txn_id \
                     AND l.account = 'mandate:' || CAST(n.mandate_id AS TEXT) \
                     AND l.signed_amount_minor = -n.amount_minor) \
                OR NOT EXISTS (SELECT 1 FROM ledger_leg l WHERE l.ledger_txn_id = t.ledger_txn_id \
                     AND l.account = 'merchant:' || CAST(n.merchant_id AS TEXT) \
                     AND l.signed_amount_minor = n.amount_minor)",
            "ledger transactions without a debit leg on the intent's mandate and a credit leg on its merchant",
        )
        .await,
    );
    lap!();

    // Mandate breach.
    checks.push(
        check_rows(
            src,
            "mandate_breach.negative_shard",
            Invariant::MandateBreach,
            "SELECT CAST(shard_id AS TEXT) FROM mandate_shard WHERE remaining < 0",
            "mandate shards below zero",
        )
        .await,
    );
    lap!();
    match src
        .rows(
            "SELECT CAST(m.mandate_id AS TEXT), m.cap_minor, \
               CAST(COALESCE(s.remaining, 0) AS BIGINT), CAST(COALESCE(s.initial, 0) AS BIGINT), \
               CAST(COALESCE(d.debited, 0) AS BIGINT) \
             FROM mandate m \
             LEFT JOIN (SELECT mandate_id, SUM(remaining) AS remaining, SUM(initial_remaining_minor) AS initial \
                        FROM mandate_shard GROUP BY mandate_id) s ON s.mandate_id = m.mandate_id \
             LEFT JOIN (SELECT mandate_id, SUM(amount_minor) AS debited \
                        FROM mandate_debit GROUP BY mandate_id) d ON d.mandate_id = m.mandate_id",
        )
        .await
    {
        Ok(rows) => {
            let over: Vec<String> = rows
                .iter()
                .filter(|r| r[4].int() > r[1].int())
                .map(|r| r[0].text())
                .collect();
            let unconserved: Vec<String> = rows
                .iter()
                .filter(|r| {
                    let (cap, left, seeded, debited) = (r[1].int(), r[2].int(), r[3].int(), r[4].int());
                    cap != left + debited || cap != seeded
                })
                .map(|r| r[0].text())
                .collect();
            checks.push(Check::violations(
                "mandate_breach.over_cap",
                Invariant::MandateBreach,
                over.len() as u64,
                over,
                "mandates whose debits exceed the cap",
            ));
            checks.push(Check::violations(
                "mandate_breach.not_conserved",
                Invariant::MandateBreach,
                unconserved.len() as u64,
                unconserved,
                "mandates where cap != remaining + debited",
            ));
        }
        Err(e) => {
            for name in ["mandate_breach.over_cap", "mandate_breach.not_conserved"] {
                checks.push(Check::unknown(name, Invariant::MandateBreach, format!("could not run: {e}")));
            }
        }
    }
    lap!();
    checks.push(
        check_rows(
            src,
            "mandate_breach.shard_not_conserved",
            Invariant::MandateBreach,
            "SELECT CAST(s.shard_id AS TEXT) FROM mandate_shard s \
             LEFT JOIN (SELECT shard_id, SUM(amount_minor) AS debited FROM mandate_debit GROUP BY shard_id) d \
               ON d.shard_id = s.shard_id \
             WHERE s.initial_remaining_minor - s.remaining <> COALESCE(d.debited, 0)",
            "shards where initial - remaining != the amounts debited on them",
        )
        .await,
    );
    lap!();
    checks.push(
        check_rows(
            src,
            "mandate_breach.debit_mismatch",
            Invariant::MandateBreach,
            "SELECT CAST(d.intent_id AS TEXT) FROM mandate_debit d \
             JOIN intent n ON n.intent_id = d.intent_id \
             LEFT JOIN mandate_shard s ON s.shard_id = d.shard_id \
             WHERE d.mandate_id <> n.mandate_id OR d.amount_minor <> n.amount_minor \
                OR s.shard_id IS NULL OR s.mandate_id <> n.mandate_id",
            "debits whose mandate, amount or shard differ from their intent's",
        )
        .await,
    );
    lap!();

    // Torn commits.
    checks.push(missing_rows(src, scan).await);
    lap!();
    checks.push(
        check_rows(
            src,
            "torn_commit.orphan_rows",
            Invariant::TornCommit,
            "SELECT 'stock_claim:' || CAST(c.intent_id AS TEXT) FROM stock_claim c WHERE NOT EXISTS \
               (SELECT 1 FROM intent n WHERE n.intent_id = c.intent_id AND n.outcome = 'COMMITTED') \
             UNION ALL SELECT 'mandate_debit:' || CAST(d.intent_id AS TEXT) FROM mandate_debit d WHERE NOT EXISTS \
               (SELECT 1 FROM intent n WHERE n.intent_id = d.intent_id AND n.outcome = 'COMMITTED') \
             UNION ALL SELECT 'ledger_txn:' || CAST(t.ledger_txn_id AS TEXT) FROM ledger_txn t WHERE NOT EXISTS \
               (SELECT 1 FROM intent n WHERE n.intent_id = t.intent_id AND n.outcome = 'COMMITTED') \
             UNION ALL SELECT 'ledger_leg:' || CAST(l.leg_id AS TEXT) FROM ledger_leg l WHERE NOT EXISTS \
               (SELECT 1 FROM ledger_txn t WHERE t.ledger_txn_id = l.ledger_txn_id)",
            "claim, debit or ledger rows that belong to no committed intent",
        )
        .await,
    );
    lap!();
    // The stored snapshot: its columns were compared in the pass over every intent; here
    // a committed one's chosen bucket and ledger transaction, against their rows.
    // Streamed, borrowing each row: a snapshot per commit is never held.
    let mut found = Found::default();
    let committed = src
        .for_each_row(
            "SELECT CAST(n.intent_id AS TEXT), n.snapshot, CAST(c.bucket_id AS TEXT), \
               CASE WHEN EXISTS (SELECT 1 FROM ledger_txn t WHERE t.ledger_txn_id = n.ledger_txn_id \
                 AND t.intent_id = n.intent_id) THEN 1 ELSE 0 END, \
               n.outcome, n.amount_minor, n.currency, CAST(n.ledger_txn_id AS TEXT) \
             FROM stock_claim c JOIN intent n ON n.intent_id = c.intent_id",
            |r| {
                let text = |i| r.text(i).map(|t| t.unwrap_or(""));
                let (id, json) = (text(0)?, text(1)?);
                let ledger = Some(text(7)?).filter(|l| !l.is_empty());
                let (outcome, currency) = (text(4)?, text(6)?);
                let amount_minor = r.int(5)?.unwrap_or(0);
                if intents::snapshot_disagrees(json, id, outcome, amount_minor, currency, ledger)
                    .is_some()
                {
                    return Ok(()); // counted by the pass over every intent
                }
                let why = if r.int(3)? != Some(1) {
                    Some("ledgerTxnId names no ledger transaction of this intent")
                } else if !intents::chose_bucket(json, text(2)?) {
                    Some("chosenBucketId is not the claim's bucket")
                } else {
                    None
                };
                if let Some(why) = why {
                    found.add(|| format!("{id} ({why})"));
                }
                Ok(())
            },
        )
        .await
        .map(|()| found)
        .map_err(|e| e.to_string());
    checks.push(merged(
        "torn_commit.snapshot_mismatch",
        Invariant::TornCommit,
        scan,
        |s| &s.snapshot_mismatch,
        committed,
        "stored snapshots that disagree with their intent's rows (outcome, intentId, ledgerTxnId, amountMinor, currency, chosenBucketId)",
    ));
    lap!();
    let catalog = src
        .rows(
            "SELECT 'bucket:' || CAST(b.bucket_id AS TEXT) FROM bucket b \
               WHERE NOT EXISTS (SELECT 1 FROM item i WHERE i.item_id = b.item_id) \
             UNION ALL SELECT 'mandate_shard:' || CAST(s.shard_id AS TEXT) FROM mandate_shard s \
               WHERE NOT EXISTS (SELECT 1 FROM mandate m WHERE m.mandate_id = s.mandate_id) \
             UNION ALL SELECT 'item:' || CAST(i.item_id AS TEXT) FROM item i \
               WHERE NOT EXISTS (SELECT 1 FROM merchant x WHERE x.merchant_id = i.merchant_id) \
             UNION ALL SELECT 'mandate:' || CAST(m.mandate_id AS TEXT) FROM mandate m \
               WHERE NOT EXISTS (SELECT 1 FROM merchant x WHERE x.merchant_id = m.merchant_id)",
        )
        .await
        .map(|rows| {
            let mut found = Found::default();
            for r in rows {
                found.add(|| r[0].text());
            }
            found
        })
        .map_err(|e| e.to_string());
    checks.push(merged(
        "torn_commit.broken_reference",
        Invariant::TornCommit,
        scan,
        |s| &s.broken_reference,
        catalog,
        "rows naming an id that does not exist, and intents whose mandate or item is another merchant's or in another currency",
    ));
    lap!();
    checks.push(unreadable_values(src, scan).await);
    lap!();
    (checks, timings)
}

/// `duplicate_settlement.key`. A unique index on `intent (idem_key)` (whole-table, not
/// partial) is the database refusing a second intent per key: the check reads it from the
/// catalog instead of grouping every key. Without one the keys are grouped.
async fn duplicate_keys(src: &Source) -> Check {
    const NAME: &str = "duplicate_settlement.key";
    const DETAIL: &str = "keys settled by more than one intent";
    match unique_key_index(src).await {
        Ok(Some(index)) => {
            return Check::violations(
                NAME,
                Invariant::DuplicateSettlement,
                0,
                vec![],
                format!("{DETAIL}: none can exist, the unique index {index} refuses them"),
            );
        }
        Ok(None) => {}
        Err(e) => tracing::debug!("could not read intent's indexes, grouping keys: {e}"),
    }
    check_rows(
        src,
        NAME,
        Invariant::DuplicateSettlement,
        "SELECT idem_key FROM intent GROUP BY idem_key HAVING count(*) > 1",
        DETAIL,
    )
    .await
}

/// The name of a valid, whole-table unique index on `intent (idem_key)` alone, if any.
async fn unique_key_index(src: &Source) -> Result<Option<String>, DbError> {
    let sql = match src {
        // A unique index's columns are in pragma_index_info; `partial` marks a WHERE clause.
        Source::Sqlite(..) => {
            "SELECT l.name FROM pragma_index_list('intent') l \
             WHERE l.\"unique\" = 1 AND l.partial = 0 \
               AND (SELECT count(*) FROM pragma_index_info(l.name)) = 1 \
               AND (SELECT i.name FROM pragma_index_info(l.name) i) = 'idem_key'"
        }
        Source::Postgres(_) => {
            "SELECT CAST(c.relname AS TEXT) FROM pg_index x \
               JOIN pg_class c ON c.oid = x.indexrelid \
               JOIN pg_class t ON t.oid = x.indrelid \
               JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = x.indkey[0] \
             WHERE t.relname = 'intent' AND t.relnamespace = to_regnamespace(current_schema())::oid \
               AND x.indisunique AND x.indisvalid AND x.indpred IS NULL AND x.indexprs IS NULL \
               AND x.indnkeyatts = 1 AND a.attname = 'idem_key'"
        }
    };
    let rows = src.rows(sql).await?;
    Ok(rows.first().map(|r| r[0].text()))
}

/// `torn_commit.missing_rows`: committed intents without their claim, debit or ledger
/// transaction. When the pass over every intent counted the committed ones, three
/// commit-sized counts settle it (a subset as large as its set is the set); only when
/// they differ, or without the count, is every committed intent looked up.
async fn missing_rows(src: &Source, scan: &Result<Scan, String>) -> Check {
    const NAME: &str = "torn_commit.missing_rows";
    const DETAIL: &str = "committed intents missing their claim, debit or ledger rows";
    if let Ok(scan) = scan {
        let counts = src
            .rows(
                // Each count walks the commit-sized table and looks its intent up; written
                // as a join, SQLite's planner walked every intent instead (0.4 s a million).
                "SELECT \
                   CAST((SELECT count(*) FROM stock_claim c WHERE EXISTS (SELECT 1 FROM intent n \
                         WHERE n.intent_id = c.intent_id AND n.outcome = 'COMMITTED')) AS BIGINT), \
                   CAST((SELECT count(*) FROM mandate_debit d WHERE EXISTS (SELECT 1 FROM intent n \
                         WHERE n.intent_id = d.intent_id AND n.outcome = 'COMMITTED')) AS BIGINT), \
                   CAST((SELECT count(DISTINCT t.intent_id) FROM ledger_txn t WHERE EXISTS (SELECT 1 \
                         FROM intent n WHERE n.intent_id = t.intent_id AND n.outcome = 'COMMITTED')) \
                         AS BIGINT)",
            )
            .await;
        if let Ok(rows) = counts {
            let all = |r: &Vec<Val>| (0..3).all(|i| r[i].int() == scan.committed as i64);
            if rows.first().is_some_and(all) {
                return Check::violations(NAME, Invariant::TornCommit, 0, vec![], DETAIL);
            }
        }
    }
    check_rows(
        src,
        NAME,
        Invariant::TornCommit,
        "SELECT CAST(n.intent_id AS TEXT) FROM intent n WHERE n.outcome = 'COMMITTED' AND ( \
           NOT EXISTS (SELECT 1 FROM stock_claim c WHERE c.intent_id = n.intent_id) \
           OR NOT EXISTS (SELECT 1 FROM mandate_debit d WHERE d.intent_id = n.intent_id) \
           OR NOT EXISTS (SELECT 1 FROM ledger_txn t WHERE t.intent_id = n.intent_id))",
        DETAIL,
    )
    .await
}

/// The integer columns the audit's figures are sums of, with each table's id.
const NUMBERS: &[(&str, &str, &[&str])] = &[
    ("item", "item_id", &["initial_stock", "unit_price_minor"]),
    ("bucket", "bucket_id", &["initial_available", "available"]),
    ("mandate", "mandate_id", &["cap_minor"]),
    (
        "mandate_shard",
        "shard_id",
        &["initial_remaining_minor", "remaining"],
    ),
    ("stock_claim", "intent_id", &["quantity"]),
    ("mandate_debit", "intent_id", &["amount_minor"]),
    ("ledger_txn", "ledger_txn_id", &["amount_minor"]),
    ("ledger_leg", "leg_id", &["signed_amount_minor"]),
];

/// Values the other checks would read as 0: NULL, or (SQLite keeps what it is given) not
/// an integer. A database swarm did not write can hold them; they are findings, never
/// silent zeros in a sum.
async fn unreadable_values(src: &Source, scan: &Result<Scan, String>) -> Check {
    let not_integer = match src {
        Source::Sqlite(..) => |c: &str| format!("({c} IS NULL OR typeof({c}) <> 'integer')"),
        Source::Postgres(_) => |c: &str| format!("{c} IS NULL"),
    };
    let sql = NUMBERS
        .iter()
        .flat_map(|(table, id, columns)| columns.iter().map(move |c| (table, id, c)))
        .map(|(table, id, c)| {
            format!(
                "SELECT '{table}.{c}:' || CAST({id} AS TEXT) FROM {table} WHERE {}",
                not_integer(c)
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    // The intent table's own columns are read by the one pass over it (`intents::scan`).
    let rows = src
        .rows(&sql)
        .await
        .map(|rows| {
            let mut found = Found::default();
            for r in rows {
                found.add(|| r[0].text());
            }
            found
        })
        .map_err(|e| e.to_string());
    merged(
        "torn_commit.unreadable_value",
        Invariant::TornCommit,
        scan,
        |s| &s.unreadable,
        rows,
        "amounts, quantities and counters that are NULL or not integers (table.column:row): the other checks cannot count them",
    )
}

/// The cheap subset polled during a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct LiveCounts {
    pub oversells: u64,
    pub duplicate_settlements: u64,
    pub ledger_drift: u64,
    pub mandate_breaches: u64,
    /// Polls that failed (the counters are then stale).
    pub errors: u64,
    pub polls: u64,
}

/// Never a scan of `intent`: the small tables (buckets, shards) and the commit-sized ones
/// (claims, ledger rows, and intents looked up by id from the ledger): milliseconds while
/// commits are few (million.toml), about a second at 400,000 commits, so the poller spaces
/// its polls by their cost (`run::sampler`).
pub async fn live(src: &Source) -> Result<LiveCounts, crate::sut::db::DbError> {
    let one = |rows: Vec<Vec<Val>>| rows.first().map_or(0, |r| r[0].int());
    let negative_buckets = one(src
        .rows("SELECT count(*) FROM bucket WHERE available < 0")
        .await?);
    let unconserved = one(
        src.rows(
            "SELECT count(*) FROM item i WHERE i.initial_stock <> \
               CAST((SELECT COALESCE(SUM(b.available), 0) FROM bucket b WHERE b.item_id = i.item_id) AS BIGINT) + \
               CAST((SELECT COALESCE(SUM(c.quantity), 0) FROM stock_claim c WHERE c.item_id = i.item_id) AS BIGINT)",
        )
        .await?,
    );
    let negative_shards = one(src
        .rows("SELECT count(*) FROM mandate_shard WHERE remaining < 0")
        .await?);
    let ledger_sum = one(src
        .rows("SELECT CAST(COALESCE(SUM(signed_amount_minor), 0) AS BIGINT) FROM ledger_leg")
        .await?);
    // Keys settled more than once: ledger transactions (one per commit) joined to their
    // intents through the primary key.
    let duplicates = one(src
        .rows(
            "SELECT count(*) - count(DISTINCT n.idem_key) FROM ledger_txn t \
             JOIN intent n ON n.intent_id = t.intent_id",
        )
        .await?) as u64;
    Ok(LiveCounts {
        oversells: (negative_buckets + unconserved) as u64,
        duplicate_settlements: duplicates,
        ledger_drift: u64::from(ledger_sum != 0),
        mandate_breaches: negative_shards as u64,
        errors: 0,
        polls: 0,
    })
}

/// `run.finished`: the last run that started on this database (`swarm_meta`'s
/// `run.started`) also finished (`run.finished`, written after its audit and report). A
/// run cut short (killed, out of memory, a CI timeout) left requests in flight that nothing
/// can resolve now, so its database's verdict is `unknown` until a run finishes on it or the
/// state alone is asked for. No markers (a database swarm did not seed): no check.
pub async fn run_finished(src: &Source, auditing: Option<&str>) -> Option<Check> {
    let mut started = None;
    let mut finished = None;
    let read = src
        .for_each(
            "SELECT meta_key, meta_value FROM swarm_meta WHERE meta_key IN ('run.started', 'run.finished')",
            |r: &[Val]| match r[0].as_str() {
                "run.started" => started = Some(r[1].as_str().to_string()),
                _ => finished = Some(r[1].as_str().to_string()),
            },
        )
        .await;
    let started = read.ok().and(started)?;
    if finished.as_deref() == Some(started.as_str()) {
        return Some(Check::figure(
            "run.finished",
            Invariant::History,
            0,
            vec![],
            "the last run on this database finished",
        ));
    }
    if Some(started.as_str()) == auditing {
        return Some(Check::figure(
            "run.finished",
            Invariant::History,
            0,
            vec![],
            "the last run on this database is the one audited (it finishes after its audit)",
        ));
    }
    Some(Check::unknown(
        "run.finished",
        Invariant::History,
        format!(
            "run {started} started on this database and never finished: requests in flight when it \
             stopped cannot be resolved (audit --state-only for the state checks alone)"
        ),
    ))
}

/// How many intents the database holds (the audit sizes its parts by it).
pub async fn intent_count(src: &Source) -> Result<u64, crate::sut::db::DbError> {
    let rows = src
        .rows("SELECT CAST(count(*) AS BIGINT) FROM intent")
        .await?;
    let count = rows.first().and_then(|r| r.first()).map_or(0, Val::int);
    Ok(count.max(0) as u64)
}
