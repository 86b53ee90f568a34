//! `[service.NAME.autoscale]`: target tracking between a service's `min` and `max` replicas (the
//! references' policies: CPU at 70%, 1,000 requests per replica per minute), with the
//! Kubernetes HPA's tolerance and scale-in stabilization. Read by `walk::autoscale`; the
//! daemon's autoscaler consumes it through the pure `berth-autoscale` crate.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How a service with `min < max` follows its load. Every service with `min < max` has one
/// (the defaults when no table is written).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AutoscaleSpec {
    /// Average CPU % of one core per replica to hold (None: CPU does not drive scaling).
    pub cpu: Option<f64>,
    /// Requests per replica per minute to hold (the references' `ALBRequestCountPerTarget`;
    /// None: requests do not drive scaling).
    pub requests_per_replica: Option<f64>,
    /// How far (a fraction) the metric may stray from its target before anything changes.
    pub tolerance: f64,
    /// How often the autoscaler looks (and over how long it averages its signals).
    pub interval: Duration,
    /// No scale-out sooner than this after the last scale-out.
    pub scale_out_cooldown: Duration,
    /// No scale-in sooner than this after the last scaling of either kind.
    pub scale_in_cooldown: Duration,
    /// A scale-in goes only as low as the highest count recommended over this window.
    pub stabilization: Duration,
}

impl AutoscaleSpec {
    /// The references' target: 70% CPU.
    pub const DEFAULT_CPU: f64 = 70.0;
    /// The references' target: 1,000 requests per replica per minute.
    pub const DEFAULT_REQUESTS_PER_REPLICA: f64 = 1000.0;
}

impl Default for AutoscaleSpec {
    fn default() -> Self {
        AutoscaleSpec {
            cpu: Some(Self::DEFAULT_CPU),
            requests_per_replica: Some(Self::DEFAULT_REQUESTS_PER_REPLICA),
            tolerance: 0.1,
            interval: Duration::from_secs(15),
            scale_out_cooldown: Duration::from_secs(60),
            scale_in_cooldown: Duration::from_secs(300),
            stabilization: Duration::from_secs(300),
        }
    }
}
