//! State checks: the four invariants and torn commits, read from raw rows.
//!
//! Every figure is recomputed from the rows; the anchors are `item.initial_stock`,
//! `bucket.initial_available`, `mandate.cap_minor` and `mandate_shard.initial_remaining_minor`,
//! written at seed time and never updated by a purchase.

use super::source::{Source, Val};
use std::time::Instant;

use super::verdict::{Check, Invariant, Timing};

fn ids(rows: &[Vec<Val>]) -> Vec<String> {
    rows.iter().map(|r| r[0].text()).collect()
}

/// Run a query-backed check; a query that fails makes the check unknown, never valid.
async fn check_rows(
    src: &Source,
    name: &'static str,
    invariant: Invariant,
    sql: &str,
    detail: &str,
) -> Check {
    match src.rows(sql).await {
        Ok(rows) => Check::violations(name, invariant, rows.len() as u64, ids(&rows), detail),
        Err(e) => Check::unknown(name, invariant, format!("could not run: {e}")),
    }
}

/// Every state check, each with the time it took.
#[allow(unused_assignments)] // the last lap's mark is never read
pub async fn run(src: &Source) -> (Vec<Check>, Vec<Timing>) {
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
    checks.push(
        check_rows(
            src,
            "oversell.committed_over_stock",
            Invariant::Oversell,
            "SELECT CAST(i.item_id AS TEXT) FROM item i \
             JOIN intent n ON n.item_id = i.item_id AND n.outcome = 'COMMITTED' \
             GROUP BY i.item_id, i.initial_stock HAVING SUM(n.quantity) > i.initial_stock",
            "items whose committed units exceed the initial stock",
        )
        .await,
    );
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

    // Duplicate settlement.
    checks.push(
        check_rows(
            src,
            "duplicate_settlement.key",
            Invariant::DuplicateSettlement,
            "SELECT idem_key FROM intent GROUP BY idem_key HAVING count(*) > 1",
            "keys settled by more than one intent",
        )
        .await,
    );
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

    // Torn commits.
    checks.push(
        check_rows(
            src,
            "torn_commit.missing_rows",
            Invariant::TornCommit,
            "SELECT CAST(n.intent_id AS TEXT) FROM intent n WHERE n.outcome = 'COMMITTED' AND ( \
               NOT EXISTS (SELECT 1 FROM stock_claim c WHERE c.intent_id = n.intent_id) \
               OR NOT EXISTS (SELECT 1 FROM mandate_debit d WHERE d.intent_id = n.intent_id) \
               OR NOT EXISTS (SELECT 1 FROM ledger_txn t WHERE t.intent_id = n.intent_id))",
            "committed intents missing their claim, debit or ledger rows",
        )
        .await,
    );
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
    (checks, timings)
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

/// Costs a few milliseconds a poll whatever the number of intents: every query is over
/// the small tables (buckets, shards, ledger rows), never a scan of `intent`.
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
