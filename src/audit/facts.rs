//! What the history says about each key: records grouped by `(agent, purchase, variant)`,
//! the first request (by sequence, then invoke time) giving the payload. The facts are
//! everything the history checks need, so a million keys cost one small struct each.
//!
//! Evidence before flags: how many times a key executed is decided by the execution ids
//! its answers named (the same id twice is one execution), never by the server's own
//! replay marker. The marker is judged against that evidence (`replay_not_marked`,
//! `fresh_marked_replayed`), and only where the contract has one.

use crate::history::{Code, Kind, Op, Persona, Record};

/// A key as `(agent, purchase, variant)`.
pub type KeyId = (u32, u16, u8);

/// What the history says about one key.
#[derive(Debug, Clone)]
pub struct KeyFacts {
    pub id: KeyId,
    pub persona: Persona,
    pub item: u16,
    pub mandate: u32,
    pub quantity: i64,
    pub amount_minor: i64,
    /// The answer hash of the first answer of the key's first execution (what the
    /// database should hold); 0 when no answer came (`response_hash` is never 0).
    pub ok_hash: u64,
    /// Distinct executions the key's business answers named (saturating): more than one
    /// is the key executed twice, whatever the outcomes were.
    pub executions: u8,
    /// Distinct executions the key's committed answers named (saturating): more than one
    /// is the key settled twice (charged twice); two executions with at most one commit
    /// are a key the server did not keep (a decline executed again, or a commit answered
    /// later by a new decline), with no second charge.
    pub settlements: u8,
    /// Requests whose answer could hide an execution (cut, timed out, in breach of the
    /// contract, a 503 that promised nothing), saturating: each may have charged unseen.
    pub unseen: u8,
    pub acked_commit: bool,
    pub acked: bool,
    pub info: bool,
    pub definite: bool,
    /// The contract's lookup, asked after every other request of the key had ended, found
    /// nothing: as far as any client can learn, the key never executed.
    pub read_absent: bool,
    pub all_failed: bool,
    /// A business answer not marked a replay came for this key (every one, without a
    /// marker): the run exercised it.
    pub has_fresh: bool,
    /// Answers of one execution whose values differ (outcome aside: that is a false
    /// decline or a lost write).
    pub hash_mismatch: bool,
    /// An answer with its execution's first answer's values in other bytes: a warning.
    pub layout_only: bool,
    /// Two answers of one execution, neither marked a replay (a contract with a marker).
    pub replay_not_marked: bool,
    /// The key's first request, with no other in flight, answered as a replay.
    pub fresh_marked_replayed: bool,
    /// A decline that a later answer of the same execution (asked for after the decline
    /// was answered) shows committed.
    pub false_decline: bool,
    /// An acknowledged commit that a later answer of the same execution (asked for after
    /// it) shows declined, or a lookup shows absent.
    pub lost_write: bool,
    pub accepted_other_payload: bool,
    /// Proven by the history alone: a commit every other request said it left nothing of.
    pub false_failure_proven: bool,
    /// Which ways this key's answers broke the contract: bit `detail - 1` per `Violation`.
    pub violations: u8,
}

impl KeyFacts {
    /// No client learned whether the key executed: its answers were cut or said
    /// "in flight", and no later answer or lookup settled it. `committed_elsewhere`:
    /// another key of the same purchase was acknowledged committed; then a lookup that
    /// found nothing settles nothing (a request still running on the server could yet
    /// charge the purchase twice, and only this key's being open says so).
    pub fn indeterminate(&self, committed_elsewhere: bool) -> bool {
        self.may_have_executed() && (!self.read_absent || committed_elsewhere)
    }

    /// The key may hold an execution no answer acknowledged: a lookup that found nothing
    /// settles what clients learn, not what a request still running on the server may
    /// yet claim, so the database's interval keeps such a key open.
    pub fn may_have_executed(&self) -> bool {
        self.info && !self.definite
    }
}

/// Group the records by key (sorting them in place) and judge each key by its records,
/// into `out` (cleared first; its allocation is reused from part to part); `marked`: the
/// contract marks replays (a body field or a header). The order is total over what the
/// facts read, so the facts do not depend on the order records came in.
pub fn key_facts(records: &mut [Record], marked: bool, out: &mut Vec<KeyFacts>) {
    records.sort_unstable_by_key(|r| {
        (
            r.agent,
            r.purchase,
            r.variant,
            r.seq,
            r.invoke_ms,
            r.complete_ms,
            r.execution,
            r.response_hash,
            r.code as u8,
            r.replayed,
        )
    });
    out.clear();
    // At most a key per record: reserved at once, the vector never moves while it grows
    // (pages reserved and never written cost no memory).
    out.reserve(records.len());
    out.extend(
        records
            .chunk_by(|a, b| (a.agent, a.purchase, a.variant) == (b.agent, b.purchase, b.variant))
            .map(|key| judge(key, marked)),
    );
}

/// The execution an answer names (an answer without one stands for itself).
fn execution(r: &Record) -> u64 {
    if r.execution != 0 {
        r.execution
    } else {
        r.response_hash
    }
}

/// Up to two execution ids (0: an empty slot), enough to tell one execution from two;
/// a third is not kept, so it counts again each time it is seen (the counts saturate).
#[derive(Default)]
struct Ids([u64; 2]);

impl Ids {
    fn has(&self, e: u64) -> bool {
        self.0.contains(&e)
    }

    /// Keep `e`; true when it was not kept before (a new execution).
    fn note(&mut self, e: u64) -> bool {
        if self.has(e) {
            return false;
        }
        if let Some(slot) = self.0.iter_mut().find(|s| **s == 0) {
            *slot = e;
        }
        true
    }
}

/// One key's facts from its records, in request order.
fn judge(rs: &[Record], marked: bool) -> KeyFacts {
    let first = &rs[0];
    let mut f = KeyFacts {
        id: (first.agent, first.purchase, first.variant),
        persona: first.persona,
        item: first.item,
        mandate: first.mandate,
        quantity: i64::from(first.quantity),
        amount_minor: first.amount_minor,
        ok_hash: 0,
        executions: 0,
        settlements: 0,
        unseen: 0,
        acked_commit: false,
        acked: false,
        info: false,
        definite: false,
        read_absent: false,
        all_failed: true,
        has_fresh: false,
        hash_mismatch: false,
        layout_only: false,
        replay_not_marked: false,
        fresh_marked_replayed: false,
        false_decline: false,
        lost_write: false,
        accepted_other_payload: false,
        false_failure_proven: false,
        violations: 0,
    };
    // Requests the contract says leave nothing behind (RETRY_EXHAUSTED, a 4xx, a reused
    // key's refusal of its own payload), and whether any other request could have
    // committed (indeterminate, unavailable, in flight).
    let mut nothing_left = false;
    let mut could_commit = false;
    let (mut marked_commit, mut unmarked_commit) = (false, false);
    // The executions the answers named, those a commit named, and those only an answer in
    // breach of the contract named (what they did is unknown).
    let (mut ids, mut settled, mut named) = (Ids::default(), Ids::default(), Ids::default());
    // When the first decline and the first commit were answered: an answer is "later"
    // than another only if it was asked for after that one was answered (two requests in
    // flight together have no order).
    let answered = |commit: bool| {
        rs.iter()
            .filter(|r| r.kind() == Kind::Ok && (r.code == Code::Committed) == commit)
            .map(|r| r.complete_ms)
            .min()
            .unwrap_or(u32::MAX)
    };
    let (first_decline_done, first_commit_done) = (answered(false), answered(true));
    for r in rs {
        let same_payload = i64::from(r.quantity) == f.quantity && r.amount_minor == f.amount_minor;
        match r.kind() {
            Kind::Ok => {
                f.acked = true;
                f.definite = true;
                f.all_failed = false;
                f.has_fresh |= !r.replayed;
                if f.ok_hash == 0 {
                    f.ok_hash = r.response_hash;
                }
                if !same_payload {
                    f.accepted_other_payload = true;
                }
                let e = execution(r);
                if ids.note(e) {
                    f.executions = f.executions.saturating_add(1);
                }
                if r.code == Code::Committed {
                    if settled.note(e) {
                        f.settlements = f.settlements.saturating_add(1);
                    }
                    f.acked_commit = true;
                    f.false_decline |= r.invoke_ms > first_decline_done;
                    if r.replayed {
                        marked_commit = true;
                    } else {
                        unmarked_commit = true;
                    }
                } else {
                    f.lost_write |= r.invoke_ms > first_commit_done;
                }
            }
            Kind::Info => {
                // No business answer, so no id: it may hide an execution. But an answer in
                // breach of the contract that named its id (only those carry one here) is
                // evidence of an execution like any other (a re-execution answered with a
                // wrong status is still a second one), a possible charge after the loop
                // unless a commit named it.
                if r.execution == 0 {
                    f.unseen = f.unseen.saturating_add(1);
                } else {
                    named.note(r.execution);
                    if ids.note(r.execution) {
                        f.executions = f.executions.saturating_add(1);
                    }
                }
                f.info = true;
                f.all_failed = false;
                could_commit = true;
                // Another payload under a used key, answered with the first payload's
                // answer: a reuse not refused (the request's amount differs from the
                // answer's because the answer is the original's).
                if r.code == Code::Violation
                    && r.detail == crate::history::Violation::PayloadMismatch as u8
                    && !same_payload
                {
                    f.accepted_other_payload = true;
                } else if r.code == Code::Violation && (1..=8).contains(&r.detail) {
                    f.violations |= 1 << (r.detail - 1);
                }
            }
            Kind::Fail => {
                match r.code {
                    Code::KeyReused => f.definite = true,
                    Code::InFlight => {
                        f.info = true;
                        could_commit = true;
                    }
                    Code::Absent => f.lost_write |= r.invoke_ms > first_commit_done,
                    Code::Unavailable => {
                        f.unseen = f.unseen.saturating_add(1);
                        could_commit = true;
                    }
                    _ => {}
                }
                if matches!(r.code, Code::RetryExhausted | Code::BadRequest)
                    || (r.code == Code::KeyReused && same_payload)
                {
                    nothing_left = true;
                }
            }
        }
    }
    // An execution named only by an answer in breach of the contract may have charged.
    let unsettled = named
        .0
        .iter()
        .filter(|e| **e != 0 && !settled.has(**e))
        .count();
    f.unseen = f.unseen.saturating_add(unsettled as u8);
    f.read_absent = read_absent_after_all(rs);
    // A commit whose every answer is marked a replay was executed by a request that got
    // no business answer; when every such request said it left nothing behind, one lied.
    f.false_failure_proven = marked_commit && !unmarked_commit && nothing_left && !could_commit;
    if f.executions > 1 {
        // Executed twice: the duplicate checks' finding; what each execution answered
        // says nothing more.
        f.false_decline = false;
        f.lost_write = false;
    } else if !f.false_decline && !f.lost_write {
        compare_answers(rs, marked, &mut f);
    }
    f.fresh_marked_replayed = marked && first_answer_marked(rs);
    f
}

/// A lookup found the key absent after every other request of the key had been answered
/// or given up (its invoke after their completion): two requests in flight together have
/// no order, so a lookup overlapping one settles nothing.
fn read_absent_after_all(rs: &[Record]) -> bool {
    rs.iter()
        .filter(|r| r.op == Op::FinalRead && r.code == Code::Absent)
        .any(|read| {
            rs.iter()
                .filter(|r| r.op != Op::FinalRead)
                .all(|r| r.complete_ms < read.invoke_ms)
        })
}

/// Every answer of a key's one execution against its first: the same bytes (a replay),
/// the same values in other bytes (layout only), or other values (a mismatch).
fn compare_answers(rs: &[Record], marked: bool, f: &mut KeyFacts) {
    let mut answers = rs.iter().filter(|r| r.kind() == Kind::Ok);
    let Some(original) = answers.next() else {
        return;
    };
    for r in answers {
        if r.response_hash == original.response_hash {
            // The same answer again: a replay. Under a marker, two unmarked copies of one
            // execution mean one of them is a replay that did not say so; unless the two
            // were in flight together (the later asked for before the first was answered):
            // a server may join a twin to the execution still running and answer both
            // from it, and neither is then a replay.
            if marked && !r.replayed && !original.replayed && r.invoke_ms > original.complete_ms {
                f.replay_not_marked = true;
            }
        } else if r.semantic_hash == original.semantic_hash {
            f.layout_only = true;
        } else {
            f.hash_mismatch = true;
        }
    }
}

/// The key's first request was answered, marked a replay, while no other request of the
/// key had been sent: nothing could have executed before it.
fn first_answer_marked(rs: &[Record]) -> bool {
    let first = &rs[0];
    first.kind() == Kind::Ok
        && first.replayed
        && first.op == Op::Commit
        && rs[1..].iter().all(|r| r.invoke_ms > first.complete_ms)
}

#[cfg(test)]
mod tests;
