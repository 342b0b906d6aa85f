//! swarm's own HTTP/1.1 connection: one request written in one buffer, one answer read into
//! a reusable buffer and parsed with `httparse` (hyper's parser), on the task that asked.
//!
//! A load generator's HTTP/1.1 client needs little of a general one: one request at a time
//! per connection, no upgrades, no `Expect`, no pipelining. What it keeps of HTTP/1.1 is
//! the answer's framing (`Content-Length`, `Transfer-Encoding: chunked` with extensions and
//! trailers, close-delimited), interim 1xx answers (skipped), whether the connection may be
//! used again (`Connection: close`; HTTP/1.0 only with `keep-alive`), and a body limit.
//!
//! Invariants: a connection is reusable only when its answer ended exactly where the bytes
//! read end (nothing unread, nothing unasked); any error, a partial answer or a cut body
//! leaves it unusable (the caller drops it); the read buffer never holds more than
//! `MAX_HEAD_BYTES` of a head nor the answer's body beyond `MAX_ANSWER_BYTES`.
//!
//! It stays one file: it is one exchange, a request written and its answer read on the same
//! connection, and the answer's framing (`Reading`), most of the code, is tested below at
//! every split of its bytes.

use std::io;
use std::mem::MaybeUninit;
use std::ops::Range;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes, BytesMut};
use hyper::Method;
use hyper::header::HeaderName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Longest answer body read, over HTTP/1.1 here and over HTTP/2 in `pool`: a contract answer
/// is a few hundred bytes, and a server that streams without end must not hold the
/// generator's memory.
pub const MAX_ANSWER_BYTES: usize = 1 << 20;

/// Longest answer head (status line and headers) read before giving up on it.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most headers in an answer's head (or its trailers), as hyper's default.
const MAX_HEADERS: usize = 100;
/// Longest chunk-size line (with its extensions).
const MAX_CHUNK_LINE: usize = 4096;
/// Room made in the read buffer before each read: far more than a contract's answer, so a
/// read that fills less shows the socket drained (tokio then skips a read that would block).
const READ_ROOM: usize = 8 * 1024;

/// The socket under one connection: TCP, or TLS over it.
pub enum Io {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// One request as the pool is given it: the parts that vary, the rest is the endpoint's.
pub struct Request<'a> {
    pub method: Method,
    /// Origin form (`/path?query`); HTTP/2 adds the scheme and authority.
    pub uri: &'a hyper::Uri,
    /// The contract's key header and its value (a valid header value: see `header_value`).
    pub key: Option<(&'a HeaderName, &'a str)>,
    pub body: Body<'a>,
}

/// A request's body: bytes already made, or written when the request is (straight into an
/// HTTP/1.1 connection's buffer, after its head: no buffer of its own).
pub enum Body<'a> {
    Bytes(Bytes),
    Write(&'a (dyn Fn(&mut Vec<u8>) + Sync)),
}

impl Body<'_> {
    /// The body in a buffer of its own (HTTP/2).
    pub fn into_bytes(self) -> Bytes {
        match self {
            Body::Bytes(b) => b,
            Body::Write(write) => {
                let mut out = Vec::with_capacity(512);
                write(&mut out);
                Bytes::from(out)
            }
        }
    }
}

/// True when `value` may stand as a header value as written (what `HeaderValue` accepts:
/// visible ASCII, spaces, tabs and obs-text; no control characters, so no CR or LF).
pub fn header_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| (b >= 0x20 && b != 0x7f) || b == b'\t')
}

/// Write `req` as HTTP/1.1 into `out`: request line, `fixed` (the endpoint's own headers,
/// each ending in CRLF), the key, the length, the blank line and the body.
pub fn encode(out: &mut Vec<u8>, fixed: &[u8], req: &Request<'_>) {
    out.clear();
    out.extend_from_slice(req.method.as_str().as_bytes());
    out.push(b' ');
    let target = req.uri.path_and_query().map_or("/", |p| p.as_str());
    out.extend_from_slice(if target.is_empty() {
        b"/"
    } else {
        target.as_bytes()
    });
    out.extend_from_slice(b" HTTP/1.1\r\n");
    out.extend_from_slice(fixed);
    if let Some((name, value)) = req.key {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let length = |len: usize| {
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(len).as_bytes();
        let mut line = [0u8; 40];
        let parts: [&[u8]; 3] = [b"content-length: ", digits, b"\r\n\r\n"];
        let mut n = 0;
        for part in parts {
            line[n..n + part.len()].copy_from_slice(part);
            n += part.len();
        }
        (line, n)
    };
    match &req.body {
        Body::Bytes(body) if body.is_empty() && req.method == Method::GET => {
            out.extend_from_slice(b"\r\n");
        }
        Body::Bytes(body) => {
            let (line, n) = length(body.len());
            out.extend_from_slice(&line[..n]);
            out.extend_from_slice(body);
        }
        Body::Write(write) => {
            // The body is written where it ends up, then its length line goes before it.
            let at = out.len();
            write(out);
            let len = out.len() - at;
            let (line, n) = length(len);
            out.extend_from_slice(&line[..n]);
            out.copy_within(at..at + len, at + n);
            out[at..at + n].copy_from_slice(&line[..n]);
        }
    }
}

/// An answer read whole (or cut at the limit).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// The value of the header the pool was asked to watch (the contract's replay marker).
    pub marker: Option<Bytes>,
    /// At most `MAX_ANSWER_BYTES`.
    pub body: Bytes,
    pub oversized: bool,
    /// The connection may carry another request: it owes nothing and holds nothing unread.
    pub reusable: bool,
}

/// Why an answer could not be read: the connection is unusable, the request `Reset`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Broken {
    #[error("the connection closed before the answer's head ended")]
    ClosedInHead,
    #[error("the connection closed before the answer's body ended")]
    ClosedInBody,
    #[error("an unreadable answer head: {0}")]
    Head(String),
    #[error("an answer head longer than {MAX_HEAD_BYTES} bytes")]
    HeadTooLong,
    #[error("an unreadable chunked body")]
    Chunk,
    #[error("an unsupported answer: {0}")]
    Unsupported(&'static str),
}

/// How the body after a head ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// `Content-Length` (0 for 204 and 304).
    Length(u64),
    Chunked,
    /// Read until the server closes the connection.
    UntilClose,
}

/// Where a chunked body's reading stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
}

/// What the head said, until its body ends.
#[derive(Debug)]
struct Head {
    status: u16,
    keep_alive: bool,
    /// The head's bytes, split off the buffer once the body is read apart from it.
    marker: Option<Bytes>,
    framing: Framing,
}

#[derive(Debug)]
enum State {
    Head,
    /// A `Content-Length` body: the head stays in the buffer (`head_len` bytes, `marker`
    /// its range there) so head and body are split off together when the body is whole.
    Length {
        status: u16,
        keep_alive: bool,
        head_len: usize,
        marker: Option<Range<usize>>,
        len: u64,
    },
    /// A chunked or close-delimited body, decoded into `body`.
    Apart {
        head: Head,
        body: BytesMut,
        chunk: Chunk,
    },
}

/// Reading one answer: fed the bytes read so far, it consumes what it understands.
#[derive(Debug)]
pub struct Reading<'m> {
    marker: Option<&'m HeaderName>,
    state: State,
}

impl<'m> Reading<'m> {
    /// Read an answer, keeping the value of the `marker` header when there is one.
    pub fn new(marker: Option<&'m HeaderName>) -> Reading<'m> {
        Reading {
            marker,
            state: State::Head,
        }
    }

    /// Take what `input` holds; `eof`: the connection has closed and nothing more will
    /// come. `Ok(None)`: more bytes are needed. On `Ok(Some(_))`, `input` holds what came
    /// after the answer (nothing, on a connection that may be reused).
    pub fn feed(&mut self, input: &mut BytesMut, eof: bool) -> Result<Option<Answer>, Broken> {
        loop {
            match &mut self.state {
                State::Head => match self.head(input)? {
                    Some(state) => self.state = state,
                    None if input.len() > MAX_HEAD_BYTES => return Err(Broken::HeadTooLong),
                    None if eof => return Err(Broken::ClosedInHead),
                    None => return Ok(None),
                },
                State::Length {
                    status,
                    keep_alive,
                    head_len,
                    marker,
                    len,
                } => {
                    let (status, head_len) = (*status, *head_len);
                    let oversized = *len > MAX_ANSWER_BYTES as u64;
                    let have = input.len() - head_len;
                    if oversized {
                        // Cut at once: nothing of a body that long is worth reading.
                        let whole = input.split_to(input.len()).freeze();
                        let cut = have.min(MAX_ANSWER_BYTES);
                        return Ok(Some(Answer {
                            status,
                            marker: marker.clone().map(|r| whole.slice(r)),
                            body: whole.slice(head_len..head_len + cut),
                            oversized: true,
                            reusable: false,
                        }));
                    }
                    let len = *len as usize;
                    if have < len {
                        return if eof {
                            Err(Broken::ClosedInBody)
                        } else {
                            Ok(None)
                        };
                    }
                    let whole = input.split_to(head_len + len).freeze();
                    return Ok(Some(Answer {
                        status,
                        marker: marker.clone().map(|r| whole.slice(r)),
                        body: whole.slice(head_len..),
                        oversized: false,
                        reusable: *keep_alive && input.is_empty() && !eof,
                    }));
                }
                State::Apart { head, body, chunk } => {
                    let done = match head.framing {
                        Framing::Chunked => dechunk(input, body, chunk)?,
                        _ => {
                            let take = input.len().min(MAX_ANSWER_BYTES + 1 - body.len());
                            body.extend_from_slice(&input[..take]);
                            input.advance(take);
                            body.len() > MAX_ANSWER_BYTES
                        }
                    };
                    let oversized = body.len() > MAX_ANSWER_BYTES;
                    if !(done || eof) {
                        return Ok(None);
                    }
                    if !done && head.framing == Framing::Chunked {
                        return Err(Broken::ClosedInBody);
                    }
                    body.truncate(MAX_ANSWER_BYTES);
                    return Ok(Some(Answer {
                        status: head.status,
                        marker: head.marker.take(),
                        body: std::mem::take(body).freeze(),
                        oversized,
                        reusable: head.keep_alive
                            && head.framing == Framing::Chunked
                            && !oversized
                            && input.is_empty()
                            && !eof,
                    }));
                }
            }
        }
    }

    /// Parse a head at the start of `input`: the state its body is read in, `None` when the
    /// head is not whole yet. Interim (1xx) answers are consumed and skipped.
    fn head(&self, input: &mut BytesMut) -> Result<Option<State>, Broken> {
        loop {
            let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
            let mut r = httparse::Response::new(&mut []);
            let head_len = match httparse::ParserConfig::default()
                .parse_response_with_uninit_headers(&mut r, input, &mut slots)
            {
                Ok(httparse::Status::Complete(n)) => n,
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(e) => return Err(Broken::Head(e.to_string())),
            };
            let status = r.code.unwrap_or(0);
            // Three digits, but no status below 100 exists: 0 would read as "no answer".
            if status < 100 {
                return Err(Broken::Head(format!("status {status:03}")));
            }
            if (100..200).contains(&status) {
                if status == 101 {
                    return Err(Broken::Unsupported("101 Switching Protocols"));
                }
                input.advance(head_len);
                continue;
            }
            let http11 = r.version == Some(1);
            let (mut close, mut keep) = (false, false);
            let (mut length, mut te, mut chunked) = (None::<u64>, false, false);
            // A malformed or conflicting length breaks the answer only when the length
            // is what frames its body (a 204 or a chunked answer ignores it).
            let mut bad_length = None;
            let mut marker = None;
            let base = input.as_ptr() as usize;
            for h in r.headers.iter() {
                let name = h.name.as_bytes();
                if name.eq_ignore_ascii_case(b"content-length") {
                    for part in h.value.split(|&b| b == b',') {
                        match digits(part.trim_ascii()) {
                            None => bad_length = Some("a malformed Content-Length"),
                            Some(n) if length.is_some_and(|l| l != n) => {
                                bad_length = Some("conflicting Content-Length values");
                            }
                            Some(n) => length = Some(n),
                        }
                    }
                } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                    te = true;
                    if let Some(last) = h.value.rsplit(|&b| b == b',').next() {
                        chunked = last.trim_ascii().eq_ignore_ascii_case(b"chunked");
                    }
                } else if name.eq_ignore_ascii_case(b"connection") {
                    for token in h.value.split(|&b| b == b',') {
                        let token = token.trim_ascii();
                        close |= token.eq_ignore_ascii_case(b"close");
                        keep |= token.eq_ignore_ascii_case(b"keep-alive");
                    }
                }
                if marker.is_none()
                    && self
                        .marker
                        .is_some_and(|m| m.as_str().as_bytes().eq_ignore_ascii_case(name))
                {
                    let value = h.value.trim_ascii();
                    let start = value.as_ptr() as usize - base;
                    marker = Some(start..start + value.len());
                }
            }
            // A transfer coding on an HTTP/1.0 answer, or beside a Content-Length, is
            // framing RFC 9112 (§6.1, §6.3) calls faulty: read, but the connection closes.
            let faulty = te && (!http11 || length.is_some() || bad_length.is_some());
            let keep_alive = !close && (http11 || keep) && !faulty;
            let framing = match (status, te, chunked, length, bad_length) {
                (204 | 304, ..) => Framing::Length(0),
                (_, true, true, ..) => Framing::Chunked,
                (_, true, false, ..) => Framing::UntilClose,
                (_, false, _, _, Some(why)) => return Err(Broken::Head(why.into())),
                (_, false, _, Some(n), None) => Framing::Length(n),
                (_, false, _, None, None) => Framing::UntilClose,
            };
            if let Framing::Length(len) = framing {
                return Ok(Some(State::Length {
                    status,
                    keep_alive,
                    head_len,
                    marker,
                    len,
                }));
            }
            let head = input.split_to(head_len).freeze();
            return Ok(Some(State::Apart {
                head: Head {
                    status,
                    keep_alive: keep_alive && framing == Framing::Chunked,
                    marker: marker.map(|r| head.slice(r)),
                    framing,
                },
                body: BytesMut::new(),
                chunk: Chunk::Size,
            }));
        }
    }
}

/// A decimal length, or `None` when `s` is not one (empty, a sign, other characters, or
/// more than fits).
fn digits(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit()
            .then(|| n.checked_mul(10)?.checked_add(u64::from(b - b'0')))?
    })
}

/// Decode what `input` holds of a chunked body into `body` (up to one byte past the limit,
/// which says it is oversized). True when the body has ended (trailers read) or is over the
/// limit.
fn dechunk(input: &mut BytesMut, body: &mut BytesMut, chunk: &mut Chunk) -> Result<bool, Broken> {
    loop {
        match *chunk {
            Chunk::Size => {
                if !input.first().is_some_and(u8::is_ascii_hexdigit) {
                    return if input.is_empty() {
                        Ok(false)
                    } else {
                        Err(Broken::Chunk)
                    };
                }
                match httparse::parse_chunk_size(input) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        input.advance(used);
                        *chunk = if size == 0 {
                            Chunk::Trailers
                        } else {
                            Chunk::Data(size)
                        };
                    }
                    Ok(httparse::Status::Partial) if input.len() > MAX_CHUNK_LINE => {
                        return Err(Broken::Chunk);
                    }
                    Ok(httparse::Status::Partial) => return Ok(false),
                    Err(_) => return Err(Broken::Chunk),
                }
            }
            Chunk::Data(left) => {
                if input.is_empty() {
                    return Ok(false);
                }
                let take = input.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                let room = MAX_ANSWER_BYTES + 1 - body.len();
                body.extend_from_slice(&input[..take.min(room)]);
                if take >= room {
                    return Ok(true);
                }
                input.advance(take);
                let left = left - take as u64;
                *chunk = if left == 0 {
                    Chunk::DataEnd
                } else {
                    Chunk::Data(left)
                };
            }
            Chunk::DataEnd => {
                if input.len() < 2 {
                    return if input.first().is_none_or(|&b| b == b'\r') {
                        Ok(false)
                    } else {
                        Err(Broken::Chunk)
                    };
                }
                if &input[..2] != b"\r\n" {
                    return Err(Broken::Chunk);
                }
                input.advance(2);
                *chunk = Chunk::Size;
            }
            Chunk::Trailers => {
                let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
                match httparse::parse_headers(input, &mut slots) {
                    Ok(httparse::Status::Complete((used, _))) => {
                        input.advance(used);
                        return Ok(true);
                    }
                    Ok(httparse::Status::Partial) if input.len() > MAX_HEAD_BYTES => {
                        return Err(Broken::HeadTooLong);
                    }
                    Ok(httparse::Status::Partial) => return Ok(false),
                    Err(_) => return Err(Broken::Chunk),
                }
            }
        }
    }
}

/// One open HTTP/1.1 connection with its buffers, owned by the request using it.
pub struct Connection {
    io: Io,
    out: Vec<u8>,
    input: BytesMut,
}

/// Why an exchange failed after the connection was open.
#[derive(Debug, thiserror::Error)]
pub enum Failed {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error(transparent)]
    Broken(#[from] Broken),
}

impl Connection {
    pub fn new(io: Io) -> Connection {
        Connection {
            io,
            out: Vec::with_capacity(512),
            input: BytesMut::with_capacity(READ_ROOM),
        }
    }

    /// True when the connection still looks open and has sent nothing since its last
    /// answer: a read that would wait. Costs no system call unless the socket has been
    /// readable since (tokio keeps the readiness a short read cleared).
    pub fn quiet(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        let mut byte = [0u8; 1];
        let io = &mut self.io;
        // Outside tokio's cooperative budget: a task that spent its budget would be told
        // `Pending` without the socket being looked at, and a closed connection would
        // pass for a quiet one.
        let read = tokio::task::unconstrained(std::future::poll_fn(|cx| {
            Pin::new(&mut *io).poll_read(cx, &mut ReadBuf::new(&mut byte))
        }));
        matches!(std::pin::pin!(read).poll(&mut cx), Poll::Pending)
    }

    /// Send `req` (with the endpoint's `fixed` headers) and read its whole answer, keeping
    /// the `marker` header's value.
    pub async fn exchange(
        &mut self,
        fixed: &[u8],
        req: &Request<'_>,
        marker: Option<&HeaderName>,
    ) -> Result<Answer, Failed> {
        encode(&mut self.out, fixed, req);
        self.io.write_all(&self.out).await?;
        self.io.flush().await?;
        self.input.clear();
        let mut reading = Reading::new(marker);
        loop {
            self.input.reserve(READ_ROOM);
            let n = match self.io.read_buf(&mut self.input).await {
                Ok(n) => n,
                // A TLS server that closed without a close_notify (Python's `ssl`, many
                // others): an end like any other. The framing decides whether the answer
                // was whole: one that ends at the close is; one cut short of its length or
                // its last chunk is not.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => 0,
                Err(e) => return Err(e.into()),
            };
            if let Some(answer) = reading.feed(&mut self.input, n == 0)? {
                return Ok(answer);
            }
            if n == 0 {
                return Err(Broken::ClosedInBody.into());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `wire` in the pieces `cuts` makes (byte offsets), then end it when `close`.
    fn read_in_pieces(
        wire: &[u8],
        cuts: &[usize],
        marker: Option<&HeaderName>,
        close: bool,
    ) -> Result<Option<(Answer, BytesMut)>, Broken> {
        let mut reading = Reading::new(marker);
        let mut input = BytesMut::new();
        let mut at = 0;
        for &cut in cuts.iter().chain(std::iter::once(&wire.len())) {
            input.extend_from_slice(&wire[at..cut]);
            at = cut;
            if let Some(a) = reading.feed(&mut input, false)? {
                return Ok(Some((a, input)));
            }
        }
        if close {
            return Ok(reading.feed(&mut input, true)?.map(|a| (a, input)));
        }
        Ok(None)
    }

    /// The answer of `wire` is the same however its bytes are split in two reads.
    fn every_split(wire: &[u8], marker: Option<&HeaderName>, close: bool) -> Answer {
        let (whole, rest) = read_in_pieces(wire, &[], marker, close).unwrap().unwrap();
        assert!(rest.is_empty());
        for cut in 0..=wire.len() {
            let (a, rest) = read_in_pieces(wire, &[cut], marker, close)
                .unwrap_or_else(|e| panic!("cut at {cut}: {e}"))
                .unwrap_or_else(|| panic!("cut at {cut}: no answer"));
            assert!(rest.is_empty(), "cut at {cut}");
            assert_eq!(
                (a.status, &a.body, &a.marker, a.oversized, a.reusable),
                (
                    whole.status,
                    &whole.body,
                    &whole.marker,
                    whole.oversized,
                    whole.reusable
                ),
                "cut at {cut}"
            );
        }
        // And a byte at a time.
        let cuts: Vec<usize> = (1..wire.len()).collect();
        let (a, _) = read_in_pieces(wire, &cuts, marker, close).unwrap().unwrap();
        assert_eq!((a.status, &a.body), (whole.status, &whole.body));
        whole
    }

    #[test]
    fn a_content_length_answer_at_every_split() {
        let marker = HeaderName::from_static("idempotent-replayed");
        let wire = b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nIdempotent-Replayed:  true \r\ncontent-length: 11\r\n\r\n{\"ok\":true}";
        let a = every_split(wire, Some(&marker), false);
        assert_eq!(a.status, 201);
        assert_eq!(&a.body[..], b"{\"ok\":true}");
        assert_eq!(a.marker.as_deref(), Some(&b"true"[..]));
        assert!(a.reusable && !a.oversized);
    }

    #[test]
    fn a_chunked_answer_with_extensions_and_trailers_at_every_split() {
        let wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;name=value;x\r\nhello\r\n1 ; ext\r\n,\r\n6\r\n world\r\n0;last\r\nX-Trailer: 1\r\nY: 2\r\n\r\n";
        let a = every_split(wire, None, false);
        assert_eq!(&a.body[..], b"hello, world");
        assert!(a.reusable);
        let plain = b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\nconnection: close\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n";
        let a = every_split(plain, None, false);
        assert_eq!(&a.body[..], b"0123456789");
        assert!(!a.reusable, "Connection: close");
    }

    #[test]
    fn http10_answers_keep_the_connection_only_when_they_say_so() {
        let closed = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok";
        assert!(!every_split(closed, None, false).reusable);
        let kept = b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nok";
        assert!(every_split(kept, None, false).reusable);
        // No length: the body runs to the close.
        let until_close = b"HTTP/1.0 200 OK\r\nServer: x\r\n\r\n{\"a\":1}";
        assert_eq!(
            read_in_pieces(until_close, &[], None, false)
                .unwrap()
                .map(|a| a.0.status),
            None,
            "not over before the close"
        );
        let a = every_split(until_close, None, true);
        assert_eq!((&a.body[..], a.reusable), (&b"{\"a\":1}"[..], false));
    }

    #[test]
    fn faulty_framing_is_read_but_closes_the_connection() {
        // A transfer coding on HTTP/1.0, or beside a Content-Length (RFC 9112 §6.1, §6.3).
        let te_on_10 = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n";
        let a = every_split(te_on_10, None, false);
        assert_eq!((&a.body[..], a.reusable), (&b"ok"[..], false));
        let both = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n";
        let a = every_split(both, None, false);
        assert_eq!((&a.body[..], a.reusable), (&b"ok"[..], false));
        let plain = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n";
        assert!(every_split(plain, None, false).reusable);
    }

    #[test]
    fn interim_answers_are_skipped_and_switching_protocols_refused() {
        let wire = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        let a = every_split(wire, None, false);
        assert_eq!((a.status, a.body.len(), a.reusable), (200, 0, true));
        let up = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n";
        assert!(matches!(
            read_in_pieces(up, &[], None, false),
            Err(Broken::Unsupported(_))
        ));
    }

    #[test]
    fn no_body_for_204_and_304() {
        let wire = b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n";
        let a = every_split(wire, None, false);
        assert_eq!((a.status, a.body.len(), a.reusable), (204, 0, true));
    }

    #[test]
    fn a_body_over_the_limit_is_cut_and_flagged() {
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            MAX_ANSWER_BYTES + 1
        );
        let (a, _) = read_in_pieces(head.as_bytes(), &[], None, false)
            .unwrap()
            .expect("known at the head");
        assert!(a.oversized && !a.reusable && a.body.is_empty());

        // Chunked: cut at the limit, whatever comes after.
        let mut wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        let piece = vec![b'x'; 64 * 1024];
        for _ in 0..(MAX_ANSWER_BYTES / piece.len() + 1) {
            wire.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            wire.extend_from_slice(&piece);
            wire.extend_from_slice(b"\r\n");
        }
        let (a, _) = read_in_pieces(&wire, &[1000, 70_000], None, false)
            .unwrap()
            .expect("cut");
        assert!(a.oversized && !a.reusable);
        assert_eq!(a.body.len(), MAX_ANSWER_BYTES);

        // Close-delimited.
        let mut wire = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        wire.extend(std::iter::repeat_n(b'y', MAX_ANSWER_BYTES + 10));
        let (a, _) = read_in_pieces(&wire, &[], None, false)
            .unwrap()
            .expect("cut");
        assert!(a.oversized && !a.reusable);
        assert_eq!(a.body.len(), MAX_ANSWER_BYTES);

        // Exactly at the limit is not oversized.
        let mut wire =
            format!("HTTP/1.1 200 OK\r\nContent-Length: {MAX_ANSWER_BYTES}\r\n\r\n").into_bytes();
        wire.extend(std::iter::repeat_n(b'z', MAX_ANSWER_BYTES));
        let (a, _) = read_in_pieces(&wire, &[], None, false).unwrap().unwrap();
        assert!(!a.oversized && a.reusable);
    }

    #[test]
    fn a_connection_closed_mid_answer_is_broken() {
        let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234";
        assert_eq!(
            read_in_pieces(wire, &[], None, true).err(),
            Some(Broken::ClosedInBody)
        );
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel";
        assert_eq!(
            read_in_pieces(chunked, &[], None, true).err(),
            Some(Broken::ClosedInBody)
        );
        let before_trailers = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n";
        assert_eq!(
            read_in_pieces(before_trailers, &[], None, true).err(),
            Some(Broken::ClosedInBody)
        );
        assert_eq!(
            read_in_pieces(b"HTTP/1.1 200 OK\r\nConte", &[], None, true).err(),
            Some(Broken::ClosedInHead)
        );
        assert_eq!(
            read_in_pieces(b"", &[], None, true).err(),
            Some(Broken::ClosedInHead)
        );
    }

    #[test]
    fn malformed_answers_are_broken() {
        let cases: &[&[u8]] = &[
            b"HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\nok",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
            b"HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\nok",
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\nok",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokXY0\r\n\r\n",
            b"SMTP/1.1 200 OK\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 000 OK\r\nContent-Length: 2\r\n\r\nok",
            b"HTTP/1.1 099 OK\r\nContent-Length: 2\r\n\r\nok",
        ];
        for wire in cases {
            assert!(
                read_in_pieces(wire, &[], None, true).is_err(),
                "{}",
                String::from_utf8_lossy(wire)
            );
        }
        // A length that frames nothing breaks nothing (hyper reads these alike).
        let ignored: &[&[u8]] = &[
            b"HTTP/1.1 204 No Content\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        ];
        for wire in ignored {
            assert!(read_in_pieces(wire, &[], None, true).is_ok());
        }
        // Equal repeated lengths are one length.
        let same = b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\ncontent-length: 2\r\n\r\nok";
        assert_eq!(&every_split(same, None, false).body[..], b"ok");
        // A head that never ends.
        let mut long = b"HTTP/1.1 200 OK\r\n".to_vec();
        while long.len() <= MAX_HEAD_BYTES {
            long.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        assert!(read_in_pieces(&long, &[], None, false).is_err());
    }

    #[test]
    fn bytes_after_the_answer_make_the_connection_unusable() {
        let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n";
        let (a, rest) = read_in_pieces(wire, &[], None, false).unwrap().unwrap();
        assert_eq!(&a.body[..], b"ok");
        assert!(!a.reusable);
        assert!(!rest.is_empty());
    }

    #[test]
    fn the_request_is_one_buffer_with_the_fixed_head() {
        let uri: hyper::Uri = "/v1/purchases/commit".parse().unwrap();
        let key = HeaderName::from_static("idempotency-key");
        let fixed = b"host: a:1\r\ncontent-type: application/json\r\n";
        let want = "POST /v1/purchases/commit HTTP/1.1\r\nhost: a:1\r\ncontent-type: application/json\r\nidempotency-key: k-1\r\ncontent-length: 2\r\n\r\n{}";
        let mut req = Request {
            method: Method::POST,
            uri: &uri,
            key: Some((&key, "k-1")),
            body: Body::Bytes(Bytes::from_static(b"{}")),
        };
        let mut out = Vec::new();
        encode(&mut out, fixed, &req);
        assert_eq!(String::from_utf8(out.clone()).unwrap(), want);
        // Written in place: the same bytes, whatever the body's length.
        let write = |out: &mut Vec<u8>| out.extend_from_slice(b"{}");
        req.body = Body::Write(&write);
        encode(&mut out, fixed, &req);
        assert_eq!(String::from_utf8(out.clone()).unwrap(), want);
        let long = |out: &mut Vec<u8>| out.extend(std::iter::repeat_n(b'x', 12345));
        req.body = Body::Write(&long);
        encode(&mut out, fixed, &req);
        let text = String::from_utf8(out.clone()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.ends_with("\r\ncontent-length: 12345"), "{head}");
        assert_eq!(body, "x".repeat(12345));
        assert_eq!(req.body.into_bytes().len(), 12345);
        let empty = Request {
            method: Method::POST,
            uri: &uri,
            key: None,
            body: Body::Bytes(Bytes::new()),
        };
        encode(&mut out, b"", &empty);
        assert!(out.ends_with(b"\r\ncontent-length: 0\r\n\r\n"));
        let get = Request {
            method: Method::GET,
            uri: &"/a?b=c".parse().unwrap(),
            key: None,
            body: Body::Bytes(Bytes::new()),
        };
        encode(&mut out, b"host: a:1\r\n", &get);
        assert_eq!(out, b"GET /a?b=c HTTP/1.1\r\nhost: a:1\r\n\r\n");
        assert!(header_value("swarm-s5-0-1-2") && header_value("a b\tc"));
        assert!(!header_value("a\r\nb") && !header_value("a\0") && !header_value("\x7f"));
    }
}
