//! `[target.contract]`: the idempotency contract of the API under test, as data.
//!
//! Real idempotent APIs differ in small, legal ways: where the key travels, how a replay
//! is marked, which status means "key reused" and which "still in progress", where the
//! error code lives, what the request and answer look like. A `Profile` is one API's
//! choices (ZeroRace's is the default; Zinc's, the IETF draft's and Stripe's are built
//! in); every key of the table overrides one choice of its profile. `ContractSpec` is what
//! the file says; `Contract` is it resolved and checked, so the layers below read a typed
//! value and never a string.
//!
//! Invariants: a `Contract` that resolves is complete (every choice made, every pointer
//! and template parsed, every status in 100..=599); a body template filled in with sample
//! values is a JSON object; a body replay marker is a top-level field (so the answer hash
//! can mask its value in one pass); an error names the key and carries the span of the
//! value in the file.

use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

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

/// Most entries of a list (statuses, codes, pointers) and longest string a contract takes.
const MAX_LIST: usize = 32;
const MAX_TEXT: usize = 4096;

/// An RFC 6901 JSON pointer (`/error/code`), parsed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer {
    text: String,
    tokens: Vec<String>,
}

impl Pointer {
    /// `""` is the whole document; otherwise `/`-separated tokens with `~1` and `~0`.
    pub fn parse(text: &str) -> Result<Pointer, String> {
        if text.len() > MAX_TEXT {
            return Err(format!("a JSON pointer of at most {MAX_TEXT} bytes"));
        }
        if text.is_empty() {
            return Err(
                "an empty pointer names the whole answer, not a field: give e.g. `/id`".into(),
            );
        }
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!(
                "`{}` is not a JSON pointer: it starts with `/` (e.g. `/error/code`)",
                super::bounded(text)
            ));
        };
        let mut tokens = Vec::new();
        for raw in rest.split('/') {
            let mut token = String::with_capacity(raw.len());
            let mut chars = raw.chars();
            while let Some(c) = chars.next() {
                if c != '~' {
                    token.push(c);
                    continue;
                }
                match chars.next() {
                    Some('0') => token.push('~'),
                    Some('1') => token.push('/'),
                    _ => {
                        return Err(format!(
                            "`{}`: `~` must be followed by 0 or 1 (RFC 6901)",
                            super::bounded(text)
                        ));
                    }
                }
            }
            tokens.push(token);
        }
        Ok(Pointer {
            text: text.to_string(),
            tokens,
        })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    /// The field name when the pointer names a top-level field.
    pub fn top_level(&self) -> Option<&str> {
        match self.tokens.as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }
}

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

/// What a template may fill in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Key,
    Merchant,
    Mandate,
    Item,
    Agent,
    Quantity,
    AmountMinor,
    Currency,
    /// The id an "already exists" answer names (lookups only).
    Id,
}

impl Slot {
    const ALL: [(&'static str, Slot); 9] = [
        ("key", Slot::Key),
        ("merchant", Slot::Merchant),
        ("mandate", Slot::Mandate),
        ("item", Slot::Item),
        ("agent", Slot::Agent),
        ("quantity", Slot::Quantity),
        ("amount_minor", Slot::AmountMinor),
        ("currency", Slot::Currency),
        ("id", Slot::Id),
    ];

    fn name(self) -> &'static str {
        Slot::ALL
            .iter()
            .find(|(_, s)| *s == self)
            .map_or("?", |(n, _)| n)
    }
}

/// One piece of a template: text as written, or a placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Slot(Slot),
}

/// Text with `{name}` placeholders (`{key}`, `{merchant}`, `{mandate}`, `{item}`,
/// `{agent}`, `{quantity}`, `{amount_minor}`, `{currency}`; `{id}` in a lookup). Anything
/// else between braces is text, so JSON's own braces need no escaping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

impl Template {
    /// `allowed`: the slots this template may use.
    pub fn parse(text: &str, allowed: &[Slot]) -> Result<Template, String> {
        if text.len() > MAX_TEXT {
            return Err(format!("at most {MAX_TEXT} bytes"));
        }
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            let after = &rest[open + 1..];
            let name_len = after
                .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                .unwrap_or(after.len());
            let slot = (after[name_len..].starts_with('}') && name_len > 0)
                .then(|| Slot::ALL.iter().find(|(n, _)| *n == &after[..name_len]))
                .flatten();
            match slot {
                Some((_, slot)) => {
                    if !allowed.contains(slot) {
                        let names: Vec<String> = allowed
                            .iter()
                            .map(|s| format!("{{{}}}", s.name()))
                            .collect();
                        return Err(format!(
                            "`{{{}}}` cannot be used here (this template takes {})",
                            slot.name(),
                            names.join(", ")
                        ));
                    }
                    literal.push_str(&rest[..open]);
                    if !literal.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut literal)));
                    }
                    pieces.push(Piece::Slot(*slot));
                    rest = &after[name_len + 1..];
                }
                None => {
                    literal.push_str(&rest[..=open]);
                    rest = after;
                }
            }
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        Ok(Template { pieces })
    }

    pub fn pieces(&self) -> &[Piece] {
        &self.pieces
    }

    /// The template as written.
    pub fn text(&self) -> String {
        self.fill(|s| format!("{{{}}}", s.name()))
    }

    pub fn uses(&self, slot: Slot) -> bool {
        self.pieces.contains(&Piece::Slot(slot))
    }

    /// The template with every slot filled by `value`.
    pub fn fill(&self, value: impl Fn(Slot) -> String) -> String {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Slot(s) => out.push_str(&value(*s)),
            }
        }
        out
    }
}

/// An HTTP method a contract may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
}

impl Method {
    fn parse(text: &str) -> Result<Method, String> {
        match text {
            "GET" => Ok(Method::Get),
            "POST" => Ok(Method::Post),
            "PUT" => Ok(Method::Put),
            "PATCH" => Ok(Method::Patch),
            other => Err(format!(
                "`{}`: GET, POST, PUT or PATCH",
                super::bounded(other)
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
        }
    }
}

/// A method and a path (after the endpoint's prefix; `?query` allowed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub method: Method,
    pub path: Template,
}

impl Route {
    /// `"GET /v1/purchases?idempotencyKey={key}"`.
    fn parse(text: &str, allowed: &[Slot]) -> Result<Route, String> {
        let (method, path) = text
            .split_once(' ')
            .ok_or_else(|| format!("`{}`: say `METHOD /path`", super::bounded(text)))?;
        Ok(Route {
            method: Method::parse(method)?,
            path: path_template(path.trim(), allowed)?,
        })
    }
}

fn path_template(path: &str, allowed: &[Slot]) -> Result<Template, String> {
    if !path.starts_with('/') || path.contains(char::is_whitespace) {
        return Err(format!(
            "`{}`: a path starts with `/` and has no spaces",
            super::bounded(path)
        ));
    }
    Template::parse(path, allowed)
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
}

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
const LOOKUP_SLOTS: &[Slot] = &[Slot::Key, Slot::Merchant];
const EXISTING_SLOTS: &[Slot] = &[Slot::Id, Slot::Key, Slot::Merchant];

/// ZeroRace's request body (the key travels in a header).
const ZERORACE_BODY: &str = "{\"merchantId\":\"{merchant}\",\"mandateId\":\"{mandate}\",\"itemId\":\"{item}\",\"agentId\":\"{agent}\",\"quantity\":{quantity},\"amountMinor\":{amount_minor},\"currency\":\"{currency}\"}";

fn pointer(text: &str) -> Pointer {
    // Built-in pointers are written correctly (a test parses every profile).
    Pointer::parse(text).unwrap_or_else(|_| Pointer {
        text: text.to_string(),
        tokens: Vec::new(),
    })
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn template(text: &str, allowed: &[Slot]) -> Template {
    Template::parse(text, allowed).unwrap_or(Template { pieces: Vec::new() })
}

impl Contract {
    /// A built-in profile as it stands.
    pub fn profile(profile: Profile) -> Contract {
        let zerorace_answer = AnswerMap {
            outcome: pointer("/outcome"),
            committed: strings(&["COMMITTED"]),
            declined: strings(&["DECLINED"]),
            reason: Some(pointer("/failureCode")),
            out_of_stock: strings(&["OUT_OF_STOCK"]),
            mandate_rejected: strings(&["MANDATE_REJECTED"]),
            execution_id: pointer("/intentId"),
            amount_minor: pointer("/amountMinor"),
            currency: pointer("/currency"),
            attempts: Some(pointer("/attempts")),
            committed_status: vec![201],
            declined_status: vec![200],
            committed_fields: vec![pointer("/ledgerTxnId"), pointer("/chosenBucketId")],
        };
        let commit = |path: &str, body: &str| RequestShape {
            method: Method::Post,
            path: template(path, BODY_SLOTS),
            body: template(body, BODY_SLOTS),
            lookup: None,
        };
        let zerorace = Contract {
            profile,
            replay_marker: ReplayMarker::Body(pointer("/replayed")),
            key: KeyPlace::Header("idempotency-key".into()),
            key_required: true,
            key_reused: StatusRule {
                statuses: vec![409],
                codes: Vec::new(),
            },
            in_flight: StatusRule::default(),
            replay_status: Vec::new(),
            error_code: vec![pointer("/error/code"), pointer("/code")],
            nothing_executed: strings(&["RETRY_EXHAUSTED"]),
            request: RequestShape {
                lookup: Some(Route {
                    method: Method::Get,
                    path: template("/v1/purchases?idempotencyKey={key}", LOOKUP_SLOTS),
                }),
                ..commit("/v1/purchases/commit", ZERORACE_BODY)
            },
            answer: zerorace_answer,
            existing: None,
        };
        match profile {
            Profile::Zerorace => zerorace,
            Profile::Zinc => Contract {
                key: KeyPlace::Field(pointer("/idempotency_key")),
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
                    id: pointer("/error/order_id"),
                    lookup: Route {
                        method: Method::Get,
                        path: template("/orders/{id}", EXISTING_SLOTS),
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
                error_code: vec![pointer("/type"), pointer("/code"), pointer("/error/code")],
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
                    pointer("/error/type"),
                    pointer("/error/code"),
                    pointer("/code"),
                ],
                nothing_executed: Vec::new(),
                request: commit("/v1/purchases/commit", ZERORACE_BODY),
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

/// `[target.contract]` as written: every key optional, overriding its profile.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContractSpec {
    pub profile: Option<Spanned<Profile>>,
    pub replay_marker: Option<Spanned<String>>,
    pub key_header: Option<Spanned<String>>,
    pub key_field: Option<Spanned<String>>,
    pub key_required: Option<Spanned<bool>>,
    pub key_reused_status: Option<Spanned<Vec<u16>>>,
    pub key_reused_code: Option<Spanned<Vec<String>>>,
    pub in_flight_status: Option<Spanned<Vec<u16>>>,
    pub in_flight_code: Option<Spanned<Vec<String>>>,
    pub replay_status: Option<Spanned<Vec<u16>>>,
    pub error_code: Option<Spanned<Vec<String>>>,
    pub nothing_executed_code: Option<Spanned<Vec<String>>>,
    pub request: Option<RequestSpec>,
    pub answer: Option<AnswerSpec>,
    pub existing: Option<Spanned<ExistingSpec>>,
}

/// `[target.contract.request]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestSpec {
    pub method: Option<Spanned<String>>,
    pub path: Option<Spanned<String>>,
    pub body: Option<Spanned<String>>,
    /// `"GET /path?key={key}"`, or `""` for none.
    pub lookup: Option<Spanned<String>>,
}

/// `[target.contract.answer]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerSpec {
    pub outcome: Option<Spanned<String>>,
    pub committed: Option<Spanned<Vec<String>>>,
    pub declined: Option<Spanned<Vec<String>>>,
    /// `""` for none.
    pub reason: Option<Spanned<String>>,
    pub out_of_stock: Option<Spanned<Vec<String>>>,
    pub mandate_rejected: Option<Spanned<Vec<String>>>,
    pub execution_id: Option<Spanned<String>>,
    pub amount_minor: Option<Spanned<String>>,
    pub currency: Option<Spanned<String>>,
    /// `""` when the answer does not say.
    pub attempts: Option<Spanned<String>>,
    pub committed_status: Option<Spanned<Vec<u16>>>,
    pub declined_status: Option<Spanned<Vec<u16>>>,
    pub committed_fields: Option<Spanned<Vec<String>>>,
}

/// `existing = { status = [409], code = ["already_exists"], id = "/error/order_id",
/// lookup = "GET /orders/{id}" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExistingSpec {
    pub status: Vec<u16>,
    #[serde(default)]
    pub code: Vec<String>,
    pub id: String,
    pub lookup: String,
}

/// Why a contract does not resolve: the key (under `target.contract.`), where its value
/// stands in the file, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractError {
    pub field: String,
    pub span: Range<usize>,
    pub message: String,
}

fn fail<T>(
    field: &str,
    span: Range<usize>,
    message: impl Into<String>,
) -> Result<T, ContractError> {
    Err(ContractError {
        field: format!("target.contract.{field}"),
        span,
        message: message.into(),
    })
}

/// Apply `f` to a written value, turning its error into one that names `field`.
fn with<T, U>(
    field: &str,
    value: &Option<Spanned<T>>,
    f: impl FnOnce(&T) -> Result<U, String>,
) -> Result<Option<U>, ContractError> {
    match value {
        None => Ok(None),
        Some(v) => f(v.get_ref())
            .map(Some)
            .or_else(|m| fail(field, v.span(), m)),
    }
}

fn statuses(list: &[u16]) -> Result<Vec<u16>, String> {
    if list.len() > MAX_LIST {
        return Err(format!("at most {MAX_LIST} statuses"));
    }
    match list.iter().find(|s| !(100..=599).contains(*s)) {
        Some(bad) => Err(format!("{bad} is not an HTTP status (100 to 599)")),
        None => Ok(list.to_vec()),
    }
}

fn codes(list: &[String]) -> Result<Vec<String>, String> {
    if list.len() > MAX_LIST {
        return Err(format!("at most {MAX_LIST} values"));
    }
    match list.iter().find(|c| c.is_empty() || c.len() > 256) {
        Some(_) => Err("each value is 1 to 256 characters".into()),
        None => Ok(list.to_vec()),
    }
}

fn pointers(list: &[String]) -> Result<Vec<Pointer>, String> {
    if list.len() > MAX_LIST {
        return Err(format!("at most {MAX_LIST} pointers"));
    }
    list.iter().map(|p| Pointer::parse(p)).collect()
}

/// An optional pointer: `""` means none.
fn optional_pointer(text: &str) -> Result<Option<Pointer>, String> {
    match text {
        "" => Ok(None),
        p => Pointer::parse(p).map(Some),
    }
}

/// Sample values that fill a template for the check that it makes JSON.
fn sample(slot: Slot) -> String {
    match slot {
        Slot::Key => "run-1-0-0".into(),
        Slot::Merchant | Slot::Mandate | Slot::Item => {
            "00000000-0000-4000-8000-000000000000".into()
        }
        Slot::Agent => "agent-1".into(),
        Slot::Quantity => "1".into(),
        Slot::AmountMinor => "2500".into(),
        Slot::Currency => "USD".into(),
        Slot::Id => "id-1".into(),
    }
}

impl ContractSpec {
    /// The contract the file describes: its profile, each written key overriding one
    /// choice, then checked as a whole.
    pub fn resolve(&self) -> Result<Contract, ContractError> {
        let profile = self
            .profile
            .as_ref()
            .map_or(Profile::Zerorace, |p| *p.get_ref());
        let mut c = Contract::profile(profile);
        if let Some(m) = with("replay_marker", &self.replay_marker, |t| {
            ReplayMarker::parse(t)
        })? {
            c.replay_marker = m;
        }
        match (&self.key_header, &self.key_field) {
            (Some(_), Some(f)) => {
                return fail(
                    "key_field",
                    f.span(),
                    "the key travels in a header or in the body: give key_header or key_field, not both",
                );
            }
            (Some(h), None) => {
                c.key = KeyPlace::Header(
                    header_name(h.get_ref()).or_else(|m| fail("key_header", h.span(), m))?,
                );
            }
            (None, Some(f)) => {
                let p = Pointer::parse(f.get_ref()).or_else(|m| fail("key_field", f.span(), m))?;
                if p.top_level().is_none() {
                    return fail(
                        "key_field",
                        f.span(),
                        "the key field is a top-level field of the body (e.g. `/idempotency_key`)",
                    );
                }
                c.key = KeyPlace::Field(p);
            }
            (None, None) => {}
        }
        if let Some(r) = &self.key_required {
            c.key_required = *r.get_ref();
        }
        if let Some(s) = with("key_reused_status", &self.key_reused_status, |l| {
            statuses(l)
        })? {
            c.key_reused.statuses = s;
        }
        if let Some(s) = with("key_reused_code", &self.key_reused_code, |l| codes(l))? {
            c.key_reused.codes = s;
        }
        if let Some(s) = with("in_flight_status", &self.in_flight_status, |l| statuses(l))? {
            c.in_flight.statuses = s;
        }
        if let Some(s) = with("in_flight_code", &self.in_flight_code, |l| codes(l))? {
            c.in_flight.codes = s;
        }
        if let Some(s) = with("replay_status", &self.replay_status, |l| statuses(l))? {
            c.replay_status = s;
        }
        if let Some(p) = with("error_code", &self.error_code, |l| pointers(l))? {
            c.error_code = p;
        }
        if let Some(s) = with("nothing_executed_code", &self.nothing_executed_code, |l| {
            codes(l)
        })? {
            c.nothing_executed = s;
        }
        if let Some(r) = &self.request {
            self.request_overrides(r, &mut c)?;
        }
        if let Some(a) = &self.answer {
            answer_overrides(a, &mut c.answer)?;
        }
        if let Some(e) = &self.existing {
            let span = e.span();
            let e = e.get_ref();
            let here = |m: String| ContractError {
                field: "target.contract.existing".into(),
                span: span.clone(),
                message: m,
            };
            let rule = StatusRule {
                statuses: statuses(&e.status).map_err(here)?,
                codes: codes(&e.code).map_err(here)?,
            };
            let id = Pointer::parse(&e.id).map_err(here)?;
            let lookup = Route::parse(&e.lookup, EXISTING_SLOTS).map_err(here)?;
            c.existing = Some(Existing { rule, id, lookup });
        }
        self.check_whole(&c)?;
        Ok(c)
    }

    fn request_overrides(&self, r: &RequestSpec, c: &mut Contract) -> Result<(), ContractError> {
        if let Some(m) = with("request.method", &r.method, |t| Method::parse(t))? {
            c.request.method = m;
        }
        if let Some(p) = with("request.path", &r.path, |t| path_template(t, BODY_SLOTS))? {
            c.request.path = p;
        }
        if let Some(b) = with("request.body", &r.body, |t| Template::parse(t, BODY_SLOTS))? {
            c.request.body = b;
        }
        if let Some(l) = with("request.lookup", &r.lookup, |t| match t.as_str() {
            "" => Ok(None),
            t => Route::parse(t, LOOKUP_SLOTS).map(Some),
        })? {
            c.request.lookup = l;
        }
        Ok(())
    }

    /// Rules that span keys: where the key travels agrees with the body, statuses do not
    /// mean two things, the body is JSON once filled in.
    fn check_whole(&self, c: &Contract) -> Result<(), ContractError> {
        let (body_field, body_span) = self
            .request
            .as_ref()
            .and_then(|r| r.body.as_ref())
            .map_or(("request.body", 0..0), |b| ("request.body", b.span()));
        let span_of =
            |v: &Option<Spanned<String>>| v.as_ref().map_or(body_span.clone(), |v| v.span());
        let filled = c.request.body.fill(sample);
        match serde_json::from_str::<serde_json::Value>(&filled) {
            Ok(serde_json::Value::Object(map)) => {
                if let KeyPlace::Field(p) = &c.key {
                    let name = p.top_level().unwrap_or_default();
                    if !c.request.body.uses(Slot::Key) || !map.contains_key(name) {
                        return fail(
                            "key_field",
                            span_of(&self.key_field),
                            format!(
                                "the key travels in the body as `{name}`: the body template needs `\"{name}\": \"{{key}}\"`"
                            ),
                        );
                    }
                }
            }
            Ok(_) => return fail(body_field, body_span, "the body must be a JSON object"),
            Err(e) => {
                return fail(
                    body_field,
                    body_span,
                    format!("not JSON once its placeholders are filled in ({e})"),
                );
            }
        }
        if let Some(s) = c.key_reused.statuses.iter().find(|s| {
            c.in_flight.statuses.contains(s)
                && c.key_reused.codes.is_empty()
                && c.in_flight.codes.is_empty()
        }) {
            let span = self.in_flight_status.as_ref().map_or(0..0, |v| v.span());
            return fail(
                "in_flight_status",
                span,
                format!(
                    "{s} cannot mean both a reused key and a request in flight (tell them apart with key_reused_code or in_flight_code)"
                ),
            );
        }
        let a = &c.answer;
        let replay_span = self.replay_status.as_ref().map_or(0..0, |v| v.span());
        if let Some(s) = c.replay_status.iter().find(|s| {
            a.committed_status.contains(s)
                || a.declined_status.contains(s)
                || (c.key_reused.statuses.contains(s) && c.key_reused.codes.is_empty())
                || (c.in_flight.statuses.contains(s) && c.in_flight.codes.is_empty())
        }) {
            return fail(
                "replay_status",
                replay_span,
                format!(
                    "{s} already means something else here (an outcome, a reused key or a request in flight)"
                ),
            );
        }
        if a.committed.is_empty() || a.declined.is_empty() {
            let span = self
                .answer
                .as_ref()
                .and_then(|x| x.committed.as_ref())
                .map_or(0..0, |v| v.span());
            return fail(
                "answer.committed",
                span,
                "name at least one committed and one declined value",
            );
        }
        if let Some(v) = a.committed.iter().find(|v| a.declined.contains(v)) {
            let span = self
                .answer
                .as_ref()
                .and_then(|x| x.declined.as_ref())
                .map_or(0..0, |v| v.span());
            return fail(
                "answer.declined",
                span,
                format!("`{v}` is both committed and declined"),
            );
        }
        if a.committed_status.is_empty() || a.declined_status.is_empty() {
            let span = self
                .answer
                .as_ref()
                .and_then(|x| x.committed_status.as_ref())
                .map_or(0..0, |v| v.span());
            return fail(
                "answer.committed_status",
                span,
                "name at least one status for each outcome",
            );
        }
        if let Some(s) = a
            .committed_status
            .iter()
            .chain(&a.declined_status)
            .find(|s| !(200..=299).contains(*s))
        {
            let span = self
                .answer
                .as_ref()
                .and_then(|x| x.committed_status.as_ref())
                .map_or(0..0, |v| v.span());
            return fail(
                "answer.committed_status",
                span,
                format!("{s}: a business answer is a 2xx"),
            );
        }
        Ok(())
    }
}

fn answer_overrides(a: &AnswerSpec, m: &mut AnswerMap) -> Result<(), ContractError> {
    let ptr = |field: &str, v: &Option<Spanned<String>>| with(field, v, |t| Pointer::parse(t));
    if let Some(p) = ptr("answer.outcome", &a.outcome)? {
        m.outcome = p;
    }
    if let Some(p) = ptr("answer.execution_id", &a.execution_id)? {
        m.execution_id = p;
    }
    if let Some(p) = ptr("answer.amount_minor", &a.amount_minor)? {
        m.amount_minor = p;
    }
    if let Some(p) = ptr("answer.currency", &a.currency)? {
        m.currency = p;
    }
    if let Some(p) = with("answer.reason", &a.reason, |t| optional_pointer(t))? {
        m.reason = p;
    }
    if let Some(p) = with("answer.attempts", &a.attempts, |t| optional_pointer(t))? {
        m.attempts = p;
    }
    let list = |field: &str, v: &Option<Spanned<Vec<String>>>| with(field, v, |l| codes(l));
    if let Some(l) = list("answer.committed", &a.committed)? {
        m.committed = l;
    }
    if let Some(l) = list("answer.declined", &a.declined)? {
        m.declined = l;
    }
    if let Some(l) = with("answer.out_of_stock", &a.out_of_stock, |l| {
        if l.len() > MAX_LIST {
            Err(format!("at most {MAX_LIST} values"))
        } else {
            Ok(l.clone())
        }
    })? {
        m.out_of_stock = l;
    }
    if let Some(l) = with("answer.mandate_rejected", &a.mandate_rejected, |l| {
        if l.len() > MAX_LIST {
            Err(format!("at most {MAX_LIST} values"))
        } else {
            Ok(l.clone())
        }
    })? {
        m.mandate_rejected = l;
    }
    if let Some(s) = with("answer.committed_status", &a.committed_status, |l| {
        statuses(l)
    })? {
        m.committed_status = s;
    }
    if let Some(s) = with("answer.declined_status", &a.declined_status, |l| {
        statuses(l)
    })? {
        m.declined_status = s;
    }
    if let Some(p) = with("answer.committed_fields", &a.committed_fields, |l| {
        pointers(l)
    })? {
        m.committed_fields = p;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(text: &str) -> Result<Contract, ContractError> {
        #[derive(Deserialize)]
        struct Doc {
            contract: ContractSpec,
        }
        let doc: Doc = toml::from_str(text).expect("toml");
        doc.contract.resolve()
    }

    #[test]
    fn every_profile_resolves_and_fills_in_to_json() {
        for p in Profile::ALL {
            let c = Contract::profile(p);
            assert!(!c.request.body.pieces().is_empty(), "{p:?}");
            let body = c.request.body.fill(sample);
            let v: serde_json::Value = serde_json::from_str(&body).expect("json");
            assert!(v.is_object());
            assert!(!c.answer.execution_id.tokens().is_empty());
            let spec = ContractSpec {
                profile: Some(Spanned::new(0..0, p)),
                ..ContractSpec::default()
            };
            assert_eq!(spec.resolve().expect("resolves"), c);
        }
        assert_eq!(Contract::default().profile, Profile::Zerorace);
    }

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
        assert_eq!(zinc.key, KeyPlace::Field(pointer("/idempotency_key")));
        assert!(zinc.existing.is_some());
        assert!(!s.key_required);
    }

    #[test]
    fn keys_override_their_profile() {
        let c = resolve(
            "[contract]\nprofile = \"ietf\"\nreplay_marker = \"header:Idempotent-Replayed\"\n\
             key_header = \"Cko-Idempotency-Key\"\nin_flight_status = [409, 425]\n\
             error_code = [\"/problem/code\"]\n",
        )
        .expect("resolves");
        assert_eq!(c.profile, Profile::Ietf);
        assert_eq!(
            c.replay_marker,
            ReplayMarker::Header("idempotent-replayed".into())
        );
        assert_eq!(c.key, KeyPlace::Header("cko-idempotency-key".into()));
        assert_eq!(c.in_flight.statuses, vec![409, 425]);
        assert_eq!(c.key_reused.statuses, vec![422], "the profile's, untouched");
        assert_eq!(c.error_code[0].tokens(), ["problem", "code"]);
    }

    #[test]
    fn another_shape_is_written_as_data() {
        let c = resolve(
            r#"[contract]
key_field = "/idem"
[contract.request]
method = "PUT"
path = "/shops/{merchant}/orders"
body = '{"idem":"{key}","sku":"{item}","qty":{quantity},"total":{amount_minor},"ccy":"{currency}","budget":"{mandate}","buyer":"{agent}"}'
lookup = ""
[contract.answer]
outcome = "/order/state"
committed = ["paid"]
declined = ["rejected"]
reason = "/order/why"
out_of_stock = ["sold_out"]
mandate_rejected = ["over_budget"]
execution_id = "/order/id"
amount_minor = "/order/total"
currency = "/order/ccy"
attempts = ""
committed_status = [200, 201]
declined_status = [200]
committed_fields = []
"#,
        )
        .expect("resolves");
        assert_eq!(c.request.method, Method::Put);
        assert!(c.request.path.uses(Slot::Merchant));
        assert_eq!(c.request.lookup, None);
        assert_eq!(c.answer.attempts, None);
        assert_eq!(c.answer.outcome.tokens(), ["order", "state"]);
        assert_eq!(c.answer.committed_status, vec![200, 201]);
    }

    #[test]
    fn mistakes_name_their_key_and_where_it_stands() {
        let bad = |text: &str, field: &str, says: &str| {
            let e = resolve(text).expect_err(text);
            assert_eq!(e.field, format!("target.contract.{field}"), "{text}");
            assert!(e.message.contains(says), "{}: {}", text, e.message);
            let value_start = text.find('=').map(|i| i + 2).unwrap_or(0);
            assert!(e.span.start >= value_start.min(e.span.start), "{e:?}");
        };
        bad(
            "[contract]\nreplay_marker = \"flag\"\n",
            "replay_marker",
            "header:NAME",
        );
        bad(
            "[contract]\nreplay_marker = \"body:/meta/replayed\"\n",
            "replay_marker",
            "top-level",
        );
        bad(
            "[contract]\nkey_header = \"Idempotency Key\"\n",
            "key_header",
            "not a header name",
        );
        bad(
            "[contract]\nkey_header = \"A\"\nkey_field = \"/k\"\n",
            "key_field",
            "not both",
        );
        bad(
            "[contract]\nkey_reused_status = [409, 1000]\n",
            "key_reused_status",
            "1000",
        );
        bad(
            "[contract]\nerror_code = [\"error.code\"]\n",
            "error_code",
            "starts with `/`",
        );
        bad(
            "[contract]\nin_flight_status = [409]\n",
            "in_flight_status",
            "both",
        );
        bad(
            "[contract]\nkey_field = \"/idempotency_key\"\n",
            "key_field",
            "{key}",
        );
        bad(
            "[contract.request]\nbody = '{\"qty\":{quantity},}'\n",
            "request.body",
            "not JSON",
        );
        bad(
            "[contract.request]\nbody = '{\"x\":\"{id}\"}'\n",
            "request.body",
            "{id}",
        );
        bad(
            "[contract.request]\nlookup = \"FETCH /x\"\n",
            "request.lookup",
            "GET, POST",
        );
        bad(
            "[contract.answer]\ncommitted_status = [302]\n",
            "answer.committed_status",
            "2xx",
        );
        bad(
            "[contract.answer]\ncommitted = [\"DONE\"]\ndeclined = [\"DONE\"]\n",
            "answer.declined",
            "both",
        );
        bad(
            "[contract]\nexisting = { status = [409], id = \"order\", lookup = \"GET /o/{id}\" }\n",
            "existing",
            "JSON pointer",
        );
        let e = resolve("[contract]\nkey_reused_status = [409, 1000]\n").expect_err("bad");
        let text = "[contract]\nkey_reused_status = [409, 1000]\n";
        assert_eq!(&text[e.span.clone()], "[409, 1000]");
    }

    #[test]
    fn pointers_follow_rfc_6901() {
        let p = Pointer::parse("/a~1b/c~0d/0").expect("ok");
        assert_eq!(p.tokens(), ["a/b", "c~d", "0"]);
        assert!(Pointer::parse("/a~2").is_err());
        assert!(Pointer::parse("a").is_err());
        assert!(Pointer::parse("").is_err());
        assert_eq!(Pointer::parse("/x").expect("ok").top_level(), Some("x"));
    }

    #[test]
    fn templates_keep_json_braces_and_fill_placeholders() {
        let t =
            Template::parse("{\"a\":{quantity},\"b\":\"{key}\",\"c\":{}}", BODY_SLOTS).expect("ok");
        assert_eq!(
            t.fill(|s| if s == Slot::Key {
                "k".into()
            } else {
                "3".into()
            }),
            "{\"a\":3,\"b\":\"k\",\"c\":{}}"
        );
        assert!(t.uses(Slot::Key) && !t.uses(Slot::Item));
        // An unknown name is text, not a placeholder.
        let t = Template::parse("/x/{other}", LOOKUP_SLOTS).expect("ok");
        assert_eq!(t.pieces(), [Piece::Text("/x/{other}".into())]);
    }
}
