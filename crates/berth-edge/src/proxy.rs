//! The request path, top to bottom: `request_filter` (limits, request id), `route`,
//! `upstream_peer` (sticky, weights, balance), `forward` (headers, timeout, one retry of an
//! idempotent request that could not connect), `response_filter` (sticky cookie, Via), and
//! `logging` (access log and metrics when the response body ends). Errors become pages with
//! the right status, never panics.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use arc_swap::ArcSwap;
use berth_logfile::LogFile;
use berth_model::routing::{EdgeSettings, RoutingTable};
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::Either;
use http_body_util::{BodyExt, Empty, Full, Limited};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;

use crate::access_line::AccessLine;
use crate::errors::EdgeError;
use crate::http1::head::content_length;
use crate::http1::BodyError;
use crate::metrics::{EdgeMetrics, UpstreamLabels};
use crate::pool::{Lease, Pool, StatsRegistry, EJECTION};
use crate::router::{request_host, Router};
use crate::upstream::{self, UpstreamBody};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Why a request got an error page: the error, the service it was routed to, and the replica
/// it was sent to (so a failure counts against that replica's release).
type Failure = (EdgeError, Option<String>, Option<Lease>);
pub type ProxyBody = BoxBody<Bytes, BoxError>;
/// A replica's answer body: read by the edge's own client, or by hyper's for an upgrade.
type AnswerBody = Either<UpstreamBody, Incoming>;

/// The replica's side of an upgraded connection and the lease it holds, handed with a `101`
/// answer to the client connection, which copies bytes both ways.
#[derive(Clone)]
pub struct Tunnel(Arc<Mutex<Option<(hyper::upgrade::OnUpgrade, Lease)>>>);

impl Tunnel {
    /// Takes the tunnel's parts (once).
    pub fn take(&self) -> Option<(hyper::upgrade::OnUpgrade, Lease)> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// A routing table made ready for requests.
pub struct CompiledTable {
    pub version: u64,
    pub router: Router,
    pub pools: HashMap<String, Pool>,
    pub settings: EdgeSettings,
    pub test_key: Option<String>,
}

impl CompiledTable {
    pub fn compile(table: &RoutingTable, registry: &StatsRegistry, metrics: &EdgeMetrics) -> Self {
        let pools = table
            .services
            .iter()
            .map(|(name, spec)| {
                let pool =
                    Pool::with_metrics(spec, registry, |t| Some(metrics.release(name, &t.release)));
                (name.clone(), pool)
            })
            .collect();
        Self {
            version: table.version,
            router: Router::new(table.routes.clone()),
            pools,
            settings: table.settings.clone(),
            test_key: table.test_key.clone(),
        }
    }
}

/// The proxy's shared state.
pub struct Edge {
    table: ArcSwap<CompiledTable>,
    raw_table: Mutex<RoutingTable>,
    pub registry: StatsRegistry,
    pub metrics: EdgeMetrics,
    access_log: Option<AccessLog>,
    next_request: AtomicU64,
    /// The first 8 hex digits of the request ids this edge makes.
    request_prefix: String,
}

impl Edge {
    pub fn new(table: RoutingTable, access_log: Option<LogFile>) -> Arc<Self> {
        let registry = StatsRegistry::default();
        let metrics = EdgeMetrics::new();
        let compiled = CompiledTable::compile(&table, &registry, &metrics);
        Arc::new(Self {
            table: ArcSwap::from_pointee(compiled),
            raw_table: Mutex::new(table),
            registry,
            metrics,
            access_log: access_log.map(AccessLog::new),
            next_request: AtomicU64::new(rand::random::<u32>() as u64),
            request_prefix: format!("{:08x}", rand::random::<u32>()),
        })
    }

    /// Replaces the routing table; applies to the next request. Older versions are ignored.
    pub fn install(&self, table: RoutingTable) -> u64 {
        let current = self.table.load().version;
        if table.version < current {
            return current;
        }
        let compiled = CompiledTable::compile(&table, &self.registry, &self.metrics);
        let live: Vec<(String, SocketAddr)> = table
            .services
            .values()
            .flat_map(|p| p.groups.iter().flat_map(|g| g.targets.iter()))
            .map(|t| (t.replica.clone(), t.addr))
            .collect();
        self.registry.retain(&live);
        self.metrics.table_version.set(table.version);
        self.table.store(Arc::new(compiled));
        *self.raw_table.lock().unwrap_or_else(|e| e.into_inner()) = table;
        self.table.load().version
    }

    pub fn table(&self) -> RoutingTable {
        self.raw_table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn settings(&self) -> EdgeSettings {
        self.table.load().settings.clone()
    }

    fn request_id(&self, headers: &HeaderMap) -> HeaderValue {
        if let Some(id) = headers.get("x-request-id") {
            if id
                .to_str()
                .is_ok_and(|id| !id.is_empty() && id.len() <= 200)
            {
                return id.clone();
            }
        }
        // 8 random hex digits fixed at start, then a counter: unique per edge process.
        let n = self.next_request.fetch_add(1, Ordering::Relaxed);
        let mut id = String::with_capacity(24);
        id.push_str(&self.request_prefix);
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for shift in (0..16).rev() {
            id.push(HEX[((n >> (shift * 4)) & 0xf) as usize] as char);
        }
        HeaderValue::from_maybe_shared(Bytes::from(id))
            .unwrap_or_else(|_| HeaderValue::from_static("-"))
    }

    /// Handles one client request.
    pub async fn handle<B>(
        self: Arc<Self>,
        req: Request<B>,
        client: SocketAddr,
    ) -> Response<ProxyBody>
    where
        B: Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        let started = Instant::now();
        let log = LogContext {
            started,
            at: SystemTime::now(),
            client: client.ip(),
            host: request_host(&req),
            method: req.method().clone(),
            uri: req.uri().clone(),
            request_id: self.request_id(req.headers()),
        };
        match self
            .clone()
            .proxy(req, client, &log.host, &log.request_id)
            .await
        {
            Ok((mut response, lease, service)) => {
                if response.status() != StatusCode::SWITCHING_PROTOCOLS {
                    strip_hop_by_hop(response.headers_mut());
                }
                self.finish(response, log, lease, service)
            }
            Err((error, service, lease)) => {
                let response = error.page(log.request_id.to_str().unwrap_or("-"));
                self.finish(response, log, lease, service)
            }
        }
    }

    async fn proxy<B>(
        self: Arc<Self>,
        req: Request<B>,
        client: SocketAddr,
        host: &str,
        request_id: &HeaderValue,
    ) -> Result<(Response<AnswerBody>, Option<Lease>, Option<String>), Failure>
    where
        B: Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        let table = self.table.load_full();
        let settings = &table.settings;

        // request_filter
        let header_bytes: usize = req
            .headers()
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 4)
            .sum();
        if header_bytes as u64 > settings.max_header {
            return Err((EdgeError::HeadersTooLarge, None, None));
        }
        if let Some(length) = content_length(req.headers()) {
            if length > settings.max_body {
                return Err((EdgeError::BodyTooLarge(settings.max_body), None, None));
            }
        }
        let path = req.uri().path();
        if (path.is_empty() || !path.starts_with('/')) && req.method() != Method::OPTIONS {
            return Err((
                EdgeError::BadRequest("the request target must be a path"),
                None,
                None,
            ));
        }

        // route
        let Some(service) = table.router.route(host, req.uri().path()) else {
            return Err((EdgeError::NoRoute, None, None));
        };
        let service = service.to_string();
        let Some(pool) = table.pools.get(&service) else {
            return Err((EdgeError::NoHealthyReplica, Some(service), None));
        };

        // upstream_peer
        let test_release = test_route(req.headers(), table.test_key.as_deref());
        let lease = match &test_release {
            Some(release) => pool.pick_release(release),
            None => {
                let sticky = pool
                    .sticky
                    .as_ref()
                    .and_then(|_| cookie(req.headers(), &sticky_cookie_name(&service)));
                let affinity = if pool.is_split() {
                    cookie(req.headers(), &release_cookie_name(&service))
                } else {
                    None
                };
                pool.pick(sticky.as_deref(), affinity.as_deref(), None)
            }
        };
        let Some(lease) = lease else {
            return Err((EdgeError::NoHealthyReplica, Some(service), None));
        };

        if is_upgrade(req.headers()) {
            let response = self
                .upgrade(req, lease, client, request_id, settings)
                .await
                .map_err(|e| (e, Some(service.clone()), None))?;
            return Ok((response.map(Either::Right), None, Some(service)));
        }

        // forward
        let (parts, body) = req.into_parts();
        let replayable = !has_body(&parts.headers) && is_idempotent(&parts.method);
        let limited: ProxyBody = if replayable {
            Empty::new().map_err(|never| match never {}).boxed()
        } else {
            Limited::new(body, settings.max_body as usize).boxed()
        };
        let outgoing = upstream_request(&parts, limited, client, request_id, host);
        let connect_timeout = settings.connect_timeout;
        let first = tokio::time::timeout(
            settings.request_timeout,
            upstream::send(
                &lease.upstream.stats,
                lease.upstream.target.addr,
                connect_timeout,
                settings.request_timeout,
                outgoing,
            ),
        )
        .await;
        let (response, lease) = match first {
            Ok(Ok(response)) => (response, lease),
            Ok(Err(e)) if e.is_connect() && !is_body_too_large(&e) => {
                lease.upstream.stats.eject(EJECTION);
                let chain: Vec<String> = error_chain(&e).map(|s| format!("{s:?}")).collect();
                tracing::warn!(
                    "{}: connect to {} failed, ejected for {}s: {}",
                    lease.upstream.target.replica,
                    lease.upstream.target.addr,
                    EJECTION.as_secs(),
                    chain.join(" <- ")
                );
                if !replayable || test_release.is_some() {
                    return Err((EdgeError::UpstreamConnect, Some(service), Some(lease)));
                }
                // Retried once, on another replica.
                let failed = lease.upstream.target.replica.clone();
                let Some(retry) = pool.pick(None, None, Some(&failed)) else {
                    return Err((EdgeError::UpstreamConnect, Some(service), Some(lease)));
                };
                drop(lease);
                let lease = retry;
                let empty = Empty::new().map_err(|never| match never {}).boxed();
                let outgoing = upstream_request(&parts, empty, client, request_id, host);
                match tokio::time::timeout(
                    settings.request_timeout,
                    upstream::send(
                        &lease.upstream.stats,
                        lease.upstream.target.addr,
                        connect_timeout,
                        settings.request_timeout,
                        outgoing,
                    ),
                )
                .await
                {
                    Ok(Ok(response)) => (response, lease),
                    Ok(Err(e)) => {
                        if e.is_connect() {
                            lease.upstream.stats.eject(EJECTION);
                        }
                        return Err((EdgeError::UpstreamConnect, Some(service), Some(lease)));
                    }
                    Err(_) => {
                        lease.upstream.stats.eject(EJECTION);
                        return Err((EdgeError::UpstreamTimeout, Some(service), Some(lease)));
                    }
                }
            }
            Ok(Err(e)) => {
                if is_body_too_large(&e) {
                    return Err((
                        EdgeError::BodyTooLarge(settings.max_body),
                        Some(service),
                        None,
                    ));
                }
                // The client's own body failed: its error, never counted against the replica.
                if let upstream::UpstreamError::ClientBody(inner) = &e {
                    return Err((client_body_error(inner.as_ref()), Some(service), None));
                }
                let chain: Vec<String> = error_chain(&e).map(|s| format!("{s:?}")).collect();
                tracing::warn!(
                    "{}: upstream error: {}",
                    lease.upstream.target.replica,
                    chain.join(" <- ")
                );
                return Err((EdgeError::UpstreamProtocol, Some(service), Some(lease)));
            }
            Err(_) => {
                lease.upstream.stats.eject(EJECTION);
                return Err((EdgeError::UpstreamTimeout, Some(service), Some(lease)));
            }
        };
        Ok((response.map(Either::Left), Some(lease), Some(service)))
    }

    /// A WebSocket (or other `Upgrade`) request: its own upstream connection. A `101` answer
    /// carries a [`Tunnel`] for the client connection to copy bytes both ways through; the
    /// lease is held as long as the tunnel.
    async fn upgrade<B>(
        &self,
        req: Request<B>,
        lease: Lease,
        client: SocketAddr,
        request_id: &HeaderValue,
        settings: &EdgeSettings,
    ) -> Result<Response<Incoming>, EdgeError> {
        let host = request_host(&req);
        let (parts, _body) = req.into_parts();
        let addr = lease.upstream.target.addr;
        let stream = match tokio::time::timeout(
            settings.connect_timeout,
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            Ok(Ok(s)) => s,
            _ => {
                lease.upstream.stats.eject(EJECTION);
                return Err(EdgeError::UpstreamConnect);
            }
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|_| EdgeError::UpstreamProtocol)?;
        tokio::spawn(conn.with_upgrades());
        let empty = Empty::new().map_err(|never| match never {}).boxed();
        let mut outgoing = upstream_request(&parts, empty, client, request_id, &host);
        // Keep the upgrade headers that hop-by-hop filtering removed.
        for name in [header::CONNECTION, header::UPGRADE] {
            if let Some(v) = parts.headers.get(&name) {
                outgoing.headers_mut().insert(name, v.clone());
            }
        }
        let mut response =
            tokio::time::timeout(settings.request_timeout, sender.send_request(outgoing))
                .await
                .map_err(|_| EdgeError::UpstreamTimeout)?
                .map_err(|_| EdgeError::UpstreamProtocol)?;
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            let upstream_upgrade = hyper::upgrade::on(&mut response);
            response
                .extensions_mut()
                .insert(Tunnel(Arc::new(Mutex::new(Some((
                    upstream_upgrade,
                    lease,
                ))))));
        }
        Ok(response)
    }

    /// response_filter + logging: adds the edge's headers and wraps the body so the access log
    /// line and the metrics are written when it ends.
    fn finish<B>(
        self: &Arc<Self>,
        response: Response<B>,
        log: LogContext,
        lease: Option<Lease>,
        service: Option<String>,
    ) -> Response<ProxyBody>
    where
        B: Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        let (mut parts, body) = response.into_parts();
        add_via(&mut parts.headers);
        parts.headers.insert(
            HeaderName::from_static("x-request-id"),
            log.request_id.clone(),
        );
        if let (Some(lease), Some(service)) = (&lease, &service) {
            let table = self.table.load();
            let sticky = table.pools.get(service).and_then(|p| p.sticky.clone());
            if let Some(sticky) = sticky {
                let sets_app_cookie = parts
                    .headers
                    .get_all(header::SET_COOKIE)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .any(|v| v.trim_start().starts_with(&format!("{}=", sticky.cookie)));
                if sets_app_cookie {
                    let value = format!(
                        "{}={}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax",
                        sticky_cookie_name(service),
                        lease.upstream.target.replica,
                        sticky.duration_secs
                    );
                    if let Ok(v) = HeaderValue::from_str(&value) {
                        parts.headers.append(header::SET_COOKIE, v);
                    }
                }
            }
        }
        if let (Some(lease), Some(service)) = (&lease, &service) {
            let split = self
                .table
                .load()
                .pools
                .get(service)
                .is_some_and(Pool::is_split);
            if split && parts.status.as_u16() < 500 {
                let value = format!(
                    "{}={}; Path=/; HttpOnly; SameSite=Lax",
                    release_cookie_name(service),
                    lease.upstream.target.release
                );
                if let Ok(v) = HeaderValue::from_str(&value) {
                    parts.headers.append(header::SET_COOKIE, v);
                }
            }
        }
        let record = RequestRecord {
            status: parts.status.as_u16(),
            service,
            log,
        };
        let body = MeteredBody {
            inner: body.map_err(Into::into).boxed(),
            bytes: 0,
            done: Some(Finisher {
                edge: self.clone(),
                record,
                lease,
            }),
        };
        Response::from_parts(parts, body.boxed())
    }

    fn record(&self, record: &RequestRecord, lease: Option<&Lease>, bytes: u64) {
        let metrics = lease.and_then(|l| l.upstream.metrics.as_ref());
        let duration = record.log.started.elapsed();
        match metrics {
            Some(m) => m.observe(record.status, duration.as_secs_f64(), bytes),
            // No replica was chosen (an error page): a lookup, off the hot path.
            None => self
                .metrics
                .release(record.service.as_deref().unwrap_or("-"), "-")
                .observe(record.status, duration.as_secs_f64(), bytes),
        }
        let enabled = self.table.load().settings.access_log;
        if let Some(log) = self.access_log.as_ref().filter(|_| enabled) {
            let line = AccessLine {
                at: record.log.at,
                client: record.log.client,
                host: &record.log.host,
                method: record.log.method.as_str(),
                path: record.log.uri.path_and_query().map_or("/", |p| p.as_str()),
                status: record.status,
                bytes,
                duration,
                service: record.service.as_deref(),
                upstream: lease.map(|l| l.upstream.target.replica.as_str()),
                release: lease.map(|l| l.upstream.target.release.as_str()),
                request_id: record.log.request_id.to_str().unwrap_or("-"),
            };
            log.append_line(&line);
        }
    }

    /// Writes out buffered access-log lines.
    pub fn flush_access_log(&self) {
        if let Some(log) = &self.access_log {
            log.flush();
        }
    }

    /// Refreshes the per-replica gauges (on each metrics scrape).
    pub fn refresh_upstream_gauges(&self) {
        let table = self.table.load();
        self.metrics.upstream_healthy.clear();
        self.metrics.upstream_in_flight.clear();
        for (service, pool) in &table.pools {
            for upstream in pool.upstreams() {
                let labels = UpstreamLabels {
                    service: service.clone(),
                    replica: upstream.target.replica.clone(),
                };
                let healthy = !upstream.target.draining && !upstream.stats.is_ejected();
                self.metrics
                    .upstream_healthy
                    .get_or_create(&labels)
                    .set(healthy as i64);
                self.metrics
                    .upstream_in_flight
                    .get_or_create(&labels)
                    .set(upstream.stats.in_flight.load(Ordering::Relaxed) as i64);
            }
        }
    }
}

/// The access log: lines are gathered in memory and written in chunks (at 32 KiB, or by
/// [`Edge::flush_access_log`] every 200 ms), not one write per request.
struct AccessLog {
    inner: Mutex<(LogFile, Vec<u8>)>,
}

impl AccessLog {
    const CHUNK: usize = 32 * 1024;

    fn new(file: LogFile) -> Self {
        Self {
            inner: Mutex::new((file, Vec::with_capacity(Self::CHUNK * 2))),
        }
    }

    fn append_line(&self, line: &AccessLine<'_>) {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (file, buffer) = &mut *guard;
        line.write(buffer);
        if buffer.len() >= Self::CHUNK {
            let _ = file.write_chunk(buffer);
            buffer.clear();
        }
    }

    fn flush(&self) {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (file, buffer) = &mut *guard;
        if !buffer.is_empty() {
            let _ = file.write_chunk(buffer);
            buffer.clear();
        }
    }
}

struct LogContext {
    started: Instant,
    at: SystemTime,
    client: IpAddr,
    host: String,
    method: Method,
    uri: Uri,
    request_id: HeaderValue,
}

struct RequestRecord {
    status: u16,
    service: Option<String>,
    log: LogContext,
}

/// Written when the response body ends (or is dropped): the request's log line and metrics,
/// and the end of its lease on the replica.
struct Finisher {
    edge: Arc<Edge>,
    record: RequestRecord,
    lease: Option<Lease>,
}

pin_project_lite::pin_project! {
    struct MeteredBody {
        #[pin]
        inner: ProxyBody,
        bytes: u64,
        done: Option<Finisher>,
    }

    impl PinnedDrop for MeteredBody {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(finisher) = this.done.take() {
                finisher.finish(*this.bytes);
            }
        }
    }
}

impl Finisher {
    fn finish(self, bytes: u64) {
        self.edge.record(&self.record, self.lease.as_ref(), bytes);
    }
}

impl Body for MeteredBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                *this.bytes += data.len() as u64;
            }
        }
        if let Poll::Ready(None) = &polled {
            if let Some(finisher) = this.done.take() {
                finisher.finish(*this.bytes);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Hop-by-hop headers (RFC 9110 7.6.1), never forwarded.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

static VIA_BERTH: HeaderValue = HeaderValue::from_static("1.1 berth");

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Headers named in `Connection` are hop-by-hop too (rare: only then is anything allocated).
    if let Some(connection) = headers.get(header::CONNECTION) {
        let named: Vec<HeaderName> = connection
            .to_str()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|t| !t.eq_ignore_ascii_case("keep-alive") && !t.eq_ignore_ascii_case("close"))
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// A client address as a header value; the last one is kept per thread (a client connection
/// sends many requests, and all of them on one thread).
fn client_ip_value(ip: IpAddr) -> HeaderValue {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(IpAddr, HeaderValue)>> =
            const { std::cell::RefCell::new(None) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        match &*last {
            Some((cached, value)) if *cached == ip => value.clone(),
            _ => {
                let value = HeaderValue::from_str(&ip.to_string())
                    .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
                *last = Some((ip, value.clone()));
                value
            }
        }
    })
}

/// Appends `value` to a list header, or sets it.
fn append(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    let combined = match headers.get(&name).and_then(|v| v.to_str().ok()) {
        Some(existing) if !existing.is_empty() => format!("{existing}, {value}"),
        _ => value.to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&combined) {
        headers.insert(name, v);
    }
}

/// Adds `Via: 1.1 berth` (without allocating when there is no `Via` yet).
fn add_via(headers: &mut HeaderMap) {
    if headers.contains_key(header::VIA) {
        append(headers, header::VIA, "1.1 berth");
    } else {
        headers.insert(header::VIA, VIA_BERTH.clone());
    }
}

/// The request sent to a replica: same method, path and headers, minus hop-by-hop ones, plus
/// `X-Forwarded-*`, `X-Request-Id` and `Via`; the original `Host` is kept.
fn upstream_request(
    parts: &hyper::http::request::Parts,
    body: ProxyBody,
    client: SocketAddr,
    request_id: &HeaderValue,
    host: &str,
) -> Request<ProxyBody> {
    let uri = if parts.uri.scheme().is_none() && parts.uri.authority().is_none() {
        parts.uri.clone()
    } else {
        // Absolute form from the client: the replica gets the origin form.
        parts
            .uri
            .path_and_query()
            .and_then(|p| Uri::try_from(p.as_str()).ok())
            .unwrap_or_else(|| Uri::from_static("/"))
    };
    let mut headers = parts.headers.clone();
    strip_hop_by_hop(&mut headers);
    headers.remove(TEST_KEY_HEADER);
    headers.remove(TEST_RELEASE_HEADER);
    if !headers.contains_key(header::HOST) {
        if let Some(authority) = parts.uri.authority() {
            if let Ok(v) = HeaderValue::from_str(authority.as_str()) {
                headers.insert(header::HOST, v);
            }
        }
    }
    let forwarded_for = HeaderName::from_static("x-forwarded-for");
    if headers.contains_key(&forwarded_for) {
        append(&mut headers, forwarded_for, &client.ip().to_string());
    } else {
        headers.insert(forwarded_for, client_ip_value(client.ip()));
    }
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static("http"),
    );
    if !host.is_empty() {
        // Most often the Host header itself (no port): shared, not copied.
        let value = match headers.get(header::HOST) {
            Some(v) if v.as_bytes() == host.as_bytes() => Some(v.clone()),
            _ => HeaderValue::from_str(host).ok(),
        };
        if let Some(v) = value {
            headers.insert(HeaderName::from_static("x-forwarded-host"), v);
        }
    }
    headers.insert(HeaderName::from_static("x-request-id"), request_id.clone());
    add_via(&mut headers);
    let mut request = Request::new(body);
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    request
}

/// Whether a failed upstream request failed because the client's body went over `max_body`.
fn is_body_too_large(error: &(dyn std::error::Error + 'static)) -> bool {
    error_chain(error).any(|e| {
        e.downcast_ref::<http_body_util::LengthLimitError>()
            .is_some()
            || e.to_string().contains("length limit exceeded")
    })
}

/// The answer to a request whose body could not be read from the client.
fn client_body_error(error: &(dyn std::error::Error + 'static)) -> EdgeError {
    match error_chain(error).find_map(|e| e.downcast_ref::<BodyError>()) {
        Some(BodyError::TimedOut) => EdgeError::ClientTimeout,
        Some(BodyError::Malformed(why)) => EdgeError::BadRequest(why),
        Some(BodyError::Closed | BodyError::Io(_)) => EdgeError::ClientClosed,
        None => EdgeError::BadRequest("the request body could not be read"),
    }
}

/// An error and its sources, outermost first.
fn error_chain<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(error), |e| e.source())
}

fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || content_length(headers).is_some_and(|n| n > 0)
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

pub(crate) fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
}

/// The cookie that keeps a client on the release it landed on while traffic is split.
pub fn release_cookie_name(service: &str) -> String {
    format!("berth-release-{service}")
}

/// The release named by a request's private test-route headers, when it carries the right key.
fn test_route(headers: &HeaderMap, key: Option<&str>) -> Option<String> {
    let key = key.filter(|k| !k.is_empty())?;
    let given = headers.get(TEST_KEY_HEADER)?.as_bytes();
    // Compared without an early exit, so timing tells nothing about the key.
    let same = given.len() == key.len()
        && given
            .iter()
            .zip(key.as_bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if !same {
        return None;
    }
    let release = headers.get(TEST_RELEASE_HEADER)?.to_str().ok()?;
    Some(release.to_string())
}

/// The private test route's headers (removed before a request goes to a replica).
pub const TEST_RELEASE_HEADER: &str = "x-berth-release";
pub const TEST_KEY_HEADER: &str = "x-berth-test-key";

/// The edge's own stickiness cookie for a service.
pub fn sticky_cookie_name(service: &str) -> String {
    format!("berth-sticky-{service}")
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// A small page body.
pub fn page(status: StatusCode, message: &str, request_id: &str) -> Response<Full<Bytes>> {
    let reason = status.canonical_reason().unwrap_or("");
    let html = format!(
        "<!doctype html><html><head><title>{code} {reason}</title></head><body><h1>{code} {reason}</h1><p>{message}</p><p><small>request {request_id} &middot; berth</small></p></body></html>\n",
        code = status.as_u16()
    );
    let mut response = Response::new(Full::new(Bytes::from(html)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go_including_those_named_by_connection() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn cookies_are_found_by_name() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; berth-sticky-web=web.2; b=3"),
        );
        assert_eq!(cookie(&h, "berth-sticky-web").as_deref(), Some("web.2"));
        assert_eq!(cookie(&h, "missing"), None);
    }

    #[test]
    fn forwarded_for_is_appended() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        append(
            &mut h,
            HeaderName::from_static("x-forwarded-for"),
            "127.0.0.1",
        );
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
    }

    #[test]
    fn upgrade_needs_both_headers() {
        let mut h = HeaderMap::new();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(!is_upgrade(&h));
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        assert!(is_upgrade(&h));
    }
}
