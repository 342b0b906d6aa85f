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
        debug_assert!(s.json.ends_with(FRESH_SUFFIX));
        s
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
        let mut s: Snapshot =
            serde_json::from_str(stored).map_err(|e| CorruptSnapshot(e.to_string()))?;
        s.json = stored.to_string();
        Ok(s)
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

    #[test]
    fn replay_differs_only_in_replayed() {
        let s = Snapshot::fresh(
            Outcome::Committed,
            Uuid::from_u128(1),
            Some(Uuid::from_u128(2)),
            Some(Uuid::from_u128(3)),
            None,
            2500,
            "USD",
            3,
        );
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
