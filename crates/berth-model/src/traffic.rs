//! `TrafficControl`: the small trait through which the rollout engine moves traffic between
//! releases and the supervisor drains a replica before stopping it. The control plane's edge
//! link implements it; mechanisms only see the trait.

use std::collections::BTreeMap;
use std::time::Duration;

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
}
