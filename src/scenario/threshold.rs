//! Thresholds: k6-style gates on a run's figures (`p99_ms = "< 250"`).
//!
//! The metric is an enum (an unknown name is refused where it is written) and the rule is
//! parsed once into an operator and a finite value. Both serialise back to the text a
//! scenario uses, so `summary.json` carries them as written.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A figure a scenario may gate on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    P50Ms,
    P90Ms,
    P99Ms,
    P999Ms,
    MaxMs,
    ErrorRate,
    CommitsPerS,
    PurchasesPerS,
    OccRetries,
    RetryExhausted,
}

impl Metric {
    pub const ALL: [Metric; 10] = [
        Metric::P50Ms,
        Metric::P90Ms,
        Metric::P99Ms,
        Metric::P999Ms,
        Metric::MaxMs,
        Metric::ErrorRate,
        Metric::CommitsPerS,
        Metric::PurchasesPerS,
        Metric::OccRetries,
        Metric::RetryExhausted,
    ];

    /// The name a scenario uses.
    pub fn name(self) -> &'static str {
        match self {
            Metric::P50Ms => "p50_ms",
            Metric::P90Ms => "p90_ms",
            Metric::P99Ms => "p99_ms",
            Metric::P999Ms => "p999_ms",
            Metric::MaxMs => "max_ms",
            Metric::ErrorRate => "error_rate",
            Metric::CommitsPerS => "commits_per_s",
            Metric::PurchasesPerS => "purchases_per_s",
            Metric::OccRetries => "occ_retries",
            Metric::RetryExhausted => "retry_exhausted",
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A rule: `"< 250"`, `"<= 0.001"`, `"> 500"`, `">= 1"`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    pub op: ThresholdOp,
    /// Finite.
    pub value: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThresholdOp {
    Lt,
    Le,
    Gt,
    Ge,
}

impl ThresholdOp {
    fn symbol(self) -> &'static str {
        match self {
            ThresholdOp::Lt => "<",
            ThresholdOp::Le => "<=",
            ThresholdOp::Gt => ">",
            ThresholdOp::Ge => ">=",
        }
    }
}

impl FromStr for Threshold {
    type Err = String;

    fn from_str(rule: &str) -> Result<Threshold, String> {
        let bad = || format!("`{rule}` is not a rule like \"< 250\" or \"> 500\"");
        let r = rule.trim();
        let (op, rest) = if let Some(x) = r.strip_prefix("<=") {
            (ThresholdOp::Le, x)
        } else if let Some(x) = r.strip_prefix(">=") {
            (ThresholdOp::Ge, x)
        } else if let Some(x) = r.strip_prefix('<') {
            (ThresholdOp::Lt, x)
        } else if let Some(x) = r.strip_prefix('>') {
            (ThresholdOp::Gt, x)
        } else {
            return Err(bad());
        };
        let value: f64 = rest.trim().parse().map_err(|_| bad())?;
        if !value.is_finite() {
            return Err(format!("`{rule}`: the limit must be a finite number"));
        }
        Ok(Threshold { op, value })
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.op.symbol(), self.value)
    }
}

impl Threshold {
    /// Whether `observed` passes; a figure that is not a number never does.
    pub fn holds(&self, observed: f64) -> bool {
        match self.op {
            ThresholdOp::Lt => observed < self.value,
            ThresholdOp::Le => observed <= self.value,
            ThresholdOp::Gt => observed > self.value,
            ThresholdOp::Ge => observed >= self.value,
        }
    }
}

impl Serialize for Threshold {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Threshold {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Threshold, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_show_and_hold() {
        let t: Threshold = "<= 0.001".parse().expect("rule");
        assert_eq!(t.op, ThresholdOp::Le);
        assert_eq!(t.to_string(), "<= 0.001");
        assert!(t.holds(0.001) && !t.holds(0.002) && !t.holds(f64::NAN));
        assert!("< NaN".parse::<Threshold>().is_err());
        assert!("< inf".parse::<Threshold>().is_err());
        assert!("about 5".parse::<Threshold>().is_err());
        for m in Metric::ALL {
            let json = serde_json::to_string(&m).expect("json");
            assert_eq!(json, format!("\"{}\"", m.name()));
        }
    }
}
