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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sut::db::open_sqlite_writer;

    #[test]
    fn the_wal_is_copied_back_without_the_writer() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("w.db");
        let writer = open_sqlite_writer(&path).expect("writer");
        writer
            .execute_batch("CREATE TABLE page (body BLOB)")
            .expect("table");
        let db_bytes = || std::fs::metadata(&path).map_or(0, |m| m.len());
        // Sixty commits of a page each: far below the writer's autocheckpoint, so the
        // pages stay in the WAL and the database file does not grow.
        for _ in 0..60 {
            writer
                .execute("INSERT INTO page VALUES (zeroblob(4000))", [])
                .expect("insert");
        }
        assert!(db_bytes() < 60 * 4000, "{} bytes before", db_bytes());
        let checkpointer = Checkpointer::spawn(&path).expect("spawned");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while db_bytes() < 60 * 4000 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(CHECKPOINT_EVERY_MS));
        }
        assert!(db_bytes() >= 60 * 4000, "{} bytes after", db_bytes());
        drop(checkpointer);
        // The writer goes on as before.
        writer
            .execute("INSERT INTO page VALUES (zeroblob(4000))", [])
            .expect("insert after");
    }
}
