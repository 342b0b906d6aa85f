//! The shards of one run start together on a fresh PostgreSQL database (schema creation and
//! seeding tolerate their twins), and `swarm merge` takes the whole set or names the shard
//! that is missing, and keeps a stopped shard's outcome (stopped early, exit 4).

mod common;

use std::path::Path;
use std::process::{Command, Output};

const SCENARIO: &str = "name = \"shards\"\nseed = 8\n\
    catalog = { items = 1, stock = 200, buckets = 4, price_minor = 100, currency = \"USD\" }\n\
    mandates = { count = 400, cap_minor = 300, shards = 2 }\n\
    agents = { count = 2000, in_flight = 32 }\n\
    mix = { well_behaved = 0.9, double_submit = 0.1 }\n";

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `swarm run SCENARIO --shard I/N --run-id RUN_ID` on `db`, reporting to `dir`, started
/// with its output piped.
fn spawn_shard(
    scenario: &Path,
    db: &str,
    (i, n): (u32, u32),
    run_id: &str,
    dir: &Path,
) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_swarm"))
        .args(["run", &scenario.display().to_string(), "--no-tui"])
        .args([
            "--db",
            db,
            "--shard",
            &format!("{i}/{n}"),
            "--run-id",
            run_id,
        ])
        .args(["--report-dir", &dir.display().to_string()])
        .env("CI", "true")
        .env_remove("DATABASE_URL")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("shard")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_shards_start_together_on_a_fresh_postgres_database() {
    let url = common::fresh_pg().await;
    let db = url.to_string();
    let tmp = tempfile::tempdir().expect("tmp");
    let scenario = tmp.path().join("shards.toml");
    std::fs::write(&scenario, SCENARIO).expect("scenario");
    let children: Vec<_> = (0..4)
        .map(|i| {
            spawn_shard(
                &scenario,
                &db,
                (i, 4),
                "together",
                &tmp.path().join(format!("s{i}")),
            )
        })
        .collect();
    for (i, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().expect("wait");
        assert_eq!(out.status.code(), Some(0), "shard {i}: {}", text(&out));
    }
    let merge = |dirs: &[usize], out: &str| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_swarm"));
        cmd.arg("merge");
        for i in dirs {
            cmd.arg(tmp.path().join(format!("s{i}")));
        }
        cmd.args([
            "--db",
            &db,
            "--out",
            &tmp.path().join(out).display().to_string(),
        ])
        .env_remove("DATABASE_URL")
        .output()
        .expect("merge")
    };
    let partial = merge(&[0, 1, 2], "partial");
    assert_eq!(partial.status.code(), Some(64), "{}", text(&partial));
    assert!(
        text(&partial).contains("shard 3/4 missing"),
        "{}",
        text(&partial)
    );
    assert!(!tmp.path().join("partial").exists(), "nothing written");
    // Without --out: refused before its default directory is made.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_swarm"));
    cmd.arg("merge");
    for i in [0, 1, 2] {
        cmd.arg(tmp.path().join(format!("s{i}")));
    }
    let out = cmd
        .args(["--db", &db])
        .current_dir(tmp.path())
        .env_remove("DATABASE_URL")
        .output()
        .expect("merge");
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    assert!(
        !tmp.path().join("reports").exists(),
        "no report directory made"
    );
    let whole = merge(&[0, 1, 2, 3], "whole");
    assert_eq!(whole.status.code(), Some(0), "{}", text(&whole));
    assert!(
        text(&whole).contains("verdict: valid (full audit)"),
        "{}",
        text(&whole)
    );
    common::drop_pg(&url).await;
}

/// A merged run keeps what its shards were: shards stopped by a Ctrl-C merge into a run that
/// is stopped early too (exit 4, STOPPED EARLY on the verdict line and in the headline),
/// never into a finished one.
#[test]
fn shards_stopped_early_merge_into_a_run_stopped_early() {
    let tmp = tempfile::tempdir().expect("tmp");
    let scenario = tmp.path().join("slow.toml");
    std::fs::write(
        &scenario,
        "name = \"slow\"\nseed = 9\nagents = { count = 200000, in_flight = 32, arrival = \"rate\", rate_per_s = 2000 }\n\
         [[regions]]\nname = \"a\"\n",
    )
    .expect("scenario");
    let db = format!("sqlite://{}", tmp.path().join("shared.db").display());
    for i in 0..2 {
        let child = spawn_shard(
            &scenario,
            &db,
            (i, 2),
            "cut",
            &tmp.path().join(format!("s{i}")),
        );
        common::wait_running(&tmp.path().join(format!("s{i}")), 500);
        common::interrupt(&child);
        let out = child.wait_with_output().expect("wait");
        assert_eq!(out.status.code(), Some(4), "shard {i}: {}", text(&out));
    }
    let out = tmp.path().join("merged");
    let merged = Command::new(env!("CARGO_BIN_EXE_swarm"))
        .arg("merge")
        .args([tmp.path().join("s0"), tmp.path().join("s1")])
        .args(["--db", &db, "--out", &out.display().to_string()])
        .env_remove("DATABASE_URL")
        .output()
        .expect("merge");
    assert_eq!(merged.status.code(), Some(4), "{}", text(&merged));
    assert!(
        String::from_utf8_lossy(&merged.stdout)
            .lines()
            .any(|l| l.starts_with("verdict: valid") && l.contains("STOPPED EARLY")),
        "{}",
        text(&merged)
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).expect("summary"))
            .expect("json");
    assert_eq!(summary["stopped_early"], true);
    let stopped = summary["headline"]["stopped"].as_str().unwrap_or_default();
    assert!(stopped.starts_with("STOPPED EARLY: "), "{summary}");
}
