//! History checks: what clients were told against what the database holds.
//!
//! Records are grouped by key `(agent, purchase, variant)`; intents are read from the
//! database and their keys parsed back with the history header's prefix. Both sides are
//! sorted vectors, so a million keys cost tens of MiB, not a hash map each.

use std::collections::HashMap;

use super::facts::{KeyFacts, KeyId};
use super::intents::Intents;
use super::verdict::{Check, Invariant};
use crate::history::{Cut, Header, Persona, Violation, key};

/// Checks that need only the history.
pub fn history_only(h: &Header, facts: &[KeyFacts], cut: Option<&Cut>) -> Vec<Check> {
    let k = |f: &KeyFacts| key(&h.key_prefix, f.id.0, f.id.1, f.id.2);
    let mut checks = Vec::new();
    checks.push(match cut {
        Some(cut) => Check::unknown(
            "history.complete",
            Invariant::History,
            format!(
                "the history ends at byte {} ({}): the run was cut short, and requests in flight then are not in it",
                cut.offset, cut.reason
            ),
        ),
        None => Check::violations(
            "history.complete",
            Invariant::History,
            0,
            vec![],
            "every request was recorded",
        ),
    });
    // A check over keys: how many match, and the first keys by name.
    let over_keys = |name, invariant, matches: &dyn Fn(&KeyFacts) -> bool, detail| {
        let hits: Vec<&KeyFacts> = facts.iter().filter(|f| matches(f)).collect();
        let examples = hits
            .iter()
            .take(super::MAX_EXAMPLES)
            .map(|f| k(f))
            .collect();
        Check::violations(name, invariant, hits.len() as u64, examples, detail)
    };
    checks.push(over_keys(
        "history.replay_mismatch",
        Invariant::History,
        &|f| f.hash_mismatch,
        "keys answered twice with different values (the value of `replayed` aside)",
    ));
    {
        let hits: Vec<&KeyFacts> = facts.iter().filter(|f| f.layout_only).collect();
        checks.push(Check::figure(
            "history.replay_layout",
            Invariant::History,
            hits.len() as u64,
            hits.iter()
                .take(super::MAX_EXAMPLES)
                .map(|f| k(f))
                .collect(),
            "warning: replays with the original's values in other bytes (spacing, field order)",
        ));
    }
    checks.extend(contract_checks(h, facts, &k));
    checks.push(over_keys(
        "history.payload_not_refused",
        Invariant::History,
        &|f| f.accepted_other_payload,
        "keys reused with a changed payload and not refused",
    ));
    checks.push(over_keys(
        "duplicate_settlement.double_submit",
        Invariant::DuplicateSettlement,
        &|f| f.persona == Persona::DoubleSubmit && f.fresh_commits > 1,
        "concurrent double submits that both committed fresh",
    ));
    // A run in which no request got a fresh business answer tested nothing: every request
    // was refused, failed, or replayed a purchase settled before the run. Never valid.
    let fresh = facts.iter().filter(|f| f.has_fresh).count() as u64;
    checks.push(if fresh > 0 {
        Check::figure(
            "run.exercised",
            Invariant::History,
            fresh,
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
                facts.len()
            ),
        )
    });
    let open: Vec<&KeyFacts> = facts.iter().filter(|f| f.indeterminate()).collect();
    checks.push(Check::undecided(
        "history.unresolved",
        Invariant::History,
        open.len() as u64,
        open.iter().map(|f| k(f)).collect(),
        "keys whose outcome no client learned",
    ));
    checks
}

/// Per logical purchase, committed keys; a key rotator's duplicates are its own cost.
fn per_purchase(
    h: &Header,
    facts: &[KeyFacts],
    committed: impl Fn(&KeyFacts) -> bool,
    source: &str,
) -> Vec<Check> {
    let mut by_purchase: HashMap<(u32, u16), (u32, Persona)> = HashMap::new();
    for f in facts.iter().filter(|f| committed(f)) {
        let e = by_purchase
            .entry((f.id.0, f.id.1))
            .or_insert((0, f.persona));
        e.0 += 1;
    }
    let mut client = Vec::new();
    let mut kernel = Vec::new();
    for ((agent, purchase), (n, persona)) in by_purchase {
        if n > 1 {
            let name = format!("{}-{agent}-{purchase}", h.key_prefix);
            if persona == Persona::KeyRotator {
                client.push(name);
            } else {
                kernel.push(name);
            }
        }
    }
    client.sort();
    kernel.sort();
    vec![
        Check::violations(
            "duplicate_settlement.per_purchase",
            Invariant::DuplicateSettlement,
            kernel.len() as u64,
            kernel,
            format!("purchases settled more than once ({source}), not by a key rotator"),
        ),
        Check::figure(
            "duplicate_settlement.per_purchase_client",
            Invariant::DuplicateSettlement,
            client.len() as u64,
            client,
            "purchases a key_rotator paid for twice: the anti-pattern's cost, not a kernel fault",
        ),
    ]
}

/// Without the database: interval checks against what the scenario declared.
/// Without a database: the units clients were told committed, per item, against the
/// declared stock.
pub fn acknowledged_sales(h: &Header, facts: &[KeyFacts]) -> Vec<super::verdict::ItemSold> {
    let mut sold: Vec<(i64, u64)> = vec![(0, 0); h.items.len()];
    for f in facts.iter().filter(|f| f.acked_commit) {
        if let Some(s) = sold.get_mut(usize::from(f.item)) {
            s.0 += f.quantity;
            s.1 += 1;
        }
    }
    h.items
        .iter()
        .zip(sold)
        .map(|(item, (units, purchases))| super::verdict::ItemSold {
            item: item.clone(),
            units,
            stock: h.stock_per_item,
            purchases,
            from: "acknowledged answers".into(),
        })
        .collect()
}

pub fn declared(h: &Header, facts: &[KeyFacts]) -> Vec<Check> {
    let mut units: HashMap<u16, i64> = HashMap::new();
    let mut spend: HashMap<u32, i64> = HashMap::new();
    for f in facts.iter().filter(|f| f.acked_commit) {
        *units.entry(f.item).or_default() += f.quantity;
        *spend.entry(f.mandate).or_default() += f.amount_minor;
    }
    let name_item = |i: &u16| h.items.get(usize::from(*i)).cloned().unwrap_or_default();
    let name_mandate = |m: &u32| h.mandates.get(*m as usize).cloned().unwrap_or_default();
    let mut over_stock: Vec<(String, i64)> = units
        .iter()
        .filter(|(_, u)| **u > h.stock_per_item)
        .map(|(i, u)| (name_item(i), u - h.stock_per_item))
        .collect();
    over_stock.sort();
    // Counted in units sold past the declared stock, the figure an oversell is.
    let oversold_units: i64 = over_stock.iter().map(|(_, n)| n).sum();
    let over_stock: Vec<String> = over_stock
        .into_iter()
        .map(|(item, n)| format!("{item} (+{n} units)"))
        .collect();
    let over_cap: Vec<String> = spend
        .iter()
        .filter(|(_, s)| **s > h.cap_per_mandate_minor)
        .map(|(m, _)| name_mandate(m))
        .collect();
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
    ];
    let proven: Vec<String> = facts
        .iter()
        .filter(|f| f.false_failure_proven())
        .map(|f| key(&h.key_prefix, f.id.0, f.id.1, f.id.2))
        .collect();
    checks.push(Check::violations(
        "history.false_failure",
        Invariant::History,
        proven.len() as u64,
        proven.into_iter().take(super::MAX_EXAMPLES).collect(),
        FALSE_FAILURE,
    ));
    checks.extend(per_purchase(h, facts, |f| f.acked_commit, "acknowledged"));
    checks
}

const FALSE_FAILURE: &str = "keys that committed although a request said nothing was left behind \
     (every request failed, or a later replay proves the failure false)";

/// The `contract.*` family: answers that broke the contract, by kind, with the first
/// examples the run kept in words (status, key, body excerpt), else keys; and answers
/// repeated without `replayed: true`.
fn contract_checks(h: &Header, facts: &[KeyFacts], k: &dyn Fn(&KeyFacts) -> String) -> Vec<Check> {
    let mut checks = Vec::new();
    for (i, v) in Violation::ALL.into_iter().enumerate() {
        let hits: Vec<&KeyFacts> = facts
            .iter()
            .filter(|f| f.violations & (1 << i) != 0)
            .collect();
        let count = hits.len() as u64;
        let mut examples: Vec<String> = h
            .contract_examples
            .iter()
            .filter(|e| e.starts_with(v.name()))
            .take(super::MAX_EXAMPLES)
            .cloned()
            .collect();
        if examples.is_empty() {
            examples = hits
                .iter()
                .take(super::MAX_EXAMPLES)
                .map(|f| k(f))
                .collect();
        }
        checks.push(Check::violations(
            CONTRACT_CHECKS[i],
            Invariant::Contract,
            count,
            examples,
            v.describe(),
        ));
    }
    let unmarked: Vec<&KeyFacts> = facts.iter().filter(|f| f.replay_not_marked).collect();
    checks.push(Check::violations(
        "contract.replay_not_marked",
        Invariant::Contract,
        unmarked.len() as u64,
        unmarked
            .iter()
            .take(super::MAX_EXAMPLES)
            .map(|f| k(f))
            .collect(),
        "keys answered again with the same answer but `replayed: false`",
    ));
    checks
}

/// The check of each `Violation`, in `Violation::ALL` order.
pub const CONTRACT_CHECKS: [&str; 5] = [
    "contract.unparseable",
    "contract.missing_field",
    "contract.float_money",
    "contract.status_mismatch",
    "contract.payload_mismatch",
];

/// With the database: the client's view against the rows.
pub fn against_db(h: &Header, facts: &[KeyFacts], all: &Intents, cut: Option<&Cut>) -> Vec<Check> {
    let intents = &all.rows;
    let prefix = h.key_prefix.as_str();
    let k = |id: KeyId| key(&h.key_prefix, id.0, id.1, id.2);
    let mut lost = Vec::new();
    let mut phantom = Vec::new();
    let mut false_failure = Vec::new();
    let mut mismatch = Vec::new();
    let mut wrong_payload = Vec::new();
    let mut committed_ids: Vec<KeyId> = Vec::new();
    // Keys with several intents: the duplicate-settlement checks' finding; the interval
    // check leaves them out rather than count the same fault twice.
    let mut multi: Vec<KeyId> = Vec::new();
    // Merge-join the two sorted sides.
    let (mut i, mut j) = (0, 0);
    while i < facts.len() || j < intents.len() {
        let f = facts.get(i);
        let d = intents.get(j);
        match (f, d) {
            (Some(f), Some(d)) if d.id == Some(f.id) => {
                let mut n = 1;
                while intents.get(j + n).is_some_and(|x| x.id == Some(f.id)) {
                    n += 1;
                }
                if n > 1 {
                    multi.push(f.id);
                }
                let rows = &intents[j..j + n];
                let committed = rows.iter().any(|x| x.committed);
                if f.acked_commit && !committed {
                    lost.push(k(f.id));
                }
                if committed && f.all_failed || f.false_failure_proven() {
                    false_failure.push(k(f.id));
                }
                // Several intents under one key are the state check's to count.
                if n == 1 && f.ok_hash != 0 && f.ok_hash != d.snapshot_hash {
                    mismatch.push(k(f.id));
                }
                if f.acked
                    && rows
                        .iter()
                        .any(|x| x.quantity != f.quantity || x.amount_minor != f.amount_minor)
                {
                    wrong_payload.push(k(f.id));
                }
                if committed {
                    committed_ids.push(f.id);
                }
                j += n;
                i += 1;
            }
            (Some(f), Some(d)) if d.id.is_some_and(|id| id < f.id) => {
                phantom.push(d.key(prefix));
                j += 1;
            }
            (Some(f), _) => {
                if f.acked_commit {
                    lost.push(k(f.id));
                }
                i += 1;
            }
            (None, Some(d)) => {
                phantom.push(d.key(prefix));
                j += 1;
            }
            (None, None) => break,
        }
    }

    // Interval per item: acknowledged <= claimed <= acknowledged + indeterminate.
    let mut acked: HashMap<String, i64> = HashMap::new();
    let mut open: HashMap<String, i64> = HashMap::new();
    let is_multi = |id: &Option<KeyId>| id.is_some_and(|id| multi.binary_search(&id).is_ok());
    for f in facts.iter().filter(|f| !is_multi(&Some(f.id))) {
        let item = h
            .items
            .get(usize::from(f.item))
            .cloned()
            .unwrap_or_default();
        if f.acked_commit {
            *acked.entry(item).or_default() += f.quantity;
        } else if f.indeterminate() {
            *open.entry(item).or_default() += f.quantity;
        }
    }
    let mut claimed: HashMap<String, i64> = HashMap::new();
    for d in intents.iter().filter(|d| d.committed && !is_multi(&d.id)) {
        let item = all.items.get(d.item as usize).cloned().unwrap_or_default();
        *claimed.entry(item).or_default() += d.quantity;
    }
    let mut items: Vec<&String> = acked
        .keys()
        .chain(claimed.keys())
        .chain(open.keys())
        .collect();
    items.sort();
    items.dedup();
    let outside: Vec<String> = items
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
        Check::violations(
            "history.lost_commit",
            Invariant::History,
            lost.len() as u64,
            lost,
            "acknowledged commits missing from the database",
        ),
        match cut {
            // A request in flight when the history was cut left no record: its intent
            // cannot be told from a phantom.
            Some(cut) if !phantom.is_empty() => Check::unknown(
                "history.phantom_commit",
                Invariant::History,
                format!(
                    "{} intents of this run's keys have no request in the history, which ends at byte {}: in flight when the run was cut short, or phantoms (first: {})",
                    phantom.len(),
                    cut.offset,
                    phantom.first().map_or("", String::as_str)
                ),
            ),
            _ => Check::violations(
                "history.phantom_commit",
                Invariant::History,
                phantom.len() as u64,
                phantom,
                "intents whose key no client sent",
            ),
        },
        Check::violations(
            "history.false_failure",
            Invariant::History,
            false_failure.len() as u64,
            false_failure,
            FALSE_FAILURE,
        ),
        Check::violations(
            "history.snapshot_mismatch",
            Invariant::History,
            mismatch.len() as u64,
            mismatch,
            "answers that differ from the stored snapshot",
        ),
        Check::violations(
            "history.payload_mismatch",
            Invariant::History,
            wrong_payload.len() as u64,
            wrong_payload,
            "stored payloads that differ from the acknowledged one",
        ),
        Check::violations(
            "history.interval",
            Invariant::History,
            outside.len() as u64,
            outside,
            "items where claimed units fall outside [acknowledged, acknowledged + indeterminate]",
        ),
    ];
    committed_ids.sort();
    committed_ids.dedup();
    let committed_set = |f: &KeyFacts| committed_ids.binary_search(&f.id).is_ok();
    checks.extend(per_purchase(h, facts, committed_set, "in the database"));
    checks
}
