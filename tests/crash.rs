//! Crash consistency: `swarm run` killed with SIGKILL at random moments mid-run leaves a
//! database whose state the auditor finds sound: every purchase the kernel committed is
//! whole (claim, debit, two ledger legs), none is half-written, stock and caps conserved.
//! The interrupted run is reported as interrupted: its start marker has no finish marker,
//! so `swarm audit --db` is `unknown` (exit 3) until `--state-only` asks for the state alone.
//! Its history streamed to disk up to the kill: read back, its torn tail cut, it is audited
//! against the database without a false finding (every acknowledged commit is there; intents
//! whose request was in flight are `unknown`, never phantoms). `swarm resolve` then replays
//! the keys left open, ends the history, and the audit is valid.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::Rng;

/// An open-model run of a few seconds: agents arrive at 1500/s, so a kill lands mid-run.
const SCENARIO: &str = "name = \"crash\"\nseed = 9\n\
    catalog = { items = 1, stock = 400, buckets = 8, price_minor = 100, currency = \"USD\" }\n\
    mandates = { count = 200, cap_minor = 500, shards = 2 }\n\
    agents = { count = 6000, in_flight = 64, arrival = \"rate\", rate_per_s = 1500.0 }\n\
    mix = { well_behaved = 0.8, double_submit = 0.1, crash_restart = 0.1 }\n\
    [[regions]]\nname = \"a\"\n[[regions]]\nname = \"b\"\n";

/// Start a run, wait until it is past seeding and `after` into its purchases, kill it.
fn run_and_kill(scenario: &Path, dir: &Path, db: Option<&str>, after: Duration) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_swarm"));
    cmd.args(["run", &scenario.display().to_string(), "--no-tui"])
        .args(["--report-dir", &dir.display().to_string()])
        .env("CI", "true")
        .env_remove("DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(db) = db {
        cmd.args(["--db", db]);
    }
    let mut child = cmd.spawn().expect("swarm run");
    // The first progress line comes a second after the agents start.
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("agents ") {
                let _ = tx.send(());
            }
        }
    });
    let started = Instant::now();
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the run made progress");
    std::thread::sleep(after);
    let alive = child.try_wait().expect("wait").is_none();
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    assert!(
        alive,
        "the run ended before the kill ({:?} in): make the scenario longer",
        started.elapsed()
    );
}

/// What a killed run's history says: it is read, it was cut, it holds what came before the
/// kill, and its audit against the database finds nothing false.
fn check_killed_history(dir: &Path, db: &str, after: Duration) {
    let path = dir.join("history.bin");
    let history = swarm::history::History::read(&path)
        .unwrap_or_else(|e| panic!("killed {after:?} in, the history reads: {e}"));
    assert!(history.cut.is_some(), "killed {after:?} in: no end frame");
    // The header went first: which scenario, by the hash of its text.
    use sha2::Digest;
    assert_eq!(
        history.header.scenario_sha256,
        hex::encode(sha2::Sha256::digest(SCENARIO.as_bytes()))
    );
    assert!(
        !history.records.is_empty(),
        "killed {after:?} in, after the first progress line: a second of records was flushed"
    );
    let (code, report) = audit(db, &["--history", &path.display().to_string()]);
    assert_eq!(code, Some(3), "killed {after:?} in:\n{report}");
    let line = |name: &str| check_line(&report, name);
    assert!(line("history.complete").starts_with("unknown"), "{report}");
    assert!(
        line("history.complete").contains("ends at byte"),
        "{report}"
    );
    for name in [
        "history.lost_commit",
        "history.snapshot_mismatch",
        "history.false_failure",
    ] {
        assert!(
            line(name).starts_with("valid"),
            "killed {after:?} in:\n{report}"
        );
    }
    assert!(
        !report.lines().any(|l| l.starts_with("invalid")),
        "killed {after:?} in, a false finding:\n{report}"
    );
}

/// `swarm resolve` on a killed run: every open key replayed, the history ended, the audit
/// valid; the run is then marked finished, and a second resolve finds nothing to do.
fn check_resolved(scenario: &Path, dir: &Path, db: Option<&str>, after: Duration) {
    let path = dir.join("history.bin");
    let resolve = || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_swarm"));
        cmd.args(["resolve", &scenario.display().to_string()])
            .args(["--history", &path.display().to_string()])
            .env_remove("DATABASE_URL");
        if let Some(db) = db {
            cmd.args(["--db", db]);
        }
        cmd.output().expect("swarm resolve")
    };
    // Another scenario's file is refused, naming the hashes; nothing is written.
    let other = dir.join("other.toml");
    let text = std::fs::read_to_string(scenario).expect("scenario");
    std::fs::write(&other, text.replace("seed = 9", "seed = 10")).expect("write");
    let before = std::fs::read(&path).expect("history");
    let refused = Command::new(env!("CARGO_BIN_EXE_swarm"))
        .args(["resolve", &other.display().to_string()])
        .args(["--history", &path.display().to_string()])
        .args(db.map(|d| vec!["--db", d]).unwrap_or_default())
        .env_remove("DATABASE_URL")
        .output()
        .expect("swarm resolve");
    assert_eq!(refused.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("SHA-256"));
    assert_eq!(std::fs::read(&path).expect("history"), before);
    let out = resolve();
    let (report, said) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "killed {after:?} in, resolved:\n{said}\n{report}"
    );
    assert!(said.contains("the history was cut at byte"), "{said}");
    let line = |name: &str| check_line(&report, name);
    for name in [
        "history.complete",
        "history.phantom_commit",
        "history.unresolved",
        "history.lost_commit",
        "history.interval",
    ] {
        assert!(line(name).starts_with("valid"), "{said}\n{report}");
    }
    assert!(
        line("history.complete").contains("swarm resolve"),
        "{report}"
    );
    // The history now ends: whole, with the replays appended after the cut.
    let history = swarm::history::History::read(&path).expect("history");
    assert_eq!(history.cut, None);
    // Marked finished: the database alone audits valid now.
    let db = db.map_or_else(
        || format!("sqlite://{}", dir.join("swarm.db").display()),
        str::to_string,
    );
    let (code, report) = audit(&db, &[]);
    assert_eq!(code, Some(0), "{report}");
    let again = resolve();
    assert_eq!(again.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&again.stderr).contains("nothing to resolve"));
}

/// The line of check `name` in a printed audit report.
fn check_line(report: &str, name: &str) -> String {
    report
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(name))
        .unwrap_or_else(|| panic!("no {name} in:\n{report}"))
        .to_string()
}

fn audit(db: &str, extra: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_swarm"))
        .args(["audit", "--db", db])
        .args(extra)
        .env_remove("DATABASE_URL")
        .output()
        .expect("swarm audit");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn a_finished_run_is_audited_as_finished() {
    let tmp = tempfile::tempdir().expect("tmp");
    let scenario = tmp.path().join("done.toml");
    std::fs::write(&scenario, SCENARIO.replace("count = 6000", "count = 300")).expect("write");
    let dir = tmp.path().join("r");
    let out = Command::new(env!("CARGO_BIN_EXE_swarm"))
        .args(["run", &scenario.display().to_string(), "--no-tui"])
        .args(["--report-dir", &dir.display().to_string()])
        .env("CI", "true")
        .env_remove("DATABASE_URL")
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let db = format!("sqlite://{}", dir.join("swarm.db").display());
    let (code, report) = audit(&db, &[]);
    assert_eq!(code, Some(0), "{report}");
    assert!(
        report.contains("the last run on this database finished"),
        "{report}"
    );
    // A finished history has nothing to resolve.
    let out = Command::new(env!("CARGO_BIN_EXE_swarm"))
        .args(["resolve", &scenario.display().to_string()])
        .args(["--history", &dir.join("history.bin").display().to_string()])
        .env_remove("DATABASE_URL")
        .output()
        .expect("swarm resolve");
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to resolve"));
    // One byte flipped inside the first records frame (the header frame's length is at
    // bytes 9..13, after the magic and the kind): the audit refuses it at that frame.
    let path = dir.join("history.bin");
    let mut bytes = std::fs::read(&path).expect("history");
    let header_len = u32::from_le_bytes(bytes[9..13].try_into().expect("length")) as usize;
    let second = 8 + 9 + header_len;
    bytes[second + 9 + 5] ^= 0x40;
    std::fs::write(&path, &bytes).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_swarm"))
        .args([
            "audit",
            "--db",
            &db,
            "--history",
            &path.display().to_string(),
        ])
        .env_remove("DATABASE_URL")
        .output()
        .expect("swarm audit");
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{said}");
    assert!(
        said.contains(&format!("frame at byte {second}")) && said.contains("corrupt"),
        "{said}"
    );
}

#[test]
fn a_run_killed_at_three_random_moments_leaves_a_sound_database_on_sqlite() {
    let mut rng = rand::rng();
    for round in 0..3 {
        let after = Duration::from_millis(rng.random_range(0..2500));
        let tmp = tempfile::tempdir().expect("tmp");
        let scenario = tmp.path().join("crash.toml");
        std::fs::write(&scenario, SCENARIO).expect("write");
        let dir = tmp.path().join("r");
        run_and_kill(&scenario, &dir, None, after);
        let db = format!("sqlite://{}", dir.join("swarm.db").display());
        // The run never finished: its database says so, and the verdict is unknown.
        let (code, report) = audit(&db, &[]);
        assert_eq!(
            code,
            Some(3),
            "round {round}, killed {after:?} in:\n{report}"
        );
        assert!(
            report.contains("run.finished") && report.contains("never finished"),
            "{report}"
        );
        // The state it left is sound.
        let (code, report) = audit(&db, &["--state-only"]);
        assert_eq!(
            code,
            Some(0),
            "round {round}, killed {after:?} in:\n{report}"
        );
        assert!(
            report.contains("verdict: valid (state-only audit)"),
            "{report}"
        );
        assert!(
            !dir.join("summary.json").exists(),
            "the run was really cut short"
        );
        check_killed_history(&dir, &db, after);
        check_resolved(&scenario, &dir, None, after);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_mid_run_leaves_a_sound_database_on_postgres() {
    let url = common::fresh_pg().await.to_string();
    let after = Duration::from_millis(rand::rng().random_range(0..2000));
    let tmp = tempfile::tempdir().expect("tmp");
    let scenario = tmp.path().join("crash.toml");
    std::fs::write(&scenario, SCENARIO).expect("write");
    let dir = tmp.path().join("r");
    let (u, s, d) = (url.clone(), scenario.clone(), dir.clone());
    tokio::task::spawn_blocking(move || run_and_kill(&s, &d, Some(&u), after))
        .await
        .expect("run");
    let u = url.clone();
    let (code, report) = tokio::task::spawn_blocking(move || audit(&u, &[]))
        .await
        .expect("audit");
    assert_eq!(
        code,
        Some(3),
        "killed {after:?} in, reported as interrupted:\n{report}"
    );
    let u = url.clone();
    let (code, report) = tokio::task::spawn_blocking(move || audit(&u, &["--state-only"]))
        .await
        .expect("audit");
    assert_eq!(code, Some(0), "killed {after:?} in:\n{report}");
    assert!(
        report.contains("verdict: valid (state-only audit)"),
        "{report}"
    );
    let (u, d) = (url.clone(), dir.clone());
    tokio::task::spawn_blocking(move || check_killed_history(&d, &u, after))
        .await
        .expect("history");
    // A new run onto the interrupted one is refused, naming it.
    let out = Command::new(env!("CARGO_BIN_EXE_swarm"))
        .args([
            "run",
            &scenario.display().to_string(),
            "--no-tui",
            "--db",
            &url,
        ])
        .args([
            "--report-dir",
            &tmp.path().join("again").display().to_string(),
        ])
        .env("CI", "true")
        .env_remove("DATABASE_URL")
        .output()
        .expect("run");
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{said}");
    assert!(said.contains("which never finished"), "{said}");
    tokio::task::spawn_blocking(move || check_resolved(&scenario, &dir, Some(&url), after))
        .await
        .expect("resolve");
}
