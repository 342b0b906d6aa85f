//! `swarm selftest`: prove the auditor by sabotage; `--isolation-matrix`: which isolation
//! level the kernel needs (`matrix`, with the naive kernels of `naive`).
//!
//! Each deliberately broken kernel runs as a small swarm against a fresh database; the
//! auditor must flag the invariant the bug breaks, and no other. Clean kernels over several
//! seeds must stay valid. Nothing here tells the auditor what to look for: it audits as
//! it would any run.

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

pub mod matrix;
mod naive;
mod sabotage;

pub use naive::Naive;
pub use sabotage::Sabotage;

use crate::addr::DbUrl;
use crate::audit::{self, Invariant, Validity};
use crate::run::{self, Control, RunError, RunOptions};
use crate::scenario::Scenario;
use crate::sut::db::Database;
use crate::sut::kernel::Sql;

/// Seeds of the clean runs.
pub const CLEAN_SEEDS: [u64; 5] = [1, 2, 3, 4, 5];

/// The swarm every case runs; `mandates` and `mix` vary by case.
fn scenario(seed: u64, sabotage: Option<Sabotage>) -> Result<Scenario, RunError> {
    let (catalog, mandates, mix) = match sabotage {
        Some(Sabotage::SkipCapCondition) => (
            "{ items = 1, stock = 100000, buckets = 4, price_minor = 100, currency = \"USD\" }",
            "{ count = 100, cap_minor = 100, shards = 2 }",
            "{ well_behaved = 0.8, double_submit = 0.1, crash_restart = 0.1 }",
        ),
        // Each shard can pay twice the price once.
        Some(Sabotage::DebitTwice) => (
            "{ items = 1, stock = 40, buckets = 4, price_minor = 100, currency = \"USD\" }",
            "{ count = 1500, cap_minor = 400, shards = 2 }",
            "{ well_behaved = 0.6, double_submit = 0.25, crash_restart = 0.15 }",
        ),
        // A client that double submits would see two fresh answers: that is the
        // duplicate check's finding, not this bug's.
        Some(Sabotage::AckThenRollback) => (
            "{ items = 1, stock = 40, buckets = 4, price_minor = 100, currency = \"USD\" }",
            "{ count = 1500, cap_minor = 200, shards = 2 }",
            "{ well_behaved = 1.0 }",
        ),
        _ => (
            "{ items = 1, stock = 40, buckets = 4, price_minor = 100, currency = \"USD\" }",
            "{ count = 1500, cap_minor = 200, shards = 2 }",
            "{ well_behaved = 0.6, double_submit = 0.25, crash_restart = 0.15 }",
        ),
    };
    let text = format!(
        "name = \"selftest\"\nseed = {seed}\ncatalog = {catalog}\nmandates = {mandates}\n\
         agents = {{ count = 1500, in_flight = 64 }}\nmix = {mix}\n\
         retry = {{ timeout_ms = 5000, max_attempts = 8, backoff_ms = [1, 20] }}\n\
         [[regions]]\nname = \"a\"\n[[regions]]\nname = \"b\"\n"
    );
    Scenario::parse(Path::new("selftest.toml"), &text)
        .map_err(|e| RunError::Unsupported(format!("selftest scenario: {e}")))
}

/// The check a sabotage must be caught by (and its invariant).
pub fn expected(sabotage: Sabotage) -> (Invariant, &'static str) {
    match sabotage {
        Sabotage::SkipStockCondition => (Invariant::Oversell, "oversell.committed_over_stock"),
        Sabotage::SkipKeyCheck => (Invariant::DuplicateSettlement, "duplicate_settlement.key"),
        Sabotage::OneLedgerLeg => (Invariant::LedgerDrift, "ledger_drift.unbalanced_txn"),
        Sabotage::SkipCapCondition => (Invariant::MandateBreach, "mandate_breach.over_cap"),
        Sabotage::AckThenRollback => (Invariant::History, "history.lost_commit"),
        Sabotage::NoLedgerRows => (Invariant::TornCommit, "torn_commit.missing_rows"),
        Sabotage::WrongBucketCounter => (Invariant::Oversell, "oversell.bucket_not_conserved"),
        Sabotage::WrongShardCounter => (
            Invariant::MandateBreach,
            "mandate_breach.shard_not_conserved",
        ),
        Sabotage::ClaimExtraUnit => (Invariant::Oversell, "oversell.claim_mismatch"),
        Sabotage::DebitTwice => (Invariant::MandateBreach, "mandate_breach.debit_mismatch"),
        Sabotage::LegsSwapped => (Invariant::LedgerDrift, "ledger_drift.wrong_legs"),
        Sabotage::IntentLedgerIdWrong => (Invariant::TornCommit, "torn_commit.snapshot_mismatch"),
        Sabotage::ForeignMandate => (Invariant::TornCommit, "torn_commit.broken_reference"),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    pub sabotage: &'static str,
    /// The check that must catch it.
    pub expected: &'static str,
    /// Violations that check counted.
    pub caught: u64,
    /// Every other invalid check (a pass allows only checks of the same invariant).
    pub others: Vec<String>,
    pub validity: Validity,
    pub passed: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct CleanResult {
    pub seed: u64,
    pub validity: Validity,
    pub failing: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SelftestReport {
    pub backend: String,
    pub cases: Vec<CaseResult>,
    pub clean: Vec<CleanResult>,
    pub passed: bool,
}

impl std::fmt::Display for SelftestReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "selftest on {}", self.backend)?;
        writeln!(
            f,
            "{:<32} {:<36} {:>8}  {:<8} other checks fired",
            "sabotage", "expected check", "caught", "result"
        )?;
        for c in &self.cases {
            writeln!(
                f,
                "{:<32} {:<36} {:>8}  {:<8} {}",
                c.sabotage,
                c.expected,
                c.caught,
                if c.passed { "caught" } else { "MISSED" },
                if c.others.is_empty() {
                    "-".to_string()
                } else {
                    c.others.join(", ")
                }
            )?;
        }
        for c in &self.clean {
            writeln!(
                f,
                "clean kernel, seed {:<14} {:<36} {:>8}  {:<8} {}",
                c.seed,
                "all valid",
                0,
                c.validity.name(),
                if c.failing.is_empty() {
                    "-".to_string()
                } else {
                    c.failing.join(", ")
                }
            )?;
        }
        write!(
            f,
            "selftest {}",
            if self.passed { "passed" } else { "FAILED" }
        )
    }
}

/// A fresh database for one case: a file under `work`, or a new database on the server.
async fn fresh_db(server: Option<&str>, work: &Path, name: &str) -> Result<DbUrl, RunError> {
    match server {
        None => Ok(DbUrl::sqlite(work.join(format!("{name}.db")))),
        Some(url) => {
            let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .map_err(|e| RunError::Db(e.into()))?;
            tokio::spawn(conn);
            let db = format!(
                "swarm_selftest_{}_{}",
                std::process::id(),
                name.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
            );
            client
                .batch_execute(&format!("DROP DATABASE IF EXISTS {db}"))
                .await
                .map_err(|e| RunError::Db(e.into()))?;
            client
                .batch_execute(&format!("CREATE DATABASE {db}"))
                .await
                .map_err(|e| RunError::Db(e.into()))?;
            let base = url.rsplit_once('/').map_or(url, |(b, _)| b);
            Ok(DbUrl::Postgres(format!("{base}/{db}")))
        }
    }
}

async fn drop_db(server: Option<&str>, url: &DbUrl) {
    if let (Some(server), DbUrl::Postgres(u)) = (server, url)
        && let Some((_, name)) = u.rsplit_once('/')
        && let Ok((client, conn)) = tokio_postgres::connect(server, tokio_postgres::NoTls).await
    {
        tokio::spawn(conn);
        let _ = client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await;
    }
}

/// Run one swarm with `sabotage` and audit it.
pub async fn run_case(
    server: Option<&str>,
    work: &Path,
    seed: u64,
    sabotage: Option<Sabotage>,
) -> Result<audit::Report, RunError> {
    let label = sabotage.map_or("clean", Sabotage::name);
    let name = format!("{}-{seed}", label.replace(' ', "-"));
    let sql = sabotage.map_or_else(Sql::reference, Sabotage::sql);
    let (_, report) = run_fresh(
        server,
        work,
        &name,
        scenario(seed, sabotage)?,
        sql,
        sabotage,
    )
    .await?;
    Ok(report)
}

/// Run `scenario` with the kernel running `sql` on a fresh database called `name` (its
/// schema broken the way `sabotage` needs), audit it as any run is, and drop the database.
async fn run_fresh(
    server: Option<&str>,
    work: &Path,
    name: &str,
    scenario: Scenario,
    sql: Sql,
    sabotage: Option<Sabotage>,
) -> Result<(run::RunResult, audit::Report), RunError> {
    let url = fresh_db(server, work, name).await?;
    let database = Database::connect(&url)?;
    database.init().await?;
    if let Some(sabotage) = sabotage {
        sabotage.break_schema(&database).await?;
    }
    // Its pool must be gone before the database is dropped.
    drop(database);
    let dir = work.join(name);
    std::fs::create_dir_all(&dir).map_err(|source| RunError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let result = run::execute(RunOptions {
        scenario,
        db: Some(url.clone()),
        dir,
        shard: None,
        progress: false,
        control: Arc::new(Control::default()),
        observer: None,
        kernel_sql: sql,
        probe: true,
        run_id: run::RunId::random(),
    })
    .await;
    let done = match result {
        Ok(run) => {
            let paths = [run.history_path.clone()];
            let report = audit::audit_files(Some(&url), &paths, audit::DEFAULT_BUDGET_BYTES)
                .await
                .unwrap_or_else(|e| audit::unreadable(&e));
            Ok((run, report))
        }
        Err(e) => Err(e),
    };
    drop_db(server, &url).await;
    done
}

/// Every sabotage, then the clean seeds. `server`: a PostgreSQL URL whose server may get
/// (and lose) one database per case; `None`: embedded SQLite files under a temp dir.
pub async fn run(server: Option<&str>) -> Result<SelftestReport, RunError> {
    let work = tempfile::tempdir().map_err(|source| RunError::Io {
        path: "temporary directory".into(),
        source,
    })?;
    let mut cases = Vec::new();
    for sabotage in Sabotage::ALL {
        let report = run_case(server, work.path(), 1, Some(sabotage)).await?;
        let (invariant, check) = expected(sabotage);
        let caught = report.check(check).map_or(0, |c| {
            if c.validity == Validity::Invalid {
                c.count.max(1)
            } else {
                0
            }
        });
        let others: Vec<&audit::Check> = report
            .checks
            .iter()
            .filter(|c| c.validity == Validity::Invalid && c.name != check)
            .collect();
        let foreign = others.iter().any(|c| c.invariant != invariant);
        cases.push(CaseResult {
            sabotage: sabotage.name(),
            expected: check,
            caught,
            passed: caught > 0 && !foreign,
            others: others.iter().map(|c| c.name.clone()).collect(),
            validity: report.validity,
        });
    }
    let mut clean = Vec::new();
    for seed in CLEAN_SEEDS {
        let report = run_case(server, work.path(), seed, None).await?;
        clean.push(CleanResult {
            seed,
            validity: report.validity,
            failing: report
                .checks
                .iter()
                .filter(|c| c.validity != Validity::Valid)
                .map(|c| c.name.clone())
                .collect(),
        });
    }
    let passed =
        cases.iter().all(|c| c.passed) && clean.iter().all(|c| c.validity == Validity::Valid);
    Ok(SelftestReport {
        backend: match server {
            None => "embedded SQLite".into(),
            Some(u) => crate::addr::redact(u),
        },
        cases,
        clean,
        passed,
    })
}
