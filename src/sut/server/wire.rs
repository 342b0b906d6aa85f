//! The HTTP body of a purchase, parsed field by field so every refusal names its field.

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
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

/// The fields a purchase body may name (the others are tolerated and ignored).
const FIELDS: [&str; 8] = [
    "merchantId",
    "mandateId",
    "itemId",
    "agentId",
    "quantity",
    "amountMinor",
    "currency",
    "idempotencyKey",
];

/// A JSON object read with its duplicate keys noticed: serde_json keeps the last of two
/// equal keys, and a proxy that reads the first would see another purchase than the one
/// charged.
struct Object {
    map: Map<String, Value>,
    duplicate: Option<String>,
}

impl<'de> Deserialize<'de> for Object {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Object, D::Error> {
        struct Fields;
        impl<'de> Visitor<'de> for Fields {
            type Value = Object;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut fields: A) -> Result<Object, A::Error> {
                let mut out = Object {
                    map: Map::new(),
                    duplicate: None,
                };
                while let Some(key) = fields.next_key::<String>()? {
                    let value: Value = fields.next_value()?;
                    if out.map.contains_key(&key) && out.duplicate.is_none() {
                        out.duplicate = Some(key.clone());
                    }
                    out.map.insert(key, value);
                }
                Ok(out)
            }
        }
        d.deserialize_map(Fields)
    }
}

/// Parse a commit body. Returns the request and the body's `idempotencyKey`, if any.
pub fn parse_purchase(body: &[u8]) -> Result<(PurchaseRequest, Option<String>), WireError> {
    let Object {
        map: obj,
        duplicate,
    } = serde_json::from_slice(body).map_err(|e| {
        WireError::new(
            400,
            "MALFORMED_JSON",
            None,
            format!("the body must be a JSON object: {e}"),
        )
    })?;
    if let Some(name) = duplicate {
        let field = FIELDS.iter().find(|f| **f == name).copied();
        let shown: String = name.chars().take(64).collect();
        return Err(WireError::new(
            400,
            "DUPLICATE_FIELD",
            field,
            format!("`{shown}` appears more than once; send each field once"),
        ));
    }
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
        let twice = GOOD.replace(r#""quantity":1"#, r#""quantity":2,"quantity":1"#);
        let e = parse_purchase(twice.as_bytes()).unwrap_err();
        assert_eq!(
            (e.status, e.code, e.field),
            (400, "DUPLICATE_FIELD", Some("quantity"))
        );
        let extra_twice = GOOD.replace(r#""currency":"USD""#, r#""currency":"USD","x":1,"x":2"#);
        let e = parse_purchase(extra_twice.as_bytes()).unwrap_err();
        assert_eq!((e.code, e.field), ("DUPLICATE_FIELD", None));
        assert!(e.message.contains("`x`"), "{}", e.message);
        for (body, status, code, field) in cases {
            let e = parse_purchase(body.as_bytes()).unwrap_err();
            assert_eq!((e.status, e.code, e.field), (status, code, field), "{body}");
        }
    }
}
