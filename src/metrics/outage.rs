//! What a fault did to each region's clients: from the fault's start, the first and last
//! request the service did not serve, the last request served before that first failure
//! (or the fault's start, when none was), and the first request sent after the first
//! failure that was served again (the region is back). Unavailability is the time from
//! the last served to the first served again: a client that times out learns of an outage
//! late, but nothing was served in between.
//!
//! Invariants: one window is open at a time (the fault timeline opens one at each fault's
//! start); before the first fault nothing is tracked; recording is a few relaxed atomics on
//! the region's own cache line, never a lock. "Served" means a business answer (committed
//! or declined); "not served" is `Code::is_outage` (refused, cut, silent, failing).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::history::{Kind, Record};

/// No time recorded yet.
const NONE: u32 = u32::MAX;

/// One region's window, on its own cache line.
#[repr(align(64))]
struct Window {
    errors: AtomicU64,
    first_error_ms: AtomicU32,
    last_error_ms: AtomicU32,
    /// One more than the last served completion before the first failure (0: none), so a
    /// plain `fetch_max` keeps it.
    served_until_next_ms: AtomicU32,
    recovered_ms: AtomicU32,
}

impl Window {
    fn new() -> Window {
        Window {
            errors: AtomicU64::new(0),
            first_error_ms: AtomicU32::new(NONE),
            last_error_ms: AtomicU32::new(0),
            served_until_next_ms: AtomicU32::new(0),
            recovered_ms: AtomicU32::new(NONE),
        }
    }

    fn reset(&self) {
        self.errors.store(0, Ordering::Relaxed);
        self.first_error_ms.store(NONE, Ordering::Relaxed);
        self.last_error_ms.store(0, Ordering::Relaxed);
        self.served_until_next_ms.store(0, Ordering::Relaxed);
        self.recovered_ms.store(NONE, Ordering::Relaxed);
    }
}

/// One region's figures for one window, in ms since the run started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outage {
    /// Requests the service did not serve in the window.
    pub errors: u64,
    pub first_error_ms: Option<u64>,
    pub last_error_ms: Option<u64>,
    /// The last request served before the first failure was answered here (the fault's
    /// start when none was); none while nothing failed.
    pub served_until_ms: Option<u64>,
    /// The first served request sent after the first failure was answered here.
    pub recovered_ms: Option<u64>,
    /// `recovered_ms - served_until_ms`: nothing was served in between. None while (or
    /// if) the region is not back.
    pub unavailable_ms: Option<u64>,
}

/// Every region's window.
pub struct Outages {
    opened_ms: AtomicU32,
    regions: Box<[Window]>,
}

impl Outages {
    pub fn new(regions: usize) -> Outages {
        Outages {
            opened_ms: AtomicU32::new(NONE),
            regions: (0..regions).map(|_| Window::new()).collect(),
        }
    }

    /// Start a new window at `now_ms` (a fault started): every region starts clean.
    pub fn open(&self, now_ms: u32) {
        for w in self.regions.iter() {
            w.reset();
        }
        self.opened_ms
            .store(now_ms.min(NONE - 1), Ordering::Release);
    }

    /// One request a client sent to the service and what became of it.
    pub fn observe(&self, r: &Record) {
        if r.complete_ms < self.opened_ms.load(Ordering::Acquire) {
            return;
        }
        let Some(w) = self.regions.get(usize::from(r.region)) else {
            return;
        };
        if r.code.is_outage() {
            w.errors.fetch_add(1, Ordering::Relaxed);
            w.first_error_ms.fetch_min(r.complete_ms, Ordering::Relaxed);
            w.last_error_ms.fetch_max(r.complete_ms, Ordering::Relaxed);
        } else if r.kind() == Kind::Ok {
            // Answers arrive out of order: each figure is a min or a max, and is written
            // only when it moves (once a millisecond at most, not once a request).
            let first = w.first_error_ms.load(Ordering::Relaxed);
            let next = r.complete_ms.saturating_add(1);
            if r.complete_ms < first && next > w.served_until_next_ms.load(Ordering::Relaxed) {
                w.served_until_next_ms.fetch_max(next, Ordering::Relaxed);
            }
            if first != NONE
                && r.invoke_ms >= first
                && r.complete_ms < w.recovered_ms.load(Ordering::Relaxed)
            {
                w.recovered_ms.fetch_min(r.complete_ms, Ordering::Relaxed);
            }
        }
    }

    /// The open window's figures, in region order (all empty before the first fault).
    pub fn read(&self) -> Vec<Outage> {
        let opened = self.opened_ms.load(Ordering::Acquire);
        self.regions
            .iter()
            .map(|w| {
                let errors = w.errors.load(Ordering::Relaxed);
                let at = |v: u32| (v != NONE).then_some(u64::from(v));
                let first = at(w.first_error_ms.load(Ordering::Relaxed));
                let recovered = at(w.recovered_ms.load(Ordering::Relaxed));
                let served_until =
                    first.map(|_| match w.served_until_next_ms.load(Ordering::Relaxed) {
                        0 => u64::from(opened),
                        next => u64::from(next - 1),
                    });
                Outage {
                    errors,
                    first_error_ms: first,
                    last_error_ms: (errors > 0)
                        .then(|| u64::from(w.last_error_ms.load(Ordering::Relaxed))),
                    served_until_ms: served_until,
                    recovered_ms: recovered,
                    unavailable_ms: served_until
                        .zip(recovered)
                        .map(|(from, back)| back.saturating_sub(from)),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Code;

    fn rec(region: u8, code: Code, invoke_ms: u32, complete_ms: u32) -> Record {
        Record {
            invoke_ms,
            complete_ms,
            ..super::super::tests::rec(code, 1, region)
        }
    }

    #[test]
    fn nothing_is_tracked_before_the_first_window() {
        let o = Outages::new(1);
        o.observe(&rec(0, Code::Reset, 10, 20));
        assert_eq!(o.read(), vec![Outage::default()]);
    }

    #[test]
    fn a_window_runs_from_the_first_failure_to_the_first_request_served_after_it() {
        let o = Outages::new(2);
        o.observe(&rec(0, Code::Refused, 0, 50));
        o.open(100);
        // Sent before the first failure: it proves nothing about recovery, but the service
        // served it (the outage began later).
        o.observe(&rec(0, Code::Committed, 90, 150));
        o.observe(&rec(0, Code::Committed, 60, 140));
        o.observe(&rec(0, Code::Reset, 95, 200));
        o.observe(&rec(0, Code::Timeout, 120, 400));
        let down = o.read()[0];
        assert!(down.first_error_ms.is_some() && down.recovered_ms.is_none());
        // Sent before the first failure and answered after it: a straggler, not a recovery.
        o.observe(&rec(0, Code::Committed, 180, 500));
        // A decline is served too; sent after the first failure, it ends the window.
        o.observe(&rec(0, Code::OutOfStock, 250, 900));
        o.observe(&rec(0, Code::Committed, 300, 700));
        // A stale pooled connection fails later: counted, the window stays closed.
        o.observe(&rec(0, Code::Reset, 950, 1000));
        // Contention is an answer, not an outage.
        o.observe(&rec(1, Code::RetryExhausted, 100, 300));
        let read = o.read();
        assert_eq!(
            read[0],
            Outage {
                errors: 3,
                first_error_ms: Some(200),
                last_error_ms: Some(1000),
                served_until_ms: Some(150),
                recovered_ms: Some(700),
                unavailable_ms: Some(550),
            }
        );
        assert_eq!(read[1], Outage::default());
        // Nothing served since the fault started: the outage began with it.
        o.open(3000);
        o.observe(&rec(1, Code::Timeout, 3100, 6100));
        o.observe(&rec(1, Code::Committed, 6200, 8000));
        assert_eq!(
            (o.read()[1].served_until_ms, o.read()[1].unavailable_ms),
            (Some(3000), Some(5000))
        );
        // The next fault starts clean.
        o.open(2000);
        assert_eq!(o.read()[0], Outage::default());
    }
}
