//! A run never lands on an earlier one: `swarm run` into a report directory or a database
//! that already holds a run refuses (64) and says how to go on; `--audit-leftover` audits
//! the leftover's state, keeps that audit, and starts clean; an invalid leftover database
//! is left as it is.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use swarm::addr::DbUrl;

const SCENARIO: &str = "name = \"leftover\"\nseed = 3\n\
    catalog = { items = 1, stock = 50, buckets = 4, price_minor = 100, currency = \"USD\" }\n\
    mandates = { count = 100, cap_minor = 300, shards = 2 }\n\
    agents = { count = 300, in_flight = 32 }\n\
    mix = { well_behaved = 0.9, double_submit = 0.1 }\n";

fn swarm_run(scenario: &Path, dir: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_swarm"))
        .args(["run", &scenario.display().to_string(), "--no-tui"])
        .args(["--report-dir", &dir.display().to_string()])
        .args(extra)
        .env("CI", "true")
        .env_remove("DATABASE_URL")
        .output()
        .expect("swarm run")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn scenario_file(tmp: &Path) -> std::path::PathBuf {
    let path = tmp.join("leftover.toml");
    std::fs::write(&path, SCENARIO).expect("scenario");
    path
}

#[test]
fn a_report_directory_holding_a_run_is_refused_then_moved_aside() {
    let tmp = tempfile::tempdir().expect("tmp");
    let scenario = scenario_file(tmp.path());
    let dir = tmp.path().join("report");
    let first = swarm_run(&scenario, &dir, &[]);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    let summary = std::fs::read(dir.join("summary.json")).expect("summary");

    let again = swarm_run(&scenario, &dir, &[]);
    assert_eq!(again.status.code(), Some(64), "{}", text(&again));
    let said = text(&again);
    for way in ["fresh report directory", "--audit-leftover"] {
        assert!(said.contains(way), "{said}");
    }
    // A fresh database would not help a directory: it is not offered.
    assert!(!said.contains("fresh database"), "{said}");
    // The first way works: without --report-dir a fresh directory is made.
    let fresh = Command::new(env!("CARGO_BIN_EXE_swarm"))
        .args(["run", &scenario.display().to_string(), "--no-tui"])
        .current_dir(tmp.path())
        .env("CI", "true")
        .env_remove("DATABASE_URL")
        .output()
        .expect("swarm run");
    assert_eq!(fresh.status.code(), Some(0), "{}", text(&fresh));
    // Refused before anything changed.
    assert_eq!(
        std::fs::read(dir.join("summary.json")).expect("summary"),
        summary
    );
    assert!(!dir.join("leftover-1").exists());

    let on = swarm_run(&scenario, &dir, &["--audit-leftover"]);
    assert_eq!(on.status.code(), Some(0), "{}", text(&on));
    let aside = dir.join("leftover-1");
    assert_eq!(
        std::fs::read(aside.join("summary.json")).expect("kept"),
        summary
    );
    assert!(aside.join("swarm.db").exists() && aside.join("history.bin").exists());
    let audit: serde_json::Value =
        serde_json::from_slice(&std::fs::read(aside.join("audit.json")).expect("audit"))
            .expect("json");
    assert_eq!(audit["validity"], "valid", "{audit}");
    assert!(dir.join("summary.json").exists(), "the new run reported");
}

/// A database holding another run's purchases: refused, then (with the flag) audited,
/// kept beside the new report, cleared, and the new run valid on its own rows.
async fn a_database_holding_a_run_is_refused_then_cleared(url: DbUrl) {
    let tmp = tempfile::tempdir().expect("tmp");
    let scenario = scenario_file(tmp.path());
    let db = url.to_string();
    let first = swarm_run(&scenario, &tmp.path().join("r1"), &["--db", &db]);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));

    let again = swarm_run(&scenario, &tmp.path().join("r2"), &["--db", &db]);
    assert_eq!(again.status.code(), Some(64), "{}", text(&again));
    let said = text(&again);
    assert!(said.contains("which finished"), "{said}");
    assert!(!tmp.path().join("r2").exists(), "nothing created");
    // Offered: a fresh database (which works) and --audit-leftover; not a fresh
    // directory, which would meet the same database.
    assert!(said.contains("--db on a fresh database"), "{said}");
    assert!(!said.contains("fresh report directory"), "{said}");
    let elsewhere = format!("sqlite://{}", tmp.path().join("fresh.db").display());
    let fresh = swarm_run(&scenario, &tmp.path().join("r2"), &["--db", &elsewhere]);
    assert_eq!(fresh.status.code(), Some(0), "{}", text(&fresh));

    let on = swarm_run(
        &scenario,
        &tmp.path().join("r3"),
        &["--db", &db, "--audit-leftover"],
    );
    assert_eq!(on.status.code(), Some(0), "{}", text(&on));
    let kept: serde_json::Value = serde_json::from_slice(
        &std::fs::read(tmp.path().join("r3/leftover-audit.json")).expect("kept"),
    )
    .expect("json");
    assert_eq!(kept["validity"], "valid");
    assert_eq!(kept["mode"], "state-only");

    // An invalid leftover is left exactly as it is, and nothing runs.
    let bucket = common::query_text(
        &url,
        "SELECT CAST(bucket_id AS TEXT) FROM bucket b WHERE EXISTS \
         (SELECT 1 FROM stock_claim c WHERE c.bucket_id = b.bucket_id) ORDER BY bucket_id LIMIT 1",
    )
    .await;
    common::execute(
        &url,
        &format!(
            "UPDATE bucket SET available = available + 7 WHERE CAST(bucket_id AS TEXT) = '{bucket}'"
        ),
    )
    .await;
    let intents = common::query_text(&url, "SELECT CAST(count(*) AS TEXT) FROM intent").await;
    let broken = swarm_run(
        &scenario,
        &tmp.path().join("r4"),
        &["--db", &db, "--audit-leftover"],
    );
    assert_eq!(broken.status.code(), Some(1), "{}", text(&broken));
    assert!(text(&broken).contains("left as it is"), "{}", text(&broken));
    assert_eq!(
        common::query_text(&url, "SELECT CAST(count(*) AS TEXT) FROM intent").await,
        intents
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_database_holding_a_run_is_refused_then_cleared() {
    let (_g, url) = common::fresh_sqlite();
    a_database_holding_a_run_is_refused_then_cleared(url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_database_holding_a_run_is_refused_then_cleared() {
    let url = common::fresh_pg().await;
    a_database_holding_a_run_is_refused_then_cleared(url.clone()).await;
    common::drop_pg(&url).await;
}

#[test]
fn the_shards_of_one_run_share_their_database() {
    let tmp = tempfile::tempdir().expect("tmp");
    let scenario = scenario_file(tmp.path());
    let db = format!("sqlite://{}", tmp.path().join("shared.db").display());
    for i in 0..2 {
        let out = swarm_run(
            &scenario,
            &tmp.path().join(format!("s{i}")),
            &[
                "--db",
                &db,
                "--shard",
                &format!("{i}/2"),
                "--run-id",
                "shared",
            ],
        );
        assert_eq!(out.status.code(), Some(0), "shard {i}: {}", text(&out));
        // A shard's audit says what it is, beside the checks it leaves to `swarm merge`.
        let said = text(&out);
        assert!(said.contains("(shard audit)"), "{said}");
        assert!(said.contains("these run in swarm merge"), "{said}");
        assert!(!said.contains("full audit"), "{said}");
    }
    // Another run id on the same database is an earlier run's.
    let other = swarm_run(
        &scenario,
        &tmp.path().join("s9"),
        &["--db", &db, "--shard", "0/2", "--run-id", "other"],
    );
    assert_eq!(other.status.code(), Some(64), "{}", text(&other));
    assert!(text(&other).contains("run shared"), "{}", text(&other));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purchases_no_run_marked_are_refused_unless_they_carry_this_runs_keys() {
    let tmp = tempfile::tempdir().expect("tmp");
    let scenario = scenario_file(tmp.path());
    let url = DbUrl::sqlite(tmp.path().join("shared.db"));
    let db = url.to_string();
    let first = swarm_run(
        &scenario,
        &tmp.path().join("r1"),
        &["--db", &db, "--run-id", "mine"],
    );
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    // As if another client had bought: the purchases stay, the markers go.
    common::execute(&url, "DELETE FROM swarm_meta WHERE meta_key LIKE 'run.%'").await;
    let other = swarm_run(&scenario, &tmp.path().join("r2"), &["--db", &db]);
    assert_eq!(other.status.code(), Some(64), "{}", text(&other));
    assert!(
        text(&other).contains("no swarm run marked"),
        "{}",
        text(&other)
    );
    // The same run id repeats its own keys on purpose: allowed (every answer a replay).
    let again = swarm_run(
        &scenario,
        &tmp.path().join("r3"),
        &["--db", &db, "--run-id", "mine"],
    );
    assert_ne!(again.status.code(), Some(64), "{}", text(&again));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn db_reset_drops_the_tables_or_keeps_the_catalog() {
    let tmp = tempfile::tempdir().expect("tmp");
    let scenario = scenario_file(tmp.path());
    let url = DbUrl::sqlite(tmp.path().join("reset.db"));
    let db = url.to_string();
    let first = swarm_run(&scenario, &tmp.path().join("r1"), &["--db", &db]);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    let reset = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_swarm"))
            .args(["db", "reset", "--db", &db])
            .args(extra)
            .env_remove("DATABASE_URL")
            .output()
            .expect("reset")
    };
    let kept = reset(&["--keep-catalog"]);
    assert_eq!(kept.status.code(), Some(0), "{}", text(&kept));
    assert_eq!(
        common::query_text(&url, "SELECT CAST(count(*) AS TEXT) FROM intent").await,
        "0"
    );
    assert_ne!(
        common::query_text(&url, "SELECT CAST(count(*) AS TEXT) FROM mandate").await,
        "0"
    );
    // A cleared database takes a new run.
    let second = swarm_run(&scenario, &tmp.path().join("r2"), &["--db", &db]);
    assert_eq!(second.status.code(), Some(0), "{}", text(&second));
    let dropped = reset(&[]);
    assert_eq!(dropped.status.code(), Some(0), "{}", text(&dropped));
    assert_eq!(
        common::query_text(
            &url,
            "SELECT CAST(count(*) AS TEXT) FROM sqlite_master WHERE type = 'table'"
        )
        .await,
        "0"
    );
}

/// A database error is said once: the driver's words are not repeated by each layer that
/// passes them on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_error_is_said_once() {
    let url = common::fresh_pg().await;
    let missing = match &url {
        DbUrl::Postgres(u) => format!("{}_missing", u),
        DbUrl::Sqlite(_) => unreachable!(),
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let scenario = scenario_file(tmp.path());
    let out = swarm_run(&scenario, &tmp.path().join("r"), &["--db", &missing]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(70), "{said}");
    assert!(said.contains("does not exist"), "{said}");
    assert_eq!(said.matches("db error").count(), 1, "{said}");
    assert_eq!(said.matches("does not exist").count(), 1, "{said}");
    common::drop_pg(&url).await;
}
