//! An earlier run where a new one would go: a report directory that already holds a run's
//! files, or a database that already holds purchases.
//!
//! A run into either would be audited against rows and files it did not make (an
//! earlier run's intents read as phantom commits, its stock as this run's), so `swarm
//! run` refuses unless told to audit the leftover and clear it first. Nothing here
//! deletes without that: files move aside, rows are deleted only from a database whose
//! leftover state was audited and kept.

use std::path::{Path, PathBuf};

use super::{RUN_FINISHED, RUN_STARTED, RunError, RunId};

use crate::addr::DbUrl;
use crate::sut::db::Database;

/// Files a run writes into its report directory; any of them means a run was there.
pub const RUN_FILES: &[&str] = &["swarm.db", "history.bin", "summary.json"];

/// What a database says about the runs on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EarlierRun {
    /// A run marked itself: its id, and whether it finished.
    Marked { run_id: String, finished: bool },
    /// Purchases under other keys than this run's are recorded, and no run marked itself
    /// (a client other than `swarm run`, or a run whose database was not its own).
    Unmarked,
}

impl std::fmt::Display for EarlierRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EarlierRun::Marked {
                run_id,
                finished: true,
            } => write!(f, "run {run_id}, which finished"),
            EarlierRun::Marked {
                run_id,
                finished: false,
            } => write!(f, "run {run_id}, which never finished"),
            EarlierRun::Unmarked => write!(f, "purchases that no swarm run marked"),
        }
    }
}

/// The run files already in `dir`.
pub fn files_in(dir: &Path) -> Vec<PathBuf> {
    RUN_FILES
        .iter()
        .map(|f| dir.join(f))
        .filter(|p| p.exists())
        .collect()
}

/// The earlier run on `url`, if any. A database is fresh when the run marked on it is
/// `ours` (the shards of one run share their database and their run id), or when no run
/// is marked and every purchase (the sandbox's aside) carries this run's `key_prefix` (a
/// run repeating its keys on purpose with `--run-id`). A SQLite file that does not exist
/// is fresh.
pub async fn in_database(
    url: &DbUrl,
    ours: &RunId,
    key_prefix: &str,
) -> Result<Option<EarlierRun>, RunError> {
    if let DbUrl::Sqlite(path) = url
        && !path.exists()
    {
        return Ok(None);
    }
    let database = Database::connect(url)?;
    database.init().await?;
    let started = database.get_meta(RUN_STARTED).await?;
    let finished = database.get_meta(RUN_FINISHED).await?;
    Ok(match started {
        Some(id) if id == ours.as_str() => None,
        Some(run_id) => Some(EarlierRun::Marked {
            finished: finished.as_deref() == Some(run_id.as_str()),
            run_id,
        }),
        None if database
            .has_intents_besides(&format!("{key_prefix}-"))
            .await? =>
        {
            Some(EarlierRun::Unmarked)
        }
        None => None,
    })
}

/// Move every file at the top of `dir` into a new `dir/leftover-N/` (the first N free);
/// returns that directory.
pub fn move_aside(dir: &Path) -> Result<PathBuf, RunError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| RunError::Io { path, source }
    };
    let aside = (1..)
        .map(|n| dir.join(format!("leftover-{n}")))
        .find(|p| !p.exists())
        .unwrap_or_else(|| dir.join("leftover"));
    std::fs::create_dir(&aside).map_err(io(&aside))?;
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        if path.is_file() {
            let to = aside.join(path.file_name().unwrap_or_default());
            std::fs::rename(&path, &to).map_err(io(&path))?;
        }
    }
    Ok(aside)
}

/// Clear the purchases and run markers on `url` (its catalog stays, stock and caps back
/// at their seeded figures).
pub async fn clear(url: &DbUrl) -> Result<(), RunError> {
    Database::connect(url)?
        .reset_purchases(&[RUN_STARTED, RUN_FINISHED])
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moving_aside_keeps_every_file() {
        let dir = tempfile::tempdir().expect("dir");
        for f in ["swarm.db", "history.bin", "summary.json"] {
            std::fs::write(dir.path().join(f), f).expect("write");
        }
        assert_eq!(files_in(dir.path()).len(), 3);
        let aside = move_aside(dir.path()).expect("move");
        assert!(files_in(dir.path()).is_empty());
        assert_eq!(files_in(&aside).len(), 3);
        assert_eq!(
            std::fs::read_to_string(aside.join("history.bin")).expect("read"),
            "history.bin"
        );
        // A second leftover gets its own directory.
        std::fs::write(dir.path().join("summary.json"), "2").expect("write");
        let second = move_aside(dir.path()).expect("move");
        assert_ne!(second, aside);
        assert!(second.join("summary.json").exists());
    }
}
