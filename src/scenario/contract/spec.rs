//! `[target.contract]` as written (`ContractSpec`: every key optional, overriding one choice
//! of its profile) and its resolution into a checked `Contract`.
//!
//! Invariants: a spec resolves only into a complete `Contract` (see `contract`'s own
//! invariants: every pointer and template parsed, every status in 100..=599, the body a JSON
//! object once filled in, no status meaning two things); every list is at most `MAX_LIST`
//! entries; an error names its key under `target.contract.` and carries the span of its
//! value in the file.
//!
//! It stays one file so that each key's field in the spec and the code that resolves it are
//! read, and added, in one place; over a quarter of it is its tests.

use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use super::template::path_template;
use super::{
    AnswerMap, BODY_SLOTS, Contract, EXISTING_SLOTS, Existing, KeyPlace, LOOKUP_SLOTS, Method,
    Pointer, Profile, ReplayMarker, Route, Slot, StatusRule, Template, key_header_name,
};

/// Most entries of a list (statuses, codes, pointers) a contract takes.
const MAX_LIST: usize = 32;

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
    pub key_retention_s: Option<Spanned<i64>>,
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
    pub volatile_fields: Option<Spanned<Vec<String>>>,
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
                    key_header_name(h.get_ref()).or_else(|m| fail("key_header", h.span(), m))?,
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
        if let Some(n) = with("key_retention_s", &self.key_retention_s, |n| {
            u32::try_from(*n)
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{n}: seconds from 1 to {}", u32::MAX))
        })? {
            c.key_retention_s = Some(n);
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
            return fail(
                "in_flight_status",
                written_span(&self.in_flight_status),
                format!(
                    "{s} cannot mean both a reused key and a request in flight (tell them apart with key_reused_code or in_flight_code)"
                ),
            );
        }
        let a = &c.answer;
        let volatile_span = || {
            self.answer
                .as_ref()
                .map_or(0..0, |spec| written_span(&spec.volatile_fields))
        };
        for name in &a.volatile_fields {
            if a.read_fields().any(|read| read == name) {
                return fail(
                    "answer.volatile_fields",
                    volatile_span(),
                    format!(
                        "`/{name}` is a field the contract reads an answer by: it cannot also differ from answer to answer"
                    ),
                );
            }
            if c.replay_marker.body_field() == Some(name.as_str()) {
                return fail(
                    "answer.volatile_fields",
                    volatile_span(),
                    format!(
                        "`/{name}` is the replay marker: it is left out of comparisons already"
                    ),
                );
            }
        }
        if let Some(s) = c.replay_status.iter().find(|s| {
            a.committed_status.contains(s)
                || a.declined_status.contains(s)
                || (c.key_reused.statuses.contains(s) && c.key_reused.codes.is_empty())
                || (c.in_flight.statuses.contains(s) && c.in_flight.codes.is_empty())
        }) {
            return fail(
                "replay_status",
                written_span(&self.replay_status),
                format!(
                    "{s} already means something else here (an outcome, a reused key or a request in flight)"
                ),
            );
        }
        if a.committed.is_empty() || a.declined.is_empty() {
            return fail(
                "answer.committed",
                self.answer_span(|x| &x.committed),
                "name at least one committed and one declined value",
            );
        }
        if let Some(v) = a.committed.iter().find(|v| a.declined.contains(v)) {
            return fail(
                "answer.declined",
                self.answer_span(|x| &x.declined),
                format!("`{v}` is both committed and declined"),
            );
        }
        if a.committed_status.is_empty() || a.declined_status.is_empty() {
            return fail(
                "answer.committed_status",
                self.answer_span(|x| &x.committed_status),
                "name at least one status for each outcome",
            );
        }
        if let Some(s) = a
            .committed_status
            .iter()
            .chain(&a.declined_status)
            .find(|s| !(200..=299).contains(*s))
        {
            return fail(
                "answer.committed_status",
                self.answer_span(|x| &x.committed_status),
                format!("{s}: a business answer is a 2xx"),
            );
        }
        Ok(())
    }

    /// Where a key of `[target.contract.answer]` stands in the file (`0..0`: not written).
    fn answer_span<T>(&self, key: impl Fn(&AnswerSpec) -> &Option<Spanned<T>>) -> Range<usize> {
        self.answer.as_ref().map_or(0..0, |a| written_span(key(a)))
    }
}

/// Where a written value stands in the file (`0..0`: the key is not written).
fn written_span<T>(value: &Option<Spanned<T>>) -> Range<usize> {
    value.as_ref().map_or(0..0, Spanned::span)
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
    // A decline's reasons: any values, at most `MAX_LIST` of them.
    let reasons = |field: &str, v: &Option<Spanned<Vec<String>>>| {
        with(field, v, |l| {
            if l.len() > MAX_LIST {
                Err(format!("at most {MAX_LIST} values"))
            } else {
                Ok(l.clone())
            }
        })
    };
    if let Some(l) = reasons("answer.out_of_stock", &a.out_of_stock)? {
        m.out_of_stock = l;
    }
    if let Some(l) = reasons("answer.mandate_rejected", &a.mandate_rejected)? {
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
    if let Some(names) = with("answer.volatile_fields", &a.volatile_fields, |l| {
        pointers(l)?
            .iter()
            .map(|p| {
                p.top_level().map(str::to_owned).ok_or_else(|| {
                    format!(
                        "`{}`: a volatile field is a top-level field (e.g. `/requestId`)",
                        p.text()
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()
    })? {
        m.volatile_fields = names;
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
        assert!(c.answer.volatile_fields.is_empty(), "none unless named");
        let c = resolve("[contract.answer]\nvolatile_fields = [\"/requestId\", \"/served~1at\"]\n")
            .expect("resolves");
        assert_eq!(c.answer.volatile_fields, ["requestId", "served/at"]);
        let c = resolve("[contract]\nprofile = \"stripe\"\nkey_retention_s = 3600\n")
            .expect("resolves");
        assert_eq!(c.key_retention_s, Some(3600));
        assert_eq!(
            resolve("[contract]\nprofile = \"stripe\"\n")
                .expect("resolves")
                .key_retention_s,
            Some(86_400),
            "Stripe's own"
        );
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
            "[contract]\nkey_retention_s = 0\n",
            "key_retention_s",
            "seconds",
        );
        bad(
            "[contract.answer]\nvolatile_fields = [\"/meta/requestId\"]\n",
            "answer.volatile_fields",
            "top-level",
        );
        bad(
            "[contract.answer]\nvolatile_fields = [\"/requestId\", \"/intentId\"]\n",
            "answer.volatile_fields",
            "reads an answer by",
        );
        bad(
            "[contract.answer]\nvolatile_fields = [\"/replayed\"]\n",
            "answer.volatile_fields",
            "replay marker",
        );
        bad(
            "[contract]\nkey_header = \"Connection\"\n",
            "key_header",
            "connection-specific",
        );
        bad(
            "[contract]\nkey_header = \"te\"\n",
            "key_header",
            "connection-specific",
        );
        bad(
            "[contract]\nkey_header = \"Content-Length\"\n",
            "key_header",
            "writes itself",
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
}
