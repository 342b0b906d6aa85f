//! The scenario's shape and its defaults: what a file may say, typed as it is read.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::contract::{Contract, ContractSpec};
use super::fault::{Fault, FaultSpec};
use super::parsed;
use super::threshold::{Metric, Threshold};
use crate::addr::{DbUrl, Endpoint};

use crate::sut::db::seed::{CatalogSpec, MandateSpec};
use crate::sut::kernel::{Isolation, SqliteMode};

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
    /// What the audit does beyond reading the files (final reads).
    #[serde(default)]
    pub audit: AuditSpec,
    /// Gates on the run's figures (`p99_ms = "< 250"`).
    #[serde(default)]
    pub thresholds: BTreeMap<Metric, Threshold>,
    #[serde(default = "default_regions")]
    pub regions: Vec<RegionSpec>,
    /// The database cluster behind the target, watched during the run (who leads, when
    /// that changes).
    #[serde(default)]
    pub cluster: ClusterSpec,
    /// The `[[faults]]` tables as written; `validate` turns them into `faults`.
    #[serde(default, rename = "faults")]
    pub(super) fault_specs: Vec<FaultSpec>,
    /// The fault timeline, checked and typed (regions resolved to indices).
    #[serde(skip)]
    pub faults: Vec<Fault>,
    /// `target.ids`, checked and typed.
    #[serde(skip)]
    pub live_catalog: Option<LiveCatalog>,
    /// `[target.contract]`, resolved against its profile and checked.
    #[serde(skip)]
    pub contract: Contract,
    /// What the file says that does not apply and is ignored (printed before the run).
    #[serde(skip)]
    pub warnings: Vec<String>,
    /// SHA-256 of the file's text, in hex: which scenario a history came from.
    #[serde(skip)]
    pub text_sha256: String,
}

fn default_seed() -> u64 {
    42
}

fn default_regions() -> Vec<RegionSpec> {
    vec![RegionSpec {
        name: "local".into(),
        weight: 1.0,
        endpoint: None,
        db_host_order: None,
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
    #[serde(default, deserialize_with = "parsed::optional")]
    pub database: Option<DbUrl>,
    /// For live endpoints: the environment variable holding the Bearer API key.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// The idempotency contract of the API under test (`[target.contract]`), as written;
    /// `validate` resolves it into `Scenario::contract`.
    #[serde(default)]
    pub contract: ContractSpec,
    /// Replaced by `[target.contract] profile`; kept only to say so.
    #[serde(default)]
    pub protocol: Option<toml::Spanned<String>>,
    /// For live endpoints: the merchant, mandates and items to buy with (instead of the
    /// ids `swarm db seed` derives from the scenario's seed).
    #[serde(default)]
    pub ids: Option<LiveIds>,
    /// For live endpoints: find the ids by asking the endpoint (`"sandbox"`: its
    /// `GET /v1/sandbox`, the stocked sandbox).
    #[serde(default)]
    pub discover: Option<Discover>,
    /// TLS for `https://` endpoints (roots, client certificate, name), or in-process
    /// servers behind TLS (`self_signed`).
    #[serde(default)]
    pub tls: Option<TlsSpec>,
    /// Which HTTP version the client speaks.
    #[serde(default)]
    pub http: HttpVersion,
}

/// `target.tls`: how the client checks (and proves itself to) an HTTPS endpoint. Paths
/// are resolved against the scenario file's directory when the scenario loads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSpec {
    /// PEM certificates trusted as roots instead of the system's.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// PEM certificate chain presented to a server that asks for one (mTLS).
    #[serde(default)]
    pub client_cert: Option<std::path::PathBuf>,
    /// The PEM private key of `client_cert`.
    #[serde(default)]
    pub client_key: Option<std::path::PathBuf>,
    /// The name checked against the certificate and sent as SNI (default: the URL's host).
    #[serde(default)]
    pub server_name: Option<String>,
    /// Accept any certificate (load tests on a machine without its CA; never in CI).
    #[serde(default)]
    pub insecure: bool,
    /// In-process servers (`kind = "http"`) speak TLS with a certificate made at start.
    #[serde(default)]
    pub self_signed: bool,
}

/// `target.http`: `"1.1"`, `"2"` (ALPN over TLS, prior knowledge on plain HTTP) or
/// `"auto"` (ALPN offers both over TLS; HTTP/1.1 on plain HTTP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum HttpVersion {
    #[serde(rename = "1.1")]
    Http1,
    #[serde(rename = "2")]
    Http2,
    #[default]
    #[serde(rename = "auto")]
    Auto,
}

impl HttpVersion {
    pub fn name(self) -> &'static str {
        match self {
            HttpVersion::Http1 => "1.1",
            HttpVersion::Http2 => "2",
            HttpVersion::Auto => "auto",
        }
    }
}

/// Ids of a live deployment's catalog, given in the scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveIds {
    pub merchant: String,
    pub mandates: Vec<String>,
    pub items: Vec<String>,
    /// The items' unit price, in minor units of `currency`.
    pub price_minor: i64,
    pub currency: String,
    /// Declared limits the history-only audit holds the answers to: units per item and
    /// cap per mandate.
    pub stock_per_item: i64,
    pub cap_per_mandate_minor: i64,
}

/// A live deployment's catalog as the scenario gives it, checked: ids parsed, limits
/// in range.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveCatalog {
    pub merchant: uuid::Uuid,
    pub mandates: Vec<uuid::Uuid>,
    pub items: Vec<uuid::Uuid>,
    pub price_minor: i64,
    pub currency: String,
    pub stock_per_item: i64,
    pub cap_per_mandate_minor: i64,
}

/// Where a live target's ids are discovered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Discover {
    /// `GET /v1/sandbox` on the first region's endpoint.
    Sandbox,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KernelSpec {
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
            sqlite_mode: SqliteMode::Occ,
            isolation: Isolation::RepeatableRead,
            max_attempts: 16,
            pool_size: 16,
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
    #[serde(deserialize_with = "parsed::duration")]
    pub duration: Duration,
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

impl Scenario {
    /// Some region's endpoint is `https://`.
    pub fn has_https_endpoint(&self) -> bool {
        self.regions
            .iter()
            .any(|r| r.endpoint.as_ref().is_some_and(|e| e.tls))
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
    /// Wall time the end-of-run replay of indeterminate keys may take; what it has not
    /// decided by then is unresolved (`unknown`).
    pub resolve_budget_ms: u64,
}

impl Default for RetrySpec {
    fn default() -> Self {
        RetrySpec {
            timeout_ms: 2000,
            max_attempts: 8,
            backoff_ms: [10, 1000],
            resolve_budget_ms: 60_000,
        }
    }
}

/// `[audit]`: what the end of a run asks the target again.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSpec {
    #[serde(default)]
    pub final_reads: FinalReadSpec,
}

/// `audit.final_reads`: after the end-of-run resolution, re-read keys whose last answer
/// was a decline, a refusal, an in-flight answer or nothing, and a sample of commits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FinalReadSpec {
    /// Most keys re-read (`0` turns final reads off).
    pub max_keys: u64,
    /// Wall time they may take.
    pub budget_ms: u64,
}

impl Default for FinalReadSpec {
    fn default() -> Self {
        FinalReadSpec {
            max_keys: 100_000,
            budget_ms: 60_000,
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
    #[serde(default, deserialize_with = "parsed::optional")]
    pub endpoint: Option<Endpoint>,
    /// On a multi-host PostgreSQL URL: the order in which this region's connections try
    /// the URL's hosts (1-based positions), so each region can enter the cluster through
    /// its own node.
    #[serde(default)]
    pub db_host_order: Option<Vec<u8>>,
}

/// Most hosts a region's `db_host_order` may name.
pub const MAX_DB_HOSTS: usize = 16;
/// Most Patroni REST endpoints `cluster.patroni` may name.
pub const MAX_PATRONI: usize = 16;

/// `[cluster]`: the database cluster behind the target.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    /// Patroni REST APIs (`http://host:8008`), asked a few times a second who leads; the
    /// first that answers is believed. `swarm run --patroni` gives them on the command line.
    #[serde(default, deserialize_with = "parsed::endpoints")]
    pub patroni: Vec<Endpoint>,
}

fn one() -> f64 {
    1.0
}

/// Most requests one logical purchase may send (`retry.max_attempts`): an agent keeps its
/// keys' states in a 64-bit map, one bit per key, and a key rotator names a key per
/// request with an 8-bit variant, so past 64 a key could not be told from another.
pub const MAX_CLIENT_ATTEMPTS: u32 = 64;

/// Upper bound on agents in one process: keeps memory planning honest.
pub const MAX_AGENTS: u64 = 10_000_000;

/// True for a 3-letter upper-case ISO-4217-shaped code.
pub fn is_currency(s: &str) -> bool {
    s.len() == 3 && s.bytes().all(|b| b.is_ascii_uppercase())
}
