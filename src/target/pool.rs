//! One endpoint's keep-alive HTTP/1 connections.
//!
//! A request checks a connection out, sends, reads the whole answer and checks it back
//! in; a request that is abandoned (timeout, crash) drops its connection with it, since
//! HTTP/1 cannot reuse a connection that still owes an answer. Invariants: a connection
//! is in the idle list only when it owes nothing; the lock is held for a push or a pop,
//! never across an await; at most `max_idle` connections wait idle.

use std::sync::Mutex;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::HeaderValue;
use hyper_util::rt::TokioIo;

use crate::history::Code;
use crate::lane::{MAX_LANES, lane};

/// An HTTP response: status and the whole body (not yet read by the contract).
pub struct Response {
    pub status: u16,
    pub body: Bytes,
}

/// Keep-alive connections to one endpoint, one idle list per lane.
pub struct ConnectionPool {
    address: String,
    idle: Vec<Mutex<Vec<SendRequest<Full<Bytes>>>>>,
    max_idle: usize,
}

impl ConnectionPool {
    pub fn new(address: String, max_idle: usize) -> ConnectionPool {
        ConnectionPool {
            address,
            idle: (0..MAX_LANES).map(|_| Mutex::new(Vec::new())).collect(),
            max_idle,
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<SendRequest<Full<Bytes>>>> {
        self.idle[lane()].lock().unwrap_or_else(|p| p.into_inner())
    }

    fn pop(&self) -> Option<SendRequest<Full<Bytes>>> {
        self.idle().pop()
    }

    /// An idle connection that still works, else a new one.
    async fn checkout(&self) -> Result<SendRequest<Full<Bytes>>, Code> {
        while let Some(mut sender) = self.pop() {
            if sender.ready().await.is_ok() {
                return Ok(sender);
            }
        }
        let stream = tokio::net::TcpStream::connect(&self.address)
            .await
            .map_err(|_| Code::Refused)?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|_| Code::Reset)?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }

    fn checkin(&self, sender: SendRequest<Full<Bytes>>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle();
        if idle.len() < self.max_idle {
            idle.push(sender);
        }
    }

    /// Send one request and read its whole answer. A refused connection is `Refused`;
    /// anything that breaks after it is open is `Reset`.
    pub async fn send(&self, request: hyper::Request<Full<Bytes>>) -> Result<Response, Code> {
        let mut sender = self.checkout().await?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|_| Code::Reset)?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|_| Code::Reset)?
            .to_bytes();
        self.checkin(sender);
        Ok(Response { status, body })
    }

    /// Connections waiting idle, all lanes (for tests).
    pub fn idle_len(&self) -> usize {
        self.idle
            .iter()
            .map(|l| l.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }
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
