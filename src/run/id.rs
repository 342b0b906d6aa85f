//! The run id: part of every idempotency key, so two runs against one live service never
//! share a key (the second would only replay the first), while the same seed still gives
//! the same agents, payloads, personas and fault times.

use std::fmt;
use std::str::FromStr;

use rand::Rng;

/// A run's id: 1 to 32 characters of `[A-Za-z0-9_]`, safe in a header and a file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunId(String);

/// Longest run id.
pub const MAX_RUN_ID: usize = 32;

impl RunId {
    /// A fresh id: 12 hex digits (48 random bits).
    pub fn random() -> RunId {
        RunId(format!("{:012x}", rand::rng().random::<u64>() >> 16))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for RunId {
    type Err = String;

    fn from_str(s: &str) -> Result<RunId, String> {
        if s.is_empty() || s.len() > MAX_RUN_ID {
            return Err(format!("a run id has 1 to {MAX_RUN_ID} characters"));
        }
        if !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err("a run id is letters, digits and `_` only".into());
        }
        Ok(RunId(s.to_string()))
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_fresh_and_checked() {
        let (a, b) = (RunId::random(), RunId::random());
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 12);
        assert!(a.as_str().parse::<RunId>().is_ok());
        assert!("nightly_42".parse::<RunId>().is_ok());
        assert!("".parse::<RunId>().is_err());
        assert!("a-b".parse::<RunId>().is_err());
        assert!("x".repeat(33).parse::<RunId>().is_err());
    }
}
