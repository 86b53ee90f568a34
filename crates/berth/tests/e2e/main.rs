//! End-to-end tests of the `berth` binary: real stacks in folders under /tmp, `berth up` in the
//! background, replicas as local processes, HTTP to their ports, PostgreSQL as an accessory.
//!
//! Run with `cargo test -p berth --test e2e`. Every test cleans up after itself (see
//! `harness::Stack`'s Drop), even when it fails.

mod harness;
mod load;

mod alarms;
mod autoscale;
mod backup;
mod cache;
mod cli;
mod compress;
mod containers;
mod dashboard;
mod deploy;
mod lifecycle;
mod maintenance;
mod metrics;
mod operations;
mod postgres;
mod recovery;
mod secrets;
mod supervision;
mod tasks;
mod tls;
