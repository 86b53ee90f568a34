//! The control socket: how the control plane feeds the edge its routing table and asks what is
//! in flight. One JSON object per line each way, on a unix socket in the edge's folder.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use berth_model::RoutingTable;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

use crate::proxy::Edge;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ControlRequest {
    /// Use this table from the next request on.
    Table { table: Box<RoutingTable> },
    /// Requests in flight per replica.
    InFlight,
    /// Pid and table version.
    Status,
    /// Requests, errors and latency per release (of one service, or all).
    Traffic {
        #[serde(default)]
        service: Option<String>,
    },
    /// Drop cached answers: of one service (all when None) under a path prefix (all when
    /// None).
    Purge {
        #[serde(default)]
        service: Option<String>,
        #[serde(default)]
        prefix: Option<String>,
    },
    /// Stop accepting, finish what is in flight, exit.
    Stop,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ControlResponse {
    pub ok: bool,
    pub pid: u32,
    pub version: u64,
    #[serde(default)]
    pub in_flight: HashMap<String, usize>,
    #[serde(default)]
    pub error: Option<String>,
    /// The addresses the edge actually listens on (a `:0` port in the spec is resolved here).
    #[serde(default)]
    pub listen: Vec<std::net::SocketAddr>,
    /// The TLS listeners among them.
    #[serde(default)]
    pub tls_listen: Vec<std::net::SocketAddr>,
    #[serde(default)]
    pub admin: Option<std::net::SocketAddr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub traffic: Vec<berth_model::traffic::ReleaseTraffic>,
    /// Cached answers a purge removed.
    #[serde(default)]
    pub purged: u64,
}

/// Serves the control socket until `shutdown` turns true.
pub async fn serve(
    edge: Arc<Edge>,
    listener: UnixListener,
    table_file: PathBuf,
    stop: watch::Sender<bool>,
    bound: Arc<Bound>,
) {
    let mut shutdown = stop.subscribe();
    let stop = Arc::new(stop);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => break,
        };
        let Ok((stream, _)) = accepted else { continue };
        let edge = edge.clone();
        let table_file = table_file.clone();
        let stop = stop.clone();
        let bound = bound.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let response = match serde_json::from_str::<ControlRequest>(&line) {
                    Ok(request) => answer(&edge, request, &table_file, &stop, &bound),
                    Err(e) => ControlResponse {
                        ok: false,
                        error: Some(format!("bad request: {e}")),
                        ..Default::default()
                    },
                };
                let mut out = serde_json::to_vec(&response).unwrap_or_default();
                out.push(b'\n');
                if write.write_all(&out).await.is_err() {
                    break;
                }
            }
        });
    }
}

/// The addresses the edge listens on.
#[derive(Debug, Clone)]
pub struct Bound {
    pub listen: Vec<std::net::SocketAddr>,
    pub tls_listen: Vec<std::net::SocketAddr>,
    pub admin: std::net::SocketAddr,
}

fn answer(
    edge: &Edge,
    request: ControlRequest,
    table_file: &Path,
    stop: &watch::Sender<bool>,
    bound: &Bound,
) -> ControlResponse {
    let mut response = ControlResponse {
        ok: true,
        pid: std::process::id(),
        listen: bound.listen.clone(),
        tls_listen: bound.tls_listen.clone(),
        admin: Some(bound.admin),
        ..Default::default()
    };
    match request {
        ControlRequest::Table { table } => {
            // Kept on disk so a restarted edge serves at once, before the control plane calls.
            if let Ok(bytes) = serde_json::to_vec(&table) {
                let tmp = table_file.with_extension("tmp");
                // 0600: the table holds the test route's key.
                let written = {
                    use std::io::Write;
                    use std::os::unix::fs::OpenOptionsExt;
                    std::fs::OpenOptions::new()
                        .create(true)
                        .write(true)
                        .truncate(true)
                        .mode(0o600)
                        .open(&tmp)
                        .and_then(|mut f| f.write_all(&bytes))
                };
                if written.is_ok() {
                    let _ = std::fs::rename(&tmp, table_file);
                }
            }
            response.version = edge.install(*table);
        }
        ControlRequest::InFlight => {
            response.in_flight = edge.registry.in_flight();
        }
        ControlRequest::Status => {}
        ControlRequest::Traffic { service } => {
            response.traffic = edge.metrics.traffic(service.as_deref());
        }
        ControlRequest::Purge { service, prefix } => {
            response.purged = edge.purge_cache(service.as_deref(), prefix.as_deref());
        }
        ControlRequest::Stop => {
            let _ = stop.send(true);
        }
    }
    if response.version == 0 {
        response.version = edge.table().version;
    }
    response
}

/// The control plane's side of the socket.
pub struct EdgeClient {
    socket: PathBuf,
    connection: tokio::sync::Mutex<Option<BufReader<UnixStream>>>,
}

impl EdgeClient {
    pub fn new(socket: PathBuf) -> Self {
        Self {
            socket,
            connection: tokio::sync::Mutex::new(None),
        }
    }

    /// Drops the connection: the next call connects anew (to a successor edge, say).
    pub async fn reconnect(&self) {
        *self.connection.lock().await = None;
    }

    /// Sends one request and waits (at most 5 s) for its answer; reconnects when needed.
    pub async fn call(&self, request: &ControlRequest) -> anyhow::Result<ControlResponse> {
        let mut line = serde_json::to_vec(request)?;
        line.push(b'\n');
        let mut guard = self.connection.lock().await;
        for attempt in 0..2 {
            if guard.is_none() {
                let stream = UnixStream::connect(&self.socket).await.with_context(|| {
                    format!("connecting to the edge at {}", self.socket.display())
                })?;
                *guard = Some(BufReader::new(stream));
            }
            let Some(conn) = guard.as_mut() else { continue };
            let exchange = async {
                conn.get_mut().write_all(&line).await?;
                let mut answer = String::new();
                let n = conn.read_line(&mut answer).await?;
                if n == 0 {
                    bail!("the edge closed the control connection");
                }
                Ok(serde_json::from_str::<ControlResponse>(&answer)?)
            };
            match tokio::time::timeout(Duration::from_secs(5), exchange).await {
                Ok(Ok(response)) => {
                    if !response.ok {
                        bail!("the edge refused: {}", response.error.unwrap_or_default());
                    }
                    return Ok(response);
                }
                Ok(Err(e)) if attempt == 0 => {
                    tracing::debug!("edge control connection lost ({e}); reconnecting");
                    *guard = None;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    *guard = None;
                    bail!("the edge did not answer within 5s");
                }
            }
        }
        bail!("could not reach the edge")
    }
}
