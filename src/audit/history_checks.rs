//! History checks: what clients were told, alone and against what the database holds.
//!
//! The audit hands over one part at a time (`parts`): the facts of its keys (records
//! grouped by `(agent, purchase, variant)`) and its intents, both sorted by key, which are
//! merge-joined. A `Tally` adds every part up: counts, sums per item and mandate, and the
//! first examples of each check in key order, so the checks come out the same whatever the
//! number of parts, and the tally's memory is catalog-sized.

use std::collections::HashMap;

use super::facts::{KeyFacts, KeyId};
use super::firsts::Firsts;
use super::open_keys::{OpenKey, OpenKeys, SentPayload};
use super::parts::PartIntent;
use super::verdict::{Check, Invariant, ItemSold, MAX_EXAMPLES, Validity};
use crate::history::{Cut, Ending, Header, Persona, Violation, key};

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

    fn checks(&self, source: &str) -> Vec<Check> {
        vec![
            self.kernel.check(
                "duplicate_settlement.per_purchase",
                Invariant::DuplicateSettlement,
                Validity::Invalid,
                String::clone,
                format!("purchases settled more than once ({source}), not by a key rotator"),
            ),
            self.client.check(
                "duplicate_settlement.per_purchase_client",
                Invariant::DuplicateSettlement,
                Validity::Valid,
                String::clone,
                "purchases a key_rotator paid for twice: the anti-pattern's cost, not a kernel fault",
            ),
        ]
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

    /// A key whose answers named two executions: executed twice (a duplicate), unless
    /// the database holds at most one intent for it (then the ids lied: a replay that did
    /// not repeat its original).
    fn executed_twice(&mut self, f: &KeyFacts, intents_in_db: Option<usize>) {
        match (intents_in_db, f.persona) {
            (Some(n), _) if n <= 1 => self.replay_mismatch.add(f.id),
            (_, Persona::DoubleSubmit) => self.double_submit.add(f.id),
            _ => self.key_executions.add(f.id),
        }
    }

    /// `alone`: no database to hold the answers to (the history's evidence decides).
    fn clients(&mut self, h: &Header, facts: &[KeyFacts], alone: bool) {
        for f in facts {
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
            if f.indeterminate() {
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
            } else if f.indeterminate() {
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

    /// The checks that need only the history.
    pub fn history_only(&self, h: &Header, ending: &Ending) -> Vec<Check> {
        let k = |id: &KeyId| key(&h.key_prefix, id.0, id.1, id.2);
        let mut checks = vec![match (&ending.cut, &ending.resumed_after) {
            (Some(cut), _) => Check::unknown(
                "history.complete",
                Invariant::History,
                format!(
                    "the history ends at byte {} ({}): the run was cut short, and requests in flight then are not in it",
                    cut.offset, cut.reason
                ),
            ),
            (None, Some(cut)) => Check::violations(
                "history.complete",
                Invariant::History,
                0,
                vec![],
                format!(
                    "the run was cut short at byte {} ({}); `swarm resolve` replayed every key \
                     then open and recorded what it was told (answers the killed run's own \
                     clients got after its last whole frame died with them)",
                    cut.offset, cut.reason
                ),
            ),
            (None, None) => Check::violations(
                "history.complete",
                Invariant::History,
                0,
                vec![],
                "every request was recorded",
            ),
        }];
        checks.push(self.replay_mismatch.check(
            "history.replay_mismatch",
            Invariant::History,
            Validity::Invalid,
            k,
            "keys answered twice with different values (the value of `replayed` aside)",
        ));
        checks.push(self.replay_layout.check(
            "history.replay_layout",
            Invariant::History,
            Validity::Valid,
            k,
            "warning: replays with the original's values in other bytes (spacing, field order)",
        ));
        checks.extend(self.contract_checks(h, &k));
        checks.push(self.payload_not_refused.check(
            "history.payload_not_refused",
            Invariant::History,
            Validity::Invalid,
            k,
            "keys reused with a changed payload and not refused",
        ));
        checks.push(self.double_submit.check(
            "duplicate_settlement.double_submit",
            Invariant::DuplicateSettlement,
            Validity::Invalid,
            k,
            "concurrent double submits whose answers named two executions (two ids)",
        ));
        checks.push(self.key_executions.check(
            "duplicate_settlement.key_executions",
            Invariant::DuplicateSettlement,
            Validity::Invalid,
            k,
            "keys (not double submits) whose answers named two executions (two ids): executed twice",
        ));
        checks.push(self.false_decline.check(
            "history.false_decline",
            Invariant::History,
            Validity::Invalid,
            k,
            "keys answered DECLINED that a later answer of the same execution (a final read) shows COMMITTED",
        ));
        checks.push(self.lost_write.check(
            "history.lost_write",
            Invariant::History,
            Validity::Invalid,
            k,
            "acknowledged commits that a later answer of the same execution (a final read) shows declined, or a lookup absent",
        ));
        // A run in which no request got a fresh business answer tested nothing: every
        // request was refused, failed, or replayed a purchase settled before the run.
        checks.push(if self.fresh > 0 {
            Check::figure(
                "run.exercised",
                Invariant::History,
                self.fresh,
                vec![],
                "keys that got a fresh business answer (COMMITTED or DECLINED) in this run",
            )
        } else {
            Check::unknown(
                "run.exercised",
                Invariant::History,
                format!(
                    "nothing was exercised: of {} keys, none got a fresh COMMITTED or DECLINED answer \
                     (every request was refused, failed, or replayed an earlier run's purchase)",
                    self.keys
                ),
            )
        });
        checks.push(self.unresolved.check(
            "history.unresolved",
            Invariant::History,
            Validity::Unknown,
            k,
            "keys whose outcome no client learned",
        ));
        checks
    }

    /// The `contract.*` family: answers that broke the contract, by kind, with the first
    /// examples the run kept in words (status, key, body excerpt), else keys; and answers
    /// repeated without `replayed: true`.
    fn contract_checks(&self, h: &Header, k: &dyn Fn(&KeyId) -> String) -> Vec<Check> {
        let mut checks = Vec::new();
        for (i, v) in Violation::ALL.into_iter().enumerate() {
            let found = &self.contract[i];
            let mut examples: Vec<String> = h
                .contract_examples
                .iter()
                .filter(|e| e.starts_with(v.name()))
                .take(MAX_EXAMPLES)
                .cloned()
                .collect();
            if examples.is_empty() {
                examples = found.examples().map(k).collect();
            }
            checks.push(Check::violations(
                CONTRACT_CHECKS[i],
                Invariant::Contract,
                found.count(),
                examples,
                v.describe(),
            ));
        }
        let marker = h.replay_marker.as_str();
        if marker == "none" {
            for name in [
                "contract.replay_not_marked",
                "contract.fresh_marked_replayed",
            ] {
                checks.push(Check::violations(
                    name,
                    Invariant::Contract,
                    0,
                    vec![],
                    "the contract marks no replay (replay_marker = \"none\"): replays are told by their execution ids alone",
                ));
            }
            return checks;
        }
        checks.push(self.replay_not_marked.check(
            "contract.replay_not_marked",
            Invariant::Contract,
            Validity::Invalid,
            k,
            format!("keys answered twice for one execution (one id), neither answer marked a replay ({marker})"),
        ));
        // Every key's first answer marked a replay: the keys were used before (a repeated
        // --run-id) or the server marks every answer; the history cannot tell which, and
        // `run.exercised` says so (unknown).
        let all_marked = self.fresh == 0;
        checks.push(self.fresh_marked_replayed.check(
            "contract.fresh_marked_replayed",
            Invariant::Contract,
            if all_marked { Validity::Valid } else { Validity::Invalid },
            k,
            format!(
                "keys whose first request, with no other in flight, was answered as a replay ({marker}){}",
                if all_marked { ": not judged, every answer was (keys used before? see run.exercised)" } else { "" }
            ),
        ));
        checks
    }

    /// Without a database: the units clients were told committed, per item, against the
    /// declared stock.
    pub fn acknowledged_sales(&self, h: &Header) -> Vec<ItemSold> {
        h.items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let (units, purchases) = u16::try_from(i)
                    .ok()
                    .and_then(|i| self.acked_units.get(&i).copied())
                    .unwrap_or((0, 0));
                ItemSold {
                    item: item.clone(),
                    units,
                    stock: h.stock_per_item,
                    purchases,
                    from: "acknowledged answers".into(),
                }
            })
            .collect()
    }

    /// Without a database: what clients were told against what the scenario declared.
    pub fn declared(&self, h: &Header) -> Vec<Check> {
        // An index the header does not name is said as one, never an empty name.
        let name_item = |i: &u16| {
            h.items
                .get(usize::from(*i))
                .cloned()
                .unwrap_or_else(|| format!("item #{i} (not in the history's header)"))
        };
        let name_mandate = |m: &u32| {
            h.mandates
                .get(*m as usize)
                .cloned()
                .unwrap_or_else(|| format!("mandate #{m} (not in the history's header)"))
        };
        let mut over_stock: Vec<(String, i64)> = self
            .acked_units
            .iter()
            .filter(|(_, (u, _))| *u > h.stock_per_item)
            .map(|(i, (u, _))| (name_item(i), u - h.stock_per_item))
            .collect();
        over_stock.sort();
        // Counted in units sold past the declared stock, the figure an oversell is.
        let oversold_units: i64 = over_stock.iter().map(|(_, n)| n).sum();
        let over_stock: Vec<String> = over_stock
            .into_iter()
            .map(|(item, n)| format!("{item} (+{n} units)"))
            .collect();
        let mut over_cap: Vec<String> = self
            .acked_spend
            .iter()
            .filter(|(_, s)| **s > h.cap_per_mandate_minor)
            .map(|(m, _)| name_mandate(m))
            .collect();
        over_cap.sort();
        let k = |id: &KeyId| key(&h.key_prefix, id.0, id.1, id.2);
        let mut checks = vec![
            Check::violations(
                "oversell.acknowledged_over_declared",
                Invariant::Oversell,
                oversold_units.max(0) as u64,
                over_stock,
                format!(
                    "units acknowledged past the declared {} per item",
                    h.stock_per_item
                ),
            ),
            Check::violations(
                "mandate_breach.acknowledged_over_declared",
                Invariant::MandateBreach,
                over_cap.len() as u64,
                over_cap,
                format!(
                    "mandates whose acknowledged spend exceeds the declared {}",
                    h.cap_per_mandate_minor
                ),
            ),
            self.false_failure_proven.check(
                "history.false_failure",
                Invariant::History,
                Validity::Invalid,
                k,
                FALSE_FAILURE,
            ),
        ];
        checks.extend(self.per_purchase_acked.checks("acknowledged"));
        checks
    }

    /// With the database: the client's view against the rows. `items`: the catalog's item
    /// ids by index.
    pub fn against_db_checks(&self, h: &Header, items: &[String], cut: Option<&Cut>) -> Vec<Check> {
        let prefix = h.key_prefix.as_str();
        let k = |id: &KeyId| key(prefix, id.0, id.1, id.2);
        let phantom_name = |p: &PhantomKey| match p {
            PhantomKey::Ours(id) => k(id),
            PhantomKey::Foreign(name) => name.to_string(),
        };
        // Interval per item, by name (the history's and the catalog's indices differ).
        let mut acked: HashMap<String, i64> = HashMap::new();
        let mut open: HashMap<String, i64> = HashMap::new();
        let mut claimed: HashMap<String, i64> = HashMap::new();
        let header_item = |i: &u16| {
            h.items
                .get(usize::from(*i))
                .cloned()
                .unwrap_or_else(|| format!("item #{i} (not in the history's header)"))
        };
        for (i, u) in &self.interval_acked {
            *acked.entry(header_item(i)).or_default() += u;
        }
        for (i, u) in &self.interval_open {
            *open.entry(header_item(i)).or_default() += u;
        }
        let phantoms = match cut {
            None => Some(&self.phantom_claimed),
            Some(_) => None,
        };
        for (i, u) in self
            .interval_claimed
            .iter()
            .chain(phantoms.into_iter().flatten())
        {
            let name = items
                .get(*i as usize)
                .cloned()
                .unwrap_or_else(|| format!("item #{i} (not in the catalog)"));
            *claimed.entry(name).or_default() += u;
        }
        let mut names: Vec<&String> = acked
            .keys()
            .chain(claimed.keys())
            .chain(open.keys())
            .collect();
        names.sort();
        names.dedup();
        let outside: Vec<String> = names
            .into_iter()
            .filter(|item| {
                let a = acked.get(*item).copied().unwrap_or(0);
                let c = claimed.get(*item).copied().unwrap_or(0);
                let o = open.get(*item).copied().unwrap_or(0);
                !(a <= c && c <= a + o)
            })
            .cloned()
            .collect();
        let mut checks = vec![
            self.lost.check(
                "history.lost_commit",
                Invariant::History,
                Validity::Invalid,
                k,
                "acknowledged commits missing from the database",
            ),
            match cut {
                // A request in flight when the history was cut left no record: its intent
                // cannot be told from a phantom.
                Some(cut) if self.phantom.count() > 0 => Check::unknown(
                    "history.phantom_commit",
                    Invariant::History,
                    format!(
                        "{} intents of this run's keys have no request in the history, which ends at byte {}: in flight when the run was cut short, or phantoms (first: {})",
                        self.phantom.count(),
                        cut.offset,
                        self.phantom
                            .examples()
                            .next()
                            .map(phantom_name)
                            .unwrap_or_default()
                    ),
                ),
                _ => self.phantom.check(
                    "history.phantom_commit",
                    Invariant::History,
                    Validity::Invalid,
                    phantom_name,
                    "intents whose key no client sent",
                ),
            },
            self.false_failure.check(
                "history.false_failure",
                Invariant::History,
                Validity::Invalid,
                k,
                FALSE_FAILURE,
            ),
            self.snapshot_mismatch.check(
                "history.snapshot_mismatch",
                Invariant::History,
                Validity::Invalid,
                k,
                "answers that differ from the stored snapshot",
            ),
            self.payload_mismatch.check(
                "history.payload_mismatch",
                Invariant::History,
                Validity::Invalid,
                k,
                "stored payloads that differ from the acknowledged one",
            ),
            Check::violations(
                "history.interval",
                Invariant::History,
                outside.len() as u64,
                outside,
                match cut {
                    None => {
                        "items where claimed units fall outside [acknowledged, acknowledged + indeterminate]"
                    }
                    Some(_) => {
                        "items where claimed units fall outside [acknowledged, acknowledged + indeterminate] \
                                (the history is cut: units of intents it has no request for are left out)"
                    }
                },
            ),
        ];
        checks.extend(self.per_purchase_db.checks("in the database"));
        checks
    }
}

const FALSE_FAILURE: &str = "keys that committed although a request said nothing was left behind \
     (every request failed, or a later replay proves the failure false)";

/// The check of each `Violation`, in `Violation::ALL` order.
pub const CONTRACT_CHECKS: [&str; 5] = [
    "contract.unparseable",
    "contract.missing_field",
    "contract.float_money",
    "contract.status_mismatch",
    "contract.payload_mismatch",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_phantoms_come_before_foreign_ones() {
        assert!(PhantomKey::Ours((u32::MAX, 0, 0)) < PhantomKey::Foreign("a".into()));
    }
}
