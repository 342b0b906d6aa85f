//! `junit.xml`: one test case per invariant check and per threshold, so CI shows them, and
//! `run.complete`, an error when the run was stopped early (its verdict covers only what
//! ran, as its exit code 4 says).

use quick_junit::{NonSuccessKind, Report as Junit, TestCase, TestCaseStatus, TestSuite};

use super::Summary;
use crate::audit::Validity;

pub fn render(s: &Summary) -> std::io::Result<String> {
    let mut report = Junit::new(format!("swarm {}", s.scenario));
    let mut invariants = TestSuite::new("invariants");
    for c in &s.audit.checks {
        let status = match c.validity {
            Validity::Valid => TestCaseStatus::success(),
            Validity::Invalid => {
                let mut st = TestCaseStatus::non_success(NonSuccessKind::Failure);
                st.set_message(format!("{}: {} ({})", c.name, c.count, c.detail));
                st.set_description(format!("examples: {}", c.examples.join(", ")));
                st
            }
            Validity::Unknown => {
                let mut st = TestCaseStatus::non_success(NonSuccessKind::Error);
                st.set_message(format!("{}: undecided ({})", c.name, c.detail));
                st.set_description(format!("examples: {}", c.examples.join(", ")));
                st
            }
        };
        let mut case = TestCase::new(c.name.clone(), status);
        case.set_classname(c.invariant.name());
        invariants.add_test_case(case);
    }
    for name in &s.audit.skipped {
        let mut case = TestCase::new(name.clone(), TestCaseStatus::skipped());
        case.set_classname("not run");
        invariants.add_test_case(case);
    }
    report.add_test_suite(invariants);
    let mut conformance = TestSuite::new("conformance");
    for c in &s.conformance.checks {
        let c_ = &c.check;
        let status = match (c_.validity, c_.count) {
            (Validity::Invalid, _) => {
                let mut st = TestCaseStatus::non_success(NonSuccessKind::Failure);
                st.set_message(format!("{}: {}", c_.name, c_.detail));
                st.set_description(c.rule.clone());
                st
            }
            // A broken promise that executed nothing twice: a warning, not a failure.
            (_, 0) => TestCaseStatus::success(),
            _ => {
                let mut st = TestCaseStatus::success();
                st.set_message(format!("warning: {}", c_.detail));
                st
            }
        };
        let mut case = TestCase::new(c_.name.clone(), status);
        case.set_classname("conformance");
        conformance.add_test_case(case);
    }
    report.add_test_suite(conformance);
    let mut thresholds = TestSuite::new("thresholds");
    for t in &s.thresholds {
        let status = if t.passed {
            TestCaseStatus::success()
        } else {
            let mut st = TestCaseStatus::non_success(NonSuccessKind::Failure);
            st.set_message(format!("{} {}: observed {}", t.metric, t.rule, t.observed));
            st
        };
        let mut case = TestCase::new(format!("{} {}", t.metric, t.rule), status);
        case.set_classname("threshold");
        thresholds.add_test_case(case);
    }
    report.add_test_suite(thresholds);
    let mut run = TestSuite::new("run");
    let status = match s.stopped_note() {
        Some(note) => {
            let mut st = TestCaseStatus::non_success(NonSuccessKind::Error);
            st.set_message(note);
            st
        }
        None => TestCaseStatus::success(),
    };
    let mut case = TestCase::new("run.complete", status);
    case.set_classname("run");
    run.add_test_case(case);
    report.add_test_suite(run);
    report.to_string().map_err(std::io::Error::other)
}
