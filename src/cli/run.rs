//! `swarm run`: load the scenario, resolve where it runs, start the dashboard or the
//! progress lines, execute, conclude (audit, summary, report), print.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context;

use super::{Exit, RunArgs, internal, parse_url, usage};
use swarm::addr::DbUrl;
use swarm::run::{Control, RunId, RunOptions};
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
    let db: Option<DbUrl> = match args.db {
        Some(u) => Some(parse_url(&u)?),
        None => match scenario.target.database.clone() {
            Some(u) => Some(u),
            None => match std::env::var("DATABASE_URL").ok().filter(|s| !s.is_empty()) {
                Some(u) => Some(parse_url(&u)?),
                None => None,
            },
        },
    };
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
    let control = Arc::new(Control::default());
    stop_on_ctrl_c(control.clone());
    let tui = tui::wanted(args.no_tui);
    eprintln!(
        "swarm: running {} (seed {}, run id {run_id}) → {}",
        scenario.name,
        scenario.seed,
        dir.display()
    );
    let (observer, watching) = tokio::sync::oneshot::channel();
    let (phase, phases) = tokio::sync::watch::channel(Phase::Running);
    let dashboard = tui.then(|| {
        let meta = tui::Meta {
            scenario: scenario.name.clone(),
            seed: scenario.seed,
            target: match &db {
                Some(u) => format!("direct · {u}"),
                None => "direct · embedded SQLite".into(),
            },
        };
        tokio::spawn(tui::run(watching, phases, meta, args.exit_on_finish))
    });
    let result = swarm::run::execute(RunOptions {
        scenario: scenario.clone(),
        db,
        dir: dir.clone(),
        shard: args.shard,
        progress: !tui,
        control,
        observer: tui.then_some(observer),
        kernel_sql: Sql::reference(),
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
            return Err(internal(e));
        }
    };
    let _ = phase.send(Phase::Auditing);
    let marker = result.marker.clone();
    let (summary, written) = swarm::report::conclude(&scenario, result).await;
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
            note: format!("report: {} · press any key", dir.display()),
        });
        match d.await {
            Ok(Err(e)) => eprintln!("swarm: dashboard: {e}"),
            Err(e) if e.is_panic() => eprintln!("swarm: dashboard failed"),
            _ => {}
        }
    }
    written
        .with_context(|| format!("writing the report in {}", dir.display()))
        .map_err(internal)?;
    println!("{}", summary.render());
    println!("report: {}", dir.display());
    Ok(summary.exit_code)
}

/// First Ctrl-C: stop arrivals, drain, heal, audit. Second: abort at once.
fn stop_on_ctrl_c(control: Arc<Control>) {
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!(
                "swarm: stopping arrivals, draining, healing, auditing (Ctrl-C again aborts)"
            );
            control.stop.store(true, Ordering::Release);
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("swarm: aborted");
                std::process::exit(130);
            }
        }
    });
}
