//! The daemon's metrics: the store (`.berth/ENV/metrics.db`, [`berth_metrics::Store`]), the
//! collector task that samples the replicas, the edge, the accessories, the host and the
//! replicas' own `/metrics` every interval (10 s by default), and the read-only API over it
//! (`/v1/metrics` on the API socket, the same routes on `observe.sock` for the edge's admin
//! listener). What is sampled and how counters become rates is decided in [`sample`] (pure);
//! [`read`] does the reads. It must never decide anything about replicas, deploys or traffic.

pub mod api;
pub mod read;
pub mod sample;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use berth_metrics::{Config, Observation, Sample, Store};
use berth_model::traffic::ReleaseTraffic;
use berth_model::{StatePaths, TrafficControl};

use crate::stack::Stack;

/// The collector's interval unless `BERTH_METRICS_INTERVAL` says otherwise.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// The most a replica's `/metrics` answer may hold; beyond, the scrape is cut off and logged.
pub const APP_SCRAPE_LIMIT: usize = 1024 * 1024;
/// How long a scrape may take.
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the store drops expired points and keeps its size bound.
const MAINTAIN_EVERY: Duration = Duration::from_secs(60);

/// The metric names the collector writes (the catalogue of `docs/observe.md`); `app:NAME` is
/// any replica's own metric.
pub const CATALOGUE: &[&str] = &[
    "cpu_percent",
    "memory_bytes",
    "open_fds",
    "restarts",
    "replicas",
    "requests",
    "errors_4xx",
    "errors_5xx",
    "latency_ms",
    "active_connections",
    "waf_blocked",
    "rate_limited",
    "accessory_up",
    "accessory_connections",
    "database_bytes",
    "host_cpu_percent",
    "host_memory_percent",
    "host_disk_percent",
    "host_load1",
];

/// The store and the collector's settings.
pub struct Metrics {
    pub store: Arc<Store>,
    pub interval: Duration,
}

/// The metrics database of an environment.
pub fn db_path(paths: &StatePaths) -> std::path::PathBuf {
    paths.env_dir.join("metrics.db")
}

/// The interval from `BERTH_METRICS_INTERVAL` (`"2s"`, at least 1 s), else 10 s.
pub fn interval_from_env() -> Duration {
    std::env::var("BERTH_METRICS_INTERVAL")
        .ok()
        .and_then(|v| humantime::parse_duration(&v).ok())
        .map(|d| d.max(Duration::from_secs(1)))
        .unwrap_or(DEFAULT_INTERVAL)
}

/// The store's byte bound from `BERTH_METRICS_MAX_BYTES`, else 256 MiB.
fn config_from_env() -> Config {
    let mut config = Config::default();
    if let Some(bytes) = std::env::var("BERTH_METRICS_MAX_BYTES")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        config.max_bytes = bytes.max(1024 * 1024);
    }
    config
}

/// Opens the environment's metrics store.
pub fn open(paths: &StatePaths) -> anyhow::Result<Arc<Metrics>> {
    use anyhow::Context;
    let path = db_path(paths);
    let store = Store::open(&path, config_from_env())
        .with_context(|| format!("opening the metrics store {}", path.display()))?;
    Ok(Arc::new(Metrics {
        store: Arc::new(store),
        interval: interval_from_env(),
    }))
}

/// Opens the store, starts the collector and serves `observe.sock`: (collector, server).
pub fn start(
    stack: &Arc<Stack>,
) -> anyhow::Result<(tokio::task::JoinHandle<()>, tokio::task::JoinHandle<()>)> {
    let metrics = open(&stack.paths)?;
    let _ = stack.metrics.set(metrics.clone());
    let observe = serve_observe(stack, metrics.clone())?;
    let collector = spawn(stack.clone(), metrics);
    Ok((collector, observe))
}

/// What the collector remembers between two rounds.
#[derive(Default)]
struct Memory {
    rates: sample::Rates,
    traffic: HashMap<(String, String), (f64, ReleaseTraffic)>,
    host_cpu: Option<(u64, u64)>,
    /// The last scrape problem logged per replica (so a broken `/metrics` is logged once, not
    /// every round).
    scrape_problems: HashMap<String, String>,
}

/// Starts the collector: a sample round every interval, maintenance every minute.
pub fn spawn(stack: Arc<Stack>, metrics: Arc<Metrics>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let clock = Instant::now();
        let mut memory = Memory::default();
        let mut every = tokio::time::interval(metrics.interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_maintain = Instant::now();
        loop {
            every.tick().await;
            let samples = collect(&stack, &mut memory, clock.elapsed().as_secs_f64()).await;
            let store = metrics.store.clone();
            let maintain = last_maintain.elapsed() >= MAINTAIN_EVERY;
            if maintain {
                last_maintain = Instant::now();
            }
            let outcome = tokio::task::spawn_blocking(move || {
                let written = store.write(SystemTime::now(), &samples);
                let maintained = maintain.then(|| store.maintain(SystemTime::now()));
                (written, maintained)
            })
            .await;
            match outcome {
                Ok((Err(e), _)) => tracing::warn!("metrics: writing samples: {e}"),
                Ok((_, Some(Err(e)))) => tracing::warn!("metrics: maintenance: {e}"),
                Err(e) => tracing::warn!("metrics: {e}"),
                _ => {}
            }
        }
    })
}

/// One round: everything there is to sample now (`at`: seconds of the collector's clock).
async fn collect(stack: &Stack, memory: &mut Memory, at: f64) -> Vec<Sample> {
    let mut samples = Vec::new();
    let replicas = stack.supervisor.board().snapshot();

    // Replicas: /proc (or their cgroup), read off the async threads.
    let pids: Vec<(usize, Option<u32>)> = replicas.iter().map(|r| r.pid).enumerate().collect();
    let usages = tokio::task::spawn_blocking(move || {
        let procs = read::read_procs();
        let units = read::units();
        pids.into_iter()
            .map(|(i, pid)| {
                let usage =
                    pid.and_then(|pid| read::replica_usage(pid, &procs, units).map(|u| (pid, u)));
                (i, usage)
            })
            .collect::<BTreeMap<usize, Option<(u32, sample::Usage)>>>()
    })
    .await
    .unwrap_or_default();
    let seen: Vec<sample::ReplicaSeen> = replicas
        .iter()
        .enumerate()
        .map(|(i, r)| sample::ReplicaSeen {
            service: r.service.clone(),
            replica: r.replica.clone(),
            release: r.release.clone(),
            restarts: r.restarts,
            usage: usages.get(&i).copied().flatten(),
        })
        .collect();
    samples.extend(sample::replica_samples(&mut memory.rates, at, &seen));

    // The edge: its per-release counters as the edge link last read them (every 2 s), and
    // its Prometheus text for what those do not hold.
    if let Some(edge) = stack.edge.get() {
        let mut traffic = Vec::new();
        let mut age = None;
        for service in stack.spec.services.keys() {
            if let Some((reading_age, releases)) =
                edge.traffic_before(service, Duration::ZERO).await
            {
                age = Some(reading_age);
                traffic.extend(releases);
            }
        }
        if let Some(age) = age {
            let reading_at = at - age.as_secs_f64();
            samples.extend(sample::traffic_samples(
                &mut memory.traffic,
                reading_at,
                &traffic,
            ));
        }
        let mut admin = stack.spec.edge.admin;
        if admin.ip().is_unspecified() {
            admin.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        // Off loopback the admin listener wants its token (the edge made it in its folder).
        let token =
            std::fs::read_to_string(crate::edge::edge_dir(&stack.paths).join("admin.token"))
                .ok()
                .map(|t| format!("Bearer {}", t.trim()));
        let authorization = token.as_deref().map(|t| ("authorization", t));
        match read::get_text(
            admin,
            "/metrics?edge_only=1",
            8 * APP_SCRAPE_LIMIT,
            SCRAPE_TIMEOUT,
            authorization,
        )
        .await
        {
            Ok(text) => {
                let parsed = berth_metrics::prom::parse(&text);
                samples.extend(sample::edge_prometheus_samples(
                    &mut memory.rates,
                    at,
                    &parsed.samples,
                ));
            }
            Err(e) => tracing::debug!("metrics: the edge's /metrics: {e}"),
        }
    }

    // Accessories: up or down as their keepers see them, and what their servers say (asked
    // all at once, each bounded by the engine's client timeout).
    let down = stack.accessory_watch.down();
    let mut asks = tokio::task::JoinSet::new();
    for (name, accessory) in &stack.accessories {
        let up = !down.contains(name);
        samples.push(sample::accessory_up(name, up));
        if up {
            let (name, accessory) = (name.clone(), accessory.clone());
            asks.spawn(async move {
                let stats = tokio::time::timeout(SCRAPE_TIMEOUT * 3, accessory.stats()).await;
                (name, stats)
            });
        }
    }
    while let Some(done) = asks.join_next().await {
        match done {
            Ok((name, Ok(Ok(stats)))) => samples.extend(sample::accessory_samples(&name, &stats)),
            Ok((name, Ok(Err(e)))) => tracing::debug!("metrics: accessory {name}: {e:#}"),
            Ok((name, Err(_))) => tracing::debug!("metrics: accessory {name}: no answer in time"),
            Err(_) => {}
        }
    }

    // The host.
    let root = stack.paths.root.clone();
    if let Ok(host) = tokio::task::spawn_blocking(move || read::host(&root)).await {
        samples.extend(sample::host_samples(&mut memory.host_cpu, &host));
    }

    // The replicas' own metrics, all at once (each bounded in size and time).
    let mut scrapes = tokio::task::JoinSet::new();
    for r in &replicas {
        let Some(spec) = stack
            .spec
            .services
            .get(&r.service)
            .and_then(|s| s.metrics.clone())
        else {
            continue;
        };
        let (Some(port), Some(_)) = (r.port, r.pid) else {
            continue;
        };
        let (service, replica) = (r.service.clone(), r.replica.clone());
        scrapes.spawn(async move {
            let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            let result =
                read::get_text(address, &spec.path, APP_SCRAPE_LIMIT, SCRAPE_TIMEOUT, None).await;
            (service, replica, spec.path, result)
        });
    }
    while let Some(done) = scrapes.join_next().await {
        let Ok((service, replica, path, result)) = done else {
            continue;
        };
        let problem = match result {
            Ok(text) => {
                let parsed = berth_metrics::prom::parse(&text);
                let problem = (parsed.bad_lines > 0).then(|| {
                    format!(
                        "{} line(s) are not Prometheus text (first: {:?}); skipped",
                        parsed.bad_lines,
                        parsed.first_bad.unwrap_or_default()
                    )
                });
                samples.extend(sample::app_samples(&service, &replica, parsed.samples));
                problem
            }
            Err(e) => Some(e.to_string()),
        };
        match problem {
            Some(problem) => {
                if memory.scrape_problems.get(&replica) != Some(&problem) {
                    tracing::warn!("metrics: {replica} {path}: {problem}");
                    memory.scrape_problems.insert(replica, problem);
                }
            }
            None => {
                memory.scrape_problems.remove(&replica);
            }
        }
    }
    memory.rates.forget_older_than(at - 600.0);
    samples.retain(|s| match &s.value {
        Observation::Value(v) => v.is_finite(),
        Observation::Histogram(h) => !h.is_empty(),
    });
    samples
}

/// The read-only socket the edge's admin listener forwards `/api/metrics` and the additions to
/// `/metrics` to: in the edge's folder, beside its control socket.
pub fn observe_socket(paths: &StatePaths) -> std::path::PathBuf {
    crate::edge::edge_dir(paths).join("observe.sock")
}

/// Serves [`api::routes`] and the dashboard's read-only routes ([`crate::dashboard::routes`])
/// on [`observe_socket`], 0600: nothing that changes state.
pub fn serve_observe(
    stack: &Arc<Stack>,
    metrics: Arc<Metrics>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    use anyhow::Context;
    use std::os::unix::fs::PermissionsExt;
    let socket = observe_socket(&stack.paths);
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let _ = std::fs::remove_file(&socket);
    let listener = tokio::net::UnixListener::bind(&socket)
        .with_context(|| format!("binding {}", socket.display()))?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))?;
    let app: axum::Router = api::routes(metrics).merge(crate::dashboard::routes(stack.clone()));
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("metrics socket: {e}");
        }
    }))
}
