//! The history file as it is written during a run: a magic, then frames, each checksummed,
//! appended as the run goes (`Sink`), so a killed run leaves everything up to its last
//! whole frame.
//!
//! A frame is `[kind u8][length u32 LE][crc32 u32 LE][payload]`, the checksum over kind,
//! length and payload. Kinds: the header (JSON, first), records (`RECORD_BYTES` each),
//! notes (JSON, what is known only at the end: the contract examples) and the end (the
//! record count), written last by a run that finished. Reading: a frame that runs past the
//! end of the file, or whose checksum fails with nothing after it, is a torn tail: cut and
//! reported (`Cut`), never misread; a frame that fails with more after it is corruption,
//! refused with its offset.
//!
//! Invariants: the header frame is on disk before the first record; memory is bounded by the
//! channel (`QUEUE` batches) and the writer's buffer; the file is flushed to the OS and synced
//! at least every `FLUSH_EVERY` and at each `Sink::flush`.

use std::io::{self, BufWriter, Read, Write};
use std::path::Path;
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{Header, History, HistoryError, RECORD_BYTES, Record};

/// Version 4 files start with this: the framed format.
pub const MAGIC: &[u8; 8] = b"SWARMH04";
const HEADER: u8 = 1;
const RECORDS: u8 = 2;
const NOTES: u8 = 3;
const END: u8 = 4;
/// Bytes before a frame's payload.
const FRAME_HEAD: usize = 9;
/// Largest frame a reader accepts (a header with a million ids stays far below).
const MAX_FRAME_BYTES: u32 = 512 << 20;
/// Records per frame when a whole history is written at once.
const RECORDS_PER_FRAME: usize = 4096;
/// Batches waiting for the writer; a full queue makes the recorder wait (bounded memory).
const QUEUE: usize = 64;
/// The writer hands what it has to the OS and syncs at least this often.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Where a history was cut short, and why (a run killed mid-write leaves one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cut {
    /// Byte offset of the first frame not read.
    pub offset: u64,
    pub reason: String,
}

/// What is known only at the end of a run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Notes {
    #[serde(default)]
    contract_examples: Vec<String>,
}

fn checksum(kind: u8, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&[kind]);
    h.update(&(payload.len() as u32).to_le_bytes());
    h.update(payload);
    h.finalize()
}

fn write_frame(w: &mut impl Write, kind: u8, payload: &[u8]) -> io::Result<()> {
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
    Finish(Vec<String>),
}

/// The history of a running run, appended by a writer thread.
pub struct Sink {
    tx: crossbeam_channel::Sender<Msg>,
    thread: Mutex<Option<JoinHandle<Result<u64, HistoryError>>>>,
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
        let (tx, rx) = crossbeam_channel::bounded(QUEUE);
        let shown = path.display().to_string();
        let thread = std::thread::Builder::new()
            .name("history-writer".into())
            .spawn(move || write_loop(w, rx, shown))
            .map_err(io_err)?;
        Ok(Sink {
            tx,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Append a batch of records (waits while the queue is full).
    pub fn send(&self, records: Vec<Record>) {
        if !records.is_empty() {
            let _ = self.tx.send(Msg::Records(records));
        }
    }

    /// Ask the writer to hand what it has to the OS and sync it now (without waiting).
    pub fn flush(&self) {
        let _ = self.tx.try_send(Msg::Flush);
    }

    /// Write the notes and the end frame, close the file: the records written, or the
    /// first error the writer met.
    pub fn finish(&self, contract_examples: Vec<String>) -> Result<u64, HistoryError> {
        let _ = self.tx.send(Msg::Finish(contract_examples));
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
    path: String,
) -> Result<u64, HistoryError> {
    let io_err = |source| HistoryError::Io {
        path: path.clone(),
        source,
    };
    let mut written: u64 = 0;
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
            Some(Msg::Records(records)) => {
                encode_records(&records, &mut payload);
                written += records.len() as u64;
                write_frame(&mut w, RECORDS, &payload)
            }
            Some(Msg::Flush) | None => sync(&mut w),
            Some(Msg::Finish(contract_examples)) => {
                let notes = serde_json::to_vec(&Notes { contract_examples }).unwrap_or_default();
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

/// Read a framed history (the magic already read): every whole frame, the tail cut where
/// a frame is torn.
pub fn read(path: &Path, mut r: impl Read, file_len: u64) -> Result<History, HistoryError> {
    let p = path.display().to_string();
    let bad = |offset: u64, reason: &str| HistoryError::Format {
        path: p.clone(),
        reason: format!("frame at byte {offset}: {reason}"),
    };
    let mut offset = MAGIC.len() as u64;
    let mut header: Option<Header> = None;
    let mut records = Vec::new();
    let mut notes = Notes::default();
    let mut cut = None;
    let mut ended = false;
    let mut payload = Vec::new();
    loop {
        let mut head = [0u8; FRAME_HEAD];
        match read_full(&mut r, &mut head) {
            Ok(0) => break,
            Ok(n) if n < FRAME_HEAD => {
                cut = Some(Cut {
                    offset,
                    reason: "a frame's head is cut short".into(),
                });
                break;
            }
            Ok(_) => {}
            Err(e) => {
                return Err(HistoryError::Io {
                    path: p.clone(),
                    source: e,
                });
            }
        }
        let kind = head[0];
        let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]);
        let sum = u32::from_le_bytes([head[5], head[6], head[7], head[8]]);
        let end_of_frame = offset + FRAME_HEAD as u64 + u64::from(len);
        if ended {
            return Err(bad(offset, "data after the end frame"));
        }
        if len > MAX_FRAME_BYTES || end_of_frame > file_len {
            // Longer than what is left: the write was cut (or the length is garbage, which
            // a kill mid-write looks like too).
            cut = Some(Cut {
                offset,
                reason: format!("a frame of {len} bytes runs past the end of the file"),
            });
            break;
        }
        payload.resize(len as usize, 0);
        if read_full(&mut r, &mut payload).map_err(|e| HistoryError::Io {
            path: p.clone(),
            source: e,
        })? < payload.len()
        {
            cut = Some(Cut {
                offset,
                reason: "a frame is cut short".into(),
            });
            break;
        }
        if checksum(kind, &payload) != sum {
            if end_of_frame == file_len {
                cut = Some(Cut {
                    offset,
                    reason: "the last frame's checksum fails (a torn write)".into(),
                });
                break;
            }
            return Err(bad(offset, "checksum mismatch (the file is corrupt)"));
        }
        match (kind, &header) {
            (HEADER, None) => {
                let h: Header = serde_json::from_slice(&payload)
                    .map_err(|e| bad(offset, &format!("header: {e}")))?;
                if h.version != super::HISTORY_VERSION {
                    return Err(bad(
                        offset,
                        &format!(
                            "version {} (expected {})",
                            h.version,
                            super::HISTORY_VERSION
                        ),
                    ));
                }
                header = Some(h);
            }
            (_, None) => return Err(bad(offset, "the first frame is not the header")),
            (HEADER, Some(_)) => return Err(bad(offset, "a second header")),
            (RECORDS, Some(_)) => {
                if payload.len() % RECORD_BYTES != 0 {
                    return Err(bad(offset, "records frame of a partial record"));
                }
                for (i, chunk) in payload.chunks_exact(RECORD_BYTES).enumerate() {
                    let bytes: &[u8; RECORD_BYTES] = chunk
                        .try_into()
                        .map_err(|_| bad(offset, "records frame of a partial record"))?;
                    records.push(
                        Record::decode(bytes)
                            .ok_or_else(|| bad(offset, &format!("record {i} is corrupt")))?,
                    );
                }
            }
            (NOTES, Some(_)) => {
                notes = serde_json::from_slice(&payload)
                    .map_err(|e| bad(offset, &format!("notes: {e}")))?;
            }
            (END, Some(_)) => {
                let count = payload
                    .get(..8)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_le_bytes)
                    .ok_or_else(|| bad(offset, "end frame without a count"))?;
                if count != records.len() as u64 {
                    return Err(bad(
                        offset,
                        &format!(
                            "the end frame counts {count} records, the file holds {}",
                            records.len()
                        ),
                    ));
                }
                ended = true;
            }
            (other, Some(_)) => return Err(bad(offset, &format!("unknown frame kind {other}"))),
        }
        offset = end_of_frame;
    }
    let Some(mut header) = header else {
        return Err(bad(MAGIC.len() as u64, "no whole header frame"));
    };
    if !ended && cut.is_none() {
        cut = Some(Cut {
            offset,
            reason: "no end frame: the run did not finish writing it".into(),
        });
    }
    if header.contract_examples.is_empty() {
        header.contract_examples = notes.contract_examples;
    }
    Ok(History {
        header,
        records,
        cut,
    })
}

/// Read until `buf` is full or the input ends; how many bytes were read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Code, Op, Persona};

    fn header() -> Header {
        Header::for_tests()
    }

    fn record(i: u32) -> Record {
        Record {
            agent: i,
            mandate: 0,
            invoke_ms: i,
            complete_ms: i + 1,
            amount_minor: 25,
            response_hash: u64::from(i),
            semantic_hash: 7,
            purchase: 0,
            status: 201,
            attempts: 1,
            quantity: 1,
            item: 0,
            variant: 0,
            persona: Persona::WellBehaved,
            region: 0,
            op: Op::Commit,
            code: Code::Committed,
            replayed: false,
            seq: 0,
            detail: 0,
        }
    }

    /// A streamed file of `batches` batches of 10 records, finished or not.
    fn streamed(path: &Path, batches: u32, finish: bool) {
        let sink = Sink::create(path, &header()).expect("sink");
        for b in 0..batches {
            sink.send((b * 10..b * 10 + 10).map(record).collect());
            sink.flush();
        }
        if finish {
            assert_eq!(
                sink.finish(vec!["an example".into()]).expect("finish"),
                u64::from(batches) * 10
            );
        } else {
            // The writer drains what it was sent, then stops without an end frame, as a
            // run that died would leave it (the thread ends when the sender goes).
            let thread = sink.thread.lock().expect("lock").take();
            drop(sink);
            let _ = thread.map(JoinHandle::join);
        }
    }

    #[test]
    fn a_streamed_history_reads_back_whole_with_its_notes() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("h.bin");
        streamed(&path, 5, true);
        let h = History::read(&path).expect("read");
        assert_eq!(h.records, (0..50).map(record).collect::<Vec<_>>());
        assert_eq!(h.cut, None);
        assert_eq!(h.header.contract_examples, vec!["an example".to_string()]);
    }

    #[test]
    fn a_run_that_never_finished_is_read_up_to_its_last_frame() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("h.bin");
        streamed(&path, 3, false);
        let h = History::read(&path).expect("read");
        assert_eq!(h.records.len(), 30);
        assert!(
            h.cut
                .as_ref()
                .is_some_and(|c| c.reason.contains("no end frame")),
            "{:?}",
            h.cut
        );
    }

    #[test]
    fn a_torn_tail_is_cut_at_every_length_never_misread() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("h.bin");
        streamed(&path, 4, true);
        let whole = std::fs::read(&path).expect("bytes");
        let header_end =
            MAGIC.len() + FRAME_HEAD + serde_json::to_vec(&header()).expect("json").len();
        let frame = FRAME_HEAD + 10 * RECORD_BYTES;
        for len in header_end..whole.len() {
            let torn = dir.path().join("torn.bin");
            std::fs::write(&torn, &whole[..len]).expect("write");
            let h = History::read(&torn).unwrap_or_else(|e| panic!("length {len}: {e}"));
            // Exactly the whole frames before the cut.
            let whole_frames = ((len - header_end) / frame).min(4);
            assert_eq!(h.records.len(), whole_frames * 10, "length {len}");
            assert_eq!(
                h.records,
                (0..whole_frames as u32 * 10)
                    .map(record)
                    .collect::<Vec<_>>()
            );
            assert!(h.cut.is_some(), "length {len}");
        }
        // Garbage written over the last frame (a torn page): cut, not misread.
        let mut garbled = whole.clone();
        let n = garbled.len();
        garbled[n - 3] ^= 0xFF;
        std::fs::write(&path, &garbled).expect("write");
        let h = History::read(&path).expect("read");
        assert_eq!(h.records.len(), 40);
        assert!(
            h.cut
                .as_ref()
                .is_some_and(|c| c.reason.contains("checksum"))
        );
    }

    #[test]
    fn a_frame_corrupted_in_the_middle_is_refused_with_its_offset() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("h.bin");
        streamed(&path, 4, true);
        let mut bytes = std::fs::read(&path).expect("bytes");
        let header_end =
            MAGIC.len() + FRAME_HEAD + serde_json::to_vec(&header()).expect("json").len();
        let second = header_end + FRAME_HEAD + 10 * RECORD_BYTES;
        bytes[second + FRAME_HEAD + 5] ^= 0x01;
        std::fs::write(&path, &bytes).expect("write");
        let err = History::read(&path).expect_err("refused").to_string();
        assert!(
            err.contains(&format!("frame at byte {second}")) && err.contains("checksum"),
            "{err}"
        );
    }
}
