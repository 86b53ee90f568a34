//! The edge's HTTP/1.1 client toward replicas.
//!
//! Keep-alive connections are pooled per replica (in its [`TargetStats`]). A request is written
//! and its answer read by the task of the client connection itself, and the answer's body is
//! read from the replica's socket as the client connection writes it: a proxied request
//! crosses no task or thread boundary. (hyper's pooled client hands every request to a
//! per-connection task and the body back through a channel: two cross-task wake-ups a
//! request, which the edge benchmark showed as the larger part of its cost on small answers.)

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::HeaderMap;
use hyper::{Method, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::errors::{EdgeError, ErrorKind, Retry};
use crate::http1::head::{parse_response, write_request_head, Framing, ParsedResponse};
use crate::http1::{chunk_size_line, Decoder, Step, LAST_CHUNK};
use crate::pool::TargetStats;
use crate::proxy::ProxyBody;

/// Idle connections kept per replica, and how long one may idle before it is dropped.
const MAX_IDLE_PER_REPLICA: usize = 256;
const MAX_IDLE_FOR: Duration = Duration::from_secs(60);
/// Bytes asked of the socket per read of an answer body: the first read, then doubled while
/// reads fill what was asked, up to the largest.
const READ_SIZE: usize = 16 * 1024;
const MAX_READ_SIZE: usize = 256 * 1024;

thread_local! {
    /// The edge worker (runtime) this thread runs, plus one; 0 elsewhere.
    static WORKER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Marks the calling thread as edge worker `n`: its connections to replicas are pooled apart
/// from other workers' (a socket is registered with the reactor of the runtime that opened it).
pub fn set_worker(n: usize) {
    WORKER.with(|w| w.set(n + 1));
}

const SHARDS: usize = 17;

type Shard = std::sync::Mutex<Vec<(TcpStream, Instant)>>;

/// Kept-alive connections to one replica, one list per edge worker, most recently used last.
#[derive(Default, Debug)]
pub struct IdleConnections {
    shards: [Shard; SHARDS],
}

impl IdleConnections {
    fn shard(&self) -> &Shard {
        &self.shards[WORKER.with(|w| w.get()) % SHARDS]
    }

    /// A pooled connection that is still open, if any.
    fn checkout(&self) -> Option<TcpStream> {
        let mut idle = self.shard().lock().unwrap_or_else(|e| e.into_inner());
        while let Some((stream, since)) = idle.pop() {
            if since.elapsed() > MAX_IDLE_FOR {
                // The oldest are at the front: all of them are as old or older.
                idle.clear();
                return None;
            }
            // Closed by the replica (EOF) or with bytes nobody asked for: not reusable.
            let mut probe = [0u8; 1];
            match stream.try_read(&mut probe) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Some(stream),
                _ => continue,
            }
        }
        None
    }

    /// Drops every kept connection (the replica is gone or unreachable).
    pub fn clear(&self) {
        for shard in &self.shards {
            shard.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
    }

    fn checkin(&self, stream: TcpStream) {
        let mut idle = self.shard().lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() >= MAX_IDLE_PER_REPLICA {
            idle.remove(0);
        }
        idle.push((stream, Instant::now()));
    }
}

/// How long each part of an exchange with a replica may take.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Making a connection.
    pub connect: Duration,
    /// The replica taking each write of the request, and then sending its answer's head once
    /// the request is out (`request_timeout`). The client's own pace is not counted here: its
    /// body has its own idle limit, and a slow client is the client's error (408).
    pub answer: Duration,
    /// The replica sending nothing mid-answer.
    pub stall: Duration,
}

/// Sends a request to the replica at `addr` and returns its answer once the head is in; the
/// body follows as the caller reads it. `headers` are what the replica gets (hop-by-hop ones
/// already removed); the framing is `framing`, written by the edge. A request without a body
/// that failed on a pooled connection before any answer byte (the replica closed it
/// meanwhile) is sent again once on a new connection. After an error with [`Retry::Safe`]
/// nothing of `body` was read, so it can go to another replica.
pub async fn send(
    stats: &Arc<TargetStats>,
    addr: SocketAddr,
    timeouts: Timeouts,
    (method, uri, headers): (&Method, &hyper::Uri, &HeaderMap),
    framing: Framing,
    body: &mut ProxyBody,
) -> Result<Response<UpstreamBody>, EdgeError> {
    let mut head = Vec::with_capacity(256 + headers.len() * 32);
    write_request_head(&mut head, method, uri, headers, framing);
    let head_only = !framing.has_body();
    let mut retried = false;
    loop {
        // The retry goes on a new connection: other pooled ones may be just as stale.
        let pooled = if retried { None } else { stats.idle.checkout() };
        let (mut stream, pooled) = match pooled {
            Some(stream) => (stream, true),
            None => match connect(addr, timeouts.connect).await {
                Ok(stream) => (stream, false),
                Err(e) => {
                    // A replica that cannot be reached: none of its pooled connections is
                    // worth trying by the requests that wait.
                    stats.idle.clear();
                    return Err(e);
                }
            },
        };
        match exchange(&mut stream, &head, body, framing, method, timeouts.answer).await {
            Ok((response, buf)) => {
                let ParsedResponse {
                    parts,
                    decoder,
                    reusable,
                } = response;
                let body = UpstreamBody {
                    stream: Some(stream),
                    buf,
                    decoder,
                    reusable,
                    home: stats.clone(),
                    read_size: READ_SIZE,
                    stall_timeout: timeouts.stall,
                    stall: None,
                    stall_armed: false,
                };
                return Ok(Response::from_parts(parts, body));
            }
            // Sent again on a new connection only when nothing of it can have acted twice.
            Err(e)
                if e.kind == ErrorKind::UpstreamClosed
                    && pooled
                    && head_only
                    && is_idempotent(method)
                    && !retried =>
            {
                retried = true;
                continue;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Methods a replica must be able to receive twice without a second effect (RFC 9110 9.2.2,
/// less PUT and DELETE: applications rarely make those truly idempotent).
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

async fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, EdgeError> {
    let refused = |why: String| {
        EdgeError::new(ErrorKind::UpstreamConnect)
            .retry(Retry::Safe)
            .context(why)
    };
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| refused(format!("connect to {addr}: timed out")))?
        .map_err(|e| refused(format!("connect to {addr}: {e}")))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Writes all of `bytes` to the replica; one that takes none of them for `timeout` is given
/// up on. Err(true): timed out.
async fn write_to_replica(
    stream: &mut TcpStream,
    bytes: &[u8],
    timeout: Duration,
) -> Result<(), bool> {
    match tokio::time::timeout(timeout, stream.write_all(bytes)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(false),
        Err(_) => Err(true),
    }
}

/// Writes the request and reads the answer's head. The answer's head must come within
/// `answer_timeout` of the request's end.
async fn exchange(
    stream: &mut TcpStream,
    head: &[u8],
    body: &mut ProxyBody,
    framing: Framing,
    method: &Method,
    answer_timeout: Duration,
) -> Result<(ParsedResponse, BytesMut), EdgeError> {
    let timed_out = || {
        EdgeError::new(ErrorKind::UpstreamTimeout).context(format!(
            "the replica took no request bytes for {}s",
            answer_timeout.as_secs()
        ))
    };
    let mut wrote = write_to_replica(stream, head, answer_timeout).await;
    if wrote.is_ok() && framing.has_body() {
        wrote = send_body(stream, body, framing, answer_timeout).await?;
    }
    if wrote == Err(true) {
        return Err(timed_out());
    }
    // Even when writing failed the replica may have answered (a 413 before the whole body).
    let deadline = tokio::time::Instant::now() + answer_timeout;
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        match parse_response(&mut buf, method) {
            Ok(Some(response)) => {
                if response.parts.status.is_informational() {
                    // 100 Continue and the like: the real answer follows.
                    continue;
                }
                return Ok((response, buf));
            }
            Ok(None) => {}
            Err(why) => return Err(EdgeError::new(ErrorKind::UpstreamProtocol).context(why)),
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(4096);
        }
        let read = tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)).await;
        match read {
            Err(_) => {
                return Err(EdgeError::new(ErrorKind::UpstreamTimeout)
                    .context(format!("no answer within {}s", answer_timeout.as_secs())))
            }
            // Nothing of an answer: closed or reset, whether or not the request got out.
            Ok(Ok(0)) | Ok(Err(_)) if buf.is_empty() => {
                return Err(EdgeError::new(ErrorKind::UpstreamClosed)
                    .retry(Retry::IfIdempotent)
                    .context("the replica closed the connection before answering"))
            }
            Ok(Ok(0)) => {
                return Err(EdgeError::new(ErrorKind::UpstreamProtocol)
                    .context("the replica closed mid-head"))
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                return Err(EdgeError::new(ErrorKind::UpstreamProtocol)
                    .context(format!("reading the answer: {e}")))
            }
        }
    }
}

/// Sends the client's body in the edge's framing. Err: the client's body failed (its error);
/// Ok(Err(timed_out)): the replica stopped taking it (it may have answered already).
async fn send_body(
    stream: &mut TcpStream,
    body: &mut ProxyBody,
    framing: Framing,
    timeout: Duration,
) -> Result<Result<(), bool>, EdgeError> {
    let chunked = framing == Framing::Chunked;
    let mut sent = 0u64;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        sent += data.len() as u64;
        if let Framing::Length(n) = framing {
            if sent > n {
                // Never more than announced: the surplus would start a false next request.
                return Err(EdgeError::bad_request(
                    "the request body is longer than its Content-Length",
                ));
            }
        }
        let wrote = if chunked {
            let size = chunk_size_line(data.len());
            let parts = [&size[..], &data[..], b"\r\n"];
            write_parts(stream, &parts, timeout).await
        } else {
            write_to_replica(stream, &data, timeout).await
        };
        if let Err(timed_out) = wrote {
            return Ok(Err(timed_out));
        }
    }
    if let Framing::Length(n) = framing {
        if sent != n {
            return Err(EdgeError::new(ErrorKind::ClientClosed)
                .context("the request body ended before its Content-Length"));
        }
    }
    if chunked {
        return Ok(write_to_replica(stream, LAST_CHUNK, timeout).await);
    }
    Ok(Ok(()))
}

/// Writes a few pieces as one (small chunks are copied into one write).
async fn write_parts(
    stream: &mut TcpStream,
    parts: &[&[u8]],
    timeout: Duration,
) -> Result<(), bool> {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    if total <= 16 * 1024 {
        let mut joined = Vec::with_capacity(total);
        for part in parts {
            joined.extend_from_slice(part);
        }
        return write_to_replica(stream, &joined, timeout).await;
    }
    for part in parts {
        write_to_replica(stream, part, timeout).await?;
    }
    Ok(())
}

/// An answer's body, read from the replica's connection as it is polled. When it has been read
/// to its end the connection goes back to the replica's pool; dropped early, it is closed.
pub struct UpstreamBody {
    stream: Option<TcpStream>,
    buf: BytesMut,
    decoder: Decoder,
    reusable: bool,
    home: Arc<TargetStats>,
    read_size: usize,
    /// How long the replica may send nothing mid-body before the answer is cut off.
    stall_timeout: Duration,
    /// One timer per body, re-armed at each wait (armed: counting the current wait).
    stall: Option<Pin<Box<tokio::time::Sleep>>>,
    stall_armed: bool,
}

impl UpstreamBody {
    fn finish(&mut self) {
        if let Some(stream) = self.stream.take() {
            if self.reusable && self.buf.is_empty() {
                self.home.idle.checkin(stream);
            }
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = EdgeError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, EdgeError>>> {
        let this = &mut *self;
        loop {
            if this.stream.is_none() {
                return Poll::Ready(None);
            }
            match this.decoder.decode(&mut this.buf) {
                Ok(Step::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                Ok(Step::Done) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(Step::NeedMore) => {}
                Err(why) => {
                    this.stream = None;
                    return Poll::Ready(Some(Err(broken(why))));
                }
            }
            if this.buf.capacity() - this.buf.len() < this.read_size / 4 {
                this.buf.reserve(this.read_size);
            }
            let asked = this.buf.capacity() - this.buf.len();
            let Some(stream) = this.stream.as_mut() else {
                return Poll::Ready(None);
            };
            match tokio_util::io::poll_read_buf(Pin::new(stream), cx, &mut this.buf) {
                Poll::Pending => {
                    let timeout = this.stall_timeout;
                    let stall = this
                        .stall
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                    if !this.stall_armed {
                        stall.as_mut().reset(tokio::time::Instant::now() + timeout);
                        this.stall_armed = true;
                    }
                    if stall.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    this.stream = None;
                    return Poll::Ready(Some(Err(EdgeError::new(ErrorKind::UpstreamTimeout)
                        .context(format!(
                            "the replica sent nothing of its answer for {}s",
                            timeout.as_secs()
                        )))));
                }
                Poll::Ready(Ok(0)) => {
                    this.stream = None;
                    if this.decoder.is_until_close() {
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Err(broken(
                        "the replica closed the connection mid-answer",
                    ))));
                }
                Poll::Ready(Ok(n)) => {
                    this.stall_armed = false;
                    if n == asked && this.read_size < MAX_READ_SIZE {
                        this.read_size *= 2;
                    }
                }
                Poll::Ready(Err(e)) => {
                    this.stream = None;
                    return Poll::Ready(Some(Err(EdgeError::new(ErrorKind::UpstreamProtocol)
                        .context(format!("reading the answer: {e}")))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.stream.is_none() || self.decoder.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        match self.decoder.remaining() {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

fn broken(why: &'static str) -> EdgeError {
    EdgeError::new(ErrorKind::UpstreamProtocol).context(why)
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        if self.decoder.is_done() {
            self.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn parse(raw: &[u8], method: &Method) -> Result<Option<ParsedResponse>, &'static str> {
        let mut buf = BytesMut::from(raw);
        parse_response(&mut buf, method)
    }

    #[test]
    fn answers_are_framed_by_rfc_9112() {
        let get = Method::GET;
        let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"[..]);
        let answer = parse_response(&mut buf, &get).unwrap().unwrap();
        assert_eq!(answer.parts.status, 200);
        assert_eq!(answer.decoder, Decoder::new(Framing::Length(2)));
        assert!(answer.reusable);
        assert_eq!(&buf[..], b"ok");

        let answer = parse(b"HTTP/1.0 200 OK\r\n\r\nrest", &get)
            .unwrap()
            .unwrap();
        assert!(answer.decoder.is_until_close());
        assert!(!answer.reusable);

        let answer = parse(
            b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
            &get,
        )
        .unwrap()
        .unwrap();
        assert!(answer.decoder.is_done());

        let answer = parse(
            b"HTTP/1.1 200 OK\r\nContent-Length: 9, 9\r\n\r\n",
            &Method::HEAD,
        )
        .unwrap()
        .unwrap();
        assert!(answer.decoder.is_done(), "an answer to HEAD has no body");
        assert_eq!(answer.parts.headers["content-length"], "9", "normalised");

        let answer = parse(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
            &get,
        )
        .unwrap()
        .unwrap();
        assert_eq!(answer.decoder, Decoder::new(Framing::Chunked));
        assert!(!answer.reusable);

        assert!(parse(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n",
            &get
        )
        .is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-", &get)
            .unwrap()
            .is_none());
    }

    #[test]
    fn an_answer_with_both_framings_is_read_chunked_and_its_connection_closed() {
        let answer = parse(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            &Method::GET,
        )
        .unwrap()
        .unwrap();
        assert_eq!(answer.decoder, Decoder::new(Framing::Chunked));
        assert!(!answer.reusable);
        assert!(!answer.parts.headers.contains_key("content-length"));
    }

    #[test]
    fn request_heads_carry_the_path_and_only_the_edges_framing() {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("shop.example"));
        headers.insert("content-length", HeaderValue::from_static("5, 5"));
        headers.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        let uri: hyper::Uri = "/a?b=1".parse().unwrap();
        let mut head = Vec::new();
        write_request_head(&mut head, &Method::POST, &uri, &headers, Framing::Chunked);
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "POST /a?b=1 HTTP/1.1\r\nhost: shop.example\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        let mut head = Vec::new();
        write_request_head(&mut head, &Method::PUT, &uri, &headers, Framing::Length(5));
        assert!(String::from_utf8(head)
            .unwrap()
            .ends_with("host: shop.example\r\ncontent-length: 5\r\n\r\n"));
        let mut head = Vec::new();
        write_request_head(
            &mut head,
            &Method::POST,
            &uri,
            &HeaderMap::new(),
            Framing::Empty,
        );
        assert!(String::from_utf8(head)
            .unwrap()
            .ends_with("content-length: 0\r\n\r\n"));
        let mut head = Vec::new();
        write_request_head(
            &mut head,
            &Method::GET,
            &uri,
            &HeaderMap::new(),
            Framing::Empty,
        );
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "GET /a?b=1 HTTP/1.1\r\n\r\n"
        );
    }
}
