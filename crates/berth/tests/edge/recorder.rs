//! A replica that records the exact bytes it receives: every TCP connection's whole stream, and
//! each request cut out of it (its head as received, its body as it came on the wire and
//! decoded). It reads requests the way a lenient server does, so that a request the edge frames
//! badly shows up here the way it would on a real replica:
//!
//! - `Transfer-Encoding` containing `chunked` wins over `Content-Length`;
//! - of `Content-Length`, the first header's first comma-separated value counts (`5, 5` is 5);
//! - chunked bodies are decoded strictly (CRLF only): a bare LF from the edge is an error here.
//!
//! Every answer is `200` with the request target as its body (so a client can tell whose answer
//! it got), `x-backend` and `x-conn` (the index of the connection the request came on) and, for
//! the edge's id check, `x-seen-request-id`. A request line that is not `METHOD TARGET HTTP/1.x`
//! (the tail of a request that lost its first bytes) is recorded, answered 400 and the
//! connection closed. Answers that are wrong on purpose, the connection kept open after each:
//!
//! - `/both-framings`: both `Content-Length: 5` and `Transfer-Encoding: chunked` (a chunked
//!   `hello world`);
//! - `/head-body`: `hello` with its length, even to `HEAD`;
//! - `/extra`: `hello` with its length, then at once a second answer (`/POISON`) nobody asked
//!   for.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// When the recorder answers a request with a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Reads the whole body, then answers.
    ReadBodyFirst,
    /// Answers as soon as the head is in, then reads the body (by its own reading of the
    /// framing) before the next request: what many frameworks do with a body they ignore.
    AnswerBeforeBody,
}

/// One request as the recorder cut it out of a connection's stream.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The index of the connection it came on (0 for the first accepted).
    pub conn: usize,
    /// The head exactly as received, up to and including the empty line.
    pub head: String,
    /// The body bytes as received (chunk framing included).
    pub wire_body: Vec<u8>,
    /// The body decoded.
    pub body: Vec<u8>,
    /// Whether the body was read to its end by its framing.
    pub complete: bool,
    /// Why it was not (the connection ended, or the framing was wrong).
    pub error: Option<String>,
}

impl Recorded {
    pub fn request_line(&self) -> &str {
        self.head.split("\r\n").next().unwrap_or("")
    }

    /// The header fields in order, names lower-cased, values trimmed.
    pub fn headers(&self) -> Vec<(String, String)> {
        self.head
            .split("\r\n")
            .skip(1)
            .filter(|l| !l.is_empty())
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect()
    }

    /// Every value of header `name`, in order.
    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.headers()
            .into_iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
            .collect()
    }

    /// The head and the body as they came on the wire.
    pub fn raw(&self) -> Vec<u8> {
        let mut raw = self.head.as_bytes().to_vec();
        raw.extend_from_slice(&self.wire_body);
        raw
    }
}

#[derive(Default)]
struct Shared {
    accepted: AtomicUsize,
    requests: Mutex<Vec<Recorded>>,
    /// Every byte received, per connection.
    streams: Mutex<Vec<Vec<u8>>>,
    /// Per connection: whether it has ended (the peer closed it, or the recorder did).
    ended: Mutex<Vec<bool>>,
}

pub struct Recorder {
    pub name: String,
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Recorder {
    pub async fn start(name: &str, mode: Mode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind recorder");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let name_shared: Arc<str> = Arc::from(name);
        let state = shared.clone();
        let task = tokio::spawn(async move {
            // Aborting this task drops the set, which aborts every connection too.
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let conn = {
                    let mut streams = state.streams.lock().unwrap();
                    streams.push(Vec::new());
                    state.ended.lock().unwrap().push(false);
                    streams.len() - 1
                };
                state.accepted.fetch_add(1, Ordering::SeqCst);
                while connections.try_join_next().is_some() {}
                let (name, state) = (name_shared.clone(), state.clone());
                connections.spawn(async move {
                    serve(stream, conn, mode, name, state.clone()).await;
                    state.ended.lock().unwrap()[conn] = true;
                });
            }
        });
        Recorder {
            name: name.to_string(),
            addr,
            shared,
            task,
        }
    }

    /// TCP connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// The requests recorded so far, in the order their heads arrived.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Every byte connection `conn` received so far.
    pub fn stream(&self, conn: usize) -> Vec<u8> {
        self.shared
            .streams
            .lock()
            .unwrap()
            .get(conn)
            .cloned()
            .unwrap_or_default()
    }

    /// Whether connection `conn` has ended (closed by the edge, or by the recorder after a
    /// request it could not read).
    pub fn ended(&self, conn: usize) -> bool {
        self.shared
            .ended
            .lock()
            .unwrap()
            .get(conn)
            .copied()
            .unwrap_or(false)
    }

    /// Polls until connection `conn` has ended; panics after `within`.
    pub async fn wait_ended(&self, conn: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.ended(conn) {
            assert!(
                Instant::now() < deadline,
                "connection {conn} to the recorder was still open after {within:?}:\n{}",
                self.dump()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Everything received, connection by connection, for failure messages.
    pub fn dump(&self) -> String {
        let streams = self.shared.streams.lock().unwrap();
        let mut out = String::new();
        for (i, s) in streams.iter().enumerate() {
            out.push_str(&format!(
                "--- {} connection {i} ({} bytes) ---\n{:?}\n",
                self.name,
                s.len(),
                String::from_utf8_lossy(s)
            ));
        }
        out
    }

    /// Polls until `done` holds for the requests recorded (then returns them); panics after
    /// `within` with everything received.
    pub async fn wait_for(
        &self,
        what: &str,
        within: Duration,
        done: impl Fn(&[Recorded]) -> bool,
    ) -> Vec<Recorded> {
        let deadline = Instant::now() + within;
        loop {
            let requests = self.requests();
            if done(&requests) {
                return requests;
            }
            assert!(
                Instant::now() < deadline,
                "the recorder never saw {what} within {within:?}:\n{}",
                self.dump()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Polls until `n` requests have their bodies read to the end (or failed).
    pub async fn wait_requests(&self, n: usize, within: Duration) -> Vec<Recorded> {
        self.wait_for(&format!("{n} finished requests"), within, |r| {
            r.len() >= n && r.iter().all(|r| r.complete || r.error.is_some())
        })
        .await
    }

    /// A routing target for this recorder.
    pub fn target(&self, replica: &str) -> berth_model::routing::Target {
        berth_model::routing::Target {
            replica: replica.to_string(),
            release: "r1".to_string(),
            addr: self.addr,
            draining: false,
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A connection's read side with everything it receives logged.
struct Conn {
    stream: TcpStream,
    conn: usize,
    buf: Vec<u8>,
    shared: Arc<Shared>,
}

impl Conn {
    /// Reads more; false at the end of the stream (or on an error).
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk).await {
            Ok(n) if n > 0 => {
                self.shared.streams.lock().unwrap()[self.conn].extend_from_slice(&chunk[..n]);
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            _ => false,
        }
    }

    /// Takes `n` bytes off the buffer, reading as needed.
    async fn take(&mut self, n: usize) -> Result<Vec<u8>, String> {
        while self.buf.len() < n {
            if !self.fill().await {
                return Err(format!(
                    "the connection ended after {} of {n} bytes",
                    self.buf.len()
                ));
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// Takes a line ending in CRLF (returned with it); a bare LF is an error.
    async fn line(&mut self) -> Result<Vec<u8>, String> {
        loop {
            if let Some(at) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..at + 1).collect();
                if at == 0 || line[at - 1] != b'\r' {
                    return Err(format!(
                        "a line ending in a bare LF: {:?}",
                        String::from_utf8_lossy(&line)
                    ));
                }
                return Ok(line);
            }
            if !self.fill().await {
                return Err("the connection ended mid-line".into());
            }
        }
    }
}

fn update(shared: &Shared, index: usize, f: impl FnOnce(&mut Recorded)) {
    f(&mut shared.requests.lock().unwrap()[index]);
}

async fn serve(stream: TcpStream, conn: usize, mode: Mode, name: Arc<str>, shared: Arc<Shared>) {
    let mut c = Conn {
        stream,
        conn,
        buf: Vec::new(),
        shared: shared.clone(),
    };
    loop {
        let end = loop {
            if let Some(at) = c.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            if !c.fill().await {
                if !c.buf.is_empty() {
                    // A head that never ended: recorded as it is.
                    let head = String::from_utf8_lossy(&c.buf).into_owned();
                    shared.requests.lock().unwrap().push(Recorded {
                        conn,
                        head,
                        wire_body: Vec::new(),
                        body: Vec::new(),
                        complete: false,
                        error: Some("the connection ended mid-head".into()),
                    });
                }
                return;
            }
        };
        let head_bytes: Vec<u8> = c.buf.drain(..end).collect();
        let record = Recorded {
            conn,
            head: String::from_utf8_lossy(&head_bytes).into_owned(),
            wire_body: Vec::new(),
            body: Vec::new(),
            complete: false,
            error: None,
        };
        let line: Vec<String> = record
            .request_line()
            .split(' ')
            .map(str::to_string)
            .collect();
        let valid_line = line.len() == 3
            && !line[0].is_empty()
            && line[0].bytes().all(|b| b.is_ascii_uppercase())
            && line[1].starts_with('/')
            && line[2].starts_with("HTTP/1.");
        let chunked = record
            .header_all("transfer-encoding")
            .iter()
            .any(|v| v.to_ascii_lowercase().contains("chunked"));
        let length = record.header_all("content-length").first().map(|v| {
            v.split(',')
                .next()
                .unwrap_or("")
                .trim()
                .parse::<usize>()
                .map_err(|_| format!("Content-Length {v:?}"))
        });
        let index = {
            let mut requests = shared.requests.lock().unwrap();
            requests.push(record);
            requests.len() - 1
        };
        if !valid_line {
            update(&shared, index, |r| {
                r.error = Some("not a request line".into());
            });
            let _ = c
                .stream
                .write_all(
                    format!(
                        "HTTP/1.1 400 Bad Request\r\nx-backend: {name}\r\nx-conn: {conn}\r\n\
                         content-length: 16\r\nconnection: close\r\n\r\nbad request line"
                    )
                    .as_bytes(),
                )
                .await;
            return;
        }
        let target = line[1].clone();
        let request_id = shared.requests.lock().unwrap()[index]
            .header_all("x-request-id")
            .join(" | ");
        let answer = if target == "/head-body" {
            // A body even to HEAD: bytes nobody asked for, after the answer.
            format!(
                "HTTP/1.1 200 OK\r\nx-backend: {name}\r\nx-conn: {conn}\r\n\
                 content-length: 5\r\n\r\nhello"
            )
            .into_bytes()
        } else if target == "/extra" {
            // More than the length said: a second answer nobody asked for, in the same write.
            format!(
                "HTTP/1.1 200 OK\r\nx-backend: {name}\r\nx-conn: {conn}\r\n\
                 content-length: 5\r\n\r\nhello\
                 HTTP/1.1 200 OK\r\nx-backend: {name}\r\ncontent-length: 7\r\n\r\n/POISON"
            )
            .into_bytes()
        } else if target == "/both-framings" {
            format!(
                "HTTP/1.1 200 OK\r\nx-backend: {name}\r\nx-conn: {conn}\r\nContent-Length: 5\r\n\
                 Transfer-Encoding: chunked\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n"
            )
            .into_bytes()
        } else {
            let mut a = format!(
                "HTTP/1.1 200 OK\r\nx-backend: {name}\r\nx-conn: {conn}\r\n\
                 x-seen-request-id: {request_id}\r\ncontent-length: {}\r\n\r\n",
                target.len()
            )
            .into_bytes();
            a.extend_from_slice(target.as_bytes());
            a
        };
        if mode == Mode::AnswerBeforeBody && c.stream.write_all(&answer).await.is_err() {
            return;
        }
        // The body, by this server's reading of the framing.
        let body = if chunked {
            read_chunked(&mut c).await
        } else {
            match length {
                None => Ok((Vec::new(), Vec::new())),
                Some(Err(e)) => Err((e, Vec::new())),
                Some(Ok(n)) => c
                    .take(n)
                    .await
                    .map(|b| (b.clone(), b))
                    .map_err(|e| (e, Vec::new())),
            }
        };
        match body {
            Ok((wire, decoded)) => update(&shared, index, |r| {
                r.wire_body = wire;
                r.body = decoded;
                r.complete = true;
            }),
            Err((e, wire)) => {
                update(&shared, index, |r| {
                    r.wire_body = wire;
                    r.error = Some(e);
                });
                return;
            }
        }
        if mode == Mode::ReadBodyFirst && c.stream.write_all(&answer).await.is_err() {
            return;
        }
    }
}

/// A chunked body: (as received, decoded), or why it is not one (and what was received).
async fn read_chunked(c: &mut Conn) -> Result<(Vec<u8>, Vec<u8>), (String, Vec<u8>)> {
    let mut wire = Vec::new();
    let mut decoded = Vec::new();
    loop {
        let line = match c.line().await {
            Ok(line) => line,
            Err(e) => return Err((e, wire)),
        };
        wire.extend_from_slice(&line);
        let text = String::from_utf8_lossy(&line[..line.len() - 2]).into_owned();
        let digits = text.split(';').next().unwrap_or("").trim().to_string();
        let Ok(size) = usize::from_str_radix(&digits, 16) else {
            return Err((format!("bad chunk-size line {text:?}"), wire));
        };
        if size == 0 {
            // Trailer fields, up to the empty line.
            loop {
                match c.line().await {
                    Ok(line) => {
                        wire.extend_from_slice(&line);
                        if line.len() == 2 {
                            return Ok((wire, decoded));
                        }
                    }
                    Err(e) => return Err((e, wire)),
                }
            }
        }
        match c.take(size + 2).await {
            Ok(data) => {
                wire.extend_from_slice(&data);
                if &data[size..] != b"\r\n" {
                    return Err(("chunk data not followed by CRLF".into(), wire));
                }
                decoded.extend_from_slice(&data[..size]);
            }
            Err(e) => return Err((e, wire)),
        }
    }
}
