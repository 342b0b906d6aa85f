//! What validation needs to know about items, mandates and merchants, read once.
//!
//! Prices, currencies and ownership never change after seeding, so the kernel keeps an
//! immutable copy and answers validation without a round trip. A miss (an id seeded after
//! the kernel opened) is looked up in the database by the backend.

use std::collections::{HashMap, HashSet};

use uuid::Uuid;

use super::request::Currency;
use super::{KernelError, PurchaseRequest};

#[derive(Debug, Clone, Copy)]
pub struct ItemInfo {
    pub merchant_id: Uuid,
    pub unit_price_minor: i64,
    pub currency: Currency,
}

#[derive(Debug, Clone, Copy)]
pub struct MandateInfo {
    pub merchant_id: Uuid,
    pub currency: Currency,
}

#[derive(Debug, Default)]
pub struct Catalog {
    pub merchants: HashSet<Uuid>,
    pub items: HashMap<Uuid, ItemInfo>,
    pub mandates: HashMap<Uuid, MandateInfo>,
}

/// Checks a request against what the catalog says, naming the offending field.
pub fn check(
    req: &PurchaseRequest,
    merchant_known: bool,
    item: Option<ItemInfo>,
    mandate: Option<MandateInfo>,
) -> Result<(), KernelError> {
    if !merchant_known {
        return Err(KernelError::NotFound {
            field: "merchantId",
            id: req.merchant_id.to_string(),
        });
    }
    let Some(item) = item else {
        return Err(KernelError::NotFound {
            field: "itemId",
            id: req.item_id.to_string(),
        });
    };
    let Some(mandate) = mandate else {
        return Err(KernelError::NotFound {
            field: "mandateId",
            id: req.mandate_id.to_string(),
        });
    };
    if item.merchant_id != req.merchant_id {
        return Err(KernelError::Invalid {
            field: "itemId",
            reason: "the item belongs to another merchant".into(),
        });
    }
    if mandate.merchant_id != req.merchant_id {
        return Err(KernelError::Invalid {
            field: "mandateId",
            reason: "the mandate belongs to another merchant".into(),
        });
    }
    if req.currency != mandate.currency {
        return Err(KernelError::Invalid {
            field: "currency",
            reason: format!(
                "the mandate is in {}, not {}",
                mandate.currency, req.currency
            ),
        });
    }
    if item.currency != mandate.currency {
        return Err(KernelError::Invalid {
            field: "itemId",
            reason: format!(
                "the item is priced in {}, the mandate in {}",
                item.currency, mandate.currency
            ),
        });
    }
    let expected = item.unit_price_minor.checked_mul(req.quantity);
    if expected != Some(req.amount_minor) {
        return Err(KernelError::Invalid {
            field: "amountMinor",
            reason: match expected {
                Some(e) => format!(
                    "must equal quantity x unit price = {} x {} = {e}, got {}",
                    req.quantity, item.unit_price_minor, req.amount_minor
                ),
                None => "quantity x unit price overflows".into(),
            },
        });
    }
    Ok(())
}
