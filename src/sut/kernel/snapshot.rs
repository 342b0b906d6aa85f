//! The response snapshot: stored once per key, replayed byte for byte.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Outcome {
    Committed,
    Declined,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Committed => "COMMITTED",
            Outcome::Declined => "DECLINED",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FailureCode {
    OutOfStock,
    MandateRejected,
}

impl FailureCode {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureCode::OutOfStock => "OUT_OF_STOCK",
            FailureCode::MandateRejected => "MANDATE_REJECTED",
        }
    }
}

/// What `commit` answers. `json` holds the exact wire bytes; for a replay they are the
/// stored bytes with only `"replayed":false` turned into `"replayed":true`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Snapshot {
    pub outcome: Outcome,
    pub intent_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger_txn_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chosen_bucket_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_code: Option<FailureCode>,
    pub amount_minor: i64,
    pub currency: String,
    pub attempts: u32,
    /// Always the last field, so a replay differs from the original only in this suffix.
    pub replayed: bool,
    #[serde(skip)]
    pub json: String,
}

const FRESH_SUFFIX: &str = "\"replayed\":false}";
const REPLAY_SUFFIX: &str = "\"replayed\":true}";

/// `text` split around the first `at` (an ASCII byte), which is dropped.
fn cut(text: &str, at: u8) -> Option<(&str, &str)> {
    let i = memchr::memchr(at, text.as_bytes())?;
    Some((&text[..i], &text[i + 1..]))
}

/// Why stored snapshot bytes could not be served.
#[derive(Debug, thiserror::Error)]
#[error("stored snapshot is corrupt: {0}")]
pub struct CorruptSnapshot(pub String);

impl Snapshot {
    /// A fresh snapshot with its canonical bytes (`replayed: false`).
    #[allow(clippy::too_many_arguments)]
    pub fn fresh(
        outcome: Outcome,
        intent_id: Uuid,
        ledger_txn_id: Option<Uuid>,
        chosen_bucket_id: Option<Uuid>,
        failure_code: Option<FailureCode>,
        amount_minor: i64,
        currency: &str,
        attempts: u32,
    ) -> Snapshot {
        // What every snapshot promises its readers (and the auditor checks of stored ones):
        // a commit names its ledger transaction and bucket, a decline its reason; money
        // is positive; one run at least.
        assert_eq!(
            outcome == Outcome::Committed,
            ledger_txn_id.is_some() && chosen_bucket_id.is_some() && failure_code.is_none(),
            "a {outcome:?} snapshot with ledger {ledger_txn_id:?}, bucket {chosen_bucket_id:?}, failure {failure_code:?}"
        );
        assert!(amount_minor > 0, "a snapshot of {amount_minor} minor units");
        assert!(attempts >= 1, "a snapshot of {attempts} attempts");
        let mut s = Snapshot {
            outcome,
            intent_id,
            ledger_txn_id,
            chosen_bucket_id,
            failure_code,
            amount_minor,
            currency: currency.to_string(),
            attempts,
            replayed: false,
            json: String::new(),
        };
        // Serialising a struct of plain fields cannot fail.
        s.json = serde_json::to_string(&s).unwrap_or_default();
        // A replay swaps this suffix (`replay_of`): it must stand last.
        assert!(s.json.ends_with(FRESH_SUFFIX), "{}", s.json);
        s
    }

    /// The bytes of a fresh COMMITTED snapshot before and after the value of its
    /// `chosenBucketId`, for a statement that picks the bucket and stores the snapshot
    /// at once: `before + bucket + after` is `fresh(Committed, …, Some(bucket), …).json`
    /// for every bucket, written as a hyphenated lower-case UUID (PostgreSQL's
    /// `uuid::text`, and `Uuid`'s `Display`).
    pub fn committed_around_bucket(
        intent_id: Uuid,
        ledger_txn_id: Uuid,
        amount_minor: i64,
        currency: &str,
        attempts: u32,
    ) -> (String, String) {
        let s = Snapshot::fresh(
            Outcome::Committed,
            intent_id,
            Some(ledger_txn_id),
            Some(Uuid::nil()),
            None,
            amount_minor,
            currency,
            attempts,
        );
        const KEY: &str = "\"chosenBucketId\":\"";
        let at = s.json.find(KEY).map(|i| i + KEY.len());
        // `fresh` always writes the bucket of a commit, as a 36-character string.
        let at = at.unwrap_or_else(|| unreachable!("{}", s.json));
        let (before, rest) = s.json.split_at(at);
        let after = &rest[Uuid::nil().hyphenated().to_string().len()..];
        (before.to_string(), after.to_string())
    }

    /// The snapshot a replay serves, from the bytes stored with the intent.
    pub fn replay_of(stored: &str) -> Result<Snapshot, CorruptSnapshot> {
        let Some(prefix) = stored.strip_suffix(FRESH_SUFFIX) else {
            return Err(CorruptSnapshot("does not end in \"replayed\":false".into()));
        };
        let mut s: Snapshot =
            serde_json::from_str(stored).map_err(|e| CorruptSnapshot(e.to_string()))?;
        s.replayed = true;
        s.json = format!("{prefix}{REPLAY_SUFFIX}");
        Ok(s)
    }

    /// The stored bytes as they are (used by lookups, which are not replays).
    pub fn stored(stored: &str) -> Result<Snapshot, CorruptSnapshot> {
        let mut s: Snapshot = match Snapshot::flat(stored) {
            Some(s) => s,
            None => serde_json::from_str(stored).map_err(|e| CorruptSnapshot(e.to_string()))?,
        };
        s.json = stored.to_string();
        Ok(s)
    }

    /// A quick read of the compact form the kernel writes (one flat object, no
    /// whitespace, no escapes), which an HTTP client reads once per request. `None` for
    /// anything else, which `serde_json` then reads (or rejects) in full.
    fn flat(text: &str) -> Option<Snapshot> {
        if memchr::memchr(b'\\', text.as_bytes()).is_some() {
            return None;
        }
        let mut rest = text.strip_prefix('{')?.strip_suffix('}')?;
        let mut s = Snapshot {
            outcome: Outcome::Declined,
            intent_id: Uuid::nil(),
            ledger_txn_id: None,
            chosen_bucket_id: None,
            failure_code: None,
            amount_minor: 0,
            currency: String::new(),
            attempts: 0,
            replayed: false,
            json: String::new(),
        };
        let mut seen = 0u16;
        while !rest.is_empty() {
            let (key, after) = cut(rest.strip_prefix('"')?, b'"')?;
            let after = after.strip_prefix(':')?;
            let (value, next) = match after.strip_prefix('"') {
                Some(quoted) => cut(quoted, b'"')?,
                None => {
                    after.split_at(memchr::memchr(b',', after.as_bytes()).unwrap_or(after.len()))
                }
            };
            rest = match next.strip_prefix(',') {
                Some(r) if !r.is_empty() => r,
                Some(_) => return None,
                None if next.is_empty() => next,
                None => return None,
            };
            let bit = match key {
                "outcome" => {
                    s.outcome = match value {
                        "COMMITTED" => Outcome::Committed,
                        "DECLINED" => Outcome::Declined,
                        _ => return None,
                    };
                    1
                }
                "intentId" => {
                    s.intent_id = Uuid::try_parse(value).ok()?;
                    2
                }
                "ledgerTxnId" => {
                    s.ledger_txn_id = Some(Uuid::try_parse(value).ok()?);
                    4
                }
                "chosenBucketId" => {
                    s.chosen_bucket_id = Some(Uuid::try_parse(value).ok()?);
                    8
                }
                "failureCode" => {
                    s.failure_code = Some(match value {
                        "OUT_OF_STOCK" => FailureCode::OutOfStock,
                        "MANDATE_REJECTED" => FailureCode::MandateRejected,
                        _ => return None,
                    });
                    16
                }
                "amountMinor" => {
                    s.amount_minor = value.parse().ok()?;
                    32
                }
                "currency" => {
                    s.currency = value.to_string();
                    64
                }
                "attempts" => {
                    s.attempts = value.parse().ok()?;
                    128
                }
                "replayed" => {
                    s.replayed = match value {
                        "true" => true,
                        "false" => false,
                        _ => return None,
                    };
                    256
                }
                _ => return None,
            };
            if seen & bit != 0 {
                return None;
            }
            seen |= bit;
        }
        // Every required field, once.
        (seen & (1 | 2 | 32 | 64 | 128 | 256) == (1 | 2 | 32 | 64 | 128 | 256)).then_some(s)
    }

    /// HTTP status of this snapshot on the wire.
    pub fn status(&self) -> u16 {
        match self.outcome {
            Outcome::Committed => 201,
            Outcome::Declined => 200,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A committed snapshot with every optional id.
    fn committed() -> Snapshot {
        Snapshot::fresh(
            Outcome::Committed,
            Uuid::from_u128(1),
            Some(Uuid::from_u128(2)),
            Some(Uuid::from_u128(3)),
            None,
            2500,
            "USD",
            3,
        )
    }

    #[test]
    #[should_panic(expected = "a Committed snapshot")]
    fn a_commit_without_its_ledger_id_is_never_written() {
        Snapshot::fresh(
            Outcome::Committed,
            Uuid::from_u128(1),
            None,
            Some(Uuid::from_u128(3)),
            None,
            2500,
            "USD",
            1,
        );
    }

    #[test]
    #[should_panic(expected = "minor units")]
    fn a_snapshot_of_no_money_is_never_written() {
        Snapshot::fresh(
            Outcome::Declined,
            Uuid::from_u128(1),
            None,
            None,
            Some(FailureCode::OutOfStock),
            0,
            "USD",
            1,
        );
    }

    #[test]
    fn the_quick_read_agrees_with_serde_and_leaves_the_rest_to_it() {
        let committed = committed();
        let declined = Snapshot::fresh(
            Outcome::Declined,
            Uuid::from_u128(4),
            None,
            None,
            Some(FailureCode::MandateRejected),
            100,
            "EUR",
            1,
        );
        for s in [&committed, &declined] {
            let quick = Snapshot::flat(&s.json).expect("compact form");
            let full: Snapshot = serde_json::from_str(&s.json).expect("serde");
            assert_eq!(quick, full);
            let replay = Snapshot::replay_of(&s.json).expect("replay");
            assert_eq!(Snapshot::flat(&replay.json).map(|r| r.replayed), Some(true));
        }
        // Not the compact form, or not a snapshot: the quick read declines; serde decides.
        let spaced = committed.json.replace(",", ", ");
        assert!(Snapshot::flat(&spaced).is_none());
        assert_eq!(
            Snapshot::stored(&spaced).expect("serde reads it").attempts,
            3
        );
        for bad in [
            committed.json.replace("\"attempts\":3,", ""),
            committed.json.replace("attempts", "tries"),
            committed
                .json
                .replace("\"replayed\":false", "\"replayed\":0"),
            committed.json.replace("COMMITTED", "MAYBE"),
            committed
                .json
                .replace("\"amountMinor\":2500", "\"amountMinor\":25.5"),
            committed.json.replace("}", ",\"attempts\":4}"),
            format!("{}x", committed.json),
            String::new(),
        ] {
            assert!(Snapshot::flat(&bad).is_none(), "{bad}");
            assert!(Snapshot::stored(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn replay_differs_only_in_replayed() {
        let s = committed();
        assert!(
            s.json
                .starts_with("{\"outcome\":\"COMMITTED\",\"intentId\":")
        );
        let r = Snapshot::replay_of(&s.json).expect("replay");
        assert!(r.replayed);
        assert_eq!(
            r.json.replace("\"replayed\":true", "\"replayed\":false"),
            s.json
        );
        assert_eq!(
            Snapshot {
                replayed: false,
                json: s.json.clone(),
                ..r
            },
            s
        );
        assert!(Snapshot::replay_of("{}").is_err());
    }

    #[test]
    fn a_commit_splits_around_its_bucket() {
        for bucket in [
            Uuid::nil(),
            Uuid::from_u128(u128::MAX),
            Uuid::from_u128(0xabc),
        ] {
            let (before, after) = Snapshot::committed_around_bucket(
                Uuid::from_u128(1),
                Uuid::from_u128(2),
                2500,
                "USD",
                3,
            );
            let whole = Snapshot::fresh(
                Outcome::Committed,
                Uuid::from_u128(1),
                Some(Uuid::from_u128(2)),
                Some(bucket),
                None,
                2500,
                "USD",
                3,
            );
            assert_eq!(format!("{before}{bucket}{after}"), whole.json);
            assert!(before.ends_with("\"chosenBucketId\":\""), "{before}");
            assert!(after.starts_with('"'), "{after}");
        }
    }

    #[test]
    fn declined_has_no_ledger() {
        let s = Snapshot::fresh(
            Outcome::Declined,
            Uuid::from_u128(1),
            None,
            None,
            Some(FailureCode::OutOfStock),
            2500,
            "USD",
            1,
        );
        assert!(!s.json.contains("ledgerTxnId"));
        assert!(s.json.contains("\"failureCode\":\"OUT_OF_STOCK\""));
        assert_eq!(s.status(), 200);
    }
}
