//! The keys a killed run left open, as the audit finds them for `swarm resolve`: each
//! with what its first request asked, when the history holds one.
//!
//! Invariant: at most `MAX_OPEN_KEYS` are kept, whatever the history's length; the rest
//! are counted (`left_out`), never silently dropped.

use super::facts::KeyId;
use crate::history::Persona;

/// A key a killed run left open: its requests got no definite answer, or it has an intent
/// and no request in the history (in flight at the kill, or answered after the last whole
/// frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenKey {
    pub id: KeyId,
    /// What its first request asked, when the history holds one.
    pub sent: Option<SentPayload>,
}

/// The payload of a key's first request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentPayload {
    pub persona: Persona,
    pub item: u16,
    pub mandate: u32,
    pub quantity: i64,
}

/// Most open keys kept for `swarm resolve` (the rest are counted).
pub const MAX_OPEN_KEYS: usize = 1 << 20;

/// The open keys, when asked for: at most `MAX_OPEN_KEYS`, and how many more.
#[derive(Debug, Default)]
pub struct OpenKeys {
    pub keys: Vec<OpenKey>,
    pub left_out: u64,
}

impl OpenKeys {
    /// Add the open keys of later parts: kept while there is room, the rest counted.
    pub(super) fn append(&mut self, later: OpenKeys) {
        let room = MAX_OPEN_KEYS.saturating_sub(self.keys.len());
        let kept = later.keys.len().min(room);
        self.left_out += later.left_out + (later.keys.len() - kept) as u64;
        self.keys.extend(later.keys.into_iter().take(kept));
    }

    pub(super) fn push(&mut self, k: OpenKey) {
        if self.keys.len() < MAX_OPEN_KEYS {
            self.keys.push(k);
        } else {
            self.left_out += 1;
        }
    }
}
