//! `swarm db init|seed|stats|reset|sandbox`: the reference kernel's database by hand.

use anyhow::Context;

use super::{DbVerb, Exit, internal, parse_url, usage};
use swarm::exit;
use swarm::scenario::Scenario;
use swarm::sut::db::{Database, SeedPlan};
use swarm::sut::kernel::{Kernel, KernelConfig, PurchaseRequest};

pub async fn db(verb: DbVerb) -> Result<i32, Exit> {
    match verb {
        DbVerb::Init(args) => {
            let url = parse_url(&args.db)?;
            let db = Database::connect(&url).map_err(usage)?;
            db.init()
                .await
                .with_context(|| format!("initialising {url}"))
                .map_err(internal)?;
            println!("schema ready in {url}");
        }
        DbVerb::Seed { db, scenario, seed } => {
            let url = parse_url(&db.db)?;
            let scenario = Scenario::load(&scenario).map_err(usage)?;
            let database = Database::connect(&url).map_err(usage)?;
            database.init().await.map_err(internal)?;
            let seed = seed.unwrap_or(scenario.seed);
            let plan = SeedPlan::new(seed, &scenario.catalog, &scenario.mandates);
            database
                .seed(&plan)
                .await
                .with_context(|| format!("seeding {url}"))
                .map_err(internal)?;
            println!(
                "seeded {url} (seed {seed}): {} item(s) x {} units in {} buckets, {} mandate(s) x {} minor in {} shards, plus the sandbox",
                scenario.catalog.items,
                scenario.catalog.stock,
                scenario.catalog.buckets,
                scenario.mandates.count,
                scenario.mandates.cap_minor,
                scenario.mandates.shards
            );
        }
        DbVerb::Stats { db, json } => {
            let url = parse_url(&db.db)?;
            let database = Database::connect(&url).map_err(usage)?;
            let stats = database
                .stats()
                .await
                .with_context(|| format!("reading {url}"))
                .map_err(internal)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&stats).map_err(internal)?
                );
            } else {
                println!("{stats}");
            }
        }
        DbVerb::Reset { db, keep_catalog } => {
            let url = parse_url(&db.db)?;
            if keep_catalog {
                swarm::run::leftover::clear(&url)
                    .await
                    .with_context(|| format!("resetting {url}"))
                    .map_err(internal)?;
                println!("{url}: every purchase forgotten; stock and caps at their seeded figures");
            } else {
                Database::connect(&url)
                    .map_err(usage)?
                    .drop_tables()
                    .await
                    .with_context(|| format!("dropping swarm's tables in {url}"))
                    .map_err(internal)?;
                println!("{url}: swarm's tables dropped (swarm db init starts afresh)");
            }
        }
        DbVerb::Sandbox { db, key } => {
            let url = parse_url(&db.db)?;
            let kernel = Kernel::open(&url, KernelConfig::default())
                .await
                .with_context(|| format!("opening the kernel on {url}"))
                .map_err(internal)?;
            let key = key.unwrap_or_else(|| format!("sandbox-{}", uuid::Uuid::new_v4()));
            let req = PurchaseRequest::sandbox();
            for _ in 0..2 {
                let s = kernel.commit(&req, &key).await.map_err(internal)?;
                println!("{} {}", s.status(), s.json);
            }
        }
    }
    Ok(exit::VALID)
}
