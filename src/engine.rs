//! The engine: seeds the database, opens the regions, releases agents on the arrival
//! schedule, runs the fault timeline, and at the end heals, resolves and hands over.
//!
//! Invariants: at most `in_flight` agents are alive at once (`in_flight` workers take the
//! next agent when free, so a million-agent burst never holds a million futures); over HTTP
//! the workers are split over one single-threaded lane per core; every indeterminate key is
//! replayed through a healthy region before the run is handed to the auditor; the engine
//! never decides what is valid.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::SmallRng;
use serde::Serialize;
use thiserror::Error;
use tokio::sync::Semaphore;

use crate::agent::{self, Attempt, World};
use crate::audit::{LiveCounts, Source};
use crate::db::{Database, DbError, DbUrl, Dialect, SeedPlan};
use crate::fault::{FaultRecord, Timeline};
use crate::history::{self, History, HistoryError, Kind, Op};
use crate::kernel::{Currency, Kernel, KernelConfig, KernelError};
use crate::metrics::{self, Metrics, Sample};
use crate::region::Region;
use crate::scenario::{Arrival, Scenario, TargetKind, parse_duration_ms};

#[derive(Debug, Error)]
pub enum EngineError {
    #[error("database: {0}")]
    Db(#[from] DbError),
    #[error("kernel: {0}")]
    Kernel(#[from] KernelError),
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

/// How the end-of-run replay of indeterminate keys went.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Resolution {
    /// Keys that ended indeterminate (no definite answer, some request without one).
    pub pending: u64,
    /// Replayed: the key had committed (or declined) earlier; the answer was lost.
    pub recovered: u64,
    /// The replay executed the purchase for the first time.
    pub fresh: u64,
    /// Refused (e.g. 409) on replay.
    pub refused: u64,
    /// Still no definite answer after the bounded replays.
    pub unresolved: u64,
}

/// Everything the auditor and the report need.
pub struct RunResult {
    pub dir: PathBuf,
    /// The database, when swarm can read it (`None`: a live endpoint without `--db`).
    pub db_url: Option<DbUrl>,
    pub embedded: bool,
    pub db_engine: String,
    pub history_path: PathBuf,
    pub history: History,
    pub history_dropped: u64,
    pub metrics: metrics::Snapshot,
    pub series: Vec<Sample>,
    pub faults: Vec<FaultRecord>,
    pub resolution: Resolution,
    pub elapsed_ms: u64,
    pub agents_total: u64,
    pub agents_done: u64,
    pub stopped_early: bool,
    pub region_names: Vec<String>,
    /// The last figures of the live audit.
    pub live: LiveCounts,
}

/// Poll the live audit subset once a second on its own read connection.
async fn poll_live(url: DbUrl, out: Arc<std::sync::Mutex<LiveCounts>>, stop: Arc<AtomicBool>) {
    let source = match Source::open(&url).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("live audit disabled: {e}");
            return;
        }
    };
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while !stop.load(Ordering::Acquire) {
        every.tick().await;
        let polled = crate::audit::live(&source).await;
        let mut counts = out.lock().unwrap_or_else(|p| p.into_inner());
        match polled {
            Ok(c) => {
                *counts = LiveCounts {
                    errors: counts.errors,
                    polls: counts.polls + 1,
                    ..c
                }
            }
            Err(e) => {
                counts.errors += 1;
                tracing::debug!("live audit poll failed: {e}");
            }
        }
    }
}

/// `reports/<name>-<UTC timestamp>/`, made unique if two runs start in one second.
pub fn new_report_dir(root: &Path, name: &str) -> Result<PathBuf, EngineError> {
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace(['-', ':'], "");
    let base = root.join(format!("{name}-{stamp}"));
    let mut dir = base.clone();
    let mut n = 1;
    while dir.exists() {
        n += 1;
        dir = PathBuf::from(format!("{}-{n}", base.display()));
    }
    std::fs::create_dir_all(&dir).map_err(|source| EngineError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    Ok(dir)
}

/// Lanes for the HTTP generator: one per core, never more than the agents in flight.
fn lane_count(in_flight: usize) -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, crate::pool::MAX_LANES)
        .min(in_flight.max(1))
}

/// Which agents one lane runs: the `k`-th is `first + k * step`, below `count`.
#[derive(Clone, Copy)]
struct Stride {
    first: u64,
    step: u64,
    count: u64,
}

impl Stride {
    fn nth(self, k: u64) -> Option<u64> {
        let id = self.first.checked_add(k.checked_mul(self.step)?)?;
        (id < self.count).then_some(id)
    }
}

/// Run the agents of `stride` as their arrival times come, at most `in_flight` alive at
/// once, and wait for the last of them. True when stopped early (Ctrl-C, `q`).
///
/// `in_flight` long-lived workers each take the next agent when they are free (sleeping
/// until its arrival time): an agent costs no task of its own, and an agent that cannot
/// start on time keeps its intended start for the latency it reports.
async fn arrive(
    world: Arc<World>,
    stride: Stride,
    in_flight: usize,
    schedule: Schedule,
    control: Arc<Control>,
) -> bool {
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stopped = Arc::new(AtomicBool::new(false));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..in_flight.max(1) {
        let (world, schedule, control) = (world.clone(), schedule.clone(), control.clone());
        let (next, stopped) = (next.clone(), stopped.clone());
        workers.spawn(async move {
            let start = world.metrics.start;
            loop {
                while control.paused.load(Ordering::Acquire)
                    && !control.stop.load(Ordering::Acquire)
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                if control.stop.load(Ordering::Acquire) {
                    stopped.store(true, Ordering::Release);
                    return;
                }
                let Some(id) = stride.nth(next.fetch_add(1, Ordering::AcqRel)) else {
                    return;
                };
                let scheduled = schedule
                    .offset_s(id)
                    .map(|secs| start + Duration::from_secs_f64(secs));
                if let Some(at) = scheduled {
                    tokio::time::sleep_until(at.into()).await;
                }
                let intended = scheduled.unwrap_or_else(Instant::now);
                world.metrics.agents_started.fetch_add(1, Ordering::Relaxed);
                agent::run_agent(&world, id as u32, intended).await;
                world.metrics.agents_done.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    while workers.join_next().await.is_some() {}
    stopped.load(Ordering::Acquire)
}

/// Seconds from the start at which the `index`-th agent arrives (open model).
#[derive(Clone)]
pub struct Schedule {
    arrival: Arrival,
    rate_per_s: f64,
    /// (duration_s, from_rate, to_rate)
    stages: Vec<(f64, f64, f64)>,
}

impl Schedule {
    pub fn new(s: &Scenario) -> Schedule {
        let mut from = 0.0;
        let stages = s
            .agents
            .stages
            .iter()
            .map(|st| {
                let d = parse_duration_ms(&st.duration).unwrap_or(0) as f64 / 1000.0;
                let stage = (d, from, st.rate_per_s);
                from = st.rate_per_s;
                stage
            })
            .collect();
        Schedule {
            arrival: s.agents.arrival,
            rate_per_s: s.agents.rate_per_s,
            stages,
        }
    }

    /// `None` for a burst: agents go as capacity frees.
    pub fn offset_s(&self, index: u64) -> Option<f64> {
        let i = index as f64;
        match self.arrival {
            Arrival::Burst => None,
            Arrival::Rate => Some(i / self.rate_per_s),
            Arrival::Ramp => {
                let mut t = 0.0;
                let mut done = 0.0;
                let mut last_rate = 0.0;
                for &(d, from, to) in &self.stages {
                    let area = d * (from + to) / 2.0;
                    if i < done + area {
                        let x = i - done;
                        let slope = (to - from) / d.max(1e-9);
                        let dt = if slope.abs() < 1e-12 {
                            x / from.max(1e-9)
                        } else {
                            // from*t + slope*t^2/2 = x
                            (-from + (from * from + 2.0 * slope * x).max(0.0).sqrt()) / slope
                        };
                        return Some(t + dt);
                    }
                    done += area;
                    t += d;
                    last_rate = to;
                }
                // After the last stage, keep its rate (or release the rest at once).
                Some(if last_rate > 0.0 {
                    t + (i - done) / last_rate
                } else {
                    t
                })
            }
        }
    }
}

fn region_states(world: &World) -> Vec<String> {
    world.regions.iter().map(|r| r.state().label()).collect()
}

fn progress_line(world: &World, s: &Sample, total: u64, live: &LiveCounts) -> String {
    let regions: Vec<String> = world
        .regions
        .iter()
        .map(|r| format!("{} {}", r.name, r.state().label()))
        .collect();
    format!(
        "[{:>4}s] agents {}/{} ({:.1}%) · {} req/s · commits {}/s · declines {}/s · errors {}/s · OCC retries {}/s · p99 {:.1} ms · {} · live: oversells {} dup {} drift {} breaches {}",
        s.second,
        s.agents_done,
        total,
        100.0 * s.agents_done as f64 / total.max(1) as f64,
        s.requests,
        s.commits,
        s.declines,
        s.errors,
        s.occ_retries,
        s.p99_us as f64 / 1000.0,
        regions.join(" · "),
        live.oversells,
        live.duplicate_settlements,
        live.ledger_drift,
        live.mandate_breaches
    )
}

/// Regions that are live endpoints: HTTP with client-side faults, API key from the
/// variable `target.api_key_env` names.
fn live_regions(scenario: &Scenario) -> Result<Vec<Region>, EngineError> {
    let api_key = match &scenario.target.api_key_env {
        Some(var) => Some(std::env::var(var).map_err(|_| {
            EngineError::Unsupported(format!(
                "target.api_key_env: the variable `{var}` is not set"
            ))
        })?),
        None => None,
    };
    scenario
        .regions
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let unsupported =
                |e: String| EngineError::Unsupported(format!("regions[{i}].endpoint: {e}"));
            let endpoint = crate::pool::Endpoint::parse(spec.endpoint.as_deref().unwrap_or(""))
                .map_err(unsupported)?;
            let gateway = crate::region::HttpGateway::new(endpoint, None)
                .map_err(unsupported)?
                .with_api_key(api_key.clone())
                .map_err(|e| EngineError::Unsupported(format!("target.api_key_env: {e}")))?
                .with_zinc(scenario.target.protocol == crate::scenario::Protocol::Zinc);
            Ok(Region::with_gateway(
                spec.name.clone(),
                i as u8,
                crate::region::Gateway::Http(Box::new(gateway)),
            ))
        })
        .collect()
}

/// Whose catalog the agents buy from, at what price, within what declared limits.
struct Shop {
    merchant_id: uuid::Uuid,
    items: Vec<uuid::Uuid>,
    mandates: Vec<uuid::Uuid>,
    price_minor: i64,
    currency: String,
    stock_per_item: i64,
    cap_per_mandate_minor: i64,
}

/// `GET /v1/sandbox`'s document.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct SandboxDoc {
    merchant_id: uuid::Uuid,
    mandate_id: uuid::Uuid,
    item_id: uuid::Uuid,
    unit_price_minor: i64,
    currency: String,
    initial_stock: i64,
    cap_minor: i64,
}

impl Shop {
    /// The scenario's own seeded catalog; the ids it gives (price and limits from its
    /// catalog and mandates, which then describe the live deployment); or the sandbox a
    /// live endpoint names.
    async fn resolve(
        s: &Scenario,
        plan: &SeedPlan,
        regions: &[Region],
    ) -> Result<Shop, EngineError> {
        let declared = |merchant_id, items, mandates| Shop {
            merchant_id,
            items,
            mandates,
            price_minor: s.catalog.price_minor,
            currency: s.catalog.currency.clone(),
            stock_per_item: s.catalog.stock,
            cap_per_mandate_minor: s.mandates.cap_minor,
        };
        let uuid = |text: &str| {
            uuid::Uuid::parse_str(text)
                .map_err(|e| EngineError::Unsupported(format!("target.ids: `{text}`: {e}")))
        };
        if let Some(ids) = &s.target.ids {
            let items = ids
                .items
                .iter()
                .map(|i| uuid(i))
                .collect::<Result<_, _>>()?;
            let mandates = ids
                .mandates
                .iter()
                .map(|m| uuid(m))
                .collect::<Result<_, _>>()?;
            return Ok(declared(uuid(&ids.merchant)?, items, mandates));
        }
        if s.target.discover == Some(crate::scenario::Discover::Sandbox) {
            return Shop::discover(regions).await;
        }
        Ok(declared(
            plan.merchants[0].merchant_id,
            plan.catalog_items().map(|i| i.item_id).collect(),
            plan.catalog_mandates().map(|m| m.mandate_id).collect(),
        ))
    }

    async fn discover(regions: &[Region]) -> Result<Shop, EngineError> {
        let failed = |why: String| {
            EngineError::Unsupported(format!(
                "target.discover = \"sandbox\": GET /v1/sandbox: {why}"
            ))
        };
        let gateway = regions
            .first()
            .and_then(|r| r.http())
            .ok_or_else(|| failed("no HTTP endpoint to ask".into()))?;
        let answer =
            match tokio::time::timeout(Duration::from_secs(10), gateway.get("/v1/sandbox")).await {
                Ok(Ok(a)) => a,
                Ok(Err(code)) => return Err(failed(format!("{code:?}"))),
                Err(_) => return Err(failed("no answer within 10 s".into())),
            };
        if answer.status != 200 {
            return Err(failed(format!(
                "HTTP {}: {}",
                answer.status,
                String::from_utf8_lossy(&answer.body)
            )));
        }
        let doc: SandboxDoc = serde_json::from_slice(&answer.body)
            .map_err(|e| failed(format!("unreadable document: {e}")))?;
        Ok(Shop {
            merchant_id: doc.merchant_id,
            items: vec![doc.item_id],
            mandates: vec![doc.mandate_id],
            price_minor: doc.unit_price_minor,
            currency: doc.currency,
            stock_per_item: doc.initial_stock,
            cap_per_mandate_minor: doc.cap_minor,
        })
    }
}

/// An in-process HTTP server of one region, stopped at the end of the run.
struct RegionServer {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<bool>>,
}

/// Open one kernel per region on PostgreSQL (each its own pool); on embedded SQLite the
/// regions share the one writer, each through its own handle. With `kind = "http"` each
/// region gets its own server on 127.0.0.1 behind a fault proxy.
async fn open_regions(
    scenario: &Scenario,
    url: &DbUrl,
) -> Result<(Vec<Region>, Vec<RegionServer>), EngineError> {
    let config = KernelConfig::from(&scenario.kernel);
    let mut regions = Vec::with_capacity(scenario.regions.len());
    let mut servers = Vec::new();
    let shared = match url.dialect() {
        Dialect::Sqlite => Some(Kernel::open(url, config.clone()).await?),
        Dialect::Postgres => None,
    };
    let io = |e: std::io::Error| EngineError::Io {
        path: "127.0.0.1".into(),
        source: e,
    };
    for (i, spec) in scenario.regions.iter().enumerate() {
        let kernel = match &shared {
            Some(k) => k.clone(),
            None => Kernel::open(url, config.clone()).await?,
        };
        let region = match scenario.target.kind {
            TargetKind::Direct => Region::new(spec.name.clone(), i as u8, kernel),
            TargetKind::Http => {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .map_err(io)?;
                let server_addr = listener.local_addr().map_err(io)?;
                let app = crate::server::router(
                    kernel,
                    crate::server::ServerConfig {
                        max_in_flight: 100_000,
                        ..Default::default()
                    },
                );
                let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                let drain = Duration::from_secs(5);
                let task = tokio::spawn(crate::server::serve(
                    listener,
                    app,
                    async {
                        let _ = stopped.await;
                    },
                    drain,
                ));
                servers.push(RegionServer { stop, task });
                let proxy = crate::proxy::FaultProxy::start(server_addr)
                    .await
                    .map_err(io)?;
                let endpoint = crate::pool::Endpoint {
                    address: proxy.addr().to_string(),
                    host: proxy.addr().to_string(),
                    prefix: String::new(),
                };
                let gateway = crate::region::HttpGateway::new(endpoint, Some(proxy))
                    .map_err(EngineError::Unsupported)?
                    .with_zinc(scenario.target.protocol == crate::scenario::Protocol::Zinc);
                Region::with_gateway(
                    spec.name.clone(),
                    i as u8,
                    crate::region::Gateway::Http(Box::new(gateway)),
                )
            }
        };
        regions.push(region);
    }
    Ok((regions, servers))
}

/// Run a scenario end to end, up to (not including) the audit.
pub async fn run(opts: RunOptions) -> Result<RunResult, EngineError> {
    let s = &opts.scenario;
    let live_endpoints = s.regions.iter().filter(|r| r.endpoint.is_some()).count();
    if live_endpoints > 0 && (live_endpoints < s.regions.len() || s.target.kind != TargetKind::Http)
    {
        return Err(EngineError::Unsupported(
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
    let plan = SeedPlan::new(s.seed, &s.catalog, &s.mandates);
    // Ids given or discovered belong to the live deployment: nothing of ours to seed.
    let own_catalog = s.target.ids.is_none() && s.target.discover.is_none();
    let db_engine = match &url {
        Some(url) => {
            let database = Database::connect(url)?;
            if own_catalog {
                database.init().await?;
                database.seed(&plan).await?;
            }
            database.engine_version().await?
        }
        None => "live endpoint (database not readable)".to_string(),
    };

    let (regions, servers) = match (&url, live_target) {
        (_, true) => (live_regions(s)?, Vec::new()),
        (Some(url), false) => open_regions(s, url).await?,
        (None, false) => unreachable!("an embedded database is always given"),
    };
    let shop = Shop::resolve(s, &plan, &regions).await?;
    let (items, mandates) = (shop.items.clone(), shop.mandates.clone());
    let region_names: Vec<String> = regions.iter().map(|r| r.name.clone()).collect();
    let region_weights: Vec<f64> = s.regions.iter().map(|r| r.weight).collect();
    let world = Arc::new(World {
        metrics: Metrics::new(regions.len()),
        regions,
        seed: s.seed,
        key_prefix: format!("s{}", s.seed),
        merchant_id: shop.merchant_id,
        items: shop.items,
        mandates: shop.mandates,
        price_minor: shop.price_minor,
        currency: Currency::parse(&shop.currency)?,
        quantity: s.agents.quantity,
        purchases: s.agents.purchases,
        retry: s.retry.clone(),
        mix_cdf: agent::mix_cdf(&s.mix),
        region_cdf: agent::cdf(&region_weights),
    });

    let (shard_i, shard_n) = opts.shard.unwrap_or((0, 1));
    let count = s.agents.count.min(u64::from(u32::MAX));
    let total = (0..count)
        .filter(|i| i % u64::from(shard_n) == u64::from(shard_i))
        .count() as u64;
    let timeline = Arc::new(Timeline::new(s, total));
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
                poll_live(url, live, stop).await
            }
        })
    };
    let faults_task = {
        let (w, t) = (world.clone(), timeline.clone());
        tokio::spawn(async move { t.run(&w.regions, &w.metrics).await })
    };
    let sampler_stop = Arc::new(AtomicBool::new(false));
    let sampler_task = {
        let (w, stop, progress, live) = (
            world.clone(),
            sampler_stop.clone(),
            opts.progress,
            live.clone(),
        );
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            every.tick().await;
            while !stop.load(Ordering::Acquire) {
                every.tick().await;
                let sample = w.metrics.sample(region_states(&w));
                if progress {
                    let counts = *live.lock().unwrap_or_else(|p| p.into_inner());
                    eprintln!("{}", progress_line(&w, &sample, total, &counts));
                }
            }
        })
    };

    if let Some(observer) = opts.observer {
        let _ = observer.send(Arc::new(LiveRun {
            world: world.clone(),
            timeline: timeline.clone(),
            live: live.clone(),
            control: opts.control.clone(),
            total,
        }));
    }

    // Arrivals.
    let in_flight = s.agents.in_flight;
    // This shard's agents are shard_i, shard_i + shard_n, …; lane l of n takes every n-th.
    let stride = move |lane: u64, lanes: u64| Stride {
        first: u64::from(shard_i) + lane * u64::from(shard_n),
        step: lanes * u64::from(shard_n),
        count,
    };
    let stopped_early = if s.target.kind == TargetKind::Http {
        // Over HTTP, each lane is a single-threaded runtime on its own thread with its own
        // agents, connections and timers: a request's hand-offs (agent, connection task,
        // socket) never cross threads, the way oha keeps its own load.
        let lanes = lane_count(in_flight);
        let mut done = Vec::with_capacity(lanes);
        for lane in 0..lanes {
            let (w, sched, control) = (world.clone(), schedule.clone(), opts.control.clone());
            let share = in_flight / lanes + usize::from(lane < in_flight % lanes);
            let (tell, told) = tokio::sync::oneshot::channel();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| EngineError::Io {
                    path: "runtime".into(),
                    source: e,
                })?;
            std::thread::Builder::new()
                .name(format!("swarm-lane-{lane}"))
                .spawn(move || {
                    crate::pool::set_lane(lane);
                    let mine = stride(lane as u64, lanes as u64);
                    let stopped = runtime.block_on(arrive(w, mine, share, sched, control));
                    let _ = tell.send(stopped);
                })
                .map_err(|e| EngineError::Io {
                    path: "thread".into(),
                    source: e,
                })?;
            done.push(told);
        }
        let mut stopped = false;
        for lane in done {
            stopped |= lane.await.unwrap_or(true);
        }
        stopped
    } else {
        arrive(
            world.clone(),
            stride(0, 1),
            in_flight,
            schedule.clone(),
            opts.control.clone(),
        )
        .await
    };

    tracing::info!(memory_kib = ?crate::metrics::memory_kib(), "agents done");
    // End of run: stop the timeline, heal everything, resolve what is indeterminate.
    timeline.stop();
    faults_task.abort();
    let _ = faults_task.await;
    timeline.heal_all(&world.regions, &world.metrics);
    let resolution = resolve(&world, in_flight).await;
    sampler_stop.store(true, Ordering::Release);
    sampler_task.abort();
    let _ = sampler_task.await;
    live_stop.store(true, Ordering::Release);
    live_task.abort();
    let _ = live_task.await;
    for server in servers {
        let _ = server.stop.send(());
        let _ = server.task.await;
    }
    let live_counts = *live.lock().unwrap_or_else(|p| p.into_inner());
    world.metrics.sample(region_states(&world));

    let elapsed_ms = world.metrics.start.elapsed().as_millis() as u64;
    let (records, history_dropped) = world.metrics.take_history();
    let history = History {
        header: history::Header {
            version: history::HISTORY_VERSION,
            scenario: s.name.clone(),
            seed: s.seed,
            key_prefix: world.key_prefix.clone(),
            merchant_id: world.merchant_id.to_string(),
            items: items.iter().map(|u| u.to_string()).collect(),
            mandates: mandates.iter().map(|u| u.to_string()).collect(),
            regions: region_names.clone(),
            stock_per_item: shop.stock_per_item,
            cap_per_mandate_minor: shop.cap_per_mandate_minor,
            price_minor: shop.price_minor,
            currency: shop.currency.clone(),
            shard: opts.shard,
        },
        records,
    };
    tracing::info!(memory_kib = ?crate::metrics::memory_kib(), "history taken");
    let history_path = opts.dir.join("history.bin");
    history.write(&history_path)?;
    Ok(RunResult {
        dir: opts.dir.clone(),
        db_url: url,
        embedded,
        db_engine,
        history_path,
        history,
        history_dropped,
        metrics: world.metrics.snapshot(),
        series: world.metrics.series(),
        faults: timeline.records(),
        resolution,
        elapsed_ms,
        agents_total: total,
        agents_done: world.metrics.agents_done.load(Ordering::Relaxed),
        stopped_early: stopped_early || opts.control.stop.load(Ordering::Acquire),
        region_names,
        live: live_counts,
    })
}

/// Replay every indeterminate key through a healthy region until it gets a definite
/// answer, a bounded number of times.
async fn resolve(world: &Arc<World>, concurrency: usize) -> Resolution {
    const MAX_REPLAYS: u32 = 50;
    let pending = world.metrics.take_pending();
    let mut out = Resolution {
        pending: pending.len() as u64,
        ..Resolution::default()
    };
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for first in pending {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let w = world.clone();
        tasks.spawn(async move {
            let _permit = permit;
            let mut rng = SmallRng::seed_from_u64(u64::from(first.plan.id) ^ 0x5EED);
            let mut a = Attempt {
                op: Op::Resolve,
                seq: u8::MAX,
                ..first
            };
            for attempt in 1..=MAX_REPLAYS {
                let (code, replayed) = w.send(a).await;
                if !code.is_transient() {
                    return Some((code, replayed));
                }
                a.region = w.failover(a.region);
                tokio::time::sleep(crate::kernel::backoff(attempt, 5, 200, &mut rng)).await;
            }
            None
        });
    }
    while let Some(joined) = tasks.join_next().await {
        match joined.ok().flatten() {
            Some((code, true)) if code.kind() == Kind::Ok => out.recovered += 1,
            Some((code, false)) if code.kind() == Kind::Ok => out.fresh += 1,
            Some(_) => out.refused += 1,
            None => out.unresolved += 1,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(text: &str) -> Scenario {
        Scenario::parse(Path::new("t.toml"), text).expect("scenario")
    }

    #[test]
    fn open_model_schedules() {
        let burst = Schedule::new(&scenario("name = \"b\"\n"));
        assert_eq!(burst.offset_s(5), None);
        let rate = Schedule::new(&scenario(
            "agents = { arrival = \"rate\", rate_per_s = 100.0 }\n",
        ));
        assert_eq!(rate.offset_s(250), Some(2.5));
        // 0 -> 100/s over 10 s is 500 arrivals; then 100/s flat for 5 s is 500 more.
        let ramp = Schedule::new(&scenario(
            "agents = { arrival = \"ramp\", stages = [{ duration = \"10s\", rate_per_s = 100.0 }, { duration = \"5s\", rate_per_s = 100.0 }] }\n",
        ));
        let at = |i| ramp.offset_s(i).expect("ramp");
        assert!((at(500) - 10.0).abs() < 1e-6, "{}", at(500));
        assert!((at(125) - 5.0).abs() < 1e-6, "{}", at(125));
        assert!((at(750) - 12.5).abs() < 1e-6, "{}", at(750));
        assert!(
            (at(1100) - 16.0).abs() < 1e-6,
            "after the stages the last rate holds"
        );
        assert!(at(10) < at(11));
    }
}
