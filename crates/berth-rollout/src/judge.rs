//! The canary judge: a pure function from the new release's traffic (the canary) and the old
//! release's (the baseline) over the same time window to a verdict, with the numbers that led to
//! it. No I/O and no clock: the caller takes the windows (differences of the edge's counters) and
//! decides what to do with an inconclusive verdict.
//!
//! The rules, in order:
//! - `health`: a new replica crash-looped, or failed its checks longer than `health_window`
//!   (the caller tracks how long; the judge only reads it).
//! - `error-rate`: more than `error_rate` % of the canary's requests in the window failed.
//! - `latency`: the canary's p99 is over `latency_factor` × the baseline's p99 and at least
//!   `latency_margin` slower, both over the routes judged, the baseline reweighted by the
//!   canary's own route mix (so a canary on fast paths is compared with the baseline's fast paths).
//! - `latency-shift`: a Mann-Whitney U test (normal approximation, tie correction) per route
//!   pattern, with an effect size (Cliff's delta) and the difference of the medians. One route
//!   fails when its one-sided p-value is under `significance` / (routes judged), its delta is at
//!   least `min_effect` and its median at least `latency_margin` slower; all routes together
//!   fail on the same conditions with their z combined (Stouffer) and their deltas and medians
//!   weighted by the canary's mix.
//! - Too few requests to judge (the canary under `min_requests`, or the routes with
//!   `min_route_requests` on both sides carrying under half the canary's requests):
//!   `inconclusive`, never a pass.

use std::time::Duration;

use berth_model::deploy::{Judgment, RouteJudgment};
use berth_model::traffic::{latency_bucket_upper, ReleaseTraffic, RouteTraffic};

/// The fewest requests on each side a p99 is compared on (fewer, and it is the slowest one or two).
pub const P99_MIN_SAMPLES: u64 = 100;

/// The old release's traffic over the window.
#[derive(Debug, Clone, Default)]
pub struct Baseline {
    pub traffic: ReleaseTraffic,
    /// The window is the old release's last one, not the canary's (see [`Judgment`]).
    pub adjacent: bool,
}

/// The new release over the window: its traffic and its health.
#[derive(Debug, Clone, Default)]
pub struct Canary {
    pub traffic: ReleaseTraffic,
    pub window: Duration,
    /// A replica that crash-looped (its name and last exit), if any.
    pub crash_looped: Option<(String, String)>,
    /// The replica unhealthy for longest, and for how long.
    pub unhealthy: Option<(String, Duration)>,
    /// The canary's weight (percent of user traffic) during the window; None when both
    /// releases' replicas carry the same load (a rolling deploy, after the switch).
    pub weight: Option<u32>,
}

/// The thresholds (from `[service.NAME.deploy.analysis]`).
#[derive(Debug, Clone)]
pub struct Rules {
    pub health_window: Duration,
    pub error_rate: f64,
    pub latency_factor: f64,
    pub latency_margin: Duration,
    pub min_requests: u64,
    pub min_route_requests: u64,
    pub significance: f64,
    pub min_effect: f64,
}

impl From<&berth_spec::AnalysisSpec> for Rules {
    fn from(spec: &berth_spec::AnalysisSpec) -> Self {
        Rules {
            health_window: spec.health_window,
            error_rate: spec.error_rate,
            latency_factor: spec.latency_factor,
            latency_margin: spec.latency_margin,
            min_requests: spec.min_requests,
            min_route_requests: spec.min_route_requests,
            significance: spec.significance,
            min_effect: spec.min_effect,
        }
    }
}

impl Default for Rules {
    fn default() -> Self {
        (&berth_spec::AnalysisSpec::default()).into()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail,
    /// Too few requests to tell: the caller waits for more, then pauses or rolls back.
    Inconclusive,
}

/// What the judge decided, why, and the numbers.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub outcome: Outcome,
    /// The rule that decided (None for a pass).
    pub rule: Option<&'static str>,
    pub message: String,
    pub numbers: Judgment,
}

/// Judges the canary against the baseline of the same window.
pub fn judge(baseline: &Baseline, canary: &Canary, rules: &Rules) -> Verdict {
    let c = &canary.traffic;
    let b = &baseline.traffic;
    let routes = compare_routes(b, c, rules);
    let judged: Vec<&Compared> = routes.iter().filter(|r| r.judged).collect();
    let judged_requests: u64 = judged.iter().map(|r| r.canary.requests).sum();
    let mut numbers = Judgment {
        outcome: String::new(),
        rule: None,
        window_ms: canary.window.as_millis() as u64,
        adjacent_baseline: baseline.adjacent,
        canary_requests: c.requests,
        canary_errors: c.errors,
        baseline_requests: b.requests,
        baseline_errors: b.errors,
        ..Judgment::default()
    };
    // The canary's mix over the judged routes, and the baseline reweighted to it.
    let (canary_mix, baseline_mix) = mixtures(&judged);
    numbers.canary_p99_ms = quantile_ms(&canary_mix, 0.99);
    numbers.baseline_p99_ms = quantile_ms(&baseline_mix, 0.99);
    let combined = combine(&judged);
    if let Some((z, delta, _)) = combined {
        numbers.p_value = Some(upper_tail(z));
        numbers.cliffs_delta = Some(delta);
    }
    numbers.routes = routes.iter().map(Compared::numbers).collect();
    let decide =
        |outcome: Outcome, rule: Option<&'static str>, message: String, mut numbers: Judgment| {
            numbers.outcome = match outcome {
                Outcome::Pass => "pass",
                Outcome::Fail => "fail",
                Outcome::Inconclusive => "inconclusive",
            }
            .into();
            numbers.rule = rule.map(str::to_string);
            Verdict {
                outcome,
                rule,
                message,
                numbers,
            }
        };
    let release = &c.release;

    // health
    if let Some((replica, exit)) = &canary.crash_looped {
        let message = format!("{replica} of {release} crash-looped (last exit: {exit})");
        return decide(Outcome::Fail, Some("health"), message, numbers);
    }
    if let Some((replica, since)) = &canary.unhealthy {
        if *since >= rules.health_window {
            let message = format!(
                "{replica} of {release} failed its health checks for {}s (limit {}s)",
                since.as_secs(),
                rules.health_window.as_secs()
            );
            return decide(Outcome::Fail, Some("health"), message, numbers);
        }
    }

    // error rate
    if c.requests >= rules.min_requests && c.error_percent() > rules.error_rate {
        let message = format!(
            "{:.1}% of {} requests to {release} failed (limit {:.1}%)",
            c.error_percent(),
            c.requests,
            rules.error_rate
        );
        return decide(Outcome::Fail, Some("error-rate"), message, numbers);
    }

    let margin_ms = rules.latency_margin.as_secs_f64() * 1000.0;
    // p99, over the judged routes with the baseline in the canary's mix
    let baseline_judged: u64 = judged.iter().map(|r| r.baseline.requests).sum();
    if judged_requests >= P99_MIN_SAMPLES.max(rules.min_requests)
        && baseline_judged >= P99_MIN_SAMPLES.max(rules.min_requests)
    {
        if let (Some(p99), Some(base)) = (numbers.canary_p99_ms, numbers.baseline_p99_ms) {
            if p99 > base * rules.latency_factor && p99 >= base + margin_ms {
                let message = format!(
                    "p99 of {release} is {p99:.0}ms, over {:.1}x the {base:.0}ms of {} in the same window and routes (limit {:.0}ms)",
                    rules.latency_factor,
                    b.release,
                    (base * rules.latency_factor).max(base + margin_ms)
                );
                return decide(Outcome::Fail, Some("latency"), message, numbers);
            }
        }
    }

    // the distribution test, route by route, then all routes together; not while the canary's
    // replicas carry more load each than the old ones (a step over 50%: as many replicas, more
    // traffic), where an equal release answers slower under load
    let loaded = canary.weight.is_some_and(|w| w > 50 && w < 100);
    let alpha = rules.significance / judged.len().max(1) as f64;
    for r in judged.iter().filter(|_| !loaded) {
        let (Some(test), Some(cm), Some(bm)) = (&r.test, r.canary_median, r.baseline_median) else {
            continue;
        };
        if test.p < alpha && test.delta >= rules.min_effect && cm - bm >= margin_ms {
            let message = format!(
                "{release} is slower on {}: median {cm:.0}ms vs {bm:.0}ms of {} over {} and {} requests (Mann-Whitney p={:.2e}, Cliff's delta {:.2}; limits p<{alpha:.2e}, delta>={:.2}, +{margin_ms:.0}ms)",
                r.route, b.release, r.canary.requests, r.baseline.requests, test.p, test.delta, rules.min_effect
            );
            return decide(Outcome::Fail, Some("latency-shift"), message, numbers);
        }
    }
    if let Some((z, delta, median_shift)) = combined.filter(|_| !loaded) {
        let p = upper_tail(z);
        if judged.len() > 1
            && p < rules.significance
            && delta >= rules.min_effect
            && median_shift >= margin_ms
        {
            let message = format!(
                "{release} is slower over its {} routes: medians {median_shift:.0}ms slower than {}'s in the canary's mix (p={p:.2e}, Cliff's delta {delta:.2})",
                judged.len(),
                b.release
            );
            return decide(Outcome::Fail, Some("latency-shift"), message, numbers);
        }
    }

    // enough to call it a pass?
    if c.requests < rules.min_requests {
        let message = format!(
            "{} requests to {release} in {:.0}s (a verdict needs {})",
            c.requests,
            canary.window.as_secs_f64(),
            rules.min_requests
        );
        return decide(
            Outcome::Inconclusive,
            Some("too-few-requests"),
            message,
            numbers,
        );
    }
    if judged_requests * 2 < c.requests {
        let message = format!(
            "only {judged_requests} of the {} requests to {release} are on routes where both releases served {} or more (baseline: {} requests)",
            c.requests, rules.min_route_requests, b.requests
        );
        return decide(
            Outcome::Inconclusive,
            Some("too-few-requests"),
            message,
            numbers,
        );
    }
    let message = format!(
        "{} requests, {:.1}% errors, p99 {} vs {} of {}{}",
        c.requests,
        c.error_percent(),
        ms(numbers.canary_p99_ms),
        ms(numbers.baseline_p99_ms),
        b.release,
        match (numbers.cliffs_delta, numbers.p_value) {
            (Some(d), Some(p)) => format!(", Cliff's delta {d:.2} (p={p:.2})"),
            _ => String::new(),
        }
    );
    decide(Outcome::Pass, None, message, numbers)
}

fn ms(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.0}ms")).unwrap_or_else(|| "-".into())
}

/// One route pattern, both sides.
struct Compared {
    route: String,
    canary: RouteTraffic,
    baseline: RouteTraffic,
    judged: bool,
    weight: f64,
    canary_median: Option<f64>,
    baseline_median: Option<f64>,
    test: Option<MannWhitney>,
}

impl Compared {
    fn numbers(&self) -> RouteJudgment {
        RouteJudgment {
            route: self.route.clone(),
            canary_requests: self.canary.requests,
            baseline_requests: self.baseline.requests,
            judged: self.judged,
            weight: self.weight,
            canary_median_ms: self.canary_median,
            baseline_median_ms: self.baseline_median,
            canary_p99_ms: quantile_ms(&floats(&self.canary.latency), 0.99),
            baseline_p99_ms: quantile_ms(&floats(&self.baseline.latency), 0.99),
            u: self.test.as_ref().map(|t| t.u),
            p_value: self.test.as_ref().map(|t| t.p),
            cliffs_delta: self.test.as_ref().map(|t| t.delta),
            median_ratio: match (self.canary_median, self.baseline_median) {
                (Some(c), Some(b)) if b > 0.0 => Some(c / b),
                _ => None,
            },
        }
    }
}

/// The traffic split by route pattern; a release counted without routes (an older edge) is one
/// route, `*`.
fn by_route(t: &ReleaseTraffic) -> Vec<RouteTraffic> {
    if t.routes.is_empty() && t.requests > 0 {
        return vec![RouteTraffic {
            route: "*".into(),
            requests: t.requests,
            errors: t.errors,
            latency: t.latency.clone(),
        }];
    }
    t.routes.clone()
}

fn compare_routes(b: &ReleaseTraffic, c: &ReleaseTraffic, rules: &Rules) -> Vec<Compared> {
    let canary_routes = by_route(c);
    let baseline_routes = by_route(b);
    let min = rules.min_route_requests.max(1);
    let mut out: Vec<Compared> = canary_routes
        .into_iter()
        .filter(|r| r.requests > 0)
        .map(|canary| {
            let baseline = baseline_routes
                .iter()
                .find(|r| r.route == canary.route)
                .cloned()
                .unwrap_or_default();
            let judged = canary.requests >= min && baseline.requests >= min;
            Compared {
                route: canary.route.clone(),
                judged,
                weight: 0.0,
                canary_median: quantile_ms(&floats(&canary.latency), 0.5),
                baseline_median: quantile_ms(&floats(&baseline.latency), 0.5),
                test: judged
                    .then(|| mann_whitney(&canary.latency, &baseline.latency))
                    .flatten(),
                canary,
                baseline,
            }
        })
        .collect();
    let total: u64 = out
        .iter()
        .filter(|r| r.judged)
        .map(|r| r.canary.requests)
        .sum();
    for r in out.iter_mut().filter(|r| r.judged) {
        r.weight = r.canary.requests as f64 / total as f64;
    }
    out.sort_by_key(|r| std::cmp::Reverse(r.canary.requests));
    out
}

/// The canary's histogram over the judged routes, and the baseline's with each route scaled to
/// the canary's share of it (as fractional counts).
fn mixtures(judged: &[&Compared]) -> (Vec<f64>, Vec<f64>) {
    let mut canary = Vec::new();
    let mut baseline = Vec::new();
    let add = |into: &mut Vec<f64>, latency: &[u64], scale: f64| {
        if into.len() < latency.len() {
            into.resize(latency.len(), 0.0);
        }
        for (i, n) in latency.iter().enumerate() {
            into[i] += *n as f64 * scale;
        }
    };
    for r in judged {
        add(&mut canary, &r.canary.latency, 1.0);
        let base_total: u64 = r.baseline.latency.iter().sum();
        if base_total > 0 {
            add(
                &mut baseline,
                &r.baseline.latency,
                r.canary.requests as f64 / base_total as f64,
            );
        }
    }
    (canary, baseline)
}

/// The `q` quantile of a histogram, in milliseconds, as the middle of its bucket.
fn quantile_ms(latency: &[f64], q: f64) -> Option<f64> {
    let total: f64 = latency.iter().sum();
    if total <= 0.0 {
        return None;
    }
    let rank = (total * q).max(f64::MIN_POSITIVE);
    let mut seen = 0.0;
    for (i, n) in latency.iter().enumerate() {
        seen += n;
        if seen >= rank - 1e-9 {
            return Some(bucket_middle_ms(i));
        }
    }
    latency.len().checked_sub(1).map(bucket_middle_ms)
}

fn floats(latency: &[u64]) -> Vec<f64> {
    latency.iter().map(|n| *n as f64).collect()
}

fn bucket_middle_ms(i: usize) -> f64 {
    let lower = if i == 0 {
        0
    } else {
        latency_bucket_upper(i - 1)
    };
    (lower + latency_bucket_upper(i)) as f64 / 2.0 / 1000.0
}

/// A Mann-Whitney U test of the canary (x) against the baseline (y).
#[derive(Debug, Clone, Copy)]
struct MannWhitney {
    /// Pairs (x, y) with x > y, plus half the ties.
    u: f64,
    /// Standard score of `u` (continuity-corrected toward the mean).
    z: f64,
    /// One-sided p-value for "the canary is slower".
    p: f64,
    /// Cliff's delta: P(x > y) - P(x < y).
    delta: f64,
}

/// The test on two histograms with the same buckets: each bucket is a group of ties.
fn mann_whitney(x: &[u64], y: &[u64]) -> Option<MannWhitney> {
    let n1: f64 = x.iter().sum::<u64>() as f64;
    let n2: f64 = y.iter().sum::<u64>() as f64;
    if n1 == 0.0 || n2 == 0.0 {
        return None;
    }
    let buckets = x.len().max(y.len());
    let at = |v: &[u64], i: usize| v.get(i).copied().unwrap_or(0) as f64;
    let mut u = 0.0;
    let mut below = 0.0; // baseline requests in lower buckets
    let mut ties = 0.0; // sum of t^3 - t over buckets
    for i in 0..buckets {
        let (xi, yi) = (at(x, i), at(y, i));
        u += xi * (below + yi / 2.0);
        below += yi;
        let t = xi + yi;
        ties += t * t * t - t;
    }
    let n = n1 + n2;
    let mean = n1 * n2 / 2.0;
    let variance = n1 * n2 / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)).max(1.0));
    let delta = 2.0 * u / (n1 * n2) - 1.0;
    if variance <= 0.0 {
        // Every request of both in one bucket: no evidence of a difference.
        return Some(MannWhitney {
            u,
            z: 0.0,
            p: 0.5,
            delta,
        });
    }
    let diff = u - mean;
    let corrected = diff - 0.5 * diff.signum();
    let z = corrected / variance.sqrt();
    Some(MannWhitney {
        u,
        z,
        p: upper_tail(z),
        delta,
    })
}

/// The routes' z combined (Stouffer, weighted by the canary's mix), their Cliff's deltas and
/// their median differences (ms) weighted the same way.
fn combine(judged: &[&Compared]) -> Option<(f64, f64, f64)> {
    let tested: Vec<(&Compared, &MannWhitney)> = judged
        .iter()
        .filter_map(|r| r.test.as_ref().map(|t| (*r, t)))
        .collect();
    if tested.is_empty() {
        return None;
    }
    let weights: f64 = tested.iter().map(|(r, _)| r.weight).sum();
    if weights <= 0.0 {
        return None;
    }
    let norm: f64 = tested
        .iter()
        .map(|(r, _)| r.weight * r.weight)
        .sum::<f64>()
        .sqrt();
    let z = tested.iter().map(|(r, t)| r.weight * t.z).sum::<f64>() / norm;
    let delta = tested.iter().map(|(r, t)| r.weight * t.delta).sum::<f64>() / weights;
    let shift = tested
        .iter()
        .map(|(r, _)| {
            r.weight * (r.canary_median.unwrap_or(0.0) - r.baseline_median.unwrap_or(0.0))
        })
        .sum::<f64>()
        / weights;
    Some((z, delta, shift))
}

/// P(Z > z) for a standard normal Z.
fn upper_tail(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// The complementary error function (Numerical Recipes' `erfcc`, relative error < 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_model::traffic::{latency_bucket, LATENCY_BUCKETS};

    /// A deterministic pseudo-random generator (xorshift), so the tests need no crate.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
        /// Log-normal-ish latency around `median_ms` with a moderate spread.
        fn latency_ms(&mut self, median_ms: f64) -> f64 {
            let u = (self.next() + self.next() + self.next() - 1.5) * 2.0; // ~N(0, 1)
            median_ms * (0.35 * u).exp()
        }
    }

    /// True on every `k`th call.
    fn every(n: &mut u32, k: u32) -> bool {
        *n += 1;
        if *n == k {
            *n = 0;
        }
        *n == 0
    }

    /// A route with `n` requests drawn by `draw` (milliseconds).
    fn route(name: &str, n: u64, mut draw: impl FnMut() -> f64) -> RouteTraffic {
        let mut latency = vec![0; LATENCY_BUCKETS];
        for _ in 0..n {
            latency[latency_bucket((draw() * 1000.0) as u64)] += 1;
        }
        RouteTraffic {
            route: name.into(),
            requests: n,
            errors: 0,
            latency,
        }
    }

    fn release(name: &str, routes: Vec<RouteTraffic>) -> ReleaseTraffic {
        let mut t = ReleaseTraffic {
            service: "web".into(),
            release: name.into(),
            latency: vec![0; LATENCY_BUCKETS],
            ..Default::default()
        };
        for r in routes {
            t.requests += r.requests;
            t.errors += r.errors;
            for (i, n) in r.latency.iter().enumerate() {
                t.latency[i] += n;
            }
            t.routes.push(r);
        }
        t
    }

    fn run(baseline: ReleaseTraffic, canary: ReleaseTraffic) -> Verdict {
        judge(
            &Baseline {
                traffic: baseline,
                adjacent: false,
            },
            &Canary {
                traffic: canary,
                window: Duration::from_secs(30),
                ..Default::default()
            },
            &Rules::default(),
        )
    }

    #[test]
    fn equal_distributions_pass() {
        // Many seeds: the judge must not fail an equal release by chance.
        for seed in 1..=200u64 {
            let mut rng = Rng(seed * 7919);
            let old = release("r1", vec![route("/", 300, || rng.latency_ms(40.0))]);
            let new = release("r2", vec![route("/", 120, || rng.latency_ms(40.0))]);
            let v = run(old, new);
            assert_eq!(v.outcome, Outcome::Pass, "seed {seed}: {}", v.message);
        }
    }

    #[test]
    fn a_release_one_second_slower_fails_on_the_shift() {
        let mut rng = Rng(42);
        let old = release("r1", vec![route("/", 300, || rng.latency_ms(5.0))]);
        let new = release("r2", vec![route("/", 60, || 1000.0 + rng.latency_ms(5.0))]);
        let v = run(old, new);
        assert_eq!(v.outcome, Outcome::Fail, "{}", v.message);
        // Too few canary requests for a p99: the distribution test decides.
        assert_eq!(v.rule, Some("latency-shift"), "{}", v.message);
        let r = &v.numbers.routes[0];
        assert!(r.cliffs_delta.unwrap() > 0.99, "{r:?}");
        assert!(r.p_value.unwrap() < 1e-10, "{r:?}");
        assert!(r.median_ratio.unwrap() > 50.0, "{r:?}");
        assert_eq!(v.numbers.outcome, "fail");
    }

    #[test]
    fn a_heavier_tail_fails_on_the_p99() {
        let mut rng = Rng(7);
        let old = release("r1", vec![route("/", 1000, || rng.latency_ms(20.0))]);
        let mut n = 0;
        // 5% of the canary's requests take 1 s more: medians equal, p99 not.
        let new = release(
            "r2",
            vec![route("/", 400, || {
                rng.latency_ms(20.0) + if every(&mut n, 20) { 1000.0 } else { 0.0 }
            })],
        );
        let v = run(old, new);
        assert_eq!(v.outcome, Outcome::Fail, "{}", v.message);
        assert_eq!(v.rule, Some("latency"), "{}", v.message);
    }

    #[test]
    fn too_few_samples_are_inconclusive_never_a_pass() {
        let mut rng = Rng(3);
        let old = release("r1", vec![route("/", 300, || rng.latency_ms(5.0))]);
        let new = release("r2", vec![route("/", 12, || rng.latency_ms(5.0))]);
        let v = run(old, new);
        assert_eq!(v.outcome, Outcome::Inconclusive, "{}", v.message);
        assert_eq!(v.rule, Some("too-few-requests"));
        // Enough canary requests, but on a route the old release did not serve in the window.
        let old = release("r1", vec![route("/", 300, || rng.latency_ms(5.0))]);
        let new = release("r2", vec![route("/new", 80, || rng.latency_ms(5.0))]);
        let v = run(old, new);
        assert_eq!(v.outcome, Outcome::Inconclusive, "{}", v.message);
        // And no baseline at all.
        let v = run(
            ReleaseTraffic::default(),
            release("r2", vec![route("/", 80, || 5.0)]),
        );
        assert_eq!(v.outcome, Outcome::Inconclusive, "{}", v.message);
    }

    #[test]
    fn a_fast_canary_mix_is_not_judged_against_a_slow_baseline_mix() {
        // The case: the baseline's window is mostly a slow route (/report, 400 ms), the
        // canary got mostly the fast one (/whoami) and is 1 s slower on it. Compared whole,
        // its p99 (~1 s) is under 3x the baseline's; per route it is caught.
        let mut rng = Rng(11);
        let old = release(
            "r1",
            vec![
                route("/report", 900, || rng.latency_ms(400.0)),
                route("/whoami", 100, || rng.latency_ms(3.0)),
            ],
        );
        let new = release(
            "r2",
            vec![
                route("/whoami", 90, || 1000.0 + rng.latency_ms(3.0)),
                route("/report", 10, || 1000.0 + rng.latency_ms(400.0)),
            ],
        );
        let v = run(old, new);
        assert_eq!(v.outcome, Outcome::Fail, "{}", v.message);
        assert!(v.message.contains("/whoami"), "{}", v.message);
    }

    #[test]
    fn a_slow_baseline_mix_does_not_fail_an_equal_release() {
        // The other way round: the canary got mostly the slow route, the baseline mostly the
        // fast one. Same code: per route, nothing differs.
        for seed in 1..=50u64 {
            let mut rng = Rng(seed * 104_729);
            let old = release(
                "r1",
                vec![
                    route("/whoami", 900, || rng.latency_ms(3.0)),
                    route("/report", 100, || rng.latency_ms(400.0)),
                ],
            );
            let new = release(
                "r2",
                vec![
                    route("/report", 90, || rng.latency_ms(400.0)),
                    route("/whoami", 30, || rng.latency_ms(3.0)),
                ],
            );
            let v = run(old, new);
            assert_eq!(v.outcome, Outcome::Pass, "seed {seed}: {}", v.message);
        }
    }

    #[test]
    fn a_release_slower_on_one_route_only_is_caught() {
        // /a has a slow tail (1 in 20 requests takes a second) in both releases, so the p99 of
        // the mix does not move; /c is 100 ms slower in the canary only.
        let mut rng = Rng(5);
        let mut n = 0u32;
        let mut tail =
            move |rng: &mut Rng| rng.latency_ms(5.0) + if every(&mut n, 20) { 1000.0 } else { 0.0 };
        let old = release(
            "r1",
            vec![
                route("/a", 400, || tail(&mut rng)),
                route("/b", 400, || rng.latency_ms(5.0)),
                route("/c", 400, || rng.latency_ms(5.0)),
            ],
        );
        let new = release(
            "r2",
            vec![
                route("/a", 100, || tail(&mut rng)),
                route("/b", 100, || rng.latency_ms(5.0)),
                route("/c", 30, || 100.0 + rng.latency_ms(5.0)),
            ],
        );
        let v = run(old, new);
        assert_eq!(v.outcome, Outcome::Fail, "{}", v.message);
        assert_eq!(v.rule, Some("latency-shift"), "{}", v.message);
        assert!(v.message.contains("/c"), "{}", v.message);
        let c = v.numbers.routes.iter().find(|r| r.route == "/c").unwrap();
        assert!(
            c.cliffs_delta.unwrap() > 0.9 && c.p_value.unwrap() < 1e-6,
            "{c:?}"
        );
        let a = v.numbers.routes.iter().find(|r| r.route == "/a").unwrap();
        assert!(a.cliffs_delta.unwrap().abs() < 0.33, "{a:?}");
    }

    #[test]
    fn error_rate_and_health_keep_the_references_rules() {
        let mut rng = Rng(9);
        let old = release("r1", vec![route("/", 300, || rng.latency_ms(5.0))]);
        let mut new = release("r2", vec![route("/", 60, || rng.latency_ms(5.0))]);
        new.errors = 6; // 10%
        let v = run(old.clone(), new.clone());
        assert_eq!(v.rule, Some("error-rate"), "{}", v.message);
        assert!(v.message.contains("10.0% of 60"), "{}", v.message);
        new.errors = 3; // 5%: not over
        assert_eq!(run(old.clone(), new.clone()).outcome, Outcome::Pass);
        let canary = Canary {
            traffic: new,
            window: Duration::from_secs(1),
            crash_looped: None,
            unhealthy: Some(("web.3".into(), Duration::from_secs(121))),
            weight: None,
        };
        let v = judge(
            &Baseline {
                traffic: old,
                adjacent: false,
            },
            &canary,
            &Rules::default(),
        );
        assert_eq!(v.rule, Some("health"), "{}", v.message);
    }

    #[test]
    fn the_shift_test_waits_for_steps_where_the_canary_carries_no_more_load_per_replica() {
        let mut rng = Rng(21);
        let old = release("r1", vec![route("/", 300, || rng.latency_ms(5.0))]);
        let new = release("r2", vec![route("/", 60, || 60.0 + rng.latency_ms(5.0))]);
        let at = |weight| {
            judge(
                &Baseline {
                    traffic: old.clone(),
                    adjacent: false,
                },
                &Canary {
                    traffic: new.clone(),
                    window: Duration::from_secs(10),
                    weight: Some(weight),
                    ..Default::default()
                },
                &Rules::default(),
            )
        };
        assert_eq!(at(25).rule, Some("latency-shift"));
        assert_eq!(at(50).rule, Some("latency-shift"));
        assert_eq!(at(75).outcome, Outcome::Pass, "{}", at(75).message);
    }

    #[test]
    fn mann_whitney_matches_a_hand_computation() {
        // x = {1, 2, 2}, y = {2, 3}: pairs x>y: 0; ties (2,2) twice → U = 1.
        let x = [0, 1, 2, 0];
        let y = [0, 0, 1, 1];
        let t = mann_whitney(&x, &y).unwrap();
        assert!((t.u - 1.0).abs() < 1e-9, "{t:?}");
        assert!((t.delta - (2.0 / 6.0 - 1.0)).abs() < 1e-9, "{t:?}");
        // Tie-corrected variance: n1=3, n2=2, ties t=1,3,1 → Σ(t³-t) = 24;
        // var = 6/12 * (6 - 24/20) = 2.4; z = (1 - 3 + 0.5)/sqrt(2.4).
        assert!((t.z - (-1.5 / 2.4f64.sqrt())).abs() < 1e-9, "{t:?}");
        assert!((upper_tail(0.0) - 0.5).abs() < 1e-7);
        assert!((upper_tail(1.959_964) - 0.025).abs() < 1e-6);
    }
}
