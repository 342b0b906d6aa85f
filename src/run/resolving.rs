//! The end-of-run resolution as it goes: advanced by `resolve`, read by the progress line
//! and the dashboard (through `World::resolving`).

use std::sync::atomic::{AtomicU64, Ordering};

/// The end-of-run replay as it goes.
#[derive(Debug, Default)]
pub struct Progress {
    /// Keys to resolve (0: the resolution has not started).
    pub keys: AtomicU64,
    pub settled: AtomicU64,
    pub unresolved: AtomicU64,
    /// When the budget ends, in ms since the run's start.
    pub deadline_ms: AtomicU64,
}

impl Progress {
    /// `resolving 1912 keys: 340 settled, 0 unresolved, 41 s left`, once it has started.
    pub fn line(&self, now_ms: u64) -> Option<String> {
        let keys = self.keys.load(Ordering::Relaxed);
        (keys > 0).then(|| {
            let left_s = self
                .deadline_ms
                .load(Ordering::Relaxed)
                .saturating_sub(now_ms)
                .div_ceil(1000);
            format!(
                "resolving {keys} indeterminate keys: {} settled, {} unresolved, {left_s} s left",
                self.settled.load(Ordering::Relaxed),
                self.unresolved.load(Ordering::Relaxed)
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_phase_is_said_once_it_has_started() {
        let p = Progress::default();
        assert_eq!(p.line(1_000), None);
        p.keys.store(1912, Ordering::Relaxed);
        p.settled.store(340, Ordering::Relaxed);
        p.deadline_ms.store(42_000, Ordering::Relaxed);
        assert_eq!(
            p.line(1_000).as_deref(),
            Some("resolving 1912 indeterminate keys: 340 settled, 0 unresolved, 41 s left")
        );
        assert!(p.line(50_000).is_some_and(|l| l.ends_with(", 0 s left")));
    }
}
