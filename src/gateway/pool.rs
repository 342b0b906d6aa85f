//! One endpoint's connections: keep-alive HTTP/1.1, or multiplexed HTTP/2, over TCP or TLS.
//!
//! HTTP/1.1: a request checks a connection out, sends, reads the whole answer and checks it
//! back in; a request that is abandoned (timeout, crash) drops its connection with it, since
//! HTTP/1 cannot reuse a connection that still owes an answer. HTTP/2 (ALPN `h2` over TLS, or
//! prior knowledge on plain TCP): a request takes a stream on a lane's connection with room
//! (at most `MAX_STREAMS` each), opening another when every one is full; an abandoned request
//! resets only its stream; a cut connection fails every stream on it, and leaves the pool.
//!
//! Invariants: a connection is in the HTTP/1 idle list only when it owes nothing; a lock is
//! held for a push, a pop or a scan, never across an await; at most `max_idle` HTTP/1
//! connections wait idle and at most `MAX_H2_CONNECTIONS` HTTP/2 connections are kept per
//! lane; a failure before any request byte was written (connect, TLS handshake) is
//! `Refused`, anything after is `Reset`.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper::header::HeaderValue;
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::tls::ClientTls;
use crate::history::Code;
use crate::lane::{MAX_LANES, lane};
use crate::scenario::HttpVersion;

/// Concurrent streams one HTTP/2 connection carries before another is opened.
pub const MAX_STREAMS: usize = 100;
/// HTTP/2 connections kept per lane (beyond, the least busy one takes more streams).
const MAX_H2_CONNECTIONS: usize = 64;

/// An HTTP response: status and the whole body (not yet read by the contract).
pub struct Response {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    /// At most `MAX_ANSWER_BYTES`; `oversized` says the answer was longer (and cut).
    pub body: Bytes,
    pub oversized: bool,
}

/// Longest answer body read: a contract answer is a few hundred bytes, and a server that
/// streams without end must not hold the generator's memory.
pub const MAX_ANSWER_BYTES: usize = 1 << 20;

/// Why a request got no answer: the history's code, and the cause for a message.
#[derive(Debug)]
pub struct Failure {
    pub code: Code,
    pub cause: Box<dyn std::error::Error + Send + Sync>,
}

impl Failure {
    fn new(code: Code, cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Failure {
        Failure {
            code,
            cause: cause.into(),
        }
    }
}

/// The HTTP version the endpoint's connections speak, learnt from the first one.
const UNKNOWN: u8 = 0;
const SPEAKS_HTTP1: u8 = 1;
const SPEAKS_HTTP2: u8 = 2;

/// What a pool has opened so far (the report's per-region connection figures).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionFigures {
    /// Connections opened: TCP connected and, when the endpoint is https, TLS agreed.
    pub opened: u64,
    /// TLS handshakes that resumed an earlier session (no full handshake).
    pub resumed: u64,
    /// Connections that speak HTTP/2.
    pub http2: u64,
    pub tls: bool,
}

/// One HTTP/2 connection and the streams it carries now.
struct Multiplexed {
    sender: http2::SendRequest<Full<Bytes>>,
    streams: Arc<AtomicUsize>,
}

/// A stream taken on a connection, given back when dropped (answered or abandoned).
struct Stream(Arc<AtomicUsize>);

impl Drop for Stream {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

enum Connection {
    One(http1::SendRequest<Full<Bytes>>),
    Two(http2::SendRequest<Full<Bytes>>),
}

/// Connections to one endpoint, kept per lane.
pub struct ConnectionPool {
    address: String,
    tls: Option<ClientTls>,
    version: HttpVersion,
    /// `http` or `https` and the authority: HTTP/2 requests carry an absolute URI.
    scheme: hyper::http::uri::Scheme,
    authority: Option<hyper::http::uri::Authority>,
    idle: Vec<Mutex<Vec<http1::SendRequest<Full<Bytes>>>>>,
    shared: Vec<Mutex<Vec<Multiplexed>>>,
    /// One HTTP/2 (or not yet known) connect at a time per lane, so a burst of requests
    /// shares the connection the first one opens instead of opening one each.
    connecting: Vec<tokio::sync::Mutex<()>>,
    speaks: AtomicU8,
    max_idle: usize,
    opened: AtomicU64,
    resumed: AtomicU64,
    http2: AtomicU64,
}

impl ConnectionPool {
    /// Plain HTTP/1.1 to `address` (`host:port`).
    pub fn new(address: String, max_idle: usize) -> ConnectionPool {
        ConnectionPool::with(address, None, HttpVersion::Http1, max_idle)
    }

    /// `tls` when the endpoint is https; `version` as the scenario's `target.http` says.
    pub fn with(
        address: String,
        tls: Option<ClientTls>,
        version: HttpVersion,
        max_idle: usize,
    ) -> ConnectionPool {
        let scheme = if tls.is_some() {
            hyper::http::uri::Scheme::HTTPS
        } else {
            hyper::http::uri::Scheme::HTTP
        };
        let authority = address.parse().ok();
        let tls_on = tls.is_some();
        ConnectionPool {
            address,
            tls,
            version,
            scheme,
            authority,
            idle: (0..MAX_LANES).map(|_| Mutex::new(Vec::new())).collect(),
            shared: (0..MAX_LANES).map(|_| Mutex::new(Vec::new())).collect(),
            connecting: (0..MAX_LANES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            // Plain HTTP has no ALPN: anything but prior-knowledge HTTP/2 is HTTP/1.1.
            speaks: AtomicU8::new(match (version, tls_on) {
                (HttpVersion::Http1, _) | (HttpVersion::Auto, false) => SPEAKS_HTTP1,
                _ => UNKNOWN,
            }),
            max_idle,
            opened: AtomicU64::new(0),
            resumed: AtomicU64::new(0),
            http2: AtomicU64::new(0),
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<http1::SendRequest<Full<Bytes>>>> {
        self.idle[lane()].lock().unwrap_or_else(|p| p.into_inner())
    }

    fn pop_idle(&self) -> Option<http1::SendRequest<Full<Bytes>>> {
        self.idle().pop()
    }

    fn shared(&self) -> std::sync::MutexGuard<'_, Vec<Multiplexed>> {
        self.shared[lane()]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// A new connection: TCP, TLS when https, then the HTTP handshake of the version the
    /// scenario asks for (over TLS: the one ALPN chose).
    async fn connect(&self) -> Result<Connection, Failure> {
        let tcp = tokio::net::TcpStream::connect(&self.address)
            .await
            .map_err(|e| Failure::new(Code::Refused, e))?;
        let _ = tcp.set_nodelay(true);
        let Some(tls) = &self.tls else {
            let h2 = self.version == HttpVersion::Http2;
            return self.handshake(TokioIo::new(tcp), h2).await;
        };
        // Nothing of a request is written before the handshake ends: its failure is Refused.
        let stream = tls
            .connector
            .connect(tls.server_name.clone(), tcp)
            .await
            .map_err(|e| Failure::new(Code::Refused, e))?;
        let (_, session) = stream.get_ref();
        if session.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
            self.resumed.fetch_add(1, Ordering::Relaxed);
        }
        let h2 = session.alpn_protocol() == Some(crate::sut::server::tls::ALPN_H2);
        self.handshake(TokioIo::new(stream), h2).await
    }

    async fn handshake<T>(&self, io: TokioIo<T>, h2: bool) -> Result<Connection, Failure>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        self.speaks.store(
            if h2 { SPEAKS_HTTP2 } else { SPEAKS_HTTP1 },
            Ordering::Relaxed,
        );
        self.opened.fetch_add(1, Ordering::Relaxed);
        if h2 {
            self.http2.fetch_add(1, Ordering::Relaxed);
            let (sender, connection) = http2::Builder::new(TokioExecutor::new())
                .handshake(io)
                .await
                .map_err(|e| Failure::new(Code::Refused, e))?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            Ok(Connection::Two(sender))
        } else {
            // One buffer per request (head and body together): over TLS, one record.
            let (sender, connection) = http1::Builder::new()
                .writev(false)
                .handshake(io)
                .await
                .map_err(|e| Failure::new(Code::Refused, e))?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            Ok(Connection::One(sender))
        }
    }

    fn checkin(&self, sender: http1::SendRequest<Full<Bytes>>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle();
        if idle.len() < self.max_idle {
            idle.push(sender);
        }
    }

    /// A stream on a lane's HTTP/2 connection with room, or on the least busy one when
    /// every one is full and no more may be opened; `None` when one should be opened.
    fn take_stream(&self) -> Option<(http2::SendRequest<Full<Bytes>>, Stream)> {
        let mut shared = self.shared();
        shared.retain(|m| !m.sender.is_closed());
        let full = shared.len() >= MAX_H2_CONNECTIONS;
        let pick = shared
            .iter()
            .min_by_key(|m| m.streams.load(Ordering::Relaxed))
            .filter(|m| full || m.streams.load(Ordering::Relaxed) < MAX_STREAMS)?;
        pick.streams.fetch_add(1, Ordering::Relaxed);
        Some((pick.sender.clone(), Stream(pick.streams.clone())))
    }

    /// Keep a new HTTP/2 connection on this lane and take a stream on it.
    fn share(
        &self,
        sender: http2::SendRequest<Full<Bytes>>,
    ) -> (http2::SendRequest<Full<Bytes>>, Stream) {
        let streams = Arc::new(AtomicUsize::new(1));
        let taken = (sender.clone(), Stream(streams.clone()));
        let mut shared = self.shared();
        if shared.len() < MAX_H2_CONNECTIONS {
            shared.push(Multiplexed { sender, streams });
        }
        taken
    }

    /// Send one request and read its whole answer. A refused connection (or TLS
    /// handshake) is `Refused`; anything that breaks after it is open is `Reset`.
    pub async fn send(&self, request: hyper::Request<Full<Bytes>>) -> Result<Response, Code> {
        self.exchange(request).await.map_err(|f| f.code)
    }

    /// `send`, keeping the cause of a failure (for messages: preflight).
    pub async fn exchange(
        &self,
        request: hyper::Request<Full<Bytes>>,
    ) -> Result<Response, Failure> {
        if self.speaks.load(Ordering::Relaxed) != SPEAKS_HTTP1 {
            if let Some((sender, stream)) = self.take_stream() {
                return self.over_http2(sender, stream, request).await;
            }
            // No room on this lane's connections: one connect at a time; the first also
            // learns which version the endpoint speaks.
            let gate = self.connecting[lane()].lock().await;
            if let Some((sender, stream)) = self.take_stream() {
                drop(gate);
                return self.over_http2(sender, stream, request).await;
            }
            if self.speaks.load(Ordering::Relaxed) != SPEAKS_HTTP1 {
                let connection = self.connect().await?;
                drop(gate);
                return self.over(connection, request).await;
            }
        }
        let mut connection = None;
        while let Some(mut sender) = self.pop_idle() {
            if sender.ready().await.is_ok() {
                connection = Some(Connection::One(sender));
                break;
            }
        }
        let connection = match connection {
            Some(c) => c,
            None => self.connect().await?,
        };
        self.over(connection, request).await
    }

    async fn over(
        &self,
        connection: Connection,
        request: hyper::Request<Full<Bytes>>,
    ) -> Result<Response, Failure> {
        match connection {
            Connection::One(sender) => self.over_http1(sender, request).await,
            Connection::Two(sender) => {
                let (sender, stream) = self.share(sender);
                self.over_http2(sender, stream, request).await
            }
        }
    }

    async fn over_http1(
        &self,
        mut sender: http1::SendRequest<Full<Bytes>>,
        request: hyper::Request<Full<Bytes>>,
    ) -> Result<Response, Failure> {
        let response = read(sender.send_request(request).await).await?;
        self.checkin(sender);
        Ok(response)
    }

    async fn over_http2(
        &self,
        mut sender: http2::SendRequest<Full<Bytes>>,
        stream: Stream,
        mut request: hyper::Request<Full<Bytes>>,
    ) -> Result<Response, Failure> {
        // HTTP/2 names scheme and authority in every request (`:scheme`, `:authority`).
        let mut parts = std::mem::take(request.uri_mut()).into_parts();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = self.authority.clone();
        *request.uri_mut() =
            hyper::Uri::from_parts(parts).map_err(|e| Failure::new(Code::BadRequest, e))?;
        let response = read(sender.send_request(request).await).await;
        drop(stream);
        response
    }

    /// Why TLS to this endpoint fails, when a request failed without saying: open one
    /// connection, finish the handshake and wait up to `wait` for the server's first bytes.
    /// A server refusing our client certificate says so in an alert right after the
    /// handshake, which a request that was already writing may never read. `None`: TLS is
    /// not the reason (or the endpoint is plain HTTP). Only on a failure's path.
    pub async fn diagnose_tls(
        &self,
        wait: std::time::Duration,
    ) -> Option<Box<dyn std::error::Error + Send + Sync>> {
        use tokio::io::AsyncReadExt;
        let tls = self.tls.as_ref()?;
        let tcp = tokio::net::TcpStream::connect(&self.address).await.ok()?;
        let mut stream = match tls.connector.connect(tls.server_name.clone(), tcp).await {
            Ok(s) => s,
            Err(e) => return Some(Box::new(e)),
        };
        match tokio::time::timeout(wait, stream.read(&mut [0u8; 1])).await {
            Ok(Err(e)) => Some(Box::new(e)),
            _ => None,
        }
    }

    /// What this pool has opened so far.
    pub fn figures(&self) -> ConnectionFigures {
        ConnectionFigures {
            opened: self.opened.load(Ordering::Relaxed),
            resumed: self.resumed.load(Ordering::Relaxed),
            http2: self.http2.load(Ordering::Relaxed),
            tls: self.tls.is_some(),
        }
    }

    /// Connections waiting idle, all lanes (for tests).
    pub fn idle_len(&self) -> usize {
        self.idle
            .iter()
            .map(|l| l.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }
}

/// The whole answer to a request that was sent: anything that breaks now is `Reset`.
async fn read(
    sent: Result<hyper::Response<hyper::body::Incoming>, hyper::Error>,
) -> Result<Response, Failure> {
    let response = sent.map_err(|e| Failure::new(Code::Reset, e))?;
    let status = response.status().as_u16();
    let (parts, incoming) = response.into_parts();
    let mut body = http_body_util::Limited::new(incoming, MAX_ANSWER_BYTES);
    // Most answers are one data frame: kept as it came, copied only when a second one does.
    let mut first: Option<Bytes> = None;
    let mut more = bytes::BytesMut::new();
    let mut oversized = false;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                match first.take() {
                    None if more.is_empty() => first = Some(data),
                    earlier => {
                        if let Some(earlier) = earlier {
                            more.extend_from_slice(&earlier);
                        }
                        more.extend_from_slice(&data);
                    }
                }
            }
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                oversized = true;
                break;
            }
            Err(e) => return Err(Failure::new(Code::Reset, e)),
        }
    }
    Ok(Response {
        status,
        headers: parts.headers,
        body: first.unwrap_or_else(|| more.freeze()),
        oversized,
    })
}

/// A header value from a string the program made, or `None` when it is not one.
pub fn header(value: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A loopback server answering every request with `200 ok` (or never, when `silent`),
    /// counting the connections it accepts.
    async fn counting_server(silent: bool) -> (String, std::sync::Arc<AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let accepted = std::sync::Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let mut seen = Vec::new();
                    while let Ok(n) = socket.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buf[..n]);
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            seen.drain(..end + 4);
                            if !silent {
                                let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                                if socket.write_all(ok).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        (address, accepted)
    }

    fn get(address: &str) -> hyper::Request<Full<Bytes>> {
        hyper::Request::builder()
            .uri("/")
            .header("host", address)
            .body(Full::new(Bytes::new()))
            .unwrap()
    }

    #[tokio::test]
    async fn answered_requests_reuse_one_connection_and_abandoned_ones_drop_theirs() {
        let (address, accepted) = counting_server(false).await;
        let pool = ConnectionPool::new(address.clone(), 8);
        for _ in 0..5 {
            let answer = pool.send(get(&address)).await.expect("answer");
            assert_eq!((answer.status, &answer.body[..]), (200, &b"ok"[..]));
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "keep-alive: one connection"
        );
        assert_eq!(pool.idle_len(), 1);

        // A request abandoned before its answer takes its connection with it.
        let (silent, _) = counting_server(true).await;
        let pool = ConnectionPool::new(silent.clone(), 8);
        let abandoned = tokio::time::timeout(
            std::time::Duration::from_millis(100),
            pool.send(get(&silent)),
        )
        .await;
        assert!(abandoned.is_err(), "the silent server never answers");
        assert_eq!(
            pool.idle_len(),
            0,
            "a connection that owes an answer is never idle"
        );
    }

    #[tokio::test]
    async fn a_refused_connection_is_refused() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let address = format!("127.0.0.1:{port}");
        let pool = ConnectionPool::new(address.clone(), 8);
        assert_eq!(pool.send(get(&address)).await.err(), Some(Code::Refused));
    }
}
