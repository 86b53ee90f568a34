//! `TrafficControl`: the small trait through which the rollout engine moves traffic between
//! releases and the supervisor drains a replica before stopping it. The control plane's edge
//! link implements it; mechanisms only see the trait.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How the rollout engine moves traffic between releases, and how the supervisor drains a
/// replica before stopping it. Implemented by the control plane's edge client.
#[async_trait::async_trait]
pub trait TrafficControl: Send + Sync + 'static {
    /// Sets the weights (0-100) of a service's releases; applies to the next request.
    /// An empty map returns the service to a single group of all its healthy replicas.
    async fn set_weights(
        &self,
        service: &str,
        weights: BTreeMap<String, u32>,
    ) -> anyhow::Result<()>;
    /// Waits until the edge sends nothing new to `replica` and has no request in flight to it,
    /// or until `timeout`.
    async fn drain(&self, replica: &str, timeout: Duration);
    /// Makes sure the edge routes by the replica board as it is now (pushes the table), e.g.
    /// before checking replicas that just turned healthy through it.
    async fn refresh(&self) -> anyhow::Result<()>;
    /// What the edge counted per release of `service` since it started.
    async fn traffic(&self, service: &str) -> anyhow::Result<Vec<ReleaseTraffic>>;
    /// What the edge had counted for `service` at least `age` ago (else as early as there is a
    /// reading), with how long ago that was; None when there is no earlier reading.
    async fn traffic_before(
        &self,
        _service: &str,
        _age: Duration,
    ) -> Option<(Duration, Vec<ReleaseTraffic>)> {
        None
    }
}

/// Buckets of a [`Latency`] histogram: four per power of two of microseconds (about 19%
/// resolution), from 1 µs to over two minutes.
pub const LATENCY_BUCKETS: usize = 108;

/// The bucket of a latency of `micros` microseconds.
pub fn latency_bucket(micros: u64) -> usize {
    if micros < 4 {
        return micros as usize;
    }
    let exp = 63 - micros.leading_zeros() as usize; // >= 2
    let sub = ((micros >> (exp - 2)) & 3) as usize;
    (4 * (exp - 1) + sub).min(LATENCY_BUCKETS - 1)
}

/// The exclusive upper bound, in microseconds, of bucket `index`.
pub fn latency_bucket_upper(index: usize) -> u64 {
    if index < 4 {
        return index as u64 + 1;
    }
    let exp = index / 4 + 1;
    let sub = (index % 4) as u64;
    (5 + sub) << (exp - 2)
}

/// What the edge counted for one release of one service since it started: requests, those that
/// failed (5xx answers, including the edge's own 502/504 when the replica could not be reached),
/// and a latency histogram. The rollout engine takes differences of two of these to analyse a
/// window.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseTraffic {
    pub service: String,
    pub release: String,
    pub requests: u64,
    pub errors: u64,
    /// Counts per bucket (see [`latency_bucket`]); may be shorter than [`LATENCY_BUCKETS`].
    pub latency: Vec<u64>,
    /// The same counters per route pattern (the matched route's path prefix and the next path
    /// segment, ids folded to `:id`; at most [`MAX_ROUTES`] per release, the rest under
    /// [`OTHER_ROUTE`]). Empty from an edge that does not count per route.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteTraffic>,
}

/// The most route patterns the edge counts apart per release; later ones are counted together
/// under [`OTHER_ROUTE`].
pub const MAX_ROUTES: usize = 64;

/// Where the edge counts the requests of route patterns beyond [`MAX_ROUTES`].
pub const OTHER_ROUTE: &str = "other";

/// What the edge counted for one route pattern of one release (see [`ReleaseTraffic::routes`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteTraffic {
    pub route: String,
    pub requests: u64,
    pub errors: u64,
    /// Counts per bucket (see [`latency_bucket`]); may be shorter than [`LATENCY_BUCKETS`].
    pub latency: Vec<u64>,
}

impl RouteTraffic {
    /// What happened between `earlier` and `self` (see [`ReleaseTraffic::since`]).
    pub fn since(&self, earlier: &RouteTraffic) -> RouteTraffic {
        if self.requests < earlier.requests {
            return self.clone();
        }
        RouteTraffic {
            route: self.route.clone(),
            requests: self.requests - earlier.requests,
            errors: self.errors.saturating_sub(earlier.errors),
            latency: bucket_difference(&self.latency, &earlier.latency),
        }
    }
}

/// `later - earlier`, bucket by bucket.
fn bucket_difference(later: &[u64], earlier: &[u64]) -> Vec<u64> {
    later
        .iter()
        .enumerate()
        .map(|(i, n)| n.saturating_sub(earlier.get(i).copied().unwrap_or(0)))
        .collect()
}

/// The route pattern the edge counts a request under: the matched route's path prefix, then
/// the request path's next segment (`/api` + `/api/users/7` → `/api/users`; `/` + `/whoami` →
/// `/whoami`), with a segment that holds a digit or is longer than 32 bytes folded to `:id`.
/// Bounded by construction: at most two segments of at most 32 bytes beyond the prefix.
pub fn route_pattern(prefix: &str, path: &str) -> String {
    let prefix = prefix.trim_end_matches('/');
    let rest = path.get(prefix.len()..).unwrap_or("");
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let segment = rest.trim_start_matches('/').split('/').next().unwrap_or("");
    let mut out = String::with_capacity(prefix.len() + 1 + segment.len().min(32));
    out.push_str(prefix);
    if segment.is_empty() {
        if out.is_empty() {
            out.push('/');
        }
        return out;
    }
    out.push('/');
    if segment.len() > 32 || segment.bytes().any(|b| b.is_ascii_digit()) {
        out.push_str(":id");
    } else {
        out.push_str(segment);
    }
    out
}

impl ReleaseTraffic {
    /// What happened between `earlier` and `self` (counters only grow while an edge runs; a
    /// restarted edge starts from zero, in which case `self` is taken whole).
    pub fn since(&self, earlier: &ReleaseTraffic) -> ReleaseTraffic {
        if self.requests < earlier.requests {
            return self.clone();
        }
        let empty = RouteTraffic::default();
        let routes = self
            .routes
            .iter()
            .map(|r| r.since(earlier.route(&r.route).unwrap_or(&empty)))
            .filter(|r| r.requests > 0)
            .collect();
        ReleaseTraffic {
            service: self.service.clone(),
            release: self.release.clone(),
            requests: self.requests - earlier.requests,
            errors: self.errors.saturating_sub(earlier.errors),
            latency: bucket_difference(&self.latency, &earlier.latency),
            routes,
        }
    }

    /// The counters of one route pattern.
    pub fn route(&self, route: &str) -> Option<&RouteTraffic> {
        self.routes.iter().find(|r| r.route == route)
    }

    /// Percent of requests that failed (0 without requests).
    pub fn error_percent(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors as f64 * 100.0 / self.requests as f64
        }
    }

    /// The `q` quantile (0-1) of the latency, as its bucket's upper bound; None without data.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let total: u64 = self.latency.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, count) in self.latency.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(Duration::from_micros(latency_bucket_upper(i)));
            }
        }
        None
    }
}

/// The edge's counters as read every few seconds, newest last, so that a deploy can look at
/// the traffic just before it started (the baseline of a blue/green switch, when the old
/// release takes no traffic after it). Bounded: at most [`TrafficReadings::CAPACITY`] readings;
/// when full, every other reading of the older half is dropped, so the span covered grows while
/// the memory does not.
#[derive(Debug, Default)]
pub struct TrafficReadings {
    readings: std::collections::VecDeque<(std::time::Instant, Vec<ReleaseTraffic>)>,
}

impl TrafficReadings {
    /// The most readings kept.
    pub const CAPACITY: usize = 96;

    /// Adds the reading taken at `at` (readings come in time order).
    pub fn record(&mut self, at: std::time::Instant, traffic: Vec<ReleaseTraffic>) {
        if self.readings.len() >= Self::CAPACITY {
            let older = self.readings.len() / 2;
            let mut index = 0;
            self.readings.retain(|_| {
                let keep = index >= older || index % 2 == 0;
                index += 1;
                keep
            });
        }
        self.readings.push_back((at, traffic));
    }

    /// The newest reading at least `age` older than `now`, else the oldest there is, with its
    /// age; only `service`'s releases. None before the first reading.
    pub fn at_least(
        &self,
        now: std::time::Instant,
        age: Duration,
        service: &str,
    ) -> Option<(Duration, Vec<ReleaseTraffic>)> {
        let (at, traffic) = self
            .readings
            .iter()
            .rev()
            .find(|(at, _)| now.saturating_duration_since(*at) >= age)
            .or_else(|| self.readings.front())?;
        let only: Vec<ReleaseTraffic> = traffic
            .iter()
            .filter(|t| t.service == service)
            .cloned()
            .collect();
        Some((now.saturating_duration_since(*at), only))
    }

    pub fn len(&self) -> usize {
        self.readings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.readings.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(service: &str, release: &str, requests: u64) -> Vec<ReleaseTraffic> {
        vec![ReleaseTraffic {
            service: service.into(),
            release: release.into(),
            requests,
            ..Default::default()
        }]
    }

    #[test]
    fn readings_give_the_newest_one_old_enough_else_the_oldest() {
        let start = std::time::Instant::now();
        let mut readings = TrafficReadings::default();
        let now = start + Duration::from_secs(30);
        assert!(readings
            .at_least(now, Duration::from_secs(8), "web")
            .is_none());
        for i in 0..7u64 {
            readings.record(start + Duration::from_secs(5 * i), reading("web", "r1", i));
        }
        // Readings at 0, 5, ..., 30 s; 8 s before 30 s is 22 s: the newest old enough is 20 s.
        let (age, found) = readings
            .at_least(now, Duration::from_secs(8), "web")
            .unwrap();
        assert_eq!(age, Duration::from_secs(10));
        assert_eq!(found[0].requests, 4);
        // Older than all of them: the oldest.
        let (age, found) = readings
            .at_least(now, Duration::from_secs(600), "web")
            .unwrap();
        assert_eq!(age, Duration::from_secs(30));
        assert_eq!(found[0].requests, 0);
        // Another service's releases are left out.
        let (_, found) = readings
            .at_least(now, Duration::from_secs(8), "api")
            .unwrap();
        assert!(found.is_empty());
    }

    #[test]
    fn readings_stay_bounded_and_keep_the_newest_and_the_oldest() {
        let start = std::time::Instant::now();
        let mut readings = TrafficReadings::default();
        for i in 0..10_000u64 {
            readings.record(start + Duration::from_secs(i), reading("web", "r1", i));
        }
        assert!(readings.len() <= TrafficReadings::CAPACITY);
        let now = start + Duration::from_secs(9_999);
        let (age, newest) = readings.at_least(now, Duration::ZERO, "web").unwrap();
        assert_eq!((age, newest[0].requests), (Duration::ZERO, 9_999));
        let (_, oldest) = readings
            .at_least(now, Duration::from_secs(100_000), "web")
            .unwrap();
        assert_eq!(oldest[0].requests, 0);
    }

    #[test]
    fn buckets_are_contiguous_and_ordered() {
        let mut last = 0;
        for micros in 0..100_000u64 {
            let b = latency_bucket(micros);
            assert!(b >= last, "{micros}");
            assert!(micros < latency_bucket_upper(b), "{micros} in {b}");
            if b > 0 {
                assert!(micros >= latency_bucket_upper(b - 1), "{micros} in {b}");
            }
            last = b;
        }
        assert_eq!(latency_bucket(u64::MAX), LATENCY_BUCKETS - 1);
    }

    #[test]
    fn quantiles_and_windows() {
        let before = ReleaseTraffic {
            latency: vec![0; LATENCY_BUCKETS],
            ..Default::default()
        };
        let mut after = before.clone();
        for _ in 0..98 {
            after.latency[latency_bucket(1_000)] += 1;
        }
        for _ in 0..2 {
            after.latency[latency_bucket(300_000)] += 1;
        }
        after.requests = 100;
        after.errors = 7;
        let window = after.since(&before);
        assert_eq!(window.error_percent(), 7.0);
        let p50 = window.quantile(0.5).unwrap();
        assert!(p50 >= Duration::from_micros(1_000) && p50 < Duration::from_micros(1_300));
        let p99 = window.quantile(0.99).unwrap();
        assert!(p99 >= Duration::from_millis(300) && p99 < Duration::from_millis(400));
        assert_eq!(ReleaseTraffic::default().quantile(0.99), None);
    }

    #[test]
    fn route_windows_subtract_by_name() {
        let route = |name: &str, requests: u64| RouteTraffic {
            route: name.into(),
            requests,
            errors: 0,
            latency: vec![requests],
        };
        let before = ReleaseTraffic {
            requests: 10,
            routes: vec![route("/a", 10)],
            ..Default::default()
        };
        let after = ReleaseTraffic {
            requests: 25,
            routes: vec![route("/a", 12), route("/b", 13)],
            ..Default::default()
        };
        let window = after.since(&before);
        assert_eq!(window.routes, vec![route("/a", 2), route("/b", 13)]);
    }

    #[test]
    fn route_patterns_are_bounded() {
        assert_eq!(route_pattern("/", "/"), "/");
        assert_eq!(route_pattern("/", "/whoami?x=1"), "/whoami");
        assert_eq!(route_pattern("/", "/users/42/edit"), "/users");
        assert_eq!(route_pattern("/", "/42"), "/:id");
        assert_eq!(route_pattern("/api", "/api"), "/api");
        assert_eq!(route_pattern("/api/", "/api/users/7"), "/api/users");
        assert_eq!(route_pattern("/api", "/api/v2"), "/api/:id");
        assert_eq!(route_pattern("/", &format!("/{}", "a".repeat(40))), "/:id");
    }
}
