//! The database cluster behind the target, watched while a run goes: which member Patroni
//! says leads, and when that changes (`[cluster] patroni`, or `swarm run --patroni`).
//!
//! Invariants: the watcher only reads (`GET /cluster` on each REST API in turn, the first
//! that answers is believed); a poll is bounded in time and size; an event is kept only when
//! the leader changes, and at most `MAX_EVENTS` of them; a cluster nobody can reach adds no
//! event (it is counted), so "no leader" always means Patroni itself said so.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};

use crate::addr::Endpoint;
use crate::metrics::Metrics;

/// How often the leader is asked for.
pub const POLL_EVERY: Duration = Duration::from_millis(200);
/// Longest one poll of one REST API may take.
const POLL_TIMEOUT: Duration = Duration::from_millis(1000);
/// Largest `/cluster` answer read.
const MAX_BODY_BYTES: usize = 256 * 1024;
/// Leader changes kept per run.
pub const MAX_EVENTS: usize = 1000;

/// The leader Patroni named at a moment of the run (none: no member led).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderEvent {
    pub at_ms: u64,
    pub leader: Option<String>,
    /// The leader's PostgreSQL timeline (it grows at each promotion).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<u64>,
}

/// What the watcher saw over the whole run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterFigures {
    /// `patroni`.
    pub kind: String,
    /// The REST APIs asked.
    pub apis: Vec<String>,
    pub polls: u64,
    /// Polls no REST API answered.
    pub unreachable: u64,
    /// Every leader change, the first being the leader at the start.
    pub events: Vec<LeaderEvent>,
}

/// How the leadership changed after a fault started (before the next one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderChange {
    /// The leader when the fault started.
    pub before: Option<String>,
    /// When Patroni first said no member led.
    pub lost_ms: Option<u64>,
    /// The next member to lead, and when Patroni first named it.
    pub after: Option<String>,
    pub elected_ms: Option<u64>,
}

/// What the leader events say about the window `[from_ms, until_ms)`.
pub fn leader_change(events: &[LeaderEvent], from_ms: u64, until_ms: Option<u64>) -> LeaderChange {
    let before = events
        .iter()
        .take_while(|e| e.at_ms <= from_ms)
        .last()
        .and_then(|e| e.leader.clone());
    let mut change = LeaderChange {
        before,
        ..LeaderChange::default()
    };
    for e in events
        .iter()
        .filter(|e| e.at_ms > from_ms && until_ms.is_none_or(|u| e.at_ms < u))
    {
        match &e.leader {
            None => {
                change.lost_ms.get_or_insert(e.at_ms);
            }
            Some(l) if change.before.as_ref() != Some(l) => {
                change.after = Some(l.clone());
                change.elected_ms = Some(e.at_ms);
                break;
            }
            Some(_) => {}
        }
    }
    change
}

/// The watcher of one Patroni cluster.
pub struct ClusterWatch {
    apis: Vec<Endpoint>,
    events: Mutex<Vec<LeaderEvent>>,
    polls: AtomicU64,
    unreachable: AtomicU64,
    stopped: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `GET /cluster` as Patroni writes it (only what is read).
#[derive(Deserialize)]
struct ClusterDoc {
    #[serde(default)]
    members: Vec<Member>,
}

#[derive(Deserialize)]
struct Member {
    name: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    timeline: Option<u64>,
}

/// The leader a `/cluster` document names (`leader`; `master` before Patroni 3;
/// `standby_leader` in a standby cluster), and its timeline.
fn leader_of(body: &[u8]) -> Result<(Option<String>, Option<u64>), String> {
    let doc: ClusterDoc = serde_json::from_slice(body)
        .map_err(|e| format!("not a Patroni /cluster document: {e}"))?;
    Ok(doc
        .members
        .into_iter()
        .find(|m| matches!(m.role.as_str(), "leader" | "master" | "standby_leader"))
        .map_or((None, None), |m| (Some(m.name), m.timeline)))
}

async fn get_cluster(api: &Endpoint) -> Result<Vec<u8>, String> {
    let stream = tokio::net::TcpStream::connect(&api.address)
        .await
        .map_err(|e| format!("{}: {e}", api.address))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(conn);
    let request = hyper::Request::get(format!("{}/cluster", api.prefix))
        .header(hyper::header::HOST, &api.host)
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let answer = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("HTTP {}", response.status()));
        }
        Limited::new(response.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
            .map(|b| b.to_bytes().to_vec())
            .map_err(|e| e.to_string())
    }
    .await;
    driver.abort();
    answer
}

impl ClusterWatch {
    /// A watcher of the Patroni REST APIs `apis`; none when there are none.
    pub fn new(apis: &[Endpoint]) -> Option<ClusterWatch> {
        (!apis.is_empty()).then(|| ClusterWatch {
            apis: apis.to_vec(),
            events: Mutex::new(Vec::new()),
            polls: AtomicU64::new(0),
            unreachable: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
        })
    }

    /// Ask each REST API in turn until one answers: the leader it names.
    async fn poll(&self) -> Option<(Option<String>, Option<u64>)> {
        for api in &self.apis {
            match tokio::time::timeout(POLL_TIMEOUT, get_cluster(api)).await {
                Ok(Ok(body)) => match leader_of(&body) {
                    Ok(seen) => return Some(seen),
                    Err(e) => tracing::debug!(api = %api.url(), "{e}"),
                },
                Ok(Err(e)) => tracing::debug!(api = %api.url(), "cluster poll: {e}"),
                Err(_) => tracing::debug!(api = %api.url(), "cluster poll timed out"),
            }
        }
        None
    }

    /// Keep what a poll at `at_ms` saw, if the leader changed.
    fn note(&self, at_ms: u64, leader: Option<String>, timeline: Option<u64>) {
        let mut events = lock(&self.events);
        if events.last().is_some_and(|e| e.leader == leader) || events.len() >= MAX_EVENTS {
            return;
        }
        tracing::info!(at_ms, leader = ?leader, "cluster leader");
        events.push(LeaderEvent {
            at_ms,
            leader,
            timeline,
        });
    }

    /// Poll every `POLL_EVERY` until stopped.
    pub async fn run(&self, metrics: &Metrics) {
        let mut every = tokio::time::interval(POLL_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        while !self.stopped.load(Ordering::Acquire) {
            every.tick().await;
            let seen = self.poll().await;
            self.polls.fetch_add(1, Ordering::Relaxed);
            match seen {
                Some((leader, timeline)) => {
                    self.note(u64::from(metrics.now_ms()), leader, timeline)
                }
                None => {
                    self.unreachable.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
    }

    /// The leader changes so far.
    pub fn events(&self) -> Vec<LeaderEvent> {
        lock(&self.events).clone()
    }

    /// The leader now, as last seen (`None` also before the first answer).
    pub fn leader(&self) -> Option<String> {
        lock(&self.events).last().and_then(|e| e.leader.clone())
    }

    pub fn figures(&self) -> ClusterFigures {
        ClusterFigures {
            kind: "patroni".into(),
            apis: self.apis.iter().map(Endpoint::url).collect(),
            polls: self.polls.load(Ordering::Relaxed),
            unreachable: self.unreachable.load(Ordering::Relaxed),
            events: self.events(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(at_ms: u64, leader: Option<&str>) -> LeaderEvent {
        LeaderEvent {
            at_ms,
            leader: leader.map(str::to_string),
            timeline: None,
        }
    }

    #[test]
    fn patroni_documents_name_their_leader() {
        let doc = br#"{"members": [{"name": "n1", "role": "replica", "timeline": 1},
            {"name": "n2", "role": "sync_standby", "timeline": 1},
            {"name": "n3", "role": "leader", "timeline": 1}], "scope": "x"}"#;
        assert_eq!(leader_of(doc), Ok((Some("n3".into()), Some(1))));
        let old = br#"{"members": [{"name": "a", "role": "master", "timeline": 4}]}"#;
        assert_eq!(leader_of(old), Ok((Some("a".into()), Some(4))));
        let none = br#"{"members": [{"name": "n1", "role": "replica"}]}"#;
        assert_eq!(leader_of(none), Ok((None, None)));
        assert!(leader_of(b"<html>").is_err());
    }

    #[test]
    fn a_failover_is_a_lost_leader_then_a_new_one() {
        let events = [
            ev(100, Some("n1")),
            ev(5000, None),
            ev(5200, Some("n2")),
            ev(9000, Some("n3")),
        ];
        let change = leader_change(&events, 3000, None);
        assert_eq!(
            change,
            LeaderChange {
                before: Some("n1".into()),
                lost_ms: Some(5000),
                after: Some("n2".into()),
                elected_ms: Some(5200),
            }
        );
        // A switchover hands over without a moment of no leader.
        let handover = leader_change(&events, 6000, None);
        assert_eq!(
            (
                handover.before.as_deref(),
                handover.lost_ms,
                handover.after.as_deref()
            ),
            (Some("n2"), None, Some("n3"))
        );
        // The next fault's start bounds what this one is blamed for.
        assert_eq!(leader_change(&events, 3000, Some(5100)).after, None);
        assert_eq!(leader_change(&events, 3000, Some(5100)).lost_ms, Some(5000));
    }

    #[tokio::test]
    async fn the_watcher_asks_the_next_rest_api_when_one_is_down() {
        let app = axum::Router::new().route(
            "/cluster",
            axum::routing::get(|| async {
                r#"{"members": [{"name": "n9", "role": "leader", "timeline": 3}]}"#
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let up = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        let down = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a port nobody listens on");
        let apis = [
            Endpoint::parse(&format!("http://{down}")).expect("url"),
            Endpoint::parse(&format!("http://{up}")).expect("url"),
        ];
        let w = ClusterWatch::new(&apis).expect("a watcher");
        assert_eq!(w.poll().await, Some((Some("n9".into()), Some(3))));
        let only_down = ClusterWatch::new(&apis[..1]).expect("a watcher");
        assert_eq!(only_down.poll().await, None);
    }

    #[test]
    fn only_changes_are_kept() {
        let w = ClusterWatch::new(&[Endpoint::parse("http://127.0.0.1:1").expect("url")])
            .expect("a watcher");
        w.note(0, Some("n1".into()), Some(1));
        w.note(200, Some("n1".into()), Some(1));
        w.note(400, None, None);
        w.note(600, Some("n2".into()), Some(2));
        assert_eq!(
            w.events().iter().map(|e| e.at_ms).collect::<Vec<_>>(),
            vec![0, 400, 600]
        );
        assert_eq!(w.leader().as_deref(), Some("n2"));
    }
}
