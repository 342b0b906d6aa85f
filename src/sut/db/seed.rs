//! Deterministic seed data: the same scenario seed gives the same rows, ids included.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use uuid::Uuid;

use serde::Deserialize;

/// The catalog to seed: `items` items of `stock` units each, split over `buckets`.
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

/// Fixed ids of the stocked sandbox, the same in every database so clients can find it.
pub mod sandbox {
    use uuid::Uuid;
    pub const MERCHANT: Uuid = Uuid::from_u128(0x5a4d_0000_0000_4000_8000_0000_0000_0001);
    pub const ITEM: Uuid = Uuid::from_u128(0x5a4d_0000_0000_4000_8000_0000_0000_0002);
    pub const MANDATE: Uuid = Uuid::from_u128(0x5a4d_0000_0000_4000_8000_0000_0000_0003);
    /// Units, split over `BUCKETS`: enough for any demo.
    pub const STOCK: i64 = 1_000_000_000;
    pub const BUCKETS: u32 = 8;
    pub const PRICE_MINOR: i64 = 2500;
    pub const CURRENCY: &str = "USD";
    /// Cap, split over `SHARDS`: far above what the stock can spend.
    pub const CAP_MINOR: i64 = 4_000_000_000_000_000;
    pub const SHARDS: u32 = 8;
    pub const AGENT: &str = "sandbox-agent";
}

#[derive(Debug, Clone)]
pub struct MerchantRow {
    pub merchant_id: Uuid,
    pub name: String,
    pub sandbox: bool,
}

#[derive(Debug, Clone)]
pub struct ItemRow {
    pub item_id: Uuid,
    pub merchant_id: Uuid,
    pub sku: String,
    pub unit_price_minor: i64,
    pub currency: String,
    pub initial_stock: i64,
    pub sandbox: bool,
    /// `(bucket_id, initial_available)`; the sum is `initial_stock`.
    pub buckets: Vec<(Uuid, i64)>,
}

#[derive(Debug, Clone)]
pub struct MandateRow {
    pub mandate_id: Uuid,
    pub merchant_id: Uuid,
    pub currency: String,
    pub cap_minor: i64,
    pub sandbox: bool,
    /// `(shard_id, initial_remaining_minor)`; the sum is `cap_minor`.
    pub shards: Vec<(Uuid, i64)>,
}

/// Every row `db seed` writes.
#[derive(Debug, Clone)]
pub struct SeedPlan {
    pub seed: u64,
    pub merchants: Vec<MerchantRow>,
    pub items: Vec<ItemRow>,
    pub mandates: Vec<MandateRow>,
}

/// A uuid (version 4 shape) drawn from a seeded generator.
pub fn seeded_uuid(rng: &mut ChaCha8Rng) -> Uuid {
    uuid::Builder::from_random_bytes(rng.random()).into_uuid()
}

/// `total` split into `parts` near-equal non-negative pieces that add up to `total`.
pub fn split(total: i64, parts: u32) -> Vec<i64> {
    let parts = i64::from(parts.max(1));
    let base = total / parts;
    let extra = total % parts;
    (0..parts).map(|i| base + i64::from(i < extra)).collect()
}

/// `total` split into `parts` shares that are whole multiples of `granule` (the last
/// share takes any remainder). A purchase debits one shard, so a cap split in whole
/// purchases can be spent to the last purchase it pays for.
pub fn split_whole(total: i64, parts: u32, granule: i64) -> Vec<i64> {
    if granule <= 0 {
        return split(total, parts);
    }
    let mut shares: Vec<i64> = split(total / granule, parts)
        .into_iter()
        .map(|n| n * granule)
        .collect();
    if let Some(last) = shares.last_mut() {
        *last += total % granule;
    }
    shares
}

impl SeedPlan {
    /// The rows for a scenario's catalog and mandates, plus the sandbox.
    pub fn new(seed: u64, catalog: &CatalogSpec, mandates: &MandateSpec) -> SeedPlan {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let merchant_id = seeded_uuid(&mut rng);
        let merchants = vec![
            MerchantRow {
                merchant_id,
                name: format!("merchant-{seed}"),
                sandbox: false,
            },
            MerchantRow {
                merchant_id: sandbox::MERCHANT,
                name: "sandbox".into(),
                sandbox: true,
            },
        ];
        let mut items = Vec::with_capacity(catalog.items as usize + 1);
        for i in 0..catalog.items {
            let item_id = seeded_uuid(&mut rng);
            let buckets = split(catalog.stock, catalog.buckets)
                .into_iter()
                .map(|units| (seeded_uuid(&mut rng), units))
                .collect();
            items.push(ItemRow {
                item_id,
                merchant_id,
                sku: format!("sku-{i}"),
                unit_price_minor: catalog.price_minor,
                currency: catalog.currency.clone(),
                initial_stock: catalog.stock,
                sandbox: false,
                buckets,
            });
        }
        let mut mandate_rows = Vec::with_capacity(mandates.count as usize + 1);
        for _ in 0..mandates.count {
            let mandate_id = seeded_uuid(&mut rng);
            let shards = split_whole(mandates.cap_minor, mandates.shards, catalog.price_minor)
                .into_iter()
                .map(|cap| (seeded_uuid(&mut rng), cap))
                .collect();
            mandate_rows.push(MandateRow {
                mandate_id,
                merchant_id,
                currency: catalog.currency.clone(),
                cap_minor: mandates.cap_minor,
                sandbox: false,
                shards,
            });
        }
        // The sandbox's bucket and shard ids come from their own fixed stream.
        let mut sandbox_rng = ChaCha8Rng::seed_from_u64(0x5a4d_b0c5);
        items.push(ItemRow {
            item_id: sandbox::ITEM,
            merchant_id: sandbox::MERCHANT,
            sku: "sandbox-sku".into(),
            unit_price_minor: sandbox::PRICE_MINOR,
            currency: sandbox::CURRENCY.into(),
            initial_stock: sandbox::STOCK,
            sandbox: true,
            buckets: split(sandbox::STOCK, sandbox::BUCKETS)
                .into_iter()
                .map(|u| (seeded_uuid(&mut sandbox_rng), u))
                .collect(),
        });
        mandate_rows.push(MandateRow {
            mandate_id: sandbox::MANDATE,
            merchant_id: sandbox::MERCHANT,
            currency: sandbox::CURRENCY.into(),
            cap_minor: sandbox::CAP_MINOR,
            sandbox: true,
            shards: split(sandbox::CAP_MINOR, sandbox::SHARDS)
                .into_iter()
                .map(|c| (seeded_uuid(&mut sandbox_rng), c))
                .collect(),
        });
        SeedPlan {
            seed,
            merchants,
            items,
            mandates: mandate_rows,
        }
    }

    /// The scenario's (non-sandbox) items.
    pub fn catalog_items(&self) -> impl Iterator<Item = &ItemRow> {
        self.items.iter().filter(|i| !i.sandbox)
    }

    /// The scenario's (non-sandbox) mandates.
    pub fn catalog_mandates(&self) -> impl Iterator<Item = &MandateRow> {
        self.mandates.iter().filter(|m| !m.sandbox)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_conserves_total() {
        assert_eq!(split(100, 16).iter().sum::<i64>(), 100);
        assert_eq!(split(10, 4), vec![3, 3, 2, 2]);
        assert_eq!(split(0, 3), vec![0, 0, 0]);
        assert_eq!(split_whole(7500, 4, 2500), vec![2500, 2500, 2500, 0]);
        assert_eq!(split_whole(10_100, 4, 2500), vec![2500, 2500, 2500, 2600]);
        assert_eq!(split_whole(10_100, 4, 2500).iter().sum::<i64>(), 10_100);
    }

    #[test]
    fn same_seed_same_rows() {
        let c = CatalogSpec::default();
        let m = MandateSpec::default();
        let a = SeedPlan::new(7, &c, &m);
        let b = SeedPlan::new(7, &c, &m);
        let other = SeedPlan::new(8, &c, &m);
        assert_eq!(a.items[0].item_id, b.items[0].item_id);
        assert_eq!(a.mandates[999].shards[3].0, b.mandates[999].shards[3].0);
        assert_ne!(a.items[0].item_id, other.items[0].item_id);
        // The sandbox is the same whatever the seed.
        assert_eq!(
            a.items.last().map(|i| i.buckets[0].0),
            other.items.last().map(|i| i.buckets[0].0)
        );
    }
}
