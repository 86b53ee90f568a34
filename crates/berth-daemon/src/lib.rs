//! The control plane: `berth up` in the foreground.
//!
//! It loads the spec, takes the environment's daemon lock, starts (or adopts) the accessories,
//! makes a release per service when its source or config changed, adopts the replicas an earlier
//! daemon left running, brings every service to its desired replica count, and serves the local
//! API until Ctrl-C, SIGTERM or `berth down`; then it stops replicas gracefully and exits 0.

pub mod alarms;
pub mod api;
pub mod autoscaler;
pub mod backup;
pub mod certificates;
pub mod cron;
pub mod dashboard;
pub mod deploy;
pub mod edge;
pub mod keeper;
pub mod metrics;
pub mod secrets;
pub mod stack;
pub mod tasks;

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use berth_model::{EventLevel, ReplicaBoard, StatePaths};
use berth_store::Store;
use berth_supervisor::local::LocalProcessDriver;
use berth_supervisor::{ReplicaPaths, Supervisor};
use nix::fcntl::{Flock, FlockArg};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, Notify};

use stack::Stack;

/// Size at which a replica's log file is rotated.
pub const LOG_MAX_BYTES: u64 = 10 * 1024 * 1024;
/// Rotated log files kept per replica.
pub const LOG_KEEP: u32 = 3;

pub struct UpOptions {
    /// The spec, as given (relative or absolute).
    pub spec_file: PathBuf,
    pub environment: Option<String>,
    /// The `berth` executable (it provides `berth shim`).
    pub program: PathBuf,
}

/// Runs the stack in the foreground until asked to stop.
pub async fn up(options: UpOptions) -> anyhow::Result<()> {
    let spec = match berth_spec::load(&options.spec_file, options.environment.as_deref()) {
        Ok(spec) => spec,
        Err(diagnostics) => {
            eprint!("{diagnostics}");
            bail!(
                "{} problem(s) in the spec; nothing was started",
                diagnostics.items.len()
            );
        }
    };
    let paths = StatePaths::new(&spec.path, &spec.environment);
    for dir in [&paths.root, &paths.env_dir] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        // Accessory servers run as their own users (postgres) and must traverse it.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    }

    // One daemon per stack environment.
    let lock_file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .read(true)
        .open(paths.lock())?;
    let lock = match Flock::lock(lock_file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => lock,
        Err((_, _)) => bail!(
            "a berth daemon already runs for stack `{}` environment `{}` (lock {}); use `berth ps` or `berth down`",
            spec.stack.name,
            spec.environment,
            paths.lock().display()
        ),
    };
    std::fs::write(paths.lock(), std::process::id().to_string())?;
    secrets::check_declared(&spec, &paths)?;
    let accessory_passwords = secrets::accessory_passwords(&spec, &paths)?;
    let notify_targets = alarms::targets(&spec, &paths)?;

    let store = Store::open(paths.db())?;
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let containers = connect_containers(&spec).await?;
    let local: Arc<dyn berth_model::Driver> = LocalProcessDriver::new(options.program.clone());
    let driver: Arc<dyn berth_model::Driver> = match &containers {
        Some(containers) => Arc::new(berth_supervisor::dispatch::DriverByKind {
            process: local,
            container: Some(containers.clone()),
        }),
        None => local,
    };
    let supervisor = Supervisor::new(
        driver,
        ReplicaBoard::new(),
        ReplicaPaths {
            replicas_dir: paths.replicas(),
            cgroup_prefix: format!("berth/{}-{}", spec.stack.name, spec.environment),
            log_max_bytes: LOG_MAX_BYTES,
            log_keep: LOG_KEEP,
        },
        events_tx,
    );
    let mut stack = Stack::new(
        spec,
        paths.clone(),
        store,
        supervisor.clone(),
        options.program.clone(),
    );
    secrets::attach_passwords(&mut stack, accessory_passwords);
    stack.containers = containers;
    let stack = Arc::new(stack);
    // Before anything (the API included) can start a task: a migration or cron run an earlier
    // daemon left running when it died must not run beside a new one.
    let strays = tasks::stop_strays(&stack).await;
    if strays > 0 {
        println!("berth: stopped {strays} task process(es) an earlier daemon left running");
    }
    let _ = stack.notifier.set(alarms::start_notifier(
        notify_targets,
        stack.store.clone(),
        stack.env_name().to_string(),
    ));
    // The metrics history is not worth a stack that does not start: without it, the stack
    // runs and the metrics API says why it is missing.
    let (collector, observe) = match metrics::start(&stack) {
        Ok(tasks) => tasks,
        Err(e) => {
            let message = format!("metrics are off: {e:#}");
            eprintln!("berth: warning: {message}");
            stack.record(EventLevel::Warn, "metrics", message);
            (tokio::spawn(async {}), tokio::spawn(async {}))
        }
    };
    let _backup_schedule = backup::spawn_scheduler(stack.clone());
    let recorder =
        stack::spawn_recorder(stack.store.clone(), stack.env_name().to_string(), events_rx);

    // The API first, so `berth ps` answers while the stack comes up.
    let socket = paths.socket();
    let _ = std::fs::remove_file(&socket);
    let listener = tokio::net::UnixListener::bind(&socket)
        .with_context(|| format!("binding the API socket {}", socket.display()))?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))?;
    let shutdown = Arc::new(Notify::new());
    let app = api::router(api::ApiState {
        stack: stack.clone(),
        shutdown: shutdown.clone(),
    });
    let server = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("API server: {e}");
        }
    });

    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let stop_requested = async {
        tokio::select! {
            _ = sigint.recv() => "interrupt",
            _ = sigterm.recv() => "terminate signal",
            _ = shutdown.notified() => "berth down",
        }
    };
    tokio::pin!(stop_requested);

    stack.record(
        EventLevel::Info,
        "stack",
        format!("daemon {} starting", std::process::id()),
    );
    let bring_up = bring_up(&stack);
    let outcome = tokio::select! {
        result = bring_up => match result {
            Ok(()) => {
                println!(
                    "berth: stack `{}` ({}) is up; API at {}. Ctrl-C stops it.",
                    stack.spec.stack.name,
                    stack.env_name(),
                    socket.display()
                );
                let cron = cron::spawn(stack.clone());
                let autoscaler = autoscaler::spawn(stack.clone());
                let alarms = alarms::start_evaluation(&stack);
                let reason = (&mut stop_requested).await;
                for task in [cron, autoscaler].into_iter().flatten() {
                    task.abort();
                }
                if let Some(alarms) = alarms {
                    alarms.abort();
                }
                Ok(reason)
            }
            Err(e) => Err(e),
        },
        reason = &mut stop_requested => Ok(reason),
    };

    let reason = match &outcome {
        Ok(reason) => reason.to_string(),
        Err(e) => format!("start-up failed: {e:#}"),
    };
    tracing::info!("stopping ({reason}): tasks, then the edge, then replicas, then accessories");
    stack.record(EventLevel::Info, "stack", format!("stopping: {reason}"));
    tasks::stop_all(&stack).await;
    if let Some(edge) = stack.edge.get() {
        edge.stop().await;
        supervisor.clear_traffic_control();
    }
    supervisor.stop_all().await;
    stack.stop_accessories().await;
    server.abort();
    collector.abort();
    observe.abort();
    let _ = std::fs::remove_file(&socket);
    drop(supervisor);
    drop(stack);
    // The recorder ends once every sender (held by the supervisor's keepers) is gone.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), recorder).await;
    drop(lock);
    outcome.map(|_| ())
}

/// How long a cleanly stopped stack's edge waits for healthy replicas before it opens.
const EDGE_OPENS_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

/// Whether the earlier run of this stack ended cleanly: no edge answers on its control socket,
/// no deploy is left running and no traffic split is left persisted.
async fn stack_stopped_cleanly(stack: &Stack) -> anyhow::Result<bool> {
    let env = stack.env_name().to_string();
    let (running, weights) =
        stack.with_store(|s| Ok((s.running_deploys(&env)?, s.traffic_weights(&env)?)))?;
    if !running.is_empty() || !weights.is_empty() {
        return Ok(false);
    }
    let control = edge::edge_dir(&stack.paths).join("control.sock");
    let client = berth_edge::EdgeClient::new(control);
    Ok(client
        .call(&berth_edge::ControlRequest::Status)
        .await
        .is_err())
}

/// Waits (up to `limit`) until [`ready_to_open`] says the edge can open.
async fn wait_ready_to_open(stack: &Stack, limit: std::time::Duration) {
    let board = stack.supervisor.board().clone();
    let mut changes = board.subscribe();
    let desired: BTreeMap<String, u32> = stack
        .spec
        .services
        .values()
        .map(|s| match stack.held(&s.name) {
            Some(_) => (s.name.clone(), 0),
            None => (s.name.clone(), stack.desired(s)),
        })
        .collect();
    let wait = async {
        loop {
            if ready_to_open(&stack.spec, &desired, &board.snapshot()) {
                return;
            }
            if changes.changed().await.is_err() {
                return;
            }
        }
    };
    if tokio::time::timeout(limit, wait).await.is_err() {
        tracing::info!(
            "no healthy replica for every service within {}s: the edge opens and answers 503 until there is",
            limit.as_secs()
        );
    }
}

/// Whether every service that takes requests (a port, replicas wanted) has a healthy replica,
/// or only failed (crash-looping) ones, which waiting would not cure.
fn ready_to_open(
    spec: &berth_spec::Spec,
    desired: &BTreeMap<String, u32>,
    replicas: &[berth_model::ReplicaStatus],
) -> bool {
    spec.services
        .values()
        .filter(|s| s.port != berth_spec::PortSpec::None)
        .filter(|s| desired.get(&s.name).copied().unwrap_or(0) > 0)
        .all(|s| {
            let mine: Vec<_> = replicas.iter().filter(|r| r.service == s.name).collect();
            mine.iter()
                .any(|r| r.health == berth_model::Health::Healthy)
                || (!mine.is_empty()
                    && mine.iter().all(|r| r.health == berth_model::Health::Failed))
        })
}

async fn bring_up(stack: &Arc<Stack>) -> anyhow::Result<()> {
    stack.ensure_volumes()?;
    stack.start_accessories().await?;
    keeper::spawn_all(stack);
    let env = stack.env_name().to_string();
    for service in stack.spec.services.values() {
        // The first release is made here; later ones by `berth deploy`.
        let current = stack.with_store(|s| s.current_release(&env, &service.name))?;
        let current = current
            .and_then(|id| {
                stack
                    .with_store(|s| s.release(&service.name, &id))
                    .ok()
                    .flatten()
            })
            .filter(|r| berth_release::is_complete(std::path::Path::new(&r.dir)))
            // A release held back by a failed first migration never served: when the source
            // or config changed since (the fix), a new release replaces it.
            .filter(|r| {
                !(tasks::never_served(stack, &service.name, &r.id)
                    && berth_release::fingerprint(service).is_ok_and(|f| f != r.fingerprint))
            });
        match current {
            None => {
                let release = stack.release_for(service).await?;
                stack.with_store(|s| s.set_current_release(&env, &service.name, &release.id))?;
                if let Ok(json) = serde_json::to_string(service) {
                    stack.with_store(|s| s.put_release_spec(&service.name, &release.id, &json))?;
                }
            }
            Some(release) => {
                // The settings the release was made with say whether it is an image.
                let made_with = stack
                    .release_service_spec(&service.name, &release.id)
                    .unwrap_or_else(|| service.clone());
                stack.ensure_image(&made_with, &release).await?;
                if berth_release::fingerprint(service).is_ok_and(|f| f != release.fingerprint) {
                    println!(
                        "berth: {}: the source or config changed since release {}; `berth deploy {}` rolls it out",
                        service.name, release.id, service.name
                    );
                }
            }
        }
    }
    // A release never migrated in this environment is migrated before any replica of it
    // starts; a failure holds the service (see `tasks::migrate_on_up`).
    for service in stack.spec.services.values() {
        tasks::migrate_on_up(stack, &service.name).await?;
    }
    let adopted = stack.adopt_replicas().await?;
    if adopted > 0 {
        println!("berth: adopted {adopted} running replica(s)");
    }
    if adopted == 0 && stack_stopped_cleanly(stack).await? {
        // Nothing of an earlier run serves or is half-deployed: the replicas come up before the
        // edge opens its listener, so the first clients get answers rather than 503s (bounded:
        // after EDGE_OPENS_AFTER the edge opens anyway and answers 503 + Retry-After until a
        // replica is healthy).
        stack.converge_all().await?;
        wait_ready_to_open(stack, EDGE_OPENS_AFTER).await;
    }
    stack.start_edge().await?;
    stack.resolve_interrupted_deploys().await?;
    stack.converge_all().await?;
    // Wait (bounded) for the first health verdicts so "up" means up; a replica that does not
    // get healthy is reported, not fatal: the supervisor keeps trying.
    let mut waits = Vec::new();
    for key in stack.supervisor.replica_keys() {
        let timeout = stack
            .current_plan(&key.service)
            .map(|p| Supervisor::healthy_timeout(&p))
            .unwrap_or(std::time::Duration::from_secs(30));
        let supervisor = stack.supervisor.clone();
        waits.push(tokio::spawn(async move {
            (key.clone(), supervisor.wait_healthy(&key, timeout).await)
        }));
    }
    for wait in waits {
        if let Ok((key, Err(e))) = wait.await {
            eprintln!("berth: warning: {key} is not healthy: {e:#}");
        }
    }
    Ok(())
}

/// The container driver, when a service runs in containers: the engine is found and pinged
/// before anything is touched, and each way that fails names the fix.
async fn connect_containers(
    spec: &berth_spec::Spec,
) -> anyhow::Result<Option<Arc<berth_container::ContainerDriver>>> {
    let Some(first) = spec.services.values().find(|s| s.container.is_some()) else {
        return Ok(None);
    };
    let socket = berth_container::resolve_socket(
        spec.containers.socket.as_deref(),
        std::env::var("DOCKER_HOST").ok().as_deref(),
        |p| p.exists(),
    )
    .with_context(|| format!("service `{}` runs in containers", first.name))?;
    let engine = berth_container::Engine::connect(&socket)
        .await
        .with_context(|| format!("service `{}` runs in containers", first.name))?;
    tracing::info!("container engine at {}", socket.display());
    Ok(Some(berth_container::ContainerDriver::new(
        engine,
        LOG_MAX_BYTES,
        LOG_KEEP,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_model::{Health, ReplicaStatus};

    fn spec() -> berth_spec::Spec {
        let toml = r#"
[service.web]
run = "python3 app.py"
port = "auto"
replicas = 2

[service.api]
run = "./api"
port = "auto"

[service.worker]
run = "python3 worker.py"
"#;
        berth_spec::parse(std::path::Path::new("/tmp/berth.toml"), toml, None).unwrap()
    }

    fn replica(service: &str, index: u32, health: Health) -> ReplicaStatus {
        ReplicaStatus {
            service: service.into(),
            replica: format!("{service}.{index}"),
            index,
            pid: Some(1),
            port: Some(8000),
            health,
            release: "r1-abc".into(),
            started_at: None,
            restarts: 0,
            last_exit: None,
            last_log: vec![],
            limits: None,
        }
    }

    fn desired(web: u32, api: u32) -> BTreeMap<String, u32> {
        BTreeMap::from([
            ("web".to_string(), web),
            ("api".to_string(), api),
            ("worker".to_string(), 1),
        ])
    }

    #[test]
    fn the_edge_opens_once_every_service_with_a_port_has_a_healthy_replica() {
        let spec = spec();
        let starting = [
            replica("web", 1, Health::Healthy),
            replica("web", 2, Health::Starting),
            replica("api", 1, Health::Starting),
        ];
        assert!(!ready_to_open(&spec, &desired(2, 1), &starting));
        let ready = [
            replica("web", 1, Health::Healthy),
            replica("web", 2, Health::Starting),
            replica("api", 1, Health::Healthy),
        ];
        // The worker (no port) is not waited for.
        assert!(ready_to_open(&spec, &desired(2, 1), &ready));
    }

    #[test]
    fn a_service_without_replicas_wanted_or_only_failed_ones_does_not_hold_the_edge() {
        let spec = spec();
        let web_only = [replica("web", 1, Health::Healthy)];
        assert!(ready_to_open(&spec, &desired(2, 0), &web_only));
        assert!(!ready_to_open(&spec, &desired(2, 1), &web_only));
        let failed = [
            replica("web", 1, Health::Healthy),
            replica("api", 1, Health::Failed),
        ];
        assert!(ready_to_open(&spec, &desired(2, 1), &failed));
    }
}
