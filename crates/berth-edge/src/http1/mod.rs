//! HTTP/1.x toward clients, served by the edge itself rather than by hyper's server.
//!
//! Why: a kept-alive connection waiting for its next request should cost no more than its
//! socket. hyper keeps a read and a write buffer (8 KiB each) and its connection state for the
//! life of every connection (~35 KiB each in the edge's measurements); here an idle connection
//! holds its socket halves and a small task, and a buffer exists only while a request is read
//! (nginx does the same). Requests are parsed with `httparse`, handed to the proxy as
//! `http::Request`s whose body reads straight from the socket, and answers are written with
//! the framing the client can read (length, chunked, or until close for HTTP/1.0).
//!
//! What a connection does, in order: wait for a request's first byte (`idle_timeout`; a
//! stopping edge waits at most 1 s more), read its head (`header_timeout` from the first byte,
//! else dropped unanswered: slowloris), refuse bad heads (400/431, then close), answer
//! `Expect: 100-continue`, proxy, write the answer (each write bounded by `idle_timeout`), and
//! go on only if the request body was read to its end and nobody said `close`. HTTP/2 prior
//! knowledge is handed to hyper's HTTP/2 server; `101 Switching Protocols` turns the
//! connection into a tunnel to the replica.

mod body;
pub mod head;
#[cfg(test)]
mod props;
pub mod transport;

use std::future::poll_fn;
use std::future::Future;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Body;

use hyper::{Method, Request, Response, StatusCode, Version};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use body::BodyReader;
pub use body::RequestBody;
pub(crate) use body::{chunk_size_line, Decoder, Step, LAST_CHUNK};
use head::{Framing, RequestHead};

use crate::errors::EdgeError;
use crate::proxy::{Downstream, Edge, ProxyBody, Tunnel};
use crate::server::DRAIN_IDLE;
pub use transport::{ClientStream, TlsClient};

/// The HTTP/2 connection preface's first line.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Bytes asked of the socket per read of a head.
const HEAD_READ: usize = 4096;
/// How long a closing connection reads and discards what the client still sends, so the
/// client reads the answer before the close (instead of a reset that could discard it).
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 1 << 20;

/// Serves one client connection until it closes, times out, or the edge stops.
///
/// The connection's task holds only what [`Conn`] keeps and the wait for the next request
/// (its socket's readiness, the idle timer, the shutdown signal): a request's states (its head
/// being read, the proxy, the answer being written) live in one box made per request, so an
/// idle keep-alive connection holds no room for them.
pub async fn serve_connection<S: ClientStream>(
    edge: Arc<Edge>,
    stream: S,
    client: SocketAddr,
    shutdown: watch::Receiver<bool>,
) {
    let downstream = Downstream {
        addr: client,
        secure: S::SECURE,
    };
    let settings = edge.connection_limits();
    let limits = Limits {
        max_head: (settings.max_header as usize).max(1024) + 1024,
        max_body: settings.max_body,
        idle: settings.idle_timeout,
        header: settings.header_timeout,
    };
    let (read, write) = stream.split();
    let draining = *shutdown.borrow();
    let mut conn = Conn::<S> {
        edge,
        read: Some(read),
        write: Some(write),
        buf: BytesMut::new(),
        draining,
        shutdown,
        first: true,
        downstream,
        limits,
    };
    // One idle timer for the connection's life, re-armed lazily: a request only notes when it
    // ended, and the timer, when it fires early, is set again for what is left. (A timer made
    // and cancelled per request was a measurable share of a small request's CPU.)
    let idle_timer = tokio::time::sleep(limits.idle);
    tokio::pin!(idle_timer);
    let mut idle_since = Instant::now();
    loop {
        let Some(reader) = conn.read.as_mut() else {
            return;
        };
        if conn.buf.is_empty() {
            // Idle: nothing but the socket is kept.
            conn.buf = BytesMut::new();
            let waited = wait_for_request::<S>(
                reader,
                &mut conn.buf,
                &mut conn.shutdown,
                &mut conn.draining,
                (idle_since, conn.limits.idle),
                idle_timer.as_mut(),
            );
            if !waited.await {
                return;
            }
        }
        if !Box::pin(serve_request(&mut conn)).await {
            return;
        }
        idle_since = Instant::now();
    }
}

/// What a client connection keeps between its requests.
struct Conn<S: ClientStream> {
    edge: Arc<Edge>,
    /// `None` once handed on (a body being read, HTTP/2, a tunnel, closing).
    read: Option<S::Read>,
    write: Option<S::Write>,
    /// Bytes read and not yet used (the next request's first bytes); empty while idle.
    buf: BytesMut,
    shutdown: watch::Receiver<bool>,
    /// The edge is stopping: the connection closes after its answer in flight.
    draining: bool,
    /// No request served yet (an HTTP/2 preface can only come first).
    first: bool,
    downstream: Downstream,
    limits: Limits,
}

/// Reads one request (its first bytes are in `conn.buf`), proxies it and writes the answer.
/// True: the connection can carry another request.
async fn serve_request<S: ClientStream>(conn: &mut Conn<S>) -> bool {
    let limits = conn.limits;
    // From the first wait for more of the head (a head that came whole costs no timer).
    let mut head_deadline = None;
    let head = loop {
        let buf = &mut conn.buf;
        if conn.first && H2_PREFACE.starts_with(&buf[..buf.len().min(H2_PREFACE.len())]) {
            if buf.len() >= H2_PREFACE.len() {
                let (Some(reader), Some(write)) = (conn.read.take(), conn.write.take()) else {
                    return false;
                };
                if let Some(stream) = S::unsplit(reader, write) {
                    let io = Rewind::new(std::mem::take(buf).freeze(), stream);
                    let (edge, shutdown) = (conn.edge.clone(), conn.shutdown.clone());
                    // Boxed: hyper's HTTP/2 connection is large, and rare here.
                    Box::pin(crate::server::serve_h2(edge, io, conn.downstream, shutdown)).await;
                }
                return false;
            }
        } else {
            match head::parse_request(buf, limits.max_head) {
                Ok(Some(head)) => break head,
                Ok(None) => {}
                Err(error) => {
                    if let Some(mut write) = conn.write.take() {
                        Box::pin(refuse(&conn.edge, &mut write, error, limits.idle)).await;
                        Box::pin(linger(write, conn.read.take())).await;
                    }
                    return false;
                }
            }
        }
        let Some(reader) = conn.read.as_mut() else {
            return false;
        };
        buf.reserve(HEAD_READ);
        let deadline = || *head_deadline.get_or_insert_with(|| Instant::now() + limits.header);
        match within(deadline, reader.read_buf(buf)).await {
            Some(Ok(n)) if n > 0 => {}
            // Closed, failed, or too slow to send a head (slowloris): dropped unanswered.
            _ => return false,
        }
    };
    conn.first = false;
    let Some(mut write) = conn.write.take() else {
        return false;
    };

    let RequestHead {
        parts,
        framing,
        mut keep_alive,
        expect_continue,
    } = head;
    let method = parts.method.clone();
    let version = parts.version;
    let upgrade = crate::proxy::is_upgrade(&parts.headers);
    let over_limit = matches!(framing, Framing::Length(n) if n > limits.max_body);
    if expect_continue
        && framing.has_body()
        && !over_limit
        && write_all(&mut write, b"HTTP/1.1 100 Continue\r\n\r\n", limits.idle)
            .await
            .is_err()
    {
        return false;
    }
    let (body, mut home) = if !framing.has_body() {
        (RequestBody::empty(), None)
    } else {
        let Some(reader) = conn.read.take() else {
            return false;
        };
        let reader = BodyReader::new(reader, std::mem::take(&mut conn.buf), framing, limits.idle);
        let (tx, rx) = oneshot::channel();
        (RequestBody::streaming(reader, framing, tx), Some(rx))
    };
    let response = conn
        .edge
        .clone()
        .handle(Request::from_parts(parts, body), conn.downstream)
        .await;

    conn.draining |= *conn.shutdown.borrow();
    if conn.draining || head::says_close(response.headers()) {
        keep_alive = false;
    }
    // A body handed back unread already: the connection cannot carry another request.
    if let Some(rx) = home.as_mut() {
        match rx.try_recv() {
            Ok(reader) => {
                keep_alive &= reader.is_complete();
                conn.read = Some(reader.io);
                conn.buf = reader.buf;
                home = None;
            }
            Err(oneshot::error::TryRecvError::Closed) => keep_alive = false,
            Err(oneshot::error::TryRecvError::Empty) => {}
        }
    }
    let tunnel = if upgrade && response.status() == StatusCode::SWITCHING_PROTOCOLS {
        response.extensions().get::<Tunnel>().cloned()
    } else {
        None
    };
    let written = write_response(
        &mut write,
        response,
        &method,
        version,
        keep_alive,
        limits.idle,
    )
    .await;
    match written {
        Ok(reusable) => keep_alive &= reusable,
        Err(_) => return false,
    }
    if let Some(tunnel) = tunnel {
        if let Some(reader) = conn.read.take() {
            let early = std::mem::take(&mut conn.buf);
            Box::pin(run_tunnel::<S>(reader, write, early, tunnel)).await;
        }
        return false;
    }
    if let Some(rx) = home.take() {
        // The proxy may still be sending the body upstream after the answer came back.
        match tokio::time::timeout(DRAIN_IDLE, rx).await {
            Ok(Ok(reader)) => {
                keep_alive &= reader.is_complete();
                conn.read = Some(reader.io);
                conn.buf = reader.buf;
            }
            _ => keep_alive = false,
        }
    }
    if !keep_alive {
        Box::pin(linger(write, conn.read.take())).await;
        return false;
    }
    conn.write = Some(write);
    true
}

#[derive(Clone, Copy)]
struct Limits {
    max_head: usize,
    max_body: u64,
    idle: Duration,
    header: Duration,
}

/// Waits until the client sends something. False: the connection should close (idle for
/// `idle` since `since`, or the edge is stopping and no request came within [`DRAIN_IDLE`]).
/// `timer` is the connection's idle timer: set for the deadline or earlier, it is re-armed
/// when it fires early.
async fn wait_for_request<S: ClientStream>(
    reader: &mut S::Read,
    buf: &mut BytesMut,
    shutdown: &mut watch::Receiver<bool>,
    draining: &mut bool,
    (since, idle): (Instant, Duration),
    mut timer: Pin<&mut tokio::time::Sleep>,
) -> bool {
    let mut deadline = if *draining {
        Instant::now() + DRAIN_IDLE.min(idle)
    } else {
        since + idle
    };
    if timer.deadline() > deadline {
        timer.as_mut().reset(deadline);
    }
    loop {
        tokio::select! {
            biased;
            ready = S::wait_readable(reader, buf) => return ready.unwrap_or(false),
            () = timer.as_mut() => {
                if Instant::now() >= deadline {
                    return false;
                }
                timer.as_mut().reset(deadline);
            }
            _ = shutdown.changed(), if !*draining => {
                *draining = true;
                deadline = deadline.min(Instant::now() + DRAIN_IDLE);
                timer.as_mut().reset(deadline);
            }
        }
    }
}

/// `fut`, unless it is not done by the time `deadline()` says (None). The timer is made only
/// when `fut` is not ready at once, as most reads and writes of a small request are: those
/// cost no timer and no clock read.
pub(crate) async fn within<F: Future>(
    deadline: impl FnOnce() -> Instant,
    fut: F,
) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    let mut timer = std::pin::pin!(None::<tokio::time::Sleep>);
    let mut deadline = Some(deadline);
    poll_fn(|cx| {
        if let Poll::Ready(out) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        if let Some(deadline) = deadline.take() {
            timer.set(Some(tokio::time::sleep_until(deadline())));
        }
        match timer.as_mut().as_pin_mut() {
            Some(timer) => timer.poll(cx).map(|()| None),
            None => Poll::Pending,
        }
    })
    .await
}

/// Answers a head that cannot be served.
async fn refuse<W: AsyncWrite + Unpin>(
    edge: &Edge,
    write: &mut W,
    error: EdgeError,
    idle: Duration,
) {
    tracing::debug!("refused a request head: {error}");
    let page = error.page("-");
    let (mut parts, body) = page.into_parts();
    edge.add_default_headers(&mut parts.headers);
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut out = Vec::with_capacity(512 + body.len());
    let length = format!("content-length: {}\r\n", body.len());
    head::write_response_head(
        &mut out,
        parts.status,
        &parts.headers,
        Some(length.as_bytes()),
        Some("close"),
        false,
    );
    out.extend_from_slice(&body);
    let _ = write_all(write, &out, idle).await;
}

/// How an answer's body is delimited on the wire.
enum OutFraming {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

/// Writes `response` to the client. Ok(true): the connection can carry another request.
async fn write_response<W: AsyncWrite + Unpin>(
    write: &mut W,
    response: Response<ProxyBody>,
    method: &Method,
    version: Version,
    keep_alive: bool,
    idle: Duration,
) -> std::io::Result<bool> {
    let (parts, mut body) = response.into_parts();
    let status = parts.status;
    let mut reusable = keep_alive;
    let mut length_line = None;
    let framing = if status == StatusCode::SWITCHING_PROTOCOLS {
        reusable = false;
        OutFraming::None
    } else if head::has_no_body(status, method) {
        OutFraming::None
    } else if let Some(n) = body.size_hint().exact() {
        length_line = Some(LengthLine::new(n));
        OutFraming::Length(n)
    } else if version == Version::HTTP_11 {
        OutFraming::Chunked
    } else {
        reusable = false;
        OutFraming::UntilClose
    };
    let framing_line = match (&framing, &length_line) {
        (_, Some(line)) => Some(line.as_bytes()),
        (OutFraming::Chunked, None) => Some(&b"transfer-encoding: chunked\r\n"[..]),
        _ => None,
    };
    let connection = if status == StatusCode::SWITCHING_PROTOCOLS {
        None
    } else if !reusable {
        Some("close")
    } else if version == Version::HTTP_10 {
        Some("keep-alive")
    } else {
        None
    };
    // Room for the head and a small body after it (sent with it, in one write).
    let mut head_bytes = Vec::with_capacity(1024 + SMALL_BODY);
    head::write_response_head(
        &mut head_bytes,
        status,
        &parts.headers,
        framing_line,
        connection,
        matches!(framing, OutFraming::None),
    );
    drop(parts);
    if matches!(framing, OutFraming::None) {
        // Ends the body now (its access log line is written on drop).
        drop(body);
        write_all(write, &head_bytes, idle).await?;
        return Ok(reusable);
    }
    let mut out = Outgoing::new(framing, head_bytes);
    loop {
        // Gather what the body has ready now, up to the read-ahead limit.
        while !out.ended && out.queued < READ_AHEAD {
            match poll_fn(|cx| {
                Poll::Ready(match Pin::new(&mut body).poll_frame(cx) {
                    Poll::Ready(frame) => Some(frame),
                    Poll::Pending => None,
                })
            })
            .await
            {
                Some(frame) => out.take(frame),
                None => break,
            }
        }
        if out.is_empty() {
            if out.ended {
                flush_within(write, idle).await?;
                return Ok(reusable && out.complete);
            }
            // Nothing to send: what is pending went out, now wait for the replica.
            let frame = body.frame().await;
            out.take(frame);
            continue;
        }
        // A write that does not wait; only when the client's socket is full is a timer set.
        let wrote = {
            let mut slices = [IoSlice::new(&[]); 16];
            let count = out.slices(&mut slices);
            poll_fn(|cx| {
                Poll::Ready(
                    match Pin::new(&mut *write).poll_write_vectored(cx, &slices[..count]) {
                        Poll::Ready(wrote) => Some(wrote),
                        Poll::Pending => None,
                    },
                )
            })
            .await
        };
        let event = match wrote {
            Some(wrote) => Wake::Wrote(wrote),
            None => {
                // The client's socket is full: read ahead from the replica meanwhile (bounded),
                // so reading and writing overlap.
                let read_ahead = !out.ended && out.queued < READ_AHEAD;
                let sleep = tokio::time::sleep(idle);
                tokio::pin!(sleep);
                let mut slices = [IoSlice::new(&[]); 16];
                let count = out.slices(&mut slices);
                poll_fn(|cx| {
                    if let Poll::Ready(wrote) =
                        Pin::new(&mut *write).poll_write_vectored(cx, &slices[..count])
                    {
                        return Poll::Ready(Wake::Wrote(wrote));
                    }
                    if read_ahead {
                        if let Poll::Ready(frame) = Pin::new(&mut body).poll_frame(cx) {
                            return Poll::Ready(Wake::Frame(frame));
                        }
                    }
                    match sleep.as_mut().poll(cx) {
                        Poll::Ready(()) => Poll::Ready(Wake::TimedOut),
                        Poll::Pending => Poll::Pending,
                    }
                })
                .await
            }
        };
        match event {
            Wake::Wrote(Ok(0)) => return Err(std::io::ErrorKind::WriteZero.into()),
            Wake::Wrote(Ok(n)) => out.advance(n),
            Wake::Wrote(Err(e)) => return Err(e),
            Wake::Frame(frame) => out.take(frame),
            Wake::TimedOut => return Err(std::io::ErrorKind::TimedOut.into()),
        }
    }
}

/// What ended a wait of [`write_response`] on a full socket.
enum Wake {
    Wrote(std::io::Result<usize>),
    Frame(Option<Result<hyper::body::Frame<Bytes>, EdgeError>>),
    TimedOut,
}

/// Pushes out what the transport buffered (TLS records); a no-op on plain TCP.
async fn flush_within<W: AsyncWrite + Unpin>(write: &mut W, idle: Duration) -> std::io::Result<()> {
    match within(|| Instant::now() + idle, write.flush()).await {
        Some(flushed) => flushed,
        None => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

/// Bytes of an answer read from the replica but not yet taken by the client, at most.
const READ_AHEAD: usize = 256 * 1024;

/// A body frame at most this long, with all before it still unsent, is copied behind the head
/// and goes out in the same write (a small answer costs one buffer and one `write`).
const SMALL_BODY: usize = 4 * 1024;

/// `content-length: N\r\n`, made without allocating.
struct LengthLine {
    bytes: [u8; 40],
    len: usize,
}

impl LengthLine {
    fn new(n: u64) -> Self {
        let mut bytes = [0u8; 40];
        let mut len = 0;
        for part in [
            &b"content-length: "[..],
            itoa::Buffer::new().format(n).as_bytes(),
            b"\r\n",
        ] {
            bytes[len..len + part.len()].copy_from_slice(part);
            len += part.len();
        }
        Self { bytes, len }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// An answer's bytes on their way to the client, framed: the head (with small frames copied
/// behind it while nothing else waits), then the queued frames.
struct Outgoing {
    framing: OutFraming,
    /// The head and what was copied behind it; `head_sent` of it are written.
    head: Vec<u8>,
    head_sent: usize,
    queue: std::collections::VecDeque<Bytes>,
    queued: usize,
    sent: u64,
    /// The body ended (or failed).
    ended: bool,
    /// It ended as its framing promised (else the connection must close).
    complete: bool,
}

impl Outgoing {
    fn new(framing: OutFraming, head: Vec<u8>) -> Self {
        Self {
            framing,
            queued: head.len(),
            head,
            head_sent: 0,
            queue: std::collections::VecDeque::new(),
            sent: 0,
            ended: false,
            complete: false,
        }
    }

    /// Whether nothing is left to write.
    fn is_empty(&self) -> bool {
        self.queued == 0
    }

    fn push(&mut self, bytes: Bytes) {
        self.queued += bytes.len();
        // Behind the unsent head when nothing is queued after it: one buffer, one write.
        if self.queue.is_empty()
            && self.head_sent < self.head.len()
            && bytes.len() <= SMALL_BODY
            && self.head.len() + bytes.len() <= self.head.capacity()
        {
            self.head.extend_from_slice(&bytes);
        } else {
            self.queue.push_back(bytes);
        }
    }

    /// Takes one frame (or the end) of the body.
    fn take(&mut self, frame: Option<Result<hyper::body::Frame<Bytes>, EdgeError>>) {
        let data = match frame {
            None => {
                self.ended = true;
                self.complete = match self.framing {
                    OutFraming::Chunked => {
                        self.push(Bytes::from_static(LAST_CHUNK));
                        true
                    }
                    OutFraming::Length(n) => self.sent == n,
                    _ => true,
                };
                return;
            }
            // The replica broke off: the client sees the answer cut short (closed).
            Some(Err(_)) => {
                self.ended = true;
                return;
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if !data.is_empty() => data,
                _ => return,
            },
        };
        match self.framing {
            OutFraming::Length(n) if self.sent + data.len() as u64 > n => {
                // More than announced: never sent, so it cannot start a false next answer.
                let fits = data.slice(..(n - self.sent) as usize);
                self.sent = n;
                self.push(fits);
                self.ended = true;
            }
            OutFraming::Chunked => {
                self.sent += data.len() as u64;
                self.push(chunk_size_line(data.len()));
                self.push(data);
                self.push(Bytes::from_static(b"\r\n"));
            }
            _ => {
                self.sent += data.len() as u64;
                self.push(data);
            }
        }
    }

    /// The unsent bytes as slices for one vectored write.
    fn slices<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        let mut count = 0;
        let head = &self.head[self.head_sent..];
        let pending = (!head.is_empty()).then_some(head);
        let queued = self.queue.iter().map(|b| &b[..]);
        for (slot, bytes) in slices.iter_mut().zip(pending.into_iter().chain(queued)) {
            *slot = IoSlice::new(bytes);
            count += 1;
        }
        count
    }

    /// Drops `n` written bytes off the front.
    fn advance(&mut self, mut n: usize) {
        self.queued -= n;
        let in_head = (self.head.len() - self.head_sent).min(n);
        self.head_sent += in_head;
        n -= in_head;
        if self.head_sent == self.head.len() && !self.head.is_empty() {
            // All of it out: nothing more is copied behind it.
            self.head = Vec::new();
            self.head_sent = 0;
        }
        while n > 0 {
            let Some(front) = self.queue.front_mut() else {
                return;
            };
            if front.len() <= n {
                n -= front.len();
                self.queue.pop_front();
            } else {
                bytes::Buf::advance(front, n);
                n = 0;
            }
        }
    }
}

/// Writes all of `bytes` and flushes them; a client that takes none of them for `idle` is
/// given up on.
async fn write_all<W: AsyncWrite + Unpin>(
    write: &mut W,
    bytes: &[u8],
    idle: Duration,
) -> std::io::Result<()> {
    let mut at = 0;
    // Most writes fit the socket buffer: no timer is armed for them.
    while at < bytes.len() {
        let wrote = poll_fn(|cx| {
            Poll::Ready(match Pin::new(&mut *write).poll_write(cx, &bytes[at..]) {
                Poll::Ready(wrote) => Some(wrote),
                Poll::Pending => None,
            })
        })
        .await;
        match wrote {
            Some(Ok(0)) => return Err(std::io::ErrorKind::WriteZero.into()),
            Some(Ok(n)) => at += n,
            Some(Err(e)) => return Err(e),
            None => break,
        }
    }
    while at < bytes.len() {
        match tokio::time::timeout(idle, write.write(&bytes[at..])).await {
            Ok(Ok(0)) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(Ok(n)) => at += n,
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(std::io::ErrorKind::TimedOut.into()),
        }
    }
    flush_within(write, idle).await
}

/// Closes a connection: the write side first, then what the client still sends is read and
/// dropped for a moment, so the client gets to read the answer.
async fn linger<W: AsyncWrite + Unpin, R: AsyncRead + Unpin>(mut write: W, read: Option<R>) {
    let _ = write.shutdown().await;
    let Some(mut read) = read else { return };
    let deadline = Instant::now() + LINGER;
    let mut scratch = vec![0u8; 4096];
    let mut dropped = 0;
    while dropped < LINGER_BYTES {
        match tokio::time::timeout_at(deadline, read.read(&mut scratch)).await {
            Ok(Ok(n)) if n > 0 => dropped += n,
            _ => break,
        }
    }
}

/// Bytes both ways between the client and the replica after `101 Switching Protocols`.
async fn run_tunnel<S: ClientStream>(
    read: S::Read,
    write: S::Write,
    early: BytesMut,
    tunnel: Tunnel,
) {
    let Some((upstream, lease)) = tunnel.take() else {
        return;
    };
    let Ok(upgraded) = upstream.await else { return };
    let mut upstream = TokioIo::new(upgraded);
    if !early.is_empty() && upstream.write_all(&early).await.is_err() {
        return;
    }
    let Some(mut client) = S::unsplit(read, write) else {
        return;
    };
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    drop(lease);
}

pin_project_lite::pin_project! {
    /// A stream with bytes already read from it put back in front.
    pub struct Rewind<I> {
        prefix: Bytes,
        #[pin]
        inner: I,
    }
}

impl<I> Rewind<I> {
    fn new(prefix: Bytes, inner: I) -> Self {
        Self { prefix, inner }
    }
}

impl<I: AsyncRead> tokio::io::AsyncRead for Rewind<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.project();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix.split_to(n));
            return Poll::Ready(Ok(()));
        }
        this.inner.poll_read(cx, buf)
    }
}

impl<I: AsyncWrite> tokio::io::AsyncWrite for Rewind<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }
    fn poll_shutdown(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod idle_cost {
    /// What an idle keep-alive connection costs is mostly its task's future: a request's
    /// states (head, proxy, answer) are boxed per request, the rare and large parts (HTTP/2, a
    /// tunnel, a refusal) boxed too, the wait for a request is the socket's readiness and one
    /// timer, and the connection keeps a few copied limits, never the settings. Measured: 896
    /// bytes in a debug build (1.7 KiB before the per-request box, 3.9 KiB before any boxing);
    /// the bound catches a regression.
    #[tokio::test]
    async fn the_connection_future_stays_small() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let edge = crate::proxy::Edge::new(Default::default(), None);
        let (_stop, stopping) = tokio::sync::watch::channel(false);
        let connection = super::serve_connection(edge, stream, addr, stopping);
        let size = std::mem::size_of_val(&connection);
        assert!(size <= 1152, "an idle connection's future is {size} bytes");
    }
}

#[cfg(test)]
mod outgoing {
    use super::*;
    use hyper::body::Frame;

    fn data(bytes: &'static [u8]) -> Option<Result<Frame<Bytes>, EdgeError>> {
        Some(Ok(Frame::data(Bytes::from_static(bytes))))
    }

    /// Every unsent byte, in the order a vectored write would send them.
    fn unsent(out: &Outgoing) -> (usize, Vec<u8>) {
        let mut slices = [IoSlice::new(&[]); 16];
        let count = out.slices(&mut slices);
        (
            count,
            slices[..count].iter().flat_map(|s| s.to_vec()).collect(),
        )
    }

    fn head() -> Vec<u8> {
        let mut head = Vec::with_capacity(1024 + SMALL_BODY);
        head.extend_from_slice(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n");
        head
    }

    #[test]
    fn a_small_body_goes_out_with_the_head_in_one_slice() {
        let mut out = Outgoing::new(OutFraming::Length(5), head());
        out.take(data(b"hel"));
        out.take(data(b"lo"));
        out.take(None);
        assert!(out.ended && out.complete);
        let (count, bytes) = unsent(&out);
        assert_eq!(count, 1, "head and body in one buffer");
        assert_eq!(bytes, b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello");
        out.advance(bytes.len());
        assert!(out.is_empty());
        assert_eq!(unsent(&out).0, 0);
    }

    #[test]
    fn order_is_kept_when_a_large_frame_is_queued_first() {
        static LARGE: [u8; SMALL_BODY + 1] = [b'x'; SMALL_BODY + 1];
        let mut out = Outgoing::new(OutFraming::Length(LARGE.len() as u64 + 2), head());
        out.take(data(&LARGE));
        out.take(data(b"ok"));
        out.take(None);
        assert!(out.complete);
        let (count, bytes) = unsent(&out);
        assert_eq!(
            count, 3,
            "head, the large frame, then the small one after it"
        );
        let head_len = head().len();
        assert_eq!(&bytes[head_len..head_len + LARGE.len()], &LARGE[..]);
        assert!(bytes.ends_with(b"ok"));
        // Written in uneven pieces across the head and the queue: nothing lost or repeated.
        let mut written = Vec::new();
        while !out.is_empty() {
            let (_, rest) = unsent(&out);
            let n = rest.len().min(1000);
            written.extend_from_slice(&rest[..n]);
            out.advance(n);
        }
        assert_eq!(written, bytes);
    }

    #[test]
    fn once_the_head_is_out_small_frames_are_queued_not_copied() {
        let mut out = Outgoing::new(OutFraming::Chunked, head());
        let head_len = head().len();
        out.advance(head_len);
        assert!(out.is_empty());
        out.take(data(b"abc"));
        out.take(None);
        let (count, bytes) = unsent(&out);
        assert_eq!(count, 4, "size line, data, CRLF, last chunk");
        assert_eq!(bytes, b"3\r\nabc\r\n0\r\n\r\n");
    }

    #[test]
    fn chunked_frames_behind_the_head_are_framed_in_order() {
        let mut out = Outgoing::new(OutFraming::Chunked, head());
        out.take(data(b"abc"));
        out.take(data(b"de"));
        out.take(None);
        let (count, bytes) = unsent(&out);
        assert_eq!(count, 1);
        assert!(bytes.ends_with(b"\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"));
    }

    #[test]
    fn more_than_announced_is_cut_and_less_is_incomplete() {
        let mut out = Outgoing::new(OutFraming::Length(3), head());
        out.take(data(b"abcdef"));
        assert!(out.ended);
        assert!(unsent(&out).1.ends_with(b"\r\n\r\nabc"));
        let mut out = Outgoing::new(OutFraming::Length(3), head());
        out.take(data(b"ab"));
        out.take(None);
        assert!(out.ended && !out.complete);
    }

    #[test]
    fn length_lines_are_written_without_allocating() {
        assert_eq!(LengthLine::new(0).as_bytes(), b"content-length: 0\r\n");
        assert_eq!(
            LengthLine::new(u64::MAX).as_bytes(),
            b"content-length: 18446744073709551615\r\n"
        );
    }

    #[tokio::test]
    async fn within_makes_no_timer_for_what_is_ready_and_gives_up_on_what_is_not() {
        let mut asked = false;
        let ready = within(
            || {
                asked = true;
                Instant::now()
            },
            async { 7 },
        )
        .await;
        assert_eq!(ready, Some(7));
        assert!(!asked, "no deadline was asked for a future ready at once");
        let started = Instant::now();
        let never = within(
            || Instant::now() + Duration::from_millis(20),
            std::future::pending::<()>(),
        )
        .await;
        assert_eq!(never, None);
        assert!(started.elapsed() >= Duration::from_millis(20));
    }
}
