//! Writing and reading a report directory's files.

use std::path::{Path, PathBuf};

use super::{Summary, hgrm, html, junit};
use crate::metrics::Sample;
use crate::run::RunResult;
use crate::scenario::RegionState;

fn io_at(path: &Path, e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(format!("{}: {e}", path.display()))
}

fn write(path: &Path, bytes: impl AsRef<[u8]>) -> std::io::Result<()> {
    std::fs::write(path, bytes).map_err(|e| io_at(path, e))
}

/// Every file of a run's report directory but the history and the database.
pub fn write_all(dir: &Path, s: &Summary, run: &RunResult) -> std::io::Result<()> {
    s.write(dir)?;
    write_series(&dir.join("timeseries.csv"), &run.series, &run.region_names)?;
    let m = &run.metrics;
    let mut histograms = vec![
        ("latency-corrected".to_string(), &m.corrected_us),
        ("latency-raw".to_string(), &m.raw_us),
    ];
    for (name, fig) in run.region_names.iter().zip(m.regions.iter()) {
        if let Some(h) = &fig.latency_us {
            histograms.push((format!("latency-raw-region-{name}"), h));
        }
    }
    write_histograms(dir, &histograms)?;
    render(dir, s, &run.series)
}

/// Each histogram as `NAME.hgrm` (text) and `NAME.hdr` (lossless, for `swarm merge`).
pub fn write_histograms(
    dir: &Path,
    histograms: &[(String, &hdrhistogram::Histogram<u64>)],
) -> std::io::Result<()> {
    for (name, h) in histograms {
        write(
            &dir.join(format!("{name}.hgrm")),
            hgrm::percentile_distribution(h),
        )?;
        write(&dir.join(format!("{name}.hdr")), hgrm::to_bytes(h)?)?;
    }
    Ok(())
}

pub fn read_histogram(path: &Path) -> std::io::Result<hdrhistogram::Histogram<u64>> {
    let bytes = std::fs::read(path).map_err(|e| io_at(path, e))?;
    hgrm::from_bytes(&bytes).map_err(|e| io_at(path, e))
}

/// `junit.xml` and `report.html` from a summary and its series.
pub fn render(dir: &Path, s: &Summary, series: &[Sample]) -> std::io::Result<()> {
    write(&dir.join("junit.xml"), junit::render(s)?)?;
    write(&dir.join("report.html"), html::render(s, series))
}

const FIXED: [&str; 10] = [
    "second",
    "requests",
    "commits",
    "declines",
    "errors",
    "occ_retries",
    "p50_ms",
    "p99_ms",
    "in_flight",
    "agents_done",
];

pub fn write_series(path: &Path, series: &[Sample], regions: &[String]) -> std::io::Result<()> {
    let mut w = csv::Writer::from_path(path).map_err(|e| io_at(path, e))?;
    let mut header: Vec<String> = FIXED.iter().map(|s| s.to_string()).collect();
    header.extend(regions.iter().map(|r| format!("region:{r}")));
    w.write_record(&header).map_err(|e| io_at(path, e))?;
    for s in series {
        let mut row = vec![
            s.second.to_string(),
            s.requests.to_string(),
            s.commits.to_string(),
            s.declines.to_string(),
            s.errors.to_string(),
            s.occ_retries.to_string(),
            format!("{:.3}", s.p50_us as f64 / 1000.0),
            format!("{:.3}", s.p99_us as f64 / 1000.0),
            s.in_flight.to_string(),
            s.agents_done.to_string(),
        ];
        row.extend(s.regions.iter().map(|r| r.label()));
        w.write_record(&row).map_err(|e| io_at(path, e))?;
    }
    w.flush().map_err(|e| io_at(path, e))
}

/// The per-second series and region names back from `timeseries.csv`.
pub fn read_series(path: &Path) -> std::io::Result<(Vec<Sample>, Vec<String>)> {
    let mut r = csv::Reader::from_path(path).map_err(|e| io_at(path, e))?;
    let header = r.headers().map_err(|e| io_at(path, e))?.clone();
    if header.len() < FIXED.len() || header.iter().take(FIXED.len()).ne(FIXED.iter().copied()) {
        return Err(io_at(
            path,
            "not a swarm timeseries.csv (unexpected columns)",
        ));
    }
    let regions: Vec<String> = header
        .iter()
        .skip(FIXED.len())
        .map(|h| h.trim_start_matches("region:").to_string())
        .collect();
    let mut out = Vec::new();
    for (i, rec) in r.records().enumerate() {
        let rec = rec.map_err(|e| io_at(path, e))?;
        let num = |k: usize| -> std::io::Result<f64> {
            rec.get(k)
                .and_then(|v| v.parse::<f64>().ok())
                .ok_or_else(|| {
                    io_at(
                        path,
                        format!("row {}: column {} is not a number", i + 2, FIXED[k]),
                    )
                })
        };
        out.push(Sample {
            second: num(0)? as u64,
            requests: num(1)? as u64,
            commits: num(2)? as u64,
            declines: num(3)? as u64,
            errors: num(4)? as u64,
            occ_retries: num(5)? as u64,
            p50_us: (num(6)? * 1000.0) as u64,
            p99_us: (num(7)? * 1000.0) as u64,
            in_flight: num(8)? as i64,
            agents_done: num(9)? as u64,
            regions: rec
                .iter()
                .skip(FIXED.len())
                .map(|label| {
                    RegionState::parse_label(label).ok_or_else(|| {
                        io_at(
                            path,
                            format!("row {}: `{label}` is not a region state", i + 2),
                        )
                    })
                })
                .collect::<std::io::Result<_>>()?,
        });
    }
    Ok((out, regions))
}

/// `reports/<name>-<UTC timestamp>/`, made unique if two runs start in one second.
pub fn new_report_dir(root: &Path, name: &str) -> std::io::Result<PathBuf> {
    let dir = fresh_report_path(root, name);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// `root/<name>-<UTC timestamp>` (with `-2`, `-3`… when taken), not created: for a verb
/// that must check its inputs before it writes anything.
pub fn fresh_report_path(root: &Path, name: &str) -> PathBuf {
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace(['-', ':'], "");
    let base = root.join(format!("{name}-{stamp}"));
    let mut dir = base.clone();
    let mut n = 1;
    while dir.exists() {
        n += 1;
        dir = PathBuf::from(format!("{}-{n}", base.display()));
    }
    dir
}
