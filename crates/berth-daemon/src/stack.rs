//! The running stack: the effective spec, its accessories, releases and service plans, and the
//! supervisor that keeps the replicas. The daemon's API calls into this.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use berth_accessories::{Accessory, AccessoryConfig};
use berth_model::{Event, EventLevel, Release, ReleaseId, ReplicaKey, StatePaths};
use berth_release::ReleaseBuilder;
use berth_spec::{ServiceSpec, Spec};
use berth_store::Store;
use berth_supervisor::{ServicePlan, Supervisor, SupervisorEvent};
use tokio::sync::mpsc;

/// A stack brought up by this daemon.
pub struct Stack {
    pub spec: Spec,
    pub paths: StatePaths,
    pub store: Arc<Mutex<Store>>,
    pub supervisor: Arc<Supervisor>,
    pub accessories: BTreeMap<String, Accessory>,
    /// Injected variables per accessory: (variable, URL).
    accessory_env: Mutex<BTreeMap<String, (String, String)>>,
    /// Secret values (accessory passwords, URLs) never to be printed.
    redact: Mutex<Vec<String>>,
    pub started_at: i64,
    /// The `berth` executable (it provides `berth edge`).
    program: std::path::PathBuf,
    pub edge: std::sync::OnceLock<Arc<crate::edge::EdgeLink>>,
    pub deploys: crate::deploy::Deploys,
    /// The accessories' supervision (see [`crate::keeper`]).
    pub accessory_watch: Arc<crate::keeper::AccessoryWatch>,
    /// Services whose current release is held out of service, with why (its first migration
    /// failed): no replica of it is started until a deploy replaces it.
    held: Mutex<BTreeMap<String, String>>,
    /// Ids of detached tasks.
    pub tasks: crate::tasks::TaskCounter,
    /// The container driver, when a service runs in containers.
    pub containers: Option<Arc<berth_container::ContainerDriver>>,
    /// The `[notify.NAME]` targets' queues (set once at start; see [`crate::alarms`]).
    pub notifier: std::sync::OnceLock<Arc<berth_notify::Notifier>>,
    /// Whether the alarms are evaluated (a metrics source is wired).
    pub evaluating_alarms: std::sync::atomic::AtomicBool,
    /// The metrics store and collector settings (set once at start-up).
    pub metrics: std::sync::OnceLock<Arc<crate::metrics::Metrics>>,
}

impl Stack {
    pub fn new(
        spec: Spec,
        paths: StatePaths,
        store: Store,
        supervisor: Arc<Supervisor>,
        program: std::path::PathBuf,
    ) -> Self {
        let accessories = spec
            .accessories
            .values()
            .map(|a| {
                let config = AccessoryConfig {
                    name: a.name.clone(),
                    engine: a.engine,
                    database: a.database.clone(),
                    user: a.user.clone(),
                    port: a.port,
                    dir: paths.accessory(&a.name),
                };
                (a.name.clone(), Accessory::new(config))
            })
            .collect();
        Self {
            spec,
            paths,
            store: Arc::new(Mutex::new(store)),
            supervisor,
            accessories,
            accessory_env: Mutex::default(),
            redact: Mutex::default(),
            started_at: berth_model::now_unix(),
            program,
            edge: std::sync::OnceLock::new(),
            deploys: Default::default(),
            accessory_watch: Default::default(),
            held: Mutex::default(),
            tasks: Default::default(),
            containers: None,
            notifier: std::sync::OnceLock::new(),
            evaluating_alarms: std::sync::atomic::AtomicBool::new(false),
            metrics: Default::default(),
        }
    }

    /// Adopts or starts the edge, connects it to the supervisor (drains) and keeps its routing
    /// table in step with the board.
    pub async fn start_edge(&self) -> anyhow::Result<()> {
        let env = self.env_name().to_string();
        let weights = self.with_store(|s| s.traffic_weights(&env))?;
        let store = self.store.clone();
        let record_weights: crate::edge::WeightsRecorder = Box::new(move |service, weights| {
            let store = store.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(e) = store.set_traffic_weights(&env, service, weights) {
                tracing::error!("recording the weights of {service}: {e:#}");
            }
        });
        let store = self.store.clone();
        let env = self.env_name().to_string();
        let record_event: crate::edge::EventRecorder = Box::new(move |level, message| {
            let event = Event::new(level, "edge", message);
            let store = store.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(e) = store.push_event(&env, &event) {
                tracing::error!("recording an edge event: {e:#}");
            }
        });
        let (link, adopted) = crate::edge::EdgeLink::start_or_adopt(
            &self.program,
            &self.paths,
            &self.spec,
            self.supervisor.board().clone(),
            weights,
            record_weights,
            record_event,
        )
        .await?;
        let verb = if adopted { "adopted" } else { "started" };
        let listen: Vec<String> = self
            .spec
            .edge
            .listen
            .iter()
            .map(|a| a.to_string())
            .collect();
        let pid = link.pid().unwrap_or_default();
        tracing::info!(
            "edge {verb}: pid {pid}, listening on {}, admin {}",
            listen.join(", "),
            self.spec.edge.admin
        );
        self.record(EventLevel::Info, "edge", format!("{verb} pid {pid}"));
        self.supervisor.set_traffic_control(link.clone());
        link.spawn_sync();
        link.spawn_readings();
        let store = self.store.clone();
        let env = self.env_name().to_string();
        crate::certificates::spawn(
            link.clone(),
            &self.spec,
            &self.paths,
            move |level, message| {
                let event = Event::new(level, "tls", message);
                let store = store.lock().unwrap_or_else(|e| e.into_inner());
                if let Err(e) = store.push_event(&env, &event) {
                    tracing::error!("recording a certificate event: {e:#}");
                }
            },
        )
        .context("starting the certificate manager")?;
        let _ = self.edge.set(link);
        Ok(())
    }

    /// Why the service's current release is held out of service, if it is.
    pub fn held(&self, service: &str) -> Option<String> {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(service)
            .cloned()
    }

    /// Holds the service (`Some(reason)`) or lets it run again (`None`).
    pub fn set_held(&self, service: &str, reason: Option<String>) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        match reason {
            Some(reason) => held.insert(service.to_string(), reason),
            None => held.remove(service),
        };
    }

    pub fn env_name(&self) -> &str {
        &self.spec.environment
    }

    /// Runs `f` with the store (briefly: it is a blocking call).
    pub fn with_store<T>(&self, f: impl FnOnce(&Store) -> anyhow::Result<T>) -> anyhow::Result<T> {
        let store = self.store.lock().unwrap_or_else(|e| e.into_inner());
        f(&store)
    }

    pub fn record(&self, level: EventLevel, subject: &str, message: impl Into<String>) {
        let event = Event::new(level, subject, message);
        let env = self.env_name().to_string();
        let _ = self.with_store(|s| s.push_event(&env, &event));
    }

    /// Starts (or adopts) every accessory and waits until each accepts connections.
    pub async fn start_accessories(&self) -> anyhow::Result<()> {
        for (name, accessory) in &self.accessories {
            let spec = &self.spec.accessories[name];
            let adopted = accessory.adopt().is_some();
            let running = accessory
                .ensure_running()
                .await
                .with_context(|| format!("accessory `{name}` ({:?})", spec.engine))?;
            let verb = if adopted { "adopted" } else { "started" };
            tracing::info!(
                "accessory {name}: {verb}, pid {} port {}",
                running.pid,
                running.port
            );
            self.record(
                EventLevel::Info,
                name,
                format!("{verb} pid {} port {}", running.pid, running.port),
            );
            self.set_accessory_running(name, &running);
        }
        Ok(())
    }

    /// The secret values never to be shown (accessory URLs and passwords), for text that leaves
    /// the daemon (notifications).
    pub fn redaction_list(&self) -> Vec<String> {
        self.redact
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Keeps the URL of a (re)started accessory for the services and the log redaction.
    pub fn set_accessory_running(&self, name: &str, running: &berth_accessories::RunningAccessory) {
        let Some(spec) = self.spec.accessories.get(name) else {
            return;
        };
        {
            let mut redact = self.redact.lock().unwrap_or_else(|e| e.into_inner());
            if !redact.contains(&running.url) {
                redact.push(running.url.clone());
            }
            if let Some(password) = url_password(&running.url) {
                if !redact.contains(&password) {
                    redact.push(password);
                }
            }
        }
        self.accessory_env
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), (spec.env.clone(), running.url.clone()));
    }

    /// The URL (with its password) of a running accessory.
    pub fn accessory_url(&self, name: &str) -> Option<String> {
        self.accessory_env
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .map(|(_, url)| url.clone())
    }

    pub async fn stop_accessories(&self) {
        self.accessory_watch.stop();
        for (name, accessory) in &self.accessories {
            if let Err(e) = accessory.stop(Duration::from_secs(30)).await {
                tracing::warn!("accessory {name}: stopping failed: {e:#}");
            }
        }
    }

    /// Creates the shared volume folders.
    pub fn ensure_volumes(&self) -> anyhow::Result<()> {
        for name in self.spec.volumes.keys() {
            let dir = self.paths.volume(name);
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("creating volume folder {}", dir.display()))?;
        }
        Ok(())
    }

    /// The release for a service's current source and config: the existing one when nothing
    /// changed, else a new one, snapshotted and built.
    pub async fn release_for(&self, service: &ServiceSpec) -> anyhow::Result<Release> {
        let fingerprint = berth_release::fingerprint(service)?;
        let existing =
            self.with_store(|s| s.find_release_by_fingerprint(&service.name, &fingerprint))?;
        if let Some(release) =
            existing.filter(|r| berth_release::is_complete(std::path::Path::new(&r.dir)))
        {
            self.ensure_image(service, &release).await?;
            return Ok(release);
        }
        let seq = self.with_store(|s| s.next_release_seq(&service.name))?;
        let builder = ReleaseBuilder::new(self.paths.releases());
        let name = service.name.clone();
        tracing::info!("{name}: building release {seq}");
        let release = builder
            .create(service, seq, &self.spec.hash(), |line| {
                tracing::info!("{name} build | {line}");
            })
            .await
            .with_context(|| format!("building a release of `{}`", service.name))?;
        if let Err(e) = self.ensure_image(service, &release).await {
            // No half-made release: the folder goes, the next try starts over.
            let _ = std::fs::remove_dir_all(&release.dir);
            return Err(e);
        }
        self.with_store(|s| s.insert_release(&release))?;
        self.record(
            EventLevel::Info,
            &service.name,
            format!("release {} created", release.id),
        );
        self.prune_releases(&service.name)?;
        Ok(release)
    }

    /// For a container service: the release's image, built or pulled and pinned now unless the
    /// engine has it already. Nothing else is touched, so a failure leaves what runs running.
    pub async fn ensure_image(
        &self,
        service: &ServiceSpec,
        release: &Release,
    ) -> anyhow::Result<()> {
        if service.container.is_none() {
            return Ok(());
        }
        let containers = self.containers.as_ref().ok_or_else(|| {
            anyhow!(
                "`{}` runs in containers, but this daemon started without a container engine; restart it (`berth down`, `berth up`) to connect one",
                service.name
            )
        })?;
        let name = service.name.clone();
        let image = berth_container::ensure_release_image(
            containers.engine(),
            &self.spec.stack.name,
            service,
            release,
            |line| tracing::info!("{name} image | {line}"),
        )
        .await
        .with_context(|| format!("making the image of release {} of `{name}`", release.id))?;
        tracing::info!(
            "{name}: release {} runs image {} ({})",
            release.id,
            image.id,
            image.tag
        );
        Ok(())
    }

    /// Keeps the newest `keep_releases` releases of a service and any that replicas run.
    pub(crate) fn prune_releases(&self, service: &str) -> anyhow::Result<()> {
        let keep = self.spec.stack.keep_releases.max(1) as usize;
        let env = self.env_name().to_string();
        let (releases, current, running) = self.with_store(|s| {
            Ok((
                s.releases(Some(service))?,
                s.current_release(&env, service)?,
                s.replicas(&env)?,
            ))
        })?;
        let in_use: Vec<_> = running
            .iter()
            .filter(|r| r.key.service == service)
            .map(|r| r.release.clone())
            .chain(current)
            .collect();
        let mut kept = Vec::new();
        for (i, release) in releases.iter().enumerate() {
            if i < keep || in_use.contains(&release.id) {
                kept.push(release.id.clone());
            } else {
                self.with_store(|s| s.delete_release(service, &release.id))?;
            }
        }
        ReleaseBuilder::new(self.paths.releases()).prune(service, &kept);
        Ok(())
    }

    /// What replicas of `service` running `release` get: the spec's env, accessory URLs,
    /// volume paths and Berth's own variables.
    pub fn plan(&self, service: &ServiceSpec, release: Release) -> anyhow::Result<ServicePlan> {
        let mut env = BTreeMap::new();
        for key in ["PATH", "LANG", "LC_ALL", "TZ", "HOME"] {
            if let Ok(value) = std::env::var(key) {
                env.insert(key.to_string(), value);
            }
        }
        env.extend(service.env.clone());
        let accessory_env = self.accessory_env.lock().unwrap_or_else(|e| e.into_inner());
        for name in &service.uses {
            let (var, url) = accessory_env
                .get(name)
                .ok_or_else(|| anyhow!("accessory `{name}` is not running"))?;
            env.insert(var.clone(), url.clone());
        }
        for name in &service.volumes {
            let volume = &self.spec.volumes[name];
            env.insert(
                volume.env.clone(),
                self.paths.volume(name).display().to_string(),
            );
        }
        let secret_values = crate::secrets::inject(self, service, &release, &mut env)?;
        env.insert("BERTH_SERVICE".into(), service.name.clone());
        env.insert("BERTH_RELEASE".into(), release.id.to_string());
        env.insert("BERTH_ENV".into(), self.env_name().to_string());
        env.insert("BERTH_STACK".into(), self.spec.stack.name.clone());
        let container = match &service.container {
            Some(container) => Some(self.container_launch(service, container, &release, &env)?),
            None => None,
        };
        Ok(ServicePlan {
            container,
            service: service.clone(),
            release,
            env,
            redact: self
                .redact
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .cloned()
                .chain(secret_values)
                .collect(),
        })
    }

    /// What a container replica of `release` needs besides the common launch: the pinned
    /// image, volumes (read-write) and secret files (read-only) mounted at their host paths,
    /// so the variables naming them hold inside the container too.
    fn container_launch(
        &self,
        service: &ServiceSpec,
        container: &berth_spec::ContainerSpec,
        release: &Release,
        env: &BTreeMap<String, String>,
    ) -> anyhow::Result<berth_model::ContainerLaunch> {
        let image = berth_container::ReleaseImage::read(std::path::Path::new(&release.dir))
            .ok_or_else(|| {
                anyhow!(
                    "release {} of `{}` has no image yet ({} is missing in its folder)",
                    release.id,
                    service.name,
                    berth_container::IMAGE_FILE
                )
            })?;
        let mut mounts = Vec::new();
        for name in &service.volumes {
            let dir = self.paths.volume(name);
            mounts.push(berth_model::BindMount {
                source: dir.clone(),
                target: dir,
                read_only: false,
            });
        }
        for name in &service.secrets {
            if let Some(file) = env.get(&format!("{name}_FILE")) {
                mounts.push(berth_model::BindMount {
                    source: file.into(),
                    target: file.into(),
                    read_only: true,
                });
            }
        }
        let labels = BTreeMap::from([
            (
                berth_container::plan::LABEL_STACK.to_string(),
                self.spec.stack.name.clone(),
            ),
            (
                berth_container::plan::LABEL_ENV.to_string(),
                self.env_name().to_string(),
            ),
        ]);
        Ok(berth_model::ContainerLaunch {
            image: image.id,
            network: container.network.as_str().to_string(),
            mounts,
            labels,
            stop_timeout: service.stop_timeout,
        })
    }

    /// The plan for a service's current release.
    pub fn current_plan(&self, service: &str) -> anyhow::Result<ServicePlan> {
        let env = self.env_name().to_string();
        let id = self
            .with_store(|s| s.current_release(&env, service))?
            .ok_or_else(|| anyhow!("`{service}` has no release yet"))?;
        self.plan_for_release(service, &id)
    }

    /// The service settings release `id` was deployed with (None for releases older than
    /// deploys, or unreadable ones).
    pub fn release_service_spec(&self, service: &str, id: &ReleaseId) -> Option<ServiceSpec> {
        let json = self.with_store(|s| s.release_spec(service, id)).ok()??;
        serde_json::from_str(&json).ok()
    }

    /// The plan for one release of a service, with the settings it was deployed with.
    pub fn plan_for_release(&self, service: &str, id: &ReleaseId) -> anyhow::Result<ServicePlan> {
        let spec =
            match self.release_service_spec(service, id) {
                Some(spec) => spec,
                None => self.spec.services.get(service).cloned().ok_or_else(|| {
                    anyhow!("no service `{service}` in {}", self.spec.path.display())
                })?,
            };
        let release = self
            .with_store(|s| s.release(service, id))?
            .ok_or_else(|| anyhow!("release {id} of `{service}` is missing"))?;
        self.plan(&spec, release)
    }

    /// Replicas wanted for a service: what `berth scale` set, else the spec's minimum.
    pub fn desired(&self, service: &ServiceSpec) -> u32 {
        let env = self.env_name().to_string();
        self.with_store(|s| s.desired_replicas(&env, &service.name))
            .ok()
            .flatten()
            .unwrap_or(service.replicas.min)
    }

    /// The replicas the edge's last routing table sends new requests to (read from the table it
    /// keeps on disk): those were healthy when the earlier daemon last looked.
    fn replicas_the_edge_serves(&self) -> std::collections::HashSet<String> {
        let file = crate::edge::edge_dir(&self.paths).join("table.json");
        let Ok(bytes) = std::fs::read(&file) else {
            return Default::default();
        };
        let Ok(table) = serde_json::from_slice::<berth_model::RoutingTable>(&bytes) else {
            return Default::default();
        };
        table
            .services
            .values()
            .flat_map(|pool| pool.groups.iter())
            .filter(|group| group.weight > 0)
            .flat_map(|group| group.targets.iter())
            .filter(|target| !target.draining)
            .map(|target| target.replica.clone())
            .collect()
    }

    /// Takes over the replicas an earlier daemon left running; stops those that no longer
    /// belong to the spec. Returns how many were adopted.
    pub async fn adopt_replicas(&self) -> anyhow::Result<usize> {
        let env = self.env_name().to_string();
        let stored = self.with_store(|s| s.replicas(&env))?;
        let serving = self.replicas_the_edge_serves();
        let mut adopted = 0;
        for replica in stored {
            let plan = self
                .spec
                .services
                .get(&replica.key.service)
                .and_then(|service| self.plan_for_release(&service.name, &replica.release).ok());
            let running = self.supervisor.driver().is_running(&replica.record);
            match plan {
                Some(plan) if running => {
                    let pid = replica.record.app_pid;
                    if self.supervisor.adopt(
                        replica.key.clone(),
                        plan,
                        replica.port,
                        replica.record.clone(),
                        serving.contains(&replica.key.to_string()),
                    ) {
                        adopted += 1;
                        tracing::info!("{}: adopted (pid {pid})", replica.key);
                        continue;
                    }
                }
                None if running => {
                    tracing::info!("{}: no longer in the spec; stopping it", replica.key);
                    self.supervisor
                        .driver()
                        .stop(&replica.record, Duration::from_secs(10))
                        .await;
                }
                still_wanted => {
                    // It died while no daemon watched it: say so before it is replaced.
                    let how = died_while_down(&replica.record.instance_dir);
                    let next = if still_wanted.is_some() {
                        "a new replica replaces it"
                    } else {
                        "its service is no longer in the spec"
                    };
                    let message = format!(
                        "process {} died while the daemon was down ({how}); {next}",
                        replica.record.app_pid
                    );
                    tracing::warn!("{}: {message}", replica.key);
                    self.record(EventLevel::Warn, &replica.key.to_string(), message);
                }
            }
            self.with_store(|s| s.remove_replica(&env, &replica.key))?;
        }
        // A daemon killed between starting a replica's shim and recording it left a process
        // no record names (a replica of a release being rolled back, say): found by its shim's
        // command line, stopped before any new replica can take its folder.
        let recorded: HashSet<PathBuf> = self
            .with_store(|s| s.replicas(&env))?
            .into_iter()
            .map(|r| r.record.instance_dir)
            .collect();
        let running = berth_supervisor::local::running_shims();
        let strays =
            berth_supervisor::local::stray_shims(&running, &self.paths.replicas(), &recorded);
        for stray in &strays {
            let message = format!(
                "a replica process no record names (its daemon died while starting it) runs in {}; stopping it",
                stray.instance_dir.display()
            );
            tracing::warn!("{message}");
            self.record(EventLevel::Warn, "supervisor", message);
        }
        let mut stopping = tokio::task::JoinSet::new();
        for stray in strays {
            stopping.spawn(async move {
                berth_supervisor::local::stop_shim(&stray, Duration::from_secs(10)).await
            });
        }
        stopping.join_all().await;
        if let Some(containers) = &self.containers {
            // Containers of this stack no record names (a daemon killed between creating one
            // and recording it) would hold ports and memory unseen: found by label, removed.
            let recorded: Vec<String> = self
                .with_store(|s| s.replicas(&env))?
                .into_iter()
                .filter_map(|r| r.record.container)
                .collect();
            match containers
                .remove_strays(&self.spec.stack.name, &env, &recorded)
                .await
            {
                Ok(0) => {}
                Ok(n) => tracing::info!("removed {n} container(s) no record named"),
                Err(e) => tracing::warn!("looking for stray containers: {e}"),
            }
        }
        Ok(adopted)
    }

    /// Brings every service to its desired replicas of its current release (held ones stay
    /// without replicas).
    pub async fn converge_all(&self) -> anyhow::Result<()> {
        let mut failures = Vec::new();
        for service in self.spec.services.values() {
            if self.held(&service.name).is_some() {
                continue;
            }
            let plan = self.current_plan(&service.name)?;
            if let Err(e) = self
                .supervisor
                .converge(&plan, self.desired(service), false)
                .await
            {
                failures.push(format!("{e:#}"));
            }
        }
        if !failures.is_empty() {
            bail!("{}", failures.join("; "));
        }
        Ok(())
    }
}

/// Persists what the supervisor reports.
pub fn spawn_recorder(
    store: Arc<Mutex<Store>>,
    env: String,
    mut events: mpsc::UnboundedReceiver<SupervisorEvent>,
) -> tokio::task::JoinHandle<()> {
    tokio::task::spawn_blocking(move || {
        while let Some(event) = events.blocking_recv() {
            let store = store.lock().unwrap_or_else(|e| e.into_inner());
            let result = match &event {
                SupervisorEvent::Started {
                    key,
                    release,
                    port,
                    record,
                } => store.put_replica(&env, key, release, *port, record),
                SupervisorEvent::Removed { key } => store.remove_replica(&env, key),
                SupervisorEvent::Event(e) => store.push_event(&env, e),
            };
            if let Err(e) = result {
                tracing::error!("recording {event:?} failed: {e:#}");
            }
        }
    })
}

/// How a replica that died unwatched ended, from the exit file its shim left (if any).
fn died_while_down(instance_dir: &std::path::Path) -> String {
    std::fs::read(instance_dir.join(berth_supervisor::shim::EXIT_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice::<berth_model::ExitStatus>(&b).ok())
        .map_or_else(
            || "its shim died too; exit status unknown".to_string(),
            |status| status.to_string(),
        )
}

/// The password part of `scheme://user:password@host...`, if any.
fn url_password(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let userinfo = rest.split_once('@')?.0;
    let password = userinfo.split_once(':')?.1;
    (!password.is_empty()).then(|| password.to_string())
}

/// Parses a replica name `web.2`.
pub fn parse_replica(name: &str) -> Option<ReplicaKey> {
    let (service, index) = name.rsplit_once('.')?;
    Some(ReplicaKey::new(service, index.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_password_in_a_url() {
        assert_eq!(
            url_password("postgres://app:s3cr3t@127.0.0.1:5432/app").as_deref(),
            Some("s3cr3t")
        );
        assert_eq!(url_password("redis://127.0.0.1:6379/0"), None);
        assert_eq!(
            url_password("redis://:pw@127.0.0.1:6379/0").as_deref(),
            Some("pw")
        );
    }
}
