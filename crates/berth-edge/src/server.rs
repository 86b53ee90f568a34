//! Serving: the public listeners (HTTP/1.1 with keep-alive, HTTP/2 with prior knowledge,
//! upgrades), slow-client and idle limits per connection, graceful shutdown; and the admin
//! listener (`/metrics`, `/healthz`).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::errors::{EdgeError, ErrorKind};
use crate::proxy::{Downstream, Edge};

/// When the edge stops, a connection idle this long is closed (busy ones close after their
/// next response): room for a request already on its way.
pub(crate) const DRAIN_IDLE: Duration = Duration::from_secs(1);

/// Counts open client connections, to wait for them at shutdown.
#[derive(Default)]
pub struct Connections {
    open: AtomicUsize,
}

impl Connections {
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

struct ConnectionGuard(Arc<Connections>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A client address's slot under `max_connections_per_ip`, given back when the connection ends.
struct AddressSlot {
    edge: Arc<Edge>,
    ip: std::net::IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        self.edge.connections_per_ip.close(self.ip);
    }
}

/// Takes a connection slot for `client` unless it is over `max_connections_per_ip`. Clients
/// in `limit_exempt` and trusted proxies (whose connections carry many clients) take none.
fn address_slot(edge: &Arc<Edge>, client: SocketAddr) -> Result<Option<AddressSlot>, ()> {
    let ip = client.ip().to_canonical();
    let max = edge.connection_limit(ip);
    if max == 0 {
        return Ok(None);
    }
    if edge.connections_per_ip.open(ip, max) {
        Ok(Some(AddressSlot {
            edge: edge.clone(),
            ip,
        }))
    } else {
        Err(())
    }
}

/// Accepts on one listening socket (this worker's copy) until shutdown and serves each
/// connection on this worker's runtime, start to end: a connection over its address's limit
/// is closed unanswered; a TLS listener's connections get their handshake here.
pub async fn serve_public(
    edge: Arc<Edge>,
    listener: TcpListener,
    tls: bool,
    connections: Arc<Connections>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => break,
        };
        let (stream, client) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors and the like: wait a little, never spin.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let slot = match address_slot(&edge, client) {
            Ok(slot) => slot,
            Err(()) => {
                // Over its connection limit: closed at once, unanswered (as nginx's limit_conn
                // does for HTTP/1 it answers 503; a bare close costs less under a flood).
                edge.metrics.blocked("connections");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        connections.open.fetch_add(1, Ordering::Relaxed);
        edge.metrics.connections.inc();
        let held = Held {
            _guard: ConnectionGuard(connections.clone()),
            _slot: slot,
        };
        // Two task types: a plain connection's task is sized for the plain path only, never
        // for a TLS handshake or HTTP/2 (a task is as large as its largest state, for as long
        // as the connection lives).
        if tls {
            tokio::spawn(tls_connection(
                edge.clone(),
                stream,
                client,
                shutdown.clone(),
                held,
            ));
        } else {
            tokio::spawn(plain_connection(
                edge.clone(),
                stream,
                client,
                shutdown.clone(),
                held,
            ));
        }
    }
}

/// What an open client connection holds besides its own state, given back when it ends.
pub(crate) struct Held {
    _guard: ConnectionGuard,
    _slot: Option<AddressSlot>,
}

/// A connection on a plain listener, start to end (the task [`serve_public`] spawns).
pub(crate) async fn plain_connection(
    edge: Arc<Edge>,
    stream: tokio::net::TcpStream,
    client: SocketAddr,
    shutdown: watch::Receiver<bool>,
    held: Held,
) {
    crate::http1::serve_connection(edge.clone(), stream, client, shutdown).await;
    edge.metrics.connections.dec();
    drop(held);
}

/// A connection on a TLS listener, start to end.
async fn tls_connection(
    edge: Arc<Edge>,
    stream: tokio::net::TcpStream,
    client: SocketAddr,
    shutdown: watch::Receiver<bool>,
    held: Held,
) {
    serve_tls(edge.clone(), stream, client, shutdown).await;
    edge.metrics.connections.dec();
    drop(held);
}

/// A connection on a TLS listener: the handshake (within `header_timeout`, else dropped), then
/// HTTP/2 when the client chose `h2` by ALPN, else HTTP/1.x.
async fn serve_tls(
    edge: Arc<Edge>,
    stream: tokio::net::TcpStream,
    client: SocketAddr,
    shutdown: watch::Receiver<bool>,
) {
    let Some(config) = edge.tls_config.clone() else {
        return;
    };
    let timeout = edge.connection_limits().header_timeout;
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    // Boxed: the handshake's state is large and over once it is done.
    let accepting = Box::pin(acceptor.accept(stream));
    let stream = match tokio::time::timeout(timeout, accepting).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            tracing::debug!("TLS handshake with {client} failed: {e}");
            return;
        }
        Err(_) => return,
    };
    edge.metrics.tls_handshakes.inc();
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    if h2 {
        let downstream = Downstream {
            addr: client,
            secure: true,
        };
        // Boxed: hyper's HTTP/2 connection is large; an HTTP/1 connection never needs room
        // for it.
        Box::pin(serve_h2(edge, stream, downstream, shutdown)).await;
    } else {
        crate::http1::serve_connection(edge, stream, client, shutdown).await;
    }
}

/// HTTP/2 (prior knowledge) on a client connection, served by hyper: settings of the table in
/// use, an idle limit, and a graceful end when the edge stops.
pub(crate) async fn serve_h2<I>(
    edge: Arc<Edge>,
    stream: I,
    client: Downstream,
    mut shutdown: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let settings = edge.connection_limits();
    let (idle_timeout, header_timeout) = (settings.idle_timeout, settings.header_timeout);
    let check_every = idle_timeout
        .min(header_timeout)
        .max(Duration::from_millis(100));
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_header_list_size(settings.max_header.min(u32::MAX as u64) as u32)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let activity = Arc::new(Activity::new());
    // Set when the edge stops: each further response closes its connection, so a client never
    // sends a request on a connection the edge is closing (the keep-alive race).
    let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let io = TokioIo::new(TrackedIo {
        inner: stream,
        activity: activity.clone(),
    });
    let activity_for_service = activity.clone();
    let service = service_fn(move |req: Request<Incoming>| {
        let edge = edge.clone();
        let activity = activity_for_service.clone();
        async move {
            activity.request_started();
            let req = req.map(|body| H2RequestBody::new(body, idle_timeout));
            let response = Box::pin(edge.handle(req, client)).await;
            activity.request_answered();
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    // One timer per connection, armed for when it would have been idle long enough (a
    // connection is idle when nothing is in flight and no byte moved).
    let idle_check = tokio::time::sleep(check_every);
    tokio::pin!(idle_check);
    let mut closing = false;
    loop {
        tokio::select! {
            _ = connection.as_mut() => break,
            _ = shutdown.changed(), if !draining.load(Ordering::Relaxed) => {
                draining.store(true, Ordering::Relaxed);
                idle_check.as_mut().reset(tokio::time::Instant::now() + DRAIN_IDLE.min(idle_timeout));
            }
            _ = &mut idle_check, if !closing => {
                let limit = if draining.load(Ordering::Relaxed) {
                    DRAIN_IDLE.min(idle_timeout)
                } else {
                    idle_timeout
                };
                let idle_for = activity.idle_for();
                let idle = !activity.busy();
                if idle && activity.head_pending_for().is_some_and(|t| t >= header_timeout) {
                    // A client that started a request and has not finished its headers in
                    // time (slowloris): dropped without an answer, like nginx does.
                    break;
                }
                if idle && idle_for >= limit {
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                } else {
                    let wait = limit.saturating_sub(idle_for).min(check_every).max(Duration::from_millis(100));
                    idle_check.as_mut().reset(tokio::time::Instant::now() + wait);
                }
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// An HTTP/2 request's body as the proxy sees it: hyper's errors are the client's, and a
    /// client that sends nothing of its body for `idle_timeout` gets 408 (as over HTTP/1).
    struct H2RequestBody {
        #[pin]
        inner: Incoming,
        idle: Duration,
        timer: Option<Pin<Box<tokio::time::Sleep>>>,
    }
}

impl H2RequestBody {
    fn new(inner: Incoming, idle: Duration) -> Self {
        Self {
            inner,
            idle,
            timer: None,
        }
    }
}

impl Body for H2RequestBody {
    type Data = Bytes;
    type Error = EdgeError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, EdgeError>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(frame) => {
                *this.timer = None;
                Poll::Ready(frame.map(|f| {
                    f.map_err(|e| {
                        EdgeError::new(ErrorKind::ClientClosed)
                            .context(format!("reading the request body: {e}"))
                    })
                }))
            }
            Poll::Pending => {
                let idle = *this.idle;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        Poll::Ready(Some(Err(EdgeError::new(ErrorKind::ClientTimeout))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// When a connection last moved a byte, and since when it has been receiving a request head
/// that has not been dispatched yet.
struct Activity {
    started: Instant,
    last_ms: AtomicU64,
    /// 0: no head pending; else milliseconds since `started` + 1 when its first byte came.
    head_since_ms: AtomicU64,
    /// Requests in flight on this connection (bytes read meanwhile are bodies, not heads).
    in_request: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            last_ms: AtomicU64::new(0),
            head_since_ms: AtomicU64::new(0),
            in_request: AtomicUsize::new(0),
        }
    }
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
    fn touch(&self) {
        self.last_ms.store(self.now_ms(), Ordering::Relaxed);
    }
    fn bytes_read(&self) {
        let now = self.now_ms();
        self.last_ms.store(now, Ordering::Relaxed);
        if self.in_request.load(Ordering::Relaxed) == 0 {
            let _ = self.head_since_ms.compare_exchange(
                0,
                now + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }
    fn request_started(&self) {
        self.in_request.fetch_add(1, Ordering::Relaxed);
        self.head_since_ms.store(0, Ordering::Relaxed);
    }
    fn request_answered(&self) {
        self.in_request.fetch_sub(1, Ordering::Relaxed);
    }
    fn busy(&self) -> bool {
        self.in_request.load(Ordering::Relaxed) > 0
    }
    fn head_pending_for(&self) -> Option<Duration> {
        match self.head_since_ms.load(Ordering::Relaxed) {
            0 => None,
            since => Some(Duration::from_millis(
                self.now_ms().saturating_sub(since - 1),
            )),
        }
    }
    fn idle_for(&self) -> Duration {
        let last = self.last_ms.load(Ordering::Relaxed);
        Duration::from_millis((self.started.elapsed().as_millis() as u64).saturating_sub(last))
    }
}

pin_project_lite::pin_project! {
    /// A stream that records its last activity.
    struct TrackedIo<I> {
        #[pin]
        inner: I,
        activity: Arc<Activity>,
    }
}

impl<I: AsyncRead> AsyncRead for TrackedIo<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let polled = this.inner.poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.bytes_read();
        }
        polled
    }
}

impl<I: AsyncWrite> AsyncWrite for TrackedIo<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        let polled = this.inner.poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &polled {
            if *n > 0 {
                this.activity.touch();
            }
        }
        polled
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        let polled = this.inner.poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &polled {
            if *n > 0 {
                this.activity.touch();
            }
        }
        polled
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

/// The admin listener: `/metrics` (Prometheus text, the daemon's series added), `/healthz`,
/// `/table` (the routing table in use), `/api/metrics`, `/api/status`, `/api/deploys`,
/// `/api/releases` and the dashboard `/dashboard/*` (forwarded to the daemon, see
/// [`crate::observe`]), `/dashboard/login` (the token, off loopback).
pub async fn serve_admin(
    edge: Arc<Edge>,
    listener: TcpListener,
    observe: Arc<crate::observe::Observe>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => break,
        };
        let Ok((stream, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let edge = edge.clone();
        let observe = observe.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let edge = edge.clone();
                let observe = observe.clone();
                async move { Ok::<_, std::convert::Infallible>(admin(&edge, &observe, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// A 303 to `location` (setting `cookie` when given).
fn redirect(location: &'static str, cookie: Option<String>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SEE_OTHER;
    let headers = response.headers_mut();
    headers.insert(
        hyper::header::LOCATION,
        hyper::header::HeaderValue::from_static(location),
    );
    headers.insert(
        hyper::header::REFERRER_POLICY,
        hyper::header::HeaderValue::from_static("no-referrer"),
    );
    if let Some(value) = cookie.and_then(|c| hyper::header::HeaderValue::from_str(&c).ok()) {
        headers.insert(hyper::header::SET_COOKIE, value);
    }
    response
}

/// Whether a request to the admin listener names it by address or as `localhost`. Any other
/// name means a page in a browser reached it through DNS rebinding (its own name resolved
/// to 127.0.0.1): such a page must not read the metrics or the replicas' addresses.
fn admin_host_allowed(req: &Request<Incoming>) -> bool {
    let Some(host) = req.headers().get(hyper::header::HOST) else {
        return true;
    };
    let Ok(host) = host.to_str() else {
        return false;
    };
    let name = match host.parse::<hyper::http::uri::Authority>() {
        Ok(authority) => authority.host().to_string(),
        Err(_) => return false,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
}

async fn admin(
    edge: &Edge,
    observe: &crate::observe::Observe,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let authorization = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    let cookies: Vec<&[u8]> = req
        .headers()
        .get_all(hyper::header::COOKIE)
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    use crate::observe::Access;
    let access = if admin_host_allowed(&req) {
        observe.access(req.uri().path(), req.uri().query(), authorization, &cookies)
    } else {
        Access::Local
    };
    let path = match &access {
        _ if !admin_host_allowed(&req) => "forbidden host",
        Access::Unauthorized => "unauthorized",
        Access::Redirect { location, cookie } => return redirect(location, cookie.clone()),
        Access::LoginForm { wrong } => {
            let mut response =
                Response::new(Full::new(Bytes::from(crate::observe::login_page(*wrong))));
            if *wrong {
                *response.status_mut() = StatusCode::UNAUTHORIZED;
            }
            let headers = response.headers_mut();
            headers.insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/html; charset=utf-8"),
            );
            headers.insert(
                hyper::header::CONTENT_SECURITY_POLICY,
                hyper::header::HeaderValue::from_static(
                    "default-src 'none'; form-action 'self'; frame-ancestors 'none'",
                ),
            );
            headers.insert(
                hyper::header::REFERRER_POLICY,
                hyper::header::HeaderValue::from_static("no-referrer"),
            );
            return response;
        }
        Access::Session { logs } => {
            let mut response =
                Response::new(Full::new(Bytes::from(format!("{{\"logs\":{logs}}}\n"))));
            let headers = response.headers_mut();
            headers.insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            );
            headers.insert(
                hyper::header::CACHE_CONTROL,
                hyper::header::HeaderValue::from_static("no-store"),
            );
            return response;
        }
        Access::Forward(_) | Access::Local => req.uri().path(),
    };
    if let Access::Forward(target) = &access {
        let mut response =
            match crate::observe::get(&observe.socket, target, crate::observe::FORWARD_TIMEOUT)
                .await
            {
                Ok(answer) => {
                    let mut response = Response::new(Full::new(answer.body));
                    *response.status_mut() =
                        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
                    for (name, value) in answer.headers {
                        response.headers_mut().insert(name, value);
                    }
                    response
                }
                Err(e) => {
                    let mut response = Response::new(Full::new(Bytes::from(
                        serde_json::json!({ "error": e }).to_string(),
                    )));
                    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                    response
                }
            };
        let headers = response.headers_mut();
        headers
            .entry(hyper::header::CONTENT_TYPE)
            .or_insert(hyper::header::HeaderValue::from_static("application/json"));
        headers.insert(
            hyper::header::X_CONTENT_TYPE_OPTIONS,
            hyper::header::HeaderValue::from_static("nosniff"),
        );
        return response;
    }
    let (status, content_type, body) = match path {
        "forbidden host" => (
            StatusCode::FORBIDDEN,
            "text/plain",
            "the admin listener answers only to an IP address or localhost\n".to_string(),
        ),
        "unauthorized" => (
            StatusCode::UNAUTHORIZED,
            "text/plain",
            "this admin listener is not on loopback: send Authorization: Bearer TOKEN (the token is in .berth/ENV/edge/admin.token)\n".to_string(),
        ),
        "/metrics" => {
            edge.refresh_upstream_gauges();
            let own = edge.metrics.encode();
            // The daemon's newest values, when it answers in time (else the edge's own only);
            // not for the daemon's own collector, which asks for `?edge_only=1`.
            let edge_only = req.uri().query() == Some("edge_only=1");
            let daemon = if edge_only {
                String::new()
            } else {
                match crate::observe::get(
                    &observe.socket,
                    "/v1/metrics/prometheus",
                    crate::observe::METRICS_WAIT,
                )
                .await
                {
                    Ok(answer) if answer.status == 200 => {
                        String::from_utf8(answer.body.to_vec()).unwrap_or_default()
                    }
                    _ => String::new(),
                }
            };
            (
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                crate::observe::merge_metrics(own, &daemon),
            )
        }
        "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_string()),
        "/table" => {
            // Every local user can read this listener: the test route's key stays out of it.
            let mut table = edge.table();
            if table.test_key.is_some() {
                table.test_key = Some("(hidden)".into());
            }
            (
                StatusCode::OK,
                "application/json",
                serde_json::to_string_pretty(&table).unwrap_or_default(),
            )
        }
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_string(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, v);
    }
    response
}

#[cfg(test)]
mod idle_cost {
    use super::*;

    /// A plain connection's task holds its future for as long as it is open: it must not be
    /// sized for the TLS handshake or HTTP/2 (it was, when one task type served both: ~6 KiB
    /// per idle connection in a release build). Measured: 896 bytes plain, 3.4 KiB TLS in a
    /// debug build. The bounds catch a regression.
    #[tokio::test]
    async fn a_plain_connections_task_is_sized_for_the_plain_path_only() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let edge = Edge::new(Default::default(), None);
        let (_stop, stopping) = watch::channel(false);
        let held = || Held {
            _guard: ConnectionGuard(Arc::new(Connections::default())),
            _slot: None,
        };
        let plain = plain_connection(
            edge.clone(),
            tokio::net::TcpStream::connect(addr).await.unwrap(),
            addr,
            stopping.clone(),
            held(),
        );
        let tls = tls_connection(
            edge.clone(),
            tokio::net::TcpStream::connect(addr).await.unwrap(),
            addr,
            stopping.clone(),
            held(),
        );
        let plain_size = std::mem::size_of_val(&plain);
        let tls_size = std::mem::size_of_val(&tls);
        eprintln!("plain connection future: {plain_size} bytes; TLS: {tls_size} bytes");
        assert!(
            plain_size <= 1152,
            "a plain connection's future is {plain_size} bytes"
        );
        assert!(
            tls_size <= 4096,
            "a TLS connection's future is {tls_size} bytes"
        );
    }
}
