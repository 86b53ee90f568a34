//! The supervisor: keeps each service at its desired number of healthy replicas.
//!
//! It decides *when* replicas start and stop (scale, rolling restart, release change, crash,
//! failed health check); a [`Driver`] decides *how* (local processes through
//! [`local::LocalProcessDriver`], or [`dispatch::DriverByKind`] that sends container replicas to
//! a container driver). Replica status is published on the [`ReplicaBoard`]; what must outlive
//! the daemon (process records, events) is sent to the daemon as [`SupervisorEvent`]s, so this
//! crate knows nothing of the store.

pub mod dispatch;
pub mod health;
pub mod limits;
pub mod local;
pub mod logs;
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
        self.driver.adopted(&record, &plan.redact);
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

    /// Brings a service to `desired` replicas of `plan`'s release. Replicas of another release
    /// (or all of them, with `replace_all`: a rolling restart) are replaced one at a time: a new
    /// replica must turn healthy before an old one is stopped, so capacity never drops. If a new
    /// replica fails to turn healthy, it is stopped, the old ones keep running, and an error says why.
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

        // Replace, one at a time, what runs another release (or everything, for a restart).
        let outdated: Vec<ReplicaKey> = self
            .live(service)
            .into_iter()
            .filter(|(_, r)| replace_all || r != release)
            .map(|(k, _)| k)
            .collect();
        let mut fresh = self.live(service).len() - outdated.len();
        for old in outdated {
            if (fresh as u32) < desired {
                let new = self.start_replica(plan);
                if let Err(e) = self.wait_healthy(&new, Self::healthy_timeout(plan)).await {
                    self.stop_replica(&new).await;
                    return Err(e.context(format!(
                        "rolling replacement of {service} stopped; {old} keeps running"
                    )));
                }
                fresh += 1;
            }
            self.stop_replica(&old).await;
        }

        // Then scale.
        let live = self.live(service);
        let count = live.len() as u32;
        if count < desired {
            for _ in count..desired {
                self.start_replica(plan);
            }
        } else if count > desired {
            // Drop the least useful first: not healthy, then the newest numbers.
            let mut candidates: Vec<(bool, u32, ReplicaKey)> = live
                .into_iter()
                .map(|(k, _)| {
                    let healthy = self
                        .board
                        .get(&k)
                        .is_some_and(|s| s.health == Health::Healthy);
                    (healthy, k.index, k)
                })
                .collect();
            candidates.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
            let extra = (count - desired) as usize;
            let stops = candidates
                .into_iter()
                .take(extra)
                .map(|(_, _, k)| async move { self.stop_replica(&k).await });
            futures_join_all(stops).await;
        }
        Ok(())
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
