//! The edge: Berth's data plane, a reverse proxy and load balancer in front of every service
//! (the ALB of the reference setups). It runs as its own process (`berth edge`), is fed routing
//! tables by the control plane over a local socket, keeps serving the last table it got when the
//! control plane is gone, and starts from its last table on disk after its own restart.
//!
//! Files in its folder (`.berth/ENV/edge/`): `control.sock`, `table.json`, `edge.pid`,
//! `access.log` (JSON lines, rotated).

pub mod access_line;
pub mod control;
pub mod errors;
pub mod guard;
pub mod handover;
pub mod http1;
pub mod metrics;
pub mod observe;
pub mod pool;
pub mod proxy;
pub mod router;
pub mod server;
pub mod tls;
pub mod upstream;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use berth_logfile::LogFile;
use berth_model::RoutingTable;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

pub use control::{ControlRequest, ControlResponse, EdgeClient};
pub use proxy::Edge;

/// How long a stopping edge waits for open connections to finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

pub struct EdgeOptions {
    pub dir: PathBuf,
    pub listen: Vec<SocketAddr>,
    /// TLS listeners (certificates from the routing table).
    pub tls_listen: Vec<SocketAddr>,
    pub admin: SocketAddr,
    /// Take the listening sockets over from the edge running in `dir` (graceful upgrade).
    pub takeover: bool,
}

impl EdgeOptions {
    pub fn control_socket(&self) -> PathBuf {
        self.dir.join("control.sock")
    }
}

/// One edge worker: a single-threaded runtime on its own thread that serves the client
/// connections handed to it start to end, with its own pool of replica connections. (One
/// runtime per core, like nginx's worker processes: a request never wakes another thread.)
fn run_worker(
    worker: usize,
    accepted: tokio::sync::mpsc::UnboundedReceiver<server::Accepted>,
    edge: Arc<Edge>,
    connections: Arc<server::Connections>,
    stop: watch::Receiver<bool>,
) {
    upstream::set_worker(worker);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!("edge worker {worker}: starting its runtime: {e}");
            return;
        }
    };
    runtime.block_on(async move {
        server::serve_accepted(edge, accepted, stop).await;
        // Stopping: this worker's open connections finish here; the main thread bounds the
        // wait and ends the process.
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        while connections.open() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
}

/// Runs the edge until SIGTERM/SIGINT or a `stop` request; then stops accepting and lets open
/// connections finish (up to [`SHUTDOWN_GRACE`]).
pub async fn run(options: EdgeOptions) -> anyhow::Result<()> {
    std::fs::create_dir_all(&options.dir)?;
    let table_file = options.dir.join("table.json");
    let table: RoutingTable = std::fs::read(&table_file)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let access_log = if table.settings.access_log {
        Some(LogFile::open(
            options.dir.join("access.log"),
            50 * 1024 * 1024,
            3,
        )?)
    } else {
        None
    };
    let edge = Edge::new(table, access_log);

    let handover_socket = options.dir.join(handover::SOCKET_FILE);
    let mut taken = None;
    // (listener, whether it is a TLS listener)
    let (public, admin) = if options.takeover {
        let t = handover::take(&handover_socket)?;
        let public = t
            .public
            .iter()
            .map(|l| {
                let addr = l.local_addr()?;
                let tls = t.tls.contains(&addr) || options.tls_listen.contains(&addr);
                Ok((TcpListener::from_std(l.try_clone()?)?, tls))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let admin = TcpListener::from_std(t.admin.try_clone()?)?;
        taken = Some(t);
        (public, admin)
    } else {
        let mut public = Vec::new();
        let addresses = options
            .listen
            .iter()
            .map(|a| (a, false))
            .chain(options.tls_listen.iter().map(|a| (a, true)));
        for (addr, tls) in addresses {
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("listening on {addr}"))?;
            public.push((listener, tls));
        }
        let admin = TcpListener::bind(options.admin)
            .await
            .with_context(|| format!("listening on {} (admin)", options.admin))?;
        (public, admin)
    };
    let control_path = options.control_socket();
    let _ = std::fs::remove_file(&control_path);
    let control = tokio::net::UnixListener::bind(&control_path)
        .with_context(|| format!("binding {}", control_path.display()))?;
    std::fs::write(options.dir.join("edge.pid"), std::process::id().to_string())?;
    let bound = Arc::new(control::Bound {
        listen: public
            .iter()
            .filter_map(|(l, _)| l.local_addr().ok())
            .collect(),
        tls_listen: public
            .iter()
            .filter(|(_, tls)| *tls)
            .filter_map(|(l, _)| l.local_addr().ok())
            .collect(),
        admin: admin.local_addr()?,
    });
    if let Some(first) = bound.tls_listen.first() {
        edge.set_https_port(first.port());
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    {
        use std::os::fd::AsRawFd;
        let fds = public
            .iter()
            .filter_map(|(l, _)| Some((l.as_raw_fd(), l.local_addr().ok()?)))
            .collect();
        let handout = handover::Handout {
            public: fds,
            tls: bound.tls_listen.clone(),
            admin: (admin.as_raw_fd(), admin.local_addr()?),
        };
        handover::offer(&handover_socket, handout, stop_tx.clone())?;
    }
    let connections = Arc::new(server::Connections::default());
    let worker_count = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 16);
    let mut workers = Vec::new();
    for worker in 0..worker_count {
        let (handoff, accepted) = tokio::sync::mpsc::unbounded_channel();
        workers.push(handoff);
        let edge = edge.clone();
        let connections = connections.clone();
        let stop_rx = stop_rx.clone();
        std::thread::Builder::new()
            .name(format!("edge-worker-{worker}"))
            .spawn(move || run_worker(worker, accepted, edge, connections, stop_rx))?;
    }
    let mut tasks = Vec::new();
    for (listener, tls) in public {
        tasks.push(tokio::spawn(server::serve_public(
            edge.clone(),
            listener,
            tls,
            connections.clone(),
            stop_rx.clone(),
            workers.clone(),
        )));
    }
    drop(workers);
    let observe = Arc::new(
        observe::Observe::new(&options.dir, bound.admin)
            .map_err(|e| anyhow::anyhow!("the admin token in {}: {e}", options.dir.display()))?,
    );
    let admin_task = tokio::spawn(server::serve_admin(
        edge.clone(),
        admin,
        observe,
        stop_rx.clone(),
    ));
    tracing::info!(
        "edge {} listening on {:?}, admin {}",
        std::process::id(),
        bound.listen,
        bound.admin
    );
    let control_task = tokio::spawn(control::serve(
        edge.clone(),
        control,
        table_file,
        stop_tx.clone(),
        bound,
    ));
    if let Some(taken) = taken {
        taken.confirm()?;
        tracing::info!("took the listening sockets over from the previous edge");
    }

    let flusher = {
        let edge = edge.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            let mut ticks = 0u64;
            loop {
                tick.tick().await;
                edge.flush_access_log();
                ticks += 1;
                // Certificates renewed or replaced on disk are served within ~2 s.
                if ticks == 10 {
                    ticks = 0;
                    edge.limits.forget_idle();
                    for error in edge.certs.refresh() {
                        tracing::warn!("certificate not reloaded (the old one serves): {error}");
                    }
                }
            }
        })
    };
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut stopped = stop_rx.clone();
    tokio::select! {
        _ = sigterm.recv() => {}
        _ = sigint.recv() => {}
        _ = stopped.changed() => {}
    }
    tracing::info!("edge stopping: no new connections; finishing open ones");
    let _ = stop_tx.send(true);
    for task in tasks {
        let _ = task.await;
    }
    let _ = admin_task.await;
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    while connections.open() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    control_task.abort();
    flusher.abort();
    edge.flush_access_log();
    // A successor may own these files now.
    let pid_file = options.dir.join("edge.pid");
    if std::fs::read_to_string(&pid_file).ok().as_deref() == Some(&std::process::id().to_string()) {
        let _ = std::fs::remove_file(&control_path);
        let _ = std::fs::remove_file(&pid_file);
        let _ = std::fs::remove_file(&handover_socket);
    }
    Ok(())
}
