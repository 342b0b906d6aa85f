//! The run's record on disk: `summary.json` (versioned, with a JSON Schema in `schemas/`),
//! `timeseries.csv`, latency histograms (`.hgrm` text and lossless `.hdr`), `junit.xml`
//! and a self-contained `report.html`; plus `swarm report` (re-render) and `swarm merge`
//! (shards into one run).
//!
//! Invariants: everything `report.html` shows comes from `summary.json` and
//! `timeseries.csv`, so a directory can always be re-rendered; the exit code follows
//! DESIGN.md (invariants 1 beat thresholds 2 beat unknown 3).

mod files;
mod hgrm;
mod html;
mod junit;
pub mod merge;
mod summary;

pub use files::{read_histogram, read_series, render, write_all, write_histograms, write_series};
pub use summary::*;
