//! The edge under test as a real process (`berth edge`), its control socket, an HTTP client
//! pointed at it, and helpers to build routing tables.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use berth_edge::{ControlRequest, ControlResponse};
use berth_model::routing::{EdgeSettings, RouteEntry, ServicePool, Sticky, Target, TargetGroup};
use berth_model::RoutingTable;
use berth_spec::Balance;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderValue;
use hyper::{HeaderMap, Method, Request, StatusCode, Version};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UnixStream};

use crate::backend::Backend;

/// How long any single client request may take before the test fails.
pub const REQUEST_LIMIT: Duration = Duration::from_secs(20);

/// One `berth edge` process in its own folder. Killed (and reaped) on drop, whatever happens.
pub struct EdgeProcess {
    child: Child,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    pub listen: SocketAddr,
    /// The first TLS listener, when started with `--tls-listen`.
    pub tls_listen: Option<SocketAddr>,
    pub admin: SocketAddr,
    pub pid: u32,
    log: PathBuf,
    pub http: HttpClient,
}

impl EdgeProcess {
    /// Starts an edge in a fresh temporary folder.
    pub async fn start() -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().to_path_buf();
        let mut edge = Self::start_in(&dir).await;
        edge._tmp = Some(tmp);
        edge
    }

    /// Starts an edge in `dir` (kept by the caller), listening on loopback ports chosen by the
    /// system, and waits until its control socket answers.
    pub async fn start_in(dir: &Path) -> Self {
        Self::start_with_args(dir, &[]).await
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("control.sock")
    }

    /// What the edge wrote: its stderr, then its own log (`edge.log` in its folder, shared by
    /// the edges of one folder).
    pub fn log_text(&self) -> String {
        let stderr = std::fs::read_to_string(&self.log).unwrap_or_default();
        let own = std::fs::read_to_string(self.dir.join("edge.log")).unwrap_or_default();
        format!("{stderr}{own}")
    }

    pub async fn call(&self, request: &ControlRequest) -> ControlResponse {
        let answer = control(&self.socket(), request)
            .await
            .unwrap_or_else(|e| panic!("control call {request:?}: {e}"));
        assert!(answer.ok, "the edge refused {request:?}: {answer:?}");
        answer
    }

    /// Pushes a table; the edge must answer with that version.
    pub async fn push(&self, table: &RoutingTable) -> ControlResponse {
        let answer = self
            .call(&ControlRequest::Table {
                table: Box::new(table.clone()),
            })
            .await;
        assert_eq!(answer.version, table.version, "version after the push");
        answer
    }

    pub async fn in_flight(&self) -> HashMap<String, usize> {
        self.call(&ControlRequest::InFlight).await.in_flight
    }

    /// Polls the `in_flight` op until `replica` has `count` requests in flight (absent counts as
    /// 0); panics after `within`.
    pub async fn wait_in_flight(&self, replica: &str, count: usize, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let now = self.in_flight().await;
            if now.get(replica).copied().unwrap_or(0) == count {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{replica} never had {count} in flight within {within:?}: {now:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (bounded) for the process to exit on its own.
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the edge did not exit within {within:?}:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.listen, path)
    }

    /// `GET path` with this `Host`.
    pub async fn get(&self, host: &str, path: &str) -> Reply {
        self.send(Method::GET, host, path, &[], Bytes::new()).await
    }

    pub async fn send(
        &self,
        method: Method,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Reply {
        let request = build_request(&self.url(path), method, host, headers, body);
        self.http.send(request).await
    }

    /// GET on the admin listener.
    pub async fn admin_get(&self, path: &str) -> Reply {
        self.admin_get_as(&self.admin.to_string(), path).await
    }

    /// GET on the admin listener with `host` in the `Host` header.
    pub async fn admin_get_as(&self, host: &str, path: &str) -> Reply {
        let url = format!("http://{}{}", self.admin, path);
        self.http
            .send(build_request(&url, Method::GET, host, &[], Bytes::new()))
            .await
    }
}

impl Drop for EdgeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.log_text();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            eprintln!(
                "--- edge {} log ({}) ---\n{}",
                self.pid,
                self.log.display(),
                tail.join("\n")
            );
        }
    }
}

/// One request/answer on the control socket, as raw JSON lines.
pub async fn control_line(socket: &Path, line: &str) -> Result<String, String> {
    let exchange = async {
        let stream = UnixStream::connect(socket)
            .await
            .map_err(|e| e.to_string())?;
        let (read, mut write) = stream.into_split();
        let mut out = line.as_bytes().to_vec();
        out.push(b'\n');
        write.write_all(&out).await.map_err(|e| e.to_string())?;
        let mut answer = String::new();
        let n = BufReader::new(read)
            .read_line(&mut answer)
            .await
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the edge closed the control connection".to_string());
        }
        Ok(answer)
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .map_err(|_| "no answer within 5s".to_string())?
}

pub async fn control(socket: &Path, request: &ControlRequest) -> Result<ControlResponse, String> {
    let line = serde_json::to_string(request).map_err(|e| e.to_string())?;
    let answer = control_line(socket, &line).await?;
    serde_json::from_str(&answer).map_err(|e| format!("bad answer {answer:?}: {e}"))
}

/// An answer read to its end.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_string)
            .collect()
    }

    /// The backend that answered (it names itself in `x-backend`).
    pub fn backend(&self) -> String {
        self.header("x-backend").unwrap_or("-").to_string()
    }
}

/// A pooled HTTP/1.1 client.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Default for HttpClient {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpClient {
    pub fn new() -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    pub async fn try_send(&self, request: Request<Full<Bytes>>) -> Result<Reply, String> {
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| format!("{e:?}"))?;
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| format!("reading the body: {e:?}"))?
                .to_bytes();
            Ok(Reply {
                status: parts.status,
                version: parts.version,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(REQUEST_LIMIT, exchange)
            .await
            .map_err(|_| format!("no answer within {REQUEST_LIMIT:?}"))?
    }

    pub async fn send(&self, request: Request<Full<Bytes>>) -> Reply {
        let what = format!("{} {}", request.method(), request.uri());
        self.try_send(request)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"))
    }
}

pub fn build_request(
    url: &str,
    method: Method,
    host: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Request<Full<Bytes>> {
    let mut request = Request::builder()
        .method(method)
        .uri(url)
        .body(Full::new(body))
        .expect("request");
    request
        .headers_mut()
        .insert(hyper::header::HOST, HeaderValue::from_str(host).unwrap());
    for (name, value) in headers {
        request.headers_mut().append(
            hyper::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    request
}

/// Sends `total` GETs over `concurrency` tasks; every answer must be 200. Returns how many each
/// backend answered.
pub async fn spread(
    edge: &EdgeProcess,
    host: &str,
    path: &str,
    total: usize,
    concurrency: usize,
) -> HashMap<String, usize> {
    let next = std::sync::Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let http = edge.http.clone();
        let url = edge.url(path);
        let host = host.to_string();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut counts: HashMap<String, usize> = HashMap::new();
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let reply = http
                    .send(build_request(&url, Method::GET, &host, &[], Bytes::new()))
                    .await;
                assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
                *counts.entry(reply.backend()).or_default() += 1;
            }
            counts
        }));
    }
    let mut counts = HashMap::new();
    for task in tasks {
        for (backend, n) in task.await.expect("client task") {
            *counts.entry(backend).or_default() += n;
        }
    }
    counts
}

/// A raw TCP exchange: sends `bytes`, reads until the edge closes or `within` passes.
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8], within: Duration) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(within, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of a raw HTTP/1.1 answer (`HTTP/1.1 400 Bad Request` → 400).
pub fn raw_status(answer: &str) -> u16 {
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {answer:?}"))
}

// ---- routing tables ----

pub fn target(backend: &Backend, release: &str) -> Target {
    Target {
        replica: backend.name.clone(),
        release: release.to_string(),
        addr: backend.addr,
        draining: false,
    }
}

pub fn draining(backend: &Backend, release: &str) -> Target {
    Target {
        draining: true,
        ..target(backend, release)
    }
}

pub fn group(release: &str, weight: u32, targets: Vec<Target>) -> TargetGroup {
    TargetGroup {
        release: release.to_string(),
        weight,
        targets,
    }
}

/// A pool without weights: one group `*` of weight 100.
pub fn pool(balance: Balance, targets: Vec<Target>) -> ServicePool {
    ServicePool {
        balance,
        sticky: None,
        groups: vec![group("*", 100, targets)],
    }
}

pub fn sticky_pool(targets: Vec<Target>, cookie: &str, duration_secs: u64) -> ServicePool {
    ServicePool {
        sticky: Some(Sticky {
            cookie: cookie.to_string(),
            duration_secs,
        }),
        ..pool(Balance::LeastOutstanding, targets)
    }
}

pub fn route(host: Option<&str>, path: &str, service: &str) -> RouteEntry {
    RouteEntry {
        host: host.map(str::to_string),
        path: path.to_string(),
        service: service.to_string(),
        headers: Default::default(),
        compress: None,
    }
}

pub fn table(
    version: u64,
    routes: Vec<RouteEntry>,
    services: Vec<(&str, ServicePool)>,
    settings: EdgeSettings,
) -> RoutingTable {
    RoutingTable {
        version,
        routes,
        services: services
            .into_iter()
            .map(|(name, pool)| (name.to_string(), pool))
            .collect(),
        settings,
        test_key: Some(TEST_KEY.to_string()),
        tls: Default::default(),
        maintenance: None,
    }
}

/// The private test route's key in the tables of these tests.
pub const TEST_KEY: &str = "0123456789abcdef0123456789abcdef";

/// An edge with one backend `name` (release `r1`) as service `web` behind every host and path.
pub async fn one_backend_edge(name: &str) -> (EdgeProcess, Backend) {
    let edge = EdgeProcess::start().await;
    let backend = Backend::start(name).await;
    edge.push(&one_service(
        3,
        "web",
        pool(Balance::LeastOutstanding, vec![target(&backend, "r1")]),
    ))
    .await;
    (edge, backend)
}

/// One service `service` behind every host and path, default settings.
pub fn one_service(version: u64, service: &str, pool: ServicePool) -> RoutingTable {
    table(
        version,
        vec![route(None, "/", service)],
        vec![(service, pool)],
        EdgeSettings::default(),
    )
}

// ---- an edge taking over from another, and a raw HTTP/1.1 client ----

impl EdgeProcess {
    /// Starts an edge in `dir` that takes the listening sockets over from the edge running
    /// there (`berth edge --takeover`, the graceful upgrade), and waits until its own control
    /// socket answers. It listens where the old one did.
    pub async fn start_takeover(dir: &Path) -> Self {
        Self::start_with_args(dir, &["--takeover"]).await
    }

    /// [`EdgeProcess::start_in`] with more arguments for `berth edge`.
    pub async fn start_with_args(dir: &Path, extra: &[&str]) -> Self {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, Ordering::Relaxed);
        std::fs::create_dir_all(dir).expect("edge dir");
        let log = dir.join(format!("test-edge-{n}.log"));
        let file = std::fs::File::create(&log).expect("edge log");
        let child = Command::new(env!("CARGO_BIN_EXE_berth"))
            .arg("edge")
            .arg("--dir")
            .arg(dir)
            .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            .args(extra)
            .env("BERTH_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log handle"))
            .stderr(file)
            .spawn()
            .expect("starting berth edge");
        let pid = child.id();
        let placeholder: SocketAddr = "127.0.0.1:9".parse().unwrap();
        // From here on, Drop kills the process even if waiting fails.
        let mut edge = EdgeProcess {
            child,
            dir: dir.to_path_buf(),
            _tmp: None,
            listen: placeholder,
            tls_listen: None,
            admin: placeholder,
            pid,
            log,
            http: HttpClient::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = edge.child.try_wait() {
                panic!("the edge exited early ({status}):\n{}", edge.log_text());
            }
            if let Ok(answer) = control(&edge.socket(), &ControlRequest::Status).await {
                if answer.ok && answer.pid == pid {
                    edge.listen = *answer.listen.first().expect("a public listener");
                    edge.tls_listen = answer.tls_listen.first().copied();
                    edge.admin = answer.admin.expect("an admin listener");
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the edge did not answer on {} within 15s:\n{}",
                edge.socket().display(),
                edge.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        edge
    }

    /// Whether the process has exited (without waiting).
    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// The value of an unlabelled gauge or counter on the admin `/metrics` page.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let metrics = self.admin_get("/metrics").await.text();
        metrics
            .lines()
            .filter_map(|l| l.split_once(' '))
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v.trim().parse().ok())
    }
}

/// How long a [`RawConn`] waits for the next bytes of an answer.
pub const RAW_READ_LIMIT: Duration = Duration::from_secs(5);

/// Why a [`RawConn`] got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawError {
    /// The connection was closed (end of stream, or reset) before any byte of an answer:
    /// the one case where a client cannot know whether the request was processed, and where
    /// browsers retry an idempotent request.
    ClosedBeforeAnswer(String),
    /// Anything else: a cut or malformed answer, or none within [`RAW_READ_LIMIT`].
    Broken(String),
}

/// An answer read by a [`RawConn`].
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    /// The status line and headers as received.
    pub head: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// How the body was delimited: `none`, `length`, `chunked` or `close`.
    pub framing: &'static str,
    /// The chunk-size lines of a chunked body, as received.
    pub chunk_lines: Vec<String>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Whether the answer carries `Connection: close`.
    pub fn says_close(&self) -> bool {
        self.headers.iter().any(|(n, v)| {
            n.eq_ignore_ascii_case("connection")
                && v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close"))
        })
    }
}

/// One client connection written and read byte by byte: requests as given, answers parsed
/// by their own framing (`Content-Length`, chunked, or until close). Every read is bounded.
pub struct RawConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RawConn {
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = tokio::time::timeout(RAW_READ_LIMIT, TcpStream::connect(addr))
            .await
            .expect("connect within the limit")
            .expect("connect");
        RawConn {
            stream,
            buf: Vec::new(),
        }
    }

    /// Writes `bytes`. A failure means the connection is closed (before any answer).
    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), RawError> {
        self.stream
            .write_all(bytes)
            .await
            .map_err(|e| RawError::ClosedBeforeAnswer(format!("writing: {e}")))
    }

    /// Bytes received and not yet taken by an answer.
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }

    /// Reads more; `Ok(0)` at the end of the stream.
    async fn fill(&mut self) -> Result<usize, String> {
        let mut chunk = [0u8; 16 * 1024];
        match tokio::time::timeout(RAW_READ_LIMIT, self.stream.read(&mut chunk)).await {
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(n)
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("nothing within {RAW_READ_LIMIT:?}")),
        }
    }

    async fn line(&mut self) -> Result<String, RawError> {
        loop {
            if let Some(at) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..at]).into_owned();
                self.buf.drain(..at + 2);
                return Ok(line);
            }
            match self.fill().await {
                Ok(0) => return Err(RawError::Broken("closed mid-line".into())),
                Ok(_) => {}
                Err(e) => return Err(RawError::Broken(e)),
            }
        }
    }

    async fn exactly(&mut self, n: usize) -> Result<Vec<u8>, RawError> {
        while self.buf.len() < n {
            match self.fill().await {
                Ok(0) => {
                    return Err(RawError::Broken(format!(
                        "closed after {} of {n} body bytes",
                        self.buf.len()
                    )))
                }
                Ok(_) => {}
                Err(e) => return Err(RawError::Broken(e)),
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// Reads one answer to a request with this method (a `HEAD` answer has no body). An
    /// interim answer (`100 Continue`) is returned as it is, like any other.
    pub async fn read_response(&mut self, method: &str) -> Result<RawResponse, RawError> {
        let end = loop {
            if let Some(at) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let empty = self.buf.is_empty();
            match self.fill().await {
                Ok(0) if empty => return Err(RawError::ClosedBeforeAnswer("end of stream".into())),
                Ok(0) => return Err(RawError::Broken("closed mid-head".into())),
                Ok(_) => {}
                Err(e) if empty && !e.starts_with("nothing within") => {
                    return Err(RawError::ClosedBeforeAnswer(e))
                }
                Err(e) => return Err(RawError::Broken(e)),
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        self.buf.drain(..end);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        if !status_line.starts_with("HTTP/1.") {
            return Err(RawError::Broken(format!("not an answer: {head:?}")));
        }
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| RawError::Broken(format!("no status in {status_line:?}")))?;
        let headers: Vec<(String, String)> = lines
            .filter(|l| !l.is_empty())
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .collect();
        let mut response = RawResponse {
            status,
            head,
            headers,
            body: Vec::new(),
            framing: "none",
            chunk_lines: Vec::new(),
        };
        let chunked = response
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let length = response
            .header("content-length")
            .map(|v| v.parse::<usize>())
            .transpose()
            .map_err(|e| RawError::Broken(format!("bad content-length: {e}")))?;
        if method == "HEAD" || status < 200 || status == 204 || status == 304 {
            return Ok(response);
        }
        if chunked {
            response.framing = "chunked";
            loop {
                let line = self.line().await?;
                response.chunk_lines.push(line.clone());
                let digits = line.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(digits, 16)
                    .map_err(|_| RawError::Broken(format!("bad chunk line {line:?}")))?;
                if size == 0 {
                    // Trailers, up to the empty line.
                    while !self.line().await?.is_empty() {}
                    break;
                }
                let data = self.exactly(size).await?;
                response.body.extend_from_slice(&data);
                if self.exactly(2).await? != b"\r\n" {
                    return Err(RawError::Broken("chunk not followed by CRLF".into()));
                }
            }
        } else if let Some(n) = length {
            response.framing = "length";
            response.body = self.exactly(n).await?;
        } else {
            response.framing = "close";
            loop {
                match self.fill().await {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => return Err(RawError::Broken(e)),
                }
            }
            response.body = std::mem::take(&mut self.buf);
        }
        Ok(response)
    }

    /// Sends a request and reads its answer; panics on any failure.
    pub async fn exchange(&mut self, method: &str, request: &[u8]) -> RawResponse {
        self.send(request).await.expect("sending the request");
        self.read_response(method)
            .await
            .unwrap_or_else(|e| panic!("answer to {:?}: {e:?}", String::from_utf8_lossy(request)))
    }

    /// Whether the peer closes the connection within `within` without sending anything more
    /// (bytes arriving instead make it panic: they would be an answer nobody asked for).
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        assert!(
            self.buf.is_empty(),
            "unexpected bytes after the answer: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        let mut chunk = [0u8; 1024];
        match tokio::time::timeout(within, self.stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => true,
            Ok(Ok(n)) => panic!(
                "unexpected bytes after the answer: {:?}",
                String::from_utf8_lossy(&chunk[..n])
            ),
            Err(_) => false,
        }
    }
}
