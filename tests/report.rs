//! The report directory: every file, its format, thresholds, re-rendering, shards + merge,
//! and report.html as a browser draws it.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use swarm::history::History;

fn swarm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_swarm"))
        .args(args)
        .env_remove("DATABASE_URL")
        .output()
        .expect("swarm")
}

fn write_scenario(dir: &Path, name: &str, extra: &str) -> String {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "name = \"{name}\"\nseed = 17\n\
             catalog = {{ items = 1, stock = 100, buckets = 8, price_minor = 100, currency = \"USD\" }}\n\
             mandates = {{ count = 500, cap_minor = 1000, shards = 2 }}\n\
             agents = {{ count = 3000, in_flight = 64, arrival = \"rate\", rate_per_s = 1500 }}\n\
             mix = {{ well_behaved = 0.9, double_submit = 0.1 }}\n\
             {extra}\n\
             [[regions]]\nname = \"a\"\n[[regions]]\nname = \"b\"\n\
             [[faults]]\nat = \"40%\"\nkind = \"region-down\"\nregion = \"a\"\nmode = \"crash\"\nheal_after = \"300ms\"\n"
        ),
    )
    .expect("write");
    path.display().to_string()
}

fn run(scenario: &str, dir: &Path, extra: &[&str]) -> Output {
    let d = dir.display().to_string();
    let mut args = vec!["run", scenario, "--no-tui", "--report-dir", &d];
    args.extend_from_slice(extra);
    swarm(&args)
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("json")
}

/// One passing run shared by the file-format tests.
fn passing_run() -> &'static (tempfile::TempDir, PathBuf) {
    static RUN: std::sync::OnceLock<(tempfile::TempDir, PathBuf)> = std::sync::OnceLock::new();
    RUN.get_or_init(|| {
        let tmp = tempfile::tempdir().expect("tmp");
        let scenario = write_scenario(
            tmp.path(),
            "files",
            "thresholds = { error_rate = \"< 0.5\", purchases_per_s = \"> 1\" }",
        );
        let dir = tmp.path().join("r");
        let out = run(&scenario, &dir, &[]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (tmp, dir)
    })
}

#[test]
fn summary_validates_against_its_schema() {
    let (_, dir) = passing_run();
    let schema = json(&common::repo().join("schemas/summary.schema.json"));
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let summary = json(&dir.join("summary.json"));
    let errors: Vec<String> = validator
        .iter_errors(&summary)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    // And the schema can fail: a summary missing its verdict is refused.
    let mut broken = summary.clone();
    broken.as_object_mut().expect("object").remove("validity");
    assert!(!validator.is_valid(&broken));
    assert_eq!(summary["faults"][0]["mode"], "crash");
    assert!(summary["audit"]["checks"].as_array().expect("checks").len() >= 20);
}

#[test]
fn junit_has_one_case_per_check_and_threshold() {
    let (_, dir) = passing_run();
    let summary = json(&dir.join("summary.json"));
    let xml = std::fs::read_to_string(dir.join("junit.xml")).expect("junit");
    let doc = roxmltree::Document::parse(&xml).expect("junit.xml parses");
    let cases: Vec<roxmltree::Node> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    let checks = summary["audit"]["checks"].as_array().expect("checks").len();
    let skipped = summary["audit"]["skipped"]
        .as_array()
        .expect("skipped")
        .len();
    let thresholds = summary["thresholds"].as_array().expect("thresholds").len();
    assert_eq!(thresholds, 2);
    // And `run.complete`, which a finished run passes.
    assert_eq!(cases.len(), checks + skipped + thresholds + 1);
    assert!(
        cases
            .iter()
            .any(|c| c.attribute("name") == Some("run.complete")
                && !c.children().any(|e| e.is_element())),
        "{xml}"
    );
    assert!(
        cases
            .iter()
            .any(|c| c.attribute("name") == Some("oversell.negative_bucket"))
    );
    assert!(
        cases
            .iter()
            .any(|c| c.attribute("name") == Some("error_rate < 0.5"))
    );
    assert!(
        !cases
            .iter()
            .any(|c| c.children().any(|k| k.has_tag_name("failure")))
    );
}

#[test]
fn timeseries_has_a_row_per_second_and_histograms_parse() {
    let (_, dir) = passing_run();
    let summary = json(&dir.join("summary.json"));
    let (series, regions) = swarm::report::read_series(&dir.join("timeseries.csv")).expect("csv");
    assert_eq!(regions, vec!["a", "b"]);
    let seconds = summary["elapsed_ms"].as_u64().expect("elapsed") as f64 / 1000.0;
    assert!(
        (series.len() as f64 - seconds).abs() <= 1.5,
        "{} rows for a {seconds:.1} s run",
        series.len()
    );
    for (i, s) in series.iter().enumerate() {
        assert_eq!(s.second, i as u64 + 1);
    }
    let requests: u64 = series.iter().map(|s| s.requests).sum();
    assert_eq!(
        requests,
        summary["counters"]["requests"].as_u64().expect("requests")
    );
    for name in ["latency-corrected", "latency-raw", "latency-raw-region-a"] {
        let text = std::fs::read_to_string(dir.join(format!("{name}.hgrm"))).expect("hgrm");
        let mut last_q = -1.0;
        let mut rows = 0;
        for line in text
            .lines()
            .skip(2)
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let cols: Vec<f64> = line
                .split_whitespace()
                .map(|c| c.parse().expect("number"))
                .collect();
            assert!(cols.len() >= 3, "{line}");
            assert!(cols[1] >= last_q, "percentiles rise");
            last_q = cols[1];
            rows += 1;
        }
        assert!(rows > 5, "{name}: {rows} rows");
        let total = text
            .lines()
            .find(|l| l.contains("Total count"))
            .and_then(|l| l.rsplit('=').next())
            .and_then(|v| v.trim().trim_end_matches(']').trim().parse::<u64>().ok())
            .expect("total");
        assert!(total > 0);
        let hdr = swarm::report::read_histogram(&dir.join(format!("{name}.hdr"))).expect("hdr");
        assert_eq!(hdr.len(), total);
    }
}

#[test]
fn report_html_is_self_contained_and_re_renders() {
    let (_, dir) = passing_run();
    let html = std::fs::read_to_string(dir.join("report.html")).expect("html");
    assert!(html.contains("Verdict: VALID"));
    assert!(
        !html.contains("http://") && !html.contains("<script"),
        "no network, no scripts"
    );
    assert!(html.matches("<svg").count() >= 5);
    std::fs::remove_file(dir.join("report.html")).expect("rm");
    let out = swarm(&["report", &dir.display().to_string()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("report.html")).expect("again"),
        html
    );
}

#[test]
fn a_failing_threshold_exits_2_and_an_unknown_metric_exits_64() {
    let tmp = tempfile::tempdir().expect("tmp");
    let failing = write_scenario(
        tmp.path(),
        "slow",
        "thresholds = { purchases_per_s = \"> 1000000000\" }",
    );
    let dir = tmp.path().join("r");
    let out = run(&failing, &dir, &[]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let s = json(&dir.join("summary.json"));
    assert_eq!(s["validity"], "valid");
    assert_eq!(s["thresholds"][0]["passed"], false);
    let junit = std::fs::read_to_string(dir.join("junit.xml")).expect("junit");
    assert!(junit.contains("<failure"));

    let unknown = write_scenario(tmp.path(), "typo", "thresholds = { p99_mss = \"< 250\" }");
    let out = run(&unknown, &tmp.path().join("never"), &[]);
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("thresholds.p99_mss") && err.contains("typo.toml:"),
        "{err}"
    );
}

fn keys(h: &History) -> BTreeSet<String> {
    h.records.iter().map(|r| h.key_of(r)).collect()
}

#[test]
fn two_shards_and_merge_cover_one_unsharded_run() {
    let tmp = tempfile::tempdir().expect("tmp");
    let scenario = write_scenario(tmp.path(), "sharded", "");
    let whole = tmp.path().join("whole");
    // One run id for the whole run and for both shards: the same keys.
    let id = ["--run-id", "shardtest"];
    assert_eq!(run(&scenario, &whole, &id).status.code(), Some(0));

    // Both shards share one database, as N machines share one cluster.
    let shared = format!("sqlite://{}", tmp.path().join("shared.db").display());
    let (s0, s1) = (tmp.path().join("s0"), tmp.path().join("s1"));
    let lone = run(&scenario, &tmp.path().join("lone"), &["--shard", "0/2"]);
    assert_eq!(lone.status.code(), Some(64), "a shard needs the run's id");
    assert!(String::from_utf8_lossy(&lone.stderr).contains("--run-id"));
    for (dir, shard) in [(&s0, "0/2"), (&s1, "1/2")] {
        let out = run(
            &scenario,
            dir,
            &["--db", &shared, "--shard", shard, "--run-id", "shardtest"],
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let s = json(&dir.join("summary.json"));
        assert!(
            s["audit"]["skipped"]
                .as_array()
                .expect("skipped")
                .iter()
                .any(|v| v == "history.phantom_commit"),
            "a shard leaves the cross-shard checks to merge"
        );
    }
    let merged = tmp.path().join("merged");
    let out = swarm(&[
        "merge",
        &s0.display().to_string(),
        &s1.display().to_string(),
        "--out",
        &merged.display().to_string(),
        "--db",
        &shared,
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let m = json(&merged.join("summary.json"));
    assert_eq!(m["validity"], "valid");
    assert_eq!(m["audit"]["mode"], "full");
    assert!(
        m["audit"]["skipped"]
            .as_array()
            .expect("skipped")
            .is_empty()
    );
    assert_eq!(m["agents_done"], 3000);

    let h0 = History::read(&s0.join("history.bin")).expect("h0");
    let h1 = History::read(&s1.join("history.bin")).expect("h1");
    let hw = History::read(&whole.join("history.bin")).expect("whole");
    let hm = History::read(&merged.join("history.bin")).expect("merged");
    let (k0, k1) = (keys(&h0), keys(&h1));
    assert!(k0.is_disjoint(&k1), "no key in two shards");
    let union: BTreeSet<String> = k0.union(&k1).cloned().collect();
    let first_keys = |h: &History| -> BTreeSet<String> {
        h.records
            .iter()
            .filter(|r| r.variant == 0)
            .map(|r| h.key_of(r))
            .collect()
    };
    assert_eq!(
        first_keys(&hm),
        first_keys(&hw),
        "the same agents and keys as one run"
    );
    assert_eq!(keys(&hm), union);
    let agents = |h: &History| h.records.iter().map(|r| r.agent).collect::<BTreeSet<u32>>();
    assert_eq!(agents(&hm).len(), 3000);
    // Counters add up exactly.
    let c = |v: &serde_json::Value, k: &str| v["counters"][k].as_u64().expect("counter");
    let (a, b) = (
        json(&s0.join("summary.json")),
        json(&s1.join("summary.json")),
    );
    assert_eq!(c(&m, "requests"), c(&a, "requests") + c(&b, "requests"));
    assert_eq!(
        m["latency_raw_ms"]["count"].as_u64(),
        Some(
            a["latency_raw_ms"]["count"].as_u64().unwrap_or(0)
                + b["latency_raw_ms"]["count"].as_u64().unwrap_or(0)
        )
    );
}

#[test]
fn report_html_draws_its_charts_in_a_browser() {
    let (_, dir) = passing_run();
    let chromium = chromium();
    let profile = tempfile::tempdir().expect("profile");
    let flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ];
    let page = format!("file://{}", dir.join("report.html").display());
    let shot = dir.join("report.png");
    let out = Command::new(chromium)
        .args(flags)
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--window-size=1000,2400")
        .arg(&page)
        .output()
        .expect("chromium");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&shot).expect("screenshot");
    assert!(
        png.len() > 10_000 && png.starts_with(b"\x89PNG"),
        "a real screenshot"
    );
    let dom = Command::new(chromium)
        .args(flags)
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(&page)
        .output()
        .expect("chromium");
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(dom.contains("Verdict: VALID"));
    let paths: Vec<&str> = dom
        .split("<path d=\"")
        .skip(1)
        .map(|p| p.split('"').next().unwrap_or(""))
        .collect();
    assert!(paths.len() >= 5, "{} paths", paths.len());
    assert!(
        paths.iter().all(|d| d.len() > 4 && d.starts_with('M')),
        "every path draws something"
    );
}

/// report.html puts what decides the verdict first: the colour follows the exit code (a
/// failed threshold is not green), thresholds come before the invariants, regions,
/// settings and the checks not run are there, and a fault band covers exactly its window,
/// labelled. Checked in the DOM headless Chromium builds.
#[test]
fn report_html_leads_with_what_decided_the_verdict() {
    let (_, dir) = passing_run();
    let tmp = tempfile::tempdir().expect("tmp");
    let copy = tmp.path().join("r");
    std::fs::create_dir_all(&copy).expect("dir");
    std::fs::copy(dir.join("timeseries.csv"), copy.join("timeseries.csv")).expect("csv");
    let mut s = json(&dir.join("summary.json"));
    s["exit_code"] = 2.into();
    s["thresholds"][0]["passed"] = false.into();
    s["faults"] = serde_json::json!([{
        "index": 0, "region": "us-east-1", "mode": "outage", "trigger": "20%",
        "started_ms": 500, "healed_ms": 1000
    }]);
    std::fs::write(copy.join("summary.json"), s.to_string()).expect("summary");
    let out = Command::new(env!("CARGO_BIN_EXE_swarm"))
        .args(["report", &copy.display().to_string()])
        .output()
        .expect("report");
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(copy.join("report.html")).expect("html");
    let dom = chromium_dom(&copy.join("report.html"));
    for page in [&html, &dom] {
        assert!(page.contains("threshold FAILED (exit 2)"), "{page}");
        assert!(page.contains("color:#b0182a"), "a failed threshold is red");
        let at = |needle: &str| {
            page.find(needle)
                .unwrap_or_else(|| panic!("{needle} missing"))
        };
        assert!(at("id=\"thresholds\"") < at("id=\"invariants\""));
        at("id=\"regions\"");
        at("id=\"settings\"");
        assert!(
            page.contains("us-east-1 outage"),
            "the fault band is labelled"
        );
        assert!(page.contains("data-from-s=\"0.500\" data-to-s=\"1.000\""));
    }
    // The band starts where 0.5 s is on the time axis: PAD + width × 0.5 / seconds.
    let seconds = std::fs::read_to_string(copy.join("timeseries.csv"))
        .expect("csv")
        .lines()
        .count()
        - 1;
    let x = 40.0 + 680.0 * 0.5 / seconds.max(1) as f64;
    assert!(
        html.contains(&format!("data-to-s=\"1.000\" x=\"{x:.1}\"")),
        "band at x={x:.1} for {seconds} s"
    );
}

/// The DOM of `page` as headless Chromium builds it.
fn chromium_dom(page: &Path) -> String {
    let chromium = chromium();
    let profile = tempfile::tempdir().expect("profile");
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
        ])
        .args([
            "--disable-background-networking",
            "--disable-component-update",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The Chromium binary on this machine (the tests that need one never skip).
fn chromium() -> &'static str {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .unwrap_or_else(|| {
            panic!("this test needs Chromium: apt-get install chromium (scripts/test.sh does)")
        })
}
