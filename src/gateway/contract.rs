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

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::Value;
use serde_json::value::RawValue;

use crate::history::{Code, StreamHash, Violation, answer_hash};

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

/// What a client learns from one request, in the contract's terms.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A definite business answer (COMMITTED or DECLINED, fresh or replayed).
    Answer(Answer),
    /// A definite refusal (4xx, 503): nothing changed.
    Refused(Refusal),
    /// No answer: the transport failed (`Timeout`, `Refused`, `Reset`).
    Transport(Code),
    /// An answer that breaks the contract.
    Violation(Broken),
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
    // The fast path borrows the body: a sorted map of field names to their raw JSON.
    match serde_json::from_slice::<Fields<'_>>(body) {
        Ok(fields) => judge(answered, body, &fields, asked),
        Err(_) => {
            // Not an object of plain keys: an object whose keys need unescaping is read
            // again from its compact form; anything else is unparseable.
            let value: Value = serde_json::from_slice(body).map_err(|e| {
                broken(
                    Violation::Unparseable,
                    status,
                    &format!("not JSON ({e})"),
                    body,
                )
            })?;
            if !value.is_object() {
                return Err(broken(
                    Violation::Unparseable,
                    status,
                    "not a JSON object",
                    body,
                ));
            }
            let compact = value.to_string();
            let fields: Fields<'_> = serde_json::from_str(&compact).map_err(|e| {
                broken(
                    Violation::Unparseable,
                    status,
                    &format!("unreadable ({e})"),
                    body,
                )
            })?;
            judge(answered, body, &fields, asked)
        }
    }
}

/// The top-level fields of an answer, sorted by name, each its raw JSON text.
type Fields<'a> = BTreeMap<&'a str, &'a RawValue>;

/// Judge an answer's fields by the contract; `body` is what the server sent.
fn judge(
    answered: Option<u16>,
    body: &[u8],
    fields: &Fields<'_>,
    asked: Asked<'_>,
) -> Result<Answer, Broken> {
    let status = answered.unwrap_or(200);
    let missing = |what: &str| broken(Violation::MissingField, status, what, body);
    let text = |name: &str| -> Result<Cow<'_, str>, Broken> {
        match fields.get(name).map(|raw| string(raw)) {
            Some(Some(s)) if !s.is_empty() => Ok(s),
            Some(_) => Err(missing(&format!("`{name}` is not a non-empty string"))),
            None => Err(missing(&format!("`{name}` is missing"))),
        }
    };
    let integer = |name: &str| -> Result<i64, Broken> {
        let Some(raw) = fields.get(name) else {
            return Err(missing(&format!("`{name}` is missing")));
        };
        let t = raw.get();
        if let Ok(n) = t.parse::<i64>() {
            return Ok(n);
        }
        if t.parse::<f64>().is_ok() {
            return Err(broken(
                Violation::FloatMoney,
                status,
                &format!("`{name}` is {t}, not an integer"),
                body,
            ));
        }
        Err(missing(&format!("`{name}` is not a number")))
    };
    let outcome = text("outcome")?;
    text("intentId")?;
    let amount_minor = integer("amountMinor")?;
    let currency = text("currency")?;
    let attempts = match fields.get("attempts").map(|raw| raw.get().parse::<u64>()) {
        Some(Ok(a)) if a >= 1 => a,
        Some(_) => return Err(missing("`attempts` is not a count >= 1")),
        None => return Err(missing("`attempts` is missing")),
    };
    let replayed = match fields.get("replayed").map(|raw| raw.get()) {
        Some("true") => true,
        Some("false") => false,
        Some(_) => return Err(missing("`replayed` is not a boolean")),
        None => return Err(missing("`replayed` is missing")),
    };
    let code = match outcome.as_ref() {
        "COMMITTED" => {
            text("ledgerTxnId")?;
            text("chosenBucketId")?;
            Code::Committed
        }
        "DECLINED" => match text("failureCode")?.as_ref() {
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
        semantic_hash: semantic_hash(fields),
    })
}

/// A raw JSON value as a string, unescaped only when it has to be.
fn string(raw: &RawValue) -> Option<Cow<'_, str>> {
    let t = raw.get();
    if !t.starts_with('"') {
        return None;
    }
    match serde_json::from_str::<&str>(t) {
        Ok(s) => Some(Cow::Borrowed(s)),
        Err(_) => serde_json::from_str::<String>(t).ok().map(Cow::Owned),
    }
}

/// A hash of the answer's values: fields in name order (the map keeps them sorted), each
/// value in one canonical form (scalars as the server wrote them unless a string needs
/// unescaping; objects and arrays re-written with sorted keys), `replayed` left out. No
/// layout survives, so two answers hash alike exactly when their values are alike.
fn semantic_hash(fields: &Fields<'_>) -> u64 {
    let mut h = StreamHash::default();
    for (name, raw) in fields.iter().filter(|(name, _)| **name != "replayed") {
        h.write(name.as_bytes());
        h.write(b"\0");
        let t = raw.get();
        match t.as_bytes().first() {
            Some(b'{' | b'[') => match serde_json::from_str::<Value>(t) {
                Ok(v) => {
                    let mut out = String::new();
                    write_canonical(&v, &mut out);
                    h.write(out.as_bytes());
                }
                Err(_) => h.write(t.as_bytes()),
            },
            Some(b'"') if t.contains('\\') => match serde_json::from_str::<String>(t) {
                Ok(s) => h.write(Value::String(s).to_string().as_bytes()),
                Err(_) => h.write(t.as_bytes()),
            },
            _ => h.write(t.as_bytes()),
        }
        h.write(b"\0");
    }
    h.finish()
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
    fn values_hash_alike_whatever_the_layout_and_differ_when_a_value_does() {
        let a = answer(
            201,
            &committed(false).replace(
                "\"attempts\":1",
                "\"attempts\":1,\"meta\":{\"b\":[1, 2],\"a\":\"x\"}",
            ),
        );
        let b = answer(
            201,
            &committed(true).replace(
                "\"attempts\":1",
                "\"meta\" : { \"a\":\"\\u0078\", \"b\":[1,2] } , \"attempts\": 1",
            ),
        );
        assert_ne!(a.answer_hash, b.answer_hash, "other bytes");
        assert_eq!(a.semantic_hash, b.semantic_hash, "the same values");
        let c = answer(
            201,
            &committed(false).replace(
                "\"attempts\":1",
                "\"attempts\":1,\"meta\":{\"b\":[2, 1],\"a\":\"x\"}",
            ),
        );
        assert_ne!(
            a.semantic_hash, c.semantic_hash,
            "an extra field's value changed"
        );
        // A key written with an escape is still the key.
        let escaped = committed(false).replace("\"currency\"", "\"curr\\u0065ncy\"");
        assert_eq!(answer(201, &escaped).code, Code::Committed);
    }

    #[test]
    fn excerpts_are_bounded() {
        let long = "x".repeat(10_000);
        let e = excerpt(long.as_bytes());
        assert!(e.len() <= EXCERPT_BYTES + 4, "{}", e.len());
        assert!(e.ends_with('…'));
    }
}
