//! Agents: small state machines that buy, retry and misbehave the way real clients do.
//!
//! An agent's persona, home region, mandate, item and keys derive from (seed, agent id,
//! purchase) alone, so a seed replays the same swarm. It "persists" its key before sending
//! and retries only what is transient (timeouts, resets, refused connections, 503) with
//! capped, jittered exponential backoff, moving to the next healthy region after a
//! connection-level failure. Invariants: an agent's state is a few hundred bytes; it
//! records every request it makes, and takes no global lock doing so.
//!
//! It stays one file: `World` (what every agent shares) and the purchase loop that uses it
//! are one state machine, the personas' branches beside the loop they change (about 580
//! lines of code).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

use crate::gateway::{Region, Reply};
use crate::history::{self, Code, Op, Persona, Record};
use crate::metrics::Metrics;
use crate::scenario::{Mix, RetrySpec};
use crate::sut::kernel::{Currency, PurchaseRequest};

/// Everything agents share: read-only after the run starts, except the recorder.
pub struct World {
    pub regions: Vec<Region>,
    pub metrics: Metrics,
    pub seed: u64,
    pub key_prefix: String,
    pub merchant_id: Uuid,
    pub items: Vec<Uuid>,
    pub mandates: Vec<Uuid>,
    pub price_minor: i64,
    pub currency: Currency,
    pub quantity: i64,
    pub purchases: u32,
    pub retry: RetrySpec,
    /// Cumulative persona weights, in `Persona::ALL` order.
    pub mix_cdf: [f64; 5],
    /// Cumulative region weights.
    pub region_cdf: Vec<f64>,
    /// Keys left indeterminate, for the end-of-run resolution.
    pub pending: Pending,
    /// The end-of-run resolution as it goes (for the progress line and the dashboard).
    pub resolving: super::resolving::Progress,
    /// Keys offered for a final read when their purchase ends.
    pub final_reads: super::final_candidates::Candidates,
    /// How long the server keeps a key (the contract's `key_retention_s`; `None`: for
    /// ever, or a direct target): a key too near its end is never sent again (`kept`).
    pub key_retention_ms: Option<u64>,
    /// Added to every key's age: 0 in a run; in `swarm resolve`, how long ago the resumed
    /// run began (its keys are at most that old, and are taken to be).
    pub key_age_offset_ms: u64,
}

/// Who an agent is; derived, never stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AgentPlan {
    pub id: u32,
    pub persona: Persona,
    pub home_region: u8,
    pub mandate: u32,
    pub item: u16,
}

/// The agent id a request carries: `agent-N` (the history keeps the number; nothing reads
/// the name back).
fn agent_name(agent: u32) -> String {
    let mut b = itoa::Buffer::new();
    let digits = b.format(agent);
    let mut name = String::with_capacity(6 + digits.len());
    name.push_str("agent-");
    name.push_str(digits);
    name
}

/// Cumulative sums of `weights`, normalised so the last is exactly 1.
pub fn cdf(weights: &[f64]) -> Vec<f64> {
    let total: f64 = weights.iter().sum();
    let mut acc = 0.0;
    let mut out: Vec<f64> = weights
        .iter()
        .map(|w| {
            acc += w / total;
            acc
        })
        .collect();
    if let Some(last) = out.last_mut() {
        *last = 1.0;
    }
    out
}

fn pick(cdf: &[f64], x: f64) -> usize {
    cdf.iter()
        .position(|c| x < *c)
        .unwrap_or(cdf.len().saturating_sub(1))
}

pub fn mix_cdf(mix: &Mix) -> [f64; 5] {
    let v = cdf(&mix.weights());
    [v[0], v[1], v[2], v[3], v[4]]
}

/// The agent's own generator: a function of (seed, agent, stream) only.
fn agent_rng(seed: u64, agent: u32, stream: u64) -> SmallRng {
    SmallRng::seed_from_u64(
        seed ^ (u64::from(agent).wrapping_mul(0x9E37_79B9_7F4A_7C15))
            ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03),
    )
}

impl World {
    /// The agents' world for scenario `s` against `regions`, buying from `shop` under keys
    /// `{key_prefix}-…`, recording into `metrics`.
    pub fn new(
        s: &crate::scenario::Scenario,
        regions: Vec<Region>,
        metrics: Metrics,
        seed: u64,
        key_prefix: String,
        shop: super::shop::Shop,
    ) -> Result<World, crate::sut::kernel::KernelError> {
        let region_weights: Vec<f64> = s.regions.iter().map(|r| r.weight).collect();
        Ok(World {
            metrics,
            regions,
            seed,
            key_prefix,
            merchant_id: shop.merchant_id,
            items: shop.items,
            mandates: shop.mandates,
            price_minor: shop.price_minor,
            currency: Currency::parse(&shop.currency)?,
            quantity: s.agents.quantity,
            purchases: s.agents.purchases,
            retry: s.retry.clone(),
            mix_cdf: mix_cdf(&s.mix),
            region_cdf: cdf(&region_weights),
            pending: Pending::default(),
            resolving: super::resolving::Progress::default(),
            final_reads: super::final_candidates::Candidates::new(&s.audit.final_reads, seed),
            key_retention_ms: match s.target.kind {
                crate::scenario::TargetKind::Http => {
                    s.contract.key_retention_s.map(|n| u64::from(n) * 1000)
                }
                crate::scenario::TargetKind::Direct => None,
            },
            key_age_offset_ms: 0,
        })
    }

    /// Whether a key whose purchase began at `started_ms` (on the run's clock) is still
    /// kept by the server, with time to spare for one more request: a key sent again after
    /// its retention would be executed anew, a second purchase swarm itself caused.
    pub fn kept(&self, started_ms: u32) -> bool {
        let age_ms = u64::from(self.metrics.now_ms().saturating_sub(started_ms))
            .saturating_add(self.key_age_offset_ms);
        still_kept(self.key_retention_ms, age_ms, self.retry.timeout_ms)
    }

    /// Who agent `id` is.
    pub fn plan(&self, id: u32) -> AgentPlan {
        let mut rng = agent_rng(self.seed, id, 0);
        let persona = Persona::ALL[pick(&self.mix_cdf, rng.random())];
        let home_region = pick(&self.region_cdf, rng.random()) as u8;
        AgentPlan {
            id,
            persona,
            home_region,
            mandate: id % self.mandates.len().max(1) as u32,
            item: (id % self.items.len().max(1) as u32) as u16,
        }
    }

    /// The request for (plan, quantity); the amount is always quantity x unit price.
    pub fn request(
        &self,
        plan: &AgentPlan,
        mandate: u32,
        item: u16,
        quantity: i64,
    ) -> PurchaseRequest {
        PurchaseRequest {
            merchant_id: self.merchant_id,
            mandate_id: self.mandates[mandate as usize % self.mandates.len()],
            item_id: self.items[usize::from(item) % self.items.len()],
            agent_id: agent_name(plan.id),
            quantity,
            amount_minor: quantity * self.price_minor,
            currency: self.currency,
        }
    }

    /// The next region to try after `from` failed: the next one that is up, else the next.
    pub fn failover(&self, from: u8) -> u8 {
        let n = self.regions.len();
        for step in 1..=n {
            let i = (usize::from(from) + step) % n;
            if self.regions[i].is_up() {
                return i as u8;
            }
        }
        ((usize::from(from) + 1) % n) as u8
    }

    fn backoff(&self, attempt: u32, rng: &mut SmallRng) -> Duration {
        let [base, cap] = self.retry.backoff_ms;
        crate::sut::kernel::backoff(attempt, base, cap, rng)
    }
}

/// What one request ended as, ready for the history.
pub struct Sent {
    pub code: Code,
    pub status: u16,
    pub attempts: u16,
    pub replayed: bool,
    pub response_hash: u64,
    pub semantic_hash: u64,
    /// The execution id's hash a business answer named, 0 otherwise.
    pub execution: u64,
    /// The `Violation` of a `Code::Violation`, 0 otherwise.
    pub detail: u8,
}

impl Sent {
    fn bare(code: Code, status: u16, attempts: u32) -> Sent {
        Sent {
            code,
            status,
            attempts: attempts.min(u32::from(u16::MAX)) as u16,
            replayed: false,
            response_hash: 0,
            semantic_hash: 0,
            execution: 0,
            detail: 0,
        }
    }
}

/// The executions one logical purchase's answers named so far, so an execution's
/// `attempts` are counted once however many answers repeat it (a double submit's twin, a
/// replay after a lost answer). Two slots: a purchase names one execution, two when the
/// server settled it twice (which the audit reports).
#[derive(Default)]
pub struct Seen {
    slots: [AtomicU64; 2],
}

impl Seen {
    /// True the first time `execution` is seen (and for answers naming none).
    fn first_sight(&self, execution: u64) -> bool {
        if execution == 0 {
            return true;
        }
        for slot in &self.slots {
            match slot.compare_exchange(0, execution, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(held) if held == execution => return false,
                Err(_) => {}
            }
        }
        true
    }
}

/// Turn a gateway reply into the history's terms.
pub fn classify(reply: &Reply) -> Sent {
    match reply {
        Reply::Answer(a) => Sent {
            replayed: a.replayed,
            response_hash: a.answer_hash,
            semantic_hash: a.semantic_hash,
            execution: a.execution,
            ..Sent::bare(a.code, a.status, a.attempts)
        },
        Reply::Refused(r) => Sent::bare(r.code, r.status, r.attempts),
        Reply::Transport(c) => Sent::bare(*c, 0, 0),
        Reply::Violation(b) => Sent {
            detail: b.violation as u8,
            execution: b.execution,
            ..Sent::bare(Code::Violation, b.status, 0)
        },
    }
}

/// One request of one logical purchase, as the history sees it.
#[derive(Debug, Clone, Copy)]
pub struct Attempt {
    pub plan: AgentPlan,
    pub purchase: u16,
    pub variant: u8,
    pub region: u8,
    pub quantity: i64,
    pub op: Op,
    /// Requests of this purchase sent before this one.
    pub seq: u8,
}

impl World {
    /// Send one request through a region with the client's timeout, and record it;
    /// `seen`: the executions its purchase's answers named so far. Returns what the client
    /// saw and whether the answer was marked a replay.
    pub async fn send(&self, a: Attempt, seen: &Seen) -> (Code, bool) {
        let (_, sent) = self.exchange(a, seen).await;
        (sent.code, sent.replayed)
    }

    /// `send`, returning the whole reply (the conformance probe reads its ids).
    pub async fn send_reply(&self, a: Attempt, seen: &Seen) -> Reply {
        self.exchange(a, seen).await.0
    }

    async fn exchange(&self, a: Attempt, seen: &Seen) -> (Reply, Sent) {
        let req = self.request(&a.plan, a.plan.mandate, a.plan.item, a.quantity);
        let key = history::key(&self.key_prefix, a.plan.id, a.purchase, a.variant);
        let region = &self.regions[usize::from(a.region) % self.regions.len()];
        let sent_at = Instant::now();
        let invoke_ms = self.metrics.ms_at(sent_at);
        let timeout = Duration::from_millis(self.retry.timeout_ms);
        let sent = async {
            match a.op {
                Op::FinalRead => region.final_read(&req, &key).await,
                Op::Commit | Op::Resolve => region.commit(&req, &key).await,
            }
        };
        let reply = match tokio::time::timeout(timeout, sent).await {
            Ok(r) => r,
            Err(_) => Reply::Transport(Code::Timeout),
        };
        let done = Instant::now();
        let sent = classify(&reply);
        if let Reply::Violation(broken) = &reply {
            self.metrics
                .note_violation(broken.violation, broken.status, &key, &broken.excerpt);
        }
        let r = self.record_of(
            &a,
            &sent,
            invoke_ms,
            self.metrics.ms_at(done),
            req.amount_minor,
        );
        // A final read re-reads an execution its client has (nearly always) seen: its
        // attempts are not counted again.
        // (An answer that breaks the contract names its execution for the audit, but is
        // not the sighting whose attempts count.)
        let new_execution = a.op != Op::FinalRead
            && sent.code != Code::Violation
            && seen.first_sight(sent.execution);
        self.metrics.record_request(
            a.plan.id,
            &r,
            (done - sent_at).as_micros() as u64,
            new_execution,
        );
        (reply, sent)
    }

    /// Record a request that the agent itself abandoned (a client crash mid-flight).
    fn record_abandoned(&self, a: &Attempt, invoke_ms: u32, raw_us: u64) {
        let sent = Sent::bare(Code::Reset, 0, 0);
        let amount_minor = a.quantity * self.price_minor;
        let r = self.record_of(a, &sent, invoke_ms, self.metrics.now_ms(), amount_minor);
        self.metrics.record_abandoned(a.plan.id, &r, raw_us);
    }

    fn record_of(
        &self,
        a: &Attempt,
        sent: &Sent,
        invoke_ms: u32,
        complete_ms: u32,
        amount_minor: i64,
    ) -> Record {
        Record {
            agent: a.plan.id,
            mandate: a.plan.mandate,
            invoke_ms,
            complete_ms,
            amount_minor,
            response_hash: sent.response_hash,
            semantic_hash: sent.semantic_hash,
            detail: sent.detail,
            purchase: a.purchase,
            status: sent.status,
            attempts: sent.attempts,
            quantity: a.quantity.clamp(0, i64::from(u16::MAX)) as u16,
            item: a.plan.item,
            variant: a.variant,
            persona: a.plan.persona,
            region: a.region,
            op: a.op,
            code: sent.code,
            replayed: sent.replayed,
            seq: a.seq,
            execution: sent.execution,
        }
    }
}

/// Run agent `id` from its arrival to its last purchase. `intended` is when it was meant
/// to arrive (the open model's schedule), so latency can be measured from there.
pub async fn run_agent(world: &World, id: u32, intended: Instant) {
    let plan = world.plan(id);
    let mut rng = agent_rng(world.seed, id, 1);
    for purchase in 0..world.purchases.min(u32::from(u16::MAX)) as u16 {
        let start = if purchase == 0 {
            intended
        } else {
            Instant::now()
        };
        run_purchase(world, plan, purchase, &mut rng).await;
        world
            .metrics
            .record_purchase(id, start.elapsed().as_micros() as u64);
    }
}

fn is_connection_failure(code: Code) -> bool {
    matches!(code, Code::Refused | Code::Timeout | Code::Reset)
}

/// Which of a purchase's keys (by variant) got an indeterminate answer, and which a
/// definite one; a key in the first set and not the second is left for resolution.
#[derive(Default)]
struct KeyStates {
    info: u64,
    definite: u64,
}

impl KeyStates {
    fn note(&mut self, variant: u8, code: Code) {
        // A scenario loads only with at most MAX_CLIENT_ATTEMPTS requests per purchase:
        // one key (variant) per request at most, one bit each.
        assert!(
            u32::from(variant) < crate::scenario::MAX_CLIENT_ATTEMPTS,
            "key variant {variant} past the {} a purchase may have",
            crate::scenario::MAX_CLIENT_ATTEMPTS
        );
        let bit = 1u64 << variant;
        match code.kind() {
            history::Kind::Info => self.info |= bit,
            history::Kind::Ok => self.definite |= bit,
            history::Kind::Fail if code == Code::KeyReused => self.definite |= bit,
            // Another request of this key is executing it: its outcome is still open.
            history::Kind::Fail if code == Code::InFlight => self.info |= bit,
            history::Kind::Fail => {}
        }
    }
}

async fn run_purchase(world: &World, plan: AgentPlan, purchase: u16, rng: &mut SmallRng) {
    // Before the purchase's first request: its keys are at most this old.
    let started_ms = world.metrics.now_ms();
    let mut a = Attempt {
        plan,
        purchase,
        variant: 0,
        region: plan.home_region,
        quantity: world.quantity,
        op: Op::Commit,
        seq: 0,
    };
    let mut keys = KeyStates::default();
    let seen = Seen::default();
    let max = world.retry.max_attempts;
    // What the purchase's last request was told (for the final reads' choice).
    let mut last = Code::Timeout;
    for attempt in 1..=max {
        a.seq = attempt.min(254) as u8 - 1;
        let code = match (plan.persona, attempt) {
            // The rarer personas' branches are boxed: an agent's future is as large as
            // its largest branch, and every agent's future is copied when it is spawned.
            (Persona::DoubleSubmit, 1) => {
                let ((x, _), (y, _)) =
                    Box::pin(async { tokio::join!(world.send(a, &seen), world.send(a, &seen)) })
                        .await;
                keys.note(a.variant, x);
                // The better of the two answers decides what the agent does next.
                if x.kind() == history::Kind::Ok || !x.is_transient() {
                    x
                } else {
                    y
                }
            }
            (Persona::CrashRestart, 1) => {
                let invoke_ms = world.metrics.now_ms();
                let sent_at = Instant::now();
                let crash_after = Duration::from_micros(rng.random_range(0..=2000));
                let send = Box::pin(world.send(a, &seen));
                tokio::select! {
                    (code, _) = send => code,
                    () = tokio::time::sleep(crash_after) => {
                        // The process died mid-flight; its request may still land.
                        world.record_abandoned(&a, invoke_ms, sent_at.elapsed().as_micros() as u64);
                        Code::Reset
                    }
                }
            }
            _ => world.send(a, &seen).await.0,
        };
        keys.note(a.variant, code);
        last = code;
        if !code.is_transient() {
            if plan.persona == Persona::PayloadMutator && code.kind() == history::Kind::Ok {
                a.seq = a.seq.saturating_add(1);
                Box::pin(mutate_payload(world, a, rng, &seen)).await;
            }
            break;
        }
        if attempt == max {
            break;
        }
        if is_connection_failure(code) {
            a.region = world.failover(a.region);
        }
        if plan.persona == Persona::KeyRotator {
            // The anti-pattern: a fresh key for the same purchase on every retry.
            a.variant = a.variant.wrapping_add(1);
        }
        tokio::time::sleep(world.backoff(attempt, rng)).await;
    }
    // Every key of the purchase may be read again at the end: the last one as its answer
    // says, the ones a key rotator left behind as unanswered.
    for variant in 0..=a.variant {
        let told = if variant == a.variant {
            last
        } else {
            Code::Timeout
        };
        world
            .final_reads
            .offer((a.plan.id, a.purchase, variant), told, started_ms);
    }
    // Keys that never got a definite answer wait for the end-of-run resolution.
    let open = keys.info & !keys.definite;
    for variant in
        (0..crate::scenario::MAX_CLIENT_ATTEMPTS as u8).filter(|v| open & (1u64 << v) != 0)
    {
        world.pending.push(
            plan.id,
            Attempt {
                variant,
                quantity: world.quantity,
                ..a
            },
            started_ms,
        );
    }
}

/// Reuse the key with a changed (still valid) payload: the kernel must answer 409.
async fn mutate_payload(world: &World, mut a: Attempt, rng: &mut SmallRng, seen: &Seen) {
    a.quantity += 1;
    for attempt in 1..=world.retry.max_attempts {
        let (code, _) = world.send(a, seen).await;
        a.seq = a.seq.saturating_add(1);
        if !code.is_transient() {
            return;
        }
        if is_connection_failure(code) {
            a.region = world.failover(a.region);
        }
        tokio::time::sleep(world.backoff(attempt, rng)).await;
    }
}

/// Whether a server that keeps keys `retention_ms` (`None`: for ever) still keeps one
/// `age_ms` old through one more request of at most `timeout_ms`, with a second to spare
/// for the server's clock and ours.
fn still_kept(retention_ms: Option<u64>, age_ms: u64, timeout_ms: u64) -> bool {
    let spare_ms = timeout_ms.saturating_add(1000);
    retention_ms.is_none_or(|r| age_ms.saturating_add(spare_ms) < r)
}

/// Stripes of the pending queue (agents land on `id % STRIPES`).
const STRIPES: usize = 16;

/// Keys left indeterminate by their agents, waiting for the end-of-run resolution
/// (`resolve`). Striped by agent, so parking a key takes no global lock.
pub struct Pending {
    /// Each key with when its purchase began (the run's clock, for `World::kept`).
    stripes: Vec<Mutex<Vec<(Attempt, u32)>>>,
}

impl Default for Pending {
    fn default() -> Self {
        Pending {
            stripes: (0..STRIPES).map(|_| Mutex::new(Vec::new())).collect(),
        }
    }
}

impl Pending {
    /// Park agent `agent`'s open key, of a purchase that began at `started_ms`.
    pub fn push(&self, agent: u32, a: Attempt, started_ms: u32) {
        lock(&self.stripes[agent as usize % STRIPES]).push((a, started_ms));
    }

    /// Every parked key and when its purchase began, in (agent, purchase, variant) order.
    pub fn take(&self) -> Vec<(Attempt, u32)> {
        let mut all = Vec::new();
        for stripe in &self.stripes {
            all.append(&mut lock(stripe));
        }
        all.sort_by_key(|(a, _)| (a.plan.id, a.purchase, a.variant));
        all
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_sent_again_only_while_the_server_keeps_it_with_time_to_spare() {
        assert!(still_kept(None, u64::MAX, 2000), "kept for ever");
        // Kept 10 s; a request may take 2 s, and a second is spared.
        assert!(still_kept(Some(10_000), 6_999, 2000));
        assert!(!still_kept(Some(10_000), 7_000, 2000));
        assert!(!still_kept(Some(10_000), u64::MAX, 2000), "an unknown age");
    }

    #[test]
    fn cdf_picks_by_weight() {
        let c = cdf(&[0.5, 0.0, 0.5]);
        assert_eq!(c, vec![0.5, 0.5, 1.0]);
        assert_eq!(pick(&c, 0.1), 0);
        assert_eq!(pick(&c, 0.5), 2);
        assert_eq!(pick(&c, 0.999), 2);
    }

    #[test]
    fn agent_generators_are_deterministic_and_distinct() {
        let a: u64 = agent_rng(1, 5, 0).random();
        let b: u64 = agent_rng(1, 5, 0).random();
        let c: u64 = agent_rng(1, 6, 0).random();
        let d: u64 = agent_rng(2, 5, 0).random();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
    }
}
