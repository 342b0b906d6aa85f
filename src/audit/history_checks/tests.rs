//! The tally's tests: what it finds for a part, and that parts added up find what one
//! tally of them all finds.

use super::*;

/// A key rotator's purchase: key 0 cut, then read absent; key 1 committed. The lookup
/// settles key 0 only while no other key of the purchase committed.
#[test]
fn a_key_read_absent_stays_open_when_another_key_of_its_purchase_committed() {
    use crate::history::{Code, Op, Record};
    let rec = |variant: u8, invoke_ms: u32, code: Code, op: Op| Record {
        agent: 3,
        variant,
        invoke_ms,
        complete_ms: invoke_ms + 5,
        code,
        op,
        persona: Persona::KeyRotator,
        response_hash: if code == Code::Committed { 11 } else { 0 },
        semantic_hash: if code == Code::Committed { 11 } else { 0 },
        execution: if code == Code::Committed { 7 } else { 0 },
        ..Record::for_tests()
    };
    let unresolved = |records: &mut Vec<Record>| {
        let mut facts = Vec::new();
        super::super::facts::key_facts(records, true, &mut facts);
        let mut tally = Tally::default();
        tally.part(&Header::for_tests(), &facts, None);
        tally.unresolved.count()
    };
    let cut_then_absent = [
        rec(0, 0, Code::Timeout, Op::Commit),
        rec(0, 90, Code::Absent, Op::FinalRead),
    ];
    assert_eq!(unresolved(&mut cut_then_absent.to_vec()), 0);
    let mut rotated = cut_then_absent.to_vec();
    rotated.push(rec(1, 20, Code::Committed, Op::Commit));
    assert_eq!(unresolved(&mut rotated), 1);
}

/// Without the database, two executions under one key are a duplicate settlement only
/// when two of them committed, or a request of the key went unanswered (it may have);
/// a decline executed again (a server that did not keep it), or a commit answered
/// later by a new decline, is a key not kept: no second charge.
#[test]
fn a_key_executed_twice_is_a_duplicate_settlement_only_when_both_committed() {
    use crate::history::{Code, Record};
    let rec = |agent: u32, invoke_ms: u32, code: Code, execution: u64| Record {
        agent,
        invoke_ms,
        complete_ms: invoke_ms + 5,
        code,
        response_hash: execution * 10 + code as u64,
        semantic_hash: execution * 10 + code as u64,
        execution,
        ..Record::for_tests()
    };
    let mut records = vec![
        // Agent 1: two declines, two ids.
        rec(1, 0, Code::OutOfStock, 7),
        rec(1, 10, Code::OutOfStock, 8),
        // Agent 2: a decline, then a commit under another id.
        rec(2, 0, Code::OutOfStock, 9),
        rec(2, 10, Code::Committed, 10),
        // Agent 3: two commits, two ids: charged twice.
        rec(3, 0, Code::Committed, 11),
        rec(3, 10, Code::Committed, 12),
        // Agent 4: a commit, a request never answered, a decline under another id: the
        // unanswered one may have committed too.
        rec(4, 0, Code::Committed, 13),
        rec(4, 10, Code::Timeout, 0),
        rec(4, 20, Code::OutOfStock, 14),
        // Agent 5: two declines and one request never answered: one charge at most.
        rec(5, 0, Code::OutOfStock, 15),
        rec(5, 10, Code::Timeout, 0),
        rec(5, 20, Code::OutOfStock, 16),
        // Agent 6: a commit, a 503 that promised nothing, a decline under another id.
        rec(6, 0, Code::Committed, 17),
        rec(6, 10, Code::Unavailable, 0),
        rec(6, 20, Code::OutOfStock, 18),
    ];
    let mut facts = Vec::new();
    super::super::facts::key_facts(&mut records, true, &mut facts);
    let mut tally = Tally::default();
    tally.part(&Header::for_tests(), &facts, None);
    let ids = |f: &Firsts<KeyId>| f.examples().map(|k| k.0).collect::<Vec<_>>();
    assert_eq!(ids(&tally.key_not_kept), [1, 2, 5]);
    assert_eq!(ids(&tally.key_executions), [3, 4, 6]);
    // With the database holding both intents of each, the rows decide: duplicates.
    let intents: Vec<PartIntent> = [1u32, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6]
        .iter()
        .map(|&agent| PartIntent {
            id: (agent, 0, 0),
            committed: false,
            quantity: 1,
            amount_minor: 0,
            snapshot_hash: 0,
            item: 0,
        })
        .collect();
    let mut tally = Tally::default();
    tally.part(&Header::for_tests(), &facts, Some(&intents));
    assert_eq!(tally.key_not_kept.count(), 0);
    assert_eq!(ids(&tally.key_executions), [1, 2, 3, 4, 5, 6]);
}

/// Parts tallied apart and added up (`absorb`) find what one tally of them all finds:
/// every check, count and example, against the database's intents and without them.
#[test]
#[should_panic(expected = "a key was tallied twice")]
fn a_key_tallied_in_two_parts_stops_the_audit() {
    // Two parts that each tallied one key as unresolved, but only one key in all: a
    // key split across parts, which the per-key figures cannot survive.
    let mut whole = Tally::default();
    let mut part = Tally {
        keys: 1,
        ..Tally::default()
    };
    part.unresolved.add((1, 0, 0));
    whole.absorb(part);
    let mut again = Tally::default();
    again.unresolved.add((1, 0, 0));
    whole.absorb(again);
}

#[test]
fn tallies_added_up_equal_one_tally_of_every_part() {
    use crate::history::{Code, Ending, Record};
    let records: Vec<Record> = (0..60u32)
        .flat_map(|agent| {
            let code = [Code::Committed, Code::OutOfStock, Code::Timeout][agent as usize % 3];
            let answered = code != Code::Timeout;
            let hash = if answered { u64::from(agent) + 1 } else { 0 };
            let first = Record {
                agent,
                item: (agent % 2) as u16,
                mandate: agent % 4,
                quantity: (1 + agent % 3) as u16,
                code,
                response_hash: hash,
                semantic_hash: hash,
                execution: hash,
                ..Record::for_tests()
            };
            // Every fifth agent sends twice; every seventh's second answer names
            // another execution, so the examples have something to keep.
            let twin = Record {
                seq: 1,
                execution: if agent % 7 == 0 { hash + 1000 } else { hash },
                // Asked for after the first was answered.
                invoke_ms: first.complete_ms + 1,
                complete_ms: first.complete_ms + 6,
                ..first
            };
            std::iter::once(first).chain((agent % 5 == 0).then_some(twin))
        })
        .collect();
    let intents: Vec<PartIntent> = (0..60u32)
        .filter(|a| a % 3 != 1)
        .map(|agent| PartIntent {
            id: (agent, 0, 0),
            committed: agent % 3 == 0 || agent % 4 == 0,
            quantity: i64::from(1 + agent % 3),
            amount_minor: 2500,
            snapshot_hash: u64::from(agent) + 1,
            item: agent % 2,
        })
        .collect();
    let mut h = Header::for_tests();
    h.items = vec!["i".into(), "j".into()];
    let tally_of = |records: &[Record], intents: &[PartIntent]| {
        let (mut records, mut facts) = (records.to_vec(), Vec::new());
        super::super::facts::key_facts(&mut records, true, &mut facts);
        let mut t = Tally::default();
        t.part(&h, &facts, Some(intents));
        t
    };
    // Every field, the maps in key order (a map's own order depends on its history).
    let findings = |mut t: Tally| {
        fn sorted<K: Ord + std::fmt::Debug, V: std::fmt::Debug>(m: &mut HashMap<K, V>) -> String {
            let text = format!(
                "{:?}",
                m.iter().collect::<std::collections::BTreeMap<_, _>>()
            );
            m.clear();
            text
        }
        let maps = [
            sorted(&mut t.acked_units),
            sorted(&mut t.acked_spend),
            sorted(&mut t.interval_acked),
            sorted(&mut t.interval_open),
            sorted(&mut t.interval_claimed),
            sorted(&mut t.phantom_claimed),
        ];
        let checks = format!("{:?}", t.history_only(&h, &Ending::default()));
        format!("{t:?}\n{maps:?}\n{checks}")
    };
    let whole = tally_of(&records, &intents);
    // Three parts by agent, as `parts` splits them (an agent's keys in one part).
    let mut added = Tally::default();
    for part in [0..20u32, 20..45, 45..60] {
        let rs: Vec<Record> = records
            .iter()
            .filter(|r| part.contains(&r.agent))
            .copied()
            .collect();
        let ds: Vec<PartIntent> = intents
            .iter()
            .filter(|d| part.contains(&d.id.0))
            .copied()
            .collect();
        added.absorb(tally_of(&rs, &ds));
    }
    // Something to add up: findings with examples, and units on both items.
    assert!(
        whole.unresolved.count() > 10
            && whole.replay_not_marked.count() > 0
            && whole.interval_claimed.len() == 2,
        "{whole:?}"
    );
    assert_eq!(findings(added), findings(whole));
}

#[test]
fn our_phantoms_come_before_foreign_ones() {
    assert!(PhantomKey::Ours((u32::MAX, 0, 0)) < PhantomKey::Foreign("a".into()));
}
