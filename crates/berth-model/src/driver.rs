//! The `Driver` trait: how a replica process is started, watched and stopped.
//!
//! The supervisor decides *when* replicas run; a driver decides *how*: local processes
//! (`berth-supervisor`), containers through a Docker-compatible engine (`berth-container`);
//! ECS and Kubernetes drivers implement the same trait later.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{ReleaseId, ReplicaKey};

/// Everything a driver needs to start one replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaunchSpec {
    pub key: ReplicaKey,
    pub release: ReleaseId,
    /// Shell command, run with `sh -c`.
    pub command: String,
    /// The release folder.
    pub cwd: PathBuf,
    /// The complete environment of the process (nothing is inherited from Berth).
    pub env: BTreeMap<String, String>,
    pub port: Option<u16>,
    /// A folder owned by this process instance: launch file, pids, exit status.
    pub instance_dir: PathBuf,
    /// The replica's log file (shared by its successive instances), rotated by size.
    pub log_file: PathBuf,
    /// Rotate the log file past this size.
    pub log_max_bytes: u64,
    /// Rotated log files kept besides the current one.
    pub log_keep: u32,
    /// Memory limit in bytes.
    pub memory: Option<u64>,
    /// CPU limit in cores.
    pub cpu: Option<f64>,
    /// Name of the control group (relative to each controller's root), e.g. `berth/hello-default/web.1`.
    pub cgroup: String,
    /// Values that must never appear in captured logs: replaced by `[redacted]`.
    pub redact: Vec<String>,
    /// Run as a container of this image instead of `sh -c command` (`command` and `cwd` unused).
    #[serde(default)]
    pub container: Option<ContainerLaunch>,
}

/// What a container replica needs besides the common launch settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerLaunch {
    /// The image, pinned: its id (`sha256:...`).
    pub image: String,
    /// `"bridge"` (the port published on 127.0.0.1) or `"host"`.
    pub network: String,
    /// Host paths bind-mounted at the same path in the container.
    pub mounts: Vec<BindMount>,
    /// Labels that let a restarted daemon recognise the container (stack, environment).
    pub labels: BTreeMap<String, String>,
    /// How long a stop waits before the engine kills the container.
    pub stop_timeout: Duration,
}

/// One bind mount of a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindMount {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
}

/// What identifies a started process, durably: enough for a restarted daemon to find it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRecord {
    /// The supervising process (the shim for local processes).
    pub supervisor_pid: u32,
    /// Start time of the supervising process in clock ticks since boot: guards against pid reuse.
    pub supervisor_start: u64,
    /// The application process.
    pub app_pid: u32,
    /// Start time of the application process in clock ticks since boot (0: unknown, a record
    /// of an older Berth): its process group is signalled only while `app_pid` is not another
    /// process by then.
    #[serde(default)]
    pub app_start: u64,
    pub instance_dir: PathBuf,
    /// Unix seconds.
    pub started_at: i64,
    /// The limits applied, or why they could not be.
    pub limits: Option<String>,
    /// The container's id, for a container replica (`supervisor_pid` and `app_pid` are then its
    /// main process as the host sees it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

/// How a replica process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

impl ExitStatus {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code, self.signal) {
            (Some(c), _) => write!(f, "exit {c}"),
            (None, Some(s)) => write!(f, "signal {s}"),
            (None, None) => f.write_str("ended (status unknown)"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("could not start {key}: {reason}")]
    Start { key: String, reason: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Runs replica processes.
#[async_trait::async_trait]
pub trait Driver: Send + Sync + 'static {
    /// Starts one replica and returns once its application process exists.
    async fn start(&self, launch: &LaunchSpec) -> Result<ProcessRecord, DriverError>;
    /// Resolves when the process has ended, with how it ended.
    async fn wait(&self, record: &ProcessRecord) -> ExitStatus;
    /// Asks the process to stop (SIGTERM), and kills it after `timeout`.
    async fn stop(&self, record: &ProcessRecord, timeout: Duration) -> ExitStatus;
    /// Whether a process recorded earlier (perhaps by a previous daemon) is still running.
    fn is_running(&self, record: &ProcessRecord) -> bool;
    /// The last `n` lines the process logged.
    fn tail_log(&self, record: &ProcessRecord, n: usize) -> Vec<String>;
    /// A process an earlier daemon started is taken over: a driver that captures output
    /// itself (rather than through a process that outlives the daemon) resumes here, masking
    /// `redact`.
    fn adopted(&self, _record: &ProcessRecord, _redact: &[String]) {}
}
