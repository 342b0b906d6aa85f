//! Values written as strings in a scenario file, parsed once while it is read.
//!
//! Each helper is a serde `deserialize_with` function, so a bad value is reported by the
//! TOML reader at the value's own line and column, with the field named. Nothing
//! downstream sees the string again.

use std::fmt::Display;
use std::str::FromStr;
use std::time::Duration;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

/// `"250ms"`, `"20s"`, `"2m"` → a duration.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000.0)
    } else {
        return Err(format!("`{s}` is not a duration like \"20s\" or \"500ms\""));
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like \"20s\" or \"500ms\""))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("`{s}` must be a non-negative duration"));
    }
    let ms = v * mult;
    if ms > MAX_DURATION_MS {
        return Err(format!("`{s}` is longer than a week"));
    }
    Ok(Duration::from_millis(ms.round() as u64))
}

/// The longest duration a scenario may name (a week).
const MAX_DURATION_MS: f64 = 7.0 * 24.0 * 3600.0 * 1000.0;

/// A duration written as `"20s"`.
pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    parse_duration(&text).map_err(D::Error::custom)
}

/// An optional duration written as `"20s"`.
pub fn optional_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(d)?;
    parse_duration(&text).map(Some).map_err(D::Error::custom)
}

/// Longest address (database URL, endpoint) a scenario may give.
pub const MAX_ADDRESS_BYTES: usize = 2048;

/// An optional value of a type with `FromStr` (a database URL, an endpoint).
pub fn optional<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: Display,
{
    let text = String::deserialize(d)?;
    if text.len() > MAX_ADDRESS_BYTES {
        return Err(D::Error::custom(format!(
            "{} bytes: an address is at most {MAX_ADDRESS_BYTES}",
            text.len()
        )));
    }
    text.parse().map(Some).map_err(D::Error::custom)
}

/// A list of endpoints (`["http://10.0.0.1:8008", …]`), each read as `optional` reads one.
pub fn endpoints<'de, D>(d: D) -> Result<Vec<crate::addr::Endpoint>, D::Error>
where
    D: Deserializer<'de>,
{
    let texts = Vec::<String>::deserialize(d)?;
    texts
        .iter()
        .map(|text| {
            if text.len() > MAX_ADDRESS_BYTES {
                return Err(D::Error::custom(format!(
                    "{} bytes: an address is at most {MAX_ADDRESS_BYTES}",
                    text.len()
                )));
            }
            text.parse().map_err(D::Error::custom)
        })
        .collect()
}

/// Writes a duration the way a scenario does: `"20s"` when whole seconds, else `"250ms"`.
pub fn show_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_show() {
        assert_eq!(parse_duration("150ms"), Ok(Duration::from_millis(150)));
        assert_eq!(parse_duration("20s"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("NaNs").is_err());
        assert!(parse_duration("1e30s").is_err());
        assert_eq!(show_duration(Duration::from_secs(20)), "20s");
        assert_eq!(show_duration(Duration::from_millis(1500)), "1500ms");
    }
}
