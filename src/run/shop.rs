//! Whose catalog the agents buy from: the scenario's own seeded catalog, the ids a live
//! scenario gives, or the sandbox a live endpoint names (`GET /v1/sandbox`).

use std::time::Duration;

use super::RunError;
use crate::gateway::Region;
use crate::scenario::Scenario;
use crate::sut::db::SeedPlan;

/// Whose catalog the agents buy from, at what price, within what declared limits.
pub struct Shop {
    pub merchant_id: uuid::Uuid,
    pub items: Vec<uuid::Uuid>,
    pub mandates: Vec<uuid::Uuid>,
    pub price_minor: i64,
    pub currency: String,
    pub stock_per_item: i64,
    pub cap_per_mandate_minor: i64,
}

/// `GET /v1/sandbox`'s document.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct SandboxDoc {
    pub merchant_id: uuid::Uuid,
    mandate_id: uuid::Uuid,
    item_id: uuid::Uuid,
    unit_price_minor: i64,
    currency: String,
    initial_stock: i64,
    cap_minor: i64,
}

impl Shop {
    /// The shop a run's history names (its header holds the ids as text).
    pub fn of_header(h: &crate::history::Header) -> Result<Shop, super::RunError> {
        let id = |what: &str, s: &str| {
            uuid::Uuid::parse_str(s).map_err(|e| {
                super::RunError::Unsupported(format!("the history's {what} id `{s}`: {e}"))
            })
        };
        let ids = |what: &str, v: &[String]| -> Result<Vec<uuid::Uuid>, super::RunError> {
            v.iter().map(|s| id(what, s)).collect()
        };
        Ok(Shop {
            merchant_id: id("merchant", &h.merchant_id)?,
            items: ids("item", &h.items)?,
            mandates: ids("mandate", &h.mandates)?,
            price_minor: h.price_minor,
            currency: h.currency.clone(),
            stock_per_item: h.stock_per_item,
            cap_per_mandate_minor: h.cap_per_mandate_minor,
        })
    }

    /// The ids a live scenario gives (with their price and declared limits); the sandbox
    /// a live endpoint names; or the scenario's own seeded catalog.
    pub async fn resolve(
        s: &Scenario,
        plan: &SeedPlan,
        regions: &[Region],
    ) -> Result<Shop, RunError> {
        if let Some(live) = &s.live_catalog {
            return Ok(Shop {
                merchant_id: live.merchant,
                items: live.items.clone(),
                mandates: live.mandates.clone(),
                price_minor: live.price_minor,
                currency: live.currency.clone(),
                stock_per_item: live.stock_per_item,
                cap_per_mandate_minor: live.cap_per_mandate_minor,
            });
        }
        if s.target.discover == Some(crate::scenario::Discover::Sandbox) {
            return Shop::discover(regions).await;
        }
        Ok(Shop {
            merchant_id: plan.merchants[0].merchant_id,
            items: plan.catalog_items().map(|i| i.item_id).collect(),
            mandates: plan.catalog_mandates().map(|m| m.mandate_id).collect(),
            price_minor: s.catalog.price_minor,
            currency: s.catalog.currency.clone(),
            stock_per_item: s.catalog.stock,
            cap_per_mandate_minor: s.mandates.cap_minor,
        })
    }

    async fn discover(regions: &[Region]) -> Result<Shop, RunError> {
        let failed = |why: String| {
            RunError::Unsupported(format!(
                "target.discover = \"sandbox\": GET /v1/sandbox: {why}"
            ))
        };
        let gateway = regions
            .first()
            .and_then(|r| r.http())
            .ok_or_else(|| failed("no HTTP endpoint to ask".into()))?;
        let answer =
            match tokio::time::timeout(Duration::from_secs(10), gateway.get("/v1/sandbox")).await {
                Ok(Ok(a)) => a,
                Ok(Err(code)) => return Err(failed(format!("{code:?}"))),
                Err(_) => return Err(failed("no answer within 10 s".into())),
            };
        if answer.status != 200 {
            return Err(failed(format!(
                "HTTP {}: {}",
                answer.status,
                String::from_utf8_lossy(&answer.body)
            )));
        }
        let doc: SandboxDoc = serde_json::from_slice(&answer.body)
            .map_err(|e| failed(format!("unreadable document: {e}")))?;
        Ok(Shop {
            merchant_id: doc.merchant_id,
            items: vec![doc.item_id],
            mandates: vec![doc.mandate_id],
            price_minor: doc.unit_price_minor,
            currency: doc.currency,
            stock_per_item: doc.initial_stock,
            cap_per_mandate_minor: doc.cap_minor,
        })
    }
}
