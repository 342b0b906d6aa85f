//! The writing half of the history file's format (`frames`): `Sink`, which appends a
//! running run's records through a writer thread behind a bounded queue, resumes a file a
//! killed run cut, and ends it; and `write_all`, a whole history at once.
//!
//! Invariants: the header frame is on disk before `Sink::create` returns; a records frame
//! holds whole records only; memory is bounded by `QUEUE` batches, `SPARES` emptied ones
//! and the writer's buffer; the file is synced at least every `FLUSH_EVERY`.

use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{
    Cut, END, FRAME_HEAD, HEADER, MAGIC, MAX_FRAME_BYTES, NOTES, Notes, RECORDS, checksum,
};
use crate::history::{Header, History, HistoryError, RECORD_BYTES, Record};

/// Records per frame when a whole history is written at once.
const RECORDS_PER_FRAME: usize = 4096;
/// Batches waiting for the writer; a full queue makes the recorder wait (bounded memory).
const QUEUE: usize = 64;
/// Batches the writer has emptied and keeps for the recorders to fill again (`Sink::spare`):
/// a batch is a few hundred KiB, and a fresh one each time costs the recorder page faults
/// (the kernel zeroing new pages) on every batch.
const SPARES: usize = 32;
/// The writer hands what it has to the OS and syncs at least this often.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// One frame: its head (kind, payload length, checksum), then the payload.
fn write_frame(w: &mut impl Write, kind: u8, payload: &[u8]) -> io::Result<()> {
    // The reader refuses a records frame of a partial record: never write one.
    assert!(
        kind != RECORDS || payload.len().is_multiple_of(RECORD_BYTES),
        "a records frame of {} bytes",
        payload.len()
    );
    assert!(
        payload.len() <= MAX_FRAME_BYTES as usize,
        "a frame of {} bytes: past what a reader takes",
        payload.len()
    );
    let mut head = [0u8; FRAME_HEAD];
    head[0] = kind;
    head[1..5].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    head[5..9].copy_from_slice(&checksum(kind, payload).to_le_bytes());
    w.write_all(&head)?;
    w.write_all(payload)
}

fn encode_records(records: &[Record], out: &mut Vec<u8>) {
    out.clear();
    out.reserve(records.len() * RECORD_BYTES);
    let mut buf = [0u8; RECORD_BYTES];
    for r in records {
        r.encode(&mut buf);
        out.extend_from_slice(&buf);
    }
}

/// Create `path` with the magic and the header frame (buffered: not yet on disk).
fn start(path: &Path, header: &Header) -> Result<BufWriter<std::fs::File>, HistoryError> {
    let io_err = |source| HistoryError::Io {
        path: path.display().to_string(),
        source,
    };
    let header = serde_json::to_vec(header).map_err(|e| HistoryError::Format {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let file = std::fs::File::create(path).map_err(io_err)?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    w.write_all(MAGIC).map_err(io_err)?;
    write_frame(&mut w, HEADER, &header).map_err(io_err)?;
    Ok(w)
}

/// Write a whole history at once (a merge, a test).
pub fn write_all(path: &Path, h: &History) -> Result<(), HistoryError> {
    let io_err = |source| HistoryError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut w = start(path, &h.header)?;
    let mut payload = Vec::new();
    for chunk in h.records.chunks(RECORDS_PER_FRAME) {
        encode_records(chunk, &mut payload);
        write_frame(&mut w, RECORDS, &payload).map_err(io_err)?;
    }
    write_frame(&mut w, END, &(h.records.len() as u64).to_le_bytes()).map_err(io_err)?;
    w.flush().map_err(io_err)
}

enum Msg {
    Records(Vec<Record>),
    Flush,
    Finish(Notes),
    /// Sync and stop without the end frame (an aborted run).
    Abandon,
}

/// The history of a running run, appended by a writer thread.
pub struct Sink {
    tx: crossbeam_channel::Sender<Msg>,
    /// Emptied batches back from the writer.
    spares: crossbeam_channel::Receiver<Vec<Record>>,
    thread: Mutex<Option<JoinHandle<Result<u64, HistoryError>>>>,
    /// Set when the sink resumes a cut file (`Sink::resume`): said in the notes.
    resumed_after: Option<Cut>,
}

impl Sink {
    /// Create `path` with its header on disk, and start the writer.
    pub fn create(path: &Path, header: &Header) -> Result<Sink, HistoryError> {
        let io_err = |source| HistoryError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut w = start(path, header)?;
        w.flush().map_err(io_err)?;
        w.get_ref().sync_data().map_err(io_err)?;
        Sink::spawn(path, w, 0, None)
    }

    /// Resume a history a killed run left: the torn tail from `cut.offset` on is removed
    /// and records are appended after the last whole frame. `records`: how many the file
    /// holds before it (the end frame counts them all).
    pub fn resume(path: &Path, cut: &Cut, records: u64) -> Result<Sink, HistoryError> {
        let io_err = |source| HistoryError::Io {
            path: path.display().to_string(),
            source,
        };
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(io_err)?;
        file.set_len(cut.offset).map_err(io_err)?;
        file.sync_data().map_err(io_err)?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        io::Seek::seek(&mut w, io::SeekFrom::End(0)).map_err(io_err)?;
        Sink::spawn(path, w, records, Some(cut.clone()))
    }

    fn spawn(
        path: &Path,
        w: BufWriter<std::fs::File>,
        records: u64,
        resumed_after: Option<Cut>,
    ) -> Result<Sink, HistoryError> {
        let (tx, rx) = crossbeam_channel::bounded(QUEUE);
        let (spare_tx, spares) = crossbeam_channel::bounded(SPARES);
        let shown = path.display().to_string();
        let thread = std::thread::Builder::new()
            .name("history-writer".into())
            .spawn(move || write_loop(w, rx, spare_tx, shown, records))
            .map_err(|source| HistoryError::Io {
                path: path.display().to_string(),
                source,
            })?;
        Ok(Sink {
            tx,
            spares,
            thread: Mutex::new(Some(thread)),
            resumed_after,
        })
    }

    /// Append a batch of records (waits while the queue is full).
    pub fn send(&self, records: Vec<Record>) {
        if !records.is_empty() {
            let _ = self.tx.send(Msg::Records(records));
        }
    }

    /// An empty batch to fill: one the writer is done with, else a new one of `capacity`.
    pub fn spare(&self, capacity: usize) -> Vec<Record> {
        self.spares
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(capacity))
    }

    /// Ask the writer to hand what it has to the OS and sync it now (without waiting).
    pub fn flush(&self) {
        let _ = self.tx.try_send(Msg::Flush);
    }

    /// Write the notes and the end frame, close the file: the records written, or the
    /// first error the writer met.
    pub fn finish(&self, contract_examples: Vec<String>) -> Result<u64, HistoryError> {
        let _ = self.tx.send(Msg::Finish(Notes {
            contract_examples,
            resumed_after: self.resumed_after.clone(),
        }));
        self.join()
    }

    /// Write what is queued and sync, but no end frame: the file reads as cut where it
    /// stops (an aborted run), and `swarm resolve` can finish it.
    pub fn abandon(&self) -> Result<u64, HistoryError> {
        let _ = self.tx.send(Msg::Abandon);
        self.join()
    }

    fn join(&self) -> Result<u64, HistoryError> {
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        match thread.map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(HistoryError::Format {
                path: "history writer".into(),
                reason: "the writer thread panicked".into(),
            }),
            None => Err(HistoryError::Format {
                path: "history writer".into(),
                reason: "finished twice".into(),
            }),
        }
    }
}

fn write_loop(
    mut w: BufWriter<std::fs::File>,
    rx: crossbeam_channel::Receiver<Msg>,
    spares: crossbeam_channel::Sender<Vec<Record>>,
    path: String,
    already: u64,
) -> Result<u64, HistoryError> {
    let io_err = |source| HistoryError::Io {
        path: path.clone(),
        source,
    };
    // Records in the file, the ones before a resumed file's cut included.
    let mut written: u64 = already;
    let mut payload = Vec::new();
    let mut first_error: Option<io::Error> = None;
    let mut synced = Instant::now();
    let sync = |w: &mut BufWriter<std::fs::File>| -> io::Result<()> {
        w.flush()?;
        w.get_ref().sync_data()
    };
    loop {
        let msg = match rx.recv_timeout(FLUSH_EVERY) {
            Ok(m) => Some(m),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => None,
            // Every sender is gone without a finish (the run failed): keep what is written.
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                let _ = sync(&mut w);
                return Ok(written);
            }
        };
        let result = match msg {
            Some(Msg::Records(mut records)) => {
                encode_records(&records, &mut payload);
                written += records.len() as u64;
                records.clear();
                // Kept for a recorder to fill again, unless enough are kept already.
                let _ = spares.try_send(records);
                write_frame(&mut w, RECORDS, &payload)
            }
            Some(Msg::Flush) | None => sync(&mut w),
            Some(Msg::Abandon) => {
                return match first_error.or(sync(&mut w).err()) {
                    Some(e) => Err(io_err(e)),
                    None => Ok(written),
                };
            }
            Some(Msg::Finish(notes)) => {
                let notes = serde_json::to_vec(&notes).unwrap_or_default();
                let end = write_frame(&mut w, NOTES, &notes)
                    .and_then(|_| write_frame(&mut w, END, &written.to_le_bytes()))
                    .and_then(|_| sync(&mut w));
                return match first_error.or(end.err()) {
                    Some(e) => Err(io_err(e)),
                    None => Ok(written),
                };
            }
        };
        if let Err(e) = result {
            tracing::error!(path, "history write failed: {e}");
            first_error.get_or_insert(e);
        }
        if synced.elapsed() >= FLUSH_EVERY {
            if let Err(e) = sync(&mut w) {
                first_error.get_or_insert(e);
            }
            synced = Instant::now();
        }
    }
}

#[cfg(test)]
impl Sink {
    /// Stop as a run that died would: the writer drains what it was sent, then stops
    /// without an end frame (the thread ends when the sender goes).
    pub(super) fn die(self) {
        let thread = self.thread.lock().expect("lock").take();
        drop(self);
        let _ = thread.map(JoinHandle::join);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "a records frame of")]
    fn a_partial_record_is_never_written() {
        let _ = write_frame(&mut Vec::new(), RECORDS, &[0u8; RECORD_BYTES + 1]);
    }
}
