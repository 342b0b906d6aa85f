//! swarm against published idempotency middleware (`tests/middleware/`): four packages
//! from npm and PyPI, pinned and installed by `tests/middleware/setup.sh` into that folder,
//! each wrapped around a tiny checkout that never deduplicates a key itself and tells the
//! truth of what it executed (`GET /_truth`). Each run is judged with the contract that
//! describes the package (`[target.contract]`) and held to the truth: valid where every key
//! executed once, and each real defect the truth shows named by its check, with no key
//! named a duplicate that the truth says executed once.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// Install the pinned packages once per test binary (idempotent; fast when in place).
fn setup() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let out = Command::new("bash")
            .arg(common::repo().join("tests/middleware/setup.sh"))
            .output()
            .expect("bash");
        assert!(
            out.status.success(),
            "tests/middleware/setup.sh failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// A middleware-wrapped checkout as a process, killed when dropped.
struct Target {
    child: Child,
    port: u16,
}

impl Target {
    fn start(file: &str, extra: &[&str]) -> Target {
        setup();
        let port = common::free_port();
        let path = common::repo().join("tests/middleware").join(file);
        let program = if file.ends_with(".mjs") {
            "node"
        } else {
            "python3"
        };
        let child = Command::new(program)
            .arg(&path)
            .args(["--port", &port.to_string()])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the target");
        let target = Target { child, port };
        for _ in 0..400 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return target;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        panic!("{file} never listened on {port}");
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Executions per key, as the checkout itself recorded them.
    fn truth(&self) -> BTreeMap<String, usize> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        write!(
            s,
            "GET /_truth HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .expect("write");
        let mut text = String::new();
        s.read_to_string(&mut text).expect("read");
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        // A chunked answer: the JSON object is between the first `{` and the last `}`.
        let json = &body[body.find('{').unwrap_or(0)..=body.rfind('}').unwrap_or(0)];
        let v: serde_json::Value = serde_json::from_str(json).expect("truth is JSON");
        let mut by_key = BTreeMap::new();
        for e in v["executions"].as_array().expect("executions") {
            if let Some(k) = e["key"].as_str() {
                *by_key.entry(k.to_string()).or_default() += 1;
            }
        }
        by_key
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The contract settings each package is described by (tests/middleware/README.md).
const EXPRESS: &str = r#"profile = "ietf"
replay_marker = "none"
key_required = false
key_reused_status = [417]
in_flight_status = [409]"#;
const NEST: &str = r#"profile = "ietf"
replay_marker = "header:Idempotent-Replayed"
key_required = false
key_reused_status = [422]
key_reused_code = ["Idempotency-Key is already used"]
in_flight_status = [409]
error_code = ["/error/code", "/message"]"#;
const ASGI: &str = r#"profile = "stripe"
replay_marker = "header:Idempotent-Replayed"
key_reused_status = []
in_flight_status = [409]"#;
const DJANGO: &str = r#"profile = "zerorace"
replay_marker = "none"
key_reused_status = []
replay_status = [409]"#;

fn scenario(dir: &Path, name: &str, url: &str, contract: &str, mix: &str) -> PathBuf {
    let text = format!(
        "name = \"{name}\"\nseed = 5\nagents = {{ count = 400, in_flight = 16 }}\n\
         mix = {{ {mix} }}\n\
         retry = {{ timeout_ms = 5000, max_attempts = 8, backoff_ms = [5, 60] }}\n\
         [target]\nkind = \"http\"\ndiscover = \"sandbox\"\n\
         [target.contract]\n{contract}\n\
         [target.contract.request]\nlookup = \"\"\n\
         [[regions]]\nname = \"r0\"\nendpoint = \"{url}\"\n"
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("write");
    path
}

fn run(file: &Path, dir: &Path) -> (Output, serde_json::Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_swarm"))
        .args([
            "run",
            &file.display().to_string(),
            "--no-tui",
            "--report-dir",
        ])
        .arg(dir)
        .env_remove("DATABASE_URL")
        .env("CI", "true")
        .output()
        .expect("swarm");
    let text = std::fs::read_to_string(dir.join("summary.json")).unwrap_or_else(|_| {
        panic!(
            "no summary:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out, serde_json::from_str(&text).expect("json"))
}

fn invalid(s: &serde_json::Value) -> Vec<String> {
    s["audit"]["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["validity"] == "invalid")
        .map(|c| c["name"].as_str().unwrap_or("").to_string())
        .collect()
}

fn check<'a>(s: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    common::check(s, name)
}

/// Keys the truth says executed more than once.
fn twice(truth: &BTreeMap<String, usize>) -> Vec<&String> {
    truth
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(k, _)| k)
        .collect()
}

const CLEAN_MIX: &str = "well_behaved = 0.7, double_submit = 0.2, crash_restart = 0.1";
const MUTATING_MIX: &str = "well_behaved = 0.6, double_submit = 0.2, payload_mutator = 0.2";

#[test]
fn correct_middlewares_are_judged_valid_by_the_contract_that_describes_them() {
    // express-idempotency replays unmarked and refuses another payload with 417;
    // @node-idempotency/nestjs marks replays with a header and refuses with 422: both
    // execute each key once under concurrency, which the truth confirms.
    for (file, contract) in [
        ("node/express_idem.mjs", EXPRESS),
        ("node/nest_idem.mjs", NEST),
    ] {
        let tmp = tempfile::tempdir().expect("tmp");
        let target = Target::start(file, &["--stock", "60"]);
        let path = scenario(tmp.path(), "mw", &target.url(), contract, MUTATING_MIX);
        let (out, s) = run(&path, &tmp.path().join("r"));
        let truth = target.truth();
        assert!(
            twice(&truth).is_empty(),
            "{file}: the truth says {:?}",
            twice(&truth)
        );
        assert_eq!(
            s["validity"],
            "valid",
            "{file}: {:?}\n{}",
            invalid(&s),
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(
            s["counters"]["committed"].as_u64().unwrap_or(0) >= 60,
            "{file}"
        );
        assert!(
            s["counters"]["key_reused"].as_u64().unwrap_or(0) > 0,
            "{file}: mutated payloads refused"
        );
        assert_eq!(s["counters"]["contract_violation"], 0, "{file}");
    }
}

#[test]
fn the_same_servers_under_zeroraces_default_contract_are_not_called_duplicates() {
    // The issue that started it: replays whose body says `replayed: false` were counted as
    // second executions. Under the default contract they are an unmarked replay (a
    // contract finding), never a duplicate settlement: the ids are the same.
    let tmp = tempfile::tempdir().expect("tmp");
    let target = Target::start("node/nest_idem.mjs", &["--stock", "60"]);
    let path = scenario(
        tmp.path(),
        "mw",
        &target.url(),
        "key_required = false",
        CLEAN_MIX,
    );
    let (_, s) = run(&path, &tmp.path().join("r"));
    assert!(twice(&target.truth()).is_empty());
    let bad = invalid(&s);
    assert!(
        !bad.iter().any(|c| c.starts_with("duplicate_settlement.")),
        "{bad:?}"
    );
    assert!(
        bad.contains(&"contract.replay_not_marked".to_string()),
        "{bad:?}"
    );
}

#[test]
fn asgi_idempotency_header_replays_another_payload_instead_of_refusing_it() {
    // A real defect of asgi-idempotency-header 0.2.0: it never compares payloads, so a
    // reused key with another amount gets the first answer back. Without payload
    // mutators the run is valid; with them, `history.payload_not_refused` names it and
    // nothing else is invalid (the truth: every key executed once).
    let tmp = tempfile::tempdir().expect("tmp");
    let target = Target::start("py/fastapi_idem.py", &["--stock", "60"]);
    let path = scenario(tmp.path(), "asgi", &target.url(), ASGI, CLEAN_MIX);
    let (out, s) = run(&path, &tmp.path().join("clean"));
    assert_eq!(
        s["validity"],
        "valid",
        "{:?}\n{}",
        invalid(&s),
        String::from_utf8_lossy(&out.stdout)
    );
    drop(target);
    let target = Target::start("py/fastapi_idem.py", &["--stock", "60"]);
    let path = scenario(tmp.path(), "asgi", &target.url(), ASGI, MUTATING_MIX);
    let (out, s) = run(&path, &tmp.path().join("mutating"));
    assert!(twice(&target.truth()).is_empty());
    assert_eq!(
        invalid(&s),
        vec!["history.payload_not_refused"],
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        check(&s, "history.payload_not_refused")["count"]
            .as_u64()
            .unwrap_or(0)
            > 0
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn django_idempotency_key_executes_concurrent_requests_twice_and_swarm_names_each() {
    // A real defect of django-idempotency-key 1.3.0: its lock covers the store lookup,
    // not the view, so concurrent requests of one key all execute. Every key swarm calls
    // a duplicate is one the truth shows executed twice, and it misses none of them.
    let tmp = tempfile::tempdir().expect("tmp");
    let target = Target::start("py/django_idem.py", &["--stock", "100000"]);
    // No crash-restart clients: an abandoned request that executes beside its retry is a
    // second execution whose answer no client saw (only a database could tell).
    let path = scenario(
        tmp.path(),
        "django",
        &target.url(),
        DJANGO,
        "well_behaved = 0.8, double_submit = 0.2",
    );
    let (out, s) = run(&path, &tmp.path().join("r"));
    let truth = target.truth();
    let executed_twice = twice(&truth);
    assert!(!executed_twice.is_empty(), "the defect shows in the truth");
    let bad = invalid(&s);
    assert!(
        bad.contains(&"duplicate_settlement.double_submit".to_string()),
        "{bad:?}"
    );
    let named = check(&s, "duplicate_settlement.double_submit")["count"]
        .as_u64()
        .unwrap_or(0)
        + check(&s, "duplicate_settlement.key_executions")["count"]
            .as_u64()
            .unwrap_or(0);
    assert_eq!(
        named,
        executed_twice.len() as u64,
        "swarm named {named}, the truth shows {}: {executed_twice:?}\n{}",
        executed_twice.len(),
        String::from_utf8_lossy(&out.stdout)
    );
    for name in [
        "duplicate_settlement.double_submit",
        "duplicate_settlement.key_executions",
    ] {
        for example in check(&s, name)["examples"].as_array().expect("examples") {
            let key = example.as_str().unwrap_or("");
            assert!(
                truth.get(key).is_some_and(|n| *n > 1),
                "{name} names {key}, which executed once"
            );
        }
    }
    // Nothing else the answers show is wrong: a replay is its original again.
    assert!(
        bad.iter().all(|c| c.starts_with("duplicate_settlement.")),
        "{bad:?}"
    );
    // The probe saw it before any agent did.
    let concurrent = s["conformance"]["checks"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == "conformance.concurrent"))
        .expect("probed");
    assert_eq!(concurrent["validity"], "invalid", "{concurrent}");
}
