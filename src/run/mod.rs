//! A run: seed the database, open the target, release the agents on their schedule, run
//! the fault timeline, then heal, resolve what is indeterminate and hand over to the audit.
//!
//! `execute` is the pipeline; the parts live beside it: `schedule` (arrival maths),
//! `arrive` (workers and lanes), `agent` (personas), `faults` (the timeline), `shop` (whose
//! catalog), `sampler` (progress and the live audit), `resolve` (the end-of-run replays).
//! Invariants: every fault is healed and every indeterminate key replayed before the run is
//! handed to the auditor; a run never decides what is valid.

pub mod agent;
mod arrive;
pub mod cluster;
pub mod faults;
mod final_candidates;
pub mod final_reads;
mod id;
pub mod leftover;
pub mod live;
pub mod probe;
pub mod resolve;
pub mod resolving;
pub mod resume;
mod sampler;
pub mod schedule;
mod shop;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use thiserror::Error;

use crate::addr::DbUrl;
use crate::audit::LiveCounts;
use crate::gateway::open::{self, OpenError};
use crate::history::{self, HistoryError};
use crate::metrics::{self, Metrics, Sample};
use crate::scenario::{Scenario, TargetKind};
use crate::sut::db::{Database, DbError, SeedPlan};
use crate::sut::kernel::{KernelError, Sql};
use agent::World;
use faults::{FaultRecord, Timeline};
pub use final_reads::FinalReads;
pub use id::RunId;
pub use resolve::Resolution;
use schedule::Schedule;
use shop::Shop;

#[derive(Debug, Error)]
pub enum RunError {
    #[error("database: {0}")]
    Db(#[from] DbError),
    #[error("kernel: {0}")]
    Kernel(#[from] KernelError),
    #[error("target: {0}")]
    Target(#[from] OpenError),
    #[error("preflight: {0}")]
    Preflight(#[from] crate::gateway::preflight::PreflightError),
    #[error("history: {0}")]
    History(#[from] HistoryError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Unsupported(String),
}

/// Stop and pause switches, flipped by Ctrl-C or the dashboard.
#[derive(Debug, Default)]
pub struct Control {
    pub stop: AtomicBool,
    pub paused: AtomicBool,
    /// A second Ctrl-C: drop the requests in flight, skip the resolution and final reads,
    /// leave the history without its end (as a killed run's: `swarm resolve` finishes it)
    /// and report what is known.
    pub abort: AtomicBool,
}

/// What to run and where.
pub struct RunOptions {
    pub scenario: Scenario,
    /// Resolved by the caller: flag, then scenario, then `DATABASE_URL`; `None` = embedded.
    pub db: Option<DbUrl>,
    /// The run's directory (created).
    pub dir: PathBuf,
    /// `(i, n)`: run the agents whose id is `i` modulo `n`.
    pub shard: Option<(u32, u32)>,
    /// Print a progress line to stderr every second.
    pub progress: bool,
    pub control: Arc<Control>,
    /// Receives a handle on the running swarm once agents can start (the dashboard).
    pub observer: Option<tokio::sync::oneshot::Sender<Arc<LiveRun>>>,
    /// The SQL the in-process kernels run: `Sql::reference()` except under `swarm selftest`.
    pub kernel_sql: Sql,
    /// Run the conformance probe before the agents (HTTP targets; shard 0 of several).
    pub probe: bool,
    /// Part of every key (`RunId::random()` unless a run's keys are repeated on purpose).
    pub run_id: RunId,
}

/// What a dashboard may read (and the few things it may do) while a run goes on.
pub struct LiveRun {
    pub world: Arc<World>,
    pub timeline: Arc<Timeline>,
    pub live: Arc<std::sync::Mutex<LiveCounts>>,
    pub control: Arc<Control>,
    /// Agents in this run (this shard's).
    pub total: u64,
}

/// Everything the auditor and the report need.
pub struct RunResult {
    pub dir: PathBuf,
    /// The database, when swarm can read it (`None`: a live endpoint without `--db`).
    pub db_url: Option<DbUrl>,
    pub embedded: bool,
    pub db_engine: String,
    /// The history file, streamed during the run; the audit reads it back.
    pub history_path: PathBuf,
    /// Its header.
    pub header: history::Header,
    pub metrics: metrics::Snapshot,
    pub series: Vec<Sample>,
    pub faults: Vec<FaultRecord>,
    /// What the cluster watcher saw (with `[cluster] patroni`).
    pub cluster: Option<cluster::ClusterFigures>,
    pub resolution: Resolution,
    /// What the conformance probe found before the agents started.
    pub conformance: probe::Conformance,
    /// What the final reads re-read after the resolution.
    pub final_reads: FinalReads,
    /// Requests without a definite answer during the run, and how their keys settled.
    pub indeterminate: history::Indeterminate,
    pub elapsed_ms: u64,
    /// From the start to the last agent done: the time the rates are of.
    pub agents_elapsed_ms: u64,
    pub agents_total: u64,
    pub agents_done: u64,
    pub stopped_early: bool,
    /// Aborted by a second Ctrl-C: no resolution, no final reads, the history left cut.
    pub aborted: bool,
    pub region_names: Vec<String>,
    /// Per region reached over HTTP: the connections its client opened.
    pub region_connections: Vec<Option<crate::gateway::pool::ConnectionFigures>>,
    /// The last figures of the live audit.
    pub live: LiveCounts,
    /// The start marker this run wrote (its own database only), to be finished.
    pub marker: Option<RunMarker>,
}

/// `swarm_meta` keys: the run id of the last run that started on this database, and of
/// the last that finished (after its audit and report).
pub const RUN_STARTED: &str = "run.started";
pub const RUN_FINISHED: &str = "run.finished";

/// Final reads in flight at once: enough to hide a network's latency, few enough that a
/// local database's lookups do not queue behind each other.
const FINAL_READ_CONCURRENCY: usize = 32;

/// The prefix of every idempotency key a run sends: its run id and seed.
pub fn key_prefix(run_id: &RunId, seed: u64) -> String {
    format!("{run_id}-s{seed}")
}

/// Mark the run as finished on its database (when it wrote a start marker there).
pub async fn mark_finished(marker: &RunMarker) -> Result<(), RunError> {
    Database::connect(&marker.db)?
        .set_meta(RUN_FINISHED, marker.run_id.as_str())
        .await?;
    Ok(())
}

/// Where a run left its start marker.
#[derive(Debug, Clone)]
pub struct RunMarker {
    pub db: DbUrl,
    pub run_id: RunId,
}

/// The history's header for a run of `s` buying from `shop` under keys `key_prefix-…`.
fn header_of(
    s: &Scenario,
    shop: &Shop,
    key_prefix: String,
    run_id: &RunId,
    shard: Option<(u32, u32)>,
    region_names: &[String],
) -> history::Header {
    // An in-process kernel speaks ZeroRace's contract whatever the scenario describes.
    let (contract_profile, replay_marker) = match s.target.kind {
        TargetKind::Http => s.contract.note(),
        TargetKind::Direct => crate::scenario::Contract::default().note(),
    };
    history::Header {
        version: history::HISTORY_VERSION,
        scenario: s.name.clone(),
        scenario_sha256: s.text_sha256.clone(),
        seed: s.seed,
        key_prefix,
        merchant_id: shop.merchant_id.to_string(),
        items: shop.items.iter().map(|u| u.to_string()).collect(),
        mandates: shop.mandates.iter().map(|u| u.to_string()).collect(),
        regions: region_names.to_vec(),
        stock_per_item: shop.stock_per_item,
        cap_per_mandate_minor: shop.cap_per_mandate_minor,
        price_minor: shop.price_minor,
        currency: shop.currency.clone(),
        shard,
        run_id: run_id.to_string(),
        contract_examples: Vec::new(),
        contract_profile,
        replay_marker,
        volatile_fields: match s.target.kind {
            TargetKind::Http => s.contract.answer.volatile_fields.clone(),
            TargetKind::Direct => Vec::new(),
        },
        // Before the run's clock starts: a key's age read from it is never less than true.
        started_unix_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_millis().min(u128::from(u64::MAX)) as u64),
    }
}

/// `swarm probe`: the conformance probe alone, against a scenario's live endpoints (its
/// requests recorded in a history that is thrown away).
pub async fn probe_only(s: &Scenario) -> Result<probe::Conformance, RunError> {
    if s.regions.iter().any(|r| r.endpoint.is_none()) || s.target.kind != TargetKind::Http {
        return Err(RunError::Unsupported(
            "swarm probe tests a live endpoint: give every region an `endpoint` (kind = \"http\"); `swarm run` probes its in-process servers itself".into(),
        ));
    }
    let regions = open::live_regions(s)?;
    crate::gateway::preflight::check(&regions).await?;
    let plan = SeedPlan::new(s.seed, &s.catalog, &s.mandates);
    let shop = Shop::resolve(s, &plan, &regions).await?;
    let names: Vec<String> = regions.iter().map(|r| r.name.clone()).collect();
    let run_id = RunId::random();
    let key_prefix = key_prefix(&run_id, s.seed);
    let header = header_of(s, &shop, key_prefix.clone(), &run_id, None, &names);
    let work = tempfile::tempdir().map_err(|source| RunError::Io {
        path: "a temporary directory".into(),
        source,
    })?;
    let sink = history::Sink::create(&work.path().join("history.bin"), &header)?;
    let metrics = Metrics::new(regions.len(), sink);
    let world = World::new(s, regions, metrics, s.seed, key_prefix, shop)?;
    let conformance = probe::probe(&world).await;
    world.metrics.finish_history()?;
    Ok(conformance)
}

/// Run a scenario end to end, up to (not including) the audit.
pub async fn execute(opts: RunOptions) -> Result<RunResult, RunError> {
    let s = &opts.scenario;
    let live_endpoints = s.regions.iter().filter(|r| r.endpoint.is_some()).count();
    if live_endpoints > 0 && (live_endpoints < s.regions.len() || s.target.kind != TargetKind::Http)
    {
        return Err(RunError::Unsupported(
            "give every region an `endpoint` (with target kind \"http\"), or none".into(),
        ));
    }
    let live_target = live_endpoints > 0;
    // A live target without `--db`: its database is not ours to read; the ids come from the
    // scenario's seed (seed the server with `swarm db seed` and the same scenario) and the
    // audit is history-only.
    let embedded = opts.db.is_none() && !live_target;
    let url = match (&opts.db, live_target) {
        (Some(u), _) => Some(u.clone()),
        (None, false) => Some(DbUrl::sqlite(opts.dir.join("swarm.db"))),
        (None, true) => None,
    };
    // A live endpoint answers a harmless request before anything is seeded or marked:
    // a closed port or a refused key stops the run here, leaving nothing behind.
    let live_regions = match live_target {
        true => {
            let regions = open::live_regions(s)?;
            crate::gateway::preflight::check(&regions).await?;
            Some(regions)
        }
        false => None,
    };
    let plan = SeedPlan::new(s.seed, &s.catalog, &s.mandates);
    // Ids given or discovered belong to the live deployment: nothing of ours to seed.
    let own_catalog = s.target.ids.is_none() && s.target.discover.is_none();
    let db_engine = match &url {
        Some(url) => {
            let database = Database::connect(url)?;
            if own_catalog {
                database.init().await?;
                database.seed(&plan).await?;
                // Before the first purchase: a database whose last run never wrote its
                // finish marker was cut short, and the audit says so.
                database.set_meta(RUN_STARTED, opts.run_id.as_str()).await?;
            }
            database.engine_version().await?
        }
        None => "none given: a live endpoint's own database (history-only audit)".to_string(),
    };

    let (regions, servers) = match (&url, live_regions) {
        (_, Some(regions)) => (regions, Vec::new()),
        (Some(url), None) => {
            let (regions, servers) = open::open_regions(s, url, opts.kernel_sql.clone()).await?;
            // Our own servers, probed the same way (they answer, or the run says why).
            crate::gateway::preflight::check(&regions).await?;
            (regions, servers)
        }
        (None, None) => unreachable!("an embedded database is always given"),
    };
    let shop = Shop::resolve(s, &plan, &regions).await?;
    let region_names: Vec<String> = regions.iter().map(|r| r.name.clone()).collect();
    // The history streams to disk from the first request: a killed run keeps it.
    let key_prefix = key_prefix(&opts.run_id, s.seed);
    let header = header_of(
        s,
        &shop,
        key_prefix.clone(),
        &opts.run_id,
        opts.shard,
        &region_names,
    );
    let history_path = opts.dir.join("history.bin");
    let sink = history::Sink::create(&history_path, &header)?;
    let metrics = Metrics::new(regions.len(), sink);
    let world = Arc::new(World::new(s, regions, metrics, s.seed, key_prefix, shop)?);

    let (shard_i, shard_n) = opts.shard.unwrap_or((0, 1));
    let count = s.agents.count.min(u64::from(u32::MAX));
    let total = (0..count)
        .filter(|i| i % u64::from(shard_n) == u64::from(shard_i))
        .count() as u64;
    let cluster = cluster::ClusterWatch::new(&s.cluster.patroni).map(Arc::new);
    let timeline = Arc::new(Timeline::new(s, total, cluster.clone()));
    let schedule = Schedule::new(s);

    // Side tasks: the fault timeline, the live audit and the once-a-second sampler.
    let live = Arc::new(std::sync::Mutex::new(LiveCounts::default()));
    let live_stop = Arc::new(AtomicBool::new(false));
    // SWARM_LIVE_AUDIT=off exists to measure the poller's cost (scripts/bench-million.sh).
    let live_on = std::env::var("SWARM_LIVE_AUDIT").map_or(true, |v| v != "off");
    let live_task = {
        let (url, live, stop) = (url.clone(), live.clone(), live_stop.clone());
        tokio::spawn(async move {
            if let (true, Some(url)) = (live_on, url) {
                sampler::poll_live(url, live, stop).await
            }
        })
    };
    let faults_task = {
        let (w, t) = (world.clone(), timeline.clone());
        tokio::spawn(async move { t.run(&w.regions, &w.metrics).await })
    };
    let cluster_task = cluster.clone().map(|c| {
        let w = world.clone();
        tokio::spawn(async move { c.run(&w.metrics).await })
    });
    let sampler_stop = Arc::new(AtomicBool::new(false));
    let sampler_task = tokio::spawn(sampler::sample_every_second(
        world.clone(),
        timeline.clone(),
        sampler_stop.clone(),
        opts.progress,
        live.clone(),
        total,
    ));

    // The contract's promises, tested on the endpoint before any agent buys.
    let conformance = match (s.target.kind, opts.probe, shard_i) {
        (TargetKind::Direct, _, _) => probe::skipped(
            "a direct target: the kernel is called in-process, there is no endpoint to probe",
        ),
        (_, false, _) => probe::skipped("--no-probe"),
        (_, true, i) if i > 0 => probe::skipped("shard 0 probes for every shard"),
        _ => probe::probe(&world).await,
    };
    for line in conformance.lines() {
        tracing::info!("{line}");
    }

    if let Some(observer) = opts.observer {
        let _ = observer.send(Arc::new(LiveRun {
            world: world.clone(),
            timeline: timeline.clone(),
            live: live.clone(),
            control: opts.control.clone(),
            total,
        }));
    }

    let stopped_early = arrive::release(
        world.clone(),
        (shard_i, shard_n),
        count,
        s.agents.in_flight,
        schedule,
        opts.control.clone(),
        s.target.kind == TargetKind::Http,
    )
    .await?;

    // The generator's own time: the rates are of the agents' phase (the resolution and
    // the final reads that follow are timed apart).
    let agents_elapsed_ms = world.metrics.start.elapsed().as_millis() as u64;
    tracing::info!(memory_kib = ?crate::metrics::memory_kib(), "agents done");
    // End of run: stop the timeline, heal everything, resolve what is indeterminate.
    timeline.stop();
    faults_task.abort();
    let _ = faults_task.await;
    timeline.heal_all(&world.regions, &world.metrics);
    timeline.finish(&world.metrics);
    let aborted = opts.control.abort.load(Ordering::Acquire);
    let (resolution, final_reads) = if aborted {
        // Aborted: what the history holds is what is known; `swarm resolve` can replay
        // the open keys later.
        let skipped = "not run: the run was aborted (a second Ctrl-C)".to_string();
        (
            Resolution {
                stopped: Some(skipped.clone()),
                ..Resolution::default()
            },
            FinalReads {
                stopped: Some(skipped),
                ..FinalReads::default()
            },
        )
    } else {
        let abort = &opts.control.abort;
        let resolution = resolve::resolve(
            &world,
            s.agents.in_flight,
            std::time::Duration::from_millis(s.retry.resolve_budget_ms),
            abort,
        )
        .await;
        let reads = final_reads::read(
            &world,
            s.agents.in_flight.min(FINAL_READ_CONCURRENCY),
            &s.audit.final_reads,
            abort,
        )
        .await;
        (resolution, reads)
    };
    // An abort during the resolution or the final reads leaves the history cut too.
    let aborted = opts.control.abort.load(Ordering::Acquire);
    sampler_stop.store(true, Ordering::Release);
    sampler_task.abort();
    let _ = sampler_task.await;
    live_stop.store(true, Ordering::Release);
    live_task.abort();
    let _ = live_task.await;
    if let (Some(c), Some(task)) = (&cluster, cluster_task) {
        c.stop();
        task.abort();
        let _ = task.await;
    }
    for server in servers {
        server.stop().await;
    }
    let live_counts = *live.lock().unwrap_or_else(|p| p.into_inner());
    sampler::sample(&world);

    let elapsed_ms = world.metrics.start.elapsed().as_millis() as u64;
    let written = match aborted {
        // Left without its end, as a killed run's: the audit says it was cut short and
        // `swarm resolve` can finish it.
        true => world.metrics.abandon_history()?,
        false => world.metrics.finish_history()?,
    };
    tracing::info!(records = written, memory_kib = ?crate::metrics::memory_kib(), "history written");
    let indeterminate = history::Indeterminate::read(&history_path)?;
    let db_url = url;
    Ok(RunResult {
        dir: opts.dir.clone(),
        db_url: db_url.clone(),
        embedded,
        db_engine,
        history_path,
        header,
        metrics: world.metrics.snapshot(),
        series: world.metrics.series(),
        faults: timeline.records(&world.metrics),
        cluster: cluster.as_ref().map(|c| c.figures()),
        resolution,
        conformance,
        final_reads,
        indeterminate,
        elapsed_ms,
        agents_elapsed_ms,
        agents_total: total,
        agents_done: world.metrics.agents_done.load(Ordering::Relaxed),
        stopped_early: stopped_early || opts.control.stop.load(Ordering::Acquire),
        aborted,
        region_names,
        region_connections: world
            .regions
            .iter()
            .map(|r| r.http().map(|g| g.connections()))
            .collect(),
        live: live_counts,
        marker: match (&db_url, own_catalog) {
            (Some(db), true) => Some(RunMarker {
                db: db.clone(),
                run_id: opts.run_id.clone(),
            }),
            _ => None,
        },
    })
}
