//! The supervisor: keeps each service at its desired number of healthy replicas.
//!
//! It decides *when* replicas start and stop (scale, rolling restart, release change, crash,
//! failed health check); a [`Driver`] decides *how* (local processes through
//! [`local::LocalProcessDriver`] today). Replica status is published on the [`ReplicaBoard`];
//! what must outlive the daemon (process records, events) is sent to the daemon as
//! [`SupervisorEvent`]s, so this crate knows nothing of the store.

pub mod health;
pub mod limits;
pub mod local;
pub mod logs;
pub mod planner;
pub mod replica;
pub mod shim;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use berth_model::{
    Driver, Event, Health, ProcessRecord, ReleaseId, ReplicaBoard, ReplicaKey, TrafficControl,
};
use tokio::sync::{mpsc, oneshot};

use replica::{Keeper, KeeperCommand};
pub use replica::{ReplicaPaths, ServicePlan};

/// Where the edge's `TrafficControl` is plugged in, shared by the supervisor and its keepers.
pub type TrafficSlot = Arc<std::sync::RwLock<Option<Arc<dyn TrafficControl>>>>;

/// What the supervisor tells the daemon, for the record.
#[derive(Debug, Clone)]
pub enum SupervisorEvent {
    /// A replica process started: persist it so a restarted daemon can adopt it.
    Started {
        key: ReplicaKey,
        release: ReleaseId,
        port: Option<u16>,
        record: ProcessRecord,
    },
    /// A replica is gone for good.
    Removed { key: ReplicaKey },
    /// Something worth a line in the stack's history.
    Event(Event),
}

struct ReplicaHandle {
    release: ReleaseId,
    commands: mpsc::Sender<KeeperCommand>,
    /// Set once a stop was asked: the replica no longer counts toward the desired number.
    stopping: bool,
}

/// Keeps services at their desired replica count.
pub struct Supervisor {
    driver: Arc<dyn Driver>,
    board: ReplicaBoard,
    paths: ReplicaPaths,
    events: mpsc::UnboundedSender<SupervisorEvent>,
    replicas: Mutex<BTreeMap<ReplicaKey, ReplicaHandle>>,
    /// One rollout at a time per service.
    service_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    ports: Mutex<HashMap<String, Arc<Mutex<HashSet<u16>>>>>,
    traffic: TrafficSlot,
}

impl Supervisor {
    pub fn new(
        driver: Arc<dyn Driver>,
        board: ReplicaBoard,
        paths: ReplicaPaths,
        events: mpsc::UnboundedSender<SupervisorEvent>,
    ) -> Arc<Self> {
        Arc::new(Self {
            driver,
            board,
            paths,
            events,
            replicas: Mutex::new(BTreeMap::new()),
            service_locks: Mutex::new(HashMap::new()),
            ports: Mutex::new(HashMap::new()),
            traffic: Arc::default(),
        })
    }

    /// Connects the edge: from now on a replica is drained there before it stops.
    pub fn set_traffic_control(&self, traffic: Arc<dyn TrafficControl>) {
        *self.traffic.write().unwrap_or_else(|e| e.into_inner()) = Some(traffic);
    }

    /// Disconnects the edge (it is stopping): replicas stop without draining through it.
    pub fn clear_traffic_control(&self) {
        *self.traffic.write().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Every replica this supervisor keeps, including those not yet on the board.
    pub fn replica_keys(&self) -> Vec<ReplicaKey> {
        self.replicas
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    pub fn board(&self) -> &ReplicaBoard {
        &self.board
    }

    pub fn driver(&self) -> &Arc<dyn Driver> {
        &self.driver
    }

    /// The lock a rollout of `service` holds: `converge` (scale, restart) waits for it.
    pub fn lock_service(&self, service: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.service_locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(service.to_string())
            .or_default()
            .clone()
    }

    fn taken_ports(&self, service: &str) -> Arc<Mutex<HashSet<u16>>> {
        self.ports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(service.to_string())
            .or_default()
            .clone()
    }

    /// Takes over a replica process found running (started by an earlier daemon).
    /// `was_serving`: the edge was sending it traffic, so it stays `healthy` until a check says
    /// otherwise (a control-plane restart loses no capacity); else it is `starting` until it
    /// passes a check (a replica that never did must not get users because the daemon restarted).
    /// Returns false (and does nothing) when the process is no longer running.
    pub fn adopt(
        self: &Arc<Self>,
        key: ReplicaKey,
        plan: ServicePlan,
        port: Option<u16>,
        record: ProcessRecord,
        was_serving: bool,
    ) -> bool {
        if !self.driver.is_running(&record) {
            return false;
        }
        if let Some(p) = port {
            self.taken_ports(&key.service)
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(p);
        }
        let instance = record
            .instance_dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("run-"))
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        self.spawn_keeper(
            key,
            plan,
            port,
            instance,
            record.limits.clone(),
            Some((record, was_serving)),
        );
        true
    }

    fn spawn_keeper(
        self: &Arc<Self>,
        key: ReplicaKey,
        plan: ServicePlan,
        port: Option<u16>,
        instance: u32,
        limits: Option<String>,
        adopted: Option<(ProcessRecord, bool)>,
    ) {
        let (tx, rx) = mpsc::channel(4);
        let release = plan.release.id.clone();
        let keeper = Keeper {
            key: key.clone(),
            taken_ports: self.taken_ports(&key.service),
            plan,
            driver: self.driver.clone(),
            board: self.board.clone(),
            events: self.events.clone(),
            paths: self.paths.clone(),
            commands: rx,
            port,
            restarts: 0,
            crashes: 0,
            instance,
            last_exit: None,
            last_log: vec![],
            limits,
            traffic: self.traffic.clone(),
        };
        self.replicas
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                key,
                ReplicaHandle {
                    release,
                    commands: tx,
                    stopping: false,
                },
            );
        tokio::spawn(keeper.run(adopted));
    }

    /// The next free replica number of a service.
    fn next_index(&self, service: &str) -> u32 {
        self.replicas
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .filter(|k| k.service == service)
            .map(|k| k.index)
            .max()
            .unwrap_or(0)
            + 1
    }

    /// Starts one more replica of `plan` (it joins the edge once healthy) and returns its key.
    pub fn start_replica(self: &Arc<Self>, plan: &ServicePlan) -> ReplicaKey {
        let key = ReplicaKey::new(
            plan.service.name.clone(),
            self.next_index(&plan.service.name),
        );
        self.spawn_keeper(key.clone(), plan.clone(), None, 0, None, None);
        key
    }

    /// Live (not stopping) replicas of a service with their release.
    pub fn live(&self, service: &str) -> Vec<(ReplicaKey, ReleaseId)> {
        self.replicas
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(k, h)| k.service == service && !h.stopping)
            .map(|(k, h)| (k.clone(), h.release.clone()))
            .collect()
    }

    /// All services that have replicas.
    pub fn services(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .replicas
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .map(|k| k.service.clone())
            .collect();
        names.dedup();
        names
    }

    /// Stops one replica gracefully and waits until it is gone.
    pub async fn stop_replica(&self, key: &ReplicaKey) {
        let sender = {
            let mut replicas = self.replicas.lock().unwrap_or_else(|e| e.into_inner());
            match replicas.get_mut(key) {
                Some(h) => {
                    h.stopping = true;
                    h.commands.clone()
                }
                None => return,
            }
        };
        let (tx, rx) = oneshot::channel();
        if sender.send(KeeperCommand::Stop { reply: tx }).await.is_ok() {
            let _ = rx.await;
        }
        self.replicas
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    /// Waits until a replica is healthy; fails when it turns unhealthy or failed, or after
    /// `timeout`.
    pub async fn wait_healthy(&self, key: &ReplicaKey, timeout: Duration) -> anyhow::Result<()> {
        let mut changes = self.board.subscribe();
        let wait = async {
            loop {
                if let Some(status) = self.board.get(key) {
                    match status.health {
                        Health::Healthy => return Ok(()),
                        Health::Unhealthy | Health::Failed => bail!(
                            "{key} is {} (last exit: {})",
                            status.health,
                            status.last_exit.as_deref().unwrap_or("none")
                        ),
                        _ => {}
                    }
                }
                if changes.changed().await.is_err() {
                    bail!("the supervisor stopped");
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .with_context(|| format!("{key} did not turn healthy within {}s", timeout.as_secs()))?
    }

    /// How long a new replica of `plan` may take to turn healthy.
    pub fn healthy_timeout(plan: &ServicePlan) -> Duration {
        match &plan.service.health {
            Some(h) => {
                h.grace_period
                    + (h.timeout + health::STARTING_CHECK_INTERVAL.min(h.interval))
                        * (h.healthy_threshold + h.unhealthy_threshold)
                    + Duration::from_secs(5)
            }
            None => Duration::from_secs(10),
        }
    }

    /// Brings a service to `desired` replicas of `plan`'s release, by the [`planner`]: replicas
    /// of another release (or all of them, with `replace_all`: a rolling restart) are replaced
    /// one at a time, a new replica healthy before an old one stops, so capacity never drops;
    /// then the count is met (new replicas join the edge once healthy; extra ones are drained
    /// and stopped, the least useful first). If a new replica fails to turn healthy, it is
    /// stopped, the old ones keep running, and an error says why.
    pub async fn converge(
        self: &Arc<Self>,
        plan: &ServicePlan,
        desired: u32,
        replace_all: bool,
    ) -> anyhow::Result<()> {
        let lock = self.lock_service(&plan.service.name);
        let _guard = lock.lock().await;
        let service = plan.service.name.as_str();
        let release = &plan.release.id;
        // In a restart, whatever is up now is outdated; what this call starts is not.
        let restarted: HashSet<ReplicaKey> = if replace_all {
            self.live(service).into_iter().map(|(k, _)| k).collect()
        } else {
            HashSet::new()
        };
        let target = planner::Desired {
            count: desired,
            max_surge: 1,
            max_unavailable: 0,
        };
        let timeout = Self::healthy_timeout(plan);
        let mut started: HashMap<ReplicaKey, std::time::Instant> = HashMap::new();
        let mut changes = self.board.subscribe();
        loop {
            let observed = self.observe(service, |key, running| {
                running != release || restarted.contains(key)
            });
            if let Some((key, reason)) = self.failed_start(&mut started, timeout) {
                self.stop_replica(&key).await;
                bail!(
                    "rolling replacement of {service} stopped: {key} of {release} {reason}; the replicas it was to replace keep running"
                );
            }
            let replacing = observed.iter().any(|o| o.outdated);
            let actions = planner::plan(&target, &observed);
            if actions.is_empty() {
                if !replacing {
                    return Ok(());
                }
                changes.mark_unchanged();
                let _ = tokio::time::timeout(Duration::from_millis(250), changes.changed()).await;
                continue;
            }
            let now = std::time::Instant::now();
            for key in self.apply(plan, &actions).await {
                if replacing {
                    started.insert(key, now);
                }
            }
            if !replacing {
                // Scaling: new replicas join once healthy; nothing waits for them.
                return Ok(());
            }
        }
    }

    /// The live replicas of `service` as the [`planner`] sees them, `outdated` deciding which
    /// are to be replaced from their key and release.
    pub fn observe(
        &self,
        service: &str,
        outdated: impl Fn(&ReplicaKey, &ReleaseId) -> bool,
    ) -> Vec<planner::Observed> {
        self.live(service)
            .into_iter()
            .map(|(key, release)| planner::Observed {
                outdated: outdated(&key, &release),
                health: self.board.get(&key).map(|s| s.health),
                key,
            })
            .collect()
    }

    /// The first of `started` that failed: unhealthy or failed, or still not healthy after
    /// `timeout` (with why). Healthy ones are forgotten: they made it.
    pub fn failed_start(
        &self,
        started: &mut HashMap<ReplicaKey, std::time::Instant>,
        timeout: Duration,
    ) -> Option<(ReplicaKey, String)> {
        let mut failed = None;
        started.retain(|key, since| {
            let status = self.board.get(key);
            match status.as_ref().map(|s| s.health) {
                Some(Health::Healthy) => false,
                Some(health @ (Health::Unhealthy | Health::Failed)) => {
                    failed.get_or_insert_with(|| {
                        (
                            key.clone(),
                            format!(
                                "did not pass its health check ({health}; last exit: {})",
                                status
                                    .and_then(|s| s.last_exit)
                                    .unwrap_or_else(|| "none".into())
                            ),
                        )
                    });
                    true
                }
                _ if since.elapsed() > timeout => {
                    failed.get_or_insert_with(|| {
                        (
                            key.clone(),
                            format!("did not turn healthy within {}s", timeout.as_secs()),
                        )
                    });
                    true
                }
                _ => true,
            }
        });
        failed
    }

    /// Carries out the [`planner`]'s actions for `plan`'s service: the one place its decisions
    /// become processes. Starts return at once (the replicas join the edge once healthy); stops
    /// drain through the edge and run in parallel, and are waited for. Returns the started keys.
    pub async fn apply(
        self: &Arc<Self>,
        plan: &ServicePlan,
        actions: &[planner::Action],
    ) -> Vec<ReplicaKey> {
        let mut started = Vec::new();
        let mut stops = Vec::new();
        for action in actions {
            match action {
                planner::Action::Start => started.push(self.start_replica(plan)),
                planner::Action::Stop(key) => stops.push(key.clone()),
            }
        }
        futures_join_all(stops.iter().map(|k| self.stop_replica(k))).await;
        started
    }

    /// Stops every replica of every service, in parallel, gracefully.
    pub async fn stop_all(&self) {
        let keys: Vec<ReplicaKey> = self
            .replicas
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        futures_join_all(keys.iter().map(|k| self.stop_replica(k))).await;
    }

    /// Stops every replica of one service.
    pub async fn stop_service(&self, service: &str) {
        let keys: Vec<ReplicaKey> = self.live(service).into_iter().map(|(k, _)| k).collect();
        futures_join_all(keys.iter().map(|k| self.stop_replica(k))).await;
    }
}

/// Runs futures concurrently on the current task and waits for all.
async fn futures_join_all<F: std::future::Future<Output = ()>>(
    futures: impl IntoIterator<Item = F>,
) {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    // Poll all of them together.
    std::future::poll_fn(|cx| {
        let mut pending = false;
        set.retain_mut(|f| match f.as_mut().poll(cx) {
            std::task::Poll::Ready(()) => false,
            std::task::Poll::Pending => {
                pending = true;
                true
            }
        });
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await
}
