//! End-of-run resolution: every key an agent left indeterminate is replayed through a
//! healthy region until it gets a definite answer, a bounded number of times.
//!
//! The keys come from `agent::Pending`, where each agent parked the ones it could not settle.
//! Invariants: resolution runs after every fault has healed, at most `concurrency` replays
//! at once; a key still without an answer after `MAX_REPLAYS` is counted `unresolved`,
//! never guessed.

use std::sync::Arc;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use serde::Serialize;
use tokio::sync::Semaphore;

use super::agent::{Attempt, World};
use crate::history::{Kind, Op};

/// Replays of one key before it is counted unresolved.
const MAX_REPLAYS: u32 = 50;

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

/// Replay every indeterminate key through a healthy region until it gets a definite
/// answer, a bounded number of times.
pub async fn resolve(world: &Arc<World>, concurrency: usize) -> Resolution {
    let pending = world.pending.take();
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
                tokio::time::sleep(crate::sut::kernel::backoff(attempt, 5, 200, &mut rng)).await;
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
