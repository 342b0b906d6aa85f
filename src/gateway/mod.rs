//! The gateway: how agents reach a system under test, one `Region` per gateway.
//!
//! `contract` (an answer read by the scenario's contract; `value_hash` its semantic and
//! execution-id hashes), `region` (a gateway whose state faults flip, and which counts
//! its own requests in flight with `in_flight`), `http` (the
//! contract's requests over `pool`: keep-alive HTTP/1.1 on swarm's own `h1` connection
//! loop, HTTP/2 on the `h2` crate), `proxy` (a TCP fault proxy in front of an in-process region
//! server), `preflight` (a harmless request to every HTTP region before any agent starts)
//! and `open` (builds the regions of a scenario: in-process kernels, in-process servers
//! behind proxies, or live endpoints).
//! Invariant: a region changes what the client learns, never what the database decides.

pub mod contract;
pub mod h1;
pub mod http;
pub mod in_flight;
pub mod open;
pub mod pool;
pub mod preflight;
pub mod proxy;
pub mod region;
pub mod tls;
pub mod value_hash;

pub use contract::Reply;
pub use http::HttpGateway;
pub use region::{Gateway, Region};
