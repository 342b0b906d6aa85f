//! Requests a region has been sent and has not answered yet: a gauge the region keeps
//! itself, so the agent's path to a region makes no call to count them.
//!
//! The gauge is striped by generator lane, each stripe on its own cache line: two lanes
//! never bounce one counter between their cores on every request. Invariant: a request is
//! counted from the moment it enters the region until its `Counted` is dropped, however it
//! ends (answered, timed out, or dropped with its future by a crashing client), so the
//! gauge returns to zero when nothing is in flight.

use std::sync::atomic::{AtomicI64, Ordering};

/// Stripes per region (lanes past this share a stripe).
const STRIPES: usize = 16;

#[repr(align(64))]
struct Padded(AtomicI64);

/// One region's requests in flight.
pub struct InFlight {
    stripes: [Padded; STRIPES],
}

/// One request counted in flight; dropping it ends the count.
pub struct Counted<'a> {
    stripe: &'a AtomicI64,
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.stripe.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Default for InFlight {
    fn default() -> InFlight {
        InFlight {
            stripes: std::array::from_fn(|_| Padded(AtomicI64::new(0))),
        }
    }
}

impl InFlight {
    /// A request enters: counted until the returned guard is dropped.
    pub fn enter(&self) -> Counted<'_> {
        let stripe = &self.stripes[crate::lane::lane() % STRIPES].0;
        stripe.fetch_add(1, Ordering::Relaxed);
        Counted { stripe }
    }

    /// Requests in flight now (a sum over the stripes: each is exact, the sum a moment's).
    pub fn now(&self) -> i64 {
        self.stripes
            .iter()
            .map(|p| p.0.load(Ordering::Relaxed))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_counts_until_its_guard_is_dropped_on_any_lane() {
        let g = InFlight::default();
        let first = g.enter();
        // A guard taken on another lane ends on its own stripe, wherever it is dropped.
        let other = std::thread::scope(|s| {
            s.spawn(|| {
                crate::lane::set_lane(5);
                g.enter()
            })
            .join()
            .expect("lane thread")
        });
        assert_eq!(g.now(), 2);
        drop(first);
        assert_eq!(g.now(), 1);
        drop(other);
        assert_eq!(g.now(), 0);
    }
}
