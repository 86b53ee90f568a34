//! The circuit breaker: the rules that roll a deploy back, evaluated on the new release's health
//! (from the replica board) and its traffic (from the edge's counters), with the references'
//! defaults: health failing for 2 minutes, error rate over 5%, p99 over 3x the old release's.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use berth_model::deploy::Verdict;
use berth_model::traffic::ReleaseTraffic;
use berth_model::{Health, ReplicaBoard};
use berth_spec::AnalysisSpec;

/// The fewest requests (of the new release, and of the old one for its baseline) a p99 is
/// compared on.
pub const LATENCY_MIN_SAMPLES: u64 = 100;

/// The numbers of one analysis, for the journal.
#[derive(Debug, Clone, Default)]
pub struct Reading {
    pub new: ReleaseTraffic,
    pub baseline: ReleaseTraffic,
}

impl Reading {
    pub fn describe(&self) -> String {
        let p99 = |t: &ReleaseTraffic| {
            t.quantile(0.99)
                .map(|d| format!("{}ms", d.as_millis()))
                .unwrap_or_else(|| "-".into())
        };
        format!(
            "{} requests, {:.1}% errors, p99 {} (old: {} requests, p99 {})",
            self.new.requests,
            self.new.error_percent(),
            p99(&self.new),
            self.baseline.requests,
            p99(&self.baseline)
        )
    }
}

/// Evaluates the rules for one deploy.
pub struct Analysis {
    pub spec: AnalysisSpec,
    pub service: String,
    pub new_release: String,
    pub old_release: Option<String>,
    /// The edge's counters when the deploy started (the old release's baseline runs from here).
    pub at_start: Vec<ReleaseTraffic>,
    /// The edge's counters when the new release first took user traffic.
    pub at_traffic: Option<Vec<ReleaseTraffic>>,
    /// When the new release first took user traffic.
    pub traffic_since: Option<Instant>,
    unhealthy_since: HashMap<String, Instant>,
}

fn find<'a>(all: &'a [ReleaseTraffic], release: &str) -> Option<&'a ReleaseTraffic> {
    all.iter().find(|t| t.release == release)
}

impl Analysis {
    pub fn new(
        spec: AnalysisSpec,
        service: &str,
        new_release: &str,
        old_release: Option<&str>,
        at_start: Vec<ReleaseTraffic>,
    ) -> Self {
        Self {
            spec,
            service: service.to_string(),
            new_release: new_release.to_string(),
            old_release: old_release.map(str::to_string),
            at_start,
            at_traffic: None,
            traffic_since: None,
            unhealthy_since: HashMap::new(),
        }
    }

    /// Marks the moment the new release first takes user traffic (only the first call counts).
    pub fn traffic_started(&mut self, now: Vec<ReleaseTraffic>) {
        if self.at_traffic.is_none() {
            self.at_traffic = Some(now);
            self.traffic_since = Some(Instant::now());
        }
    }

    /// Whether the analysis window (from the first user traffic) is over.
    pub fn window_over(&self) -> bool {
        self.traffic_since
            .is_some_and(|since| since.elapsed() >= self.spec.window)
    }

    /// What is left of the window.
    pub fn window_left(&self) -> Duration {
        match self.traffic_since {
            Some(since) => self.spec.window.saturating_sub(since.elapsed()),
            None => self.spec.window,
        }
    }

    /// The new release's traffic since it first took some, and the old release's since the
    /// deploy started.
    pub fn reading(&self, now: &[ReleaseTraffic]) -> Reading {
        let empty = ReleaseTraffic::default();
        let new = match (&self.at_traffic, find(now, &self.new_release)) {
            (Some(before), Some(current)) => {
                current.since(find(before, &self.new_release).unwrap_or(&empty))
            }
            _ => ReleaseTraffic::default(),
        };
        // The old release's baseline: what it served during this deploy, or, when that is too
        // little to compare a p99 on (a blue/green switch comes seconds after the start), all it
        // served since the edge started.
        let baseline = match self
            .old_release
            .as_deref()
            .and_then(|old| Some((old, find(now, old)?)))
        {
            Some((old, current)) => {
                let during = current.since(find(&self.at_start, old).unwrap_or(&empty));
                if during.requests >= self.spec.min_requests.max(LATENCY_MIN_SAMPLES) {
                    during
                } else {
                    current.clone()
                }
            }
            None => ReleaseTraffic::default(),
        };
        Reading { new, baseline }
    }

    /// The health rule: a replica of the new release that crash-looped, or failed its health
    /// checks for longer than `health_window`.
    pub fn health_verdict(&mut self, board: &ReplicaBoard) -> Option<Verdict> {
        let now = Instant::now();
        for status in board.snapshot() {
            if status.service != self.service || status.release != self.new_release {
                continue;
            }
            match status.health {
                Health::Failed => {
                    return Some(Verdict {
                        rule: "health".into(),
                        message: format!(
                            "{} of {} crash-looped (last exit: {})",
                            status.replica,
                            self.new_release,
                            status.last_exit.as_deref().unwrap_or("none")
                        ),
                    })
                }
                Health::Unhealthy => {
                    let since = *self
                        .unhealthy_since
                        .entry(status.replica.clone())
                        .or_insert(now);
                    if now.duration_since(since) >= self.spec.health_window {
                        return Some(Verdict {
                            rule: "health".into(),
                            message: format!(
                                "{} of {} failed its health checks for {}s (limit {}s)",
                                status.replica,
                                self.new_release,
                                now.duration_since(since).as_secs(),
                                self.spec.health_window.as_secs()
                            ),
                        });
                    }
                }
                _ => {
                    self.unhealthy_since.remove(&status.replica);
                }
            }
        }
        None
    }

    /// The traffic rules (error rate, latency), once the new release has served enough requests.
    pub fn traffic_verdict(&self, reading: &Reading) -> Option<Verdict> {
        let new = &reading.new;
        if new.requests < self.spec.min_requests {
            return None;
        }
        let rate = new.error_percent();
        if rate > self.spec.error_rate {
            return Some(Verdict {
                rule: "error-rate".into(),
                message: format!(
                    "{rate:.1}% of {} requests to {} failed (limit {:.1}%)",
                    new.requests, self.new_release, self.spec.error_rate
                ),
            });
        }
        // A p99 of a few dozen requests is just the slowest one or two (a cold first request).
        let latency_samples = self.spec.min_requests.max(LATENCY_MIN_SAMPLES);
        let base = &reading.baseline;
        if new.requests >= latency_samples && base.requests >= latency_samples {
            if let (Some(p99), Some(base_p99)) = (new.quantile(0.99), base.quantile(0.99)) {
                let limit = base_p99.mul_f64(self.spec.latency_factor);
                if p99 > limit && p99 >= base_p99 + self.spec.latency_margin {
                    return Some(Verdict {
                        rule: "latency".into(),
                        message: format!(
                            "p99 of {} is {}ms, over {:.1}x the {}ms of {} (limit {}ms)",
                            self.new_release,
                            p99.as_millis(),
                            self.spec.latency_factor,
                            base_p99.as_millis(),
                            self.old_release.as_deref().unwrap_or("-"),
                            limit.max(base_p99 + self.spec.latency_margin).as_millis()
                        ),
                    });
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_model::traffic::{latency_bucket, LATENCY_BUCKETS};

    fn traffic(release: &str, requests: u64, errors: u64, millis: u64) -> ReleaseTraffic {
        let mut latency = vec![0; LATENCY_BUCKETS];
        latency[latency_bucket(millis * 1000)] = requests;
        ReleaseTraffic {
            service: "web".into(),
            release: release.into(),
            requests,
            errors,
            latency,
        }
    }

    fn analysis() -> Analysis {
        let spec = AnalysisSpec {
            min_requests: 20,
            ..AnalysisSpec::default()
        };
        let mut a = Analysis::new(
            spec,
            "web",
            "r2",
            Some("r1"),
            vec![traffic("r1", 100, 0, 2)],
        );
        a.traffic_started(vec![traffic("r1", 150, 0, 2)]);
        a
    }

    #[test]
    fn no_verdict_before_the_minimum_request_count() {
        let a = analysis();
        let now = vec![traffic("r1", 300, 0, 2), traffic("r2", 10, 10, 2)];
        assert_eq!(a.traffic_verdict(&a.reading(&now)), None);
    }

    #[test]
    fn error_rate_over_the_limit_fires_with_the_numbers() {
        let a = analysis();
        let now = vec![traffic("r1", 300, 0, 2), traffic("r2", 40, 8, 2)];
        let v = a.traffic_verdict(&a.reading(&now)).unwrap();
        assert_eq!(v.rule, "error-rate");
        assert!(
            v.message.contains("20.0% of 40 requests to r2"),
            "{}",
            v.message
        );
        let fine = vec![traffic("r1", 300, 0, 2), traffic("r2", 40, 2, 2)];
        assert_eq!(a.traffic_verdict(&a.reading(&fine)), None);
    }

    #[test]
    fn latency_fires_only_over_the_factor_and_the_margin() {
        let a = analysis();
        // Old: 200 requests at 2 ms since the start. New: 300 ms.
        let slow = vec![traffic("r1", 300, 0, 2), traffic("r2", 120, 0, 300)];
        let v = a.traffic_verdict(&a.reading(&slow)).unwrap();
        assert_eq!(v.rule, "latency", "{v:?}");
        // Too few requests for a p99.
        let few = vec![traffic("r1", 300, 0, 2), traffic("r2", 40, 0, 300)];
        assert_eq!(a.traffic_verdict(&a.reading(&few)), None);
        // 4x but only a few milliseconds slower: noise, not a regression.
        let noise = vec![traffic("r1", 300, 0, 2), traffic("r2", 120, 0, 8)];
        assert_eq!(a.traffic_verdict(&a.reading(&noise)), None);
    }

    #[test]
    fn a_short_pre_switch_falls_back_to_the_old_release_history() {
        let a = analysis();
        // The old release served only 50 requests during the deploy (a quick blue/green switch):
        // its 150 since the edge started are the baseline.
        let slow = vec![traffic("r1", 150, 0, 2), traffic("r2", 120, 0, 300)];
        let reading = a.reading(&slow);
        assert_eq!(reading.baseline.requests, 150);
        assert_eq!(a.traffic_verdict(&reading).unwrap().rule, "latency");
    }
}
