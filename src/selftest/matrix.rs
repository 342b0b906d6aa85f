//! The isolation experiment: which isolation level does the kernel need? Each scenario
//! runs on a fresh PostgreSQL database under READ COMMITTED, REPEATABLE READ and
//! SERIALIZABLE, with the reference kernel and each naive one, and is audited as any run
//! is. The table says what each level lets through and what it costs.

use std::path::Path;

use serde::Serialize;

use super::naive::Naive;
use super::run_fresh;
use crate::audit::{Invariant, Validity};
use crate::history::Code;
use crate::run::RunError;
use crate::scenario::Scenario;
use crate::sut::kernel::{Isolation, Sql};

pub const LEVELS: [Isolation; 3] = [
    Isolation::ReadCommitted,
    Isolation::RepeatableRead,
    Isolation::Serializable,
];

/// One run of the matrix.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    pub scenario: String,
    pub isolation: &'static str,
    pub kernel: &'static str,
    /// Findings of the oversell checks (items, buckets or rows, as each check counts).
    pub oversells: u64,
    /// Findings of the mandate-breach checks.
    pub mandate_breaches: u64,
    pub occ_retries: u64,
    pub retry_exhausted: u64,
    pub purchases_per_s: f64,
    pub validity: Validity,
}

/// The reference kernel's name in the table.
pub const REFERENCE: &str = "reference (conditional updates)";

/// Every scenario × level × kernel on `server` (a PostgreSQL URL that may create and drop
/// databases); `agents` overrides each scenario's agent count (a small matrix).
pub async fn run(
    server: &str,
    scenarios: &[Scenario],
    agents: Option<u64>,
) -> Result<Vec<Cell>, RunError> {
    let work = tempfile::tempdir().map_err(|source| RunError::Io {
        path: "temporary directory".into(),
        source,
    })?;
    let kernels: Vec<(&'static str, Sql)> = std::iter::once((REFERENCE, Sql::reference()))
        .chain(Naive::ALL.iter().map(|n| (n.name(), n.sql())))
        .collect();
    let mut cells = Vec::new();
    for scenario in scenarios {
        for level in LEVELS {
            for (k, (kernel, sql)) in kernels.iter().enumerate() {
                let mut s = scenario.clone();
                s.kernel.isolation = level;
                if let Some(n) = agents {
                    s.agents.count = n;
                }
                // Lower case: PostgreSQL folds the database name it creates.
                let name = format!("matrix-{}-{}-{k}", s.name, level.sql()).to_lowercase();
                cells.push(cell(server, work.path(), &name, s, level, kernel, sql.clone()).await?);
            }
        }
    }
    Ok(cells)
}

async fn cell(
    server: &str,
    work: &Path,
    name: &str,
    scenario: Scenario,
    level: Isolation,
    kernel: &'static str,
    sql: Sql,
) -> Result<Cell, RunError> {
    let scenario_name = scenario.name.clone();
    let (run, report) = run_fresh(Some(server), work, name, scenario, sql, None).await?;
    let t = &run.metrics.totals;
    Ok(Cell {
        scenario: scenario_name,
        isolation: level.sql(),
        kernel,
        oversells: report.count_of(Invariant::Oversell),
        mandate_breaches: report.count_of(Invariant::MandateBreach),
        occ_retries: t.occ_retries,
        retry_exhausted: t.code(Code::RetryExhausted),
        purchases_per_s: t.purchases as f64 / (run.elapsed_ms.max(1) as f64 / 1000.0),
        validity: report.validity,
    })
}

/// The cells as one table.
pub fn table(cells: &[Cell]) -> String {
    let mut out = format!(
        "{:<11} {:<16} {:<40} {:>9} {:>9} {:>8} {:>9} {:>11}  verdict\n",
        "scenario",
        "isolation",
        "kernel",
        "oversells",
        "breaches",
        "OCC",
        "exhausted",
        "purchases/s"
    );
    for c in cells {
        out.push_str(&format!(
            "{:<11} {:<16} {:<40} {:>9} {:>9} {:>8} {:>9} {:>11.0}  {}\n",
            c.scenario,
            c.isolation,
            c.kernel,
            c.oversells,
            c.mandate_breaches,
            c.occ_retries,
            c.retry_exhausted,
            c.purchases_per_s,
            c.validity.name()
        ));
    }
    out
}
