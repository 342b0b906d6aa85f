//! `swarm merge DIR...`: shard reports into one run, losslessly where the data allows.
//!
//! Counters, attempts, HDR histograms (from the `.hdr` files) and histories add up
//! exactly; per-second series add up by second (their per-second p50/p99 are the shards'
//! worst, an upper bound); the history audit runs once, on the merged history, against the
//! shared database; thresholds are evaluated on the merged figures.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::{Summary, read_histogram, read_series};
use crate::addr::DbUrl;
use crate::history::{Header, HistoryError, Reader, Sink};
use crate::metrics::{Percentiles, Sample};
use crate::scenario::{Metric, Threshold};

#[derive(Debug, Error)]
pub enum MergeError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    History(#[from] HistoryError),
    #[error("{path}: {reason}")]
    Bad { path: String, reason: String },
}

struct Shard {
    dir: PathBuf,
    summary: Summary,
    /// The header of its history (the records are read when merged, a frame at a time).
    header: Header,
    series: Vec<Sample>,
    regions: Vec<String>,
}

fn bad(dir: &Path, reason: impl Into<String>) -> MergeError {
    MergeError::Bad {
        path: dir.display().to_string(),
        reason: reason.into(),
    }
}

fn read_shard(dir: &Path) -> Result<Shard, MergeError> {
    let text = std::fs::read_to_string(dir.join("summary.json"))
        .map_err(|e| bad(dir, format!("summary.json: {e}")))?;
    let summary: Summary =
        serde_json::from_str(&text).map_err(|e| bad(dir, format!("summary.json: {e}")))?;
    let header = Reader::open(&dir.join("history.bin"))?.header().clone();
    let (series, regions) = read_series(&dir.join("timeseries.csv"))?;
    Ok(Shard {
        dir: dir.to_path_buf(),
        summary,
        header,
        series,
        regions,
    })
}

fn add_series(into: &mut Vec<Sample>, from: &[Sample]) {
    for (i, s) in from.iter().enumerate() {
        if i >= into.len() {
            into.push(s.clone());
            continue;
        }
        let t = &mut into[i];
        t.commits += s.commits;
        t.declines += s.declines;
        t.errors += s.errors;
        t.occ_retries += s.occ_retries;
        t.requests += s.requests;
        t.p50_us = t.p50_us.max(s.p50_us);
        t.p99_us = t.p99_us.max(s.p99_us);
        t.in_flight += s.in_flight;
        t.agents_done += s.agents_done;
        for (a, b) in t.regions.iter_mut().zip(s.regions.iter()) {
            if a.is_up() {
                *a = *b;
            }
        }
    }
}

/// Write the records of every history in `paths` to `out` under `header`.
fn concatenate(paths: &[PathBuf], header: &Header, out: &Path) -> Result<(), MergeError> {
    let sink = Sink::create(out, header)?;
    let mut examples = Vec::new();
    for p in paths {
        let mut reader = Reader::open(p)?;
        let mut batch = sink.spare(0);
        while reader.next_records(&mut batch)? {
            sink.send(std::mem::replace(&mut batch, sink.spare(0)));
        }
        examples.extend(reader.ending().contract_examples);
    }
    sink.finish(examples)?;
    Ok(())
}

/// Merge shard directories into `out`; `db` is the shared database (default: the first
/// shard's, when its URL was recorded without a password).
pub async fn merge(dirs: &[PathBuf], db: Option<DbUrl>, out: &Path) -> Result<Summary, MergeError> {
    let mut shards = Vec::with_capacity(dirs.len());
    for d in dirs {
        shards.push(read_shard(d)?);
    }
    if shards.is_empty() {
        return Err(bad(out, "no shard directories given"));
    }
    let first_regions = shards[0].regions.clone();
    let first_header = shards[0].header.clone();
    let mut seen = Vec::new();
    for s in &shards {
        // Each shard is its own process, started at its own moment.
        let mut h = s.header.clone();
        let shard = h.shard.take();
        h.started_unix_ms = None;
        let mut base = first_header.clone();
        base.shard = None;
        base.started_unix_ms = None;
        if h != base {
            return Err(bad(
                &s.dir,
                "a different run id, scenario, seed or catalog than the first shard",
            ));
        }
        if let Some(sh) = shard {
            if seen.contains(&sh) {
                return Err(bad(&s.dir, format!("shard {}/{} given twice", sh.0, sh.1)));
            }
            seen.push(sh);
        }
        if s.regions != first_regions {
            return Err(bad(&s.dir, "different regions than the first shard"));
        }
    }
    // The whole set, or nothing: a missing shard's purchases would read as phantom commits.
    if let Some(&(_, n)) = seen.first() {
        if seen.len() != shards.len() || seen.iter().any(|&(_, m)| m != n) {
            return Err(bad(
                out,
                "the directories mix shards of different counts (or shards and a whole run)",
            ));
        }
        let missing: Vec<String> = (0..n)
            .filter(|i| !seen.iter().any(|&(j, _)| j == *i))
            .map(|i| format!("{i}/{n}"))
            .collect();
        if !missing.is_empty() {
            return Err(bad(
                out,
                format!(
                    "shard {} missing: give the report directory of every shard of the run ({} given)",
                    missing.join(", "),
                    seen.len()
                ),
            ));
        }
    }
    let db = match db {
        Some(u) => u,
        None => shards[0].summary.database.parse().map_err(|_| {
            bad(
                &shards[0].dir,
                "give --db: the shard's database URL was redacted",
            )
        })?,
    };

    let first = &shards[0];

    // Histograms.
    let mut names = vec!["latency-corrected".to_string(), "latency-raw".to_string()];
    names.extend(
        first
            .regions
            .iter()
            .map(|r| format!("latency-raw-region-{r}")),
    );
    let mut histograms = Vec::new();
    for name in &names {
        let mut total = read_histogram(&first.dir.join(format!("{name}.hdr")))?;
        for s in &shards[1..] {
            total
                .add(read_histogram(&s.dir.join(format!("{name}.hdr")))?)
                .map_err(|e| bad(&s.dir, format!("{name}.hdr: {e:?}")))?;
        }
        histograms.push((name.clone(), total));
    }

    // Figures.
    let mut m = first.summary.clone();
    m.shard = None;
    m.counters = BTreeMap::new();
    m.statuses = BTreeMap::new();
    m.indeterminate = Default::default();
    m.attempts = vec![0; first.summary.attempts.len()];
    m.agents_total = 0;
    m.agents_done = 0;
    m.elapsed_ms = 0;
    m.agents_elapsed_ms = 0;
    m.faults = Vec::new();
    m.resolution = Default::default();
    m.final_reads = Default::default();
    let mut series: Vec<Sample> = Vec::new();
    for s in &shards {
        for (k, v) in &s.summary.counters {
            *m.counters.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &s.summary.statuses {
            *m.statuses.entry(k.clone()).or_default() += v;
        }
        m.indeterminate.add(&s.summary.indeterminate);
        for (a, b) in m.attempts.iter_mut().zip(s.summary.attempts.iter()) {
            *a += b;
        }
        m.agents_total += s.summary.agents_total;
        m.agents_done += s.summary.agents_done;
        m.elapsed_ms = m.elapsed_ms.max(s.summary.elapsed_ms);
        m.agents_elapsed_ms = m.agents_elapsed_ms.max(s.summary.agents_elapsed_ms);
        m.stopped_early |= s.summary.stopped_early;
        m.faults.extend(s.summary.faults.iter().cloned());
        let f = &s.summary.final_reads;
        m.final_reads.offered_open += f.offered_open;
        m.final_reads.offered_declined += f.offered_declined;
        m.final_reads.offered_committed += f.offered_committed;
        m.final_reads.read += f.read;
        m.final_reads.answered += f.answered;
        m.final_reads.past_retention += f.past_retention;
        m.final_reads.elapsed_ms = m.final_reads.elapsed_ms.max(f.elapsed_ms);
        if m.final_reads.stopped.is_none() {
            m.final_reads.stopped.clone_from(&f.stopped);
        }
        let r = &s.summary.resolution;
        m.resolution.pending += r.pending;
        m.resolution.recovered += r.recovered;
        m.resolution.fresh += r.fresh;
        m.resolution.refused += r.refused;
        m.resolution.unresolved += r.unresolved;
        m.resolution.past_retention += r.past_retention;
        for (a, b) in m.regions.iter_mut().zip(s.summary.regions.iter()) {
            if !std::ptr::eq(s.dir.as_path(), first.dir.as_path()) {
                a.requests += b.requests;
                a.commits += b.commits;
                a.errors += b.errors;
                match (&mut a.connections, &b.connections) {
                    (Some(a), Some(b)) => a.add(b),
                    (a @ None, Some(b)) => *a = Some(*b),
                    _ => {}
                }
            }
        }
        add_series(&mut series, &s.series);
    }
    m.latency_corrected_ms = Percentiles::of(&histograms[0].1);
    m.latency_raw_ms = Percentiles::of(&histograms[1].1);
    for (region, (_, h)) in m.regions.iter_mut().zip(histograms[2..].iter()) {
        region.latency_raw_ms = Percentiles::of(h);
    }
    // The shards' histories, one after the other, into one file (a frame at a time); one
    // audit over them and the shared database (a shard killed mid-run leaves a cut
    // history: the audit is as cut as its worst shard).
    std::fs::create_dir_all(out).map_err(|e| bad(out, e.to_string()))?;
    let mut header = first_header;
    header.shard = None;
    // The merged run began with its first shard.
    header.started_unix_ms = shards.iter().filter_map(|s| s.header.started_unix_ms).min();
    let paths: Vec<PathBuf> = shards.iter().map(|s| s.dir.join("history.bin")).collect();
    concatenate(&paths, &header, &out.join("history.bin"))?;
    m.audit = crate::audit::audit_files(Some(&db), &paths, crate::audit::DEFAULT_BUDGET_BYTES)
        .await
        .map_err(|e| bad(out, e.to_string()))?;
    let occ_retries = m.counters.get("occ_retries").copied().unwrap_or(0);
    // A shard stopped early leaves the merged run stopped early: its headline says so.
    m.headline = super::Headline::of(&m.audit, occ_retries, &m.attempts).stopped_at(
        m.agents_done,
        m.agents_total,
        m.stopped_early,
        false,
    );
    let rules: Vec<(Metric, Threshold)> = m.thresholds.iter().map(|t| (t.metric, t.rule)).collect();
    m.conclude(&rules);

    m.write(out)?;
    super::write_series(&out.join("timeseries.csv"), &series, &first_regions)?;
    let refs: Vec<(String, &hdrhistogram::Histogram<u64>)> =
        histograms.iter().map(|(n, h)| (n.clone(), h)).collect();
    super::write_histograms(out, &refs)?;
    super::render(out, &m, &series)?;
    Ok(m)
}
