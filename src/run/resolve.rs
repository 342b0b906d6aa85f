//! End-of-run resolution: every key an agent left indeterminate is replayed through a
//! healthy region until it gets a definite answer, a bounded number of times.
//!
//! The keys come from `agent::Pending`, where each agent parked the ones it could not settle.
//! Invariants: resolution runs after every fault has healed, at most `concurrency` replays
//! at once, within the scenario's `retry.resolve_budget_ms`; it stops early when the first
//! `EARLY_PROBES` replays got no definite answer at all (the target answers nothing
//! usable); a key still without an answer is counted `unresolved`, never guessed, and the
//! reason is kept. `resolving::Progress` shows the phase on the progress line and the dashboard.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::SmallRng;
use serde::Serialize;
use tokio::sync::Semaphore;

use super::agent::{Attempt, World};
use crate::history::{Code, Kind, Op};

/// Replays of one key before it is counted unresolved.
const MAX_REPLAYS: u32 = 50;

/// Replays that must all fail to give a definite answer before the resolution concludes
/// the target answers nothing usable and stops.
const EARLY_PROBES: u64 = 64;

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
    /// Why the resolution stopped before every key was tried to the end (`None`: it did not).
    #[serde(default)]
    pub stopped: Option<String>,
    /// Wall time it took.
    #[serde(default)]
    pub elapsed_ms: u64,
    /// Keys never replayed, because they were too near the end of the contract's
    /// `key_retention_s` (see `World::kept`): replayed after it, a key is a new purchase.
    /// Counted among `unresolved` too.
    #[serde(default)]
    pub past_retention: u64,
}

/// Replay every indeterminate key through a healthy region until it gets a definite
/// answer, a bounded number of times, within `budget`.
pub async fn resolve(
    world: &Arc<World>,
    concurrency: usize,
    budget: Duration,
    abort: &AtomicBool,
) -> Resolution {
    let (pending, past): (Vec<_>, Vec<_>) = world
        .pending
        .take()
        .into_iter()
        .partition(|(_, started_ms)| world.kept(*started_ms));
    let started = Instant::now();
    let deadline = started + budget;
    let progress = &world.resolving;
    progress.deadline_ms.store(
        u64::from(world.metrics.now_ms()).saturating_add(budget.as_millis() as u64),
        Ordering::Relaxed,
    );
    progress.keys.store(pending.len() as u64, Ordering::Relaxed);
    let mut out = Resolution {
        pending: (pending.len() + past.len()) as u64,
        past_retention: past.len() as u64,
        unresolved: past.len() as u64,
        ..Resolution::default()
    };
    if !past.is_empty() {
        tracing::warn!(
            "{} open keys not replayed: too near the end of the contract's key_retention_s (the server may have let them go)",
            past.len()
        );
    }
    // Replays sent, and replays that got a definite answer: all of the first EARLY_PROBES
    // without one means nothing usable comes back.
    let tried = Arc::new(AtomicU64::new(0));
    let usable = Arc::new(AtomicU64::new(0));
    let give_up = Arc::new(AtomicBool::new(false));
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    let past_later = Arc::new(AtomicU64::new(0));
    for (first, started_ms) in pending {
        if abort.load(Ordering::Acquire) {
            give_up.store(true, Ordering::Relaxed);
            break;
        }
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let (w, tried, usable, give_up, past_later) = (
            world.clone(),
            tried.clone(),
            usable.clone(),
            give_up.clone(),
            past_later.clone(),
        );
        tasks.spawn(async move {
            let _permit = permit;
            let mut rng = SmallRng::seed_from_u64(u64::from(first.plan.id) ^ 0x5EED);
            let mut a = Attempt {
                op: Op::Resolve,
                seq: u8::MAX,
                ..first
            };
            let seen = super::agent::Seen::default();
            for attempt in 1..=MAX_REPLAYS {
                if give_up.load(Ordering::Relaxed) || Instant::now() >= deadline {
                    return None;
                }
                // Checked before every replay: the key may have aged past the server's
                // retention while it waited its turn or backed off. Counted as left only
                // when it was never replayed.
                if !w.kept(started_ms) {
                    if attempt == 1 {
                        past_later.fetch_add(1, Ordering::Relaxed);
                    }
                    return None;
                }
                let (code, replayed) = w.send(a, &seen).await;
                let n = tried.fetch_add(1, Ordering::Relaxed) + 1;
                if !code.is_transient() && code != Code::Violation {
                    usable.fetch_add(1, Ordering::Relaxed);
                    return Some((code, replayed));
                }
                if n >= EARLY_PROBES && usable.load(Ordering::Relaxed) == 0 {
                    give_up.store(true, Ordering::Relaxed);
                    return None;
                }
                // An answer that breaks the contract says nothing a replay would change.
                if code == Code::Violation {
                    return None;
                }
                a.region = w.failover(a.region);
                tokio::time::sleep(crate::sut::kernel::backoff(attempt, 5, 200, &mut rng)).await;
            }
            None
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let result = joined.ok().flatten();
        match result {
            Some((code, true)) if code.kind() == Kind::Ok => out.recovered += 1,
            Some((code, false)) if code.kind() == Kind::Ok => out.fresh += 1,
            Some(_) => out.refused += 1,
            None => out.unresolved += 1,
        }
        match result {
            Some(_) => progress.settled.fetch_add(1, Ordering::Relaxed),
            None => progress.unresolved.fetch_add(1, Ordering::Relaxed),
        };
    }
    out.past_retention += past_later.load(Ordering::Relaxed);
    out.elapsed_ms = started.elapsed().as_millis() as u64;
    out.stopped = if give_up.load(Ordering::Relaxed) {
        Some(format!(
            "stopped early: the first {EARLY_PROBES} replays got no definite answer (the target answers nothing usable)"
        ))
    } else if out.unresolved > 0 && Instant::now() >= deadline {
        Some(format!(
            "stopped at its budget (retry.resolve_budget_ms = {})",
            budget.as_millis()
        ))
    } else {
        None
    };
    if let Some(why) = &out.stopped {
        tracing::warn!("resolution {why}");
    }
    out
}
