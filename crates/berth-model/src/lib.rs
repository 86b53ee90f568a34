//! The runtime model shared by Berth's mechanisms.
//!
//! The spec (`berth-spec`) says what a stack should be; this crate says what it *is*: releases,
//! replicas and their health, events, and the small traits through which mechanisms meet (a
//! [`Driver`] runs replicas; the [`ReplicaBoard`] is where the supervisor publishes replica health
//! for the edge and the rollout engine to read). No I/O happens here.

pub mod api;
pub mod board;
pub mod deploy;
pub mod driver;
pub mod event;
pub mod metrics;
pub mod paths;
pub mod release;
pub mod replica;
pub mod restart;
pub mod routing;
pub mod traffic;

pub use board::ReplicaBoard;
pub use deploy::{DeployRecord, DeployState};
pub use driver::{Driver, ExitStatus, LaunchSpec, ProcessRecord};
pub use event::{Event, EventLevel};
pub use paths::StatePaths;
pub use release::{Release, ReleaseId};
pub use replica::{Health, ReplicaKey, ReplicaStatus};
pub use restart::{RestartPolicy, RestartVerdict};
pub use routing::RoutingTable;
pub use traffic::TrafficControl;

/// Seconds since the Unix epoch, the one time format of the model.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
