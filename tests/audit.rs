//! The auditor, proven by sabotage and by hand corruption, on SQLite and PostgreSQL.

mod common;

use std::process::Command;
use std::sync::Arc;

use swarm::addr::DbUrl;
use swarm::audit::{self, Invariant, Validity};
use swarm::history::History;
use swarm::run::{self, Control, RunOptions};
use swarm::scenario::Scenario;

fn pg_server() -> String {
    // fresh_pg() starts the cluster if needed; its URL's base is the server.
    futures_block(async {
        match common::fresh_pg().await {
            DbUrl::Postgres(u) => u,
            DbUrl::Sqlite(_) => unreachable!(),
        }
    })
}

fn futures_block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt")
        .block_on(f)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sabotage_is_caught_by_exactly_its_check_on_sqlite() {
    let report = swarm::selftest::run(None).await.expect("selftest");
    assert!(report.passed, "{report}");
    assert_eq!(report.cases.len(), 13);
    assert_eq!(report.clean.len(), 5);
    exactly_its_check(&report);
}

/// The sabotages made for one check each are caught by that check alone.
fn exactly_its_check(report: &swarm::selftest::SelftestReport) {
    for case in report.cases.iter().skip(6) {
        assert!(case.others.is_empty(), "{}: {report}", case.sabotage);
    }
}

#[test]
fn every_sabotage_is_caught_by_exactly_its_check_on_postgres() {
    let server = pg_server();
    let report = futures_block(swarm::selftest::run(Some(&server))).expect("selftest");
    assert!(report.passed, "{report}");
    exactly_its_check(&report);
}

const SMALL: &str = "name = \"corrupt\"\nseed = 11\n\
catalog = { items = 1, stock = 1000, buckets = 4, price_minor = 100, currency = \"USD\" }\n\
mandates = { count = 100, cap_minor = 300, shards = 2 }\n\
agents = { count = 400, in_flight = 32 }\n\
mix = { well_behaved = 0.8, double_submit = 0.2 }\n";

/// Run `scenario` into `url` with the reference kernel and audit it: its history and the
/// report.
async fn run_and_audit(scenario: Scenario, url: &DbUrl) -> (History, audit::Report) {
    let dir = tempfile::tempdir().expect("dir");
    let run = run::execute(RunOptions {
        scenario,
        db: Some(url.clone()),
        dir: dir.path().to_path_buf(),
        shard: None,
        progress: false,
        control: Arc::new(Control::default()),
        observer: None,
        kernel_sql: swarm::sut::kernel::Sql::reference(),
        probe: true,
        run_id: run::RunId::random(),
    })
    .await
    .expect("run");
    let history = History::read(&run.history_path).expect("history");
    let report = audit::audit(audit::Input {
        db: Some(url),
        history: Some(&history),
        state_only: false,
    })
    .await;
    (history, report)
}

/// The audit of `history` in memory, and of the same history as a file with a memory budget
/// so small that it is split into many parts, must agree in every check: validity, count
/// and examples. The in-memory report comes back.
async fn audit_both_ways(db: Option<&DbUrl>, history: &History) -> audit::Report {
    let in_memory = audit::audit(audit::Input {
        db,
        history: Some(history),
        state_only: false,
    })
    .await;
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("history.bin");
    history.write(&path).expect("write");
    let split = audit::audit_files(db, &[path], 4 << 10)
        .await
        .expect("audit");
    let parts = split
        .timings
        .iter()
        .find(|t| t.phase.starts_with("history: read"))
        .map(|t| t.phase.clone())
        .unwrap_or_default();
    assert!(
        !parts.contains(" into 1 part"),
        "a 4 KiB budget should split {} records: {parts}",
        history.records.len()
    );
    assert_eq!(split.validity, in_memory.validity, "{split}\n{in_memory}");
    assert_eq!(split.checks, in_memory.checks);
    assert_eq!(
        (&split.mode, &split.skipped, &split.sold),
        (&in_memory.mode, &in_memory.skipped, &in_memory.sold)
    );
    in_memory
}

/// A clean run into `url`; its history.
async fn clean_run(url: &DbUrl) -> History {
    let scenario = Scenario::parse(std::path::Path::new("corrupt.toml"), SMALL).expect("scenario");
    let (history, report) = run_and_audit(scenario, url).await;
    assert_eq!(report.validity, Validity::Valid, "{report}");
    history
}

/// One hand corruption: how to break the database, which check must say so (and which
/// others may, because the corruption breaks them too), and the id it must give as an
/// example.
struct Corruption {
    what: &'static str,
    check: &'static str,
    invariant: Invariant,
    also: &'static [&'static str],
}

async fn corrupt(url: &DbUrl, what: &str) -> String {
    let pg = matches!(url, DbUrl::Postgres(_));
    match what {
        "delete one ledger leg" => {
            let txn = common::query_text(
                url,
                "SELECT CAST(ledger_txn_id AS TEXT) FROM ledger_txn ORDER BY ledger_txn_id LIMIT 1",
            )
            .await;
            common::execute(url, &format!(
                "DELETE FROM ledger_leg WHERE leg_id = (SELECT leg_id FROM ledger_leg WHERE CAST(ledger_txn_id AS TEXT) = '{txn}' AND signed_amount_minor > 0)"
            )).await;
            txn
        }
        "duplicate a ledger transaction" => {
            let intent = common::query_text(
                url,
                "SELECT CAST(intent_id AS TEXT) FROM ledger_txn ORDER BY intent_id LIMIT 1",
            )
            .await;
            let copy = "00000000-0000-4000-8000-00000000abcd";
            common::execute(url, &format!(
                "INSERT INTO ledger_txn (ledger_txn_id, intent_id, amount_minor, currency) \
                 SELECT '{copy}', intent_id, amount_minor, currency FROM ledger_txn WHERE CAST(intent_id AS TEXT) = '{intent}'; \
                 INSERT INTO ledger_leg (leg_id, ledger_txn_id, account, signed_amount_minor, currency) VALUES \
                 ('00000000-0000-4000-8000-00000000abc1', '{copy}', 'a', -100, 'USD'), \
                 ('00000000-0000-4000-8000-00000000abc2', '{copy}', 'b', 100, 'USD')"
            )).await;
            intent
        }
        "set a bucket to -1" => {
            let bucket = common::query_text(
                url,
                "SELECT CAST(bucket_id AS TEXT) FROM bucket ORDER BY bucket_id LIMIT 1",
            )
            .await;
            let bypass = if pg {
                "ALTER TABLE bucket DROP CONSTRAINT bucket_available_check;"
            } else {
                "PRAGMA ignore_check_constraints = ON;"
            };
            common::execute(url, &format!(
                "{bypass} UPDATE bucket SET available = -1 WHERE CAST(bucket_id AS TEXT) = '{bucket}'"
            )).await;
            bucket
        }
        "raise a shard above its cap" => {
            let mandate = common::query_text(
                url,
                "SELECT CAST(mandate_id AS TEXT) FROM mandate_debit ORDER BY mandate_id LIMIT 1",
            )
            .await;
            common::execute(url, &format!(
                "UPDATE mandate_shard SET remaining = initial_remaining_minor + 5000 \
                 WHERE shard_id = (SELECT shard_id FROM mandate_shard WHERE CAST(mandate_id AS TEXT) = '{mandate}' ORDER BY shard_id LIMIT 1)"
            )).await;
            mandate
        }
        "delete an acknowledged intent" => {
            let key = common::query_text(
                url,
                "SELECT idem_key FROM intent WHERE outcome = 'COMMITTED' ORDER BY idem_key LIMIT 1",
            )
            .await;
            common::execute(url, &format!("DELETE FROM intent WHERE idem_key = '{key}'")).await;
            key
        }
        "insert an intent with a key no client sent" => {
            let key = "nobody-sent-this-key";
            common::execute(url, &format!(
                "INSERT INTO intent (intent_id, idem_key, fingerprint, merchant_id, mandate_id, item_id, agent_id, \
                   quantity, amount_minor, currency, outcome, failure_code, ledger_txn_id, attempts, snapshot, created_at_ms) \
                 SELECT '00000000-0000-4000-8000-0000000000ff', '{key}', fingerprint, merchant_id, mandate_id, item_id, agent_id, \
                   quantity, amount_minor, currency, outcome, failure_code, ledger_txn_id, attempts, snapshot, created_at_ms \
                 FROM intent WHERE outcome = 'DECLINED' AND idem_key = (SELECT MIN(idem_key) FROM intent WHERE outcome = 'DECLINED')"
            )).await;
            key.to_string()
        }
        "move a unit between two buckets of one item" => {
            let item = "(SELECT item_id FROM stock_claim ORDER BY intent_id LIMIT 1)";
            let from = common::query_text(url, &format!(
                "SELECT CAST(bucket_id AS TEXT) FROM bucket WHERE item_id = {item} ORDER BY bucket_id LIMIT 1"
            )).await;
            common::execute(url, &format!(
                "UPDATE bucket SET available = available - 1 WHERE CAST(bucket_id AS TEXT) = '{from}'; \
                 UPDATE bucket SET available = available + 1 WHERE bucket_id = \
                   (SELECT bucket_id FROM bucket WHERE item_id = {item} ORDER BY bucket_id DESC LIMIT 1)"
            )).await;
            from
        }
        "move money between two shards of one mandate" => {
            let from = common::query_text(
                url,
                "SELECT CAST(shard_id AS TEXT) FROM mandate_shard ORDER BY remaining DESC, shard_id LIMIT 1",
            )
            .await;
            let mandate = format!(
                "(SELECT mandate_id FROM mandate_shard WHERE CAST(shard_id AS TEXT) = '{from}')"
            );
            common::execute(url, &format!(
                "UPDATE mandate_shard SET remaining = remaining + 100 \
                 WHERE shard_id = (SELECT shard_id FROM mandate_shard WHERE mandate_id = {mandate} \
                                   AND CAST(shard_id AS TEXT) <> '{from}' ORDER BY shard_id LIMIT 1); \
                 UPDATE mandate_shard SET remaining = remaining - 100 WHERE CAST(shard_id AS TEXT) = '{from}'"
            )).await;
            from
        }
        "give one unit of a claim back to its bucket" => {
            let intent = common::query_text(
                url,
                "SELECT CAST(intent_id AS TEXT) FROM stock_claim ORDER BY intent_id LIMIT 1",
            )
            .await;
            common::execute(url, &format!(
                "UPDATE bucket SET available = available + 1 WHERE bucket_id = \
                   (SELECT bucket_id FROM stock_claim WHERE CAST(intent_id AS TEXT) = '{intent}'); \
                 UPDATE stock_claim SET quantity = quantity - 1 WHERE CAST(intent_id AS TEXT) = '{intent}'"
            )).await;
            intent
        }
        "give part of a debit back to its shard" => {
            let intent = common::query_text(
                url,
                "SELECT CAST(intent_id AS TEXT) FROM mandate_debit ORDER BY intent_id LIMIT 1",
            )
            .await;
            common::execute(url, &format!(
                "UPDATE mandate_shard SET remaining = remaining + 1 WHERE shard_id = \
                   (SELECT shard_id FROM mandate_debit WHERE CAST(intent_id AS TEXT) = '{intent}'); \
                 UPDATE mandate_debit SET amount_minor = amount_minor - 1 WHERE CAST(intent_id AS TEXT) = '{intent}'"
            )).await;
            intent
        }
        "book a credit leg to another merchant" => {
            let txn = common::query_text(
                url,
                "SELECT CAST(ledger_txn_id AS TEXT) FROM ledger_txn ORDER BY ledger_txn_id LIMIT 1",
            )
            .await;
            common::execute(url, &format!(
                "UPDATE ledger_leg SET account = 'merchant:00000000-0000-4000-8000-00000000beef' \
                 WHERE CAST(ledger_txn_id AS TEXT) = '{txn}' AND signed_amount_minor > 0"
            )).await;
            txn
        }
        "point an intent at another intent's ledger transaction" => {
            let intent = common::query_text(
                url,
                "SELECT CAST(intent_id AS TEXT) FROM ledger_txn ORDER BY intent_id LIMIT 1",
            )
            .await;
            common::execute(
                url,
                &format!(
                    "UPDATE intent SET ledger_txn_id = (SELECT ledger_txn_id FROM ledger_txn \
                   WHERE CAST(intent_id AS TEXT) <> '{intent}' ORDER BY ledger_txn_id LIMIT 1) \
                 WHERE CAST(intent_id AS TEXT) = '{intent}'"
                ),
            )
            .await;
            intent
        }
        "point a declined intent at another merchant's mandate" => {
            let intent = common::query_text(
                url,
                "SELECT CAST(intent_id AS TEXT) FROM intent WHERE outcome = 'DECLINED' ORDER BY intent_id LIMIT 1",
            )
            .await;
            common::execute(url, &format!(
                "UPDATE intent SET mandate_id = (SELECT m.mandate_id FROM mandate m \
                   WHERE m.merchant_id <> (SELECT merchant_id FROM intent WHERE CAST(intent_id AS TEXT) = '{intent}') \
                   ORDER BY m.mandate_id LIMIT 1) \
                 WHERE CAST(intent_id AS TEXT) = '{intent}'"
            )).await;
            format!("intent:{intent} (mandate of another merchant)")
        }
        "price the item in another currency" => {
            common::execute(
                url,
                "UPDATE item SET currency = 'EUR' WHERE item_id = (SELECT item_id FROM stock_claim ORDER BY intent_id LIMIT 1)",
            )
            .await;
            "(item in another currency)".to_string()
        }
        "give the item a merchant that does not exist" => {
            let item = common::query_text(
                url,
                "SELECT CAST(item_id AS TEXT) FROM stock_claim ORDER BY intent_id LIMIT 1",
            )
            .await;
            common::execute(url, &format!(
                "UPDATE item SET merchant_id = '00000000-0000-4000-8000-00000000dead' WHERE CAST(item_id AS TEXT) = '{item}'"
            )).await;
            format!("item:{item}")
        }
        other => panic!("unknown corruption {other}"),
    }
}

/// The state's corruptions each break exactly one check: `also` is empty.
const CORRUPTIONS: [Corruption; 15] = [
    Corruption {
        what: "delete one ledger leg",
        check: "ledger_drift.unbalanced_txn",
        invariant: Invariant::LedgerDrift,
        also: &["ledger_drift.global_sum", "ledger_drift.wrong_legs"],
    },
    Corruption {
        what: "duplicate a ledger transaction",
        check: "duplicate_settlement.ledger",
        invariant: Invariant::DuplicateSettlement,
        also: &["ledger_drift.amount_mismatch", "ledger_drift.wrong_legs"],
    },
    Corruption {
        what: "set a bucket to -1",
        check: "oversell.negative_bucket",
        invariant: Invariant::Oversell,
        also: &[
            "oversell.stock_not_conserved",
            "oversell.bucket_not_conserved",
        ],
    },
    Corruption {
        what: "raise a shard above its cap",
        check: "mandate_breach.not_conserved",
        invariant: Invariant::MandateBreach,
        also: &["mandate_breach.shard_not_conserved"],
    },
    Corruption {
        what: "delete an acknowledged intent",
        check: "history.lost_commit",
        invariant: Invariant::History,
        also: &[
            "torn_commit.orphan_rows",
            "oversell.claim_mismatch",
            "mandate_breach.debit_mismatch",
            "ledger_drift.wrong_legs",
            "history.interval",
        ],
    },
    Corruption {
        what: "insert an intent with a key no client sent",
        check: "history.phantom_commit",
        invariant: Invariant::History,
        // A copied snapshot names the original's intent id.
        also: &["torn_commit.snapshot_mismatch"],
    },
    Corruption {
        what: "move a unit between two buckets of one item",
        check: "oversell.bucket_not_conserved",
        invariant: Invariant::Oversell,
        also: &[],
    },
    Corruption {
        what: "move money between two shards of one mandate",
        check: "mandate_breach.shard_not_conserved",
        invariant: Invariant::MandateBreach,
        also: &[],
    },
    Corruption {
        what: "give one unit of a claim back to its bucket",
        check: "oversell.claim_mismatch",
        invariant: Invariant::Oversell,
        also: &[],
    },
    Corruption {
        what: "give part of a debit back to its shard",
        check: "mandate_breach.debit_mismatch",
        invariant: Invariant::MandateBreach,
        also: &[],
    },
    Corruption {
        what: "book a credit leg to another merchant",
        check: "ledger_drift.wrong_legs",
        invariant: Invariant::LedgerDrift,
        also: &[],
    },
    Corruption {
        what: "point an intent at another intent's ledger transaction",
        check: "torn_commit.snapshot_mismatch",
        invariant: Invariant::TornCommit,
        also: &[],
    },
    Corruption {
        what: "point a declined intent at another merchant's mandate",
        check: "torn_commit.broken_reference",
        invariant: Invariant::TornCommit,
        also: &[],
    },
    Corruption {
        what: "price the item in another currency",
        check: "torn_commit.broken_reference",
        invariant: Invariant::TornCommit,
        also: &[],
    },
    Corruption {
        what: "give the item a merchant that does not exist",
        check: "torn_commit.broken_reference",
        invariant: Invariant::TornCommit,
        also: &[],
    },
];

async fn hand_corruptions_are_flagged_on(
    make_db: impl AsyncFn() -> (Option<tempfile::TempDir>, DbUrl),
) {
    for c in CORRUPTIONS {
        let (_guard, url) = make_db().await;
        let history = clean_run(&url).await;
        let example = corrupt(&url, c.what).await;
        let report = audit_both_ways(Some(&url), &history).await;
        assert_eq!(report.validity, Validity::Invalid, "{}: {report}", c.what);
        let check = report
            .check(c.check)
            .unwrap_or_else(|| panic!("{} missing", c.check));
        assert_eq!(check.invariant, c.invariant);
        assert!(check.count >= 1, "{}: {report}", c.what);
        assert!(
            check.examples.iter().any(|e| e.contains(&example)),
            "{}: {} should name {example}: {:?}",
            c.what,
            c.check,
            check.examples
        );
        let others: Vec<&str> = report
            .checks
            .iter()
            .filter(|x| x.validity == Validity::Invalid && x.name != c.check)
            .map(|x| x.name.as_str())
            .filter(|name| !c.also.contains(name))
            .collect();
        assert!(
            others.is_empty(),
            "{}: other checks fired: {others:?}",
            c.what
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_corruptions_are_flagged_with_their_ids_on_sqlite() {
    hand_corruptions_are_flagged_on(async || {
        let (g, u) = common::fresh_sqlite();
        (Some(g), u)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_corruptions_are_flagged_with_their_ids_on_postgres() {
    hand_corruptions_are_flagged_on(async || (None, common::fresh_pg().await)).await;
}

/// A history and a database that disagree in many ways at once: the audit split into parts
/// by a tiny memory budget finds the same, with the same first examples.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audit_past_its_memory_budget_finds_the_same_as_one_in_memory() {
    use swarm::history::{Code, Kind};
    let (_g, url) = common::fresh_sqlite();
    let mut history = clean_run(&url).await;
    // Acknowledged commits deleted from the database: lost commits, orphan rows.
    common::execute(
        &url,
        "DELETE FROM intent WHERE idem_key IN \
           (SELECT idem_key FROM intent WHERE outcome = 'COMMITTED' ORDER BY idem_key DESC LIMIT 25)",
    )
    .await;
    // Answers that differ from the stored snapshots, and answers that never came (the
    // final reads, which would answer those keys again, left out).
    history
        .records
        .retain(|r| r.op != swarm::history::Op::FinalRead);
    for (i, r) in history.records.iter_mut().enumerate() {
        if i % 5 == 0 && r.kind() == Kind::Ok {
            r.response_hash ^= 1;
        } else if i % 11 == 0 && r.kind() == Kind::Ok {
            r.code = Code::Timeout;
            r.status = 0;
        }
    }
    let report = audit_both_ways(Some(&url), &history).await;
    for (check, at_least) in [
        ("history.lost_commit", 11),
        ("history.snapshot_mismatch", 11),
        ("history.unresolved", 11),
    ] {
        let c = report.check(check).expect(check);
        assert!(c.count >= at_least, "{check}: {c:?}");
        assert_eq!(c.examples.len(), 10, "{check}");
    }
    assert_eq!(report.validity, Validity::Invalid);
    // And without the database.
    audit_both_ways(None, &history).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_that_is_not_a_number_is_a_finding_not_a_zero() {
    // SQLite keeps what it is given: a text where a count belongs, as a database swarm did
    // not write may hold, is named, not summed as 0.
    let (_g, url) = common::fresh_sqlite();
    let _history = clean_run(&url).await;
    common::execute(
        &url,
        "UPDATE bucket SET available = 'lots' WHERE rowid = (SELECT min(rowid) FROM bucket)",
    )
    .await;
    // And an intent's amount, read by the one pass over every intent.
    common::execute(
        &url,
        "UPDATE intent SET amount_minor = 'much' WHERE rowid = (SELECT min(rowid) FROM intent)",
    )
    .await;
    let report = audit::audit(audit::Input {
        db: Some(&url),
        history: None,
        state_only: true,
    })
    .await;
    let c = report.check("torn_commit.unreadable_value").expect("check");
    assert_eq!((c.validity, c.count), (Validity::Invalid, 2), "{c:?}");
    assert!(
        c.examples
            .iter()
            .any(|e| e.starts_with("bucket.available:")),
        "{c:?}"
    );
    assert!(
        c.examples
            .iter()
            .any(|e| e.starts_with("intent.amount_minor:")),
        "{c:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_only_audit_says_what_it_could_not_check() {
    let (_g, url) = common::fresh_sqlite();
    let history = clean_run(&url).await;
    let report = audit::audit(audit::Input {
        db: None,
        history: Some(&history),
        state_only: false,
    })
    .await;
    assert_eq!(report.validity, Validity::Valid, "{report}");
    assert_eq!(report.mode, "history-only");
    assert!(
        report
            .skipped
            .iter()
            .any(|s| s == "oversell.negative_bucket")
    );
    assert!(report.skipped.iter().any(|s| s == "history.lost_commit"));
    assert!(
        report
            .check("oversell.acknowledged_over_declared")
            .is_some()
    );
    // A history that claims more sales than the declared stock is caught without a database.
    let mut inflated = history.clone();
    inflated.header.stock_per_item = 1;
    let report = audit::audit(audit::Input {
        db: None,
        history: Some(&inflated),
        state_only: false,
    })
    .await;
    assert_eq!(report.validity, Validity::Invalid, "{report}");
    // Counted in units sold past the declared one unit (one item).
    let acknowledged: std::collections::BTreeMap<String, u16> = history
        .records
        .iter()
        .filter(|r| r.code == swarm::history::Code::Committed)
        .map(|r| (history.key_of(r), r.quantity))
        .collect();
    let units: u64 = acknowledged.values().map(|q| u64::from(*q)).sum();
    let check = report
        .check("oversell.acknowledged_over_declared")
        .expect("check");
    assert_eq!(check.count, units - 1, "{report}");
    assert!(check.examples[0].contains(&format!("+{} units", units - 1)));
}

#[test]
fn unreadable_history_and_missing_tables_are_never_valid() {
    let tmp = tempfile::tempdir().expect("tmp");
    let garbage = tmp.path().join("history.bin");
    std::fs::write(&garbage, b"not a history").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_swarm"))
        .args(["audit", "--history", &garbage.display().to_string()])
        .output()
        .expect("swarm");
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a swarm history file"));

    let empty = tmp.path().join("empty.db");
    rusqlite::Connection::open(&empty)
        .expect("create")
        .execute_batch("CREATE TABLE x (y INT)")
        .expect("table");
    let out = Command::new(env!("CARGO_BIN_EXE_swarm"))
        .args([
            "audit",
            "--db",
            &format!("sqlite://{}", empty.display()),
            "--json",
        ])
        .env_remove("DATABASE_URL")
        .output()
        .expect("swarm");
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["validity"], "unknown");
}

#[test]
fn the_auditor_never_imports_the_kernel() {
    let mut dirs = vec![common::repo().join("src/audit")];
    let mut files = Vec::new();
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("src/audit") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    assert!(
        files
            .iter()
            .any(|f| f.ends_with("history_checks/checks.rs"))
    );
    for path in files {
        let text = std::fs::read_to_string(&path).expect("read");
        for line in text.lines().filter(|l| l.trim_start().starts_with("use ")) {
            assert!(!line.contains("kernel"), "{}: {line}", path.display());
        }
        assert!(!text.contains("crate::sut::kernel"), "{}", path.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_counters_see_a_negative_bucket_and_a_double_settlement() {
    let (_g, url) = common::fresh_sqlite();
    clean_run(&url).await;
    let src = audit::Source::open(&url).await.expect("source");
    let clean = audit::live(&src).await.expect("poll");
    assert_eq!(
        (
            clean.oversells,
            clean.duplicate_settlements,
            clean.ledger_drift,
            clean.mandate_breaches
        ),
        (0, 0, 0, 0)
    );
    corrupt(&url, "set a bucket to -1").await;
    corrupt(&url, "duplicate a ledger transaction").await;
    common::execute(&url, "UPDATE ledger_leg SET signed_amount_minor = signed_amount_minor + 1 WHERE signed_amount_minor > 0 AND leg_id = (SELECT MIN(leg_id) FROM ledger_leg WHERE signed_amount_minor > 0)").await;
    let dirty = audit::live(&src).await.expect("poll");
    assert!(dirty.oversells >= 1, "{dirty:?}");
    assert!(dirty.duplicate_settlements >= 1, "{dirty:?}");
    assert_eq!(dirty.ledger_drift, 1, "{dirty:?}");
}

/// The shipped scenarios over 20 seeds each, scaled to 1,500 agents (faults, mix, catalog
/// and mandates as written): every clean run is valid. `make_db` gives a fresh database
/// per run; `drop_db` cleans it up.
async fn twenty_seeds_are_valid_on(
    make_db: impl AsyncFn() -> (Option<tempfile::TempDir>, DbUrl),
    drop_db: impl AsyncFn(&DbUrl),
) {
    for name in ["smoke", "failover", "mandates", "contention"] {
        let path = common::repo().join(format!("scenarios/{name}.toml"));
        let mut failures = Vec::new();
        for seed in 1..=20u64 {
            let mut scenario = Scenario::load(&path).expect("scenario");
            scenario.seed = seed;
            scenario.agents.count = 1500;
            let (_guard, url) = make_db().await;
            let (_, report) = run_and_audit(scenario, &url).await;
            if report.validity != Validity::Valid {
                failures.push(format!("{name} seed {seed}:\n{report}"));
            }
            drop_db(&url).await;
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_seeds_of_every_scenario_are_valid_on_sqlite() {
    twenty_seeds_are_valid_on(
        async || {
            let (g, u) = common::fresh_sqlite();
            (Some(g), u)
        },
        async |_| {},
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_seeds_of_every_scenario_are_valid_on_postgres() {
    twenty_seeds_are_valid_on(
        async || (None, common::fresh_pg().await),
        async |url| common::drop_pg(url).await,
    )
    .await;
}

/// The checks page the README links to, `docs/checks.md` ("What the audit checks"), names
/// every check the auditor runs (full and history-only audits, the run and database checks
/// included) and every conformance check `docs/contracts.md` describes. (The name is from
/// when the list was a section of the README.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_lists_every_check() {
    let read = |page: &str| std::fs::read_to_string(common::repo().join(page)).expect(page);
    let section = read("docs/checks.md");
    assert!(
        read("README.md").contains("(docs/checks.md)"),
        "the README links docs/checks.md"
    );
    // The probe's checks are described in contracts.md; the checks page names each.
    let contracts = read("docs/contracts.md");
    let mut conformance: Vec<&str> = contracts
        .match_indices("`conformance.")
        .filter_map(|(i, _)| {
            let name = &contracts[i + 1..];
            name.find('`').map(|end| &name[..end])
        })
        .collect();
    conformance.sort();
    conformance.dedup();
    assert!(conformance.len() >= 6, "{conformance:?}");
    let unlisted: Vec<&&str> = conformance
        .iter()
        .filter(|n| !section.contains(&format!("`{n}`")))
        .collect();
    assert!(
        unlisted.is_empty(),
        "docs/checks.md does not name {unlisted:?}"
    );
    let (_g, url) = common::fresh_sqlite();
    let history = clean_run(&url).await;
    let mut names: Vec<String> = Vec::new();
    for db in [Some(&url), None] {
        let report = audit::audit(audit::Input {
            db,
            history: Some(&history),
            state_only: false,
        })
        .await;
        names.extend(report.checks.iter().map(|c| c.name.clone()));
        names.extend(report.skipped.iter().cloned());
    }
    names.push("database.readable".into());
    names.sort();
    names.dedup();
    assert!(names.len() > 40, "{names:?}");
    let missing: Vec<&String> = names
        .iter()
        .filter(|n| !section.contains(&format!("`{n}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/checks.md does not list {missing:?}"
    );
}
