//! Regions: gateways to the one shared database, each of which can fail on its own.
//!
//! A region owns its path to the data (its own pool on PostgreSQL, its own lane to the
//! writer on embedded SQLite) and a state the fault timeline flips. The gateway turns the
//! state into what a client would see: `outage` refuses at once, `blackhole` never
//! answers (the client's timeout ends it), `crash` cuts every in-flight request (those not
//! yet committed roll back; those committed lose their acknowledgement) and refuses new
//! ones, `lost-ack` executes and then drops the answer, `latency` sends late. Behind an
//! in-process server's fault proxy the modes act on the socket instead; against a live
//! endpoint a crash's in-flight requests learn of it when their answer arrives (and is
//! thrown away). Invariant: a region never changes what the database decides, only what
//! the client learns.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use tokio::sync::Notify;

use super::contract::{Answer, Refusal, Reply};
use super::http::HttpGateway;
use super::in_flight::InFlight;
use super::proxy::FaultProxy;
use super::value_hash::id_hash;
use crate::history::{Code, answer_hash};
use crate::scenario::{Delay, FaultMode, RegionState};
use crate::sut::kernel::{
    FailureCode, Kernel, KernelError, Link, Outcome, PurchaseRequest, Snapshot,
};

/// How a region reaches the database.
pub enum Gateway {
    /// In-process calls into the kernel; faults are simulated at the gateway.
    Direct(Kernel),
    /// HTTP to an endpoint, through a fault proxy when the server is in-process (faults
    /// then act on real sockets).
    Http(Box<HttpGateway>),
}

/// The in-process kernel's answer in the contract's terms: the one place a `KernelError`
/// becomes what a client would have seen on the wire.
fn from_kernel(result: Result<Snapshot, KernelError>) -> Reply {
    match result {
        Ok(s) => Reply::Answer(answer_of(&s, s.replayed)),
        Err(e) => Reply::Refused(Refusal {
            code: match e {
                KernelError::KeyReused { .. } => Code::KeyReused,
                KernelError::RetryExhausted { .. } => Code::RetryExhausted,
                KernelError::Unavailable(_) => Code::Unavailable,
                KernelError::Database(_) => Code::Internal,
                KernelError::Malformed { .. }
                | KernelError::Invalid { .. }
                | KernelError::NotFound { .. } => Code::BadRequest,
            },
            status: e.status(),
            attempts: match e {
                KernelError::RetryExhausted { attempts } => attempts,
                _ => 0,
            },
        }),
    }
}

/// A kernel snapshot as the client reads it (ZeroRace's contract: `replayed` in the body,
/// the intent id naming the execution).
fn answer_of(s: &Snapshot, replayed: bool) -> Answer {
    // The kernel writes one layout, so its bytes are its values.
    let hash = answer_hash(s.json.as_bytes(), Some("replayed"));
    let mut id = uuid::Uuid::encode_buffer();
    Answer {
        code: match (s.outcome, s.failure_code) {
            (Outcome::Committed, _) => Code::Committed,
            (Outcome::Declined, Some(FailureCode::MandateRejected)) => Code::MandateRejected,
            (Outcome::Declined, _) => Code::OutOfStock,
        },
        status: s.status(),
        attempts: s.attempts,
        replayed,
        answer_hash: hash,
        semantic_hash: hash,
        execution: id_hash(s.intent_id.hyphenated().encode_lower(&mut id)),
    }
}

/// One gateway to the shared database.
pub struct Region {
    pub name: String,
    pub index: u8,
    state: AtomicU8,
    /// Bumped on every crash; a request sent in an older epoch has been cut.
    epoch: Arc<AtomicU64>,
    crashed: Notify,
    /// The delay of a `latency` fault: base and jitter, in ms.
    delay_ms: [AtomicU64; 2],
    /// Requests sent through this region and not yet answered (or given up on).
    in_flight: InFlight,
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
            delay_ms: [AtomicU64::new(0), AtomicU64::new(0)],
            in_flight: InFlight::default(),
            gateway,
        }
    }

    /// This region's HTTP gateway, when it is reached over HTTP.
    pub fn http(&self) -> Option<&HttpGateway> {
        match &self.gateway {
            Gateway::Http(g) => Some(g),
            Gateway::Direct(_) => None,
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
        RegionState::from_code(self.state.load(Ordering::Acquire))
    }

    /// Requests sent through this region now and not yet answered: each is counted from
    /// `commit` or `final_read` until it returns or its future is dropped.
    pub fn in_flight(&self) -> i64 {
        self.in_flight.now()
    }

    /// Up, or slow (a `latency` fault): it answers.
    pub fn is_up(&self) -> bool {
        matches!(
            self.state(),
            RegionState::Up | RegionState::Down(FaultMode::Latency)
        )
    }

    /// Take the region down in `mode` (a crash cuts every request in flight); `delay` is
    /// what a `latency` fault adds.
    pub fn fail(&self, mode: FaultMode, delay: Delay) {
        self.delay_ms[0].store(delay.latency_ms, Ordering::Release);
        self.delay_ms[1].store(delay.jitter_ms, Ordering::Release);
        if let Some(p) = self.proxy() {
            let p = p.clone();
            tokio::spawn(async move { p.fail(mode, delay).await });
        }
        self.state
            .store(RegionState::Down(mode).code(), Ordering::Release);
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
        self.state.store(RegionState::Up.code(), Ordering::Release);
    }

    /// Send one purchase through this region, as a client on the other end of a network.
    pub async fn commit(&self, req: &PurchaseRequest, key: &str) -> Reply {
        let _counted = self.in_flight.enter();
        let kernel = match &self.gateway {
            // The proxy makes the fault real on the socket; nothing to simulate here.
            Gateway::Http(g) if g.proxy.is_some() => return g.commit(req, key).await,
            Gateway::Http(g) => return self.commit_live(g, req, key).await,
            Gateway::Direct(k) => k,
        };
        if let Some(refused) = self.simulate_fault().await {
            return refused;
        }
        let cut = self.crashed.notified();
        tokio::pin!(cut);
        cut.as_mut().enable();
        let link = Link::new(self.epoch.clone());
        let result = tokio::select! {
            r = kernel.commit_on(req, key, &link) => from_kernel(r),
            () = &mut cut => return Reply::Transport(Code::Reset),
        };
        if link.is_cut() || self.state() == RegionState::Down(FaultMode::LostAck) {
            // The database may have committed; the client never hears of it.
            return Reply::Transport(Code::Reset);
        }
        result
    }

    /// A final read of `key` through this region: the stored answer under it, by the
    /// contract's lookup when it has one (a replay by construction; `Absent` when nothing
    /// is stored), else a replay of the purchase. Faults are over by then: none applies.
    pub async fn final_read(&self, req: &PurchaseRequest, key: &str) -> Reply {
        let _counted = self.in_flight.enter();
        match &self.gateway {
            Gateway::Direct(k) => match k.lookup_key(key).await {
                Ok(Some(stored)) => Reply::Answer(answer_of(&stored.snapshot, true)),
                Ok(None) => Reply::Refused(Refusal {
                    code: Code::Absent,
                    status: 404,
                    attempts: 0,
                }),
                Err(e) => from_kernel(Err(e)),
            },
            Gateway::Http(g) => match g.lookup(req, key).await {
                Some(reply) => reply,
                None => g.commit(req, key).await,
            },
        }
    }

    /// A live endpoint, its faults simulated on the client's side. A crash cuts requests in
    /// flight too, but they learn of it when their answer comes (and is thrown away): no
    /// per-request wake-up registration on the hot path.
    async fn commit_live(&self, g: &HttpGateway, req: &PurchaseRequest, key: &str) -> Reply {
        if let Some(refused) = self.simulate_fault().await {
            return refused;
        }
        let epoch = self.epoch.load(Ordering::Acquire);
        let result = g.commit(req, key).await;
        if self.epoch.load(Ordering::Acquire) != epoch
            || self.state() == RegionState::Down(FaultMode::LostAck)
        {
            return Reply::Transport(Code::Reset);
        }
        result
    }

    /// What the region's state does to a request before it is sent: refuse it, hang it
    /// (until the client's timeout), or hold it back (latency).
    async fn simulate_fault(&self) -> Option<Reply> {
        match self.state() {
            RegionState::Down(FaultMode::Outage) | RegionState::Down(FaultMode::Crash) => {
                Some(Reply::Transport(Code::Refused))
            }
            RegionState::Down(FaultMode::Blackhole) => {
                // Accepted, never answered: only the client's timeout ends this.
                std::future::pending::<()>().await;
                None
            }
            RegionState::Down(FaultMode::Latency) => {
                // The request reaches the kernel late; the answer is what it would be.
                let delay = Delay {
                    latency_ms: self.delay_ms[0].load(Ordering::Acquire),
                    jitter_ms: self.delay_ms[1].load(Ordering::Acquire),
                };
                tokio::time::sleep(delay.sample()).await;
                None
            }
            RegionState::Up | RegionState::Down(FaultMode::LostAck) => None,
        }
    }
}
