//! The fault timeline: when each region fails, how, and when it heals.
//!
//! Invariants: a fault fires once; its start and heal are recorded in run time (ms); at
//! the end of a run every fault is healed, so resolution and audit see a healthy system.
//! Times are fixed by the scenario, so the same scenario gives the same schedule.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::metrics::Metrics;
use crate::region::{Region, mode_name};
use crate::scenario::{FaultAt, FaultMode, Scenario, parse_duration_ms};

/// One planned fault.
#[derive(Debug, Clone)]
pub struct Fault {
    pub at: FaultAt,
    pub region: usize,
    pub mode: FaultMode,
    pub heal_after_ms: Option<u64>,
}

/// What happened to one fault, for the run's record.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct FaultRecord {
    pub index: usize,
    pub region: String,
    pub mode: String,
    /// `"50%"`, `"20s"` or `"key"` (fired by hand).
    pub trigger: String,
    pub started_ms: Option<u64>,
    pub healed_ms: Option<u64>,
}

struct Entry {
    fault: Fault,
    record: FaultRecord,
}

/// The plan and what became of it.
pub struct Timeline {
    entries: Mutex<Vec<Entry>>,
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
            .map(|(index, f)| {
                let region = scenario
                    .regions
                    .iter()
                    .position(|r| r.name == f.region)
                    .unwrap_or(0);
                Entry {
                    fault: Fault {
                        at: scenario.fault_at(index),
                        region,
                        mode: f.mode,
                        heal_after_ms: f
                            .heal_after
                            .as_deref()
                            .and_then(|h| parse_duration_ms(h).ok()),
                    },
                    record: FaultRecord {
                        index,
                        region: f.region.clone(),
                        mode: mode_name(f.mode).to_string(),
                        trigger: f.at.clone(),
                        started_ms: None,
                        healed_ms: None,
                    },
                }
            })
            .collect();
        Timeline {
            entries: Mutex::new(entries),
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
        for e in entries.iter_mut() {
            if e.record.started_ms.is_none() {
                let due = match e.fault.at {
                    FaultAt::AfterMs(ms) => now_ms >= ms,
                    FaultAt::Progress(p) => progress >= p,
                };
                if due {
                    fire(e, regions, now_ms);
                }
            } else if let (Some(start), Some(after), None) = (
                e.record.started_ms,
                e.fault.heal_after_ms,
                e.record.healed_ms,
            ) && now_ms >= start + after
            {
                heal(e, regions, now_ms);
            }
        }
    }

    /// Fire the next fault that has not fired (a key press).
    pub fn fire_next(&self, regions: &[Region], metrics: &Metrics) -> Option<FaultRecord> {
        let now_ms = metrics.start.elapsed().as_millis() as u64;
        let mut entries = lock(&self.entries);
        let e = entries.iter_mut().find(|e| e.record.started_ms.is_none())?;
        e.record.trigger = "key".into();
        fire(e, regions, now_ms);
        Some(e.record.clone())
    }

    /// Heal every active fault (end of run, or a key press).
    pub fn heal_all(&self, regions: &[Region], metrics: &Metrics) {
        let now_ms = metrics.start.elapsed().as_millis() as u64;
        let mut entries = lock(&self.entries);
        for e in entries.iter_mut() {
            if e.record.started_ms.is_some() && e.record.healed_ms.is_none() {
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

    /// True while some fault is active (for drawing fault windows).
    pub fn active(&self) -> bool {
        lock(&self.entries)
            .iter()
            .any(|e| e.record.started_ms.is_some() && e.record.healed_ms.is_none())
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
}

fn fire(e: &mut Entry, regions: &[Region], now_ms: u64) {
    if let Some(r) = regions.get(e.fault.region) {
        r.fail(e.fault.mode);
        tracing::info!(region = %r.name, mode = mode_name(e.fault.mode), "fault fired");
    }
    e.record.started_ms = Some(now_ms);
}

/// Heal the fault's region. Overlapping faults on one region: the first heal brings it up.
fn heal(e: &mut Entry, regions: &[Region], now_ms: u64) {
    if let Some(r) = regions.get(e.fault.region) {
        r.heal();
        tracing::info!(region = %r.name, "fault healed");
    }
    e.record.healed_ms = Some(now_ms);
}
