//! Verbs that look at what runs left behind: `audit`, `report`, `merge`, and `selftest`
//! (which makes its own runs to look at).

use std::path::PathBuf;

use anyhow::Context;

use super::{AuditArgs, Exit, ResolveArgs, chosen_db, internal, parse_url, print_verdict, usage};
use swarm::addr::DbUrl;
use swarm::exit;

pub async fn audit(args: AuditArgs) -> Result<i32, Exit> {
    if args.db.is_none() && args.history.is_none() {
        return Err(usage(anyhow::anyhow!(
            "give --db URL, --history FILE, or both"
        )));
    }
    let url = match &args.db {
        Some(u) => Some(parse_url(u)?),
        None => None,
    };
    let report = match &args.history {
        Some(p) => {
            let paths = [p.clone()];
            let budget = args.memory_mib << 20;
            match swarm::audit::audit_files(url.as_ref(), &paths, budget).await {
                Ok(report) => report,
                Err(e @ swarm::audit::AuditError::History(_)) => return Err(usage(e)),
                Err(e) => return Err(internal(e)),
            }
        }
        None => {
            swarm::audit::audit(swarm::audit::Input {
                db: url.as_ref(),
                history: None,
                state_only: args.state_only,
            })
            .await
        }
    };
    let code = print_verdict(&report, args.json)?;
    if let Some(history) = &args.history
        && !args.json
        && swarm::report::history_cut(&report)
    {
        println!(
            "{}",
            swarm::report::resolve_advice("SCENARIO.toml", history)
        );
    }
    Ok(code)
}

pub async fn resolve(args: ResolveArgs) -> Result<i32, Exit> {
    use swarm::run::RunError;
    use swarm::run::resume::{ResumeOptions, mark_resolved, resume};
    let scenario = swarm::scenario::Scenario::load(&args.scenario).map_err(usage)?;
    // As `swarm run` chooses; none: the `swarm.db` beside the history.
    let db = chosen_db(args.db.as_deref(), &scenario)?;
    let budget = args.memory_mib << 20;
    let resumed = resume(ResumeOptions {
        scenario,
        history: args.history.clone(),
        db,
        budget_bytes: budget,
    })
    .await
    .map_err(|e| match e {
        RunError::Unsupported(_) | RunError::History(_) => usage(e),
        other => internal(other),
    })?;
    let r = &resumed.resolution;
    eprintln!(
        "swarm: resolve: the history was cut at byte {} ({}); {} keys open ({} without a definite answer, {} with an intent and no request){}; replayed: {} recovered, {} fresh, {} refused, {} unresolved{}",
        resumed.cut.offset,
        resumed.cut.reason,
        resumed.indeterminate + resumed.unsent,
        resumed.indeterminate,
        resumed.unsent,
        match resumed.left_out {
            0 => String::new(),
            n => format!(", {n} more not replayed (past the limit)"),
        },
        r.recovered,
        r.fresh,
        r.refused,
        r.unresolved,
        match (r.past_retention, resumed.run_age_ms) {
            (0, _) => String::new(),
            (n, Some(age_ms)) => format!(
                " ({n} of them not replayed: the run began {:.0} s ago, too near the end of the contract's key_retention_s)",
                age_ms as f64 / 1000.0
            ),
            (n, None) => format!(
                " ({n} of them not replayed: when the run began is not known, or is later than this machine's clock, so each key may be past the contract's key_retention_s)"
            ),
        }
    );
    let paths = [args.history.clone()];
    let report = swarm::audit::audit_files(resumed.db.as_ref(), &paths, budget)
        .await
        .map_err(internal)?;
    if let Some(db) = &resumed.db
        && report.validity != swarm::audit::Validity::Unknown
    {
        mark_resolved(db, &resumed.run_id).await.map_err(internal)?;
    }
    // The run's report directory (the history's): its summary, report and junit now say
    // what the resolved history says.
    let dir = args
        .history
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    if dir.join("summary.json").is_file() {
        let scenario = swarm::scenario::Scenario::load(&args.scenario).map_err(usage)?;
        let summary =
            finish_report(&dir, &scenario, &report, &resumed.resolution).map_err(internal)?;
        eprintln!(
            "swarm: resolve: updated {} (summary.json, report.html, junit.xml)",
            dir.display()
        );
        // The run's outcome, concluded again: a stopped run is still stopped (exit 4),
        // as `swarm report` on the directory says.
        if args.json {
            print_verdict(&report, true)?;
        } else {
            println!("{}", summary.render());
        }
        return Ok(summary.exit_code);
    }
    print_verdict(&report, args.json)
}

/// A stopped or killed run's report directory, after `swarm resolve`: the new audit and
/// resolution in its summary, the verdict and exit code concluded again, the report and
/// junit rendered again.
fn finish_report(
    dir: &std::path::Path,
    scenario: &swarm::scenario::Scenario,
    audit: &swarm::audit::Report,
    resolution: &swarm::run::Resolution,
) -> anyhow::Result<swarm::report::Summary> {
    let path = dir.join("summary.json");
    let mut summary: swarm::report::Summary =
        serde_json::from_str(&std::fs::read_to_string(&path)?)
            .with_context(|| format!("{}: not a swarm summary", path.display()))?;
    let h = &summary.headline;
    summary.headline = swarm::report::Headline::of(audit, h.occ_retries, &h.attempts).stopped_at(
        summary.agents_done,
        summary.agents_total,
        summary.stopped_early,
        false,
    );
    summary.audit = audit.clone();
    summary.aborted = false;
    summary.resolution = resolution.clone();
    let rules: Vec<_> = scenario.thresholds.iter().map(|(m, t)| (*m, *t)).collect();
    summary.conclude(&rules);
    summary.write(dir)?;
    let (series, _) = swarm::report::read_series(&dir.join("timeseries.csv"))?;
    swarm::report::render(dir, &summary, &series)?;
    Ok(summary)
}

pub async fn report(dir: PathBuf) -> Result<i32, Exit> {
    let text = std::fs::read_to_string(dir.join("summary.json"))
        .with_context(|| format!("{}", dir.join("summary.json").display()))
        .map_err(usage)?;
    let summary: swarm::report::Summary = serde_json::from_str(&text)
        .with_context(|| {
            format!(
                "{}: not a swarm summary",
                dir.join("summary.json").display()
            )
        })
        .map_err(usage)?;
    let (series, _) = swarm::report::read_series(&dir.join("timeseries.csv")).map_err(usage)?;
    swarm::report::render(&dir, &summary, &series).map_err(internal)?;
    println!("{}", dir.join("report.html").display());
    Ok(summary.exit_code)
}

pub async fn merge(
    dirs: Vec<PathBuf>,
    out: Option<PathBuf>,
    db: Option<String>,
) -> Result<i32, Exit> {
    let db = match db {
        Some(u) => Some(parse_url(&u)?),
        None => None,
    };
    let out = match out {
        Some(o) => o,
        None => {
            let name = dirs
                .first()
                .and_then(|d| d.file_name())
                .map(|n| {
                    n.to_string_lossy()
                        .split('-')
                        .next()
                        .unwrap_or("run")
                        .to_string()
                })
                .unwrap_or_else(|| "run".into());
            // Made by `merge` once the shard set is known to be whole.
            swarm::report::fresh_report_path(
                std::path::Path::new("reports"),
                &format!("{name}-merged"),
            )
        }
    };
    let summary = swarm::report::merge::merge(&dirs, db, &out)
        .await
        .map_err(usage)?;
    println!("{}", summary.render());
    println!("report: {}", out.display());
    Ok(summary.exit_code)
}

/// `swarm selftest --isolation-matrix`: the table; exit 1 when the reference kernel itself
/// let a violation through at any level (the naive kernels are expected to).
pub async fn isolation_matrix(
    db: Option<String>,
    json: bool,
    files: Vec<std::path::PathBuf>,
    agents: Option<u64>,
) -> Result<i32, Exit> {
    let server = match db.as_deref().map(parse_url).transpose()? {
        Some(DbUrl::Postgres(u)) => u,
        _ => {
            return Err(usage(anyhow::anyhow!(
                "--isolation-matrix needs --db postgres://… (a server that may create databases)"
            )));
        }
    };
    if agents.is_some_and(|n| n == 0 || n > swarm::scenario::MAX_AGENTS) {
        return Err(usage(anyhow::anyhow!(
            "--agents: between 1 and {}",
            swarm::scenario::MAX_AGENTS
        )));
    }
    let scenarios = files
        .iter()
        .map(|f| swarm::scenario::Scenario::load(f))
        .collect::<Result<Vec<_>, _>>()
        .map_err(usage)?;
    let cells = swarm::selftest::matrix::run(&server, &scenarios, agents)
        .await
        .map_err(internal)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&cells).map_err(internal)?
        );
    } else {
        print!("{}", swarm::selftest::matrix::table(&cells));
    }
    let reference_broke = cells.iter().any(|c| {
        c.kernel == swarm::selftest::matrix::REFERENCE
            && c.validity == swarm::audit::Validity::Invalid
    });
    Ok(if reference_broke {
        exit::INVARIANT_VIOLATED
    } else {
        exit::VALID
    })
}

pub async fn selftest(db: Option<String>, json: bool) -> Result<i32, Exit> {
    let server = match db {
        Some(u) => match parse_url(&u)? {
            DbUrl::Postgres(u) => Some(u),
            DbUrl::Sqlite(_) => None,
        },
        None => None,
    };
    let report = swarm::selftest::run(server.as_deref())
        .await
        .map_err(internal)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(internal)?
        );
    } else {
        println!("{report}");
    }
    Ok(if report.passed {
        exit::VALID
    } else {
        exit::INVARIANT_VIOLATED
    })
}
