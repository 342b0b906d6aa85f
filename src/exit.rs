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
}
