//! The facts' tests: what one key's records say, case by case.

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

fn rec(seq: u8, invoke_ms: u32, code: Code, execution: u64, replayed: bool) -> Record {
    let answered = code.kind() == Kind::Ok;
    let hash = if answered {
        execution * 10 + u64::from(code as u8)
    } else {
        0
    };
    Record {
        agent: 1,
        invoke_ms,
        complete_ms: invoke_ms + 5,
        response_hash: hash,
        semantic_hash: hash,
        code,
        replayed,
        seq,
        execution: if answered { execution } else { 0 },
        ..Record::for_tests()
    }
}

fn facts(records: &[Record], marked: bool) -> KeyFacts {
    let mut rs = records.to_vec();
    let mut out = Vec::new();
    key_facts(&mut rs, marked, &mut out);
    assert_eq!(out.len(), 1);
    out.remove(0)
}

/// A final read at 90 ms (after the agent's own requests) answering `code`.
fn final_read(code: Code, execution: u64, replayed: bool) -> Record {
    Record {
        op: Op::FinalRead,
        seq: 255,
        ..rec(0, 90, code, execution, replayed)
    }
}

#[test]
fn an_answer_in_breach_of_the_contract_still_names_its_execution() {
    // A commit, then a retry executed again and answered with a wrong status: the
    // violation's id is a second execution.
    let breach = |invoke_ms: u32, execution: u64| Record {
        code: Code::Violation,
        detail: crate::history::Violation::StatusMismatch as u8,
        execution,
        ..rec(0, invoke_ms, Code::Timeout, 0, false)
    };
    let twice = facts(&[rec(0, 0, Code::Committed, 7, false), breach(10, 8)], true);
    assert_eq!(twice.executions, 2);
    let once = facts(&[rec(0, 0, Code::Committed, 7, false), breach(10, 7)], true);
    assert_eq!(once.executions, 1, "the same id: the same execution");
    let unread = facts(&[rec(0, 0, Code::Committed, 7, false), breach(10, 0)], true);
    assert_eq!(unread.executions, 1, "no id read: no evidence");
    // What a named breach did is unknown: a possible charge, unless a commit named it.
    assert_eq!((twice.settlements, twice.unseen), (1, 1));
    assert_eq!((once.settlements, once.unseen), (1, 0));
    assert_eq!(
        unread.unseen, 1,
        "a breach without an id may hide an execution"
    );
    let later_committed = facts(
        &[
            rec(0, 0, Code::OutOfStock, 7, false),
            breach(10, 8),
            rec(0, 20, Code::Committed, 8, true),
        ],
        true,
    );
    assert_eq!(
        (
            later_committed.executions,
            later_committed.settlements,
            later_committed.unseen
        ),
        (2, 1, 0)
    );
}

#[test]
fn settlements_count_the_executions_that_committed() {
    let two_declines = facts(
        &[
            rec(0, 0, Code::OutOfStock, 7, false),
            rec(0, 10, Code::OutOfStock, 8, false),
        ],
        false,
    );
    assert_eq!((two_declines.executions, two_declines.settlements), (2, 0));
    let then_commit = facts(
        &[
            rec(0, 0, Code::OutOfStock, 7, false),
            rec(0, 10, Code::Committed, 8, false),
            rec(0, 20, Code::Committed, 8, true),
        ],
        true,
    );
    assert_eq!((then_commit.executions, then_commit.settlements), (2, 1));
    let twice = facts(
        &[
            rec(0, 0, Code::Committed, 7, false),
            rec(0, 10, Code::Committed, 8, false),
        ],
        false,
    );
    assert_eq!((twice.executions, twice.settlements), (2, 2));
}

#[test]
fn one_id_is_one_execution_whatever_the_flags_say() {
    // A replay the body did not mark (a middleware marks it with a header, or not at
    // all): the same intent id, so one execution.
    let f = facts(
        &[
            rec(0, 0, Code::Committed, 7, false),
            rec(0, 1, Code::Committed, 7, false),
        ],
        false,
    );
    assert_eq!(f.executions, 1);
    assert!(!f.replay_not_marked, "no marker, no finding");
    // Under a marker, the same two answers, the second asked for after the first was
    // answered, are an unmarked replay: a contract finding, never a second execution.
    let f = facts(
        &[
            rec(0, 0, Code::Committed, 7, false),
            rec(0, 10, Code::Committed, 7, false),
        ],
        true,
    );
    assert_eq!(f.executions, 1);
    assert!(f.replay_not_marked);
    // Asked for while the first ran: a server that joins the twin to the running
    // execution answers both from it, and neither answer is a replay.
    let f = facts(
        &[
            rec(0, 0, Code::Committed, 7, false),
            rec(0, 1, Code::Committed, 7, false),
        ],
        true,
    );
    assert_eq!(f.executions, 1);
    assert!(!f.replay_not_marked, "twins in flight together");
    // Two ids: executed twice, however both were marked.
    let f = facts(
        &[
            rec(0, 0, Code::Committed, 7, true),
            rec(0, 1, Code::Committed, 8, true),
        ],
        true,
    );
    assert_eq!(f.executions, 2);
    assert!(
        !f.hash_mismatch,
        "the duplicate check's finding, not a mismatch"
    );
    // A commit, then a decline under another id: executed again (the server forgot
    // its key), not a lost write of the first execution.
    let f = facts(
        &[
            rec(0, 0, Code::Committed, 7, false),
            rec(1, 9, Code::OutOfStock, 8, false),
        ],
        true,
    );
    assert_eq!(f.executions, 2);
    assert!(!f.lost_write && !f.hash_mismatch);
}

#[test]
fn a_decline_later_committed_is_false_and_a_commit_later_declined_is_lost() {
    let f = facts(
        &[
            rec(0, 0, Code::OutOfStock, 7, false),
            final_read(Code::Committed, 7, true),
        ],
        true,
    );
    assert!(f.false_decline && !f.hash_mismatch && !f.lost_write);
    let f = facts(
        &[
            rec(0, 0, Code::Committed, 7, false),
            final_read(Code::OutOfStock, 7, false),
        ],
        true,
    );
    assert!(f.lost_write && !f.false_decline && !f.hash_mismatch);
    let f = facts(
        &[
            rec(0, 0, Code::Committed, 7, false),
            final_read(Code::Absent, 0, false),
        ],
        true,
    );
    assert!(f.lost_write);
    // A decline and a commit of one execution in flight together have no order: one
    // is false, the history cannot say which (a mismatch), until a later read does.
    let together = [
        rec(0, 0, Code::Committed, 7, true),
        rec(0, 1, Code::OutOfStock, 7, false),
    ];
    let f = facts(&together, true);
    assert!(!f.lost_write && !f.false_decline && f.hash_mismatch);
    let mut later = together.to_vec();
    later.push(final_read(Code::Committed, 7, true));
    let f = facts(&later, true);
    assert!(f.false_decline && !f.lost_write && !f.hash_mismatch);
    // Two declines under two ids: executed again.
    let f = facts(
        &[
            rec(0, 0, Code::OutOfStock, 7, false),
            rec(1, 9, Code::OutOfStock, 8, false),
        ],
        false,
    );
    assert!(!f.hash_mismatch && f.executions == 2);
    // One execution answered with other values: a mismatch.
    let mut other = rec(1, 9, Code::OutOfStock, 7, false);
    other.response_hash ^= 1;
    other.semantic_hash ^= 1;
    let f = facts(&[rec(0, 0, Code::OutOfStock, 7, false), other], false);
    assert!(f.hash_mismatch && f.executions == 1);
}

#[test]
fn a_first_answer_marked_replayed_is_judged_only_when_nothing_ran_before() {
    let alone = [rec(0, 0, Code::Committed, 7, true)];
    assert!(facts(&alone, true).fresh_marked_replayed);
    assert!(!facts(&alone, false).fresh_marked_replayed, "no marker");
    // A double submit: the twin was in flight, either may have executed first.
    let twins = [
        rec(0, 0, Code::Committed, 7, true),
        rec(0, 1, Code::Committed, 7, false),
    ];
    assert!(!facts(&twins, true).fresh_marked_replayed);
    // A first request that timed out may have executed: its retry's replay is honest.
    let retried = [
        rec(0, 0, Code::Timeout, 0, false),
        rec(1, 50, Code::Committed, 7, true),
    ];
    assert!(!facts(&retried, true).fresh_marked_replayed);
}

#[test]
fn a_false_failure_is_proven_by_a_marked_commit_after_nothing_could_commit() {
    let lied = [
        rec(0, 0, Code::RetryExhausted, 0, false),
        rec(1, 50, Code::Committed, 7, true),
    ];
    assert!(facts(&lied, true).false_failure_proven);
    let unsure = [
        rec(0, 0, Code::RetryExhausted, 0, false),
        rec(1, 20, Code::Timeout, 0, false),
        rec(2, 50, Code::Committed, 7, true),
    ];
    assert!(
        !facts(&unsure, true).false_failure_proven,
        "the timeout could have"
    );
    let fresh = [
        rec(0, 0, Code::RetryExhausted, 0, false),
        rec(1, 50, Code::Committed, 7, false),
    ];
    assert!(
        !facts(&fresh, true).false_failure_proven,
        "the retry executed it"
    );
}

#[test]
fn in_flight_keeps_a_key_open() {
    let f = facts(&[rec(0, 0, Code::InFlight, 0, false)], true);
    assert!(f.indeterminate(false));
}

#[test]
fn a_lookup_after_every_request_ended_that_finds_nothing_settles_the_key() {
    let lookup = |invoke_ms| Record {
        op: Op::FinalRead,
        ..rec(2, invoke_ms, Code::Absent, 0, false)
    };
    let cut = [rec(0, 0, Code::Timeout, 0, false), lookup(90)];
    let f = facts(&cut, true);
    assert!(f.read_absent && !f.indeterminate(false));
    assert!(f.may_have_executed(), "the interval keeps it open");
    // Another key of the purchase committed: the lookup settles nothing.
    assert!(f.indeterminate(true));
    // The lookup began before the cut request ended (its invoke 3, the request's end
    // 5): the request may have executed after the read.
    let overlapping = [rec(0, 0, Code::Timeout, 0, false), lookup(3)];
    assert!(facts(&overlapping, true).indeterminate(false));
    // Without a lookup the key stays open.
    assert!(facts(&cut[..1], true).indeterminate(false));
}
