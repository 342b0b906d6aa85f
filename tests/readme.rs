//! The README's examples run in order, verbatim: every ```sh block, in one shell, from a
//! fresh directory that holds only `scenarios/`, `scripts/` and `tests/servers/`, with the
//! built `swarm` first on the PATH. Blocks shown as ```text (the main job, the test
//! command, the benchmarks) are too long for a test and are not run.

mod common;

use std::process::Command;

/// The ```sh blocks of `markdown`, in order.
fn sh_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_start().starts_with("```")) {
            (None, true) if line.trim() == "```sh" => current = Some(String::new()),
            (Some(_), true) => blocks.extend(current.take()),
            (Some(block), false) => {
                block.push_str(line);
                block.push('\n');
            }
            _ => {}
        }
    }
    blocks
}

#[test]
fn the_readme_examples_run_in_order_verbatim() {
    let repo = common::repo();
    let readme = std::fs::read_to_string(repo.join("README.md")).expect("README");
    let blocks = sh_blocks(&readme);
    assert!(blocks.len() >= 5, "{} sh blocks", blocks.len());
    let tmp = tempfile::tempdir().expect("tmp");
    let work = tmp.path().join("fresh");
    std::fs::create_dir_all(work.join("tests")).expect("dir");
    for (from, to) in [
        ("scenarios", "scenarios"),
        ("scripts", "scripts"),
        ("tests/servers", "tests/servers"),
    ] {
        std::os::unix::fs::symlink(repo.join(from), work.join(to)).expect("link");
    }
    let script = format!("set -euo pipefail\n{}", blocks.join("\n"));
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_swarm"))
        .parent()
        .expect("bin dir")
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(&work)
        .env("PATH", path)
        .env("CI", "true")
        .env("SWARM_PG_DIR", tmp.path().join("pg"))
        .env_remove("DATABASE_URL")
        .output()
        .expect("bash");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    // Whatever happened, the PostgreSQL the examples started is stopped.
    let _ = Command::new(repo.join("scripts/pg-down.sh"))
        .arg(tmp.path().join("pg"))
        .output();
    assert!(
        out.status.success(),
        "the README's examples failed (exit {:?}):\n{stdout}\n{stderr}",
        out.status.code()
    );
    for expected in [
        "verdict: valid (full audit)",
        "selftest passed",
        "\"replayed\":true",
        "the bug was caught",
        "verdict: valid (history-only audit)",
        "target: live endpoints a https://127.0.0.1:8443",
    ] {
        assert!(
            stdout.contains(expected),
            "{expected} missing:\n{stdout}\n{stderr}"
        );
    }
}
