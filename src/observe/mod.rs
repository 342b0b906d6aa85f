//! Live observability: the running swarm seen from outside the terminal. Prometheus
//! scrapes `--metrics-listen ADDR` (`/metrics`), `--metrics-push URL` sends remote write,
//! `--web ADDR` serves Mission Control (one page, its assets in the binary, a
//! server-sent-event stream of `run::live::View`s to any number of viewers).
//!
//! One publisher task builds the view (and the Prometheus families) once a second from a
//! metrics snapshot; every listener reads what it published, so a scrape, a push and a
//! page never disagree and never add work per viewer. Invariants: the listeners are
//! read-only and bind where told; nothing they serve carries a secret (`live::redact`);
//! a slow or stuck viewer, scraper or receiver never blocks the run (a broadcast that
//! drops frames for laggards, counted; pushes skipped while one is still out, counted).

mod prometheus;
mod push;
mod web;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

pub use prometheus::{Family, families};
pub use push::PushTarget;

use crate::run::LiveRun;
use crate::run::live::{Meta, Verdict, View};

/// Frames a slow viewer may fall behind before it misses some.
const VIEWER_BUFFER: usize = 8;
/// Samples each per-second event carries (a viewer merges them by second).
const TAIL_SAMPLES: usize = 3;

/// What to serve and where.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub metrics_listen: Option<SocketAddr>,
    pub metrics_push: Option<PushTarget>,
    pub push_interval: Duration,
    pub web: Option<SocketAddr>,
}

impl Options {
    pub fn any(&self) -> bool {
        self.metrics_listen.is_some() || self.metrics_push.is_some() || self.web.is_some()
    }
}

/// Why an observer could not start.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    #[error("{what} {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// What every listener reads: the latest published view and families.
struct Shared {
    latest: Mutex<Published>,
    frames: broadcast::Sender<Arc<str>>,
    /// Frames viewers missed because they fell behind.
    dropped: AtomicU64,
    /// The run's report directory once written (`/report.html`, `/summary.json`).
    report_dir: Mutex<Option<PathBuf>>,
    /// Where the run is, as the caller says (`running`, `auditing`, `done`).
    phase: Mutex<String>,
}

#[derive(Clone, Default)]
struct Published {
    view: Arc<View>,
    families: Arc<Vec<Family>>,
}

impl Shared {
    fn latest(&self) -> Published {
        self.latest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn publish(&self, mut view: View, families: Vec<Family>) {
        view.dropped_frames = self.dropped.load(Ordering::Relaxed);
        // Each event carries the last few samples; a viewer that just connected gets the
        // whole view first.
        let mut tail = view.clone();
        let keep = tail.series.len().saturating_sub(TAIL_SAMPLES);
        tail.series.drain(..keep);
        if let Ok(json) = serde_json::to_string(&tail) {
            // No viewer yet is no error.
            let _ = self.frames.send(Arc::from(json));
        }
        *self.latest.lock().unwrap_or_else(|p| p.into_inner()) = Published {
            view: Arc::new(view),
            families: Arc::new(families),
        };
    }
}

/// The running observers (shared by the caller and the task that hands them the run).
pub struct Observers {
    shared: Arc<Shared>,
    meta: Meta,
    servers: Mutex<Vec<JoinHandle<()>>>,
    stop: watch::Sender<bool>,
    publisher: Mutex<Option<JoinHandle<()>>>,
    pusher: Mutex<Option<push::Pusher>>,
    run: Mutex<Option<Arc<LiveRun>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Observers {
    /// Bind every listener now (a taken port is said before the run starts) and serve a
    /// view of nothing until `attach`.
    pub async fn start(opts: &Options, meta: Meta) -> Result<Observers, ObserveError> {
        let (frames, _) = broadcast::channel(VIEWER_BUFFER);
        let view = View {
            scenario: meta.scenario.clone(),
            seed: meta.seed,
            run_id: meta.run_id.clone(),
            target: meta.target.clone(),
            phase: "starting".into(),
            ..View::default()
        };
        let shared = Arc::new(Shared {
            latest: Mutex::new(Published {
                families: Arc::new(prometheus::families(
                    &view,
                    &crate::metrics::Snapshot::empty(),
                )),
                view: Arc::new(view),
            }),
            frames,
            dropped: AtomicU64::new(0),
            report_dir: Mutex::new(None),
            phase: Mutex::new("running".into()),
        });
        let (stop, stopped) = watch::channel(false);
        let mut servers = Vec::new();
        for (what, addr, router) in [
            (
                "--metrics-listen",
                opts.metrics_listen,
                web::metrics_router(shared.clone()),
            ),
            ("--web", opts.web, web::page_router(shared.clone())),
        ] {
            let Some(addr) = addr else { continue };
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| ObserveError::Bind { what, addr, source })?;
            let mut stopped = stopped.clone();
            servers.push(tokio::spawn(async move {
                let shutdown = async move {
                    while !*stopped.borrow_and_update() {
                        if stopped.changed().await.is_err() {
                            break;
                        }
                    }
                };
                if let Err(e) = axum::serve(listener, router)
                    .with_graceful_shutdown(shutdown)
                    .await
                {
                    tracing::warn!("{what} {addr}: {e}");
                }
            }));
        }
        let pusher = opts
            .metrics_push
            .clone()
            .map(|target| push::Pusher::start(target, opts.push_interval, shared.clone(), &meta));
        Ok(Observers {
            shared,
            meta,
            servers: Mutex::new(servers),
            stop,
            publisher: Mutex::new(None),
            pusher: Mutex::new(pusher),
            run: Mutex::new(None),
        })
    }

    /// The swarm is running: publish its view once a second.
    pub fn attach(&self, run: Arc<LiveRun>) {
        let (shared, meta, r) = (self.shared.clone(), self.meta.clone(), run.clone());
        *lock(&self.run) = Some(run);
        *lock(&self.publisher) = Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                publish(&shared, &meta, &r, None);
            }
        }));
    }

    /// Say where the run is (`auditing`).
    pub fn phase(&self, phase: &str) {
        *lock(&self.shared.phase) = phase.to_string();
        if let Some(run) = lock(&self.run).clone() {
            publish(&self.shared, &self.meta, &run, None);
        }
    }

    /// The run is audited: publish the last view with its verdict, serve its report, push
    /// once more.
    pub async fn finish(&self, verdict: Verdict, report_dir: PathBuf) {
        if let Some(p) = lock(&self.publisher).take() {
            p.abort();
        }
        *lock(&self.shared.report_dir) = Some(report_dir);
        *lock(&self.shared.phase) = "done".into();
        if let Some(run) = lock(&self.run).clone() {
            publish(&self.shared, &self.meta, &run, Some(verdict));
        }
        let pusher = lock(&self.pusher).take();
        if let Some(pusher) = &pusher {
            pusher.push_now().await;
        }
        *lock(&self.pusher) = pusher;
    }

    /// Frames viewers missed because they fell behind.
    pub fn dropped_frames(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Stop every listener (after the linger the caller chose).
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        if let Some(p) = lock(&self.publisher).take() {
            p.abort();
        }
        let pusher = lock(&self.pusher).take();
        if let Some(pusher) = pusher {
            pusher.stop().await;
        }
        let servers: Vec<_> = lock(&self.servers).drain(..).collect();
        for s in servers {
            let _ = tokio::time::timeout(Duration::from_secs(2), s).await;
        }
    }
}

/// Build and publish one view (and the families from the same snapshot).
fn publish(shared: &Shared, meta: &Meta, run: &LiveRun, verdict: Option<Verdict>) {
    let snap = run.world.metrics.snapshot();
    let mut view = run.view(meta, &snap);
    let phase = shared
        .phase
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    // The view knows when the resolution runs; the caller knows the rest.
    if phase != "running" {
        view.phase = phase;
    }
    view.verdict = verdict;
    let families = prometheus::families(&view, &snap);
    shared.publish(view, families);
}
