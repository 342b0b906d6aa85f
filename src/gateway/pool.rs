//! One endpoint's connections: keep-alive HTTP/1.1, or multiplexed HTTP/2, over TCP or TLS.
//!
//! HTTP/1.1 is swarm's own (`h1`): a request checks a connection out of its lane's idle
//! list (one that still looks open and has sent nothing since its last answer), writes
//! itself in one buffer, reads the whole answer on its own task (no connection task, no
//! channel) and checks the connection back in when the answer says it may carry another; a
//! request that is abandoned (timeout, crash) drops its connection with it, since HTTP/1
//! cannot reuse a connection that still owes an answer. HTTP/2 is the `h2` crate's (hyper's
//! own HTTP/2; ALPN `h2` over TLS, or prior knowledge on plain TCP), driven directly: a
//! request opens its stream, writes its body and reads its answer on its own task, with no
//! hand-off to a dispatch task and no task spawned per request (hyper's client does both).
//! A request takes a stream on a lane's connection
//! with room (at most `MAX_STREAMS` each), opening another when every one is full; an
//! abandoned request resets only its stream; a cut connection fails every stream on it, and
//! leaves the pool. A request whose connection would not open a stream for it (a GOAWAY
//! raced it) goes once more on another connection: nothing of it had left the process. So
//! does one whose stream the server refused unprocessed (REFUSED_STREAM).
//!
//! Invariants: a connection is in the HTTP/1 idle list only when it owes nothing; a lock is
//! held for a push, a pop or a scan, never across an await; at most `max_idle` HTTP/1
//! connections wait idle and at most `MAX_H2_CONNECTIONS` HTTP/2 connections are kept per
//! lane; a failure before any request byte was written (connect, TLS handshake) is
//! `Refused`, anything after is `Reset`.
//!
//! It stays one file: `ConnectionPool::exchange` chooses per request between the HTTP/1.1
//! idle list and the HTTP/2 streams by what the endpoint's first connection spoke, so the two
//! share one `connect` and one set of `ConnectionFigures`.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};

use std::sync::atomic::AtomicBool;

use bytes::Bytes;
use hyper::header::{self, HeaderName, HeaderValue};

use super::h1;
use super::h1::MAX_ANSWER_BYTES;
pub use super::h1::{Body, Request, header_value};
use super::tls::ClientTls;
use crate::history::Code;
use crate::lane::{SLOTS, lane};
use crate::scenario::HttpVersion;

/// Concurrent streams one HTTP/2 connection carries before another is opened.
pub const MAX_STREAMS: usize = 100;
/// HTTP/2 connections kept per lane (beyond, the least busy one takes more streams).
const MAX_H2_CONNECTIONS: usize = 64;
/// The HTTP/2 flow-control windows swarm's connections grant the server (hyper's client
/// defaults): a stream's is above `MAX_ANSWER_BYTES`, so no answer waits on a window update.
const H2_STREAM_WINDOW: u32 = 2 << 20;
const H2_CONNECTION_WINDOW: u32 = 5 << 20;

/// An HTTP response: status, the one header the contract reads, and the whole body (not
/// yet read by the contract).
pub struct Response {
    pub status: u16,
    /// The value of the endpoint's `Preset::marker` header, when the answer has one.
    pub marker: Option<Bytes>,
    /// At most `MAX_ANSWER_BYTES`; `oversized` says the answer was longer (and cut).
    pub body: Bytes,
    pub oversized: bool,
}

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

/// One HTTP/2 connection: where requests are sent, and whether it takes no more.
#[derive(Clone)]
struct H2 {
    sender: h2::client::SendRequest<Bytes>,
    /// Set when the connection takes no more requests: its task ended (closed, cut, or
    /// dropped with its runtime), or a request found it refusing new streams (a GOAWAY
    /// received while older streams still finish).
    closed: Arc<AtomicBool>,
}

/// Marks its connection closed when the connection's task ends, however it ends.
struct Ended(Arc<AtomicBool>);

impl Drop for Ended {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// One HTTP/2 connection and the streams it carries now.
struct Multiplexed {
    h2: H2,
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
    One(h1::Connection),
    Two(H2),
}

/// Where an HTTP/2 request goes (`ConnectionPool::route`).
enum Route {
    /// A stream on one of the lane's HTTP/2 connections.
    Stream(H2, Stream),
    /// The endpoint's first connection, which spoke HTTP/1.1.
    One(h1::Connection),
}

/// An HTTP/2 request as made once, to be sent once or, when its connection refused it
/// before it left, twice.
struct Http2Request {
    method: hyper::Method,
    uri: hyper::Uri,
    key: Option<(HeaderName, HeaderValue)>,
    body: Bytes,
}

/// Why an HTTP/2 request got no answer: before any frame of it was queued (`Unsent`), or
/// after (`Sent`: the server may have it).
enum Http2Failure {
    Unsent(Failure),
    Sent(Failure),
}

impl Http2Failure {
    fn into_failure(self) -> Failure {
        match self {
            Http2Failure::Unsent(f) | Http2Failure::Sent(f) => f,
        }
    }
}

/// What every request to an endpoint carries, and the one answer header read: fixed when
/// its gateway is built.
pub struct Preset {
    pub host: HeaderValue,
    /// `Authorization: Bearer …` for a live endpoint.
    pub authorization: Option<HeaderValue>,
    /// The contract's replay-marker header, kept in `Response::marker`.
    pub marker: Option<HeaderName>,
}

impl Preset {
    /// The HTTP/1.1 header lines every request repeats, written once.
    fn h1_lines(&self) -> Vec<u8> {
        let mut lines = Vec::with_capacity(128);
        let mut line = |name: &str, value: &[u8]| {
            lines.extend_from_slice(name.as_bytes());
            lines.extend_from_slice(b": ");
            lines.extend_from_slice(value);
            lines.extend_from_slice(b"\r\n");
        };
        line("host", self.host.as_bytes());
        line("content-type", b"application/json");
        if let Some(auth) = &self.authorization {
            line("authorization", auth.as_bytes());
        }
        lines
    }
}

/// Connections to one endpoint, kept per lane.
pub struct ConnectionPool {
    address: String,
    tls: Option<ClientTls>,
    version: HttpVersion,
    /// `http` or `https` and the authority: HTTP/2 requests carry an absolute URI.
    scheme: hyper::http::uri::Scheme,
    authority: Option<hyper::http::uri::Authority>,
    preset: Preset,
    /// `preset` as HTTP/1.1 header lines.
    h1_lines: Vec<u8>,
    idle: Vec<Mutex<Vec<h1::Connection>>>,
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
    /// Plain HTTP/1.1 to `address` (`host:port`), its own name as the Host.
    pub fn new(address: String, max_idle: usize) -> ConnectionPool {
        let preset = Preset {
            host: header(&address).unwrap_or(HeaderValue::from_static("localhost")),
            authorization: None,
            marker: None,
        };
        ConnectionPool::with(address, None, HttpVersion::Http1, max_idle, preset)
    }

    /// `tls` when the endpoint is https; `version` as the scenario's `target.http` says.
    pub fn with(
        address: String,
        tls: Option<ClientTls>,
        version: HttpVersion,
        max_idle: usize,
        preset: Preset,
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
            h1_lines: preset.h1_lines(),
            preset,
            idle: (0..SLOTS).map(|_| Mutex::new(Vec::new())).collect(),
            shared: (0..SLOTS).map(|_| Mutex::new(Vec::new())).collect(),
            connecting: (0..SLOTS).map(|_| tokio::sync::Mutex::new(())).collect(),
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

    /// Send `Authorization: value` with every request from now on.
    pub fn authorize(&mut self, value: Option<HeaderValue>) {
        self.preset.authorization = value;
        self.h1_lines = self.preset.h1_lines();
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<h1::Connection>> {
        self.idle[lane()].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An idle connection of this lane that still looks open and owes nothing.
    fn pop_idle(&self) -> Option<h1::Connection> {
        loop {
            let mut connection = self.idle().pop()?;
            if connection.quiet() {
                return Some(connection);
            }
        }
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
            if self.version == HttpVersion::Http2 {
                return self.handshake(tcp).await;
            }
            return Ok(self.opened_h1(h1::Io::Tcp(tcp)));
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
        if session.alpn_protocol() == Some(crate::sut::server::tls::ALPN_H2) {
            return self.handshake(stream).await;
        }
        Ok(self.opened_h1(h1::Io::Tls(Box::new(stream))))
    }

    /// An HTTP/1.1 connection: nothing to agree beyond TCP (and TLS).
    fn opened_h1(&self, io: h1::Io) -> Connection {
        self.speaks.store(SPEAKS_HTTP1, Ordering::Relaxed);
        self.opened.fetch_add(1, Ordering::Relaxed);
        Connection::One(h1::Connection::new(io))
    }

    /// An HTTP/2 connection, its task spawned on this lane.
    async fn handshake<T>(&self, io: T) -> Result<Connection, Failure>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        self.speaks.store(SPEAKS_HTTP2, Ordering::Relaxed);
        self.opened.fetch_add(1, Ordering::Relaxed);
        self.http2.fetch_add(1, Ordering::Relaxed);
        let (sender, connection) = h2::client::Builder::new()
            .enable_push(false)
            .initial_window_size(H2_STREAM_WINDOW)
            .initial_connection_window_size(H2_CONNECTION_WINDOW)
            .max_header_list_size(h1::MAX_HEAD_BYTES as u32)
            .handshake::<_, Bytes>(io)
            .await
            .map_err(|e| Failure::new(Code::Refused, e))?;
        let closed = Arc::new(AtomicBool::new(false));
        let ended = Ended(closed.clone());
        tokio::spawn(async move {
            let _ended = ended;
            let _ = connection.await;
        });
        Ok(Connection::Two(H2 { sender, closed }))
    }

    fn checkin(&self, connection: h1::Connection) {
        let mut idle = self.idle();
        if idle.len() < self.max_idle {
            idle.push(connection);
        }
    }

    /// A stream on a lane's HTTP/2 connection with room, or on the least busy one when
    /// every one is full and no more may be opened; `None` when one should be opened.
    fn take_stream(&self) -> Option<(H2, Stream)> {
        let mut shared = self.shared();
        shared.retain(|m| !m.h2.closed.load(Ordering::Acquire));
        let full = shared.len() >= MAX_H2_CONNECTIONS;
        let pick = shared
            .iter()
            .min_by_key(|m| m.streams.load(Ordering::Relaxed))
            .filter(|m| full || m.streams.load(Ordering::Relaxed) < MAX_STREAMS)?;
        pick.streams.fetch_add(1, Ordering::Relaxed);
        Some((pick.h2.clone(), Stream(pick.streams.clone())))
    }

    /// Keep a new HTTP/2 connection on this lane and take a stream on it.
    fn share(&self, h2: H2) -> (H2, Stream) {
        let streams = Arc::new(AtomicUsize::new(1));
        let taken = (h2.clone(), Stream(streams.clone()));
        let mut shared = self.shared();
        if shared.len() < MAX_H2_CONNECTIONS {
            shared.push(Multiplexed { h2, streams });
        }
        taken
    }

    /// Send one request and read its whole answer. A refused connection (or TLS
    /// handshake) is `Refused`; anything that breaks after it is open is `Reset`.
    pub async fn send(&self, request: Request<'_>) -> Result<Response, Code> {
        self.exchange(request).await.map_err(|f| f.code)
    }

    /// `send`, keeping the cause of a failure (for messages: preflight).
    pub async fn exchange(&self, request: Request<'_>) -> Result<Response, Failure> {
        if self.speaks.load(Ordering::Relaxed) != SPEAKS_HTTP1 {
            match self.route().await? {
                Some(Route::Stream(h2, stream)) => {
                    return self.exchange_http2(h2, stream, request).await;
                }
                Some(Route::One(connection)) => return self.over_http1(connection, request).await,
                None => {}
            }
        }
        let connection = match self.pop_idle() {
            Some(c) => c,
            None => match self.connect().await? {
                Connection::One(c) => c,
                Connection::Two(h2) => {
                    let (h2, stream) = self.share(h2);
                    return self.exchange_http2(h2, stream, request).await;
                }
            },
        };
        self.over_http1(connection, request).await
    }

    /// Where an HTTP/2 request goes: a stream on a lane's connection with room, or on a
    /// new connection (one connect per lane at a time; the first also learns which version
    /// the endpoint speaks). `None` once the endpoint is known to speak HTTP/1.1.
    async fn route(&self) -> Result<Option<Route>, Failure> {
        if let Some((h2, stream)) = self.take_stream() {
            return Ok(Some(Route::Stream(h2, stream)));
        }
        let _gate = self.connecting[lane()].lock().await;
        if let Some((h2, stream)) = self.take_stream() {
            return Ok(Some(Route::Stream(h2, stream)));
        }
        if self.speaks.load(Ordering::Relaxed) == SPEAKS_HTTP1 {
            return Ok(None);
        }
        Ok(Some(match self.connect().await? {
            Connection::One(c) => Route::One(c),
            Connection::Two(h2) => {
                let (h2, stream) = self.share(h2);
                Route::Stream(h2, stream)
            }
        }))
    }

    /// The request over HTTP/2. When its connection takes no new stream (a GOAWAY came
    /// first), nothing of the request left this process; when the server refused its stream
    /// (REFUSED_STREAM), the server did nothing with it. Either way it is sent once more, on
    /// a stream the pool routes anew, which no server and no history can tell from a first
    /// send.
    /// Its refusal stands when that one fails too, or no other connection opens.
    async fn exchange_http2(
        &self,
        h2: H2,
        stream: Stream,
        request: Request<'_>,
    ) -> Result<Response, Failure> {
        let request = self.http2_request(request)?;
        let refused = match self.over_http2(h2, stream, &request).await {
            Ok(response) => return Ok(response),
            Err(Http2Failure::Sent(f)) => return Err(f),
            Err(Http2Failure::Unsent(f)) => f,
        };
        match self.route().await {
            Ok(Some(Route::Stream(h2, stream))) => self
                .over_http2(h2, stream, &request)
                .await
                .map_err(Http2Failure::into_failure),
            _ => Err(refused),
        }
    }

    /// The request on this task, over a connection it owns until the answer is whole; the
    /// connection goes back to the lane's idle list only when it may carry another.
    async fn over_http1(
        &self,
        mut connection: h1::Connection,
        request: Request<'_>,
    ) -> Result<Response, Failure> {
        let answer = connection
            .exchange(&self.h1_lines, &request, self.preset.marker.as_ref())
            .await
            .map_err(|e| Failure::new(Code::Reset, e))?;
        if answer.reusable {
            self.checkin(connection);
        }
        Ok(Response {
            status: answer.status,
            marker: answer.marker,
            body: answer.body,
            oversized: answer.oversized,
        })
    }

    /// The request on a stream of `h2`'s connection, its answer read on this task. Dropped
    /// before the answer is whole (a timeout, a crash), the stream is reset (CANCEL).
    async fn over_http2(
        &self,
        h2: H2,
        stream: Stream,
        request: &Http2Request,
    ) -> Result<Response, Http2Failure> {
        // Refused before a frame of the request is queued: the connection takes no more
        // streams (a GOAWAY, or it ended). Nothing was sent, and no later request gets it.
        let H2 { sender, closed } = h2;
        let refused = |e: h2::Error| {
            closed.store(true, Ordering::Release);
            Http2Failure::Unsent(Failure::new(Code::Refused, e))
        };
        let mut sender = sender.ready().await.map_err(refused)?;
        let (answer, mut send) = sender
            .send_request(self.http2_head(request), request.body.is_empty())
            .map_err(refused)?;
        // A stream the server refused (REFUSED_STREAM) was not processed (RFC 9113 §8.7):
        // unsent, as a GOAWAY'd one, though its connection still takes others.
        let failed = |e: h2::Error| match e.reason() {
            Some(h2::Reason::REFUSED_STREAM) if e.is_reset() && e.is_remote() => {
                Http2Failure::Unsent(Failure::new(Code::Refused, e))
            }
            _ => Http2Failure::Sent(Failure::new(Code::Reset, e)),
        };
        if !request.body.is_empty()
            && let Err(e) = send.send_data(request.body.clone(), true)
        {
            // A stream reset before its body went says why in its answer, not here.
            return Err(match answer.await {
                Err(why) => failed(why),
                Ok(_) => failed(e),
            });
        }
        let answer = answer.await.map_err(failed)?;
        let response = read(answer, self.preset.marker.as_ref()).await;
        drop(stream);
        response.map_err(Http2Failure::Sent)
    }

    /// `request` as HTTP/2 sends it, made once: HTTP/2 names scheme and authority in every
    /// request (`:scheme`, `:authority`).
    fn http2_request(&self, request: Request<'_>) -> Result<Http2Request, Failure> {
        let bad = |e: String| Failure::new(Code::BadRequest, e);
        let mut parts = request.uri.clone().into_parts();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = self.authority.clone();
        let uri = hyper::Uri::from_parts(parts).map_err(|e| bad(e.to_string()))?;
        let key = match request.key {
            Some((name, value)) => Some((
                name.clone(),
                header(value).ok_or_else(|| bad(format!("`{value}` is not a header value")))?,
            )),
            None => None,
        };
        Ok(Http2Request {
            method: request.method,
            uri,
            key,
            body: request.body.into_bytes(),
        })
    }

    /// The head of `request`, with the endpoint's headers (a new one for every send: an
    /// HTTP request head cannot be cloned).
    fn http2_head(&self, request: &Http2Request) -> hyper::Request<()> {
        // As over HTTP/1.1: every request but a bodiless GET says its length.
        let says_length = !(request.body.is_empty() && request.method == hyper::Method::GET);
        let mut r = hyper::Request::new(());
        *r.method_mut() = request.method.clone();
        *r.uri_mut() = request.uri.clone();
        let h = r.headers_mut();
        h.insert(header::HOST, self.preset.host.clone());
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if says_length {
            h.insert(
                header::CONTENT_LENGTH,
                HeaderValue::from(request.body.len()),
            );
        }
        if let Some(auth) = &self.preset.authorization {
            h.insert(header::AUTHORIZATION, auth.clone());
        }
        if let Some((name, value)) = &request.key {
            h.insert(name.clone(), value.clone());
        }
        r
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
        // The connect and the handshake wait no longer than the read: a server that never
        // answers its ClientHello does not hold the run.
        let opened = tokio::time::timeout(wait, async {
            let tcp = tokio::net::TcpStream::connect(&self.address).await.ok()?;
            Some(tls.connector.connect(tls.server_name.clone(), tcp).await)
        });
        let mut stream = match opened.await.ok()?? {
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

/// The whole answer to an HTTP/2 request that was sent (at most `MAX_ANSWER_BYTES` of its
/// body, the rest refused by resetting the stream): anything that breaks now is `Reset`.
async fn read(
    response: hyper::Response<h2::RecvStream>,
    marker: Option<&HeaderName>,
) -> Result<Response, Failure> {
    let status = response.status().as_u16();
    let (parts, mut incoming) = response.into_parts();
    // Most answers are one data frame: kept as it came, copied only when a second one does.
    let mut first: Option<Bytes> = None;
    let mut more = bytes::BytesMut::new();
    let mut length = 0usize;
    let mut oversized = false;
    while let Some(data) = incoming.data().await {
        let data = data.map_err(|e| Failure::new(Code::Reset, e))?;
        // What was read is the server's to send again: the windows stay open.
        let _ = incoming.flow_control().release_capacity(data.len());
        length += data.len();
        if length > MAX_ANSWER_BYTES {
            oversized = true;
            break;
        }
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
    Ok(Response {
        status,
        marker: marker
            .and_then(|name| parts.headers.get(name))
            .map(|v| Bytes::copy_from_slice(v.as_bytes())),
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

    fn get(_address: &str) -> Request<'static> {
        static ROOT: std::sync::LazyLock<hyper::Uri> =
            std::sync::LazyLock::new(|| hyper::Uri::from_static("/"));
        Request {
            method: hyper::Method::GET,
            uri: &ROOT,
            key: None,
            body: Body::Bytes(Bytes::new()),
        }
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

    /// A connection is registered with the reactor of the runtime that opened it: one
    /// opened off the lanes (a preflight, the probe) must never be handed to a lane, whose
    /// requests would then wake another thread for every answer.
    #[tokio::test]
    async fn a_connection_opened_off_the_lanes_is_not_handed_to_a_lane() {
        let (address, accepted) = counting_server(false).await;
        let pool = std::sync::Arc::new(ConnectionPool::new(address.clone(), 8));
        pool.send(get(&address))
            .await
            .expect("answer off the lanes");
        assert_eq!(pool.idle_len(), 1);
        let on_lane = pool.clone();
        let lane_address = address.clone();
        let lane = std::thread::spawn(move || {
            crate::lane::set_lane(0);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                on_lane
                    .send(get(&lane_address))
                    .await
                    .expect("answer on lane 0");
            });
        });
        // Joined beside this runtime, which keeps serving meanwhile.
        tokio::task::spawn_blocking(move || lane.join())
            .await
            .expect("join")
            .expect("lane thread");
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            2,
            "lane 0 opened its own connection"
        );
        assert_eq!(pool.idle_len(), 2);
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

    /// A loopback server that reads each request whole (head and `content-length` body),
    /// writes `answer` in `pieces` writes a millisecond apart, and closes the connection
    /// after it when `close`. Counts the connections it accepts.
    async fn scripted(
        answer: &'static [u8],
        pieces: usize,
        close: bool,
    ) -> (String, std::sync::Arc<AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let accepted = std::sync::Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut buf = [0u8; 4096];
                    loop {
                        let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") else {
                            match socket.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => seen.extend_from_slice(&buf[..n]),
                            }
                            continue;
                        };
                        let head = String::from_utf8_lossy(&seen[..end]).to_ascii_lowercase();
                        assert!(head.contains("\r\nhost: "), "{head}");
                        let length: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length: "))
                            .map_or(0, |n| n.trim().parse().unwrap());
                        while seen.len() < end + 4 + length {
                            match socket.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => seen.extend_from_slice(&buf[..n]),
                            }
                        }
                        seen.drain(..end + 4 + length);
                        let step = answer.len().div_ceil(pieces.max(1));
                        for piece in answer.chunks(step.max(1)) {
                            if socket.write_all(piece).await.is_err() {
                                return;
                            }
                            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                        }
                        if close {
                            return;
                        }
                    }
                });
            }
        });
        (address, accepted)
    }

    fn post(body: &'static [u8]) -> Request<'static> {
        static PATH: std::sync::LazyLock<hyper::Uri> =
            std::sync::LazyLock::new(|| hyper::Uri::from_static("/v1/purchases/commit"));
        Request {
            method: hyper::Method::POST,
            uri: &PATH,
            key: None,
            body: Body::Bytes(Bytes::from_static(body)),
        }
    }

    /// An HTTP/2 server (the `h2` crate's, prior knowledge on TCP) that checks each request
    /// carries its body and length, and answers `length` bytes in 16 KiB data frames with a
    /// `replayed` header.
    async fn h2_server(length: usize) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let Ok(mut connection) = h2::server::handshake(socket).await else {
                        return;
                    };
                    while let Some(Ok((request, mut respond))) = connection.accept().await {
                        tokio::spawn(async move {
                            let (head, mut body) = request.into_parts();
                            let mut asked = Vec::new();
                            while let Some(Ok(data)) = body.data().await {
                                let _ = body.flow_control().release_capacity(data.len());
                                asked.extend_from_slice(&data);
                            }
                            let said = head.headers.get(header::CONTENT_LENGTH).cloned();
                            let status = if said == Some(HeaderValue::from(asked.len())) {
                                200
                            } else {
                                400
                            };
                            let answer = hyper::Response::builder()
                                .status(status)
                                .header("replayed", "true")
                                .body(())
                                .unwrap();
                            let Ok(mut send) = respond.send_response(answer, false) else {
                                return;
                            };
                            let mut left = length;
                            while left > 0 {
                                send.reserve_capacity(left.min(16 << 10));
                                let Some(Ok(room)) =
                                    std::future::poll_fn(|cx| send.poll_capacity(cx)).await
                                else {
                                    return;
                                };
                                let n = room.min(left).min(16 << 10);
                                left -= n;
                                if send
                                    .send_data(Bytes::from(vec![b'x'; n]), left == 0)
                                    .is_err()
                                {
                                    return;
                                }
                            }
                        });
                    }
                });
            }
        });
        address
    }

    fn h2_pool(address: String) -> ConnectionPool {
        let preset = Preset {
            host: header(&address).expect("host"),
            authorization: None,
            marker: Some(HeaderName::from_static("replayed")),
        };
        ConnectionPool::with(address, None, HttpVersion::Http2, 8, preset)
    }

    #[tokio::test]
    async fn an_http2_answer_in_many_frames_is_read_whole_on_one_connection() {
        let address = h2_server(100_000).await;
        let pool = h2_pool(address);
        for _ in 0..3 {
            let answer = pool.send(post(b"{\"a\":1}")).await.expect("answer");
            assert_eq!(answer.status, 200, "the request's body and length arrived");
            assert_eq!(answer.body.len(), 100_000);
            assert!(!answer.oversized);
            assert_eq!(answer.marker.as_deref(), Some(&b"true"[..]));
        }
        assert_eq!((pool.figures().opened, pool.figures().http2), (1, 1));
    }

    #[tokio::test]
    async fn answers_past_the_connection_window_flow_on_one_connection() {
        // Seven answers of a million bytes at once on one connection: together past its
        // window (5 MiB), so each must give its share back as it is read, or every stream
        // would wait, part-read, for window the others hold.
        let address = h2_server(1_000_000).await;
        let pool = std::sync::Arc::new(h2_pool(address));
        // The connection first, so that the seven share it.
        pool.send(post(b"{}")).await.expect("first answer");
        let answers: Vec<_> = (0..7)
            .map(|_| {
                let pool = pool.clone();
                tokio::spawn(async move { pool.send(post(b"{}")).await.map(|a| a.body.len()) })
            })
            .collect();
        for (i, answer) in answers.into_iter().enumerate() {
            let length = tokio::time::timeout(std::time::Duration::from_secs(20), answer)
                .await
                .unwrap_or_else(|_| panic!("answer {i} waited on a window"))
                .expect("join");
            assert_eq!(length.ok(), Some(1_000_000));
        }
        assert_eq!(pool.figures().opened, 1);
    }

    /// A server going away (GOAWAY) while an older stream still runs: a request that finds
    /// the connection refusing new streams was not sent, so it goes once more on a new
    /// connection and is answered; the next one takes that connection, not the old one.
    #[tokio::test]
    async fn a_request_a_going_away_connection_refused_goes_on_a_new_one() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let mut first = true;
            while let Ok((socket, _)) = listener.accept().await {
                let going_away = std::mem::replace(&mut first, false);
                tokio::spawn(async move {
                    let Ok(mut connection) = h2::server::handshake(socket).await else {
                        return;
                    };
                    while let Some(Ok((_, mut respond))) = connection.accept().await {
                        if going_away {
                            connection.graceful_shutdown();
                        }
                        tokio::spawn(async move {
                            if going_away {
                                tokio::time::sleep(std::time::Duration::from_millis(600)).await;
                            }
                            let answer = hyper::Response::builder().status(200).body(()).unwrap();
                            let _ = respond.send_response(answer, true);
                        });
                    }
                });
            }
        });
        let pool = std::sync::Arc::new(h2_pool(address));
        let slow = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.send(post(b"{}")).await.map(|a| a.status) })
        };
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let resent = pool.send(post(b"{}")).await.map(|a| a.status);
        assert_eq!(resent.ok(), Some(200), "sent again on a new connection");
        assert_eq!(pool.figures().opened, 2);
        let next = pool.send(post(b"{}")).await.map(|a| a.status);
        assert_eq!(next.ok(), Some(200));
        assert_eq!(
            slow.await.expect("join").ok(),
            Some(200),
            "the older stream ends"
        );
        assert_eq!(pool.figures().opened, 2);
    }

    /// A server that refuses a stream unprocessed (REFUSED_STREAM, as one past its stream
    /// limit does): the request goes once more, and is answered; the connection stays in use.
    /// A stream reset for any other reason stays `Reset`, and is not sent again.
    #[tokio::test]
    async fn a_stream_the_server_refused_unprocessed_is_sent_once_more() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let seen = std::sync::Arc::new(AtomicUsize::new(0));
        let counted = seen.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let counted = counted.clone();
                tokio::spawn(async move {
                    let Ok(mut connection) = h2::server::handshake(socket).await else {
                        return;
                    };
                    while let Some(Ok((_, mut respond))) = connection.accept().await {
                        // The first, third and fourth streams are refused unprocessed; the
                        // fifth is cancelled.
                        match counted.fetch_add(1, Ordering::Relaxed) {
                            0 | 2 | 3 => respond.send_reset(h2::Reason::REFUSED_STREAM),
                            4 => respond.send_reset(h2::Reason::CANCEL),
                            _ => {
                                let answer =
                                    hyper::Response::builder().status(200).body(()).unwrap();
                                let _ = respond.send_response(answer, true);
                            }
                        }
                    }
                });
            }
        });
        let pool = h2_pool(address);
        let answered = pool.send(post(b"{}")).await.map(|a| a.status);
        assert_eq!(answered.ok(), Some(200), "sent again and answered");
        assert_eq!(seen.load(Ordering::Relaxed), 2);
        let refused_twice = pool.send(post(b"{}")).await.map(|a| a.status);
        assert_eq!(
            refused_twice.err(),
            Some(Code::Refused),
            "sent once more, no more"
        );
        assert_eq!(seen.load(Ordering::Relaxed), 4);
        let cancelled = pool.send(post(b"{}")).await.map(|a| a.status);
        assert_eq!(cancelled.err(), Some(Code::Reset), "the server may have it");
        assert_eq!(seen.load(Ordering::Relaxed), 5);
        assert_eq!(
            pool.figures().opened,
            1,
            "a refused stream keeps its connection"
        );
    }

    /// An HTTP/1.1 pool over TLS to `address`, trusting `ca` for the name 127.0.0.1.
    fn tls_pool(address: &str, ca: rustls::pki_types::CertificateDer<'static>) -> ConnectionPool {
        let config = super::super::tls::client_config(None, HttpVersion::Http1, Some(ca))
            .expect("client config");
        let tls = ClientTls::new(config, "127.0.0.1", None).expect("tls");
        let preset = Preset {
            host: header(address).expect("host"),
            authorization: None,
            marker: None,
        };
        ConnectionPool::with(
            address.to_string(),
            Some(tls),
            HttpVersion::Http1,
            8,
            preset,
        )
    }

    /// A TLS server that ends a close-delimited answer by closing the connection without a
    /// close_notify (as Python's `ssl` does): the answer is whole, not `Reset`. One whose
    /// Content-Length says more than came stays `Reset`.
    #[tokio::test]
    async fn a_tls_answer_ended_by_a_close_without_close_notify_is_whole() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let made = crate::sut::server::tls::SelfSigned::loopback().expect("certificate");
        let acceptor = tokio_rustls::TlsAcceptor::from(made.server_config().expect("config"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let mut answers = [
                &b"HTTP/1.0 200 OK\r\n\r\n{\"a\":1}"[..],
                &b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{\"a\":1}"[..],
            ]
            .into_iter();
            while let Ok((socket, _)) = listener.accept().await {
                let Some(answer) = answers.next() else { return };
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    return;
                };
                let _ = tls.read(&mut [0u8; 4096]).await;
                let _ = tls.write_all(answer).await;
                let _ = tls.flush().await;
                // The TCP connection closes; no close_notify is sent.
                drop(tls.into_inner().0);
            }
        });
        let pool = tls_pool(&address, made.ca);
        let whole = pool.send(get(&address)).await.expect("a whole answer");
        assert_eq!(&whole.body[..], b"{\"a\":1}");
        assert_eq!(
            pool.idle_len(),
            0,
            "a close-delimited answer keeps no connection"
        );
        assert_eq!(pool.send(get(&address)).await.err(), Some(Code::Reset));
    }

    /// The TLS diagnosis of a server that takes the connection and never answers its
    /// ClientHello ends within its wait: it says nothing, and holds nothing up.
    #[tokio::test]
    async fn the_tls_diagnosis_of_a_server_that_never_answers_ends_in_its_wait() {
        let made = crate::sut::server::tls::SelfSigned::loopback().expect("certificate");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let (held_tx, mut held) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                // Kept open, never read from or written to.
                let _ = held_tx.send(socket);
            }
        });
        let pool = tls_pool(&address, made.ca);
        let wait = std::time::Duration::from_millis(200);
        let said =
            tokio::time::timeout(std::time::Duration::from_secs(30), pool.diagnose_tls(wait))
                .await
                .expect("the diagnosis ended");
        assert!(said.is_none(), "a silent server says nothing about TLS");
        let taken = tokio::time::timeout(std::time::Duration::from_secs(30), held.recv()).await;
        assert!(taken.ok().flatten().is_some(), "the connection was taken");
    }

    #[tokio::test]
    async fn an_http2_answer_past_the_limit_is_cut_and_said_oversized() {
        let address = h2_server(MAX_ANSWER_BYTES + 40_000).await;
        let pool = h2_pool(address);
        let answer = pool.send(post(b"{}")).await.expect("answer");
        assert!(answer.oversized);
        assert!(answer.body.len() <= MAX_ANSWER_BYTES);
        // The connection carries the next request (only the stream was refused).
        let again = pool.send(post(b"{}")).await.expect("answer again");
        assert!(again.oversized);
        assert_eq!(pool.figures().opened, 1);
    }

    #[tokio::test]
    async fn a_chunked_answer_in_pieces_is_read_whole_and_keeps_its_connection() {
        let answer = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3;x=y\r\n{\"a\r\n4\r\n\":1}\r\n0\r\nx-t: 1\r\n\r\n";
        let (address, accepted) = scripted(answer, 7, false).await;
        let pool = ConnectionPool::new(address, 8);
        for _ in 0..3 {
            let a = pool.send(post(b"{}")).await.expect("answer");
            assert_eq!((a.status, &a.body[..]), (200, &b"{\"a\":1}"[..]));
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(pool.idle_len(), 1);
    }

    #[tokio::test]
    async fn connections_that_end_with_their_answer_are_not_kept() {
        let answers: [&'static [u8]; 3] = [
            b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok",
            b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok",
            b"HTTP/1.0 200 OK\r\n\r\nok",
        ];
        for answer in answers {
            let (address, accepted) = scripted(answer, 1, true).await;
            let pool = ConnectionPool::new(address, 8);
            for _ in 0..2 {
                let a = pool.send(post(b"{}")).await.expect("answer");
                assert_eq!((a.status, &a.body[..]), (200, &b"ok"[..]));
                assert_eq!(pool.idle_len(), 0);
            }
            assert_eq!(accepted.load(Ordering::SeqCst), 2);
        }
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_while_idle_costs_no_request() {
        // Keep-alive by the headers, then closed (a server's idle timeout).
        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        let (address, accepted) = scripted(answer, 1, true).await;
        let pool = ConnectionPool::new(address, 8);
        for _ in 0..3 {
            assert_eq!(pool.send(post(b"{}")).await.expect("answer").status, 200);
            // The close arrives while the connection is idle.
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_closed_idle_connection_is_seen_by_a_task_that_spent_its_budget() {
        // As above, but each request comes from a task that spent tokio's cooperative
        // budget first: the check of the idle connection must still look at the socket.
        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        let (address, accepted) = scripted(answer, 1, true).await;
        let pool = ConnectionPool::new(address, 8);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for _ in 0..3 {
            for _ in 0..1000 {
                tx.send(()).expect("send");
            }
            // Each ready receive costs a unit of the budget, without yielding.
            while tokio::task::coop::has_budget_remaining() {
                rx.recv().await;
            }
            assert_eq!(pool.send(post(b"{}")).await.expect("answer").status, 200);
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn an_answer_cut_mid_body_is_reset_and_its_connection_dropped() {
        let cut = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n01234";
        let (address, _) = scripted(cut, 2, true).await;
        let pool = ConnectionPool::new(address, 8);
        assert_eq!(pool.send(post(b"{}")).await.err(), Some(Code::Reset));
        assert_eq!(pool.idle_len(), 0);
        let garbage = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nnot hex\r\n";
        let (address, _) = scripted(garbage, 1, false).await;
        let pool = ConnectionPool::new(address, 8);
        assert_eq!(pool.send(post(b"{}")).await.err(), Some(Code::Reset));
        assert_eq!(pool.idle_len(), 0);
    }
}
