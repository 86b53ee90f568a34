//! The edge: Berth's data plane, a reverse proxy and load balancer in front of every service
//! (the ALB of the reference setups). It runs as its own process (`berth edge`), is fed routing
//! tables by the control plane over a local socket, keeps serving the last table it got when the
//! control plane is gone, and starts from its last table on disk after its own restart.
//!
//! Files in its folder (`.berth/ENV/edge/`): `control.sock`, `table.json`, `edge.pid`,
//! `access.log` (JSON lines, rotated).

pub mod access_line;
mod access_log;
pub mod cache;
pub mod compress;
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
    /// Worker threads (None: one per core the process may run on, at most 64).
    pub workers: Option<usize>,
    /// Pin worker i to the i-th core the process may run on.
    pub pin_workers: bool,
}

impl EdgeOptions {
    pub fn control_socket(&self) -> PathBuf {
        self.dir.join("control.sock")
    }
}

/// Turns transparent huge pages off for this process (`prctl(PR_SET_THP_DISABLE)`), to be
/// called first thing in the edge process. The edge's heap is many small objects (a connection
/// each) spread over the allocator's pages; with huge pages every 2 MiB region touched is
/// resident, which made the edge's memory several times what its objects need (18 MiB of a
/// 32 MiB RSS at start in `bench/edge.sh`). The allocator is built not to ask for them
/// (`mimalloc`'s `no_thp`); this covers systems where THP is `always` on. A failure is not an
/// error: the edge only uses more memory.
pub fn no_huge_pages() {
    if let Err(e) = nix::sys::prctl::set_thp_disable(true) {
        eprintln!("berth edge: transparent huge pages stay on ({e})");
    }
}

/// One edge worker: a single-threaded runtime on its own thread that accepts on its own copies
/// of the listening sockets and serves each connection it accepted start to end, with its own
/// pool of replica connections. (One runtime per core, like nginx's worker processes: a
/// connection never crosses threads, and a busy worker accepts less while idle ones take the
/// rest.)
fn run_worker(
    worker: usize,
    listeners: Vec<(std::net::TcpListener, bool)>,
    pin: Option<usize>,
    edge: Arc<Edge>,
    connections: Arc<server::Connections>,
    stop: watch::Receiver<bool>,
) {
    upstream::set_worker(worker);
    if let Some(core) = pin {
        let mut set = nix::sched::CpuSet::new();
        let pinned = set
            .set(core)
            .and_then(|()| nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set));
        match pinned {
            Ok(()) => tracing::info!("edge worker {worker} pinned to core {core}"),
            Err(e) => tracing::warn!("edge worker {worker}: pinning to core {core}: {e}"),
        }
    }
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
        let mut accepting = Vec::new();
        for (listener, tls) in listeners {
            match TcpListener::from_std(listener) {
                Ok(listener) => accepting.push(tokio::spawn(server::serve_public(
                    edge.clone(),
                    listener,
                    tls,
                    connections.clone(),
                    stop.clone(),
                ))),
                Err(e) => tracing::error!("edge worker {worker}: a listener: {e}"),
            }
        }
        for task in accepting {
            let _ = task.await;
        }
        // Stopping: this worker's open connections finish here; the main thread bounds the
        // wait and ends the process.
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        while connections.open() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
}

/// The cores this process may run on (its affinity mask), in order.
fn allowed_cores() -> Vec<usize> {
    match nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)) {
        Ok(set) => (0..nix::sched::CpuSet::count())
            .filter(|&core| set.is_set(core).unwrap_or(false))
            .collect(),
        Err(_) => Vec::new(),
    }
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
    // Every worker accepts on its own copy of each listening socket (the kernel wakes the
    // workers waiting in accept); the originals stay here for the hand-over.
    let public: Vec<(std::net::TcpListener, bool)> = public
        .into_iter()
        .map(|(listener, tls)| Ok((listener.into_std()?, tls)))
        .collect::<std::io::Result<_>>()?;
    let cores = allowed_cores();
    let worker_count = options
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, 64);
    let mut workers = Vec::new();
    for worker in 0..worker_count {
        let listeners = public
            .iter()
            .map(|(listener, tls)| Ok((listener.try_clone()?, *tls)))
            .collect::<std::io::Result<Vec<_>>>()?;
        let pin = (options.pin_workers && !cores.is_empty()).then(|| cores[worker % cores.len()]);
        let edge = edge.clone();
        let connections = connections.clone();
        let stop_rx = stop_rx.clone();
        workers.push(
            std::thread::Builder::new()
                .name(format!("edge-worker-{worker}"))
                .spawn(move || run_worker(worker, listeners, pin, edge, connections, stop_rx))?,
        );
    }
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
    // The workers close their copies as their accept loops end; closing the originals too
    // leaves the sockets to whoever else holds them (the daemon, a successor), or closes them.
    drop(public);
    let _ = admin_task.await;
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    while connections.open() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    control_task.abort();
    flusher.abort();
    edge.flush_access_log_and_wait(Duration::from_secs(5));
    // A successor may own these files now.
    let pid_file = options.dir.join("edge.pid");
    if std::fs::read_to_string(&pid_file).ok().as_deref() == Some(&std::process::id().to_string()) {
        let _ = std::fs::remove_file(&control_path);
        let _ = std::fs::remove_file(&pid_file);
        let _ = std::fs::remove_file(&handover_socket);
    }
    Ok(())
}
