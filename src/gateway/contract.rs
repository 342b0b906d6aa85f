//! Answers read by the contract, not by the way swarm's own server writes bytes.
//!
//! What an answer means is the scenario's `Contract` (`[target.contract]`): where its
//! outcome, execution id, amount and currency stand (JSON pointers), which statuses mean
//! a reused key or a request still in flight, where the error code lives, how a replay is
//! marked. A server swarm did not write may space its JSON as it likes, put fields in any
//! order, add fields, and use any non-empty string (or number) as an id. What it may not
//! do: answer a body that is not a JSON object, leave out a field the contract names,
//! write money as a float, disagree with itself (a committed outcome under a declined
//! status), or answer another amount or currency than was asked. Those answers become
//! `Reply::Violation`, recorded as what they are and never retried as if the network had
//! failed.
//!
//! Invariants: every business answer carries three hashes: `answer_hash` (the bytes with
//! the value of the body's replay marker masked: a replay must match its original
//! exactly), `semantic_hash` (the JSON values with keys sorted and the marker left out: a
//! layout-only difference is told apart from a different answer) and `execution` (the
//! execution id: the same id twice is one execution, whatever a flag says), the last two
//! computed in `value_hash`. Refusals are read from the status and the error code the
//! contract points at, never from a substring of the text.
//!
//! The reading stays whole in this file: a business answer (`judge`) and an error body
//! (`ErrorBody`) are the two halves of one `read`, by one contract, and the tests below
//! hold them to it together.
//!
//! It stays one file: every reading of an answer goes through `judge` and its helpers, by
//! one contract's pointers (about 490 lines); the rest is tests, one per answer shape.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::Value;
use serde_json::value::RawValue;

use super::value_hash::{id_hash, semantic_hash};
use crate::history::{Code, Violation, answer_hash_cut, value_spans};
use crate::scenario::{Contract, Pointer, ReplayMarker};

/// A business answer: committed, or declined with its reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// `Committed`, `OutOfStock`, `MandateRejected` or `Declined` (no reason given).
    pub code: Code,
    pub status: u16,
    pub attempts: u32,
    /// The server marked it a replay (by the contract's marker; a lookup's answer is one
    /// by construction).
    pub replayed: bool,
    pub answer_hash: u64,
    pub semantic_hash: u64,
    /// A hash of the execution id the answer names (never 0).
    pub execution: u64,
}

/// A definite refusal: the request changed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// `KeyReused`, `InFlight`, `RetryExhausted`, `Unavailable`, `BadRequest`,
    /// `Internal` or `Absent`.
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
    /// The execution the answer named, when its id could be read (0: not): an answer that
    /// breaks the contract may still be the evidence of a second execution.
    pub execution: u64,
}

/// What a client learns from one request, in the contract's terms.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A definite business answer (committed or declined, fresh or replayed).
    Answer(Answer),
    /// A definite refusal (4xx, 503, in flight): nothing changed.
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

/// A readable answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reading {
    Answer(Answer),
    Refused(Refusal),
    /// "Already exists": the stored resource is to be looked up by this id (the
    /// contract's `existing` rule).
    Exists(String),
}

/// One answer as it came: status, whether a header marked it a replay, the body.
#[derive(Debug, Clone, Copy)]
pub struct Heard<'a> {
    pub status: u16,
    pub header_marked: bool,
    pub body: &'a [u8],
}

/// Read one answer to the contract's purchase request.
pub fn read(c: &Contract, heard: Heard<'_>, asked: Asked<'_>) -> Result<Reading, Broken> {
    let status = heard.status;
    if (200..=299).contains(&status) {
        return read_snapshot(c, Some(status), heard, asked).map(Reading::Answer);
    }
    if c.replay_status.contains(&status) {
        // The status marks a replay; the body is the stored answer.
        return read_stored(c, heard.body, asked).map(Reading::Answer);
    }
    let error = ErrorBody::of(c, heard.body);
    let code = error.code.as_deref();
    if let Some(existing) = &c.existing
        && existing.rule.matches(status, code)
    {
        return match error.id {
            Some(id) => Ok(Reading::Exists(id)),
            None => Err(broken(
                Violation::MissingField,
                status,
                &format!(
                    "an \"already exists\" answer without the id at `{}`",
                    existing.id.text()
                ),
                heard.body,
            )),
        };
    }
    let refused = |code: Code, attempts: u32| {
        Ok(Reading::Refused(Refusal {
            code,
            status,
            attempts,
        }))
    };
    if c.in_flight.matches(status, code) {
        return refused(Code::InFlight, 0);
    }
    if c.key_reused.matches(status, code) {
        return refused(Code::KeyReused, 0);
    }
    if status >= 400 && code.is_some_and(|k| c.nothing_executed.iter().any(|n| n == k)) {
        return refused(Code::RetryExhausted, error.attempts);
    }
    match status {
        503 => refused(Code::Unavailable, 0),
        400..=499 => refused(Code::BadRequest, 0),
        _ => refused(Code::Internal, 0),
    }
}

/// Read what a lookup returned (the stored answer under a key, or the resource an
/// "already exists" answer named): a replay by construction, its 200 saying it was found,
/// not what its outcome was.
pub fn read_stored(c: &Contract, body: &[u8], asked: Asked<'_>) -> Result<Answer, Broken> {
    let heard = Heard {
        status: 200,
        header_marked: false,
        body,
    };
    read_snapshot(c, None, heard, asked).map(|a| Answer {
        replayed: true,
        ..a
    })
}

fn broken(violation: Violation, status: u16, why: &str, body: &[u8]) -> Broken {
    Broken {
        violation,
        status,
        excerpt: format!("{why}: {}", excerpt(body)),
        execution: 0,
    }
}

/// Statuses as a contract names them to a reader: `409 or 425`.
pub fn either(statuses: &[u16]) -> String {
    let words: Vec<String> = statuses.iter().map(u16::to_string).collect();
    words.join(" or ")
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

/// The top-level fields of an answer, sorted by name, each its raw JSON text.
type Fields<'a> = BTreeMap<&'a str, &'a RawValue>;

/// `answered`: the answer's own status, checked against the outcome; `None` for a lookup.
fn read_snapshot(
    c: &Contract,
    answered: Option<u16>,
    heard: Heard<'_>,
    asked: Asked<'_>,
) -> Result<Answer, Broken> {
    let body = heard.body;
    let status = answered.unwrap_or(200);
    // The fast path borrows the body: a sorted map of field names to their raw JSON.
    match serde_json::from_slice::<Fields<'_>>(body) {
        Ok(fields) => judge(c, answered, heard, &fields, asked),
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
            judge(c, answered, heard, &fields, asked)
        }
    }
}

/// The raw value `p` points at, inside the top-level `fields`.
fn at<'a>(fields: &Fields<'a>, p: &Pointer) -> Option<&'a RawValue> {
    let (first, rest) = p.tokens().split_first()?;
    let mut raw: &'a RawValue = fields.get(first.as_str())?;
    for token in rest {
        raw = step(raw, token)?;
    }
    Some(raw)
}

/// One pointer step into an object (by key) or an array (by index).
fn step<'a>(raw: &'a RawValue, token: &str) -> Option<&'a RawValue> {
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'{') => serde_json::from_str::<Fields<'a>>(text)
            .ok()
            .and_then(|m| m.get(token).copied()),
        Some(b'[') => {
            let i: usize = token.parse().ok()?;
            serde_json::from_str::<Vec<&'a RawValue>>(text)
                .ok()
                .and_then(|v| v.get(i).copied())
        }
        _ => None,
    }
}

/// Judge an answer's fields by the contract; `heard.body` is what the server sent.
fn judge(
    c: &Contract,
    answered: Option<u16>,
    heard: Heard<'_>,
    fields: &Fields<'_>,
    asked: Asked<'_>,
) -> Result<Answer, Broken> {
    let body = heard.body;
    let a = &c.answer;
    let status = answered.unwrap_or(200);
    let missing = |what: &str| broken(Violation::MissingField, status, what, body);
    let text = |p: &Pointer| -> Result<Cow<'_, str>, Broken> {
        match at(fields, p).map(string) {
            Some(Some(s)) if !s.is_empty() => Ok(s),
            Some(_) => Err(missing(&format!(
                "`{}` is not a non-empty string",
                p.text()
            ))),
            None => Err(missing(&format!("`{}` is missing", p.text()))),
        }
    };
    // An id: a non-empty string, or a number as written.
    let id = |p: &Pointer| -> Result<Cow<'_, str>, Broken> {
        match at(fields, p) {
            Some(raw)
                if raw
                    .get()
                    .starts_with(|ch: char| ch == '-' || ch.is_ascii_digit()) =>
            {
                Ok(Cow::Borrowed(raw.get()))
            }
            _ => text(p),
        }
    };
    let integer = |p: &Pointer| -> Result<i64, Broken> {
        let Some(raw) = at(fields, p) else {
            return Err(missing(&format!("`{}` is missing", p.text())));
        };
        let t = raw.get();
        if let Ok(n) = t.parse::<i64>() {
            return Ok(n);
        }
        if t.parse::<f64>().is_ok() {
            return Err(broken(
                Violation::FloatMoney,
                status,
                &format!("`{}` is {t}, not an integer", p.text()),
                body,
            ));
        }
        Err(missing(&format!("`{}` is not a number", p.text())))
    };
    let outcome = text(&a.outcome)?;
    let committed = if a.committed.iter().any(|v| *v == outcome) {
        true
    } else if a.declined.iter().any(|v| *v == outcome) {
        false
    } else {
        return Err(missing(&format!(
            "`{}` `{outcome}` is not one the contract knows (committed: {}; declined: {})",
            a.outcome.text(),
            a.committed.join(", "),
            a.declined.join(", ")
        )));
    };
    let execution = id_hash(&id(&a.execution_id)?);
    // Whatever breaks the contract from here on still names its execution: a second
    // execution answered in breach of the contract is still a second execution.
    let named = |b: Broken| Broken { execution, ..b };
    let rest = || -> Result<Answer, Broken> {
        let amount_minor = integer(&a.amount_minor)?;
        let currency = text(&a.currency)?;
        let attempts = match &a.attempts {
            None => 1,
            Some(p) => match at(fields, p).map(|raw| raw.get().parse::<u64>()) {
                Some(Ok(n)) if n >= 1 => n,
                Some(_) => return Err(missing(&format!("`{}` is not a count >= 1", p.text()))),
                None => return Err(missing(&format!("`{}` is missing", p.text()))),
            },
        };
        let replayed = match &c.replay_marker {
            ReplayMarker::Body(p) => match at(fields, p).map(RawValue::get) {
                Some("true") => true,
                Some("false") => false,
                Some(_) => return Err(missing(&format!("`{}` is not a boolean", p.text()))),
                None => return Err(missing(&format!("`{}` is missing", p.text()))),
            },
            ReplayMarker::Header(_) => heard.header_marked,
            ReplayMarker::None => false,
        };
        let code = if committed {
            for p in &a.committed_fields {
                id(p)?;
            }
            Code::Committed
        } else {
            match &a.reason {
                None => Code::Declined,
                Some(p) => {
                    let reason = text(p)?;
                    if a.out_of_stock.iter().any(|v| *v == reason) {
                        Code::OutOfStock
                    } else if a.mandate_rejected.iter().any(|v| *v == reason) {
                        Code::MandateRejected
                    } else {
                        return Err(missing(&format!(
                            "`{}` `{reason}` is not one the contract knows",
                            p.text()
                        )));
                    }
                }
            }
        };
        let allowed = if committed {
            &a.committed_status
        } else {
            &a.declined_status
        };
        if let Some(s) = answered
            && !allowed.contains(&s)
        {
            return Err(broken(
                Violation::StatusMismatch,
                s,
                &format!(
                    "HTTP {s} with outcome {outcome} (the contract says {})",
                    either(allowed)
                ),
                body,
            ));
        }
        // ISO 4217 codes are upper-case; a Stripe-style service echoes them lower-case.
        if amount_minor != asked.amount_minor || !currency.eq_ignore_ascii_case(asked.currency) {
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
        let marker = c.replay_marker.body_field();
        Ok(Answer {
            code,
            status: answered.unwrap_or(if committed {
                a.committed_status[0]
            } else {
                a.declined_status[0]
            }),
            attempts: attempts.min(u64::from(u32::MAX)) as u32,
            replayed,
            answer_hash: answer_hash_cut(
                body,
                marker,
                &value_spans(
                    body,
                    a.volatile_fields
                        .iter()
                        .filter_map(|name| fields.get(name.as_str()).copied()),
                ),
            ),
            semantic_hash: semantic_hash(fields, marker, &a.volatile_fields),
            execution,
        })
    };
    rest().map_err(named)
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

/// What an error answer says: its code (the first string the contract's pointers find),
/// the attempts a RETRY_EXHAUSTED names, and the id an "already exists" names.
struct ErrorBody {
    code: Option<String>,
    attempts: u32,
    id: Option<String>,
}

impl ErrorBody {
    fn of(c: &Contract, body: &[u8]) -> ErrorBody {
        let none = ErrorBody {
            code: None,
            attempts: 0,
            id: None,
        };
        let Ok(value @ Value::Object(_)) = serde_json::from_slice::<Value>(body) else {
            return none;
        };
        let find = |p: &Pointer| -> Option<&Value> {
            p.tokens().iter().try_fold(&value, |v, t| match v {
                Value::Object(m) => m.get(t),
                Value::Array(a) => t.parse::<usize>().ok().and_then(|i| a.get(i)),
                _ => None,
            })
        };
        let as_text = |v: &Value| match v {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        let code = c.error_code.iter().find_map(|p| find(p).and_then(as_text));
        let attempts = ["/error/attempts", "/attempts"]
            .iter()
            .filter_map(|p| Pointer::parse(p).ok())
            .find_map(|p| find(&p).and_then(Value::as_u64))
            .unwrap_or(0)
            .min(u64::from(u32::MAX)) as u32;
        let id = c
            .existing
            .as_ref()
            .and_then(|e| find(&e.id))
            .and_then(as_text);
        ErrorBody { code, attempts, id }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{ContractSpec, Profile};

    const ASKED: Asked<'static> = Asked {
        amount_minor: 2500,
        currency: "USD",
    };

    fn zerorace() -> Contract {
        Contract::profile(Profile::Zerorace)
    }

    fn committed(replayed: bool) -> String {
        format!(
            "{{\"outcome\":\"COMMITTED\",\"intentId\":\"i-1\",\"ledgerTxnId\":\"l-1\",\
             \"chosenBucketId\":\"bucket-7\",\"amountMinor\":2500,\"currency\":\"USD\",\
             \"attempts\":1,\"replayed\":{replayed}}}"
        )
    }

    fn heard(status: u16, body: &str) -> Heard<'_> {
        Heard {
            status,
            header_marked: false,
            body: body.as_bytes(),
        }
    }

    fn answer_by(c: &Contract, h: Heard<'_>) -> Answer {
        match read(c, h, ASKED) {
            Ok(Reading::Answer(a)) => a,
            other => panic!("{other:?} for {:?}", String::from_utf8_lossy(h.body)),
        }
    }

    fn answer(status: u16, body: &str) -> Answer {
        answer_by(&zerorace(), heard(status, body))
    }

    fn violation(status: u16, body: &str) -> Violation {
        match read(&zerorace(), heard(status, body), ASKED) {
            Err(b) => b.violation,
            other => panic!("{other:?} for {body}"),
        }
    }

    fn refused_by(c: &Contract, status: u16, body: &str) -> Code {
        match read(c, heard(status, body), ASKED) {
            Ok(Reading::Refused(r)) => r.code,
            other => panic!("{other:?}"),
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
        assert_eq!(compact.execution, pretty.execution, "the same intent id");
        let again = answer(201, &committed(true));
        assert!(again.replayed);
        assert_eq!(compact.answer_hash, again.answer_hash, "replayed is masked");
        assert_eq!(compact.semantic_hash, again.semantic_hash);
        let other = answer(201, &committed(false).replace("i-1", "i-2"));
        assert_ne!(compact.execution, other.execution, "another intent id");
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
        for (status, body) in [
            (200, committed(false)),
            (201, committed(false).replace("2500", "2500.0")),
            (201, committed(false).replace(",\"replayed\":false", "")),
        ] {
            match read(&zerorace(), heard(status, &body), ASKED) {
                Err(b) => assert_eq!(
                    b.execution,
                    id_hash("i-1"),
                    "{body}: it still names its execution"
                ),
                other => panic!("{other:?}"),
            }
        }
        let declined = "{\"outcome\":\"DECLINED\",\"intentId\":\"i\",\"failureCode\":\"OUT_OF_STOCK\",\
                        \"amountMinor\":2500,\"currency\":\"USD\",\"attempts\":1,\"replayed\":false}";
        assert_eq!(answer(200, declined).code, Code::OutOfStock);
        assert_eq!(violation(201, declined), Violation::StatusMismatch);
        assert_eq!(
            violation(201, &committed(false).replace("USD", "EUR")),
            Violation::PayloadMismatch
        );
        assert_eq!(
            answer(201, &committed(false).replace("USD", "usd")).code,
            Code::Committed,
            "a currency code in lower case (Stripe's) is the same currency"
        );
        // ZeroRace's marker is a body field: a body without it breaks the contract.
        assert_eq!(
            violation(201, &committed(false).replace(",\"replayed\":false", "")),
            Violation::MissingField
        );
    }

    #[test]
    fn refusals_are_read_from_the_status_and_the_error_code() {
        let z = zerorace();
        assert_eq!(
            refused_by(
                &z,
                503,
                "{\"error\":{\"code\":\"RETRY_EXHAUSTED\",\"attempts\":8}}"
            ),
            Code::RetryExhausted
        );
        // Zinc's layout: the code at the top level.
        assert_eq!(
            refused_by(
                &z,
                503,
                "{\"code\":\"RETRY_EXHAUSTED\",\"message\":\"gave up\"}"
            ),
            Code::RetryExhausted
        );
        // The text alone proves nothing: only the error's code does.
        assert_eq!(
            refused_by(&z, 503, "RETRY_EXHAUSTED, maybe"),
            Code::Unavailable
        );
        assert_eq!(refused_by(&z, 409, ""), Code::KeyReused);
        assert_eq!(refused_by(&z, 422, "{}"), Code::BadRequest);
        assert_eq!(refused_by(&z, 401, "no"), Code::BadRequest);
        assert_eq!(refused_by(&z, 500, "boom"), Code::Internal);
    }

    #[test]
    fn each_profile_reads_its_own_statuses() {
        let ietf = Contract::profile(Profile::Ietf);
        assert_eq!(refused_by(&ietf, 409, "{}"), Code::InFlight);
        assert_eq!(refused_by(&ietf, 422, "{}"), Code::KeyReused);
        let stripe = Contract::profile(Profile::Stripe);
        let idem = "{\"error\":{\"type\":\"idempotency_error\",\"message\":\"Keys for idempotent requests can only be used with the same parameters\"}}";
        assert_eq!(refused_by(&stripe, 400, idem), Code::KeyReused);
        assert_eq!(
            refused_by(
                &stripe,
                400,
                "{\"error\":{\"type\":\"invalid_request_error\"}}"
            ),
            Code::BadRequest
        );
        assert_eq!(refused_by(&stripe, 409, idem), Code::InFlight);
        // A header marks Stripe's replays; the body's `replayed` is only data there.
        let fresh = answer_by(&stripe, heard(201, &committed(false)));
        let again = answer_by(
            &stripe,
            Heard {
                header_marked: true,
                ..heard(201, &committed(false))
            },
        );
        assert!(!fresh.replayed && again.replayed);
        assert_eq!(fresh.answer_hash, again.answer_hash);
        let flipped = answer_by(&stripe, heard(201, &committed(true)));
        assert!(!flipped.replayed, "the body flag is not Stripe's marker");
        assert_ne!(
            fresh.answer_hash, flipped.answer_hash,
            "and it is not masked"
        );
        // A middleware that answers a repeated key 409 with the original body.
        let mut django = Contract::profile(Profile::Zerorace);
        django.key_reused.statuses.clear();
        django.replay_status = vec![409];
        let replay = answer_by(&django, heard(409, &committed(false)));
        assert!(replay.replayed && replay.code == Code::Committed);
        // The IETF draft marks nothing: `replayed` may be absent.
        let bare = committed(false).replace(",\"replayed\":false", "");
        assert!(!answer_by(&ietf, heard(201, &bare)).replayed);
    }

    #[test]
    fn zincs_already_exists_names_the_order_to_look_up() {
        let zinc = Contract::profile(Profile::Zinc);
        let exists = "{\"error\":{\"code\":\"already_exists\",\"order_id\":\"o-9\"}}";
        assert_eq!(
            read(&zinc, heard(409, exists), ASKED),
            Ok(Reading::Exists("o-9".into()))
        );
        assert_eq!(
            refused_by(&zinc, 409, "{\"error\":{\"code\":\"KEY_REUSED\"}}"),
            Code::KeyReused
        );
        let no_id = "{\"error\":{\"code\":\"already_exists\"}}";
        assert!(
            matches!(read(&zinc, heard(409, no_id), ASKED), Err(b) if b.violation == Violation::MissingField)
        );
        let stored = read_stored(&zinc, committed(false).as_bytes(), ASKED).expect("reads");
        assert!(
            stored.replayed,
            "a looked-up answer is a replay by construction"
        );
    }

    #[test]
    fn another_api_shape_is_read_by_its_pointers() {
        #[derive(serde::Deserialize)]
        struct Doc {
            contract: ContractSpec,
        }
        let doc: Doc = toml::from_str(
            r#"[contract]
profile = "stripe"
[contract.answer]
outcome = "/order/state"
committed = ["paid"]
declined = ["rejected"]
reason = ""
execution_id = "/order/id"
amount_minor = "/order/total"
currency = "/order/ccy"
attempts = ""
committed_status = [201]
declined_status = [200]
committed_fields = []
"#,
        )
        .expect("toml");
        let c = doc.contract.resolve().expect("resolves");
        let paid = "{\"order\":{\"id\":17,\"state\":\"paid\",\"total\":2500,\"ccy\":\"USD\"}}";
        let a = answer_by(&c, heard(201, paid));
        assert_eq!((a.code, a.attempts), (Code::Committed, 1));
        assert_eq!(a.execution, id_hash("17"), "a numeric id is its text");
        let rejected =
            "{\"order\":{\"id\":\"x\",\"state\":\"rejected\",\"total\":2500,\"ccy\":\"USD\"}}";
        assert_eq!(answer_by(&c, heard(200, rejected)).code, Code::Declined);
        let float = paid.replace("2500", "25.00");
        assert!(
            matches!(read(&c, heard(201, &float), ASKED), Err(b) if b.violation == Violation::FloatMoney)
        );
        let unknown = paid.replace("paid", "pending");
        assert!(
            matches!(read(&c, heard(201, &unknown), ASKED), Err(b) if b.violation == Violation::MissingField)
        );
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
        // A number is its value: a store that rewrites `1e3` as `1000` (PostgreSQL's
        // `jsonb` does) replays the same answer.
        let written = |fee: &str, rate: &str| {
            answer(
                201,
                &committed(false).replace(
                    "\"attempts\":1",
                    &format!("\"attempts\":1,\"fee\":{fee},\"meta\":{{\"rate\":{rate}}}"),
                ),
            )
            .semantic_hash
        };
        assert_eq!(written("1000", "0.10"), written("1e3", "0.1"));
        assert_eq!(written("1000", "0.10"), written("1.0E+3", "1e-1"));
        assert_ne!(written("1000", "0.10"), written("1001", "0.10"));
        assert_ne!(written("1000", "0.10"), written("1000", "0.01"));
        // A key written with an escape is still the key.
        let escaped = committed(false).replace("\"currency\"", "\"curr\\u0065ncy\"");
        assert_eq!(answer(201, &escaped).code, Code::Committed);
    }

    #[test]
    fn volatile_fields_and_nulls_do_not_make_a_replay_differ() {
        let with = |extra: &str, replayed: bool| {
            committed(replayed).replace("\"attempts\":1", &format!("\"attempts\":1{extra}"))
        };
        let mut c = zerorace();
        c.answer.volatile_fields = vec!["requestId".into(), "servedAt".into()];
        let fresh = answer_by(
            &c,
            heard(201, &with(",\"requestId\":\"r-1\",\"servedAt\":1", false)),
        );
        let again = answer_by(
            &c,
            heard(201, &with(",\"requestId\":\"r-22\",\"servedAt\":2", true)),
        );
        assert_eq!(
            fresh.answer_hash, again.answer_hash,
            "a replay, byte for byte but them"
        );
        assert_eq!(fresh.semantic_hash, again.semantic_hash);
        // Without them named, the same two answers differ in value.
        let fresh = answer(201, &with(",\"requestId\":\"r-1\"", false));
        let again = answer(201, &with(",\"requestId\":\"r-22\"", true));
        assert_ne!(fresh.semantic_hash, again.semantic_hash);
        // Any other field still counts.
        let other = answer_by(
            &c,
            heard(201, &with(",\"requestId\":\"r-1\",\"fee\":2", false)),
        );
        let changed = answer_by(
            &c,
            heard(201, &with(",\"requestId\":\"r-1\",\"fee\":3", false)),
        );
        assert_ne!(other.semantic_hash, changed.semantic_hash);
        // A field that is null is the field left out (a serializer that omits nulls).
        let null = answer(
            201,
            &with(",\"failureCode\":null,\"meta\":{\"a\":1,\"b\":null}", false),
        );
        let absent = answer(201, &with(",\"meta\":{\"a\":1}", true));
        assert_eq!(null.semantic_hash, absent.semantic_hash);
    }

    #[test]
    fn excerpts_are_bounded() {
        let long = "x".repeat(10_000);
        let e = excerpt(long.as_bytes());
        assert!(e.len() <= EXCERPT_BYTES + 4, "{}", e.len());
        assert!(e.ends_with('…'));
    }
}
