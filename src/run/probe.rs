//! The conformance probe: before any agent starts, a handful of sequential requests test
//! the contract's promises on the endpoint itself, each a `conformance.*` check naming the
//! rule it comes from (the IETF draft's error scenarios, the profile's statuses).
//!
//! A broken promise is `invalid` only when it breaks an invariant (a key executed twice);
//! otherwise it is a warning with the evidence (a valid check with a count). Requests under
//! keys the history can name are recorded there as the `probe` persona, so the audit
//! explains the intents they leave; the malformed keys (none, empty, 256 characters) are
//! not, and a server that accepts them is told so. Invariant: the probe is bounded (a few
//! purchases, each with the client's timeout) and never retries.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::agent::{AgentPlan, Attempt, Seen, World};
use crate::audit::{Check, Invariant, Validity};
use crate::gateway::{HttpGateway, Reply};
use crate::history::{Code, Op, Persona};
use crate::scenario::KeyPlace;

/// Probe requests use agent ids no scenario reaches (at most `MAX_AGENTS`, ten million).
pub const PROBE_AGENT: u32 = u32::MAX - 64;
/// Concurrent requests of the same key in the concurrency case.
const TWINS: usize = 8;
/// The length of the over-long key (one past the 255 ZeroRace and Stripe allow).
const LONG_KEY: usize = 256;

/// The probe's findings: a check per promise, and why it did not run when it did not.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Conformance {
    /// `None`: it ran; else why not (a direct target, `--no-probe`, another shard).
    pub skipped: Option<String>,
    /// The checks, in the order they ran; each with the rule it tests.
    pub checks: Vec<ConformanceCheck>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ConformanceCheck {
    #[serde(flatten)]
    pub check: Check,
    /// The rule it comes from (the draft's section, the profile's setting).
    pub rule: String,
}

/// One case's result.
struct Case {
    name: &'static str,
    rule: String,
    /// Findings: a warning (valid, counted) unless `breaks` (a second execution).
    found: Vec<String>,
    breaks: bool,
    /// What it saw when all went well.
    seen: String,
}

impl Case {
    fn new(name: &'static str, rule: impl Into<String>) -> Case {
        Case {
            name,
            rule: rule.into(),
            found: Vec::new(),
            breaks: false,
            seen: String::new(),
        }
    }

    fn finish(self) -> ConformanceCheck {
        let detail = match self.found.is_empty() {
            true => format!("kept: {}", self.seen),
            false => self.found.join("; "),
        };
        let count = self.found.len() as u64;
        let check = if self.breaks {
            Check::violations(self.name, Invariant::Contract, count, vec![], detail)
        } else {
            Check::figure(self.name, Invariant::Contract, count, vec![], detail)
        };
        ConformanceCheck {
            check,
            rule: self.rule,
        }
    }
}

/// What a reply was, in a few words (for evidence).
fn said(reply: &Reply) -> String {
    match reply {
        Reply::Answer(a) => format!(
            "HTTP {} {}{}",
            a.status,
            a.code.name(),
            if a.replayed { " (marked a replay)" } else { "" }
        ),
        Reply::Refused(r) => format!("HTTP {} {}", r.status, r.code.name()),
        Reply::Transport(c) => format!("no answer ({})", c.name()),
        Reply::Violation(b) => format!("HTTP {} breaking the contract ({})", b.status, b.excerpt),
    }
}

/// Run every case against the first region (an HTTP target's); `None` when the target
/// is not HTTP.
pub async fn probe(world: &World) -> Conformance {
    let Some(region) = world.regions.first() else {
        return skipped("no region");
    };
    let Some(gateway) = region.http() else {
        return skipped(
            "a direct target: the kernel is called in-process, there is no endpoint to probe",
        );
    };
    let contract = gateway.contract();
    let timeout = Duration::from_millis(world.retry.timeout_ms);
    let mut checks = Vec::new();
    let mut agent = PROBE_AGENT;
    let mut next_plan = || {
        agent += 1;
        AgentPlan {
            id: agent,
            persona: Persona::Probe,
            home_region: 0,
            mandate: agent % world.mandates.len().max(1) as u32,
            item: (agent % world.items.len().max(1) as u32) as u16,
        }
    };
    let one = |plan: &AgentPlan| world.request(plan, plan.mandate, plan.item, world.quantity);
    // Keys the history cannot name: the answers alone are judged.
    let unnamed = |key: Option<&'static str>, plan: AgentPlan| async move {
        let req = one(&plan);
        let key = key.map(str::to_string);
        with_timeout(timeout, gateway.commit_as(&req, key.as_deref())).await
    };
    if contract.key_required {
        let mut c = Case::new(
            "conformance.missing_key",
            "draft-ietf-httpapi-idempotency-key-header-09, error scenarios: a request without the key is refused with 400",
        );
        match &contract.key {
            KeyPlace::Header(_) => {
                let reply = unnamed(None, next_plan()).await;
                judge_refused(&mut c, &reply, "a purchase without a key");
            }
            KeyPlace::Field(_) => c.seen = "not sent: the key travels in the body".into(),
        }
        checks.push(c.finish());
    }
    let mut c = Case::new(
        "conformance.empty_key",
        "draft-09 syntax: the key is a non-empty string; an empty one is refused (4xx)",
    );
    let reply = unnamed(Some(""), next_plan()).await;
    judge_refused(&mut c, &reply, "a purchase with an empty key");
    checks.push(c.finish());
    checks.push(long_key(gateway, &one(&next_plan()), timeout).await);
    checks.push(replay(world, next_plan()).await);
    checks.push(reuse(world, next_plan(), contract.key_reused.statuses.clone()).await);
    checks.push(concurrent(world, next_plan()).await);
    Conformance {
        skipped: None,
        checks,
    }
}

pub fn skipped(why: &str) -> Conformance {
    Conformance {
        skipped: Some(why.to_string()),
        checks: Vec::new(),
    }
}

async fn with_timeout(timeout: Duration, f: impl std::future::Future<Output = Reply>) -> Reply {
    tokio::time::timeout(timeout, f)
        .await
        .unwrap_or(Reply::Transport(Code::Timeout))
}

/// A malformed request must be refused: a business answer means it executed anyway.
fn judge_refused(c: &mut Case, reply: &Reply, what: &str) {
    match reply {
        Reply::Refused(r) if (400..=499).contains(&r.status) => c.seen = said(reply),
        Reply::Answer(_) => c
            .found
            .push(format!("{what} was executed: {}", said(reply))),
        other => c.found.push(format!(
            "{what} was not refused with a 4xx: {}",
            said(other)
        )),
    }
}

/// 256 characters: refused, or honoured (its replay is the same execution).
async fn long_key(
    gateway: &HttpGateway,
    req: &crate::sut::kernel::PurchaseRequest,
    timeout: Duration,
) -> ConformanceCheck {
    let mut c = Case::new(
        "conformance.long_key",
        "keys of more than 255 characters are refused (ZeroRace, Stripe) or honoured whole (the draft sets no length)",
    );
    let key = format!("swarm-probe-{}", "k".repeat(LONG_KEY - 12));
    let first = with_timeout(timeout, gateway.commit(req, &key)).await;
    match &first {
        Reply::Refused(r) if (400..=499).contains(&r.status) => c.seen = said(&first),
        Reply::Answer(a) => {
            let again = with_timeout(timeout, gateway.commit(req, &key)).await;
            match &again {
                Reply::Answer(b) if b.execution == a.execution => {
                    c.seen = format!("honoured: {} then {}", said(&first), said(&again));
                }
                Reply::Answer(_) => {
                    c.breaks = true;
                    c.found.push(format!(
                        "a {LONG_KEY}-character key executed twice (two ids): {} then {} (cut to a shorter key?)",
                        said(&first),
                        said(&again)
                    ));
                }
                other => c.found.push(format!(
                    "accepted ({}) but its replay was {}",
                    said(&first),
                    said(other)
                )),
            }
        }
        other => c
            .found
            .push(format!("neither refused nor answered: {}", said(other))),
    }
    c.finish()
}

/// The first request of a purchase as the history records it.
fn attempt(plan: AgentPlan, world: &World) -> Attempt {
    Attempt {
        plan,
        purchase: 0,
        variant: 0,
        region: 0,
        quantity: world.quantity,
        op: Op::Commit,
        seq: 0,
    }
}

/// Send and record; the reply is read back from what the agent code records.
async fn sent(world: &World, a: Attempt, seen: &Seen) -> Reply {
    world.send_reply(a, seen).await
}

/// Same key, same payload, twice: one execution, the same bytes (the marker aside),
/// marked as the contract says.
async fn replay(world: &World, plan: AgentPlan) -> ConformanceCheck {
    let mut c = Case::new(
        "conformance.replay",
        "the same key and payload again answer the stored answer: the same execution, the same bytes (the replay marker aside), marked as the contract says",
    );
    let seen = Seen::default();
    let a = attempt(plan, world);
    let first = sent(world, a, &seen).await;
    let again = sent(world, Attempt { seq: 1, ..a }, &seen).await;
    let marked = !matches!(
        world
            .regions
            .first()
            .and_then(|r| r.http())
            .map(|g| &g.contract().replay_marker),
        Some(crate::scenario::ReplayMarker::None) | None
    );
    match (&first, &again) {
        (Reply::Answer(x), Reply::Answer(y)) => {
            if x.execution != y.execution {
                c.breaks = true;
                c.found.push(format!(
                    "executed twice: two execution ids ({} then {})",
                    said(&first),
                    said(&again)
                ));
            }
            if x.answer_hash != y.answer_hash {
                c.found.push(format!(
                    "the replay is not the first answer again ({})",
                    if x.semantic_hash == y.semantic_hash {
                        "the same values in other bytes"
                    } else {
                        "other values"
                    }
                ));
            }
            if marked && (x.replayed || !y.replayed) {
                c.found.push(format!(
                    "marked wrongly: the first answer {}, the replay {}",
                    if x.replayed { "marked" } else { "unmarked" },
                    if y.replayed { "marked" } else { "unmarked" }
                ));
            }
            c.seen = format!("{} then {}", said(&first), said(&again));
        }
        _ => c.found.push(format!(
            "no two business answers to compare: {} then {}",
            said(&first),
            said(&again)
        )),
    }
    c.finish()
}

/// Same key, another payload: refused with the contract's status, nothing executed.
async fn reuse(world: &World, plan: AgentPlan, statuses: Vec<u16>) -> ConformanceCheck {
    let mut c = Case::new(
        "conformance.key_reuse",
        format!(
            "another payload under a used key is refused with {} (the contract's key_reused_status; the draft: 422; Stripe: 400) and executes nothing",
            crate::gateway::contract::either(&statuses)
        ),
    );
    let seen = Seen::default();
    let a = attempt(plan, world);
    let first = sent(world, a, &seen).await;
    let other = sent(
        world,
        Attempt {
            seq: 1,
            quantity: a.quantity + 1,
            ..a
        },
        &seen,
    )
    .await;
    let again = sent(world, Attempt { seq: 2, ..a }, &seen).await;
    let id = |r: &Reply| match r {
        Reply::Answer(x) => Some(x.execution),
        _ => None,
    };
    match &other {
        Reply::Refused(r) if r.code == Code::KeyReused => c.seen = said(&other),
        Reply::Refused(r) => c.found.push(format!(
            "refused with HTTP {} ({}), not the contract's key_reused_status",
            r.status,
            r.code.name()
        )),
        Reply::Answer(x) if Some(x.execution) != id(&first) => {
            c.breaks = true;
            c.found.push(format!(
                "the other payload executed under the used key: {}",
                said(&other)
            ));
        }
        Reply::Answer(_) => c.found.push(format!(
            "the other payload got the first answer back, not a refusal: {}",
            said(&other)
        )),
        Reply::Violation(b) if b.violation == crate::history::Violation::PayloadMismatch => {
            c.found.push(format!(
                "the other payload got the first payload's answer, not a refusal: {}",
                said(&other)
            ))
        }
        _ => c.found.push(format!("answered {}", said(&other))),
    }
    if let (Some(x), Some(y)) = (id(&first), id(&again))
        && x != y
    {
        c.breaks = true;
        c.found
            .push("the first payload's replay names another execution".into());
    }
    c.finish()
}

/// `TWINS` requests of one key at once: one execution; the others wait, replay, or are
/// told the key is in flight.
async fn concurrent(world: &World, plan: AgentPlan) -> ConformanceCheck {
    let mut c = Case::new(
        "conformance.concurrent",
        "concurrent requests of one key execute once; the others get the stored answer or the contract's in-flight status (the draft: 409)",
    );
    let seen = Seen::default();
    let a = attempt(plan, world);
    let sends = (0..TWINS).map(|_| sent(world, a, &seen));
    let replies = futures_util::future::join_all(sends).await;
    let mut ids: Vec<u64> = replies
        .iter()
        .filter_map(|r| match r {
            Reply::Answer(x) => Some(x.execution),
            _ => None,
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let in_flight = replies
        .iter()
        .filter(|r| matches!(r, Reply::Refused(x) if x.code == Code::InFlight))
        .count();
    let other: Vec<String> = replies
        .iter()
        .filter(|r| {
            !matches!(r, Reply::Answer(_))
                && !matches!(r, Reply::Refused(x) if x.code == Code::InFlight)
        })
        .map(said)
        .collect();
    if ids.len() > 1 {
        c.breaks = true;
        c.found.push(format!(
            "{TWINS} requests of one key executed {} times (distinct ids)",
            ids.len()
        ));
    }
    if let Some(first) = other.first() {
        c.found.push(format!(
            "{} of {TWINS} got neither the answer nor an in-flight status (first: {first})",
            other.len()
        ));
    }
    c.seen = format!(
        "{TWINS} at once: {} execution, {} answered, {in_flight} told in flight",
        ids.len(),
        TWINS - in_flight - other.len()
    );
    c.finish()
}

impl Conformance {
    /// The worst the probe found.
    pub fn validity(&self) -> Validity {
        self.checks
            .iter()
            .map(|c| c.check.validity)
            .max()
            .unwrap_or(Validity::Valid)
    }

    /// One line per check (`warning` when a promise was broken without a second
    /// execution).
    pub fn lines(&self) -> Vec<String> {
        if let Some(why) = &self.skipped {
            return vec![format!("conformance probe not run: {why}")];
        }
        self.checks
            .iter()
            .map(|c| {
                let status = match (c.check.validity, c.check.count) {
                    (Validity::Invalid, _) => "invalid",
                    (_, 0) => "kept",
                    _ => "warning",
                };
                let detail = c
                    .check
                    .detail
                    .strip_prefix("kept: ")
                    .unwrap_or(&c.check.detail);
                format!("{status:<8} {:<30} {detail}", c.check.name)
            })
            .collect()
    }
}
