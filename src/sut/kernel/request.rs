//! The purchase request, its validation and its payload fingerprint.

use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::KernelError;

/// An ISO-4217-shaped currency code: three upper-case ASCII letters, stored inline.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

impl Currency {
    pub fn parse(s: &str) -> Result<Currency, KernelError> {
        let b = s.as_bytes();
        if b.len() != 3 || !b.iter().all(u8::is_ascii_uppercase) {
            return Err(KernelError::Malformed {
                field: "currency",
                reason: format!("`{s}` is not a 3-letter ISO-4217 code"),
            });
        }
        Ok(Currency([b[0], b[1], b[2]]))
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII upper-case letters are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl std::fmt::Debug for Currency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for Currency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One purchase as an agent asks for it. Ids are typed, so a value of this type is always
/// well-formed; `from_wire` is where strings become ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurchaseRequest {
    pub merchant_id: Uuid,
    pub mandate_id: Uuid,
    pub item_id: Uuid,
    pub agent_id: String,
    pub quantity: i64,
    pub amount_minor: i64,
    pub currency: Currency,
}

/// Longest accepted idempotency key, in bytes (printable ASCII: bytes are characters).
pub const MAX_KEY_BYTES: usize = 255;
/// Longest accepted agent id, in characters, as the OpenAPI document counts them.
pub const MAX_AGENT_CHARS: usize = 128;

fn parse_uuid(field: &'static str, s: &str) -> Result<Uuid, KernelError> {
    Uuid::parse_str(s).map_err(|_| KernelError::Malformed {
        field,
        reason: format!("`{s}` is not a UUID"),
    })
}

impl PurchaseRequest {
    /// One unit of the stocked sandbox item on the sandbox mandate (fixed ids).
    pub fn sandbox() -> PurchaseRequest {
        use crate::sut::db::seed::sandbox;
        PurchaseRequest {
            merchant_id: sandbox::MERCHANT,
            mandate_id: sandbox::MANDATE,
            item_id: sandbox::ITEM,
            agent_id: sandbox::AGENT.into(),
            quantity: 1,
            amount_minor: sandbox::PRICE_MINOR,
            // The constant is a valid code; the fallback is the same three letters.
            currency: Currency::parse(sandbox::CURRENCY).unwrap_or(Currency(*b"USD")),
        }
    }

    /// Build a request from the wire's strings, naming the first malformed field.
    pub fn from_wire(
        merchant_id: &str,
        mandate_id: &str,
        item_id: &str,
        agent_id: &str,
        quantity: i64,
        amount_minor: i64,
        currency: &str,
    ) -> Result<PurchaseRequest, KernelError> {
        Ok(PurchaseRequest {
            merchant_id: parse_uuid("merchantId", merchant_id)?,
            mandate_id: parse_uuid("mandateId", mandate_id)?,
            item_id: parse_uuid("itemId", item_id)?,
            agent_id: agent_id.to_string(),
            quantity,
            amount_minor,
            currency: Currency::parse(currency)?,
        })
    }

    /// Checks that need no database: ranges and shapes.
    pub fn check_shape(&self) -> Result<(), KernelError> {
        if self.quantity < 1 {
            return Err(KernelError::Invalid {
                field: "quantity",
                reason: format!("must be >= 1, got {}", self.quantity),
            });
        }
        if self.amount_minor <= 0 {
            return Err(KernelError::Invalid {
                field: "amountMinor",
                reason: format!("must be > 0 minor units, got {}", self.amount_minor),
            });
        }
        if self.agent_id.is_empty() || self.agent_id.chars().count() > MAX_AGENT_CHARS {
            return Err(KernelError::Malformed {
                field: "agentId",
                reason: format!("must be 1 to {MAX_AGENT_CHARS} characters"),
            });
        }
        Ok(())
    }

    /// The canonical form of the payload, hashed: two requests with the same fingerprint
    /// are the same purchase. Field order and separators are fixed by this function.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"swarm-purchase-v1\n");
        h.update(self.merchant_id.as_bytes());
        h.update(self.mandate_id.as_bytes());
        h.update(self.item_id.as_bytes());
        h.update((self.agent_id.len() as u64).to_be_bytes());
        h.update(self.agent_id.as_bytes());
        h.update(self.quantity.to_be_bytes());
        h.update(self.amount_minor.to_be_bytes());
        h.update(self.currency.0);
        hex::encode(&h.finalize()[..16])
    }
}

/// An idempotency key must be 1..=255 printable ASCII bytes.
pub fn check_key(key: &str) -> Result<(), KernelError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(KernelError::Malformed {
            field: "Idempotency-Key",
            reason: format!("must be 1 to {MAX_KEY_BYTES} printable ASCII characters"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> PurchaseRequest {
        PurchaseRequest {
            merchant_id: Uuid::from_u128(1),
            mandate_id: Uuid::from_u128(2),
            item_id: Uuid::from_u128(3),
            agent_id: "a".into(),
            quantity: 1,
            amount_minor: 2500,
            currency: Currency::parse("USD").expect("usd"),
        }
    }

    #[test]
    fn fingerprint_changes_with_every_field() {
        let base = req().fingerprint();
        assert_eq!(base, req().fingerprint());
        let mut r = req();
        r.amount_minor = 2501;
        assert_ne!(base, r.fingerprint());
        let mut r = req();
        r.agent_id = "b".into();
        assert_ne!(base, r.fingerprint());
        let mut r = req();
        r.quantity = 2;
        assert_ne!(base, r.fingerprint());
        let mut r = req();
        r.currency = Currency::parse("EUR").expect("eur");
        assert_ne!(base, r.fingerprint());
    }

    #[test]
    fn shapes_are_checked() {
        assert!(Currency::parse("usd").is_err());
        assert!(Currency::parse("USDX").is_err());
        assert!(check_key("").is_err());
        assert!(check_key("a b").is_err());
        assert!(check_key(&"k".repeat(256)).is_err());
        assert!(check_key("order-1").is_ok());
        let mut r = req();
        r.quantity = 0;
        assert!(matches!(
            r.check_shape(),
            Err(KernelError::Invalid {
                field: "quantity",
                ..
            })
        ));
        let err = PurchaseRequest::from_wire("x", "", "", "a", 1, 1, "USD").unwrap_err();
        assert!(matches!(
            err,
            KernelError::Malformed {
                field: "merchantId",
                ..
            }
        ));
    }
}
