//! The client history: every request an agent made, recorded compactly.
//!
//! Jepsen-style, each request ends `ok` (a definite answer: 2xx), `fail` (definitely not
//! executed: 4xx, a refused connection, RETRY_EXHAUSTED) or `info` (indeterminate: a
//! timeout, a reset, a crash). Invariants: records are fixed-size (a million agents fit in
//! tens of MiB); keys are not stored but derived from the header's prefix and the record's
//! (agent, purchase, variant), so the file is self-contained; nothing here knows the kernel.
//!
//! Here: the file's `Header`, the keys, `History` (a whole file in memory) and
//! `Indeterminate`. One request is a `Record` (`record`), the file format is `frames`, a
//! file is read a frame at a time by `Reader` (`reader`), and an answer's hash is `answer`.

use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};
use thiserror::Error;

mod answer;
mod frames;
mod reader;
mod record;

pub use answer::{
    StreamHash, Violation, answer_hash, answer_hash_cut, stored_answer_hash, value_spans,
};
pub use frames::{Cut, Ending, Sink};
pub use reader::Reader;
pub use record::{Code, Kind, Op, Persona, RECORD_BYTES, Record, STATUS_CLASSES, status_class};

/// What a reader needs to turn records back into keys, ids and declared limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub version: u32,
    pub scenario: String,
    /// SHA-256 of the scenario file's text (hex).
    pub scenario_sha256: String,
    pub seed: u64,
    /// Keys are `{key_prefix}-{agent}-{purchase}-{variant}`.
    pub key_prefix: String,
    pub merchant_id: String,
    /// Item ids by record `item` index.
    pub items: Vec<String>,
    /// Mandate ids by record `mandate` index.
    pub mandates: Vec<String>,
    pub regions: Vec<String>,
    /// Declared by the scenario: units per item and cap per mandate.
    pub stock_per_item: i64,
    pub cap_per_mandate_minor: i64,
    pub price_minor: i64,
    pub currency: String,
    /// `I/N` when the run was one shard of several.
    #[serde(default)]
    pub shard: Option<(u32, u32)>,
    /// The run's id: part of every key, so two runs against one service never share keys.
    #[serde(default)]
    pub run_id: String,
    /// The first answers that broke the contract: kind, status, key and a body excerpt.
    #[serde(default)]
    pub contract_examples: Vec<String>,
    /// The contract's profile and how it marks a replay (`body:/replayed`,
    /// `header:NAME`, `none`): the audit reads the marker's absence as no finding.
    pub contract_profile: String,
    pub replay_marker: String,
    /// The contract's volatile answer fields (`answer.volatile_fields`): left out of the
    /// answer hashes, so of a stored answer's hash too.
    #[serde(default)]
    pub volatile_fields: Vec<String>,
    /// When the run began, in ms since the Unix epoch (`None` in histories written before
    /// it was kept): `swarm resolve` dates a cut history's open keys by it, whatever the
    /// file's own times say (a copied file is younger than its run).
    #[serde(default)]
    pub started_unix_ms: Option<u64>,
}

impl Header {
    /// The top-level answer field that marks a replay, when the contract marks replays in
    /// the body (`replay_marker` is `body:/NAME`, a one-token JSON pointer, here unescaped
    /// as RFC 6901 says: `~1` is `/`, then `~0` is `~`); `None` for a header or no marker.
    pub fn body_marker(&self) -> Option<String> {
        self.replay_marker
            .strip_prefix("body:/")
            .map(|name| name.replace("~1", "/").replace("~0", "~"))
    }
}

#[cfg(test)]
impl Header {
    /// A small header for unit tests: one item, one mandate, one region.
    pub(crate) fn for_tests() -> Header {
        Header {
            version: HISTORY_VERSION,
            scenario: "t".into(),
            scenario_sha256: String::new(),
            seed: 1,
            key_prefix: "s1".into(),
            merchant_id: "m".into(),
            items: vec!["i".into()],
            mandates: vec!["a".into()],
            regions: vec!["r".into()],
            stock_per_item: 10,
            cap_per_mandate_minor: 100,
            price_minor: 25,
            currency: "USD".into(),
            shard: None,
            run_id: "r1".into(),
            contract_examples: Vec::new(),
            contract_profile: "zerorace".into(),
            replay_marker: "body:/replayed".into(),
            volatile_fields: Vec::new(),
            started_unix_ms: None,
        }
    }
}

/// 5: the framed file, written as the run goes (`frames`), of 66-byte records (each with
/// the hash of the execution id its answer named); the header names the contract's
/// profile and replay marker. Earlier versions (3, 4) are refused by name: their records
/// carry no execution ids, and the checks decide executions by them.
pub const HISTORY_VERSION: u32 = 5;

/// The idempotency key of (agent, purchase, variant) under `prefix`.
/// Written digit by digit (no formatter): it is built for every request.
pub fn key(prefix: &str, agent: u32, purchase: u16, variant: u8) -> String {
    let mut b = itoa::Buffer::new();
    let mut k = String::with_capacity(prefix.len() + 22);
    k.push_str(prefix);
    k.push('-');
    k.push_str(b.format(agent));
    k.push('-');
    k.push_str(b.format(purchase));
    k.push('-');
    k.push_str(b.format(variant));
    k
}

#[derive(Debug, Error)]
pub enum HistoryError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{path}: not a swarm history file ({reason})")]
    Format { path: String, reason: String },
}

/// A whole history: header and records, ordered by invoke time.
#[derive(Debug, Clone)]
pub struct History {
    pub header: Header,
    pub records: Vec<Record>,
    /// Where the file was cut short (a run killed while writing it); `None`: whole.
    pub cut: Option<Cut>,
}

/// The agents' own requests without a definite answer, and whether their keys settled.
#[derive(Default)]
struct OpenKeys {
    requests: u64,
    keys: std::collections::HashMap<(u32, u16, u8), bool>,
}

impl OpenKeys {
    fn open(&mut self, records: &[Record]) {
        for r in records
            .iter()
            .filter(|r| r.op == Op::Commit && r.kind() == Kind::Info)
        {
            self.requests += 1;
            self.keys.insert((r.agent, r.purchase, r.variant), false);
        }
    }

    /// Mark the open keys an agent's own request settled with a business answer.
    fn settle(&mut self, records: &[Record]) {
        for r in records
            .iter()
            .filter(|r| r.op == Op::Commit && r.kind() == Kind::Ok)
        {
            if let Some(settled) = self.keys.get_mut(&(r.agent, r.purchase, r.variant)) {
                *settled = true;
            }
        }
    }

    fn figures(&self) -> Indeterminate {
        Indeterminate {
            requests: self.requests,
            keys: self.keys.len() as u64,
            settled_by_agents: self.keys.values().filter(|s| **s).count() as u64,
        }
    }
}

/// The requests of a run that got no definite answer (the agents' own, not the end-of-run
/// replay), the keys they were on, and how many of those keys an agent's own request then
/// (or concurrently) settled with a business answer. The rest were left to the end-of-run
/// replay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Indeterminate {
    pub requests: u64,
    pub keys: u64,
    pub settled_by_agents: u64,
}

impl Indeterminate {
    /// Of the records in `records`.
    pub fn of(records: &[Record]) -> Indeterminate {
        let mut open = OpenKeys::default();
        open.open(records);
        open.settle(records);
        open.figures()
    }

    /// Of a history file, read twice a frame at a time (the open keys are held, not the
    /// records).
    pub fn read(path: &Path) -> Result<Indeterminate, HistoryError> {
        let mut open = OpenKeys::default();
        let mut batch = Vec::new();
        for pass in [OpenKeys::open, OpenKeys::settle] {
            let mut reader = Reader::open(path)?;
            while reader.next_records(&mut batch)? {
                pass(&mut open, &batch);
                batch.clear();
            }
        }
        Ok(open.figures())
    }

    pub fn add(&mut self, o: &Indeterminate) {
        self.requests += o.requests;
        self.keys += o.keys;
        self.settled_by_agents += o.settled_by_agents;
    }
}

impl History {
    pub fn key_of(&self, r: &Record) -> String {
        key(&self.header.key_prefix, r.agent, r.purchase, r.variant)
    }

    /// Write the whole history at once, in the framed format a run streams.
    pub fn write(&self, path: &Path) -> Result<(), HistoryError> {
        frames::write_all(path, self)
    }

    /// Records in the order the audit reads them: by invoke time, then key.
    fn sort(records: &mut [Record]) {
        records
            .sort_unstable_by_key(|r| (r.invoke_ms, r.agent, r.purchase, r.variant, r.complete_ms));
    }

    /// Read a whole history file: every whole
    /// frame, the records ordered by invoke time; a torn tail is cut and said in `cut`.
    /// (`Reader` reads one frame at a time.)
    pub fn read(path: &Path) -> Result<History, HistoryError> {
        let mut reader = Reader::open(path)?;
        let mut records = Vec::new();
        while reader.next_records(&mut records)? {}
        let ending = reader.ending();
        let cut = ending.cut;
        let mut header = reader.header().clone();
        if header.contract_examples.is_empty() {
            header.contract_examples = ending.contract_examples;
        }
        History::sort(&mut records);
        Ok(History {
            header,
            records,
            cut,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: u32) -> Record {
        Record {
            agent: i,
            mandate: i % 7,
            invoke_ms: i * 3,
            complete_ms: i * 3 + 2,
            amount_minor: 2500,
            response_hash: u64::from(i) * 31,
            purchase: 0,
            status: 201,
            attempts: 2,
            quantity: 1,
            item: 0,
            variant: 1,
            persona: Persona::CrashRestart,
            region: 1,
            op: Op::Resolve,
            code: Code::Reset,
            replayed: true,
            seq: 3,
            semantic_hash: u64::from(i) * 37,
            detail: 0,
            execution: u64::from(i) * 41,
        }
    }

    #[test]
    fn the_body_marker_is_the_pointers_field_unescaped() {
        let with = |marker: &str| Header {
            replay_marker: marker.into(),
            ..Header::for_tests()
        };
        assert_eq!(
            with("body:/replayed").body_marker().as_deref(),
            Some("replayed")
        );
        assert_eq!(
            with("body:/a~1b~0c").body_marker().as_deref(),
            Some("a/b~c")
        );
        assert_eq!(with("body:/x~01").body_marker().as_deref(), Some("x~1"));
        assert_eq!(with("header:Idempotent-Replayed").body_marker(), None);
        assert_eq!(with("none").body_marker(), None);
    }

    #[test]
    fn round_trips_through_a_file() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("h.bin");
        let h = History {
            header: Header {
                contract_examples: vec!["unparseable · HTTP 201 · key s1-0-0-0 · <html>".into()],
                ..Header::for_tests()
            },
            records: (0..100).map(record).collect(),
            cut: None,
        };
        h.write(&path).expect("write");
        let back = History::read(&path).expect("read");
        assert_eq!(back.header, h.header);
        assert_eq!(back.records, h.records);
        assert_eq!(back.cut, None, "a whole file has its end frame");
        // magic, header frame, one records frame, end frame
        assert_eq!(
            std::fs::metadata(&path).expect("meta").len() as usize,
            8 + 9
                + serde_json::to_vec(&h.header).expect("json").len()
                + 9
                + 100 * RECORD_BYTES
                + 9
                + 8
        );
    }

    #[test]
    fn corrupt_files_are_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("h.bin");
        std::fs::write(&path, b"hello").expect("write");
        assert!(matches!(
            History::read(&path),
            Err(HistoryError::Format { .. })
        ));
        assert!(matches!(
            History::read(&dir.path().join("absent")),
            Err(HistoryError::Io { .. })
        ));
    }
}
