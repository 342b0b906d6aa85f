//! Faults as a scenario states them: when (`FaultAt`), what (`FaultAction`: a region down
//! in a `FaultMode`, or a command), and when it heals; and what a region is doing
//! (`RegionState`), the one vocabulary the target, the metrics, the dashboard and the
//! report share.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::parsed;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// Take `region` down in `mode`.
    RegionDown,
    /// Run `command` with `sh -c` (e.g. promote a standby, kill a pod); its exit code and
    /// output go into the run's record.
    Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultMode {
    /// Requests fail at once.
    Outage,
    /// Requests hang until the client's timeout.
    Blackhole,
    /// In-flight requests are cut at random points, some after the commit.
    Crash,
    /// The commit happens; the acknowledgement is lost.
    LostAck,
    /// Every answer comes `latency_ms` ± `jitter_ms` late; nothing is lost.
    Latency,
}

/// The delay a `latency` fault adds to each answer: uniform in
/// `[latency_ms - jitter_ms, latency_ms + jitter_ms]`, never below 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delay {
    pub latency_ms: u64,
    pub jitter_ms: u64,
}

impl Delay {
    /// One draw of the delay.
    pub fn sample(self) -> std::time::Duration {
        use rand::Rng;
        let lo = self.latency_ms.saturating_sub(self.jitter_ms) * 1000;
        let hi = (self.latency_ms + self.jitter_ms) * 1000;
        let us = if hi > lo {
            rand::rng().random_range(lo..=hi)
        } else {
            lo
        };
        std::time::Duration::from_micros(us)
    }
}

/// Longest `latency_ms` / `jitter_ms` a fault may add.
pub const MAX_DELAY_MS: u64 = 600_000;

impl FaultMode {
    pub const ALL: [FaultMode; 5] = [
        FaultMode::Outage,
        FaultMode::Blackhole,
        FaultMode::Crash,
        FaultMode::LostAck,
        FaultMode::Latency,
    ];

    /// The name a scenario uses.
    pub fn name(self) -> &'static str {
        match self {
            FaultMode::Outage => "outage",
            FaultMode::Blackhole => "blackhole",
            FaultMode::Crash => "crash",
            FaultMode::LostAck => "lost-ack",
            FaultMode::Latency => "latency",
        }
    }
}

/// What a region is doing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RegionState {
    #[default]
    Up,
    Down(FaultMode),
}

impl RegionState {
    /// One byte, for an atomic: 0 is up, `1 + index in FaultMode::ALL` is down.
    pub fn code(self) -> u8 {
        match self {
            RegionState::Up => 0,
            RegionState::Down(m) => {
                1 + FaultMode::ALL.iter().position(|x| *x == m).unwrap_or(0) as u8
            }
        }
    }

    /// The inverse of `code`; an unknown byte is `Up`.
    pub fn from_code(code: u8) -> RegionState {
        match code.checked_sub(1) {
            Some(i) => FaultMode::ALL
                .get(usize::from(i))
                .map_or(RegionState::Up, |m| RegionState::Down(*m)),
            None => RegionState::Up,
        }
    }

    pub fn is_up(self) -> bool {
        self == RegionState::Up
    }

    /// `UP`, `DOWN:crash`, or `SLOW:latency` (slow, not down: every answer still arrives).
    pub fn label(self) -> String {
        self.to_string()
    }

    /// The inverse of `label` (a series read back from `timeseries.csv`).
    pub fn parse_label(s: &str) -> Option<RegionState> {
        if s == "UP" {
            return Some(RegionState::Up);
        }
        let mode = s
            .strip_prefix("DOWN:")
            .or_else(|| s.strip_prefix("SLOW:"))?;
        FaultMode::ALL
            .into_iter()
            .find(|m| m.name() == mode)
            .map(RegionState::Down)
    }
}

impl fmt::Display for RegionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegionState::Up => f.write_str("UP"),
            RegionState::Down(FaultMode::Latency) => f.write_str("SLOW:latency"),
            RegionState::Down(m) => write!(f, "DOWN:{}", m.name()),
        }
    }
}

impl Serialize for RegionState {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// When a fault fires.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FaultAt {
    /// This long after the start.
    Time(Duration),
    /// A fraction in `[0, 1]` of agents finished.
    Progress(f64),
}

impl FaultAt {
    pub fn parse(s: &str) -> Result<FaultAt, String> {
        let s = s.trim();
        if let Some(p) = s.strip_suffix('%') {
            let v: f64 = p
                .trim()
                .parse()
                .map_err(|_| format!("`{s}` is not a percentage like \"50%\""))?;
            if !(0.0..=100.0).contains(&v) {
                return Err(format!("`{s}` must be between 0% and 100%"));
            }
            return Ok(FaultAt::Progress(v / 100.0));
        }
        parsed::parse_duration(s).map(FaultAt::Time)
    }
}

impl fmt::Display for FaultAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultAt::Time(d) => f.write_str(&parsed::show_duration(*d)),
            FaultAt::Progress(p) => write!(f, "{}%", p * 100.0),
        }
    }
}

impl<'de> Deserialize<'de> for FaultAt {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<FaultAt, D::Error> {
        let text = String::deserialize(d)?;
        FaultAt::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A `[[faults]]` table as written: the union of every kind's keys. `validate` checks
/// which keys a kind takes and turns it into a `Fault`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// `"20s"`, `"500ms"` or `"50%"` of agents done.
    pub at: FaultAt,
    pub kind: FaultKind,
    /// `region-down` only.
    #[serde(default)]
    pub region: Option<String>,
    /// `region-down` only.
    #[serde(default)]
    pub mode: Option<FaultMode>,
    /// `command` only.
    #[serde(default)]
    pub command: Option<String>,
    /// `latency` mode only: the added delay per answer.
    #[serde(default)]
    pub latency_ms: Option<u64>,
    /// `latency` mode only: the delay varies by up to this much either way.
    #[serde(default)]
    pub jitter_ms: Option<u64>,
    #[serde(default, deserialize_with = "parsed::optional_duration")]
    pub heal_after: Option<Duration>,
}

/// One planned fault, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub at: FaultAt,
    pub action: FaultAction,
    /// Region faults only; `None`: down until the end of the run (or a key press).
    pub heal_after: Option<Duration>,
}

/// What a fault does.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultAction {
    /// Take region `region` (an index into the scenario's regions) down in `mode`.
    RegionDown {
        region: usize,
        mode: FaultMode,
        /// What a `latency` fault adds (zero for every other mode).
        delay: Delay,
    },
    /// Run `sh -c command`.
    Command(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_states_round_trip_through_code_and_label() {
        let all = std::iter::once(RegionState::Up).chain(FaultMode::ALL.map(RegionState::Down));
        for state in all {
            assert_eq!(RegionState::from_code(state.code()), state);
            assert_eq!(RegionState::parse_label(&state.label()), Some(state));
        }
        assert_eq!(
            RegionState::Down(FaultMode::LostAck).label(),
            "DOWN:lost-ack"
        );
        assert_eq!(RegionState::parse_label("DOWN:nope"), None);
    }
}
