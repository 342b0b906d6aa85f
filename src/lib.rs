//! swarm: proves an agent-safe checkout can't be broken.
//!
//! Two wings. `sut` is the system under test: swarm's reference implementation of the
//! checkout contract (schema and seed, the commit kernel, `swarm serve`); it knows nothing
//! of the tool. Everything else is the tool that drives and judges a system under test:
//! `scenario` → `run` (agents, faults) → `gateway` (regions, HTTP client) → `sut` or a live
//! endpoint; `run` → `metrics`/`history` → `audit` → `report`; `tui` and `selftest` on top.
//! Flow runs one way; `tests/architecture.rs` fails on an arrow that runs back up.
//! See ARCHITECTURE.md for the code map and the invariants each module keeps.

pub mod addr;
pub mod audit;
pub mod exit;
pub mod gateway;
pub mod history;
pub mod lane;
pub mod metrics;
pub mod observe;
pub mod report;
pub mod run;
pub mod scenario;
pub mod selftest;
pub mod sut;
pub mod tui;
