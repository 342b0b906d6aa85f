//! Regions: gateways to the one shared database, each of which can fail on its own.
//!
//! A region owns its path to the data (its own pool on PostgreSQL, its own lane to the
//! writer on embedded SQLite) and a state the fault timeline flips. The gateway turns the
//! state into what a client would see: `outage` refuses at once, `blackhole` never
//! answers (the client's timeout ends it), `crash` cuts every in-flight request (those not
//! yet committed roll back; those committed lose their acknowledgement) and refuses new
//! ones, `lost-ack` executes and then drops the answer. Invariant: a region never changes
//! what the database decides, only what the client learns.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Notify;

use crate::history::Code;
use crate::kernel::{Kernel, KernelError, Link, PurchaseRequest, Snapshot};
use crate::proxy::FaultProxy;
use crate::scenario::FaultMode;

/// How a region reaches the database.
pub enum Gateway {
    /// In-process calls into the kernel; faults are simulated at the gateway.
    Direct(Kernel),
    /// HTTP to an endpoint, through a fault proxy when the server is in-process (faults
    /// then act on real sockets).
    Http(HttpGateway),
}

/// One keep-alive connection pool to one endpoint.
pub struct HttpGateway {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
    proxy: Option<FaultProxy>,
    /// `Authorization: Bearer …` for a live endpoint.
    authorization: Option<String>,
    /// Zinc's API shape (`POST /orders`, `already_exists`) instead of ZeroRace's.
    zinc: bool,
}

impl HttpGateway {
    pub fn new(base: String, proxy: Option<FaultProxy>) -> HttpGateway {
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(std::time::Duration::from_secs(30))
            .pool_max_idle_per_host(1024)
            .build_http();
        HttpGateway {
            client,
            base: base.trim_end_matches('/').to_string(),
            proxy,
            authorization: None,
            zinc: false,
        }
    }

    pub fn with_zinc(mut self, zinc: bool) -> HttpGateway {
        self.zinc = zinc;
        self
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        body: String,
    ) -> Option<hyper::Request<Full<Bytes>>> {
        let mut b = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("content-type", "application/json");
        if let Some(auth) = &self.authorization {
            b = b.header("authorization", auth);
        }
        b.body(Full::new(Bytes::from(body))).ok()
    }

    async fn send(&self, request: hyper::Request<Full<Bytes>>) -> Result<(u16, String), Code> {
        let response = match self.client.request(request).await {
            Ok(r) => r,
            Err(e) if e.is_connect() => return Err(Code::Refused),
            Err(_) => return Err(Code::Reset),
        };
        let status = response.status().as_u16();
        let collected = response
            .into_body()
            .collect()
            .await
            .map_err(|_| Code::Reset)?;
        Ok((
            status,
            String::from_utf8_lossy(&collected.to_bytes()).into_owned(),
        ))
    }

    /// Zinc: `already_exists` on a retry is success; the order is looked up by its id.
    async fn zinc_commit(&self, body: String, key: &str) -> Reply {
        let mut order: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        order["idempotency_key"] = serde_json::Value::String(key.to_string());
        let Some(request) = self.request("POST", "/orders", order.to_string()) else {
            return Reply::Transport(Code::Reset);
        };
        let (status, text) = match self.send(request).await {
            Ok(r) => r,
            Err(code) => return Reply::Transport(code),
        };
        if status == 409 && text.contains("already_exists") {
            let id = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["error"]["order_id"].as_str().map(str::to_string))
                .unwrap_or_default();
            let Some(lookup) = self.request("GET", &format!("/orders/{id}"), String::new()) else {
                return Reply::Transport(Code::Reset);
            };
            return match self.send(lookup).await {
                Ok((200, stored)) => match Snapshot::replay_of(&stored) {
                    Ok(s) => Reply::Snapshot(s),
                    Err(e) => {
                        Reply::Refused(KernelError::Database(format!("unreadable order: {e}")))
                    }
                },
                Ok((s, t)) => Reply::Refused(KernelError::Database(format!(
                    "order lookup: HTTP {s}: {t}"
                ))),
                Err(code) => Reply::Transport(code),
            };
        }
        reply_of(status, text, key)
    }

    pub fn with_api_key(mut self, key: Option<String>) -> HttpGateway {
        self.authorization = key.map(|k| format!("Bearer {k}"));
        self
    }

    /// `POST /v1/purchases/commit`, mapped back to what the kernel would have answered.
    pub async fn commit(&self, req: &PurchaseRequest, key: &str) -> Reply {
        let body = serde_json::json!({
            "merchantId": req.merchant_id, "mandateId": req.mandate_id, "itemId": req.item_id,
            "agentId": req.agent_id, "quantity": req.quantity, "amountMinor": req.amount_minor,
            "currency": req.currency.as_str(),
        })
        .to_string();
        if self.zinc {
            return self.zinc_commit(body, key).await;
        }
        let request = self
            .request("POST", "/v1/purchases/commit", body)
            .and_then(|mut r| {
                let v = hyper::header::HeaderValue::from_str(key).ok()?;
                r.headers_mut().insert("idempotency-key", v);
                Some(r)
            });
        let Some(request) = request else {
            return Reply::Refused(KernelError::Malformed {
                field: "Idempotency-Key",
                reason: "not a valid header value".into(),
            });
        };
        match self.send(request).await {
            Ok((status, text)) => reply_of(status, text, key),
            Err(code) => Reply::Transport(code),
        }
    }
}

/// A contract response mapped back to what the kernel would have answered.
fn reply_of(status: u16, text: String, key: &str) -> Reply {
    match status {
        200 | 201 => match Snapshot::stored(&text) {
            Ok(s) => Reply::Snapshot(s),
            Err(e) => Reply::Refused(KernelError::Database(format!("unreadable snapshot: {e}"))),
        },
        409 => Reply::Refused(KernelError::KeyReused {
            key: key.to_string(),
        }),
        503 if text.contains("RETRY_EXHAUSTED") => {
            Reply::Refused(KernelError::RetryExhausted { attempts: 0 })
        }
        503 => Reply::Refused(KernelError::Unavailable(text)),
        404 => Reply::Refused(KernelError::NotFound {
            field: "body",
            id: text,
        }),
        400..=499 => Reply::Refused(KernelError::Invalid {
            field: "body",
            reason: text,
        }),
        _ => Reply::Refused(KernelError::Database(format!("HTTP {status}: {text}"))),
    }
}

/// What a region is doing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionState {
    Up,
    Down(FaultMode),
}

impl RegionState {
    pub fn label(self) -> String {
        match self {
            RegionState::Up => "UP".into(),
            RegionState::Down(m) => format!("DOWN:{}", mode_name(m)),
        }
    }
}

pub fn mode_name(m: FaultMode) -> &'static str {
    match m {
        FaultMode::Outage => "outage",
        FaultMode::Blackhole => "blackhole",
        FaultMode::Crash => "crash",
        FaultMode::LostAck => "lost-ack",
    }
}

fn encode(s: RegionState) -> u8 {
    match s {
        RegionState::Up => 0,
        RegionState::Down(FaultMode::Outage) => 1,
        RegionState::Down(FaultMode::Blackhole) => 2,
        RegionState::Down(FaultMode::Crash) => 3,
        RegionState::Down(FaultMode::LostAck) => 4,
    }
}

fn decode(v: u8) -> RegionState {
    match v {
        1 => RegionState::Down(FaultMode::Outage),
        2 => RegionState::Down(FaultMode::Blackhole),
        3 => RegionState::Down(FaultMode::Crash),
        4 => RegionState::Down(FaultMode::LostAck),
        _ => RegionState::Up,
    }
}

/// What a client learns from one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A definite business answer (COMMITTED or DECLINED, fresh or replayed).
    Snapshot(Snapshot),
    /// A definite refusal by the kernel (4xx, 503).
    Refused(KernelError),
    /// No answer from the kernel: the transport failed (`Timeout`, `Refused`, `Reset`).
    Transport(Code),
}

/// One gateway to the shared database.
pub struct Region {
    pub name: String,
    pub index: u8,
    state: AtomicU8,
    /// Bumped on every crash; a request sent in an older epoch has been cut.
    epoch: Arc<AtomicU64>,
    crashed: Notify,
    gateway: Gateway,
}

impl Region {
    pub fn new(name: String, index: u8, kernel: Kernel) -> Region {
        Region::with_gateway(name, index, Gateway::Direct(kernel))
    }

    pub fn with_gateway(name: String, index: u8, gateway: Gateway) -> Region {
        Region {
            name,
            index,
            state: AtomicU8::new(0),
            epoch: Arc::new(AtomicU64::new(0)),
            crashed: Notify::new(),
            gateway,
        }
    }

    /// The fault proxy in front of this region's in-process server, if any.
    fn proxy(&self) -> Option<&FaultProxy> {
        match &self.gateway {
            Gateway::Http(g) => g.proxy.as_ref(),
            Gateway::Direct(_) => None,
        }
    }

    pub fn state(&self) -> RegionState {
        decode(self.state.load(Ordering::Acquire))
    }

    pub fn is_up(&self) -> bool {
        self.state() == RegionState::Up
    }

    /// Take the region down in `mode`. A crash cuts every request in flight.
    pub fn fail(&self, mode: FaultMode) {
        if let Some(p) = self.proxy() {
            let p = p.clone();
            tokio::spawn(async move { p.fail(mode).await });
        }
        self.state
            .store(encode(RegionState::Down(mode)), Ordering::Release);
        if mode == FaultMode::Crash {
            self.epoch.fetch_add(1, Ordering::AcqRel);
            self.crashed.notify_waiters();
        }
    }

    pub fn heal(&self) {
        if let Some(p) = self.proxy() {
            let p = p.clone();
            tokio::spawn(async move { p.heal().await });
        }
        self.state.store(encode(RegionState::Up), Ordering::Release);
    }

    /// Send one purchase through this region, as a client on the other end of a network.
    pub async fn commit(&self, req: &PurchaseRequest, key: &str) -> Reply {
        if let Gateway::Http(g) = &self.gateway
            && g.proxy.is_some()
        {
            // The proxy makes the fault real on the socket; nothing to simulate here.
            return g.commit(req, key).await;
        }
        match self.state() {
            RegionState::Down(FaultMode::Outage) | RegionState::Down(FaultMode::Crash) => {
                return Reply::Transport(Code::Refused);
            }
            RegionState::Down(FaultMode::Blackhole) => {
                // Accepted, never answered: only the client's timeout ends this.
                std::future::pending::<()>().await;
            }
            RegionState::Up | RegionState::Down(FaultMode::LostAck) => {}
        }
        let cut = self.crashed.notified();
        tokio::pin!(cut);
        cut.as_mut().enable();
        let link = Link::new(self.epoch.clone());
        let call = async {
            match &self.gateway {
                Gateway::Direct(k) => k
                    .commit_on(req, key, &link)
                    .await
                    .map_or_else(Reply::Refused, Reply::Snapshot),
                Gateway::Http(g) => g.commit(req, key).await,
            }
        };
        let result = tokio::select! {
            r = call => r,
            () = &mut cut => return Reply::Transport(Code::Reset),
        };
        if link.is_cut() || self.state() == RegionState::Down(FaultMode::LostAck) {
            // The database may have committed; the client never hears of it.
            return Reply::Transport(Code::Reset);
        }
        result
    }
}
