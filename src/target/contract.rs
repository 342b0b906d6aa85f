//! Answers read by the contract, not by the way swarm's own server writes bytes.
//!
//! A server swarm did not write may space its JSON as it likes, put fields in any order,
//! add fields, and use any non-empty string as an id. What it may not do: answer a body
//! that is not a JSON object, leave out a required field, write money as a float, disagree
//! with itself (201 with DECLINED), or answer another amount or currency than was asked.
//! Those answers become `Reply::Violation`, recorded as what they are and never retried as
//! if the network had failed.
//!
//! Invariants: every business answer carries two hashes: `answer_hash` (the bytes with the
//! value of `replayed` masked: a replay must match its original exactly) and
//! `semantic_hash` (the JSON values with keys sorted and `replayed` left out: a layout-only
//! difference is told apart from a different answer). Refusals are read from the status
//! and the error body's `error.code`, never from a substring of the text.

use serde_json::{Map, Value};

use crate::history::{Code, Violation, answer_hash};

/// A business answer: COMMITTED, or DECLINED with its reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// `Committed`, `OutOfStock` or `MandateRejected`.
    pub code: Code,
    pub status: u16,
    pub attempts: u32,
    pub replayed: bool,
    pub answer_hash: u64,
    pub semantic_hash: u64,
}

/// A definite refusal: the request changed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// `KeyReused`, `RetryExhausted`, `Unavailable`, `BadRequest` or `Internal`.
    pub code: Code,
    pub status: u16,
    /// Runs the server made before giving up (RETRY_EXHAUSTED), when it says.
    pub attempts: u32,
}

/// An answer that broke the contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    pub violation: Violation,
    pub status: u16,
    /// What was wrong and the start of the body, bounded.
    pub excerpt: String,
}

/// What was asked, to check the answer against.
#[derive(Debug, Clone, Copy)]
pub struct Asked<'a> {
    pub amount_minor: i64,
    pub currency: &'a str,
}

/// Longest body excerpt kept with a violation.
pub const EXCERPT_BYTES: usize = 160;

/// Read one answer to `POST /v1/purchases/commit` (or a lookup that returns a snapshot).
pub fn read(status: u16, body: &[u8], asked: Asked<'_>) -> Result<Reading, Broken> {
    match status {
        200 | 201 => read_snapshot(Some(status), body, asked).map(Reading::Answer),
        409 => Ok(Reading::Refused(Refusal {
            code: Code::KeyReused,
            status,
            attempts: 0,
        })),
        503 => {
            let (code, attempts) = error_code(body);
            Ok(Reading::Refused(Refusal {
                code: if code.as_deref() == Some("RETRY_EXHAUSTED") {
                    Code::RetryExhausted
                } else {
                    Code::Unavailable
                },
                status,
                attempts,
            }))
        }
        400..=499 => Ok(Reading::Refused(Refusal {
            code: Code::BadRequest,
            status,
            attempts: 0,
        })),
        _ => Ok(Reading::Refused(Refusal {
            code: Code::Internal,
            status,
            attempts: 0,
        })),
    }
}

/// Read a stored snapshot a lookup returned (`GET /orders/{id}`): its 200 says the order
/// was found, not what its outcome was, so the status is the one the outcome implies.
pub fn read_stored(body: &[u8], asked: Asked<'_>) -> Result<Answer, Broken> {
    read_snapshot(None, body, asked)
}

/// A readable answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    Answer(Answer),
    Refused(Refusal),
}

fn broken(violation: Violation, status: u16, why: &str, body: &[u8]) -> Broken {
    Broken {
        violation,
        status,
        excerpt: format!("{why}: {}", excerpt(body)),
    }
}

/// The start of `body` as text, cut at a character boundary and marked when cut.
pub fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(EXCERPT_BYTES)]);
    let text: String = text.chars().filter(|c| !c.is_control()).collect();
    if body.len() > EXCERPT_BYTES {
        format!("{text}…")
    } else {
        text
    }
}

/// `status`: the answer's own status, checked against the outcome; `None` for a lookup.
fn read_snapshot(answered: Option<u16>, body: &[u8], asked: Asked<'_>) -> Result<Answer, Broken> {
    let status = answered.unwrap_or(200);
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        broken(
            Violation::Unparseable,
            status,
            &format!("not JSON ({e})"),
            body,
        )
    })?;
    let Value::Object(obj) = value else {
        return Err(broken(
            Violation::Unparseable,
            status,
            "not a JSON object",
            body,
        ));
    };
    let missing = |what: &str| broken(Violation::MissingField, status, what, body);
    let text = |name: &str| -> Result<&str, Broken> {
        match obj.get(name) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s),
            Some(_) => Err(missing(&format!("`{name}` is not a non-empty string"))),
            None => Err(missing(&format!("`{name}` is missing"))),
        }
    };
    let integer = |name: &str| -> Result<i64, Broken> {
        match obj.get(name) {
            Some(Value::Number(n)) => n.as_i64().ok_or_else(|| {
                broken(
                    Violation::FloatMoney,
                    status,
                    &format!("`{name}` is {n}, not an integer"),
                    body,
                )
            }),
            Some(_) => Err(missing(&format!("`{name}` is not a number"))),
            None => Err(missing(&format!("`{name}` is missing"))),
        }
    };
    let outcome = text("outcome")?;
    text("intentId")?;
    let amount_minor = integer("amountMinor")?;
    let currency = text("currency")?;
    let attempts = match obj.get("attempts") {
        Some(Value::Number(n)) => n
            .as_u64()
            .filter(|a| *a >= 1)
            .ok_or_else(|| missing(&format!("`attempts` is {n}, not a count >= 1")))?,
        Some(_) => return Err(missing("`attempts` is not a number")),
        None => return Err(missing("`attempts` is missing")),
    };
    let replayed = match obj.get("replayed") {
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(missing("`replayed` is not a boolean")),
        None => return Err(missing("`replayed` is missing")),
    };
    let code = match outcome {
        "COMMITTED" => {
            text("ledgerTxnId")?;
            text("chosenBucketId")?;
            Code::Committed
        }
        "DECLINED" => match text("failureCode")? {
            "OUT_OF_STOCK" => Code::OutOfStock,
            "MANDATE_REJECTED" => Code::MandateRejected,
            other => {
                return Err(missing(&format!(
                    "`failureCode` `{other}` is not one the contract knows"
                )));
            }
        },
        other => {
            return Err(missing(&format!(
                "`outcome` `{other}` is not COMMITTED or DECLINED"
            )));
        }
    };
    let expected_status = if code == Code::Committed { 201 } else { 200 };
    let status = answered.unwrap_or(expected_status);
    if status != expected_status {
        return Err(broken(
            Violation::StatusMismatch,
            status,
            &format!("HTTP {status} with outcome {outcome} (the contract says {expected_status})"),
            body,
        ));
    }
    if amount_minor != asked.amount_minor || currency != asked.currency {
        return Err(broken(
            Violation::PayloadMismatch,
            status,
            &format!(
                "answered {amount_minor} {currency} for {} {}",
                asked.amount_minor, asked.currency
            ),
            body,
        ));
    }
    Ok(Answer {
        code,
        status,
        attempts: attempts.min(u64::from(u32::MAX)) as u32,
        replayed,
        answer_hash: answer_hash(body),
        semantic_hash: semantic_hash(obj),
    })
}

/// A hash of the answer's values: keys sorted at every depth, no layout, `replayed` left out.
fn semantic_hash(mut obj: Map<String, Value>) -> u64 {
    obj.remove("replayed");
    let mut canonical = String::with_capacity(256);
    write_canonical(&Value::Object(obj), &mut canonical);
    answer_hash(canonical.as_bytes())
}

/// `value` as compact JSON with object keys in sorted order (whatever order the map keeps).
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// `error.code` of an error body and, for RETRY_EXHAUSTED, `error.attempts` when given.
fn error_code(body: &[u8]) -> (Option<String>, u32) {
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(body) else {
        return (None, 0);
    };
    let error = obj.get("error");
    let code = error
        .and_then(|e| e.get("code"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let attempts = error
        .and_then(|e| e.get("attempts"))
        .and_then(Value::as_u64)
        .unwrap_or(0)
        .min(u64::from(u32::MAX)) as u32;
    (code, attempts)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ASKED: Asked<'static> = Asked {
        amount_minor: 2500,
        currency: "USD",
    };

    fn committed(replayed: bool) -> String {
        format!(
            "{{\"outcome\":\"COMMITTED\",\"intentId\":\"i-1\",\"ledgerTxnId\":\"l-1\",\
             \"chosenBucketId\":\"bucket-7\",\"amountMinor\":2500,\"currency\":\"USD\",\
             \"attempts\":1,\"replayed\":{replayed}}}"
        )
    }

    fn answer(status: u16, body: &str) -> Answer {
        match read(status, body.as_bytes(), ASKED) {
            Ok(Reading::Answer(a)) => a,
            other => panic!("{other:?} for {body}"),
        }
    }

    fn violation(status: u16, body: &str) -> Violation {
        match read(status, body.as_bytes(), ASKED) {
            Err(b) => b.violation,
            other => panic!("{other:?} for {body}"),
        }
    }

    #[test]
    fn any_layout_and_order_reads_the_same() {
        let compact = answer(201, &committed(false));
        let pretty = answer(
            201,
            "{\n  \"replayed\": false,\n  \"currency\": \"USD\",\n  \"amountMinor\": 2500,\n  \"outcome\": \"COMMITTED\",\n  \"intentId\": \"i-1\",\n  \"ledgerTxnId\": \"l-1\",\n  \"chosenBucketId\": \"bucket-7\",\n  \"attempts\": 1,\n  \"server\": \"extra fields are tolerated\"\n}",
        );
        assert_eq!(compact.code, Code::Committed);
        assert_eq!(pretty.code, Code::Committed);
        assert_ne!(compact.answer_hash, pretty.answer_hash, "bytes differ");
        let again = answer(201, &committed(true));
        assert!(again.replayed);
        assert_eq!(compact.answer_hash, again.answer_hash, "replayed is masked");
        assert_eq!(compact.semantic_hash, again.semantic_hash);
    }

    #[test]
    fn every_broken_answer_is_named() {
        assert_eq!(violation(201, "<html>oops</html>"), Violation::Unparseable);
        assert_eq!(violation(201, "[1,2]"), Violation::Unparseable);
        assert_eq!(
            violation(
                201,
                &committed(false).replace(",\"ledgerTxnId\":\"l-1\"", "")
            ),
            Violation::MissingField
        );
        assert_eq!(
            violation(
                201,
                &committed(false).replace("\"intentId\":\"i-1\"", "\"intentId\":\"\"")
            ),
            Violation::MissingField
        );
        assert_eq!(
            violation(201, &committed(false).replace("2500", "2500.0")),
            Violation::FloatMoney
        );
        assert_eq!(violation(200, &committed(false)), Violation::StatusMismatch);
        let declined = "{\"outcome\":\"DECLINED\",\"intentId\":\"i\",\"failureCode\":\"OUT_OF_STOCK\",\
                        \"amountMinor\":2500,\"currency\":\"USD\",\"attempts\":1,\"replayed\":false}";
        assert_eq!(answer(200, declined).code, Code::OutOfStock);
        assert_eq!(violation(201, declined), Violation::StatusMismatch);
        assert_eq!(
            violation(201, &committed(false).replace("USD", "EUR")),
            Violation::PayloadMismatch
        );
    }

    #[test]
    fn refusals_are_read_from_the_status_and_the_error_code() {
        let refused = |status, body: &str| match read(status, body.as_bytes(), ASKED) {
            Ok(Reading::Refused(r)) => r.code,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            refused(
                503,
                "{\"error\":{\"code\":\"RETRY_EXHAUSTED\",\"attempts\":8}}"
            ),
            Code::RetryExhausted
        );
        // The text alone proves nothing: only the error's code does.
        assert_eq!(refused(503, "RETRY_EXHAUSTED, maybe"), Code::Unavailable);
        assert_eq!(refused(409, ""), Code::KeyReused);
        assert_eq!(refused(422, "{}"), Code::BadRequest);
        assert_eq!(refused(401, "no"), Code::BadRequest);
        assert_eq!(refused(500, "boom"), Code::Internal);
    }

    #[test]
    fn excerpts_are_bounded() {
        let long = "x".repeat(10_000);
        let e = excerpt(long.as_bytes());
        assert!(e.len() <= EXCERPT_BYTES + 4, "{}", e.len());
        assert!(e.ends_with('…'));
    }
}
