//! The typed, effective spec of a stack: what the rest of Berth consumes after `berth.toml` has
//! been parsed, validated and had its `[environment.NAME]` overrides applied.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
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

/// `[edge]`: the proxy in front of the services. The limits and timeouts default to those of an
/// AWS Application Load Balancer as used in the reference setups; see [`EdgeSpec::default`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EdgeSpec {
    pub listen: Vec<SocketAddr>,
    pub admin: SocketAddr,
    /// Largest request body in bytes; a request with a larger one is answered 413.
    pub max_body: u64,
    /// Largest total size in bytes of a request's headers; over it the answer is 431.
    pub max_header: u64,
    /// How long connecting to a replica may take.
    pub connect_timeout: Duration,
    /// How long a client has to send its request headers (slowloris protection).
    pub header_timeout: Duration,
    /// How long a keep-alive connection may stay idle between requests.
    pub idle_timeout: Duration,
    /// How long a replica has to answer a request before the edge answers 504.
    pub request_timeout: Duration,
    /// Whether the edge writes one access-log line per request.
    pub access_log: bool,
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
    /// How the edge spreads requests over the replicas.
    #[serde(default)]
    pub balance: Balance,
    /// How long a replica leaving the target group keeps serving its in-flight requests, without
    /// getting new ones, before it is stopped (may be zero).
    #[serde(default = "default_deregistration_delay")]
    pub deregistration_delay: Duration,
    /// Application-cookie stickiness (`[service.NAME.sticky]`); only on a service with a port.
    #[serde(default)]
    pub sticky: Option<StickySpec>,
}

/// How the edge picks the replica of a service that gets a request (`balance`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// The replica with the fewest requests in flight (the ALB's "least outstanding requests",
    /// as the references use it).
    #[default]
    LeastOutstanding,
    /// Each replica in turn.
    RoundRobin,
}

/// `[service.NAME.sticky]`: once a response of a replica sets the application cookie `cookie`,
/// the client's next requests go to that replica for `duration` (while it takes traffic).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StickySpec {
    /// Name of the application cookie whose presence in a response starts stickiness.
    pub cookie: String,
    /// How long stickiness lasts.
    pub duration: Duration,
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

impl EdgeSpec {
    /// Default `listen` address.
    pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);
    /// Default `admin` address.
    pub const DEFAULT_ADMIN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9090);
    /// Default `max_body`: 64 MiB.
    pub const DEFAULT_MAX_BODY: u64 = 64 << 20;
    /// Default `max_header`: 64 KiB.
    pub const DEFAULT_MAX_HEADER: u64 = 64 << 10;
    /// Default `connect_timeout`.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
    /// Default `header_timeout`.
    pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
    /// Default `idle_timeout` (the ALB's default).
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
    /// Default `request_timeout`.
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
    /// Default `access_log`.
    pub const DEFAULT_ACCESS_LOG: bool = true;
}

impl Default for EdgeSpec {
    /// The `[edge]` of a spec that sets none of its keys.
    fn default() -> Self {
        EdgeSpec {
            listen: vec![EdgeSpec::DEFAULT_LISTEN],
            admin: EdgeSpec::DEFAULT_ADMIN,
            max_body: EdgeSpec::DEFAULT_MAX_BODY,
            max_header: EdgeSpec::DEFAULT_MAX_HEADER,
            connect_timeout: EdgeSpec::DEFAULT_CONNECT_TIMEOUT,
            header_timeout: EdgeSpec::DEFAULT_HEADER_TIMEOUT,
            idle_timeout: EdgeSpec::DEFAULT_IDLE_TIMEOUT,
            request_timeout: EdgeSpec::DEFAULT_REQUEST_TIMEOUT,
            access_log: EdgeSpec::DEFAULT_ACCESS_LOG,
        }
    }
}

impl ServiceSpec {
    /// Default `deregistration_delay` (that of the references' target groups).
    pub const DEFAULT_DEREGISTRATION_DELAY: Duration = Duration::from_secs(30);
}

/// For serde: specs serialized before `deregistration_delay` existed get the default.
fn default_deregistration_delay() -> Duration {
    ServiceSpec::DEFAULT_DEREGISTRATION_DELAY
}

impl StickySpec {
    /// Default `duration`: one day (the ALB's default).
    pub const DEFAULT_DURATION: Duration = Duration::from_secs(24 * 60 * 60);
}

impl Balance {
    /// Every algorithm, the default first.
    pub const ALL: [Balance; 2] = [Balance::LeastOutstanding, Balance::RoundRobin];

    /// The name written in `berth.toml` (`balance = "round_robin"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Balance::LeastOutstanding => "least_outstanding",
            Balance::RoundRobin => "round_robin",
        }
    }
}

impl std::fmt::Display for Balance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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
