//! The control plane's link to the edge process: start it (or adopt the one already running),
//! keep it alive, push it a new routing table whenever replica health or rollout weights change,
//! ask it what is in flight to drain a replica, and stop it. Implements [`TrafficControl`].
//!
//! Supervision: the link holds duplicates of the edge's listening sockets (lent over the
//! handover socket). When the edge dies, the death is recorded with its exit status, and a new
//! edge is started at once (then with the [`RestartPolicy`] back-off): the table it starts from
//! is written first from the board as it is now (live replicas only, the current weights), and
//! the new edge takes the duplicates through the same hand-over as an upgrade, so connections
//! that arrive meanwhile wait in the listen backlog instead of being refused. Knows nothing of
//! the store: weights and events leave through the recorders it is given.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use berth_edge::handover;
use berth_edge::{ControlRequest, EdgeClient};
use berth_model::routing::{CertificateFiles, TlsTable, Weights};
use berth_model::traffic::ReleaseTraffic;
use berth_model::{
    EventLevel, ReplicaBoard, RestartPolicy, RoutingTable, StatePaths, TrafficControl,
};
use berth_spec::Spec;
use tokio::sync::{oneshot, watch};
use tracing::Instrument;

/// Called with (service, weights) whenever the rollout engine changes a service's weights, so
/// they are on disk before the edge applies them.
pub type WeightsRecorder = Box<dyn Fn(&str, &BTreeMap<String, u32>) + Send + Sync>;

/// Called with every event of the edge's life (deaths, restarts), to be kept as `edge` events.
pub type EventRecorder = Box<dyn Fn(EventLevel, String) + Send + Sync>;

/// How the edge is restarted: at once, then with the replicas' back-off.
pub const EDGE_RESTARTS: RestartPolicy = RestartPolicy::KEEP_ALIVE;

/// How long a table push or a counters read waits for an edge being restarted.
const RESTART_WAIT: Duration = Duration::from_secs(10);

/// How often the link reads the edge's counters (see [`EdgeLink::spawn_readings`]).
const TRAFFIC_READING_EVERY: Duration = Duration::from_secs(2);

/// How often the liveness of an edge this daemon did not start is checked.
const ADOPTED_POLL: Duration = Duration::from_millis(50);

/// One edge process, as the link watches it.
struct EdgeProcess {
    pid: u32,
    /// Its start time in clock ticks (to tell it from a recycled pid).
    start_ticks: Option<u64>,
    started: Instant,
    /// Its exit status, when it is this daemon's child.
    exit: Option<oneshot::Receiver<std::io::Result<std::process::ExitStatus>>>,
}

impl EdgeProcess {
    fn adopted(pid: u32) -> Self {
        Self {
            pid,
            start_ticks: berth_supervisor::local::proc_start_ticks(pid),
            // Unknown: counted as having run long enough.
            started: Instant::now()
                .checked_sub(EDGE_RESTARTS.stable_after)
                .unwrap_or_else(Instant::now),
            exit: None,
        }
    }

    /// Waits for it to end; returns how (`signal 9`, `exit 1`, or unknown for an edge this
    /// daemon did not start).
    async fn ended(&mut self) -> String {
        if let Some(exit) = self.exit.take() {
            return match exit.await {
                Ok(Ok(status)) => describe_exit(status),
                Ok(Err(e)) => format!("ended (waiting for it failed: {e})"),
                Err(_) => "ended (status unknown)".into(),
            };
        }
        // Said once per adopted edge: a daemon log that lacks it never watched the edge.
        tracing::info!(
            "watching edge pid {} (started by an earlier daemon: polled every {} ms, and told by a pidfd where the kernel has them)",
            self.pid,
            ADOPTED_POLL.as_millis()
        );
        berth_supervisor::local::process_ended(
            self.pid,
            self.start_ticks.unwrap_or(0),
            ADOPTED_POLL,
        )
        .await;
        "ended (status unknown: started by an earlier daemon)".into()
    }
}

/// `signal 9 (SIGKILL)`, `exit 1`.
fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(signal)) => match nix::sys::signal::Signal::try_from(signal) {
            Ok(name) => format!("signal {signal} ({name})"),
            Err(_) => format!("signal {signal}"),
        },
        (None, None) => "ended (status unknown)".into(),
    }
}

/// What `berth status` shows of the edge's supervision.
#[derive(Debug, Clone, Default)]
struct Supervision {
    /// `running`, `restarting`, `crash-looping` or `stopped`.
    state: &'static str,
    restarts: u32,
    last_exit: Option<String>,
}

pub struct EdgeLink {
    client: EdgeClient,
    record_weights: WeightsRecorder,
    record_event: EventRecorder,
    program: PathBuf,
    /// The private test route's key (see `berth_edge::proxy::TEST_KEY_HEADER`).
    test_key: String,
    dir: PathBuf,
    spec: Spec,
    board: ReplicaBoard,
    weights: Mutex<Weights>,
    /// What the edge serves over TLS: certificate files and ACME challenges (the spec's files
    /// from the start; issued certificates as the TLS manager has them).
    tls: Mutex<TlsTable>,
    /// Maintenance mode as last set (kept in `maintenance.json`, so it outlives restarts).
    maintenance: Mutex<Option<berth_model::routing::Maintenance>>,
    last_version: AtomicU64,
    /// Set once the edge was asked to stop: no more tables are pushed, no restarts.
    stopped: AtomicBool,
    /// The live edge's pid; 0 while there is none (dead, being restarted, stopped).
    pid: AtomicU32,
    supervision: Mutex<Supervision>,
    /// Duplicates of the edge's listening sockets, handed to the next edge after a death.
    listeners: Mutex<Option<handover::Listeners>>,
    /// The edge's counters read every [`TRAFFIC_READING_EVERY`], for the deploys' baselines.
    readings: Mutex<berth_model::traffic::TrafficReadings>,
    /// Counts the edges that came up (the first included): waiters for a restart watch it.
    generation: watch::Sender<u64>,
    /// Where it listens (ports resolved).
    pub listen: Vec<std::net::SocketAddr>,
    pub admin: Option<std::net::SocketAddr>,
}

/// What the spec alone says of TLS: its certificate files (in its order), HSTS and the
/// redirect. Certificates from ACME or the local CA are added by [`EdgeLink::set_tls`].
fn tls_from_spec(spec: &Spec) -> TlsTable {
    let certificates = spec
        .tls
        .certificates
        .iter()
        .filter_map(|c| match &c.source {
            berth_spec::tls::CertificateSource::Files { cert, key } => Some(CertificateFiles {
                hosts: c.hosts.clone(),
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        })
        .collect();
    TlsTable {
        certificates,
        challenges: Default::default(),
        hsts: spec.tls.hsts.clone(),
        redirect_https: spec.tls.redirect_https,
    }
}

/// Where maintenance mode is kept between runs.
fn maintenance_file(env_dir: &Path) -> PathBuf {
    env_dir.join("maintenance.json")
}

fn read_maintenance(env_dir: &Path) -> Option<berth_model::routing::Maintenance> {
    let bytes = std::fs::read(maintenance_file(env_dir)).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(maintenance) => maintenance,
        Err(e) => {
            tracing::warn!("ignoring an unreadable maintenance.json: {e}");
            None
        }
    }
}

fn write_maintenance(
    env_dir: &Path,
    maintenance: Option<&berth_model::routing::Maintenance>,
) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let file = maintenance_file(env_dir);
    let tmp = file.with_extension("tmp");
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    out.write_all(&serde_json::to_vec(&maintenance)?)?;
    out.sync_all()?;
    std::fs::rename(&tmp, &file).with_context(|| format!("writing {}", file.display()))?;
    Ok(())
}

/// The edge's folder.
pub fn edge_dir(paths: &StatePaths) -> PathBuf {
    paths.env_dir.join("edge")
}

impl EdgeLink {
    /// Adopts the running edge of this environment, or starts one, gives it a first table, and
    /// keeps it alive from then on (see the module doc).
    pub async fn start_or_adopt(
        program: &Path,
        paths: &StatePaths,
        spec: &Spec,
        board: ReplicaBoard,
        weights: Weights,
        record_weights: WeightsRecorder,
        record_event: EventRecorder,
    ) -> anyhow::Result<(Arc<Self>, bool)> {
        let dir = edge_dir(paths);
        std::fs::create_dir_all(&dir)?;
        let client = EdgeClient::new(dir.join("control.sock"));
        let running = client.call(&ControlRequest::Status).await.ok();
        let adopted = running.is_some();
        let test_key = test_key(&dir)?;
        let mut link = Self {
            client,
            record_weights,
            record_event,
            program: program.to_path_buf(),
            test_key,
            dir: dir.clone(),
            spec: spec.clone(),
            board,
            weights: Mutex::new(weights),
            tls: Mutex::new(tls_from_spec(spec)),
            maintenance: Mutex::new(read_maintenance(&paths.env_dir)),
            last_version: AtomicU64::new(0),
            stopped: Default::default(),
            pid: AtomicU32::new(0),
            supervision: Mutex::new(Supervision {
                state: "running",
                ..Default::default()
            }),
            listeners: Mutex::new(None),
            readings: Mutex::default(),
            generation: watch::channel(0).0,
            listen: Vec::new(),
            admin: None,
        };
        let process = match &running {
            None => {
                // The table it starts from names only what the board holds now (replicas this
                // daemon adopted), never replicas of an earlier run that are gone.
                link.write_table()?;
                link.spawn(false).await?
            }
            Some(status) if runs_other_binary(status.pid, program) => {
                tracing::info!(
                    "edge {} runs another berth binary: handing its sockets to a new edge",
                    status.pid
                );
                link.write_table()?;
                link.spawn(true).await?
            }
            Some(status) => EdgeProcess::adopted(status.pid),
        };
        let status = link.client.call(&ControlRequest::Status).await?;
        link.listen = status.listen;
        link.admin = status.admin;
        link.pid.store(process.pid, Ordering::Relaxed);
        let link = Arc::new(link);
        link.push().await?;
        link.borrow_listeners().await;
        tokio::spawn(
            link.clone()
                .keep(process)
                .instrument(tracing::info_span!("edge")),
        );
        Ok((link, adopted))
    }

    /// The live edge's pid (None while it is dead or being restarted).
    pub fn pid(&self) -> Option<u32> {
        Some(self.pid.load(Ordering::Relaxed)).filter(|&p| p != 0 && pid_alive(p))
    }

    /// What `berth status` shows.
    pub fn status(&self) -> berth_model::api::EdgeStatus {
        let supervision = self
            .supervision
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let pid = self.pid();
        let state = match (pid, supervision.state) {
            (None, "running") => "down",
            (_, state) => state,
        };
        berth_model::api::EdgeStatus {
            pid,
            listen: self.listen.clone(),
            admin: self.admin,
            state: state.to_string(),
            restarts: supervision.restarts,
            last_exit: supervision.last_exit,
        }
    }

    /// Asks the edge for duplicates of its listening sockets (kept for a restart).
    async fn borrow_listeners(&self) {
        let socket = self.dir.join(handover::SOCKET_FILE);
        match tokio::task::spawn_blocking(move || handover::share(&socket)).await {
            Ok(Ok(listeners)) => {
                *self.listeners.lock().unwrap_or_else(|e| e.into_inner()) = Some(listeners);
            }
            Ok(Err(e)) => tracing::warn!(
                "edge: could not borrow its listening sockets ({e:#}); a restarted edge binds them anew"
            ),
            Err(e) => tracing::warn!("edge: borrowing its listening sockets: {e}"),
        }
    }

    /// Writes the table the next edge starts from: the board as it is now.
    fn write_table(&self) -> anyhow::Result<()> {
        let table = self.table();
        let file = self.dir.join("table.json");
        let tmp = self.dir.join("table.json.daemon-tmp");
        std::fs::write(&tmp, serde_json::to_vec(&table)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &file).with_context(|| format!("writing {}", file.display()))?;
        Ok(())
    }

    /// Watches the edge; restarts it whenever it dies, until the link is stopped.
    async fn keep(self: Arc<Self>, mut process: EdgeProcess) {
        let mut crashes = 0;
        loop {
            let how = process.ended().await;
            if self.stopped.load(Ordering::Relaxed) {
                return;
            }
            self.pid.store(0, Ordering::Relaxed);
            let died_at = Instant::now();
            let mut verdict = EDGE_RESTARTS.after_death(crashes, process.started.elapsed());
            self.note_death(process.pid, &how, verdict);
            loop {
                crashes = verdict.crashes;
                tokio::time::sleep(verdict.delay).await;
                if self.stopped.load(Ordering::Relaxed) {
                    return;
                }
                match self.restart().await {
                    Ok(_) if self.stopped.load(Ordering::Relaxed) => {
                        // Stopped while it started: it must not outlive the daemon's stop.
                        let _ = self.client.call(&ControlRequest::Stop).await;
                        return;
                    }
                    Ok(next) => {
                        process = next;
                        let pid = process.pid;
                        self.pid.store(pid, Ordering::Relaxed);
                        {
                            // Crash-looping is shown while it is down; once up, it runs.
                            let mut s = self.supervision.lock().unwrap_or_else(|e| e.into_inner());
                            s.restarts += 1;
                            s.state = "running";
                        }
                        self.generation.send_modify(|g| *g += 1);
                        let took = died_at.elapsed().as_millis();
                        tracing::info!("edge restarted: pid {pid}, {took} ms after its death");
                        (self.record_event)(
                            EventLevel::Info,
                            format!("restarted: pid {pid}, {took} ms after the death"),
                        );
                        if let Err(e) = self.push().await {
                            tracing::warn!("edge: could not push the routing table: {e:#}");
                        }
                        if self
                            .listeners
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .is_none()
                        {
                            self.borrow_listeners().await;
                        }
                        break;
                    }
                    Err(e) => {
                        verdict = EDGE_RESTARTS.after_failed_start(crashes);
                        tracing::error!("edge: restart failed: {e:#}");
                        (self.record_event)(
                            EventLevel::Error,
                            format!(
                                "restart failed: {e:#}; next try in {:.1}s",
                                verdict.delay.as_secs_f32()
                            ),
                        );
                        self.set_state(if verdict.crash_looping {
                            "crash-looping"
                        } else {
                            "restarting"
                        });
                    }
                }
            }
        }
    }

    fn set_state(&self, state: &'static str) {
        self.supervision
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .state = state;
    }

    /// Logs and records a death with how it ended.
    fn note_death(&self, pid: u32, how: &str, verdict: berth_model::RestartVerdict) {
        let next = if verdict.delay.is_zero() {
            "restarting it now".to_string()
        } else {
            format!("restarting it in {:.1}s", verdict.delay.as_secs_f32())
        };
        let looping = if verdict.crash_looping {
            format!(
                " (crash-looping: {} quick deaths in a row)",
                verdict.crashes
            )
        } else {
            String::new()
        };
        tracing::error!("edge pid {pid} died: {how}{looping}; {next}");
        (self.record_event)(
            EventLevel::Error,
            format!("pid {pid} died: {how}{looping}; {next}"),
        );
        let mut s = self.supervision.lock().unwrap_or_else(|e| e.into_inner());
        s.last_exit = Some(how.to_string());
        s.state = if verdict.crash_looping {
            "crash-looping"
        } else {
            "restarting"
        };
    }

    /// Starts a new edge after a death: from a table written now, on the kept listening
    /// sockets when the link holds them (else it binds them anew).
    async fn restart(&self) -> anyhow::Result<EdgeProcess> {
        self.write_table()?;
        let fds = self
            .listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|l| l.fds());
        let Some(fds) = fds else {
            return self.spawn(false).await;
        };
        let handout = fds?;
        let socket = handover::bind(&self.dir.join(handover::SOCKET_FILE))?;
        // The descriptors stay open in `self.listeners` while this runs (the link outlives it).
        let serving = tokio::task::spawn_blocking(move || {
            handover::serve_once(socket, &handout, Duration::from_secs(10))
        });
        let process = self.spawn(true).await?;
        match serving.await {
            Ok(Ok(())) => Ok(process),
            Ok(Err(e)) => Err(e.context("handing the listening sockets to the new edge")),
            Err(e) => bail!("handing the listening sockets to the new edge: {e}"),
        }
    }

    /// Starts an edge; with `takeover`, it takes the listening sockets from whoever serves the
    /// handover socket (the running edge, or this link after a death).
    async fn spawn(&self, takeover: bool) -> anyhow::Result<EdgeProcess> {
        spawn(&self.program, &self.dir, &self.spec, &self.client, takeover).await
    }

    /// A version higher than any earlier one, also across daemon restarts.
    fn next_version(&self) -> u64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        let mut last = self.last_version.load(Ordering::Relaxed);
        loop {
            let next = now.max(last + 1);
            match self.last_version.compare_exchange(
                last,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return next,
                Err(actual) => last = actual,
            }
        }
    }

    /// The table for the board as it is now.
    pub fn table(&self) -> RoutingTable {
        let weights = self
            .weights
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut table = RoutingTable::build(
            &self.spec,
            &self.board.snapshot(),
            &weights,
            self.next_version(),
        );
        table.test_key = Some(self.test_key.clone());
        table.tls = self.tls.lock().unwrap_or_else(|e| e.into_inner()).clone();
        table.maintenance = self
            .maintenance
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        table
    }

    /// Maintenance mode as it is now.
    pub fn maintenance(&self) -> Option<berth_model::routing::Maintenance> {
        self.maintenance
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Turns maintenance mode on (`Some`) or off, on disk first, then on the edge.
    pub async fn set_maintenance(
        &self,
        env_dir: &Path,
        maintenance: Option<berth_model::routing::Maintenance>,
    ) -> anyhow::Result<()> {
        write_maintenance(env_dir, maintenance.as_ref())?;
        *self.maintenance.lock().unwrap_or_else(|e| e.into_inner()) = maintenance;
        self.push().await.map(|_| ())
    }

    /// Sets the certificates served (all of them, in the spec's order: its files and those
    /// issued) and the ACME challenges to answer; the next pushed table carries them.
    pub fn set_tls(
        &self,
        certificates: Vec<CertificateFiles>,
        challenges: std::collections::BTreeMap<String, String>,
    ) {
        let mut tls = tls_from_spec(&self.spec);
        tls.certificates = certificates;
        tls.challenges = challenges;
        *self.tls.lock().unwrap_or_else(|e| e.into_inner()) = tls;
    }

    /// The key of the private test route.
    pub fn test_key(&self) -> &str {
        &self.test_key
    }

    /// Pushes the table for the board as it is now. While the edge is dead and being restarted,
    /// waits (up to [`RESTART_WAIT`]) for the new one, so a deploy step is not failed by a
    /// restart (the new edge starts from the same weights anyway).
    pub async fn push(&self) -> anyhow::Result<u64> {
        self.call_through_restart(|| ControlRequest::Table {
            table: Box::new(self.table()),
        })
        .await
        .map(|r| r.version)
    }

    /// Drops the edge's cached answers of `service` (all when None) under `prefix` (all paths
    /// when None); how many went. A restarted edge starts with an empty cache, so a purge
    /// sent through a restart is still a purge.
    pub async fn purge_cache(
        &self,
        service: Option<&str>,
        prefix: Option<&str>,
    ) -> anyhow::Result<u64> {
        self.call_through_restart(|| ControlRequest::Purge {
            service: service.map(str::to_string),
            prefix: prefix.map(str::to_string),
        })
        .await
        .map(|r| r.purged)
    }

    /// Sends a control request; when it fails because the edge is gone (and the link is not
    /// stopped), waits for the restarted edge and sends it once more.
    async fn call_through_restart(
        &self,
        request: impl Fn() -> ControlRequest,
    ) -> anyhow::Result<berth_edge::ControlResponse> {
        let mut restarted = self.generation.subscribe();
        let error = match self.client.call(&request()).await {
            Ok(response) => return Ok(response),
            Err(e) => e,
        };
        if self.stopped.load(Ordering::Relaxed) || self.pid().is_some() {
            return Err(error);
        }
        tracing::info!("edge: waiting for the restarted edge ({error:#})");
        match tokio::time::timeout(RESTART_WAIT, restarted.changed()).await {
            Ok(Ok(())) => {
                self.client.reconnect().await;
                self.client.call(&request()).await
            }
            _ => Err(error.context(format!(
                "the edge did not come back within {}s",
                RESTART_WAIT.as_secs()
            ))),
        }
    }

    /// Reads the edge's counters every [`TRAFFIC_READING_EVERY`] into `readings`.
    pub fn spawn_readings(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let link = self.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(TRAFFIC_READING_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                if link.stopped.load(Ordering::Relaxed) {
                    return;
                }
                let answer = link
                    .client
                    .call(&ControlRequest::Traffic { service: None })
                    .await;
                match answer {
                    Ok(response) => link
                        .readings
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .record(Instant::now(), response.traffic),
                    // The edge is restarting; the supervision says so.
                    Err(e) => tracing::debug!("edge: reading the counters: {e:#}"),
                }
            }
        })
    }

    /// Pushes a new table on every board change (changes within 5 ms are pushed once).
    pub fn spawn_sync(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let link = self.clone();
        let mut changes = self.board.subscribe();
        tokio::spawn(async move {
            while changes.changed().await.is_ok() {
                if link.stopped.load(Ordering::Relaxed) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
                changes.mark_unchanged();
                if let Err(e) = link.push().await {
                    tracing::warn!("edge: could not push the routing table: {e:#}");
                }
            }
        })
    }

    /// Stops the edge: it stops accepting and finishes what is in flight.
    pub async fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        self.set_state("stopped");
        // The edge closes its listeners when it stops; so does the link.
        self.listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if self.client.call(&ControlRequest::Stop).await.is_err() {
            return;
        }
        let deadline = Instant::now() + berth_edge::SHUTDOWN_GRACE + Duration::from_secs(5);
        while self.dir.join("edge.pid").exists() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The test route's key: kept in `edge/test-key` (0600) so it survives daemon restarts and an
/// operator can use the test route by hand.
fn test_key(dir: &Path) -> anyhow::Result<String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let file = dir.join("test-key");
    if let Ok(key) = std::fs::read_to_string(&file) {
        let key = key.trim();
        if key.len() >= 32 {
            return Ok(key.to_string());
        }
    }
    let key: String = (0..4)
        .map(|_| format!("{:016x}", rand::random::<u64>()))
        .collect();
    let tmp = dir.join("test-key.tmp");
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    out.write_all(key.as_bytes())?;
    out.sync_all()?;
    std::fs::rename(&tmp, &file)?;
    Ok(key)
}

/// Whether the process `pid` runs an executable other than `program` (replaced or different).
fn runs_other_binary(pid: u32, program: &Path) -> bool {
    match std::fs::read_link(format!("/proc/{pid}/exe")) {
        Ok(exe) => {
            let exe = exe.to_string_lossy();
            exe.ends_with(" (deleted)") || Path::new(exe.as_ref()) != program
        }
        Err(_) => false,
    }
}

/// Whether `pid` names a live process (not a zombie).
fn pid_alive(pid: u32) -> bool {
    berth_supervisor::local::proc_start_ticks(pid).is_some()
}

/// Starts an edge; with `takeover`, it takes the listening sockets from the handover socket.
async fn spawn(
    program: &Path,
    dir: &Path,
    spec: &Spec,
    client: &EdgeClient,
    takeover: bool,
) -> anyhow::Result<EdgeProcess> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("edge.log"))?;
    let mut command = std::process::Command::new(program);
    command.arg("edge").arg("--dir").arg(dir);
    for addr in &spec.edge.listen {
        command.arg("--listen").arg(addr.to_string());
    }
    for addr in &spec.tls.listen {
        command.arg("--tls-listen").arg(addr.to_string());
    }
    command.arg("--admin").arg(spec.edge.admin.to_string());
    if let Some(workers) = spec.edge.workers {
        command.arg("--workers").arg(workers.to_string());
    }
    if spec.edge.pin_workers {
        command.arg("--pin-workers");
    }
    if takeover {
        command.arg("--takeover");
    }
    command
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // Its own session: the edge outlives the control plane.
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    let mut child = command.spawn().context("starting the edge")?;
    let started = Instant::now();
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        client.reconnect().await;
        let answer = client.call(&ControlRequest::Status).await;
        if answer.is_ok_and(|s| s.pid == pid) {
            // Reap it once it ends (it is our child while we live) and tell the watcher how.
            let (tx, rx) = oneshot::channel();
            std::thread::spawn(move || {
                let _ = tx.send(child.wait());
            });
            return Ok(EdgeProcess {
                pid,
                start_ticks: berth_supervisor::local::proc_start_ticks(pid),
                started,
                exit: Some(rx),
            });
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(dir.join("edge.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!("the edge exited ({status}): {}", tail.join("\n"));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the edge did not answer on its control socket within 10s");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The release that takes all of a service's traffic under `weights` (the only one with a
/// non-zero weight), if any.
fn sole_release(weights: &BTreeMap<String, u32>) -> Option<&str> {
    let mut on = weights.iter().filter(|(_, w)| **w > 0);
    match (on.next(), on.next()) {
        (Some((release, _)), None) => Some(release),
        _ => None,
    }
}

/// Whether new weights move all the traffic to another release than before: from a split, or
/// from another sole release. From no weights at all (the service's replicas, all of one
/// release) to the first weights of a deploy is not a switch.
fn traffic_switched(before: Option<&BTreeMap<String, u32>>, after: &BTreeMap<String, u32>) -> bool {
    match (before.filter(|b| !b.is_empty()), sole_release(after)) {
        (Some(before), Some(now)) => sole_release(before) != Some(now),
        _ => false,
    }
}

#[async_trait::async_trait]
impl TrafficControl for EdgeLink {
    async fn set_weights(
        &self,
        service: &str,
        weights: BTreeMap<String, u32>,
    ) -> anyhow::Result<()> {
        (self.record_weights)(service, &weights);
        let switched = {
            let mut all = self.weights.lock().unwrap_or_else(|e| e.into_inner());
            let switched = traffic_switched(all.get(service), &weights);
            if weights.is_empty() {
                all.remove(service);
            } else {
                all.insert(service.to_string(), weights);
            }
            switched
        };
        self.push().await?;
        // All the traffic moved to one release (a blue/green switch, a canary's last step, a
        // switch back): what the edge cached of the other release goes now, not at the end of
        // the deploy.
        if switched && self.spec.edge.cache.is_some() {
            match self.purge_cache(Some(service), None).await {
                Ok(n) => tracing::info!("{service}: traffic switched; {n} cached answers purged"),
                Err(e) => tracing::warn!("{service}: purging the edge's cache: {e:#}"),
            }
        }
        Ok(())
    }

    async fn refresh(&self) -> anyhow::Result<()> {
        self.push().await.map(|_| ())
    }

    async fn traffic(&self, service: &str) -> anyhow::Result<Vec<ReleaseTraffic>> {
        // A restarted edge counts from zero; the analysis reads differences that saturate.
        let response = self
            .call_through_restart(|| ControlRequest::Traffic {
                service: Some(service.to_string()),
            })
            .await?;
        Ok(response.traffic)
    }

    async fn traffic_before(
        &self,
        service: &str,
        age: Duration,
    ) -> Option<(Duration, Vec<ReleaseTraffic>)> {
        self.readings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .at_least(Instant::now(), age, service)
    }

    async fn drain(&self, replica: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        // The board already says draining: make sure the edge has heard it.
        if let Err(e) = self.push().await {
            tracing::warn!("edge: drain of {replica}: {e:#}");
            return;
        }
        loop {
            match self.client.call(&ControlRequest::InFlight).await {
                Ok(r) if r.in_flight.get(replica).copied().unwrap_or(0) == 0 => return,
                Ok(_) => {}
                Err(_) => return,
            }
            if Instant::now() >= deadline {
                tracing::warn!("{replica}: deregistration delay over with requests in flight");
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(pairs: &[(&str, u32)]) -> BTreeMap<String, u32> {
        pairs.iter().map(|(r, n)| (r.to_string(), *n)).collect()
    }

    #[test]
    fn a_switch_is_all_traffic_moving_to_another_release() {
        // Blue/green: held on the old release first (not a switch), then the switch.
        assert!(!traffic_switched(None, &w(&[("r1", 100), ("r2", 0)])));
        assert!(traffic_switched(
            Some(&w(&[("r1", 100), ("r2", 0)])),
            &w(&[("r1", 0), ("r2", 100)])
        ));
        // Canary: steps are not switches, the last one is.
        assert!(!traffic_switched(
            Some(&w(&[("r1", 100), ("r2", 0)])),
            &w(&[("r1", 80), ("r2", 20)])
        ));
        assert!(traffic_switched(
            Some(&w(&[("r1", 80), ("r2", 20)])),
            &w(&[("r1", 0), ("r2", 100)])
        ));
        // A rollback back to the old one is a switch; the same weights again are not; dropping
        // the weights at the end of a deploy is not.
        assert!(traffic_switched(
            Some(&w(&[("r1", 0), ("r2", 100)])),
            &w(&[("r1", 100), ("r2", 0)])
        ));
        assert!(!traffic_switched(
            Some(&w(&[("r1", 0), ("r2", 100)])),
            &w(&[("r1", 0), ("r2", 100)])
        ));
        assert!(!traffic_switched(
            Some(&w(&[("r1", 0), ("r2", 100)])),
            &w(&[])
        ));
    }
}
