//! A TCP fault proxy in front of an in-process region (in the spirit of Toxiproxy), so the
//! region-down modes act on real connections.
//!
//! `Up` pipes bytes both ways. `Outage` closes the listener (connections are refused) and
//! cuts the open ones.
//! `Blackhole` accepts and never answers, on new and open connections alike. `Crash` resets every open connection (RST) and
//! refuses new ones until healed. `LostAck` forwards the request, lets the server answer
//! (and commit), then resets the client connection instead of passing the answer on.
//! `Latency` holds every answer back by the fault's delay (± its jitter) and passes it on.
//! Invariant: the proxy never alters bytes it passes; it only withholds or cuts them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, watch};

use crate::scenario::{Delay, FaultMode, RegionState};

/// The mode byte: `RegionState::code`, the one encoding of a region's state.
const UP: u8 = 0;

fn code(mode: FaultMode) -> u8 {
    RegionState::Down(mode).code()
}

struct Shared {
    upstream: SocketAddr,
    addr: SocketAddr,
    mode: AtomicU8,
    /// A `latency` fault's delay: base and jitter, in ms.
    delay_ms: [AtomicU64; 2],
    /// Bumped on a crash: every connection opened before it is reset.
    crashes: watch::Sender<u64>,
    /// The accept loop, when the listener is open.
    accept: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// One proxy; cheap to clone.
#[derive(Clone)]
pub struct FaultProxy {
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// Listen on an ephemeral loopback port and forward to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (crashes, _) = watch::channel(0);
        let proxy = FaultProxy {
            shared: Arc::new(Shared {
                upstream,
                addr,
                mode: AtomicU8::new(UP),
                delay_ms: [AtomicU64::new(0), AtomicU64::new(0)],
                crashes,
                accept: Mutex::new(None),
            }),
        };
        proxy.open(listener).await;
        Ok(proxy)
    }

    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    async fn open(&self, listener: TcpListener) {
        let shared = self.shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let shared = shared.clone();
                tokio::spawn(async move { handle(shared, client).await });
            }
        });
        *self.shared.accept.lock().await = Some(task);
    }

    async fn close(&self) {
        if let Some(task) = self.shared.accept.lock().await.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Take the region down in `mode`.
    pub async fn fail(&self, mode: FaultMode, delay: Delay) {
        self.shared.delay_ms[0].store(delay.latency_ms, Ordering::Release);
        self.shared.delay_ms[1].store(delay.jitter_ms, Ordering::Release);
        self.shared.mode.store(code(mode), Ordering::Release);
        match mode {
            // Both take the listener down and cut every open (also idle keep-alive)
            // connection: a crash mid-request, an outage between requests.
            FaultMode::Outage | FaultMode::Crash => {
                self.close().await;
                self.shared.crashes.send_modify(|n| *n += 1);
            }
            FaultMode::Blackhole | FaultMode::LostAck | FaultMode::Latency => {}
        }
    }

    /// Bring the region back: the listener reopens on the same port.
    pub async fn heal(&self) {
        self.shared.mode.store(UP, Ordering::Release);
        if self.shared.accept.lock().await.is_none() {
            for _ in 0..50 {
                match TcpListener::bind(self.shared.addr).await {
                    Ok(l) => {
                        self.open(l).await;
                        return;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
            tracing::warn!(addr = %self.shared.addr, "proxy could not reopen its port");
        }
    }
}

/// Close with RST rather than FIN: what a crashed peer's kernel does.
fn reset(stream: TcpStream) {
    // Deprecated for the blocking a non-zero linger causes on drop; a zero linger never
    // blocks: the kernel discards the buffer and sends RST at once.
    #[allow(deprecated)]
    let _ = stream.set_linger(Some(Duration::ZERO));
    drop(stream);
}

async fn handle(shared: Arc<Shared>, client: TcpStream) {
    let _ = client.set_nodelay(true);
    match shared.mode.load(Ordering::Acquire) {
        2 => {
            // Blackhole: take the bytes, never answer; the client's timeout ends it.
            let mut client = client;
            let mut sink = [0u8; 4096];
            while matches!(client.read(&mut sink).await, Ok(n) if n > 0) {}
            return;
        }
        1 | 3 => return reset(client),
        _ => {}
    }
    let Ok(server) = TcpStream::connect(shared.upstream).await else {
        return reset(client);
    };
    let _ = server.set_nodelay(true);
    let mut crashes = shared.crashes.subscribe();
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let mut up = [0u8; 16 * 1024];
    let mut down = [0u8; 16 * 1024];
    loop {
        tokio::select! {
            n = cr.read(&mut up) => match n {
                Ok(0) | Err(_) => break,
                // Blackhole: requests on open connections vanish too.
                Ok(_) if shared.mode.load(Ordering::Acquire) == 2 => {}
                Ok(n) => if sw.write_all(&up[..n]).await.is_err() { break },
            },
            n = sr.read(&mut down) => match n {
                Ok(0) | Err(_) => break,
                Ok(_) if shared.mode.load(Ordering::Acquire) == 2 => {}
                Ok(n) => {
                    if shared.mode.load(Ordering::Acquire) == 4 {
                        // Lost ack: the server has answered (and committed); the client
                        // hears a reset instead.
                        if let Ok(c) = cr.reunite(cw) {
                            reset(c);
                        }
                        return;
                    }
                    if shared.mode.load(Ordering::Acquire) == code(FaultMode::Latency) {
                        let delay = Delay {
                            latency_ms: shared.delay_ms[0].load(Ordering::Acquire),
                            jitter_ms: shared.delay_ms[1].load(Ordering::Acquire),
                        };
                        tokio::time::sleep(delay.sample()).await;
                    }
                    if cw.write_all(&down[..n]).await.is_err() { break }
                }
            },
            _ = crashes.changed() => {
                if let Ok(c) = cr.reunite(cw) {
                    reset(c);
                }
                return;
            }
        }
    }
}
