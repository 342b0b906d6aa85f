//! Kernel throughput, for `scripts/bench-kernel.sh` and `scripts/bench-million.sh`.
//!
//!   bench_kernel setup  URL  STOCK BUCKETS MANDATES CAP_MINOR
//!   bench_kernel bare   PATH STOCK BUCKETS MANDATES CAP_MINOR PURCHASES
//!   bench_kernel kernel URL  STOCK BUCKETS MANDATES CAP_MINOR PURCHASES CONCURRENCY
//!
//! Every verb initialises and seeds the (fresh) database first. `bare` is the single-writer
//! limit: the kernel's statements, one transaction per purchase, in a loop. `kernel` is
//! the kernel as the engine drives it: CONCURRENCY tasks calling `Kernel::commit`.
//! Each prints one line: `purchases_per_s=… committed=… declined=… seconds=…`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use swarm::addr::DbUrl;
use swarm::sut::db::seed::{CatalogSpec, MandateSpec};
use swarm::sut::db::{Database, SeedPlan};
use swarm::sut::kernel::{Currency, Kernel, KernelConfig, Outcome, PurchaseRequest};

const SEED: u64 = 4242;
const PRICE: i64 = 2500;

fn arg<T: std::str::FromStr>(args: &[String], i: usize, name: &str) -> anyhow::Result<T> {
    args.get(i)
        .with_context(|| format!("missing {name}"))?
        .parse()
        .map_err(|_| anyhow::anyhow!("bad {name}"))
}

fn plan(stock: i64, buckets: u32, mandates: u32, cap: i64) -> SeedPlan {
    SeedPlan::new(
        SEED,
        &CatalogSpec {
            items: 1,
            stock,
            buckets,
            price_minor: PRICE,
            currency: "USD".into(),
        },
        &MandateSpec {
            count: mandates,
            cap_minor: cap,
            shards: 4,
        },
    )
}

/// The `i`-th purchase: one unit, a mandate in turn, a fresh key.
fn request(p: &SeedPlan, i: u64) -> (PurchaseRequest, String) {
    let item = &p.items[0];
    let mandates: Vec<_> = p.catalog_mandates().collect();
    let m = mandates[(i as usize) % mandates.len()];
    (
        PurchaseRequest {
            merchant_id: item.merchant_id,
            mandate_id: m.mandate_id,
            item_id: item.item_id,
            agent_id: format!("bench-{i}"),
            quantity: 1,
            amount_minor: PRICE,
            currency: Currency::parse("USD").unwrap_or_else(|_| unreachable!()),
        },
        format!("bench-{i}"),
    )
}

fn report(start: Instant, committed: u64, declined: u64) {
    let secs = start.elapsed().as_secs_f64();
    println!(
        "purchases_per_s={:.0} committed={committed} declined={declined} seconds={secs:.2}",
        (committed + declined) as f64 / secs
    );
}

async fn setup(url: &DbUrl, args: &[String]) -> anyhow::Result<SeedPlan> {
    let p = plan(
        arg(args, 3, "STOCK")?,
        arg(args, 4, "BUCKETS")?,
        arg(args, 5, "MANDATES")?,
        arg(args, 6, "CAP_MINOR")?,
    );
    let db = Database::connect(url)?;
    db.init().await?;
    db.seed(&p).await?;
    Ok(p)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("setup") => {
            let url: DbUrl = arg(&args, 2, "URL")?;
            setup(&url, &args).await?;
            println!("seeded {url}");
        }
        Some("bare") => {
            let path: String = arg(&args, 2, "PATH")?;
            let p = setup(&DbUrl::sqlite(&path), &args).await?;
            let n: u64 = arg(&args, 7, "PURCHASES")?;
            let reqs: Vec<_> = (0..n).map(|i| request(&p, i)).collect();
            let start = Instant::now();
            let (c, d) = tokio::task::spawn_blocking(move || {
                swarm::sut::kernel::bench::bare_loop(std::path::Path::new(&path), reqs.into_iter())
            })
            .await??;
            report(start, c, d);
        }
        Some("kernel") => {
            let url: DbUrl = arg(&args, 2, "URL")?;
            let p = Arc::new(setup(&url, &args).await?);
            let n: u64 = arg(&args, 7, "PURCHASES")?;
            let concurrency: u64 = arg(&args, 8, "CONCURRENCY")?;
            let kernel = Kernel::open(
                &url,
                KernelConfig {
                    pool_size: concurrency as usize,
                    max_attempts: 64,
                    ..KernelConfig::default()
                },
            )
            .await?;
            let next = Arc::new(AtomicU64::new(0));
            let committed = Arc::new(AtomicU64::new(0));
            let declined = Arc::new(AtomicU64::new(0));
            let start = Instant::now();
            let mut tasks = Vec::new();
            for _ in 0..concurrency {
                let (k, p, next, c, d) = (
                    kernel.clone(),
                    p.clone(),
                    next.clone(),
                    committed.clone(),
                    declined.clone(),
                );
                tasks.push(tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            break;
                        }
                        let (req, key) = request(&p, i);
                        loop {
                            match k.commit(&req, &key).await {
                                Ok(s) if s.outcome == Outcome::Committed => {
                                    c.fetch_add(1, Ordering::Relaxed);
                                    break;
                                }
                                Ok(_) => {
                                    d.fetch_add(1, Ordering::Relaxed);
                                    break;
                                }
                                Err(e) if e.is_transient() => continue,
                                Err(e) => panic!("purchase {i}: {e}"),
                            }
                        }
                    }
                }));
            }
            for t in tasks {
                t.await?;
            }
            report(
                start,
                committed.load(Ordering::Relaxed),
                declined.load(Ordering::Relaxed),
            );
        }
        _ => bail!(
            "usage: bench_kernel setup|bare|kernel URL STOCK BUCKETS MANDATES CAP [PURCHASES [CONCURRENCY]]"
        ),
    }
    Ok(())
}
