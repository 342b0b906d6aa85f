//! Which generator lane the current thread is.
//!
//! Over HTTP the agents run on one single-threaded runtime per core (a lane). Connection
//! pools keep one idle list per lane, and regions stripe their in-flight gauges by lane,
//! so neither shares a cache line or a connection across threads. Every thread off the
//! lanes (the main runtime: preflight, the conformance probe, final reads, a direct run's
//! agents) shares one more slot, `OFF_LANES`: a connection opened there is driven by the
//! main runtime's reactor (and an HTTP/2 connection's task runs there), so a lane must
//! never be handed one. A leaf: `run` sets the lane when it starts a lane thread;
//! `gateway` reads it.

use std::cell::Cell;

/// Most lanes anything keeps per-lane state for.
pub const MAX_LANES: usize = 64;

/// The slot of every thread that is not a lane.
pub const OFF_LANES: usize = MAX_LANES;

/// Slots per-lane state is kept in: one per lane and `OFF_LANES`.
pub const SLOTS: usize = MAX_LANES + 1;

thread_local! {
    static LANE: Cell<usize> = const { Cell::new(OFF_LANES) };
}

/// This thread's slot: its generator lane, or `OFF_LANES` off the lanes.
pub fn lane() -> usize {
    LANE.with(Cell::get)
}

/// Mark this thread as generator lane `lane`: its connections are kept apart from other
/// lanes', so a connection is only ever used on the thread (runtime) that drives it.
pub fn set_lane(lane: usize) {
    LANE.with(|l| l.set(lane % MAX_LANES));
}
