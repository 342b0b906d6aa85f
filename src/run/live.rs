//! The live view of a running swarm: one model of plain figures, read by every presenter
//! (the terminal dashboard, Mission Control in the browser, the Prometheus exporter), so
//! they never disagree.
//!
//! Invariants: a view is built from aggregates only (a merged metrics snapshot, the 1 Hz
//! series, the live audit counters, the fault timeline), never from the history; it holds
//! no secret (the target's words come from `report::target_of`-like text the caller
//! passes, with passwords and keys redacted by `redact`); building one takes no lock an
//! agent takes on its hot path but the metrics shards' (briefly, once).

use std::sync::atomic::Ordering;

use serde::Serialize;

use super::LiveRun;
use super::faults::FaultRecord;
use crate::audit::{LiveCounts, Validity};
use crate::history::{Code, STATUS_CLASSES};
use crate::metrics::{self, Percentiles, Sample};
use crate::scenario::RegionState;

/// One region as the live view shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RegionRow {
    pub name: String,
    pub state: RegionState,
    pub requests: u64,
    pub errors: u64,
    pub in_flight: i64,
    /// What the last fault did to it: `down 2.3 s`, `back after 4.1 s (reconnect +0.2 s)`.
    pub last_fault: Option<String>,
}

/// The run's end, once audited.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub validity: Validity,
    pub exit_code: i32,
    /// The run in one line (`Headline::line`).
    pub headline: String,
    /// Where the report is (a path, or a link a presenter serves).
    pub note: String,
}

/// Everything a presenter draws, as plain figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct View {
    pub scenario: String,
    pub seed: u64,
    pub run_id: String,
    /// What is driven, in words, secrets redacted.
    pub target: String,
    pub elapsed_s: f64,
    pub done: u64,
    pub started: u64,
    pub total: u64,
    pub paused: bool,
    /// `running`, `resolving`, `auditing` or `done`.
    pub phase: String,
    /// The end-of-run replay's progress line, when it runs.
    pub status: String,
    pub series: Vec<Sample>,
    pub faults: Vec<FaultRecord>,
    pub latency_corrected: Percentiles,
    pub latency_raw: Percentiles,
    /// `attempts[i]`: executions that took `i + 1` runs.
    pub attempts: Vec<u64>,
    pub occ_retries: u64,
    pub requests: u64,
    pub in_flight: i64,
    pub retry_exhausted: u64,
    /// Answers by code (every code, zeros included), `REPLAYS`, then `HTTP <class>` for
    /// the non-zero status classes.
    pub outcomes: Vec<(String, u64)>,
    pub regions: Vec<RegionRow>,
    pub live: LiveCounts,
    /// A watched cluster's leader: `n2 (was n3, elected at 14.1 s)`.
    pub leader: Option<String>,
    pub verdict: Option<Verdict>,
    /// Frames a browser viewer missed because it fell behind (Mission Control).
    pub dropped_frames: u64,
}

/// What the caller knows that the run does not: its name for the target.
#[derive(Debug, Clone, Default)]
pub struct Meta {
    pub scenario: String,
    pub seed: u64,
    pub run_id: String,
    pub target: String,
}

impl LiveRun {
    /// The live view now, from `snap` (a merged metrics snapshot the caller took).
    pub fn view(&self, meta: &Meta, snap: &metrics::Snapshot) -> View {
        let w = &self.world;
        let t = &snap.totals;
        let outcomes = Code::ALL
            .iter()
            .map(|c| (c.name().to_string(), t.code(*c)))
            .chain([("REPLAYS".to_string(), t.replays)])
            // What the wire said, by status class (the non-zero ones).
            .chain(
                STATUS_CLASSES
                    .iter()
                    .zip(t.by_status.iter())
                    .filter(|(_, n)| **n > 0)
                    .map(|(class, n)| (format!("HTTP {class}"), *n)),
            )
            .collect();
        let faults = self.timeline.records(&w.metrics);
        let latest = faults
            .iter()
            .filter(|f| f.started_ms.is_some())
            .max_by_key(|f| f.started_ms);
        let now_ms = u64::from(w.metrics.now_ms());
        let regions = w
            .regions
            .iter()
            .enumerate()
            .zip(snap.regions.iter())
            .map(|((i, r), fig)| RegionRow {
                name: r.name.clone(),
                state: r.state(),
                requests: fig.counters.requests,
                errors: fig.counters.errors(),
                in_flight: r.in_flight(),
                last_fault: latest
                    .and_then(|f| f.impact.get(i))
                    .and_then(|impact| impact.status(now_ms)),
            })
            .collect();
        let leader = self.timeline.cluster().map(|c| {
            let now = c.leader().unwrap_or_else(|| "none".into());
            match latest.and_then(|f| f.leader_before.as_ref().zip(f.leader_elected_ms)) {
                Some((before, at)) => format!(
                    "{now} (was {before}, elected at {:.1} s)",
                    at as f64 / 1000.0
                ),
                None => now,
            }
        });
        let status = w.resolving.line(now_ms).unwrap_or_default();
        View {
            scenario: meta.scenario.clone(),
            seed: meta.seed,
            run_id: meta.run_id.clone(),
            target: meta.target.clone(),
            elapsed_s: w.metrics.start.elapsed().as_secs_f64(),
            done: w.metrics.agents_done.load(Ordering::Relaxed),
            started: w.metrics.agents_started.load(Ordering::Relaxed),
            total: self.total,
            paused: self.control.paused.load(Ordering::Acquire),
            phase: if status.is_empty() {
                "running"
            } else {
                "resolving"
            }
            .into(),
            status,
            series: w.metrics.series(),
            faults,
            latency_corrected: Percentiles::of(&snap.corrected_us),
            latency_raw: Percentiles::of(&snap.raw_us),
            attempts: snap.attempts.to_vec(),
            occ_retries: t.occ_retries,
            requests: t.requests,
            in_flight: w.regions.iter().map(|r| r.in_flight()).sum(),
            retry_exhausted: t.code(Code::RetryExhausted),
            outcomes,
            regions,
            live: *self.live.lock().unwrap_or_else(|p| p.into_inner()),
            leader,
            verdict: None,
            dropped_frames: 0,
        }
    }
}

/// `text` with every password of a URL (`scheme://user:PASSWORD@host`) and every
/// `key=`/`token=`/`password=` query value replaced by `***`: what a page, an event or a
/// label may show of a database URL or an endpoint.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        // The authority ends at the first `/`, `?`, `#` or whitespace.
        let end = after
            .find(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace())
            .unwrap_or(after.len());
        let authority = &after[..end];
        match authority.rsplit_once('@') {
            Some((user_info, host)) => {
                let user = user_info.split_once(':').map_or(user_info, |(u, _)| u);
                out.push_str(user);
                if user_info.contains(':') {
                    out.push_str(":***");
                }
                out.push('@');
                out.push_str(host);
            }
            None => out.push_str(authority),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    // Query parameters that carry secrets.
    let mut redacted = String::with_capacity(out.len());
    let mut tail = out.as_str();
    'scan: while !tail.is_empty() {
        for name in [
            "password=",
            "key=",
            "token=",
            "secret=",
            "apikey=",
            "api_key=",
        ] {
            if let Some(i) = tail.find(name)
                && (i == 0 || matches!(tail.as_bytes()[i - 1], b'?' | b'&' | b' ' | b';'))
            {
                redacted.push_str(&tail[..i + name.len()]);
                redacted.push_str("***");
                let value_end = tail[i + name.len()..]
                    .find(|c: char| matches!(c, '&' | ' ' | ';' | '#') || c.is_whitespace())
                    .map_or(tail.len(), |j| i + name.len() + j);
                tail = &tail[value_end..];
                continue 'scan;
            }
        }
        redacted.push_str(tail);
        break;
    }
    redacted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_leave_in_words() {
        assert_eq!(
            redact("database: postgres://swarm:hunter2@db.example:5432/app?sslmode=require"),
            "database: postgres://swarm:***@db.example:5432/app?sslmode=require"
        );
        assert_eq!(
            redact("postgres://db.example/app?password=hunter2&user=x"),
            "postgres://db.example/app?password=***&user=x"
        );
        assert_eq!(
            redact("live endpoints a https://user:s3cret@api.example/v1 · key=abc"),
            "live endpoints a https://user:***@api.example/v1 · key=***"
        );
        // Nothing secret: unchanged.
        let plain = "sqlite://reports/smoke/swarm.db · http://127.0.0.1:8080";
        assert_eq!(redact(plain), plain);
        assert!(!redact("postgres://u:p%40ss@h/d").contains("p%40ss"));
    }
}
