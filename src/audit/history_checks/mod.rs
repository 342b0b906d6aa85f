//! History checks: what clients were told, alone and against what the database holds.
//!
//! The audit hands over one part at a time (`parts`): the facts of its keys (records
//! grouped by `(agent, purchase, variant)`) and its intents, both sorted by key, which are
//! merge-joined. A `Tally` adds every part up: counts, sums per item and mandate, and the
//! first examples of each check in key order, so the checks come out the same whatever the
//! number of parts, and the tally's memory is catalog-sized. This file adds the parts up;
//! `checks` turns the tally into the checks.

mod checks;

use std::collections::HashMap;

use super::facts::{KeyFacts, KeyId};
use super::firsts::Firsts;
use super::open_keys::{OpenKey, OpenKeys, SentPayload};
use super::parts::PartIntent;
use crate::history::{Header, Persona};

/// An intent with no request in the history: one of the run's keys, or a key none of its
/// clients would send (reported by name, after the run's own).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum PhantomKey {
    Ours(KeyId),
    Foreign(Box<str>),
}

/// Purchases settled by more than one key: a key rotator's (its own cost) and the rest.
#[derive(Debug, Default)]
struct PerPurchase {
    kernel: Firsts<String>,
    client: Firsts<String>,
}

impl PerPurchase {
    fn merge(&mut self, other: PerPurchase) {
        self.kernel.merge(other.kernel);
        self.client.merge(other.client);
    }

    /// One part's keys, `committed` saying which settled.
    fn add(&mut self, h: &Header, facts: &[KeyFacts], committed: impl Fn(&KeyFacts) -> bool) {
        let mut by_purchase: HashMap<(u32, u16), (u32, Persona)> = HashMap::new();
        for f in facts.iter().filter(|f| committed(f)) {
            by_purchase
                .entry((f.id.0, f.id.1))
                .or_insert((0, f.persona))
                .0 += 1;
        }
        for ((agent, purchase), (n, persona)) in by_purchase {
            if n > 1 {
                let name = format!("{}-{agent}-{purchase}", h.key_prefix);
                if persona == Persona::KeyRotator {
                    self.client.add(name);
                } else {
                    self.kernel.add(name);
                }
            }
        }
    }
}

/// Every part's findings, added up.
#[derive(Debug, Default)]
pub struct Tally {
    /// Collected only when asked (`Tally::collecting`).
    open: Option<OpenKeys>,
    keys: u64,
    fresh: u64,
    replay_mismatch: Firsts<KeyId>,
    replay_layout: Firsts<KeyId>,
    contract: [Firsts<KeyId>; 5],
    replay_not_marked: Firsts<KeyId>,
    fresh_marked_replayed: Firsts<KeyId>,
    payload_not_refused: Firsts<KeyId>,
    double_submit: Firsts<KeyId>,
    key_executions: Firsts<KeyId>,
    key_not_kept: Firsts<KeyId>,
    false_decline: Firsts<KeyId>,
    lost_write: Firsts<KeyId>,
    unresolved: Firsts<KeyId>,
    // What clients were told, for an audit without the database.
    acked_units: HashMap<u16, (i64, u64)>,
    acked_spend: HashMap<u32, i64>,
    false_failure_proven: Firsts<KeyId>,
    per_purchase_acked: PerPurchase,
    // Against the database.
    lost: Firsts<KeyId>,
    phantom: Firsts<PhantomKey>,
    false_failure: Firsts<KeyId>,
    snapshot_mismatch: Firsts<KeyId>,
    payload_mismatch: Firsts<KeyId>,
    /// Per item, keys of one intent or none: units acknowledged and units indeterminate
    /// (by the header's item index), units claimed (by the catalog's).
    interval_acked: HashMap<u16, i64>,
    interval_open: HashMap<u16, i64>,
    interval_claimed: HashMap<u32, i64>,
    /// Units claimed by intents of keys the history never sent (phantoms), by catalog
    /// item: counted as claimed only when the history is whole (a cut one lost the
    /// requests in flight, whose intents these may be).
    phantom_claimed: HashMap<u32, i64>,
    per_purchase_db: PerPurchase,
}

impl Tally {
    /// A tally that also keeps the open keys.
    pub fn collecting() -> Tally {
        Tally {
            open: Some(OpenKeys::default()),
            ..Tally::default()
        }
    }

    /// Add the tally of later parts (parts tallied apart, added in part order, give what
    /// one tally of every part in order gives). Every field is named: a new one must
    /// say here how it adds up.
    pub fn absorb(&mut self, later: Tally) {
        let Tally {
            open,
            keys,
            fresh,
            replay_mismatch,
            replay_layout,
            contract,
            replay_not_marked,
            fresh_marked_replayed,
            payload_not_refused,
            double_submit,
            key_executions,
            key_not_kept,
            false_decline,
            lost_write,
            unresolved,
            acked_units,
            acked_spend,
            false_failure_proven,
            per_purchase_acked,
            lost,
            phantom,
            false_failure,
            snapshot_mismatch,
            payload_mismatch,
            interval_acked,
            interval_open,
            interval_claimed,
            phantom_claimed,
            per_purchase_db,
        } = later;
        if let (Some(mine), Some(theirs)) = (self.open.as_mut(), open) {
            mine.append(theirs);
        }
        self.keys += keys;
        self.fresh += fresh;
        for (mine, theirs) in [
            (&mut self.replay_mismatch, replay_mismatch),
            (&mut self.replay_layout, replay_layout),
            (&mut self.replay_not_marked, replay_not_marked),
            (&mut self.fresh_marked_replayed, fresh_marked_replayed),
            (&mut self.payload_not_refused, payload_not_refused),
            (&mut self.double_submit, double_submit),
            (&mut self.key_executions, key_executions),
            (&mut self.key_not_kept, key_not_kept),
            (&mut self.false_decline, false_decline),
            (&mut self.lost_write, lost_write),
            (&mut self.unresolved, unresolved),
            (&mut self.false_failure_proven, false_failure_proven),
            (&mut self.lost, lost),
            (&mut self.false_failure, false_failure),
            (&mut self.snapshot_mismatch, snapshot_mismatch),
            (&mut self.payload_mismatch, payload_mismatch),
        ] {
            mine.merge(theirs);
        }
        for (mine, theirs) in self.contract.iter_mut().zip(contract) {
            mine.merge(theirs);
        }
        self.phantom.merge(phantom);
        for (item, (units, n)) in acked_units {
            let e = self.acked_units.entry(item).or_default();
            e.0 += units;
            e.1 += n;
        }
        add_into(&mut self.acked_spend, acked_spend);
        add_into(&mut self.interval_claimed, interval_claimed);
        add_into(&mut self.phantom_claimed, phantom_claimed);
        add_into(&mut self.interval_acked, interval_acked);
        add_into(&mut self.interval_open, interval_open);
        self.per_purchase_acked.merge(per_purchase_acked);
        self.per_purchase_db.merge(per_purchase_db);
        self.assert_per_key();
    }

    /// What the checks' words rely on: a key is tallied in one part only, so the keys
    /// answered fresh, and the keys each per-key check found, are each at most the keys
    /// tallied. A key counted in two parts (parts that split a key) breaks it.
    fn assert_per_key(&self) {
        assert!(
            self.fresh <= self.keys,
            "{} keys answered fresh out of {} tallied: a key was tallied twice",
            self.fresh,
            self.keys
        );
        // (`replay_mismatch` is not among them: a key can be found by its hashes and by
        // its execution ids both.)
        for (name, f) in [
            ("double_submit", &self.double_submit),
            ("key_executions", &self.key_executions),
            ("key_not_kept", &self.key_not_kept),
            ("unresolved", &self.unresolved),
            ("lost", &self.lost),
        ] {
            assert!(
                f.count() <= self.keys,
                "{name}: {} keys found out of {} tallied: a key was tallied twice",
                f.count(),
                self.keys
            );
        }
    }

    /// The open keys kept (`collecting`).
    pub fn take_open(&mut self) -> OpenKeys {
        self.open.take().unwrap_or_default()
    }

    /// One part: its keys' facts and (with a database) its intents, both sorted by key.
    pub fn part(&mut self, h: &Header, facts: &[KeyFacts], intents: Option<&[PartIntent]>) {
        self.clients(h, facts, intents.is_none());
        if let Some(intents) = intents {
            self.against_db(h, facts, intents);
        }
    }

    /// A key whose answers named two executions: executed twice (a duplicate), unless the
    /// database holds at most one intent for it (then the ids lied: a replay that did not
    /// repeat its original). Without the database, the answers decide: when the commits
    /// they named, and the requests whose answers could hide one, cannot add up to two
    /// charges, it is a key the server did not keep, with no second charge.
    fn executed_twice(&mut self, f: &KeyFacts, intents_in_db: Option<usize>) {
        let charges_possible = f.settlements.saturating_add(f.unseen.min(2));
        match (intents_in_db, f.persona) {
            (Some(n), _) if n <= 1 => self.replay_mismatch.add(f.id),
            (None, _) if charges_possible < 2 => self.key_not_kept.add(f.id),
            (_, Persona::DoubleSubmit) => self.double_submit.add(f.id),
            _ => self.key_executions.add(f.id),
        }
    }

    /// `alone`: no database to hold the answers to (the history's evidence decides).
    fn clients(&mut self, h: &Header, facts: &[KeyFacts], alone: bool) {
        // A purchase's keys are adjacent (facts are in key order).
        let purchases = facts.chunk_by(|a, b| (a.id.0, a.id.1) == (b.id.0, b.id.1));
        for (f, purchase) in purchases.flat_map(|p| p.iter().map(move |f| (f, p))) {
            self.keys += 1;
            // Two executions under one key are a duplicate settlement whoever sent it.
            if f.executions > 1 && alone {
                self.executed_twice(f, None);
            }
            // The conformance probe's keys are judged by its own checks (a broken promise
            // there is a warning unless it settled twice, counted above).
            if f.persona != Persona::Probe {
                self.promises(f);
            }
            let committed_elsewhere = purchase.iter().any(|g| g.id != f.id && g.acked_commit);
            if f.indeterminate(committed_elsewhere) {
                self.unresolved.add(f.id);
                if let Some(open) = self.open.as_mut() {
                    open.push(OpenKey {
                        id: f.id,
                        sent: Some(SentPayload {
                            persona: f.persona,
                            item: f.item,
                            mandate: f.mandate,
                            quantity: f.quantity,
                        }),
                    });
                }
            }
            if f.acked_commit {
                let e = self.acked_units.entry(f.item).or_default();
                e.0 += f.quantity;
                e.1 += 1;
                *self.acked_spend.entry(f.mandate).or_default() += f.amount_minor;
            }
            if f.false_failure_proven {
                self.false_failure_proven.add(f.id);
            }
        }
        self.per_purchase_acked.add(h, facts, |f| f.acked_commit);
    }

    /// What a key's answers promise beyond settling once: replays identical and marked
    /// as the contract says, another payload refused, declines and commits that stay so.
    fn promises(&mut self, f: &KeyFacts) {
        self.fresh += u64::from(f.has_fresh);
        for (found, firsts) in [
            (f.hash_mismatch, &mut self.replay_mismatch),
            (f.layout_only, &mut self.replay_layout),
            (f.replay_not_marked, &mut self.replay_not_marked),
            (f.fresh_marked_replayed, &mut self.fresh_marked_replayed),
            (f.accepted_other_payload, &mut self.payload_not_refused),
            (f.false_decline, &mut self.false_decline),
            (f.lost_write, &mut self.lost_write),
        ] {
            if found {
                firsts.add(f.id);
            }
        }
        for (i, c) in self.contract.iter_mut().enumerate() {
            if f.violations & (1 << i) != 0 {
                c.add(f.id);
            }
        }
    }

    /// Merge-join the part's facts with its intents.
    fn against_db(&mut self, h: &Header, facts: &[KeyFacts], intents: &[PartIntent]) {
        let mut committed_ids: Vec<KeyId> = Vec::new();
        // Keys with several intents: the duplicate-settlement checks' finding; the interval
        // check leaves them out rather than count the same fault twice.
        let mut multi: Vec<KeyId> = Vec::new();
        let (mut i, mut j) = (0, 0);
        while i < facts.len() || j < intents.len() {
            match (facts.get(i), intents.get(j)) {
                (Some(f), Some(d)) if d.id == f.id => {
                    let mut n = 1;
                    while intents.get(j + n).is_some_and(|x| x.id == f.id) {
                        n += 1;
                    }
                    if n > 1 {
                        multi.push(f.id);
                    }
                    let rows = &intents[j..j + n];
                    if f.executions > 1 {
                        self.executed_twice(f, Some(n));
                    }
                    let committed = rows.iter().any(|x| x.committed);
                    if f.acked_commit && !committed {
                        self.lost.add(f.id);
                    }
                    if committed && f.all_failed || f.false_failure_proven {
                        self.false_failure.add(f.id);
                    }
                    // Several intents under one key are the state check's to count.
                    if n == 1 && f.ok_hash != 0 && f.ok_hash != d.snapshot_hash {
                        self.snapshot_mismatch.add(f.id);
                    }
                    if f.acked
                        && rows
                            .iter()
                            .any(|x| x.quantity != f.quantity || x.amount_minor != f.amount_minor)
                    {
                        self.payload_mismatch.add(f.id);
                    }
                    if committed {
                        committed_ids.push(f.id);
                    }
                    j += n;
                    i += 1;
                }
                (Some(f), Some(d)) if d.id < f.id => {
                    self.unsent(d.id);
                    j += 1;
                }
                (Some(f), _) => {
                    if f.acked_commit {
                        self.lost.add(f.id);
                    }
                    if f.executions > 1 {
                        self.executed_twice(f, Some(0));
                    }
                    i += 1;
                }
                (None, Some(d)) => {
                    self.unsent(d.id);
                    j += 1;
                }
                (None, None) => break,
            }
        }
        // Interval per item: acknowledged <= claimed <= acknowledged + indeterminate.
        let single = |id: &KeyId| multi.binary_search(id).is_err();
        for f in facts.iter().filter(|f| single(&f.id)) {
            if f.acked_commit {
                *self.interval_acked.entry(f.item).or_default() += f.quantity;
            } else if f.may_have_executed() {
                *self.interval_open.entry(f.item).or_default() += f.quantity;
            }
        }
        for d in intents.iter().filter(|d| d.committed && single(&d.id)) {
            let sent = facts.binary_search_by_key(&d.id, |f| f.id).is_ok();
            let claimed = match sent {
                true => &mut self.interval_claimed,
                false => &mut self.phantom_claimed,
            };
            *claimed.entry(d.item).or_default() += d.quantity;
        }
        self.per_purchase_db
            .add(h, facts, |f| committed_ids.binary_search(&f.id).is_ok());
    }

    /// An intent of the run's keys with no request in the history (several intents of one
    /// key count once each, as phantoms; the key is open once).
    fn unsent(&mut self, id: KeyId) {
        self.phantom.add(PhantomKey::Ours(id));
        if let Some(open) = self.open.as_mut()
            && open.keys.last().is_none_or(|k| k.id != id)
        {
            open.push(OpenKey { id, sent: None });
        }
    }

    /// Intents whose keys none of this run's clients would send (`keys`), and the units
    /// the committed ones claimed per catalog item.
    pub fn foreign<'a>(
        &mut self,
        keys: &Firsts<Box<str>>,
        claimed: impl IntoIterator<Item = (&'a u32, &'a i64)>,
    ) {
        self.phantom.absorb(
            keys.count(),
            keys.examples().cloned().map(PhantomKey::Foreign),
        );
        for (item, units) in claimed {
            *self.phantom_claimed.entry(*item).or_default() += units;
        }
    }
}

/// Sums by key: `theirs` added into `mine`.
fn add_into<K: std::hash::Hash + Eq>(mine: &mut HashMap<K, i64>, theirs: HashMap<K, i64>) {
    for (k, v) in theirs {
        *mine.entry(k).or_default() += v;
    }
}

#[cfg(test)]
mod tests;
