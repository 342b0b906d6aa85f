//! The HTTP body of a purchase, parsed field by field so every refusal names its field.

use serde_json::{Map, Value};

use crate::sut::kernel::PurchaseRequest;

/// A refusal before the kernel is called: status, code, field, message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    pub status: u16,
    pub code: &'static str,
    pub field: Option<&'static str>,
    pub message: String,
}

impl WireError {
    pub fn new(
        status: u16,
        code: &'static str,
        field: Option<&'static str>,
        message: impl Into<String>,
    ) -> Self {
        WireError {
            status,
            code,
            field,
            message: message.into(),
        }
    }

    pub fn body(&self) -> String {
        serde_json::json!({
            "error": { "code": self.code, "field": self.field, "message": self.message }
        })
        .to_string()
    }
}

fn missing(field: &'static str) -> WireError {
    WireError::new(
        400,
        "MISSING_FIELD",
        Some(field),
        format!("`{field}` is required"),
    )
}

fn string(obj: &Map<String, Value>, field: &'static str) -> Result<String, WireError> {
    match obj.get(field) {
        None | Some(Value::Null) => Err(missing(field)),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(WireError::new(
            400,
            "WRONG_TYPE",
            Some(field),
            format!("`{field}` must be a string"),
        )),
    }
}

/// An integer field; a float (even `2500.0`) is refused: money is never a float.
fn integer(obj: &Map<String, Value>, field: &'static str) -> Result<i64, WireError> {
    match obj.get(field) {
        None | Some(Value::Null) => Err(missing(field)),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(v) => Ok(v),
            None if n.is_f64() => Err(WireError::new(
                422,
                "NOT_AN_INTEGER",
                Some(field),
                format!("`{field}` must be an integer (minor units), not {n}"),
            )),
            None => Err(WireError::new(
                422,
                "OUT_OF_RANGE",
                Some(field),
                format!("`{field}` is out of range"),
            )),
        },
        Some(_) => Err(WireError::new(
            400,
            "WRONG_TYPE",
            Some(field),
            format!("`{field}` must be an integer"),
        )),
    }
}

/// Parse a commit body. Returns the request and the body's `idempotencyKey`, if any.
pub fn parse_purchase(body: &[u8]) -> Result<(PurchaseRequest, Option<String>), WireError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        WireError::new(
            400,
            "MALFORMED_JSON",
            None,
            format!("the body is not JSON: {e}"),
        )
    })?;
    let Value::Object(obj) = value else {
        return Err(WireError::new(
            400,
            "MALFORMED_JSON",
            None,
            "the body must be a JSON object",
        ));
    };
    let merchant = string(&obj, "merchantId")?;
    let mandate = string(&obj, "mandateId")?;
    let item = string(&obj, "itemId")?;
    let agent = string(&obj, "agentId")?;
    let quantity = integer(&obj, "quantity")?;
    let amount = integer(&obj, "amountMinor")?;
    let currency = string(&obj, "currency")?;
    let key = match obj.get("idempotencyKey") {
        None | Some(Value::Null) => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => {
            return Err(WireError::new(
                400,
                "WRONG_TYPE",
                Some("idempotencyKey"),
                "`idempotencyKey` must be a string",
            ));
        }
    };
    let req = PurchaseRequest::from_wire(
        &merchant, &mandate, &item, &agent, quantity, amount, &currency,
    )
    .map_err(|e| WireError::new(e.status(), e.code(), e.field(), e.to_string()))?;
    Ok((req, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"merchantId":"00000000-0000-4000-8000-000000000001","mandateId":"00000000-0000-4000-8000-000000000002","itemId":"00000000-0000-4000-8000-000000000003","agentId":"a","quantity":1,"amountMinor":2500,"currency":"USD"}"#;

    #[test]
    fn every_field_is_named_when_wrong() {
        assert!(parse_purchase(GOOD.as_bytes()).is_ok());
        let cases = [
            ("{", 400, "MALFORMED_JSON", None),
            ("[]", 400, "MALFORMED_JSON", None),
            (
                &GOOD.replace(r#""amountMinor":2500"#, r#""amountMinor":2500.0"#),
                422,
                "NOT_AN_INTEGER",
                Some("amountMinor"),
            ),
            (
                &GOOD.replace(r#""quantity":1"#, r#""quantity":"1""#),
                400,
                "WRONG_TYPE",
                Some("quantity"),
            ),
            (
                &GOOD.replace(r#""agentId":"a","#, ""),
                400,
                "MISSING_FIELD",
                Some("agentId"),
            ),
            (
                &GOOD.replace("00000000-0000-4000-8000-000000000003", "nope"),
                400,
                "MALFORMED_FIELD",
                Some("itemId"),
            ),
        ];
        for (body, status, code, field) in cases {
            let e = parse_purchase(body.as_bytes()).unwrap_err();
            assert_eq!((e.status, e.code, e.field), (status, code, field), "{body}");
        }
    }
}
