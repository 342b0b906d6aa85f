//! `Reader`: a history file read a frame at a time, whatever its version says it is (the
//! magic decides; a version this swarm does not read is refused by name).
//!
//! Invariant: the memory a reader holds is one frame, whatever the file's length.

use std::io::{BufReader, Read};
use std::path::Path;

use super::frames;
use super::{Ending, Header, HistoryError, Record};

/// A history file read a frame at a time, in the order it was written: the memory it
/// holds is one frame, whatever the file's length.
pub struct Reader {
    inner: ReaderKind,
    /// Records handed out so far.
    read: u64,
}

enum ReaderKind {
    Framed(frames::FramedReader<BufReader<std::fs::File>>),
}

impl Reader {
    /// Open `path` and read its header.
    pub fn open(path: &Path) -> Result<Reader, HistoryError> {
        let p = path.display().to_string();
        let io_err = |source| HistoryError::Io {
            path: p.clone(),
            source,
        };
        let bad = |reason: &str| HistoryError::Format {
            path: p.clone(),
            reason: reason.to_string(),
        };
        let file = std::fs::File::open(path).map_err(io_err)?;
        let file_len = file.metadata().map_err(io_err)?.len();
        let mut r = BufReader::with_capacity(1 << 20, file);
        let mut magic = [0u8; 8];
        r.read_exact(&mut magic).map_err(|_| bad("too short"))?;
        let inner = if &magic == frames::MAGIC {
            ReaderKind::Framed(frames::FramedReader::open(path, r, file_len)?)
        } else if &magic == b"SWARMH01" {
            return Err(bad(
                "history version 3, written by an earlier swarm: audit it with that swarm (this one reads version 5)",
            ));
        } else {
            return Err(bad("wrong magic bytes"));
        };
        Ok(Reader { inner, read: 0 })
    }

    pub fn header(&self) -> &Header {
        match &self.inner {
            ReaderKind::Framed(f) => f.header(),
        }
    }

    /// Append the next frame's records to `out` (in the order written); `false` when no
    /// record is left.
    pub fn next_records(&mut self, out: &mut Vec<Record>) -> Result<bool, HistoryError> {
        let before = out.len();
        let more = match &mut self.inner {
            ReaderKind::Framed(f) => f.next_records(out)?,
        };
        self.read += (out.len() - before) as u64;
        Ok(more)
    }

    /// Once every record is read: where the file was cut (`None`: whole) and its notes.
    pub fn ending(&self) -> Ending {
        match &self.inner {
            ReaderKind::Framed(f) => f.ending(),
        }
    }

    /// Records handed out so far.
    pub fn records(&self) -> u64 {
        self.read
    }
}
