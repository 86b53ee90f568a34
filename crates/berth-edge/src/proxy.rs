//! The request path, top to bottom: `request_filter` (limits, request id), `route`,
//! `upstream_peer` (sticky, weights, balance), `forward` (headers, timeout, one retry of an
//! idempotent request that could not connect; the answer compressed by `compress`),
//! `response_filter` (sticky cookie, Via), and
//! `logging` (access log and metrics when the response body ends). Errors become pages with
//! the right status, never panics.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use arc_swap::ArcSwap;
use berth_logfile::LogFile;
use berth_model::routing::{EdgeSettings, RoutingTable, TlsTable};
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;

use crate::access_line::AccessLine;
use crate::access_log::AccessLog;
use crate::compress::{self, CompressBody};
use crate::errors::{EdgeError, ErrorKind, Side};
use crate::guard::{self, ConnectionCounts, RateLimits};
use crate::http1::head::Framing;
use crate::metrics::{EdgeMetrics, UpstreamLabels};
use crate::pool::{Lease, Pool, StatsRegistry, EJECTION};
use crate::router::{request_host, Router};
use crate::tls::CertStore;
use crate::upstream::{self, Timeouts, UpstreamBody};
use berth_waf::{Action as WafAction, Body as WafBody, RequestParts as WafRequest, Waf, WafConfig};

/// A body on its way through the edge; its errors say whose fault they are.
pub type ProxyBody = BoxBody<Bytes, EdgeError>;
pin_project_lite::pin_project! {
    /// A replica's answer body: read by the edge's own client, or by hyper's for an upgrade.
    #[project = AnswerBodyProj]
    pub(crate) enum AnswerBody {
        Upstream { #[pin] body: UpstreamBody },
        Compressed { #[pin] body: CompressBody<UpstreamBody> },
        Boxed { #[pin] body: ProxyBody },
    }
}

impl Body for AnswerBody {
    type Data = Bytes;
    type Error = EdgeError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, EdgeError>>> {
        match self.project() {
            AnswerBodyProj::Upstream { body } => body.poll_frame(cx),
            AnswerBodyProj::Compressed { body } => body.poll_frame(cx),
            AnswerBodyProj::Boxed { body } => body.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            AnswerBody::Upstream { body } => body.is_end_stream(),
            AnswerBody::Compressed { body } => body.is_end_stream(),
            AnswerBody::Boxed { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            AnswerBody::Upstream { body } => body.size_hint(),
            AnswerBody::Compressed { body } => body.size_hint(),
            AnswerBody::Boxed { body } => body.size_hint(),
        }
    }
}

/// Why a request got an error page: the error, the service it was routed to, and the replica
/// it was sent to when the replica is at fault (so the failure counts against its release).
pub(crate) struct Failed {
    pub(crate) error: EdgeError,
    service: Option<String>,
    pub(crate) lease: Option<Lease>,
}

impl Failed {
    pub(crate) fn new(error: EdgeError) -> Self {
        Self {
            error,
            service: None,
            lease: None,
        }
    }

    pub(crate) fn of(mut self, service: &str) -> Self {
        self.service = Some(service.to_string());
        self
    }

    fn on(mut self, lease: Lease) -> Self {
        self.lease = Some(lease);
        self
    }
}

impl From<EdgeError> for Failed {
    fn from(error: EdgeError) -> Self {
        Self::new(error)
    }
}

impl From<ErrorKind> for Failed {
    fn from(kind: ErrorKind) -> Self {
        Self::new(kind.into())
    }
}

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
    pub maintenance: Option<berth_model::routing::Maintenance>,
    /// The security headers added to answers that lack them.
    pub response_headers: Vec<(HeaderName, HeaderValue)>,
    /// ACME challenges, HSTS and the HTTPS redirect (the certificates live in the edge's
    /// [`CertStore`]).
    pub tls: TlsTable,
    /// The `[[cache.rule]]`s (None: no `[cache]`).
    pub cache_rules: Option<Arc<berth_cache::Rules>>,
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
            maintenance: table.maintenance.clone(),
            response_headers: table
                .settings
                .response_headers
                .iter()
                .filter_map(|(name, value)| {
                    Some((
                        HeaderName::from_bytes(name.as_bytes()).ok()?,
                        HeaderValue::from_str(value).ok()?,
                    ))
                })
                .collect(),
            tls: TlsTable {
                certificates: Vec::new(),
                ..table.tls.clone()
            },
            cache_rules: table
                .settings
                .cache
                .as_ref()
                .map(|c| Arc::new(berth_cache::Rules::new(c))),
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
    /// The certificates of the TLS listeners.
    pub certs: Arc<CertStore>,
    /// The port of the first TLS listener (0: none), where plain requests are redirected.
    https_port: AtomicU16,
    /// The TLS listeners' configuration (None: it could not be built; TLS connections are
    /// then refused).
    pub tls_config: Option<Arc<rustls::ServerConfig>>,
    /// Per-client rate limits (state kept across tables while a rule is unchanged).
    pub limits: RateLimits,
    /// Open connections per client address.
    pub connections_per_ip: ConnectionCounts,
    /// The WAF of the table in use, with the settings it was built from.
    waf: ArcSwap<Option<(berth_spec::WafSpec, Arc<Waf>)>>,
    /// The response cache (None: no `[cache]`); kept across tables while its sizes stay.
    pub(crate) cache_store: arc_swap::ArcSwapOption<berth_cache::Store>,
}

impl Edge {
    pub fn new(table: RoutingTable, access_log: Option<LogFile>) -> Arc<Self> {
        let registry = StatsRegistry::default();
        let metrics = EdgeMetrics::new();
        let compiled = CompiledTable::compile(&table, &registry, &metrics);
        let settings_rate_limits = table.settings.rate_limits.clone();
        let settings_waf = table.settings.waf.clone();
        let settings_cache = table.settings.cache.clone();
        let settings_compress = table.settings.compress.clone();
        let certs = Arc::new(CertStore::default());
        for error in certs.apply(&table.tls) {
            tracing::warn!("certificate not loaded: {error}");
        }
        Arc::new(Self {
            table: ArcSwap::from_pointee(compiled),
            raw_table: Mutex::new(table),
            registry,
            metrics,
            access_log: access_log.map(AccessLog::new),
            next_request: AtomicU64::new(rand::random::<u32>() as u64),
            request_prefix: format!("{:08x}", rand::random::<u32>()),
            tls_config: match crate::tls::server_config(certs.clone()) {
                Ok(config) => Some(config),
                Err(e) => {
                    tracing::error!("TLS is off: {e}");
                    None
                }
            },
            certs,
            https_port: AtomicU16::new(0),
            limits: {
                let limits = RateLimits::default();
                limits.set(&settings_rate_limits);
                limits
            },
            connections_per_ip: ConnectionCounts::default(),
            waf: ArcSwap::from_pointee(build_waf(None, settings_waf.as_ref())),
            cache_store: arc_swap::ArcSwapOption::new(
                settings_cache
                    .as_ref()
                    .map(|c| crate::cache::new_store(c, &settings_compress)),
            ),
        })
    }

    /// The most connections `ip` may hold open (0: no limit: limits off, an exempt client or a
    /// trusted proxy, whose connections carry many clients).
    pub fn connection_limit(&self, ip: IpAddr) -> u32 {
        let table = self.table.load();
        let settings = &table.settings;
        if settings.max_connections_per_ip == 0
            || guard::is_in(ip, &settings.limit_exempt)
            || guard::is_in(ip, &settings.trusted_proxies)
        {
            0
        } else {
            settings.max_connections_per_ip
        }
    }

    /// Where plain requests for hosts with a certificate are redirected.
    pub fn set_https_port(&self, port: u16) {
        self.https_port.store(port, Ordering::Relaxed);
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
        if table.tls.certificates
            != self
                .raw_table
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .tls
                .certificates
            || self.certs.is_empty()
        {
            for error in self.certs.apply(&table.tls) {
                tracing::warn!("certificate not loaded: {error}");
            }
        }
        self.limits.set(&table.settings.rate_limits);
        let current = self.waf.load_full();
        let unchanged = match (current.as_ref(), table.settings.waf.as_ref()) {
            (Some((spec, _)), Some(wanted)) => spec == wanted,
            (None, None) => true,
            _ => false,
        };
        if !unchanged {
            self.waf.store(Arc::new(build_waf(
                current.as_ref().as_ref(),
                table.settings.waf.as_ref(),
            )));
        }
        self.install_cache(table.settings.cache.as_ref(), &table.settings.compress);
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

    /// The limits a client connection runs under, copied out of the table in use (a
    /// connection keeps these few numbers, never a clone of the whole settings: an idle
    /// connection must cost next to nothing).
    pub fn connection_limits(&self) -> ConnectionLimits {
        let table = self.table.load();
        let s = &table.settings;
        ConnectionLimits {
            max_header: s.max_header,
            max_body: s.max_body,
            idle_timeout: s.idle_timeout,
            header_timeout: s.header_timeout,
        }
    }

    /// The id of a request: a trusted proxy's `X-Request-Id` when it is well-formed, else a new
    /// one. Any other client's is never taken: it could choose the id that logs and error pages
    /// show (and collide with another request's).
    fn request_id(&self, headers: &HeaderMap, trusted: bool) -> HeaderValue {
        if trusted {
            if let Some(id) = headers
                .get("x-request-id")
                .filter(|id| is_request_id(id.as_bytes()))
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

    /// Handles one client request. Its body's errors are the client's ([`Side::Client`]).
    pub async fn handle<B>(
        self: Arc<Self>,
        req: Request<B>,
        client: Downstream,
    ) -> Response<ProxyBody>
    where
        B: Body<Data = Bytes, Error = EdgeError> + Send + Sync + Unpin + 'static,
    {
        let started = Instant::now();
        let trusted = self.is_trusted_proxy(client.addr.ip());
        let log = LogContext {
            started,
            at: SystemTime::now(),
            client: client.addr.ip(),
            host: request_host(&req),
            method: req.method().clone(),
            uri: req.uri().clone(),
            request_id: self.request_id(req.headers(), trusted),
        };
        let peer = Peer {
            addr: client.addr,
            secure: client.secure,
            trusted,
        };
        match self
            .clone()
            .proxy(req, peer, &log.host, &log.request_id)
            .await
        {
            Ok((mut response, lease, service)) => {
                if response.status() != StatusCode::SWITCHING_PROTOCOLS {
                    strip_hop_by_hop(response.headers_mut());
                }
                if client.secure {
                    self.add_hsts(response.headers_mut(), &log.host);
                }
                self.finish(response, log, lease, service)
            }
            Err(failed) => {
                if failed.error.side == Side::Replica {
                    let replica = failed
                        .lease
                        .as_ref()
                        .map_or("-", |l| l.upstream.target.replica.as_str());
                    tracing::warn!("{replica}: {}", failed.error);
                }
                let response = failed.error.page(log.request_id.to_str().unwrap_or("-"));
                self.finish(response, log, failed.lease, failed.service)
            }
        }
    }

    /// Runs the WAF over a request: its head, and, when a group reads bodies of its content
    /// type, up to `max_body_bytes` of its body (returned, to be sent on first). Blocked:
    /// 403, also for a body longer than that with `oversize = "block"`. Every finding is
    /// logged with its rule and counted.
    async fn firewall<B>(
        &self,
        waf: &Waf,
        oversize: berth_spec::WafOversize,
        req: Request<B>,
        framing: Framing,
        request_id: &HeaderValue,
        service: &str,
    ) -> Result<(Request<B>, Vec<Frame<Bytes>>), EdgeError>
    where
        B: Body<Data = Bytes, Error = EdgeError> + Unpin,
    {
        let (head, mut body) = req.into_parts();
        let headers: Vec<(&[u8], &[u8])> = head
            .headers
            .iter()
            .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()))
            .collect();
        let path = head.uri.path().as_bytes();
        let mut prefix = Vec::new();
        let mut bytes = Vec::new();
        if framing.has_body() && waf.reads_body(&headers, path) {
            let limit = waf.max_body_bytes();
            let mut ended = false;
            while bytes.len() < limit {
                let Some(frame) = body.frame().await else {
                    ended = true;
                    break;
                };
                let frame = frame?;
                if let Some(data) = frame.data_ref() {
                    bytes.extend_from_slice(data);
                }
                // Trailers too go on to the replica, after the data read here.
                prefix.push(frame);
            }
            if oversize == berth_spec::WafOversize::Block {
                let more = match framing {
                    Framing::Length(length) => length > limit as u64,
                    _ if bytes.len() > limit => true,
                    _ if ended || body.is_end_stream() => false,
                    // A chunked body cut exactly at the limit: whether data follows is known
                    // only by reading on (what is read goes on like the rest).
                    _ => match body.frame().await {
                        None => false,
                        Some(frame) => {
                            let frame = frame?;
                            let more = frame.data_ref().is_some_and(|d| !d.is_empty());
                            prefix.push(frame);
                            more
                        }
                    },
                };
                if more {
                    tracing::info!(
                        request_id = request_id.to_str().unwrap_or("-"),
                        "waf block: body longer than the {limit} bytes it inspects (oversize = \"block\")"
                    );
                    self.metrics.waf_finding("size", "oversize", "block");
                    self.metrics.blocked("waf");
                    self.metrics.waf_blocked(service);
                    let mut error = EdgeError::new(ErrorKind::Forbidden);
                    error.page_message =
                        Some("The request body is larger than the firewall inspects.".into());
                    return Err(error);
                }
            }
        }
        let content_type = head
            .headers
            .get(header::CONTENT_TYPE)
            .map_or(&b""[..], |v| v.as_bytes());
        let parts = WafRequest {
            method: head.method.as_str().as_bytes(),
            path,
            query: head.uri.query().map(str::as_bytes),
            headers: &headers,
            body: (!bytes.is_empty()).then_some(WafBody {
                content_type,
                bytes: &bytes,
            }),
        };
        let verdict = waf.inspect(&parts);
        for finding in verdict.findings() {
            let action = match finding.action {
                WafAction::Block => "block",
                WafAction::Count => "count",
            };
            tracing::info!(
                request_id = request_id.to_str().unwrap_or("-"),
                "waf {action}: {} rule {} at {}",
                finding.group.name(),
                finding.rule_id,
                // The location holds client-chosen names (JSON keys, cookie names): escaped,
                // so a name cannot forge log lines.
                finding
                    .location
                    .chars()
                    .take(160)
                    .collect::<String>()
                    .escape_debug()
            );
            self.metrics
                .waf_finding(finding.group.name(), finding.rule_id, action);
        }
        if verdict.is_blocked() {
            self.metrics.blocked("waf");
            self.metrics.waf_blocked(service);
            let mut error = EdgeError::new(ErrorKind::Forbidden);
            error.page_message = Some("The request was blocked by the firewall.".into());
            return Err(error);
        }
        drop(headers);
        Ok((Request::from_parts(head, body), prefix))
    }

    /// The edge's response headers: the `Server` header hidden when asked, the route's own
    /// headers set (an empty value: no default of that name), then the default security headers
    /// wherever the application sent none.
    fn decorate(&self, headers: &mut HeaderMap, host: &str, path: &str) {
        let table = self.table.load();
        if table.settings.hide_server {
            headers.remove(header::SERVER);
        }
        let route = table.router.route_entry(host, path);
        let overrides = route.map(|r| &r.headers).filter(|h| !h.is_empty());
        if let Some(overrides) = overrides {
            for (name, value) in overrides {
                let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
                    continue;
                };
                if value.is_empty() {
                    continue;
                }
                if let Ok(value) = HeaderValue::from_str(value) {
                    headers.insert(name, value);
                }
            }
        }
        for (name, value) in &table.response_headers {
            if overrides.is_some_and(|o| o.contains_key(name.as_str())) {
                continue;
            }
            if !headers.contains_key(name) {
                headers.insert(name.clone(), value.clone());
            }
        }
    }

    /// The default security headers, for an answer that belongs to no route (a refused head).
    pub(crate) fn add_default_headers(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.table.load().response_headers {
            if !headers.contains_key(name) {
                headers.insert(name.clone(), value.clone());
            }
        }
    }

    /// `Strict-Transport-Security` on an answer over TLS for a host with a certificate, unless
    /// the replica set its own.
    fn add_hsts(&self, headers: &mut HeaderMap, host: &str) {
        let table = self.table.load();
        let Some(hsts) = table.tls.hsts.as_deref() else {
            return;
        };
        if headers.contains_key(header::STRICT_TRANSPORT_SECURITY) || !self.certs.covers(host) {
            return;
        }
        if let Ok(value) = HeaderValue::from_str(hsts) {
            headers.insert(header::STRICT_TRANSPORT_SECURITY, value);
        }
    }

    /// The answer to an ACME HTTP-01 challenge: the key authorization of a token being
    /// validated, else 404.
    fn acme_answer(
        &self,
        table: &CompiledTable,
        token: &str,
    ) -> (Response<AnswerBody>, Option<Lease>, Option<String>) {
        let (status, body) = match table.tls.challenges.get(token) {
            Some(authorization) => (StatusCode::OK, Bytes::from(authorization.clone())),
            None => (
                StatusCode::NOT_FOUND,
                Bytes::from_static(b"no such challenge\n"),
            ),
        };
        let mut response = Response::new(AnswerBody::Boxed {
            body: Full::new(body).map_err(|never| match never {}).boxed(),
        });
        *response.status_mut() = status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        (response, None, None)
    }

    /// Whether `ip` is one of `[edge] trusted_proxies`.
    fn is_trusted_proxy(&self, ip: IpAddr) -> bool {
        let proxies = &self.table.load().settings.trusted_proxies;
        !proxies.is_empty() && {
            let ip = ip.to_canonical();
            proxies.iter().any(|network| network.contains(&ip))
        }
    }

    async fn proxy<B>(
        self: Arc<Self>,
        req: Request<B>,
        client: Peer,
        host: &str,
        request_id: &HeaderValue,
    ) -> Result<(Response<AnswerBody>, Option<Lease>, Option<String>), Failed>
    where
        B: Body<Data = Bytes, Error = EdgeError> + Send + Sync + Unpin + 'static,
    {
        let table = self.table.load_full();
        let settings = &table.settings;

        // request_filter. The body's framing is decided once, here, from the body itself
        // (which the HTTP/1 head parser or hyper's HTTP/2 server made from the client's
        // framing); the client's framing headers never go further.
        let framing = body_framing(req.body());
        let header_bytes: usize = req
            .headers()
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 4)
            .sum();
        if header_bytes as u64 > settings.max_header {
            return Err(ErrorKind::HeadersTooLarge.into());
        }
        if let Framing::Length(length) = framing {
            if length > settings.max_body {
                return Err(ErrorKind::BodyTooLarge(settings.max_body).into());
            }
        }
        // The host, once and valid, over HTTP/2 too (the HTTP/1 parser checked its own).
        let mut hosts = req.headers().get_all(header::HOST).iter();
        let host_ok = match (hosts.next(), hosts.next()) {
            (_, Some(_)) => false,
            (Some(h), None) => h.is_empty() || crate::http1::head::is_valid_host(h.as_bytes()),
            (None, None) => true,
        } && req
            .uri()
            .authority()
            .is_none_or(|a| crate::http1::head::is_valid_host(a.as_str().as_bytes()));
        if !host_ok {
            return Err(EdgeError::bad_request("an invalid Host").into());
        }
        // Two content types would let the WAF read the body as one thing and the replica as
        // another.
        if req
            .headers()
            .get_all(header::CONTENT_TYPE)
            .iter()
            .nth(1)
            .is_some()
        {
            return Err(EdgeError::bad_request("more than one Content-Type").into());
        }
        let path = req.uri().path();
        if (path.is_empty() || !path.starts_with('/')) && req.method() != Method::OPTIONS {
            return Err(EdgeError::bad_request("the request target must be a path").into());
        }

        // The plain listeners: ACME challenges (never limited: the CA validates from anywhere).
        if !client.secure {
            if let Some(token) = req.uri().path().strip_prefix(ACME_CHALLENGE_PREFIX) {
                return Ok(self.acme_answer(&table, token));
            }
        }

        // Who the client is (through trusted proxies), what it may reach, how fast.
        let client_ip =
            guard::client_ip(client.addr.ip(), req.headers(), &settings.trusted_proxies);
        if !guard::allowed(&settings.allow, req.uri().path(), client_ip) {
            self.metrics.blocked("allowlist");
            return Err(ErrorKind::Forbidden.into());
        }
        if !guard::is_in(client_ip, &settings.limit_exempt) {
            // Limits match the path as an application reads it (`/LOGIN`, `/%6cogin`).
            let normal = guard::normalize_path(req.uri().path());
            let path = normal.as_deref().unwrap_or("/");
            if let Err(wait) = self.limits.check(client_ip, path) {
                self.metrics.blocked("rate_limit");
                let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                return Err(ErrorKind::RateLimited(seconds).into());
            }
        }

        // The plain listeners: the redirect to HTTPS.
        if !client.secure {
            let https_port = self.https_port.load(Ordering::Relaxed);
            if table.tls.redirect_https && https_port != 0 && self.certs.covers(host) {
                return Ok((https_redirect(host, https_port, req.uri()), None, None));
            }
        }

        // route
        let Some(route) = table.router.route_entry(host, req.uri().path()) else {
            return Err(ErrorKind::NoRoute.into());
        };
        let service = route.service.clone();
        if guard::in_maintenance(table.maintenance.as_ref(), &service, client_ip) {
            self.metrics.blocked("maintenance");
            let mut error = EdgeError::new(ErrorKind::Maintenance);
            error.page_message = table.maintenance.as_ref().and_then(|m| m.message.clone());
            return Err(Failed::new(error).of(&service));
        }
        if !table.pools.contains_key(&service) {
            return Err(Failed::new(ErrorKind::NoHealthyReplica.into()).of(&service));
        }

        // The WAF: the head, and the first bytes of a body it reads.
        let mut req = req;
        let mut inspected: Vec<Frame<Bytes>> = Vec::new();
        let waf = self
            .waf
            .load()
            .as_ref()
            .as_ref()
            .map(|(spec, waf)| (spec.oversize, waf.clone()));
        if let Some((oversize, waf)) = waf {
            (req, inspected) = self
                .firewall(&waf, oversize, req, framing, request_id, &service)
                .await
                .map_err(|e| Failed::new(e).of(&service))?;
        }

        // The response cache (`cache.rs`): answered from it, or through it to `forward`.
        // Boxed: its state is the largest of a request's, and every request's future (boxed
        // per request by the connection) would otherwise carry it and copy it.
        if let Some(plan) = self.cache_plan(&table, &req, client.secure, client.trusted, &service) {
            return Box::pin(self.clone().through_cache(
                plan, &table, req, framing, inspected, client, host, request_id, service,
            ))
            .await;
        }
        self.forward(
            &table, req, framing, inspected, client, host, request_id, service,
        )
        .await
    }

    /// upstream_peer and forward: a replica of `service` is picked and sent the request (or
    /// its WebSocket upgrade), retried once on another when nothing of it can have had an
    /// effect.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn forward<B>(
        self: &Arc<Self>,
        table: &CompiledTable,
        req: Request<B>,
        framing: Framing,
        inspected: Vec<Frame<Bytes>>,
        client: Peer,
        host: &str,
        request_id: &HeaderValue,
        service: String,
    ) -> Result<(Response<AnswerBody>, Option<Lease>, Option<String>), Failed>
    where
        B: Body<Data = Bytes, Error = EdgeError> + Send + Sync + Unpin + 'static,
    {
        let settings = &table.settings;
        let Some(pool) = table.pools.get(&service) else {
            return Err(Failed::new(ErrorKind::NoHealthyReplica.into()).of(&service));
        };
        // The route's own `compress` (its answer is compressed here, before the cache).
        let route_compress = table
            .router
            .route_entry(host, req.uri().path())
            .and_then(|r| r.compress);
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
        let Some(mut lease) = lease else {
            return Err(Failed::new(ErrorKind::NoHealthyReplica.into()).of(&service));
        };

        if is_upgrade(req.headers()) {
            let websocket = req
                .headers()
                .get(header::UPGRADE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"));
            if !websocket {
                // A raw pipe to a replica (h2c, anything else) would pass every guard.
                return Err(Failed::new(EdgeError::new(ErrorKind::NotImplemented(
                    "upgrades other than WebSocket",
                )))
                .of(&service));
            }
            if framing.has_body() {
                return Err(Failed::new(EdgeError::bad_request(
                    "an upgrade request cannot carry a body",
                ))
                .of(&service));
            }
            // Boxed: upgrades are rare and their state large (see `through_cache` above).
            let response = Box::pin(self.upgrade(req, lease, client, request_id, settings))
                .await
                .map_err(|e| Failed::new(e).of(&service))?;
            return Ok((
                response.map(|body| AnswerBody::Boxed { body }),
                None,
                Some(service),
            ));
        }

        // forward
        let (parts, body) = req.into_parts();
        let replayable = !framing.has_body() && upstream::is_idempotent(&parts.method);
        let mut body: ProxyBody = if framing.has_body() {
            // What the WAF read goes first, counted against max_body like the rest.
            let body = PrefixedBody {
                prefix: inspected.into(),
                inner: body,
            };
            ClientBody::new(body, settings.max_body).boxed()
        } else {
            // Nothing to read: the body (and with it the client's read half) goes home now.
            drop(body);
            Empty::new().map_err(|never| match never {}).boxed()
        };
        let (uri, headers) = upstream_request(&parts, client, request_id, host);
        let timeouts = Timeouts {
            connect: settings.connect_timeout,
            answer: settings.request_timeout,
            stall: settings.request_timeout,
        };
        let mut retried = false;
        let started = Instant::now();
        loop {
            let sent = upstream::send(
                &lease.upstream.stats,
                lease.upstream.target.addr,
                timeouts,
                (&parts.method, &uri, &headers),
                framing,
                &mut body,
            )
            .await;
            let error = match sent {
                Ok(response) => {
                    // Compressed (or passed as it is) by compress.rs.
                    let response = match compress::compress_answer(
                        &parts.method,
                        &parts.headers,
                        response,
                        &settings.compress,
                        route_compress,
                        &self.metrics.compress,
                    ) {
                        Ok(compressed) => compressed.map(|body| AnswerBody::Compressed { body }),
                        Err(plain) => plain.map(|body| AnswerBody::Upstream { body }),
                    };
                    return Ok((response, Some(lease), Some(service)));
                }
                Err(error) => error,
            };
            if error.side != Side::Replica {
                // The client's own body failed: its error, never counted against the replica.
                return Err(Failed::new(error).of(&service));
            }
            // Only a refused connection ejects: a timeout can be a client's doing (a slow
            // endpoint asked for on purpose), and ejecting on it would let one client empty
            // the pool.
            if error.kind == ErrorKind::UpstreamConnect {
                lease.upstream.stats.eject(EJECTION);
                tracing::warn!(
                    "{}: ejected for {}s: {error}",
                    lease.upstream.target.replica,
                    EJECTION.as_secs(),
                );
            }
            // Retried once, on another replica, when nothing of it can have had an effect.
            let retry = (!retried && test_release.is_none() && error.may_retry(replayable))
                .then(|| pool.pick(None, None, Some(&lease.upstream.target.replica)))
                .flatten();
            match retry {
                Some(next) => {
                    tracing::debug!(
                        "{}: {error}; sent again to {}",
                        lease.upstream.target.replica,
                        next.upstream.target.replica
                    );
                    // The failed attempt still counts against its release (a canary that
                    // refuses connections is failing), though the client is served.
                    if let Some(metrics) = lease.upstream.metrics.as_ref() {
                        metrics.observe(
                            None,
                            error.status().as_u16(),
                            started.elapsed().as_secs_f64(),
                            0,
                        );
                    }
                    lease = next;
                    retried = true;
                }
                None => return Err(Failed::new(error).of(&service).on(lease)),
            }
        }
    }

    /// A WebSocket (or other `Upgrade`) request: its own upstream connection. A `101` answer
    /// carries a [`Tunnel`] for the client connection to copy bytes both ways through; the
    /// lease is held as long as the tunnel.
    async fn upgrade<B>(
        &self,
        req: Request<B>,
        lease: Lease,
        client: Peer,
        request_id: &HeaderValue,
        settings: &EdgeSettings,
    ) -> Result<Response<ProxyBody>, EdgeError> {
        let host = request_host(&req);
        let (parts, _body) = req.into_parts();
        let addr = lease.upstream.target.addr;
        let protocol = |why: String| EdgeError::new(ErrorKind::UpstreamProtocol).context(why);
        let stream = match tokio::time::timeout(
            settings.connect_timeout,
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            Ok(Ok(s)) => s,
            _ => {
                lease.upstream.stats.eject(EJECTION);
                return Err(ErrorKind::UpstreamConnect.into());
            }
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| protocol(e.to_string()))?;
        tokio::spawn(conn.with_upgrades());
        let (uri, mut headers) = upstream_request(&parts, client, request_id, &host);
        // Keep the upgrade headers that hop-by-hop filtering removed.
        for name in [header::CONNECTION, header::UPGRADE] {
            if let Some(v) = parts.headers.get(&name) {
                headers.insert(name, v.clone());
            }
        }
        let mut outgoing = Request::new(Empty::<Bytes>::new());
        *outgoing.method_mut() = parts.method.clone();
        *outgoing.uri_mut() = uri;
        *outgoing.headers_mut() = headers;
        let mut response =
            tokio::time::timeout(settings.request_timeout, sender.send_request(outgoing))
                .await
                .map_err(|_| EdgeError::new(ErrorKind::UpstreamTimeout))?
                .map_err(|e| protocol(e.to_string()))?;
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            let upstream_upgrade = hyper::upgrade::on(&mut response);
            response
                .extensions_mut()
                .insert(Tunnel(Arc::new(Mutex::new(Some((
                    upstream_upgrade,
                    lease,
                ))))));
        }
        Ok(response.map(|body| {
            body.map_err(|e| {
                EdgeError::new(ErrorKind::UpstreamProtocol)
                    .context(format!("reading the answer: {e}"))
            })
            .boxed()
        }))
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
        B::Error: Into<EdgeError>,
    {
        let (mut parts, body) = response.into_parts();
        if parts.status != StatusCode::SWITCHING_PROTOCOLS {
            self.decorate(&mut parts.headers, &log.host, log.uri.path());
        }
        add_via(&mut parts.headers);
        parts.headers.insert(X_REQUEST_ID, log.request_id.clone());
        if let (Some(lease), Some(service)) = (&lease, &service) {
            let table = self.table.load();
            if let Some(pool) = table.pools.get(service) {
                add_affinity_cookies(&mut parts, pool, lease, service);
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
        let table = self.table.load();
        match metrics {
            Some(m) => {
                // The route pattern, for the rollout engine's per-route counters.
                let path = record.log.uri.path();
                let route = table
                    .router
                    .route_entry(&record.log.host, path)
                    .map(|r| berth_model::traffic::route_pattern(&r.path, path));
                m.observe(
                    route.as_deref(),
                    record.status,
                    duration.as_secs_f64(),
                    bytes,
                )
            }
            // No replica was chosen (an error page): a lookup, off the hot path.
            None => self
                .metrics
                .release(record.service.as_deref().unwrap_or("-"), "-")
                .observe(None, record.status, duration.as_secs_f64(), bytes),
        }
        let enabled = table.settings.access_log;
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

    /// Hands buffered access-log lines to the log's writer.
    pub fn flush_access_log(&self) {
        if let Some(log) = &self.access_log {
            log.flush();
        }
    }

    /// Writes out every access-log line so far and waits (at most `limit`) until they are in
    /// the file: for a stopping edge.
    pub fn flush_access_log_and_wait(&self, limit: std::time::Duration) {
        if let Some(log) = &self.access_log {
            log.flush_and_wait(limit);
        }
    }

    /// Refreshes the per-replica gauges (on each metrics scrape).
    pub fn refresh_upstream_gauges(&self) {
        self.refresh_cache_gauges();
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
    type Error = EdgeError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, EdgeError>>> {
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

/// The cookies that keep a client on its replica (sticky sessions, when the app set its own
/// session cookie) and on its release (while a canary splits traffic).
fn add_affinity_cookies(
    parts: &mut hyper::http::response::Parts,
    pool: &Pool,
    lease: &Lease,
    service: &str,
) {
    if let Some(sticky) = &pool.sticky {
        let sets_app_cookie = parts
            .headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.trim_start()
                    .strip_prefix(sticky.cookie.as_str())
                    .is_some_and(|rest| rest.starts_with('='))
            });
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
    if pool.is_split() && parts.status.as_u16() < 500 {
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

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Headers named in `Connection` are hop-by-hop too (rare: only then is anything
    // allocated), except `Host`: `Connection: host` must not leave an HTTP/1.1 request
    // without one.
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(|v| v.to_str().unwrap_or("").split(','))
            .map(str::trim)
            .filter(|t| !t.eq_ignore_ascii_case("keep-alive") && !t.eq_ignore_ascii_case("close"))
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .filter(|name| name != header::HOST)
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    remove_where(headers, |name| HOP_BY_HOP.contains(name));
}

/// Removes the headers `doomed` picks, found by one pass over the names: a `remove` hashes
/// its name whether it is there or not, and most of those a proxy removes are not there
/// (two dozen removes were the largest share of a small request's instructions).
fn remove_where(headers: &mut HeaderMap, doomed: impl Fn(&HeaderName) -> bool) {
    let found: Vec<HeaderName> = headers.keys().filter(|n| doomed(n)).cloned().collect();
    for name in found {
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

/// Client-identity headers a replica might believe, removed from requests of clients that are
/// not trusted proxies (the `X-Forwarded-*` ones are replaced by the edge's own).
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

const SPOOFABLE: &[&str] = &[
    "forwarded",
    "x-real-ip",
    "x-client-ip",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-server",
    // Rack and others read `X-Forwarded-Ssl: on` as HTTPS.
    "x-forwarded-ssl",
    "true-client-ip",
    "cf-connecting-ip",
];

/// Where ACME HTTP-01 challenges are asked for (RFC 8555 8.3).
pub const ACME_CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// A `301` to the same host, path and query on HTTPS (the references' port-80 listener).
fn https_redirect(host: &str, port: u16, uri: &Uri) -> Response<AnswerBody> {
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    let location = if port == 443 {
        format!("https://{host}{target}")
    } else {
        format!("https://{host}:{port}{target}")
    };
    let mut response = Response::new(AnswerBody::Boxed {
        body: Empty::new().map_err(|never| match never {}).boxed(),
    });
    *response.status_mut() = StatusCode::MOVED_PERMANENTLY;
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// What a client connection needs of the settings (see [`Edge::connection_limits`]).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub max_header: u64,
    pub max_body: u64,
    pub idle_timeout: std::time::Duration,
    pub header_timeout: std::time::Duration,
}

/// The client connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct Downstream {
    pub addr: SocketAddr,
    /// Over TLS.
    pub secure: bool,
}

/// The client connection a request came on, as the proxy judges it.
#[derive(Clone, Copy)]
pub(crate) struct Peer {
    addr: SocketAddr,
    secure: bool,
    /// One of `[edge] trusted_proxies`: its `X-Forwarded-*` headers are believed.
    trusted: bool,
}

/// Whether a trusted proxy's `X-Request-Id` is fit to be used as is: 1 to 128 characters of
/// letters, digits and `-_.:/+=`.
fn is_request_id(id: &[u8]) -> bool {
    (1..=128).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=".contains(b))
}

/// What a replica gets of a request: the origin-form target and the client's headers minus
/// hop-by-hop ones and the framing ones (the edge writes its own), plus `X-Forwarded-*`,
/// `X-Request-Id` and `Via`; the original `Host` is kept. `X-Forwarded-For`, `-Proto` and
/// `-Host` from a client that is not a trusted proxy are replaced, so a replica can believe
/// them; a trusted proxy's are kept (its address appended to `X-Forwarded-For`).
fn upstream_request(
    parts: &hyper::http::request::Parts,
    client: Peer,
    request_id: &HeaderValue,
    host: &str,
) -> (Uri, HeaderMap) {
    let uri = if parts.uri.scheme().is_none() && parts.uri.authority().is_none() {
        parts.uri.clone()
    } else {
        // Absolute form from the client: the replica gets the origin form (the head parser
        // put the authority in `Host`).
        parts
            .uri
            .path_and_query()
            .and_then(|p| Uri::try_from(p.as_str()).ok())
            .unwrap_or_else(|| Uri::from_static("/"))
    };
    let mut headers = parts.headers.clone();
    strip_hop_by_hop(&mut headers);
    // The edge writes the framing; the test route's headers and (from a client not trusted)
    // other ways to claim a client's identity never reach a replica.
    remove_where(&mut headers, |name| {
        name == header::CONTENT_LENGTH
            || name == TEST_KEY_HEADER
            || name == TEST_RELEASE_HEADER
            || (!client.trusted && SPOOFABLE.contains(&name.as_str()))
    });
    if !headers.contains_key(header::HOST) {
        // An HTTP/1.0 client may name no host; the replica speaks HTTP/1.1 and gets the
        // authority, else an empty Host (RFC 9112 3.2).
        let host = parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            .unwrap_or_else(|| HeaderValue::from_static(""));
        headers.insert(header::HOST, host);
    }
    let forwarded_for = X_FORWARDED_FOR;
    let forwarded_proto = X_FORWARDED_PROTO;
    let forwarded_host = X_FORWARDED_HOST;
    let ip = client.addr.ip();
    if client.trusted && headers.contains_key(&forwarded_for) {
        append(&mut headers, forwarded_for, &ip.to_string());
    } else {
        headers.insert(forwarded_for, client_ip_value(ip));
    }
    if !(client.trusted && headers.contains_key(&forwarded_proto)) {
        let scheme = if client.secure { "https" } else { "http" };
        headers.insert(forwarded_proto, HeaderValue::from_static(scheme));
    }
    if client.trusted && headers.contains_key(&forwarded_host) {
        // Kept as the proxy in front said.
    } else if host.is_empty() {
        headers.remove(&forwarded_host);
    } else {
        // Most often the Host header itself (no port): shared, not copied.
        let value = match headers.get(header::HOST) {
            Some(v) if v.as_bytes() == host.as_bytes() => Some(v.clone()),
            _ => HeaderValue::from_str(host).ok(),
        };
        match value {
            Some(v) => headers.insert(forwarded_host, v),
            None => headers.remove(forwarded_host),
        };
    }
    headers.insert(X_REQUEST_ID, request_id.clone());
    add_via(&mut headers);
    (uri, headers)
}

/// The WAF for `spec` (none: off). A configuration the WAF refuses (the spec checked it, so
/// only a table from a newer Berth) keeps the WAF that was running.
fn build_waf(
    current: Option<&(berth_spec::WafSpec, Arc<Waf>)>,
    spec: Option<&berth_spec::WafSpec>,
) -> Option<(berth_spec::WafSpec, Arc<Waf>)> {
    let spec = spec?;
    let config = || -> Result<WafConfig, berth_waf::ConfigError> {
        let mut config = WafConfig {
            max_body_bytes: spec.max_body as usize,
            ..WafConfig::default()
        };
        for (group, mode) in &spec.modes {
            config.set(group, mode)?;
        }
        for exclusion in &spec.exclusions {
            let groups: Vec<&str> = exclusion.groups.iter().map(String::as_str).collect();
            let targets: Vec<&str> = exclusion.targets.iter().map(String::as_str).collect();
            config.exclusions.push(berth_waf::Exclusion::parse(
                &exclusion.path,
                &groups,
                &targets,
            )?);
        }
        for o in &spec.overrides {
            config
                .overrides
                .push(berth_waf::ModeOverride::parse(&o.path, &o.group, &o.mode)?);
        }
        Ok(config)
    };
    match config().and_then(Waf::new) {
        Ok(waf) => Some((spec.clone(), Arc::new(waf))),
        Err(e) => {
            tracing::error!("the WAF settings were refused ({e}); the WAF keeps its last ones");
            current.cloned()
        }
    }
}

pin_project_lite::pin_project! {
    /// A body whose first frames were already read (by the WAF): those, then the rest.
    pub(crate) struct PrefixedBody<B> {
        prefix: std::collections::VecDeque<Frame<Bytes>>,
        #[pin]
        inner: B,
    }
}

impl<B> PrefixedBody<B> {
    /// `inner` after the frames already read from it.
    pub(crate) fn new(prefix: std::collections::VecDeque<Frame<Bytes>>, inner: B) -> Self {
        Self { prefix, inner }
    }
}

impl<B: Body<Data = Bytes, Error = EdgeError>> Body for PrefixedBody<B> {
    type Data = Bytes;
    type Error = EdgeError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, EdgeError>>> {
        let this = self.project();
        if let Some(frame) = this.prefix.pop_front() {
            return Poll::Ready(Some(Ok(frame)));
        }
        this.inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let buffered: u64 = self
            .prefix
            .iter()
            .filter_map(|f| f.data_ref().map(|b| b.len() as u64))
            .sum();
        let inner = self.inner.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower() + buffered);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + buffered);
        }
        hint
    }
}

/// The framing of a request's body, from the body itself: the HTTP/1 head parser made it from
/// the client's framing headers, hyper's HTTP/2 server from `content-length` and the stream.
fn body_framing(body: &impl Body) -> Framing {
    match body.size_hint().exact() {
        Some(0) if body.is_end_stream() => Framing::Empty,
        Some(0) => Framing::Length(0),
        Some(n) => Framing::Length(n),
        None => Framing::Chunked,
    }
}

pin_project_lite::pin_project! {
    /// A client's body on its way to a replica: no more than `max_body` bytes of it (413).
    struct ClientBody<B> {
        #[pin]
        inner: B,
        left: u64,
        limit: u64,
    }
}

impl<B> ClientBody<B> {
    fn new(inner: B, limit: u64) -> Self {
        Self {
            inner,
            left: limit,
            limit,
        }
    }
}

impl<B: Body<Data = Bytes, Error = EdgeError>> Body for ClientBody<B> {
    type Data = Bytes;
    type Error = EdgeError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, EdgeError>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                let n = data.len() as u64;
                if n > *this.left {
                    return Poll::Ready(Some(Err(EdgeError::new(ErrorKind::BodyTooLarge(
                        *this.limit,
                    )))));
                }
                *this.left -= n;
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
pub(crate) fn test_route(headers: &HeaderMap, key: Option<&str>) -> Option<String> {
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
