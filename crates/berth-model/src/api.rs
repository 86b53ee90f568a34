//! The shapes the daemon's API answers with and accepts (serialised as JSON by the API and CLI).

use serde::{Deserialize, Serialize};

use crate::{Event, ReplicaStatus};

/// `GET /v1/status`: the whole stack.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StackStatus {
    pub stack: String,
    pub environment: String,
    pub daemon_pid: u32,
    pub started_at: i64,
    pub services: Vec<ServiceStatus>,
    pub accessories: Vec<AccessoryStatus>,
    pub replicas: Vec<ReplicaStatus>,
    pub edge: Option<EdgeStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EdgeStatus {
    /// The live edge process; None while it is dead or being restarted (never a dead pid).
    pub pid: Option<u32>,
    pub listen: Vec<std::net::SocketAddr>,
    pub admin: Option<std::net::SocketAddr>,
    /// `running`, `down`, `restarting`, `crash-looping` or `stopped`.
    #[serde(default)]
    pub state: String,
    /// Restarts by this daemon after the edge died.
    #[serde(default)]
    pub restarts: u32,
    /// How the last edge that died ended (`signal 9 (SIGKILL)`).
    #[serde(default)]
    pub last_exit: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub name: String,
    /// Replicas wanted now (the spec's count, or what `berth scale` set).
    pub desired: u32,
    pub release: Option<String>,
    pub healthy: u32,
    /// Accessories it uses or `depends_on` that are down now (died, not back yet).
    #[serde(default)]
    pub dependencies_down: Vec<String>,
    /// Why no replica of the service is started (its release's first migration failed, with
    /// the log tail), if that is so.
    #[serde(default)]
    pub held: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessoryStatus {
    pub name: String,
    pub engine: String,
    pub pid: Option<u32>,
    pub port: Option<u16>,
    /// `running`, `stopped`, `restarting` or `crash-looping` (died; Berth starts it again).
    pub state: String,
    /// Restarts by this daemon after the server died.
    #[serde(default)]
    pub restarts: u32,
    /// How the last server that died ended (`signal 9 (SIGKILL)`).
    #[serde(default)]
    pub last_exit: Option<String>,
}

/// `POST /v1/services/{name}/scale`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScaleRequest {
    pub replicas: u32,
}

/// `POST /v1/services/{name}/releases/{id}/push`: push a container release's image to a
/// registry as `repository:RELEASE`.
#[derive(Clone, Serialize, Deserialize)]
pub struct PushRequest {
    /// `registry/name` (e.g. `registry.example.com/shop/web`); the tag is the release id.
    pub repository: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
}

/// Never shows the password.
impl std::fmt::Debug for PushRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushRequest")
            .field("repository", &self.repository)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "(hidden)"))
            .finish()
    }
}

/// The answer to a push: what the registry now holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PushResponse {
    /// `repository:RELEASE`.
    pub reference: String,
    /// The registry's content digest (`sha256:...`); `repository@digest` names it for good.
    pub digest: String,
}

/// `POST /v1/maintenance`: turn maintenance mode on (for `services`, or all when empty) or off.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MaintenanceRequest {
    pub on: bool,
    #[serde(default)]
    pub services: Vec<String>,
    #[serde(default)]
    pub message: Option<String>,
}

/// `POST /v1/cache/purge`: drop the edge's cached answers of a service (all when None) under a
/// path prefix (all paths when None).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub prefix: Option<String>,
}

/// The answer to a purge.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PurgeResult {
    /// Cached answers removed.
    pub purged: u64,
}

/// `GET /v1/maintenance` and the answer to a change: what is in maintenance now.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MaintenanceStatus {
    pub on: bool,
    /// Empty while on: every service.
    pub services: Vec<String>,
    pub message: Option<String>,
}

/// Any 4xx/5xx answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
}

/// `GET /v1/events`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventList {
    pub events: Vec<Event>,
}

/// `GET /v1/releases`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReleaseList {
    pub releases: Vec<crate::Release>,
}

/// `POST /v1/tasks/environment`: what `berth run` needs to run a one-off task itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskRequest {
    pub service: String,
    /// A release of the service (default: its current release).
    #[serde(default)]
    pub release: Option<String>,
}

/// The answer to [`TaskRequest`]: the release's folder and exactly the environment a replica
/// of that release gets (secret values included: this only crosses the 0600 socket).
#[derive(Clone, Serialize, Deserialize)]
pub struct TaskEnvironment {
    pub service: String,
    pub release: String,
    pub dir: String,
    pub env: std::collections::BTreeMap<String, String>,
}

impl std::fmt::Debug for TaskEnvironment {
    /// Names only: the values may be secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskEnvironment")
            .field("service", &self.service)
            .field("release", &self.release)
            .field("dir", &self.dir)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// `POST /v1/tasks/ended`: `berth run` reports how the task it ran ended (an event).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskEnded {
    pub service: String,
    pub release: String,
    pub command: String,
    /// The OS user who ran it.
    pub user: String,
    /// `exit 0`, `signal 2 (SIGINT)`.
    pub how: String,
    pub success: bool,
    pub seconds: f64,
}

/// `POST /v1/tasks`: `berth run --detach`; the daemon runs the task and keeps its log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DetachedTaskRequest {
    pub service: String,
    #[serde(default)]
    pub release: Option<String>,
    pub command: String,
    pub user: String,
}

/// The answer to [`DetachedTaskRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DetachedTask {
    pub id: String,
    pub release: String,
    /// The task's log file (secret values masked).
    pub log: String,
}

/// One alarm as `GET /v1/alarms` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlarmView {
    pub name: String,
    pub description: Option<String>,
    /// "avg cpu_percent{service=web} > 80 for 2 of 2 periods of 5m".
    pub condition: String,
    /// `OK`, `ALARM` or `INSUFFICIENT_DATA`.
    pub state: String,
    pub reason: String,
    /// Unix seconds of the last transition (`None`: never evaluated).
    pub since: Option<i64>,
    /// Unix seconds of the last evaluation.
    pub evaluated_at: Option<i64>,
    /// One of the references' default alarms.
    pub default: bool,
}

/// A change of an alarm's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlarmTransition {
    pub alarm: String,
    /// Unix seconds.
    pub at: i64,
    pub previous: String,
    pub state: String,
    pub reason: String,
}

/// `GET /v1/alarms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlarmList {
    pub alarms: Vec<AlarmView>,
    /// Whether the alarms are evaluated (false: no metrics source in this build).
    pub evaluating: bool,
    /// The newest transitions, newest last.
    pub history: Vec<AlarmTransition>,
}
