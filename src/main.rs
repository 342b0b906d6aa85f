//! The `swarm` binary: verbs, flags and exit codes. Library errors become messages here.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use swarm::db::{Database, DbUrl, SeedPlan};
use swarm::exit;
use swarm::kernel::{Kernel, KernelConfig, PurchaseRequest};
use swarm::scenario::Scenario;

#[derive(Parser)]
#[command(
    name = "swarm",
    version,
    about = "Prove an agent-safe checkout can't be broken",
    after_help = "Example:\n  swarm db init --db sqlite://demo.db\n  swarm db seed --db sqlite://demo.db scenarios/smoke.toml\n  swarm db sandbox --db sqlite://demo.db"
)]
struct Cli {
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Subcommand)]
enum Verb {
    /// Schema, seed data and counts.
    #[command(subcommand)]
    Db(DbVerb),
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

fn main() -> ExitCode {
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
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => ExitCode::from(code as u8),
        Err(Exit(code, e)) => {
            eprintln!("swarm: {e:#}");
            ExitCode::from(code as u8)
        }
    }
}

async fn dispatch(cli: Cli) -> Result<i32, Exit> {
    match cli.verb {
        Verb::Db(verb) => db_verb(verb).await,
    }
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
            use swarm::db::seed::sandbox;
            let url = parse_url(&db.db)?;
            let kernel = Kernel::open(&url, KernelConfig::default())
                .await
                .with_context(|| format!("opening the kernel on {url}"))
                .map_err(internal)?;
            let key = key.unwrap_or_else(|| format!("sandbox-{}", uuid::Uuid::new_v4()));
            let req = PurchaseRequest {
                merchant_id: sandbox::MERCHANT,
                mandate_id: sandbox::MANDATE,
                item_id: sandbox::ITEM,
                agent_id: sandbox::AGENT.into(),
                quantity: 1,
                amount_minor: sandbox::PRICE_MINOR,
                currency: swarm::kernel::Currency::parse(sandbox::CURRENCY).map_err(internal)?,
            };
            for _ in 0..2 {
                let s = kernel.commit(&req, &key).await.map_err(internal)?;
                println!("{} {}", s.status(), s.json);
            }
        }
    }
    Ok(exit::VALID)
}
