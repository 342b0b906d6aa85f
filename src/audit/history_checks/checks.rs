//! The tally turned into checks: what the history alone shows, what clients were told
//! against what the scenario declared, and the client's view against the rows.

use std::collections::HashMap;

use super::{PerPurchase, PhantomKey, Tally};
use crate::audit::facts::KeyId;
use crate::audit::verdict::{Check, Invariant, ItemSold, MAX_EXAMPLES, Validity};
use crate::history::{Cut, Ending, Header, Violation, key};

impl PerPurchase {
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

impl Tally {
    /// The checks that need only the history.
    pub fn history_only(&self, h: &Header, ending: &Ending) -> Vec<Check> {
        let k = |id: &KeyId| key(&h.key_prefix, id.0, id.1, id.2);
        let mut checks = vec![match (&ending.cut, &ending.resumed_after) {
            (Some(cut), _) => Check::unknown(
                "history.complete",
                Invariant::History,
                format!(
                    "the history ends at byte {} ({}): the run was cut short, and requests in flight then are not in it; \
                     `swarm resolve SCENARIO --history HISTORY` (the run's scenario file and this history) replays its open keys and finishes it",
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
            "concurrent double submits executed twice (two ids) where both may have charged: two commits, a commit beside an unanswered request, or two intents in the database",
        ));
        checks.push(self.key_executions.check(
            "duplicate_settlement.key_executions",
            Invariant::DuplicateSettlement,
            Validity::Invalid,
            k,
            "keys (not double submits) executed twice (two ids) where both may have charged: two commits, a commit beside an unanswered request, or two intents in the database",
        ));
        checks.push(self.key_not_kept.check(
            "history.key_not_kept",
            Invariant::History,
            Validity::Invalid,
            k,
            "keys executed twice (two ids) that cannot have charged twice (one commit at most, an unanswered request counted as one): the server did not keep the key's first answer and executed it again",
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
