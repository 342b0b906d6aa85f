//! swarm: proves an agent-safe checkout can't be broken.
//!
//! Flow runs one way: `scenario` → `db` (schema, seed) → `kernel` (the commit transaction).
//! See ARCHITECTURE.md for the code map and the invariants each module keeps.

pub mod agent;
pub mod audit;
pub mod db;
pub mod engine;
pub mod exit;
pub mod fault;
pub mod history;
pub mod kernel;
pub mod metrics;
pub mod pool;
pub mod proxy;
pub mod region;
pub mod report;
pub mod scenario;
pub mod selftest;
pub mod server;
pub mod tui;
