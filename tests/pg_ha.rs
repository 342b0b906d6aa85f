//! A real database failover mid-run: a three-node Patroni cluster on loopback
//! (`scripts/pg-ha-up.sh`), `scenarios/pg-failover.toml` driving it through the multi-host
//! URL, and the leader's Patroni and PostgreSQL killed with -9 a third of the way in. With
//! synchronous replication the run must stay valid with every indeterminate key resolved
//! and no acknowledged commit missing from the new primary, and the report must say when
//! Patroni saw the new leader and how long the clients were not served; with asynchronous
//! replication the audit must name exactly the acknowledged commits the new primary lost.
//! `scenarios/pg-cluster-faults.toml` runs the other cluster faults (switchover, a paused
//! primary, a killed replica) through two regions entering at different nodes.

mod common;

use common::check;

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

/// `scenario` against `cluster` with `agents`, the cluster watched through its Patroni
/// REST APIs: the run's output, exit code and summary.
fn run_on(
    cluster: &Cluster,
    scenario: &str,
    report: &std::path::Path,
    agents: u64,
) -> (String, Option<i32>, serde_json::Value) {
    let patroni = std::fs::read_to_string(cluster.dir.join("patroni")).expect("DIR/patroni");
    let out = Command::new(env!("CARGO_BIN_EXE_swarm"))
        .args(["run", scenario, "--no-tui", "--agents", &agents.to_string()])
        .args([
            "--db",
            &cluster.url,
            "--patroni",
            patroni.trim(),
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
    let s: serde_json::Value = std::fs::read(report.join("summary.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| panic!("no summary: {said}"));
    (said, out.status.code(), s)
}

#[test]
fn a_killed_primary_under_load_is_survived_with_every_invariant() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cluster = Cluster::up(tmp.path().join("ha"), true);
    let before = cluster.leader().expect("a leader before the run");
    let (said, code, s) = run_on(
        &cluster,
        "scenarios/pg-failover.toml",
        &tmp.path().join("report"),
        9000,
    );
    assert_eq!(code, Some(0), "{said}");
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
    // Patroni's view of it, and what the clients saw: nothing served for a while, then
    // served again once the new leader was there.
    assert_eq!(fault["leader_before"], before.as_str(), "{fault}");
    assert_eq!(fault["leader_after"], after.as_str(), "{fault}");
    let started = fault["started_ms"].as_u64().expect("started");
    let elected = fault["leader_elected_ms"].as_u64().expect("elected");
    assert!(elected > started, "{fault}");
    let events = s["cluster"]["events"].as_array().expect("leader events");
    assert!(events.len() >= 2, "{}", s["cluster"]);
    let impact = &fault["impact"][0];
    assert_eq!(impact["region"], "primary", "{fault}");
    assert!(impact["errors"].as_u64().unwrap_or(0) > 0, "{fault}");
    let back = impact["recovered_ms"]
        .as_u64()
        .expect("the region came back");
    let down = impact["unavailable_ms"]
        .as_u64()
        .expect("an unavailability window");
    assert!(down > 0 && back > started, "{fault}");
    assert!(impact["reconnect_ms"].is_i64(), "{fault}");
    assert!(
        said.contains("leader "),
        "the progress line names the leader: {said}"
    );
    let html = std::fs::read_to_string(tmp.path().join("report/report.html")).expect("html");
    assert!(
        html.contains("what the clients saw") && html.contains("nothing served from"),
        "report.html shows the fault's impact"
    );
    // Requests in flight at the kill were indeterminate; every one was resolved, and no
    // acknowledged commit is missing from the new primary.
    assert!(
        s["indeterminate"]["requests"].as_u64().unwrap_or(0) > 0,
        "the kill cut requests in flight: {}",
        s["indeterminate"]
    );
    assert_eq!(s["resolution"]["unresolved"], 0, "{}", s["resolution"]);
    let lost = check(&s, "history.lost_commit");
    assert_eq!(
        (lost["validity"].as_str(), lost["count"].as_u64()),
        (Some("valid"), Some(0))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_asynchronous_replication_the_audit_names_exactly_the_commits_the_failover_lost() {
    // Asynchronous replication may lose acknowledged commits in a failover (the promoted
    // replica had not received them). Whether it does this time or not, the audit's
    // `history.lost_commit` must be exactly the acknowledged keys missing from the new
    // primary, counted here directly from the history and the database.
    let tmp = tempfile::tempdir().expect("tmp");
    let cluster = Cluster::up(tmp.path().join("ha"), false);
    let before = cluster.leader().expect("a leader before the run");
    let report = tmp.path().join("report");
    let (said, code, s) = run_on(&cluster, "scenarios/pg-failover.toml", &report, 9000);
    assert_ne!(
        cluster.leader().as_deref(),
        Some(before.as_str()),
        "a replica was promoted"
    );
    let history = swarm::history::History::read(&report.join("history.bin")).expect("history");
    let acknowledged: std::collections::BTreeSet<String> = history
        .records
        .iter()
        .filter(|r| r.code == swarm::history::Code::Committed)
        .map(|r| history.key_of(r))
        .collect();
    let (client, conn) = tokio_postgres::connect(&cluster.url, tokio_postgres::NoTls)
        .await
        .expect("connect to the new primary");
    tokio::spawn(conn);
    let stored: std::collections::BTreeSet<String> = client
        .query("SELECT idem_key FROM intent", &[])
        .await
        .expect("intents")
        .iter()
        .map(|row| row.try_get::<_, String>(0).expect("key"))
        .collect();
    let missing: Vec<&String> = acknowledged.difference(&stored).collect();
    let lost = check(&s, "history.lost_commit");
    assert_eq!(
        lost["count"].as_u64(),
        Some(missing.len() as u64),
        "{lost}\n{said}"
    );
    for example in lost["examples"].as_array().expect("examples") {
        let key = example.as_str().unwrap_or_default();
        assert!(
            missing.iter().any(|m| key.contains(m.as_str())),
            "{key} is named lost but the new primary has it"
        );
    }
    if missing.is_empty() {
        assert_eq!(
            (code, s["validity"].as_str()),
            (Some(0), Some("valid")),
            "{said}"
        );
    } else {
        eprintln!("the failover lost {} acknowledged commits", missing.len());
        assert_eq!(
            (code, lost["validity"].as_str()),
            (Some(1), Some("invalid")),
            "{said}"
        );
    }
}

#[test]
fn a_switchover_a_paused_primary_and_a_killed_replica_each_get_a_timeline_per_region() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cluster = Cluster::up(tmp.path().join("ha"), true);
    let before = cluster.leader().expect("a leader before the run");
    let report = tmp.path().join("report");
    let (said, code, s) = run_on(&cluster, "scenarios/pg-cluster-faults.toml", &report, 24000);
    assert_eq!(
        (code, s["validity"].as_str()),
        (Some(0), Some("valid")),
        "{said}"
    );
    assert_eq!(s["resolution"]["unresolved"], 0, "{}", s["resolution"]);
    let faults = s["faults"].as_array().expect("faults");
    assert_eq!(faults.len(), 3, "{said}");
    for f in faults {
        assert_eq!(f["exit_code"], 0, "{f}");
        let regions: Vec<&str> = f["impact"]
            .as_array()
            .expect("impact")
            .iter()
            .filter_map(|i| i["region"].as_str())
            .collect();
        assert_eq!(regions, ["east", "west"], "{f}");
    }
    // The switchover: planned, so Patroni hands over without a moment of no leader.
    let switchover = &faults[0];
    let output = switchover["output"].as_str().unwrap_or_default();
    assert!(
        output.starts_with(&format!("switched over {before} -> ")),
        "{output}"
    );
    assert_eq!(switchover["leader_before"], before.as_str(), "{switchover}");
    let new_leader = switchover["leader_after"].as_str().expect("a new leader");
    assert_ne!(new_leader, before);
    // The pause: 5 s frozen, shorter than the 10 s TTL, so nobody is promoted; every region
    // waited, and was served again only once the node woke up.
    let pause = &faults[1];
    assert_eq!(
        pause["output"].as_str().map(str::trim),
        Some(format!("paused leader {new_leader} for 5 s").as_str()),
        "{pause}"
    );
    assert_eq!(pause["leader_before"], new_leader, "{pause}");
    assert!(pause["leader_after"].is_null(), "no promotion: {pause}");
    let (started, woke) = (
        pause["started_ms"].as_u64().expect("started"),
        pause["healed_ms"].as_u64().expect("woke"),
    );
    for impact in pause["impact"].as_array().expect("impact") {
        let back = impact["recovered_ms"].as_u64().expect("back");
        let down = impact["unavailable_ms"].as_u64().expect("unavailable");
        assert!(impact["errors"].as_u64().unwrap_or(0) > 0, "{impact}");
        assert!(back + 1000 >= woke && back > started, "{impact} vs {pause}");
        assert!((3000..=15_000).contains(&down), "about the pause: {impact}");
    }
    // The killed replica: the leader stays.
    let replica = &faults[2];
    assert!(
        replica["output"]
            .as_str()
            .is_some_and(|o| o.starts_with("killed replica ")),
        "{replica}"
    );
    assert_eq!(replica["leader_before"], new_leader, "{replica}");
    assert!(replica["leader_after"].is_null(), "{replica}");
    assert!(said.contains("back after"), "the progress line: {said}");
    let lost = check(&s, "history.lost_commit");
    assert_eq!(lost["count"].as_u64(), Some(0), "{lost}");
}
