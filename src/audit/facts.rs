//! What the history says about each key: records grouped by `(agent, purchase, variant)`,
//! the first request (by sequence, then invoke time) giving the payload. The facts are
//! everything the history checks need, so a million keys cost one small struct each.

use crate::history::{Code, Kind, Persona, Record};

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
    /// The first fresh answer's hash (or, if every answer was a replay, the first's);
    /// 0 when no answer came (`response_hash` is never 0).
    pub ok_hash: u64,
    pub fresh_commits: u8,
    pub acked_commit: bool,
    pub acked: bool,
    pub info: bool,
    pub definite: bool,
    pub all_failed: bool,
    /// A fresh business answer (COMMITTED or DECLINED, not a replay) came for this key.
    pub has_fresh: bool,
    /// The first fresh answer's semantic hash (see `ok_hash`).
    pub ok_semantic: u64,
    /// An answer whose values differ from the original answer's.
    pub hash_mismatch: bool,
    /// An answer with the original's values in other bytes (layout only): a warning.
    pub layout_only: bool,
    /// A second answer that was the first again but said `replayed: false`.
    pub replay_not_marked: bool,
    pub accepted_other_payload: bool,
    /// Requests the contract says leave nothing behind (RETRY_EXHAUSTED, a 4xx, a 409 for
    /// the key's own payload).
    nothing_left: u8,
    /// Other requests that could have committed: indeterminate or unavailable ones.
    could_commit: bool,
    replayed_commit: bool,
    /// Which ways this key's answers broke the contract: bit `detail - 1` per `Violation`.
    pub violations: u8,
}

impl KeyFacts {
    pub fn indeterminate(&self) -> bool {
        self.info && !self.definite
    }

    /// Proven by the history alone: a COMMITTED replay for a key none of whose other
    /// requests could have committed but one whose answer said nothing was left behind.
    /// The commit it replays was made by that request: its failure was false.
    pub fn false_failure_proven(&self) -> bool {
        self.replayed_commit
            && self.fresh_commits == 0
            && self.nothing_left > 0
            && !self.could_commit
    }
}

/// Group the records by key (sorting them in place); the first request (by sequence, then
/// invoke time) gives the payload. The order is total over what the facts read, so the
/// facts do not depend on the order the records came in.
pub fn key_facts(records: &mut [Record]) -> Vec<KeyFacts> {
    records.sort_unstable_by_key(|r| {
        (
            r.agent,
            r.purchase,
            r.variant,
            r.seq,
            r.invoke_ms,
            r.complete_ms,
            r.response_hash,
            r.code as u8,
            r.replayed,
        )
    });
    let mut out: Vec<KeyFacts> = Vec::new();
    // (key index, answer hash, semantic hash, replayed) of every answer after the first.
    let mut answers: Vec<(usize, u64, u64, bool)> = Vec::new();
    for r in records.iter() {
        let id = (r.agent, r.purchase, r.variant);
        if out.last().is_none_or(|f| f.id != id) {
            out.push(KeyFacts {
                id,
                persona: r.persona,
                item: r.item,
                mandate: r.mandate,
                quantity: i64::from(r.quantity),
                amount_minor: r.amount_minor,
                acked_commit: false,
                acked: false,
                info: false,
                definite: false,
                all_failed: true,
                ok_hash: 0,
                ok_semantic: 0,
                has_fresh: false,
                hash_mismatch: false,
                layout_only: false,
                replay_not_marked: false,
                accepted_other_payload: false,
                fresh_commits: 0,
                nothing_left: 0,
                could_commit: false,
                replayed_commit: false,
                violations: 0,
            });
        }
        let last = out.len().saturating_sub(1);
        let Some(f) = out.last_mut() else { continue };
        let same_payload = i64::from(r.quantity) == f.quantity && r.amount_minor == f.amount_minor;
        match r.kind() {
            Kind::Ok => {
                f.acked = true;
                f.definite = true;
                f.all_failed = false;
                if r.code == Code::Committed {
                    f.acked_commit = true;
                    if r.replayed {
                        f.replayed_commit = true;
                    } else {
                        f.fresh_commits = f.fresh_commits.saturating_add(1);
                    }
                }
                // The first fresh answer is the original (the first replay when every
                // answer was one); every other answer must be it again.
                if f.ok_hash == 0 || (!r.replayed && !f.has_fresh) {
                    if f.ok_hash != 0 {
                        answers.push((last, f.ok_hash, f.ok_semantic, true));
                    }
                    f.has_fresh |= !r.replayed;
                    f.ok_hash = r.response_hash;
                    f.ok_semantic = r.semantic_hash;
                } else {
                    answers.push((last, r.response_hash, r.semantic_hash, r.replayed));
                }
                if !same_payload {
                    f.accepted_other_payload = true;
                }
            }
            Kind::Info => {
                f.info = true;
                f.all_failed = false;
                f.could_commit = true;
                if r.code == Code::Violation && (1..=8).contains(&r.detail) {
                    f.violations |= 1 << (r.detail - 1);
                }
            }
            Kind::Fail => {
                if r.code == Code::KeyReused {
                    f.definite = true;
                }
                match r.code {
                    Code::RetryExhausted | Code::BadRequest => f.nothing_left += 1,
                    Code::KeyReused if same_payload => f.nothing_left += 1,
                    Code::Unavailable => f.could_commit = true,
                    _ => {}
                }
            }
        }
    }
    for (i, hash, semantic, replayed) in answers {
        let f = &mut out[i];
        if hash == f.ok_hash {
            // The same bytes again: a fresh-looking copy is a replay that did not say so.
            if !replayed && f.has_fresh {
                f.replay_not_marked = true;
            }
        } else if replayed {
            // (Two different fresh answers for one key are a settlement twice over: the
            // duplicate settlement checks' finding, not a replay's.)
            if semantic == f.ok_semantic {
                f.layout_only = true;
            } else {
                f.hash_mismatch = true;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keys_facts_fit_in_one_cache_line() {
        // A million keys are a million of these next to the records: keep them small.
        assert!(
            std::mem::size_of::<KeyFacts>() <= 64,
            "{}",
            std::mem::size_of::<KeyFacts>()
        );
    }
}
