//! The client history: every request an agent made, recorded compactly.
//!
//! Jepsen-style, each request ends `ok` (a definite answer: 2xx), `fail` (definitely not
//! executed: 4xx, a refused connection, RETRY_EXHAUSTED) or `info` (indeterminate: a
//! timeout, a reset, a crash). Invariants: records are fixed-size (a million agents fit in
//! tens of MiB); keys are not stored but derived from the header's prefix and the record's
//! (agent, purchase, variant), so the file is self-contained; nothing here knows the kernel.

use std::io::{self, BufReader, Read};
use std::path::Path;

use serde::{Deserialize, Serialize};
use thiserror::Error;

mod answer;
mod frames;

pub use answer::{StreamHash, Violation, answer_hash};
pub use frames::{Cut, Ending, Sink};

/// How a request ended, from the client's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum Kind {
    Ok = 0,
    Fail = 1,
    Info = 2,
}

/// What exactly the client saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[repr(u8)]
pub enum Code {
    Committed = 0,
    OutOfStock = 1,
    MandateRejected = 2,
    KeyReused = 3,
    RetryExhausted = 4,
    Unavailable = 5,
    BadRequest = 6,
    Internal = 7,
    Timeout = 8,
    Refused = 9,
    Reset = 10,
    /// An answer that breaks the contract (unreadable, a field missing, money as a float,
    /// a status that disagrees with the outcome…): the record's `detail` says which.
    Violation = 11,
    /// "A request with this key is still in progress": nothing executed by this request;
    /// retry the same key later (the contract's `in_flight_status`).
    InFlight = 12,
    /// A lookup by key found nothing stored under it (final reads only).
    Absent = 13,
    /// Declined, for a reason the contract does not read (its `answer.reason` is none).
    Declined = 14,
}

impl Code {
    pub const ALL: [Code; 15] = [
        Code::Committed,
        Code::OutOfStock,
        Code::MandateRejected,
        Code::KeyReused,
        Code::RetryExhausted,
        Code::Unavailable,
        Code::BadRequest,
        Code::Internal,
        Code::Timeout,
        Code::Refused,
        Code::Reset,
        Code::Violation,
        Code::InFlight,
        Code::Absent,
        Code::Declined,
    ];

    pub fn kind(self) -> Kind {
        match self {
            Code::Committed | Code::OutOfStock | Code::MandateRejected | Code::Declined => Kind::Ok,
            Code::KeyReused
            | Code::RetryExhausted
            | Code::Unavailable
            | Code::BadRequest
            | Code::Refused
            | Code::InFlight
            | Code::Absent => Kind::Fail,
            // A violation tells the client nothing it can trust: indeterminate, resolved
            // (or not) by a later replay, and never retried as a transport failure.
            Code::Internal | Code::Timeout | Code::Reset | Code::Violation => Kind::Info,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Code::Committed => "COMMITTED",
            Code::OutOfStock => "OUT_OF_STOCK",
            Code::MandateRejected => "MANDATE_REJECTED",
            Code::KeyReused => "KEY_REUSED",
            Code::RetryExhausted => "RETRY_EXHAUSTED",
            Code::Unavailable => "UNAVAILABLE",
            Code::BadRequest => "BAD_REQUEST",
            Code::Internal => "INTERNAL",
            Code::Timeout => "TIMEOUT",
            Code::Refused => "CONNECTION_REFUSED",
            Code::Reset => "CONNECTION_RESET",
            Code::Violation => "CONTRACT_VIOLATION",
            Code::InFlight => "IN_FLIGHT",
            Code::Absent => "ABSENT",
            Code::Declined => "DECLINED",
        }
    }

    /// True when the client should retry the same key.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            Code::RetryExhausted
                | Code::Unavailable
                | Code::Internal
                | Code::Timeout
                | Code::Refused
                | Code::Reset
                | Code::InFlight
        )
    }

    /// True when the service did not serve the request at all (down, cut, silent, failing):
    /// what an outage looks like from a client. Contention (`RETRY_EXHAUSTED`) and refusals
    /// of the request itself are answers, not outages.
    pub fn is_outage(self) -> bool {
        matches!(
            self,
            Code::Unavailable | Code::Internal | Code::Timeout | Code::Refused | Code::Reset
        )
    }

    fn from_u8(v: u8) -> Option<Code> {
        Code::ALL.get(usize::from(v)).copied()
    }
}

/// Who sent a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Persona {
    WellBehaved = 0,
    DoubleSubmit = 1,
    CrashRestart = 2,
    KeyRotator = 3,
    PayloadMutator = 4,
    /// The conformance probe's own requests, before the agents start.
    Probe = 5,
}

impl Persona {
    /// The personas a scenario's `mix` weighs, in its order (the probe is not one).
    pub const ALL: [Persona; 5] = [
        Persona::WellBehaved,
        Persona::DoubleSubmit,
        Persona::CrashRestart,
        Persona::KeyRotator,
        Persona::PayloadMutator,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Persona::WellBehaved => "well_behaved",
            Persona::DoubleSubmit => "double_submit",
            Persona::CrashRestart => "crash_restart",
            Persona::KeyRotator => "key_rotator",
            Persona::PayloadMutator => "payload_mutator",
            Persona::Probe => "probe",
        }
    }

    fn from_u8(v: u8) -> Option<Persona> {
        match v {
            5 => Some(Persona::Probe),
            v => Persona::ALL.get(usize::from(v)).copied(),
        }
    }
}

/// The HTTP status classes a run counts, by name (`network`: no answer at all; the
/// in-process kernel's answers carry the statuses its server would send).
pub const STATUS_CLASSES: [&str; 20] = [
    "network",
    "200",
    "201",
    "2xx_other",
    "400",
    "401",
    "403",
    "404",
    "409",
    "413",
    "415",
    "422",
    "429",
    "4xx_other",
    "500",
    "502",
    "503",
    "504",
    "5xx_other",
    "other",
];

/// The index into `STATUS_CLASSES` of a request's status (0: no answer).
pub fn status_class(status: u16) -> usize {
    match status {
        0 => 0,
        200 => 1,
        201 => 2,
        202..=299 => 3,
        400 => 4,
        401 => 5,
        403 => 6,
        404 => 7,
        409 => 8,
        413 => 9,
        415 => 10,
        422 => 11,
        429 => 12,
        402..=499 => 13,
        500 => 14,
        502 => 15,
        503 => 16,
        504 => 17,
        501..=599 => 18,
        _ => 19,
    }
}

/// Why a request was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum Op {
    /// An agent's own request.
    Commit = 0,
    /// The end-of-run replay that resolves an indeterminate key.
    Resolve = 1,
    /// A re-read after the resolution (`audit.final_reads`): a replay of the key's first
    /// payload, or the contract's lookup by key.
    FinalRead = 2,
}

/// One request. `amount_minor` and `quantity` are what was sent; `response_hash` is
/// `answer_hash` of the answer's bytes (the value of the contract's body replay marker
/// masked) and `semantic_hash` a hash of its JSON values (keys sorted, layout ignored, the
/// marker left out); `execution` a hash of the execution id the answer names (the same id
/// twice is one execution); all three 0 when there was no business answer. `replayed`:
/// the server marked the answer a replay (by the contract's marker). `detail` is the
/// `Violation` kind of a `Code::Violation` record, 0 otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pub agent: u32,
    pub mandate: u32,
    pub invoke_ms: u32,
    pub complete_ms: u32,
    pub amount_minor: i64,
    pub response_hash: u64,
    pub semantic_hash: u64,
    pub purchase: u16,
    pub status: u16,
    pub attempts: u16,
    pub quantity: u16,
    pub item: u16,
    pub variant: u8,
    pub persona: Persona,
    pub region: u8,
    pub op: Op,
    pub code: Code,
    pub replayed: bool,
    /// Order of the request within its purchase (saturating): the first request's payload
    /// is the purchase's, whatever the clock's resolution says.
    pub seq: u8,
    pub detail: u8,
    pub execution: u64,
}

/// Bytes per record on disk.
pub const RECORD_BYTES: usize = 66;

impl Record {
    pub fn kind(&self) -> Kind {
        self.code.kind()
    }

    /// The record's bytes as the history file holds them.
    pub fn encode(&self, out: &mut [u8; RECORD_BYTES]) {
        out[0..4].copy_from_slice(&self.agent.to_le_bytes());
        out[4..8].copy_from_slice(&self.mandate.to_le_bytes());
        out[8..12].copy_from_slice(&self.invoke_ms.to_le_bytes());
        out[12..16].copy_from_slice(&self.complete_ms.to_le_bytes());
        out[16..24].copy_from_slice(&self.amount_minor.to_le_bytes());
        out[24..32].copy_from_slice(&self.response_hash.to_le_bytes());
        out[32..34].copy_from_slice(&self.purchase.to_le_bytes());
        out[34..36].copy_from_slice(&self.status.to_le_bytes());
        out[36..38].copy_from_slice(&self.attempts.to_le_bytes());
        out[38..40].copy_from_slice(&self.quantity.to_le_bytes());
        out[40..42].copy_from_slice(&self.item.to_le_bytes());
        out[42] = self.variant;
        out[43] = self.persona as u8;
        out[44] = self.region;
        out[45] = self.op as u8;
        out[46] = self.code as u8;
        out[47] = u8::from(self.replayed);
        out[48] = self.seq;
        out[49..57].copy_from_slice(&self.semantic_hash.to_le_bytes());
        out[57] = self.detail;
        out[58..66].copy_from_slice(&self.execution.to_le_bytes());
    }

    /// A record from its bytes (`None`: a byte out of its range).
    pub fn decode(b: &[u8; RECORD_BYTES]) -> Option<Record> {
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(a)
        };
        Some(Record {
            agent: u32_at(0),
            mandate: u32_at(4),
            invoke_ms: u32_at(8),
            complete_ms: u32_at(12),
            amount_minor: u64_at(16) as i64,
            response_hash: u64_at(24),
            purchase: u16_at(32),
            status: u16_at(34),
            attempts: u16_at(36),
            quantity: u16_at(38),
            item: u16_at(40),
            variant: b[42],
            persona: Persona::from_u8(b[43])?,
            region: b[44],
            op: match b[45] {
                0 => Op::Commit,
                1 => Op::Resolve,
                2 => Op::FinalRead,
                _ => return None,
            },
            code: Code::from_u8(b[46])?,
            replayed: b[47] != 0,
            seq: b[48],
            semantic_hash: u64_at(49),
            detail: b[57],
            execution: u64_at(58),
        })
    }
}

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

/// The agent id string a request carries.
pub fn agent_name(agent: u32) -> String {
    let mut b = itoa::Buffer::new();
    let digits = b.format(agent);
    let mut name = String::with_capacity(6 + digits.len());
    name.push_str("agent-");
    name.push_str(digits);
    name
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_one_class() {
        let name = |status| STATUS_CLASSES[status_class(status)];
        assert_eq!(name(0), "network");
        assert_eq!(name(201), "201");
        assert_eq!(name(204), "2xx_other");
        assert_eq!(name(401), "401");
        assert_eq!(name(418), "4xx_other");
        assert_eq!(name(429), "429");
        assert_eq!(name(503), "503");
        assert_eq!(name(599), "5xx_other");
        assert_eq!(name(302), "other");
    }

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

    #[test]
    fn codes_classify() {
        assert_eq!(Code::Committed.kind(), Kind::Ok);
        assert_eq!(Code::KeyReused.kind(), Kind::Fail);
        assert_eq!(Code::Timeout.kind(), Kind::Info);
        assert!(Code::Reset.is_transient());
        assert!(!Code::BadRequest.is_transient());
    }
}
