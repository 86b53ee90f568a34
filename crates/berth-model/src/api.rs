//! The shapes the daemon's API answers with and accepts (serialised as JSON by the API and CLI).

use serde::{Deserialize, Serialize};

use crate::{Event, ReplicaStatus};

/// `GET /v1/status`: the whole stack.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StackStatus {
    pub stack: String,
    pub environment: String,
    pub daemon_pid: u32,
    pub started_at: i64,
    pub services: Vec<ServiceStatus>,
    pub accessories: Vec<AccessoryStatus>,
    pub replicas: Vec<ReplicaStatus>,
    pub edge: Option<EdgeStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EdgeStatus {
    pub pid: u32,
    pub listen: Vec<std::net::SocketAddr>,
    pub admin: Option<std::net::SocketAddr>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub name: String,
    /// Replicas wanted now (the spec's count, or what `berth scale` set).
    pub desired: u32,
    pub release: Option<String>,
    pub healthy: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessoryStatus {
    pub name: String,
    pub engine: String,
    pub pid: Option<u32>,
    pub port: Option<u16>,
    /// `running`, `stopped` or `failed: reason`.
    pub state: String,
}

/// `POST /v1/services/{name}/scale`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScaleRequest {
    pub replicas: u32,
}

/// Any 4xx/5xx answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
}

/// `GET /v1/events`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventList {
    pub events: Vec<Event>,
}

/// `GET /v1/releases`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReleaseList {
    pub releases: Vec<crate::Release>,
}
