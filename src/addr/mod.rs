//! Addresses: where the database is (`DbUrl`) and where an HTTP endpoint is (`Endpoint`).
//!
//! A leaf: the scenario, the reference kernel's database code and the target all name
//! places with these types, so none of them has to import another to parse an address.
//! Invariant: a value of these types was parsed once, from the user's text, and is
//! well-formed; nothing downstream parses the string again.

mod db_url;
mod endpoint;

use thiserror::Error;

pub use db_url::{DbUrl, Dialect, redact};
pub use endpoint::Endpoint;

/// Why an address could not be used.
#[derive(Debug, Error)]
pub enum AddrError {
    #[error("bad database URL `{url}`: {reason}")]
    BadUrl { url: String, reason: String },
}
