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
    /// `[backup]` (its defaults when not written).
    #[serde(default)]
    pub backup: crate::backup::BackupSpec,
    /// `[edge] tls_listen`, `[[certificate]]`, `[acme]` (no TLS when not written).
    #[serde(default)]
    pub tls: crate::tls::TlsSpec,
    /// `[containers]`.
    #[serde(default)]
    pub containers: ContainersSpec,
    /// `[[alarm]]` and, unless `[alarms] defaults = false`, the references' alarms per service.
    #[serde(default)]
    pub alarms: Vec<crate::alarm::AlarmSpec>,
    /// `[notify.NAME]`: where alarm state changes, deploy outcomes and failed backups are sent.
    #[serde(default)]
    pub notify: BTreeMap<String, crate::alarm::NotifyTarget>,
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
    /// Proxies in front of the edge (addresses or CIDR ranges) whose `X-Forwarded-*` and
    /// `X-Request-Id` headers are believed; from any other client they are replaced.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// `[[rate_limit]]` (the references' 2,000 requests per 5 minutes per client when none is
    /// written).
    pub rate_limits: Vec<RateLimitSpec>,
    /// `limit_exempt`: clients no rate or connection limit applies to (default: loopback).
    pub limit_exempt: Vec<ipnet::IpNet>,
    /// `max_connections_per_ip` (0: no limit).
    pub max_connections_per_ip: u32,
    /// `[[allow]]`: paths only some client addresses may reach.
    pub allow: Vec<AllowSpec>,
    /// `[edge.headers]` merged over the default security headers (`""` removes one).
    pub response_headers: Vec<(String, String)>,
    /// `hide_server`: drop the replicas' `Server` header.
    pub hide_server: bool,
    /// `maintenance_allow`: clients that get through maintenance mode (default: loopback, so
    /// the operator can check the site from the machine).
    pub maintenance_allow: Vec<ipnet::IpNet>,
    /// `[waf]` (on, blocking, when not written).
    pub waf: WafSpec,
    /// `workers`: the edge's worker threads (None, "auto": one per core the edge may run on).
    #[serde(default)]
    pub workers: Option<u32>,
    /// `pin_workers`: worker i runs only on the i-th core the edge may run on.
    #[serde(default)]
    pub pin_workers: bool,
    /// `[cache]`: the edge's response cache (None: no `[cache]` table, nothing is cached).
    #[serde(default)]
    pub cache: Option<CacheSpec>,
    /// `compress`, `compress_min_size`, `compress_types`, `compress_algorithms`: response
    /// compression (on by default, as the references' CloudFront).
    #[serde(default)]
    pub compress: crate::compress::CompressSpec,
}

/// `[cache]`: the edge's response cache (the references' CloudFront cache behaviours).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CacheSpec {
    /// `max_size`: bytes the whole cache may hold (bodies, headers and keys).
    pub max_size: u64,
    /// `max_object`: larger answers are passed through, never stored.
    pub max_object: u64,
    /// `[[cache.rule]]` in the order written; the references' when none is written.
    pub rules: Vec<CacheRuleSpec>,
}

impl Default for CacheSpec {
    fn default() -> Self {
        Self {
            max_size: 256 << 20,
            max_object: 8 << 20,
            rules: CacheRuleSpec::reference_rules(),
        }
    }
}

/// What of the query string is keyed and sent on (CloudFront's query string forwarding).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CacheQuery {
    /// All of it, as the client wrote it.
    #[default]
    All,
    /// None: the replica never sees it.
    None,
    /// Only these parameters, sorted.
    Only(Vec<String>),
}

/// One `[[cache.rule]]`: a path pattern and how long its answers are kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CacheRuleSpec {
    /// `*` any characters, `?` one; matched against the decoded path.
    pub path: String,
    /// The lifetime of an answer without `Cache-Control: max-age`/`s-maxage` or `Expires`.
    pub default_ttl: Duration,
    /// The answer's own lifetime is raised to at least this.
    pub min_ttl: Duration,
    /// ... and lowered to at most this; 0 makes the rule a never-cache rule.
    pub max_ttl: Duration,
    pub query: CacheQuery,
    /// `cookies = true`: the request's `Cookie` goes to the replica and into the key. False:
    /// `Cookie` is not sent on. Answers with `Set-Cookie` are never stored either way.
    pub cookies: bool,
    /// `authorization = true`: requests with `Authorization` use the cache, keyed by it.
    /// False: they bypass it.
    pub authorization: bool,
    /// How long past its lifetime an answer is served when the replicas fail.
    pub stale_if_error: Duration,
    /// How long past its lifetime an answer is served while one request refreshes it.
    pub stale_while_revalidate: Duration,
}

impl Default for CacheRuleSpec {
    /// CloudFront's legacy cache settings: 0 s to a year, a day by default.
    fn default() -> Self {
        Self {
            path: "/*".into(),
            default_ttl: Duration::from_secs(86_400),
            min_ttl: Duration::ZERO,
            max_ttl: Duration::from_secs(31_536_000),
            query: CacheQuery::All,
            cookies: false,
            authorization: false,
            stale_if_error: Duration::from_secs(600),
            stale_while_revalidate: Duration::ZERO,
        }
    }
}

impl CacheRuleSpec {
    /// The references' behaviours: never `/admin*`, `/cart`, `/order`, `/my-account`; `/img/*`
    /// a day to a year without the query string; static assets a year.
    pub fn reference_rules() -> Vec<CacheRuleSpec> {
        let never = |path: &str| CacheRuleSpec {
            path: path.into(),
            default_ttl: Duration::ZERO,
            max_ttl: Duration::ZERO,
            ..Default::default()
        };
        let year = Duration::from_secs(31_536_000);
        let mut rules = vec![
            never("/admin*"),
            never("/cart*"),
            never("/order*"),
            never("/my-account*"),
            CacheRuleSpec {
                path: "/img/*".into(),
                query: CacheQuery::None,
                ..Default::default()
            },
        ];
        for path in [
            "/static/*",
            "*.css",
            "*.js",
            "*.woff2",
            "*.woff",
            "*.jpg",
            "*.jpeg",
            "*.png",
            "*.webp",
            "*.gif",
            "*.svg",
            "*.ico",
        ] {
            rules.push(CacheRuleSpec {
                path: path.into(),
                default_ttl: year,
                ..Default::default()
            });
        }
        rules
    }
}

/// The WAF's rule groups and modes (`[waf]`), as the spec names them.
pub const WAF_GROUPS: &[&str] = &["sqli", "xss", "lfi", "rce", "php"];
pub const WAF_MODES: &[&str] = &["block", "count", "off"];

/// `[waf]`: the web application firewall of the edge (the references' WAFv2 web ACL).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WafSpec {
    /// `mode`: every group's mode unless set one by one.
    pub default_mode: String,
    /// Group → `block`, `count` or `off`.
    pub modes: BTreeMap<String, String>,
    /// How much of a body is inspected (bytes).
    pub max_body: u64,
    /// `oversize`: what happens to a body the WAF reads that is longer than `max_body`.
    #[serde(default)]
    pub oversize: WafOversize,
    pub exclusions: Vec<WafExclusion>,
    pub overrides: Vec<WafOverride>,
}

impl Default for WafSpec {
    /// Every group blocking, as the references' managed rule groups do.
    fn default() -> Self {
        Self {
            default_mode: "block".into(),
            modes: WAF_GROUPS
                .iter()
                .map(|g| (g.to_string(), "block".to_string()))
                .collect(),
            max_body: 64 * 1024,
            oversize: WafOversize::default(),
            exclusions: Vec::new(),
            overrides: Vec::new(),
        }
    }
}

/// What the WAF does with a body longer than `max_body` (AWS WAF's oversize handling).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WafOversize {
    /// The first `max_body` bytes are inspected, the rest passes (AWS WAF's `CONTINUE`).
    #[default]
    Continue,
    /// The request is refused with 403 (AWS WAF's `MATCH` on a blocking rule).
    Block,
}

/// `[[waf.exclude]]`: parts of requests under `path` the WAF skips.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct WafExclusion {
    pub path: String,
    /// Empty: all groups.
    pub groups: Vec<String>,
    /// `query:q`, `cookie:*`, `body:form:content`...; empty: the whole request.
    pub targets: Vec<String>,
}

/// `[[waf.override]]`: a group's mode under `path`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WafOverride {
    pub path: String,
    pub group: String,
    pub mode: String,
}

/// One `[[rate_limit]]`: per client address, `burst` requests at once, then one per `interval`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateLimitSpec {
    pub path: String,
    pub interval: Duration,
    pub burst: u32,
}

/// One `[[allow]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AllowSpec {
    pub path: String,
    pub from: Vec<ipnet::IpNet>,
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
    /// `depends_on`: accessories whose outage is attributed to and shown on this service,
    /// beside those it uses.
    #[serde(default)]
    pub depends_on: Vec<String>,
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
    /// `[service.NAME.deploy]`: strategy, migrations and rollback rules of `berth deploy`.
    #[serde(default)]
    pub deploy: DeploySpec,
    /// `secrets = [...]`: secrets injected into the replicas (as `NAME`, or `NAME_FILE` for
    /// one set with `--as-file`), in the order written.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// `[[service.NAME.cron]]`: one-off tasks of the current release run on a schedule.
    #[serde(default)]
    pub cron: Vec<CronSpec>,
    /// How the replica count follows the load between `replicas.min` and `replicas.max`; set
    /// exactly when `min < max` (the references' targets when no table is written).
    #[serde(default)]
    pub autoscale: Option<crate::autoscale::AutoscaleSpec>,
    /// `image` or `dockerfile`: the replicas are containers of this image (`run` and `build`
    /// are then empty); `None`: local processes.
    #[serde(default)]
    pub container: Option<ContainerSpec>,
    /// `metrics = { path = "/metrics" }`: each replica's own Prometheus metrics, scraped by
    /// the daemon's collector and stored as `app:NAME`.
    #[serde(default)]
    pub metrics: Option<AppMetricsSpec>,
}

/// Where a service's replicas expose their Prometheus metrics (`metrics = { path = ... }`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppMetricsSpec {
    pub path: String,
}

/// Where a container service's image comes from and how its containers are networked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSpec {
    pub image: ImageSource,
    pub network: ContainerNetwork,
}

/// `image = "..."` or `dockerfile = "..."` (+ `target`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImageSource {
    /// An image reference pulled from a registry (or already present in the engine).
    Pull { reference: String },
    /// Built from the release folder (the service's `source`) as context.
    Build {
        /// Path of the Dockerfile, relative to the context.
        dockerfile: String,
        /// Stage of a multi-stage build.
        target: Option<String>,
    },
}

/// `network`: how a container reaches and is reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerNetwork {
    /// Its own network namespace; the replica's port is published on 127.0.0.1 only.
    #[default]
    Bridge,
    /// The host's network (reaches accessories on the host's loopback).
    Host,
}

impl ContainerNetwork {
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerNetwork::Bridge => "bridge",
            ContainerNetwork::Host => "host",
        }
    }
}

/// `[containers]`: the container engine (Docker or Podman's Docker-compatible service).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainersSpec {
    /// `socket`: the engine's unix socket; `None`: `DOCKER_HOST`, else the usual places.
    pub socket: Option<PathBuf>,
}

/// One `[[service.NAME.cron]]` entry: `run` (with `sh -c`, in the release's folder, with the
/// service's environment) at each time `schedule` (five-field cron, local time) names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CronSpec {
    pub schedule: String,
    pub run: String,
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
    /// Response headers set on this route's answers (over `[edge] headers`; `""` removes one).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `compress`: this route's answers compressed or not, over `[edge] compress` (None: as
    /// the edge).
    #[serde(default)]
    pub compress: Option<bool>,
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
    /// Default `max_connections_per_ip`.
    pub const DEFAULT_MAX_CONNECTIONS_PER_IP: u32 = 256;

    /// The references' production WAF rate rule: 2,000 requests per 5 minutes per client.
    pub fn default_rate_limit() -> RateLimitSpec {
        RateLimitSpec {
            path: "/".into(),
            interval: Duration::from_millis(150), // 300 s / 2,000
            burst: 2000,
        }
    }

    /// Loopback: health checks, local tools and tests are never limited.
    pub fn default_limit_exempt() -> Vec<ipnet::IpNet> {
        ["127.0.0.0/8", "::1/128"]
            .iter()
            .filter_map(|n| n.parse().ok())
            .collect()
    }

    /// Security headers on every answer unless the application or the route sets its own.
    pub fn default_response_headers() -> Vec<(String, String)> {
        // Sorted by name, as the merged lists of a spec are.
        [
            ("referrer-policy", "strict-origin-when-cross-origin"),
            ("x-content-type-options", "nosniff"),
            ("x-frame-options", "SAMEORIGIN"),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
    }
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
            trusted_proxies: Vec::new(),
            rate_limits: vec![EdgeSpec::default_rate_limit()],
            limit_exempt: EdgeSpec::default_limit_exempt(),
            max_connections_per_ip: EdgeSpec::DEFAULT_MAX_CONNECTIONS_PER_IP,
            allow: Vec::new(),
            response_headers: EdgeSpec::default_response_headers(),
            hide_server: false,
            maintenance_allow: EdgeSpec::default_limit_exempt(),
            waf: WafSpec::default(),
            workers: None,
            pin_workers: false,
            cache: None,
            compress: crate::compress::CompressSpec::default(),
        }
    }
}

impl ServiceSpec {
    /// Default `deregistration_delay` (that of the references' target groups).
    pub const DEFAULT_DEREGISTRATION_DELAY: Duration = Duration::from_secs(30);

    /// The accessories an outage of which this service feels: those it uses, then those it
    /// `depends_on`, each once.
    pub fn dependencies(&self) -> Vec<&str> {
        let mut all: Vec<&str> = Vec::new();
        for name in self.uses.iter().chain(&self.depends_on) {
            if !all.contains(&name.as_str()) {
                all.push(name);
            }
        }
        all
    }
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

/// `[service.NAME.deploy]`: how `berth deploy` rolls a new release of the service out, and when
/// it rolls it back. Every default is that of the reference setups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeploySpec {
    pub strategy: Strategy,
    /// A one-off command run once from the new release, with the service's env, before any
    /// traffic moves (`python manage.py migrate`). Its failure stops the deploy.
    pub migrate: Option<String>,
    /// How long the migration may run.
    pub migrate_timeout: Duration,
    /// Rolling: how many replicas above the desired count may run during the rollout.
    pub max_surge: Amount,
    /// Rolling: how many of the desired replicas may be unavailable during the rollout.
    pub max_unavailable: Amount,
    /// Blue/green and canary: how long the old group stays up after the switch, for an instant
    /// rollback (CodeDeploy's termination wait).
    pub termination_wait: Duration,
    /// Canary: the traffic steps before 100%.
    pub steps: Vec<CanaryStep>,
    /// Whether a deploy first dumps the accessories the service uses.
    pub backup: bool,
    /// Smoke checks: run against the new release before it takes user traffic (blue/green and
    /// canary, through the edge's test route) and again once it carries all of it.
    pub checks: Vec<SmokeCheck>,
    pub analysis: AnalysisSpec,
}

/// How a new release replaces the old one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Replace replicas a few at a time (`max_surge`, `max_unavailable`).
    #[default]
    Rolling,
    /// Start the whole new group beside the old one, check it, switch all traffic at once.
    Bluegreen,
    /// Start the new group, move traffic to it in weighted steps, analysing each one.
    Canary,
}

/// A replica count, absolute or as a percentage of the desired count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Amount {
    Count(u32),
    Percent(u32),
}

/// One canary step: `weight` percent of the traffic to the new release for `pause`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CanaryStep {
    pub weight: u32,
    pub pause: Duration,
}

/// `[[service.NAME.deploy.check]]`: an HTTP request that must get `status` (and a body that
/// contains `contains`, when set).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmokeCheck {
    pub path: String,
    pub status: u16,
    pub contains: Option<String>,
}

/// `[service.NAME.deploy.analysis]`: the rules that roll a deploy back automatically.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AnalysisSpec {
    /// How long after the new release first takes user traffic the rules keep being evaluated
    /// (the deploy ends when this and the steps are over).
    pub window: Duration,
    /// The new release's health checks failing for longer than this rolls back.
    pub health_window: Duration,
    /// Percent of the new release's requests answered 5xx (or not at all) over which it rolls back.
    pub error_rate: f64,
    /// The new release's p99 latency over this many times the old release's rolls back...
    pub latency_factor: f64,
    /// ...when it is also at least this much slower (a 1 ms → 3 ms change is noise, not a regression).
    pub latency_margin: Duration,
    /// No error-rate or latency verdict before the new release served this many requests in
    /// the window; a canary step with fewer is inconclusive, never a pass.
    pub min_requests: u64,
    /// A route pattern is compared only when both releases served this many of its requests in
    /// the window.
    pub min_route_requests: u64,
    /// The Mann-Whitney test's one-sided significance level (divided by the routes compared).
    pub significance: f64,
    /// The smallest Cliff's delta (-1 to 1: P(new slower) - P(new faster)) that fails a route.
    pub min_effect: f64,
    /// How long a canary step waits past its pause for enough requests to judge.
    pub max_wait: Duration,
    /// What an inconclusive canary step (still too few requests after `max_wait`) does.
    pub inconclusive: Inconclusive,
}

/// `inconclusive = "rollback" | "pause"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Inconclusive {
    /// Roll back, as a failed rule does.
    #[default]
    Rollback,
    /// Hold the canary at its weight until there are enough requests for a verdict (or
    /// `berth deploy cancel`).
    Pause,
}

impl Inconclusive {
    pub fn as_str(self) -> &'static str {
        match self {
            Inconclusive::Rollback => "rollback",
            Inconclusive::Pause => "pause",
        }
    }
}

impl Amount {
    /// The count out of `desired`: percentages of a surge round up, of unavailability down.
    pub fn of(self, desired: u32, round_up: bool) -> u32 {
        match self {
            Amount::Count(n) => n,
            Amount::Percent(p) => {
                let scaled = u64::from(desired) * u64::from(p);
                let count = if round_up {
                    scaled.div_ceil(100)
                } else {
                    scaled / 100
                };
                count as u32
            }
        }
    }
}

impl std::fmt::Display for Amount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Amount::Count(n) => write!(f, "{n}"),
            Amount::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl Strategy {
    pub const ALL: [Strategy; 3] = [Strategy::Rolling, Strategy::Bluegreen, Strategy::Canary];

    /// The name written in `berth.toml` and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Rolling => "rolling",
            Strategy::Bluegreen => "bluegreen",
            Strategy::Canary => "canary",
        }
    }

    pub fn parse(text: &str) -> Option<Strategy> {
        match text {
            "rolling" => Some(Strategy::Rolling),
            "bluegreen" | "blue_green" | "blue-green" => Some(Strategy::Bluegreen),
            "canary" => Some(Strategy::Canary),
            _ => None,
        }
    }
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Default for DeploySpec {
    /// The references' deploy: rolling with `minimum_healthy_percent` 100 and `maximum_percent`
    /// 200, a 5-minute termination wait, canary steps 10% for 15 minutes then 25/50/75% for 5.
    fn default() -> Self {
        let minutes = |m: u64| Duration::from_secs(60 * m);
        DeploySpec {
            strategy: Strategy::Rolling,
            migrate: None,
            migrate_timeout: minutes(10),
            max_surge: Amount::Percent(100),
            max_unavailable: Amount::Count(0),
            termination_wait: minutes(5),
            steps: vec![
                CanaryStep {
                    weight: 10,
                    pause: minutes(15),
                },
                CanaryStep {
                    weight: 25,
                    pause: minutes(5),
                },
                CanaryStep {
                    weight: 50,
                    pause: minutes(5),
                },
                CanaryStep {
                    weight: 75,
                    pause: minutes(5),
                },
            ],
            backup: false,
            checks: Vec::new(),
            analysis: AnalysisSpec::default(),
        }
    }
}

impl Default for AnalysisSpec {
    /// The references' rollback criteria: health failing for 2 minutes, error rate over 5% in the
    /// first 5 minutes, p99 over 3x the baseline.
    fn default() -> Self {
        AnalysisSpec {
            window: Duration::from_secs(5 * 60),
            health_window: Duration::from_secs(2 * 60),
            error_rate: 5.0,
            latency_factor: 3.0,
            latency_margin: Duration::from_millis(25),
            min_requests: 50,
            min_route_requests: 20,
            significance: 0.01,
            min_effect: 0.33,
            max_wait: Duration::from_secs(5 * 60),
            inconclusive: Inconclusive::Rollback,
        }
    }
}
