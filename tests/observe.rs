//! Live observability against real parts: a real Prometheus server (Debian's `prometheus`,
//! started here on loopback) scrapes `swarm run --metrics-listen` every second and
//! receives `--metrics-push` through its remote-write receiver; after the run, PromQL
//! through Prometheus's HTTP API must give the totals `summary.json` gives. Mission
//! Control (`--web`) is opened by headless Chromium in `tests/web/`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A Prometheus server on loopback, stopped when dropped.
struct Prometheus {
    child: Child,
    port: u16,
}

impl Prometheus {
    fn start(dir: &Path, scrape_port: u16) -> Prometheus {
        let binary = ["prometheus", "/usr/bin/prometheus"]
            .into_iter()
            .find(|b| {
                Command::new(b)
                    .arg("--version")
                    .output()
                    .is_ok_and(|o| o.status.success())
            })
            .unwrap_or_else(|| {
                panic!(
                    "this test needs Prometheus: apt-get install prometheus (scripts/test.sh does)"
                )
            });
        let port = common::free_port();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\nscrape_configs:\n  - job_name: scrape\n    static_configs:\n      - targets: ['127.0.0.1:{scrape_port}']\n"
            ),
        )
        .expect("config");
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-remote-write-receiver")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        let p = Prometheus { child, port };
        // Ready, and scraping the target already (Prometheus hands new targets to its
        // scrape loops a few seconds after it starts; a run must not begin before).
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let scraping = get(port, "/api/v1/targets").is_some_and(|(status, body)| {
                status == 200
                    && body.contains(&format!("127.0.0.1:{scrape_port}"))
                    && body.contains("lastScrape\":\"2")
            });
            if scraping {
                return p;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("prometheus never scraped 127.0.0.1:{scrape_port} from {port}");
    }

    /// The value of a PromQL instant query that returns one sample.
    fn scalar(&self, promql: &str) -> f64 {
        let query: String = promql
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let (status, body) =
            get(self.port, &format!("/api/v1/query?query={query}")).expect("prometheus answers");
        assert_eq!(status, 200, "{promql}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        let result = &v["data"]["result"];
        assert_eq!(result.as_array().map(Vec::len), Some(1), "{promql}: {body}");
        result[0]["value"][1]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{promql}: {body}"))
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.1 GET on loopback: status and body.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Some((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn summary(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).expect("summary"))
        .expect("json")
}

fn scenario(dir: &Path) -> PathBuf {
    let path = dir.join("observed.toml");
    // Long enough for a few scrapes and pushes while it runs, with a fault to show.
    std::fs::write(
        &path,
        "name = \"observed\"\nseed = 9\n\
         catalog = { items = 1, stock = 200, buckets = 8, price_minor = 100, currency = \"USD\" }\n\
         mandates = { count = 200, cap_minor = 100000, shards = 2 }\n\
         agents = { count = 6000, in_flight = 32, arrival = \"rate\", rate_per_s = 1000.0 }\n\
         mix = { well_behaved = 0.9, double_submit = 0.1 }\n\
         [[regions]]\nname = \"a\"\n[[regions]]\nname = \"b\"\n\
         [[faults]]\nat = \"1s\"\nkind = \"region-down\"\nregion = \"a\"\nmode = \"outage\"\nheal_after = \"3s\"\n",
    )
    .expect("scenario");
    path
}

#[test]
fn prometheus_scrapes_and_receives_the_totals_summary_json_gives() {
    let tmp = tempfile::tempdir().expect("tmp");
    let scrape_port = common::free_port();
    let prom = Prometheus::start(tmp.path(), scrape_port);
    let dir = tmp.path().join("r");
    let out = Command::new(env!("CARGO_BIN_EXE_swarm"))
        .args([
            "run",
            &scenario(tmp.path()).display().to_string(),
            "--no-tui",
        ])
        .arg("--report-dir")
        .arg(&dir)
        .args(["--metrics-listen", &format!("127.0.0.1:{scrape_port}")])
        .args([
            "--metrics-push",
            &format!("http://127.0.0.1:{}/api/v1/write", prom.port),
            "--metrics-push-interval",
            "1s",
        ])
        .env("CI", "true")
        .env_remove("DATABASE_URL")
        .output()
        .expect("swarm");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let s = summary(&dir);
    let requests = s["counters"]["requests"].as_f64().expect("requests");
    let committed = s["counters"]["committed"].as_f64().expect("committed");
    assert!(requests > 0.0 && committed > 0.0);
    // The last scrape and the last push happened after the verdict (the listener stays
    // a few seconds); `last_over_time` reads past the staleness marker of a target gone.
    for job in ["scrape", "swarm"] {
        let q = |expr: &str| prom.scalar(&format!("sum(last_over_time({expr}[10m]))"));
        assert_eq!(
            q(&format!("swarm_requests_total{{job=\"{job}\"}}")),
            requests,
            "{job}: requests"
        );
        assert_eq!(
            q(&format!(
                "swarm_requests_total{{job=\"{job}\",outcome=\"committed\"}}"
            )),
            committed,
            "{job}: commits"
        );
        assert_eq!(
            q(&format!(
                "swarm_run_info{{job=\"{job}\",run_id=\"{}\"}}",
                s["run_id"].as_str().unwrap_or("")
            )),
            1.0,
            "{job}: the run's labels"
        );
        // Latency in seconds, a histogram Prometheus can take quantiles of.
        let p99 = q(&format!(
            "swarm_request_duration_seconds_count{{job=\"{job}\"}}"
        ));
        assert_eq!(
            p99,
            s["latency_raw_ms"]["count"].as_f64().unwrap_or(-1.0),
            "{job}"
        );
    }
    // The fault was seen as a state while it lasted.
    let down = prom.scalar(
        "sum(max_over_time(swarm_region_state{job=\"scrape\",region=\"a\",state=\"DOWN:outage\"}[10m]))",
    );
    assert_eq!(down, 1.0);
}

#[test]
fn listeners_bind_where_told_and_serve_only_reads_without_secrets() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (mport, wport) = (common::free_port(), common::free_port());
    let db = format!("sqlite://{}", tmp.path().join("s.db").display());
    let mut child = Command::new(env!("CARGO_BIN_EXE_swarm"))
        .args([
            "run",
            &scenario(tmp.path()).display().to_string(),
            "--no-tui",
        ])
        .arg("--report-dir")
        .arg(tmp.path().join("r"))
        .args(["--db", &db])
        .args(["--metrics-listen", &format!("127.0.0.1:{mport}")])
        .args(["--web", &format!("127.0.0.1:{wport}")])
        .env("CI", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("swarm");
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(wport, "/view.json").is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, view) = get(wport, "/view.json").expect("view");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&view).expect("json");
    assert_eq!(v["scenario"], "observed");
    // Read-only: a POST is refused.
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", wport)).expect("connect");
    write!(
        s,
        "POST /events HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read");
    assert!(text.starts_with("HTTP/1.1 405"), "{text}");
    let (_, page) = get(wport, "/").expect("page");
    assert!(page.contains("<html") || page.contains("<!doctype") || page.contains("<!DOCTYPE"));
    let (_, metrics) = get(mport, "/metrics").expect("metrics");
    assert!(metrics.contains("swarm_run_info"), "{metrics}");
    let _ = child.wait();
}

#[test]
fn a_password_in_the_database_url_never_reaches_a_page_an_event_or_a_label() {
    // A PostgreSQL URL with a password: swarm connects with it, and shows it nowhere.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let fresh = runtime.block_on(common::fresh_pg()).to_string();
    // The test cluster trusts loopback: any password is taken, none is needed.
    let password = "hunter2-not-for-your-eyes";
    let url = fresh.replacen("://swarm@", &format!("://swarm:{password}@"), 1);
    assert!(url.contains(password), "{url}");
    let tmp = tempfile::tempdir().expect("tmp");
    let (mport, wport) = (common::free_port(), common::free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_swarm"))
        .args([
            "run",
            &scenario(tmp.path()).display().to_string(),
            "--no-tui",
        ])
        .arg("--report-dir")
        .arg(tmp.path().join("r"))
        .args(["--db", &url])
        .args(["--metrics-listen", &format!("127.0.0.1:{mport}")])
        .args(["--web", &format!("127.0.0.1:{wport}")])
        .env("CI", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("swarm");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        for (port, path) in [(wport, "/view.json"), (wport, "/"), (mport, "/metrics")] {
            if let Some((_, body)) = get(port, path) {
                seen.push(body);
            }
        }
        if child.try_wait().ok().flatten().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let _ = child.wait();
    assert!(
        seen.iter().any(|b| b.contains("postgres://")),
        "the database was shown at all"
    );
    for body in &seen {
        assert!(!body.contains(password), "the password leaked: {body}");
    }
    let summary = std::fs::read_to_string(tmp.path().join("r/summary.json")).expect("summary");
    assert!(
        !summary.contains(password),
        "summary.json names the password"
    );
    runtime.block_on(common::drop_pg(&fresh.parse().expect("url")));
}

/// Install the page test's pinned browser driver once (npm; the browser is the system's).
fn web_setup() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let dir = common::repo().join("tests/web");
        if dir
            .join("node_modules/playwright-core/package.json")
            .exists()
        {
            return;
        }
        let out = Command::new("npm")
            .args([
                "ci",
                "--ignore-scripts",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
            ])
            .current_dir(&dir)
            .output()
            .expect("npm (apt-get install nodejs npm)");
        assert!(
            out.status.success(),
            "npm ci in tests/web: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

#[test]
fn mission_control_in_chromium_shows_what_summary_json_says() {
    web_setup();
    let tmp = tempfile::tempdir().expect("tmp");
    let port = common::free_port();
    let dir = tmp.path().join("r");
    let mut run = Command::new(env!("CARGO_BIN_EXE_swarm"))
        .args([
            "run",
            &scenario(tmp.path()).display().to_string(),
            "--no-tui",
        ])
        .arg("--report-dir")
        .arg(&dir)
        .args(["--web", &format!("127.0.0.1:{port}")])
        .env("CI", "true")
        .env_remove("DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("swarm");
    let browser = Command::new("node")
        .arg(common::repo().join("tests/web/mission_control.mjs"))
        .args(["--url", &format!("http://127.0.0.1:{port}/")])
        .arg("--out")
        .arg(tmp.path())
        .output()
        .expect("node");
    let status = run.wait().expect("swarm");
    assert_eq!(status.code(), Some(0));
    let seen: serde_json::Value = serde_json::from_slice(&browser.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&browser.stdout),
            String::from_utf8_lossy(&browser.stderr)
        )
    });
    assert!(seen["error"].is_null(), "{seen}");
    let s = summary(&dir);
    // During the run: a series, and not yet a verdict.
    assert_ne!(seen["during"]["phase"], "done", "{seen}");
    // After the verdict: what each viewer shows is what summary.json says.
    let figure = |v: &serde_json::Value, name: &str| -> u64 {
        v["figures"][name]
            .as_str()
            .and_then(|t| t.parse().ok())
            .unwrap_or(u64::MAX)
    };
    let viewers = seen["viewers"].as_array().expect("viewers");
    for v in viewers.iter().chain([&seen["late"]]) {
        assert_eq!(
            figure(v, "requests"),
            s["counters"]["requests"].as_u64().unwrap_or(0),
            "{v}"
        );
        assert_eq!(
            figure(v, "committed"),
            s["counters"]["committed"].as_u64().unwrap_or(0),
            "{v}"
        );
        assert_eq!(
            figure(v, "occ_retries"),
            s["counters"]["occ_retries"].as_u64().unwrap_or(0),
            "{v}"
        );
        assert_eq!(
            figure(v, "done"),
            s["agents_done"].as_u64().unwrap_or(0),
            "{v}"
        );
        assert_eq!(figure(v, "oversells"), 0, "{v}");
        let occ = format!("OCC retries {}", s["headline"]["occ_retries"]);
        assert!(v["headline"].as_str().unwrap_or("").contains(&occ), "{v}");
        assert!(v["verdict"].as_str().unwrap_or("").contains("VALID"), "{v}");
        // The fault window is drawn where it was.
        let faults = v["faults"].as_array().expect("faults");
        assert_eq!(faults.len(), 1, "{v}");
        assert_eq!(
            (faults[0]["region"].as_str(), faults[0]["mode"].as_str()),
            (Some("a"), Some("outage"))
        );
        let started = s["faults"][0]["started_ms"].as_f64().unwrap_or(0.0) / 1000.0;
        assert!(
            (faults[0]["from_s"].as_f64().unwrap_or(-9.0) - started).abs() < 0.01,
            "{v}"
        );
    }
    // Two viewers see the same state.
    assert_eq!(viewers[0]["figures"], viewers[1]["figures"]);
    assert_eq!(viewers[0]["headline"], viewers[1]["headline"]);
    // The headline is summary.json's, large, and on a 1920x1080 screen.
    let line = viewers[0]["headline"].as_str().unwrap_or("");
    assert!(
        line.starts_with(&format!("sold {} of", s["headline"]["units_sold"])),
        "{line}"
    );
    assert!(
        viewers[0]["headline_in_view"].as_bool().unwrap_or(false),
        "{}",
        viewers[0]
    );
    assert!(
        viewers[0]["headline_px"].as_f64().unwrap_or(0.0) >= 28.0,
        "{}",
        viewers[0]
    );
    // And a screenshot at 1920x1080 says the verdict, read back by OCR.
    let shot = tmp.path().join("mission-control-1920.png");
    let ocr = Command::new("tesseract")
        .arg(&shot)
        .arg("stdout")
        .output()
        .expect("tesseract (apt-get install tesseract-ocr; scripts/test.sh does)");
    let text = String::from_utf8_lossy(&ocr.stdout);
    let sold = format!(
        "sold {} of {} units",
        s["headline"]["units_sold"], s["headline"]["initial_stock"]
    );
    assert!(
        text.contains(&sold),
        "{sold} not in the screenshot's text: {text}"
    );
    assert!(
        text.contains("oversells 0"),
        "the screenshot's text: {text}"
    );
    // The verdict word, from the same screen (its element cropped: type this large is
    // read more surely alone).
    let verdict = Command::new("tesseract")
        .arg(tmp.path().join("verdict.png"))
        .args(["stdout", "--psm", "6"])
        .output()
        .expect("tesseract");
    let word = String::from_utf8_lossy(&verdict.stdout);
    assert!(word.contains("VALID"), "the verdict as read: {word}");
}
