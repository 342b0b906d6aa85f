//! The history file's format, defined once: a magic, then frames, each checksummed,
//! appended as the run goes, so a killed run leaves everything up to its last whole frame.
//! Its writer (`write`: `Sink` and its writer thread, `write_all`) and its reader (`read`:
//! `FramedReader`) are the two halves of this one definition, on purpose: both take every
//! constant, the checksum and the notes from here, so the two cannot drift, and the tests
//! below write with the one and read with the other.
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
//! channel (`write::QUEUE` batches) and the writer's buffer; the file is flushed to the OS and
//! synced at least every `write::FLUSH_EVERY` and at each `Sink::flush`; a reader holds one
//! frame.

use serde::{Deserialize, Serialize};

mod read;
mod write;

pub use read::FramedReader;
pub use write::{Sink, write_all};

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

/// A frame's checksum: CRC-32 over its kind, its length and its payload.
fn checksum(kind: u8, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&[kind]);
    h.update(&(payload.len() as u32).to_le_bytes());
    h.update(payload);
    h.finalize()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::history::{Header, History, RECORD_BYTES, Record};

    fn header() -> Header {
        Header::for_tests()
    }

    fn record(i: u32) -> Record {
        Record {
            agent: i,
            invoke_ms: i,
            complete_ms: i + 1,
            amount_minor: 25,
            response_hash: u64::from(i),
            semantic_hash: 7,
            ..Record::for_tests()
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
            sink.die();
        }
    }

    #[test]
    fn a_written_batch_comes_back_empty_to_be_filled_again() {
        let dir = tempfile::tempdir().expect("dir");
        let sink = Sink::create(&dir.path().join("h.bin"), &header()).expect("sink");
        let mut batch = Vec::with_capacity(1000);
        batch.extend((0..3).map(record));
        sink.send(batch);
        assert_eq!(sink.finish(Vec::new()).expect("finish"), 3);
        let spare = sink.spare(1);
        assert!(spare.is_empty());
        assert!(spare.capacity() >= 1000, "the writer's emptied batch");
        assert!(
            sink.spare(1).capacity() < 1000,
            "a new one once none is kept"
        );
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

    /// A fuzzer over the file: bytes flipped, cut, repeated or inserted anywhere (the
    /// header and the end frame too). Every read ends, in an error or in records that are
    /// a prefix of what was written: never a record that was not.
    #[test]
    fn a_mutated_file_is_refused_or_read_as_a_prefix_never_misread() {
        use rand::{Rng, SeedableRng};
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("h.bin");
        streamed(&path, 4, true);
        let whole = std::fs::read(&path).expect("bytes");
        let written: Vec<Record> = (0..40).map(record).collect();
        let mut rng = rand::rngs::SmallRng::seed_from_u64(0x415_7021);
        let (mut refused, mut prefix) = (0, 0);
        let mutated = dir.path().join("m.bin");
        for case in 0..3_000 {
            let mut b = whole.clone();
            for _ in 0..rng.random_range(1..=3) {
                let at = rng.random_range(0..b.len());
                match rng.random_range(0..4) {
                    0 => b[at] ^= 1 << rng.random_range(0..8),
                    1 => {
                        let end = (at + rng.random_range(1..64)).min(b.len());
                        b.drain(at..end);
                    }
                    2 => {
                        let end = (at + rng.random_range(1..64)).min(b.len());
                        let copy = b[at..end].to_vec();
                        b.splice(at..at, copy);
                    }
                    _ => {
                        let n = rng.random_range(1..8);
                        let noise: Vec<u8> = (0..n).map(|_| rng.random()).collect();
                        b.splice(at..at, noise);
                    }
                }
            }
            std::fs::write(&mutated, &b).expect("write");
            match History::read(&mutated) {
                Err(_) => refused += 1,
                Ok(h) => {
                    assert!(
                        h.records.len() <= written.len() && h.records == written[..h.records.len()],
                        "case {case}: {} records read, not a prefix of those written",
                        h.records.len()
                    );
                    prefix += 1;
                }
            }
        }
        // Both ends reached (most mutations land mid-file, where a frame is refused).
        assert!(
            refused > 100 && prefix > 10,
            "{refused} refused, {prefix} read"
        );
    }
}
