//! The documentation's examples run, in order and verbatim: every ```sh block of README.md,
//! then of each `docs/*.md` page in the order of `PAGES`, from one fresh directory that
//! holds only `scenarios/`, `scripts/` and `tests/servers/`, with the built `swarm` first on
//! the PATH.
//!
//! Each page's blocks run in one shell, started afresh for the page (so a page's variables
//! and background jobs end with it; the files it writes stay for the next pages). A ```sh
//! block runs under `sh` (dash on Debian: POSIX only, no `[[`, no `kill %1`) with
//! `set -eu`; a ```bash block runs under bash with `set -euo pipefail`, each run of
//! consecutive blocks of one kind in its own shell. Blocks shown as ```text (the main job,
//! the test command, the benchmarks, the Patroni cluster) are too long for a test and are
//! not run. Every `docs/*.md` page must be listed in `PAGES`, so a new page's examples
//! cannot be skipped by accident.

mod common;

use std::path::Path;
use std::process::Command;

/// The pages whose examples run, in this order, and what each page's output must contain.
const PAGES: &[(&str, &[&str])] = &[
    (
        "README.md",
        &[
            "verdict: valid (full audit)",
            "selftest passed",
            "\"replayed\":true",
        ],
    ),
    (
        "docs/endpoints.md",
        &[
            "the bug was caught",
            "verdict: valid (history-only audit)",
            "target: live endpoints a https://127.0.0.1:8443",
        ],
    ),
    ("docs/contracts.md", &[]),
    ("docs/scenarios.md", &[]),
    ("docs/checks.md", &[]),
    ("docs/exit-codes.md", &[]),
    ("docs/layout.md", &[]),
    ("docs/failover.md", &[]),
    ("docs/isolation.md", &[]),
    ("docs/benchmarks.md", &[]),
    ("docs/design.md", &[]),
];

/// Which shell a block is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shell {
    Sh,
    Bash,
}

impl Shell {
    fn program(self) -> &'static str {
        match self {
            Shell::Sh => "sh",
            Shell::Bash => "bash",
        }
    }

    /// Stop at the first failing command, and at an unset variable (dash has no pipefail).
    fn prelude(self) -> &'static str {
        match self {
            Shell::Sh => "set -eu\n",
            Shell::Bash => "set -euo pipefail\n",
        }
    }
}

/// The ```sh and ```bash blocks of `markdown`, in order.
fn shell_blocks(markdown: &str) -> Vec<(Shell, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(Option<Shell>, String)> = None;
    for line in markdown.lines() {
        let fence = line.trim_start().starts_with("```");
        match (&mut current, fence) {
            (None, true) => {
                let shell = match line.trim() {
                    "```sh" => Some(Shell::Sh),
                    "```bash" => Some(Shell::Bash),
                    _ => None,
                };
                current = Some((shell, String::new()));
            }
            (Some(_), true) => {
                if let Some((Some(shell), text)) = current.take() {
                    blocks.push((shell, text));
                }
            }
            (Some((_, block)), false) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, false) => {}
        }
    }
    blocks
}

/// Consecutive blocks of one shell joined into one script each, in order.
fn scripts(blocks: &[(Shell, String)]) -> Vec<(Shell, String)> {
    let mut out: Vec<(Shell, String)> = Vec::new();
    for (shell, text) in blocks {
        match out.last_mut() {
            Some((last, script)) if last == shell => {
                script.push('\n');
                script.push_str(text);
            }
            _ => out.push((*shell, format!("{}{text}", shell.prelude()))),
        }
    }
    out
}

#[test]
fn every_docs_page_is_listed() {
    let repo = common::repo();
    let mut pages: Vec<String> = std::fs::read_dir(repo.join("docs"))
        .expect("docs/")
        .map(|e| format!("docs/{}", e.expect("entry").file_name().to_string_lossy()))
        .filter(|name| name.ends_with(".md"))
        .collect();
    pages.sort();
    let mut listed: Vec<String> = PAGES
        .iter()
        .map(|(page, _)| page.to_string())
        .filter(|page| page.starts_with("docs/"))
        .collect();
    listed.sort();
    assert_eq!(pages, listed, "docs/*.md and PAGES differ");
    assert_eq!(PAGES[0].0, "README.md", "the README runs first");
}

#[test]
fn the_fences_parse() {
    let md =
        "a\n```sh\necho 1\n```\n```text\nnot run\n```\n```bash\necho 2\n```\n```sh\necho 3\n```\n";
    let blocks = shell_blocks(md);
    assert_eq!(
        blocks,
        vec![
            (Shell::Sh, "echo 1\n".to_string()),
            (Shell::Bash, "echo 2\n".to_string()),
            (Shell::Sh, "echo 3\n".to_string()),
        ]
    );
    assert_eq!(scripts(&blocks).len(), 3);
    assert_eq!(
        scripts(&[blocks[0].clone(), blocks[0].clone()]),
        vec![(Shell::Sh, "set -eu\necho 1\n\necho 1\n".to_string())]
    );
}

#[test]
fn the_readme_examples_run_in_order_verbatim() {
    let repo = common::repo();
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
    let bin = Path::new(env!("CARGO_BIN_EXE_swarm"))
        .parent()
        .expect("bin dir")
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut total = 0;
    let mut failure = None;
    'pages: for (page, expected) in PAGES {
        let markdown = std::fs::read_to_string(repo.join(page)).expect(page);
        let blocks = shell_blocks(&markdown);
        total += blocks.len();
        let mut stdout = String::new();
        let mut stderr = String::new();
        for (shell, script) in scripts(&blocks) {
            let out = Command::new(shell.program())
                .arg("-c")
                .arg(&script)
                .current_dir(&work)
                .env("PATH", &path)
                .env("CI", "true")
                .env("SWARM_PG_DIR", tmp.path().join("pg"))
                .env_remove("DATABASE_URL")
                .output()
                .unwrap_or_else(|e| panic!("{}: {e}", shell.program()));
            stdout.push_str(&String::from_utf8_lossy(&out.stdout));
            stderr.push_str(&String::from_utf8_lossy(&out.stderr));
            if !out.status.success() {
                failure = Some(format!(
                    "{page}'s examples failed under {} (exit {:?}):\n{stdout}\n{stderr}",
                    shell.program(),
                    out.status.code()
                ));
                break 'pages;
            }
        }
        if let Some(missing) = expected.iter().find(|e| !stdout.contains(**e)) {
            failure = Some(format!(
                "{page}: {missing} missing from its output:\n{stdout}\n{stderr}"
            ));
            break;
        }
    }
    // Whatever happened, the PostgreSQL the examples started is stopped.
    let _ = Command::new(repo.join("scripts/pg-down.sh"))
        .arg(tmp.path().join("pg"))
        .output();
    if let Some(failure) = failure {
        panic!("{failure}");
    }
    assert!(total >= 7, "{total} shell blocks in the documentation");
}
