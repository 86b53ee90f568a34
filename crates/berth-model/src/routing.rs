//! The routing table: what the edge needs to send a request to a replica, built from the spec
//! and the replica board by a pure function, and pushed by the control plane to the edge.
//!
//! A service's replicas are grouped by release into target groups. Without weights (no rollout
//! under way) all healthy replicas form one group; the rollout engine sets per-release weights
//! through [`crate::TrafficControl`] to split traffic between groups.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use berth_spec::{Balance, Spec};
use serde::{Deserialize, Serialize};

use crate::{Health, ReplicaStatus};

/// Everything the edge routes by. Versioned: a higher version replaces a lower one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RoutingTable {
    pub version: u64,
    pub routes: Vec<RouteEntry>,
    pub services: BTreeMap<String, ServicePool>,
    pub settings: EdgeSettings,
    /// The key a request must carry in `X-Berth-Test-Key` for its `X-Berth-Release` header to
    /// reach that release directly, whatever its weight (the private test route of a deploy).
    #[serde(default)]
    pub test_key: Option<String>,
    /// Certificates to serve on the TLS listeners and ACME challenges to answer on the plain
    /// ones (absent in tables written before TLS existed).
    #[serde(default)]
    pub tls: TlsTable,
    /// Maintenance mode, when on.
    #[serde(default)]
    pub maintenance: Option<Maintenance>,
}

/// What the edge needs for TLS: certificate files by host name, and the HTTP-01 challenges
/// of certificates being issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TlsTable {
    /// In order of preference; the first whose hosts match the client's SNI serves it, and the
    /// first of all serves a client that names no known host.
    pub certificates: Vec<CertificateFiles>,
    /// ACME HTTP-01 challenges: token → key authorization, answered on the plain listeners at
    /// `/.well-known/acme-challenge/TOKEN`.
    #[serde(default)]
    pub challenges: BTreeMap<String, String>,
    /// `Strict-Transport-Security` on answers over TLS for hosts with a certificate (none: not
    /// sent).
    #[serde(default)]
    pub hsts: Option<String>,
    /// Whether a plain request for a host with a certificate is redirected to HTTPS (301).
    #[serde(default)]
    pub redirect_https: bool,
}

/// A certificate chain and its key, in PEM files, for some host names (`*.example.com` for
/// any subdomain).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateFiles {
    pub hosts: Vec<String>,
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteEntry {
    /// None: any host. `*.example.com`: any subdomain.
    pub host: Option<String>,
    pub path: String,
    pub service: String,
    /// Response headers of this route: set over the defaults; an empty value removes one.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Whether this route's answers are compressed, over `settings.compress.enabled` (None:
    /// as the edge).
    #[serde(default)]
    pub compress: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServicePool {
    pub balance: Balance,
    pub sticky: Option<Sticky>,
    pub groups: Vec<TargetGroup>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sticky {
    /// The application cookie whose presence in a response starts stickiness.
    pub cookie: String,
    pub duration_secs: u64,
}

/// The replicas of one release of a service, and their share of the traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetGroup {
    /// The release these replicas run; `*` for the single group of a service without weights.
    pub release: String,
    /// 0-100.
    pub weight: u32,
    pub targets: Vec<Target>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// `web.2`.
    pub replica: String,
    pub release: String,
    pub addr: SocketAddr,
    /// Takes no new requests; in-flight ones finish.
    pub draining: bool,
}

/// Limits and timeouts of the edge (from `[edge]` in the spec).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EdgeSettings {
    pub max_body: u64,
    pub max_header: u64,
    pub connect_timeout: Duration,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub request_timeout: Duration,
    pub access_log: bool,
    /// Clients whose `X-Forwarded-*` and `X-Request-Id` are believed (absent in tables
    /// written before it existed: nobody is trusted).
    #[serde(default)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Per-client request rate limits; every rule whose path matches applies.
    #[serde(default)]
    pub rate_limits: Vec<RateLimit>,
    /// Clients no rate or connection limit applies to.
    #[serde(default)]
    pub limit_exempt: Vec<ipnet::IpNet>,
    /// Open connections one client address may have (0: no limit).
    #[serde(default)]
    pub max_connections_per_ip: u32,
    /// Paths only some client addresses may reach (403 for the others).
    #[serde(default)]
    pub allow: Vec<AllowRule>,
    /// Headers added to every answer that does not carry them (security headers); a route's
    /// own `headers` override them.
    #[serde(default)]
    pub response_headers: Vec<(String, String)>,
    /// Remove the replicas' `Server` header.
    #[serde(default)]
    pub hide_server: bool,
    /// The WAF (none in tables written before it existed: off).
    #[serde(default)]
    pub waf: Option<berth_spec::WafSpec>,
    /// The response cache (`[cache]`; none in tables written before it existed: off).
    #[serde(default)]
    pub cache: Option<berth_spec::CacheSpec>,
    /// Response compression (`[edge] compress*`; a route's `compress` overrides `enabled`).
    #[serde(default)]
    pub compress: berth_spec::CompressSpec,
}

/// A GCRA rate limit per client address: `burst` requests at once, then one per
/// `interval`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateLimit {
    /// Path prefix it applies to (`/` for all).
    pub path: String,
    pub interval: Duration,
    pub burst: u32,
}

/// Only clients in `from` may reach paths under `path`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AllowRule {
    pub path: String,
    pub from: Vec<ipnet::IpNet>,
}

/// Maintenance mode (`berth maintenance on`): 503 with a page, except for `allow`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Maintenance {
    /// The services in maintenance; empty: all of them.
    pub services: Vec<String>,
    pub message: Option<String>,
    /// Clients that still get through (to check the site before opening it again).
    pub allow: Vec<ipnet::IpNet>,
}

/// The spec's defaults (`[edge]` of an empty file): one source of truth.
impl Default for EdgeSettings {
    fn default() -> Self {
        Self::from(&berth_spec::EdgeSpec::default())
    }
}

impl From<&berth_spec::EdgeSpec> for EdgeSettings {
    fn from(edge: &berth_spec::EdgeSpec) -> Self {
        Self {
            max_body: edge.max_body,
            max_header: edge.max_header,
            connect_timeout: edge.connect_timeout,
            header_timeout: edge.header_timeout,
            idle_timeout: edge.idle_timeout,
            request_timeout: edge.request_timeout,
            access_log: edge.access_log,
            trusted_proxies: edge.trusted_proxies.clone(),
            rate_limits: edge
                .rate_limits
                .iter()
                .map(|l| RateLimit {
                    path: l.path.clone(),
                    interval: l.interval,
                    burst: l.burst,
                })
                .collect(),
            limit_exempt: edge.limit_exempt.clone(),
            max_connections_per_ip: edge.max_connections_per_ip,
            allow: edge
                .allow
                .iter()
                .map(|a| AllowRule {
                    path: a.path.clone(),
                    from: a.from.clone(),
                })
                .collect(),
            response_headers: edge.response_headers.clone(),
            hide_server: edge.hide_server,
            waf: Some(edge.waf.clone()),
            cache: edge.cache.clone(),
            compress: edge.compress.clone(),
        }
    }
}

/// Per-service release weights set by the rollout engine: service → release → weight.
pub type Weights = BTreeMap<String, BTreeMap<String, u32>>;

impl RoutingTable {
    /// The table for `spec` given the replicas on the board and the rollout weights.
    /// Healthy replicas take traffic, draining ones finish theirs, the others are left out.
    pub fn build(spec: &Spec, replicas: &[ReplicaStatus], weights: &Weights, version: u64) -> Self {
        let routes = spec
            .routes
            .iter()
            .map(|r| RouteEntry {
                host: r.host.clone(),
                path: r.path.clone(),
                service: r.service.clone(),
                headers: r.headers.clone(),
                compress: r.compress,
            })
            .collect();
        let mut services = BTreeMap::new();
        for service in spec.services.values().filter(|s| s.port.has_port()) {
            let targets: Vec<Target> = replicas
                .iter()
                .filter(|r| r.service == service.name)
                .filter(|r| matches!(r.health, Health::Healthy | Health::Draining))
                .filter_map(|r| {
                    Some(Target {
                        replica: r.replica.clone(),
                        release: r.release.clone(),
                        addr: SocketAddr::from(([127, 0, 0, 1], r.port?)),
                        draining: r.health == Health::Draining,
                    })
                })
                .collect();
            let groups = match weights.get(&service.name) {
                None => vec![TargetGroup {
                    release: "*".into(),
                    weight: 100,
                    targets,
                }],
                Some(by_release) => by_release
                    .iter()
                    .map(|(release, weight)| TargetGroup {
                        release: release.clone(),
                        weight: (*weight).min(100),
                        targets: targets
                            .iter()
                            .filter(|t| &t.release == release)
                            .cloned()
                            .collect(),
                    })
                    .collect(),
            };
            services.insert(
                service.name.clone(),
                ServicePool {
                    balance: service.balance,
                    sticky: service.sticky.as_ref().map(|s| Sticky {
                        cookie: s.cookie.clone(),
                        duration_secs: s.duration.as_secs(),
                    }),
                    groups,
                },
            );
        }
        RoutingTable {
            version,
            routes,
            services,
            settings: EdgeSettings::from(&spec.edge),
            test_key: None,
            tls: TlsTable::default(),
            maintenance: None,
        }
    }
}
