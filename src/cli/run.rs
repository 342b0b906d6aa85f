//! `swarm run`: load the scenario, resolve where it runs, start the dashboard or the
//! progress lines, execute, conclude (audit, summary, report), print.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context;

use super::{Exit, RunArgs, chosen_db, internal, usage};
use swarm::addr::DbUrl;
use swarm::run::{Control, RunId, RunOptions, leftover};
use swarm::scenario::{MAX_AGENTS, Scenario, TargetKind};
use swarm::sut::kernel::Sql;
use swarm::tui::{self, Phase};

pub async fn run(args: RunArgs) -> Result<i32, Exit> {
    let mut scenario = Scenario::load(&args.scenario).map_err(usage)?;
    for warning in &scenario.warnings {
        eprintln!("swarm: warning: {}: {warning}", args.scenario.display());
    }
    if scenario.target.kind == TargetKind::Http {
        // Over HTTP every request allocates and frees its buffers; purged at once, those
        // pages are faulted back in by the next request (4x the page faults in
        // scripts/bench-http.sh). mimalloc's own delay keeps them; the embedded run keeps
        // the prompt purge for its peak RSS.
        // SAFETY: an allocator option, read (atomically) on the next purge.
        unsafe { libmimalloc_sys::mi_option_set(crate::MI_OPTION_PURGE_DELAY, 10) };
    }
    if let Some(seed) = args.seed {
        scenario.seed = seed;
    }
    if let Some(agents) = args.agents {
        if agents == 0 || agents > MAX_AGENTS {
            return Err(usage(anyhow::anyhow!(
                "--agents {agents}: must be between 1 and {MAX_AGENTS}"
            )));
        }
        scenario.agents.count = agents;
    }
    if let Some(patroni) = &args.patroni {
        if patroni.len() > swarm::scenario::MAX_PATRONI {
            return Err(usage(anyhow::anyhow!(
                "--patroni: at most {} Patroni REST endpoints",
                swarm::scenario::MAX_PATRONI
            )));
        }
        scenario.cluster.patroni = patroni.clone();
    }
    // A live endpoint's key comes from the environment: a missing variable is the
    // caller's mistake, said before anything is created.
    if let Some(var) = &scenario.target.api_key_env
        && std::env::var_os(var).is_none()
    {
        return Err(usage(anyhow::anyhow!(
            "{}: target.api_key_env: the variable `{var}` is not set",
            args.scenario.display()
        )));
    }
    // The flag, then the scenario's, then DATABASE_URL; none: embedded.
    let db: Option<DbUrl> = chosen_db(args.db.as_deref(), &scenario)?;
    // Shards of one run share its keys' run id; a lone run gets a fresh one, so running it
    // again against the same live service buys again instead of replaying.
    let run_id = match (&args.run_id, args.shard) {
        (Some(id), _) => id.clone(),
        (None, Some((i, n))) => {
            return Err(usage(anyhow::anyhow!(
                "--shard {i}/{n}: the shards of one run share a run id; pass the same --run-id to each"
            )));
        }
        (None, None) => RunId::random(),
    };
    let key_prefix = swarm::run::key_prefix(&run_id, scenario.seed);
    let leftover_audit = leftover(&args, &db, &run_id, &key_prefix).await?;
    let dir = match args.report_dir {
        Some(d) => {
            std::fs::create_dir_all(&d)
                .with_context(|| format!("creating {}", d.display()))
                .map_err(internal)?;
            d
        }
        None => swarm::report::new_report_dir(Path::new("reports"), &scenario.name)
            .with_context(|| format!("creating a report directory for {}", scenario.name))
            .map_err(internal)?,
    };
    if let Some((url, json)) = leftover_audit {
        let path = dir.join("leftover-audit.json");
        std::fs::write(&path, json)
            .with_context(|| format!("writing {}", path.display()))
            .map_err(internal)?;
        eprintln!(
            "swarm: the state audit of {url}'s leftover is in {}",
            path.display()
        );
    }
    let control = Arc::new(Control::default());
    stop_on_ctrl_c(control.clone());
    let tui = tui::wanted(args.no_tui);
    eprintln!(
        "swarm: running {} (seed {}, run id {run_id}) → {}",
        scenario.name,
        scenario.seed,
        dir.display()
    );
    let (observer, watching) = tokio::sync::oneshot::channel::<Arc<swarm::run::LiveRun>>();
    let (phase, phases) = tokio::sync::watch::channel(Phase::Running);
    // What is driven, in words; a password in a URL never reaches a page or a label.
    let target_words = swarm::run::live::redact(&format!(
        "{} · database: {}",
        swarm::report::target_of(&scenario),
        match &db {
            Some(u) => u.to_string(),
            None if scenario.regions.iter().any(|r| r.endpoint.is_some()) => {
                "none given (history-only audit)".into()
            }
            None => "embedded SQLite".into(),
        }
    ));
    let observe = swarm::observe::Options {
        metrics_listen: args.metrics_listen,
        metrics_push: args.metrics_push.clone(),
        push_interval: args.metrics_push_interval,
        web: args.web,
    };
    // What every presenter names the run by (the dashboard, the page, the metrics).
    let live_meta = swarm::run::live::Meta {
        scenario: scenario.name.clone(),
        seed: scenario.seed,
        run_id: run_id.to_string(),
        target: target_words,
    };
    let observers = match observe.any() {
        true => {
            let o = swarm::observe::Observers::start(&observe, live_meta.clone())
                .await
                .map_err(usage)?;
            if let Some(addr) = args.web {
                eprintln!("swarm: Mission Control at http://{addr}/");
            }
            if let Some(addr) = args.metrics_listen {
                eprintln!("swarm: Prometheus metrics at http://{addr}/metrics");
            }
            Some(Arc::new(o))
        }
        false => None,
    };
    // The running swarm goes to the dashboard and to the observers alike.
    let (to_tui, for_tui) = tokio::sync::oneshot::channel();
    let wants_live = tui || observers.is_some();
    {
        let observers = observers.clone();
        tokio::spawn(async move {
            if let Ok(run) = watching.await {
                if let Some(o) = &observers {
                    o.attach(run.clone());
                }
                let _ = to_tui.send(run);
            }
        });
    }
    let dashboard =
        tui.then(|| tokio::spawn(tui::run(for_tui, phases, live_meta, args.exit_on_finish)));
    let result = swarm::run::execute(RunOptions {
        scenario: scenario.clone(),
        db,
        dir: dir.clone(),
        shard: args.shard,
        progress: !tui,
        control,
        observer: wants_live.then_some(observer),
        kernel_sql: Sql::reference(),
        probe: !args.no_probe,
        run_id,
    })
    .await;
    let result = match result {
        Ok(r) => r,
        Err(e) => {
            if let Some(d) = dashboard {
                d.abort();
                let _ = d.await;
            }
            // Nothing was written: the directory made for it goes (a non-empty one stays).
            let _ = std::fs::remove_dir(&dir);
            // A region that refuses our key is the scenario's mistake; one that does not
            // answer is the environment's.
            return Err(match e {
                swarm::run::RunError::Preflight(
                    p @ swarm::gateway::preflight::PreflightError::Refused { .. },
                ) => usage(p),
                // A TLS file or name the scenario gives that cannot be used.
                swarm::run::RunError::Target(t @ swarm::gateway::open::OpenError::Tls(_)) => {
                    usage(t)
                }
                e => internal(e),
            });
        }
    };
    // The run's connections are closed by now: what they held goes back before the audit.
    crate::give_back_c_heap();
    let _ = phase.send(Phase::Auditing);
    if let Some(o) = &observers {
        o.phase("auditing");
    }
    let marker = result.marker.clone();
    let (summary, written) = swarm::report::conclude(&scenario, result).await;
    if let Some(o) = &observers {
        o.finish(
            swarm::run::live::Verdict {
                validity: summary.validity,
                exit_code: summary.exit_code,
                headline: summary.headline.line(),
                note: format!("report: {}", dir.display()),
            },
            dir.clone(),
        )
        .await;
    }
    if let Some(marker) = marker {
        swarm::run::mark_finished(&marker)
            .await
            .with_context(|| format!("marking the run finished in {}", marker.db))
            .map_err(internal)?;
    }
    if let Some(d) = dashboard {
        let _ = phase.send(Phase::Done {
            validity: summary.validity,
            exit_code: summary.exit_code,
            note: format!("report: {}", dir.display()),
            headline: summary.headline.line(),
        });
        match d.await {
            Ok(Err(e)) => eprintln!("swarm: dashboard: {e}"),
            Err(e) if e.is_panic() => eprintln!("swarm: dashboard failed"),
            _ => {}
        }
    }
    if let Some(o) = observers {
        // The last scrape and every viewer see the verdict before the listeners close.
        tokio::time::sleep(OBSERVE_LINGER).await;
        if o.dropped_frames() > 0 {
            eprintln!(
                "swarm: Mission Control: {} frames dropped for viewers that fell behind",
                o.dropped_frames()
            );
        }
        o.stop().await;
    }
    written
        .with_context(|| format!("writing the report in {}", dir.display()))
        .map_err(internal)?;
    println!("{}", summary.render());
    println!("report: {}", dir.display());
    if swarm::report::history_cut(&summary.audit) {
        println!(
            "{}",
            swarm::report::resolve_advice(
                &args.scenario.display().to_string(),
                &dir.join("history.bin")
            )
        );
    }
    Ok(summary.exit_code)
}

/// A report directory or database that already holds a run: refused (64) with the ways
/// on, or with `--audit-leftover` audited (state checks), kept and cleared. Returns the
/// audit of an external database's leftover, to be written into the new report
/// directory.
async fn leftover(
    args: &RunArgs,
    db: &Option<DbUrl>,
    run_id: &RunId,
    key_prefix: &str,
) -> Result<Option<(DbUrl, String)>, Exit> {
    let dir_files = args
        .report_dir
        .as_deref()
        .map(leftover::files_in)
        .unwrap_or_default();
    let earlier = match db {
        Some(url) => leftover::in_database(url, run_id, key_prefix)
            .await
            .with_context(|| format!("reading the runs on {url}"))
            .map_err(internal)?
            .map(|e| (url.clone(), e)),
        None => None,
    };
    if dir_files.is_empty() && earlier.is_none() {
        return Ok(None);
    }
    if !args.audit_leftover {
        let place = match (&earlier, &args.report_dir) {
            (Some((url, e)), _) => format!("the database {url} already holds {e}"),
            (None, Some(d)) => format!(
                "the report directory {} already holds a run ({})",
                d.display(),
                dir_files
                    .iter()
                    .filter_map(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            (None, None) => unreachable!("something was found"),
        };
        // Only the ways on that work for what was found: a fresh directory does not help
        // a database that holds a run, nor a fresh database a directory that does.
        let fresh = match &earlier {
            Some(_) => "--db on a fresh database (e.g. --db sqlite://fresh.db)",
            None => "a fresh report directory (leave out --report-dir and one is made)",
        };
        return Err(usage(anyhow::anyhow!(
            "{place}; nothing was run (its rows and files would be audited as this run's).\n\
             To go on, pick one:\n  \
             - {fresh}\n  \
             - --audit-leftover: audit the state it left, keep that audit, then start this run clean"
        )));
    }
    if let Some(d) = &args.report_dir
        && !dir_files.is_empty()
    {
        let aside = leftover::move_aside(d).map_err(internal)?;
        let old_db = DbUrl::sqlite(aside.join("swarm.db"));
        if db.is_none() && aside.join("swarm.db").exists() {
            let (validity, json) = audit_leftover(&old_db).await?;
            let path = aside.join("audit.json");
            std::fs::write(&path, json)
                .with_context(|| format!("writing {}", path.display()))
                .map_err(internal)?;
            eprintln!(
                "swarm: moved the earlier run to {} (its state audit: {}, in {})",
                aside.display(),
                validity.name(),
                path.display()
            );
        } else {
            eprintln!(
                "swarm: moved the earlier run's files to {}",
                aside.display()
            );
        }
    }
    let Some((url, earlier)) = earlier else {
        return Ok(None);
    };
    let (validity, json) = audit_leftover(&url).await?;
    eprintln!(
        "swarm: {url} holds {earlier}; the state it left is {}",
        validity.name()
    );
    if validity == swarm::audit::Validity::Invalid {
        println!("{json}");
        return Err(Exit(
            swarm::exit::INVARIANT_VIOLATED,
            anyhow::anyhow!(
                "the leftover on {url} breaks an invariant (its audit is above); the database is left as it is and nothing was run"
            ),
        ));
    }
    leftover::clear(&url)
        .await
        .with_context(|| format!("clearing the leftover on {url}"))
        .map_err(internal)?;
    Ok(Some((url, json)))
}

/// The state checks of a leftover database, as a verdict and its JSON.
async fn audit_leftover(url: &DbUrl) -> Result<(swarm::audit::Validity, String), Exit> {
    let report = swarm::audit::audit(swarm::audit::Input {
        db: Some(url),
        history: None,
        state_only: true,
    })
    .await;
    let json = serde_json::to_string_pretty(&report).map_err(internal)?;
    Ok((report.validity, json))
}

/// First Ctrl-C: stop arrivals, drain, heal, audit. Second: abort at once.
/// How long the observers stay up after the verdict (a scrape interval or two).
const OBSERVE_LINGER: std::time::Duration = std::time::Duration::from_secs(5);

/// Ctrl-C stops arrivals and lets the run drain, resolve, audit and report (exit 4); a
/// second aborts: requests in flight are dropped, the history is left cut and the report
/// written with what is known; a third ends the process at once.
fn stop_on_ctrl_c(control: Arc<Control>) {
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_err() {
            return;
        }
        eprintln!(
            "swarm: stopping arrivals, draining, healing, auditing (Ctrl-C again aborts: the report is still written)"
        );
        control.stop.store(true, Ordering::Release);
        if tokio::signal::ctrl_c().await.is_err() {
            return;
        }
        eprintln!(
            "swarm: aborting: dropping the requests in flight, writing what is known (Ctrl-C again exits at once)"
        );
        control.abort.store(true, Ordering::Release);
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("swarm: exited without a report");
            std::process::exit(130);
        }
    });
}

/// `swarm probe SCENARIO`: the conformance probe alone, printed; 1 when a key executed
/// twice.
pub async fn probe(path: std::path::PathBuf, json: bool) -> Result<i32, Exit> {
    let scenario = Scenario::load(&path).map_err(usage)?;
    if let Some(var) = &scenario.target.api_key_env
        && std::env::var_os(var).is_none()
    {
        return Err(usage(anyhow::anyhow!(
            "{}: target.api_key_env: the variable `{var}` is not set",
            path.display()
        )));
    }
    let conformance = swarm::run::probe_only(&scenario)
        .await
        .map_err(|e| match e {
            swarm::run::RunError::Unsupported(_)
            | swarm::run::RunError::Preflight(
                swarm::gateway::preflight::PreflightError::Refused { .. },
            ) => usage(e),
            e => internal(e),
        })?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&conformance).map_err(internal)?
        );
    } else {
        println!(
            "conformance of {} to the contract {}",
            scenario.name,
            swarm::report::target_of(&scenario)
        );
        for line in conformance.lines() {
            println!("{line}");
        }
        for c in &conformance.checks {
            println!("  {}: {}", c.check.name, c.rule);
        }
    }
    Ok(swarm::exit::code(conformance.validity(), true))
}
