//! The reading half of the history file's format (`frames`): `FramedReader`, the header at
//! open, then the records a frame at a time, the notes and the end frame checked on the way.
//!
//! Invariants: a torn tail is cut and said (`Cut`), never misread; a corrupt frame with more
//! after it is refused with its offset; a reader holds one frame however long the run.

use std::io::{self, Read};
use std::path::Path;

use super::{
    Cut, END, Ending, FRAME_HEAD, HEADER, MAGIC, MAX_FRAME_BYTES, NOTES, Notes, RECORDS, checksum,
};
use crate::history::{HISTORY_VERSION, Header, HistoryError, RECORD_BYTES, Record};

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
        if header.version != HISTORY_VERSION {
            return Err(cur.bad(
                offset,
                &format!(
                    "history version {}, written by {} swarm: audit it with that swarm (this one reads version {})",
                    header.version,
                    if header.version < HISTORY_VERSION { "an earlier" } else { "a later" },
                    HISTORY_VERSION
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
