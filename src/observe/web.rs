//! The two read-only listeners: `/metrics` (Prometheus) and Mission Control (the page, its
//! event stream, the report once written). GET only; everything else is 405.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::Stream;
use tokio::sync::broadcast::error::RecvError;

use super::{Shared, prometheus};

/// The page's assets, in the binary (no network, no CDN).
const INDEX_HTML: &str = include_str!("../../assets/web/index.html");
const APP_JS: &str = include_str!("../../assets/web/app.js");
const APP_CSS: &str = include_str!("../../assets/web/app.css");

pub(super) fn metrics_router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(shared)
}

pub(super) fn page_router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/app.css",
            get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
        )
        .route("/events", get(events))
        .route("/view.json", get(view_json))
        .route(
            "/report.html",
            get(|s: State<Arc<Shared>>| report_file(s, "report.html")),
        )
        .route(
            "/summary.json",
            get(|s: State<Arc<Shared>>| report_file(s, "summary.json")),
        )
        .with_state(shared)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let families = shared.latest().families;
    match prometheus::text(&families) {
        Ok(text) => ([(header::CONTENT_TYPE, prometheus::CONTENT_TYPE)], text).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn view_json(State(shared): State<Arc<Shared>>) -> Response {
    let view = shared.latest().view;
    match serde_json::to_string(&*view) {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// The whole view first (the run so far), then each published frame; a viewer that falls
/// behind skips to the newest (the frames it missed are counted).
async fn events(
    State(shared): State<Arc<Shared>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    // Subscribe before reading the latest: no frame falls between the two.
    let frames = shared.frames.subscribe();
    let first = serde_json::to_string(&*shared.latest().view).unwrap_or_default();
    let state = (Some(first), frames, shared);
    let stream = futures_util::stream::unfold(state, |(first, mut frames, shared)| async move {
        if let Some(json) = first {
            let event = Event::default().event("view").data(json);
            return Some((Ok(event), (None, frames, shared)));
        }
        loop {
            match frames.recv().await {
                Ok(json) => {
                    let event = Event::default().event("view").data(&*json);
                    return Some((Ok(event), (None, frames, shared)));
                }
                Err(RecvError::Lagged(n)) => {
                    shared.dropped.fetch_add(n, Ordering::Relaxed);
                }
                Err(RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// A file of the run's report directory, once the run wrote it.
async fn report_file(State(shared): State<Arc<Shared>>, name: &'static str) -> Response {
    let dir = shared
        .report_dir
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let Some(dir) = dir else {
        return (
            StatusCode::NOT_FOUND,
            "the report is written when the run ends",
        )
            .into_response();
    };
    match tokio::fs::read(dir.join(name)).await {
        Ok(bytes) => {
            let kind = if name.ends_with(".html") {
                "text/html; charset=utf-8"
            } else {
                "application/json"
            };
            ([(header::CONTENT_TYPE, kind)], bytes).into_response()
        }
        Err(_) => (StatusCode::NOT_FOUND, "not written").into_response(),
    }
}
