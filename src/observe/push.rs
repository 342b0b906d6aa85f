//! `--metrics-push URL`: Prometheus remote write every interval and once at the end, for
//! jobs nothing can scrape. Invariants: one push at a time (a tick that finds one still
//! out is skipped and counted, so a slow receiver holds one payload, not a queue); each
//! push has a timeout; a failing receiver is reported once, then counted quietly; the
//! run never waits for it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::task::JoinHandle;

use super::{Shared, prometheus};
use crate::run::live::Meta;

/// One push may take this long.
const PUSH_TIMEOUT: Duration = Duration::from_secs(3);

/// Where remote write goes: a parsed `http://host[:port]/path` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushTarget(hyper::Uri);

impl PushTarget {
    pub fn parse(url: &str) -> Result<PushTarget, String> {
        let uri: hyper::Uri = url
            .parse()
            .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
        match uri.scheme_str() {
            Some("http") if uri.host().is_some() => Ok(PushTarget(uri)),
            Some("https") => Err(format!(
                "`{url}`: remote write is sent over plain HTTP (a receiver on loopback or a private network, or a local agent that forwards it)"
            )),
            _ => Err(format!(
                "`{url}`: give http://host:port/path (e.g. http://127.0.0.1:9090/api/v1/write)"
            )),
        }
    }

    /// The URL without credentials, for messages.
    pub fn shown(&self) -> String {
        crate::run::live::redact(&self.0.to_string())
    }
}

/// Pushes every interval until stopped.
pub struct Pusher {
    state: Arc<PushState>,
    task: JoinHandle<()>,
}

struct PushState {
    target: PushTarget,
    shared: Arc<Shared>,
    client: Client<HttpConnector, Full<Bytes>>,
    labels: Vec<(&'static str, String)>,
    busy: AtomicBool,
    told: AtomicBool,
    pub failed: AtomicU64,
    pub skipped: AtomicU64,
}

impl Pusher {
    pub fn start(
        target: PushTarget,
        interval: Duration,
        shared: Arc<Shared>,
        meta: &Meta,
    ) -> Pusher {
        let state = Arc::new(PushState {
            target,
            shared,
            client: Client::builder(TokioExecutor::new()).build_http(),
            labels: vec![("job", "swarm".into()), ("instance", meta.run_id.clone())],
            busy: AtomicBool::new(false),
            told: AtomicBool::new(false),
            failed: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
        });
        let s = state.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval.max(Duration::from_millis(100)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            tick.tick().await;
            loop {
                tick.tick().await;
                if s.busy.swap(true, Ordering::AcqRel) {
                    s.skipped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let s2 = s.clone();
                // Its own task: a slow receiver never delays the next tick's check.
                tokio::spawn(async move {
                    s2.push().await;
                    s2.busy.store(false, Ordering::Release);
                });
            }
        });
        Pusher { state, task }
    }

    /// Push the latest now (the end of the run), waiting at most the push timeout.
    pub async fn push_now(&self) {
        // Wait for a push in progress to end (bounded), then send the last one.
        for _ in 0..30 {
            if !self.state.busy.swap(true, Ordering::AcqRel) {
                self.state.push().await;
                self.state.busy.store(false, Ordering::Release);
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
        let (failed, skipped) = (
            self.state.failed.load(Ordering::Relaxed),
            self.state.skipped.load(Ordering::Relaxed),
        );
        if failed + skipped > 0 {
            tracing::warn!(
                "--metrics-push {}: {failed} pushes failed, {skipped} skipped while one was still out",
                self.state.target.shown()
            );
        }
    }
}

impl PushState {
    async fn push(&self) {
        let families = self.shared.latest().families;
        let labels: Vec<(&str, &str)> = self.labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let body = prometheus::remote_write(&families, &labels, now_ms);
        let request = hyper::Request::post(self.target.0.clone())
            .header(hyper::header::CONTENT_TYPE, "application/x-protobuf")
            .header(hyper::header::CONTENT_ENCODING, "snappy")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .header(
                hyper::header::USER_AGENT,
                concat!("swarm/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(Bytes::from(body)));
        let Ok(request) = request else { return };
        let outcome = tokio::time::timeout(PUSH_TIMEOUT, self.client.request(request)).await;
        let why = match outcome {
            Ok(Ok(r)) if r.status().is_success() => return,
            Ok(Ok(r)) => format!("HTTP {}", r.status()),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {} s", PUSH_TIMEOUT.as_secs()),
        };
        self.failed.fetch_add(1, Ordering::Relaxed);
        if !self.told.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                "--metrics-push {}: {why}; the run goes on, later failures are counted",
                self.target.shown()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_urls_are_taken() {
        assert!(PushTarget::parse("http://127.0.0.1:9090/api/v1/write").is_ok());
        assert!(PushTarget::parse("https://prom.example/api/v1/write").is_err());
        assert!(PushTarget::parse("127.0.0.1:9090").is_err());
        let t = PushTarget::parse("http://u:secret@127.0.0.1:9090/w").expect("ok");
        assert!(!t.shown().contains("secret"));
    }
}
