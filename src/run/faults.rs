//! The fault timeline: when each region fails, how, and when it heals; and commands run at
//! a point of the run (promote a standby, kill a pod).
//!
//! Each fault also gets what it did to the clients: per region, the unavailability window
//! (first request not served, first served again) from the fault's start to the next
//! fault's (`metrics::Outages`), and, when a cluster is watched, the leader change Patroni
//! saw in that time, so each region's reconnect time after the new leader is known.
//!
//! Invariants: a fault fires once; its start and heal are recorded in run time (ms); a
//! command's exit code and output are kept in the record; at the end of a run every
//! region fault is healed, so resolution and audit see a healthy system. Times are fixed by
//! the scenario, so the same scenario gives the same schedule. One unavailability window is
//! open at a time: the last fault's, closed by the next fault or the end of the agents.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use super::cluster::{ClusterWatch, leader_change};
use crate::gateway::Region;
use crate::metrics::{Metrics, Outage};
use crate::scenario::{Fault, FaultAction, FaultAt, FaultMode, Scenario};

/// Longest a command fault may run before it is killed.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// Output kept per command (its tail).
const OUTPUT_BYTES: usize = 4096;

/// What happened to one fault, for the run's record.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct FaultRecord {
    pub index: usize,
    /// The region (empty for a command).
    pub region: String,
    /// `outage`, `blackhole`, `crash`, `lost-ack`, `latency` or `command`.
    pub mode: String,
    /// `"50%"`, `"20s"` or `"key"` (fired by hand).
    pub trigger: String,
    pub started_ms: Option<u64>,
    /// For a command: when it finished.
    pub healed_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// For a `latency` fault: the delay added to each answer, and its jitter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter_ms: Option<u64>,
    /// With a watched cluster: the leader when the fault started, when Patroni first said
    /// no member led, and the next leader and when Patroni first named it (before the next
    /// fault started).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_before: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_lost_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_elected_ms: Option<u64>,
    /// What the fault did to each region's clients, from its start to the next fault's (or
    /// the end of the agents).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub impact: Vec<RegionImpact>,
}

/// One region's unavailability after a fault.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct RegionImpact {
    pub region: String,
    #[serde(flatten)]
    pub outage: Outage,
    /// From the new leader Patroni named to this region's first request served after its
    /// first failure (negative: the region was back before Patroni said so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconnect_ms: Option<i64>,
}

fn secs(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

impl FaultRecord {
    /// The leadership in words: `leader n3 → n2 (none from 12.3 s, n2 from 14.1 s)`,
    /// `leader n3 kept`; none without a watched cluster or before the fault.
    pub fn leader_words(&self) -> Option<String> {
        let before = self.leader_before.as_deref().unwrap_or("unknown");
        match (&self.leader_after, self.leader_elected_ms) {
            (Some(after), Some(at)) => {
                let lost = self
                    .leader_lost_ms
                    .map_or(String::new(), |ms| format!("none from {}, ", secs(ms)));
                Some(format!(
                    "leader {before} → {after} ({lost}{after} from {})",
                    secs(at)
                ))
            }
            _ if self.leader_before.is_some() => Some(match self.leader_lost_ms {
                Some(ms) => format!("leader {before} lost at {}, none elected", secs(ms)),
                None => format!("leader {before} kept"),
            }),
            _ => None,
        }
    }
}

impl RegionImpact {
    /// `east: nothing served from 13.5 s to 18.7 s (5.2 s unavailable; 17 requests failed,
    /// the last at 16.7 s), reconnected 0.1 s after the new leader`.
    pub fn words(&self) -> String {
        let o = &self.outage;
        let (Some(first), Some(from)) = (o.first_error_ms, o.served_until_ms) else {
            return format!("{}: every request served", self.region);
        };
        let failed = format!(
            "{} requests failed, the last at {}",
            o.errors,
            secs(o.last_error_ms.unwrap_or(first))
        );
        let mut out = match (o.recovered_ms, o.unavailable_ms) {
            // Failures among answers: the region was never out (a request failed while
            // the next one was served), so no window is claimed.
            (Some(_), Some(0)) => format!(
                "{}: served throughout ({failed}, each while other requests were served)",
                self.region
            ),
            (Some(back), Some(down)) => format!(
                "{}: nothing served from {} to {} ({} unavailable; {failed})",
                self.region,
                secs(from),
                secs(back),
                secs(down)
            ),
            _ => format!(
                "{}: nothing served since {} ({failed}); not back before the window closed",
                self.region,
                secs(from)
            ),
        };
        if let Some(ms) = self.reconnect_ms {
            out.push_str(&match ms >= 0 {
                true => format!(", reconnected {} after the new leader", secs(ms as u64)),
                false => format!(
                    ", back {} before Patroni named the new leader",
                    secs(ms.unsigned_abs())
                ),
            });
        }
        out
    }

    /// For a line that updates every second: `down 2.3 s` (live, at `now_ms`), `back
    /// after 4.1 s (reconnect +0.2 s)`, or nothing when the region never failed.
    pub fn status(&self, now_ms: u64) -> Option<String> {
        let o = &self.outage;
        let first = o.first_error_ms?;
        Some(match o.unavailable_ms {
            Some(down) => {
                let reconnect = self.reconnect_ms.map_or(String::new(), |ms| {
                    format!(" (reconnect {:+.1} s)", ms as f64 / 1000.0)
                });
                format!("back after {}{reconnect}", secs(down))
            }
            None => format!(
                "down {}",
                secs(now_ms.saturating_sub(o.served_until_ms.unwrap_or(first)))
            ),
        })
    }
}

struct Entry {
    fault: Fault,
    record: FaultRecord,
    /// The fault's unavailability window, once closed.
    outages: Option<Vec<Outage>>,
}

/// The plan and what became of it.
pub struct Timeline {
    entries: Arc<Mutex<Vec<Entry>>>,
    total_agents: u64,
    stopped: AtomicBool,
    region_names: Vec<String>,
    cluster: Option<Arc<ClusterWatch>>,
    /// The fault whose unavailability window is open. Locked after `entries`.
    open_window: Mutex<Option<usize>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Timeline {
    pub fn new(
        scenario: &Scenario,
        total_agents: u64,
        cluster: Option<Arc<ClusterWatch>>,
    ) -> Timeline {
        let entries = scenario
            .faults
            .iter()
            .enumerate()
            .map(|(index, fault)| {
                let (region, mode, command, delay) = match &fault.action {
                    FaultAction::Command(c) => {
                        (String::new(), "command".to_string(), Some(c.clone()), None)
                    }
                    FaultAction::RegionDown {
                        region,
                        mode,
                        delay,
                    } => (
                        scenario.regions[*region].name.clone(),
                        mode.name().to_string(),
                        None,
                        (*mode == FaultMode::Latency).then_some(*delay),
                    ),
                };
                Entry {
                    fault: fault.clone(),
                    record: FaultRecord {
                        index,
                        region,
                        mode,
                        trigger: fault.at.to_string(),
                        started_ms: None,
                        healed_ms: None,
                        command,
                        exit_code: None,
                        output: None,
                        latency_ms: delay.map(|d| d.latency_ms),
                        jitter_ms: delay.map(|d| d.jitter_ms),
                        leader_before: None,
                        leader_lost_ms: None,
                        leader_after: None,
                        leader_elected_ms: None,
                        impact: Vec::new(),
                    },
                    outages: None,
                }
            })
            .collect();
        Timeline {
            entries: Arc::new(Mutex::new(entries)),
            total_agents: total_agents.max(1),
            stopped: AtomicBool::new(false),
            region_names: scenario.regions.iter().map(|r| r.name.clone()).collect(),
            cluster,
            open_window: Mutex::new(None),
        }
    }

    /// The watched cluster, if any.
    pub fn cluster(&self) -> Option<&ClusterWatch> {
        self.cluster.as_deref()
    }

    /// Close the open unavailability window into its fault's entry.
    fn close_window(&self, entries: &mut [Entry], metrics: &Metrics) {
        if let Some(i) = lock(&self.open_window).take()
            && let Some(e) = entries.get_mut(i)
        {
            e.outages = Some(metrics.outages.read());
        }
    }

    /// The agents are done: the last fault's window closes (the end-of-run replays say
    /// nothing about how the regions came back).
    pub fn finish(&self, metrics: &Metrics) {
        let mut entries = lock(&self.entries);
        self.close_window(&mut entries, metrics);
    }

    /// Fire what is due and heal what has run its course.
    pub fn tick(&self, regions: &[Region], metrics: &Metrics) {
        let now_ms = metrics.start.elapsed().as_millis() as u64;
        let progress =
            metrics.agents_done.load(Ordering::Relaxed) as f64 / self.total_agents as f64;
        let mut entries = lock(&self.entries);
        for i in 0..entries.len() {
            let e = &mut entries[i];
            if e.record.started_ms.is_none() {
                let due = match e.fault.at {
                    FaultAt::Time(after) => now_ms >= after.as_millis() as u64,
                    FaultAt::Progress(p) => progress >= p,
                };
                if due {
                    self.fire(&mut entries, i, regions, metrics, now_ms);
                    // The history up to the fault is on disk before anything breaks.
                    metrics.flush_history();
                }
            } else if let (Some(start), Some(after), None, FaultAction::RegionDown { .. }) = (
                e.record.started_ms,
                e.fault.heal_after,
                e.record.healed_ms,
                &e.fault.action,
            ) && now_ms >= start + after.as_millis() as u64
            {
                heal(e, regions, now_ms);
                metrics.flush_history();
            }
        }
    }

    /// Fire the next fault that has not fired (a key press).
    pub fn fire_next(&self, regions: &[Region], metrics: &Metrics) -> Option<FaultRecord> {
        let now_ms = metrics.start.elapsed().as_millis() as u64;
        let mut entries = lock(&self.entries);
        let i = entries.iter().position(|e| e.record.started_ms.is_none())?;
        entries[i].record.trigger = "key".into();
        self.fire(&mut entries, i, regions, metrics, now_ms);
        metrics.flush_history();
        Some(entries[i].record.clone())
    }

    /// Heal every active region fault (end of run, or a key press).
    pub fn heal_all(&self, regions: &[Region], metrics: &Metrics) {
        let now_ms = metrics.start.elapsed().as_millis() as u64;
        let mut entries = lock(&self.entries);
        for e in entries.iter_mut() {
            let region_fault = matches!(e.fault.action, FaultAction::RegionDown { .. });
            if region_fault && e.record.started_ms.is_some() && e.record.healed_ms.is_none() {
                heal(e, regions, now_ms);
            }
        }
        for r in regions {
            r.heal();
        }
    }

    /// Every fault's record as it stands, with what it did to the regions so far (the open
    /// window's figures are live).
    pub fn records(&self, metrics: &Metrics) -> Vec<FaultRecord> {
        let entries = lock(&self.entries);
        let open = *lock(&self.open_window);
        let events = self.cluster.as_ref().map(|c| c.events());
        let starts: Vec<u64> = entries.iter().filter_map(|e| e.record.started_ms).collect();
        entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let mut record = e.record.clone();
                let Some(start) = record.started_ms else {
                    return record;
                };
                // The next fault to start after this one ends what this one is blamed for.
                let until = starts.iter().copied().filter(|s| *s > start).min();
                let mut elected_ms = None;
                if let Some(events) = &events {
                    let change = leader_change(events, start, until);
                    elected_ms = change.elected_ms;
                    record.leader_before = change.before;
                    record.leader_lost_ms = change.lost_ms;
                    record.leader_after = change.after;
                    record.leader_elected_ms = change.elected_ms;
                }
                let outages = match (open == Some(i), &e.outages) {
                    (true, _) => metrics.outages.read(),
                    (false, Some(closed)) => closed.clone(),
                    (false, None) => return record,
                };
                record.impact = self
                    .region_names
                    .iter()
                    .zip(outages)
                    .map(|(name, outage)| RegionImpact {
                        region: name.clone(),
                        reconnect_ms: outage
                            .recovered_ms
                            .zip(elected_ms)
                            .map(|(back, elected)| back as i64 - elected as i64),
                        outage,
                    })
                    .collect();
                record
            })
            .collect()
    }

    /// The last fault that started, as `records` has it.
    pub fn latest(&self, metrics: &Metrics) -> Option<FaultRecord> {
        self.records(metrics)
            .into_iter()
            .filter(|r| r.started_ms.is_some())
            .max_by_key(|r| r.started_ms)
    }

    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
    }

    /// Tick every 10 ms until stopped.
    pub async fn run(&self, regions: &[Region], metrics: &Metrics) {
        let mut every = tokio::time::interval(Duration::from_millis(10));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        while !self.stopped.load(Ordering::Acquire) {
            every.tick().await;
            self.tick(regions, metrics);
        }
    }

    fn fire(
        &self,
        entries: &mut [Entry],
        index: usize,
        regions: &[Region],
        metrics: &Metrics,
        now_ms: u64,
    ) {
        self.close_window(entries, metrics);
        metrics.outages.open(now_ms.min(u64::from(u32::MAX)) as u32);
        *lock(&self.open_window) = Some(index);
        let e = &mut entries[index];
        e.record.started_ms = Some(now_ms);
        match &e.fault.action {
            FaultAction::RegionDown {
                region,
                mode,
                delay,
            } => {
                if let Some(r) = regions.get(*region) {
                    r.fail(*mode, *delay);
                    tracing::info!(region = %r.name, mode = mode.name(), "fault fired");
                }
            }
            FaultAction::Command(command) => {
                let (command, entries, start) =
                    (command.clone(), self.entries.clone(), metrics.start);
                tokio::spawn(async move {
                    let (code, output) = run_command(&command).await;
                    let mut entries = lock(&entries);
                    if let Some(e) = entries.get_mut(index) {
                        e.record.exit_code = code;
                        e.record.output = Some(output);
                        e.record.healed_ms = Some(start.elapsed().as_millis() as u64);
                    }
                });
            }
        }
    }
}

/// Run `sh -c command`; its exit code (None if killed or not started) and the tail of its
/// combined output.
async fn run_command(command: &str) -> (Option<i32>, String) {
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(COMMAND_TIMEOUT, child).await {
        Ok(Ok(out)) => {
            let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&out.stderr));
            let cut = text.len().saturating_sub(OUTPUT_BYTES);
            let start = (cut..text.len())
                .find(|i| text.is_char_boundary(*i))
                .unwrap_or(text.len());
            (out.status.code(), text[start..].to_string())
        }
        Ok(Err(e)) => (None, format!("could not run: {e}")),
        Err(_) => (
            None,
            format!("killed after {} s", COMMAND_TIMEOUT.as_secs()),
        ),
    }
}

/// Heal the fault's region. Overlapping faults on one region: the first heal brings it up.
fn heal(e: &mut Entry, regions: &[Region], now_ms: u64) {
    if let FaultAction::RegionDown { region, .. } = e.fault.action
        && let Some(r) = regions.get(region)
    {
        r.heal();
        tracing::info!(region = %r.name, "fault healed");
    }
    e.record.healed_ms = Some(now_ms);
}
