//! The run's record: `summary.json`, thresholds and the exit code, and the printed summary.
//!
//! Invariants: the summary is versioned (`summary_version`); the exit code follows
//! docs/design.md: invariants (1) win over thresholds (2), which win over unknown (3).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::audit::{Report as Audit, Validity};
use crate::exit;
use crate::history::{Code, Indeterminate, STATUS_CLASSES};
use crate::metrics::{ATTEMPT_BARS, Percentiles};
use crate::run::FinalReads;
use crate::run::cluster::ClusterFigures;
use crate::run::faults::FaultRecord;
use crate::run::probe::Conformance;
use crate::run::{Resolution, RunResult};
use crate::scenario::{Metric, Scenario, Threshold};

use super::headline::{Headline, trim_zeros};
use super::words::{code_key, code_words, settings_of, target_of};

/// 2: `run_id`; the `contract` invariant and its checks; `contract_violation` counter.
pub const SUMMARY_VERSION: u32 = 2;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ThresholdResult {
    pub metric: Metric,
    pub rule: Threshold,
    pub observed: f64,
    pub passed: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub summary_version: u32,
    pub swarm_version: String,
    pub scenario: String,
    pub seed: u64,
    /// Part of every idempotency key of the run.
    pub run_id: String,
    pub shard: Option<(u32, u32)>,
    pub database: String,
    pub database_engine: String,
    /// What was driven: in-process kernels, in-process HTTP servers, or live endpoints
    /// (their URLs, protocol and transport).
    #[serde(default)]
    pub target: String,
    /// The scenario's settings in words (agents, catalog, mandates, mix, retry, regions).
    #[serde(default)]
    pub settings: Vec<(String, String)>,
    pub embedded: bool,
    pub elapsed_ms: u64,
    /// From the start to the last agent done: what the rates divide by (the end-of-run
    /// resolution and final reads are in `elapsed_ms`, not in the generator's rate).
    #[serde(default)]
    pub agents_elapsed_ms: u64,
    pub agents_total: u64,
    pub agents_done: u64,
    pub stopped_early: bool,
    /// Aborted by a second Ctrl-C: no resolution, no final reads, the history left cut
    /// (`swarm resolve` finishes it).
    #[serde(default)]
    pub aborted: bool,
    pub counters: BTreeMap<String, u64>,
    /// Requests by HTTP status class (`network`: no answer), the non-zero ones.
    #[serde(default)]
    pub statuses: BTreeMap<String, u64>,
    pub rates: BTreeMap<String, f64>,
    pub latency_corrected_ms: Percentiles,
    pub latency_raw_ms: Percentiles,
    /// `attempts[i]` = answers that took `i + 1` runs (the last bar: that many or more).
    pub attempts: Vec<u64>,
    pub regions: Vec<RegionSummary>,
    pub faults: Vec<FaultRecord>,
    /// The database cluster watched during the run, and every leader change it reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterFigures>,
    pub resolution: Resolution,
    /// The final reads after the resolution: keys offered, read, answered.
    #[serde(default)]
    pub final_reads: FinalReads,
    /// The conformance probe's checks (before the agents): `invalid` only for a second
    /// execution, otherwise warnings with their evidence.
    #[serde(default)]
    pub conformance: Conformance,
    /// Requests without a definite answer during the run, and how their keys settled.
    #[serde(default)]
    pub indeterminate: Indeterminate,
    /// The run in one line: units sold against stock, the four invariant counters, OCC
    /// retries and the attempts distribution.
    #[serde(default)]
    pub headline: Headline,
    pub audit: Audit,
    pub thresholds: Vec<ThresholdResult>,
    pub validity: Validity,
    pub exit_code: i32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegionSummary {
    pub name: String,
    pub requests: u64,
    pub commits: u64,
    pub errors: u64,
    pub latency_raw_ms: Percentiles,
    /// For a region reached over HTTP: the connections its client opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<Connections>,
}

/// The connections one region's client opened: how many, how many TLS sessions resumed
/// instead of a full handshake, how many speak HTTP/2.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connections {
    pub tls: bool,
    pub opened: u64,
    pub resumed: u64,
    pub http2: u64,
}

impl Connections {
    /// `12 opened · TLS, 11 resumed · HTTP/2`.
    pub fn describe(&self) -> String {
        let mut out = format!("{} opened", self.opened);
        if self.tls {
            out.push_str(&format!(" · TLS, {} resumed", self.resumed));
        }
        out.push_str(if self.http2 > 0 {
            " · HTTP/2"
        } else {
            " · HTTP/1.1"
        });
        out
    }

    /// Add another shard's figures of the same region.
    pub fn add(&mut self, other: &Connections) {
        self.tls |= other.tls;
        self.opened += other.opened;
        self.resumed += other.resumed;
        self.http2 += other.http2;
    }
}

/// Observed value of a threshold metric.
pub fn observe(metric: Metric, s: &Summary) -> Option<f64> {
    let c = &s.latency_corrected_ms;
    Some(match metric {
        Metric::P50Ms => c.p50_ms,
        Metric::P90Ms => c.p90_ms,
        Metric::P99Ms => c.p99_ms,
        Metric::P999Ms => c.p999_ms,
        Metric::MaxMs => c.max_ms,
        Metric::ErrorRate => *s.rates.get("error_rate")?,
        Metric::CommitsPerS => *s.rates.get("commits_per_s")?,
        Metric::PurchasesPerS => *s.rates.get("purchases_per_s")?,
        Metric::OccRetries => *s.counters.get("occ_retries")? as f64,
        Metric::RetryExhausted => *s.counters.get("retry_exhausted")? as f64,
    })
}

impl Summary {
    pub fn build(scenario: &Scenario, run: &RunResult, audit: Audit) -> Summary {
        let m = &run.metrics;
        let t = &m.totals;
        let mut counters = BTreeMap::new();
        counters.insert("requests".to_string(), t.requests);
        for code in Code::ALL {
            counters.insert(code_key(code).to_string(), t.code(code));
        }
        counters.insert("replays".to_string(), t.replays);
        counters.insert("occ_retries".to_string(), t.occ_retries);
        counters.insert("purchases".to_string(), t.purchases);
        let regions = run
            .region_names
            .iter()
            .zip(m.regions.iter())
            .zip(run.region_connections.iter())
            .map(|((name, fig), links)| RegionSummary {
                connections: links.map(|c| Connections {
                    tls: c.tls,
                    opened: c.opened,
                    resumed: c.resumed,
                    http2: c.http2,
                }),
                name: name.clone(),
                requests: fig.counters.requests,
                commits: fig.counters.code(Code::Committed),
                errors: fig.counters.errors(),
                latency_raw_ms: fig
                    .latency_us
                    .as_ref()
                    .map(Percentiles::of)
                    .unwrap_or_default(),
            })
            .collect();
        let mut s = Summary {
            summary_version: SUMMARY_VERSION,
            swarm_version: env!("CARGO_PKG_VERSION").to_string(),
            scenario: scenario.name.clone(),
            seed: scenario.seed,
            run_id: run.header.run_id.clone(),
            shard: run.header.shard,
            database: run
                .db_url
                .as_ref()
                .map_or_else(|| "none (live endpoint)".to_string(), |u| u.to_string()),
            database_engine: run.db_engine.clone(),
            target: target_of(scenario),
            settings: settings_of(scenario),
            embedded: run.embedded,
            elapsed_ms: run.elapsed_ms,
            agents_elapsed_ms: run.agents_elapsed_ms,
            agents_total: run.agents_total,
            agents_done: run.agents_done,
            stopped_early: run.stopped_early,
            counters,
            statuses: STATUS_CLASSES
                .iter()
                .zip(t.by_status.iter())
                .filter(|(_, n)| **n > 0)
                .map(|(class, n)| (class.to_string(), *n))
                .collect(),
            rates: BTreeMap::new(),
            latency_corrected_ms: Percentiles::of(&m.corrected_us),
            latency_raw_ms: Percentiles::of(&m.raw_us),
            attempts: m.attempts[..ATTEMPT_BARS].to_vec(),
            regions,
            faults: run.faults.clone(),
            cluster: run.cluster.clone(),
            resolution: run.resolution.clone(),
            final_reads: run.final_reads.clone(),
            conformance: run.conformance.clone(),
            indeterminate: run.indeterminate,
            headline: Headline::of(&audit, t.occ_retries, &m.attempts[..ATTEMPT_BARS]).stopped_at(
                run.agents_done,
                run.agents_total,
                run.stopped_early,
                run.aborted,
            ),
            aborted: run.aborted,
            validity: audit.validity,
            audit,
            thresholds: Vec::new(),
            exit_code: 0,
        };
        let rules: Vec<(Metric, Threshold)> =
            scenario.thresholds.iter().map(|(m, t)| (*m, *t)).collect();
        s.conclude(&rules);
        s
    }

    /// The figures that follow from the others, for a run and for merged shards alike:
    /// rates from the counters and the elapsed time, the verdict from `audit`, each
    /// threshold against what was observed, and the exit code.
    pub fn conclude(&mut self, rules: &[(Metric, Threshold)]) {
        let phase_ms = match self.agents_elapsed_ms {
            0 => self.elapsed_ms,
            ms => ms,
        };
        let secs = (phase_ms as f64 / 1000.0).max(1e-3);
        let c = |k: &str| self.counters.get(k).copied().unwrap_or(0);
        let requests = c("requests");
        let answered = c("committed") + c("out_of_stock") + c("mandate_rejected");
        let rates = [
            ("requests_per_s", requests as f64 / secs),
            ("commits_per_s", c("committed") as f64 / secs),
            ("purchases_per_s", c("purchases") as f64 / secs),
            ("agents_per_s", self.agents_done as f64 / secs),
            (
                "error_rate",
                if requests == 0 {
                    0.0
                } else {
                    requests.saturating_sub(answered) as f64 / requests as f64
                },
            ),
        ];
        self.rates = rates.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        self.validity = self.audit.validity.max(self.conformance.validity());
        self.thresholds = rules
            .iter()
            .map(|&(metric, rule)| {
                let observed = observe(metric, self).unwrap_or(f64::NAN);
                ThresholdResult {
                    metric,
                    rule,
                    observed,
                    passed: rule.holds(observed),
                }
            })
            .collect();
        self.exit_code = exit::of_run(
            self.validity,
            self.thresholds.iter().all(|t| t.passed),
            self.stopped_early || self.aborted,
        );
    }

    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(dir.join("summary.json"), json)
    }

    /// The end-of-run text for a terminal or a CI log.
    /// `SQLite 3.50.2 (sqlite://…)`, or that it could not be read.
    pub fn database_words(&self) -> String {
        if self.database.starts_with("none") {
            "none given (history-only audit)".into()
        } else {
            format!("{} ({})", self.database_engine, self.database)
        }
    }

    /// `201 ×104 · 200 ×42 · network ×3`, most frequent first (`none` without requests).
    pub fn statuses_line(&self) -> String {
        let mut classes: Vec<(&String, &u64)> = self.statuses.iter().collect();
        classes.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        if classes.is_empty() {
            return "none".into();
        }
        classes
            .iter()
            .map(|(class, n)| format!("{class} ×{n}"))
            .collect::<Vec<_>>()
            .join(" · ")
    }

    /// A run stopped early (or aborted) in words: how far it got and what its verdict
    /// covers; `None` for a run that finished. The console's verdict line and junit.xml
    /// say it so.
    pub fn stopped_note(&self) -> Option<String> {
        (self.stopped_early || self.aborted).then(|| {
            format!(
                "{}: {} of {} agents ran; the verdict covers only what ran{}",
                if self.aborted {
                    "ABORTED by a second Ctrl-C"
                } else {
                    "STOPPED EARLY"
                },
                self.agents_done,
                self.agents_total,
                if self.aborted {
                    "; requests in flight were dropped and the history left cut"
                } else {
                    ""
                }
            )
        })
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let c = |k: &str| self.counters.get(k).copied().unwrap_or(0);
        out.push_str(&format!(
            "swarm {} · scenario {} · seed {} · target: {} · database: {}\n",
            self.swarm_version,
            self.scenario,
            self.seed,
            self.target,
            self.database_words()
        ));
        out.push_str(&format!(
            "agents {}/{} in {:.1} s · {:.0} purchases/s · {} requests\n",
            self.agents_done,
            self.agents_total,
            self.elapsed_ms as f64 / 1000.0,
            self.rates.get("purchases_per_s").copied().unwrap_or(0.0),
            c("requests")
        ));
        // Every code the run saw; the rarer ones (in flight, lookups' absent, declines
        // without a reason) only when they occurred.
        let answers: Vec<String> = Code::ALL
            .iter()
            .filter(|code| {
                !matches!(code, Code::InFlight | Code::Absent | Code::Declined)
                    || c(code_key(**code)) > 0
            })
            .map(|code| format!("{} {}", code_words(*code), c(code_key(*code))))
            .chain([format!("replays {}", c("replays"))])
            .collect();
        out.push_str(&format!(
            "answers (replays included): {}\n",
            answers.join(" · ")
        ));
        out.push_str(&format!("HTTP statuses: {}\n", self.statuses_line()));
        // What each HTTP region's client negotiated (TLS, resumption, HTTP/2).
        let links: Vec<String> = self
            .regions
            .iter()
            .filter_map(|r| {
                r.connections
                    .map(|c| format!("{} {}", r.name, c.describe()))
            })
            .collect();
        if !links.is_empty() {
            out.push_str(&format!("connections: {}\n", links.join("; ")));
        }
        out.push_str(&format!(
            "OCC retries {} · attempts {:?}\n",
            c("occ_retries"),
            trim_zeros(&self.attempts)
        ));
        let l = &self.latency_corrected_ms;
        let r = &self.latency_raw_ms;
        out.push_str(&format!(
            "latency ms (from intended start) p50 {:.2} p90 {:.2} p99 {:.2} p99.9 {:.2} max {:.2}\n",
            l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms
        ));
        out.push_str(&format!(
            "latency ms (per request)         p50 {:.2} p90 {:.2} p99 {:.2} p99.9 {:.2} max {:.2}\n",
            r.p50_ms, r.p90_ms, r.p99_ms, r.p999_ms, r.max_ms
        ));
        for f in &self.faults {
            let delay = f.latency_ms.map_or(String::new(), |ms| {
                format!(" +{ms}±{} ms", f.jitter_ms.unwrap_or(0))
            });
            let what = match &f.command {
                Some(command) => format!("command `{command}`"),
                None => format!("{} {}", f.region, f.mode),
            };
            out.push_str(&format!(
                "fault {what}{delay} at {}: started {} healed {}\n",
                f.trigger,
                f.started_ms.map_or("never".into(), |v| format!("{v} ms")),
                f.healed_ms.map_or("never".into(), |v| format!("{v} ms"))
            ));
            if let Some(leader) = f.leader_words() {
                out.push_str(&format!("  {leader}\n"));
            }
            for impact in &f.impact {
                out.push_str(&format!("  {}\n", impact.words()));
            }
        }
        if let Some(c) = &self.cluster {
            out.push_str(&format!(
                "cluster ({}): {} leader changes seen in {} polls ({} unanswered)\n",
                c.kind,
                c.events.len().saturating_sub(1),
                c.polls,
                c.unreachable
            ));
        }
        let res = &self.resolution;
        let ind = &self.indeterminate;
        out.push_str(&format!(
            "indeterminate during the run: {} requests on {} keys · settled by the agents' own requests {} · left to the end-of-run replay {}: recovered {} · executed on replay {} · refused {} · unresolved {}\n",
            ind.requests,
            ind.keys,
            ind.settled_by_agents,
            res.pending,
            res.recovered,
            res.fresh,
            res.refused,
            res.unresolved
        ));
        if res.past_retention > 0 {
            out.push_str(&format!(
                "end-of-run replay: {} open keys not replayed, too near the end of the contract's key_retention_s (replayed once the server had let a key go, each would be a new purchase)\n",
                res.past_retention
            ));
        }
        if let Some(why) = &res.stopped {
            out.push_str(&format!(
                "end-of-run replay {why} after {:.1} s\n",
                res.elapsed_ms as f64 / 1000.0
            ));
        }
        out.push_str(&self.final_reads.line());
        out.push('\n');
        for line in self.conformance.lines() {
            out.push_str(&line);
            out.push('\n');
        }
        // The audit's table ends with its verdict line: a stopped run says so on that line.
        out.push_str(&self.audit.to_string());
        if let Some(note) = self.stopped_note() {
            out.push_str(&format!(
                " · {note} (exit code {} unless something invalid was found)",
                exit::STOPPED
            ));
        }
        out.push('\n');
        for t in &self.thresholds {
            out.push_str(&format!(
                "threshold {} {} : observed {:.4} → {}\n",
                t.metric,
                t.rule,
                t.observed,
                if t.passed { "pass" } else { "FAIL" }
            ));
        }
        // The run in one line, last, where the eye lands.
        out.push_str(&format!("{}\n", self.headline.line()));
        out.push_str(&format!("exit code {}", self.exit_code));
        out
    }
}
