//! The typed, effective spec of a stack: what the rest of Berth consumes after `berth.toml` has
//! been parsed, validated and had its `[environment.NAME]` overrides applied.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The effective spec of one environment of a stack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    /// The `berth.toml` this came from (absolute).
    pub path: PathBuf,
    /// The environment the overrides were taken from (`"default"` when none was asked for).
    pub environment: String,
    pub stack: StackSpec,
    pub edge: EdgeSpec,
    /// `[env]` merged with `[environment.NAME].env`.
    pub env: BTreeMap<String, String>,
    pub services: BTreeMap<String, ServiceSpec>,
    pub accessories: BTreeMap<String, AccessorySpec>,
    pub volumes: BTreeMap<String, VolumeSpec>,
    pub routes: Vec<RouteSpec>,
    /// Names of all environments declared in the file.
    pub environments: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StackSpec {
    pub name: String,
    pub keep_releases: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EdgeSpec {
    pub listen: Vec<SocketAddr>,
    pub admin: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceSpec {
    pub name: String,
    pub run: String,
    pub build: Option<String>,
    /// Absolute path of the source folder snapshotted into a release.
    pub source: PathBuf,
    pub port: PortSpec,
    pub replicas: ReplicaCount,
    pub stop_timeout: Duration,
    /// The service's own env merged over the stack's `[env]` and the environment's overrides
    /// (accessory URLs and volume paths are added later, at launch).
    pub env: BTreeMap<String, String>,
    /// Accessory names, in the order written.
    pub uses: Vec<String>,
    /// Volume names, in the order written.
    pub volumes: Vec<String>,
    pub health: Option<HealthSpec>,
    /// Per-replica memory limit in bytes.
    pub memory: Option<u64>,
    /// Per-replica CPU limit in cores.
    pub cpu: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PortSpec {
    /// A worker: no port, no `$PORT`.
    None,
    /// Berth picks a free loopback port per replica.
    Auto,
    /// Replica `i` (1-based) listens on `base + i - 1`.
    Fixed(u16),
}

/// How many replicas a service runs: `replicas = n` is `min = max = n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaCount {
    pub min: u32,
    pub max: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthSpec {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    pub grace_period: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    Postgres,
    Mysql,
    Redis,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessorySpec {
    pub name: String,
    pub engine: Engine,
    /// Database name (postgres, mysql); for redis, unused.
    pub database: String,
    /// User name (postgres, mysql); for redis, unused.
    pub user: String,
    pub port: Option<u16>,
    /// Name of the variable injected into the services that use it.
    pub env: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VolumeSpec {
    pub name: String,
    /// Name of the variable that carries the volume's path.
    pub env: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteSpec {
    /// `None` matches any host; `"*.example.com"` matches subdomains.
    pub host: Option<String>,
    pub path: String,
    pub service: String,
}

impl Engine {
    /// The name written in `berth.toml` (`engine = "postgres"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Postgres => "postgres",
            Engine::Mysql => "mysql",
            Engine::Redis => "redis",
        }
    }

    /// The variable injected into the services that use an accessory of this engine when its
    /// `env` is not set: `DATABASE_URL` for postgres and mysql, `REDIS_URL` for redis.
    pub fn default_env(self) -> &'static str {
        match self {
            Engine::Postgres | Engine::Mysql => "DATABASE_URL",
            Engine::Redis => "REDIS_URL",
        }
    }
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PortSpec {
    /// Whether the service listens (`"auto"` or a number), i.e. is not a worker.
    pub fn has_port(self) -> bool {
        self != PortSpec::None
    }
}

impl ReplicaCount {
    /// A fixed count (`replicas = n`, or `min == max`): no autoscaling.
    pub fn is_fixed(self) -> bool {
        self.min == self.max
    }
}
