//! `Firsts`: the audit's tally primitive, a count and the `MAX_EXAMPLES` smallest of what
//! was counted, so a check's examples are the ones an in-order pass over every key would
//! have kept first.
//!
//! Invariants: the examples are the smallest, in order, never more than a check shows;
//! adding the same findings in any order, or in any number of parts (`absorb`), gives the
//! same count and the same examples.

use super::verdict::{Check, Invariant, MAX_EXAMPLES, Validity};

/// A count and the `MAX_EXAMPLES` smallest of what was counted: the examples an in-order
/// pass over every key would have kept first.
#[derive(Debug, Clone)]
pub struct Firsts<K> {
    count: u64,
    first: Vec<K>,
}

impl<K> Default for Firsts<K> {
    fn default() -> Self {
        Firsts {
            count: 0,
            first: Vec::new(),
        }
    }
}

impl<K: Ord> Firsts<K> {
    pub fn add(&mut self, k: K) {
        self.count += 1;
        self.keep(k);
    }

    /// Keep `k` as an example if it is among the smallest, without counting it.
    fn keep(&mut self, k: K) {
        if self.first.len() == MAX_EXAMPLES {
            match self.first.last() {
                Some(last) if k < *last => {
                    self.first.pop();
                }
                _ => return,
            }
        }
        let at = self.first.partition_point(|x| *x < k);
        self.first.insert(at, k);
        // The smallest, in order, never more than a check shows: what makes the examples
        // the same whatever the number of parts.
        debug_assert!(self.first.len() <= MAX_EXAMPLES);
        debug_assert!(self.first.windows(2).all(|w| w[0] <= w[1]));
    }

    /// Add `count` findings of which `examples` are the smallest (another tally's).
    pub fn absorb(&mut self, count: u64, examples: impl IntoIterator<Item = K>) {
        self.count += count;
        for k in examples {
            self.keep(k);
        }
    }

    /// Add another tally of the same check.
    pub fn merge(&mut self, other: Firsts<K>) {
        self.absorb(other.count, other.first);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn examples(&self) -> impl Iterator<Item = &K> {
        self.first.iter()
    }

    /// The tally as a check: `when_found` is the verdict when anything was counted.
    pub(super) fn check(
        &self,
        name: &'static str,
        invariant: Invariant,
        when_found: Validity,
        show: impl Fn(&K) -> String,
        detail: impl Into<String>,
    ) -> Check {
        let examples = self.first.iter().map(show).collect();
        match when_found {
            Validity::Invalid => Check::violations(name, invariant, self.count, examples, detail),
            Validity::Unknown => Check::undecided(name, invariant, self.count, examples, detail),
            Validity::Valid => Check::figure(name, invariant, self.count, examples, detail),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn firsts_keep_the_smallest_whatever_the_order() {
        let mut a = Firsts::default();
        let mut b = Firsts::default();
        for i in 0..100u32 {
            a.add(i);
            b.add(99 - i);
        }
        assert_eq!(a.count(), 100);
        assert_eq!(
            a.examples().copied().collect::<Vec<_>>(),
            (0..MAX_EXAMPLES as u32).collect::<Vec<_>>()
        );
        assert_eq!(
            a.examples().collect::<Vec<_>>(),
            b.examples().collect::<Vec<_>>()
        );
        let mut c = Firsts::default();
        c.add(500u32);
        c.absorb(7, [3, 900]);
        assert_eq!(c.count(), 8);
        assert_eq!(c.examples().copied().collect::<Vec<_>>(), vec![3, 500, 900]);
    }
}
