//! Side tasks of a run: the once-a-second sampler (and the progress line) and the live
//! audit poller (the cheap state checks on their own read connection).
//!
//! Invariants: both only read aggregates (a metrics sample, small tables); neither holds a
//! lock an agent waits on for longer than a merge of the metrics shards.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::agent::World;
use super::faults::Timeline;
use crate::addr::DbUrl;
use crate::audit::{LiveCounts, Source};
use crate::metrics::Sample;

/// Poll the live audit subset once a second on its own read connection.
pub async fn poll_live(url: DbUrl, out: Arc<std::sync::Mutex<LiveCounts>>, stop: Arc<AtomicBool>) {
    let source = match Source::open(&url).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("live audit disabled: {e}");
            return;
        }
    };
    while !stop.load(Ordering::Acquire) {
        let started = std::time::Instant::now();
        let polled = crate::audit::live(&source).await;
        // A poll reads commit-sized tables, so it lengthens as the run goes: the next waits
        // at least a second and nine times as long as this one took, so the poller reads at
        // most a tenth of the time. (An SQLite reader that never lets go starves the WAL's
        // checkpoints: the WAL, and its index mapped into every connection, grow without end.)
        let pause = Duration::from_secs(1).max(started.elapsed() * LIVE_IDLE_RATIO);
        {
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
        tokio::time::sleep(pause).await;
    }
}

/// The live poller waits this many times as long as its last poll took (at least a second).
const LIVE_IDLE_RATIO: u32 = 9;

/// Close one second of the metrics, with what the regions say of themselves now: their
/// states and their requests in flight.
pub fn sample(world: &World) -> Sample {
    let states = world.regions.iter().map(|r| r.state()).collect();
    let in_flight = world.regions.iter().map(|r| r.in_flight()).sum();
    world.metrics.sample(states, in_flight)
}

fn progress_line(
    world: &World,
    timeline: &Timeline,
    s: &Sample,
    total: u64,
    live: &LiveCounts,
) -> String {
    let regions: Vec<String> = world
        .regions
        .iter()
        .map(|r| format!("{} {}", r.name, r.state()))
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
    ) + &failover_note(world, timeline)
        + &contract_note(world)
}

/// The cluster's leader and what the last fault did to each region, once there is
/// something to say: ` · leader n2 (was n3, elected at 14.1 s) · primary back after 4.1 s`.
fn failover_note(world: &World, timeline: &Timeline) -> String {
    let mut out = String::new();
    let latest = timeline.latest(&world.metrics);
    if let Some(cluster) = timeline.cluster() {
        out.push_str(&format!(
            " · leader {}",
            cluster.leader().as_deref().unwrap_or("none")
        ));
        if let Some(f) = &latest
            && let (Some(before), Some(at)) = (&f.leader_before, f.leader_elected_ms)
        {
            out.push_str(&format!(
                " (was {before}, elected at {:.1} s)",
                at as f64 / 1000.0
            ));
        }
    }
    let now_ms = u64::from(world.metrics.now_ms());
    for brief in latest
        .iter()
        .flat_map(|f| f.impact.iter())
        .filter_map(|i| i.status(now_ms).map(|st| format!("{} {st}", i.region)))
    {
        out.push_str(" · ");
        out.push_str(&brief);
    }
    out
}

/// Said on every progress line once an answer has broken the contract: how many, and the
/// first in words, so a run against a server it cannot read says so from its first second.
fn contract_note(world: &World) -> String {
    let n = world.metrics.violations.load(Ordering::Relaxed);
    if n == 0 {
        return String::new();
    }
    let first = world
        .metrics
        .violation_examples()
        .into_iter()
        .next()
        .unwrap_or_default();
    format!(" · {n} answers violate the contract (first: {first})")
}

/// Sample the metrics once a second until `stop`, printing a progress line when `progress`.
pub async fn sample_every_second(
    w: Arc<World>,
    timeline: Arc<Timeline>,
    stop: Arc<AtomicBool>,
    progress: bool,
    live: Arc<std::sync::Mutex<LiveCounts>>,
    total: u64,
) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.tick().await;
    while !stop.load(Ordering::Acquire) {
        every.tick().await;
        // What the agents recorded this second reaches the disk: a killed run keeps it.
        w.metrics.flush_history();
        let sample = sample(&w);
        if progress {
            let counts = *live.lock().unwrap_or_else(|p| p.into_inner());
            let resolving = w.resolving.line(u64::from(w.metrics.now_ms()));
            match resolving {
                // Every agent is done: the phase that is running now, in words.
                Some(line) => eprintln!("[{:>4}s] {line}", sample.second),
                None => eprintln!("{}", progress_line(&w, &timeline, &sample, total, &counts)),
            }
        }
    }
}
