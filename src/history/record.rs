//! One request as the history keeps it: `Record`, a fixed `RECORD_BYTES` on disk (encoded
//! and decoded here, nowhere else), and the vocabularies its bytes hold: how the request
//! ended (`Kind`), what exactly the client saw (`Code`), who sent it (`Persona`), why
//! (`Op`), and the HTTP status classes a run counts (`STATUS_CLASSES`).
//!
//! Invariants: a record is `RECORD_BYTES` bytes whatever its values; each enum is
//! `repr(u8)` and decodes only from a byte it encodes to (a byte out of range makes the
//! record corrupt, never a default); every `Code` has one `Kind`.

use serde::{Deserialize, Serialize};

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

#[cfg(test)]
impl Record {
    /// For unit tests: a committed request of agent 0 as an agent first sends it, with no
    /// answer hashes; a test sets the fields it is about (`Record { …, ..for_tests() }`).
    pub(crate) fn for_tests() -> Record {
        Record {
            agent: 0,
            mandate: 0,
            invoke_ms: 0,
            complete_ms: 1,
            amount_minor: 2500,
            response_hash: 0,
            semantic_hash: 0,
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

    #[test]
    fn codes_classify() {
        assert_eq!(Code::Committed.kind(), Kind::Ok);
        assert_eq!(Code::KeyReused.kind(), Kind::Fail);
        assert_eq!(Code::Timeout.kind(), Kind::Info);
        assert!(Code::Reset.is_transient());
        assert!(!Code::BadRequest.is_transient());
    }

    /// A history stores codes and personas as their discriminants and reads them back
    /// through `ALL`: the lists must stay in discriminant order, or old files decode wrong.
    #[test]
    fn codes_and_personas_read_back_as_written() {
        for (i, code) in Code::ALL.iter().enumerate() {
            assert_eq!(*code as usize, i, "{code:?}");
            assert_eq!(Code::from_u8(*code as u8), Some(*code));
        }
        assert_eq!(Code::from_u8(Code::ALL.len() as u8), None);
        for persona in Persona::ALL.iter().chain([&Persona::Probe]) {
            assert_eq!(
                Persona::from_u8(*persona as u8),
                Some(*persona),
                "{persona:?}"
            );
        }
        assert_eq!(Persona::from_u8(6), None);
    }
}
