//! The keys offered for a final read: agents offer each key when its purchase ends, with
//! the last answer they got (`Candidates::offer`); a bounded, uniform sample is kept per
//! class (refused, in flight or unanswered first, then declined, then a few committed),
//! striped by agent so offering takes no global lock; `final_reads` takes it whole.
//! Invariant: memory is bounded by the caps whatever the run's size.

use std::sync::Mutex;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::history::Code;
use crate::scenario::FinalReadSpec;

/// Stripes of the candidate sample (agents land on `id % STRIPES`).
const STRIPES: usize = 16;
/// Most committed keys sampled: a commit re-read is a spot check, not the point.
pub(super) const MAX_COMMITS: u64 = 1000;

/// Why a key is worth a final read, most telling first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Class {
    /// Refused, in flight, or no answer at all.
    Open,
    Declined,
    Committed,
}

impl Class {
    fn of(code: Code) -> Class {
        match code {
            Code::Committed => Class::Committed,
            Code::OutOfStock | Code::MandateRejected | Code::Declined => Class::Declined,
            _ => Class::Open,
        }
    }
}

/// One key offered: `(agent, purchase, variant)`.
pub(super) type Offered = (u32, u16, u8);

/// A uniform sample of at most `cap` offers (Algorithm R), each with when its purchase
/// began (the run's clock).
#[derive(Default)]
struct Reservoir {
    seen: u64,
    keys: Vec<(Offered, u32)>,
}

impl Reservoir {
    fn offer(&mut self, key: (Offered, u32), cap: usize, rng: &mut SmallRng) {
        self.seen += 1;
        if self.keys.len() < cap {
            self.keys.push(key);
        } else {
            let j = rng.random_range(0..self.seen);
            if let Some(slot) = self.keys.get_mut(j as usize) {
                *slot = key;
            }
        }
    }
}

struct Stripe {
    rng: SmallRng,
    classes: [Reservoir; 3],
}

/// The keys offered for a final read, sampled per class and bounded.
pub struct Candidates {
    stripes: Vec<Mutex<Stripe>>,
    /// Per stripe and class.
    caps: [usize; 3],
    max_keys: u64,
}

impl Candidates {
    pub fn new(spec: &FinalReadSpec, seed: u64) -> Candidates {
        let per_stripe = |n: u64| (n.div_ceil(STRIPES as u64)) as usize;
        let commits = spec.max_keys.min(MAX_COMMITS);
        Candidates {
            stripes: (0..STRIPES)
                .map(|i| {
                    Mutex::new(Stripe {
                        rng: SmallRng::seed_from_u64(seed ^ (i as u64).wrapping_mul(0xF1_4A_12)),
                        classes: Default::default(),
                    })
                })
                .collect(),
            caps: [
                per_stripe(spec.max_keys),
                per_stripe(spec.max_keys),
                per_stripe(commits),
            ],
            max_keys: spec.max_keys,
        }
    }

    /// Key `(agent, purchase, variant)`, whose purchase began at `started_ms` and ended on
    /// `last` (the last code its client saw).
    pub fn offer(&self, key: Offered, last: Code, started_ms: u32) {
        if self.max_keys == 0 {
            return;
        }
        let class = Class::of(last) as usize;
        let mut stripe = lock(&self.stripes[key.0 as usize % STRIPES]);
        let s = &mut *stripe;
        s.classes[class].offer((key, started_ms), self.caps[class], &mut s.rng);
    }

    /// Every sampled key whose purchase began when `kept` says the server still keeps it,
    /// most telling class first, at most `max_keys`; how many keys were offered per class;
    /// and how many sampled keys `kept` left out.
    pub(super) fn take(
        &self,
        kept: impl Fn(u32) -> bool,
    ) -> (Vec<(Offered, Class, u32)>, [u64; 3], u64) {
        let mut by_class: [Vec<(Offered, u32)>; 3] = Default::default();
        let mut past = 0u64;
        let mut offered = [0u64; 3];
        for stripe in &self.stripes {
            let mut s = lock(stripe);
            for (i, r) in s.classes.iter_mut().enumerate() {
                offered[i] += r.seen;
                for (key, started_ms) in r.keys.drain(..) {
                    if kept(started_ms) {
                        by_class[i].push((key, started_ms));
                    } else {
                        past += 1;
                    }
                }
            }
        }
        let mut out = Vec::new();
        for (keys, class) in
            by_class
                .iter_mut()
                .zip([Class::Open, Class::Declined, Class::Committed])
        {
            keys.sort_unstable();
            out.extend(keys.iter().map(|(k, started_ms)| (*k, class, *started_ms)));
        }
        out.truncate(self.max_keys as usize);
        (out, offered, past)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reservoir_keeps_a_bounded_uniform_sample() {
        let mut r = Reservoir::default();
        let mut rng = SmallRng::seed_from_u64(1);
        for i in 0..10_000u32 {
            r.offer(((i, 0, 0), 0), 100, &mut rng);
        }
        assert_eq!(r.seen, 10_000);
        assert_eq!(r.keys.len(), 100);
        // Uniform: the sample reaches into the late offers, not only the first hundred.
        assert!(r.keys.iter().filter(|(k, _)| k.0 >= 5_000).count() > 20);
    }

    #[test]
    fn the_most_telling_keys_come_first_and_the_total_is_bounded() {
        let c = Candidates::new(
            &FinalReadSpec {
                max_keys: 5,
                budget_ms: 1,
            },
            7,
        );
        let at = |id: u32| (id, 0, 0);
        for id in 0..100 {
            c.offer(at(id), Code::OutOfStock, 0);
        }
        c.offer(at(1000), Code::Timeout, 0);
        c.offer(at(1001), Code::Committed, 0);
        let (keys, offered, past) = c.take(|_| true);
        assert_eq!((offered, past), ([1, 100, 1], 0));
        assert_eq!(keys.len(), 5);
        assert_eq!(keys[0], ((1000, 0, 0), Class::Open, 0));
        assert!(
            keys[1..]
                .iter()
                .all(|(_, class, _)| *class == Class::Declined)
        );
        let off = Candidates::new(
            &FinalReadSpec {
                max_keys: 0,
                budget_ms: 1,
            },
            7,
        );
        off.offer(at(1), Code::Timeout, 0);
        assert_eq!(off.take(|_| true).1, [0, 0, 0]);
    }

    #[test]
    fn keys_the_server_no_longer_keeps_are_left_out_and_counted() {
        let c = Candidates::new(
            &FinalReadSpec {
                max_keys: 100,
                budget_ms: 1,
            },
            7,
        );
        for id in 0..10u32 {
            // Purchases that began at 0, 1000, ... 9000 ms.
            c.offer((id, 0, 0), Code::OutOfStock, id * 1000);
        }
        let (keys, offered, past) = c.take(|started_ms| started_ms >= 4000);
        assert_eq!((offered, past), ([0, 10, 0], 4));
        assert_eq!(keys.len(), 6);
        assert!(keys.iter().all(|((id, _, _), _, _)| *id >= 4));
    }
}
