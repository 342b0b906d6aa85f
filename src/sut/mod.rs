//! The system under test: swarm's reference implementation of the checkout contract.
//!
//! `db` (connections, the portable schema, deterministic seed data), `kernel` (the commit
//! transaction) and `server` (`swarm serve`, the contract over HTTP). Invariant: nothing
//! here imports the tool (scenario, run, target, metrics, history, audit, report, tui,
//! selftest); the tool converts its own settings into the types this wing defines. A
//! user's own service takes this wing's place in a live run.

pub mod db;
pub mod kernel;
pub mod server;
