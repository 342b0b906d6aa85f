//! `swarm run` end to end: the real binary, real databases, real fault modes.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use swarm::audit::Validity;
use swarm::history::{History, Kind};

fn swarm(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_swarm"))
        .args(args)
        .current_dir(cwd)
        .env_remove("DATABASE_URL")
        .env("CI", "true")
        .output()
        .expect("run swarm")
}

fn scenario(name: &str) -> String {
    common::repo()
        .join("scenarios")
        .join(name)
        .display()
        .to_string()
}

fn summary(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("summary.json")).expect("summary.json");
    serde_json::from_str(&text).expect("json")
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn run_to(dir: &Path, scenario_file: &str, extra: &[&str]) -> Output {
    let mut args = vec!["run", scenario_file, "--no-tui", "--report-dir"];
    let d = dir.display().to_string();
    args.push(&d);
    args.extend_from_slice(extra);
    swarm(&args, dir.parent().unwrap_or(dir))
}

#[test]
fn smoke_is_valid_on_embedded_sqlite() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("r");
    let out = run_to(&dir, &scenario("smoke.toml"), &[]);
    assert_ok(&out);
    let s = summary(&dir);
    assert_eq!(s["validity"], "valid");
    assert_eq!(s["exit_code"], 0);
    assert_eq!(s["agents_done"], 10_000);
    assert!(
        dir.join("swarm.db").exists(),
        "the embedded database is kept"
    );
    assert!(dir.join("history.bin").exists());
    // 100 units in stock: exactly 100 distinct commits in the database.
    let st = futures_block(common::read_state(
        &format!("sqlite://{}", dir.join("swarm.db").display())
            .parse()
            .expect("url"),
    ));
    assert_eq!(st.committed, 100);
    st.assert_sound();
    // The headline says it in one line, last, and summary.json keeps its figures: units
    // (not answers) against stock, and the four counters.
    let h = &s["headline"];
    assert_eq!(h["units_sold"], 100, "{h}");
    assert_eq!(h["initial_stock"], 100);
    assert_eq!(h["settled_purchases"], 100);
    assert_eq!(h["sold_from"], "database");
    for counter in [
        "oversells",
        "duplicate_settlements",
        "ledger_drift",
        "mandate_breaches",
    ] {
        assert_eq!(h[counter], 0, "{counter}");
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().rev().nth(2).unwrap_or_default();
    assert!(
        line.starts_with("sold 100 of 100 units (100 settled purchases, from the database) · oversells 0 · duplicate settlements 0 · ledger drift 0 · mandate breaches 0 · OCC retries"),
        "{stdout}"
    );
    let html = std::fs::read_to_string(dir.join("report.html")).expect("html");
    assert!(
        html.contains("<p id=\"headline\"><b>sold 100 of 100 units"),
        "report.html"
    );
}

fn futures_block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt")
        .block_on(f)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_is_valid_on_postgres() {
    let url = common::fresh_pg().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("r");
    let u = match &url {
        swarm::addr::DbUrl::Postgres(u) => u.clone(),
        _ => unreachable!(),
    };
    let d = dir.clone();
    let s = scenario("smoke.toml");
    let out = tokio::task::spawn_blocking(move || run_to(&d, &s, &["--db", &u]))
        .await
        .expect("join");
    assert_ok(&out);
    assert_eq!(summary(&dir)["validity"], "valid");
    assert!(
        !dir.join("swarm.db").exists(),
        "no embedded database when one is given"
    );
    let st = common::read_state(&url).await;
    assert_eq!(st.committed, 100);
    st.assert_sound();
}

fn first_requests(h: &History) -> Vec<(u32, String, u32, u16)> {
    let mut v: Vec<(u32, String, u32, u16)> = h
        .records
        .iter()
        .filter(|r| r.variant == 0 && r.purchase == 0)
        .map(|r| (r.agent, r.persona.name().to_string(), r.mandate, r.item))
        .collect();
    v.sort();
    v.dedup();
    v
}

#[test]
fn one_seed_gives_the_same_agents_keys_and_fault_schedule() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (a, b, c) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
    );
    for d in [&a, &b] {
        assert_ok(&run_to(
            d,
            &scenario("failover.toml"),
            &["--agents", "3000"],
        ));
    }
    assert_ok(&run_to(
        &c,
        &scenario("failover.toml"),
        &["--agents", "3000", "--seed", "8"],
    ));
    let ha = History::read(&a.join("history.bin")).expect("a");
    let hb = History::read(&b.join("history.bin")).expect("b");
    let hc = History::read(&c.join("history.bin")).expect("c");
    // Two runs of one seed: the same ids and agents, but keys of their own (run ids).
    assert_ne!(ha.header.run_id, hb.header.run_id);
    assert_ne!(ha.header.key_prefix, hb.header.key_prefix, "no key shared");
    let same_ids = |h: &History| {
        let mut header = h.header.clone();
        header.run_id.clear();
        header.key_prefix.clear();
        header.started_unix_ms = None;
        header
    };
    assert_eq!(same_ids(&ha), same_ids(&hb), "same ids and declared limits");
    assert!(ha.header.key_prefix.starts_with(&ha.header.run_id));
    assert_eq!(
        first_requests(&ha),
        first_requests(&hb),
        "same agents, personas, mandates"
    );
    assert_eq!(first_requests(&ha).len(), 3000);
    assert_ne!(ha.header.key_prefix, hc.header.key_prefix);
    assert_ne!(first_requests(&ha), first_requests(&hc));
    let faults = |d: &PathBuf| {
        summary(d)["faults"]
            .as_array()
            .expect("faults")
            .iter()
            .map(|f| (f["region"].clone(), f["mode"].clone(), f["trigger"].clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(faults(&a), faults(&b));
    assert_eq!(faults(&a).len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_loses_acknowledgements_and_resolves_every_one() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("r");
    let d = dir.clone();
    let s = scenario("failover.toml");
    let out = tokio::task::spawn_blocking(move || run_to(&d, &s, &[]))
        .await
        .expect("join");
    assert_ok(&out);
    let sum = summary(&dir);
    assert_eq!(sum["validity"], "valid");
    for f in sum["faults"].as_array().expect("faults") {
        assert!(f["started_ms"].is_u64() && f["healed_ms"].is_u64(), "{f}");
    }
    assert_latency_fault_slowed(&sum);
    let history = History::read(&dir.join("history.bin")).expect("history");
    let db: swarm::addr::DbUrl = format!("sqlite://{}", dir.join("swarm.db").display())
        .parse()
        .expect("url");
    // Keys with an indeterminate request whose purchase is in the database: lost acks.
    let conn = rusqlite::Connection::open(dir.join("swarm.db")).expect("db");
    let mut stored = std::collections::HashSet::new();
    let mut st = conn
        .prepare("SELECT idem_key FROM intent")
        .expect("prepare");
    for k in st.query_map([], |r| r.get::<_, String>(0)).expect("query") {
        stored.insert(k.expect("key"));
    }
    let lost_acks = history
        .records
        .iter()
        .filter(|r| r.kind() == Kind::Info && stored.contains(&history.key_of(r)))
        .count();
    assert!(lost_acks > 0, "no acknowledgement was ever lost");
    // Every one of them got a definite answer later, by replay.
    let report = swarm::audit::audit(swarm::audit::Input {
        db: Some(&db),
        history: Some(&history),
        state_only: false,
    })
    .await;
    assert_eq!(report.validity, Validity::Valid, "{report}");
    assert_eq!(report.check("history.unresolved").map(|c| c.count), Some(0));
    let replays = sum["counters"]["replays"].as_u64().expect("replays");
    assert!(replays > 0);
    common::read_state(&db).await.assert_sound();
}

#[test]
fn scenario_errors_exit_64_name_the_line_and_create_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cases = [
        (
            "unknown.toml",
            "name = \"x\"\n[agents]\ncount = 5\nwizards = 2\n",
            "4:",
            "agents.wizards",
        ),
        (
            "badtype.toml",
            "name = \"x\"\nagents = { count = \"many\" }\n",
            "2:",
            "agents.count",
        ),
        (
            "weights.toml",
            "name = \"x\"\nmix = { well_behaved = 0.5 }\n",
            "2:",
            "mix",
        ),
        (
            "region.toml",
            "name = \"x\"\n[[regions]]\nname = \"a\"\n[[faults]]\nat = \"1s\"\nkind = \"region-down\"\nregion = \"nowhere\"\nmode = \"crash\"\n",
            "7:",
            "faults[0].region",
        ),
    ];
    for (file, text, line, field) in cases {
        let path = tmp.path().join(file);
        std::fs::write(&path, text).expect("write");
        let out = swarm(
            &["run", &path.display().to_string(), "--no-tui"],
            tmp.path(),
        );
        assert_eq!(out.status.code(), Some(64), "{file}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("{file}:{line}")), "{file}: {err}");
        assert!(err.contains(field), "{file}: {err}");
        assert!(
            !tmp.path().join("reports").exists(),
            "{file}: nothing is created"
        );
    }
}

#[test]
fn end_of_run_replays_resolve_every_indeterminate_key() {
    // Agents that never retry, a region that loses every acknowledgement: only the
    // end-of-run resolution can learn those outcomes.
    let tmp = tempfile::tempdir().expect("tmp");
    let file = tmp.path().join("lost.toml");
    std::fs::write(
        &file,
        "name = \"lost\"\nseed = 9\n\
         catalog = { items = 1, stock = 500, buckets = 4, price_minor = 100, currency = \"USD\" }\n\
         mandates = { count = 1000, cap_minor = 1000, shards = 2 }\n\
         agents = { count = 1000, in_flight = 32 }\n\
         retry = { timeout_ms = 1000, max_attempts = 1, backoff_ms = [1, 10] }\n\
         [[regions]]\nname = \"a\"\n[[regions]]\nname = \"b\"\n\
         [[faults]]\nat = \"0s\"\nkind = \"region-down\"\nregion = \"a\"\nmode = \"lost-ack\"\n",
    )
    .expect("write");
    let dir = tmp.path().join("r");
    assert_ok(&run_to(&dir, &file.display().to_string(), &[]));
    let s = summary(&dir);
    assert_eq!(s["validity"], "valid");
    let r = &s["resolution"];
    assert!(r["pending"].as_u64().unwrap_or(0) > 100, "{r}");
    assert_eq!(
        r["pending"], r["recovered"],
        "every lost acknowledgement was recovered: {r}"
    );
    assert_eq!(r["unresolved"], 0);
    assert!(
        s["faults"][0]["healed_ms"].is_u64(),
        "healed at the end of the run"
    );
}

/// `swarm run FILE --no-tui --report-dir DIR`, started with its output piped.
fn spawn_run(file: &Path, dir: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_swarm"))
        .args(["run", &file.display().to_string(), "--no-tui"])
        .args(["--report-dir", &dir.display().to_string()])
        .env_remove("DATABASE_URL")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn")
}

#[test]
fn ctrl_c_stops_arrivals_then_heals_audits_and_reports() {
    let tmp = tempfile::tempdir().expect("tmp");
    let file = tmp.path().join("long.toml");
    std::fs::write(
        &file,
        "name = \"long\"\nagents = { count = 200000, in_flight = 64, arrival = \"rate\", rate_per_s = 2000 }\n\
         [[regions]]\nname = \"a\"\n[[regions]]\nname = \"b\"\n\
         [[faults]]\nat = \"500ms\"\nkind = \"region-down\"\nregion = \"a\"\nmode = \"crash\"\n",
    )
    .expect("write");
    let dir = tmp.path().join("r");
    let child = spawn_run(&file, &dir);
    common::wait_running(&dir, 1500);
    common::interrupt(&child);
    let out = child.wait_with_output().expect("wait");
    // A stopped run is its own outcome (exit 4), never a finished one's 0.
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The verdict line itself says so, not only a line after it.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("verdict: valid") && l.contains("STOPPED EARLY")),
        "{stdout}"
    );
    let s = summary(&dir);
    assert_eq!(s["stopped_early"], true);
    assert_eq!(s["validity"], "valid");
    let done = s["agents_done"].as_u64().expect("done");
    assert!(done > 0 && done < 200_000, "{done}");
    assert!(
        s["faults"][0]["healed_ms"].is_u64(),
        "healed before the audit"
    );
    // CI reading junit.xml sees it too: an error, not a green suite.
    let junit = std::fs::read_to_string(dir.join("junit.xml")).expect("junit");
    let complete = junit
        .split("<testcase")
        .find(|c| c.contains("name=\"run.complete\""))
        .expect("run.complete");
    assert!(
        complete.contains("<error") && complete.contains("STOPPED EARLY"),
        "{junit}"
    );
}

/// A second Ctrl-C aborts: the report is still written, the history is left cut, and
/// the audit of it says which command finishes it; `swarm resolve` then does, and the
/// run stays stopped early (exit 4) however valid, as its report directory says.
#[test]
fn a_second_ctrl_c_aborts_and_swarm_resolve_finishes_a_run_that_stays_stopped() {
    let tmp = tempfile::tempdir().expect("tmp");
    let file = tmp.path().join("held.toml");
    // From 300 ms on, the only region holds every request until the client's timeout
    // (3 s): the first Ctrl-C's drain waits on them, and the second one aborts it.
    std::fs::write(
        &file,
        "name = \"held\"\nseed = 3\nagents = { count = 200000, in_flight = 32, arrival = \"rate\", rate_per_s = 2000 }\n\
         retry = { timeout_ms = 3000, max_attempts = 2, backoff_ms = [10, 100] }\n\
         [[regions]]\nname = \"a\"\n\
         [[faults]]\nat = \"300ms\"\nkind = \"region-down\"\nregion = \"a\"\nmode = \"blackhole\"\n",
    )
    .expect("write");
    let dir = tmp.path().join("r");
    let child = spawn_run(&file, &dir);
    common::wait_running(&dir, 800);
    common::interrupt(&child);
    std::thread::sleep(std::time::Duration::from_millis(300));
    common::interrupt(&child);
    let out = child.wait_with_output().expect("wait");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    let s = summary(&dir);
    assert_eq!(s["aborted"], true, "{stderr}");
    assert_eq!(
        out.status.code(),
        Some(4),
        "stopped, nothing invalid\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("ABORTED by a second Ctrl-C"), "{stdout}");
    for file in ["summary.json", "report.html", "junit.xml", "history.bin"] {
        assert!(dir.join(file).is_file(), "{file} written");
    }
    let history = dir.join("history.bin").display().to_string();
    let db = format!("sqlite://{}", dir.join("swarm.db").display());

    // The audit of the cut history is unknown and names the command that finishes it.
    let audit = swarm(&["audit", "--db", &db, "--history", &history], tmp.path());
    let said = String::from_utf8_lossy(&audit.stdout);
    assert_eq!(audit.status.code(), Some(3), "{said}");
    assert!(
        said.contains(&format!("swarm resolve SCENARIO.toml --history {history}")),
        "{said}"
    );

    let scenario = file.display().to_string();
    let resolved = swarm(&["resolve", &scenario, "--history", &history], tmp.path());
    let said = String::from_utf8_lossy(&resolved.stdout);
    assert_eq!(
        resolved.status.code(),
        Some(4),
        "{said}\n{}",
        String::from_utf8_lossy(&resolved.stderr)
    );
    assert!(
        said.lines()
            .any(|l| l.starts_with("verdict: valid") && l.contains("STOPPED EARLY")),
        "{said}"
    );
    let s = summary(&dir);
    assert_eq!(
        (s["aborted"].as_bool(), s["exit_code"].as_i64()),
        (Some(false), Some(4))
    );
}

/// failover.toml's last fault adds 200 ± 50 ms to us-east-1 for 500 ms: its slowest
/// requests took at least 140 ms (without the fault, tens of ms at most: its other faults
/// refuse or reset at once).
fn assert_latency_fault_slowed(s: &serde_json::Value) {
    let slow = &s["faults"][4];
    assert_eq!(slow["mode"], "latency");
    assert_eq!(slow["latency_ms"], 200);
    assert_eq!(slow["jitter_ms"], 50);
    assert!(slow["started_ms"].is_u64(), "{slow}");
    let east = &s["regions"][0];
    assert_eq!(east["name"], "us-east-1");
    assert!(
        east["latency_raw_ms"]["p99_ms"].as_f64().unwrap_or(0.0) >= 140.0,
        "{east}"
    );
}

/// scenarios/failover.toml renamed and given `target`, written under `dir`.
fn failover_with_target(dir: &Path, name: &str, target: &str) -> String {
    let text =
        std::fs::read_to_string(common::repo().join("scenarios/failover.toml")).expect("read");
    let file = dir.join(format!("{name}.toml"));
    std::fs::write(
        &file,
        text.replace(
            "name = \"failover\"",
            &format!("name = \"{name}\"\ntarget = {target}"),
        ),
    )
    .expect("write");
    file.display().to_string()
}

#[test]
fn http_target_with_real_socket_faults_in_every_mode_stays_valid() {
    // failover.toml over HTTP: one in-process server per region, each behind a fault proxy.
    let s = socket_faults_stay_valid("failover-http", "{ kind = \"http\" }");
    let east = &s["regions"][0]["connections"];
    assert_eq!(
        (east["tls"].as_bool(), east["http2"].as_u64()),
        (Some(false), Some(0))
    );
}

#[test]
fn https_and_http2_targets_with_real_socket_faults_in_every_mode_stay_valid() {
    // The same faults cut TLS records for real (the proxy works on TCP): HTTPS with ALPN
    // (HTTP/2 chosen), HTTPS held to HTTP/1.1, and HTTP/2 with prior knowledge on plain TCP.
    for (name, target, tls, http2) in [
        (
            "failover-https",
            "{ kind = \"http\", tls = { self_signed = true } }",
            true,
            true,
        ),
        (
            "failover-https1",
            "{ kind = \"http\", http = \"1.1\", tls = { self_signed = true } }",
            true,
            false,
        ),
        (
            "failover-h2c",
            "{ kind = \"http\", http = \"2\" }",
            false,
            true,
        ),
    ] {
        let s = socket_faults_stay_valid(name, target);
        for region in s["regions"].as_array().expect("regions") {
            let c = &region["connections"];
            let n = |k: &str| c[k].as_u64().unwrap_or(0);
            assert_eq!(c["tls"].as_bool(), Some(tls), "{name}: {c}");
            assert_eq!(n("http2") > 0, http2, "{name}: {c}");
            assert_eq!(
                n("http2") == n("opened"),
                http2,
                "{name}: every connection {c}"
            );
            if tls {
                // Outage and crash cut every connection; the reconnects resumed their
                // TLS sessions instead of paying full handshakes.
                assert!(n("resumed") > 0, "{name}: {c}");
            }
            if http2 {
                // Many streams per connection: far fewer connections than requests.
                assert!(
                    n("opened") * 20 < region["requests"].as_u64().unwrap_or(0),
                    "{name}: {c}"
                );
            }
        }
    }
}

/// failover.toml with `target`, every fault mode on real sockets: valid, every mode seen,
/// lost acknowledgements resolved by replay. The summary, for more checks.
fn socket_faults_stay_valid(name: &str, target: &str) -> serde_json::Value {
    let tmp = tempfile::tempdir().expect("tmp");
    let file = failover_with_target(tmp.path(), name, target);
    let dir = tmp.path().join("r");
    assert_ok(&run_to(&dir, &file, &["--agents", "12000"]));
    let s = summary(&dir);
    assert_eq!(s["validity"], "valid", "{name}");
    let c = |k: &str| s["counters"][k].as_u64().unwrap_or(0);
    assert!(
        c("connection_refused") > 0,
        "{name}: outage/crash refused connections"
    );
    assert!(
        c("connection_reset") > 0,
        "{name}: crash/lost-ack reset connections"
    );
    assert!(c("timeout") > 0, "{name}: blackhole timed out");
    assert_latency_fault_slowed(&s);
    // Lost acknowledgements happened on the wire and were resolved by replay.
    let history = History::read(&dir.join("history.bin")).expect("history");
    let conn = rusqlite::Connection::open(dir.join("swarm.db")).expect("db");
    let mut stored = std::collections::HashSet::new();
    let mut st = conn
        .prepare("SELECT idem_key FROM intent")
        .expect("prepare");
    for k in st.query_map([], |r| r.get::<_, String>(0)).expect("query") {
        stored.insert(k.expect("key"));
    }
    let lost = history
        .records
        .iter()
        .filter(|r| {
            r.kind() == Kind::Info
                && r.persona == swarm::history::Persona::WellBehaved
                && stored.contains(&history.key_of(r))
        })
        .count();
    assert!(lost > 0, "{name}: no acknowledgement was lost on the wire");
    assert!(s["counters"]["replays"].as_u64().unwrap_or(0) > 0, "{name}");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_target_with_socket_faults_is_valid_on_postgres() {
    // failover.toml over HTTP, every region its own server and pool on one PostgreSQL.
    let url = common::fresh_pg().await;
    let u = match &url {
        swarm::addr::DbUrl::Postgres(u) => u.clone(),
        _ => unreachable!(),
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let file = failover_with_target(tmp.path(), "failover-http-pg", "{ kind = \"http\" }");
    let dir = tmp.path().join("r");
    let d = dir.clone();
    let out =
        tokio::task::spawn_blocking(move || run_to(&d, &file, &["--db", &u, "--agents", "6000"]))
            .await
            .expect("join");
    assert_ok(&out);
    let s = summary(&dir);
    assert_eq!(s["validity"], "valid");
    assert_eq!(s["audit"]["mode"], "full");
    assert!(s["counters"]["connection_reset"].as_u64().unwrap_or(0) > 0);
    assert!(s["counters"]["replays"].as_u64().unwrap_or(0) > 0);
    assert_eq!(s["resolution"]["unresolved"], 0, "{}", s["resolution"]);
    // The resets left requests indeterminate during the run: the summary says how many,
    // on how many keys, and how many the agents settled themselves.
    let ind = &s["indeterminate"];
    let (requests, keys, settled) = (
        ind["requests"].as_u64().unwrap_or(0),
        ind["keys"].as_u64().unwrap_or(0),
        ind["settled_by_agents"].as_u64().unwrap_or(0),
    );
    assert!(requests > 0 && requests >= keys && keys >= settled, "{ind}");
    assert!(
        s["statuses"]["network"].as_u64().unwrap_or(0) > 0,
        "{}",
        s["statuses"]
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("answers (replays included): committed"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "indeterminate during the run: {requests} requests on {keys} keys"
        )),
        "{stdout}"
    );
    common::read_state(&url).await.assert_sound();
}

#[test]
fn a_live_endpoint_is_driven_over_http_with_an_api_key() {
    let tmp = tempfile::tempdir().expect("tmp");
    let port = common::free_port();
    let scenario = tmp.path().join("live.toml");
    std::fs::write(
        &scenario,
        format!(
            "name = \"live\"\nseed = 5\ntarget = {{ kind = \"http\", api_key_env = \"SWARM_TEST_API_KEY\" }}\n\
             catalog = {{ items = 1, stock = 50, buckets = 4, price_minor = 100, currency = \"USD\" }}\n\
             mandates = {{ count = 100, cap_minor = 1000, shards = 2 }}\n\
             agents = {{ count = 1500, in_flight = 32 }}\n\
             mix = {{ well_behaved = 0.9, double_submit = 0.1 }}\n\
             [[regions]]\nname = \"a\"\nendpoint = \"http://127.0.0.1:{port}\"\n\
             [[regions]]\nname = \"b\"\nendpoint = \"http://127.0.0.1:{port}/\"\n\
             [[faults]]\nat = \"30%\"\nkind = \"region-down\"\nregion = \"a\"\nmode = \"outage\"\nheal_after = \"200ms\"\n"
        ),
    )
    .expect("write");
    let db = format!("sqlite://{}", tmp.path().join("server.db").display());
    assert_ok(&swarm(
        &["db", "seed", "--db", &db, &scenario.display().to_string()],
        tmp.path(),
    ));
    let _server = common::ServeProcess::start(
        &db,
        port,
        &["--api-key-env", "SWARM_TEST_API_KEY"],
        &[("SWARM_TEST_API_KEY", "sekret")],
    );
    let run = |dir: &Path, extra: &[&str]| {
        let d = dir.display().to_string();
        let s = scenario.display().to_string();
        let mut args = vec!["run", s.as_str(), "--no-tui", "--report-dir", d.as_str()];
        args.extend_from_slice(extra);
        Command::new(env!("CARGO_BIN_EXE_swarm"))
            .args(&args)
            .env_remove("DATABASE_URL")
            .env("SWARM_TEST_API_KEY", "sekret")
            .env("CI", "true")
            .output()
            .expect("run")
    };
    // A wrong key is refused at the preflight: a usage error, nothing created or bought.
    let wrong = tmp.path().join("wrong");
    let out = Command::new(env!("CARGO_BIN_EXE_swarm"))
        .args(["run", &scenario.display().to_string(), "--no-tui"])
        .args(["--report-dir", &wrong.display().to_string()])
        .env_remove("DATABASE_URL")
        .env("SWARM_TEST_API_KEY", "not-the-key")
        .env("CI", "true")
        .output()
        .expect("run");
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{said}");
    assert!(
        said.contains("refused a harmless lookup with HTTP 401"),
        "{said}"
    );
    assert!(!wrong.exists(), "nothing created");
    // Without the database: the history-only audit, which says what it could not check.
    let blind = tmp.path().join("blind");
    let out = run(&blind, &["--run-id", "live5"]);
    let s = summary(&blind);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(s["audit"]["mode"], "history-only");
    assert_eq!(s["validity"], "valid");
    // The header names what was driven and that the database could not be read.
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!("target: live endpoints a http://127.0.0.1:{port}"))
            && said.contains("database: none given (history-only audit)"),
        "{said}"
    );
    assert_eq!(
        s["counters"]["committed"].as_u64().map(|c| c >= 50),
        Some(true),
        "the stock sold over HTTP"
    );
    assert!(!blind.join("swarm.db").exists());
    // With it (the same run id and seed, so every key replays): the full audit.
    // Every answer is a replay of the first run's purchases: sound, but it tested nothing
    // new, so the verdict is unknown (exit 3) with that reason, never valid.
    let seen = tmp.path().join("seen");
    let out = run(&seen, &["--db", &db, "--run-id", "live5"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let s = summary(&seen);
    assert_eq!(s["audit"]["mode"], "full");
    let not_valid: Vec<&serde_json::Value> = s["audit"]["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["validity"] != "valid")
        .collect();
    assert_eq!(not_valid.len(), 1, "{not_valid:?}");
    assert_eq!(not_valid[0]["name"], "run.exercised");
    assert!(
        s["counters"]["replays"].as_u64().unwrap_or(0) >= 1500,
        "{}",
        s["counters"]
    );

    // Ids given in the scenario (another seed, so the derived ids would be others) and
    // ids discovered from the sandbox: each run buys exactly what it was pointed at. The
    // audits are history-only: the database also holds the seed-5 runs' purchases, which a
    // full audit rightly reports as no client of this run's.
    let conn = rusqlite::Connection::open(tmp.path().join("server.db")).expect("db");
    let one = |sql: &str| -> Vec<String> {
        let mut st = conn.prepare(sql).expect("prepare");
        st.query_map([], |r| r.get::<_, String>(0))
            .expect("query")
            .map(|r| r.expect("row"))
            .collect()
    };
    let merchant = one("SELECT merchant_id FROM merchant WHERE sandbox = 0")[0].clone();
    let mandates =
        one("SELECT mandate_id FROM mandate WHERE sandbox = 0 ORDER BY mandate_id LIMIT 3");
    let items = one("SELECT item_id FROM item WHERE sandbox = 0");
    let quoted = |v: &[String]| {
        v.iter()
            .map(|x| format!("\"{x}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let text = std::fs::read_to_string(&scenario).expect("read");
    let given = tmp.path().join("given.toml");
    std::fs::write(
        &given,
        text.replace("seed = 5", "seed = 7").replace(
            "api_key_env = \"SWARM_TEST_API_KEY\" }",
            &format!(
                "api_key_env = \"SWARM_TEST_API_KEY\", ids = {{ merchant = \"{merchant}\", mandates = [{}], items = [{}], \
                 price_minor = 100, currency = \"USD\", stock_per_item = 50, cap_per_mandate_minor = 1000 }} }}",
                quoted(&mandates),
                quoted(&items)
            ),
        ),
    )
    .expect("write");
    let discovered = tmp.path().join("discovered.toml");
    std::fs::write(
        &discovered,
        text.replace("seed = 5", "seed = 8").replace(
            "api_key_env = \"SWARM_TEST_API_KEY\" }",
            "api_key_env = \"SWARM_TEST_API_KEY\", discover = \"sandbox\" }",
        ),
    )
    .expect("write");
    for (file, prefix) in [(&given, "given-s7-"), (&discovered, "found-s8-")] {
        let dir = tmp.path().join(prefix);
        let run_id = prefix.split('-').next().expect("id");
        let out = Command::new(env!("CARGO_BIN_EXE_swarm"))
            .args([
                "run",
                &file.display().to_string(),
                "--no-tui",
                "--run-id",
                run_id,
            ])
            .args([
                "--report-dir",
                &dir.display().to_string(),
                "--agents",
                "300",
            ])
            .env("SWARM_TEST_API_KEY", "sekret")
            .env("CI", "true")
            .output()
            .expect("run");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{prefix}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let s = summary(&dir);
        assert_eq!(s["validity"], "valid", "{prefix}");
        assert_eq!(s["audit"]["mode"], "history-only", "{prefix}");
        let committed = s["counters"]["committed"].as_u64().unwrap_or(0);
        let bought = |sql: String| {
            conn.query_row(&sql, [], |r| r.get::<_, i64>(0))
                .expect("count") as u64
        };
        // Every intent, declined ones too (the seed-5 runs sold the given items out).
        let like = format!("idem_key LIKE '{prefix}%'");
        let (want_items, want_mandates) = if prefix == "given-s7-" {
            (items.clone(), mandates.clone())
        } else {
            (
                one("SELECT item_id FROM item WHERE sandbox = 1"),
                one("SELECT mandate_id FROM mandate WHERE sandbox = 1"),
            )
        };
        assert!(
            committed > 0 || prefix == "given-s7-",
            "{prefix}: {}",
            s["counters"]
        );
        assert!(bought(format!("SELECT COUNT(*) FROM intent WHERE {like}")) >= 300);
        assert_eq!(
            bought(format!(
                "SELECT COUNT(*) FROM intent WHERE {like} AND item_id IN ({}) AND mandate_id IN ({})",
                want_items
                    .iter()
                    .map(|x| format!("'{x}'"))
                    .collect::<Vec<_>>()
                    .join(","),
                want_mandates
                    .iter()
                    .map(|x| format!("'{x}'"))
                    .collect::<Vec<_>>()
                    .join(",")
            )),
            bought(format!("SELECT COUNT(*) FROM intent WHERE {like}")),
            "{prefix}: every purchase used the ids it was given"
        );
    }
}

#[test]
fn a_command_fault_runs_and_its_exit_code_and_output_are_kept() {
    let tmp = tempfile::tempdir().expect("tmp");
    let marker = tmp.path().join("promoted");
    let file = tmp.path().join("cmd.toml");
    std::fs::write(
        &file,
        format!(
            "name = \"cmd\"\nagents = {{ count = 2000, in_flight = 32, arrival = \"rate\", rate_per_s = 2000 }}\n\
             [[faults]]\nat = \"20%\"\nkind = \"command\"\ncommand = \"echo promoting standby; touch {}; exit 3\"\n",
            marker.display()
        ),
    )
    .expect("write");
    let dir = tmp.path().join("r");
    assert_ok(&run_to(&dir, &file.display().to_string(), &[]));
    let s = summary(&dir);
    let f = &s["faults"][0];
    assert_eq!(f["mode"], "command");
    assert_eq!(f["exit_code"], 3, "{f}");
    assert!(
        f["output"]
            .as_str()
            .is_some_and(|o| o.contains("promoting standby")),
        "{f}"
    );
    assert!(marker.exists(), "the command ran");
    // A command fault with a mode, or a region fault without one, is a scenario error.
    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, "name = \"bad\"\n[[faults]]\nat = \"1s\"\nkind = \"command\"\nmode = \"crash\"\ncommand = \"true\"\n").expect("write");
    let out = swarm(&["run", &bad.display().to_string(), "--no-tui"], tmp.path());
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("faults[0].mode"));
}

#[test]
fn the_zinc_shape_runs_the_same_scenario_and_audit() {
    // failover.toml over HTTP in Zinc's shape: reused keys answer already_exists and the
    // client looks the order up; the audit is the same.
    let tmp = tempfile::tempdir().expect("tmp");
    let file = failover_with_target(
        tmp.path(),
        "failover-zinc",
        "{ kind = \"http\", contract = { profile = \"zinc\" } }",
    );
    let dir = tmp.path().join("r");
    assert_ok(&run_to(&dir, &file, &["--agents", "8000"]));
    let s = summary(&dir);
    assert_eq!(s["validity"], "valid");
    assert!(
        s["counters"]["replays"].as_u64().unwrap_or(0) > 0,
        "already_exists became replays"
    );
    assert!(
        s["counters"]["key_reused"].as_u64().unwrap_or(0) > 0,
        "changed payloads refused"
    );
}

#[test]
fn the_in_flight_gauge_returns_to_zero_after_every_persona_and_fault_mode() {
    // failover.toml: every region-down mode in turn, crash-restart clients that abandon
    // requests mid-flight, double submits and payload mutators; direct and over HTTP.
    let tmp = tempfile::tempdir().expect("tmp");
    let http = tmp.path().join("http.toml");
    let text = std::fs::read_to_string(scenario("failover.toml")).expect("read");
    std::fs::write(
        &http,
        text.replacen(
            "\nname = \"failover\"",
            "\nname = \"failover\"\ntarget = { kind = \"http\" }",
            1,
        ),
    )
    .expect("write");
    for (label, file) in [
        ("direct", scenario("failover.toml")),
        ("http", http.display().to_string()),
    ] {
        let dir = tmp.path().join(label);
        assert_ok(&run_to(&dir, &file, &["--agents", "4000"]));
        let (series, _) = swarm::report::read_series(&dir.join("timeseries.csv")).expect("series");
        let last = series.last().expect("a sample");
        assert_eq!(
            last.in_flight, 0,
            "{label}: requests left counted in flight: {last:?}"
        );
        assert!(
            series.iter().any(|s| s.in_flight > 0),
            "{label}: the gauge moved at all"
        );
    }
}

/// The end-of-run replay has a time budget: past it, what is left undecided is
/// `unresolved` (the verdict `unknown`), and the run says why.
#[test]
fn the_end_of_run_replay_stops_at_its_budget() {
    let tmp = tempfile::tempdir().expect("tmp");
    let file = tmp.path().join("budget.toml");
    std::fs::write(
        &file,
        "name = \"budget\"\nseed = 4\n\
         catalog = { items = 1, stock = 5000, buckets = 4, price_minor = 100, currency = \"USD\" }\n\
         mandates = { count = 500, cap_minor = 10000, shards = 2 }\n\
         agents = { count = 800, in_flight = 32 }\n\
         mix = { well_behaved = 1.0 }\n\
         kernel = { max_attempts = 1 }\n\
         retry = { timeout_ms = 10000, max_attempts = 1, backoff_ms = [1, 5], resolve_budget_ms = 1 }\n\
         [[regions]]\nname = \"a\"\n[[regions]]\nname = \"b\"\n\
         [[faults]]\nat = \"0%\"\nkind = \"region-down\"\nregion = \"a\"\nmode = \"lost-ack\"\nheal_after = \"60s\"\n",
    )
    .expect("write");
    // The final reads settle what the resolution left: the same run ends valid. The
    // kernel gives up at the first conflict, so some keys' only request left nothing, its
    // answer cut on the way back: read "absent" after their requests ended, they are
    // settled, not unknown.
    let dir = tmp.path().join("read");
    let out = run_to(&dir, &file.display().to_string(), &[]);
    let s = summary(&dir);
    assert!(s["resolution"]["unresolved"].as_u64().unwrap_or(0) > 0);
    assert!(
        s["final_reads"]["offered_open"].as_u64().unwrap_or(0) > 0,
        "{}",
        s["final_reads"]
    );
    assert_eq!(
        s["validity"],
        "valid",
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Without them, what the resolution left is unknown.
    let text = std::fs::read_to_string(&file).expect("read");
    std::fs::write(
        &file,
        format!("{text}[audit]\nfinal_reads = {{ max_keys = 0 }}\n"),
    )
    .expect("write");
    let dir = tmp.path().join("r");
    let out = run_to(&dir, &file.display().to_string(), &[]);
    let s = summary(&dir);
    let res = &s["resolution"];
    assert!(res["pending"].as_u64().unwrap_or(0) > 0, "{res}");
    assert!(
        res["stopped"]
            .as_str()
            .unwrap_or("")
            .contains("resolve_budget_ms = 1"),
        "{res}"
    );
    assert!(res["unresolved"].as_u64().unwrap_or(0) > 0, "{res}");
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(s["validity"], "unknown");
}

/// The embedded default is row-level OCC: while stock lasts, purchases that read the same
/// bucket conflict and rerun (OCC retries visibly non-zero); once it is gone, declines do
/// not conflict, so the retries do not grow with the number of agents.
#[test]
fn occ_retries_are_non_zero_and_do_not_grow_with_the_agents() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut retries = Vec::new();
    for agents in ["4000", "40000"] {
        let dir = tmp.path().join(agents);
        let out = run_to(&dir, &scenario("smoke.toml"), &["--agents", agents]);
        assert_ok(&out);
        let s = summary(&dir);
        assert_eq!(s["headline"]["units_sold"], 100, "{agents}");
        let n = s["headline"]["occ_retries"].as_u64().unwrap_or(0);
        assert!(n > 0, "{agents} agents: no OCC retry on the default kernel");
        retries.push(n);
    }
    assert!(
        retries[1] <= 3 * retries[0].max(200),
        "retries grew with the agents: {retries:?}"
    );
}

/// Every agent a double submitter: each execution's answer arrives twice (the twin's is a
/// replay repeating its original's `attempts`). The headline's OCC retries and the
/// attempts bars count each execution once: the sum over the distinct executions the
/// history names, not over the answers.
#[test]
fn occ_retries_are_counted_once_per_execution_with_only_double_submits() {
    let tmp = tempfile::tempdir().expect("tmp");
    let file = tmp.path().join("twins.toml");
    let text = std::fs::read_to_string(scenario("contention.toml"))
        .expect("read")
        .replace("name = \"contention\"", "name = \"twins\"")
        .replace("count = 20000", "count = 3000")
        .replace(
            "mix = { well_behaved = 1.0 }",
            "mix = { well_behaved = 0.0, double_submit = 1.0 }",
        );
    std::fs::write(&file, text).expect("write");
    let dir = tmp.path().join("r");
    assert_ok(&run_to(&dir, &file.display().to_string(), &[]));
    let s = summary(&dir);
    let history = swarm::history::History::read(&dir.join("history.bin")).expect("history");
    // Each execution's attempts, once (by the execution id its answers named).
    let mut executions = std::collections::BTreeMap::new();
    for r in &history.records {
        if r.execution != 0 && r.op != swarm::history::Op::FinalRead {
            executions.insert(r.execution, u64::from(r.attempts));
        }
    }
    let once: u64 = executions.values().map(|a| a.saturating_sub(1)).sum();
    let per_answer: u64 = history
        .records
        .iter()
        .filter(|r| r.execution != 0 && r.op != swarm::history::Op::FinalRead)
        .map(|r| u64::from(r.attempts.saturating_sub(1)))
        .sum();
    assert!(once > 0, "the optimistic kernel retried nothing: no test");
    assert!(
        per_answer > once,
        "the twins repeat their originals' attempts"
    );
    assert_eq!(s["headline"]["occ_retries"].as_u64(), Some(once));
    let bars: u64 = s["attempts"]
        .as_array()
        .expect("bars")
        .iter()
        .map(|v| v.as_u64().unwrap_or(0))
        .sum();
    assert_eq!(bars, executions.len() as u64, "one bar entry per execution");
}
