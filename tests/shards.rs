//! The shards of one run start together on a fresh PostgreSQL database (schema creation and
//! seeding tolerate their twins), and `swarm merge` takes the whole set or names the shard
//! that is missing.

mod common;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_shards_start_together_on_a_fresh_postgres_database() {
    let url = common::fresh_pg().await;
    let db = url.to_string();
    let tmp = tempfile::tempdir().expect("tmp");
    let scenario = tmp.path().join("shards.toml");
    std::fs::write(&scenario, SCENARIO).expect("scenario");
    let children: Vec<_> = (0..4)
        .map(|i| {
            Command::new(env!("CARGO_BIN_EXE_swarm"))
                .args(["run", &scenario.display().to_string(), "--no-tui"])
                .args([
                    "--db",
                    &db,
                    "--shard",
                    &format!("{i}/4"),
                    "--run-id",
                    "together",
                ])
                .args([
                    "--report-dir",
                    &tmp.path().join(format!("s{i}")).display().to_string(),
                ])
                .env("CI", "true")
                .env_remove("DATABASE_URL")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("shard")
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
