//! `swarm resolve`: a run killed mid-way (SIGKILL, OOM, a CI timeout, a power cut) left a
//! history cut after its last whole frame. Its open keys are replayed against the target,
//! as the end of a normal run does, and the answers appended to the same history, which is
//! then ended.
//!
//! Open keys are the audit's (`audit::open_keys`): keys whose requests got no definite
//! answer, and keys the database holds an intent for while the history holds no request
//! (in flight at the kill, or answered after the last whole frame). The first are replayed
//! with the payload their first request sent; the second with the payload the key's agent
//! sends (derived from the seed, as in the run); only this run's clients make keys with its
//! run id. Invariants: the history is resumed only when it was cut, for the scenario that
//! wrote it (by the SHA-256 of its text); nothing before the cut is rewritten; what a
//! replay cannot decide stays open, and the audit says `unknown`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::RunError;
use super::agent::{self, Attempt, World};
use super::resolve::{self, Resolution};
use super::shop::Shop;
use crate::addr::DbUrl;
use crate::audit::{self, OpenKey};
use crate::gateway::open;
use crate::history::{self, Op, Sink};
use crate::metrics::Metrics;
use crate::scenario::Scenario;
use crate::sut::kernel::Sql;

/// What to resume.
pub struct ResumeOptions {
    pub scenario: Scenario,
    /// The killed run's `history.bin`.
    pub history: PathBuf,
    /// The database to audit and, for a direct or in-process target, to replay against
    /// (`None`: the `swarm.db` beside the history, unless the regions are live endpoints).
    pub db: Option<DbUrl>,
    /// The audit's memory budget.
    pub budget_bytes: u64,
}

/// What the resumption did.
#[derive(Debug, Clone)]
pub struct Resumed {
    /// The database audited and replayed against (`None`: live endpoints, unread).
    pub db: Option<DbUrl>,
    /// Where the history had been cut, and why.
    pub cut: history::Cut,
    /// Keys open at the cut: indeterminate in the history, and with an intent but no request.
    pub indeterminate: u64,
    pub unsent: u64,
    /// Open keys past `audit::MAX_OPEN_KEYS`, not replayed (they stay open).
    pub left_out: u64,
    pub resolution: Resolution,
    /// The run whose history this is.
    pub run_id: String,
    /// How long ago that run began, as its keys were dated (`None`: not known, so each
    /// was taken to be too old to replay under a key retention).
    pub run_age_ms: Option<u64>,
}

/// How long ago the run whose history is at `path` began: by the start its header names
/// (a copied file keeps it); in a history written before headers named it, by the file's
/// creation time. `None`: neither is known (or the clock runs behind the start), and every
/// key is taken to be as old as can be: with a key retention, none is replayed.
fn run_age_ms(header: &history::Header, path: &Path) -> Option<u64> {
    let began = match header.started_unix_ms {
        Some(ms) => std::time::UNIX_EPOCH.checked_add(Duration::from_millis(ms))?,
        None => std::fs::metadata(path).and_then(|m| m.created()).ok()?,
    };
    let age = began.elapsed().ok()?;
    Some(age.as_millis().min(u128::from(u64::MAX)) as u64)
}

fn refuse(why: String) -> RunError {
    RunError::Unsupported(why)
}

/// Replay a killed run's open keys and end its history.
pub async fn resume(opts: ResumeOptions) -> Result<Resumed, RunError> {
    let s = &opts.scenario;
    let path = &opts.history;
    let header = history::Reader::open(path)?.header().clone();
    if !header.scenario_sha256.is_empty() && header.scenario_sha256 != s.text_sha256 {
        return Err(refuse(format!(
            "{}: written by another scenario than {} (its SHA-256 is {}, the history's {})",
            path.display(),
            s.name,
            s.text_sha256,
            header.scenario_sha256
        )));
    }
    let region_names: Vec<String> = s.regions.iter().map(|r| r.name.clone()).collect();
    if header.regions != region_names {
        return Err(refuse(format!(
            "{}: the history's regions {:?} are not the scenario's {:?}",
            path.display(),
            header.regions,
            region_names
        )));
    }
    let live = s.regions.iter().any(|r| r.endpoint.is_some());
    let db = match (&opts.db, live) {
        (Some(u), _) => Some(u.clone()),
        (None, false) => Some(DbUrl::sqlite(beside(path, "swarm.db"))),
        (None, true) => None,
    };
    let audited = audit::open_keys(db.as_ref(), path, opts.budget_bytes)
        .await
        .map_err(|e| refuse(format!("{}: {e}", path.display())))?;
    let Some(cut) = audited.ending.cut.clone() else {
        return Err(refuse(format!(
            "{}: the history is whole (its run ended it, or it was resolved already): nothing to resolve",
            path.display()
        )));
    };
    // Without live regions a database was chosen above.
    let (regions, servers) = match db.as_ref().filter(|_| !live) {
        Some(url) => open::open_regions(s, url, Sql::reference()).await?,
        None => (open::live_regions(s)?, Vec::new()),
    };
    crate::gateway::preflight::check(&regions).await?;

    let shop = Shop::of_header(&header)?;
    let sink = Sink::resume(path, &cut, audited.records)?;
    let metrics = Metrics::new(regions.len(), sink);
    let mut world = World::new(
        s,
        regions,
        metrics,
        header.seed,
        header.key_prefix.clone(),
        shop,
    )?;
    // Every key is taken to be as old as the run.
    let run_age_ms = run_age_ms(&header, path);
    world.key_age_offset_ms = run_age_ms.unwrap_or(u64::MAX);
    let world = Arc::new(world);
    let (mut indeterminate, mut unsent) = (0, 0);
    for k in &audited.open.keys {
        match k.sent {
            Some(_) => indeterminate += 1,
            None => unsent += 1,
        }
        world.pending.push(k.id.0, attempt(&world, k), 0);
    }
    let resolution = resolve::resolve(
        &world,
        s.agents.in_flight,
        Duration::from_millis(s.retry.resolve_budget_ms),
        &std::sync::atomic::AtomicBool::new(false),
    )
    .await;
    for server in servers {
        server.stop().await;
    }
    world.metrics.finish_history()?;
    Ok(Resumed {
        db,
        cut,
        indeterminate,
        unsent,
        left_out: audited.open.left_out,
        resolution,
        run_id: header.run_id,
        run_age_ms,
    })
}

/// The replay of an open key: its first request's payload, or the one its agent sends.
fn attempt(world: &World, k: &OpenKey) -> Attempt {
    let derived = world.plan(k.id.0);
    let (plan, quantity) = match k.sent {
        Some(p) => (
            agent::AgentPlan {
                persona: p.persona,
                mandate: p.mandate,
                item: p.item,
                ..derived
            },
            p.quantity,
        ),
        None => (derived, world.quantity),
    };
    Attempt {
        plan,
        purchase: k.id.1,
        variant: k.id.2,
        region: plan.home_region,
        quantity,
        op: Op::Resolve,
        seq: u8::MAX,
    }
}

fn beside(path: &Path, name: &str) -> PathBuf {
    path.parent().unwrap_or(Path::new(".")).join(name)
}

/// After the resolved history's audit: mark the run finished on `db`, when it is the last
/// run that started there (a database of another deployment is left alone).
pub async fn mark_resolved(db: &DbUrl, run_id: &str) -> Result<(), RunError> {
    let database = crate::sut::db::Database::connect(db)?;
    if database.get_meta(super::RUN_STARTED).await?.as_deref() == Some(run_id) {
        database.set_meta(super::RUN_FINISHED, run_id).await?;
    }
    Ok(())
}
