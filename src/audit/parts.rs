//! The audit's working set, split by agent so it fits a memory budget: the history's
//! records and the database's intents go to the same part for the same agent (a hash of
//! the agent id), and the audit groups and compares one part at a time.
//!
//! Invariants: a key's records and intents are in one part, and so are all keys of one
//! purchase (both are keyed by agent), so a part holds everything a key's checks and a
//! purchase's duplicate-settlement check need; one part fits the budget the count was
//! chosen for; with one part nothing touches the disk.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};

use super::facts::KeyId;
use crate::history::{RECORD_BYTES, Record};

/// Bytes an audit may hold for the history's records, their facts and the intents of one
/// part, by default: the rest of the audit (catalog, commit-sized state checks) is small.
/// The buffers and connections around it add about half again, and inside `swarm run`
/// the run's own leftovers sit under it: 96 MiB keeps a 10M-agent run below 256 MiB
/// (128 peaked at 211-260 MiB) for 3 % more audit time at 1M intents.
pub const DEFAULT_BUDGET_BYTES: u64 = 96 << 20;
/// Most parts: three files each (records and two intent lanes), so the count (768) stays
/// below a process's usual limit of 1024 open files. A history past `MAX_PARTS` × budget
/// makes parts larger than the budget.
pub const MAX_PARTS: usize = 256;
/// What one record costs in memory while its part is grouped: the record and, at worst,
/// a key's facts of its own.
const BYTES_PER_RECORD: u64 = 128;
/// What one intent costs in memory while its part is compared.
const BYTES_PER_INTENT: u64 = 48;

/// An intent of the audited run's keys, as the part's comparison needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartIntent {
    pub id: KeyId,
    pub committed: bool,
    pub quantity: i64,
    pub amount_minor: i64,
    pub snapshot_hash: u64,
    /// Index into the catalog's items (`u32::MAX`: not in it).
    pub item: u32,
}

const INTENT_BYTES: usize = 36;

impl PartIntent {
    fn encode(&self, out: &mut [u8; INTENT_BYTES]) {
        out[0..4].copy_from_slice(&self.id.0.to_le_bytes());
        out[4..6].copy_from_slice(&self.id.1.to_le_bytes());
        out[6] = self.id.2;
        out[7] = u8::from(self.committed);
        out[8..16].copy_from_slice(&self.quantity.to_le_bytes());
        out[16..24].copy_from_slice(&self.amount_minor.to_le_bytes());
        out[24..32].copy_from_slice(&self.snapshot_hash.to_le_bytes());
        out[32..36].copy_from_slice(&self.item.to_le_bytes());
    }

    fn decode(b: &[u8; INTENT_BYTES]) -> PartIntent {
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(a)
        };
        PartIntent {
            id: (
                u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                u16::from_le_bytes([b[4], b[5]]),
                b[6],
            ),
            committed: b[7] != 0,
            quantity: u64_at(8) as i64,
            amount_minor: u64_at(16) as i64,
            snapshot_hash: u64_at(24),
            item: u32::from_le_bytes([b[32], b[33], b[34], b[35]]),
        }
    }
}

/// How many parts a working set of `records` and `intents` needs under `budget_bytes`.
pub fn count_for(records: u64, intents: u64, budget_bytes: u64) -> usize {
    let need = records
        .saturating_mul(BYTES_PER_RECORD)
        .saturating_add(intents.saturating_mul(BYTES_PER_INTENT));
    let parts = need.div_ceil(budget_bytes.max(1)).max(1);
    parts.min(MAX_PARTS as u64) as usize
}

/// The part of `agent` among `n` (a multiplicative hash: consecutive agents spread).
fn part_of(agent: u32, n: usize) -> usize {
    ((u64::from(agent).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) % n as u64) as usize
}

/// Scanners that may put intents in at once, each through its own lane.
pub const INTENT_LANES: usize = 2;

/// The working set, split.
pub struct Parts {
    n: usize,
    /// The parts' files (none with one part).
    dir: Option<tempfile::TempDir>,
    records: Records,
    lanes: Vec<IntentLane>,
    /// Records put in, for the timings.
    pub records_in: u64,
}

enum Records {
    Memory(Vec<Record>),
    Files(Vec<BufWriter<File>>),
}

/// Where one scanner's intents go, by part: a vector (one part) or a file per part.
/// Lanes let two scanners put intents in at once without sharing a writer.
pub struct IntentLane {
    n: usize,
    store: LaneStore,
}

enum LaneStore {
    Memory(Vec<PartIntent>),
    Files(Vec<BufWriter<File>>),
}

impl IntentLane {
    pub fn push(&mut self, d: &PartIntent) -> io::Result<()> {
        match &mut self.store {
            LaneStore::Memory(intents) => intents.push(*d),
            LaneStore::Files(files) => {
                let mut buf = [0u8; INTENT_BYTES];
                d.encode(&mut buf);
                files[part_of(d.id.0, self.n)].write_all(&buf)?;
            }
        }
        Ok(())
    }
}

fn file(dir: &tempfile::TempDir, name: String, buffer: usize) -> io::Result<BufWriter<File>> {
    Ok(BufWriter::with_capacity(
        buffer,
        File::create(dir.path().join(name))?,
    ))
}

impl Parts {
    /// `n` parts: in memory when one, else temporary files (removed on drop), one for the
    /// records and one per intent lane each, their write buffers sized so all of them
    /// stay within a sixteenth of the budget.
    pub fn new(n: usize, budget_bytes: u64, records_estimate: u64) -> io::Result<Parts> {
        let n = n.max(1);
        if n == 1 {
            // One part is held in memory only when the estimate fits the budget: room for
            // it at once, rather than the records copied at every doubling.
            let room = records_estimate.min(budget_bytes / RECORD_BYTES as u64) as usize;
            return Ok(Parts {
                n,
                dir: None,
                records: Records::Memory(Vec::with_capacity(room)),
                lanes: (0..INTENT_LANES)
                    .map(|_| IntentLane {
                        n,
                        store: LaneStore::Memory(Vec::new()),
                    })
                    .collect(),
                records_in: 0,
            });
        }
        let dir = tempfile::Builder::new().prefix("swarm-audit-").tempdir()?;
        let files_per_part = 1 + INTENT_LANES as u64;
        let buffer =
            (budget_bytes / 16 / (files_per_part * n as u64)).clamp(4 << 10, 1 << 20) as usize;
        let records = (0..n)
            .map(|i| file(&dir, format!("records-{i}"), buffer))
            .collect::<io::Result<_>>()?;
        let mut lanes = Vec::with_capacity(INTENT_LANES);
        for lane in 0..INTENT_LANES {
            let files = (0..n)
                .map(|i| file(&dir, format!("intents-{lane}-{i}"), buffer))
                .collect::<io::Result<_>>()?;
            lanes.push(IntentLane {
                n,
                store: LaneStore::Files(files),
            });
        }
        Ok(Parts {
            n,
            dir: Some(dir),
            records: Records::Files(records),
            lanes,
            records_in: 0,
        })
    }

    pub fn count(&self) -> usize {
        self.n
    }

    pub fn push_record(&mut self, r: &Record) -> io::Result<()> {
        self.records_in += 1;
        match &mut self.records {
            Records::Memory(records) => records.push(*r),
            Records::Files(files) => {
                let mut buf = [0u8; RECORD_BYTES];
                r.encode(&mut buf);
                files[part_of(r.agent, self.n)].write_all(&buf)?;
            }
        }
        Ok(())
    }

    /// The intent lanes, `INTENT_LANES` of them: one per scanner running at once.
    pub fn lanes(&mut self) -> &mut [IntentLane] {
        &mut self.lanes
    }

    /// Part `i`'s records, handed over into `out` (cleared first).
    pub fn take_records(&mut self, i: usize, out: &mut Vec<Record>) -> io::Result<()> {
        out.clear();
        match (&mut self.records, &self.dir) {
            (Records::Memory(records), _) => *out = std::mem::take(records),
            (Records::Files(files), Some(dir)) => {
                files[i].flush()?;
                read_back(
                    dir,
                    &format!("records-{i}"),
                    out,
                    |b: &[u8; RECORD_BYTES]| {
                        // The bytes are the audit's own, written above from decoded records.
                        Record::decode(b)
                            .ok_or_else(|| io::Error::other("a spilled record is corrupt"))
                    },
                )?;
            }
            (Records::Files(_), None) => return Err(io::Error::other("parts without files")),
        }
        Ok(())
    }

    /// Part `i`'s intents from every lane, handed over into `out` (cleared first, its
    /// allocation reused).
    pub fn take_intents(&mut self, i: usize, out: &mut Vec<PartIntent>) -> io::Result<()> {
        out.clear();
        // Every lane's share reserved at once: the vector grows once.
        let mut bytes = 0;
        for lane in &mut self.lanes {
            if let LaneStore::Files(files) = &mut lane.store {
                files[i].flush()?;
                bytes += files[i].get_ref().metadata()?.len();
            }
        }
        out.reserve(usize::try_from(bytes / INTENT_BYTES as u64).unwrap_or(0));
        for (lane_i, lane) in self.lanes.iter_mut().enumerate() {
            match (&mut lane.store, &self.dir) {
                (LaneStore::Memory(intents), _) if out.is_empty() => std::mem::swap(out, intents),
                (LaneStore::Memory(intents), _) => out.append(intents),
                // Flushed above, when its length was taken.
                (LaneStore::Files(_), Some(dir)) => {
                    read_back(
                        dir,
                        &format!("intents-{lane_i}-{i}"),
                        out,
                        |b: &[u8; INTENT_BYTES]| Ok(PartIntent::decode(b)),
                    )?;
                }
                (LaneStore::Files(_), None) => {
                    return Err(io::Error::other("parts without files"));
                }
            }
        }
        Ok(())
    }
}

/// Bytes of a part's file read back at a time.
const READ_BACK_BYTES: usize = 1 << 20;

/// A part's file, read back into `out` one `N`-byte entry at a time through a bounded
/// buffer, then removed (its space goes back at once). A file whose length is not a whole
/// number of entries is corrupt.
fn read_back<const N: usize, T>(
    dir: &tempfile::TempDir,
    name: &str,
    out: &mut Vec<T>,
    decode: impl Fn(&[u8; N]) -> io::Result<T>,
) -> io::Result<()> {
    let path = dir.path().join(name);
    let file = File::open(&path)?;
    let len = file.metadata()?.len();
    if len % N as u64 != 0 {
        return Err(io::Error::other(format!(
            "{name}: {len} bytes is not a whole number of {N}-byte entries"
        )));
    }
    out.reserve(usize::try_from(len / N as u64).map_err(io::Error::other)?);
    let mut file = BufReader::with_capacity(READ_BACK_BYTES, file);
    let mut entry = [0u8; N];
    for _ in 0..len / N as u64 {
        file.read_exact(&mut entry)?;
        out.push(decode(&entry)?);
    }
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(agent: u32) -> Record {
        Record {
            agent,
            mandate: 1,
            invoke_ms: agent,
            complete_ms: agent + 1,
            response_hash: 9,
            semantic_hash: 8,
            purchase: 3,
            variant: 1,
            ..Record::for_tests()
        }
    }

    #[test]
    fn every_record_and_intent_comes_back_in_its_agents_part() {
        let n = 7;
        let mut parts = Parts::new(n, 1 << 20, 0).expect("parts");
        for agent in 0..1000 {
            parts.push_record(&record(agent)).expect("record");
            parts.lanes()[agent as usize % INTENT_LANES]
                .push(&PartIntent {
                    id: (agent, 3, 1),
                    committed: agent % 2 == 0,
                    quantity: 1,
                    amount_minor: -5,
                    snapshot_hash: u64::from(agent),
                    item: 2,
                })
                .expect("intent");
        }
        let mut seen = 0;
        // One pair of vectors for every part, as the audit reuses them.
        let (mut records, mut intents) = (Vec::new(), Vec::new());
        for i in 0..n {
            parts.take_records(i, &mut records).expect("records");
            parts.take_intents(i, &mut intents).expect("intents");
            assert!(
                !records.is_empty(),
                "part {i} is empty: the hash does not spread"
            );
            assert_eq!(records.len(), intents.len());
            // The lanes come back one after the other: in key order once sorted.
            intents.sort_unstable_by_key(|d| d.id);
            for (r, d) in records.iter().zip(&intents) {
                assert_eq!(part_of(r.agent, n), i);
                assert_eq!(*r, record(r.agent));
                assert_eq!(d.id.0, r.agent);
                assert_eq!((d.committed, d.amount_minor), (r.agent % 2 == 0, -5));
            }
            seen += records.len();
        }
        assert_eq!(seen, 1000);
    }

    #[test]
    fn the_count_grows_with_the_working_set_and_stops_at_the_limit() {
        assert_eq!(count_for(0, 0, 1 << 20), 1);
        assert_eq!(count_for(1000, 1000, 1 << 30), 1);
        assert_eq!(count_for(1 << 20, 0, 64 << 20), 2);
        assert_eq!(count_for(u64::MAX, u64::MAX, 1), MAX_PARTS);
    }
}
