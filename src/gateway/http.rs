//! A region reached over HTTP: the contract's requests, built and read back the way a
//! client on the other end of a network would.
//!
//! The purchase body is written straight into its buffer and the answer parsed once, so a
//! request costs the generator little more than the socket calls (the generator must not
//! be the bottleneck; `scripts/bench-http.sh` compares it with oha).

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request};

use super::contract::{self, Broken, Reading, Refusal, Reply};
use super::pool::{self, ConnectionFigures, ConnectionPool, Failure, Response};
use super::proxy::FaultProxy;
use super::tls::ClientTls;
use crate::addr::Endpoint;
use crate::history::Code;
use crate::history::Violation;
use crate::scenario::HttpVersion;
use crate::sut::kernel::PurchaseRequest;

const IDEMPOTENCY_KEY: header::HeaderName = header::HeaderName::from_static("idempotency-key");

/// Idle connections kept per region; more than any scenario's `in_flight` share needs.
const MAX_IDLE: usize = 4096;

/// One endpoint with its keep-alive connection pool.
pub struct HttpGateway {
    /// `http[s]://host[/prefix]`, for messages.
    pub url: String,
    server_name: String,
    pool: ConnectionPool,
    host: HeaderValue,
    prefix: String,
    commit_path: hyper::Uri,
    pub(super) proxy: Option<FaultProxy>,
    /// `Authorization: Bearer …` for a live endpoint.
    authorization: Option<HeaderValue>,
    /// Zinc's API shape (`POST /orders`, `already_exists`) instead of ZeroRace's.
    zinc: bool,
}

impl HttpGateway {
    /// A gateway to `endpoint`; `tls` is required when it is https (and unused otherwise).
    pub fn new(
        endpoint: Endpoint,
        tls: Option<ClientTls>,
        http: HttpVersion,
        proxy: Option<FaultProxy>,
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
        let commit_path = format!("{}/v1/purchases/commit", endpoint.prefix)
            .parse()
            .map_err(|e| format!("`{}`: {e}", endpoint.prefix))?;
        Ok(HttpGateway {
            url: endpoint.url(),
            server_name: tls_name,
            pool: ConnectionPool::with(endpoint.address, tls, http, MAX_IDLE),
            host,
            prefix: endpoint.prefix,
            commit_path,
            proxy,
            authorization: None,
            zinc: false,
        })
    }

    pub fn with_zinc(mut self, zinc: bool) -> HttpGateway {
        self.zinc = zinc;
        self
    }

    /// Send `Authorization: Bearer KEY` with every request.
    pub fn with_api_key(mut self, key: Option<String>) -> Result<HttpGateway, String> {
        self.authorization = match key {
            Some(k) => {
                let mut v = pool::header(&format!("Bearer {k}"))
                    .ok_or("the API key is not a valid header value")?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        Ok(self)
    }

    fn request(&self, method: Method, uri: hyper::Uri, body: Bytes) -> Request<Full<Bytes>> {
        let mut r = Request::new(Full::new(body));
        *r.method_mut() = method;
        *r.uri_mut() = uri;
        let h = r.headers_mut();
        h.insert(header::HOST, self.host.clone());
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(auth) = &self.authorization {
            h.insert(header::AUTHORIZATION, auth.clone());
        }
        r
    }

    /// `GET {prefix}{path}`.
    pub async fn get(&self, path: &str) -> Result<Response, Code> {
        let uri = format!("{}{path}", self.prefix)
            .parse()
            .map_err(|_| Code::BadRequest)?;
        self.pool
            .send(self.request(Method::GET, uri, Bytes::new()))
            .await
    }

    /// A harmless request before any purchase: the lookup of an intent that cannot exist.
    /// It proves the endpoint answers (TLS included) and takes the API key; a 404 is the
    /// expected answer. A failure keeps its cause.
    pub async fn probe(&self) -> Result<Response, Failure> {
        let path = if self.zinc {
            "/orders/00000000-0000-4000-8000-000000000000"
        } else {
            "/v1/purchases/00000000-0000-4000-8000-000000000000"
        };
        let uri = format!("{}{path}", self.prefix)
            .parse()
            .map_err(|e| Failure {
                code: Code::BadRequest,
                cause: Box::new(e),
            })?;
        self.pool
            .exchange(self.request(Method::GET, uri, Bytes::new()))
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

    /// `POST {prefix}{path}` with a JSON body.
    async fn post(&self, path: &str, body: Bytes) -> Result<Response, Code> {
        let uri = format!("{}{path}", self.prefix)
            .parse()
            .map_err(|_| Code::BadRequest)?;
        self.pool.send(self.request(Method::POST, uri, body)).await
    }

    /// Zinc: `already_exists` on a retry is success; the order is looked up by its id.
    async fn zinc_commit(&self, req: &PurchaseRequest, key: &str) -> Reply {
        let body = purchase_body(req, Some(key));
        let answer = match self.post("/orders", body).await {
            Ok(a) => a,
            Err(code) => return Reply::Transport(code),
        };
        let asked = asked(req);
        // `409 already_exists` names the order a retry should look up; anything else is an
        // answer to read by the contract.
        let order = (answer.status == 409)
            .then(|| serde_json::from_slice::<serde_json::Value>(&answer.body).ok())
            .flatten()
            .filter(|v| v["error"]["code"] == "already_exists")
            // Without an id the lookup fails and says so.
            .map(|v| {
                v["error"]["order_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            });
        let Some(id) = order else {
            return reply_of(answer.status, &answer.body, asked);
        };
        match self.get(&format!("/orders/{id}")).await {
            // The stored order, learned by lookup: a replay whatever its `replayed` says.
            Ok(Response { status: 200, body }) => match contract::read_stored(&body, asked) {
                Ok(mut a) => {
                    a.replayed = true;
                    Reply::Answer(a)
                }
                Err(broken) => Reply::Violation(broken),
            },
            Ok(a) => Reply::Violation(Broken {
                violation: Violation::Unparseable,
                status: a.status,
                excerpt: format!(
                    "order lookup answered HTTP {}: {}",
                    a.status,
                    contract::excerpt(&a.body)
                ),
            }),
            Err(code) => Reply::Transport(code),
        }
    }

    /// `POST /v1/purchases/commit`, mapped back to what the kernel would have answered.
    pub async fn commit(&self, req: &PurchaseRequest, key: &str) -> Reply {
        if self.zinc {
            // Boxed: the common path's future stays small (see `agent::run_purchase`).
            return Box::pin(self.zinc_commit(req, key)).await;
        }
        let Some(key_header) = pool::header(key) else {
            // Keys are swarm's own and always valid header values; refuse rather than send.
            return Reply::Refused(Refusal {
                code: Code::BadRequest,
                status: 0,
                attempts: 0,
            });
        };
        let mut r = self.request(
            Method::POST,
            self.commit_path.clone(),
            purchase_body(req, None),
        );
        r.headers_mut().insert(IDEMPOTENCY_KEY, key_header);
        match self.pool.send(r).await {
            Ok(a) => reply_of(a.status, &a.body, asked(req)),
            Err(code) => Reply::Transport(code),
        }
    }
}

/// The contract's JSON body for `req`, written in one pass; with `zinc_key` the key
/// travels in the body as `idempotency_key` (Zinc's shape).
fn purchase_body(req: &PurchaseRequest, zinc_key: Option<&str>) -> Bytes {
    let mut digits = itoa::Buffer::new();
    let mut b: Vec<u8> = Vec::with_capacity(224 + req.agent_id.len());
    let mut uuid = uuid::Uuid::encode_buffer();
    let mut field = |b: &mut Vec<u8>, name: &str, id: &uuid::Uuid| {
        b.extend_from_slice(name.as_bytes());
        b.extend_from_slice(id.hyphenated().encode_lower(&mut uuid).as_bytes());
        b.push(b'"');
    };
    field(&mut b, "{\"merchantId\":\"", &req.merchant_id);
    field(&mut b, ",\"mandateId\":\"", &req.mandate_id);
    field(&mut b, ",\"itemId\":\"", &req.item_id);
    b.extend_from_slice(b",\"agentId\":");
    // Writing JSON into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut b, &req.agent_id);
    b.extend_from_slice(b",\"quantity\":");
    b.extend_from_slice(digits.format(req.quantity).as_bytes());
    b.extend_from_slice(b",\"amountMinor\":");
    b.extend_from_slice(digits.format(req.amount_minor).as_bytes());
    b.extend_from_slice(b",\"currency\":\"");
    b.extend_from_slice(req.currency.as_str().as_bytes());
    b.push(b'"');
    if let Some(key) = zinc_key {
        b.extend_from_slice(b",\"idempotency_key\":");
        let _ = serde_json::to_writer(&mut b, key);
    }
    b.push(b'}');
    Bytes::from(b)
}

/// What the answer must repeat of the request.
fn asked(req: &PurchaseRequest) -> contract::Asked<'_> {
    contract::Asked {
        amount_minor: req.amount_minor,
        currency: req.currency.as_str(),
    }
}

/// An answer read by the contract.
fn reply_of(status: u16, body: &[u8], asked: contract::Asked<'_>) -> Reply {
    match contract::read(status, body, asked) {
        Ok(Reading::Answer(a)) => Reply::Answer(a),
        Ok(Reading::Refused(r)) => Reply::Refused(r),
        Err(broken) => Reply::Violation(broken),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sut::kernel::Currency;

    #[test]
    fn the_purchase_body_is_the_contracts_json() {
        let req = PurchaseRequest {
            merchant_id: uuid::Uuid::from_u128(1),
            mandate_id: uuid::Uuid::from_u128(2),
            item_id: uuid::Uuid::from_u128(3),
            agent_id: "agent \"7\"".into(),
            quantity: 2,
            amount_minor: 5000,
            currency: Currency::parse("USD").unwrap(),
        };
        let v: serde_json::Value = serde_json::from_slice(&purchase_body(&req, None)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "merchantId": "00000000-0000-0000-0000-000000000001",
                "mandateId": "00000000-0000-0000-0000-000000000002",
                "itemId": "00000000-0000-0000-0000-000000000003",
                "agentId": "agent \"7\"", "quantity": 2, "amountMinor": 5000, "currency": "USD",
            })
        );
        let z: serde_json::Value =
            serde_json::from_slice(&purchase_body(&req, Some("k-1"))).unwrap();
        assert_eq!(z["idempotency_key"], "k-1");
        assert_eq!(z["quantity"], 2);
    }
}
