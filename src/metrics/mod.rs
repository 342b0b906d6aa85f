//! Run metrics: outcome counters, the attempts distribution, HDR latency histograms and a
//! per-second series, overall and per region.
//!
//! Invariants: nothing on an agent's hot path takes a global lock. Agents record into one
//! of `SHARDS` striped shards (chosen by agent id), so two agents rarely meet on a lock; a
//! sampler drains each shard's interval figures once a second to build the series; readers
//! merge shards. History records wait in their shard's batch and leave for the history
//! writer (`history::Sink`) when it is full, each second and at each fault, outside the
//! shard's lock; a full writer queue makes the recorder wait rather than grow. Latencies
//! are microseconds.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::history::{Code, HistoryError, Record, STATUS_CLASSES, Sink, Violation, status_class};
use crate::scenario::RegionState;

pub mod outage;

pub use outage::{Outage, Outages};

/// Stripes of the recorder; a power of two above the core count, and no more: every
/// request touches a shard's histograms at a random spot, and 16 shards' histograms stay
/// in cache where 64 did not (hdrhistogram's record was 3x as costly at 64).
pub const SHARDS: usize = 16;
/// `attempts` 1..=15 have their own bar; 16 and more share the last.
pub const ATTEMPT_BARS: usize = 16;
/// Highest latency a histogram tracks (10 minutes), in microseconds.
const MAX_LATENCY_US: u64 = 600_000_000;

/// Two significant figures (1% resolution): ~25 KiB a histogram, so `SHARDS` shards of a
/// few histograms stay in a few MiB.
fn histogram() -> Histogram<u64> {
    // Bounds are constants that hdrhistogram accepts; a failure is a programming error.
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 2).unwrap_or_else(|_| {
        Histogram::new(2).unwrap_or_else(|_| unreachable!("2 significant figures is valid"))
    })
}

/// Resident and peak resident memory of this process in KiB, from /proc (0 elsewhere).
pub fn memory_kib() -> (u64, u64) {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return (0, 0);
    };
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Outcome counters; indexes are `Code as usize`.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Counters {
    pub requests: u64,
    pub by_code: [u64; Code::ALL.len()],
    /// Requests by HTTP status class (`history::STATUS_CLASSES`).
    pub by_status: [u64; STATUS_CLASSES.len()],
    pub replays: u64,
    pub occ_retries: u64,
    /// Logical purchases that ended (definitely or not).
    pub purchases: u64,
}

impl Counters {
    pub fn add(&mut self, o: &Counters) {
        self.requests += o.requests;
        for (a, b) in self.by_code.iter_mut().zip(o.by_code.iter()) {
            *a += b;
        }
        for (a, b) in self.by_status.iter_mut().zip(o.by_status.iter()) {
            *a += b;
        }
        self.replays += o.replays;
        self.occ_retries += o.occ_retries;
        self.purchases += o.purchases;
    }

    pub fn code(&self, code: Code) -> u64 {
        self.by_code[code as usize]
    }

    pub fn declines(&self) -> u64 {
        self.code(Code::OutOfStock) + self.code(Code::MandateRejected) + self.code(Code::Declined)
    }

    /// Requests that got no business answer (neither commit nor decline).
    pub fn errors(&self) -> u64 {
        self.requests - self.code(Code::Committed) - self.declines()
    }
}

/// Figures of one region.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RegionFigures {
    pub counters: Counters,
    #[serde(skip)]
    pub latency_us: Option<Histogram<u64>>,
}

struct Shard {
    totals: Counters,
    interval: Counters,
    attempts: [u64; ATTEMPT_BARS],
    corrected_us: Histogram<u64>,
    /// Requests' latency since the last sample; the sampler folds it into the run's total.
    interval_raw_us: Histogram<u64>,
    regions: Vec<(Counters, Histogram<u64>)>,
    /// Records not yet handed to the history writer.
    batch: Vec<Record>,
}

/// Records a shard hands to the history writer at once (~240 KiB).
pub const HISTORY_BATCH: usize = 4096;

impl Shard {
    fn new(regions: usize) -> Shard {
        Shard {
            totals: Counters::default(),
            interval: Counters::default(),
            attempts: [0; ATTEMPT_BARS],
            corrected_us: histogram(),
            interval_raw_us: histogram(),
            regions: (0..regions)
                .map(|_| (Counters::default(), histogram()))
                .collect(),
            batch: Vec::new(),
        }
    }
}

/// One second of the run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Sample {
    pub second: u64,
    pub commits: u64,
    pub declines: u64,
    pub errors: u64,
    pub occ_retries: u64,
    pub requests: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub in_flight: i64,
    pub agents_done: u64,
    /// Region states, in region order.
    pub regions: Vec<RegionState>,
}

/// The recorder every agent writes to.
pub struct Metrics {
    shards: Box<[Mutex<Shard>]>,
    pub start: Instant,
    pub agents_started: AtomicU64,
    pub agents_done: AtomicU64,
    /// Regions the figures are kept for.
    regions: usize,
    series: Mutex<Vec<Sample>>,
    /// Every request's latency up to the last sample. Locked before any shard.
    raw_total: Mutex<Histogram<u64>>,
    /// Answers that broke the contract, and the first few of them in words.
    pub violations: AtomicU64,
    violation_examples: Mutex<Vec<String>>,
    /// What the current fault did to each region's clients.
    pub outages: Outages,
    /// Where the history streams (a run's `history.bin`).
    sink: Sink,
}

/// Contract violations kept in words (the rest are counted).
pub const MAX_VIOLATION_EXAMPLES: usize = 20;

/// A merged, read-only view.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub totals: Counters,
    pub attempts: [u64; ATTEMPT_BARS],
    pub raw_us: Histogram<u64>,
    pub corrected_us: Histogram<u64>,
    pub regions: Vec<RegionFigures>,
    pub agents_done: u64,
}

impl Snapshot {
    /// Nothing yet: zero counters, empty histograms, no regions.
    pub fn empty() -> Snapshot {
        Snapshot {
            totals: Counters::default(),
            attempts: [0; ATTEMPT_BARS],
            raw_us: histogram(),
            corrected_us: histogram(),
            regions: Vec::new(),
            agents_done: 0,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding a metrics lock leaves plain counters behind: still readable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Metrics {
    /// A recorder that streams the history to `sink` as it is made: memory for it is
    /// `SHARDS` batches, the writer's queue and its spare batches, whatever the run's
    /// length. A batch is refilled from the spares the writer hands back, not allocated.
    pub fn new(regions: usize, sink: Sink) -> Metrics {
        Metrics {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(Shard::new(regions)))
                .collect(),
            start: Instant::now(),
            agents_started: AtomicU64::new(0),
            agents_done: AtomicU64::new(0),
            regions,
            series: Mutex::new(Vec::new()),
            raw_total: Mutex::new(histogram()),
            violations: AtomicU64::new(0),
            violation_examples: Mutex::new(Vec::new()),
            outages: Outages::new(regions),
            sink,
        }
    }

    /// An answer under `key` broke the contract: count it, and keep the first few (kind,
    /// status, key, body excerpt) for the progress line, the history and the report. The
    /// lock is taken only on this path, which a conforming server never reaches.
    pub fn note_violation(&self, violation: Violation, status: u16, key: &str, excerpt: &str) {
        let n = self.violations.fetch_add(1, Ordering::Relaxed);
        if n < MAX_VIOLATION_EXAMPLES as u64 {
            lock(&self.violation_examples).push(format!(
                "{} · HTTP {status} · key {key} · {excerpt}",
                violation.name()
            ));
        }
    }

    /// The contract violations kept in words.
    pub fn violation_examples(&self) -> Vec<String> {
        lock(&self.violation_examples).clone()
    }

    /// Milliseconds since the run started.
    pub fn now_ms(&self) -> u32 {
        self.ms_at(Instant::now())
    }

    /// `at` in ms since the start (one clock read serves several figures).
    pub fn ms_at(&self, at: Instant) -> u32 {
        at.saturating_duration_since(self.start)
            .as_millis()
            .min(u128::from(u32::MAX)) as u32
    }

    /// One finished request: counters, attempts, raw latency. `new_execution`: the
    /// answer is the first this client saw of its execution, so its `attempts` are counted
    /// (a replay repeats its original's; counting them again would count one execution's
    /// retries twice).
    /// Also what the request says of its region's service (`outages`).
    pub fn record_request(&self, agent: u32, r: &Record, raw_us: u64, new_execution: bool) {
        self.count_request(agent, r, raw_us, new_execution);
        self.outages.observe(r);
    }

    /// A request the agent abandoned itself (a client crash mid-flight): counted, but it
    /// says nothing of the service.
    pub fn record_abandoned(&self, agent: u32, r: &Record, raw_us: u64) {
        self.count_request(agent, r, raw_us, true);
    }

    fn count_request(&self, agent: u32, r: &Record, raw_us: u64, new_execution: bool) {
        let mut guard = lock(&self.shards[agent as usize % SHARDS]);
        let s = &mut *guard;
        let attempts = if new_execution { r.attempts } else { 0 };
        let retries = u64::from(attempts.saturating_sub(1));
        let class = status_class(r.status);
        for c in [&mut s.totals, &mut s.interval] {
            c.requests += 1;
            c.by_code[r.code as usize] += 1;
            c.by_status[class] += 1;
            c.replays += u64::from(r.replayed);
            c.occ_retries += retries;
        }
        if attempts > 0 {
            s.attempts[(usize::from(attempts) - 1).min(ATTEMPT_BARS - 1)] += 1;
        }
        let us = raw_us.clamp(1, MAX_LATENCY_US);
        // One record per histogram per request: the run's total is folded from the
        // intervals, and one region's figures are the run's.
        let _ = s.interval_raw_us.record(us);
        let several = s.regions.len() > 1;
        if let Some((c, h)) = s.regions.get_mut(usize::from(r.region)) {
            c.requests += 1;
            c.by_code[r.code as usize] += 1;
            c.by_status[class] += 1;
            c.replays += u64::from(r.replayed);
            c.occ_retries += retries;
            if several {
                let _ = h.record(us);
            }
        }
        if s.batch.capacity() == 0 {
            // A shard's first record since its batch left: a whole batch's room at once.
            s.batch = self.sink.spare(HISTORY_BATCH);
        }
        s.batch.push(*r);
        if s.batch.len() >= HISTORY_BATCH {
            let full = std::mem::take(&mut s.batch);
            drop(guard);
            self.sink.send(full);
        }
    }

    /// Hand every shard's pending records to the history writer and have it flush (once
    /// a second, and at each fault's start and heal): a killed run loses at most that.
    pub fn flush_history(&self) {
        self.hand_over_batches();
        self.sink.flush();
    }

    fn hand_over_batches(&self) {
        for shard in self.shards.iter() {
            // Left without room: the shard's next record takes a spare the writer has
            // handed back by then.
            let pending = std::mem::take(&mut lock(shard).batch);
            self.sink.send(pending);
        }
    }

    /// The run is over: write what is pending, the contract violations kept in words and
    /// the end of the history file. The records written.
    pub fn finish_history(&self) -> Result<u64, HistoryError> {
        self.hand_over_batches();
        self.sink.finish(self.violation_examples())
    }

    /// An aborted run: write what is pending and sync, but leave the file without its
    /// end (what a reader takes for a run cut short). The records written.
    pub fn abandon_history(&self) -> Result<u64, HistoryError> {
        self.hand_over_batches();
        self.sink.abandon()
    }

    /// One finished logical purchase, latency from its intended start.
    pub fn record_purchase(&self, agent: u32, corrected_us: u64) {
        let mut s = lock(&self.shards[agent as usize % SHARDS]);
        s.totals.purchases += 1;
        s.interval.purchases += 1;
        let _ = s.corrected_us.record(corrected_us.clamp(1, MAX_LATENCY_US));
    }

    /// Drain one second of figures into the series; returns the new sample. The regions'
    /// states and the requests in flight are the regions' own (`gateway::Region`).
    pub fn sample(&self, region_states: Vec<RegionState>, in_flight: i64) -> Sample {
        let mut interval = Counters::default();
        let mut hist = histogram();
        let mut total = lock(&self.raw_total);
        for shard in self.shards.iter() {
            let mut s = lock(shard);
            interval.add(&s.interval);
            s.interval = Counters::default();
            let _ = hist.add(&s.interval_raw_us);
            s.interval_raw_us.reset();
        }
        let _ = total.add(&hist);
        drop(total);
        let mut series = lock(&self.series);
        let sample = Sample {
            second: series.len() as u64 + 1,
            commits: interval.code(Code::Committed),
            declines: interval.declines(),
            errors: interval.errors(),
            occ_retries: interval.occ_retries,
            requests: interval.requests,
            p50_us: if hist.is_empty() {
                0
            } else {
                hist.value_at_quantile(0.5)
            },
            p99_us: if hist.is_empty() {
                0
            } else {
                hist.value_at_quantile(0.99)
            },
            in_flight,
            agents_done: self.agents_done.load(Ordering::Relaxed),
            regions: region_states,
        };
        series.push(sample.clone());
        sample
    }

    pub fn series(&self) -> Vec<Sample> {
        lock(&self.series).clone()
    }

    /// Merge every shard into one view.
    pub fn snapshot(&self) -> Snapshot {
        let regions = self.regions;
        // The total so far, then what the shards hold since the last sample.
        let total = lock(&self.raw_total);
        let mut snap = Snapshot {
            totals: Counters::default(),
            attempts: [0; ATTEMPT_BARS],
            raw_us: total.clone(),
            corrected_us: histogram(),
            regions: (0..regions)
                .map(|_| RegionFigures {
                    counters: Counters::default(),
                    latency_us: Some(histogram()),
                })
                .collect(),
            agents_done: self.agents_done.load(Ordering::Relaxed),
        };
        for shard in self.shards.iter() {
            let s = lock(shard);
            snap.totals.add(&s.totals);
            for (a, b) in snap.attempts.iter_mut().zip(s.attempts.iter()) {
                *a += b;
            }
            let _ = snap.raw_us.add(&s.interval_raw_us);
            let _ = snap.corrected_us.add(&s.corrected_us);
            for (fig, (c, h)) in snap.regions.iter_mut().zip(s.regions.iter()) {
                fig.counters.add(c);
                if let Some(mine) = fig.latency_us.as_mut() {
                    let _ = mine.add(h);
                }
            }
        }
        drop(total);
        if let [only] = snap.regions.as_mut_slice() {
            only.latency_us = Some(snap.raw_us.clone());
        }
        snap
    }
}

/// Percentiles of a histogram in milliseconds: p50, p90, p99, p99.9, max.
#[derive(Debug, Clone, Copy, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct Percentiles {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub count: u64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            p50_ms: ms(h.value_at_quantile(0.5)),
            p90_ms: ms(h.value_at_quantile(0.9)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            count: h.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn rec(code: Code, attempts: u16, region: u8) -> Record {
        Record {
            amount_minor: 1,
            attempts,
            region,
            code,
            ..Record::for_tests()
        }
    }

    fn sink(dir: &std::path::Path) -> Sink {
        let header = crate::history::Header {
            regions: vec!["r0".into(), "r1".into()],
            ..crate::history::Header::for_tests()
        };
        Sink::create(&dir.join("history.bin"), &header).expect("sink")
    }

    #[test]
    fn every_request_reaches_the_history_file() {
        let dir = tempfile::tempdir().expect("dir");
        let m = Metrics::new(2, sink(dir.path()));
        let n = HISTORY_BATCH as u32 * 3 + 17;
        for agent in 0..n {
            m.record_request(
                agent,
                &rec(Code::Committed, 1, (agent % 2) as u8),
                1000,
                true,
            );
        }
        m.flush_history();
        assert_eq!(m.finish_history().expect("finish"), u64::from(n));
        let h = crate::history::History::read(&dir.path().join("history.bin")).expect("read");
        assert_eq!((h.records.len(), h.cut), (n as usize, None));
    }

    #[test]
    fn shards_merge_and_intervals_drain() {
        let dir = tempfile::tempdir().expect("dir");
        let m = Metrics::new(2, sink(dir.path()));
        for agent in 0..100u32 {
            m.record_request(
                agent,
                &rec(Code::Committed, 3, (agent % 2) as u8),
                1000,
                true,
            );
        }
        m.record_request(7, &rec(Code::Timeout, 0, 1), 2_000_000, true);
        let s = m.snapshot();
        assert_eq!(s.totals.requests, 101);
        assert_eq!(s.totals.code(Code::Committed), 100);
        assert_eq!(s.totals.occ_retries, 200);
        assert_eq!(s.attempts[2], 100);
        assert_eq!(s.totals.errors(), 1);
        assert_eq!(s.regions[1].counters.requests, 51);
        let first = m.sample(vec![], 0);
        assert_eq!(first.commits, 100);
        assert_eq!(first.occ_retries, 200);
        let second = m.sample(vec![], 0);
        assert_eq!((second.second, second.requests), (2, 0));
        assert_eq!(m.snapshot().totals.requests, 101, "totals are not drained");
    }
}
