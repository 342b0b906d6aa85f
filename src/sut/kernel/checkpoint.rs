//! A background checkpointer beside the single writer of the embedded SQLite modes.
//!
//! Every commit appends its pages to the WAL; a checkpoint copies them back into the
//! database file (reading the WAL, writing the file, two fsyncs). Left to SQLite's
//! autocheckpoint, that copy runs on the writer's thread, between two batches, while every
//! caller waits: about a sixth of the writer's time on million.toml. This thread runs a
//! PASSIVE checkpoint on its own connection every `CHECKPOINT_EVERY_MS`, so the copy
//! happens beside the writer, on the other core.
//!
//! Invariant: it never waits for a lock and holds no read transaction, so it neither
//! blocks the writer nor pins the WAL. The writer keeps its own autocheckpoint: that one
//! finds the WAL mostly copied already, copies the tail, and is what lets the next
//! transaction restart the WAL from its beginning (a checkpoint racing the writer never
//! sees the WAL whole, so it alone would let the file grow).

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use crate::sut::db::open_sqlite;

/// How often the background checkpoint runs.
const CHECKPOINT_EVERY_MS: u64 = 50;

/// The running checkpointer; it stops when this is dropped.
pub(super) struct Checkpointer {
    _stop: mpsc::Sender<()>,
}

impl Checkpointer {
    /// Start checkpointing the database at `path` in the background. `None`: the thread
    /// could not start (the writer's autocheckpoint still does the work, on its thread).
    pub(super) fn spawn(path: &Path) -> Option<Checkpointer> {
        let (stop, stopped) = mpsc::channel::<()>();
        let path = path.to_path_buf();
        let started = std::thread::Builder::new()
            .name("swarm-checkpoint".into())
            .spawn(move || {
                let conn = match open_sqlite(&path) {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!("background checkpoint disabled: {e}");
                        return;
                    }
                };
                let every = Duration::from_millis(CHECKPOINT_EVERY_MS);
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    // (busy, WAL frames, frames copied); busy only means another
                    // checkpoint (the writer's) was running.
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::debug!("background checkpoint: {e}");
                    }
                }
            });
        match started {
            Ok(_) => Some(Checkpointer { _stop: stop }),
            Err(e) => {
                tracing::warn!("background checkpoint disabled: {e}");
                None
            }
        }
    }
}
