//! `swarm serve`: the kernel contract over HTTP (axum).
//!
//! Invariants: every response is either the kernel's snapshot bytes (201/200, byte for
//! byte) or a JSON error `{"error":{"code","field","message"}}` with the status docs/design.md
//! gives; nothing is stored unless the kernel stored it (auth, size, type and shape are
//! refused before the kernel is called); load beyond `max_in_flight` is shed with 503 and
//! `Retry-After` instead of queueing without bound. The server knows nothing of agents.

// Handlers return `Result<_, Response>`: the error *is* the reply, built once per request.
#![allow(clippy::result_large_err)]

pub mod tls;
mod wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use hdrhistogram::Histogram;
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use crate::sut::kernel::{Kernel, KernelError, Outcome, PurchaseRequest, Snapshot};
pub use wire::{WireError, parse_purchase};

/// The OpenAPI 3 document for every route, served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("../../../openapi/openapi.json");

/// The largest request body `swarm serve` reads by default (413 beyond): a purchase's JSON
/// is a few hundred bytes.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Requests `swarm serve` handles at once by default before shedding with 503.
pub const MAX_IN_FLIGHT: usize = 1024;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Bearer keys accepted on the purchase routes; empty means no authentication.
    pub api_keys: Vec<String>,
    /// Requests handled at once before shedding with 503.
    pub max_in_flight: usize,
    /// Largest request body, in bytes (413 beyond).
    pub body_limit_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            api_keys: Vec::new(),
            max_in_flight: MAX_IN_FLIGHT,
            body_limit_bytes: MAX_BODY_BYTES,
        }
    }
}

/// Counters for `/metrics`.
#[derive(Default)]
struct Counters {
    commits: AtomicU64,
    declines: AtomicU64,
    replays: AtomicU64,
    occ_retries: AtomicU64,
    refused: AtomicU64,
    shed: AtomicU64,
}

struct App {
    kernel: Kernel,
    config: ServerConfig,
    slots: Arc<Semaphore>,
    counters: Counters,
    latency_us: std::sync::Mutex<Histogram<u64>>,
}

fn error(status: u16, code: &str, field: Option<&str>, message: impl Into<String>) -> Response {
    let body = serde_json::json!({
        "error": { "code": code, "field": field, "message": message.into() }
    })
    .to_string();
    json(status, body)
}

fn json(status: u16, body: String) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn kernel_error(e: &KernelError) -> Response {
    let mut r = error(e.status(), e.code(), e.field(), e.to_string());
    if e.status() == 503 {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

impl App {
    fn authorized(&self, headers: &HeaderMap) -> bool {
        if self.config.api_keys.is_empty() {
            return true;
        }
        let Some(given) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        // Every key is compared, in constant time, whichever matches.
        self.config.api_keys.iter().fold(false, |ok, k| {
            ok | bool::from(k.as_bytes().ct_eq(given.as_bytes()))
        })
    }

    /// Read a JSON body within the limit, or the response that refuses it.
    async fn body(&self, headers: &HeaderMap, body: Body) -> Result<bytes::Bytes, WireError> {
        let json_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("application/json")
            });
        if !json_type {
            return Err(WireError::new(
                415,
                "UNSUPPORTED_MEDIA_TYPE",
                None,
                "send Content-Type: application/json",
            ));
        }
        to_bytes(body, self.config.body_limit_bytes)
            .await
            .map_err(|_| {
                WireError::new(
                    413,
                    "PAYLOAD_TOO_LARGE",
                    None,
                    format!(
                        "bodies are limited to {} bytes",
                        self.config.body_limit_bytes
                    ),
                )
            })
    }

    /// One kernel call, counted and timed for `/metrics` (both API shapes go through here).
    async fn counted_commit(
        &self,
        req: &PurchaseRequest,
        key: &str,
    ) -> Result<Snapshot, KernelError> {
        let start = Instant::now();
        let result = self.kernel.commit(req, key).await;
        if let Ok(mut h) = self.latency_us.lock() {
            let _ = h.record((start.elapsed().as_micros() as u64).max(1));
        }
        let c = &self.counters;
        match &result {
            Ok(s) if s.replayed => c.replays.fetch_add(1, Ordering::Relaxed),
            Ok(s) => {
                c.occ_retries
                    .fetch_add(u64::from(s.attempts.saturating_sub(1)), Ordering::Relaxed);
                match s.outcome {
                    Outcome::Committed => c.commits.fetch_add(1, Ordering::Relaxed),
                    Outcome::Declined => c.declines.fetch_add(1, Ordering::Relaxed),
                }
            }
            Err(_) => c.refused.fetch_add(1, Ordering::Relaxed),
        };
        result
    }

    async fn settle(&self, req: &PurchaseRequest, key: &str) -> Response {
        match self.counted_commit(req, key).await {
            Ok(s) => json(s.status(), s.json),
            Err(e) => kernel_error(&e),
        }
    }

    /// A slot for one request, or the 503 that sheds it.
    fn slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Response> {
        self.slots.clone().try_acquire_owned().map_err(|_| {
            self.counters.shed.fetch_add(1, Ordering::Relaxed);
            let mut r = error(
                503,
                "OVERLOADED",
                None,
                "too many requests in flight; retry the same key",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        })
    }

    /// Refuse a request without a valid API key (when keys are configured).
    fn guard(&self, headers: &HeaderMap) -> Result<(), Response> {
        if self.authorized(headers) {
            return Ok(());
        }
        Err(error(
            401,
            "UNAUTHORIZED",
            Some("Authorization"),
            "send Authorization: Bearer <api key>",
        ))
    }

    /// Slot, auth, content type, size and shape: the purchase and its raw body, or the
    /// response that refuses it. Nothing reaches the kernel before this passes.
    async fn admit(
        &self,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<
        (
            tokio::sync::OwnedSemaphorePermit,
            PurchaseRequest,
            Option<String>,
            bytes::Bytes,
        ),
        Response,
    > {
        let slot = self.slot()?;
        self.guard(headers)?;
        let bytes = self
            .body(headers, body)
            .await
            .map_err(|e| json(e.status, e.body()))?;
        let (req, body_key) = parse_purchase(&bytes).map_err(|e| json(e.status, e.body()))?;
        Ok((slot, req, body_key, bytes))
    }
}

fn idempotency_key(headers: &HeaderMap, body_key: Option<String>) -> Result<String, WireError> {
    // The header is authoritative; the body field is accepted when the header is absent.
    // Two of them would let a proxy and the kernel read different keys: refused.
    if headers.get_all("idempotency-key").iter().nth(1).is_some() {
        return Err(WireError::new(
            400,
            "DUPLICATE_HEADER",
            Some("Idempotency-Key"),
            "send one Idempotency-Key header",
        ));
    }
    match headers.get("idempotency-key") {
        Some(v) => v.to_str().map(str::to_string).map_err(|_| {
            WireError::new(
                400,
                "MALFORMED_FIELD",
                Some("Idempotency-Key"),
                "not printable ASCII",
            )
        }),
        None => body_key.ok_or_else(|| {
            WireError::new(
                400,
                "MISSING_FIELD",
                Some("Idempotency-Key"),
                "send the Idempotency-Key header",
            )
        }),
    }
}

async fn commit(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    let (_slot, req, body_key, _) = match app.admit(&headers, body).await {
        Ok(admitted) => admitted,
        Err(r) => return r,
    };
    match idempotency_key(&headers, body_key) {
        Ok(key) => app.settle(&req, &key).await,
        Err(e) => json(e.status, e.body()),
    }
}

async fn sandbox_commit(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    let _slot = match app.slot() {
        Ok(s) => s,
        Err(r) => return r,
    };
    let bytes = match app.body(&headers, body).await {
        Ok(b) => b,
        Err(e) => return json(e.status, e.body()),
    };
    if !matches!(
        serde_json::from_slice::<serde_json::Value>(&bytes),
        Ok(serde_json::Value::Object(_))
    ) {
        return error(400, "MALFORMED_JSON", None, "send {} as the body");
    }
    match idempotency_key(&headers, None) {
        Ok(key) => app.settle(&PurchaseRequest::sandbox(), &key).await,
        Err(e) => json(e.status, e.body()),
    }
}

/// Zinc's shape: the key travels in the body as `idempotency_key`, and a reused key is
/// answered `409 already_exists` with the order's id instead of a replay.
async fn zinc_order(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    let (_slot, req, _, bytes) = match app.admit(&headers, body).await {
        Ok(admitted) => admitted,
        Err(r) => return r,
    };
    let key = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| {
            v.get("idempotency_key")
                .and_then(|k| k.as_str().map(str::to_string))
        });
    let Some(key) = key else {
        return error(
            400,
            "MISSING_FIELD",
            Some("idempotency_key"),
            "send idempotency_key in the body",
        );
    };
    match app.counted_commit(&req, &key).await {
        Ok(s) if s.replayed => {
            let body = serde_json::json!({
                "error": {
                    "code": "already_exists",
                    "field": "idempotency_key",
                    "message": "an order with this idempotency_key exists",
                    "order_id": s.intent_id,
                }
            })
            .to_string();
            json(409, body)
        }
        Ok(s) => json(s.status(), s.json),
        Err(e) => kernel_error(&e),
    }
}

async fn by_intent(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = app.guard(&headers) {
        return r;
    }
    let Ok(id) = uuid::Uuid::parse_str(&id) else {
        return error(400, "MALFORMED_FIELD", Some("intentId"), "not a UUID");
    };
    match app.kernel.lookup_intent(id).await {
        Ok(Some(s)) => json(200, s.snapshot.json),
        Ok(None) => error(404, "NOT_FOUND", Some("intentId"), "no such intent"),
        Err(e) => kernel_error(&e),
    }
}

async fn by_key(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    if let Err(r) = app.guard(&headers) {
        return r;
    }
    let Some(key) = q.get("idempotencyKey") else {
        return error(
            400,
            "MISSING_FIELD",
            Some("idempotencyKey"),
            "give ?idempotencyKey=…",
        );
    };
    match app.kernel.lookup_key(key).await {
        Ok(Some(s)) => json(200, s.snapshot.json),
        Ok(None) => error(
            404,
            "NOT_FOUND",
            Some("idempotencyKey"),
            "no purchase under this key",
        ),
        Err(e) => kernel_error(&e),
    }
}

/// `GET /v1/sandbox`: where the stocked sandbox is, so a client can buy from it with
/// `POST /v1/purchases/commit` (what `target.discover = "sandbox"` reads).
async fn sandbox() -> Response {
    use crate::sut::db::seed::sandbox as s;
    json(
        200,
        serde_json::json!({
            "merchantId": s::MERCHANT, "mandateId": s::MANDATE, "itemId": s::ITEM,
            "unitPriceMinor": s::PRICE_MINOR, "currency": s::CURRENCY,
            "initialStock": s::STOCK, "capMinor": s::CAP_MINOR,
        })
        .to_string(),
    )
}

async fn healthz() -> Response {
    json(200, r#"{"status":"ok"}"#.to_string())
}

async fn openapi() -> Response {
    json(200, OPENAPI.to_string())
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let c = &app.counters;
    let mut out = String::new();
    for (name, help, v) in [
        ("swarm_commits_total", "Purchases committed", &c.commits),
        (
            "swarm_declines_total",
            "Purchases declined (OUT_OF_STOCK, MANDATE_REJECTED)",
            &c.declines,
        ),
        (
            "swarm_replays_total",
            "Answers served from the idempotency registry",
            &c.replays,
        ),
        (
            "swarm_occ_retries_total",
            "Transaction reruns after serialization conflicts",
            &c.occ_retries,
        ),
        (
            "swarm_refused_total",
            "Requests the kernel refused (4xx/5xx)",
            &c.refused,
        ),
        (
            "swarm_shed_total",
            "Requests shed with 503 under overload",
            &c.shed,
        ),
    ] {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
            v.load(Ordering::Relaxed)
        ));
    }
    if let Ok(h) = app.latency_us.lock() {
        out.push_str("# HELP swarm_commit_latency_seconds Kernel time per purchase\n# TYPE swarm_commit_latency_seconds summary\n");
        for q in [0.5, 0.9, 0.99, 0.999] {
            let v = if h.is_empty() {
                0.0
            } else {
                h.value_at_quantile(q) as f64 / 1e6
            };
            out.push_str(&format!(
                "swarm_commit_latency_seconds{{quantile=\"{q}\"}} {v}\n"
            ));
        }
        out.push_str(&format!(
            "swarm_commit_latency_seconds_sum {}\nswarm_commit_latency_seconds_count {}\n",
            h.mean() * h.len() as f64 / 1e6,
            h.len()
        ));
    }
    let mut r = Response::new(Body::from(out));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}

async fn not_found() -> Response {
    error(404, "NOT_FOUND", None, "no such route")
}

/// The routes over `kernel`.
pub fn router(kernel: Kernel, config: ServerConfig) -> Router {
    let app = Arc::new(App {
        slots: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
        kernel,
        config,
        counters: Counters::default(),
        latency_us: std::sync::Mutex::new(
            Histogram::new_with_bounds(1, 600_000_000, 2)
                .unwrap_or_else(|_| unreachable!("constant bounds are valid")),
        ),
    });
    Router::new()
        .route("/v1/purchases/commit", post(commit))
        .route("/v1/sandbox/commit", post(sandbox_commit))
        .route("/v1/sandbox", get(sandbox))
        .route("/v1/purchases/{intent_id}", get(by_intent))
        .route("/v1/purchases", get(by_key))
        .route("/orders", post(zinc_order))
        .route("/orders/{intent_id}", get(by_intent))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .fallback(not_found)
        .layer(DefaultBodyLimit::disable())
        .with_state(app)
}

/// Serve until `shutdown` resolves; then stop accepting, let in-flight requests finish
/// (idle keep-alive connections close at once) and return `true` — or `false` when `drain`
/// passed first and the remaining connections were cut. Plain connections speak HTTP/1.1,
/// or HTTP/2 with prior knowledge; with `tls` every connection is TLS first, and ALPN
/// picks HTTP/2 or HTTP/1.1.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    drain: std::time::Duration,
) -> std::io::Result<bool> {
    if let Some(tls) = tls {
        return serve_tls(listener, router, tls, shutdown, drain).await;
    }
    let stopping = Arc::new(tokio::sync::Notify::new());
    let signal = stopping.clone();
    let serving = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        signal.notify_one();
    });
    tokio::select! {
        served = serving => served.map(|()| true),
        () = async {
            stopping.notified().await;
            tokio::time::sleep(drain).await;
        } => Ok(false),
    }
}

/// How long a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// `serve` over TLS: accept, handshake (bounded), then HTTP/1.1 or HTTP/2 as ALPN chose.
async fn serve_tls(
    listener: tokio::net::TcpListener,
    router: Router,
    tls: Arc<rustls::ServerConfig>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    drain: std::time::Duration,
) -> std::io::Result<bool> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto;
    use hyper_util::service::TowerToHyperService;

    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    tokio::pin!(shutdown);
    loop {
        let (tcp, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // Out of descriptors, or a connection gone before accept: wait a little.
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let builder = builder.clone();
        let service = TowerToHyperService::new(router.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let Ok(Ok(stream)) =
                tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
            else {
                return;
            };
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            let _ = watcher.watch(connection.into_owned()).await;
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => Ok(true),
        () = tokio::time::sleep(drain) => Ok(false),
    }
}
