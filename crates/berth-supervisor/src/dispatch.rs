//! The driver the supervisor is given when a stack has container services: every replica goes to
//! the local-process driver, or, when its launch names an image (its record a container), to the
//! container driver. The supervisor itself never knows which kind a replica is.

use std::sync::Arc;
use std::time::Duration;

use berth_model::driver::DriverError;
use berth_model::{Driver, ExitStatus, LaunchSpec, ProcessRecord};

/// Sends each replica to the driver of its kind.
pub struct DriverByKind {
    pub process: Arc<dyn Driver>,
    /// `None` when no container engine is configured: container launches then fail.
    pub container: Option<Arc<dyn Driver>>,
}

impl DriverByKind {
    fn pick(&self, is_container: bool) -> Option<&Arc<dyn Driver>> {
        if is_container {
            self.container.as_ref()
        } else {
            Some(&self.process)
        }
    }
}

const UNKNOWN: ExitStatus = ExitStatus {
    code: None,
    signal: None,
};

#[async_trait::async_trait]
impl Driver for DriverByKind {
    async fn start(&self, launch: &LaunchSpec) -> Result<ProcessRecord, DriverError> {
        match self.pick(launch.container.is_some()) {
            Some(driver) => driver.start(launch).await,
            None => Err(DriverError::Start {
                key: launch.key.to_string(),
                reason: "it runs in a container, but no container engine is connected".into(),
            }),
        }
    }

    async fn wait(&self, record: &ProcessRecord) -> ExitStatus {
        match self.pick(record.container.is_some()) {
            Some(driver) => driver.wait(record).await,
            None => UNKNOWN,
        }
    }

    async fn stop(&self, record: &ProcessRecord, timeout: Duration) -> ExitStatus {
        match self.pick(record.container.is_some()) {
            Some(driver) => driver.stop(record, timeout).await,
            None => UNKNOWN,
        }
    }

    fn is_running(&self, record: &ProcessRecord) -> bool {
        self.pick(record.container.is_some())
            .is_some_and(|driver| driver.is_running(record))
    }

    fn tail_log(&self, record: &ProcessRecord, n: usize) -> Vec<String> {
        self.pick(record.container.is_some())
            .map(|driver| driver.tail_log(record, n))
            .unwrap_or_default()
    }

    fn adopted(&self, record: &ProcessRecord, redact: &[String]) {
        if let Some(driver) = self.pick(record.container.is_some()) {
            driver.adopted(record, redact);
        }
    }
}
