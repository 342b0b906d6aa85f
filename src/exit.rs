//! Exit codes: a contract scripts and CI rely on (DESIGN.md "Outputs and exit codes").

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
