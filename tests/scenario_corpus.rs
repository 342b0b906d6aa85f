//! A corpus of malformed scenario files: every one is refused with exit 64, an error that
//! names the file, the line and the field, a bounded message, and nothing created.

use std::path::Path;
use std::process::Command;

/// (file name, contents, the field the error must name, the line it must point at).
fn corpus() -> Vec<(&'static str, Vec<u8>, &'static str, Option<usize>)> {
    let region = "[[regions]]\nname = \"a\"\n";
    let fault = |body: &str| format!("name = \"f\"\n{region}\n[[faults]]\n{body}").into_bytes();
    let huge = "x".repeat(900_000);
    vec![
        ("empty.toml", b"".to_vec(), "", Some(1)),
        ("comments.toml", b"# nothing here\n\n".to_vec(), "", Some(1)),
        ("bom.toml", b"\xEF\xBB\xBFname = \"b\"\n".to_vec(), "", Some(1)),
        ("latin1.toml", b"name = \"ok\"\n# caf\xE9\n".to_vec(), "", Some(2)),
        ("unknown_key.toml", b"name = \"u\"\nnmae = 3\n".to_vec(), "nmae", Some(2)),
        ("wrong_type.toml", b"name = \"w\"\nagents = { count = \"many\" }\n".to_vec(), "agents.count", Some(2)),
        ("negative_count.toml", b"name = \"n\"\nagents = { count = -5 }\n".to_vec(), "agents.count", Some(2)),
        ("huge_count.toml", b"name = \"h\"\nagents = { count = 99999999999 }\n".to_vec(), "agents.count", Some(2)),
        ("zero_in_flight.toml", b"name = \"z\"\nagents = { in_flight = 0 }\n".to_vec(), "agents.in_flight", Some(2)),
        ("quantity.toml", b"name = \"q\"\nagents = { quantity = 100000 }\n".to_vec(), "agents.quantity", Some(2)),
        ("weights.toml", b"name = \"w\"\nmix = { well_behaved = 0.5, double_submit = 0.2 }\n".to_vec(), "mix", Some(2)),
        ("negative_weight.toml", b"name = \"w\"\nmix = { well_behaved = 1.5, double_submit = -0.5 }\n".to_vec(), "mix", Some(2)),
        ("nan_threshold.toml", b"name = \"t\"\nthresholds = { p99_ms = \"< NaN\" }\n".to_vec(), "thresholds.p99_ms", Some(2)),
        ("inf_threshold.toml", b"name = \"t\"\nthresholds = { p99_ms = \"< inf\" }\n".to_vec(), "thresholds.p99_ms", Some(2)),
        ("unknown_metric.toml", b"name = \"t\"\n[thresholds]\np99_mss = \"< 5\"\n".to_vec(), "thresholds.p99_mss", Some(3)),
        ("bad_rule.toml", b"name = \"t\"\n[thresholds]\np99_ms = \"about 5\"\n".to_vec(), "thresholds.p99_ms", Some(3)),
        ("traversal.toml", b"name = \"../../x\"\n".to_vec(), "name", Some(1)),
        ("long_name.toml", format!("name = \"{}\"\n", "n".repeat(300)).into_bytes(), "name", Some(1)),
        ("huge_token.toml", format!("name = \"ok\"\nseed = {huge}\n").into_bytes(), "seed", Some(2)),
        ("huge_name.toml", format!("name = \"{huge}\"\n").into_bytes(), "name", Some(1)),
        ("unknown_region.toml", fault("at = \"50%\"\nkind = \"region-down\"\nregion = \"b\"\nmode = \"crash\"\n"), "faults[0].region", Some(8)),
        ("bad_duration.toml", fault("at = \"soon\"\nkind = \"region-down\"\nregion = \"a\"\nmode = \"crash\"\n"), "faults[0].at", Some(6)),
        ("bad_heal.toml", fault("at = \"1s\"\nkind = \"region-down\"\nregion = \"a\"\nmode = \"crash\"\nheal_after = \"-1s\"\n"), "faults[0].heal_after", Some(10)),
        ("bad_mode.toml", fault("at = \"1s\"\nkind = \"region-down\"\nregion = \"a\"\nmode = \"meteor\"\n"), "faults[0].mode", Some(9)),
        ("no_mode.toml", fault("at = \"1s\"\nkind = \"region-down\"\nregion = \"a\"\n"), "faults[0].mode", None),
        ("latency_no_ms.toml", fault("at = \"1s\"\nkind = \"region-down\"\nregion = \"a\"\nmode = \"latency\"\n"), "faults[0].latency_ms", None),
        ("command_mode.toml", fault("at = \"1s\"\nkind = \"command\"\ncommand = \"true\"\nmode = \"crash\"\n"), "faults[0].mode", Some(9)),
        ("command_heals.toml", fault("at = \"1s\"\nkind = \"command\"\ncommand = \"true\"\nheal_after = \"1s\"\n"), "faults[0].heal_after", Some(9)),
        ("percent.toml", fault("at = \"150%\"\nkind = \"command\"\ncommand = \"true\"\n"), "faults[0].at", Some(6)),
        ("twice_named.toml", b"name = \"r\"\n[[regions]]\nname = \"a\"\n[[regions]]\nname = \"a\"\n".to_vec(), "regions[1].name", Some(5)),
        ("region_slash.toml", b"name = \"r\"\n[[regions]]\nname = \"a/b\"\n".to_vec(), "regions[0].name", Some(3)),
        ("ftp.toml", b"name = \"e\"\ntarget = { kind = \"http\" }\n[[regions]]\nname = \"a\"\nendpoint = \"ftp://x.example\"\n".to_vec(), "regions[0].endpoint", Some(5)),
        ("tls_unknown_key.toml", b"name = \"t\"\ntarget = { kind = \"http\", tls = { cafile = \"ca.pem\" } }\n[[regions]]\nname = \"a\"\nendpoint = \"https://x.example\"\n".to_vec(), "target.tls.cafile", Some(2)),
        ("tls_missing_file.toml", b"name = \"t\"\ntarget = { kind = \"http\", tls = { ca_file = \"nowhere/ca.pem\" } }\n[[regions]]\nname = \"a\"\nendpoint = \"https://x.example\"\n".to_vec(), "target.tls.ca_file", Some(2)),
        ("tls_half_mtls.toml", b"name = \"t\"\ntarget = { kind = \"http\", tls = { client_cert = \"c.pem\" } }\n[[regions]]\nname = \"a\"\nendpoint = \"https://x.example\"\n".to_vec(), "target.tls.client_key", Some(2)),
        ("tls_on_plain.toml", b"name = \"t\"\ntarget = { kind = \"http\", tls = { insecure = true } }\n[[regions]]\nname = \"a\"\nendpoint = \"http://x.example\"\n".to_vec(), "target.tls", Some(2)),
        ("tls_direct.toml", b"name = \"t\"\n[target]\ntls = { self_signed = true }\n".to_vec(), "target.tls", Some(3)),
        ("http_version.toml", b"name = \"t\"\ntarget = { kind = \"http\", http = \"3\" }\n".to_vec(), "target.http", Some(2)),
        ("tls_insecure_type.toml", b"name = \"t\"\ntarget = { kind = \"http\", tls = { insecure = \"yes\" } }\n".to_vec(), "target.tls.insecure", Some(2)),
        ("long_endpoint.toml", format!("name = \"e\"\ntarget = {{ kind = \"http\" }}\n[[regions]]\nname = \"a\"\nendpoint = \"http://127.0.0.1:1/{}\"\n", "p".repeat(5000)).into_bytes(), "regions[0].endpoint", Some(5)),
        ("host_zero.toml", b"name = \"h\"\n[[regions]]\nname = \"a\"\ndb_host_order = [0, 1]\n".to_vec(), "regions[0].db_host_order", Some(4)),
        ("host_twice.toml", b"name = \"h\"\n[[regions]]\nname = \"a\"\ndb_host_order = [2, 1, 2]\n".to_vec(), "regions[0].db_host_order", Some(4)),
        ("host_empty.toml", b"name = \"h\"\n[[regions]]\nname = \"a\"\ndb_host_order = []\n".to_vec(), "regions[0].db_host_order", Some(4)),
        ("host_type.toml", b"name = \"h\"\n[[regions]]\nname = \"a\"\ndb_host_order = [\"n1\"]\n".to_vec(), "regions[0].db_host_order", Some(4)),
        ("host_live.toml", b"name = \"h\"\ntarget = { kind = \"http\" }\n[[regions]]\nname = \"a\"\nendpoint = \"http://x.example\"\ndb_host_order = [1]\n".to_vec(), "regions[0].db_host_order", Some(6)),
        ("patroni_https.toml", b"name = \"p\"\n[cluster]\npatroni = [\"https://10.0.0.1:8008\"]\n".to_vec(), "cluster.patroni", Some(3)),
        ("patroni_not_url.toml", b"name = \"p\"\n[cluster]\npatroni = [\"10.0.0.1:8008\"]\n".to_vec(), "cluster.patroni", Some(3)),
        ("patroni_unknown.toml", b"name = \"p\"\ncluster = { etcd = [\"http://x\"] }\n".to_vec(), "cluster.etcd", Some(2)),
        ("bad_db.toml", b"name = \"d\"\ntarget = { database = \"mysql://x\" }\n".to_vec(), "target.database", Some(2)),
        ("timeout.toml", b"name = \"t\"\nretry = { timeout_ms = 0 }\n".to_vec(), "retry.timeout_ms", Some(2)),
        ("attempts.toml", b"name = \"t\"\nretry = { max_attempts = 65 }\n".to_vec(), "retry.max_attempts", Some(2)),
        ("backoff.toml", b"name = \"t\"\nretry = { backoff_ms = [100, 10] }\n".to_vec(), "retry.backoff_ms", Some(2)),
        ("rate.toml", b"name = \"r\"\nagents = { arrival = \"rate\", rate_per_s = 0.0 }\n".to_vec(), "agents.rate_per_s", Some(2)),
        ("ramp.toml", b"name = \"r\"\nagents = { arrival = \"ramp\" }\n".to_vec(), "agents.stages", Some(2)),
        ("currency.toml", b"name = \"c\"\ncatalog = { currency = \"dollars\" }\n".to_vec(), "catalog.currency", Some(2)),
        ("price.toml", b"name = \"p\"\ncatalog = { price_minor = 0 }\n".to_vec(), "catalog.price_minor", Some(2)),
        ("protocol.toml", b"name = \"z\"\ntarget = { kind = \"http\", protocol = \"zinc\" }\n".to_vec(), "target.protocol", Some(2)),
        ("profile.toml", b"name = \"c\"\n[target]\nkind = \"http\"\n[target.contract]\nprofile = \"paypal\"\n".to_vec(), "target.contract.profile", Some(5)),
        ("marker.toml", b"name = \"c\"\n[target]\nkind = \"http\"\n[target.contract]\nreplay_marker = \"flag\"\n".to_vec(), "target.contract.replay_marker", Some(5)),
        ("marker_nested.toml", b"name = \"c\"\n[target]\nkind = \"http\"\n[target.contract]\nreplay_marker = \"body:/meta/replayed\"\n".to_vec(), "target.contract.replay_marker", Some(5)),
        ("key_both.toml", b"name = \"c\"\n[target]\nkind = \"http\"\n[target.contract]\nkey_header = \"K\"\nkey_field = \"/k\"\n".to_vec(), "target.contract.key_field", Some(6)),
        ("status.toml", b"name = \"c\"\n[target]\nkind = \"http\"\n[target.contract]\nin_flight_status = [409, 1000]\n".to_vec(), "target.contract.in_flight_status", Some(5)),
        ("status_twice.toml", b"name = \"c\"\n[target]\nkind = \"http\"\n[target.contract]\nin_flight_status = [409]\n".to_vec(), "target.contract.in_flight_status", Some(5)),
        ("pointer.toml", b"name = \"c\"\n[target]\nkind = \"http\"\n[target.contract]\nerror_code = [\"error.code\"]\n".to_vec(), "target.contract.error_code", Some(5)),
        ("contract_unknown.toml", b"name = \"c\"\n[target]\nkind = \"http\"\n[target.contract]\nreplay_header = \"X\"\n".to_vec(), "target.contract.replay_header", Some(5)),
        ("body_not_json.toml", b"name = \"c\"\n[target]\nkind = \"http\"\n[target.contract.request]\nbody = '{\"qty\":{quantity},}'\n".to_vec(), "target.contract.request.body", Some(5)),
        ("body_slot.toml", b"name = \"c\"\n[target]\nkind = \"http\"\n[target.contract.request]\nbody = '{\"x\":\"{id}\"}'\n".to_vec(), "target.contract.request.body", Some(5)),
        ("answer_status.toml", b"name = \"c\"\n[target]\nkind = \"http\"\n[target.contract.answer]\ncommitted_status = [302]\n".to_vec(), "target.contract.answer.committed_status", Some(5)),
        ("final_reads.toml", b"name = \"f\"\naudit = { final_reads = { max_keys = 100000000 } }\n".to_vec(), "audit.final_reads.max_keys", Some(2)),
        ("too_big.toml", format!("name = \"big\"\n# {}\n", "y".repeat(2_000_000)).into_bytes(), "", None),
        ("ids.toml", b"name = \"i\"\ntarget = { kind = \"http\", ids = { merchant = \"nope\", mandates = [], items = [], price_minor = 1, currency = \"USD\", stock_per_item = 1, cap_per_mandate_minor = 1 } }\n[[regions]]\nname = \"a\"\nendpoint = \"http://127.0.0.1:1\"\n".to_vec(), "target.ids", Some(2)),
    ]
}

fn run(dir: &Path, file: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_swarm"))
        .args(["run", &file.display().to_string(), "--no-tui"])
        .current_dir(dir)
        .env("CI", "true")
        .env_remove("DATABASE_URL")
        .output()
        .expect("swarm")
}

#[test]
fn every_malformed_scenario_exits_64_named_located_bounded_and_creates_nothing() {
    let cases = corpus();
    assert!(cases.len() >= 25, "a corpus of at least 25 files");
    let mut wrong = Vec::new();
    for (name, bytes, field, line) in cases {
        if let Err(why) = std::panic::catch_unwind(|| check(name, &bytes, field, line)) {
            wrong.push(format!("{name}: {why:?}"));
        }
    }
    assert!(wrong.is_empty(), "{} of the corpus failed", wrong.len());
}

fn check(name: &str, bytes: &[u8], field: &str, line: Option<usize>) {
    {
        let tmp = tempfile::tempdir().expect("tmp");
        let file = tmp.path().join(name);
        std::fs::write(&file, bytes).expect("write");
        let out = run(tmp.path(), &file);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{name}: {err}");
        assert!(err.contains(name), "{name}: the file is named: {err}");
        if let Some(line) = line {
            assert!(
                err.contains(&format!("{name}:{line}:")),
                "{name}: line {line}: {err}"
            );
        }
        if name != "too_big.toml" {
            assert!(
                err.contains(&format!("field `{field}`")),
                "{name}: field `{field}`: {err}"
            );
        }
        assert!(
            err.len() < 1500,
            "{name}: a bounded message ({} bytes)",
            err.len()
        );
        let left: Vec<_> = std::fs::read_dir(tmp.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(left.len(), 1, "{name}: nothing created: {left:?}");
    }
}

#[test]
fn a_directory_or_a_missing_file_is_refused_with_its_path() {
    let tmp = tempfile::tempdir().expect("tmp");
    for target in [tmp.path().join("adir.toml"), tmp.path().join("absent.toml")] {
        if target.ends_with("adir.toml") {
            std::fs::create_dir(&target).expect("dir");
        }
        let out = run(tmp.path(), &target);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{err}");
        assert!(err.contains(&target.display().to_string()), "{err}");
        assert!(!tmp.path().join("reports").exists());
    }
}

#[test]
fn a_name_taken_from_the_file_is_made_safe() {
    let tmp = tempfile::tempdir().expect("tmp");
    let file = tmp.path().join("my scenario (v2).toml");
    std::fs::write(&file, "seed = 3\nagents = { count = 10 }\n").expect("write");
    let out = run(tmp.path(), &file);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reports: Vec<String> = std::fs::read_dir(tmp.path().join("reports"))
        .expect("reports")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(reports[0].starts_with("my-scenario--v2--"), "{reports:?}");
}

#[test]
fn a_missing_api_key_variable_is_a_usage_error_before_anything_is_created() {
    let tmp = tempfile::tempdir().expect("tmp");
    let file = tmp.path().join("live.toml");
    std::fs::write(
        &file,
        "name = \"live\"\ntarget = { kind = \"http\", api_key_env = \"SWARM_TEST_SURELY_UNSET\" }\n\
         [[regions]]\nname = \"a\"\nendpoint = \"http://127.0.0.1:1\"\n",
    )
    .expect("write");
    let out = run(tmp.path(), &file);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(err.contains("SWARM_TEST_SURELY_UNSET"), "{err}");
    assert!(!tmp.path().join("reports").exists(), "nothing created");
}
