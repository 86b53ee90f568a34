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
}

impl ReleaseTraffic {
    /// What happened between `earlier` and `self` (counters only grow while an edge runs; a
    /// restarted edge starts from zero, in which case `self` is taken whole).
    pub fn since(&self, earlier: &ReleaseTraffic) -> ReleaseTraffic {
        if self.requests < earlier.requests {
            return self.clone();
        }
        let latency = (0..self.latency.len())
            .map(|i| self.latency[i].saturating_sub(earlier.latency.get(i).copied().unwrap_or(0)))
            .collect();
        ReleaseTraffic {
            service: self.service.clone(),
            release: self.release.clone(),
            requests: self.requests - earlier.requests,
            errors: self.errors.saturating_sub(earlier.errors),
            latency,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
