//! The kernel's errors; each maps to exactly one wire status.

use thiserror::Error;

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum KernelError {
    /// A field is missing or not in the shape the contract says (400).
    #[error("malformed {field}: {reason}")]
    Malformed { field: &'static str, reason: String },
    /// A field is well-formed but not acceptable (422).
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// A referenced id does not exist (404).
    #[error("unknown {field}: {id}")]
    NotFound { field: &'static str, id: String },
    /// Same key, different payload (409); nothing changed.
    #[error("idempotency key `{key}` was used for a different payload")]
    KeyReused { key: String },
    /// Serialization conflicts past the bound (503); nothing committed.
    #[error("gave up after {attempts} attempts on serialization conflicts")]
    RetryExhausted { attempts: u32 },
    /// The kernel cannot take work now (503): shut down, pool exhausted, writer gone.
    #[error("kernel unavailable: {0}")]
    Unavailable(String),
    /// The database failed in a way the contract does not cover (500).
    #[error("database error: {0}")]
    Database(String),
}

impl KernelError {
    /// The HTTP status this error is on the wire.
    pub fn status(&self) -> u16 {
        match self {
            KernelError::Malformed { .. } => 400,
            KernelError::NotFound { .. } => 404,
            KernelError::KeyReused { .. } => 409,
            KernelError::Invalid { .. } => 422,
            KernelError::RetryExhausted { .. } | KernelError::Unavailable(_) => 503,
            KernelError::Database(_) => 500,
        }
    }

    /// The error code in the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            KernelError::Malformed { .. } => "MALFORMED_FIELD",
            KernelError::Invalid { .. } => "INVALID_FIELD",
            KernelError::NotFound { .. } => "NOT_FOUND",
            KernelError::KeyReused { .. } => "KEY_REUSED",
            KernelError::RetryExhausted { .. } => "RETRY_EXHAUSTED",
            KernelError::Unavailable(_) => "UNAVAILABLE",
            KernelError::Database(_) => "INTERNAL",
        }
    }

    /// The field the error names, if any.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            KernelError::Malformed { field, .. }
            | KernelError::Invalid { field, .. }
            | KernelError::NotFound { field, .. } => Some(field),
            _ => None,
        }
    }

    /// True when retrying the same key may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            KernelError::RetryExhausted { .. } | KernelError::Unavailable(_)
        )
    }
}
