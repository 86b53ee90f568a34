//! The edge's response cache (the references' CloudFront cache behaviours): `policy` decides,
//! as pure functions of headers, times and the `[cache]` rules, what may be stored, for how
//! long, under which key, and when a client's conditional request is answered `304`
//! (RFC 9111 for a shared cache); `store` keeps the answers in memory under a byte cap, with
//! their `Vary` variants, request coalescing, purges and a budget for answers being read into
//! it. The edge's request path turns these decisions into requests to the replicas; this crate
//! opens no socket and knows nothing of the edge, the daemon or the routing table.

pub mod policy;
pub mod store;

pub use policy::{Freshness, Rule, Rules, Skip, State};
pub use store::{follow, FillPermit, Flight, FlightGuard, Object, Stats, Store};
