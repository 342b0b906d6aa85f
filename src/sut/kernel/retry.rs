//! Jittered exponential backoff between whole-transaction reruns.

use std::time::Duration;

use rand::Rng;

/// "Full jitter": a uniform pause in `[0, min(cap, base * 2^(attempt-1))]`.
pub fn backoff(attempt: u32, base_ms: u64, cap_ms: u64, rng: &mut impl Rng) -> Duration {
    let exp = base_ms.saturating_mul(1u64 << attempt.saturating_sub(1).min(20));
    let ceiling_us = exp.min(cap_ms).saturating_mul(1000).max(1);
    Duration::from_micros(rng.random_range(0..=ceiling_us))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped() {
        let mut rng = rand::rng();
        for attempt in 1..40 {
            let d = backoff(attempt, 2, 50, &mut rng);
            assert!(d <= Duration::from_millis(50), "{d:?}");
        }
    }
}
