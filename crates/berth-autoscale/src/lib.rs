//! Target tracking, the references' autoscaling (AWS target-tracking policies on CPU at 70% and
//! 1,000 requests per target per minute) with the Kubernetes HPA's arithmetic: each target
//! proposes `ceil(replicas × value / target)`, nothing moves within the tolerance, the largest
//! proposal wins (any target can scale out; all must agree to scale in), a scale-out is at most
//! doubling (or +4) per decision, and a scale-in goes only as low as the highest proposal over
//! the stabilization window, after its cooldown.
//!
//! One pure function, [`decide`], over the signals the daemon measured and the [`Memory`] of
//! earlier decisions. It knows nothing of processes, the edge, the store or the clock (the
//! caller passes `now`); the daemon turns a [`Decision::Scale`] into a `converge`.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use berth_spec::AutoscaleSpec;

/// What the daemon measured of a service over the last interval.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Signals {
    /// The replica count the service is held at now.
    pub replicas: u32,
    /// Average CPU % (of one core) over the service's replicas; None: not measured.
    pub cpu_percent: Option<f64>,
    /// Requests per replica per minute (the service's requests over the replicas that serve);
    /// None: not measured (no edge counters yet).
    pub requests_per_replica: Option<f64>,
    /// A deploy of the service is running: nothing scales then.
    pub deploying: bool,
}

/// What the autoscaler remembers between decisions of one service.
#[derive(Debug, Clone, Default)]
pub struct Memory {
    /// The counts proposed, newest last, within the stabilization window.
    proposals: VecDeque<(Instant, u32)>,
    last_scale_out: Option<Instant>,
    last_scale: Option<Instant>,
}

/// The outcome of one look.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Keep the count; why (for `berth status` and the debug log, not an event).
    Hold { reason: String },
    /// Go from `from` to `to` replicas; the numbers that led there (recorded as an event).
    Scale { from: u32, to: u32, reason: String },
}

/// At most this many more replicas than the current count per scale-out, or doubling,
/// whichever is more (the HPA's default scale-up policy).
const MAX_STEP_OUT: u32 = 4;

/// One target's proposal: the count and a sentence with its numbers.
fn propose(
    name: &str,
    unit: &str,
    value: f64,
    target: f64,
    replicas: u32,
    tolerance: f64,
) -> (u32, String) {
    let ratio = value / target;
    let count = if (ratio - 1.0).abs() <= tolerance {
        replicas
    } else {
        // Never below 1 from a target: the bounds decide the floor.
        ((replicas.max(1) as f64 * ratio).ceil() as u32).max(1)
    };
    let verdict = if count == replicas {
        "within tolerance".to_string()
    } else {
        format!("wants {count}")
    };
    (
        count,
        format!("{name} {value:.0}{unit} vs target {target:.0}{unit}: {verdict}"),
    )
}

/// Decides the replica count of one service between `min` and `max`.
pub fn decide(
    policy: &AutoscaleSpec,
    min: u32,
    max: u32,
    signals: &Signals,
    memory: &mut Memory,
    now: Instant,
) -> Decision {
    let current = signals.replicas;
    if signals.deploying {
        return Decision::Hold {
            reason: "a deploy is running".into(),
        };
    }
    if current < min || current > max {
        let to = current.clamp(min, max);
        memory.last_scale = Some(now);
        if to > current {
            memory.last_scale_out = Some(now);
        }
        return Decision::Scale {
            from: current,
            to,
            reason: format!("{current} is outside min {min} / max {max}"),
        };
    }
    let mut proposals = Vec::new();
    if let (Some(target), Some(value)) = (policy.cpu, signals.cpu_percent) {
        proposals.push(propose(
            "cpu",
            "%",
            value,
            target,
            current,
            policy.tolerance,
        ));
    }
    if let (Some(target), Some(value)) = (policy.requests_per_replica, signals.requests_per_replica)
    {
        proposals.push(propose(
            "requests",
            "/replica/min",
            value,
            target,
            current,
            policy.tolerance,
        ));
    }
    if proposals.is_empty() {
        return Decision::Hold {
            reason: "no measurement yet".into(),
        };
    }
    let mut reason = proposals
        .iter()
        .map(|(_, sentence)| sentence.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    let wanted = proposals
        .iter()
        .map(|(count, _)| *count)
        .max()
        .unwrap_or(current);
    let wanted = wanted.clamp(min, max);

    // Remember the proposal; forget those older than the stabilization window.
    memory.proposals.push_back((now, wanted));
    while memory
        .proposals
        .front()
        .is_some_and(|(at, _)| now.saturating_duration_since(*at) > policy.stabilization)
    {
        memory.proposals.pop_front();
    }

    if wanted > current {
        let since = memory
            .last_scale_out
            .map(|at| now.saturating_duration_since(at));
        if let Some(since) = since.filter(|since| *since < policy.scale_out_cooldown) {
            return Decision::Hold {
                reason: format!(
                    "{reason}; scale-out cooldown: {}s left",
                    secs(policy.scale_out_cooldown - since)
                ),
            };
        }
        let step = current.max(MAX_STEP_OUT);
        let to = wanted.min(current.saturating_add(step)).min(max);
        if to < wanted {
            let _ = write!(reason, "; at most +{step} at a time");
        }
        memory.last_scale_out = Some(now);
        memory.last_scale = Some(now);
        return Decision::Scale {
            from: current,
            to,
            reason,
        };
    }
    if wanted < current {
        // The highest count proposed over the window: a dip does not scale in.
        let stable = memory
            .proposals
            .iter()
            .map(|(_, count)| *count)
            .max()
            .unwrap_or(current);
        if stable >= current {
            return Decision::Hold {
                reason: format!(
                    "{reason}; stabilizing: {stable} was proposed within the last {}s",
                    secs(policy.stabilization)
                ),
            };
        }
        let since = memory
            .last_scale
            .map(|at| now.saturating_duration_since(at));
        if let Some(since) = since.filter(|since| *since < policy.scale_in_cooldown) {
            return Decision::Hold {
                reason: format!(
                    "{reason}; scale-in cooldown: {}s left",
                    secs(policy.scale_in_cooldown - since)
                ),
            };
        }
        let _ = write!(
            reason,
            "; highest proposal over the last {}s: {stable}",
            secs(policy.stabilization)
        );
        memory.last_scale = Some(now);
        return Decision::Scale {
            from: current,
            to: stable,
            reason,
        };
    }
    Decision::Hold { reason }
}

fn secs(duration: Duration) -> u64 {
    duration.as_secs_f64().ceil() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> AutoscaleSpec {
        AutoscaleSpec {
            cpu: Some(70.0),
            requests_per_replica: Some(1000.0),
            tolerance: 0.1,
            interval: Duration::from_secs(15),
            scale_out_cooldown: Duration::from_secs(60),
            scale_in_cooldown: Duration::from_secs(300),
            stabilization: Duration::from_secs(300),
        }
    }

    fn load(replicas: u32, cpu: f64, requests: f64) -> Signals {
        Signals {
            replicas,
            cpu_percent: Some(cpu),
            requests_per_replica: Some(requests),
            deploying: false,
        }
    }

    fn to(decision: &Decision) -> Option<u32> {
        match decision {
            Decision::Scale { to, .. } => Some(*to),
            Decision::Hold { .. } => None,
        }
    }

    #[test]
    fn each_target_proposes_and_the_largest_wins() {
        let start = Instant::now();
        let mut memory = Memory::default();
        // 2 replicas at 2,600 requests each per minute: 5,200 / 1,000 → 6; CPU 35% → 1.
        let decision = decide(&policy(), 1, 10, &load(2, 35.0, 2600.0), &mut memory, start);
        assert_eq!(to(&decision), Some(6), "{decision:?}");
        let Decision::Scale { reason, .. } = decision else {
            unreachable!()
        };
        assert!(
            reason.contains("requests 2600/replica/min vs target 1000/replica/min: wants 6"),
            "{reason}"
        );
        assert!(
            reason.contains("cpu 35% vs target 70%: wants 1"),
            "{reason}"
        );
    }

    #[test]
    fn within_the_tolerance_nothing_moves() {
        let mut memory = Memory::default();
        let now = Instant::now();
        for (cpu, requests) in [(76.0, 1000.0), (64.0, 1090.0), (70.0, 910.0)] {
            let decision = decide(&policy(), 1, 10, &load(4, cpu, requests), &mut memory, now);
            assert_eq!(to(&decision), None, "{cpu} {requests}: {decision:?}");
        }
        // Just outside: 78% of 70 is 11.4% over.
        let decision = decide(&policy(), 1, 10, &load(4, 78.0, 1000.0), &mut memory, now);
        assert_eq!(to(&decision), Some(5));
    }

    #[test]
    fn scale_out_is_bounded_by_max_the_step_and_the_cooldown() {
        let start = Instant::now();
        let mut memory = Memory::default();
        // 1 replica at 20,000/min wants 20: at most +4 at a time (doubling is less), max 8.
        let decision = decide(
            &policy(),
            1,
            8,
            &load(1, 10.0, 20_000.0),
            &mut memory,
            start,
        );
        assert_eq!(to(&decision), Some(5), "{decision:?}");
        // Still hot 30 s later: the 60 s cooldown holds.
        let later = start + Duration::from_secs(30);
        let decision = decide(&policy(), 1, 8, &load(5, 10.0, 4000.0), &mut memory, later);
        assert!(
            matches!(&decision, Decision::Hold { reason } if reason.contains("scale-out cooldown: 30s left")),
            "{decision:?}"
        );
        // After it: up to max.
        let after = start + Duration::from_secs(61);
        let decision = decide(&policy(), 1, 8, &load(5, 10.0, 4000.0), &mut memory, after);
        assert_eq!(to(&decision), Some(8));
    }

    #[test]
    fn scale_in_waits_for_the_stabilization_window_and_its_cooldown() {
        let start = Instant::now();
        let mut memory = Memory::default();
        let p = policy();
        assert_eq!(
            to(&decide(
                &p,
                1,
                10,
                &load(2, 10.0, 3000.0),
                &mut memory,
                start
            )),
            Some(6)
        );
        // Load gone: a proposal of 1 every 15 s; the 6 proposed at the start holds the count
        // for the 300 s window, and the 300 s cooldown after the scale-out too.
        let mut t = 15;
        let mut first_in = None;
        while t <= 600 {
            let now = start + Duration::from_secs(t);
            let decision = decide(&p, 1, 10, &load(6, 5.0, 100.0), &mut memory, now);
            if let Some(count) = to(&decision) {
                first_in = Some((t, count));
                break;
            }
            t += 15;
        }
        let (at, count) = first_in.expect("scaled in within 600 s");
        assert!(at > 300, "scaled in after {at}s, inside the window");
        assert!(at <= 315, "scaled in only after {at}s");
        assert_eq!(count, 1);
    }

    #[test]
    fn a_dip_inside_the_window_does_not_scale_in() {
        let start = Instant::now();
        let mut memory = Memory::default();
        let mut p = policy();
        p.scale_in_cooldown = Duration::ZERO;
        // Steady at 4 replicas for a while...
        for t in (0..300).step_by(15) {
            let now = start + Duration::from_secs(t);
            assert_eq!(
                to(&decide(&p, 1, 10, &load(4, 70.0, 1000.0), &mut memory, now)),
                None
            );
        }
        // ...then one quiet interval: 4 was proposed within the window, so nothing moves.
        let now = start + Duration::from_secs(300);
        let decision = decide(&p, 1, 10, &load(4, 10.0, 100.0), &mut memory, now);
        assert!(
            matches!(&decision, Decision::Hold { reason } if reason.contains("stabilizing: 4")),
            "{decision:?}"
        );
    }

    #[test]
    fn bounds_deploys_and_missing_data() {
        let now = Instant::now();
        let mut memory = Memory::default();
        let p = policy();
        // Outside the bounds (min raised in the spec): back inside at once.
        assert_eq!(
            to(&decide(&p, 3, 10, &load(1, 70.0, 1000.0), &mut memory, now)),
            Some(3)
        );
        assert_eq!(
            to(&decide(&p, 1, 4, &load(6, 70.0, 1000.0), &mut memory, now)),
            Some(4)
        );
        // Never during a deploy.
        let deploying = Signals {
            deploying: true,
            ..load(2, 99.0, 9000.0)
        };
        assert_eq!(to(&decide(&p, 1, 10, &deploying, &mut memory, now)), None);
        // Nothing measured: hold.
        let blind = Signals {
            replicas: 2,
            ..Signals::default()
        };
        assert!(matches!(
            decide(&p, 1, 10, &blind, &mut memory, now),
            Decision::Hold { reason } if reason == "no measurement yet"
        ));
        // One target switched off: the other alone decides.
        let requests_only = AutoscaleSpec {
            cpu: None,
            ..policy()
        };
        let mut memory = Memory::default();
        // CPU at 99% is not looked at; 2 × 500/1,000 → 1, and nothing higher was proposed.
        assert_eq!(
            to(&decide(
                &requests_only,
                1,
                10,
                &load(2, 99.0, 500.0),
                &mut memory,
                now
            )),
            Some(1)
        );
    }

    #[test]
    fn no_target_scales_below_one_or_the_minimum() {
        let now = Instant::now();
        let mut memory = Memory::default();
        let mut p = policy();
        p.stabilization = Duration::ZERO;
        p.scale_in_cooldown = Duration::ZERO;
        let decision = decide(&p, 2, 10, &load(4, 0.0, 0.0), &mut memory, now);
        assert_eq!(to(&decision), Some(2), "{decision:?}");
    }
}
