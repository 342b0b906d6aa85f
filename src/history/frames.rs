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
    /// Where a killed run's history was cut before `swarm resolve` appended its replays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    resumed_after: Option<Cut>,
}

/// What a history says once every record is read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ending {
    /// Where the file was cut short (`None`: it ends with its end frame).
    pub cut: Option<Cut>,
    /// The first answers that broke the contract, in words.
    pub contract_examples: Vec<String>,
    /// The file was cut here by a kill, then resumed: `swarm resolve` appended the replays
    /// of the keys that were open and ended it.
    pub resumed_after: Option<Cut>,
}

fn checksum(kind: u8, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&[kind]);
    h.update(&(payload.len() as u32).to_le_bytes());
    h.update(payload);
    h.finalize()
}

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
        let shown = path.display().to_string();
        let thread = std::thread::Builder::new()
            .name("history-writer".into())
            .spawn(move || write_loop(w, rx, shown, records))
            .map_err(|source| HistoryError::Io {
                path: path.display().to_string(),
                source,
            })?;
        Ok(Sink {
            tx,
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
            Some(Msg::Records(records)) => {
                encode_records(&records, &mut payload);
                written += records.len() as u64;
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

/// A framed history read frame by frame (the magic already read): the header at open,
/// then the records a frame at a time, so a reader holds one frame however long the run.
pub struct FramedReader<R> {
    cur: Cursor<R>,
    header: Header,
    notes: Notes,
    records: u64,
    cut: Option<Cut>,
    /// No frame is left to read (the end of the file, or a cut).
    done: bool,
}

/// Where a reader is in the file, and the frame it read last.
struct Cursor<R> {
    r: R,
    path: String,
    file_len: u64,
    offset: u64,
    /// The end frame was read.
    ended: bool,
    payload: Vec<u8>,
}

/// One frame as read: its kind (the payload in `Cursor::payload`), or why the file stops.
enum Frame {
    Whole(u8),
    Cut(String),
    Eof,
}

impl<R: Read> Cursor<R> {
    fn bad(&self, offset: u64, reason: &str) -> HistoryError {
        HistoryError::Format {
            path: self.path.clone(),
            reason: format!("frame at byte {offset}: {reason}"),
        }
    }

    fn io(&self, source: io::Error) -> HistoryError {
        HistoryError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// The next frame into `payload`, its checksum verified; `offset` moves past it.
    fn frame(&mut self) -> Result<Frame, HistoryError> {
        let offset = self.offset;
        let mut head = [0u8; FRAME_HEAD];
        match read_full(&mut self.r, &mut head) {
            Ok(0) => return Ok(Frame::Eof),
            Ok(n) if n < FRAME_HEAD => {
                return Ok(Frame::Cut("a frame's head is cut short".into()));
            }
            Ok(_) => {}
            Err(e) => return Err(self.io(e)),
        }
        let kind = head[0];
        let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]);
        let sum = u32::from_le_bytes([head[5], head[6], head[7], head[8]]);
        let end_of_frame = offset + FRAME_HEAD as u64 + u64::from(len);
        if self.ended {
            return Err(self.bad(offset, "data after the end frame"));
        }
        if len > MAX_FRAME_BYTES || end_of_frame > self.file_len {
            // Longer than what is left: the write was cut (or the length is garbage, which
            // a kill mid-write looks like too).
            return Ok(Frame::Cut(format!(
                "a frame of {len} bytes runs past the end of the file"
            )));
        }
        self.payload.resize(len as usize, 0);
        let n = read_full(&mut self.r, &mut self.payload).map_err(|e| self.io(e))?;
        if n < self.payload.len() {
            return Ok(Frame::Cut("a frame is cut short".into()));
        }
        if checksum(kind, &self.payload) != sum {
            if end_of_frame == self.file_len {
                return Ok(Frame::Cut(
                    "the last frame's checksum fails (a torn write)".into(),
                ));
            }
            return Err(self.bad(offset, "checksum mismatch (the file is corrupt)"));
        }
        self.offset = end_of_frame;
        Ok(Frame::Whole(kind))
    }
}

impl<R: Read> FramedReader<R> {
    /// Read up to and including the header frame.
    pub fn open(path: &Path, r: R, file_len: u64) -> Result<FramedReader<R>, HistoryError> {
        let mut cur = Cursor {
            r,
            path: path.display().to_string(),
            file_len,
            offset: MAGIC.len() as u64,
            ended: false,
            payload: Vec::new(),
        };
        let offset = cur.offset;
        match cur.frame()? {
            Frame::Whole(HEADER) => {}
            Frame::Whole(_) => return Err(cur.bad(offset, "the first frame is not the header")),
            Frame::Cut(_) | Frame::Eof => return Err(cur.bad(offset, "no whole header frame")),
        }
        let header: Header = serde_json::from_slice(&cur.payload)
            .map_err(|e| cur.bad(offset, &format!("header: {e}")))?;
        if header.version != super::HISTORY_VERSION {
            return Err(cur.bad(
                offset,
                &format!(
                    "history version {}, written by {} swarm: audit it with that swarm (this one reads version {})",
                    header.version,
                    if header.version < super::HISTORY_VERSION { "an earlier" } else { "a later" },
                    super::HISTORY_VERSION
                ),
            ));
        }
        Ok(FramedReader {
            cur,
            header,
            notes: Notes::default(),
            records: 0,
            cut: None,
            done: false,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Append the next frame's records to `out`: `false` once no record is left (the end
    /// of the file or a cut, then in `ending`).
    pub fn next_records(&mut self, out: &mut Vec<Record>) -> Result<bool, HistoryError> {
        while !self.done {
            let offset = self.cur.offset;
            match self.cur.frame()? {
                Frame::Eof => self.done = true,
                Frame::Cut(reason) => {
                    self.cut = Some(Cut { offset, reason });
                    self.done = true;
                }
                Frame::Whole(HEADER) => return Err(self.cur.bad(offset, "a second header")),
                Frame::Whole(RECORDS) => {
                    if !self.cur.payload.len().is_multiple_of(RECORD_BYTES) {
                        return Err(self.cur.bad(offset, "records frame of a partial record"));
                    }
                    out.reserve(self.cur.payload.len() / RECORD_BYTES);
                    for (i, chunk) in self.cur.payload.chunks_exact(RECORD_BYTES).enumerate() {
                        let decoded = <&[u8; RECORD_BYTES]>::try_from(chunk)
                            .ok()
                            .and_then(Record::decode);
                        match decoded {
                            Some(r) => out.push(r),
                            None => {
                                return Err(self
                                    .cur
                                    .bad(offset, &format!("record {i} is corrupt")));
                            }
                        }
                        self.records += 1;
                    }
                    return Ok(true);
                }
                Frame::Whole(NOTES) => {
                    self.notes = serde_json::from_slice(&self.cur.payload)
                        .map_err(|e| self.cur.bad(offset, &format!("notes: {e}")))?;
                }
                Frame::Whole(END) => {
                    let count = self
                        .cur
                        .payload
                        .get(..8)
                        .and_then(|b| b.try_into().ok())
                        .map(u64::from_le_bytes)
                        .ok_or_else(|| self.cur.bad(offset, "end frame without a count"))?;
                    if count != self.records {
                        return Err(self.cur.bad(
                            offset,
                            &format!(
                                "the end frame counts {count} records, the file holds {}",
                                self.records
                            ),
                        ));
                    }
                    self.cur.ended = true;
                }
                Frame::Whole(other) => {
                    return Err(self.cur.bad(offset, &format!("unknown frame kind {other}")));
                }
            }
        }
        Ok(false)
    }

    /// What the file says once every record is read: where it was cut (a file without an
    /// end frame is cut where it stops), its notes.
    pub fn ending(&self) -> Ending {
        let cut = match (&self.cut, self.cur.ended) {
            (Some(c), _) => Some(c.clone()),
            (None, false) => Some(Cut {
                offset: self.cur.offset,
                reason: "no end frame: the run did not finish writing it".into(),
            }),
            (None, true) => None,
        };
        Ending {
            cut,
            contract_examples: self.notes.contract_examples.clone(),
            resumed_after: self.notes.resumed_after.clone(),
        }
    }
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
    #[test]
    #[should_panic(expected = "a records frame of")]
    fn a_partial_record_is_never_written() {
        let _ = write_frame(&mut Vec::new(), RECORDS, &[0u8; RECORD_BYTES + 1]);
    }

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
            execution: 0,
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
