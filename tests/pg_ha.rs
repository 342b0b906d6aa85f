//! A real database failover mid-run: a three-node Patroni cluster on loopback
//! (`scripts/pg-ha-up.sh`, synchronous replication), `scenarios/pg-failover.toml` driving
//! it through the multi-host URL, and the leader's Patroni and PostgreSQL killed with -9 a
//! third of the way in. A replica is promoted; the run must stay valid with every
//! indeterminate key resolved and no acknowledged commit missing from the new primary.

mod common;

use std::path::PathBuf;
use std::process::Command;

/// The cluster, stopped (and its directory removed) when dropped.
struct Cluster {
    dir: PathBuf,
    url: String,
}

impl Cluster {
    fn up(dir: PathBuf, sync: bool) -> Cluster {
        let script = common::repo().join("scripts/pg-ha-up.sh");
        let mut cmd = Command::new("bash");
        cmd.arg(&script).arg(&dir);
        if sync {
            cmd.arg("--sync");
        }
        let out = cmd.output().expect("pg-ha-up.sh");
        assert!(
            out.status.success(),
            "pg-ha-up.sh failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Cluster { dir, url }
    }

    /// The member whose REST API says it leads, if one does.
    fn leader(&self) -> Option<String> {
        let base: u16 = std::fs::read_to_string(self.dir.join("base"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        (1..=3).find_map(|i| {
            let out = Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
                .arg(format!("http://127.0.0.1:{}/leader", base + 20 + i))
                .output()
                .ok()?;
            (String::from_utf8_lossy(&out.stdout) == "200").then(|| format!("n{i}"))
        })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(common::repo().join("scripts/pg-ha-down.sh"))
            .arg(&self.dir)
            .output();
    }
}

#[test]
fn a_killed_primary_under_load_is_survived_with_every_invariant() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cluster = Cluster::up(tmp.path().join("ha"), true);
    let before = cluster.leader().expect("a leader before the run");
    let report = tmp.path().join("report");
    let out = Command::new(env!("CARGO_BIN_EXE_swarm"))
        .args([
            "run",
            "scenarios/pg-failover.toml",
            "--no-tui",
            "--agents",
            "9000",
        ])
        .args([
            "--db",
            &cluster.url,
            "--report-dir",
            &report.display().to_string(),
        ])
        .current_dir(common::repo())
        .env("SWARM_PG_HA_DIR", &cluster.dir)
        .env("CI", "true")
        .env_remove("DATABASE_URL")
        .output()
        .expect("swarm run");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{said}");
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report.join("summary.json")).expect("summary"))
            .expect("json");
    assert_eq!(s["validity"], "valid", "{said}");
    // The fault killed the leader, and another member leads now.
    let fault = &s["faults"][0];
    assert_eq!(fault["exit_code"], 0, "{fault}");
    assert_eq!(
        fault["output"].as_str().map(str::trim),
        Some(format!("killed leader {before}").as_str()),
        "{fault}"
    );
    let after = cluster.leader().expect("a leader after the run");
    assert_ne!(after, before, "a replica was promoted");
    // Requests in flight at the kill were indeterminate; every one was resolved, and no
    // acknowledged commit is missing from the new primary.
    assert!(
        s["indeterminate"]["requests"].as_u64().unwrap_or(0) > 0,
        "the kill cut requests in flight: {}",
        s["indeterminate"]
    );
    assert_eq!(s["resolution"]["unresolved"], 0, "{}", s["resolution"]);
    let lost = s["audit"]["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == "history.lost_commit")
        .expect("lost_commit");
    assert_eq!(
        (lost["validity"].as_str(), lost["count"].as_u64()),
        (Some("valid"), Some(0))
    );
}
