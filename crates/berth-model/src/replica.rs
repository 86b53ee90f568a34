//! Replicas: one running copy of a service's release, and its health.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Names one replica slot of a service: `web.1`, `web.2`...
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ReplicaKey {
    pub service: String,
    /// 1-based slot number.
    pub index: u32,
}

impl ReplicaKey {
    pub fn new(service: impl Into<String>, index: u32) -> Self {
        Self {
            service: service.into(),
            index,
        }
    }
}

impl fmt::Display for ReplicaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.service, self.index)
    }
}

/// The health of a replica as the supervisor sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Started, not yet passed its health check.
    Starting,
    /// Passing its health check (or running, for a service without one): may take traffic.
    Healthy,
    /// Failing its health check; will be replaced.
    Unhealthy,
    /// Crash-looping: waiting out a back-off before the next start.
    Failed,
    /// Being stopped: takes no new traffic, finishes what it has.
    Draining,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Starting => "starting",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
            Health::Failed => "failed",
            Health::Draining => "draining",
        }
    }

    /// Whether a replica in this state may receive new requests.
    pub fn takes_traffic(self) -> bool {
        self == Health::Healthy
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything `berth ps` shows about one replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    pub service: String,
    /// `web.1`.
    pub replica: String,
    pub index: u32,
    /// The application's pid (the process running the service's `run` command).
    pub pid: Option<u32>,
    pub port: Option<u16>,
    pub health: Health,
    pub release: String,
    /// Unix seconds when the current process started.
    pub started_at: Option<i64>,
    pub restarts: u32,
    /// How the previous process ended, e.g. `exit 1` or `signal 9`.
    pub last_exit: Option<String>,
    /// The last lines the replica logged before its last exit (crash-looping replicas).
    pub last_log: Vec<String>,
    /// Resource limits in force, or why they could not be applied.
    pub limits: Option<String>,
}
