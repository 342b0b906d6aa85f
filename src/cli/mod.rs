//! The command line: verbs, flags, and the exit code each outcome maps to.
//!
//! Each verb is a few lines over library functions (`run::execute`, `report::conclude`,
//! `audit::audit`, `selftest::run`, `sut::server::serve`, …); `anyhow` lives here and
//! nowhere below. Errors carry their exit code to `main` (`Exit`).

mod db;
mod inspect;
mod run;
mod serve;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use swarm::addr::DbUrl;
use swarm::exit;

#[derive(Parser)]
#[command(
    name = "swarm",
    version,
    about = "Prove an agent-safe checkout can't be broken",
    after_help = "Examples:\n  swarm run scenarios/million.toml\n  swarm audit --db sqlite://reports/smoke-…/swarm.db --history reports/smoke-…/history.bin\n  swarm db init --db sqlite://demo.db\n\nLogs: swarm's own warnings on stderr; SWARM_LOG=swarm=info (a tracing filter) shows more."
)]
pub struct Cli {
    #[command(subcommand)]
    pub verb: Verb,
}

#[derive(Subcommand)]
pub enum Verb {
    /// Run a scenario: seed, release the agents, fail regions, resolve, audit, report.
    #[command(
        after_help = "Example:\n  swarm run scenarios/smoke.toml --no-tui\n(--help adds the exit codes)",
        after_long_help = "Example:\n  swarm run scenarios/smoke.toml --no-tui\n\n\
Exit codes:\n  \
0   valid: every invariant held and every threshold passed\n  \
1   an invariant was violated (said even of a run stopped early)\n  \
2   a threshold failed (the invariants held)\n  \
3   unknown: something could not be decided (unresolved requests, a check that could not run)\n  \
4   stopped early (Ctrl-C, the dashboard's q): the verdict covers only what ran;\n      \
a second Ctrl-C aborts and still writes the report (then `swarm resolve` finishes it);\n      \
a third exits at once (130)\n  \
64  nothing was run: a bad command line or scenario (the error names the file, line and\n      \
field), a TLS file or name that cannot be used, an endpoint refusing the API key\n  \
70  swarm itself failed or cannot reach its target: a database or endpoint unreachable,\n      \
a certificate that cannot be trusted, I/O, a bug"
    )]
    Run(RunArgs),
    /// Audit a database and/or a client history after the fact.
    #[command(
        after_help = "Example:\n  swarm audit --db sqlite://reports/smoke-X/swarm.db --history reports/smoke-X/history.bin"
    )]
    Audit(AuditArgs),
    /// Resolve a killed run: replay the keys its cut history left open against the target,
    /// append the answers, end the history, and audit it.
    #[command(
        after_help = "Example:\n  swarm resolve scenarios/smoke.toml --history reports/smoke-X/history.bin"
    )]
    Resolve(ResolveArgs),
    /// Test the contract's promises on a live endpoint: a handful of sequential requests
    /// (no key, empty and 256-character keys, a replay, another payload under a used key,
    /// concurrent requests of one key), each judged by the scenario's `[target.contract]`.
    /// Exit 1 when a key executed twice; warnings otherwise exit 0.
    #[command(after_help = "Example:\n  swarm probe my-live.toml")]
    Probe {
        /// A scenario whose regions name live endpoints (`swarm run` probes its in-process
        /// servers itself).
        scenario: PathBuf,
        /// Print the checks as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Sabotage the kernel in thirteen ways and prove the auditor catches each with its check; clean runs stay valid.
    #[command(
        after_help = "Examples:\n  swarm selftest                                              # embedded SQLite\n  swarm selftest --db postgres://swarm@127.0.0.1:5432/postgres  # a PostgreSQL server"
    )]
    Selftest {
        /// A PostgreSQL server URL (one database is created and dropped per case).
        #[arg(long)]
        db: Option<String>,
        /// Print the table as JSON.
        #[arg(long)]
        json: bool,
        /// Instead of the sabotage cases: run each --scenario on PostgreSQL (--db) under
        /// READ COMMITTED, REPEATABLE READ and SERIALIZABLE with the reference kernel and
        /// two naive ones, and print oversells, mandate breaches, OCC retries,
        /// RETRY_EXHAUSTED and purchases/s for each (scripts/isolation-matrix.sh).
        #[arg(long, requires = "db", requires = "scenario")]
        isolation_matrix: bool,
        /// A scenario for --isolation-matrix (repeatable).
        #[arg(long, requires = "isolation_matrix")]
        scenario: Vec<std::path::PathBuf>,
        /// Override each scenario's agent count (a small matrix).
        #[arg(long, requires = "isolation_matrix")]
        agents: Option<u64>,
    },
    /// Serve the kernel contract over HTTP (POST /v1/purchases/commit, …; /openapi.json).
    #[command(after_help = "Example:\n  swarm serve --db sqlite://demo.db --listen 127.0.0.1:8080")]
    Serve(ServeArgs),
    /// Re-render report.html and junit.xml of a report directory from its files.
    #[command(after_help = "Example:\n  swarm report reports/smoke-20261122T162241Z")]
    Report {
        /// A report directory `swarm run` or `swarm merge` wrote (summary.json, timeseries.csv).
        dir: PathBuf,
    },
    /// Merge shard report directories (`swarm run --shard I/N`) into one, and audit once.
    #[command(
        after_help = "Example:\n  swarm merge reports/million-s0 reports/million-s1 --out reports/million-merged"
    )]
    Merge {
        /// The report directory of every shard of one run (`--shard I/N`, same `--run-id`).
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Where the merged report goes (default: reports/<name>-merged-<UTC timestamp>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// The shared database (default: the one the first shard recorded).
        #[arg(long, env = "DATABASE_URL")]
        db: Option<String>,
    },
    /// Schema, seed data and counts.
    #[command(
        subcommand,
        after_help = "Examples:\n  swarm db init --db sqlite://demo.db\n  swarm db seed --db sqlite://demo.db scenarios/smoke.toml\n  swarm db stats --db sqlite://demo.db --json\n  swarm db reset --db sqlite://demo.db"
    )]
    Db(DbVerb),
}

#[derive(clap::Args)]
pub struct RunArgs {
    /// The scenario file (TOML), e.g. scenarios/smoke.toml.
    pub scenario: PathBuf,
    /// Plain progress lines instead of the dashboard (also without a TTY or with CI=true).
    #[arg(long)]
    pub no_tui: bool,
    /// Leave the dashboard as soon as the verdict is in, without waiting for a key.
    #[arg(long)]
    pub exit_on_finish: bool,
    /// `sqlite://PATH` or `postgres://…`; else the scenario's, else `DATABASE_URL`, else an
    /// embedded SQLite file in the report directory.
    #[arg(long)]
    pub db: Option<String>,
    /// The run's report directory (default: reports/<name>-<UTC timestamp>).
    #[arg(long)]
    pub report_dir: Option<PathBuf>,
    /// Override the scenario's seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Override the number of agents.
    #[arg(long)]
    pub agents: Option<u64>,
    /// Watch a Patroni cluster during the run (who leads, when that changes): its REST
    /// APIs, comma-separated (`http://127.0.0.1:8008,http://127.0.0.1:8009`). Replaces the
    /// scenario's `cluster.patroni`.
    #[arg(long, value_delimiter = ',', value_parser = parse_patroni)]
    pub patroni: Option<Vec<swarm::addr::Endpoint>>,
    /// Run one deterministic slice of the agents: `I/N` (0-based I); needs --run-id.
    #[arg(long, value_parser = parse_shard)]
    pub shard: Option<(u32, u32)>,
    /// The run id in every idempotency key (default: a fresh random one). Give a run's id
    /// again to repeat its keys on purpose, and the same id to every shard of one run.
    #[arg(long)]
    pub run_id: Option<swarm::run::RunId>,
    /// When the report directory or the database already holds an earlier run: audit
    /// its state first and keep that audit, then start clean (the directory's files move
    /// to leftover-N/; the database's purchases are cleared, unless its state is invalid).
    #[arg(long)]
    pub audit_leftover: bool,
    /// Skip the conformance probe: the handful of sequential requests that test the
    /// contract's promises on an HTTP endpoint before the agents start.
    #[arg(long)]
    pub no_probe: bool,
    /// Serve the generator's live state in the Prometheus exposition format at
    /// http://ADDR/metrics while the run lasts (and a few seconds after the verdict), e.g.
    /// 127.0.0.1:9464.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Send the same metrics by Prometheus remote write to URL every
    /// --metrics-push-interval and once at the end (http://host:port/api/v1/write).
    #[arg(long, value_name = "URL", value_parser = parse_push)]
    pub metrics_push: Option<swarm::observe::PushTarget>,
    /// How often --metrics-push sends (e.g. 5s, 1s).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_interval)]
    pub metrics_push_interval: std::time::Duration,
    /// Serve Mission Control, the live run in a browser, at http://ADDR/ (read-only; any
    /// number of viewers), e.g. 127.0.0.1:8088.
    #[arg(long, value_name = "ADDR")]
    pub web: Option<std::net::SocketAddr>,
}

fn parse_push(s: &str) -> Result<swarm::observe::PushTarget, String> {
    swarm::observe::PushTarget::parse(s)
}

fn parse_interval(s: &str) -> Result<std::time::Duration, String> {
    let d = swarm::scenario::parse_duration(s)?;
    if d < std::time::Duration::from_millis(100) || d > std::time::Duration::from_secs(3600) {
        return Err(format!("`{s}`: between 100ms and 1h"));
    }
    Ok(d)
}

#[derive(clap::Args)]
pub struct AuditArgs {
    /// The database to audit (also read from DATABASE_URL).
    #[arg(long, env = "DATABASE_URL")]
    pub db: Option<String>,
    /// The client history a run wrote (`history.bin`).
    #[arg(long)]
    pub history: Option<PathBuf>,
    /// Print the verdict as JSON.
    #[arg(long)]
    pub json: bool,
    /// The state checks alone: audit a database whose last run never finished (killed,
    /// timed out) without reporting that run as unresolved.
    #[arg(long, conflicts_with = "history")]
    pub state_only: bool,
    /// Memory the audit may hold for the history's records and the intents at a time
    /// (MiB); a larger history is split into parts in temporary files (`TMPDIR`).
    #[arg(long, default_value_t = swarm::audit::DEFAULT_BUDGET_BYTES >> 20, value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    pub memory_mib: u64,
}

#[derive(clap::Args)]
pub struct ResolveArgs {
    /// The scenario the killed run ran (its history names it by the SHA-256 of its text).
    pub scenario: PathBuf,
    /// The killed run's history (`history.bin` in its report directory).
    #[arg(long)]
    pub history: PathBuf,
    /// The database: the flag, else the scenario's, else DATABASE_URL, else the `swarm.db`
    /// beside the history (where an embedded run leaves it).
    #[arg(long)]
    pub db: Option<String>,
    /// Print the audit's verdict as JSON.
    #[arg(long)]
    pub json: bool,
    /// Memory the audits may hold at a time (MiB), as for `swarm audit`.
    #[arg(long, default_value_t = swarm::audit::DEFAULT_BUDGET_BYTES >> 20, value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    pub memory_mib: u64,
}

fn parse_patroni(s: &str) -> Result<swarm::addr::Endpoint, String> {
    let endpoint = swarm::addr::Endpoint::parse(s.trim())?;
    if endpoint.tls {
        return Err(format!(
            "`{s}`: the Patroni watcher speaks plain HTTP (a REST API on loopback or a private network)"
        ));
    }
    Ok(endpoint)
}

fn parse_shard(s: &str) -> Result<(u32, u32), String> {
    let (i, n) = s.split_once('/').ok_or("expected I/N, e.g. 0/4")?;
    let i: u32 = i
        .trim()
        .parse()
        .map_err(|_| format!("`{i}` is not a number"))?;
    let n: u32 = n
        .trim()
        .parse()
        .map_err(|_| format!("`{n}` is not a number"))?;
    if n == 0 || i >= n {
        return Err(format!("shard {i}/{n}: need 0 <= I < N"));
    }
    Ok((i, n))
}

#[derive(clap::Args)]
pub struct DbArgs {
    /// `sqlite://PATH` or `postgres://USER@HOST:PORT/DB`.
    #[arg(long, env = "DATABASE_URL")]
    pub db: String,
}

#[derive(Subcommand)]
pub enum DbVerb {
    /// Create the schema (idempotent).
    #[command(after_help = "Example:\n  swarm db init --db sqlite://demo.db")]
    Init(DbArgs),
    /// Create the scenario's merchants, items, buckets, mandates and shards, and the sandbox.
    #[command(after_help = "Example:\n  swarm db seed --db sqlite://demo.db scenarios/smoke.toml")]
    Seed {
        #[command(flatten)]
        db: DbArgs,
        /// The scenario whose catalog and mandates to create (its seed decides the ids).
        scenario: PathBuf,
        /// Override the scenario's seed.
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Print row counts, commits, declines, units left and the ledger sum.
    #[command(after_help = "Example:\n  swarm db stats --db sqlite://demo.db")]
    Stats {
        #[command(flatten)]
        db: DbArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Drop swarm's tables for a fresh start (with --keep-catalog: forget the purchases and
    /// run markers only, stock and caps back at their seeded figures).
    #[command(after_help = "Example:\n  swarm db reset --db postgres://swarm@127.0.0.1:5432/swarm")]
    Reset {
        #[command(flatten)]
        db: DbArgs,
        /// Keep merchants, items and mandates; clear only what runs wrote.
        #[arg(long)]
        keep_catalog: bool,
    },
    /// Commit one purchase of the stocked sandbox item, then replay it with the same key.
    #[command(after_help = "Example:\n  swarm db sandbox --db sqlite://demo.db --key demo-1")]
    Sandbox {
        #[command(flatten)]
        db: DbArgs,
        /// The Idempotency-Key (default: a fresh one).
        #[arg(long)]
        key: Option<String>,
    },
}

#[derive(clap::Args)]
pub struct ServeArgs {
    /// The kernel's database: `sqlite://PATH` or `postgres://USER@HOST:PORT/DB`.
    #[arg(long, env = "DATABASE_URL")]
    pub db: String,
    /// The address to listen on (loopback unless you mean otherwise).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Environment variable holding the accepted Bearer API keys (comma-separated);
    /// without it the purchase routes need no key.
    #[arg(long)]
    pub api_key_env: Option<String>,
    /// Requests handled at once; beyond it, 503 with Retry-After.
    #[arg(long, default_value_t = swarm::sut::server::MAX_IN_FLIGHT)]
    pub max_in_flight: usize,
    /// After Ctrl-C or SIGTERM, how long in-flight requests may take to finish before
    /// their connections are cut.
    #[arg(long, default_value_t = 30_000)]
    pub drain_ms: u64,
    /// SQLite: read the database through a memory map of up to this many MiB (0: off),
    /// so replays of keys from all over a large database skip a system call per page.
    #[arg(long, default_value_t = 1024)]
    pub sqlite_mmap_mib: u64,
    /// Serve HTTPS with this PEM certificate chain (HTTP/2 and HTTP/1.1 by ALPN); needs
    /// --tls-key.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// Require client certificates signed by a CA in this PEM file (mTLS).
    #[arg(long, requires = "tls_cert")]
    pub tls_client_ca: Option<std::path::PathBuf>,
}

/// An error that carries its exit code to the edge.
#[derive(Debug)]
pub struct Exit(pub i32, pub anyhow::Error);

pub fn usage(e: impl Into<anyhow::Error>) -> Exit {
    Exit(exit::USAGE, e.into())
}

pub fn internal(e: impl Into<anyhow::Error>) -> Exit {
    Exit(exit::INTERNAL, e.into())
}

pub fn parse_url(s: &str) -> Result<DbUrl, Exit> {
    s.parse::<DbUrl>().map_err(usage)
}

/// The database a scenario's verb uses: the flag's, else the scenario's `target.database`,
/// else DATABASE_URL; `None`: none given.
pub fn chosen_db(
    flag: Option<&str>,
    scenario: &swarm::scenario::Scenario,
) -> Result<Option<DbUrl>, Exit> {
    if let Some(u) = flag {
        return parse_url(u).map(Some);
    }
    if let Some(u) = &scenario.target.database {
        return Ok(Some(u.clone()));
    }
    match std::env::var("DATABASE_URL").ok().filter(|s| !s.is_empty()) {
        Some(u) => parse_url(&u).map(Some),
        None => Ok(None),
    }
}

/// Print an audit's report (as JSON with `json`); its exit code (no thresholds apply after
/// the fact: the verdict alone decides).
pub fn print_verdict(report: &swarm::audit::Report, json: bool) -> Result<i32, Exit> {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(report).map_err(internal)?
        );
    } else {
        println!("{report}");
    }
    Ok(exit::code(report.validity, true))
}

/// Run one verb to its exit code.
pub async fn dispatch(cli: Cli) -> Result<i32, Exit> {
    match cli.verb {
        Verb::Run(args) => run::run(args).await,
        Verb::Audit(args) => inspect::audit(args).await,
        Verb::Resolve(args) => inspect::resolve(args).await,
        Verb::Probe { scenario, json } => run::probe(scenario, json).await,
        Verb::Db(verb) => db::db(verb).await,
        Verb::Serve(args) => serve::serve(args).await,
        Verb::Report { dir } => inspect::report(dir).await,
        Verb::Merge { dirs, out, db } => inspect::merge(dirs, out, db).await,
        Verb::Selftest {
            db,
            json,
            isolation_matrix: true,
            scenario,
            agents,
        } => inspect::isolation_matrix(db, json, scenario, agents).await,
        Verb::Selftest { db, json, .. } => inspect::selftest(db, json).await,
    }
}
