//! Checks serde cannot express: ranges, sums, cross-references. A scenario that passes
//! them is one every lower layer may trust; `validate` also turns the `[[faults]]` tables
//! into typed `Fault`s (regions resolved to indices).
//!
//! It stays one file: `validate` runs these checks in one order and reports the first that
//! fails, and the file follows that order, the table of ranges (`ranges`) near the top.

use super::fault::{Delay, Fault, FaultAction, FaultKind, FaultMode, MAX_DELAY_MS};
use super::model::{
    Arrival, HttpVersion, LiveCatalog, LiveIds, MAX_AGENTS, MAX_CLIENT_ATTEMPTS, MAX_DB_HOSTS,
    MAX_PATRONI, Scenario, TargetKind, is_currency,
};
use super::{MAX_NAME_CHARS, bounded, is_name_char};

/// Largest stock per item, and largest amount of money, a scenario may name.
const MAX_UNITS: i64 = 1_000_000_000_000;
const MAX_MINOR: i64 = 1_000_000_000_000_000;
/// Units per purchase (the history keeps them in 16 bits).
const MAX_QUANTITY: i64 = 10_000;
/// Arrivals per second an open model may ask for.
const MAX_RATE_PER_S: f64 = 10_000_000.0;
/// Longest client timeout and backoff.
const MAX_WAIT_MS: u64 = 600_000;
/// Most regions (a region is one byte in the history) and faults.
const MAX_REGIONS: usize = 64;
const MAX_FAULTS: usize = 1000;
/// Longest command a fault runs, and longest variable name.
const MAX_COMMAND_BYTES: usize = 4096;
const MAX_ENV_NAME: usize = 128;
/// Most keys the end of a run re-reads.
const MAX_FINAL_READS: u64 = 1_000_000;

/// A semantic error: where it points, the field it names, what is wrong.
pub(super) type Problem = (Locator, String, String);

/// One range rule of the table: the key it reads, whether the value is in range, and what
/// the range is.
struct Rule {
    at: Locator,
    field: String,
    ok: bool,
    message: String,
}

fn key(table: &'static str, key: &'static str, ok: bool, message: impl Into<String>) -> Rule {
    Rule {
        at: Locator::Key(table, key),
        field: format!("{table}.{key}"),
        ok,
        message: message.into(),
    }
}

fn top(name: &'static str, ok: bool, message: impl Into<String>) -> Rule {
    Rule {
        at: Locator::Top(name),
        field: name.to_string(),
        ok,
        message: message.into(),
    }
}

fn between<T: PartialOrd + std::fmt::Display>(v: T, lo: T, hi: T) -> (bool, String) {
    let ok = lo <= v && v <= hi;
    (ok, format!("must be between {lo} and {hi}"))
}

impl Scenario {
    /// Checks serde cannot express, in order: the name, the table of ranges, the mix, the
    /// target (contract, ids, TLS), the regions, the cluster, the faults. Spans are found
    /// again in the text by `locate`.
    pub(super) fn validate(&mut self) -> Result<(), Problem> {
        self.check_name()?;
        for rule in self.ranges() {
            if !rule.ok {
                return Err((rule.at, rule.field, rule.message));
            }
        }
        self.check_mix()?;
        self.check_target()?;
        self.check_regions()?;
        self.check_cluster()?;
        self.faults = self.typed_faults()?;
        Ok(())
    }

    fn check_name(&self) -> Result<(), Problem> {
        let name_ok = self.name.chars().count() <= MAX_NAME_CHARS
            && self.name.chars().all(is_name_char)
            && !self.name.trim_matches('.').is_empty();
        if name_ok {
            return Ok(());
        }
        Err((
            Locator::Top("name"),
            "name".into(),
            format!(
                "`{}` is not a safe name: letters, digits, `-`, `_` and `.`, at most {MAX_NAME_CHARS} (it names the report directory)",
                bounded(&self.name)
            ),
        ))
    }

    /// Every number's range, at a glance.
    fn ranges(&self) -> Vec<Rule> {
        let (c, m, a, r, k) = (
            &self.catalog,
            &self.mandates,
            &self.agents,
            &self.retry,
            &self.kernel,
        );
        let fr = &self.audit.final_reads;
        let in_range = |table, name, (ok, msg): (bool, String)| key(table, name, ok, msg);
        let rules = vec![
            in_range("catalog", "items", between(c.items, 1, 10_000)),
            in_range("catalog", "stock", between(c.stock, 0, MAX_UNITS)),
            in_range("catalog", "buckets", between(c.buckets, 1, 1024)),
            key(
                "catalog",
                "price_minor",
                (1..=MAX_MINOR).contains(&c.price_minor),
                format!("must be between 1 and {MAX_MINOR} (minor units)"),
            ),
            key(
                "catalog",
                "currency",
                is_currency(&c.currency),
                format!("`{}` is not a 3-letter ISO-4217 code", c.currency),
            ),
            in_range("mandates", "count", between(m.count, 1, 2_000_000)),
            in_range("mandates", "cap_minor", between(m.cap_minor, 0, MAX_MINOR)),
            in_range("mandates", "shards", between(m.shards, 1, 256)),
            in_range("agents", "count", between(a.count, 1, MAX_AGENTS)),
            in_range("agents", "in_flight", between(a.in_flight, 1, 100_000)),
            in_range("agents", "purchases", between(a.purchases, 1, 1000)),
            in_range("agents", "quantity", between(a.quantity, 1, MAX_QUANTITY)),
            key(
                "agents",
                "rate_per_s",
                a.arrival != Arrival::Rate
                    || (a.rate_per_s > 0.0 && a.rate_per_s <= MAX_RATE_PER_S),
                format!("must be > 0 and at most {MAX_RATE_PER_S}"),
            ),
            key(
                "agents",
                "stages",
                a.arrival != Arrival::Ramp || !a.stages.is_empty(),
                "ramp arrival needs stages",
            ),
            key(
                "agents",
                "stages",
                a.stages
                    .iter()
                    .all(|s| s.rate_per_s >= 0.0 && s.rate_per_s <= MAX_RATE_PER_S),
                format!("rate_per_s must be between 0 and {MAX_RATE_PER_S}"),
            ),
            in_range("retry", "timeout_ms", between(r.timeout_ms, 1, MAX_WAIT_MS)),
            key(
                "retry",
                "max_attempts",
                (1..=MAX_CLIENT_ATTEMPTS).contains(&r.max_attempts),
                format!(
                    "must be between 1 and {MAX_CLIENT_ATTEMPTS} (requests per purchase, each key of it tracked by one bit)"
                ),
            ),
            in_range(
                "retry",
                "resolve_budget_ms",
                between(r.resolve_budget_ms, 1, MAX_WAIT_MS),
            ),
            key(
                "retry",
                "backoff_ms",
                r.backoff_ms[0] <= r.backoff_ms[1],
                "base must be <= cap",
            ),
            key(
                "retry",
                "backoff_ms",
                r.backoff_ms[1] <= MAX_WAIT_MS,
                format!("the cap must be at most {MAX_WAIT_MS}"),
            ),
            key(
                "target",
                "api_key_env",
                self.target
                    .api_key_env
                    .as_ref()
                    .is_none_or(|v| !v.is_empty() && v.len() <= MAX_ENV_NAME),
                format!("a variable name of 1 to {MAX_ENV_NAME} characters"),
            ),
            Rule {
                at: Locator::Key("audit", "final_reads"),
                field: "audit.final_reads.max_keys".into(),
                ok: fr.max_keys <= MAX_FINAL_READS,
                message: format!("must be between 0 (off) and {MAX_FINAL_READS}"),
            },
            Rule {
                at: Locator::Key("audit", "final_reads"),
                field: "audit.final_reads.budget_ms".into(),
                ok: (1..=MAX_WAIT_MS).contains(&fr.budget_ms),
                message: format!("must be between 1 and {MAX_WAIT_MS}"),
            },
            top(
                "regions",
                self.regions.len() <= MAX_REGIONS,
                format!("at most {MAX_REGIONS} regions"),
            ),
            top(
                "faults",
                self.fault_specs.len() <= MAX_FAULTS,
                format!("at most {MAX_FAULTS} faults"),
            ),
            in_range("kernel", "max_attempts", between(k.max_attempts, 1, 1000)),
            in_range("kernel", "pool_size", between(k.pool_size, 1, 1024)),
            top(
                "regions",
                !self.regions.is_empty(),
                "at least one region is needed",
            ),
            in_range(
                "cluster",
                "patroni",
                (
                    self.cluster.patroni.len() <= MAX_PATRONI,
                    format!("at most {MAX_PATRONI} Patroni REST endpoints"),
                ),
            ),
        ];
        rules
    }

    /// Persona weights: finite, non-negative, summing to 1.
    fn check_mix(&self) -> Result<(), Problem> {
        let w = self.mix.weights();
        let problem = |msg: String| Err((Locator::Top("mix"), "mix".to_string(), msg));
        if w.iter().any(|x| !(x.is_finite() && *x >= 0.0)) {
            return problem("weights must be finite and >= 0".into());
        }
        let sum: f64 = w.iter().sum();
        if (sum - 1.0).abs() > 1e-6 {
            return problem(format!("persona weights must sum to 1, they sum to {sum}"));
        }
        Ok(())
    }

    /// The target: the contract resolved, the ids given or discovered, HTTP and TLS
    /// settings that apply.
    fn check_target(&mut self) -> Result<(), Problem> {
        let within = |table: &'static str, key: &'static str, msg: String| {
            Err((Locator::Key(table, key), format!("{table}.{key}"), msg))
        };
        if let Some(p) = &self.target.protocol {
            return Err((
                Locator::At(p.span().start),
                "target.protocol".into(),
                format!(
                    "replaced by the contract's profile: write `[target.contract]` with `profile = \"{}\"`",
                    bounded(p.get_ref())
                ),
            ));
        }
        self.contract = self
            .target
            .contract
            .resolve()
            .map_err(|e| (Locator::At(e.span.start), e.field, e.message))?;
        let live = self.regions.iter().all(|r| r.endpoint.is_some());
        if let Some(ids) = &self.target.ids {
            self.live_catalog = Some(check_ids(ids, live, self.target.discover.is_some())?);
        }
        if self.target.discover.is_some() && !live {
            return within(
                "target",
                "discover",
                "discovery asks a live endpoint: give every region an `endpoint`".into(),
            );
        }
        let https = self.has_https_endpoint();
        if self.target.kind == TargetKind::Direct && self.target.http != HttpVersion::Auto {
            return within(
                "target",
                "http",
                "the HTTP version is for `kind = \"http\"` targets".into(),
            );
        }
        self.check_tls(live, https)?;
        Ok(())
    }

    /// `target.tls`: settings that apply to this target, and agree with each other.
    fn check_tls(&self, live: bool, https: bool) -> Result<(), Problem> {
        let within = |table: &'static str, key: &'static str, msg: String| {
            Err((Locator::Key(table, key), format!("{table}.{key}"), msg))
        };
        if let Some(tls) = &self.target.tls {
            let in_tls = |key: &str, msg: &str| {
                Err((
                    Locator::Key("target", "tls"),
                    format!("target.tls.{key}"),
                    msg.to_string(),
                ))
            };
            if self.target.kind == TargetKind::Direct {
                return within(
                    "target",
                    "tls",
                    "TLS is for `kind = \"http\"` targets".into(),
                );
            }
            if tls.client_cert.is_some() != tls.client_key.is_some() {
                return in_tls(
                    if tls.client_cert.is_some() {
                        "client_key"
                    } else {
                        "client_cert"
                    },
                    "a client certificate needs its key: give client_cert and client_key together",
                );
            }
            if tls.self_signed {
                if live {
                    return in_tls(
                        "self_signed",
                        "self_signed runs swarm's in-process servers with TLS; a live endpoint brings its own certificate (use ca_file)",
                    );
                }
                if tls.ca_file.is_some() || tls.client_cert.is_some() || tls.insecure {
                    return in_tls(
                        "self_signed",
                        "self_signed makes and trusts its own certificate: leave out ca_file, client_cert and insecure",
                    );
                }
            } else if !https {
                return within(
                    "target",
                    "tls",
                    "no region's endpoint is https://: TLS settings would not apply (or set self_signed = true for in-process servers)".into(),
                );
            }
            if tls.insecure && tls.ca_file.is_some() {
                return in_tls(
                    "insecure",
                    "insecure accepts any certificate, so ca_file would never be used: give one of them",
                );
            }
            if let Some(name) = &tls.server_name
                && (name.is_empty() || name.len() > 253 || name.contains(['/', ':', ' ']))
            {
                return in_tls("server_name", "must be a DNS name or an IP address");
            }
        }
        Ok(())
    }

    /// Each region: a safe unique name, a weight, a host order that applies.
    fn check_regions(&self) -> Result<(), Problem> {
        for (i, region) in self.regions.iter().enumerate() {
            let here = |key: &'static str, msg: String| {
                Err((
                    Locator::Element("regions", i, key),
                    format!("regions[{i}].{key}"),
                    msg,
                ))
            };
            if region.name.is_empty()
                || region.name.chars().count() > MAX_NAME_CHARS
                || !region.name.chars().all(is_name_char)
            {
                return here(
                    "name",
                    format!(
                        "`{}`: 1 to {MAX_NAME_CHARS} letters, digits, `-`, `_` or `.` (it names report files)",
                        bounded(&region.name)
                    ),
                );
            }
            if self.regions[..i].iter().any(|r| r.name == region.name) {
                return here("name", format!("region `{}` is named twice", region.name));
            }
            if !(region.weight.is_finite() && region.weight >= 0.0) {
                return here("weight", "must be finite and >= 0".into());
            }
            if let Some(order) = &region.db_host_order {
                if region.endpoint.is_some() {
                    return here(
                        "db_host_order",
                        "a live endpoint reaches its own database: db_host_order orders the hosts of the --db URL swarm connects to".into(),
                    );
                }
                if order.is_empty() || order.len() > MAX_DB_HOSTS {
                    return here(
                        "db_host_order",
                        format!("1 to {MAX_DB_HOSTS} host positions, e.g. [2, 1, 3]"),
                    );
                }
                if let Some(bad) = order
                    .iter()
                    .find(|p| **p == 0 || usize::from(**p) > MAX_DB_HOSTS)
                {
                    return here(
                        "db_host_order",
                        format!(
                            "{bad} is not a host position: 1 is the URL's first host, at most {MAX_DB_HOSTS}"
                        ),
                    );
                }
                if let Some(twice) = order
                    .iter()
                    .enumerate()
                    .find_map(|(k, p)| order[..k].contains(p).then_some(p))
                {
                    return here("db_host_order", format!("host {twice} is named twice"));
                }
            }
        }
        Ok(())
    }

    /// The watched cluster: plain-HTTP Patroni endpoints, at least one region weighted.
    fn check_cluster(&self) -> Result<(), Problem> {
        let top = |key: &'static str, msg: String| Err((Locator::Top(key), key.to_string(), msg));
        let within = |table: &'static str, key: &'static str, msg: String| {
            Err((Locator::Key(table, key), format!("{table}.{key}"), msg))
        };
        if let Some(https) = self.cluster.patroni.iter().find(|e| e.tls) {
            return within(
                "cluster",
                "patroni",
                format!(
                    "`{}`: the Patroni watcher speaks plain HTTP (a REST API on loopback or a private network)",
                    https.url()
                ),
            );
        }
        if self.regions.iter().all(|r| r.weight == 0.0) {
            return top("regions", "at least one region needs a weight > 0".into());
        }
        Ok(())
    }

    /// The `[[faults]]` tables as typed `Fault`s, regions resolved to indices.
    fn typed_faults(&self) -> Result<Vec<Fault>, Problem> {
        let mut faults = Vec::with_capacity(self.fault_specs.len());
        for (i, fault) in self.fault_specs.iter().enumerate() {
            let here = |key: &'static str, msg: String| {
                Err((
                    Locator::Element("faults", i, key),
                    format!("faults[{i}].{key}"),
                    msg,
                ))
            };
            let action = match fault.kind {
                FaultKind::RegionDown => {
                    let Some(region) = &fault.region else {
                        return here("region", "a region-down fault names its region".into());
                    };
                    let Some(mode) = fault.mode else {
                        return here(
                            "mode",
                            "a region-down fault needs a mode: outage, blackhole, crash, lost-ack or latency"
                                .into(),
                        );
                    };
                    if mode == FaultMode::Latency {
                        match fault.latency_ms {
                            None | Some(0) => {
                                return here(
                                    "latency_ms",
                                    "a latency fault needs latency_ms > 0".into(),
                                );
                            }
                            Some(ms) if ms > MAX_DELAY_MS => {
                                return here(
                                    "latency_ms",
                                    format!("must be at most {MAX_DELAY_MS} (10 minutes)"),
                                );
                            }
                            Some(_) => {}
                        }
                        if fault.jitter_ms.is_some_and(|j| j > MAX_DELAY_MS) {
                            return here(
                                "jitter_ms",
                                format!("must be at most {MAX_DELAY_MS} (10 minutes)"),
                            );
                        }
                    } else {
                        if fault.latency_ms.is_some() {
                            return here(
                                "latency_ms",
                                "only `latency` faults take latency_ms".into(),
                            );
                        }
                        if fault.jitter_ms.is_some() {
                            return here(
                                "jitter_ms",
                                "only `latency` faults take jitter_ms".into(),
                            );
                        }
                    }
                    if fault.command.is_some() {
                        return here("command", "only `command` faults run a command".into());
                    }
                    let Some(index) = self.regions.iter().position(|r| &r.name == region) else {
                        let known: Vec<&str> =
                            self.regions.iter().map(|r| r.name.as_str()).collect();
                        return here(
                            "region",
                            format!("unknown region `{region}` (known: {})", known.join(", ")),
                        );
                    };
                    FaultAction::RegionDown {
                        region: index,
                        mode,
                        delay: Delay {
                            latency_ms: fault.latency_ms.unwrap_or(0),
                            jitter_ms: fault.jitter_ms.unwrap_or(0),
                        },
                    }
                }
                FaultKind::Command => {
                    if fault.command.as_deref().is_none_or(|c| c.trim().is_empty()) {
                        return here("command", "a command fault needs a `command`".into());
                    }
                    if fault
                        .command
                        .as_ref()
                        .is_some_and(|c| c.len() > MAX_COMMAND_BYTES)
                    {
                        return here("command", format!("at most {MAX_COMMAND_BYTES} bytes"));
                    }
                    if fault.mode.is_some() {
                        return here("mode", "a command fault has no mode".into());
                    }
                    if fault.latency_ms.is_some() || fault.jitter_ms.is_some() {
                        return here("latency_ms", "a command fault has no latency".into());
                    }
                    if fault.heal_after.is_some() {
                        return here("heal_after", "a command fault does not heal".into());
                    }
                    FaultAction::Command(fault.command.clone().unwrap_or_default())
                }
            };
            faults.push(Fault {
                at: fault.at,
                action,
                heal_after: fault.heal_after,
            });
        }
        Ok(faults)
    }
}

/// `target.ids`, checked and typed.
fn check_ids(ids: &LiveIds, live: bool, discover: bool) -> Result<LiveCatalog, Problem> {
    let within = |table: &'static str, key: &'static str, msg: String| {
        Err((Locator::Key(table, key), format!("{table}.{key}"), msg))
    };
    if !live {
        return within(
            "target",
            "ids",
            "ids are for live endpoints: give every region an `endpoint`".into(),
        );
    }
    if discover {
        return within(
            "target",
            "ids",
            "give ids or discover them, not both".into(),
        );
    }
    if ids.mandates.is_empty() || ids.items.is_empty() {
        return within(
            "target",
            "ids",
            "ids needs at least one mandate and one item".into(),
        );
    }
    if ids.items.len() > usize::from(u16::MAX) {
        return within("target", "ids", "at most 65535 items".into());
    }
    let named = std::iter::once(("merchant".to_string(), &ids.merchant))
        .chain(
            ids.mandates
                .iter()
                .enumerate()
                .map(|(i, m)| (format!("mandates[{i}]"), m)),
        )
        .chain(
            ids.items
                .iter()
                .enumerate()
                .map(|(i, m)| (format!("items[{i}]"), m)),
        );
    let mut parsed = Vec::with_capacity(1 + ids.mandates.len() + ids.items.len());
    for (name, id) in named {
        match uuid::Uuid::parse_str(id) {
            Ok(u) => parsed.push(u),
            Err(_) => {
                return Err((
                    Locator::Key("target", "ids"),
                    format!("target.ids.{name}"),
                    format!("`{}` is not a UUID", super::bounded(id)),
                ));
            }
        }
    }
    let in_ids = |key: &str, msg: &str| {
        Err((
            Locator::Key("target", "ids"),
            format!("target.ids.{key}"),
            msg.to_string(),
        ))
    };
    if ids.price_minor <= 0 {
        return in_ids("price_minor", "must be > 0 (minor units)");
    }
    if !is_currency(&ids.currency) {
        return in_ids("currency", "must be a 3-letter ISO-4217 code");
    }
    if ids.stock_per_item < 0 {
        return in_ids("stock_per_item", "must be >= 0");
    }
    if ids.cap_per_mandate_minor < 0 {
        return in_ids("cap_per_mandate_minor", "must be >= 0");
    }
    let merchant = parsed[0];
    let mandates = parsed[1..1 + ids.mandates.len()].to_vec();
    let items = parsed[1 + ids.mandates.len()..].to_vec();
    Ok(LiveCatalog {
        merchant,
        mandates,
        items,
        price_minor: ids.price_minor,
        currency: ids.currency.clone(),
        stock_per_item: ids.stock_per_item,
        cap_per_mandate_minor: ids.cap_per_mandate_minor,
    })
}

/// Where in the text a semantic error points.
#[derive(Debug, Clone, Copy)]
pub enum Locator {
    /// A byte offset the parser gave (a value's span).
    At(usize),
    /// A top-level key or `[table]`.
    Top(&'static str),
    /// `key` inside `[table]` or `table = { … }`.
    Key(&'static str, &'static str),
    /// `key` inside the i-th `[[table]]`.
    Element(&'static str, usize, &'static str),
}
