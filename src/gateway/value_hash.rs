//! An answer hashed by its values, not its bytes: `semantic_hash`, its JSON values in one
//! canonical form (so a layout-only difference is told apart from a different answer), and
//! `id_hash`, the execution id it names (the same id twice is one execution). The hash of
//! its bytes, the replay marker masked, is `history::answer_hash`.
//!
//! Invariants: no layout survives `semantic_hash` (spacing, field order, escapes a string
//! does not need), and the body's replay marker is left out of it, so a replay and its
//! original hash alike exactly when their values are; neither hash is ever 0.

use std::collections::BTreeMap;

use serde_json::Value;
use serde_json::value::RawValue;

use crate::history::StreamHash;

/// The hash of an execution id's text (never 0).
pub fn id_hash(id: &str) -> u64 {
    let mut h = StreamHash::default();
    h.write(id.as_bytes());
    h.finish()
}

/// A hash of the answer's values: fields in name order (the map keeps them sorted), each
/// value in one canonical form (scalars as the server wrote them unless a string needs
/// unescaping; objects and arrays re-written with sorted keys), the body's replay marker
/// left out. No layout survives, so two answers hash alike exactly when their values are.
pub(super) fn semantic_hash(fields: &BTreeMap<&str, &RawValue>, marker: Option<&str>) -> u64 {
    let mut h = StreamHash::default();
    for (name, raw) in fields.iter().filter(|(name, _)| Some(**name) != marker) {
        h.write(name.as_bytes());
        h.write(b"\0");
        let t = raw.get();
        match t.as_bytes().first() {
            Some(b'{' | b'[') => match serde_json::from_str::<Value>(t) {
                Ok(v) => {
                    let mut out = String::new();
                    write_canonical(&v, &mut out);
                    h.write(out.as_bytes());
                }
                Err(_) => h.write(t.as_bytes()),
            },
            Some(b'"') if t.contains('\\') => match serde_json::from_str::<String>(t) {
                Ok(s) => h.write(Value::String(s).to_string().as_bytes()),
                Err(_) => h.write(t.as_bytes()),
            },
            _ => h.write(t.as_bytes()),
        }
        h.write(b"\0");
    }
    h.finish()
}

/// `value` as compact JSON with object keys in sorted order (whatever order the map keeps).
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}
