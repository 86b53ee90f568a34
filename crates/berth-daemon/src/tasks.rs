//! One-off tasks of a release: migrations (the first `berth up` of a release, and every deploy),
//! `berth run` and `berth run --detach`.
//!
//! A task gets exactly the environment a replica of its release gets: [`Stack::plan_for_release`]
//! builds it (the spec's env, accessory URLs, volume paths, secrets as variables or 0600 files,
//! Berth's own variables), the same call the supervisor's replicas are planned with; only `PORT`
//! and `BERTH_REPLICA` are left out (a task takes no requests).
//!
//! How `berth run` (attached) gets its stdio and environment: the CLI runs the task itself, as
//! its own child, so the task inherits the CLI's terminal (a tty for `manage.py
//! createsuperuser` or a shell: job control, window size and Ctrl-C work as for any program) or
//! its pipes, and the CLI returns the task's exit status. The daemon hands it the release folder
//! and the environment over the API (`POST /v1/tasks/environment`). That answer carries secret
//! values, which is acceptable because the API is a unix socket of mode 0600: only the stack's
//! owner (and root) can connect, and that user can already read `.berth/master.key` (0600) and
//! decrypt every secret. The handler never logs it, its `Debug` prints variable names only, and
//! the CLI passes the values in the task's environment (execve's envp, readable in
//! `/proc/PID/environ` by the same user only), never in argv, so `ps` does not show them. The other
//! way, the CLI passing its terminal's fds to the daemon (SCM_RIGHTS) for a daemon-spawned task,
//! would keep the values in the daemon, but the task would run in the daemon's session without
//! a controlling terminal: no Ctrl-C or job control from the terminal, and no `/dev/tty` (which
//! Python's `getpass`, behind `createsuperuser`'s password prompt, opens) unless the daemon
//! relayed signals and window sizes through a pty of its own; and it gains nothing in who can
//! see the values, since the socket's only users can decrypt them anyway. The CLI then reports how the task ended
//! (`POST /v1/tasks/ended`) and the daemon records the event (who, the command with secret
//! values masked, exit status; never the environment).
//!
//! `berth run --detach` and cron runs have no terminal: the daemon runs them with
//! [`berth_rollout::migrate::run`] (output to a log file, secret values masked) and records
//! their end as an event. They are children of the daemon: `berth down` ends them, with
//! whatever they started ([`stop_all`]).
//!
//! A daemon that dies hard (SIGKILL, a crash) leaves its tasks running with nobody watching
//! them: a migration the next `berth up` would run a second time beside the first, a cron run
//! the next daemon would overlap. No record could name them (the daemon can die between
//! starting one and writing it down), so every task the daemon starts carries
//! [`TASK_LOG_VAR`] (its log file, under the environment's folder) in its environment, which its
//! own children inherit; [`stop_strays`], the first thing `berth up` does, finds the processes
//! of this environment that carry it (none can be this daemon's yet) and stops them.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use berth_model::api::{DetachedTask, TaskEnded, TaskEnvironment};
use berth_model::{EventLevel, ReleaseId};
use berth_rollout::migrate::MigrationOutcome;
use berth_supervisor::ServicePlan;

use tracing::Instrument;

use crate::stack::Stack;

/// How long a detached or scheduled task may run before it is stopped.
pub const TASK_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Why a task cannot be prepared.
#[derive(Debug)]
pub enum TaskRefusal {
    /// An unknown service or release (the message says which and how to list them).
    NotFound(String),
    /// The service's release is held (its first migration failed).
    Held(String),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for TaskRefusal {
    fn from(e: anyhow::Error) -> Self {
        TaskRefusal::Other(e)
    }
}

/// Counts the detached tasks of this daemon (their ids).
#[derive(Default)]
pub struct TaskCounter(AtomicU32);

/// The plan (release, environment, masked values) of a task of `service`: `release`, else the
/// service's current release.
pub fn task_plan(
    stack: &Stack,
    service: &str,
    release: Option<&str>,
) -> Result<ServicePlan, TaskRefusal> {
    if !stack.spec.services.contains_key(service) {
        let known: Vec<&str> = stack.spec.services.keys().map(String::as_str).collect();
        return Err(TaskRefusal::NotFound(format!(
            "no service `{service}` in {} (services: {})",
            stack.spec.path.display(),
            known.join(", ")
        )));
    }
    let env = stack.env_name().to_string();
    let id = match release {
        Some(r) => {
            let id = ReleaseId(r.to_string());
            let found = stack
                .with_store(|s| s.release(service, &id))?
                .filter(|r| berth_release::is_complete(Path::new(&r.dir)));
            if found.is_none() {
                return Err(TaskRefusal::NotFound(format!(
                    "release `{r}` of `{service}` does not exist; `berth releases {service}` lists them"
                )));
            }
            id
        }
        None => {
            let current = stack
                .with_store(|s| s.current_release(&env, service))?
                .ok_or_else(|| anyhow!("`{service}` has no release yet"))?;
            if let Some(reason) = stack.held(service) {
                return Err(TaskRefusal::Held(format!(
                    "release {current} of `{service}` is held: {reason}; name another with --release"
                )));
            }
            current
        }
    };
    Ok(stack.plan_for_release(service, &id)?)
}

/// The environment answer of `berth run`: the task's folder and variables.
pub fn environment(plan: &ServicePlan) -> TaskEnvironment {
    TaskEnvironment {
        service: plan.service.name.clone(),
        release: plan.release.id.to_string(),
        dir: plan.release.dir.clone(),
        env: plan.env.clone(),
    }
}

/// `text` with every secret value of `plan` replaced by `[redacted]`.
pub fn mask(plan: &ServicePlan, text: &str) -> String {
    let mut text = text.to_string();
    for secret in plan.redact.iter().filter(|s| s.len() >= 4) {
        text = text.replace(secret.as_str(), "[redacted]");
    }
    text
}

/// Records how an attached `berth run` ended.
pub fn record_ended(stack: &Stack, plan: &ServicePlan, ended: &TaskEnded) {
    let level = if ended.success {
        EventLevel::Info
    } else {
        EventLevel::Warn
    };
    stack.record(
        level,
        &plan.service.name,
        format!(
            "berth run by {}: `{}` on {}: {} after {:.1}s",
            ended.user,
            mask(plan, &ended.command),
            plan.release.id,
            ended.how,
            ended.seconds
        ),
    );
}

/// Starts `command` as a detached task of `plan`'s release; its end is recorded as an event.
pub fn spawn_detached(
    stack: &Arc<Stack>,
    plan: ServicePlan,
    command: String,
    user: String,
) -> anyhow::Result<DetachedTask> {
    let n = stack.tasks.0.fetch_add(1, Ordering::Relaxed) + 1;
    let id = format!("{}-{}-{n}", plan.service.name, berth_model::now_unix());
    let log = stack.paths.env_dir.join("tasks").join(format!("{id}.log"));
    std::fs::create_dir_all(log.parent().unwrap_or(&stack.paths.env_dir))
        .with_context(|| format!("creating the folder of {}", log.display()))?;
    let answer = DetachedTask {
        id: id.clone(),
        release: plan.release.id.to_string(),
        log: log.display().to_string(),
    };
    stack.record(
        EventLevel::Info,
        &plan.service.name,
        format!(
            "berth run --detach by {user}: task {id} `{}` on {} started; log {}",
            mask(&plan, &command),
            plan.release.id,
            log.display()
        ),
    );
    let stack = stack.clone();
    let span = tracing::info_span!("task", id = %id, service = %plan.service.name, release = %plan.release.id);
    tokio::spawn(
        async move {
            let began = Instant::now();
            let outcome = run_logged(&plan, &command, &log, TASK_TIMEOUT).await;
            let (level, how) = match outcome {
                Ok(o) if o.success => (EventLevel::Info, o.how),
                Ok(o) => (EventLevel::Warn, format!("{}: {}", o.how, tail(&o))),
                Err(e) => (EventLevel::Error, format!("could not run: {e:#}")),
            };
            stack.record(
                level,
                &plan.service.name,
                format!(
                    "task {id}: {how} after {:.1}s; log {}",
                    began.elapsed().as_secs_f64(),
                    log.display()
                ),
            );
            tracing::info!("ended");
        }
        .instrument(span),
    );
    Ok(answer)
}

/// Runs `command` (`sh -c`) from the plan's release folder with its environment (and
/// [`TASK_LOG_VAR`]), output to `log` with secret values masked.
pub async fn run_logged(
    plan: &ServicePlan,
    command: &str,
    log: &Path,
    timeout: Duration,
) -> anyhow::Result<MigrationOutcome> {
    let mut env = plan.env.clone();
    env.insert(TASK_LOG_VAR.into(), log.display().to_string());
    berth_rollout::migrate::run(
        command,
        Path::new(&plan.release.dir),
        &env,
        &plan.redact,
        log,
        timeout,
    )
    .await
}

/// In the environment of every task the daemon runs (detached, cron, migrations): the task's
/// log file. How the next daemon knows the tasks an earlier one left running.
pub const TASK_LOG_VAR: &str = "BERTH_TASK_LOG";

/// How long a task being stopped gets to end after SIGTERM before its group is killed.
const STRAY_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A live process found carrying [`TASK_LOG_VAR`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrayTask {
    pub pid: u32,
    /// Its start time in clock ticks (guards the signals against pid reuse).
    pub start: u64,
    pub log: PathBuf,
}

/// The value of [`TASK_LOG_VAR`] in an environment block (`/proc/PID/environ`: `K=V` entries,
/// each ended by a NUL).
fn task_log_of(environ: &[u8]) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let prefix = format!("{TASK_LOG_VAR}=");
    environ
        .split(|&b| b == 0)
        .find_map(|entry| entry.strip_prefix(prefix.as_bytes()))
        .filter(|value| !value.is_empty())
        .map(|value| PathBuf::from(std::ffi::OsStr::from_bytes(value)))
}

/// The live processes (this user's: others' environments cannot be read) whose
/// [`TASK_LOG_VAR`] names a file under `env_dir`, except this process.
pub fn running_tasks(env_dir: &Path) -> Vec<StrayTask> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    let me = std::process::id();
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter_map(|pid| {
            let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
            let log = task_log_of(&environ).filter(|log| log.starts_with(env_dir))?;
            let start = berth_supervisor::local::proc_start_ticks(pid)?;
            Some(StrayTask { pid, start, log })
        })
        .collect()
}

/// Stops the tasks an earlier daemon of this environment left running (see the module doc);
/// each is an event. Returns how many processes there were.
pub async fn stop_strays(stack: &Stack) -> usize {
    let strays = running_tasks(&stack.paths.env_dir);
    for stray in &strays {
        let message = format!(
            "a task of an earlier daemon (which died without stopping it) still ran: pid {}, log {}; stopping it",
            stray.pid,
            stray.log.display()
        );
        tracing::warn!("{message}");
        stack.record(EventLevel::Warn, "tasks", message);
    }
    stop_processes(&strays).await;
    strays.len()
}

/// `berth down`: stops this daemon's running tasks and every process they started (killing a
/// task's shell alone would leave its children running unwatched); each task's end is then
/// recorded as usual.
pub async fn stop_all(stack: &Stack) {
    let running = running_tasks(&stack.paths.env_dir);
    for task in &running {
        tracing::info!(
            "stopping task process {} (log {})",
            task.pid,
            task.log.display()
        );
    }
    stop_processes(&running).await;
}

/// SIGTERM to each process and to its process group, SIGKILL to those left after
/// [`STRAY_STOP_TIMEOUT`].
async fn stop_processes(tasks: &[StrayTask]) {
    let alive = |s: &StrayTask| berth_supervisor::local::process_matches(s.pid, s.start);
    let send = |signal: nix::sys::signal::Signal| {
        for task in tasks.iter().filter(|s| alive(s)) {
            let pid = nix::unistd::Pid::from_raw(task.pid as i32);
            // Its group too when it leads one (a task's `sh` does): what it started goes with it.
            if nix::unistd::getpgid(Some(pid)).is_ok_and(|group| group == pid) {
                let _ = nix::sys::signal::killpg(pid, signal);
            }
            let _ = nix::sys::signal::kill(pid, signal);
        }
    };
    send(nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + STRAY_STOP_TIMEOUT;
    while tasks.iter().any(alive) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    send(nix::sys::signal::Signal::SIGKILL);
}

/// The last line of a task's output, for an event.
pub fn tail(outcome: &MigrationOutcome) -> String {
    outcome
        .tail
        .last()
        .cloned()
        .unwrap_or_else(|| "no output".into())
}

/// Runs the `migrate` command of `plan`'s release under the environment's migrate lock (two
/// migrations never run at once), with `BERTH_MIGRATION=1`; records the release as migrated
/// in this environment when it succeeds.
pub async fn migrate(
    stack: &Stack,
    plan: &ServicePlan,
    command: &str,
    log: &Path,
) -> anyhow::Result<MigrationOutcome> {
    let _lock = stack.deploys.migrate_lock.lock().await;
    let _ = std::fs::create_dir_all(log.parent().unwrap_or(&stack.paths.env_dir));
    let mut plan = plan.clone();
    plan.env.insert("BERTH_MIGRATION".into(), "1".into());
    let outcome = run_logged(&plan, command, log, plan.service.deploy.migrate_timeout).await?;
    if outcome.success {
        let env = stack.env_name().to_string();
        let service = plan.service.name.clone();
        let release = plan.release.id.to_string();
        stack.with_store(|s| s.mark_migrated(&env, &service, &release, berth_model::now_unix()))?;
    }
    Ok(outcome)
}

/// Whether `release` of `service` has a migration that never succeeded in this environment: it
/// never served here (its replicas start only after it).
pub fn never_served(stack: &Stack, service: &str, release: &ReleaseId) -> bool {
    let Some(spec) = stack.release_service_spec(service, release) else {
        return false;
    };
    if spec.deploy.migrate.is_none() {
        return false;
    }
    let env = stack.env_name().to_string();
    stack
        .with_store(|s| s.is_migrated(&env, service, &release.0))
        .is_ok_and(|migrated| !migrated)
}

/// Where the first-boot migration of a release logs.
pub fn first_migration_log(stack: &Stack, service: &str, release: &ReleaseId) -> PathBuf {
    stack
        .paths
        .env_dir
        .join("migrations")
        .join(format!("{service}-{release}.log"))
}

/// `berth up`: runs the service's `migrate` for its current release when that release was
/// never migrated in this environment, before any replica of it starts. A failure holds the
/// service (no replica of the release is started; `berth status` and the events say why, with
/// the log's tail). The releases current when the store began recording migrations count as
/// migrated (see the store's migration 3).
pub async fn migrate_on_up(stack: &Stack, service: &str) -> anyhow::Result<()> {
    let plan = stack.current_plan(service)?;
    let Some(command) = plan.service.deploy.migrate.clone() else {
        return Ok(());
    };
    let env = stack.env_name().to_string();
    let release = plan.release.id.clone();
    if stack.with_store(|s| s.is_migrated(&env, service, &release.0))? {
        return Ok(());
    }
    let log = first_migration_log(stack, service, &release);
    println!("berth: {service}: migrating release {release}: {command}");
    let began = Instant::now();
    let span = tracing::info_span!("migration", service = %service, release = %release);
    let outcome = migrate(stack, &plan, &command, &log).instrument(span).await;
    match outcome {
        Ok(o) if o.success => {
            stack.record(
                EventLevel::Info,
                service,
                format!(
                    "release {release} migrated: `{command}` {} in {:.1}s; log {}",
                    o.how,
                    began.elapsed().as_secs_f64(),
                    log.display()
                ),
            );
            Ok(())
        }
        Ok(o) => {
            let reason = format!(
                "the first migration of release {release} failed ({}): {}; log {}",
                o.how,
                o.tail.join(" | "),
                log.display()
            );
            hold(stack, service, reason);
            Ok(())
        }
        Err(e) => {
            hold(
                stack,
                service,
                format!("the first migration of release {release} could not run: {e:#}"),
            );
            Ok(())
        }
    }
}

fn hold(stack: &Stack, service: &str, reason: String) {
    eprintln!("berth: {service}: {reason}; no replica of it starts (fix it and `berth deploy {service}`, or `berth up` again)");
    stack.record(
        EventLevel::Error,
        service,
        format!("{reason}; no replica of it starts"),
    );
    stack.set_held(service, Some(reason));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_is_known_by_the_log_in_its_environment() {
        assert_eq!(
            task_log_of(b"PATH=/bin\0BERTH_TASK_LOG=/s/.berth/default/tasks/web-1-1.log\0X=1\0"),
            Some(PathBuf::from("/s/.berth/default/tasks/web-1-1.log"))
        );
        // Last entry without its NUL; a name that only starts alike; none; empty.
        assert_eq!(
            task_log_of(b"BERTH_TASK_LOG=/a/b.log"),
            Some(PathBuf::from("/a/b.log"))
        );
        assert_eq!(
            task_log_of(b"BERTH_TASK_LOGX=/a\0XBERTH_TASK_LOG=/b\0"),
            None
        );
        assert_eq!(task_log_of(b"PATH=/bin\0"), None);
        assert_eq!(task_log_of(b"BERTH_TASK_LOG=\0"), None);
        assert_eq!(task_log_of(b""), None);
    }

    #[test]
    fn only_this_environments_live_tasks_are_found() {
        let root = tempfile::tempdir().unwrap();
        let env_dir = root.path().join(".berth").join("default");
        let other = root.path().join(".berth").join("staging");
        let spawn = |log: &Path| {
            std::process::Command::new("sleep")
                .arg("60")
                .env(TASK_LOG_VAR, log)
                .spawn()
                .unwrap()
        };
        let mut ours = spawn(&env_dir.join("cron/web.0/1.log"));
        let mut theirs = spawn(&other.join("tasks/t.log"));
        let found = running_tasks(&env_dir);
        let pids: Vec<u32> = found.iter().map(|t| t.pid).collect();
        assert!(pids.contains(&ours.id()), "{found:?}");
        assert!(!pids.contains(&theirs.id()), "{found:?}");
        for child in [&mut ours, &mut theirs] {
            let _ = child.kill();
            let _ = child.wait();
        }
        assert!(running_tasks(&env_dir).iter().all(|t| t.pid != ours.id()));
    }
}
