//! The auditor: proves the invariants from the database's raw rows and the client history.
//!
//! Invariants: this module never imports `kernel`; it re-derives every figure from rows
//! and records, so a kernel bug cannot hide in code the two share. Each check is a small
//! function returning a verdict with a count and examples; a check that cannot decide is
//! `unknown`, never `valid`; the report's validity is the worst of its checks.

mod facts;
mod firsts;
mod history_checks;
mod intents;
mod open_keys;
mod parts;
mod source;
mod state;
mod verdict;

use std::path::PathBuf;

use thiserror::Error;

use crate::addr::DbUrl;
use crate::history::{Ending, Header, History, HistoryError, RECORD_BYTES, Reader};
use parts::Parts;

pub use open_keys::{MAX_OPEN_KEYS, OpenKey, OpenKeys, SentPayload};
pub use parts::DEFAULT_BUDGET_BYTES;
pub use source::Source;
pub use state::LiveCounts;
pub use verdict::{Check, Invariant, ItemSold, MAX_EXAMPLES, Report, Timing, Validity};

use std::time::Instant;

/// What to audit, with the history in memory (tests, the selftest's small runs).
pub struct Input<'a> {
    pub db: Option<&'a DbUrl>,
    pub history: Option<&'a History>,
    /// The state checks alone: a database whose last run never finished is audited
    /// anyway, without the `run.finished` check.
    pub state_only: bool,
}

/// Why an audit of history files could not run.
#[derive(Debug, Error)]
pub enum AuditError {
    #[error("{0}")]
    History(#[from] HistoryError),
    #[error("the audit's work files: {0}")]
    Work(#[from] std::io::Error),
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
    "torn_commit.unreadable_value",
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
    "contract.fresh_marked_replayed",
    "history.payload_not_refused",
    "duplicate_settlement.double_submit",
    "duplicate_settlement.key_executions",
    "history.key_not_kept",
    "history.false_decline",
    "history.lost_write",
    "history.unresolved",
];

/// Run every check the input allows (the history, if any, in memory).
pub async fn audit(input: Input<'_>) -> Report {
    let history = input.history.map(Histories::Memory);
    let opts = Options {
        state_only: input.state_only,
        budget_bytes: DEFAULT_BUDGET_BYTES,
        collect_open: false,
    };
    match run(input.db, history, opts).await {
        Ok(audited) => audited.report,
        // A history in memory is split like a file's: should its work files fail, the
        // verdict is unknown, saying why.
        Err(e) => unreadable(&e),
    }
}

/// The report of an audit that could not read its history: unknown, saying why.
pub fn unreadable(e: &AuditError) -> Report {
    Report::new(
        "history-only",
        vec![Check::unknown(
            "history.complete",
            Invariant::History,
            e.to_string(),
        )],
        Vec::new(),
    )
}

/// Audit history files (one run's, or every shard's of one run, read in turn) against
/// `db`, holding about `budget_bytes` of records, facts and intents at a time: beyond it
/// the records and intents are split by agent into temporary files and compared part by
/// part, with the same verdict, counts and examples.
pub async fn audit_files(
    db: Option<&DbUrl>,
    paths: &[PathBuf],
    budget_bytes: u64,
) -> Result<Report, AuditError> {
    let opts = Options {
        state_only: false,
        budget_bytes,
        collect_open: false,
    };
    Ok(run(db, Some(open_files(paths)?), opts).await?.report)
}

/// Audit `path` against `db`, keeping the open keys (what `swarm resolve` replays).
pub async fn open_keys(
    db: Option<&DbUrl>,
    path: &std::path::Path,
    budget_bytes: u64,
) -> Result<Audited, AuditError> {
    let opts = Options {
        state_only: false,
        budget_bytes,
        collect_open: true,
    };
    run(db, Some(open_files(&[path.to_path_buf()])?), opts).await
}

fn open_files(paths: &[PathBuf]) -> Result<Histories<'static>, AuditError> {
    let mut readers = Vec::with_capacity(paths.len());
    for p in paths {
        let len = std::fs::metadata(p)
            .map_err(|source| HistoryError::Io {
                path: p.display().to_string(),
                source,
            })?
            .len();
        readers.push((Reader::open(p)?, len));
    }
    Ok(Histories::Files(readers))
}

/// Where the audited history is.
enum Histories<'a> {
    Memory(&'a History),
    /// Readers at their first record, with the files' lengths (at least one).
    Files(Vec<(Reader, u64)>),
}

impl Histories<'_> {
    /// The run's header (of several shards', the first, without its shard); `None` for
    /// an empty list of files.
    fn header(&self) -> Option<Header> {
        match self {
            Histories::Memory(h) => Some(h.header.clone()),
            Histories::Files(readers) => {
                let mut header = readers.first()?.0.header().clone();
                if readers.len() > 1 {
                    header.shard = None;
                }
                Some(header)
            }
        }
    }

    /// About how many records there are (a file holds at most its length in records).
    fn records_estimate(&self) -> u64 {
        match self {
            Histories::Memory(h) => h.records.len() as u64,
            Histories::Files(readers) => {
                readers.iter().map(|(_, len)| len).sum::<u64>() / RECORD_BYTES as u64
            }
        }
    }

    /// Put every record in `parts`; what the files say at their end (of several shards',
    /// the first cut, and every contract example).
    fn split(self, parts: &mut Parts) -> Result<Ending, AuditError> {
        match self {
            Histories::Memory(h) => {
                for r in &h.records {
                    parts.push_record(r)?;
                }
                Ok(Ending {
                    cut: h.cut.clone(),
                    ..Ending::default()
                })
            }
            Histories::Files(readers) => {
                let mut all = Ending::default();
                let mut batch = Vec::new();
                for (mut reader, _) in readers {
                    while reader.next_records(&mut batch)? {
                        for r in batch.drain(..) {
                            parts.push_record(&r)?;
                        }
                    }
                    let ending = reader.ending();
                    if all.cut.is_none() {
                        all.cut = ending.cut;
                    }
                    if all.resumed_after.is_none() {
                        all.resumed_after = ending.resumed_after;
                    }
                    all.contract_examples.extend(ending.contract_examples);
                }
                Ok(all)
            }
        }
    }
}

/// How an audit runs.
#[derive(Clone, Copy)]
struct Options {
    /// The state checks alone (see `Input::state_only`).
    state_only: bool,
    budget_bytes: u64,
    /// Keep the open keys (`swarm resolve`).
    collect_open: bool,
}

/// An audit's report, and what it learned of the history on the way: what the file says
/// at its end, how many records it holds, and (when asked) the keys left open, at most
/// `MAX_OPEN_KEYS`.
pub struct Audited {
    pub report: Report,
    pub ending: Ending,
    pub records: u64,
    pub open: OpenKeys,
}

async fn run(
    db: Option<&DbUrl>,
    history: Option<Histories<'_>>,
    opts: Options,
) -> Result<Audited, AuditError> {
    let Options {
        state_only,
        budget_bytes,
        collect_open,
    } = opts;
    let mut checks = Vec::new();
    let mut skipped: Vec<String> = Vec::new();
    let mut timings = Vec::new();
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
    let mut header = history.as_ref().and_then(Histories::header);
    if let (Some(src), false) = (&source, state_only) {
        // The run whose history is audited has not written its finish marker yet.
        let auditing = header.as_ref().map(|h| h.run_id.as_str());
        checks.extend(state::run_finished(src, auditing).await);
    }
    // The history's records go to their parts first; the intents follow in the scan.
    let mut parts = None;
    let mut ending = Ending::default();
    let mut records = 0;
    let mut open = OpenKeys::default();
    let mut tally_threads = 1;
    if let (Some(history), Some(h)) = (history, header.as_mut()) {
        let clock = Instant::now();
        let intents = match &source {
            Some(src) => state::intent_count(src).await.unwrap_or(0),
            None => 0,
        };
        let records_estimate = history.records_estimate();
        // Spilled, parts are tallied `TALLY_THREADS` at a time, each within its share of
        // the budget; past `MAX_PARTS` such shares, one at a time within the whole.
        let (n, threads) = match parts::count_for(records_estimate, intents, budget_bytes) {
            1 => (1, 1),
            whole => {
                let share = budget_bytes / TALLY_THREADS as u64;
                match parts::count_for(records_estimate, intents, share) {
                    shared if shared < parts::MAX_PARTS => (shared, TALLY_THREADS),
                    _ => (whole, 1),
                }
            }
        };
        tally_threads = threads;
        let mut p = Parts::new(n, budget_bytes, records_estimate)?;
        let read = history.split(&mut p)?;
        if h.contract_examples.is_empty() {
            h.contract_examples = read.contract_examples.clone();
        }
        ending = read;
        records = p.records_in;
        timings.push(Timing::since(
            format!("history: read {} records into {n} part(s)", p.records_in),
            clock,
        ));
        parts = Some(p);
    }
    // Every intent is read once: for the state checks that need each row, and (with a
    // history) into the parts, for the comparison with what clients were told.
    let mut scanned: Result<intents::Scan, String> = Err("no database".into());
    let mut sold = Vec::new();
    if let Some(src) = &source {
        let clock = Instant::now();
        let into = match (&header, parts.as_mut()) {
            (Some(h), Some(p)) => Some((h, p)),
            _ => None,
        };
        let scan = intents::scan(src, into).await.map_err(|e| e.to_string());
        timings.push(Timing::since("read every intent", clock));
        let (state_checks, state_timings) = state::run(src, &scan).await;
        checks.extend(state_checks);
        timings.extend(state_timings);
        scanned = scan.map(|mut s| {
            sold = std::mem::take(&mut s.sold);
            s
        });
    } else if db.is_none() {
        skipped.extend(STATE_CHECKS.iter().map(|s| s.to_string()));
    }
    let shard = header.as_ref().is_some_and(|h| h.shard.is_some());
    let mode = match (db.is_some(), header.is_some()) {
        // One shard's history cannot explain the others' intents: some checks wait for
        // `swarm merge`, and the mode says so beside them.
        (true, true) if shard => "shard",
        (true, true) => "full",
        (true, false) => "state-only",
        (false, _) => "history-only",
    };
    match (header, parts) {
        (Some(header), Some(parts)) => {
            let clock = Instant::now();
            let compare = source.is_some() && scanned.is_ok();
            let part_count = parts.count();
            let mut tally = tally_parts(parts, &header, compare, collect_open, tally_threads)?;
            timings.push(Timing::since(
                format!("history: group by key and compare, {part_count} part(s)"),
                clock,
            ));
            open = tally.take_open();
            checks.extend(tally.history_only(&header, &ending));
            match (&source, scanned) {
                (Some(_), Ok(scan)) => {
                    tally.foreign(&scan.foreign.keys, &scan.foreign.claimed);
                    let mut cross =
                        tally.against_db_checks(&header, &scan.items, ending.cut.as_ref());
                    if header.shard.is_some() {
                        // One shard's history cannot explain the other shards' intents:
                        // those checks belong to `swarm merge`.
                        cross.retain(|c| {
                            let partial = SHARD_DEFERRED.contains(&c.name.as_str());
                            if partial {
                                skipped.push(c.name.clone());
                            }
                            !partial
                        });
                    }
                    checks.extend(cross);
                }
                (Some(_), Err(e)) => {
                    for name in DB_HISTORY_CHECKS {
                        checks.push(Check::unknown(
                            name,
                            Invariant::History,
                            format!("could not read intents: {e}"),
                        ));
                    }
                }
                (None, _) if db.is_none() => {
                    checks.extend(tally.declared(&header));
                    sold = tally.acknowledged_sales(&header);
                    skipped.extend(DB_HISTORY_CHECKS.iter().map(|s| s.to_string()));
                }
                (None, _) => {}
            }
        }
        _ => {
            skipped.extend(HISTORY_CHECKS.iter().map(|s| s.to_string()));
            skipped.extend(DB_HISTORY_CHECKS.iter().map(|s| s.to_string()));
        }
    }
    let mut report = Report::new(mode, checks, skipped);
    report.timings = timings;
    report.sold = sold;
    Ok(Audited {
        report,
        ending,
        records,
        open,
    })
}

/// Threads that group and compare parts at once (each holds one part).
const TALLY_THREADS: usize = 2;

/// One tallying thread's vectors, the facts and intents reused from part to part (a
/// part's records are let go before its intents come, so theirs is not kept).
#[derive(Default)]
struct Buffers {
    facts: Vec<facts::KeyFacts>,
    intents: Vec<parts::PartIntent>,
}

/// Group every part's records by key and compare them with its intents (`compare`), one
/// tally per part, `threads` parts at a time (a round), added up in part order after each
/// round: the same tally as one pass over the parts in order, with at most `threads`
/// parts and tallies held at once.
fn tally_parts(
    parts: Parts,
    header: &Header,
    compare: bool,
    collect_open: bool,
    threads: usize,
) -> Result<history_checks::Tally, AuditError> {
    let count = parts.count();
    let marked = header.replay_marker != "none";
    let new_tally = || match collect_open {
        true => history_checks::Tally::collecting(),
        false => history_checks::Tally::default(),
    };
    let parts = std::sync::Mutex::new(parts);
    let one = |i: usize, b: &mut Buffers| -> Result<history_checks::Tally, AuditError> {
        let mut records = Vec::new();
        parts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take_records(i, &mut records)?;
        facts::key_facts(&mut records, marked, &mut b.facts);
        // The records are let go before the intents come: a part holds its facts beside
        // one of the two, as the budget counts it.
        drop(records);
        let intents = match compare {
            true => {
                parts
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take_intents(i, &mut b.intents)?;
                b.intents.sort_unstable_by_key(|d| d.id);
                Some(b.intents.as_slice())
            }
            false => None,
        };
        let mut tally = new_tally();
        tally.part(header, &b.facts, intents);
        Ok(tally)
    };
    let mut buffers: Vec<Buffers> = (0..threads.clamp(1, count.max(1)))
        .map(|_| Buffers::default())
        .collect();
    let mut total = new_tally();
    for round in (0..count).step_by(buffers.len()) {
        let ids = round..(round + buffers.len()).min(count);
        let tallies: Vec<Result<history_checks::Tally, AuditError>> = if ids.len() == 1 {
            vec![one(round, &mut buffers[0])]
        } else {
            std::thread::scope(|scope| {
                let running: Vec<_> = ids
                    .zip(buffers.iter_mut())
                    .map(|(i, b)| scope.spawn(move || one(i, b)))
                    .collect();
                // Every thread joined before any error is returned.
                running
                    .into_iter()
                    .map(|t| {
                        t.join().unwrap_or_else(|_| {
                            Err(std::io::Error::other("a tally thread panicked").into())
                        })
                    })
                    .collect()
            })
        };
        for t in tallies {
            total.absorb(t?);
        }
    }
    Ok(total)
}

/// One poll of the live subset on `src`.
pub async fn live(src: &Source) -> Result<LiveCounts, crate::sut::db::DbError> {
    state::live(src).await
}
