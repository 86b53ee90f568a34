//! Test backends: small HTTP/1.1 servers on loopback that name themselves in `x-backend` (and in
//! the body of `/`), with per-path behaviours:
//!
//! - `?ms=N` on any path: sleep N ms before answering;
//! - `/set-cookie`: sets the application cookie `PrestaShopSession`;
//! - `/echo-headers`: the request headers as a JSON object;
//! - `/echo-body`: the length of the request body;
//! - `/big?n=N`: a body of N bytes of a known pattern ([`pattern`]);
//! - `/ws`: a WebSocket handshake, then echoes frames;
//! - `/fail`: answers 500.
//! - `/echo`: the request body back, with `x-seen-content-length`, `x-seen-transfer-encoding`
//!   and `x-seen-expect` (`-` when absent) telling how it came;
//! - `/stream?frames=N&size=S&gap=MS`: N frames of S bytes of [`pattern`], MS ms apart, with no
//!   length (hyper sends it chunked); `&type=T` gives it that `Content-Type`;
//! - `/page?n=N&type=T&encoding=E&cc=C`: N bytes of [`page_text`] as `Content-Type` T
//!   (`text/html; charset=utf-8` when not given), with `Content-Encoding` E and `Cache-Control`
//!   C when given, `ETag: "page-N"` and `Vary: Origin` (for the compression tests).
//!
//! [`RawBackend`] is a hand-written HTTP/1.1 backend that misbehaves on purpose around
//! keep-alive (closes its connections, or answers until close).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use crate::ws;

pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    /// TCP connections accepted.
    accepted: Arc<AtomicUsize>,
    /// The path of every request received, in order.
    paths: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Backend {
    pub async fn start(name: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind backend");
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::new(AtomicUsize::new(0));
        let paths = Arc::new(Mutex::new(Vec::new()));
        let shared_name: Arc<str> = Arc::from(name);
        let counter = hits.clone();
        let accepted_counter = accepted.clone();
        let seen_paths = paths.clone();
        let task = tokio::spawn(async move {
            // Aborting this task drops the set, which aborts every connection too.
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                accepted_counter.fetch_add(1, Ordering::Relaxed);
                while connections.try_join_next().is_some() {}
                let name = shared_name.clone();
                let hits = counter.clone();
                let paths = seen_paths.clone();
                connections.spawn(async move {
                    let service = service_fn(move |req| {
                        let name = name.clone();
                        let hits = hits.clone();
                        let paths = paths.clone();
                        async move { Ok::<_, Infallible>(respond(&name, &hits, &paths, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Backend {
            name: name.to_string(),
            addr,
            hits,
            accepted,
            paths,
            task,
        }
    }

    /// Requests this backend received.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::Relaxed)
    }

    /// TCP connections this backend accepted.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }

    /// The paths of the requests received so far, in order.
    pub fn paths(&self) -> Vec<String> {
        self.paths.lock().unwrap().clone()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The byte at position `i` of a `/big` body.
pub fn pattern(i: usize) -> u8 {
    b'a' + (i % 26) as u8
}

fn param(query: &str, name: &str) -> Option<u64> {
    param_text(query, name).and_then(|v| v.parse().ok())
}

fn param_text<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The first `n` bytes of an HTML-like page (compressible, not trivially so).
pub fn page_text(n: usize) -> Vec<u8> {
    let mut text = Vec::with_capacity(n + 64);
    let mut i = 0u64;
    while text.len() < n {
        text.extend_from_slice(
            format!(
                "<li class=\"item\" data-id=\"{i}\"><a href=\"/product/{}\">Product {i}</a> {}</li>\n",
                i.wrapping_mul(2_654_435_761) % 100_000,
                i * 37 % 1_000
            )
            .as_bytes(),
        );
        i += 1;
    }
    text.truncate(n);
    text
}

async fn handle(name: &str, hits: &AtomicUsize, req: Request<Incoming>) -> Response<Full<Bytes>> {
    hits.fetch_add(1, Ordering::Relaxed);
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    if let Some(ms) = param(&query, "ms") {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let mut response = match path.as_str() {
        "/set-cookie" => {
            let mut r = Response::new(Full::new(Bytes::from(name.to_string())));
            r.headers_mut().append(
                header::SET_COOKIE,
                HeaderValue::from_str(&format!("PrestaShopSession=sess-{name}; Path=/; HttpOnly"))
                    .unwrap(),
            );
            r
        }
        "/echo-headers" => {
            let mut seen: BTreeMap<String, String> = BTreeMap::new();
            for (k, v) in req.headers() {
                let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                seen.entry(k.as_str().to_string())
                    .and_modify(|e| {
                        e.push_str(", ");
                        e.push_str(&v);
                    })
                    .or_insert(v);
            }
            let mut r = Response::new(Full::new(Bytes::from(serde_json::to_vec(&seen).unwrap())));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        "/fail" => {
            let mut r = Response::new(Full::new(Bytes::from(name.to_string())));
            *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            r
        }
        "/echo-body" => match req.into_body().collect().await {
            Ok(body) => Response::new(Full::new(Bytes::from(body.to_bytes().len().to_string()))),
            Err(e) => {
                let mut r = Response::new(Full::new(Bytes::from(format!("body error: {e}"))));
                *r.status_mut() = StatusCode::BAD_REQUEST;
                r
            }
        },
        "/big" => {
            let n = param(&query, "n").unwrap_or(1024) as usize;
            let body: Vec<u8> = (0..n).map(pattern).collect();
            Response::new(Full::new(Bytes::from(body)))
        }
        "/page" => {
            let n = param(&query, "n").unwrap_or(20_000) as usize;
            let mut r = Response::new(Full::new(Bytes::from(page_text(n))));
            let h = r.headers_mut();
            let content_type = param_text(&query, "type").unwrap_or("text/html; charset=utf-8");
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_str(content_type).unwrap(),
            );
            if let Some(encoding) = param_text(&query, "encoding") {
                h.insert(
                    header::CONTENT_ENCODING,
                    HeaderValue::from_str(encoding).unwrap(),
                );
            }
            if let Some(cc) = param_text(&query, "cc") {
                h.insert(header::CACHE_CONTROL, HeaderValue::from_str(cc).unwrap());
            }
            h.insert(
                header::ETAG,
                HeaderValue::from_str(&format!("\"page-{n}\"")).unwrap(),
            );
            h.insert(header::VARY, HeaderValue::from_static("Origin"));
            r
        }
        "/ws" => websocket(req),
        _ => Response::new(Full::new(Bytes::from(name.to_string()))),
    };
    response
        .headers_mut()
        .insert("x-backend", HeaderValue::from_str(name).unwrap());
    response
}

/// Answers a WebSocket handshake with 101 and echoes frames on the upgraded connection.
fn websocket(mut req: Request<Incoming>) -> Response<Full<Bytes>> {
    let key = req
        .headers()
        .get("sec-websocket-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let upgrade_ok = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let Some(key) = key.filter(|_| upgrade_ok) else {
        let mut r = Response::new(Full::new(Bytes::from("not a websocket handshake")));
        *r.status_mut() = StatusCode::BAD_REQUEST;
        return r;
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            let _ = ws::echo(TokioIo::new(upgraded)).await;
        }
    });
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(
        "sec-websocket-accept",
        HeaderValue::from_str(&ws::accept_key(&key)).unwrap(),
    );
    r
}

type TestBody = BoxBody<Bytes, Infallible>;

/// Records the request, then answers the endpoints that need more than a `Full` body (or the
/// raw request body) here, and the others in [`handle`].
async fn respond(
    name: &str,
    hits: &AtomicUsize,
    paths: &Mutex<Vec<String>>,
    req: Request<Incoming>,
) -> Response<TestBody> {
    paths.lock().unwrap().push(req.uri().path().to_string());
    let mut response = match req.uri().path() {
        "/stream" => {
            hits.fetch_add(1, Ordering::Relaxed);
            stream(req.uri().query().unwrap_or(""))
        }
        "/echo" => {
            hits.fetch_add(1, Ordering::Relaxed);
            echo(req).await
        }
        _ => return handle(name, hits, req).await.map(BodyExt::boxed),
    };
    response
        .headers_mut()
        .insert("x-backend", HeaderValue::from_str(name).unwrap());
    response
}

/// The request body back, and how it was framed.
async fn echo(req: Request<Incoming>) -> Response<TestBody> {
    let seen = |name: header::HeaderName| {
        req.headers()
            .get(name)
            .cloned()
            .unwrap_or(HeaderValue::from_static("-"))
    };
    let length = seen(header::CONTENT_LENGTH);
    let encoding = seen(header::TRANSFER_ENCODING);
    let expect = seen(header::EXPECT);
    let mut r = match req.into_body().collect().await {
        Ok(body) => Response::new(Full::new(body.to_bytes()).boxed()),
        Err(e) => {
            let mut r = Response::new(Full::new(Bytes::from(format!("body error: {e}"))).boxed());
            *r.status_mut() = StatusCode::BAD_REQUEST;
            r
        }
    };
    let h = r.headers_mut();
    h.insert("x-seen-content-length", length);
    h.insert("x-seen-transfer-encoding", encoding);
    h.insert("x-seen-expect", expect);
    r
}

/// `frames` frames of `size` bytes of [`pattern`] (continuing across frames), `gap` ms apart,
/// in a body of unknown length.
fn stream(query: &str) -> Response<TestBody> {
    let frames = param(query, "frames").unwrap_or(4) as usize;
    let size = param(query, "size").unwrap_or(1000) as usize;
    let gap = Duration::from_millis(param(query, "gap").unwrap_or(20));
    let content_type = param_text(query, "type").map(|t| HeaderValue::from_str(t).unwrap());
    let frame =
        move |f: usize| Bytes::from((f * size..(f + 1) * size).map(pattern).collect::<Vec<u8>>());
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    // The first frame is there at once (it goes out with the head), the others follow.
    if frames > 0 {
        let _ = tx.try_send(frame(0));
    }
    tokio::spawn(async move {
        for f in 1..frames {
            tokio::time::sleep(gap).await;
            if tx.send(frame(f)).await.is_err() {
                return;
            }
        }
    });
    let mut response = Response::new(ChannelBody { rx, left: frames }.boxed());
    if let Some(content_type) = content_type {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, content_type);
    }
    response
}

/// A body fed frame by frame through a channel; its length is never known in advance. It
/// says it has ended as soon as its last frame is out, so hyper writes the last chunk with it.
struct ChannelBody {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
    left: usize,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let polled = self.rx.poll_recv(cx);
        if let Poll::Ready(Some(_)) = &polled {
            self.left -= 1;
        }
        polled.map(|b| b.map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }
}

/// How a [`RawBackend`] treats its connections.
#[derive(Debug, Clone, Copy)]
pub enum RawMode {
    /// Answers each request with a length and no `Connection: close`, then closes the
    /// connection this long after the answer (a replica with a short keep-alive timeout).
    CloseAfter(Duration),
    /// Answers the first request of a connection (kept alive, as far as the edge can tell) and
    /// closes the connection without an answer when the next request arrives (the race of a
    /// replica closing an idle connection just as a request comes).
    DropSecondRequest,
    /// Answers with neither a length nor chunking and closes: the body ends at the close.
    CloseDelimited,
    /// Reads each request and closes the connection without a byte of an answer (a replica
    /// dying: its listening socket still accepts while its process goes away).
    CloseUnanswered,
}

/// A hand-written HTTP/1.1 backend for GETs (request bodies are not read). `?ms=N` delays the
/// answer; the body is the backend's name, or `/big`'s [`pattern`] with `?n=N`.
pub struct RawBackend {
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    answered: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl RawBackend {
    pub async fn start(name: &str, mode: RawMode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind raw backend");
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let answered = Arc::new(AtomicUsize::new(0));
        let name: Arc<str> = Arc::from(name);
        let (acc, ans) = (accepted.clone(), answered.clone());
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                acc.fetch_add(1, Ordering::Relaxed);
                while connections.try_join_next().is_some() {}
                let (name, answered) = (name.clone(), ans.clone());
                connections.spawn(raw_connection(stream, name, mode, answered));
            }
        });
        RawBackend {
            addr,
            accepted,
            answered,
            task,
        }
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }

    pub fn answered(&self) -> usize {
        self.answered.load(Ordering::Relaxed)
    }

    /// A routing target for this backend.
    pub fn target(&self, replica: &str) -> berth_model::routing::Target {
        berth_model::routing::Target {
            replica: replica.to_string(),
            release: "r1".to_string(),
            addr: self.addr,
            draining: false,
        }
    }
}

impl Drop for RawBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn raw_connection(
    mut stream: TcpStream,
    name: Arc<str>,
    mode: RawMode,
    answered: Arc<AtomicUsize>,
) {
    let mut buf = Vec::new();
    let mut served = 0;
    loop {
        // One request head (no bodies here).
        let end = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => return,
            }
            if matches!(mode, RawMode::CloseUnanswered) {
                return;
            }
            if served > 0 && matches!(mode, RawMode::DropSecondRequest) {
                // A request on a connection this backend considers done: closed unanswered.
                return;
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        let target = head.split_whitespace().nth(1).unwrap_or("/").to_string();
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        if let Some(ms) = param(query, "ms") {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        let body: Vec<u8> = if path == "/big" {
            (0..param(query, "n").unwrap_or(1024) as usize)
                .map(pattern)
                .collect()
        } else {
            name.as_bytes().to_vec()
        };
        let framing = match mode {
            RawMode::CloseDelimited => String::new(),
            _ => format!("content-length: {}\r\n", body.len()),
        };
        let mut out = format!("HTTP/1.1 200 OK\r\nx-backend: {name}\r\n{framing}\r\n").into_bytes();
        out.extend_from_slice(&body);
        if stream.write_all(&out).await.is_err() {
            return;
        }
        answered.fetch_add(1, Ordering::Relaxed);
        served += 1;
        match mode {
            RawMode::CloseAfter(delay) => {
                tokio::time::sleep(delay).await;
                return;
            }
            RawMode::CloseDelimited | RawMode::CloseUnanswered => return,
            RawMode::DropSecondRequest => {}
        }
    }
}
