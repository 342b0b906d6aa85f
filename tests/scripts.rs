//! Every script that starts something (a server, a database, a tmux session, a temporary
//! directory) stops it on success, on failure and on Ctrl-C or TERM: an EXIT trap does the
//! stopping, and INT and TERM are turned into an exit so that trap runs. `pg-up.sh` is the
//! exception by design: leaving PostgreSQL running is its job (`pg-down.sh` stops it);
//! `pg-ha-up.sh` leaves its cluster running only once it is up.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn starts_something(text: &str) -> bool {
    text.lines().any(|l| {
        let l = l.trim();
        !l.starts_with('#')
            && (l.ends_with('&')
                || l.contains("pg-up.sh")
                || l.contains("tmux new")
                || l.contains("mktemp"))
    })
}

#[test]
fn every_script_that_starts_something_stops_it_however_it_ends() {
    let dir = common::repo().join("scripts");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("scripts") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        if !name.ends_with(".sh") || name == "pg-up.sh" || name == "pg-down.sh" {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read");
        if !starts_something(&text) {
            continue;
        }
        checked += 1;
        for (signal, what) in [("EXIT", "an EXIT trap"), ("INT", "INT"), ("TERM", "TERM")] {
            assert!(
                text.lines()
                    .any(|l| l.trim_start().starts_with("trap ") && l.trim_end().ends_with(signal)),
                "{name} starts something but has no trap for {what}"
            );
        }
        assert!(
            !text
                .lines()
                .any(|l| l.contains("trap ") && l.contains("EXIT INT")),
            "{name}: a handler on INT that does not exit lets the script go on"
        );
    }
    assert!(checked >= 6, "{checked} scripts checked");
}

/// The pattern itself, run: a script killed with TERM while its child runs still stops
/// what it started.
#[test]
fn the_trap_pattern_stops_the_child_on_term() {
    let tmp = tempfile::tempdir().expect("tmp");
    let marker = tmp.path().join("stopped");
    let script = tmp.path().join("s.sh");
    std::fs::write(
        &script,
        format!(
            "set -euo pipefail\nsleep 300 &\nCHILD=$!\n\
             trap 'kill \"$CHILD\" 2>/dev/null; touch {}' EXIT\ntrap 'exit 130' INT\ntrap 'exit 143' TERM\n\
             wait \"$CHILD\"\n",
            marker.display()
        ),
    )
    .expect("script");
    let mut child = Command::new("bash")
        .arg(&script)
        .stdout(Stdio::null())
        .spawn()
        .expect("bash");
    std::thread::sleep(Duration::from_millis(300));
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(marker.exists(), "the EXIT trap ran on TERM");
}
