//! The spec as written, before defaults and environments: every value the walker accepted, with
//! the byte span it came from so later checks can point at it.
//!
//! A value that failed its own check (wrong type, bad duration...) is left out, or replaced by its
//! most permissive reading, so that one mistake does not cascade into more messages.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use crate::types::{Balance, Engine, PortSpec};

/// A value with the byte span of its source text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Located<T> {
    pub value: T,
    pub span: Range<usize>,
}

/// A whole `berth.toml`.
#[derive(Debug, Default)]
pub(crate) struct RawSpec {
    pub stack_name: Option<Located<String>>,
    pub keep_releases: Option<u32>,
    pub listen: Option<Vec<std::net::SocketAddr>>,
    pub admin: Option<std::net::SocketAddr>,
    pub max_body: Option<u64>,
    pub max_header: Option<u64>,
    pub connect_timeout: Option<Duration>,
    pub header_timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub request_timeout: Option<Duration>,
    pub access_log: Option<bool>,
    pub trusted_proxies: Option<Vec<ipnet::IpNet>>,
    pub tls_listen: Option<Located<Vec<std::net::SocketAddr>>>,
    pub hsts: Option<String>,
    pub redirect_https: Option<bool>,
    pub certificates: Vec<crate::tls::RawCertificate>,
    /// `[edge] rate_limit`: Some(None) for "off".
    pub global_rate_limit: Option<Option<(u32, Duration)>>,
    pub rate_limits: Vec<crate::types::RateLimitSpec>,
    pub limit_exempt: Option<Vec<ipnet::IpNet>>,
    pub max_connections_per_ip: Option<u32>,
    pub allow: Vec<crate::types::AllowSpec>,
    pub response_headers: Option<BTreeMap<String, String>>,
    pub hide_server: Option<bool>,
    /// `workers`: Some(None) for "auto".
    pub workers: Option<Option<u32>>,
    pub pin_workers: Option<bool>,
    /// `compress` and the `compress_*` keys of `[edge]`.
    pub compress: RawCompress,
    pub maintenance_allow: Option<Vec<ipnet::IpNet>>,
    pub waf: Option<crate::types::WafSpec>,
    /// `[cache]` (None: not written).
    pub cache: Option<crate::types::CacheSpec>,
    pub acme: crate::tls::RawAcme,
    pub env: BTreeMap<String, String>,
    pub services: BTreeMap<String, RawService>,
    pub accessories: BTreeMap<String, RawAccessory>,
    pub volumes: BTreeMap<String, RawVolume>,
    pub routes: Vec<RawRoute>,
    pub environments: BTreeMap<String, RawEnvironment>,
    /// `[backup]`, defaults applied.
    pub backup: Option<Located<crate::backup::BackupSpec>>,
    /// `[containers] socket`.
    pub container_socket: Option<String>,
    /// `[[alarm]]` entries that read without a problem.
    pub alarms: Vec<RawAlarm>,
    /// `[alarms]`.
    pub alarms_table: RawAlarms,
    /// `[notify.NAME]` targets that read without a problem.
    pub notify: BTreeMap<String, Located<crate::alarm::NotifyTarget>>,
    /// Every `[notify.NAME]` written, read well or not (alarms referring to it are not wrong).
    pub notify_declared: Vec<String>,
}

/// `replicas`, `min` and `max` as written; each span covers `key = value`.
#[derive(Debug, Clone, Default)]
pub(crate) struct ReplicaFields {
    pub replicas: Option<Located<u32>>,
    pub min: Option<Located<u32>>,
    pub max: Option<Located<u32>>,
}

/// One `[service.NAME]`.
#[derive(Debug, Clone)]
pub(crate) struct RawService {
    pub run: Option<String>,
    pub build: Option<String>,
    pub source: Option<String>,
    pub port: PortSpec,
    pub replicas: ReplicaFields,
    pub stop_timeout: Option<Duration>,
    pub env: BTreeMap<String, String>,
    pub uses: Vec<Located<String>>,
    /// `depends_on = [...]`: accessories whose outage is shown on the service.
    pub depends_on: Vec<Located<String>>,
    pub volumes: Vec<Located<String>>,
    pub health: Option<Located<RawHealth>>,
    pub memory: Option<u64>,
    pub cpu: Option<f64>,
    pub balance: Option<Balance>,
    pub deregistration_delay: Option<Duration>,
    pub sticky: Option<Located<RawSticky>>,
    /// `[service.NAME.deploy]`, defaults applied.
    pub deploy: Option<Located<crate::types::DeploySpec>>,
    /// `secrets = [...]`: names of secrets injected into the replicas.
    pub secrets: Vec<Located<String>>,
    /// `[[service.NAME.cron]]`: scheduled one-off tasks.
    pub cron: Vec<crate::types::CronSpec>,
    /// `metrics = { path = ... }`: the replicas' own Prometheus metrics.
    pub metrics: Option<crate::types::AppMetricsSpec>,
    /// `[service.NAME.autoscale]` as written (defaults applied); the span covers its key.
    pub autoscale: Option<Located<crate::autoscale::AutoscaleSpec>>,
    /// `image`, `dockerfile`, `target`, `network` as written.
    pub container: RawContainer,
    /// Spans of `run` and `build` (for conflicts with `image`/`dockerfile`).
    pub run_span: Option<Range<usize>>,
    pub build_span: Option<Range<usize>>,
}

/// The container keys of one `[service.NAME]`.
#[derive(Debug, Clone, Default)]
pub(crate) struct RawContainer {
    pub image: Option<Located<String>>,
    pub dockerfile: Option<Located<String>>,
    pub target: Option<Located<String>>,
    pub network: Option<Located<crate::types::ContainerNetwork>>,
}

impl RawContainer {
    /// Whether the service's replicas are containers.
    pub fn is_container(&self) -> bool {
        self.image.is_some() || self.dockerfile.is_some()
    }
}

impl RawService {
    /// A service with nothing set yet.
    pub fn new() -> Self {
        RawService {
            run: None,
            build: None,
            source: None,
            port: PortSpec::None,
            replicas: ReplicaFields::default(),
            stop_timeout: None,
            env: BTreeMap::new(),
            uses: Vec::new(),
            depends_on: Vec::new(),
            volumes: Vec::new(),
            health: None,
            memory: None,
            cpu: None,
            balance: None,
            deregistration_delay: None,
            sticky: None,
            deploy: None,
            secrets: Vec::new(),
            cron: Vec::new(),
            metrics: None,
            autoscale: None,
            container: RawContainer::default(),
            run_span: None,
            build_span: None,
        }
    }
}

/// One `[service.NAME.health]`.
#[derive(Debug, Clone, Default)]
pub(crate) struct RawHealth {
    pub path: Option<String>,
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub healthy_threshold: Option<u32>,
    pub unhealthy_threshold: Option<u32>,
    pub grace_period: Option<Duration>,
}

/// One `[service.NAME.sticky]`.
#[derive(Debug, Clone, Default)]
pub(crate) struct RawSticky {
    /// `None` when missing or invalid (already reported).
    pub cookie: Option<String>,
    pub duration: Option<Duration>,
}

/// One `[accessory.NAME]`.
#[derive(Debug, Clone, Default)]
pub(crate) struct RawAccessory {
    /// `None` when missing or invalid (already reported).
    pub engine: Option<Engine>,
    pub database: Option<String>,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub env: Option<String>,
}

/// One `[volume.NAME]`.
#[derive(Debug, Clone, Default)]
pub(crate) struct RawVolume {
    pub env: Option<String>,
}

/// `[edge] compress`, `compress_min_size`, `compress_types`, `compress_algorithms`.
#[derive(Debug, Clone, Default)]
pub(crate) struct RawCompress {
    pub enabled: Option<bool>,
    pub min_size: Option<u64>,
    pub types: Option<Vec<String>>,
    pub algorithms: Option<Vec<crate::compress::Coding>>,
}

/// One `[[route]]`.
#[derive(Debug, Clone)]
pub(crate) struct RawRoute {
    /// Span of the `[[route]]` table.
    pub span: Range<usize>,
    pub host: Option<Located<String>>,
    pub path: Option<Located<String>>,
    pub service: Option<Located<String>>,
    pub headers: BTreeMap<String, String>,
    pub compress: Option<bool>,
}

/// One `[environment.NAME]`.
#[derive(Debug, Clone, Default)]
pub(crate) struct RawEnvironment {
    pub env: BTreeMap<String, String>,
    pub services: BTreeMap<String, RawOverride>,
}

/// One `[environment.ENV.service.NAME]`.
#[derive(Debug, Clone, Default)]
pub(crate) struct RawOverride {
    /// Span of the service's name in the override's key or header.
    pub name_span: Range<usize>,
    pub replicas: ReplicaFields,
    pub memory: Option<u64>,
    pub cpu: Option<f64>,
    pub env: BTreeMap<String, String>,
}

/// One `[[alarm]]` with the spans its cross-checks point at.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RawAlarm {
    pub spec: crate::alarm::AlarmSpec,
    #[allow(dead_code)]
    pub span: Range<usize>,
    pub name_span: Range<usize>,
    pub labels: Vec<(String, Located<String>)>,
    pub notify: Vec<Located<String>>,
}

/// `[alarms]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct RawAlarms {
    /// `defaults = false` switches the references' alarms off.
    pub defaults: Option<bool>,
    /// The targets of the default alarms (all when not written).
    pub notify: Option<Vec<Located<String>>>,
}
