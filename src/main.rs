//! The `swarm` binary: verbs, flags and exit codes. Library errors become messages here.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use swarm::db::{Database, DbUrl, SeedPlan};
use swarm::exit;
use swarm::kernel::{Kernel, KernelConfig, PurchaseRequest};
use swarm::scenario::Scenario;

/// mimalloc returns freed memory to the system promptly: after a million agents finish,
/// the audit does not stack on top of the engine's peak.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "swarm",
    version,
    about = "Prove an agent-safe checkout can't be broken",
    after_help = "Examples:\n  swarm run scenarios/million.toml\n  swarm audit --db sqlite://reports/smoke-…/swarm.db --history reports/smoke-…/history.bin\n  swarm db init --db sqlite://demo.db"
)]
struct Cli {
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Subcommand)]
enum Verb {
    /// Run a scenario: seed, release the agents, fail regions, resolve, audit, report.
    ///
    /// Example: swarm run scenarios/smoke.toml --no-tui
    Run(RunArgs),
    /// Audit a database and/or a client history after the fact.
    ///
    /// Example: swarm audit --db sqlite://reports/smoke-X/swarm.db --history reports/smoke-X/history.bin
    Audit(AuditArgs),
    /// Sabotage the kernel in six ways and prove the auditor catches each; clean runs stay valid.
    ///
    /// Example: swarm selftest            (embedded SQLite)
    ///          swarm selftest --db postgres://swarm@127.0.0.1:5432/postgres
    Selftest {
        /// A PostgreSQL server URL (one database is created and dropped per case).
        #[arg(long)]
        db: Option<String>,
        /// Print the table as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Serve the kernel contract over HTTP (POST /v1/purchases/commit, …; /openapi.json).
    ///
    /// Example: swarm serve --db sqlite://demo.db --listen 127.0.0.1:8080
    Serve {
        #[arg(long, env = "DATABASE_URL")]
        db: String,
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Environment variable holding the accepted Bearer API keys (comma-separated);
        /// without it the purchase routes need no key.
        #[arg(long)]
        api_key_env: Option<String>,
        /// Requests handled at once; beyond it, 503 with Retry-After.
        #[arg(long, default_value_t = 1024)]
        max_in_flight: usize,
        /// After Ctrl-C or SIGTERM, how long in-flight requests may take to finish before
        /// their connections are cut.
        #[arg(long, default_value_t = 30_000)]
        drain_ms: u64,
        /// SQLite: read the database through a memory map of up to this many MiB (0: off),
        /// so replays of keys from all over a large database skip a system call per page.
        #[arg(long, default_value_t = 1024)]
        sqlite_mmap_mib: u64,
    },
    /// Re-render report.html and junit.xml of a report directory from its files.
    ///
    /// Example: swarm report reports/smoke-20261122T162241Z
    Report { dir: PathBuf },
    /// Merge shard report directories (`swarm run --shard I/N`) into one, and audit once.
    ///
    /// Example: swarm merge reports/million-s0 reports/million-s1 --out reports/million-merged
    Merge {
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
    #[command(subcommand)]
    Db(DbVerb),
}

#[derive(clap::Args)]
struct RunArgs {
    scenario: PathBuf,
    /// Plain progress lines instead of the dashboard (also without a TTY or with CI=true).
    #[arg(long)]
    no_tui: bool,
    /// Leave the dashboard as soon as the verdict is in, without waiting for a key.
    #[arg(long)]
    exit_on_finish: bool,
    /// `sqlite://PATH` or `postgres://…`; else the scenario's, else `DATABASE_URL`, else an
    /// embedded SQLite file in the report directory.
    #[arg(long)]
    db: Option<String>,
    /// The run's report directory (default: reports/<name>-<UTC timestamp>).
    #[arg(long)]
    report_dir: Option<PathBuf>,
    /// Override the scenario's seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Override the number of agents.
    #[arg(long)]
    agents: Option<u64>,
    /// Run one deterministic slice of the agents: `I/N` (0-based I).
    #[arg(long, value_parser = parse_shard)]
    shard: Option<(u32, u32)>,
}

#[derive(clap::Args)]
struct AuditArgs {
    /// The database to audit (also read from DATABASE_URL).
    #[arg(long, env = "DATABASE_URL")]
    db: Option<String>,
    /// The client history a run wrote (`history.bin`).
    #[arg(long)]
    history: Option<PathBuf>,
    /// Print the verdict as JSON.
    #[arg(long)]
    json: bool,
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
struct DbArgs {
    /// `sqlite://PATH` or `postgres://USER@HOST:PORT/DB`.
    #[arg(long, env = "DATABASE_URL")]
    db: String,
}

#[derive(Subcommand)]
enum DbVerb {
    /// Create the schema (idempotent).
    ///
    /// Example: swarm db init --db sqlite://demo.db
    Init(DbArgs),
    /// Create the scenario's merchants, items, buckets, mandates and shards, and the sandbox.
    ///
    /// Example: swarm db seed --db sqlite://demo.db scenarios/smoke.toml
    Seed {
        #[command(flatten)]
        db: DbArgs,
        scenario: PathBuf,
        /// Override the scenario's seed.
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Print row counts, commits, declines, units left and the ledger sum.
    ///
    /// Example: swarm db stats --db sqlite://demo.db
    Stats {
        #[command(flatten)]
        db: DbArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Commit one purchase of the stocked sandbox item, then replay it with the same key.
    ///
    /// Example: swarm db sandbox --db sqlite://demo.db --key demo-1
    Sandbox {
        #[command(flatten)]
        db: DbArgs,
        /// The Idempotency-Key (default: a fresh one).
        #[arg(long)]
        key: Option<String>,
    },
}

/// An error that carries its exit code to the edge.
#[derive(Debug)]
struct Exit(i32, anyhow::Error);

fn usage(e: impl Into<anyhow::Error>) -> Exit {
    Exit(exit::USAGE, e.into())
}

fn internal(e: impl Into<anyhow::Error>) -> Exit {
    Exit(exit::INTERNAL, e.into())
}

/// `mi_option_purge_delay` in mimalloc v2's option enum (the version the crate builds).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> ExitCode {
    // Give freed memory back at once: the audit then reuses the engine's pages instead of
    // stacking on top of them (peak RSS of a million-agent run).
    // SAFETY: sets a process-wide allocator option before any thread is started.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::VALID
            };
            let _ = e.print();
            return ExitCode::from(code as u8);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SWARM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("swarm: cannot start the runtime: {e}");
            return ExitCode::from(exit::INTERNAL as u8);
        }
    };
    // The verb runs as a task on the workers, not on this thread: a future driven by
    // `block_on` is woken across threads (a futex call) every time a worker's task
    // signals it, which on a busy run is once per agent.
    let outcome = runtime.block_on(async { tokio::spawn(dispatch(cli)).await });
    match outcome.unwrap_or_else(|e| Err(internal(anyhow::anyhow!("the run stopped: {e}")))) {
        Ok(code) => ExitCode::from(code as u8),
        Err(Exit(code, e)) => {
            eprintln!("swarm: {e:#}");
            ExitCode::from(code as u8)
        }
    }
}

async fn dispatch(cli: Cli) -> Result<i32, Exit> {
    match cli.verb {
        Verb::Run(args) => run_verb(args).await,
        Verb::Audit(args) => audit_verb(args).await,
        Verb::Db(verb) => db_verb(verb).await,
        Verb::Serve {
            db,
            listen,
            api_key_env,
            max_in_flight,
            drain_ms,
            sqlite_mmap_mib,
        } => {
            let url = parse_url(&db)?;
            let api_keys = match api_key_env {
                Some(var) => std::env::var(&var)
                    .map_err(|_| {
                        usage(anyhow::anyhow!(
                            "--api-key-env {var}: the variable is not set"
                        ))
                    })?
                    .split(',')
                    .map(|k| k.trim().to_string())
                    .filter(|k| !k.is_empty())
                    .collect(),
                None => Vec::new(),
            };
            let config = KernelConfig {
                sqlite_mmap_bytes: sqlite_mmap_mib << 20,
                ..KernelConfig::default()
            };
            let kernel = Kernel::open(&url, config)
                .await
                .with_context(|| format!("opening the kernel on {url}"))
                .map_err(internal)?;
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .with_context(|| format!("listening on {listen}"))
                .map_err(usage)?;
            let addr = listener.local_addr().map_err(internal)?;
            eprintln!("swarm: serving {url} on http://{addr} (Ctrl-C or SIGTERM drains and stops)");
            let router = swarm::server::router(
                kernel,
                swarm::server::ServerConfig {
                    api_keys,
                    max_in_flight,
                    ..Default::default()
                },
            );
            let stop = async {
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    Some(()) = async { term.as_mut()?.recv().await } => {}
                }
                eprintln!("swarm: stopping: no new connections; draining in-flight requests");
            };
            let drain = std::time::Duration::from_millis(drain_ms);
            let drained = swarm::server::serve(listener, router, stop, drain)
                .await
                .map_err(internal)?;
            if !drained {
                eprintln!("swarm: drain deadline ({drain_ms} ms) passed; open connections cut");
            }
            Ok(exit::VALID)
        }
        Verb::Report { dir } => {
            let text = std::fs::read_to_string(dir.join("summary.json"))
                .with_context(|| format!("{}", dir.join("summary.json").display()))
                .map_err(usage)?;
            let summary: swarm::report::Summary = serde_json::from_str(&text)
                .with_context(|| {
                    format!(
                        "{}: not a swarm summary",
                        dir.join("summary.json").display()
                    )
                })
                .map_err(usage)?;
            let (series, _) =
                swarm::report::read_series(&dir.join("timeseries.csv")).map_err(usage)?;
            swarm::report::render(&dir, &summary, &series).map_err(internal)?;
            println!("{}", dir.join("report.html").display());
            Ok(summary.exit_code)
        }
        Verb::Merge { dirs, out, db } => {
            let db = match db {
                Some(u) => Some(parse_url(&u)?),
                None => None,
            };
            let out = match out {
                Some(o) => o,
                None => {
                    let name = dirs
                        .first()
                        .and_then(|d| d.file_name())
                        .map(|n| {
                            n.to_string_lossy()
                                .split('-')
                                .next()
                                .unwrap_or("run")
                                .to_string()
                        })
                        .unwrap_or_else(|| "run".into());
                    swarm::engine::new_report_dir(
                        std::path::Path::new("reports"),
                        &format!("{name}-merged"),
                    )
                    .map_err(internal)?
                }
            };
            let summary = swarm::report::merge::merge(&dirs, db, &out)
                .await
                .map_err(usage)?;
            println!("{}", summary.render());
            println!("report: {}", out.display());
            Ok(summary.exit_code)
        }
        Verb::Selftest { db, json } => {
            let server = match db {
                Some(u) => match parse_url(&u)? {
                    DbUrl::Postgres(u) => Some(u),
                    DbUrl::Sqlite(_) => None,
                },
                None => None,
            };
            let report = swarm::selftest::run(server.as_deref())
                .await
                .map_err(internal)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).map_err(internal)?
                );
            } else {
                println!("{report}");
            }
            Ok(if report.passed {
                exit::VALID
            } else {
                exit::INVARIANT_VIOLATED
            })
        }
    }
}

async fn run_verb(args: RunArgs) -> Result<i32, Exit> {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use swarm::engine::{self, Control, RunOptions};

    let mut scenario = Scenario::load(&args.scenario).map_err(usage)?;
    if scenario.target.kind == swarm::scenario::TargetKind::Http {
        // Over HTTP every request allocates and frees its buffers; purged at once, those
        // pages are faulted back in by the next request (4x the page faults in
        // scripts/bench-http.sh). mimalloc's own delay keeps them; the embedded run keeps
        // the prompt purge for its peak RSS.
        // SAFETY: an allocator option, read (atomically) on the next purge.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 10) };
    }
    if let Some(seed) = args.seed {
        scenario.seed = seed;
    }
    if let Some(agents) = args.agents {
        if agents == 0 || agents > swarm::scenario::MAX_AGENTS {
            return Err(usage(anyhow::anyhow!(
                "--agents {agents}: must be between 1 and {}",
                swarm::scenario::MAX_AGENTS
            )));
        }
        scenario.agents.count = agents;
    }
    let db = match args
        .db
        .or_else(|| scenario.target.database.clone())
        .or_else(|| std::env::var("DATABASE_URL").ok().filter(|s| !s.is_empty()))
    {
        Some(u) => Some(parse_url(&u)?),
        None => None,
    };
    let dir = match args.report_dir {
        Some(d) => {
            std::fs::create_dir_all(&d)
                .with_context(|| format!("creating {}", d.display()))
                .map_err(internal)?;
            d
        }
        None => engine::new_report_dir(std::path::Path::new("reports"), &scenario.name)
            .map_err(internal)?,
    };
    let control = Arc::new(Control::default());
    {
        let control = control.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!(
                    "swarm: stopping arrivals, draining, healing, auditing (Ctrl-C again aborts)"
                );
                control.stop.store(true, Ordering::Release);
                if tokio::signal::ctrl_c().await.is_ok() {
                    eprintln!("swarm: aborted");
                    std::process::exit(130);
                }
            }
        });
    }
    let tui = swarm::tui::wanted(args.no_tui);
    eprintln!(
        "swarm: running {} (seed {}) → {}",
        scenario.name,
        scenario.seed,
        dir.display()
    );
    let (observer, watching) = tokio::sync::oneshot::channel();
    let (phase, phases) = tokio::sync::watch::channel(swarm::tui::Phase::Running);
    let dashboard = tui.then(|| {
        let meta = swarm::tui::Meta {
            scenario: scenario.name.clone(),
            seed: scenario.seed,
            target: match &db {
                Some(u) => format!("direct · {u}"),
                None => "direct · embedded SQLite".into(),
            },
        };
        tokio::spawn(swarm::tui::run(watching, phases, meta, args.exit_on_finish))
    });
    let result = engine::run(RunOptions {
        scenario: scenario.clone(),
        db,
        dir: dir.clone(),
        shard: args.shard,
        progress: !tui,
        control,
        observer: tui.then_some(observer),
    })
    .await;
    let mut result = match result {
        Ok(r) => r,
        Err(e) => {
            if let Some(d) = dashboard {
                d.abort();
                let _ = d.await;
            }
            return Err(internal(e));
        }
    };
    let _ = phase.send(swarm::tui::Phase::Auditing);
    let history = std::mem::take(&mut result.history.records);
    let owned = swarm::history::History {
        header: result.history.header.clone(),
        records: history,
    };
    let audit =
        swarm::audit::audit_owned(result.db_url.as_ref(), owned, result.history_dropped).await;
    tracing::info!(memory_kib = ?swarm::metrics::memory_kib(), "audited");
    let summary = swarm::report::Summary::build(&scenario, &result, audit);
    let written = swarm::report::write_all(&dir, &summary, &result)
        .with_context(|| format!("writing the report in {}", dir.display()));
    if let Some(d) = dashboard {
        let _ = phase.send(swarm::tui::Phase::Done {
            validity: summary.validity.name().to_string(),
            exit_code: summary.exit_code,
            note: format!("report: {} · press any key", dir.display()),
        });
        match d.await {
            Ok(Err(e)) => eprintln!("swarm: dashboard: {e}"),
            Err(e) if e.is_panic() => eprintln!("swarm: dashboard failed"),
            _ => {}
        }
    }
    written.map_err(internal)?;
    println!("{}", summary.render());
    println!("report: {}", dir.display());
    Ok(summary.exit_code)
}

async fn audit_verb(args: AuditArgs) -> Result<i32, Exit> {
    if args.db.is_none() && args.history.is_none() {
        return Err(usage(anyhow::anyhow!(
            "give --db URL, --history FILE, or both"
        )));
    }
    let url = match &args.db {
        Some(u) => Some(parse_url(u)?),
        None => None,
    };
    let history = match &args.history {
        Some(p) => Some(swarm::history::History::read(p).map_err(usage)?),
        None => None,
    };
    let report = match history {
        Some(h) => swarm::audit::audit_owned(url.as_ref(), h, 0).await,
        None => {
            swarm::audit::audit(swarm::audit::Input {
                db: url.as_ref(),
                history: None,
                history_dropped: 0,
            })
            .await
        }
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(internal)?
        );
    } else {
        println!("{report}");
    }
    Ok(match report.validity {
        swarm::audit::Validity::Valid => exit::VALID,
        swarm::audit::Validity::Invalid => exit::INVARIANT_VIOLATED,
        swarm::audit::Validity::Unknown => exit::UNKNOWN,
    })
}

fn parse_url(s: &str) -> Result<DbUrl, Exit> {
    s.parse::<DbUrl>().map_err(usage)
}

async fn db_verb(verb: DbVerb) -> Result<i32, Exit> {
    match verb {
        DbVerb::Init(args) => {
            let url = parse_url(&args.db)?;
            let db = Database::connect(&url).map_err(usage)?;
            db.init()
                .await
                .with_context(|| format!("initialising {url}"))
                .map_err(internal)?;
            println!("schema ready in {url}");
        }
        DbVerb::Seed { db, scenario, seed } => {
            let url = parse_url(&db.db)?;
            let scenario = Scenario::load(&scenario).map_err(usage)?;
            let database = Database::connect(&url).map_err(usage)?;
            database.init().await.map_err(internal)?;
            let seed = seed.unwrap_or(scenario.seed);
            let plan = SeedPlan::new(seed, &scenario.catalog, &scenario.mandates);
            database
                .seed(&plan)
                .await
                .with_context(|| format!("seeding {url}"))
                .map_err(internal)?;
            println!(
                "seeded {url} (seed {seed}): {} item(s) x {} units in {} buckets, {} mandate(s) x {} minor in {} shards, plus the sandbox",
                scenario.catalog.items,
                scenario.catalog.stock,
                scenario.catalog.buckets,
                scenario.mandates.count,
                scenario.mandates.cap_minor,
                scenario.mandates.shards
            );
        }
        DbVerb::Stats { db, json } => {
            let url = parse_url(&db.db)?;
            let database = Database::connect(&url).map_err(usage)?;
            let stats = database
                .stats()
                .await
                .with_context(|| format!("reading {url}"))
                .map_err(internal)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&stats).map_err(internal)?
                );
            } else {
                println!("{stats}");
            }
        }
        DbVerb::Sandbox { db, key } => {
            let url = parse_url(&db.db)?;
            let kernel = Kernel::open(&url, KernelConfig::default())
                .await
                .with_context(|| format!("opening the kernel on {url}"))
                .map_err(internal)?;
            let key = key.unwrap_or_else(|| format!("sandbox-{}", uuid::Uuid::new_v4()));
            let req = PurchaseRequest::sandbox();
            for _ in 0..2 {
                let s = kernel.commit(&req, &key).await.map_err(internal)?;
                println!("{} {}", s.status(), s.json);
            }
        }
    }
    Ok(exit::VALID)
}
