//! The generator's live state as Prometheus metric families: exposed as OpenMetrics text
//! on `--metrics-listen` (encoded by the `prometheus-client` crate) and sent as remote
//! write on `--metrics-push` (protobuf, snappy-compressed).
//!
//! Names and units follow Prometheus's conventions: counters end in `_total` (the
//! encoder adds it), durations are seconds, one `swarm_run_info` carries the run's
//! scenario, seed and run id. Invariant: both encodings come from one list of `Family`s,
//! so a scrape and a push never disagree; no label carries a secret (labels are the
//! scenario's names, codes and region names; the target's words are never a label).

use std::borrow::Cow;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::history::{Code, STATUS_CLASSES};
use crate::metrics::{ATTEMPT_BARS, Snapshot};
use crate::run::live::View;

/// Latency bucket bounds in seconds (a classic histogram from the run's HDR histograms).
pub const LATENCY_BUCKETS_S: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

type Labels = Vec<(Cow<'static, str>, String)>;

/// One series' value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Counter(u64),
    Gauge(f64),
    /// Cumulative bucket counts at `LATENCY_BUCKETS_S` (then +Inf = `count`), sum, count.
    Histogram {
        buckets: Vec<u64>,
        sum: f64,
        count: u64,
    },
}

/// One metric family: its name (counters without `_total`), help, kind and series.
#[derive(Debug, Clone)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: MetricType,
    pub series: Vec<(Labels, Value)>,
}

fn label(name: &'static str, value: impl Into<String>) -> (Cow<'static, str>, String) {
    (Cow::Borrowed(name), value.into())
}

fn lower(code: Code) -> String {
    code.name().to_ascii_lowercase()
}

/// A classic histogram from an HDR histogram in microseconds.
fn histogram(h: &hdrhistogram::Histogram<u64>) -> Value {
    let mut buckets = vec![0u64; LATENCY_BUCKETS_S.len()];
    let mut sum = 0.0;
    for v in h.iter_recorded() {
        let secs = v.value_iterated_to() as f64 / 1e6;
        let n = v.count_at_value();
        sum += secs * n as f64;
        if let Some(i) = LATENCY_BUCKETS_S.iter().position(|b| secs <= *b) {
            buckets[i] += n;
        }
    }
    let mut acc = 0;
    for b in &mut buckets {
        acc += *b;
        *b = acc;
    }
    Value::Histogram {
        buckets,
        sum,
        count: h.len(),
    }
}

/// Every family, from the latest view and the snapshot it was built from.
pub fn families(view: &View, snap: &Snapshot) -> Vec<Family> {
    let t = &snap.totals;
    let mut out = Vec::new();
    let region_name = |i: usize| {
        view.regions
            .get(i)
            .map_or_else(|| i.to_string(), |r| r.name.clone())
    };
    out.push(Family {
        name: "swarm_run_info",
        help: "The run: its scenario, seed and run id (always 1)",
        kind: MetricType::Gauge,
        series: vec![(
            vec![
                label("scenario", view.scenario.clone()),
                label("seed", view.seed.to_string()),
                label("run_id", view.run_id.clone()),
            ],
            Value::Gauge(1.0),
        )],
    });
    out.push(Family {
        name: "swarm_requests",
        help: "Requests answered, by outcome (the code the client saw) and region",
        kind: MetricType::Counter,
        series: snap
            .regions
            .iter()
            .enumerate()
            .flat_map(|(i, r)| Code::ALL.iter().map(move |c| (i, *c, r.counters.code(*c))))
            .map(|(i, c, n)| {
                (
                    vec![label("region", region_name(i)), label("outcome", lower(c))],
                    Value::Counter(n),
                )
            })
            .collect(),
    });
    out.push(Family {
        name: "swarm_http_responses",
        help: "Requests by HTTP status class (network: no answer) and region",
        kind: MetricType::Counter,
        series: snap
            .regions
            .iter()
            .enumerate()
            .flat_map(|(i, r)| {
                STATUS_CLASSES
                    .iter()
                    .zip(r.counters.by_status.iter())
                    .map(move |(class, n)| (i, *class, *n))
            })
            .map(|(i, class, n)| {
                (
                    vec![
                        label("region", region_name(i)),
                        label("status_class", class),
                    ],
                    Value::Counter(n),
                )
            })
            .collect(),
    });
    out.push(Family {
        name: "swarm_replays",
        help: "Answers the server marked a replay",
        kind: MetricType::Counter,
        series: vec![(vec![], Value::Counter(t.replays))],
    });
    out.push(Family {
        name: "swarm_purchases",
        help: "Logical purchases that ended (definitely or not)",
        kind: MetricType::Counter,
        series: vec![(vec![], Value::Counter(t.purchases))],
    });
    out.push(Family {
        name: "swarm_occ_retries",
        help: "Optimistic-concurrency retries the server reported (1 less than each execution's attempts, counted once per execution)",
        kind: MetricType::Counter,
        series: vec![(vec![], Value::Counter(t.occ_retries))],
    });
    out.push(Family {
        name: "swarm_executions",
        help: "Executions by the attempts they took (1 + OCC retries; the last bucket: that many or more)",
        kind: MetricType::Counter,
        series: snap
            .attempts
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let attempts = match i + 1 {
                    ATTEMPT_BARS => format!("{ATTEMPT_BARS}+"),
                    a => a.to_string(),
                };
                (vec![label("attempts", attempts)], Value::Counter(*n))
            })
            .collect(),
    });
    out.push(Family {
        name: "swarm_request_duration_seconds",
        help: "Latency of each request, from its send to its answer",
        kind: MetricType::Histogram,
        series: vec![(vec![], histogram(&snap.raw_us))],
    });
    out.push(Family {
        name: "swarm_purchase_duration_seconds",
        help: "Latency of each logical purchase from its intended start (coordinated omission corrected)",
        kind: MetricType::Histogram,
        series: vec![(vec![], histogram(&snap.corrected_us))],
    });
    out.push(Family {
        name: "swarm_requests_in_flight",
        help: "Requests sent and not yet answered, by region",
        kind: MetricType::Gauge,
        series: view
            .regions
            .iter()
            .map(|r| {
                (
                    vec![label("region", r.name.clone())],
                    Value::Gauge(r.in_flight as f64),
                )
            })
            .collect(),
    });
    out.push(Family {
        name: "swarm_agents_arrived",
        help: "Agents that started",
        kind: MetricType::Counter,
        series: vec![(vec![], Value::Counter(view.started))],
    });
    out.push(Family {
        name: "swarm_agents_done",
        help: "Agents that finished every purchase",
        kind: MetricType::Counter,
        series: vec![(vec![], Value::Counter(view.done))],
    });
    out.push(Family {
        name: "swarm_agents",
        help: "Agents in this run (this shard's)",
        kind: MetricType::Gauge,
        series: vec![(vec![], Value::Gauge(view.total as f64))],
    });
    let l = &view.live;
    out.push(Family {
        name: "swarm_live_violations",
        help: "The live audit's counters (polled during the run; the final audit decides)",
        kind: MetricType::Gauge,
        series: [
            ("oversell", l.oversells),
            ("duplicate_settlement", l.duplicate_settlements),
            ("ledger_drift", l.ledger_drift),
            ("mandate_breach", l.mandate_breaches),
        ]
        .into_iter()
        .map(|(inv, n)| (vec![label("invariant", inv)], Value::Gauge(n as f64)))
        .collect(),
    });
    out.push(Family {
        name: "swarm_region_state",
        help: "Each region's state (1 for the state it is in): UP, DOWN:<mode>, SLOW:latency",
        kind: MetricType::Gauge,
        series: view
            .regions
            .iter()
            .map(|r| {
                (
                    vec![
                        label("region", r.name.clone()),
                        label("state", r.state.label()),
                    ],
                    Value::Gauge(1.0),
                )
            })
            .collect(),
    });
    out.push(Family {
        name: "swarm_phase",
        help: "Where the run is (1 for its phase): running, resolving, auditing, done",
        kind: MetricType::Gauge,
        series: vec![(vec![label("phase", view.phase.clone())], Value::Gauge(1.0))],
    });
    if let Some(v) = &view.verdict {
        out.push(Family {
            name: "swarm_verdict",
            help: "The run's verdict once audited (1 for its validity), and its exit code",
            kind: MetricType::Gauge,
            series: vec![(
                vec![
                    label("validity", v.validity.name()),
                    label("exit_code", v.exit_code.to_string()),
                ],
                Value::Gauge(1.0),
            )],
        });
    }
    out
}

/// The families as OpenMetrics text (what `/metrics` serves).
pub fn text(families: &[Family]) -> Result<String, std::fmt::Error> {
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(Collected(families.to_vec())));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    Ok(out)
}

/// The content type of `text`.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug)]
struct Collected(Vec<Family>);

impl prometheus_client::collector::Collector for Collected {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for f in &self.0 {
            let mut metric = encoder.encode_descriptor(f.name, f.help, None, f.kind)?;
            for (labels, value) in &f.series {
                let mut series = metric.encode_family(labels)?;
                match value {
                    Value::Counter(n) => ConstCounter::new(*n).encode(series)?,
                    Value::Gauge(v) => ConstGauge::new(*v).encode(series)?,
                    Value::Histogram {
                        buckets,
                        sum,
                        count,
                    } => {
                        // Bucket counts per bucket, not cumulative: the encoder adds up.
                        let mut per: Vec<(f64, u64)> = Vec::with_capacity(buckets.len() + 1);
                        let mut below = 0;
                        for (bound, acc) in LATENCY_BUCKETS_S.iter().zip(buckets) {
                            per.push((*bound, acc - below));
                            below = *acc;
                        }
                        per.push((f64::INFINITY, count - below));
                        series.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                            *sum, *count, &per, None,
                        )?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Prometheus remote write 1.0: `WriteRequest { timeseries }`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// The families as one remote-write request at `timestamp_ms`, each series labelled
/// with `extra` too (`job`, `instance`); histograms as their classic series
/// (`_bucket{le}`, `_sum`, `_count`), counters with `_total`. Snappy-compressed protobuf,
/// ready to POST.
pub fn remote_write(families: &[Family], extra: &[(&str, &str)], timestamp_ms: i64) -> Vec<u8> {
    let mut timeseries = Vec::new();
    let mut push = |name: String, labels: &Labels, more: Option<(&str, String)>, value: f64| {
        let mut ls: Vec<Label> = std::iter::once(("__name__".to_string(), name))
            .chain(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .chain(labels.iter().map(|(k, v)| (k.to_string(), v.clone())))
            .chain(more.map(|(k, v)| (k.to_string(), v)))
            .map(|(name, value)| Label { name, value })
            .collect();
        // Remote write wants labels sorted by name.
        ls.sort_by(|a, b| a.name.cmp(&b.name));
        timeseries.push(TimeSeries {
            labels: ls,
            samples: vec![Sample {
                value,
                timestamp: timestamp_ms,
            }],
        });
    };
    for f in families {
        for (labels, value) in &f.series {
            match value {
                Value::Counter(n) => push(format!("{}_total", f.name), labels, None, *n as f64),
                Value::Gauge(v) => push(f.name.to_string(), labels, None, *v),
                Value::Histogram {
                    buckets,
                    sum,
                    count,
                } => {
                    for (bound, acc) in LATENCY_BUCKETS_S.iter().zip(buckets) {
                        let le = Some(("le", bound.to_string()));
                        push(format!("{}_bucket", f.name), labels, le, *acc as f64);
                    }
                    let inf = Some(("le", "+Inf".to_string()));
                    push(format!("{}_bucket", f.name), labels, inf, *count as f64);
                    push(format!("{}_sum", f.name), labels, None, *sum);
                    push(format!("{}_count", f.name), labels, None, *count as f64);
                }
            }
        }
    }
    let bytes = prost::Message::encode_to_vec(&WriteRequest { timeseries });
    snap::raw::Encoder::new()
        .compress_vec(&bytes)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn families_for_tests() -> Vec<Family> {
        let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        h.record(800).unwrap(); // 0.8 ms
        h.record(20_000).unwrap(); // 20 ms
        vec![
            Family {
                name: "swarm_requests",
                help: "Requests",
                kind: MetricType::Counter,
                series: vec![(
                    vec![label("region", "a"), label("outcome", "committed")],
                    Value::Counter(7),
                )],
            },
            Family {
                name: "swarm_request_duration_seconds",
                help: "Latency",
                kind: MetricType::Histogram,
                series: vec![(vec![], histogram(&h))],
            },
        ]
    }

    #[test]
    fn the_text_exposition_follows_openmetrics() {
        let text = text(&families_for_tests()).expect("encodes");
        assert!(text.contains("# TYPE swarm_requests counter"), "{text}");
        assert!(
            text.contains("swarm_requests_total{region=\"a\",outcome=\"committed\"} 7"),
            "{text}"
        );
        assert!(
            text.contains("swarm_request_duration_seconds_bucket{le=\"0.001\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("swarm_request_duration_seconds_bucket{le=\"+Inf\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("swarm_request_duration_seconds_count 2"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn remote_write_is_snappy_protobuf_with_sorted_labels() {
        let body = remote_write(
            &families_for_tests(),
            &[("job", "swarm")],
            1_700_000_000_000,
        );
        let raw = snap::raw::Decoder::new()
            .decompress_vec(&body)
            .expect("snappy");
        let req: WriteRequest = prost::Message::decode(raw.as_slice()).expect("protobuf");
        let names: Vec<&str> = req
            .timeseries
            .iter()
            .map(|t| t.labels[0].value.as_str())
            .collect();
        assert!(names.contains(&"swarm_requests_total"), "{names:?}");
        assert!(names.contains(&"swarm_request_duration_seconds_count"));
        for t in &req.timeseries {
            let mut sorted = t.labels.clone();
            sorted.sort_by(|a, b| a.name.cmp(&b.name));
            assert_eq!(sorted, t.labels);
            assert_eq!(t.samples[0].timestamp, 1_700_000_000_000);
        }
        let total = req
            .timeseries
            .iter()
            .find(|t| t.labels[0].value == "swarm_requests_total")
            .expect("counter");
        assert_eq!(total.samples[0].value, 7.0);
        assert!(
            total
                .labels
                .iter()
                .any(|l| l.name == "job" && l.value == "swarm")
        );
    }
}
