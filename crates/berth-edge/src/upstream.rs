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
use hyper::header::{self, HeaderMap};
use hyper::{Method, Request, Response, StatusCode, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::http1::head::{
    connection_tokens, content_length, ends_in_chunked, has_no_body, header_map, span_of, Framing,
};
use crate::http1::{Decoder, Step};
use crate::pool::TargetStats;
use crate::proxy::{BoxError, ProxyBody};

/// Idle connections kept per replica, and how long one may idle before it is dropped.
const MAX_IDLE_PER_REPLICA: usize = 256;
const MAX_IDLE_FOR: Duration = Duration::from_secs(60);
/// Largest answer head accepted from a replica.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
const MAX_RESPONSE_HEADERS: usize = 128;
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

    fn checkin(&self, stream: TcpStream) {
        let mut idle = self.shard().lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() >= MAX_IDLE_PER_REPLICA {
            idle.remove(0);
        }
        idle.push((stream, Instant::now()));
    }
}

/// Why a request to a replica failed.
#[derive(Debug)]
pub enum UpstreamError {
    /// No connection could be made (refused, unreachable, `connect_timeout`).
    Connect(io::Error),
    /// The client's body failed or went over `max_body`.
    ClientBody(BoxError),
    /// The replica broke the protocol or the connection before its answer's head.
    Protocol(String),
}

impl UpstreamError {
    pub fn is_connect(&self) -> bool {
        matches!(self, UpstreamError::Connect(_))
    }
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamError::Connect(e) => write!(f, "connect: {e}"),
            UpstreamError::ClientBody(e) => write!(f, "client body: {e}"),
            UpstreamError::Protocol(why) => write!(f, "{why}"),
        }
    }
}

impl std::error::Error for UpstreamError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            UpstreamError::Connect(e) => Some(e),
            UpstreamError::ClientBody(e) => Some(e.as_ref()),
            UpstreamError::Protocol(_) => None,
        }
    }
}

/// Sends `request` (origin-form URI, `Host` set) to the replica at `addr` and returns its
/// answer once the head is in; the body follows as the caller reads it. A request without a
/// body that failed on a pooled connection before any answer byte (the replica closed it
/// meanwhile) is sent again once on a new connection.
pub async fn send(
    stats: &Arc<TargetStats>,
    addr: SocketAddr,
    connect_timeout: Duration,
    stall_timeout: Duration,
    request: Request<ProxyBody>,
) -> Result<Response<UpstreamBody>, UpstreamError> {
    let (parts, mut body) = request.into_parts();
    let head_only = body.is_end_stream() && body.size_hint().exact() == Some(0);
    let framing = if head_only {
        Framing::Empty
    } else if let Some(n) = content_length(&parts.headers) {
        Framing::Length(n)
    } else {
        Framing::Chunked
    };
    let head = request_head(&parts.method, &parts.uri, &parts.headers, framing);
    let mut retried = false;
    loop {
        // The retry goes on a new connection: other pooled ones may be just as stale.
        let pooled = if retried { None } else { stats.idle.checkout() };
        let (mut stream, pooled) = match pooled {
            Some(stream) => (stream, true),
            None => (connect(addr, connect_timeout).await?, false),
        };
        let outcome = exchange(&mut stream, &head, &mut body, framing, &parts.method).await;
        match outcome {
            Ok((response, buf)) => {
                let (rparts, decoder, reusable) = response;
                let body = UpstreamBody {
                    stream: Some(stream),
                    buf,
                    decoder,
                    reusable,
                    home: stats.clone(),
                    read_size: READ_SIZE,
                    stall_timeout,
                    stall: None,
                    stall_armed: false,
                };
                return Ok(Response::from_parts(rparts, body));
            }
            Err(Failure::Stale) if pooled && head_only && !retried => {
                retried = true;
                continue;
            }
            Err(Failure::Stale) => {
                return Err(UpstreamError::Protocol(
                    "the replica closed the connection before answering".into(),
                ))
            }
            Err(Failure::Client(e)) => return Err(UpstreamError::ClientBody(e)),
            Err(Failure::Broken(why)) => return Err(UpstreamError::Protocol(why)),
        }
    }
}

async fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, UpstreamError> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| UpstreamError::Connect(io::ErrorKind::TimedOut.into()))?
        .map_err(UpstreamError::Connect)?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

enum Failure {
    /// Nothing of an answer came (closed or reset): the connection was stale.
    Stale,
    Client(BoxError),
    Broken(String),
}

type ParsedResponse = (hyper::http::response::Parts, Decoder, bool);

/// Writes the request and reads the answer's head.
async fn exchange(
    stream: &mut TcpStream,
    head: &[u8],
    body: &mut ProxyBody,
    framing: Framing,
    method: &Method,
) -> Result<(ParsedResponse, BytesMut), Failure> {
    let wrote = stream.write_all(head).await;
    if wrote.is_ok() && framing != Framing::Empty {
        match send_body(stream, body, framing).await {
            Ok(()) | Err(BodyFailure::Io) => {}
            Err(BodyFailure::Client(e)) => return Err(Failure::Client(e)),
        }
    }
    // Even when writing failed the replica may have answered (a 413 before the whole body).
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        match parse_response(&mut buf, method) {
            Ok(Some((parts, decoder, reusable))) => {
                if parts.status.is_informational() {
                    // 100 Continue and the like: the real answer follows.
                    continue;
                }
                return Ok(((parts, decoder, reusable), buf));
            }
            Ok(None) => {}
            Err(why) => return Err(Failure::Broken(why.into())),
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(4096);
        }
        match stream.read_buf(&mut buf).await {
            // Nothing of an answer: closed or reset, whether or not the request got out.
            Ok(0) | Err(_) if buf.is_empty() => return Err(Failure::Stale),
            Ok(0) => return Err(Failure::Broken("the replica closed mid-head".into())),
            Ok(_) => {}
            Err(e) => return Err(Failure::Broken(format!("reading the answer: {e}"))),
        }
    }
}

enum BodyFailure {
    Client(BoxError),
    /// The replica stopped taking the body (it may have answered already).
    Io,
}

async fn send_body(
    stream: &mut TcpStream,
    body: &mut ProxyBody,
    framing: Framing,
) -> Result<(), BodyFailure> {
    let chunked = framing == Framing::Chunked;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(BodyFailure::Client)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        if chunked {
            let size = format!("{:x}\r\n", data.len());
            stream
                .write_all(size.as_bytes())
                .await
                .map_err(|_| BodyFailure::Io)?;
            stream.write_all(&data).await.map_err(|_| BodyFailure::Io)?;
            stream
                .write_all(b"\r\n")
                .await
                .map_err(|_| BodyFailure::Io)?;
        } else {
            stream.write_all(&data).await.map_err(|_| BodyFailure::Io)?;
        }
    }
    if chunked {
        stream
            .write_all(b"0\r\n\r\n")
            .await
            .map_err(|_| BodyFailure::Io)?;
    }
    Ok(())
}

/// The request line and headers as sent to a replica.
fn request_head(
    method: &Method,
    uri: &hyper::Uri,
    headers: &HeaderMap,
    framing: Framing,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + headers.len() * 32);
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(uri.path_and_query().map_or("/", |p| p.as_str()).as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if framing == Framing::Chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Parses an answer head off the start of `buf`: its parts, the decoder of its body, and
/// whether the connection can be reused after it.
fn parse_response(
    buf: &mut BytesMut,
    method: &Method,
) -> Result<Option<ParsedResponse>, &'static str> {
    let mut spans = [(0usize, 0usize, 0usize, 0usize); MAX_RESPONSE_HEADERS];
    let (len, code, version, count) = {
        let mut headers = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        let base = buf.as_ptr() as usize;
        let len = match response.parse(buf) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() > MAX_RESPONSE_HEAD => {
                return Err("the replica's answer head is too large")
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err("the replica's answer is not valid HTTP/1.1"),
        };
        for (span, h) in spans.iter_mut().zip(response.headers.iter()) {
            *span = span_of(base, h);
        }
        let version = if response.version == Some(0) {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        };
        (
            len,
            response.code.unwrap_or(0),
            version,
            response.headers.len(),
        )
    };
    let head: Bytes = buf.split_to(len).freeze();
    let status = StatusCode::from_u16(code).map_err(|_| "invalid status code")?;
    let headers = header_map(&head, &spans[..count])?;
    let connection = connection_tokens(&headers);
    let mut reusable = match version {
        Version::HTTP_10 => connection.keep_alive && !connection.close,
        _ => !connection.close,
    };
    let decoder = if has_no_body(status, method) {
        Decoder::new(Framing::Empty)
    } else if headers.contains_key(header::TRANSFER_ENCODING) {
        if ends_in_chunked(&headers) {
            Decoder::new(Framing::Chunked)
        } else {
            reusable = false;
            Decoder::until_close()
        }
    } else if headers.contains_key(header::CONTENT_LENGTH) {
        let mut length = None;
        for value in headers.get_all(header::CONTENT_LENGTH) {
            for item in value
                .to_str()
                .map_err(|_| "invalid Content-Length")?
                .split(',')
            {
                let n: u64 = item.trim().parse().map_err(|_| "invalid Content-Length")?;
                if length.is_some_and(|l| l != n) {
                    return Err("conflicting Content-Length values in the answer");
                }
                length = Some(n);
            }
        }
        Decoder::new(Framing::Length(length.unwrap_or(0)))
    } else {
        reusable = false;
        Decoder::until_close()
    };
    let mut response = Response::new(());
    *response.status_mut() = status;
    *response.version_mut() = version;
    *response.headers_mut() = headers;
    let (parts, ()) = response.into_parts();
    Ok(Some((parts, decoder, reusable)))
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
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
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
                Err(e) => {
                    this.stream = None;
                    return Poll::Ready(Some(Err(format!("the replica's answer: {e}").into())));
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
                    return Poll::Ready(Some(Err(format!(
                        "the replica sent nothing of its answer for {}s",
                        timeout.as_secs()
                    )
                    .into())));
                }
                Poll::Ready(Ok(0)) => {
                    this.stream = None;
                    if this.decoder.is_until_close() {
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Err(
                        "the replica closed the connection mid-answer".into()
                    )));
                }
                Poll::Ready(Ok(n)) => {
                    this.stall_armed = false;
                    if n == asked && this.read_size < MAX_READ_SIZE {
                        this.read_size *= 2;
                    }
                }
                Poll::Ready(Err(e)) => {
                    this.stream = None;
                    return Poll::Ready(Some(Err(Box::new(e))));
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

    #[test]
    fn answers_are_framed_by_rfc_9112() {
        let get = Method::GET;
        let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"[..]);
        let (parts, decoder, reusable) = parse_response(&mut buf, &get).unwrap().unwrap();
        assert_eq!(parts.status, 200);
        assert_eq!(decoder, Decoder::new(Framing::Length(2)));
        assert!(reusable);
        assert_eq!(&buf[..], b"ok");

        let mut buf = BytesMut::from(&b"HTTP/1.0 200 OK\r\n\r\nrest"[..]);
        let (_, decoder, reusable) = parse_response(&mut buf, &get).unwrap().unwrap();
        assert!(decoder.is_until_close());
        assert!(!reusable);

        let mut buf = BytesMut::from(&b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"[..]);
        let (_, decoder, _) = parse_response(&mut buf, &get).unwrap().unwrap();
        assert!(decoder.is_done());

        let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n"[..]);
        let (_, decoder, _) = parse_response(&mut buf, &Method::HEAD).unwrap().unwrap();
        assert!(decoder.is_done(), "an answer to HEAD has no body");

        let mut buf = BytesMut::from(
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"[..],
        );
        let (_, decoder, reusable) = parse_response(&mut buf, &get).unwrap().unwrap();
        assert_eq!(decoder, Decoder::new(Framing::Chunked));
        assert!(!reusable);

        let mut buf = BytesMut::from(
            &b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n"[..],
        );
        assert!(parse_response(&mut buf, &get).is_err());
        let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-"[..]);
        assert!(parse_response(&mut buf, &get).unwrap().is_none());
    }

    #[test]
    fn request_heads_carry_the_path_and_the_framing() {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("shop.example"));
        let uri: hyper::Uri = "/a?b=1".parse().unwrap();
        let head = request_head(&Method::POST, &uri, &headers, Framing::Chunked);
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "POST /a?b=1 HTTP/1.1\r\nhost: shop.example\r\ntransfer-encoding: chunked\r\n\r\n"
        );
    }
}
