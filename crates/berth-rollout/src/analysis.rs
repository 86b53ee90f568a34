//! The circuit breaker: which windows of the edge's counters the [`judge`](crate::judge) compares,
//! and how long the new release's replicas have been unhealthy. The rules themselves (health
//! failing for 2 minutes, error rate over 5%, p99 over 3x the old release's, the Mann-Whitney
//! test per route) are the judge's, a pure function.
//!
//! The baseline is always the old release's traffic in the same window as the new release's:
//! the counters are read when a window starts (the deploy, each canary step, the switch) and at
//! every look, and both releases' differences are compared. The old release's history before the
//! window is never the baseline. After a full switch the old release takes no traffic: its last
//! window with enough requests is the baseline then (flagged `adjacent_baseline`), which may be
//! the analysis window just before the deploy started (the link reads the counters every few
//! seconds), so a switch soon after the start is judged too.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use berth_model::traffic::ReleaseTraffic;
use berth_model::{Health, ReplicaBoard};
use berth_spec::AnalysisSpec;

use crate::judge::{self, Baseline, Canary, Rules};

/// Evaluates the rules for one deploy.
pub struct Analysis {
    pub spec: AnalysisSpec,
    pub service: String,
    pub new_release: String,
    pub old_release: Option<String>,
    /// The edge's counters when the new release first took user traffic.
    pub at_traffic: Option<Vec<ReleaseTraffic>>,
    /// When the new release first took user traffic.
    pub traffic_since: Option<Instant>,
    /// Where the current window starts: when, and the counters then.
    window: (Instant, Vec<ReleaseTraffic>),
    /// The old release's last finished window with at least `min_requests` requests.
    reference: Option<ReleaseTraffic>,
    /// The new release's canary weight in the current window (None: not a canary step).
    weight: Option<u32>,
    unhealthy_since: HashMap<String, Instant>,
}

/// A crash-looped replica (name, last exit), and the replica unhealthy longest (name, for).
type ReplicaTrouble = (Option<(String, String)>, Option<(String, Duration)>);

fn find<'a>(all: &'a [ReleaseTraffic], release: &str) -> Option<&'a ReleaseTraffic> {
    all.iter().find(|t| t.release == release)
}

/// What `release` served between two readings of the counters.
fn between(before: &[ReleaseTraffic], now: &[ReleaseTraffic], release: &str) -> ReleaseTraffic {
    let empty = ReleaseTraffic::default();
    match find(now, release) {
        Some(current) => current.since(find(before, release).unwrap_or(&empty)),
        None => ReleaseTraffic {
            release: release.to_string(),
            ..ReleaseTraffic::default()
        },
    }
}

impl Analysis {
    /// `at_start`: the edge's counters when the deploy started (the first window starts there);
    /// `earlier`: the counters about one analysis window before that, when the link kept them.
    /// The old release's traffic between the two is the first reference: a blue/green switch
    /// right after the deploy starts still has a baseline of the same length as its window.
    pub fn new(
        spec: AnalysisSpec,
        service: &str,
        new_release: &str,
        old_release: Option<&str>,
        earlier: Option<Vec<ReleaseTraffic>>,
        at_start: Vec<ReleaseTraffic>,
    ) -> Self {
        let reference = match (old_release, earlier) {
            (Some(old), Some(earlier)) => Some(between(&earlier, &at_start, old))
                .filter(|last| last.requests >= spec.min_requests),
            _ => None,
        };
        Self {
            spec,
            service: service.to_string(),
            new_release: new_release.to_string(),
            old_release: old_release.map(str::to_string),
            at_traffic: None,
            traffic_since: None,
            window: (Instant::now(), at_start),
            reference,
            weight: None,
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

    /// Starts a new window (a canary step at `weight`, the switch: None) at the counters
    /// `now`. The old release's traffic in the window that ends becomes the reference when it is
    /// enough.
    pub fn begin_window(&mut self, now: Vec<ReleaseTraffic>, weight: Option<u32>) {
        self.weight = weight;
        if let Some(old) = &self.old_release {
            let last = between(&self.window.1, &now, old);
            if last.requests >= self.spec.min_requests {
                self.reference = Some(last);
            }
        }
        self.window = (Instant::now(), now);
    }

    /// How long the current window has run.
    pub fn window_age(&self) -> Duration {
        self.window.0.elapsed()
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

    /// The new release's requests and failures since it first took user traffic.
    pub fn totals(&self, now: &[ReleaseTraffic]) -> (u64, u64) {
        match &self.at_traffic {
            Some(before) => {
                let t = between(before, now, &self.new_release);
                (t.requests, t.errors)
            }
            None => (0, 0),
        }
    }

    /// Both releases over the current window (the counters `now` minus those at its start);
    /// the old release's last window when it served too little in this one.
    pub fn windows(&self, now: &[ReleaseTraffic]) -> (Baseline, ReleaseTraffic) {
        let canary = between(&self.window.1, now, &self.new_release);
        let baseline = match &self.old_release {
            Some(old) => {
                let same = between(&self.window.1, now, old);
                match &self.reference {
                    Some(reference) if same.requests < self.spec.min_requests => Baseline {
                        traffic: reference.clone(),
                        adjacent: true,
                    },
                    _ => Baseline {
                        traffic: same,
                        adjacent: false,
                    },
                }
            }
            None => Baseline::default(),
        };
        (baseline, canary)
    }

    /// The new release's health as the judge reads it: a crash-looped replica, and the replica
    /// unhealthy for longest (tracked from the first look that saw it unhealthy).
    fn health(&mut self, board: &ReplicaBoard) -> ReplicaTrouble {
        let now = Instant::now();
        let mut crashed = None;
        let mut unhealthy: Option<(String, Duration)> = None;
        for status in board.snapshot() {
            if status.service != self.service || status.release != self.new_release {
                continue;
            }
            match status.health {
                Health::Failed => {
                    crashed.get_or_insert((
                        status.replica.clone(),
                        status.last_exit.clone().unwrap_or_else(|| "none".into()),
                    ));
                }
                Health::Unhealthy => {
                    let since = *self
                        .unhealthy_since
                        .entry(status.replica.clone())
                        .or_insert(now);
                    let age = now.duration_since(since);
                    if unhealthy.as_ref().is_none_or(|(_, longest)| age > *longest) {
                        unhealthy = Some((status.replica.clone(), age));
                    }
                }
                _ => {
                    self.unhealthy_since.remove(&status.replica);
                }
            }
        }
        (crashed, unhealthy)
    }

    /// One look: the judge on the current window and the new release's health.
    pub fn judge(&mut self, board: &ReplicaBoard, now: &[ReleaseTraffic]) -> judge::Verdict {
        let (crash_looped, unhealthy) = self.health(board);
        let (baseline, traffic) = self.windows(now);
        let canary = Canary {
            traffic,
            window: self.window_age(),
            crash_looped,
            unhealthy,
            weight: self.weight,
        };
        judge::judge(&baseline, &canary, &Rules::from(&self.spec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_model::traffic::{latency_bucket, RouteTraffic, LATENCY_BUCKETS};

    fn traffic(release: &str, requests: u64, millis: u64) -> ReleaseTraffic {
        let mut latency = vec![0; LATENCY_BUCKETS];
        latency[latency_bucket(millis * 1000)] = requests;
        ReleaseTraffic {
            service: "web".into(),
            release: release.into(),
            requests,
            errors: 0,
            routes: vec![RouteTraffic {
                route: "/".into(),
                requests,
                errors: 0,
                latency: latency.clone(),
            }],
            latency,
        }
    }

    fn sum(a: &ReleaseTraffic, b: &ReleaseTraffic) -> ReleaseTraffic {
        let add = |x: &[u64], y: &[u64]| -> Vec<u64> {
            (0..x.len().max(y.len()))
                .map(|i| x.get(i).unwrap_or(&0) + y.get(i).unwrap_or(&0))
                .collect()
        };
        ReleaseTraffic {
            service: a.service.clone(),
            release: a.release.clone(),
            requests: a.requests + b.requests,
            errors: a.errors + b.errors,
            latency: add(&a.latency, &b.latency),
            routes: vec![RouteTraffic {
                route: "/".into(),
                requests: a.requests + b.requests,
                errors: 0,
                latency: add(&a.routes[0].latency, &b.routes[0].latency),
            }],
        }
    }

    #[test]
    fn the_baseline_is_the_same_window_not_the_history() {
        // A long slow history (400 ms) of r1, then a window where both serve at 3 ms.
        let history = traffic("r1", 5000, 400);
        let mut a = Analysis::new(
            AnalysisSpec::default(),
            "web",
            "r2",
            Some("r1"),
            None,
            vec![history.clone()],
        );
        a.begin_window(vec![history.clone()], Some(25));
        let now = vec![sum(&history, &traffic("r1", 200, 3)), traffic("r2", 100, 3)];
        let (baseline, canary) = a.windows(&now);
        assert_eq!(baseline.traffic.requests, 200);
        assert!(!baseline.adjacent);
        assert_eq!(canary.requests, 100);
    }

    #[test]
    fn after_the_switch_the_last_window_is_the_baseline() {
        let start = vec![traffic("r1", 1000, 3)];
        let mut a = Analysis::new(
            AnalysisSpec::default(),
            "web",
            "r2",
            Some("r1"),
            None,
            start.clone(),
        );
        // A canary step: r1 serves 200 more, r2 100.
        let step_end = vec![
            sum(&start[0], &traffic("r1", 200, 3)),
            traffic("r2", 100, 3),
        ];
        a.begin_window(step_end.clone(), None);
        // The switch: r1 serves nothing more.
        let later = vec![step_end[0].clone(), traffic("r2", 400, 3)];
        let (baseline, canary) = a.windows(&later);
        assert!(baseline.adjacent);
        assert_eq!(baseline.traffic.requests, 200);
        assert_eq!(canary.requests, 300);
    }

    #[test]
    fn a_switch_right_after_the_start_is_judged_against_the_window_before_it() {
        // Read a window before the deploy: r1 had served 1000; at the start 1300 (300 at 4 ms).
        let earlier = vec![traffic("r1", 1000, 400)];
        let start = vec![sum(&earlier[0], &traffic("r1", 300, 4))];
        let mut a = Analysis::new(
            AnalysisSpec::default(),
            "web",
            "r2",
            Some("r1"),
            Some(earlier),
            start.clone(),
        );
        // Blue/green: the switch comes at once, r1 serves 2 more in flight, r2 everything else.
        a.begin_window(vec![sum(&start[0], &traffic("r1", 2, 4))], None);
        let later = vec![
            sum(&start[0], &traffic("r1", 2, 4)),
            traffic("r2", 500, 900),
        ];
        let (baseline, canary) = a.windows(&later);
        assert!(baseline.adjacent);
        assert_eq!(baseline.traffic.requests, 300);
        assert_eq!(
            baseline.traffic.quantile(0.99),
            traffic("r1", 1, 4).quantile(0.99)
        );
        assert_eq!(canary.requests, 500);
    }

    #[test]
    fn too_little_traffic_before_the_start_is_no_reference() {
        let earlier = vec![traffic("r1", 1000, 3)];
        let start = vec![sum(&earlier[0], &traffic("r1", 5, 3))];
        let mut a = Analysis::new(
            AnalysisSpec::default(),
            "web",
            "r2",
            Some("r1"),
            Some(earlier),
            start.clone(),
        );
        a.begin_window(start.clone(), None);
        let (baseline, _) = a.windows(&[start[0].clone(), traffic("r2", 500, 3)]);
        assert!(!baseline.adjacent);
        assert_eq!(baseline.traffic.requests, 0);
    }
}
