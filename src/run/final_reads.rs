//! Final reads: after the end-of-run resolution, the keys whose last answer proves least
//! are read once more (Jepsen's final read), so bugs only a later look can see are seen:
//! a decline that was a commit, a failure that committed, a commit that was forgotten.
//!
//! Agents offer each key when its purchase ends, with the last answer they got, to a
//! bounded sample (`final_candidates`). `read` then re-reads up to `audit.final_reads.max_keys` of them
//! within `budget_ms`: the contract's side-effect-free lookup by key when it has one, else
//! a replay of the key's first payload. Every read is recorded in the history as
//! `Op::FinalRead`, so an audit of the files sees them. Invariants: memory is bounded by
//! the caps whatever the run's size; a read that gets no usable answer is retried a few
//! times, then left (counted), never guessed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use super::agent::{Attempt, Seen, World};
use super::final_candidates::{Class, MAX_COMMITS, Offered};
use crate::history::{Kind, Op};
use crate::scenario::FinalReadSpec;

/// Reads of one key before it is left unread.
const MAX_TRIES: u32 = 3;

/// How the final reads went (`summary.json`'s `final_reads`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct FinalReads {
    /// Keys offered, by the last answer their client got.
    pub offered_open: u64,
    pub offered_declined: u64,
    pub offered_committed: u64,
    /// Keys read, and of those the reads that got a definite answer.
    pub read: u64,
    pub answered: u64,
    /// Why it stopped before reading every key it chose (`None`: it read them all).
    pub stopped: Option<String>,
    pub elapsed_ms: u64,
    /// `lookup` (the contract's lookup by key, or the kernel's) or `replay`, and why a
    /// lookup was not used.
    #[serde(default)]
    pub method: String,
    /// Sampled keys not read because the server keeps a key no longer than the
    /// contract's `key_retention_s`: read after that, a key is a new purchase (or absent).
    #[serde(default)]
    pub past_retention: u64,
}

impl FinalReads {
    /// `final reads: 812 keys read again, a sample of the 99412 whose purchase ended
    /// (their clients were told: committed 100 · declined 99300 · nothing definite 12); 812
    /// answered in 0.4 s`, and why it stopped, if it did.
    pub fn line(&self) -> String {
        let offered = self.offered_open + self.offered_declined + self.offered_committed;
        let mut line = format!(
            "final reads: {} keys read again, {} the {offered} whose purchase ended (their clients were told: committed {} · declined {} · nothing definite {}); {} answered in {:.1} s",
            self.read,
            if self.read < offered {
                "a sample of"
            } else {
                "all of"
            },
            self.offered_committed,
            self.offered_declined,
            self.offered_open,
            self.answered,
            self.elapsed_ms as f64 / 1000.0
        );
        if !self.method.is_empty() {
            line.push_str(&format!(" · by {}", self.method));
        }
        if self.past_retention > 0 {
            line.push_str(&format!(
                " · {} not read: too near the end of the contract's key_retention_s",
                self.past_retention
            ));
        }
        if let Some(why) = &self.stopped {
            line.push_str(&format!(" · {why}"));
        }
        line
    }
}

/// Look up (unrecorded) a few keys whose clients were told an answer: a lookup that finds
/// none of them is not the contract's lookup (a server without the route answers 404 for
/// every key), and final reads replay instead. A lost write must never be a missing route.
async fn choose_method(world: &World, keys: &[(Offered, Class, u32)]) -> String {
    let http: Vec<_> = world.regions.iter().filter_map(|r| r.http()).collect();
    if http.is_empty() {
        return "lookup (the kernel's, by key)".into();
    }
    if !http.iter().any(|g| g.looks_up()) {
        return "replay (the contract has no lookup by key)".into();
    }
    let known: Vec<&Offered> = keys
        .iter()
        .rev()
        .filter(|(_, c, _)| *c != Class::Open)
        .map(|(k, _, _)| k)
        .take(3)
        .collect();
    let mut found = false;
    for (agent, purchase, variant) in &known {
        let plan = world.plan(*agent);
        let req = world.request(&plan, plan.mandate, plan.item, world.quantity);
        let key = crate::history::key(&world.key_prefix, *agent, *purchase, *variant);
        let region = &world.regions[usize::from(plan.home_region) % world.regions.len()];
        let read = tokio::time::timeout(
            Duration::from_millis(world.retry.timeout_ms),
            region.final_read(&req, &key),
        )
        .await;
        if matches!(read, Ok(crate::gateway::Reply::Answer(_))) {
            found = true;
            break;
        }
    }
    if found {
        return "lookup (the contract's, by key)".into();
    }
    if known.is_empty() {
        // An unchecked lookup could be a missing route answering 404 for every key, and
        // "absent" settles a key for the audit: replay rather than trust it.
        return "replay: no key read has a known answer to check the contract's lookup by".into();
    }
    for g in &http {
        g.stop_lookups();
    }
    format!(
        "replay: the contract's lookup by key found none of {} keys whose answers clients were told",
        known.len()
    )
}

/// Re-read the sampled keys, `concurrency` at a time, within the spec's budget.
pub async fn read(
    world: &Arc<World>,
    concurrency: usize,
    spec: &FinalReadSpec,
    abort: &std::sync::atomic::AtomicBool,
) -> FinalReads {
    let started = Instant::now();
    let (keys, offered, past_retention) =
        world.final_reads.take(|started_ms| world.kept(started_ms));
    let mut out = FinalReads {
        offered_open: offered[0],
        offered_declined: offered[1],
        offered_committed: offered[2],
        past_retention,
        ..FinalReads::default()
    };
    let total_offered: u64 = offered.iter().sum();
    if spec.max_keys == 0 {
        out.stopped = Some("off (audit.final_reads.max_keys = 0)".into());
        return out;
    }
    let deadline = started + Duration::from_millis(spec.budget_ms);
    out.method = choose_method(world, &keys).await;
    let answered = Arc::new(AtomicU64::new(0));
    let read = Arc::new(AtomicU64::new(0));
    let mut tasks = Bounded::new(concurrency);
    let mut budget_hit = false;
    let mut aborted = false;
    let past_later = Arc::new(AtomicU64::new(0));
    for &((agent, purchase, variant), _class, started_ms) in &keys {
        if abort.load(Ordering::Acquire) {
            aborted = true;
            break;
        }
        if Instant::now() >= deadline {
            budget_hit = true;
            break;
        }
        let plan = world.plan(agent);
        let first = Attempt {
            plan,
            purchase,
            variant,
            region: plan.home_region,
            quantity: world.quantity,
            op: Op::FinalRead,
            seq: u8::MAX,
        };
        let (w, answered, read, past_later) = (
            world.clone(),
            answered.clone(),
            read.clone(),
            past_later.clone(),
        );
        tasks
            .spawn(async move {
                let seen = Seen::default();
                let mut a = first;
                let mut counted = false;
                for _ in 0..MAX_TRIES {
                    if Instant::now() >= deadline {
                        return;
                    }
                    // Checked before every read: the key may have aged past the server's
                    // retention while it waited its turn.
                    if !w.kept(started_ms) {
                        if !counted {
                            past_later.fetch_add(1, Ordering::Relaxed);
                        }
                        return;
                    }
                    if !counted {
                        read.fetch_add(1, Ordering::Relaxed);
                        counted = true;
                    }
                    let (code, _) = w.send(a, &seen).await;
                    if !code.is_transient() || code.kind() == Kind::Ok {
                        answered.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    a.region = w.failover(a.region);
                }
            })
            .await;
    }
    tasks.join_all().await;
    out.read = read.load(Ordering::Relaxed);
    let past_later = past_later.load(Ordering::Relaxed);
    out.past_retention += past_later;
    out.answered = answered.load(Ordering::Relaxed);
    out.elapsed_ms = started.elapsed().as_millis() as u64;
    let unread = out.read + past_later < keys.len() as u64;
    out.stopped = if aborted {
        Some("stopped: the run was aborted (a second Ctrl-C)".into())
    } else if budget_hit || (unread && Instant::now() >= deadline) {
        Some(format!(
            "stopped at its budget (audit.final_reads.budget_ms = {})",
            spec.budget_ms
        ))
    } else if total_offered > keys.len() as u64 + past_retention {
        Some(format!(
            "read a sample: {} of {total_offered} keys offered (audit.final_reads.max_keys = {}; at most {MAX_COMMITS} committed)",
            keys.len(),
            spec.max_keys
        ))
    } else {
        None
    };
    out
}

/// Tasks run at most `concurrency` at a time, each finished one let go as the next is
/// started: a `JoinSet` keeps every task until it is joined, and 100,000 final reads held
/// 1.2 GB until the end before they were reaped as they went.
struct Bounded {
    permits: Arc<Semaphore>,
    tasks: tokio::task::JoinSet<()>,
}

impl Bounded {
    fn new(concurrency: usize) -> Bounded {
        Bounded {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            tasks: tokio::task::JoinSet::new(),
        }
    }

    /// Wait for a free slot, let go of the finished tasks, start `task`.
    async fn spawn(&mut self, task: impl Future<Output = ()> + Send + 'static) {
        // The semaphore is never closed.
        let Ok(permit) = self.permits.clone().acquire_owned().await else {
            return;
        };
        while self.tasks.try_join_next().is_some() {}
        self.tasks.spawn(async move {
            let _permit = permit;
            task.await
        });
    }

    /// Tasks held: running, or finished and not yet let go.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.tasks.len()
    }

    async fn join_all(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn finished_reads_are_let_go_as_new_ones_start() {
        let mut tasks = Bounded::new(4);
        let done = Arc::new(AtomicU64::new(0));
        let mut most = 0;
        for _ in 0..10_000 {
            let done = done.clone();
            tasks
                .spawn(async move {
                    tokio::task::yield_now().await;
                    done.fetch_add(1, Ordering::Relaxed);
                })
                .await;
            most = most.max(tasks.held());
        }
        tasks.join_all().await;
        assert_eq!(done.load(Ordering::Relaxed), 10_000);
        // Four running, and at most the four just finished before they are let go.
        assert!(most <= 8, "{most} tasks held at once");
    }
}
