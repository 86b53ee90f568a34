//! The edge's metrics, in Prometheus text format on the admin listener: requests by
//! service/release/status class, latency histograms, bytes, open connections, upstream health.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use berth_model::traffic::{
    latency_bucket, ReleaseTraffic, RouteTraffic, LATENCY_BUCKETS, MAX_ROUTES, OTHER_ROUTE,
};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub service: String,
    pub release: String,
    /// `2xx`, `3xx`, `4xx`, `5xx`.
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    pub service: String,
    pub release: String,
}

/// What the response cache did with a request: `hit`, `miss`, `stale`, `bypass`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    pub result: &'static str,
}

/// The outcomes of `cache_fills` carried from the store's counters, in
/// [`EdgeMetrics::export_cache_stats`]'s order (`refresh_failed` is counted by the edge).
pub const CACHE_FILL_OUTCOMES: [&str; 5] = [
    "stored",
    "not_stored",
    "over_budget",
    "revalidated",
    "coalesced",
];

/// What became of a fill of the response cache from the replicas (`cache_fills`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheFillLabels {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    pub service: String,
    pub replica: String,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Requests, failures and a latency histogram: one atomic add per counter.
struct Counters {
    requests: AtomicU64,
    errors: AtomicU64,
    latency: [AtomicU64; LATENCY_BUCKETS],
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            latency: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Counters {
    fn observe(&self, status: u16, micros: u64) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if status >= 500 {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.latency[latency_bucket(micros)].fetch_add(1, Ordering::Relaxed);
    }

    /// Requests, errors and the histogram (trailing empty buckets left out).
    fn read(&self) -> (u64, u64, Vec<u64>) {
        let mut latency: Vec<u64> = self
            .latency
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        while latency.last() == Some(&0) {
            latency.pop();
        }
        (
            self.requests.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
            latency,
        )
    }
}

/// Counters of one release for the rollout engine's analysis, whole and per route pattern
/// (`berth_model::traffic::route_pattern`): cheap to update and read whole through the control
/// socket. They only grow; the rollout engine takes the difference of two readings to get a
/// window. Memory is bounded: at most `MAX_ROUTES` patterns (~0.9 KiB each), then `other`.
#[derive(Default)]
pub struct ReleaseStats {
    all: Counters,
    routes: RwLock<Vec<(Box<str>, Arc<Counters>)>>,
}

impl ReleaseStats {
    /// Counts a finished request of route pattern `route` (None: counted for the release only).
    pub fn observe(&self, route: Option<&str>, status: u16, seconds: f64) {
        let micros = (seconds * 1_000_000.0) as u64;
        self.all.observe(status, micros);
        if let Some(route) = route {
            self.route(route).observe(status, micros);
        }
    }

    /// The counters of `route`, made on first use while fewer than `MAX_ROUTES` exist.
    fn route(&self, route: &str) -> Arc<Counters> {
        let find = |routes: &[(Box<str>, Arc<Counters>)], name: &str| {
            routes
                .iter()
                .find(|(r, _)| &**r == name)
                .map(|(_, c)| c.clone())
        };
        {
            let routes = self.routes.read().unwrap_or_else(|e| e.into_inner());
            if let Some(c) = find(&routes, route) {
                return c;
            }
        }
        let mut routes = self.routes.write().unwrap_or_else(|e| e.into_inner());
        let name = if routes.len() < MAX_ROUTES || routes.iter().any(|(r, _)| &**r == route) {
            route
        } else {
            OTHER_ROUTE
        };
        if let Some(c) = find(&routes, name) {
            return c;
        }
        let c = Arc::new(Counters::default());
        routes.push((name.into(), c.clone()));
        c
    }

    fn snapshot(&self, service: &str, release: &str) -> ReleaseTraffic {
        let (requests, errors, latency) = self.all.read();
        let routes = self
            .routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(route, c)| {
                let (requests, errors, latency) = c.read();
                RouteTraffic {
                    route: route.to_string(),
                    requests,
                    errors,
                    latency,
                }
            })
            .collect();
        ReleaseTraffic {
            service: service.to_string(),
            release: release.to_string(),
            requests,
            errors,
            latency,
            routes,
        }
    }
}

/// The metric handles of one service and release, looked up once per routing table instead of
/// once per request.
#[derive(Clone)]
pub struct ReleaseMetrics {
    stats: Arc<ReleaseStats>,
    labels: ServiceLabels,
    family: Family<RequestLabels, Counter>,
    /// By status class, made on first use: index 1 for 1xx ... 5 for 5xx.
    requests: Arc<[OnceLock<Counter>; 6]>,
    latency: Histogram,
    bytes: Counter,
}

impl ReleaseMetrics {
    /// Counts a finished request; `route` is its route pattern for the rollout engine's
    /// per-route counters (`berth_model::traffic::route_pattern`).
    pub fn observe(&self, route: Option<&str>, status: u16, seconds: f64, bytes: u64) {
        let class = (status / 100).min(5);
        self.requests[class as usize]
            .get_or_init(|| {
                self.family
                    .get_or_create(&RequestLabels {
                        service: self.labels.service.clone(),
                        release: self.labels.release.clone(),
                        status: format!("{class}xx"),
                    })
                    .clone()
            })
            .inc();
        self.latency.observe(seconds);
        self.bytes.inc_by(bytes);
        self.stats.observe(route, status, seconds);
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct ServiceNameLabels {
    pub service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct WafLabels {
    pub group: &'static str,
    pub rule: &'static str,
    pub action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct AlgorithmLabels {
    pub algorithm: &'static str,
}

pub struct EdgeMetrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<ServiceLabels, Histogram, fn() -> Histogram>,
    pub bytes_sent: Family<ServiceLabels, Counter>,
    pub connections: Gauge<i64, std::sync::atomic::AtomicI64>,
    pub upstream_healthy: Family<UpstreamLabels, Gauge<i64, std::sync::atomic::AtomicI64>>,
    pub upstream_in_flight: Family<UpstreamLabels, Gauge<i64, std::sync::atomic::AtomicI64>>,
    pub table_version: Gauge<u64, AtomicU64>,
    pub tls_handshakes: Counter,
    /// Requests and connections refused by a guard, by reason.
    pub blocked: Family<ReasonLabels, Counter>,
    /// WAF findings by group, rule and action (block or count).
    pub waf_findings: Family<WafLabels, Counter>,
    /// Requests the WAF blocked, by the service they were routed to.
    pub waf_blocked: Family<ServiceNameLabels, Counter>,
    /// Requests under a cache rule by what the cache did (hit, miss, stale, bypass).
    pub cache_requests: Family<CacheLabels, Counter>,
    /// Answers the cache holds (with `Vary` markers) and the bytes they weigh.
    pub cache_entries: Gauge<i64, std::sync::atomic::AtomicI64>,
    pub cache_bytes: Gauge<i64, std::sync::atomic::AtomicI64>,
    /// Answers removed by purges and invalidations.
    pub cache_purged: Counter,
    /// What became of the cache's fills, by outcome (see [`CACHE_FILL_OUTCOMES`]).
    pub cache_fills: Family<CacheFillLabels, Counter>,
    /// The store's own counters as last carried into `cache_fills`, and which store they were
    /// read from (a new `[cache]` makes a new store, whose counters start again from zero).
    cache_fills_seen: Mutex<(usize, [u64; 5])>,
    /// Response compression: answers, bytes in and out, by algorithm.
    pub compress: crate::compress::CompressCounters,
    /// Per (service, release): the rollout engine's counters.
    stats: Mutex<HashMap<(String, String), Arc<ReleaseStats>>>,
}

impl Default for EdgeMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl EdgeMetrics {
    /// Carries the response cache's own counters into `cache_fills`: what each grew by since
    /// the last scrape. `store` tells stores apart; a new one's counters count from zero.
    pub fn export_cache_stats(&self, store: usize, stats: &berth_cache::Stats) {
        let now = [
            stats.stored.load(Ordering::Relaxed),
            stats.not_stored.load(Ordering::Relaxed),
            stats.over_budget.load(Ordering::Relaxed),
            stats.revalidated.load(Ordering::Relaxed),
            stats.coalesced.load(Ordering::Relaxed),
        ];
        let mut seen = self
            .cache_fills_seen
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if seen.0 != store {
            *seen = (store, [0; 5]);
        }
        for ((outcome, now), seen) in CACHE_FILL_OUTCOMES.iter().zip(now).zip(seen.1.iter_mut()) {
            let grew = now.saturating_sub(*seen);
            if grew > 0 {
                self.cache_fills
                    .get_or_create(&CacheFillLabels { outcome })
                    .inc_by(grew);
            }
            *seen = now;
        }
    }

    /// Counts one WAF finding.
    pub fn waf_finding(&self, group: &'static str, rule: &'static str, action: &'static str) {
        self.waf_findings
            .get_or_create(&WafLabels {
                group,
                rule,
                action,
            })
            .inc();
    }

    /// Counts one request the WAF blocked on its way to `service`.
    pub fn waf_blocked(&self, service: &str) {
        self.waf_blocked
            .get_or_create(&ServiceNameLabels {
                service: service.to_string(),
            })
            .inc();
    }

    /// Counts one refusal by a guard.
    pub fn blocked(&self, reason: &'static str) {
        self.blocked.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("berth_edge");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by service, release and status class",
            requests.clone(),
        );
        let latency = Family::<ServiceLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "request_duration_seconds",
            "Time from request to the end of the response",
            latency.clone(),
        );
        let bytes_sent = Family::<ServiceLabels, Counter>::default();
        registry.register(
            "response_bytes",
            "Response body bytes sent to clients",
            bytes_sent.clone(),
        );
        let connections = Gauge::default();
        registry.register(
            "client_connections",
            "Open client connections",
            connections.clone(),
        );
        let upstream_healthy = Family::default();
        registry.register(
            "upstream_healthy",
            "1 when a replica takes new requests, 0 when draining or ejected",
            upstream_healthy.clone(),
        );
        let upstream_in_flight = Family::default();
        registry.register(
            "upstream_in_flight",
            "Requests in flight to a replica",
            upstream_in_flight.clone(),
        );
        let table_version = Gauge::default();
        registry.register(
            "routing_table_version",
            "Version of the routing table in use",
            table_version.clone(),
        );
        let blocked = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "blocked",
            "Requests and connections refused by the rate limits, allowlists, connection limits, maintenance mode or the WAF, by reason",
            blocked.clone(),
        );
        let waf_findings = Family::<WafLabels, Counter>::default();
        registry.register(
            "waf_findings",
            "WAF findings by rule group, rule and action (block or count)",
            waf_findings.clone(),
        );
        let waf_blocked = Family::<ServiceNameLabels, Counter>::default();
        registry.register(
            "waf_blocked",
            "Requests the WAF blocked, by service",
            waf_blocked.clone(),
        );
        let cache_requests = Family::<CacheLabels, Counter>::default();
        registry.register(
            "cache_requests",
            "Requests under a cache rule by result (hit, miss, stale, bypass)",
            cache_requests.clone(),
        );
        let cache_entries = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
        registry.register(
            "cache_entries",
            "Entries in the response cache",
            cache_entries.clone(),
        );
        let cache_bytes = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
        registry.register(
            "cache_bytes",
            "Bytes the response cache holds (bodies, headers, keys)",
            cache_bytes.clone(),
        );
        let cache_purged = Counter::default();
        registry.register(
            "cache_purged",
            "Cached answers removed by purges and invalidations",
            cache_purged.clone(),
        );
        let cache_fills = Family::<CacheFillLabels, Counter>::default();
        registry.register(
            "cache_fills",
            "What became of the response cache's fills from the replicas: stored, not_stored, \
             over_budget (passed through unstored: the fill budget was spent), revalidated (a 304 \
             refreshed a stored answer), coalesced (a miss answered by another request's fill), \
             refresh_failed (a stale-while-revalidate refresh that the replicas failed)",
            cache_fills.clone(),
        );
        let tls_handshakes = Counter::default();
        registry.register(
            "tls_handshakes",
            "TLS handshakes completed on the TLS listeners",
            tls_handshakes.clone(),
        );
        let compress = {
            let family = || Family::<AlgorithmLabels, Counter>::default();
            let (answers, input, output) = (family(), family(), family());
            for (name, help, family) in [
                (
                    "compressed_responses",
                    "Answers compressed, by algorithm",
                    &answers,
                ),
                (
                    "compress_in_bytes",
                    "Bytes of answers read into the encoders, by algorithm",
                    &input,
                ),
                (
                    "compress_out_bytes",
                    "Compressed bytes out of the encoders, by algorithm",
                    &output,
                ),
            ] {
                registry.register(name, help, family.clone());
            }
            let busy = Counter::default();
            registry.register(
                "compress_busy",
                "Answers sent uncompressed because the most encoders at once were busy",
                busy.clone(),
            );
            let of = |family: &Family<AlgorithmLabels, Counter>| {
                berth_spec::Coding::ALL.map(|coding| {
                    family
                        .get_or_create(&AlgorithmLabels {
                            algorithm: coding.token(),
                        })
                        .clone()
                })
            };
            crate::compress::CompressCounters::new(of(&answers), of(&input), of(&output), busy)
        };
        Self {
            registry,
            cache_requests,
            cache_entries,
            cache_bytes,
            cache_purged,
            cache_fills,
            cache_fills_seen: Mutex::default(),
            compress,
            tls_handshakes,
            blocked,
            waf_findings,
            waf_blocked,
            requests,
            latency,
            bytes_sent,
            connections,
            upstream_healthy,
            upstream_in_flight,
            table_version,
            stats: Mutex::default(),
        }
    }

    /// The counters of each release of `service` (every service when `None`).
    pub fn traffic(&self, service: Option<&str>) -> Vec<ReleaseTraffic> {
        let stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<ReleaseTraffic> = stats
            .iter()
            .filter(|((s, _), _)| service.is_none_or(|wanted| wanted == s))
            .map(|((s, r), stats)| stats.snapshot(s, r))
            .collect();
        out.sort_by(|a, b| (&a.service, &a.release).cmp(&(&b.service, &b.release)));
        out
    }

    /// The handles for a service and release (`-` when no replica was chosen).
    pub fn release(&self, service: &str, release: &str) -> ReleaseMetrics {
        let labels = ServiceLabels {
            service: service.to_string(),
            release: release.to_string(),
        };
        let stats = self
            .stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((service.to_string(), release.to_string()))
            .or_default()
            .clone();
        ReleaseMetrics {
            stats,
            family: self.requests.clone(),
            requests: Arc::default(),
            latency: self.latency.get_or_create(&labels).clone(),
            bytes: self.bytes_sent.get_or_create(&labels).clone(),
            labels,
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_counted_apart_up_to_the_cap_then_as_other() {
        let metrics = EdgeMetrics::new();
        let m = metrics.release("web", "r1");
        for i in 0..MAX_ROUTES + 10 {
            m.observe(Some(&format!("/r{i}")), 200, 0.002, 10);
        }
        m.observe(Some("/r0"), 503, 0.5, 10);
        m.observe(None, 200, 0.002, 10);
        let t = &metrics.traffic(Some("web"))[0];
        assert_eq!(t.requests, MAX_ROUTES as u64 + 12);
        assert_eq!(t.errors, 1);
        assert_eq!(t.routes.len(), MAX_ROUTES + 1);
        let r0 = t.route("/r0").unwrap();
        assert_eq!((r0.requests, r0.errors), (2, 1));
        assert_eq!(t.route(OTHER_ROUTE).unwrap().requests, 10);
        assert!(t.route(&format!("/r{}", MAX_ROUTES + 1)).is_none());
    }
}
