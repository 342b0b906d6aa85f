//! Exit codes: a contract scripts and CI rely on (docs/design.md "Exit codes").

/// Every invariant held and every threshold passed.
pub const VALID: i32 = 0;
/// An invariant was violated.
pub const INVARIANT_VIOLATED: i32 = 1;
/// A threshold failed (invariants held).
pub const THRESHOLD_FAILED: i32 = 2;
/// The verdict is unknown (unresolved requests, a check that could not run) or the run
/// itself was invalid.
pub const UNKNOWN: i32 = 3;
/// The run was stopped early (Ctrl-C, the dashboard's `q`): the verdict covers only what
/// ran, and nothing invalid was found in it.
pub const STOPPED: i32 = 4;
/// Bad command line or scenario.
pub const USAGE: i32 = 64;
/// swarm itself failed (database unreachable, I/O error, bug).
pub const INTERNAL: i32 = 70;

/// The exit code of a verdict: invariants (1) win over thresholds (2), which win over
/// unknown (3). The one mapping every verb uses.
pub fn code(validity: crate::audit::Validity, thresholds_passed: bool) -> i32 {
    use crate::audit::Validity;
    match validity {
        Validity::Invalid => INVARIANT_VIOLATED,
        _ if !thresholds_passed => THRESHOLD_FAILED,
        Validity::Unknown => UNKNOWN,
        Validity::Valid => VALID,
    }
}

/// The exit code of a run: an invariant violated (1) is said even of a run stopped early;
/// otherwise a stopped run is `STOPPED` (4), whatever else held, so it never looks like a
/// finished one.
pub fn of_run(validity: crate::audit::Validity, thresholds_passed: bool, stopped: bool) -> i32 {
    match code(validity, thresholds_passed) {
        INVARIANT_VIOLATED => INVARIANT_VIOLATED,
        _ if stopped => STOPPED,
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Validity;

    #[test]
    fn invariants_win_over_thresholds_over_unknown() {
        assert_eq!(code(Validity::Invalid, false), 1);
        assert_eq!(code(Validity::Valid, false), 2);
        assert_eq!(code(Validity::Unknown, false), 2);
        assert_eq!(code(Validity::Unknown, true), 3);
        assert_eq!(code(Validity::Valid, true), 0);
    }

    #[test]
    fn a_stopped_run_never_exits_as_a_finished_one() {
        assert_eq!(of_run(Validity::Valid, true, true), STOPPED);
        assert_eq!(of_run(Validity::Unknown, false, true), STOPPED);
        assert_eq!(of_run(Validity::Invalid, true, true), INVARIANT_VIOLATED);
        assert_eq!(of_run(Validity::Valid, true, false), VALID);
    }
}
