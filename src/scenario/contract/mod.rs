//! `[target.contract]`: the idempotency contract of the API under test, as data.
//!
//! Real idempotent APIs differ in small, legal ways: where the key travels, how a replay
//! is marked, which status means "key reused" and which "still in progress", where the
//! error code lives, what the request and answer look like. A `Profile` is one API's
//! choices (ZeroRace's is the default; Zinc's, the IETF draft's and Stripe's are built
//! in); every key of the table overrides one choice of its profile. `ContractSpec` is what
//! the file says (`spec`); `Contract` is it resolved and checked, so the layers below read a
//! typed value and never a string. Its parts: `Pointer`s (`pointer`) into the answer, the
//! request's `Template`s and `Route`s (`template`), `StatusRule`s and a `ReplayMarker`.
//!
//! Invariants: a `Contract` that resolves is complete (every choice made, every pointer
//! and template parsed, every status in 100..=599); a body template filled in with sample
//! values is a JSON object; a body replay marker is a top-level field (so the answer hash
//! can mask its value in one pass); an error names the key and carries the span of the
//! value in the file.

use serde::Deserialize;

mod pointer;
mod spec;
mod template;

pub use pointer::Pointer;
pub use spec::{ContractError, ContractSpec};
pub use template::{Method, Piece, Route, Slot, Template};

/// A built-in contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// ZeroRace: `Idempotency-Key` header, replay marked `"replayed": true` in the body,
    /// 409 for a reused key, 503 `RETRY_EXHAUSTED` when nothing was committed.
    #[default]
    Zerorace,
    /// Zinc: `POST /orders`, the key in the body, `409 already_exists` naming the order a
    /// retry looks up instead of a replay (the order as ZeroRace's snapshot, as swarm's
    /// own server and test servers answer it: `replayed` in the body).
    Zinc,
    /// draft-ietf-httpapi-idempotency-key-header-09: replays unmarked, 409 "in progress",
    /// 422 "key reused with another payload", errors as RFC 9457 problems.
    Ietf,
    /// Stripe: `Idempotent-Replayed: true` header on a replay, 400 `idempotency_error`
    /// for another payload, 409 for a request still in progress, the key optional.
    Stripe,
}

impl Profile {
    pub const ALL: [Profile; 4] = [
        Profile::Zerorace,
        Profile::Zinc,
        Profile::Ietf,
        Profile::Stripe,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Profile::Zerorace => "zerorace",
            Profile::Zinc => "zinc",
            Profile::Ietf => "ietf",
            Profile::Stripe => "stripe",
        }
    }
}

/// Longest string (a pointer, a template) a contract takes.
const MAX_TEXT: usize = 4096;

/// How a replay is told apart from a fresh answer, by the server's own word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayMarker {
    /// A boolean top-level field of the answer (`body:/replayed`).
    Body(Pointer),
    /// A response header whose presence (with any value but `false` or `0`) marks a
    /// replay (`header:Idempotent-Replayed`); the name is kept in lower case.
    Header(String),
    /// Nothing: a replay is recognised by the evidence alone (the same execution id).
    None,
}

impl ReplayMarker {
    pub fn parse(text: &str) -> Result<ReplayMarker, String> {
        if text == "none" {
            return Ok(ReplayMarker::None);
        }
        if let Some(p) = text.strip_prefix("body:") {
            let pointer = Pointer::parse(p)?;
            if pointer.top_level().is_none() {
                return Err(format!(
                    "`{}`: a body marker is a top-level field (e.g. `body:/replayed`)",
                    super::bounded(text)
                ));
            }
            return Ok(ReplayMarker::Body(pointer));
        }
        if let Some(name) = text.strip_prefix("header:") {
            return header_name(name).map(ReplayMarker::Header);
        }
        Err(format!(
            "`{}`: say `body:/FIELD`, `header:NAME` or `none`",
            super::bounded(text)
        ))
    }

    /// The form a scenario writes (and the history's header keeps).
    pub fn text(&self) -> String {
        match self {
            ReplayMarker::Body(p) => format!("body:{}", p.text()),
            ReplayMarker::Header(h) => format!("header:{h}"),
            ReplayMarker::None => "none".into(),
        }
    }

    /// The top-level body field that marks a replay, if the marker is one.
    pub fn body_field(&self) -> Option<&str> {
        match self {
            ReplayMarker::Body(p) => p.top_level(),
            _ => None,
        }
    }
}

/// A header name as HTTP allows it (RFC 9110 token), lower-cased.
fn header_name(name: &str) -> Result<String, String> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if ok {
        Ok(name.to_ascii_lowercase())
    } else {
        Err(format!(
            "`{}` is not a header name (letters, digits and `-`, at most 128)",
            super::bounded(name)
        ))
    }
}

/// Header names a key may not travel in, and why: the connection-specific fields HTTP/2
/// forbids in a request (RFC 9113 §8.2.2; an HTTP/1.1 proxy drops them too), and the fields
/// swarm's client writes itself on every request.
const KEY_HEADER_TAKEN: [(&str, &str); 10] = [
    ("connection", "a connection-specific field"),
    ("keep-alive", "a connection-specific field"),
    ("proxy-connection", "a connection-specific field"),
    ("te", "a connection-specific field"),
    ("transfer-encoding", "a connection-specific field"),
    ("upgrade", "a connection-specific field"),
    ("host", "a field swarm's client writes itself"),
    ("content-length", "a field swarm's client writes itself"),
    ("content-type", "a field swarm's client writes itself"),
    (
        "authorization",
        "a field swarm's client writes itself (from `target.api_key_env`)",
    ),
];

/// The header a key travels in: a header name (see `header_name`) that neither HTTP nor
/// swarm's client uses for something else.
fn key_header_name(name: &str) -> Result<String, String> {
    let lower = header_name(name)?;
    match KEY_HEADER_TAKEN.iter().find(|(taken, _)| *taken == lower) {
        Some((_, why)) => Err(format!(
            "`{name}` cannot carry the key: it is {why} (HTTP/2 refuses or a proxy drops the \
             first kind; swarm would send the second twice)"
        )),
        None => Ok(lower),
    }
}

/// Where the idempotency key travels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPlace {
    /// A request header (lower-cased name).
    Header(String),
    /// A top-level field of the JSON body.
    Field(Pointer),
}

/// Statuses that mean one thing, optionally only with one of some error codes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StatusRule {
    pub statuses: Vec<u16>,
    /// Empty: any error code (or none) will do.
    pub codes: Vec<String>,
}

impl StatusRule {
    pub fn matches(&self, status: u16, code: Option<&str>) -> bool {
        self.statuses.contains(&status)
            && (self.codes.is_empty() || code.is_some_and(|c| self.codes.iter().any(|k| k == c)))
    }
}

/// The request: where it goes and what its body says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestShape {
    pub method: Method,
    pub path: Template,
    pub body: Template,
    /// A side-effect-free lookup by key (final reads use it instead of a replay).
    pub lookup: Option<Route>,
}

/// Where an answer says what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerMap {
    pub outcome: Pointer,
    pub committed: Vec<String>,
    pub declined: Vec<String>,
    /// Where a decline's reason is, and its values.
    pub reason: Option<Pointer>,
    pub out_of_stock: Vec<String>,
    pub mandate_rejected: Vec<String>,
    /// The id of the execution (a string or a number): the same id twice is one execution.
    pub execution_id: Pointer,
    pub amount_minor: Pointer,
    pub currency: Pointer,
    /// Runs the server made (1 + its retries), when it says.
    pub attempts: Option<Pointer>,
    pub committed_status: Vec<u16>,
    pub declined_status: Vec<u16>,
    /// Further fields every COMMITTED answer carries.
    pub committed_fields: Vec<Pointer>,
    /// Top-level fields whose values differ from answer to answer by design (a request id,
    /// the time the answer was made): left out when a replay is compared with its
    /// original. Never a field the contract reads, nor the replay marker.
    pub volatile_fields: Vec<String>,
}

impl AnswerMap {
    /// The top-level fields the contract reads an answer by (a nested pointer by its first
    /// step): what no volatile field may be.
    pub fn read_fields(&self) -> impl Iterator<Item = &str> {
        [
            Some(&self.outcome),
            Some(&self.execution_id),
            Some(&self.amount_minor),
            Some(&self.currency),
            self.reason.as_ref(),
            self.attempts.as_ref(),
        ]
        .into_iter()
        .flatten()
        .chain(&self.committed_fields)
        .filter_map(|p| p.tokens().first().map(String::as_str))
    }
}

/// An "already exists" answer that names the stored resource to look up (Zinc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Existing {
    pub rule: StatusRule,
    pub id: Pointer,
    pub lookup: Route,
}

/// A contract, resolved and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contract {
    pub profile: Profile,
    pub replay_marker: ReplayMarker,
    pub key: KeyPlace,
    /// A request without a key must be refused (the conformance probe tests it).
    pub key_required: bool,
    pub key_reused: StatusRule,
    pub in_flight: StatusRule,
    /// Statuses that mark a replay by themselves, the body being the stored answer (a
    /// middleware that answers a repeated key `409` with the original body).
    pub replay_status: Vec<u16>,
    /// Pointers tried in order; the first string found is the error's code.
    pub error_code: Vec<Pointer>,
    /// Error codes promising that nothing was executed (retry the same key).
    pub nothing_executed: Vec<String>,
    pub request: RequestShape,
    pub answer: AnswerMap,
    pub existing: Option<Existing>,
    /// How long the server keeps a key's answer, in seconds (`None`: for ever). A key whose
    /// age, one request's timeout and a second would reach it is never sent again: the
    /// server might execute it anew.
    pub key_retention_s: Option<u32>,
}

/// What a purchase request's path and body may fill in.
const BODY_SLOTS: &[Slot] = &[
    Slot::Key,
    Slot::Merchant,
    Slot::Mandate,
    Slot::Item,
    Slot::Agent,
    Slot::Quantity,
    Slot::AmountMinor,
    Slot::Currency,
];
/// What a lookup by key may fill in.
const LOOKUP_SLOTS: &[Slot] = &[Slot::Key, Slot::Merchant];
/// What the lookup of an existing resource may fill in: the id its answer named.
const EXISTING_SLOTS: &[Slot] = &[Slot::Id, Slot::Key, Slot::Merchant];

/// ZeroRace's request body (the key travels in a header).
const ZERORACE_BODY: &str = "{\"merchantId\":\"{merchant}\",\"mandateId\":\"{mandate}\",\"itemId\":\"{item}\",\"agentId\":\"{agent}\",\"quantity\":{quantity},\"amountMinor\":{amount_minor},\"currency\":\"{currency}\"}";

/// A built-in profile's list of values.
fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

impl Contract {
    /// A built-in profile as it stands.
    pub fn profile(profile: Profile) -> Contract {
        let zerorace_answer = AnswerMap {
            outcome: Pointer::builtin("/outcome"),
            committed: strings(&["COMMITTED"]),
            declined: strings(&["DECLINED"]),
            reason: Some(Pointer::builtin("/failureCode")),
            out_of_stock: strings(&["OUT_OF_STOCK"]),
            mandate_rejected: strings(&["MANDATE_REJECTED"]),
            execution_id: Pointer::builtin("/intentId"),
            amount_minor: Pointer::builtin("/amountMinor"),
            currency: Pointer::builtin("/currency"),
            attempts: Some(Pointer::builtin("/attempts")),
            committed_status: vec![201],
            declined_status: vec![200],
            committed_fields: vec![
                Pointer::builtin("/ledgerTxnId"),
                Pointer::builtin("/chosenBucketId"),
            ],
            volatile_fields: Vec::new(),
        };
        let commit = |path: &str, body: &str| RequestShape {
            method: Method::Post,
            path: Template::builtin(path, BODY_SLOTS),
            body: Template::builtin(body, BODY_SLOTS),
            lookup: None,
        };
        let zerorace = Contract {
            profile,
            replay_marker: ReplayMarker::Body(Pointer::builtin("/replayed")),
            key: KeyPlace::Header("idempotency-key".into()),
            key_required: true,
            key_reused: StatusRule {
                statuses: vec![409],
                codes: Vec::new(),
            },
            in_flight: StatusRule::default(),
            replay_status: Vec::new(),
            error_code: vec![Pointer::builtin("/error/code"), Pointer::builtin("/code")],
            nothing_executed: strings(&["RETRY_EXHAUSTED"]),
            request: RequestShape {
                lookup: Some(Route {
                    method: Method::Get,
                    path: Template::builtin("/v1/purchases?idempotencyKey={key}", LOOKUP_SLOTS),
                }),
                ..commit("/v1/purchases/commit", ZERORACE_BODY)
            },
            answer: zerorace_answer,
            existing: None,
            key_retention_s: None,
        };
        match profile {
            Profile::Zerorace => zerorace,
            Profile::Zinc => Contract {
                key: KeyPlace::Field(Pointer::builtin("/idempotency_key")),
                request: commit(
                    "/orders",
                    &ZERORACE_BODY.replace(
                        "\"currency\":\"{currency}\"}",
                        "\"currency\":\"{currency}\",\"idempotency_key\":\"{key}\"}",
                    ),
                ),
                existing: Some(Existing {
                    rule: StatusRule {
                        statuses: vec![409],
                        codes: strings(&["already_exists"]),
                    },
                    id: Pointer::builtin("/error/order_id"),
                    lookup: Route {
                        method: Method::Get,
                        path: Template::builtin("/orders/{id}", EXISTING_SLOTS),
                    },
                }),
                ..zerorace
            },
            Profile::Ietf => Contract {
                replay_marker: ReplayMarker::None,
                key_reused: StatusRule {
                    statuses: vec![422],
                    codes: Vec::new(),
                },
                in_flight: StatusRule {
                    statuses: vec![409],
                    codes: Vec::new(),
                },
                error_code: vec![
                    Pointer::builtin("/type"),
                    Pointer::builtin("/code"),
                    Pointer::builtin("/error/code"),
                ],
                nothing_executed: Vec::new(),
                request: commit("/v1/purchases/commit", ZERORACE_BODY),
                ..zerorace
            },
            Profile::Stripe => Contract {
                replay_marker: ReplayMarker::Header("idempotent-replayed".into()),
                key_required: false,
                key_reused: StatusRule {
                    statuses: vec![400],
                    codes: strings(&["idempotency_error"]),
                },
                in_flight: StatusRule {
                    statuses: vec![409],
                    codes: Vec::new(),
                },
                error_code: vec![
                    Pointer::builtin("/error/type"),
                    Pointer::builtin("/error/code"),
                    Pointer::builtin("/code"),
                ],
                nothing_executed: Vec::new(),
                request: commit("/v1/purchases/commit", ZERORACE_BODY),
                // Stripe keeps a key at least 24 hours.
                key_retention_s: Some(24 * 3600),
                ..zerorace
            },
        }
    }

    /// What the history's header keeps of the contract for the audit.
    pub fn note(&self) -> (String, String) {
        (self.profile.name().to_string(), self.replay_marker.text())
    }
}

impl Default for Contract {
    fn default() -> Self {
        Contract::profile(Profile::Zerorace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profiles_differ_where_the_apis_do() {
        let z = Contract::profile(Profile::Zerorace);
        let i = Contract::profile(Profile::Ietf);
        let s = Contract::profile(Profile::Stripe);
        let zinc = Contract::profile(Profile::Zinc);
        assert_eq!(z.replay_marker.body_field(), Some("replayed"));
        assert_eq!(i.replay_marker, ReplayMarker::None);
        assert_eq!(
            s.replay_marker,
            ReplayMarker::Header("idempotent-replayed".into())
        );
        assert!(z.key_reused.matches(409, None));
        assert!(i.key_reused.matches(422, None) && i.in_flight.matches(409, None));
        assert!(s.key_reused.matches(400, Some("idempotency_error")));
        assert!(!s.key_reused.matches(400, Some("invalid_request_error")));
        assert_eq!(
            zinc.key,
            KeyPlace::Field(Pointer::builtin("/idempotency_key"))
        );
        assert!(zinc.existing.is_some());
        assert!(!s.key_required);
    }
}
