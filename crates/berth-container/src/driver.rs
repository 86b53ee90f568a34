//! The container [`Driver`]: a replica is a container of its release's image, created labelled
//! with its stack, environment, service, replica and release, started detached (it outlives the
//! daemon like a shim does), watched through the engine's `wait`, stopped through the engine
//! (SIGTERM, SIGKILL after the stop timeout) and removed once it ended. Its output is streamed
//! from the engine into the replica's log file, timestamped and redacted as the shim does.
//!
//! A restarted daemon adopts a container from its process record: the record holds the
//! container's id and its main process as the host sees it (pid and start time), so
//! `is_running` is the same check as for a shim and needs no engine call.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use berth_logfile::LogFile;
use berth_model::driver::DriverError;
use berth_model::{Driver, ExitStatus, LaunchSpec, ProcessRecord};
use berth_supervisor::local::{proc_start_ticks, process_matches, tail_lines};
use berth_supervisor::shim::redact_line;
use bollard::container::LogOutput;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, LogsOptionsBuilder, StopContainerOptionsBuilder,
    WaitContainerOptionsBuilder,
};
use futures_util::StreamExt;
use tokio::sync::watch;

use crate::plan::{self, LineSplitter, LABEL_ENV, LABEL_STACK};
use crate::Engine;

/// The file in an instance folder holding its container's id (for people and scripts).
pub const CONTAINER_ID_FILE: &str = "container.id";

/// How often an adopted container's process is checked when the engine cannot be waited on.
const POLL: Duration = Duration::from_millis(50);

/// Runs replicas as containers.
pub struct ContainerDriver {
    engine: Engine,
    log_max_bytes: u64,
    log_keep: u32,
    /// Exit watchers by container id: `None` while running.
    exits: Mutex<HashMap<String, watch::Receiver<Option<ExitStatus>>>>,
}

impl ContainerDriver {
    pub fn new(engine: Engine, log_max_bytes: u64, log_keep: u32) -> Arc<Self> {
        Arc::new(Self {
            engine,
            log_max_bytes,
            log_keep,
            exits: Mutex::new(HashMap::new()),
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The exit watcher of a container, started if this daemon has none (an adopted container).
    fn watcher(&self, record: &ProcessRecord) -> watch::Receiver<Option<ExitStatus>> {
        let id = record.container.clone().unwrap_or_default();
        let mut exits = self.exits.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(rx) = exits.get(&id) {
            return rx.clone();
        }
        let (tx, rx) = watch::channel(None);
        exits.insert(id.clone(), rx.clone());
        let engine = self.engine.clone();
        let (pid, start) = (record.supervisor_pid, record.supervisor_start);
        tokio::spawn(async move {
            let status = wait_exit(&engine, &id, pid, start).await;
            if let Err(e) = engine.remove_container(&id).await {
                tracing::warn!("could not remove ended container {id}: {e}");
            }
            let _ = tx.send(Some(status));
        });
        rx
    }

    /// Streams the container's output into the replica's log file from `since` (unix seconds;
    /// 0: from its start) until it ends.
    fn follow_logs(&self, id: &str, log_file: PathBuf, redact: Vec<String>, since: i64) {
        let mut log = match LogFile::open(log_file.clone(), self.log_max_bytes, self.log_keep) {
            Ok(log) => log,
            Err(e) => {
                tracing::warn!("could not open {}: {e}", log_file.display());
                return;
            }
        };
        let options = LogsOptionsBuilder::new()
            .follow(true)
            .stdout(true)
            .stderr(true)
            .since(since.clamp(0, i32::MAX as i64) as i32)
            .build();
        let mut stream = self.engine.docker.logs(id, Some(options));
        tokio::spawn(async move {
            let mut out = LineSplitter::default();
            let mut err = LineSplitter::default();
            let mut write = |name: &str, line: String| {
                let text = redact_line(&line, &redact);
                let stamp = humantime::format_rfc3339_millis(SystemTime::now());
                let _ = log.write_line(&format!("{stamp} {name} {text}"));
            };
            while let Some(Ok(chunk)) = stream.next().await {
                match chunk {
                    LogOutput::StdErr { message } => {
                        for line in err.push(&message) {
                            write("stderr", line);
                        }
                    }
                    LogOutput::StdOut { message } | LogOutput::Console { message } => {
                        for line in out.push(&message) {
                            write("stdout", line);
                        }
                    }
                    LogOutput::StdIn { .. } => {}
                }
            }
            if let Some(line) = out.finish() {
                write("stdout", line);
            }
            if let Some(line) = err.finish() {
                write("stderr", line);
            }
            let _ = log.flush();
        });
    }

    /// Removes the containers labelled with this stack and environment that no record names
    /// (left by a daemon killed between creating a container and recording it). Returns how
    /// many were removed.
    pub async fn remove_strays(
        &self,
        stack: &str,
        env: &str,
        recorded: &[String],
    ) -> Result<usize, crate::ContainerError> {
        let found = self
            .engine
            .containers_labelled(&[(LABEL_STACK, stack), (LABEL_ENV, env)])
            .await?;
        let mut removed = 0;
        for (id, labels) in found {
            if recorded.iter().any(|r| r == &id) {
                continue;
            }
            let replica = labels.get(plan::LABEL_REPLICA).cloned().unwrap_or_default();
            tracing::info!("removing container {id} of {replica}: no record names it");
            self.engine.remove_container(&id).await?;
            removed += 1;
        }
        Ok(removed)
    }
}

/// How a container ended: the engine's wait, else (engine gone) its process's end.
async fn wait_exit(engine: &Engine, id: &str, pid: u32, start: u64) -> ExitStatus {
    let options = WaitContainerOptionsBuilder::new()
        .condition("not-running")
        .build();
    let mut wait = engine.docker.wait_container(id, Some(options));
    let waited = match wait.next().await {
        Some(Ok(_)) => true,
        Some(Err(bollard::errors::Error::DockerContainerWaitError { .. })) => true,
        Some(Err(e)) => {
            tracing::warn!(
                "waiting for container {id} through the engine failed: {e}; watching its process"
            );
            false
        }
        None => false,
    };
    if !waited {
        while process_matches(pid, start) {
            tokio::time::sleep(POLL).await;
        }
    }
    match engine.docker.inspect_container(id, None).await {
        Ok(info) => {
            let state = info.state.unwrap_or_default();
            let code = state.exit_code.unwrap_or(-1);
            if state.oom_killed == Some(true) {
                tracing::warn!("container {id} was killed for going over its memory limit");
            }
            exit_status(code)
        }
        Err(_) => ExitStatus {
            code: None,
            signal: None,
        },
    }
}

/// An engine's exit code as a status: 128+N is death by signal N, as shells report it.
pub fn exit_status(code: i64) -> ExitStatus {
    match code {
        129..=192 => ExitStatus {
            code: None,
            signal: Some((code - 128) as i32),
        },
        0..=128 => ExitStatus {
            code: Some(code as i32),
            signal: None,
        },
        _ => ExitStatus {
            code: None,
            signal: None,
        },
    }
}

fn replica_log(record: &ProcessRecord) -> PathBuf {
    record
        .instance_dir
        .parent()
        .map(|p| p.join("current.log"))
        .unwrap_or_default()
}

#[async_trait::async_trait]
impl Driver for ContainerDriver {
    async fn start(&self, launch: &LaunchSpec) -> Result<ProcessRecord, DriverError> {
        let start_error = |reason: String| DriverError::Start {
            key: launch.key.to_string(),
            reason,
        };
        let container = launch
            .container
            .as_ref()
            .ok_or_else(|| start_error("no image to run".into()))?;
        std::fs::create_dir_all(&launch.instance_dir)?;
        let name = plan::container_name(launch, container);
        // A container of that name is a leftover of this very instance slot: replace it.
        self.engine
            .remove_container(&name)
            .await
            .map_err(|e| start_error(e.to_string()))?;
        let options = CreateContainerOptionsBuilder::new().name(&name).build();
        let created = self
            .engine
            .docker
            .create_container(Some(options), plan::create_body(launch, container))
            .await
            .map_err(|e| start_error(format!("creating container {name}: {e}")))?;
        let id = created.id;
        if let Err(e) = self.engine.docker.start_container(&id, None).await {
            let _ = self.engine.remove_container(&id).await;
            return Err(start_error(format!("starting container {name}: {e}")));
        }
        let started_at = berth_model::now_unix();
        self.follow_logs(
            &id,
            launch.log_file.clone(),
            launch.redact.clone(),
            started_at - 1,
        );
        let info = self
            .engine
            .docker
            .inspect_container(&id, None)
            .await
            .map_err(|e| start_error(format!("inspecting container {name}: {e}")))?;
        let pid = info
            .state
            .and_then(|s| s.pid)
            .filter(|p| *p > 0)
            .unwrap_or(0) as u32;
        let _ = std::fs::write(launch.instance_dir.join(CONTAINER_ID_FILE), &id);
        let record = ProcessRecord {
            supervisor_pid: pid,
            supervisor_start: proc_start_ticks(pid).unwrap_or(0),
            app_pid: pid,
            app_start: 0,
            instance_dir: launch.instance_dir.clone(),
            started_at,
            limits: plan::limits_text(launch),
            container: Some(id),
        };
        // Watch it from now on (an exit right after the start is seen too).
        self.watcher(&record);
        Ok(record)
    }

    async fn wait(&self, record: &ProcessRecord) -> ExitStatus {
        let mut rx = self.watcher(record);
        let id = record.container.clone().unwrap_or_default();
        loop {
            if let Some(status) = *rx.borrow_and_update() {
                self.exits
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id);
                return status;
            }
            if rx.changed().await.is_err() {
                return ExitStatus {
                    code: None,
                    signal: None,
                };
            }
        }
    }

    async fn stop(&self, record: &ProcessRecord, timeout: Duration) -> ExitStatus {
        let mut rx = self.watcher(record);
        let id = record.container.clone().unwrap_or_default();
        let seconds = timeout.as_secs_f64().ceil().max(1.0) as i32;
        let options = StopContainerOptionsBuilder::new().t(seconds).build();
        let stop = self.engine.docker.stop_container(&id, Some(options));
        // The engine kills after `timeout`; give the call a little more, then remove it by force.
        let bound = timeout + Duration::from_secs(10);
        match tokio::time::timeout(bound, stop).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) if crate::is_not_found(&e) => {}
            Ok(Err(e)) => tracing::warn!("stopping container {id}: {e}"),
            Err(_) => tracing::warn!("stopping container {id} took over {bound:?}"),
        }
        let ended = tokio::time::timeout(Duration::from_secs(10), async {
            rx.wait_for(|s| s.is_some()).await.is_ok()
        })
        .await;
        if ended.is_err() {
            let _ = self.engine.remove_container(&id).await;
        }
        self.wait(record).await
    }

    fn is_running(&self, record: &ProcessRecord) -> bool {
        record.container.is_some()
            && process_matches(record.supervisor_pid, record.supervisor_start)
    }

    fn tail_log(&self, record: &ProcessRecord, n: usize) -> Vec<String> {
        tail_lines(&replica_log(record), n)
    }

    fn adopted(&self, record: &ProcessRecord, redact: &[String]) {
        if let Some(id) = &record.container {
            // Lines written while no daemon watched stay in the engine (`podman logs`).
            self.follow_logs(
                id,
                replica_log(record),
                redact.to_vec(),
                berth_model::now_unix(),
            );
        }
    }
}

/// The instance folder's container id, if it has one.
pub fn container_id(instance_dir: &Path) -> Option<String> {
    std::fs::read_to_string(instance_dir.join(CONTAINER_ID_FILE))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_above_128_are_signals() {
        assert_eq!(exit_status(0).to_string(), "exit 0");
        assert_eq!(exit_status(3).to_string(), "exit 3");
        assert_eq!(exit_status(137).to_string(), "signal 9");
        assert_eq!(exit_status(143).to_string(), "signal 15");
        assert_eq!(exit_status(-1).to_string(), "ended (status unknown)");
    }
}
