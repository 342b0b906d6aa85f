//! HTTPS and HTTP/2 against `swarm serve --tls-cert … --tls-key …` on loopback, with
//! certificates these tests make (rcgen): a live `https://` endpoint over HTTP/1.1 and
//! HTTP/2, roots from `ca_file` or `SSL_CERT_FILE`, each certificate error with its own
//! message (exit 70 before anything is created), mTLS, and TLS settings that cannot be used
//! (exit 64, naming the field).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::certs::Certs;

/// `swarm serve` over TLS with `{stem}.pem`, plus extra flags.
fn serve(certs: &Certs, db: &str, stem: &str, extra: &[&str]) -> common::ServeProcess {
    let cert = certs.path(&format!("{stem}.pem"));
    let key = certs.path(&format!("{stem}-key.pem"));
    let mut args = vec!["--tls-cert", cert.as_str(), "--tls-key", key.as_str()];
    args.extend_from_slice(extra);
    common::ServeProcess::start(db, common::free_port(), &args, &[])
}

/// A seeded server database and a live scenario for `https://127.0.0.1:PORT`.
struct Live {
    tmp: tempfile::TempDir,
    db: String,
}

impl Live {
    fn new() -> Live {
        let tmp = tempfile::tempdir().expect("tmp");
        let db = format!("sqlite://{}", tmp.path().join("server.db").display());
        let live = Live { tmp, db };
        let file = live.scenario("seed", 1, "", "");
        let out = swarm(&["db", "seed", "--db", &live.db, &file], &[]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        live
    }

    /// A scenario file with `tls` (the inside of `target.tls = { … }`) and `target` extras.
    fn scenario(&self, name: &str, port: u16, tls: &str, extra: &str) -> String {
        let tls = if tls.is_empty() {
            String::new()
        } else {
            format!(", tls = {{ {tls} }}")
        };
        let file = self.tmp.path().join(format!("{name}.toml"));
        std::fs::write(
            &file,
            format!(
                "name = \"{name}\"\nseed = 9\ntarget = {{ kind = \"http\"{tls}{extra} }}\n\
                 catalog = {{ items = 1, stock = 100000, buckets = 4, price_minor = 100, currency = \"USD\" }}\n\
                 mandates = {{ count = 500, cap_minor = 100000, shards = 2 }}\n\
                 agents = {{ count = 3000, in_flight = 64 }}\n\
                 mix = {{ well_behaved = 0.9, double_submit = 0.1 }}\n\
                 [[regions]]\nname = \"tls\"\nendpoint = \"https://127.0.0.1:{port}\"\n"
            ),
        )
        .expect("write");
        file.display().to_string()
    }

    fn report(&self, name: &str) -> PathBuf {
        self.tmp.path().join(format!("report-{name}"))
    }

    /// `swarm run FILE --report-dir report-NAME` with `env`.
    fn run(&self, name: &str, file: &str, env: &[(&str, &str)]) -> Output {
        let dir = self.report(name).display().to_string();
        swarm(&["run", file, "--no-tui", "--report-dir", &dir], env)
    }
}

fn swarm(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_swarm"))
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR")
        .env("CI", "true")
        .envs(env.iter().copied())
        .output()
        .expect("swarm")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn summary(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("summary.json")).expect("summary"))
        .expect("json")
}

#[test]
fn an_https_endpoint_is_driven_over_http2_and_http1_with_the_roots_it_names() {
    let certs = Certs::make();
    let live = Live::new();
    let server = serve(&certs, &live.db, "server", &[]);
    let ca = certs.path("ca.pem");
    for (name, http, h2) in [
        ("auto", "", true),
        ("h2", ", http = \"2\"", true),
        ("h1", ", http = \"1.1\"", false),
    ] {
        let file = live.scenario(name, server.port, &format!("ca_file = \"{ca}\""), http);
        let out = live.run(name, &file, &[]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out));
        // The console says what was negotiated.
        let said = String::from_utf8_lossy(&out.stdout);
        let version = if h2 { "HTTP/2" } else { "HTTP/1.1" };
        assert!(
            said.contains("connections: tls ") && said.contains(&format!("resumed · {version}\n")),
            "{name}: {said}"
        );
        let s = summary(&live.report(name));
        assert_eq!(s["validity"], "valid", "{name}");
        let c = &s["regions"][0]["connections"];
        let n = |k: &str| c[k].as_u64().unwrap_or(0);
        assert_eq!(c["tls"], true, "{name}: {c}");
        assert_eq!(n("http2") > 0, h2, "{name}: {c}");
        if h2 {
            // 64 agents in flight share a few multiplexed connections (one per lane).
            assert!(n("opened") <= 8, "{name}: {c}");
        } else {
            assert!(
                n("opened") >= 32,
                "{name}: one request per HTTP/1.1 connection at a time: {c}"
            );
        }
        assert!(
            s["counters"]["committed"].as_u64().unwrap_or(0) >= 2700,
            "{name}: purchases went through"
        );
    }
    // A relative ca_file is found next to the scenario, wherever swarm runs from.
    std::fs::copy(certs.path("ca.pem"), live.tmp.path().join("ca.pem")).expect("copy");
    let file = live.scenario("relative", server.port, "ca_file = \"ca.pem\"", "");
    let out = live.run("relative", &file, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // No ca_file: the system's roots, which SSL_CERT_FILE replaces.
    let file = live.scenario("system", server.port, "", "");
    let out = live.run("system", &file, &[("SSL_CERT_FILE", &ca)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn each_certificate_error_stops_the_run_at_the_first_connect_with_its_reason() {
    let certs = Certs::make();
    let live = Live::new();
    let good = serve(&certs, &live.db, "server", &[]);
    let expired = serve(&certs, &live.db, "expired", &[]);
    let wrong_name = serve(&certs, &live.db, "wrong-name", &[]);
    let ca = format!("ca_file = \"{}\"", certs.path("ca.pem"));
    let other = format!("ca_file = \"{}\"", certs.path("other-ca.pem"));
    for (name, port, tls, reason) in [
        ("wrong-ca", good.port, other.as_str(), "unknown issuer"),
        ("expired", expired.port, ca.as_str(), "has expired"),
        ("wrong-name", wrong_name.port, ca.as_str(), "name mismatch"),
    ] {
        let file = live.scenario(name, port, tls, "");
        let out = live.run(name, &file, &[]);
        let said = text(&out);
        assert_eq!(out.status.code(), Some(70), "{name}: {said}");
        assert!(
            said.contains(&format!(
                "region tls (https://127.0.0.1:{port}): TLS failed"
            )) && said.contains(reason),
            "{name}: {said}"
        );
        assert!(!live.report(name).exists(), "{name}: nothing created");
    }
    // insecure = true takes any certificate: the wrong CA's server is driven.
    let file = live.scenario("insecure", good.port, "insecure = true", "");
    let out = live.run("insecure", &file, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // A server_name that the certificate does carry passes against the wrong-name server.
    let file = live.scenario(
        "server-name",
        wrong_name.port,
        &format!("{ca}, server_name = \"shop.example\""),
        "",
    );
    let out = live.run("server-name", &file, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn a_server_that_requires_client_certificates_gets_the_scenarios() {
    let certs = Certs::make();
    let live = Live::new();
    let client_ca = certs.path("client-ca.pem");
    let server = serve(&certs, &live.db, "server", &["--tls-client-ca", &client_ca]);
    let ca = format!("ca_file = \"{}\"", certs.path("ca.pem"));
    let file = live.scenario("no-client-cert", server.port, &ca, "");
    let out = live.run("no-client-cert", &file, &[]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(70), "{said}");
    assert!(said.contains("requires a client certificate"), "{said}");
    let with = format!(
        "{ca}, client_cert = \"{}\", client_key = \"{}\"",
        certs.path("client.pem"),
        certs.path("client-key.pem")
    );
    for (name, http) in [("mtls", ""), ("mtls-h1", ", http = \"1.1\"")] {
        let file = live.scenario(name, server.port, &with, http);
        let out = live.run(name, &file, &[]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out));
        assert_eq!(summary(&live.report(name))["validity"], "valid");
    }
}

#[test]
fn tls_settings_that_cannot_be_used_are_refused_naming_the_field() {
    let certs = Certs::make();
    let live = Live::new();
    // Files: missing, not PEM, a key without its certificate's pair.
    let missing = live.tmp.path().join("nowhere.pem").display().to_string();
    let not_pem = live.tmp.path().join("junk.pem");
    std::fs::write(&not_pem, "not a certificate\n").expect("write");
    let not_pem = not_pem.display().to_string();
    for (name, tls, field) in [
        (
            "missing-ca",
            format!("ca_file = \"{missing}\""),
            "target.tls.ca_file",
        ),
        (
            "junk-ca",
            format!("ca_file = \"{not_pem}\""),
            "target.tls.ca_file",
        ),
        (
            "junk-key",
            format!(
                "client_cert = \"{}\", client_key = \"{not_pem}\"",
                certs.path("client.pem")
            ),
            "target.tls.client_key",
        ),
    ] {
        let file = live.scenario(name, 9, &tls, "");
        let out = live.run(name, &file, &[]);
        let said = text(&out);
        assert_eq!(out.status.code(), Some(64), "{name}: {said}");
        assert!(said.contains(field), "{name}: {said}");
        assert!(!live.report(name).exists(), "{name}: nothing created");
    }
    // Settings that contradict each other are refused at load, with the line.
    for (name, tls, field) in [
        (
            "half-mtls",
            format!("client_cert = \"{}\"", certs.path("client.pem")),
            "target.tls.client_key",
        ),
        (
            "insecure-and-ca",
            "insecure = true, ca_file = \"x.pem\"".to_string(),
            "target.tls.insecure",
        ),
        (
            "self-signed-live",
            "self_signed = true".to_string(),
            "target.tls.self_signed",
        ),
    ] {
        let file = live.scenario(name, 9, &tls, "");
        let out = live.run(name, &file, &[]);
        let said = text(&out);
        assert_eq!(out.status.code(), Some(64), "{name}: {said}");
        assert!(
            said.contains(&format!("field `{field}`")) && said.contains(".toml:3:"),
            "{name}: {said}"
        );
    }
    // `swarm serve` refuses files it cannot use before it listens.
    let out = swarm(
        &[
            "serve",
            "--db",
            &live.db,
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            &not_pem,
            "--tls-key",
            &certs.path("server-key.pem"),
        ],
        &[],
    );
    let said = text(&out);
    assert_eq!(out.status.code(), Some(64), "{said}");
    assert!(
        said.contains("junk.pem") && said.contains("BEGIN CERTIFICATE"),
        "{said}"
    );
}
