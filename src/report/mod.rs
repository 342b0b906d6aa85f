//! The run's record on disk: `summary.json` (versioned, with a JSON Schema in `schemas/`),
//! `timeseries.csv`, latency histograms (`.hgrm` text and lossless `.hdr`), `junit.xml`
//! and a self-contained `report.html`; plus `swarm report` (re-render) and `swarm merge`
//! (shards into one run).
//!
//! Invariants: everything `report.html` shows comes from `summary.json` and
//! `timeseries.csv`, so a directory can always be re-rendered; the exit code follows
//! docs/design.md (invariants 1 beat thresholds 2 beat unknown 3).

mod files;
mod headline;
mod hgrm;
mod html;
mod junit;
pub mod merge;
mod summary;
mod words;

pub use files::{
    fresh_report_path, new_report_dir, read_histogram, read_series, render, write_all,
    write_histograms, write_series,
};
pub use headline::Headline;
pub use summary::*;
pub use words::{settings_of, target_of};

use crate::run::RunResult;
use crate::scenario::Scenario;

/// Whether the audit found the history cut short (a killed or aborted run): its open keys
/// wait for `swarm resolve`.
pub fn history_cut(audit: &crate::audit::Report) -> bool {
    audit
        .check("history.complete")
        .is_some_and(|c| c.validity == crate::audit::Validity::Unknown)
}

/// The command that finishes a cut history, in the words the console prints.
pub fn resolve_advice(scenario: &str, history: &std::path::Path) -> String {
    format!(
        "the history was cut short: replay its open keys and finish it with\n  swarm resolve {scenario} --history {}",
        history.display()
    )
}

/// The end of every run: audit what it left (the history read back from its file, part by
/// part within the audit's memory budget), build the summary, and write the report
/// directory. The summary comes back even when writing failed.
pub async fn conclude(scenario: &Scenario, result: RunResult) -> (Summary, std::io::Result<()>) {
    let paths = [result.history_path.clone()];
    let audit = match crate::audit::audit_files(
        result.db_url.as_ref(),
        &paths,
        crate::audit::DEFAULT_BUDGET_BYTES,
    )
    .await
    {
        Ok(report) => report,
        Err(e) => {
            tracing::error!("cannot audit the run's history: {e}");
            crate::audit::unreadable(&e)
        }
    };
    tracing::info!(memory_kib = ?crate::metrics::memory_kib(), "audited");
    let summary = Summary::build(scenario, &result, audit);
    let written = write_all(&result.dir, &summary, &result);
    (summary, written)
}
