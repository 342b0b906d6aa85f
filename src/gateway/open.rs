//! Opening a scenario's regions: in-process kernels (direct), in-process servers behind
//! fault proxies (http), or live endpoints (http with client-side faults).
//!
//! Invariants: on embedded SQLite every region shares the one writer; on PostgreSQL each
//! region has its own pool; an in-process server listens on 127.0.0.1 only and is stopped
//! by `RegionServer::stop`. The scenario's kernel settings become a `KernelConfig` here:
//! the kernel knows nothing of scenarios.

use std::time::Duration;

use thiserror::Error;

use super::tls::{ClientTls, client_config};
use super::{Gateway, HttpGateway, Region};
use crate::addr::{DbUrl, Dialect, Endpoint};
use crate::scenario::{KernelSpec, Scenario, TargetKind};
use crate::sut::kernel::{Kernel, KernelConfig, KernelError, Sql};
use crate::sut::server::tls::SelfSigned;

/// Why the regions could not be opened.
#[derive(Debug, Error)]
pub enum OpenError {
    #[error("kernel: {0}")]
    Kernel(#[from] KernelError),
    #[error("127.0.0.1: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Endpoint(String),
    /// A TLS setting that cannot be used (a file, a name): the scenario's mistake.
    #[error("{0}")]
    Tls(String),
}

/// The kernel settings a scenario asks for, running `sql`.
pub fn kernel_config(spec: &KernelSpec, sql: Sql) -> KernelConfig {
    KernelConfig {
        sqlite_mode: spec.sqlite_mode,
        isolation: spec.isolation,
        max_attempts: spec.max_attempts,
        pool_size: spec.pool_size,
        sql,
        ..KernelConfig::default()
    }
}

/// Regions that are live endpoints: HTTP with client-side faults, API key from the
/// variable `target.api_key_env` names.
pub fn live_regions(scenario: &Scenario) -> Result<Vec<Region>, OpenError> {
    let api_key = match &scenario.target.api_key_env {
        Some(var) => Some(std::env::var(var).map_err(|_| {
            OpenError::Endpoint(format!(
                "target.api_key_env: the variable `{var}` is not set"
            ))
        })?),
        None => None,
    };
    let target = &scenario.target;
    let contract = std::sync::Arc::new(scenario.contract.clone());
    let https = scenario.has_https_endpoint();
    // One config for every region: its session cache is what lets reconnects resume.
    let config = match https {
        true => {
            Some(client_config(target.tls.as_ref(), target.http, None).map_err(OpenError::Tls)?)
        }
        false => None,
    };
    scenario
        .regions
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let unsupported =
                |e: String| OpenError::Endpoint(format!("regions[{i}].endpoint: {e}"));
            let endpoint = spec.endpoint.clone().ok_or_else(|| {
                unsupported("a live target needs an endpoint in every region".into())
            })?;
            let tls = match (&config, endpoint.tls) {
                (Some(config), true) => Some(
                    ClientTls::new(config.clone(), &endpoint.server_name, target.tls.as_ref())
                        .map_err(|e| OpenError::Tls(format!("target.tls.server_name: {e}")))?,
                ),
                _ => None,
            };
            let gateway = HttpGateway::new(endpoint, tls, target.http, None, contract.clone())
                .map_err(unsupported)?
                .with_api_key(api_key.clone())
                .map_err(|e| OpenError::Endpoint(format!("target.api_key_env: {e}")))?;
            Ok(Region::with_gateway(
                spec.name.clone(),
                i as u8,
                Gateway::Http(Box::new(gateway)),
            ))
        })
        .collect()
}

/// An in-process HTTP server of one region, stopped at the end of the run.
pub struct RegionServer {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<bool>>,
}

/// Open one kernel per region on PostgreSQL (each its own pool); on embedded SQLite the
/// regions share the one writer, each through its own handle. With `kind = "http"` each
/// region gets its own server on 127.0.0.1 behind a fault proxy.
pub async fn open_regions(
    scenario: &Scenario,
    url: &DbUrl,
    sql: Sql,
) -> Result<(Vec<Region>, Vec<RegionServer>), OpenError> {
    let config = kernel_config(&scenario.kernel, sql);
    let target = &scenario.target;
    let contract = std::sync::Arc::new(scenario.contract.clone());
    // `target.tls.self_signed`: every in-process server shows a certificate made now, signed
    // by a CA made now, which the client alone trusts.
    let tls = match target.tls.as_ref().filter(|t| t.self_signed) {
        Some(_) if target.kind == TargetKind::Http => {
            let made = SelfSigned::loopback().map_err(|e| OpenError::Tls(e.to_string()))?;
            let server = made
                .server_config()
                .map_err(|e| OpenError::Tls(e.to_string()))?;
            let client =
                client_config(None, target.http, Some(made.ca.clone())).map_err(OpenError::Tls)?;
            Some((server, client))
        }
        _ => None,
    };
    let mut regions = Vec::with_capacity(scenario.regions.len());
    let mut servers = Vec::new();
    let shared = match url.dialect() {
        Dialect::Sqlite => Some(Kernel::open(url, config.clone()).await?),
        Dialect::Postgres => None,
    };
    for (i, spec) in scenario.regions.iter().enumerate() {
        let kernel = match (&shared, &spec.db_host_order) {
            (Some(_), Some(_)) => {
                return Err(OpenError::Endpoint(format!(
                    "regions[{i}].db_host_order: an embedded SQLite database has no hosts to order"
                )));
            }
            (Some(k), None) => k.clone(),
            (None, Some(order)) => {
                let own = url
                    .with_host_order(order)
                    .map_err(|e| OpenError::Endpoint(format!("regions[{i}].db_host_order: {e}")))?;
                Kernel::open(&own, config.clone()).await?
            }
            (None, None) => Kernel::open(url, config.clone()).await?,
        };
        let region = match scenario.target.kind {
            TargetKind::Direct => Region::new(spec.name.clone(), i as u8, kernel),
            TargetKind::Http => {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                let server_addr = listener.local_addr()?;
                let app = crate::sut::server::router(
                    kernel,
                    crate::sut::server::ServerConfig {
                        max_in_flight: 100_000,
                        ..Default::default()
                    },
                );
                let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                let drain = Duration::from_secs(5);
                let task = tokio::spawn(crate::sut::server::serve(
                    listener,
                    app,
                    tls.as_ref().map(|(server, _)| server.clone()),
                    async {
                        let _ = stopped.await;
                    },
                    drain,
                ));
                servers.push(RegionServer { stop, task });
                let proxy = super::proxy::FaultProxy::start(server_addr).await?;
                let endpoint = Endpoint::loopback(proxy.addr(), tls.is_some());
                let client = match &tls {
                    Some((_, client)) => Some(
                        ClientTls::new(client.clone(), &endpoint.server_name, None)
                            .map_err(OpenError::Tls)?,
                    ),
                    None => None,
                };
                let gateway =
                    HttpGateway::new(endpoint, client, target.http, Some(proxy), contract.clone())
                        .map_err(OpenError::Endpoint)?;
                Region::with_gateway(spec.name.clone(), i as u8, Gateway::Http(Box::new(gateway)))
            }
        };
        regions.push(region);
    }
    Ok((regions, servers))
}

impl RegionServer {
    /// Stop accepting, let in-flight requests finish (bounded by the drain), and wait.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}
