//! The auditor: proves the invariants from the database's raw rows and the client history.
//!
//! Invariants: this module never imports `kernel`; it re-derives every figure from rows
//! and records, so a kernel bug cannot hide in code the two share. Each check is a small
//! function returning a verdict with a count and examples; a check that cannot decide is
//! `unknown`, never `valid`; the report's validity is the worst of its checks.

mod facts;
mod history_checks;
mod intents;
mod source;
mod state;
mod verdict;

use crate::addr::DbUrl;
use crate::history::{Cut, Header, History};

pub use source::Source;
pub use state::LiveCounts;
pub use verdict::{Check, Invariant, ItemSold, MAX_EXAMPLES, Report, Timing, Validity};

use std::time::Instant;

/// What to audit.
pub struct Input<'a> {
    pub db: Option<&'a DbUrl>,
    pub history: Option<&'a History>,
    /// The state checks alone: a database whose last run never finished is audited
    /// anyway, without the `run.finished` check.
    pub state_only: bool,
}

const STATE_CHECKS: &[&str] = &[
    "oversell.negative_bucket",
    "oversell.committed_over_stock",
    "oversell.stock_not_conserved",
    "oversell.bucket_not_conserved",
    "oversell.claim_mismatch",
    "duplicate_settlement.key",
    "duplicate_settlement.ledger",
    "ledger_drift.global_sum",
    "ledger_drift.unbalanced_txn",
    "ledger_drift.amount_mismatch",
    "ledger_drift.wrong_legs",
    "mandate_breach.negative_shard",
    "mandate_breach.over_cap",
    "mandate_breach.not_conserved",
    "mandate_breach.shard_not_conserved",
    "mandate_breach.debit_mismatch",
    "torn_commit.missing_rows",
    "torn_commit.orphan_rows",
    "torn_commit.snapshot_mismatch",
    "torn_commit.broken_reference",
];

const DB_HISTORY_CHECKS: &[&str] = &[
    "history.lost_commit",
    "history.phantom_commit",
    "history.snapshot_mismatch",
    "history.payload_mismatch",
    "history.interval",
];

/// Checks that need every shard's history; a shard's own audit leaves them to `merge`.
const SHARD_DEFERRED: &[&str] = &[
    "history.phantom_commit",
    "history.interval",
    "duplicate_settlement.per_purchase",
    "duplicate_settlement.per_purchase_client",
];

const HISTORY_CHECKS: &[&str] = &[
    "history.complete",
    "run.exercised",
    "history.replay_mismatch",
    "history.replay_layout",
    "history.false_failure",
    "contract.unparseable",
    "contract.missing_field",
    "contract.float_money",
    "contract.status_mismatch",
    "contract.payload_mismatch",
    "contract.replay_not_marked",
    "history.payload_not_refused",
    "duplicate_settlement.double_submit",
    "history.unresolved",
];

/// Run every check the input allows.
pub async fn audit(input: Input<'_>) -> Report {
    let clock = Instant::now();
    let facts = input
        .history
        .map(|h| (h.header.clone(), facts::key_facts(h)));
    let grouped = Timing::since("history: group records by key", clock);
    let cut = input.history.and_then(|h| h.cut.clone());
    let mut report = audit_facts(input.db, facts, input.state_only, cut).await;
    report.timings.insert(0, grouped);
    report
}

/// `audit` for a history it may consume: the records are freed once grouped by key, so a
/// million-agent run is audited without holding records, key facts and intents at once.
pub async fn audit_owned(db: Option<&DbUrl>, mut history: History) -> Report {
    let clock = Instant::now();
    let facts = facts::key_facts(&history);
    history.records = Vec::new();
    let grouped = Timing::since("history: group records by key", clock);
    let mut report = audit_facts(db, Some((history.header, facts)), false, history.cut).await;
    report.timings.insert(0, grouped);
    report
}

async fn audit_facts(
    db: Option<&DbUrl>,
    history: Option<(Header, Vec<facts::KeyFacts>)>,
    state_only: bool,
    cut: Option<Cut>,
) -> Report {
    let mut checks = Vec::new();
    let mut skipped: Vec<String> = Vec::new();
    let source = match db {
        Some(url) => match Source::open(url).await {
            Ok(s) => Some(s),
            Err(e) => {
                checks.push(Check::unknown(
                    "database.readable",
                    Invariant::History,
                    format!("cannot open {url}: {e}"),
                ));
                None
            }
        },
        None => None,
    };
    let mut timings = Vec::new();
    if let (Some(src), false) = (&source, state_only) {
        // The run whose history is audited has not written its finish marker yet.
        let auditing = history.as_ref().map(|(h, _)| h.run_id.as_str());
        checks.extend(state::run_finished(src, auditing).await);
    }
    // Every intent is read once: for the state checks that need each row, and (with a
    // history) for the comparison with what clients were told.
    let mut loaded: Result<intents::Intents, String> = Err("no database".into());
    let mut sold = Vec::new();
    if let Some(src) = &source {
        let clock = Instant::now();
        let prefix = history.as_ref().map(|(h, _)| h.key_prefix.as_str());
        let scan = intents::scan(src, prefix).await.map_err(|e| e.to_string());
        timings.push(Timing::since("read every intent", clock));
        let (state_checks, state_timings) = state::run(src, &scan).await;
        checks.extend(state_checks);
        timings.extend(state_timings);
        loaded = scan.map(|mut s| {
            sold = std::mem::take(&mut s.sold);
            s.intents.unwrap_or_default()
        });
    } else if db.is_none() {
        skipped.extend(STATE_CHECKS.iter().map(|s| s.to_string()));
    }
    let shard = history.as_ref().is_some_and(|(h, _)| h.shard.is_some());
    let mode = match (db.is_some(), history.is_some()) {
        // One shard's history cannot explain the others' intents: some checks wait for
        // `swarm merge`, and the mode says so beside them.
        (true, true) if shard => "shard",
        (true, true) => "full",
        (true, false) => "state-only",
        (false, _) => "history-only",
    };
    match history {
        Some((header, facts)) => {
            let clock = Instant::now();
            checks.extend(history_checks::history_only(&header, &facts, cut.as_ref()));
            timings.push(Timing::since("history: client-side checks", clock));
            match &source {
                Some(_) => {
                    match loaded {
                        Ok(intents) => {
                            let clock = Instant::now();
                            let mut cross =
                                history_checks::against_db(&header, &facts, &intents, cut.as_ref());
                            if header.shard.is_some() {
                                // One shard's history cannot explain the other shards'
                                // intents: those checks belong to `swarm merge`.
                                cross.retain(|c| {
                                    let partial = SHARD_DEFERRED.contains(&c.name.as_str());
                                    if partial {
                                        skipped.push(c.name.clone());
                                    }
                                    !partial
                                });
                            }
                            checks.extend(cross);
                            timings
                                .push(Timing::since("history: compare with the database", clock));
                        }
                        Err(e) => {
                            for name in DB_HISTORY_CHECKS {
                                checks.push(Check::unknown(
                                    name,
                                    Invariant::History,
                                    format!("could not read intents: {e}"),
                                ));
                            }
                        }
                    }
                }
                None if db.is_none() => {
                    checks.extend(history_checks::declared(&header, &facts));
                    sold = history_checks::acknowledged_sales(&header, &facts);
                    skipped.extend(DB_HISTORY_CHECKS.iter().map(|s| s.to_string()));
                }
                None => {}
            }
        }
        None => {
            skipped.extend(HISTORY_CHECKS.iter().map(|s| s.to_string()));
            skipped.extend(DB_HISTORY_CHECKS.iter().map(|s| s.to_string()));
        }
    }
    let mut report = Report::new(mode, checks, skipped);
    report.timings = timings;
    report.sold = sold;
    report
}

/// One poll of the live subset on `src`.
pub async fn live(src: &Source) -> Result<LiveCounts, crate::sut::db::DbError> {
    state::live(src).await
}
