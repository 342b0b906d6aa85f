//! swarm against servers it did not write: `tests/servers/checkout.py` (Python's standard
//! library, its own SQL on a SQLite file in the reference schema) and
//! `tests/servers/checkout.mjs` (Node's `http`, an in-memory store swarm cannot read).
//! Both follow the contract and differ from `swarm serve` in every way it allows (JSON
//! spacing and field order, pretty-printing, non-UUID ids, extra fields, HTTP/1.0,
//! chunked answers, `Connection: close`). Clean, they must be judged valid; each bug
//! switch must be caught by the check it breaks, and by no other invalid check.

mod common;

use common::check;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// A foreign server as a process, killed when dropped.
struct Foreign {
    child: Child,
    port: u16,
}

impl Foreign {
    fn python(db: &Path, bug: &str, extra: &[&str]) -> Foreign {
        let port = common::free_port();
        let script = common::repo().join("tests/servers/checkout.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script)
            .args([
                "--db",
                &db.display().to_string(),
                "--port",
                &port.to_string(),
            ])
            .args(["--bug", bug])
            .args(extra);
        Foreign::start(cmd, port)
    }

    fn node(bug: &str) -> Foreign {
        Foreign::node_with(bug, &[])
    }

    fn node_with(bug: &str, extra: &[&str]) -> Foreign {
        let port = common::free_port();
        let script = common::repo().join("tests/servers/checkout.mjs");
        let mut cmd = Command::new("node");
        cmd.arg(script)
            .args([
                "--port",
                &port.to_string(),
                "--bug",
                if bug.is_empty() { "none" } else { bug },
            ])
            .args(extra);
        Foreign::start(cmd, port)
    }

    fn start(mut cmd: Command, port: u16) -> Foreign {
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the foreign server (python3 / node installed?)");
        let server = Foreign { child, port };
        for _ in 0..400 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        panic!("the foreign server never listened on {port}");
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Foreign {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn swarm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_swarm"))
        .args(args)
        .env_remove("DATABASE_URL")
        .env("CI", "true")
        .output()
        .expect("swarm")
}

fn summary(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("summary.json")).expect("summary.json");
    serde_json::from_str(&text).expect("json")
}

/// The invalid checks of a summary, by name.
fn invalid(s: &serde_json::Value) -> Vec<String> {
    s["audit"]["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["validity"] == "invalid")
        .map(|c| c["name"].as_str().unwrap_or("").to_string())
        .collect()
}

/// The run was judged valid (else: its printed verdict and the invalid checks).
fn assert_valid(out: &Output, s: &serde_json::Value) {
    assert_eq!(
        s["validity"],
        "valid",
        "{}\n{:?}",
        String::from_utf8_lossy(&out.stdout),
        invalid(s)
    );
}

/// A scenario against `endpoints` (one region each): the Python server's catalog is the
/// scenario's own seed (`swarm db seed`), the Node server's is discovered.
fn scenario(
    dir: &Path,
    name: &str,
    endpoints: &[String],
    extra_target: &str,
    rest: &str,
) -> PathBuf {
    let regions: String = endpoints
        .iter()
        .enumerate()
        .map(|(i, e)| format!("[[regions]]\nname = \"r{i}\"\nendpoint = \"{e}\"\n"))
        .collect();
    let text = format!(
        "name = \"{name}\"\nseed = 11\ntarget = {{ kind = \"http\"{extra_target} }}\n\
         catalog = {{ items = 1, stock = 60, buckets = 4, price_minor = 100, currency = \"USD\" }}\n\
         mandates = {{ count = 50, cap_minor = 100000, shards = 2 }}\n\
         agents = {{ count = 600, in_flight = 24 }}\n\
         mix = {{ well_behaved = 0.8, double_submit = 0.2 }}\n\
         retry = {{ timeout_ms = 5000, max_attempts = 6, backoff_ms = [5, 50] }}\n\
         {rest}{regions}"
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("write scenario");
    path
}

fn run(scenario: &Path, dir: &Path, extra: &[&str]) -> (Output, serde_json::Value) {
    let (s, d) = (scenario.display().to_string(), dir.display().to_string());
    let mut args = vec!["run", s.as_str(), "--no-tui", "--report-dir", d.as_str()];
    args.extend_from_slice(extra);
    let out = swarm(&args);
    assert!(
        dir.join("summary.json").exists(),
        "no summary: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let s = summary(dir);
    (out, s)
}

/// A fresh SQLite file in the reference schema, seeded with the scenario's catalog.
fn seeded(dir: &Path, scenario: &Path) -> (PathBuf, String) {
    let db = dir.join("foreign.db");
    let url = format!("sqlite://{}", db.display());
    let out = swarm(&["db", "seed", "--db", &url, &scenario.display().to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (db, url)
}

#[test]
fn a_correct_python_server_is_valid_history_only_and_with_its_database() {
    let tmp = tempfile::tempdir().expect("tmp");
    // The endpoint is written into the scenario before the port is known: seed first with
    // a placeholder, then write the real scenario (the catalog is the same).
    let probe = scenario(tmp.path(), "py", &["http://127.0.0.1:1".into()], "", "");
    let (db, _) = seeded(tmp.path(), &probe);
    let server = Foreign::python(&db, "", &[]);
    let file = scenario(tmp.path(), "py", &[server.url()], "", "");
    let (out, s) = run(&file, &tmp.path().join("blind"), &[]);
    assert_eq!(s["audit"]["mode"], "history-only");
    assert_valid(&out, &s);
    assert!(
        s["counters"]["committed"].as_u64().unwrap_or(0) >= 50,
        "{}",
        s["counters"]
    );
    assert_eq!(check(&s, "history.replay_layout")["count"], 0);
    assert_eq!(s["counters"]["contract_violation"], 0);
    drop(server);
    // With its database (a fresh one: a full audit holds every intent in it to this run's
    // clients): the rows it wrote with its own SQL are audited too.
    let full = tmp.path().join("full");
    std::fs::create_dir_all(&full).expect("dir");
    let (db, url) = seeded(&full, &probe);
    let server = Foreign::python(&db, "", &[]);
    let file = scenario(&full, "py", &[server.url()], "", "");
    let (out, s) = run(&file, &full.join("r"), &["--db", &url]);
    assert_eq!(s["audit"]["mode"], "full");
    assert_valid(&out, &s);
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn a_correct_node_server_with_its_own_layout_is_valid() {
    let tmp = tempfile::tempdir().expect("tmp");
    let server = Foreign::node("");
    let file = scenario(
        tmp.path(),
        "node",
        &[server.url()],
        ", discover = \"sandbox\"",
        "",
    );
    let (out, s) = run(&file, &tmp.path().join("r"), &[]);
    assert_valid(&out, &s);
    // Exactly the stock it declared was sold, and every double submit got its replay.
    assert_eq!(
        s["counters"]["committed"].as_u64().map(|c| c >= 60),
        Some(true)
    );
    assert!(s["counters"]["replays"].as_u64().unwrap_or(0) > 0);
    assert_eq!(s["counters"]["contract_violation"], 0);
    // Its replays are its first answers again, byte for byte but for `replayed`.
    assert_eq!(check(&s, "history.replay_layout")["count"], 0);
}

#[test]
fn foreign_https_servers_are_driven_over_their_own_tls_and_http2_stacks() {
    // Node's http2 module (nghttp2, OpenSSL): HTTP/2 when ALPN offers h2, HTTP/1.1 when it
    // does not. Python's ssl module (OpenSSL) offers no ALPN: `auto` falls back to HTTP/1.1.
    let certs = common::certs::Certs::make();
    let (cert, key) = (certs.path("server.pem"), certs.path("server-key.pem"));
    let tls = ["--tls-cert", cert.as_str(), "--tls-key", key.as_str()];
    let ca = format!(", tls = {{ ca_file = \"{}\" }}", certs.path("ca.pem"));
    let tmp = tempfile::tempdir().expect("tmp");
    let https = |f: &Foreign| format!("https://127.0.0.1:{}", f.port);
    for (name, http, h2) in [
        ("node-h2", "", true),
        ("node-h1", ", http = \"1.1\"", false),
    ] {
        let server = Foreign::node_with("", &tls);
        let target = format!(", discover = \"sandbox\"{ca}{http}");
        let file = scenario(tmp.path(), name, &[https(&server)], &target, "");
        let (out, s) = run(&file, &tmp.path().join(name), &[]);
        assert_valid(&out, &s);
        assert!(
            s["counters"]["committed"].as_u64().unwrap_or(0) >= 60,
            "{name}"
        );
        let c = &s["regions"][0]["connections"];
        assert_eq!(c["tls"], true, "{name}: {c}");
        assert_eq!(c["http2"].as_u64().unwrap_or(0) > 0, h2, "{name}: {c}");
    }
    let probe = scenario(tmp.path(), "py-tls", &["http://127.0.0.1:1".into()], "", "");
    let (db, url) = seeded(tmp.path(), &probe);
    let server = Foreign::python(&db, "", &tls);
    let file = scenario(tmp.path(), "py-tls", &[https(&server)], &ca, "");
    let (out, s) = run(&file, &tmp.path().join("py-tls"), &["--db", &url]);
    assert_eq!(s["audit"]["mode"], "full");
    assert_valid(&out, &s);
    let c = &s["regions"][0]["connections"];
    assert_eq!(
        (c["tls"].as_bool(), c["http2"].as_u64()),
        (Some(true), Some(0)),
        "{c}"
    );
}

#[test]
fn replays_in_another_layout_are_a_warning_not_a_violation() {
    let tmp = tempfile::tempdir().expect("tmp");
    let server = Foreign::node("replay-layout");
    let file = scenario(
        tmp.path(),
        "layout",
        &[server.url()],
        ", discover = \"sandbox\"",
        "",
    );
    let (out, s) = run(&file, &tmp.path().join("r"), &[]);
    assert_eq!(
        s["validity"],
        "valid",
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let layout = check(&s, "history.replay_layout");
    assert!(layout["count"].as_u64().unwrap_or(0) > 0, "{layout}");
    assert_eq!(layout["validity"], "valid");
    assert_eq!(check(&s, "history.replay_mismatch")["count"], 0);
}

/// An API that writes its own request id into every answer: under a contract that does not
/// say so, its replays differ in value from their originals (`history.replay_mismatch`, and
/// nothing else); naming the field `volatile` makes the same server valid, its replays
/// plain replays (not even a layout warning).
#[test]
fn a_request_id_in_every_answer_is_left_out_once_the_contract_names_it() {
    let server = Foreign::node("request-id");
    let tmp = tempfile::tempdir().expect("tmp");
    let unnamed = scenario(
        tmp.path(),
        "reqid",
        &[server.url()],
        ", discover = \"sandbox\"",
        "",
    );
    let (out, s) = run(&unnamed, &tmp.path().join("unnamed"), &[]);
    assert_eq!(
        invalid(&s),
        ["history.replay_mismatch"],
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let named = scenario(
        tmp.path(),
        "reqid-named",
        &[server.url()],
        ", discover = \"sandbox\", contract = { answer = { volatile_fields = [\"/requestId\"] } }",
        "",
    );
    let (out, s) = run(&named, &tmp.path().join("named"), &[]);
    assert_valid(&out, &s);
    assert!(
        s["counters"]["replays"].as_u64().unwrap_or(0) > 0,
        "replays were answered"
    );
    assert_eq!(check(&s, "history.replay_layout")["count"], 0);
}

/// A server that keeps a key 2.5 s (an idempotency store with an expiry): read again after
/// that, a key is a new purchase, which the final reads themselves would cause and the
/// audit would then blame on the server. With the contract's `key_retention_s`, keys that
/// old are not read again (counted), and the same server is valid.
#[test]
fn keys_past_the_servers_retention_are_not_sent_again() {
    let server = Foreign::node_with("", &["--key-ttl-ms", "2500"]);
    let tmp = tempfile::tempdir().expect("tmp");
    let unnamed = retention_scenario(tmp.path(), &server, "ttl", ["", ""]);
    let (out, s) = run(&unnamed, &tmp.path().join("unnamed"), &[]);
    let bad = invalid(&s);
    assert!(
        bad.contains(&"history.key_not_kept".to_string()),
        "the final reads executed forgotten keys anew: {bad:?}\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let named = retention_scenario(tmp.path(), &server, "ttl-named", [RETENTION_3S, ""]);
    let (out, s) = run(&named, &tmp.path().join("named"), &[]);
    assert_valid(&out, &s);
    let reads = &s["final_reads"];
    assert!(
        reads["past_retention"].as_u64().unwrap_or(0) > 0
            && reads["read"].as_u64().unwrap_or(0) > 0,
        "some keys too old to read, some read: {reads}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("too near the end of the contract's key_retention_s"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The contract clause the retention tests name: keys kept 3 s.
const RETENTION_3S: &str = ", contract = { key_retention_s = 3 }";

/// Every answer lost from 0.4 s of a 4-second run to its end (the fault heals when the
/// agents are done): those keys stay open, the youngest as young as the run's end.
const LOST_ACKS: &str =
    "[[faults]]\nat = \"10%\"\nkind = \"region-down\"\nregion = \"r0\"\nmode = \"lost-ack\"\n";

/// A 4-second run of 400 agents against `server` (one region), with `contract` in the
/// target and `faults` after the region.
fn retention_scenario(
    dir: &Path,
    server: &Foreign,
    name: &str,
    [contract, faults]: [&str; 2],
) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "name = \"{name}\"\nseed = 11\n\
             target = {{ kind = \"http\", discover = \"sandbox\"{contract} }}\n\
             catalog = {{ items = 1, stock = 60, buckets = 4, price_minor = 100, currency = \"USD\" }}\n\
             mandates = {{ count = 50, cap_minor = 100000, shards = 2 }}\n\
             agents = {{ count = 400, in_flight = 8, arrival = \"rate\", rate_per_s = 100 }}\n\
             retry = {{ timeout_ms = 500, max_attempts = 4, backoff_ms = [5, 50] }}\n\
             [[regions]]\nname = \"r0\"\nendpoint = \"{}\"\n{faults}",
            server.url()
        ),
    )
    .expect("write scenario");
    path
}

/// Keys whose every answer was lost (lost-ack, from 0.4 s on) stay open to the end of the
/// run. Its resolution replays them: the server keeps a key 2.5 s, so a key older than that
/// is a new purchase to it, executed afresh. Named in the contract, the retention leaves
/// those keys unreplayed (counted past it, their outcome unknown); the younger ones are
/// replayed and recovered.
#[test]
fn the_resolution_replays_no_key_past_the_servers_retention() {
    let server = Foreign::node_with("", &["--key-ttl-ms", "2500"]);
    let tmp = tempfile::tempdir().expect("tmp");
    let unnamed = retention_scenario(tmp.path(), &server, "lost", ["", LOST_ACKS]);
    let (out, s) = run(&unnamed, &tmp.path().join("unnamed"), &[]);
    let resolution = &s["resolution"];
    assert!(
        resolution["fresh"].as_u64().unwrap_or(0) > 0
            && resolution["past_retention"].as_u64() == Some(0),
        "forgotten keys executed anew: {resolution}\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let named = retention_scenario(tmp.path(), &server, "lost-named", [RETENTION_3S, LOST_ACKS]);
    let (out, s) = run(&named, &tmp.path().join("named"), &[]);
    let resolution = &s["resolution"];
    assert!(
        resolution["past_retention"].as_u64().unwrap_or(0) > 0
            && resolution["recovered"].as_u64().unwrap_or(0) > 0
            && resolution["fresh"].as_u64() == Some(0),
        "old keys left, young ones recovered, none executed anew: {resolution}\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // What became of the keys left is not known, and the verdict says so.
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(check(&s, "history.unresolved")["validity"], "unknown");
}

/// `swarm resolve` dates a killed run's open keys by when the run began, as its history's
/// header says: killed 3.4 s in, with answers lost since 0.4 s, the run is older than the
/// contract's retention allows a replay by the time `swarm resolve` runs, so no key is
/// sent. A copy of the history is resolved, as a CI artifact would be: dated by the file,
/// or by the resolution's own clock, every key would look young and be replayed, and the
/// server would execute its forgotten ones anew.
#[test]
fn swarm_resolve_replays_no_key_of_a_history_older_than_the_retention() {
    let server = Foreign::node_with("", &["--key-ttl-ms", "2500"]);
    let tmp = tempfile::tempdir().expect("tmp");
    let file = retention_scenario(tmp.path(), &server, "killed", [RETENTION_3S, LOST_ACKS]);
    let dir = tmp.path().join("r");
    let mut child = Command::new(env!("CARGO_BIN_EXE_swarm"))
        .args(["run", &file.display().to_string(), "--no-tui"])
        .args(["--report-dir", &dir.display().to_string()])
        .env("CI", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("swarm run");
    common::wait_running(&dir, 3400);
    let alive = child.try_wait().expect("wait").is_none();
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    assert!(alive, "the run ended before the kill");
    let copied = tmp.path().join("copied");
    std::fs::create_dir(&copied).expect("mkdir");
    std::fs::copy(dir.join("history.bin"), copied.join("history.bin")).expect("copy");
    let history = copied.join("history.bin").display().to_string();
    let resumed = swarm(&[
        "resolve",
        &file.display().to_string(),
        "--history",
        &history,
    ]);
    let said = String::from_utf8_lossy(&resumed.stderr);
    assert!(
        said.contains("replayed: 0 recovered, 0 fresh")
            && said.contains("not replayed: the run began"),
        "no key replayed, each said too old: {said}"
    );
}

/// Intent ids that are UUIDs, upper-case when fresh and lower-case when replayed: one id,
/// so one execution per key and no duplicate settlement; the bytes differ, a layout
/// warning at most.
#[test]
fn a_uuid_id_in_another_case_is_the_same_execution() {
    let server = Foreign::node("uuid-case");
    let tmp = tempfile::tempdir().expect("tmp");
    let file = scenario(
        tmp.path(),
        "uuidcase",
        &[server.url()],
        ", discover = \"sandbox\"",
        "",
    );
    let (out, s) = run(&file, &tmp.path().join("r"), &[]);
    assert_valid(&out, &s);
    assert!(
        s["counters"]["replays"].as_u64().unwrap_or(0) > 0,
        "replays were answered"
    );
    assert_eq!(check(&s, "history.replay_mismatch")["count"], 0);
}

/// Each bug switch and the check family that must catch it.
///
/// `fresh-replay-ids` answers a replay with new ids: from the history alone that is two
/// executions under one key (with the database, one intent: a replay mismatch, see
/// `replayed_ids_that_lie_are_a_mismatch_when_the_database_holds_one_intent`).
/// `commit-declined` is seen only by the final reads; `header-marked-replay` breaks
/// ZeroRace's marker (a body field) and no other promise. Beside each check, what else may
/// fire with it.
const BUGS: &[(&str, &str, &[&str])] = &[
    ("oversell", "oversell.", &[]),
    // Every key executed again: the commits settle twice, the declines are not kept.
    (
        "no-key-lookup",
        "duplicate_settlement.",
        &["history.key_not_kept"],
    ),
    (
        "fresh-replay-ids",
        "duplicate_settlement.",
        &["history.key_not_kept"],
    ),
    ("false-503", "history.false_failure", &[]),
    ("top-level-503", "history.false_failure", &[]),
    ("replay-drops-field", "contract.missing_field", &[]),
    ("created-for-decline", "contract.status_mismatch", &[]),
    ("commit-declined", "history.false_decline", &[]),
    (
        "fresh-marked-replayed",
        "contract.fresh_marked_replayed",
        &[],
    ),
    ("header-marked-replay", "contract.replay_not_marked", &[]),
];

fn assert_caught(
    server: &str,
    (bug, want, also): (&str, &str, &[&str]),
    out: &Output,
    s: &serde_json::Value,
) {
    let bad = invalid(s);
    assert_eq!(
        s["validity"],
        "invalid",
        "{server} {bug}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        bad.iter().any(|c| c.starts_with(want)),
        "{server} {bug}: want {want}, got {bad:?}"
    );
    assert!(
        bad.iter()
            .all(|c| c.starts_with(want) || also.contains(&c.as_str())),
        "{server} {bug}: only {want} (and {also:?}) may fire, got {bad:?}"
    );
    assert_eq!(out.status.code(), Some(1), "{server} {bug}");
}

#[test]
fn every_python_bug_is_caught_by_its_check_alone() {
    for &(bug, want, also) in BUGS {
        let tmp = tempfile::tempdir().expect("tmp");
        let probe = scenario(tmp.path(), "pybug", &["http://127.0.0.1:1".into()], "", "");
        let (db, _) = seeded(tmp.path(), &probe);
        let server = Foreign::python(&db, bug, &[]);
        let file = scenario(tmp.path(), "pybug", &[server.url()], "", "");
        let (out, s) = run(&file, &tmp.path().join("r"), &[]);
        assert_caught("python", (bug, want, also), &out, &s);
    }
}

#[test]
fn every_node_bug_is_caught_by_its_check_alone() {
    for &(bug, want, also) in BUGS {
        let tmp = tempfile::tempdir().expect("tmp");
        let server = Foreign::node(bug);
        let file = scenario(
            tmp.path(),
            "nodebug",
            &[server.url()],
            ", discover = \"sandbox\"",
            "",
        );
        let (out, s) = run(&file, &tmp.path().join("r"), &[]);
        assert_caught("node", (bug, want, also), &out, &s);
    }
}

#[test]
fn a_replay_marked_by_a_header_is_valid_under_a_contract_that_says_so() {
    // The same server that ZeroRace's contract (a body field) judges `replay_not_marked`
    // is a correct one under a contract whose replays carry `Idempotent-Replayed`: the
    // body's `replayed: false` is then only data, and the evidence (one intent id per key)
    // says every key executed once.
    for (server, name) in [
        (Foreign::node("header-marked-replay"), "node"),
        (
            Foreign::node_with("header-marked-replay", &["--stock", "60"]),
            "node-again",
        ),
    ] {
        let tmp = tempfile::tempdir().expect("tmp");
        let file = scenario(
            tmp.path(),
            name,
            &[server.url()],
            ", discover = \"sandbox\", contract = { replay_marker = \"header:Idempotent-Replayed\" }",
            "",
        );
        let (out, s) = run(&file, &tmp.path().join("r"), &[]);
        assert_valid(&out, &s);
        assert!(
            s["counters"]["replays"].as_u64().unwrap_or(0) > 0,
            "{name}: marked by the header"
        );
        assert_eq!(check(&s, "contract.replay_not_marked")["count"], 0);
    }
}

#[test]
fn replayed_ids_that_lie_are_a_mismatch_when_the_database_holds_one_intent() {
    // From the history alone a replay with new ids is a second execution; the database
    // holds one intent per key, so with it the finding is a replay that did not repeat
    // its original, and no duplicate settlement.
    let tmp = tempfile::tempdir().expect("tmp");
    let probe = scenario(tmp.path(), "ids", &["http://127.0.0.1:1".into()], "", "");
    let (db, url) = seeded(tmp.path(), &probe);
    let server = Foreign::python(&db, "fresh-replay-ids", &[]);
    let file = scenario(tmp.path(), "ids", &[server.url()], "", "");
    let (out, s) = run(&file, &tmp.path().join("r"), &["--db", &url]);
    let bad = invalid(&s);
    assert!(
        bad.contains(&"history.replay_mismatch".to_string()),
        "{bad:?}"
    );
    assert!(
        !bad.iter().any(|c| c.starts_with("duplicate_settlement.")),
        "{bad:?}\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A scenario for the Node server's other shape (`--shape orders`): `POST /orders`, the
/// key in `Cko-Idempotency-Key`, other field names, the outcome nested under `order`,
/// replays marked by a header, a reused key refused with 422.
fn orders_scenario(dir: &Path, url: &str) -> PathBuf {
    let text = format!(
        r#"name = "orders"
seed = 11
agents = {{ count = 600, in_flight = 24 }}
mix = {{ well_behaved = 0.7, double_submit = 0.2, payload_mutator = 0.1 }}
retry = {{ timeout_ms = 5000, max_attempts = 6, backoff_ms = [5, 50] }}

[target]
kind = "http"
discover = "sandbox"

[target.contract]
key_header = "Cko-Idempotency-Key"
replay_marker = "header:Idempotent-Replayed"
key_reused_status = [422]
key_reused_code = ["idempotency_key_reused"]
error_code = ["/error/code"]

[target.contract.request]
path = "/orders"
body = '{{"shop":"{{merchant}}","budget":"{{mandate}}","sku":"{{item}}","buyer":"{{agent}}","qty":{{quantity}},"total":{{amount_minor}},"ccy":"{{currency}}"}}'
lookup = ""

[target.contract.answer]
outcome = "/order/state"
committed = ["paid"]
declined = ["rejected"]
reason = "/order/reason"
out_of_stock = ["sold_out"]
mandate_rejected = ["over_budget"]
execution_id = "/order/id"
amount_minor = "/order/total"
currency = "/order/ccy"
attempts = ""
committed_fields = ["/order/bucket"]

[[regions]]
name = "r0"
endpoint = "{url}"
"#
    );
    let path = dir.join("orders.toml");
    std::fs::write(&path, text).expect("write scenario");
    path
}

#[test]
fn an_api_of_another_shape_is_judged_by_the_contract_it_describes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let server = Foreign::node_with("", &["--shape", "orders"]);
    let file = orders_scenario(tmp.path(), &server.url());
    let (out, s) = run(&file, &tmp.path().join("clean"), &[]);
    assert_valid(&out, &s);
    assert!(
        s["counters"]["committed"].as_u64().unwrap_or(0) >= 60,
        "{}",
        s["counters"]
    );
    assert!(
        s["counters"]["replays"].as_u64().unwrap_or(0) > 0,
        "header-marked replays"
    );
    assert!(
        s["counters"]["key_reused"].as_u64().unwrap_or(0) > 0,
        "422 for another payload"
    );
    assert_eq!(s["counters"]["contract_violation"], 0);
    drop(server);
    // Its bug switch: a store that forgets every third stored key executes it again,
    // whatever payload comes with it (so a changed payload is not refused either).
    let server = Foreign::node_with("orders-forget-key", &["--shape", "orders"]);
    let file = orders_scenario(tmp.path(), &server.url());
    let (out, s) = run(&file, &tmp.path().join("bug"), &[]);
    let bad = invalid(&s);
    assert_eq!(out.status.code(), Some(1), "{bad:?}");
    assert!(
        bad.iter().any(|c| c.starts_with("duplicate_settlement.")),
        "{bad:?}"
    );
    assert!(
        bad.iter().all(|c| c.starts_with("duplicate_settlement.")
            || c == "history.payload_not_refused"
            // A forgotten decline, executed again.
            || c == "history.key_not_kept"),
        "{bad:?}"
    );
}

/// `swarm probe --json` against `server` (the catalog discovered), and its exit code.
fn probe(dir: &Path, server: &Foreign, contract: &str) -> (Option<i32>, serde_json::Value) {
    let file = scenario(
        dir,
        "probe",
        &[server.url()],
        &format!(", discover = \"sandbox\"{contract}"),
        "",
    );
    let out = swarm(&["probe", &file.display().to_string(), "--json"]);
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), json)
}

fn probed<'a>(json: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    json["checks"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no {name} in {json}"))
}

#[test]
fn the_probe_names_each_broken_promise_and_fails_only_a_second_execution() {
    let tmp = tempfile::tempdir().expect("tmp");
    // A correct server keeps every promise.
    let (code, json) = probe(tmp.path(), &Foreign::node(""), "");
    assert_eq!(code, Some(0), "{json}");
    for c in json["checks"].as_array().expect("checks") {
        assert_eq!(c["count"], 0, "{c}");
    }
    // A server that never looks its keys up executes a replay again: invalid, exit 1.
    let (code, json) = probe(tmp.path(), &Foreign::node("no-key-lookup"), "");
    assert_eq!(code, Some(1), "{json}");
    assert_eq!(probed(&json, "conformance.replay")["validity"], "invalid");
    assert_eq!(
        probed(&json, "conformance.concurrent")["validity"],
        "invalid"
    );
    // Replays marked by a header break ZeroRace's marker, a promise but no invariant: a
    // warning; the contract that says so keeps it.
    let (code, json) = probe(tmp.path(), &Foreign::node("header-marked-replay"), "");
    assert_eq!(code, Some(0), "{json}");
    let replay = probed(&json, "conformance.replay");
    assert_eq!(
        (replay["validity"].as_str(), replay["count"].as_u64()),
        (Some("valid"), Some(1)),
        "{replay}"
    );
    assert!(
        replay["detail"]
            .as_str()
            .unwrap_or("")
            .contains("marked wrongly"),
        "{replay}"
    );
    let (_, json) = probe(
        tmp.path(),
        &Foreign::node("header-marked-replay"),
        ", contract = { replay_marker = \"header:Idempotent-Replayed\" }",
    );
    assert_eq!(probed(&json, "conformance.replay")["count"], 0, "{json}");
}

#[test]
fn lost_acknowledgements_on_two_regions_resolve_to_valid() {
    let tmp = tempfile::tempdir().expect("tmp");
    let server = Foreign::node("");
    // Two regions, two doors to one service; region r0 loses every answer for a while.
    let faults = "[[faults]]\nat = \"20%\"\nkind = \"region-down\"\nregion = \"r0\"\nmode = \"lost-ack\"\nheal_after = \"400ms\"\n";
    let file = scenario(
        tmp.path(),
        "lostack",
        &[server.url(), format!("{}/", server.url())],
        ", discover = \"sandbox\"",
        faults,
    );
    let (out, s) = run(&file, &tmp.path().join("r"), &[]);
    assert_valid(&out, &s);
    assert_eq!(s["resolution"]["unresolved"], 0);
    assert!(
        s["counters"]["connection_reset"].as_u64().unwrap_or(0) > 0,
        "the fault cut answers: {}",
        s["counters"]
    );
}

#[test]
fn zincs_shape_against_the_python_server() {
    let tmp = tempfile::tempdir().expect("tmp");
    let probe = scenario(
        tmp.path(),
        "zinc",
        &["http://127.0.0.1:1".into()],
        ", contract = { profile = \"zinc\" }",
        "",
    );
    let (db, url) = seeded(tmp.path(), &probe);
    let server = Foreign::python(&db, "", &[]);
    let file = scenario(
        tmp.path(),
        "zinc",
        &[server.url()],
        ", contract = { profile = \"zinc\" }",
        "",
    );
    let (out, s) = run(&file, &tmp.path().join("r"), &["--db", &url]);
    assert_valid(&out, &s);
    assert!(
        s["counters"]["replays"].as_u64().unwrap_or(0) > 0,
        "retries looked up their order"
    );
}

#[test]
fn an_unreadable_server_is_named_at_once_and_never_retried_as_a_network_error() {
    // A server that answers every purchase 201 with HTML: every answer is a violation.
    let tmp = tempfile::tempdir().expect("tmp");
    let port = common::free_port();
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind");
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                let body = "<html>checkout</html>";
                let _ = write!(
                    stream,
                    "HTTP/1.1 201 Created\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    let file = scenario(
        tmp.path(),
        "html",
        &[format!("http://127.0.0.1:{port}")],
        "",
        "",
    );
    let (out, s) = run(&file, &tmp.path().join("r"), &["--agents", "200"]);
    assert_eq!(s["validity"], "invalid");
    // The end-of-run replay gives up once its first replays got nothing usable back, and
    // says so; nothing it could not decide is counted as decided.
    let res = &s["resolution"];
    assert!(
        res["stopped"]
            .as_str()
            .unwrap_or("")
            .contains("answers nothing usable"),
        "{res}"
    );
    assert_eq!(res["unresolved"], res["pending"], "{res}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("end-of-run replay stopped early"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        invalid(&s).contains(&"contract.unparseable".to_string()),
        "{:?}",
        invalid(&s)
    );
    // One request per agent and one replay per key at the end: nothing retried in a loop.
    let requests = s["counters"]["requests"].as_u64().unwrap_or(0);
    assert!(requests <= 200 * 3, "{requests} requests for 200 agents");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("contract.unparseable") && stdout.contains("<html>"),
        "the examples name the status, key and body:\n{stdout}\n{stderr}"
    );
}

#[test]
fn a_run_against_a_closed_port_stops_before_anything_is_created() {
    let tmp = tempfile::tempdir().expect("tmp");
    let port = common::free_port(); // nothing listens there
    let file = scenario(
        tmp.path(),
        "closed",
        &[format!("http://127.0.0.1:{port}")],
        "",
        "",
    );
    let dir = tmp.path().join("r");
    let (s, d) = (file.display().to_string(), dir.display().to_string());
    let out = swarm(&["run", &s, "--no-tui", "--report-dir", &d, "--agents", "100"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(70), "{said}");
    assert!(
        said.contains("region r0") && said.contains("unreachable: connection refused"),
        "{said}"
    );
    assert!(!dir.exists(), "nothing is left behind");
}

/// Every status class is counted and shown: a throttling server's 429s appear in the
/// console and `summary.json` by status, beside the network failures; the run stays valid.
#[test]
fn a_throttling_servers_429s_are_counted_by_status() {
    let tmp = tempfile::tempdir().expect("tmp");
    let probe = scenario(
        tmp.path(),
        "throttle",
        &["http://127.0.0.1:1".into()],
        "",
        "",
    );
    let (db, _) = seeded(tmp.path(), &probe);
    let server = Foreign::python(&db, "rate-limit", &[]);
    let file = scenario(tmp.path(), "throttle", &[server.url()], "", "");
    let (out, s) = run(&file, &tmp.path().join("r"), &["--agents", "300"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(s["validity"], "valid", "{stdout}");
    let throttled = s["statuses"]["429"].as_u64().unwrap_or(0);
    assert!(throttled > 0, "{}", s["statuses"]);
    assert!(stdout.contains(&format!("429 ×{throttled}")), "{stdout}");
    let requests = s["counters"]["requests"].as_u64().unwrap_or(0);
    let by_status: u64 = s["statuses"]
        .as_object()
        .expect("statuses")
        .values()
        .filter_map(|v| v.as_u64())
        .sum();
    assert_eq!(by_status, requests, "every request has a status class");
    assert!(stdout.contains("indeterminate during the run:"), "{stdout}");
}
