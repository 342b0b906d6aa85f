//! An answer hashed by its values, not its bytes: `semantic_hash`, its JSON values in one
//! canonical form (so a layout-only difference is told apart from a different answer), and
//! `id_hash`, the execution id it names (the same id twice is one execution). The hash of
//! its bytes, the replay marker masked, is `history::answer_hash`.
//!
//! Invariants: no layout survives `semantic_hash` (spacing, field order, escapes a string
//! does not need, the way a number is written: `1000`, `1e3`, `1000.0` and `1.0E+3` are
//! one number, as a store such as PostgreSQL's `jsonb` may rewrite it; a UUID's case and
//! form: `3F2504E0-…` and `3f2504e0-…` are one id, as a `uuid` column may rewrite it), and the body's
//! replay marker, the contract's volatile fields and `null` fields (read as absent) are
//! left out of it, so a replay and its
//! original hash alike exactly when their values are; neither hash is ever 0.

use std::collections::BTreeMap;

use serde_json::Value;
use serde_json::value::RawValue;

use crate::history::StreamHash;

/// The hash of an execution id's text (never 0). A UUID is one value however it is
/// written (RFC 9562 reads its hex digits in either case, with or without hyphens or
/// braces): a server that answers `3F2504E0-…` fresh and `3f2504e0-…` on a replay (one
/// from memory, one from a `uuid` column) names one execution.
pub fn id_hash(id: &str) -> u64 {
    let mut h = StreamHash::default();
    match uuid_text(id) {
        Some(canonical) => h.write(canonical.as_bytes()),
        None => h.write(id.as_bytes()),
    }
    h.finish()
}

/// `text` in the UUID's one canonical form (lower-case, hyphenated), when it is a UUID
/// written otherwise (`None` too when it is already canonical: nothing to rewrite).
fn uuid_text(text: &str) -> Option<String> {
    // Every form `Uuid::try_parse` takes is 32 to 45 bytes long: most text is not. The
    // canonical form itself (what most servers write) is 36 bytes without a capital.
    if !(32..=45).contains(&text.len())
        || (text.len() == 36 && !text.bytes().any(|b| b.is_ascii_uppercase()))
    {
        return None;
    }
    let id = uuid::Uuid::try_parse(text).ok()?;
    Some(id.hyphenated().to_string())
}

/// A hash of the answer's values: fields in name order (the map keeps them sorted), each
/// value in one canonical form (strings unescaped; numbers by their decimal value, exactly
/// at the top level and as f64 inside objects and arrays; other scalars as written;
/// objects and arrays re-written with sorted keys), the body's replay marker and the
/// contract's `volatile` fields left out, and a field whose value is `null` read as absent
/// (a serializer may leave such fields out). No layout survives, so two answers hash alike
/// exactly when their values are.
pub(super) fn semantic_hash(
    fields: &BTreeMap<&str, &RawValue>,
    marker: Option<&str>,
    volatile: &[String],
) -> u64 {
    let mut h = StreamHash::default();
    let compared = fields.iter().filter(|(name, raw)| {
        Some(**name) != marker && raw.get() != "null" && !volatile.iter().any(|v| v == *name)
    });
    for (name, raw) in compared {
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
                Ok(s) => h.write(string_value(s).as_bytes()),
                Err(_) => h.write(t.as_bytes()),
            },
            Some(b'"') => match t
                .strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                .and_then(uuid_text)
            {
                Some(id) => h.write(Value::String(id).to_string().as_bytes()),
                None => h.write(t.as_bytes()),
            },
            Some(b'-' | b'0'..=b'9') => match Number::parse(t) {
                Some(n) => n.write(|b| h.write(b)),
                None => h.write(t.as_bytes()),
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
            let mut keys: Vec<&String> = map
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, _)| k)
                .collect();
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
        // Inside an object or array a number has been read as an integer or an f64 (no
        // arbitrary precision): equal to 17 significant digits, as a store keeps it.
        Value::Number(n) => {
            let text = n.to_string();
            out.push_str(canonical_number(&text).as_deref().unwrap_or(&text));
        }
        Value::String(text) => out.push_str(&string_value(text.clone())),
        other => out.push_str(&other.to_string()),
    }
}

/// A string value as JSON, a UUID in its canonical form (see `id_hash`).
fn string_value(text: String) -> String {
    Value::String(uuid_text(&text).unwrap_or(text)).to_string()
}

/// A JSON number by its exact decimal value, in one form: `0`, or a sign, the significant
/// digits (no leading or trailing zeros) and a power of ten (`1000`, `1e3`, `1000.0` and
/// `1.0E+3` are all `1.e3`; `0.10` and `1e-1` are `1.e-1`). `None` when `text` is not a
/// JSON number or its exponent does not fit (then the text stands for itself). Read in
/// place: writing it (`write`) allocates nothing, as every answer's numbers are hashed.
struct Number<'a> {
    negative: bool,
    /// The significant digits, in at most two pieces of the text (before and after its
    /// point); both empty for zero.
    digits: [&'a str; 2],
    /// The power of ten of the first significant digit.
    power: i64,
}

impl<'a> Number<'a> {
    fn parse(text: &'a str) -> Option<Number<'a>> {
        let (negative, rest) = match text.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, text),
        };
        let (mantissa, exponent) = match rest.find(['e', 'E']) {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        let (int, frac) = match mantissa.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (mantissa, None),
        };
        let is_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !is_digits(int)
            || (int.len() > 1 && int.starts_with('0'))
            || frac.is_some_and(|f| !is_digits(f))
        {
            return None;
        }
        let exponent: i64 = match exponent {
            None => 0,
            Some(e) => {
                let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
                // Leading zeros are allowed in a JSON exponent and say nothing.
                let significant = digits.trim_start_matches('0');
                if !is_digits(digits) || significant.len() > 15 {
                    return None;
                }
                let n: i64 = significant.parse().unwrap_or(0);
                if e.starts_with('-') { -n } else { n }
            }
        };
        let frac = frac.unwrap_or("");
        // The digits are `int` then `frac`. JSON gives `int` no leading zero unless it is
        // "0": the first significant digit is its first, or the first non-zero of `frac`.
        let (digits, power) = if int != "0" {
            let digits = match frac.trim_end_matches('0') {
                "" => [int.trim_end_matches('0'), ""],
                frac => [int, frac],
            };
            (digits, exponent + int.len() as i64 - 1)
        } else {
            match frac.find(|c| c != '0') {
                None => (["", ""], 0),
                Some(k) => (
                    ["", frac[k..].trim_end_matches('0')],
                    exponent - k as i64 - 1,
                ),
            }
        };
        Some(Number {
            negative: negative && digits != ["", ""],
            digits,
            power,
        })
    }

    /// The canonical form, piece by piece.
    fn write(&self, mut out: impl FnMut(&[u8])) {
        let [int, frac] = self.digits;
        if int.is_empty() && frac.is_empty() {
            out(b"0");
            return;
        }
        if self.negative {
            out(b"-");
        }
        let (first, rest) = match int.is_empty() {
            true => (&frac[..1], ["", &frac[1..]]),
            false => (&int[..1], [&int[1..], frac]),
        };
        out(first.as_bytes());
        out(b".");
        out(rest[0].as_bytes());
        out(rest[1].as_bytes());
        out(b"e");
        out(itoa::Buffer::new().format(self.power).as_bytes());
    }
}

/// `Number`'s canonical form as a string (nested values, already re-written).
fn canonical_number(text: &str) -> Option<String> {
    let n = Number::parse(text)?;
    let mut out = Vec::new();
    n.write(|b| out.extend_from_slice(b));
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uuid_is_one_id_in_any_case_or_form_and_other_ids_keep_their_case() {
        let lower = id_hash("3f2504e0-4f89-11d3-9a0c-0305e82c3301");
        for form in [
            "3F2504E0-4F89-11D3-9A0C-0305E82C3301",
            "3f2504e0-4F89-11d3-9A0C-0305e82c3301",
            "{3f2504e0-4f89-11d3-9a0c-0305e82c3301}",
            "3f2504e04f8911d39a0c0305e82c3301",
        ] {
            assert_eq!(id_hash(form), lower, "{form}");
        }
        assert_ne!(id_hash("3f2504e0-4f89-11d3-9a0c-0305e82c3302"), lower);
        assert_ne!(
            id_hash("pi_3AbC"),
            id_hash("pi_3abc"),
            "not a UUID: its case is its own"
        );
        assert_ne!(id_hash("17"), id_hash("018"));
    }

    #[test]
    fn a_uuid_value_in_another_case_is_the_same_value() {
        let hash = |body: &str| {
            let fields: BTreeMap<&str, &RawValue> = serde_json::from_str(body).expect(body);
            semantic_hash(&fields, None, &[])
        };
        let lower = hash(
            r#"{"intentId":"3f2504e0-4f89-11d3-9a0c-0305e82c3301","n":{"id":"3f2504e0-4f89-11d3-9a0c-0305e82c3301"}}"#,
        );
        assert_eq!(
            hash(
                r#"{"intentId":"3F2504E0-4F89-11D3-9A0C-0305E82C3301","n":{"id":"3F2504E0-4F89-11D3-9A0C-0305E82C3301"}}"#
            ),
            lower
        );
        assert_eq!(
            hash(
                r#"{"intentId":"\u0033F2504E0-4F89-11D3-9A0C-0305E82C3301","n":{"id":"3f2504e0-4f89-11d3-9a0c-0305e82c3301"}}"#
            ),
            lower,
            "escaped"
        );
        assert_ne!(
            hash(
                r#"{"intentId":"3f2504e0-4f89-11d3-9a0c-0305e82c3302","n":{"id":"3f2504e0-4f89-11d3-9a0c-0305e82c3301"}}"#
            ),
            lower,
            "another id"
        );
        assert_ne!(
            hash(r#"{"code":"ABC"}"#),
            hash(r#"{"code":"abc"}"#),
            "other text keeps its case"
        );
    }

    #[test]
    fn a_number_is_its_value_however_it_is_written() {
        for (a, b) in [
            ("1000", "1e3"),
            ("1000", "1000.0"),
            ("1000", "1.0E+3"),
            ("1000", "10000e-1"),
            ("0.1", "0.10"),
            ("0.1", "1e-1"),
            ("0", "-0"),
            ("0", "0.000e5"),
            ("-25", "-2.5e1"),
            ("10", "1e0000000000000001"),
            ("1", "1E-0000"),
            (
                "123456789012345678901234567890",
                "1.2345678901234567890123456789e29",
            ),
        ] {
            assert_eq!(canonical_number(a), canonical_number(b), "{a} {b}");
            assert!(canonical_number(a).is_some(), "{a}");
        }
        for (a, b) in [
            ("1000", "1001"),
            ("0.1", "0.01"),
            ("25", "-25"),
            ("1e3", "1e4"),
        ] {
            assert_ne!(canonical_number(a), canonical_number(b), "{a} {b}");
        }
        for not in [
            "",
            "-",
            "01",
            "1.",
            ".5",
            "1e",
            "1e+",
            "0x10",
            "1e9999999999999999",
            "1 ",
        ] {
            assert_eq!(canonical_number(not), None, "{not:?}");
        }
    }
}
