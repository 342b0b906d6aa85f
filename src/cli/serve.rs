//! `swarm serve`: the reference kernel over HTTP until Ctrl-C or SIGTERM.

use anyhow::Context;

use super::{Exit, ServeArgs, internal, parse_url, usage};
use swarm::exit;
use swarm::sut::kernel::{Kernel, KernelConfig};

pub async fn serve(args: ServeArgs) -> Result<i32, Exit> {
    let ServeArgs {
        db,
        listen,
        api_key_env,
        max_in_flight,
        drain_ms,
        sqlite_mmap_mib,
        tls_cert,
        tls_key,
        tls_client_ca,
    } = args;

    let url = parse_url(&db)?;
    // Certificates are read before anything opens: a file that cannot be used is a usage
    // error naming it.
    let tls = match (&tls_cert, &tls_key) {
        (Some(cert), Some(key)) => Some(
            swarm::sut::server::tls::server_config_from_files(cert, key, tls_client_ca.as_deref())
                .map_err(usage)?,
        ),
        _ => None,
    };
    let api_keys = match api_key_env {
        Some(var) => std::env::var(&var)
            .map_err(|_| {
                usage(anyhow::anyhow!(
                    "--api-key-env {var}: the variable is not set"
                ))
            })?
            .split(',')
            .map(|k| k.trim().to_string())
            .filter(|k| !k.is_empty())
            .collect(),
        None => Vec::new(),
    };
    let config = KernelConfig {
        sqlite_mmap_bytes: sqlite_mmap_mib << 20,
        ..KernelConfig::default()
    };
    let kernel = Kernel::open(&url, config)
        .await
        .with_context(|| format!("opening the kernel on {url}"))
        .map_err(internal)?;
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("listening on {listen}"))
        .map_err(usage)?;
    let addr = listener.local_addr().map_err(internal)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mtls = if tls_client_ca.is_some() {
        ", client certificates required"
    } else {
        ""
    };
    eprintln!(
        "swarm: serving {url} on {scheme}://{addr}{mtls} (Ctrl-C or SIGTERM drains and stops)"
    );
    let router = swarm::sut::server::router(
        kernel,
        swarm::sut::server::ServerConfig {
            api_keys,
            max_in_flight,
            ..Default::default()
        },
    );
    let stop = async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            Some(()) = async { term.as_mut()?.recv().await } => {}
        }
        eprintln!("swarm: stopping: no new connections; draining in-flight requests");
    };
    let drain = std::time::Duration::from_millis(drain_ms);
    let drained = swarm::sut::server::serve(listener, router, tls, stop, drain)
        .await
        .map_err(internal)?;
    if !drained {
        eprintln!("swarm: drain deadline ({drain_ms} ms) passed; open connections cut");
    }
    Ok(exit::VALID)
}
