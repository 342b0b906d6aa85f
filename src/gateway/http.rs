//! A region reached over HTTP: the contract's requests, built and read back the way a
//! client on the other end of a network would.
//!
//! The request is the scenario's `Contract` filled in: its method and path, its body
//! template written straight into one buffer, the key in the header or body field the
//! contract names. The answer is parsed once, by the same contract (`contract::read`),
//! so a request costs the generator little more than the socket calls (the generator
//! must not be the bottleneck; `scripts/bench-http.sh` compares it with oha).

use std::sync::Arc;

use bytes::Bytes;
use hyper::Method;
use hyper::header::HeaderName;

use super::contract::{self, Asked, Broken, Heard, Reading, Refusal, Reply};
use super::h1;
use super::pool::{
    self, Body, ConnectionFigures, ConnectionPool, Failure, Preset, Request, Response,
};
use super::proxy::FaultProxy;
use super::tls::ClientTls;
use crate::addr::Endpoint;
use crate::history::{Code, Violation};
use crate::scenario::{
    Contract, HttpVersion, KeyPlace, Piece, ReplayMarker, Route, Slot, Template,
};
use crate::sut::kernel::PurchaseRequest;

/// Idle connections kept per region; more than any scenario's `in_flight` share needs.
const MAX_IDLE: usize = 4096;

/// One endpoint with its keep-alive connection pool, speaking one contract.
pub struct HttpGateway {
    /// `http[s]://host[/prefix]`, for messages.
    pub url: String,
    server_name: String,
    pool: ConnectionPool,
    prefix: String,
    contract: Arc<Contract>,
    method: Method,
    /// The purchase's URI when its path has no placeholders (the common case).
    commit_uri: Option<hyper::Uri>,
    key_header: Option<HeaderName>,
    pub(super) proxy: Option<FaultProxy>,
    /// The contract's lookup by key answered for keys known to be stored (cleared when it
    /// did not: a server without the route must not look like one that lost the keys).
    lookup_works: std::sync::atomic::AtomicBool,
}

impl HttpGateway {
    /// A gateway to `endpoint` speaking `contract`; `tls` is required when it is https
    /// (and unused otherwise).
    pub fn new(
        endpoint: Endpoint,
        tls: Option<ClientTls>,
        http: HttpVersion,
        proxy: Option<FaultProxy>,
        contract: Arc<Contract>,
    ) -> Result<HttpGateway, String> {
        if endpoint.tls != tls.is_some() {
            return Err(format!(
                "`{}`: TLS settings {} for this scheme",
                endpoint.url(),
                if endpoint.tls {
                    "are missing"
                } else {
                    "do not apply"
                }
            ));
        }
        let tls_name = tls
            .as_ref()
            .map(|t| t.server_name.to_str().into_owned())
            .unwrap_or_default();
        let host = pool::header(&endpoint.host)
            .ok_or_else(|| format!("`{}` is not a valid Host header", endpoint.host))?;
        let path = &contract.request.path;
        let commit_uri = match path.pieces() {
            [Piece::Text(p)] => Some(
                format!("{}{p}", endpoint.prefix)
                    .parse()
                    .map_err(|e| format!("`{}{p}`: {e}", endpoint.prefix))?,
            ),
            _ => None,
        };
        let header_name = |name: &str| {
            HeaderName::from_bytes(name.as_bytes()).map_err(|e| format!("header `{name}`: {e}"))
        };
        let key_header = match &contract.key {
            KeyPlace::Header(h) => Some(header_name(h)?),
            KeyPlace::Field(_) => None,
        };
        let marker_header = match &contract.replay_marker {
            ReplayMarker::Header(h) => Some(header_name(h)?),
            _ => None,
        };
        let preset = Preset {
            host,
            authorization: None,
            marker: marker_header,
        };
        Ok(HttpGateway {
            url: endpoint.url(),
            server_name: tls_name,
            pool: ConnectionPool::with(endpoint.address, tls, http, MAX_IDLE, preset),
            prefix: endpoint.prefix,
            method: method_of(contract.request.method),
            contract,
            commit_uri,
            key_header,
            proxy,
            lookup_works: std::sync::atomic::AtomicBool::new(true),
        })
    }

    /// Send `Authorization: Bearer KEY` with every request.
    pub fn with_api_key(mut self, key: Option<String>) -> Result<HttpGateway, String> {
        let authorization = match key {
            Some(k) => {
                let mut v = pool::header(&format!("Bearer {k}"))
                    .ok_or("the API key is not a valid header value")?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        self.pool.authorize(authorization);
        Ok(self)
    }

    /// The contract this gateway speaks.
    pub fn contract(&self) -> &Contract {
        &self.contract
    }

    /// A request without the contract's key (the pool adds the endpoint's headers).
    fn request<'a>(method: Method, uri: &'a hyper::Uri, body: Body<'a>) -> Request<'a> {
        Request {
            method,
            uri,
            key: None,
            body,
        }
    }

    /// `GET {prefix}{path}`.
    pub async fn get(&self, path: &str) -> Result<Response, Code> {
        let uri = format!("{}{path}", self.prefix)
            .parse()
            .map_err(|_| Code::BadRequest)?;
        self.pool
            .send(Self::request(Method::GET, &uri, Body::Bytes(Bytes::new())))
            .await
    }

    /// A harmless request before any purchase: the contract's lookup of a key no one
    /// sent, else a GET of the purchase path. It proves the endpoint answers (TLS
    /// included) and takes the API key. A failure keeps its cause.
    pub async fn probe(&self) -> Result<Response, Failure> {
        let path = match &self.contract.request.lookup {
            Some(route) => &route.path,
            None => &self.contract.request.path,
        };
        let uri = self.uri(path, &Fill::preflight()).map_err(|e| Failure {
            code: Code::BadRequest,
            cause: e.into(),
        })?;
        self.pool
            .exchange(Self::request(Method::GET, &uri, Body::Bytes(Bytes::new())))
            .await
    }

    /// Why TLS fails here, when a request failed without saying (see `ConnectionPool`).
    pub async fn diagnose_tls(&self) -> Option<Box<dyn std::error::Error + Send + Sync>> {
        self.pool
            .diagnose_tls(std::time::Duration::from_secs(2))
            .await
    }

    /// The name a certificate must show (for messages).
    pub fn server_name(&self) -> &str {
        &self.server_name
    }

    /// Connections opened so far, resumed TLS sessions, HTTP/2.
    pub fn connections(&self) -> ConnectionFigures {
        self.pool.figures()
    }

    /// The contract's purchase request, read back by the contract.
    pub async fn commit(&self, req: &PurchaseRequest, key: &str) -> Reply {
        self.commit_as(req, Some(key)).await
    }

    /// The purchase with `key` as given (`None`: no key at all), for the conformance
    /// probe's malformed keys as for every agent's request.
    pub async fn commit_as(&self, req: &PurchaseRequest, key: Option<&str>) -> Reply {
        let fill = Fill {
            req: Some(req),
            key: key.unwrap_or(""),
            id: "",
        };
        let filled;
        let uri = match &self.commit_uri {
            Some(uri) => uri,
            None => match self.uri(&self.contract.request.path, &fill) {
                Ok(uri) => {
                    filled = uri;
                    &filled
                }
                Err(_) => return bad_request(),
            },
        };
        // The body is written straight into the connection's buffer (HTTP/1.1).
        let write =
            |out: &mut Vec<u8>| render(&self.contract.request.body, &fill, out, Escape::Json);
        let mut r = Self::request(self.method.clone(), uri, Body::Write(&write));
        if let (Some(name), Some(key)) = (&self.key_header, key) {
            if !pool::header_value(key) {
                // Keys are swarm's own and valid header values; refuse rather than send.
                return bad_request();
            }
            r.key = Some((name, key));
        }
        match self.pool.send(r).await {
            Ok(a) => self.reply(a, req, key.unwrap_or("")).await,
            Err(code) => Reply::Transport(code),
        }
    }

    /// What an answer means by the contract (an "already exists" answer is followed to
    /// the resource it names).
    async fn reply(&self, a: Response, req: &PurchaseRequest, key: &str) -> Reply {
        let asked = asked(req);
        match self.read(&a, asked) {
            Ok(Reading::Answer(answer)) => Reply::Answer(answer),
            Ok(Reading::Refused(r)) => Reply::Refused(r),
            Ok(Reading::Exists(id)) => {
                // Boxed: the common path's future stays small (see `agent::run_purchase`).
                Box::pin(self.existing(req, key, &id)).await
            }
            Err(broken) => Reply::Violation(broken),
        }
    }

    fn read(&self, a: &Response, asked: Asked<'_>) -> Result<Reading, Broken> {
        if a.oversized {
            return Err(Broken {
                violation: Violation::Unparseable,
                status: a.status,
                excerpt: format!(
                    "an answer longer than {} bytes: {}",
                    h1::MAX_ANSWER_BYTES,
                    contract::excerpt(&a.body)
                ),
                execution: 0,
            });
        }
        let heard = Heard {
            status: a.status,
            header_marked: Self::marked(a),
            body: &a.body,
        };
        contract::read(&self.contract, heard, asked)
    }

    /// The contract's replay header is present, with any value but `false` or `0` (the
    /// pool keeps that header's value, and no other, in every answer).
    fn marked(a: &Response) -> bool {
        a.marker.as_ref().is_some_and(|v| {
            let v = v.trim_ascii();
            !(v.eq_ignore_ascii_case(b"false") || v == b"0")
        })
    }

    /// Follow an "already exists" answer to the stored resource (Zinc's way): what the
    /// lookup returns is the stored answer, a replay by construction.
    async fn existing(&self, req: &PurchaseRequest, key: &str, id: &str) -> Reply {
        let Some(existing) = &self.contract.existing else {
            return bad_request();
        };
        let fill = Fill {
            req: Some(req),
            key,
            id,
        };
        self.stored(&existing.lookup, &fill, req).await
    }

    /// A final read of `key`: the contract's lookup by key when it has one (`None`: it
    /// has none, replay the purchase instead).
    pub async fn lookup(&self, req: &PurchaseRequest, key: &str) -> Option<Reply> {
        if !self.lookup_works.load(std::sync::atomic::Ordering::Relaxed) {
            return None;
        }
        let route = self.contract.request.lookup.as_ref()?;
        let fill = Fill {
            req: Some(req),
            key,
            id: "",
        };
        Some(self.stored(route, &fill, req).await)
    }

    /// Final reads replay instead of looking up from now on.
    pub fn stop_lookups(&self) {
        self.lookup_works
            .store(false, std::sync::atomic::Ordering::Relaxed);
    }

    /// The contract has a lookup by key, not (yet) found wanting.
    pub fn looks_up(&self) -> bool {
        self.contract.request.lookup.is_some()
            && self.lookup_works.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// GET a stored answer: 200 is the answer (a replay), 404 says nothing is stored,
    /// anything else is read as a purchase's answer would be.
    async fn stored(&self, route: &Route, fill: &Fill<'_>, req: &PurchaseRequest) -> Reply {
        let Ok(uri) = self.uri(&route.path, fill) else {
            return bad_request();
        };
        let write =
            |out: &mut Vec<u8>| render(&self.contract.request.body, fill, out, Escape::Json);
        let body = match route.method {
            crate::scenario::Method::Get => Body::Bytes(Bytes::new()),
            _ => Body::Write(&write),
        };
        let a = match self
            .pool
            .send(Self::request(method_of(route.method), &uri, body))
            .await
        {
            Ok(a) => a,
            Err(code) => return Reply::Transport(code),
        };
        match a.status {
            200 if !a.oversized => match contract::read_stored(&self.contract, &a.body, asked(req))
            {
                Ok(answer) => Reply::Answer(answer),
                Err(broken) => Reply::Violation(broken),
            },
            404 => Reply::Refused(Refusal {
                code: Code::Absent,
                status: 404,
                attempts: 0,
            }),
            _ => match self.read(&a, asked(req)) {
                Ok(Reading::Answer(answer)) => Reply::Answer(answer),
                Ok(Reading::Refused(r)) => Reply::Refused(r),
                Ok(Reading::Exists(_)) => Reply::Violation(Broken {
                    violation: Violation::StatusMismatch,
                    status: a.status,
                    excerpt: format!(
                        "a lookup answered \"already exists\": {}",
                        contract::excerpt(&a.body)
                    ),
                    execution: 0,
                }),
                Err(broken) => Reply::Violation(broken),
            },
        }
    }

    fn uri(&self, path: &Template, fill: &Fill<'_>) -> Result<hyper::Uri, String> {
        let mut out = Vec::with_capacity(self.prefix.len() + 64);
        out.extend_from_slice(self.prefix.as_bytes());
        render(path, fill, &mut out, Escape::Path);
        hyper::Uri::try_from(out).map_err(|e| e.to_string())
    }
}

fn bad_request() -> Reply {
    Reply::Refused(Refusal {
        code: Code::BadRequest,
        status: 0,
        attempts: 0,
    })
}

fn method_of(m: crate::scenario::Method) -> Method {
    match m {
        crate::scenario::Method::Get => Method::GET,
        crate::scenario::Method::Post => Method::POST,
        crate::scenario::Method::Put => Method::PUT,
        crate::scenario::Method::Patch => Method::PATCH,
    }
}

/// The values a template is filled with.
struct Fill<'a> {
    req: Option<&'a PurchaseRequest>,
    key: &'a str,
    id: &'a str,
}

impl Fill<'static> {
    /// The preflight's lookup: a key no client sends.
    fn preflight() -> Fill<'static> {
        Fill {
            req: None,
            key: "swarm-preflight-00000000-0000-4000-8000-000000000000",
            id: "00000000-0000-4000-8000-000000000000",
        }
    }
}

/// How a filled-in value is written: inside a JSON body (string characters escaped) or a
/// URL path (anything but unreserved characters percent-encoded).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Escape {
    Json,
    Path,
}

fn render(t: &Template, fill: &Fill<'_>, out: &mut Vec<u8>, escape: Escape) {
    let mut digits = itoa::Buffer::new();
    let mut uuid = uuid::Uuid::encode_buffer();
    for piece in t.pieces() {
        let value: &str = match piece {
            Piece::Text(text) => {
                out.extend_from_slice(text.as_bytes());
                continue;
            }
            Piece::Slot(slot) => match (slot, fill.req) {
                (Slot::Key, _) => fill.key,
                (Slot::Id, _) => fill.id,
                (Slot::Merchant, Some(r)) => r.merchant_id.hyphenated().encode_lower(&mut uuid),
                (Slot::Mandate, Some(r)) => r.mandate_id.hyphenated().encode_lower(&mut uuid),
                (Slot::Item, Some(r)) => r.item_id.hyphenated().encode_lower(&mut uuid),
                (Slot::Agent, Some(r)) => &r.agent_id,
                (Slot::Quantity, Some(r)) => digits.format(r.quantity),
                (Slot::AmountMinor, Some(r)) => digits.format(r.amount_minor),
                (Slot::Currency, Some(r)) => r.currency.as_str(),
                (_, None) => "",
            },
        };
        write_escaped(value, out, escape);
    }
}

fn write_escaped(value: &str, out: &mut Vec<u8>, escape: Escape) {
    // Most values (ids, numbers, keys) need no escaping: copied whole, up to the first byte
    // that does.
    let plain = |b: u8| match escape {
        Escape::Json => b >= 0x20 && b != b'"' && b != b'\\',
        Escape::Path => b.is_ascii_alphanumeric() || b"-._~".contains(&b),
    };
    let bytes = value.as_bytes();
    let clean = bytes.iter().position(|&b| !plain(b)).unwrap_or(bytes.len());
    out.extend_from_slice(&bytes[..clean]);
    let value = &bytes[clean..];
    match escape {
        Escape::Json => {
            for &b in value {
                match b {
                    b'"' => out.extend_from_slice(b"\\\""),
                    b'\\' => out.extend_from_slice(b"\\\\"),
                    0..=0x1f => {
                        const HEX: &[u8; 16] = b"0123456789abcdef";
                        out.extend_from_slice(b"\\u00");
                        out.push(HEX[usize::from(b >> 4)]);
                        out.push(HEX[usize::from(b & 15)]);
                    }
                    _ => out.push(b),
                }
            }
        }
        Escape::Path => {
            for &b in value {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    out.push(b);
                } else {
                    const HEX: &[u8; 16] = b"0123456789ABCDEF";
                    out.push(b'%');
                    out.push(HEX[usize::from(b >> 4)]);
                    out.push(HEX[usize::from(b & 15)]);
                }
            }
        }
    }
}

/// What the answer must repeat of the request.
fn asked(req: &PurchaseRequest) -> Asked<'_> {
    Asked {
        amount_minor: req.amount_minor,
        currency: req.currency.as_str(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Profile;
    use crate::sut::kernel::Currency;

    fn req() -> PurchaseRequest {
        PurchaseRequest {
            merchant_id: uuid::Uuid::from_u128(1),
            mandate_id: uuid::Uuid::from_u128(2),
            item_id: uuid::Uuid::from_u128(3),
            agent_id: "agent \"7\"".into(),
            quantity: 2,
            amount_minor: 5000,
            currency: Currency::parse("USD").unwrap(),
        }
    }

    /// The body of a request, in a buffer of its own.
    fn body(t: &Template, fill: &Fill<'_>) -> Vec<u8> {
        let mut b = Vec::new();
        render(t, fill, &mut b, Escape::Json);
        b
    }

    fn filled(profile: Profile, key: &str) -> serde_json::Value {
        let c = Contract::profile(profile);
        let r = req();
        let fill = Fill {
            req: Some(&r),
            key,
            id: "",
        };
        serde_json::from_slice(&body(&c.request.body, &fill)).unwrap()
    }

    #[test]
    fn the_purchase_body_is_the_contracts_json() {
        assert_eq!(
            filled(Profile::Zerorace, "k-1"),
            serde_json::json!({
                "merchantId": "00000000-0000-0000-0000-000000000001",
                "mandateId": "00000000-0000-0000-0000-000000000002",
                "itemId": "00000000-0000-0000-0000-000000000003",
                "agentId": "agent \"7\"", "quantity": 2, "amountMinor": 5000, "currency": "USD",
            })
        );
        let z = filled(Profile::Zinc, "k-\\1");
        assert_eq!(z["idempotency_key"], "k-\\1", "escaped in, read back whole");
        assert_eq!(z["quantity"], 2);
    }

    #[test]
    fn path_values_are_percent_encoded() {
        let t = Template::parse("/orders/{id}", &[Slot::Id]).unwrap();
        let mut out = Vec::new();
        let fill = Fill {
            req: None,
            key: "",
            id: "a b/ü",
        };
        render(&t, &fill, &mut out, Escape::Path);
        assert_eq!(String::from_utf8(out).unwrap(), "/orders/a%20b%2F%C3%BC");
    }
}
