//! The autoscaler's loop: per service with `min < max`, every `autoscale.interval`, measure
//! (requests per serving replica per minute from the edge's counters as the link reads them;
//! the replicas' average CPU % over the interval from the metrics history; the service's
//! replica count; whether a deploy runs), ask the pure
//! [`berth_autoscale::decide`], and turn a decision to scale into the same path as `berth
//! scale`: the count kept in the store, an event with the numbers, `converge` (a new replica
//! takes traffic once healthy; a replica scaled in is drained through the edge first).
//! Without metrics (the store could not be opened, or no round yet) CPU is not measured and only
//! the requests target drives scaling.

use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_autoscale::{decide, Decision, Memory, Signals};
use berth_model::{EventLevel, Health};
use berth_spec::AutoscaleSpec;
use tracing::Instrument;

use crate::stack::Stack;

/// Starts one loop per autoscaled service; None when no service autoscales.
pub fn spawn(stack: Arc<Stack>) -> Option<tokio::task::JoinHandle<()>> {
    let services: Vec<(String, AutoscaleSpec)> = stack
        .spec
        .services
        .values()
        .filter_map(|s| s.autoscale.clone().map(|a| (s.name.clone(), a)))
        .collect();
    if services.is_empty() {
        return None;
    }
    Some(tokio::spawn(async move {
        // Dropping the set (the task aborted) aborts every loop.
        let mut loops = tokio::task::JoinSet::new();
        for (service, policy) in services {
            let span = tracing::info_span!("autoscale", service = %service);
            loops.spawn(run(stack.clone(), service, policy).instrument(span));
        }
        while loops.join_next().await.is_some() {}
    }))
}

async fn run(stack: Arc<Stack>, service: String, policy: AutoscaleSpec) {
    let mut memory = Memory::default();
    let mut every = tokio::time::interval(policy.interval);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    let mut last_hold = String::new();
    loop {
        every.tick().await;
        let Some(spec) = stack.spec.services.get(&service) else {
            return;
        };
        let signals = measure(&stack, &service, &policy).await;
        let decision = decide(
            &policy,
            spec.replicas.min,
            spec.replicas.max,
            &signals,
            &mut memory,
            Instant::now(),
        );
        match decision {
            Decision::Hold { reason } => {
                if reason != last_hold {
                    tracing::debug!("holding {} replica(s): {reason}", signals.replicas);
                    last_hold = reason;
                }
            }
            Decision::Scale { from, to, reason } => {
                last_hold.clear();
                scale(&stack, &service, from, to, &reason).await;
            }
        }
    }
}

/// What the decision needs, measured now.
async fn measure(stack: &Stack, service: &str, policy: &AutoscaleSpec) -> Signals {
    let replicas = stack
        .spec
        .services
        .get(service)
        .map(|spec| stack.desired(spec))
        .unwrap_or(1);
    let deploying = stack.deploys.running(service).is_some() || stack.held(service).is_some();
    let serving = stack
        .supervisor
        .live(service)
        .iter()
        .filter(|(key, _)| {
            stack
                .supervisor
                .board()
                .get(key)
                .is_some_and(|s| s.health == Health::Healthy)
        })
        .count() as u32;
    Signals {
        replicas,
        cpu_percent: cpu_percent(stack, service, policy.interval),
        requests_per_replica: requests_per_replica(stack, service, policy.interval, serving).await,
        deploying,
    }
}

/// The service's average CPU % (of one core) over its replicas in about the last `interval`
/// (at least two collector rounds), from the metrics history; None without data.
fn cpu_percent(stack: &Stack, service: &str, interval: Duration) -> Option<f64> {
    let metrics = stack.metrics.get()?;
    let now = std::time::SystemTime::now();
    let window = interval
        .max(metrics.interval * 2)
        .max(Duration::from_secs(1));
    let query = berth_metrics::Query {
        name: "cpu_percent".into(),
        labels: [("service".to_string(), service.to_string())].into(),
        from: now.checked_sub(window)?,
        to: now,
        step: Duration::from_secs(window.as_secs().max(1)),
        statistic: berth_metrics::Statistic::Avg,
    };
    match metrics.store.query_merged(&query) {
        Ok(points) => points.points.first().and_then(|p| p.1),
        Err(e) => {
            tracing::debug!("autoscale {service}: reading cpu_percent: {e}");
            None
        }
    }
}

/// The service's requests over about the last `interval` (all releases), per serving replica
/// per minute; None without two readings far enough apart or after an edge restart.
async fn requests_per_replica(
    stack: &Stack,
    service: &str,
    interval: Duration,
    serving: u32,
) -> Option<f64> {
    use berth_model::traffic::TrafficControl;
    let link = stack.edge.get()?;
    let (age, before) = link.traffic_before(service, interval).await?;
    let now = link.traffic(service).await.ok()?;
    per_replica_per_minute(&before, &now, age, serving)
}

/// Requests between two readings `age` apart, per replica per minute (pure).
fn per_replica_per_minute(
    before: &[berth_model::traffic::ReleaseTraffic],
    now: &[berth_model::traffic::ReleaseTraffic],
    age: Duration,
    serving: u32,
) -> Option<f64> {
    if age < Duration::from_secs(1) {
        return None;
    }
    let total = |all: &[berth_model::traffic::ReleaseTraffic]| -> u64 {
        all.iter().map(|t| t.requests).sum()
    };
    // Counters only grow while one edge runs; a smaller total means a restarted edge.
    let requests = total(now).checked_sub(total(before))?;
    Some(requests as f64 * 60.0 / age.as_secs_f64() / f64::from(serving.max(1)))
}

/// Scales `service` from `from` to `to` the way `berth scale` does.
async fn scale(stack: &Stack, service: &str, from: u32, to: u32, reason: &str) {
    let env = stack.env_name().to_string();
    if let Err(e) = stack.with_store(|s| s.set_desired_replicas(&env, service, to)) {
        tracing::error!("autoscale: keeping the count of {service}: {e:#}");
        return;
    }
    let message = format!("autoscale: {from} → {to} replicas ({reason})");
    tracing::info!("{message}");
    stack.record(EventLevel::Info, service, message);
    let plan = match stack.current_plan(service) {
        Ok(plan) => plan,
        Err(e) => {
            tracing::error!("autoscale: {service}: {e:#}");
            return;
        }
    };
    if let Err(e) = stack.supervisor.converge(&plan, to, false).await {
        stack.record(
            EventLevel::Warn,
            service,
            format!("autoscale to {to} replicas: {e:#}"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_model::traffic::ReleaseTraffic;

    fn reading(pairs: &[(&str, u64)]) -> Vec<ReleaseTraffic> {
        pairs
            .iter()
            .map(|(release, requests)| ReleaseTraffic {
                service: "web".into(),
                release: release.to_string(),
                requests: *requests,
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn requests_are_counted_over_all_releases_per_serving_replica_per_minute() {
        let before = reading(&[("r1", 1000)]);
        let now = reading(&[("r1", 1300), ("r2", 300)]);
        // 600 requests in 15 s over 2 replicas: 1,200 per replica per minute.
        let rate = per_replica_per_minute(&before, &now, Duration::from_secs(15), 2).unwrap();
        assert!((rate - 1200.0).abs() < 1e-9, "{rate}");
        // No replica serving counts as one (the rate then is the whole service's).
        assert!(per_replica_per_minute(&before, &now, Duration::from_secs(60), 0).is_some());
    }

    #[test]
    fn a_restarted_edge_or_a_too_young_reading_is_no_measurement() {
        let before = reading(&[("r1", 1000)]);
        let restarted = reading(&[("r1", 20)]);
        assert_eq!(
            per_replica_per_minute(&before, &restarted, Duration::from_secs(15), 2),
            None
        );
        assert_eq!(
            per_replica_per_minute(&before, &before, Duration::from_millis(200), 2),
            None
        );
    }
}
