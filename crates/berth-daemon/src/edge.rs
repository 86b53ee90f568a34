//! The control plane's link to the edge process: start it (or adopt the one already running),
//! push it a new routing table whenever replica health or rollout weights change, ask it what is
//! in flight to drain a replica, and stop it. Implements [`TrafficControl`].

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use berth_edge::{ControlRequest, EdgeClient};
use berth_model::routing::Weights;
use berth_model::traffic::ReleaseTraffic;
use berth_model::{ReplicaBoard, RoutingTable, StatePaths, TrafficControl};
use berth_spec::Spec;

/// Called with (service, weights) whenever the rollout engine changes a service's weights, so
/// they are on disk before the edge applies them.
pub type WeightsRecorder = Box<dyn Fn(&str, &BTreeMap<String, u32>) + Send + Sync>;

pub struct EdgeLink {
    client: EdgeClient,
    record_weights: WeightsRecorder,
    /// The private test route's key (see `berth_edge::proxy::TEST_KEY_HEADER`).
    test_key: String,
    dir: PathBuf,
    spec: Spec,
    board: ReplicaBoard,
    weights: Mutex<Weights>,
    last_version: AtomicU64,
    /// Set once the edge was asked to stop: no more tables are pushed.
    stopped: std::sync::atomic::AtomicBool,
    pub pid: u32,
    /// Where it listens (ports resolved).
    pub listen: Vec<std::net::SocketAddr>,
    pub admin: Option<std::net::SocketAddr>,
}

/// The edge's folder.
pub fn edge_dir(paths: &StatePaths) -> PathBuf {
    paths.env_dir.join("edge")
}

impl EdgeLink {
    /// Adopts the running edge of this environment, or starts one, and gives it a first table.
    pub async fn start_or_adopt(
        program: &Path,
        paths: &StatePaths,
        spec: &Spec,
        board: ReplicaBoard,
        weights: Weights,
        record_weights: WeightsRecorder,
    ) -> anyhow::Result<(Arc<Self>, bool)> {
        let dir = edge_dir(paths);
        std::fs::create_dir_all(&dir)?;
        let client = EdgeClient::new(dir.join("control.sock"));
        let running = client.call(&ControlRequest::Status).await.ok();
        let adopted = running.is_some();
        match &running {
            None => {
                spawn(program, &dir, spec, &client, None).await?;
            }
            Some(status) if runs_other_binary(status.pid, program) => {
                tracing::info!(
                    "edge {} runs another berth binary: handing its sockets to a new edge",
                    status.pid
                );
                spawn(program, &dir, spec, &client, Some(status.pid)).await?;
            }
            Some(_) => {}
        }
        let status = client.call(&ControlRequest::Status).await?;
        let test_key = test_key(&dir)?;
        let link = Arc::new(Self {
            client,
            record_weights,
            test_key,
            dir,
            spec: spec.clone(),
            board,
            weights: Mutex::new(weights),
            last_version: AtomicU64::new(0),
            stopped: Default::default(),
            pid: status.pid,
            listen: status.listen,
            admin: status.admin,
        });
        link.push().await?;
        Ok((link, adopted))
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
        table
    }

    /// The key of the private test route.
    pub fn test_key(&self) -> &str {
        &self.test_key
    }

    pub async fn push(&self) -> anyhow::Result<u64> {
        let table = self.table();
        let response = self
            .client
            .call(&ControlRequest::Table {
                table: Box::new(table),
            })
            .await?;
        Ok(response.version)
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

/// Starts an edge; with `replacing`, it takes the sockets over from that running edge.
async fn spawn(
    program: &Path,
    dir: &Path,
    spec: &Spec,
    client: &EdgeClient,
    replacing: Option<u32>,
) -> anyhow::Result<u32> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("edge.log"))?;
    let mut command = std::process::Command::new(program);
    command.arg("edge").arg("--dir").arg(dir);
    for addr in &spec.edge.listen {
        command.arg("--listen").arg(addr.to_string());
    }
    command.arg("--admin").arg(spec.edge.admin.to_string());
    if replacing.is_some() {
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
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        client.reconnect().await;
        let answer = client.call(&ControlRequest::Status).await;
        if answer.is_ok_and(|s| s.pid == pid) {
            // Reap it in the background once it ends (it is our child while we live).
            std::thread::spawn(move || child.wait());
            return Ok(pid);
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(dir.join("edge.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!("the edge exited ({status}): {}", tail.join("\n"));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("the edge did not answer on its control socket within 10s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
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
        {
            let mut all = self.weights.lock().unwrap_or_else(|e| e.into_inner());
            if weights.is_empty() {
                all.remove(service);
            } else {
                all.insert(service.to_string(), weights);
            }
        }
        self.push().await.map(|_| ())
    }

    async fn refresh(&self) -> anyhow::Result<()> {
        self.push().await.map(|_| ())
    }

    async fn traffic(&self, service: &str) -> anyhow::Result<Vec<ReleaseTraffic>> {
        let response = self
            .client
            .call(&ControlRequest::Traffic {
                service: Some(service.to_string()),
            })
            .await?;
        Ok(response.traffic)
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
