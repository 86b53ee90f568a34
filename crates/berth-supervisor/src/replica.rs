//! The replica keeper: one task per replica that starts its process, checks its health, restarts
//! it with capped exponential back-off when it crashes or turns unhealthy, marks it failed when it
//! crash-loops, and stops it gracefully when told to. Every change is published on the board.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_model::{
    ContainerLaunch, Driver, Event, EventLevel, ExitStatus, Health, LaunchSpec, ProcessRecord,
    Release, ReplicaBoard, ReplicaKey, ReplicaStatus,
};
use berth_spec::{PortSpec, ServiceSpec};
use tokio::sync::{mpsc, oneshot};

use crate::health::{self, HealthTracker};
use crate::SupervisorEvent;

/// Container labels a replica adds to its plan's (which name the stack and environment).
pub const LABEL_SERVICE: &str = "berth.service";
pub const LABEL_REPLICA: &str = "berth.replica";
pub const LABEL_RELEASE: &str = "berth.release";

/// A process that ran at least this long before ending does not count as crash-looping.
pub const STABLE_AFTER: Duration = Duration::from_secs(30);
/// Consecutive quick crashes after which a replica is shown as failed.
pub const CRASH_LOOP_AFTER: u32 = 3;
/// First restart delay; doubles per consecutive crash up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(500);
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What a replica of a service runs: the service, its release, and its environment (all but
/// `PORT` and `BERTH_REPLICA`, which each replica adds).
#[derive(Debug, Clone)]
pub struct ServicePlan {
    pub service: ServiceSpec,
    pub release: Release,
    pub env: BTreeMap<String, String>,
    /// Secret values to mask in captured logs.
    pub redact: Vec<String>,
    /// For a container service: the pinned image, network, mounts and the stack's labels (each
    /// replica adds its own service, replica and release labels).
    pub container: Option<ContainerLaunch>,
}

/// Where replicas keep their files, and how their logs and control groups are named.
#[derive(Debug, Clone)]
pub struct ReplicaPaths {
    /// `.berth/<env>/replicas`: one folder per replica, holding its log and its instances.
    pub replicas_dir: PathBuf,
    /// Prefix of control-group names, e.g. `berth/hello-default`.
    pub cgroup_prefix: String,
    pub log_max_bytes: u64,
    pub log_keep: u32,
}

pub(crate) enum KeeperCommand {
    Stop { reply: oneshot::Sender<()> },
}

/// The delay before restart number `crashes` (1-based) of a crash loop.
pub fn backoff(crashes: u32) -> Duration {
    let factor = 2u32.saturating_pow(crashes.saturating_sub(1).min(16));
    FIRST_BACKOFF.saturating_mul(factor).min(MAX_BACKOFF)
}

pub(crate) struct Keeper {
    pub key: ReplicaKey,
    pub plan: ServicePlan,
    pub driver: Arc<dyn Driver>,
    pub board: ReplicaBoard,
    pub events: mpsc::UnboundedSender<SupervisorEvent>,
    pub paths: ReplicaPaths,
    pub commands: mpsc::Receiver<KeeperCommand>,
    /// Ports other replicas of the service hold (for fixed port ranges).
    pub taken_ports: Arc<std::sync::Mutex<std::collections::HashSet<u16>>>,
    pub port: Option<u16>,
    pub restarts: u32,
    pub crashes: u32,
    pub instance: u32,
    pub last_exit: Option<String>,
    pub last_log: Vec<String>,
    pub limits: Option<String>,
    /// The edge (when there is one): drained before a replica stops.
    pub traffic: crate::TrafficSlot,
}

enum Outcome {
    Exited(ExitStatus),
    Unhealthy(String),
    Stop(oneshot::Sender<()>),
}

impl Keeper {
    fn dir(&self) -> PathBuf {
        self.paths.replicas_dir.join(self.key.to_string())
    }

    fn note(&self, level: EventLevel, message: String) {
        match level {
            EventLevel::Error | EventLevel::Warn => tracing::warn!("{}: {message}", self.key),
            EventLevel::Info => tracing::info!("{}: {message}", self.key),
        }
        let _ = self.events.send(SupervisorEvent::Event(Event::new(
            level,
            self.key.to_string(),
            message,
        )));
    }

    fn publish(&self, health: Health, record: Option<&ProcessRecord>) {
        self.board.publish(
            &self.key,
            ReplicaStatus {
                service: self.key.service.clone(),
                replica: self.key.to_string(),
                index: self.key.index,
                pid: record.map(|r| r.app_pid),
                port: self.port,
                health,
                release: self.plan.release.id.to_string(),
                started_at: record.map(|r| r.started_at),
                restarts: self.restarts,
                last_exit: self.last_exit.clone(),
                last_log: self.last_log.clone(),
                limits: self.limits.clone(),
            },
        );
    }

    fn pick_port(&mut self) -> Option<u16> {
        let mut taken = self.taken_ports.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = self.port.take() {
            taken.remove(&old);
        }
        let port = match self.plan.service.port {
            PortSpec::None => None,
            PortSpec::Auto => free_loopback_port(&taken),
            PortSpec::Fixed(base) => (base..=u16::MAX).find(|p| !taken.contains(p)),
        };
        if let Some(p) = port {
            taken.insert(p);
        }
        port
    }

    async fn start(&mut self) -> Result<ProcessRecord, String> {
        self.instance += 1;
        self.port = self.pick_port();
        let mut env = self.plan.env.clone();
        env.insert("BERTH_REPLICA".into(), self.key.to_string());
        if let Some(port) = self.port {
            env.insert("PORT".into(), port.to_string());
        }
        let service = &self.plan.service;
        let launch = LaunchSpec {
            key: self.key.clone(),
            release: self.plan.release.id.clone(),
            command: service.run.clone(),
            cwd: PathBuf::from(&self.plan.release.dir),
            env,
            port: self.port,
            instance_dir: self.dir().join(format!("run-{}", self.instance)),
            log_file: self.dir().join("current.log"),
            log_max_bytes: self.paths.log_max_bytes,
            log_keep: self.paths.log_keep,
            memory: service.memory,
            cpu: service.cpu,
            cgroup: format!(
                "{}/{}-{}",
                self.paths.cgroup_prefix, self.key, self.instance
            ),
            redact: self.plan.redact.clone(),
            container: self.plan.container.clone().map(|mut container| {
                container
                    .labels
                    .insert(LABEL_SERVICE.into(), self.key.service.clone());
                container
                    .labels
                    .insert(LABEL_REPLICA.into(), self.key.to_string());
                container
                    .labels
                    .insert(LABEL_RELEASE.into(), self.plan.release.id.to_string());
                container
            }),
        };
        let record = self
            .driver
            .start(&launch)
            .await
            .map_err(|e| e.to_string())?;
        // Only the newest instance folder is kept.
        if self.instance > 1 {
            let _ = std::fs::remove_dir_all(self.dir().join(format!("run-{}", self.instance - 1)));
        }
        self.limits = record.limits.clone();
        let _ = self.events.send(SupervisorEvent::Started {
            key: self.key.clone(),
            release: self.plan.release.id.clone(),
            port: self.port,
            record: record.clone(),
        });
        Ok(record)
    }

    /// Runs the replica until it is told to stop.
    /// `adopted`: a process an earlier daemon started, and whether the edge was sending it traffic.
    pub async fn run(mut self, adopted: Option<(ProcessRecord, bool)>) {
        let mut current = adopted;
        loop {
            // Trusted healthy only when it was serving; else it must pass a check first.
            let adopted = current.as_ref().is_some_and(|(_, serving)| *serving);
            let (record, started) = match current.take() {
                // An adopted process has had its grace period already.
                Some((record, _)) => {
                    let grace = self.plan.service.health.as_ref().map(|h| h.grace_period);
                    let started = Instant::now()
                        .checked_sub(grace.unwrap_or_default())
                        .unwrap_or_else(Instant::now);
                    (record, started)
                }
                None => match self.start().await {
                    Ok(record) => {
                        self.note(
                            EventLevel::Info,
                            format!(
                                "started pid {} port {} release {}",
                                record.app_pid,
                                self.port.map_or("-".into(), |p| p.to_string()),
                                self.plan.release.id
                            ),
                        );
                        (record, Instant::now())
                    }
                    Err(reason) => {
                        self.last_exit = Some(reason.clone());
                        self.note(EventLevel::Error, reason);
                        if self.crash_and_wait(None).await {
                            return;
                        }
                        continue;
                    }
                },
            };
            let outcome = self.watch(&record, started, adopted).await;
            match outcome {
                Outcome::Exited(status) => {
                    // Out of the edge's pool at once (the link pushes a table on this change),
                    // not after the next health check or failed requests.
                    self.last_exit = Some(status.to_string());
                    self.publish(Health::Starting, None);
                    self.last_log = self.driver.tail_log(&record, 10);
                    let ran = Instant::now().duration_since(started);
                    if ran >= STABLE_AFTER {
                        self.crashes = 0;
                    }
                    self.note(
                        EventLevel::Warn,
                        format!(
                            "process {} ended: {status} after {}s",
                            record.app_pid,
                            ran.as_secs()
                        ),
                    );
                    if self.crash_and_wait(Some(&record)).await {
                        return;
                    }
                }
                Outcome::Unhealthy(reason) => {
                    self.note(
                        EventLevel::Warn,
                        format!("unhealthy ({reason}): replacing it"),
                    );
                    self.publish(Health::Unhealthy, Some(&record));
                    let status = self
                        .driver
                        .stop(&record, self.plan.service.stop_timeout)
                        .await;
                    self.last_exit = Some(format!("stopped as unhealthy ({reason}); {status}"));
                    self.last_log = self.driver.tail_log(&record, 10);
                    if self.crash_and_wait(Some(&record)).await {
                        return;
                    }
                }
                Outcome::Stop(reply) => {
                    // Deregistration: no new requests, in-flight ones finish (bounded).
                    self.publish(Health::Draining, Some(&record));
                    let traffic = self.traffic.read().ok().and_then(|t| t.clone());
                    if let Some(traffic) = traffic {
                        traffic
                            .drain(
                                &self.key.to_string(),
                                self.plan.service.deregistration_delay,
                            )
                            .await;
                    }
                    let status = self
                        .driver
                        .stop(&record, self.plan.service.stop_timeout)
                        .await;
                    self.note(EventLevel::Info, format!("stopped: {status}"));
                    self.finish();
                    let _ = reply.send(());
                    return;
                }
            }
        }
    }

    fn finish(&mut self) {
        if let Some(port) = self.port.take() {
            self.taken_ports
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&port);
        }
        let _ = std::fs::remove_dir_all(self.dir().join(format!("run-{}", self.instance)));
        self.board.remove(&self.key);
        let _ = self.events.send(SupervisorEvent::Removed {
            key: self.key.clone(),
        });
    }

    /// Counts a crash, publishes the replica as restarting (or failed, when crash-looping) and
    /// waits out the back-off. Returns true when a stop command arrived meanwhile.
    async fn crash_and_wait(&mut self, record: Option<&ProcessRecord>) -> bool {
        self.crashes += 1;
        self.restarts += 1;
        let health = if self.crashes >= CRASH_LOOP_AFTER {
            Health::Failed
        } else {
            Health::Starting
        };
        let delay = backoff(self.crashes);
        if health == Health::Failed {
            self.note(
                EventLevel::Error,
                format!(
                    "crash-looping ({} quick exits in a row, last: {}); next try in {}s",
                    self.crashes,
                    self.last_exit.as_deref().unwrap_or("?"),
                    delay.as_secs_f32()
                ),
            );
        }
        // The process is gone: no pid, no port.
        let _ = record;
        self.publish(health, None);
        tokio::select! {
            _ = tokio::time::sleep(delay) => false,
            cmd = self.commands.recv() => {
                match cmd {
                    Some(KeeperCommand::Stop { reply }) => {
                        self.finish();
                        let _ = reply.send(());
                    }
                    None => self.finish(),
                }
                true
            }
        }
    }

    /// Checks health until the process ends, turns unhealthy, or a stop command arrives.
    async fn watch(&mut self, record: &ProcessRecord, started: Instant, adopted: bool) -> Outcome {
        let health_spec = self
            .plan
            .service
            .health
            .clone()
            .filter(|_| self.port.is_some());
        let mut tracker = health_spec.clone().map(|h| {
            if adopted {
                HealthTracker::adopted(h, started)
            } else {
                HealthTracker::new(h, started)
            }
        });
        let initial = tracker.as_ref().map_or(Health::Healthy, |t| t.health());
        self.publish(initial, Some(record));
        let driver = self.driver.clone();
        let exit = driver.wait(record);
        tokio::pin!(exit);
        let mut delay = Duration::ZERO;
        let mut last_failure = String::new();
        loop {
            tokio::select! {
                status = &mut exit => return Outcome::Exited(status),
                cmd = self.commands.recv() => {
                    return match cmd {
                        Some(KeeperCommand::Stop { reply }) => Outcome::Stop(reply),
                        None => {
                            let (tx, _rx) = oneshot::channel();
                            Outcome::Stop(tx)
                        }
                    };
                }
                _ = tokio::time::sleep(delay), if tracker.is_some() => {
                    let (Some(t), Some(spec), Some(port)) = (tracker.as_mut(), health_spec.as_ref(), self.port) else {
                        continue;
                    };
                    let result = health::probe(port, &spec.path, spec.timeout).await;
                    let ok = matches!(result, Ok(status) if health::is_passing(status));
                    if !ok {
                        last_failure = match result {
                            Ok(status) => format!("{} answered {status}", spec.path),
                            Err(e) => format!("{}: {e}", spec.path),
                        };
                    }
                    let before = t.health();
                    let now = t.observe(ok, Instant::now());
                    delay = t.next_delay();
                    // A replica still booting (within its grace period, where failures do not
                    // count) is probed every 100 ms, so it joins as soon as it answers.
                    if !ok && now == Health::Starting && started.elapsed() < spec.grace_period {
                        delay = delay.min(BOOT_PROBE_INTERVAL);
                    }
                    if now != before {
                        match now {
                            Health::Healthy => self.note(EventLevel::Info, "healthy".into()),
                            Health::Unhealthy => return Outcome::Unhealthy(last_failure),
                            _ => {}
                        }
                        self.publish(now, Some(record));
                    }
                }
            }
        }
    }
}

/// How often a booting replica is probed until it first answers.
const BOOT_PROBE_INTERVAL: Duration = Duration::from_millis(100);

/// A loopback port nobody listens on now (and that no other replica holds).
pub fn free_loopback_port(taken: &std::collections::HashSet<u16>) -> Option<u16> {
    for _ in 0..32 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").ok()?;
        let port = listener.local_addr().ok()?.port();
        if !taken.contains(&port) {
            return Some(port);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(2), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(2));
        assert_eq!(backoff(10), MAX_BACKOFF);
        assert_eq!(backoff(1000), MAX_BACKOFF);
    }
}
