//! The fault timeline: when each region fails, how, and when it heals; and commands run at
//! a point of the run (promote a standby, kill a pod).
//!
//! Invariants: a fault fires once; its start and heal are recorded in run time (ms); a
//! command's exit code and output are kept in the record; at the end of a run every
//! region fault is healed, so resolution and audit see a healthy system. Times are fixed by
//! the scenario, so the same scenario gives the same schedule.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::metrics::Metrics;
use crate::scenario::{Fault, FaultAction, FaultAt, FaultMode, Scenario};
use crate::target::Region;

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
}

struct Entry {
    fault: Fault,
    record: FaultRecord,
}

/// The plan and what became of it.
pub struct Timeline {
    entries: Arc<Mutex<Vec<Entry>>>,
    total_agents: u64,
    stopped: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Timeline {
    pub fn new(scenario: &Scenario, total_agents: u64) -> Timeline {
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
                    },
                }
            })
            .collect();
        Timeline {
            entries: Arc::new(Mutex::new(entries)),
            total_agents: total_agents.max(1),
            stopped: AtomicBool::new(false),
        }
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
                    self.fire(e, i, regions, metrics, now_ms);
                }
            } else if let (Some(start), Some(after), None, FaultAction::RegionDown { .. }) = (
                e.record.started_ms,
                e.fault.heal_after,
                e.record.healed_ms,
                &e.fault.action,
            ) && now_ms >= start + after.as_millis() as u64
            {
                heal(e, regions, now_ms);
            }
        }
    }

    /// Fire the next fault that has not fired (a key press).
    pub fn fire_next(&self, regions: &[Region], metrics: &Metrics) -> Option<FaultRecord> {
        let now_ms = metrics.start.elapsed().as_millis() as u64;
        let mut entries = lock(&self.entries);
        let i = entries.iter().position(|e| e.record.started_ms.is_none())?;
        let e = &mut entries[i];
        e.record.trigger = "key".into();
        self.fire(e, i, regions, metrics, now_ms);
        Some(e.record.clone())
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

    pub fn records(&self) -> Vec<FaultRecord> {
        lock(&self.entries)
            .iter()
            .map(|e| e.record.clone())
            .collect()
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
        e: &mut Entry,
        index: usize,
        regions: &[Region],
        metrics: &Metrics,
        now_ms: u64,
    ) {
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
