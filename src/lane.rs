//! Which generator lane the current thread is.
//!
//! Over HTTP the agents run on one single-threaded runtime per core (a lane). Connection
//! pools keep one idle list per lane, and regions stripe their in-flight gauges by lane,
//! so neither shares a cache line or a connection across threads. A leaf: `run` sets the
//! lane when it starts a lane thread; `gateway` reads it.

use std::cell::Cell;

/// Most lanes anything keeps per-lane state for.
pub const MAX_LANES: usize = 64;

thread_local! {
    static LANE: Cell<usize> = const { Cell::new(0) };
}

/// This thread's generator lane (0 off the lanes).
pub fn lane() -> usize {
    LANE.with(Cell::get)
}

/// Mark this thread as generator lane `lane`: its connections are kept apart from other
/// lanes', so a connection is only ever used on the thread (runtime) that drives it.
pub fn set_lane(lane: usize) {
    LANE.with(|l| l.set(lane % MAX_LANES));
}
