//! How the report names things: what a scenario drives and its settings, in words, and
//! each `Code` as a `summary.json` counter key and as the console line says it.
//!
//! Invariants: every `Code` has one counter key and one wording (the matches are exhaustive,
//! so a new code cannot be left out); the keys are `summary.json`'s counter names, a
//! contract (docs/design.md).

use crate::history::Code;
use crate::scenario::Scenario;

/// A code as the console line says it.
pub(super) fn code_words(code: Code) -> &'static str {
    match code {
        Code::Committed => "committed",
        Code::OutOfStock => "out of stock",
        Code::MandateRejected => "mandate rejected",
        Code::KeyReused => "key reused",
        Code::RetryExhausted => "retry exhausted",
        Code::Unavailable => "unavailable",
        Code::BadRequest => "bad request",
        Code::Internal => "internal",
        Code::Timeout => "timeouts",
        Code::Refused => "refused",
        Code::Reset => "resets",
        Code::Violation => "contract violations",
        Code::InFlight => "in flight",
        Code::Absent => "absent (lookups)",
        Code::Declined => "declined",
    }
}

/// A code's counter key in `summary.json`.
pub(super) fn code_key(code: Code) -> &'static str {
    match code {
        Code::Committed => "committed",
        Code::OutOfStock => "out_of_stock",
        Code::MandateRejected => "mandate_rejected",
        Code::KeyReused => "key_reused",
        Code::RetryExhausted => "retry_exhausted",
        Code::Unavailable => "unavailable",
        Code::BadRequest => "bad_request",
        Code::Internal => "internal_error",
        Code::Timeout => "timeout",
        Code::Refused => "connection_refused",
        Code::Reset => "connection_reset",
        Code::Violation => "contract_violation",
        Code::InFlight => "in_flight",
        Code::Absent => "absent",
        Code::Declined => "declined",
    }
}

/// What a scenario drives, in words: `direct (in-process kernel)`, in-process HTTP servers,
/// or the live endpoints with their protocol and transport (the HTTP version asked for and
/// how TLS is checked; `regions[].connections` says what was negotiated).
pub fn target_of(scenario: &Scenario) -> String {
    use crate::scenario::{HttpVersion, TargetKind};
    let endpoints: Vec<String> = scenario
        .regions
        .iter()
        .filter_map(|r| {
            r.endpoint
                .as_ref()
                .map(|e| format!("{} {}", r.name, e.url()))
        })
        .collect();
    let c = &scenario.contract;
    let protocol = format!(
        "contract {} ({} {}, replays marked {})",
        c.profile.name(),
        c.request.method.name(),
        c.request.path.text(),
        c.replay_marker.text()
    );
    let tls = scenario.target.tls.as_ref();
    let https = scenario.has_https_endpoint() || tls.is_some_and(|t| t.self_signed);
    let http = match (scenario.target.http, https) {
        (HttpVersion::Http1, _) | (HttpVersion::Auto, false) => "HTTP/1.1",
        (HttpVersion::Http2, false) => "HTTP/2 (prior knowledge)",
        (HttpVersion::Http2, true) => "HTTP/2",
        (HttpVersion::Auto, true) => "HTTP/2 or HTTP/1.1 by ALPN",
    };
    let transport = match tls {
        _ if !https => format!("{http} without TLS"),
        Some(t) if t.self_signed => format!("{http} over TLS (certificate made at start)"),
        Some(t) if t.insecure => format!("{http} over TLS (certificates NOT checked: insecure)"),
        Some(t) if t.ca_file.is_some() => format!("{http} over TLS (roots from ca_file)"),
        _ => format!("{http} over TLS (system roots)"),
    };
    let mtls = if tls.is_some_and(|t| t.client_cert.is_some()) {
        " · client certificate"
    } else {
        ""
    };
    if !endpoints.is_empty() {
        format!(
            "live endpoints {} · {protocol} · {transport}{mtls}",
            endpoints.join(", ")
        )
    } else if scenario.target.kind == TargetKind::Http {
        format!("in-process HTTP servers on 127.0.0.1, one per region · {protocol} · {transport}")
    } else {
        "direct (in-process kernel, faults at the gateway)".into()
    }
}

/// The scenario's settings in words, for the report.
pub fn settings_of(s: &Scenario) -> Vec<(String, String)> {
    let a = &s.agents;
    let arrival = match a.arrival {
        crate::scenario::Arrival::Burst => "burst".to_string(),
        crate::scenario::Arrival::Rate => format!("rate {} /s", a.rate_per_s),
        crate::scenario::Arrival::Ramp => format!("ramp over {} stages", a.stages.len()),
    };
    let m = &s.mix;
    let r = &s.retry;
    vec![
        (
            "agents".into(),
            format!(
                "{} ({} in flight, {arrival}; {} purchase(s) of {} unit(s) each)",
                a.count, a.in_flight, a.purchases, a.quantity
            ),
        ),
        (
            "catalog".into(),
            format!(
                "{} item(s) × {} units in {} buckets at {} minor {}",
                s.catalog.items,
                s.catalog.stock,
                s.catalog.buckets,
                s.catalog.price_minor,
                s.catalog.currency
            ),
        ),
        (
            "mandates".into(),
            format!(
                "{} × cap {} minor in {} shards",
                s.mandates.count, s.mandates.cap_minor, s.mandates.shards
            ),
        ),
        (
            "mix".into(),
            format!(
                "well-behaved {} · double submit {} · crash-restart {} · key rotator {} · payload mutator {}",
                m.well_behaved, m.double_submit, m.crash_restart, m.key_rotator, m.payload_mutator
            ),
        ),
        (
            "retry".into(),
            format!(
                "timeout {} ms · {} attempts · backoff {}–{} ms · end-of-run replay budget {} ms",
                r.timeout_ms, r.max_attempts, r.backoff_ms[0], r.backoff_ms[1], r.resolve_budget_ms
            ),
        ),
        (
            "regions".into(),
            s.regions
                .iter()
                .map(|g| format!("{} (weight {})", g.name, g.weight))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        ("faults".into(), s.faults.len().to_string()),
        (
            "kernel".into(),
            format!(
                "embedded SQLite {:?} mode · PostgreSQL {} · up to {} attempts per purchase",
                s.kernel.sqlite_mode,
                s.kernel.isolation.sql(),
                s.kernel.max_attempts
            )
            .replace("Occ mode", "row-level OCC mode")
            .replace("Group mode", "group-commit mode")
            .replace("Optimistic mode", "optimistic (database-level) mode"),
        ),
    ]
}
