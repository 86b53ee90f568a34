//! Upstream pools: a service's target groups, and the choice of one replica per request —
//! sticky cookie first, then a target group by weight, then a replica by least outstanding
//! requests (the ALB's default) or round robin. Replicas that refused a connection are ejected
//! for a while (passive health), before the supervisor's active check notices.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_model::routing::{ServicePool, Sticky, Target};
use berth_spec::Balance;
use rand::Rng;

/// How long a replica that refused a connection or timed out gets no new requests.
pub const EJECTION: Duration = Duration::from_secs(10);

/// Live counters of one replica, kept across routing-table updates.
#[derive(Debug)]
pub struct TargetStats {
    pub in_flight: AtomicUsize,
    /// Kept-alive connections to this replica.
    pub idle: crate::upstream::IdleConnections,
    /// Milliseconds since the edge started until which this replica is ejected (0: never).
    ejected_until_ms: AtomicU64,
    started: Instant,
}

impl TargetStats {
    fn new(started: Instant) -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            idle: Default::default(),
            ejected_until_ms: AtomicU64::new(0),
            started,
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    pub fn eject(&self, for_how_long: Duration) {
        let until = self.now_ms() + for_how_long.as_millis() as u64;
        self.ejected_until_ms.store(until, Ordering::Relaxed);
    }

    pub fn is_ejected(&self) -> bool {
        self.ejected_until_ms.load(Ordering::Relaxed) > self.now_ms()
    }
}

/// Stats by (replica, address), shared by successive compiled tables.
#[derive(Debug)]
pub struct StatsRegistry {
    stats: Mutex<HashMap<(String, SocketAddr), Arc<TargetStats>>>,
    started: Instant,
}

impl Default for StatsRegistry {
    fn default() -> Self {
        Self {
            stats: Mutex::default(),
            started: Instant::now(),
        }
    }
}

impl StatsRegistry {
    pub fn get(&self, target: &Target) -> Arc<TargetStats> {
        self.stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((target.replica.clone(), target.addr))
            .or_insert_with(|| Arc::new(TargetStats::new(self.started)))
            .clone()
    }

    /// In-flight requests per replica (all known addresses summed).
    pub fn in_flight(&self) -> HashMap<String, usize> {
        let mut out = HashMap::new();
        for ((replica, _), stats) in self.stats.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            *out.entry(replica.clone()).or_default() += stats.in_flight.load(Ordering::Relaxed);
        }
        out
    }

    /// Forgets replicas absent from the newest table that have nothing in flight.
    pub fn retain(&self, live: &[(String, SocketAddr)]) {
        self.stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|key, stats| live.contains(key) || stats.in_flight.load(Ordering::Relaxed) > 0);
    }
}

#[derive(Clone)]
pub struct Upstream {
    pub target: Target,
    pub stats: Arc<TargetStats>,
    /// `http://127.0.0.1:PORT`, made once per table.
    pub origin: Arc<str>,
    pub metrics: Option<crate::metrics::ReleaseMetrics>,
}

impl Upstream {
    fn available(&self) -> bool {
        !self.target.draining && !self.stats.is_ejected()
    }
}

struct Group {
    release: String,
    weight: u32,
    upstreams: Vec<Upstream>,
}

/// One service's compiled pool.
pub struct Pool {
    balance: Balance,
    pub sticky: Option<Sticky>,
    groups: Vec<Group>,
    next: AtomicUsize,
}

/// A chosen replica; its in-flight count drops when this is dropped.
pub struct Lease {
    pub upstream: Upstream,
}

impl Lease {
    fn new(upstream: Upstream) -> Self {
        upstream.stats.in_flight.fetch_add(1, Ordering::Relaxed);
        Self { upstream }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.upstream
            .stats
            .in_flight
            .fetch_sub(1, Ordering::Relaxed);
    }
}

impl Pool {
    pub fn new(spec: &ServicePool, registry: &StatsRegistry) -> Self {
        Self::with_metrics(spec, registry, |_| None)
    }

    /// A pool whose upstreams carry their release's metric handles.
    pub fn with_metrics(
        spec: &ServicePool,
        registry: &StatsRegistry,
        metrics: impl Fn(&Target) -> Option<crate::metrics::ReleaseMetrics>,
    ) -> Self {
        let groups = spec
            .groups
            .iter()
            .map(|g| Group {
                release: g.release.clone(),
                weight: g.weight,
                upstreams: g
                    .targets
                    .iter()
                    .map(|t| Upstream {
                        target: t.clone(),
                        stats: registry.get(t),
                        origin: Arc::from(format!("http://{}", t.addr)),
                        metrics: metrics(t),
                    })
                    .collect(),
            })
            .collect();
        Self {
            balance: spec.balance,
            sticky: spec.sticky.clone(),
            groups,
            next: AtomicUsize::new(0),
        }
    }

    /// Whether any replica could take a request now.
    pub fn has_available(&self) -> bool {
        self.groups
            .iter()
            .any(|g| g.weight > 0 && g.upstreams.iter().any(Upstream::available))
    }

    /// Chooses a replica: the sticky one when it can take traffic, else one of the group of the
    /// `affinity` release (the release a client landed on during a traffic split) when that group
    /// has weight and a replica to take it, else by weight; then by balance.
    /// `exclude` names a replica not to choose (the one a retry is moving away from).
    pub fn pick(
        &self,
        sticky_replica: Option<&str>,
        affinity: Option<&str>,
        exclude: Option<&str>,
    ) -> Option<Lease> {
        if let Some(wanted) = sticky_replica {
            let found = self
                .groups
                .iter()
                .filter(|g| g.weight > 0)
                .flat_map(|g| g.upstreams.iter())
                .find(|u| u.target.replica == wanted && u.available());
            if let Some(u) = found {
                return Some(Lease::new(u.clone()));
            }
        }
        let usable = |u: &&Upstream| u.available() && Some(u.target.replica.as_str()) != exclude;
        let candidates: Vec<(&Group, usize)> = self
            .groups
            .iter()
            .filter(|g| g.weight > 0)
            .map(|g| (g, g.upstreams.iter().filter(usable).count()))
            .filter(|(_, n)| *n > 0)
            .collect();
        let preferred = affinity.and_then(|release| {
            candidates
                .iter()
                .find(|(g, _)| g.release == release)
                .map(|(g, _)| *g)
        });
        let group = match preferred {
            Some(group) => group,
            None => {
                let total: u32 = candidates.iter().map(|(g, _)| g.weight).sum();
                if total == 0 {
                    return None;
                }
                let mut roll = rand::rng().random_range(0..total);
                candidates
                    .iter()
                    .find(|(g, _)| {
                        if roll < g.weight {
                            true
                        } else {
                            roll -= g.weight;
                            false
                        }
                    })
                    .map(|(g, _)| *g)?
            }
        };
        let upstreams: Vec<&Upstream> = group.upstreams.iter().filter(usable).collect();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let chosen = match self.balance {
            Balance::RoundRobin => upstreams[start % upstreams.len()],
            Balance::LeastOutstanding => {
                // Least in flight; ties broken by rotating the starting point.
                let n = upstreams.len();
                (0..n)
                    .map(|i| upstreams[(start + i) % n])
                    .min_by_key(|u| u.stats.in_flight.load(Ordering::Relaxed))?
            }
        };
        Some(Lease::new(chosen.clone()))
    }

    /// Whether traffic is split between releases (a canary or blue/green under way): then the
    /// edge pins each client to the release it landed on.
    pub fn is_split(&self) -> bool {
        self.groups.iter().filter(|g| g.weight > 0).count() > 1
    }

    /// A replica of `release`, whatever its group's weight (the private test route).
    pub fn pick_release(&self, release: &str) -> Option<Lease> {
        let upstreams: Vec<&Upstream> = self
            .groups
            .iter()
            .flat_map(|g| g.upstreams.iter())
            .filter(|u| u.target.release == release && u.available())
            .collect();
        if upstreams.is_empty() {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let chosen = (0..upstreams.len())
            .map(|i| upstreams[(start + i) % upstreams.len()])
            .min_by_key(|u| u.stats.in_flight.load(Ordering::Relaxed))?;
        Some(Lease::new(chosen.clone()))
    }

    /// Every target, for metrics.
    pub fn upstreams(&self) -> impl Iterator<Item = &Upstream> {
        self.groups.iter().flat_map(|g| g.upstreams.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_model::routing::TargetGroup;

    fn target(replica: &str, release: &str, port: u16) -> Target {
        Target {
            replica: replica.into(),
            release: release.into(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            draining: false,
        }
    }

    fn make_pool(balance: Balance, groups: Vec<(u32, Vec<Target>)>) -> (Pool, StatsRegistry) {
        let registry = StatsRegistry::default();
        let spec = ServicePool {
            balance,
            sticky: None,
            groups: groups
                .into_iter()
                .map(|(weight, targets)| TargetGroup {
                    release: targets
                        .first()
                        .map(|t| t.release.clone())
                        .unwrap_or_default(),
                    weight,
                    targets,
                })
                .collect(),
        };
        (Pool::new(&spec, &registry), registry)
    }

    #[test]
    fn round_robin_spreads_evenly() {
        let (pool, _) = make_pool(
            Balance::RoundRobin,
            vec![(
                100,
                vec![target("web.1", "r1", 1), target("web.2", "r1", 2)],
            )],
        );
        let mut counts = HashMap::new();
        for _ in 0..100 {
            let lease = pool.pick(None, None, None).unwrap();
            *counts
                .entry(lease.upstream.target.replica.clone())
                .or_insert(0) += 1;
        }
        assert_eq!(counts["web.1"], 50);
        assert_eq!(counts["web.2"], 50);
    }

    #[test]
    fn least_outstanding_avoids_the_busy_replica() {
        let (pool, _) = make_pool(
            Balance::LeastOutstanding,
            vec![(
                100,
                vec![target("web.1", "r1", 1), target("web.2", "r1", 2)],
            )],
        );
        let busy = pool.pick(None, None, None).unwrap();
        let busy_name = busy.upstream.target.replica.clone();
        for _ in 0..10 {
            let lease = pool.pick(None, None, None).unwrap();
            assert_ne!(lease.upstream.target.replica, busy_name);
        }
        drop(busy);
    }

    #[test]
    fn weights_split_traffic_and_zero_gets_nothing() {
        let (pool, _) = make_pool(
            Balance::LeastOutstanding,
            vec![
                (90, vec![target("web.1", "r1", 1)]),
                (10, vec![target("web.2", "r2", 2)]),
            ],
        );
        let new = (0..10_000)
            .filter(|_| pool.pick(None, None, None).unwrap().upstream.target.release == "r2")
            .count();
        assert!(
            (800..1200).contains(&new),
            "{new} of 10000 went to the 10% group"
        );

        let (pool, _) = make_pool(
            Balance::LeastOutstanding,
            vec![
                (100, vec![target("web.1", "r1", 1)]),
                (0, vec![target("web.2", "r2", 2)]),
            ],
        );
        assert!(
            (0..1000).all(|_| pool.pick(None, None, None).unwrap().upstream.target.release == "r1")
        );
    }

    #[test]
    fn draining_and_ejected_replicas_get_no_new_requests() {
        let mut draining = target("web.1", "r1", 1);
        draining.draining = true;
        let (pool, _) = make_pool(
            Balance::RoundRobin,
            vec![(
                100,
                vec![draining, target("web.2", "r1", 2), target("web.3", "r1", 3)],
            )],
        );
        let web3 = pool
            .upstreams()
            .find(|u| u.target.replica == "web.3")
            .unwrap()
            .stats
            .clone();
        web3.eject(EJECTION);
        for _ in 0..10 {
            assert_eq!(
                pool.pick(None, None, None).unwrap().upstream.target.replica,
                "web.2"
            );
        }
        // A sticky request for a draining replica goes elsewhere.
        assert_eq!(
            pool.pick(Some("web.1"), None, None)
                .unwrap()
                .upstream
                .target
                .replica,
            "web.2"
        );
        // With the last one excluded, nothing is left.
        assert!(pool.pick(None, None, Some("web.2")).is_none());
    }

    #[test]
    fn sticky_replica_is_kept_while_available() {
        let (pool, _) = make_pool(
            Balance::RoundRobin,
            vec![(
                100,
                vec![target("web.1", "r1", 1), target("web.2", "r1", 2)],
            )],
        );
        for _ in 0..10 {
            assert_eq!(
                pool.pick(Some("web.2"), None, None)
                    .unwrap()
                    .upstream
                    .target
                    .replica,
                "web.2"
            );
        }
    }

    #[test]
    fn leases_count_in_flight_requests_across_tables() {
        let registry = StatsRegistry::default();
        let spec = ServicePool {
            balance: Balance::RoundRobin,
            sticky: None,
            groups: vec![TargetGroup {
                release: "*".into(),
                weight: 100,
                targets: vec![target("web.1", "r1", 1)],
            }],
        };
        let first = Pool::new(&spec, &registry);
        let lease = first.pick(None, None, None).unwrap();
        let second = Pool::new(&spec, &registry);
        assert_eq!(registry.in_flight()["web.1"], 1);
        drop(lease);
        assert_eq!(registry.in_flight()["web.1"], 0);
        drop(second);
    }

    #[test]
    fn affinity_keeps_a_client_on_its_release_while_it_has_weight() {
        let (pool, _) = make_pool(
            Balance::RoundRobin,
            vec![
                (90, vec![target("web.1", "r1", 1)]),
                (10, vec![target("web.2", "r2", 2)]),
            ],
        );
        assert!(pool.is_split());
        assert!((0..200).all(|_| pool
            .pick(None, Some("r2"), None)
            .unwrap()
            .upstream
            .target
            .release
            == "r2"));
        // A release without weight (rolled back) is not kept: the client moves by weight.
        let (rolled_back, _) = make_pool(
            Balance::RoundRobin,
            vec![
                (100, vec![target("web.1", "r1", 1)]),
                (0, vec![target("web.2", "r2", 2)]),
            ],
        );
        assert!(!rolled_back.is_split());
        assert!((0..200).all(|_| rolled_back
            .pick(None, Some("r2"), None)
            .unwrap()
            .upstream
            .target
            .release
            == "r1"));
        // The test route reaches the weightless release.
        assert_eq!(
            rolled_back
                .pick_release("r2")
                .unwrap()
                .upstream
                .target
                .replica,
            "web.2"
        );
        assert!(rolled_back.pick_release("r9").is_none());
    }
}
