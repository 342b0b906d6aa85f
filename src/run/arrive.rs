//! Releasing agents: `in_flight` long-lived workers, each taking the next agent when free;
//! over HTTP, split over one single-threaded lane per core.
//!
//! Invariants: at most `in_flight` agents are alive at once (a million-agent burst never
//! holds a million futures); an agent that cannot start on time keeps its intended start
//! for the latency it reports; a lane's agents, timers and connections stay on its thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::agent::{self, World};
use super::schedule::Schedule;
use super::{Control, RunError};

/// Lanes for the HTTP generator: one per core, never more than the agents in flight.
fn lane_count(in_flight: usize) -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, crate::lane::MAX_LANES)
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
    // The workers end by themselves; an abort (a second Ctrl-C) cancels them, requests in
    // flight included, checked by this one task rather than on every agent's path.
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            joined = workers.join_next() => {
                if joined.is_none() {
                    break;
                }
            }
            _ = tick.tick() => {
                if control.abort.load(Ordering::Acquire) {
                    workers.abort_all();
                    while workers.join_next().await.is_some() {}
                    return true;
                }
            }
        }
    }
    stopped.load(Ordering::Acquire)
}

/// Run this shard's agents (`shard` = (i, n) of `count` agents in all) and wait for the
/// last. `lanes`: split the workers over one single-threaded runtime per core (HTTP);
/// otherwise run them on the caller's runtime. True when stopped early.
pub async fn release(
    world: Arc<World>,
    shard: (u32, u32),
    count: u64,
    in_flight: usize,
    schedule: Schedule,
    control: Arc<Control>,
    lanes: bool,
) -> Result<bool, RunError> {
    let (shard_i, shard_n) = shard;
    // This shard's agents are shard_i, shard_i + shard_n, …; lane l of n takes every n-th.
    let stride = move |lane: u64, lanes: u64| Stride {
        first: u64::from(shard_i) + lane * u64::from(shard_n),
        step: lanes * u64::from(shard_n),
        count,
    };
    if !lanes {
        return Ok(arrive(world, stride(0, 1), in_flight, schedule, control).await);
    }
    // Over HTTP, each lane is a single-threaded runtime on its own thread with its own
    // agents, connections and timers: a request's hand-offs (agent, connection task,
    // socket) never cross threads, the way oha keeps its own load.
    let lanes = lane_count(in_flight);
    let mut done = Vec::with_capacity(lanes);
    for lane in 0..lanes {
        let (w, sched, control) = (world.clone(), schedule.clone(), control.clone());
        let share = in_flight / lanes + usize::from(lane < in_flight % lanes);
        let (tell, told) = tokio::sync::oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| RunError::Io {
                path: "runtime".into(),
                source: e,
            })?;
        std::thread::Builder::new()
            .name(format!("swarm-lane-{lane}"))
            .spawn(move || {
                crate::lane::set_lane(lane);
                let mine = stride(lane as u64, lanes as u64);
                let stopped = runtime.block_on(arrive(w, mine, share, sched, control));
                let _ = tell.send(stopped);
            })
            .map_err(|e| RunError::Io {
                path: "thread".into(),
                source: e,
            })?;
        done.push(told);
    }
    let mut stopped = false;
    for lane in done {
        stopped |= lane.await.unwrap_or(true);
    }
    Ok(stopped)
}
