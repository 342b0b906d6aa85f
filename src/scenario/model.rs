//! The scenario's shape, its defaults and its semantic checks.

use std::collections::BTreeMap;

use serde::Deserialize;

/// A whole scenario file. Every section has defaults, so a ten-line file works.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Defaults to the file's stem.
    #[serde(default)]
    pub name: String,
    #[serde(default = "default_seed")]
    pub seed: u64,
    #[serde(default)]
    pub target: TargetSpec,
    #[serde(default)]
    pub kernel: KernelSpec,
    #[serde(default)]
    pub catalog: CatalogSpec,
    #[serde(default)]
    pub mandates: MandateSpec,
    #[serde(default)]
    pub agents: AgentSpec,
    #[serde(default)]
    pub mix: Mix,
    #[serde(default)]
    pub retry: RetrySpec,
    #[serde(default)]
    pub thresholds: BTreeMap<String, String>,
    #[serde(default = "default_regions")]
    pub regions: Vec<RegionSpec>,
    #[serde(default)]
    pub faults: Vec<FaultSpec>,
}

fn default_seed() -> u64 {
    42
}

fn default_regions() -> Vec<RegionSpec> {
    vec![RegionSpec {
        name: "local".into(),
        weight: 1.0,
        endpoint: None,
    }]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum TargetKind {
    /// Agents call the kernel in-process.
    #[default]
    Direct,
    /// Agents call an HTTP endpoint.
    Http,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    #[serde(default)]
    pub kind: TargetKind,
    /// `sqlite://…` or `postgres://…`; none means an embedded SQLite file in the report dir.
    #[serde(default)]
    pub database: Option<String>,
    /// For live endpoints: the environment variable holding the Bearer API key.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// The HTTP API's shape.
    #[serde(default)]
    pub protocol: Protocol,
    /// For live endpoints: the merchant, mandates and items to buy with (instead of the
    /// ids `swarm db seed` derives from the scenario's seed).
    #[serde(default)]
    pub ids: Option<LiveIds>,
    /// For live endpoints: find the ids by asking the endpoint (`"sandbox"`: its
    /// `GET /v1/sandbox`, the stocked sandbox).
    #[serde(default)]
    pub discover: Option<Discover>,
}

/// Ids of a live deployment's catalog, given in the scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveIds {
    pub merchant: String,
    pub mandates: Vec<String>,
    pub items: Vec<String>,
}

/// Where a live target's ids are discovered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Discover {
    /// `GET /v1/sandbox` on the first region's endpoint.
    Sandbox,
}

/// Which API shape an HTTP target speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// `POST /v1/purchases/commit`, Idempotency-Key header, replays with `replayed: true`.
    #[default]
    Zerorace,
    /// `POST /orders`, `idempotency_key` in the body, `409 already_exists` on a reused key
    /// (a retry looks the order up by its id).
    Zinc,
}

/// How the embedded SQLite kernel serialises writers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SqliteMode {
    /// One writer thread, many purchases per transaction (each in its own savepoint).
    #[default]
    Group,
    /// A pool of deferred transactions; snapshot conflicts are retried and counted.
    Optimistic,
}

/// PostgreSQL transaction isolation for the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Isolation {
    ReadCommitted,
    /// What Aurora DSQL offers; the default.
    #[default]
    RepeatableRead,
    Serializable,
}

impl Isolation {
    pub fn sql(self) -> &'static str {
        match self {
            Isolation::ReadCommitted => "READ COMMITTED",
            Isolation::RepeatableRead => "REPEATABLE READ",
            Isolation::Serializable => "SERIALIZABLE",
        }
    }
}

/// A deliberately broken kernel, each reproducing one real bug. Only `swarm selftest` sets
/// one: it cannot be named in a scenario file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sabotage {
    #[default]
    None,
    /// The claim ignores the stock condition (a clamped decrement): sales go past stock.
    SkipStockCondition,
    /// The key is never looked up (and the UNIQUE index is missing): retries settle again.
    SkipKeyCheck,
    /// Only the debit leg is written.
    OneLedgerLeg,
    /// The debit ignores the cap condition (a clamped decrement).
    SkipCapCondition,
    /// The commit is acknowledged, then rolled back.
    AckThenRollback,
    /// The intent commits without its ledger rows.
    NoLedgerRows,
}

impl Sabotage {
    pub const ALL: [Sabotage; 6] = [
        Sabotage::SkipStockCondition,
        Sabotage::SkipKeyCheck,
        Sabotage::OneLedgerLeg,
        Sabotage::SkipCapCondition,
        Sabotage::AckThenRollback,
        Sabotage::NoLedgerRows,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Sabotage::None => "none",
            Sabotage::SkipStockCondition => "stock condition skipped",
            Sabotage::SkipKeyCheck => "key check skipped",
            Sabotage::OneLedgerLeg => "one ledger leg written",
            Sabotage::SkipCapCondition => "cap condition skipped",
            Sabotage::AckThenRollback => "acknowledged then rolled back",
            Sabotage::NoLedgerRows => "intent without ledger rows",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KernelSpec {
    /// Never read from a file (see `Sabotage`).
    #[serde(skip)]
    pub sabotage: Sabotage,
    pub sqlite_mode: SqliteMode,
    pub isolation: Isolation,
    /// Bound on whole-transaction reruns after serialization conflicts (1 + OCC retries).
    pub max_attempts: u32,
    /// Connections per region (PostgreSQL) or per optimistic SQLite pool.
    pub pool_size: usize,
}

impl Default for KernelSpec {
    fn default() -> Self {
        KernelSpec {
            sabotage: Sabotage::None,
            sqlite_mode: SqliteMode::Group,
            isolation: Isolation::RepeatableRead,
            max_attempts: 16,
            pool_size: 16,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogSpec {
    pub items: u32,
    /// Units per item, split across `buckets`.
    pub stock: i64,
    pub buckets: u32,
    pub price_minor: i64,
    pub currency: String,
}

impl Default for CatalogSpec {
    fn default() -> Self {
        CatalogSpec {
            items: 1,
            stock: 100,
            buckets: 16,
            price_minor: 2500,
            currency: "USD".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MandateSpec {
    pub count: u32,
    /// Cap per mandate, split across `shards`.
    pub cap_minor: i64,
    pub shards: u32,
}

impl Default for MandateSpec {
    fn default() -> Self {
        MandateSpec {
            count: 1000,
            cap_minor: 10_000,
            shards: 4,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Arrival {
    /// Every agent eligible at once, bounded by `in_flight`.
    #[default]
    Burst,
    /// Open model: `rate_per_s` arrivals per second.
    Rate,
    /// Open model: `stages`, each a duration and a target rate, linearly interpolated.
    Ramp,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RampStage {
    pub duration: String,
    pub rate_per_s: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentSpec {
    pub count: u64,
    pub in_flight: usize,
    pub arrival: Arrival,
    pub rate_per_s: f64,
    pub stages: Vec<RampStage>,
    /// Logical purchases per agent.
    pub purchases: u32,
    /// Units per purchase.
    pub quantity: i64,
}

impl Default for AgentSpec {
    fn default() -> Self {
        AgentSpec {
            count: 10_000,
            in_flight: 256,
            arrival: Arrival::Burst,
            rate_per_s: 1000.0,
            stages: Vec::new(),
            purchases: 1,
            quantity: 1,
        }
    }
}

/// Persona weights; they must sum to 1.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Mix {
    pub well_behaved: f64,
    pub double_submit: f64,
    pub crash_restart: f64,
    pub key_rotator: f64,
    pub payload_mutator: f64,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            well_behaved: 1.0,
            double_submit: 0.0,
            crash_restart: 0.0,
            key_rotator: 0.0,
            payload_mutator: 0.0,
        }
    }
}

impl Mix {
    pub fn weights(&self) -> [f64; 5] {
        [
            self.well_behaved,
            self.double_submit,
            self.crash_restart,
            self.key_rotator,
            self.payload_mutator,
        ]
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySpec {
    pub timeout_ms: u64,
    pub max_attempts: u32,
    /// `[base, cap]` of the client's capped, jittered exponential backoff.
    pub backoff_ms: [u64; 2],
}

impl Default for RetrySpec {
    fn default() -> Self {
        RetrySpec {
            timeout_ms: 2000,
            max_attempts: 8,
            backoff_ms: [10, 1000],
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionSpec {
    pub name: String,
    #[serde(default = "one")]
    pub weight: f64,
    /// A live endpoint (http target only).
    #[serde(default)]
    pub endpoint: Option<String>,
}

fn one() -> f64 {
    1.0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// Take `region` down in `mode`.
    RegionDown,
    /// Run `command` with `sh -c` (e.g. promote a standby, kill a pod); its exit code and
    /// output go into the run's record.
    Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultMode {
    /// Requests fail at once.
    Outage,
    /// Requests hang until the client's timeout.
    Blackhole,
    /// In-flight requests are cut at random points, some after the commit.
    Crash,
    /// The commit happens; the acknowledgement is lost.
    LostAck,
    /// Every answer comes `latency_ms` ± `jitter_ms` late; nothing is lost.
    Latency,
}

/// The delay a `latency` fault adds to each answer: uniform in
/// `[latency_ms - jitter_ms, latency_ms + jitter_ms]`, never below 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delay {
    pub latency_ms: u64,
    pub jitter_ms: u64,
}

impl Delay {
    /// One draw of the delay.
    pub fn sample(self) -> std::time::Duration {
        use rand::Rng;
        let lo = self.latency_ms.saturating_sub(self.jitter_ms) * 1000;
        let hi = (self.latency_ms + self.jitter_ms) * 1000;
        let us = if hi > lo {
            rand::rng().random_range(lo..=hi)
        } else {
            lo
        };
        std::time::Duration::from_micros(us)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// `"20s"`, `"500ms"` or `"50%"` of agents done.
    pub at: String,
    pub kind: FaultKind,
    /// `region-down` only.
    #[serde(default)]
    pub region: Option<String>,
    /// `region-down` only.
    #[serde(default)]
    pub mode: Option<FaultMode>,
    /// `command` only.
    #[serde(default)]
    pub command: Option<String>,
    /// `latency` mode only: the added delay per answer.
    #[serde(default)]
    pub latency_ms: Option<u64>,
    /// `latency` mode only: the delay varies by up to this much either way.
    #[serde(default)]
    pub jitter_ms: Option<u64>,
    #[serde(default)]
    pub heal_after: Option<String>,
}

impl FaultSpec {
    /// The delay of a `latency` fault (zero for every other kind).
    pub fn delay(&self) -> Delay {
        Delay {
            latency_ms: self.latency_ms.unwrap_or(0),
            jitter_ms: self.jitter_ms.unwrap_or(0),
        }
    }
}

/// Longest `latency_ms` / `jitter_ms` a fault may add.
pub const MAX_DELAY_MS: u64 = 600_000;

/// When a fault fires.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FaultAt {
    AfterMs(u64),
    /// A fraction in `[0, 1]` of agents finished.
    Progress(f64),
}

impl FaultAt {
    pub fn parse(s: &str) -> Result<FaultAt, String> {
        let s = s.trim();
        if let Some(p) = s.strip_suffix('%') {
            let v: f64 = p
                .trim()
                .parse()
                .map_err(|_| format!("`{s}` is not a percentage like \"50%\""))?;
            if !(0.0..=100.0).contains(&v) {
                return Err(format!("`{s}` must be between 0% and 100%"));
            }
            return Ok(FaultAt::Progress(v / 100.0));
        }
        parse_duration_ms(s).map(FaultAt::AfterMs)
    }
}

/// `"250ms"`, `"20s"`, `"2m"` → milliseconds.
pub fn parse_duration_ms(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000.0)
    } else {
        return Err(format!("`{s}` is not a duration like \"20s\" or \"500ms\""));
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like \"20s\" or \"500ms\""))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("`{s}` must be a non-negative duration"));
    }
    Ok((v * mult).round() as u64)
}

/// Threshold metric names a scenario may gate on.
pub const THRESHOLD_METRICS: &[&str] = &[
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "p999_ms",
    "max_ms",
    "error_rate",
    "commits_per_s",
    "purchases_per_s",
    "occ_retries",
    "retry_exhausted",
];

/// Upper bound on agents in one process: keeps memory planning honest.
pub const MAX_AGENTS: u64 = 10_000_000;

impl Scenario {
    /// Checks serde cannot express. Spans are found again in the text by `locate`.
    pub(super) fn validate(&self) -> Result<(), (Locator, String, String)> {
        let top = |key: &'static str, msg: String| Err((Locator::Top(key), key.to_string(), msg));
        let within = |table: &'static str, key: &'static str, msg: String| {
            Err((Locator::Key(table, key), format!("{table}.{key}"), msg))
        };
        let c = &self.catalog;
        if c.items == 0 || c.items > 10_000 {
            return within("catalog", "items", "must be between 1 and 10000".into());
        }
        if c.stock < 0 {
            return within("catalog", "stock", "must be >= 0".into());
        }
        if c.buckets == 0 || c.buckets > 1024 {
            return within("catalog", "buckets", "must be between 1 and 1024".into());
        }
        if c.price_minor <= 0 {
            return within("catalog", "price_minor", "must be > 0 (minor units)".into());
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
        if m.cap_minor < 0 {
            return within("mandates", "cap_minor", "must be >= 0".into());
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
        if a.quantity < 1 {
            return within("agents", "quantity", "must be >= 1".into());
        }
        match a.arrival {
            Arrival::Rate if !(a.rate_per_s > 0.0 && a.rate_per_s.is_finite()) => {
                return within("agents", "rate_per_s", "must be > 0".into());
            }
            Arrival::Ramp if a.stages.is_empty() => {
                return within("agents", "stages", "ramp arrival needs stages".into());
            }
            _ => {}
        }
        for stage in &a.stages {
            if let Err(e) = parse_duration_ms(&stage.duration) {
                return within("agents", "stages", e);
            }
            if !(stage.rate_per_s >= 0.0 && stage.rate_per_s.is_finite()) {
                return within("agents", "stages", "rate_per_s must be >= 0".into());
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
        if r.timeout_ms == 0 {
            return within("retry", "timeout_ms", "must be > 0".into());
        }
        if r.max_attempts == 0 || r.max_attempts > 1000 {
            return within("retry", "max_attempts", "must be between 1 and 1000".into());
        }
        if r.backoff_ms[0] > r.backoff_ms[1] {
            return within("retry", "backoff_ms", "base must be <= cap".into());
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
        if let Some(db) = &self.target.database
            && db.parse::<crate::db::DbUrl>().is_err()
        {
            return within(
                "target",
                "database",
                "expected sqlite://PATH or postgres://…".into(),
            );
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
            for (name, id) in named {
                if uuid::Uuid::parse_str(id).is_err() {
                    return Err((
                        Locator::Key("target", "ids"),
                        format!("target.ids.{name}"),
                        format!("`{id}` is not a UUID"),
                    ));
                }
            }
        }
        if self.target.discover.is_some() && !live {
            return within(
                "target",
                "discover",
                "discovery asks a live endpoint: give every region an `endpoint`".into(),
            );
        }
        for (i, region) in self.regions.iter().enumerate() {
            if let Some(url) = &region.endpoint
                && let Err(e) = crate::pool::Endpoint::parse(url)
            {
                return Err((
                    Locator::Element("regions", i, "endpoint"),
                    format!("regions[{i}].endpoint"),
                    e,
                ));
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
            if region.name.is_empty() {
                return here("name", "must not be empty".into());
            }
            if self.regions[..i].iter().any(|r| r.name == region.name) {
                return here("name", format!("region `{}` is named twice", region.name));
            }
            if !(region.weight.is_finite() && region.weight >= 0.0) {
                return here("weight", "must be finite and >= 0".into());
            }
        }
        if self.regions.iter().all(|r| r.weight == 0.0) {
            return top("regions", "at least one region needs a weight > 0".into());
        }
        for (i, fault) in self.faults.iter().enumerate() {
            let here = |key: &'static str, msg: String| {
                Err((
                    Locator::Element("faults", i, key),
                    format!("faults[{i}].{key}"),
                    msg,
                ))
            };
            if let Err(e) = FaultAt::parse(&fault.at) {
                return here("at", e);
            }
            if let Some(h) = &fault.heal_after
                && let Err(e) = parse_duration_ms(h)
            {
                return here("heal_after", e);
            }
            match fault.kind {
                FaultKind::RegionDown => {
                    let Some(region) = &fault.region else {
                        return here("region", "a region-down fault names its region".into());
                    };
                    if fault.mode.is_none() {
                        return here(
                            "mode",
                            "a region-down fault needs a mode: outage, blackhole, crash, lost-ack or latency"
                                .into(),
                        );
                    }
                    if fault.mode == Some(FaultMode::Latency) {
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
                    if !self.regions.iter().any(|r| &r.name == region) {
                        let known: Vec<&str> =
                            self.regions.iter().map(|r| r.name.as_str()).collect();
                        return here(
                            "region",
                            format!("unknown region `{region}` (known: {})", known.join(", ")),
                        );
                    }
                }
                FaultKind::Command => {
                    if fault.command.as_deref().is_none_or(|c| c.trim().is_empty()) {
                        return here("command", "a command fault needs a `command`".into());
                    }
                    if fault.mode.is_some() {
                        return here("mode", "a command fault has no mode".into());
                    }
                    if fault.latency_ms.is_some() || fault.jitter_ms.is_some() {
                        return here("latency_ms", "a command fault has no latency".into());
                    }
                }
            }
        }
        for (name, rule) in &self.thresholds {
            if !THRESHOLD_METRICS.contains(&name.as_str()) {
                return Err((
                    Locator::Key("thresholds", known_metric(name)),
                    format!("thresholds.{name}"),
                    format!(
                        "unknown metric `{name}` (known: {})",
                        THRESHOLD_METRICS.join(", ")
                    ),
                ));
            }
            if Threshold::parse(rule).is_err() {
                return Err((
                    Locator::Key("thresholds", known_metric(name)),
                    format!("thresholds.{name}"),
                    format!("`{rule}` is not a rule like \"< 250\" or \"> 500\""),
                ));
            }
        }
        Ok(())
    }

    /// The fault times, parsed (validated at load).
    pub fn fault_at(&self, i: usize) -> FaultAt {
        FaultAt::parse(&self.faults[i].at).unwrap_or(FaultAt::Progress(1.0))
    }
}

/// A k6-style rule: `"< 250"`, `"<= 0.001"`, `"> 500"`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    pub op: ThresholdOp,
    pub value: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThresholdOp {
    Lt,
    Le,
    Gt,
    Ge,
}

impl Threshold {
    pub fn parse(rule: &str) -> Result<Threshold, String> {
        let r = rule.trim();
        let (op, rest) = if let Some(x) = r.strip_prefix("<=") {
            (ThresholdOp::Le, x)
        } else if let Some(x) = r.strip_prefix(">=") {
            (ThresholdOp::Ge, x)
        } else if let Some(x) = r.strip_prefix('<') {
            (ThresholdOp::Lt, x)
        } else if let Some(x) = r.strip_prefix('>') {
            (ThresholdOp::Gt, x)
        } else {
            return Err(rule.to_string());
        };
        let value: f64 = rest.trim().parse().map_err(|_| rule.to_string())?;
        Ok(Threshold { op, value })
    }

    pub fn holds(&self, observed: f64) -> bool {
        match self.op {
            ThresholdOp::Lt => observed < self.value,
            ThresholdOp::Le => observed <= self.value,
            ThresholdOp::Gt => observed > self.value,
            ThresholdOp::Ge => observed >= self.value,
        }
    }
}

/// The locator wants a `'static` key; an unknown metric points at the `[thresholds]` table.
fn known_metric(name: &str) -> &'static str {
    THRESHOLD_METRICS
        .iter()
        .find(|m| **m == name)
        .copied()
        .unwrap_or("")
}

/// Where in the text a semantic error points.
#[derive(Debug, Clone, Copy)]
pub enum Locator {
    /// A top-level key or `[table]`.
    Top(&'static str),
    /// `key` inside `[table]` or `table = { … }`.
    Key(&'static str, &'static str),
    /// `key` inside the i-th `[[table]]`.
    Element(&'static str, usize, &'static str),
}

/// True for a 3-letter upper-case ISO-4217-shaped code.
pub fn is_currency(s: &str) -> bool {
    s.len() == 3 && s.bytes().all(|b| b.is_ascii_uppercase())
}
