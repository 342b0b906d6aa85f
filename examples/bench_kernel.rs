//! Kernel throughput, for `scripts/bench-kernel.sh` and `scripts/bench-million.sh`.
//!
//!   bench_kernel setup  URL  STOCK BUCKETS MANDATES CAP_MINOR
//!   bench_kernel bare   PATH STOCK BUCKETS MANDATES CAP_MINOR PURCHASES
//!   bench_kernel kernel URL  STOCK BUCKETS MANDATES CAP_MINOR PURCHASES CONCURRENCY
//!   bench_kernel pgbench-sql
//!
//! Every verb but the last initialises and seeds the (fresh) database first. `bare` is the
//! single-writer limit: the kernel's statements, one transaction per purchase, in a loop.
//! `kernel` is the kernel as the engine drives it: CONCURRENCY tasks calling
//! `Kernel::commit`; each prints one line: `purchases_per_s=… committed=… declined=…
//! seconds=…`. `pgbench-sql` prints a pgbench script running the PostgreSQL kernel's
//! purchase statement, the very text the kernel prepares, one purchase per transaction:
//! each `$n` becomes an expression of pgbench variables (`:r` a random number naming the
//! purchase, `:m` a mandate's row in `pgb_mandate (n, mandate_id)`, `-D item=… -D mer=…`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use swarm::addr::DbUrl;
use swarm::sut::db::seed::{CatalogSpec, MandateSpec};
use swarm::sut::db::{Database, SeedPlan};
use swarm::sut::kernel::{
    Currency, FailureCode, Kernel, KernelConfig, Outcome, PurchaseRequest, Snapshot, Sql,
};
use uuid::Uuid;

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

/// The first `n` purchases: one unit each, the mandates in turn, fresh keys. Made before
/// the clock starts, so the figures are the kernel's.
fn requests(p: &SeedPlan, n: u64) -> Vec<(PurchaseRequest, String)> {
    let item = &p.items[0];
    let mandates: Vec<_> = p.catalog_mandates().collect();
    (0..n)
        .map(|i| {
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
        })
        .collect()
}

fn report(start: Instant, committed: u64, declined: u64) {
    let secs = start.elapsed().as_secs_f64();
    println!(
        "purchases_per_s={:.0} committed={committed} declined={declined} seconds={secs:.2}",
        (committed + declined) as f64 / secs
    );
}

/// `text` as an SQL literal that pgbench leaves alone: it would read a colon before a
/// letter or digit (JSON's `"attempts":1`) as a variable, so colons are put back by the
/// server.
fn literal(text: &str) -> String {
    assert!(!text.contains(['#', '\'', '\\']), "{text}");
    if text.contains(':') {
        format!("translate('{}', '#', ':')", text.replace(':', "#"))
    } else {
        format!("'{text}'")
    }
}

/// The pgbench script of the kernel's purchase statement (see the head of this file).
fn pgbench_sql() -> String {
    let mandate = "(SELECT mandate_id FROM pgb_mandate WHERE n = :m::BIGINT)";
    let id = |tag: &str| format!("md5(:r::TEXT || '{tag}')::UUID");
    // The snapshots' bytes, with fixed ids: as long as the kernel's, never read back.
    let (intent, ledger) = (Uuid::from_u128(1), Uuid::from_u128(2));
    let (before, after) = Snapshot::committed_around_bucket(intent, ledger, PRICE, "USD", 1);
    let declined = |code| {
        Snapshot::fresh(
            Outcome::Declined,
            intent,
            None,
            None,
            Some(code),
            PRICE,
            "USD",
            1,
        )
        .json
    };
    let args: Vec<String> = vec![
        "('pgb-' || :r::TEXT)".into(),
        ":item::UUID".into(),
        "1::BIGINT".into(),
        mandate.into(),
        format!("{PRICE}::BIGINT"),
        id("i"),
        "md5(:r::TEXT)".into(),
        ":mer::UUID".into(),
        "'pgbench'::TEXT".into(),
        "'USD'::TEXT".into(),
        id("l"),
        "1::BIGINT".into(),
        "0::BIGINT".into(),
        id("d"),
        id("c"),
        format!("('mandate:' || {mandate}::TEXT)"),
        "('merchant:' || :mer::TEXT)".into(),
        literal(&before),
        literal(&after),
        literal(&declined(FailureCode::OutOfStock)),
        literal(&declined(FailureCode::MandateRejected)),
    ];
    let statement = Sql::reference().postgres.purchase;
    let mut out = String::new();
    let mut rest = statement.as_str();
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let digits = rest[at + 1..]
            .bytes()
            .take_while(u8::is_ascii_digit)
            .count();
        let n: usize = rest[at + 1..at + 1 + digits]
            .parse()
            .unwrap_or_else(|_| panic!("a `$` with no number: {statement}"));
        out.push_str(&format!("({})", args[n - 1]));
        rest = &rest[at + 1 + digits..];
    }
    out.push_str(rest);
    format!(
        "-- The kernel's purchase statement, one purchase per transaction; generated by\n\
         -- `bench_kernel pgbench-sql` from `Sql::reference()`.\n\
         \\set r random(1, 1000000000000000)\n\
         \\set m random(0, :mandates - 1)\n\
         {out};\n"
    )
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
        Some("pgbench-sql") => print!("{}", pgbench_sql()),
        Some("setup") => {
            let url: DbUrl = arg(&args, 2, "URL")?;
            setup(&url, &args).await?;
            println!("seeded {url}");
        }
        Some("bare") => {
            let path: String = arg(&args, 2, "PATH")?;
            let p = setup(&DbUrl::sqlite(&path), &args).await?;
            let n: u64 = arg(&args, 7, "PURCHASES")?;
            let reqs = requests(&p, n);
            let start = Instant::now();
            let (c, d) = tokio::task::spawn_blocking(move || {
                swarm::sut::kernel::bench::bare_loop(std::path::Path::new(&path), reqs.into_iter())
            })
            .await??;
            report(start, c, d);
        }
        Some("kernel") => {
            let url: DbUrl = arg(&args, 2, "URL")?;
            let p = setup(&url, &args).await?;
            let n: u64 = arg(&args, 7, "PURCHASES")?;
            let reqs = Arc::new(requests(&p, n));
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
                let (k, reqs, next, c, d) = (
                    kernel.clone(),
                    reqs.clone(),
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
                        let (req, key) = &reqs[i as usize];
                        loop {
                            match k.commit(req, key).await {
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
            // How many of them PostgreSQL's decline-only statement answered.
            println!("declined_by_plan={}", kernel.declined_by_plan());
        }
        _ => bail!(
            "usage: bench_kernel setup|bare|kernel URL STOCK BUCKETS MANDATES CAP [PURCHASES [CONCURRENCY]] | pgbench-sql"
        ),
    }
    Ok(())
}
