//! swarm: proves an agent-safe checkout can't be broken.
//!
//! Flow runs one way: `scenario` → `db` (schema, seed) → `kernel` (the commit transaction).
//! See ARCHITECTURE.md for the code map and the invariants each module keeps.

pub mod db;
pub mod exit;
pub mod kernel;
pub mod scenario;
