//! Checks serde cannot express: ranges, sums, cross-references. A scenario that passes
//! them is one every lower layer may trust; `validate` also turns the `[[faults]]` tables
//! into typed `Fault`s (regions resolved to indices).

use super::fault::{Delay, Fault, FaultAction, FaultKind, FaultMode, MAX_DELAY_MS};
use super::model::{
    Arrival, HttpVersion, LiveCatalog, MAX_AGENTS, MAX_CLIENT_ATTEMPTS, MAX_DB_HOSTS, MAX_PATRONI,
    Scenario, TargetKind, is_currency,
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
const MAX_FINAL_READS: u64 = 10_000_000;

impl Scenario {
    /// Checks serde cannot express. Spans are found again in the text by `locate`.
    pub(super) fn validate(&mut self) -> Result<(), (Locator, String, String)> {
        let top = |key: &'static str, msg: String| Err((Locator::Top(key), key.to_string(), msg));
        let within = |table: &'static str, key: &'static str, msg: String| {
            Err((Locator::Key(table, key), format!("{table}.{key}"), msg))
        };
        let name_ok = self.name.chars().count() <= MAX_NAME_CHARS
            && self.name.chars().all(is_name_char)
            && !self.name.trim_matches('.').is_empty();
        if !name_ok {
            return top(
                "name",
                format!(
                    "`{}` is not a safe name: letters, digits, `-`, `_` and `.`, at most {MAX_NAME_CHARS} (it names the report directory)",
                    bounded(&self.name)
                ),
            );
        }
        let c = &self.catalog;
        if c.items == 0 || c.items > 10_000 {
            return within("catalog", "items", "must be between 1 and 10000".into());
        }
        if !(0..=MAX_UNITS).contains(&c.stock) {
            return within(
                "catalog",
                "stock",
                format!("must be between 0 and {MAX_UNITS}"),
            );
        }
        if c.buckets == 0 || c.buckets > 1024 {
            return within("catalog", "buckets", "must be between 1 and 1024".into());
        }
        if !(1..=MAX_MINOR).contains(&c.price_minor) {
            return within(
                "catalog",
                "price_minor",
                format!("must be between 1 and {MAX_MINOR} (minor units)"),
            );
        }
        if !is_currency(&c.currency) {
            return within(
                "catalog",
                "currency",
                format!("`{}` is not a 3-letter ISO-4217 code", c.currency),
            );
        }
        let m = &self.mandates;
        if m.count == 0 || m.count > 2_000_000 {
            return within("mandates", "count", "must be between 1 and 2000000".into());
        }
        if !(0..=MAX_MINOR).contains(&m.cap_minor) {
            return within(
                "mandates",
                "cap_minor",
                format!("must be between 0 and {MAX_MINOR}"),
            );
        }
        if m.shards == 0 || m.shards > 256 {
            return within("mandates", "shards", "must be between 1 and 256".into());
        }
        let a = &self.agents;
        if a.count == 0 || a.count > MAX_AGENTS {
            return within(
                "agents",
                "count",
                format!("must be between 1 and {MAX_AGENTS}"),
            );
        }
        if a.in_flight == 0 || a.in_flight > 100_000 {
            return within("agents", "in_flight", "must be between 1 and 100000".into());
        }
        if a.purchases == 0 || a.purchases > 1000 {
            return within("agents", "purchases", "must be between 1 and 1000".into());
        }
        if !(1..=MAX_QUANTITY).contains(&a.quantity) {
            return within(
                "agents",
                "quantity",
                format!("must be between 1 and {MAX_QUANTITY}"),
            );
        }
        match a.arrival {
            Arrival::Rate if !(a.rate_per_s > 0.0 && a.rate_per_s <= MAX_RATE_PER_S) => {
                return within(
                    "agents",
                    "rate_per_s",
                    format!("must be > 0 and at most {MAX_RATE_PER_S}"),
                );
            }
            Arrival::Ramp if a.stages.is_empty() => {
                return within("agents", "stages", "ramp arrival needs stages".into());
            }
            _ => {}
        }
        for stage in &a.stages {
            if !(stage.rate_per_s >= 0.0 && stage.rate_per_s <= MAX_RATE_PER_S) {
                return within(
                    "agents",
                    "stages",
                    format!("rate_per_s must be between 0 and {MAX_RATE_PER_S}"),
                );
            }
        }
        let w = self.mix.weights();
        if w.iter().any(|x| !(x.is_finite() && *x >= 0.0)) {
            return top("mix", "weights must be finite and >= 0".into());
        }
        let sum: f64 = w.iter().sum();
        if (sum - 1.0).abs() > 1e-6 {
            return top(
                "mix",
                format!("persona weights must sum to 1, they sum to {sum}"),
            );
        }
        let r = &self.retry;
        if r.timeout_ms == 0 || r.timeout_ms > MAX_WAIT_MS {
            return within(
                "retry",
                "timeout_ms",
                format!("must be between 1 and {MAX_WAIT_MS}"),
            );
        }
        if r.max_attempts == 0 || r.max_attempts > MAX_CLIENT_ATTEMPTS {
            return within(
                "retry",
                "max_attempts",
                format!(
                    "must be between 1 and {MAX_CLIENT_ATTEMPTS} (requests per purchase, each key of it tracked by one bit)"
                ),
            );
        }
        if r.resolve_budget_ms == 0 || r.resolve_budget_ms > MAX_WAIT_MS {
            return within(
                "retry",
                "resolve_budget_ms",
                format!("must be between 1 and {MAX_WAIT_MS}"),
            );
        }
        if r.backoff_ms[0] > r.backoff_ms[1] {
            return within("retry", "backoff_ms", "base must be <= cap".into());
        }
        if r.backoff_ms[1] > MAX_WAIT_MS {
            return within(
                "retry",
                "backoff_ms",
                format!("the cap must be at most {MAX_WAIT_MS}"),
            );
        }
        if self
            .target
            .api_key_env
            .as_ref()
            .is_some_and(|v| v.is_empty() || v.len() > MAX_ENV_NAME)
        {
            return within(
                "target",
                "api_key_env",
                format!("a variable name of 1 to {MAX_ENV_NAME} characters"),
            );
        }
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
        let fr = &self.audit.final_reads;
        if fr.max_keys > MAX_FINAL_READS {
            return Err((
                Locator::Key("audit", "final_reads"),
                "audit.final_reads.max_keys".into(),
                format!("must be between 0 (off) and {MAX_FINAL_READS}"),
            ));
        }
        if fr.budget_ms == 0 || fr.budget_ms > MAX_WAIT_MS {
            return Err((
                Locator::Key("audit", "final_reads"),
                "audit.final_reads.budget_ms".into(),
                format!("must be between 1 and {MAX_WAIT_MS}"),
            ));
        }
        if self.regions.len() > MAX_REGIONS {
            return top("regions", format!("at most {MAX_REGIONS} regions"));
        }
        if self.fault_specs.len() > MAX_FAULTS {
            return top("faults", format!("at most {MAX_FAULTS} faults"));
        }
        if self.kernel.max_attempts == 0 || self.kernel.max_attempts > 1000 {
            return within(
                "kernel",
                "max_attempts",
                "must be between 1 and 1000".into(),
            );
        }
        if self.kernel.pool_size == 0 || self.kernel.pool_size > 1024 {
            return within("kernel", "pool_size", "must be between 1 and 1024".into());
        }
        if self.regions.is_empty() {
            return top("regions", "at least one region is needed".into());
        }
        let live = self.regions.iter().all(|r| r.endpoint.is_some());
        if let Some(ids) = &self.target.ids {
            if !live {
                return within(
                    "target",
                    "ids",
                    "ids are for live endpoints: give every region an `endpoint`".into(),
                );
            }
            if self.target.discover.is_some() {
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
            self.live_catalog = Some(LiveCatalog {
                merchant,
                mandates,
                items,
                price_minor: ids.price_minor,
                currency: ids.currency.clone(),
                stock_per_item: ids.stock_per_item,
                cap_per_mandate_minor: ids.cap_per_mandate_minor,
            });
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
        if self.cluster.patroni.len() > MAX_PATRONI {
            return within(
                "cluster",
                "patroni",
                format!("at most {MAX_PATRONI} Patroni REST endpoints"),
            );
        }
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
        self.faults = faults;
        Ok(())
    }
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
