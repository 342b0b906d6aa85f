//! Verdicts: three-valued validity and one result per check.

use serde::{Deserialize, Serialize};

/// Worst wins: `Invalid` > `Unknown` > `Valid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Validity {
    Valid,
    Unknown,
    Invalid,
}

impl Validity {
    pub fn name(self) -> &'static str {
        match self {
            Validity::Valid => "valid",
            Validity::Unknown => "unknown",
            Validity::Invalid => "invalid",
        }
    }
}

/// Which guarantee a check speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Invariant {
    Oversell,
    DuplicateSettlement,
    LedgerDrift,
    MandateBreach,
    TornCommit,
    History,
    /// Answers that break the checkout contract (a server's own fault, whatever the
    /// database holds).
    Contract,
}

impl Invariant {
    pub fn name(self) -> &'static str {
        match self {
            Invariant::Oversell => "oversell",
            Invariant::DuplicateSettlement => "duplicate_settlement",
            Invariant::LedgerDrift => "ledger_drift",
            Invariant::MandateBreach => "mandate_breach",
            Invariant::TornCommit => "torn_commit",
            Invariant::History => "history",
            Invariant::Contract => "contract",
        }
    }
}

/// Most example ids a check keeps.
pub const MAX_EXAMPLES: usize = 10;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Check {
    pub name: String,
    pub invariant: Invariant,
    pub validity: Validity,
    pub count: u64,
    pub examples: Vec<String>,
    /// What the check looked at, or why it could not decide.
    pub detail: String,
}

impl Check {
    /// A check that counted `count` findings; any finding makes it `when_found`.
    fn counted(
        name: &'static str,
        invariant: Invariant,
        when_found: Validity,
        count: u64,
        mut examples: Vec<String>,
        detail: String,
    ) -> Check {
        examples.truncate(MAX_EXAMPLES);
        Check {
            name: name.to_string(),
            invariant,
            validity: if count == 0 {
                Validity::Valid
            } else {
                when_found
            },
            count,
            examples,
            detail,
        }
    }

    /// A check that found `count` violations (`examples` are trimmed to `MAX_EXAMPLES`).
    pub fn violations(
        name: &'static str,
        invariant: Invariant,
        count: u64,
        examples: Vec<String>,
        detail: impl Into<String>,
    ) -> Check {
        Check::counted(
            name,
            invariant,
            Validity::Invalid,
            count,
            examples,
            detail.into(),
        )
    }

    /// A figure that is reported but never invalidates (e.g. a client anti-pattern's cost).
    pub fn figure(
        name: &'static str,
        invariant: Invariant,
        count: u64,
        examples: Vec<String>,
        detail: impl Into<String>,
    ) -> Check {
        Check::counted(
            name,
            invariant,
            Validity::Valid,
            count,
            examples,
            detail.into(),
        )
    }

    /// Violations that leave the verdict unknown rather than invalid (unresolved requests).
    pub fn undecided(
        name: &'static str,
        invariant: Invariant,
        count: u64,
        examples: Vec<String>,
        detail: impl Into<String>,
    ) -> Check {
        Check::counted(
            name,
            invariant,
            Validity::Unknown,
            count,
            examples,
            detail.into(),
        )
    }

    /// A check that could not decide: never `valid`.
    pub fn unknown(name: &'static str, invariant: Invariant, why: impl Into<String>) -> Check {
        Check {
            name: name.to_string(),
            invariant,
            validity: Validity::Unknown,
            count: 0,
            examples: Vec::new(),
            detail: why.into(),
        }
    }
}

/// The whole audit.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub validity: Validity,
    /// `full`, `state-only` or `history-only`.
    pub mode: String,
    pub checks: Vec<Check>,
    /// Checks that did not apply in this mode (e.g. state checks without a database).
    pub skipped: Vec<String>,
    /// Where the audit's time went, phase by phase.
    pub timings: Vec<Timing>,
    /// Units sold per item, and where the figure comes from.
    #[serde(default)]
    pub sold: Vec<ItemSold>,
}

/// One item's sales as the audit established them: committed intents in the database, or
/// (without one) the purchases clients were told committed, against the stock.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ItemSold {
    pub item: String,
    pub units: i64,
    /// Initial stock (the database's anchor, or the declared stock per item).
    pub stock: i64,
    /// Settled purchases (committed intents, or acknowledged commits).
    pub purchases: u64,
    /// `database` or `acknowledged answers`.
    pub from: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Timing {
    pub phase: String,
    pub ms: f64,
}

impl Timing {
    pub fn since(phase: impl Into<String>, start: std::time::Instant) -> Timing {
        Timing {
            phase: phase.into(),
            ms: start.elapsed().as_secs_f64() * 1000.0,
        }
    }
}

impl Report {
    pub fn new(mode: &'static str, checks: Vec<Check>, skipped: Vec<String>) -> Report {
        let validity = checks
            .iter()
            .map(|c| c.validity)
            .max()
            .unwrap_or(Validity::Unknown);
        Report {
            validity,
            mode: mode.to_string(),
            checks,
            skipped,
            timings: Vec::new(),
            sold: Vec::new(),
        }
    }

    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// Invariant families with at least one invalid check.
    pub fn violated(&self) -> Vec<Invariant> {
        let mut v: Vec<Invariant> = self
            .checks
            .iter()
            .filter(|c| c.validity == Validity::Invalid)
            .map(|c| c.invariant)
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Sum of violations per headline invariant (for counters and dashboards).
    pub fn count_of(&self, invariant: Invariant) -> u64 {
        self.checks
            .iter()
            .filter(|c| c.invariant == invariant && c.validity == Validity::Invalid)
            .map(|c| c.count)
            .sum()
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in &self.checks {
            writeln!(
                f,
                "{:<8} {:<44} {:>10}  {}",
                c.validity.name(),
                c.name,
                c.count,
                c.detail
            )?;
        }
        for c in self
            .checks
            .iter()
            .filter(|c| !c.examples.is_empty() && (c.validity != Validity::Valid || c.count > 0))
        {
            writeln!(f, "  {} e.g. {}", c.name, c.examples.join(", "))?;
        }
        if !self.skipped.is_empty() {
            let why = if self.mode == "shard" {
                "one shard's audit: these run in swarm merge over every shard".to_string()
            } else {
                format!("{} audit", self.mode)
            };
            writeln!(f, "not run ({why}): {}", self.skipped.join(", "))?;
        }
        write!(f, "verdict: {} ({} audit)", self.validity.name(), self.mode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worst_wins_and_empty_is_unknown() {
        let ok = Check::violations("a", Invariant::Oversell, 0, vec![], "");
        let bad = Check::violations("b", Invariant::LedgerDrift, 2, vec!["x".into()], "");
        let unk = Check::unknown("c", Invariant::History, "no");
        assert_eq!(
            Report::new("full", vec![ok.clone()], vec![]).validity,
            Validity::Valid
        );
        assert_eq!(
            Report::new("full", vec![ok.clone(), unk.clone()], vec![]).validity,
            Validity::Unknown
        );
        assert_eq!(
            Report::new("full", vec![ok, unk, bad], vec![]).validity,
            Validity::Invalid
        );
        assert_eq!(
            Report::new("full", vec![], vec![]).validity,
            Validity::Unknown
        );
    }
}
