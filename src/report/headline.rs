//! The run in one line: `Headline`, the figures a reader looks for first (units sold
//! against stock, settled purchases, the four invariant counters, OCC retries, attempts),
//! printed last in the console summary, under the dashboard's verdict and at the top of
//! `report.html`.
//!
//! Invariants: every figure says what it counts (units from the database or from what
//! clients were told, purchases, violations per invariant); a zero is said only when its
//! checks decided it (an undecided invariant reads `unknown`, one none of whose checks ran,
//! as in an audit without the database, `not checked`; never 0).

use serde::{Deserialize, Serialize};

use crate::audit::{Report as Audit, Validity};

/// The run in one line, with figures that say what they count: units (from the database,
/// or from what clients were told), settled purchases, violations per invariant.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Headline {
    pub units_sold: i64,
    pub initial_stock: i64,
    pub settled_purchases: u64,
    /// `database` or `acknowledged answers`; empty when neither could be read.
    pub sold_from: String,
    pub oversells: u64,
    pub duplicate_settlements: u64,
    pub ledger_drift: u64,
    pub mandate_breaches: u64,
    pub occ_retries: u64,
    /// `attempts[i]`: executions that took `i + 1` runs.
    pub attempts: Vec<u64>,
    /// Invariants whose count is 0 only because a check of theirs could not decide:
    /// the line says `unknown`, never 0.
    #[serde(default)]
    pub undecided: Vec<String>,
    /// Invariants none of whose checks ran (they were skipped: an audit of the history
    /// alone cannot count oversells): the line says `not checked`, never 0.
    #[serde(default)]
    pub unchecked: Vec<String>,
    /// The invalid checks, worst first (`name (count)`): what decided an invalid verdict.
    #[serde(default)]
    pub findings: Vec<String>,
    /// `stopped early: 187171 of 200000 agents ran` (a second Ctrl-C: aborted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
}

impl Headline {
    pub fn of(audit: &Audit, occ_retries: u64, attempts: &[u64]) -> Headline {
        use crate::audit::Invariant;
        const COUNTED: [Invariant; 4] = [
            Invariant::Oversell,
            Invariant::DuplicateSettlement,
            Invariant::LedgerDrift,
            Invariant::MandateBreach,
        ];
        let ran = |i: Invariant| audit.checks.iter().any(|c| c.invariant == i);
        let skipped = |i: Invariant| {
            audit
                .skipped
                .iter()
                .any(|name| name.split_once('.').is_some_and(|(of, _)| of == i.name()))
        };
        Headline {
            units_sold: audit.sold.iter().map(|s| s.units).sum(),
            initial_stock: audit.sold.iter().map(|s| s.stock).sum(),
            settled_purchases: audit.sold.iter().map(|s| s.purchases).sum(),
            sold_from: audit
                .sold
                .first()
                .map(|s| s.from.clone())
                .unwrap_or_default(),
            oversells: audit.count_of(Invariant::Oversell),
            duplicate_settlements: audit.count_of(Invariant::DuplicateSettlement),
            ledger_drift: audit.count_of(Invariant::LedgerDrift),
            mandate_breaches: audit.count_of(Invariant::MandateBreach),
            occ_retries,
            attempts: trim_zeros(attempts),
            unchecked: COUNTED
                .into_iter()
                .filter(|i| !ran(*i) && skipped(*i))
                .map(|i| i.name().to_string())
                .collect(),
            undecided: COUNTED
                .into_iter()
                .filter(|i| {
                    audit.count_of(*i) == 0
                        && audit
                            .checks
                            .iter()
                            .any(|c| c.invariant == *i && c.validity == Validity::Unknown)
                })
                .map(|i| i.name().to_string())
                .collect(),
            findings: audit
                .checks
                .iter()
                .filter(|c| c.validity == Validity::Invalid)
                .map(|c| format!("{} ({})", c.name, c.count))
                .collect(),
            stopped: None,
        }
    }

    /// Say that the run was stopped early, and how far it got.
    pub fn stopped_at(mut self, done: u64, total: u64, stopped: bool, aborted: bool) -> Headline {
        if stopped || aborted {
            self.stopped = Some(format!(
                "{}: {done} of {total} agents ran",
                if aborted {
                    "ABORTED (a second Ctrl-C)"
                } else {
                    "STOPPED EARLY"
                }
            ));
        }
        self
    }

    /// `sold 100 of 100 units (100 settled purchases, database) · oversells 0 · …`
    pub fn line(&self) -> String {
        let sold = if self.sold_from.is_empty() {
            "units sold unknown (nothing to count them from)".to_string()
        } else {
            format!(
                "sold {} of {} units ({} settled purchases, from the {})",
                self.units_sold, self.initial_stock, self.settled_purchases, self.sold_from
            )
        };
        let attempts: Vec<String> = self
            .attempts
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, n)| format!("{}×{n}", i + 1))
            .collect();
        // A zero is said only when its checks decided it.
        let figure = |invariant: &str, n: u64| {
            if self.unchecked.iter().any(|u| u == invariant) {
                "not checked".to_string()
            } else if self.undecided.iter().any(|u| u == invariant) {
                "unknown".to_string()
            } else {
                n.to_string()
            }
        };
        let mut line = format!(
            "{sold} · oversells {} · duplicate settlements {} · ledger drift {} · mandate breaches {} · OCC retries {} (attempts {})",
            figure("oversell", self.oversells),
            figure("duplicate_settlement", self.duplicate_settlements),
            figure("ledger_drift", self.ledger_drift),
            figure("mandate_breach", self.mandate_breaches),
            self.occ_retries,
            if attempts.is_empty() {
                "none".into()
            } else {
                attempts.join(" ")
            }
        );
        if let Some(first) = self.findings.first() {
            line.push_str(&format!(
                " · INVALID: {first}{}",
                match self.findings.len() {
                    1 => String::new(),
                    n => format!(" and {} more", n - 1),
                }
            ));
        }
        match &self.stopped {
            Some(stopped) => format!("{stopped} · {line}"),
            None => line,
        }
    }
}

/// The attempts distribution without its empty bars at the end.
pub(super) fn trim_zeros(v: &[u64]) -> Vec<u64> {
    let end = v.iter().rposition(|x| *x != 0).map_or(0, |i| i + 1);
    v[..end].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Check, Invariant};

    fn passed(name: &'static str, invariant: Invariant) -> Check {
        Check::violations(name, invariant, 0, vec![], "")
    }

    #[test]
    fn an_invariant_none_of_whose_checks_ran_is_not_checked_never_zero() {
        // An audit of the history alone: the state checks were skipped.
        let audit = Audit::new(
            "history-only",
            vec![
                passed(
                    "duplicate_settlement.key_executions",
                    Invariant::DuplicateSettlement,
                ),
                passed("history.complete", Invariant::History),
                // One oversell check ran and passed: the figure is its.
                passed("oversell.acked_over_stock", Invariant::Oversell),
            ],
            vec![
                "oversell.stock_not_conserved".into(),
                "ledger_drift.global_sum".into(),
                "mandate_breach.cap".into(),
            ],
        );
        let line = Headline::of(&audit, 0, &[]).line();
        assert!(
            line.contains(
                "oversells 0 · duplicate settlements 0 · ledger drift not checked · mandate breaches not checked"
            ),
            "{line}"
        );
    }
}
