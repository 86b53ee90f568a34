//! A bounded loopback load client for the deploy tests: a few threads send `GET PATH` to
//! 127.0.0.1:PORT at a steady total rate (HTTP/1.1, keep-alive or one connection per request),
//! for at most `max_requests` requests and `max_duration`, and record every response: when it
//! was sent, how long it took, its status (0 when no HTTP answer came) and, for the hello app's
//! `/whoami`, the release and version that answered. A thread can act as a browser that keeps
//! the cookies the edge sets (the canary's release-affinity cookie), starting a new session
//! with an empty cookie jar every `session_len` requests.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (the deploy record's step times use the same clock).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// A loopback port (the edge's).
    pub port: u16,
    pub path: String,
    /// Requests per second, all threads together.
    pub rate: u32,
    pub threads: usize,
    /// Bounds: the client stops at whichever comes first (or at `stop`).
    pub max_requests: usize,
    pub max_duration: Duration,
    /// Reuse one connection per thread (HTTP/1.1 keep-alive) instead of one per request.
    pub keep_alive: bool,
    /// Keep the cookies the edge sets; a new session (empty jar) every this many requests.
    pub session_len: Option<usize>,
    /// How long one request may take before it counts as failed.
    pub timeout: Duration,
}

impl LoadOptions {
    /// 150 requests/s of `GET /whoami` from 6 keep-alive threads, for at most 120 s / 18,000
    /// requests.
    pub fn whoami(port: u16) -> Self {
        Self {
            port,
            path: "/whoami".into(),
            rate: 150,
            threads: 6,
            max_requests: 18_000,
            max_duration: Duration::from_secs(120),
            keep_alive: true,
            session_len: None,
            timeout: Duration::from_secs(10),
        }
    }
}

/// One request and what came back.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The thread that sent it.
    pub client: usize,
    /// The cookie session of that thread (counts up from 0; always 0 without cookies).
    pub session: usize,
    /// When it was sent (Unix milliseconds).
    pub sent_ms: i64,
    pub took: Duration,
    /// 0: no HTTP answer (refused, reset, timed out, garbled).
    pub status: u16,
    /// From the `/whoami` body (`release`, `version`) or the app's `X-Berth-Replica` header.
    pub release: Option<String>,
    pub version: Option<String>,
    pub replica: Option<String>,
    /// What went wrong when `status` is 0, or the start of the body of a non-200 answer.
    pub error: Option<String>,
    /// The `Retry-After` header of the answer, if any.
    pub retry_after: Option<String>,
}

impl Sample {
    pub fn ok(&self) -> bool {
        self.status == 200
    }

    /// When the answer was complete (Unix milliseconds).
    pub fn done_ms(&self) -> i64 {
        self.sent_ms + self.took.as_millis() as i64
    }
}

/// A running load client.
pub struct Load {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    threads: Vec<JoinHandle<()>>,
    pub options: LoadOptions,
    pub started_ms: i64,
}

impl Load {
    pub fn start(options: LoadOptions) -> Self {
        assert!(options.threads > 0 && options.rate > 0);
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let started = Instant::now();
        let per_thread = options.max_requests.div_ceil(options.threads);
        let interval = Duration::from_secs_f64(options.threads as f64 / f64::from(options.rate));
        let threads = (0..options.threads)
            .map(|client| {
                let stop = stop.clone();
                let samples = samples.clone();
                let options = options.clone();
                std::thread::Builder::new()
                    .name(format!("load-{client}"))
                    .spawn(move || {
                        // Spread the threads' first requests over one interval.
                        let offset = interval.mul_f64(client as f64 / options.threads as f64);
                        let mut user = User::new(client, &options);
                        let mut next = started + offset;
                        for n in 0..per_thread {
                            if stop.load(Ordering::Relaxed)
                                || started.elapsed() >= options.max_duration
                            {
                                break;
                            }
                            let now = Instant::now();
                            if next > now {
                                std::thread::sleep(next - now);
                            }
                            // A slow answer delays this thread; it does not make it burst later.
                            next = (next + interval).max(Instant::now() - interval);
                            if let Some(len) = options.session_len {
                                if n > 0 && n % len == 0 {
                                    user.new_session();
                                }
                            }
                            let sample = user.request(&options);
                            samples
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .push(sample);
                        }
                    })
                    .expect("a load thread")
            })
            .collect();
        Self {
            stop,
            samples,
            threads,
            options,
            started_ms: now_ms(),
        }
    }

    /// What was recorded so far, in sending order.
    pub fn snapshot(&self) -> Vec<Sample> {
        let mut all = self
            .samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        all.sort_by_key(|s| s.sent_ms);
        all
    }

    /// How many requests were recorded so far.
    pub fn count(&self) -> usize {
        self.samples.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Waits (bounded) until a response satisfies `found`; returns it.
    #[track_caller]
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        found: impl Fn(&Sample) -> bool,
    ) -> Sample {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self
                .samples
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .find(|s| found(s))
            {
                return s.clone();
            }
            if Instant::now() >= deadline {
                let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
                let last: Vec<_> = samples.iter().rev().take(5).collect();
                panic!(
                    "the load client saw no {what} within {}s ({} answers; the last, newest first: {last:?})",
                    timeout.as_secs(),
                    samples.len()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the threads (each finishes the request it is in) and returns the whole record.
    pub fn stop(mut self) -> Report {
        self.finish()
    }

    fn finish(&mut self) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        Report {
            samples: self.snapshot(),
            started_ms: self.started_ms,
            finished_ms: now_ms(),
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.finish();
        }
    }
}

/// One thread's client: its connection and, for a browser-like user, its cookies.
struct User {
    client: usize,
    session: usize,
    cookies: BTreeMap<String, String>,
    keep_cookies: bool,
    conn: Option<BufReader<TcpStream>>,
}

impl User {
    fn new(client: usize, options: &LoadOptions) -> Self {
        Self {
            client,
            session: 0,
            cookies: BTreeMap::new(),
            keep_cookies: options.session_len.is_some(),
            conn: None,
        }
    }

    fn new_session(&mut self) {
        self.session += 1;
        self.cookies.clear();
        self.conn = None;
    }

    fn request(&mut self, options: &LoadOptions) -> Sample {
        let sent_ms = now_ms();
        let began = Instant::now();
        let mut sample = Sample {
            client: self.client,
            session: self.session,
            sent_ms,
            took: Duration::ZERO,
            status: 0,
            release: None,
            version: None,
            replica: None,
            error: None,
            retry_after: None,
        };
        match self.exchange(options) {
            Ok(answer) => {
                sample.status = answer.status;
                sample.replica = answer.header("x-berth-replica").map(str::to_string);
                sample.retry_after = answer.header("retry-after").map(str::to_string);
                if self.keep_cookies {
                    for set in answer.headers_named("set-cookie") {
                        let pair = set.split(';').next().unwrap_or_default();
                        if let Some((name, value)) = pair.trim().split_once('=') {
                            self.cookies.insert(name.to_string(), value.to_string());
                        }
                    }
                }
                let body = String::from_utf8_lossy(&answer.body);
                if answer.status == 200 {
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) {
                        sample.release = v["release"].as_str().map(str::to_string);
                        sample.version = v["version"].as_str().map(str::to_string);
                    }
                } else {
                    sample.error = Some(body.chars().take(200).collect());
                }
                if !options.keep_alive || answer.close {
                    self.conn = None;
                }
            }
            Err(e) => {
                sample.error = Some(e);
                self.conn = None;
            }
        }
        sample.took = began.elapsed();
        sample
    }

    fn exchange(&mut self, options: &LoadOptions) -> Result<Answer, String> {
        let reused = self.conn.is_some();
        if self.conn.is_none() {
            let addr = SocketAddr::from(([127, 0, 0, 1], options.port));
            let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                .map_err(|e| format!("connect {addr}: {e}"))?;
            stream.set_read_timeout(Some(options.timeout)).ok();
            stream.set_write_timeout(Some(options.timeout)).ok();
            stream.set_nodelay(true).ok();
            self.conn = Some(BufReader::new(stream));
        }
        let conn = self.conn.as_mut().unwrap();
        let mut head = format!(
            "GET {} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nUser-Agent: berth-e2e-load\r\n",
            options.path, options.port
        );
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            head.push_str(&format!("Cookie: {}\r\n", jar.join("; ")));
        }
        if !options.keep_alive {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        let what = if reused { " (reused connection)" } else { "" };
        conn.get_mut()
            .write_all(head.as_bytes())
            .map_err(|e| format!("write{what}: {e}"))?;
        read_answer(conn).map_err(|e| format!("{e}{what}"))
    }
}

/// An HTTP/1.1 response.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// The server closes the connection after it.
    close: bool,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn read_line(conn: &mut BufReader<TcpStream>) -> Result<String, String> {
    let mut line = String::new();
    let n = conn
        .read_line(&mut line)
        .map_err(|e| format!("read: {e}"))?;
    if n == 0 {
        return Err("the connection closed before a complete answer".into());
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn read_answer(conn: &mut BufReader<TcpStream>) -> Result<Answer, String> {
    let status_line = read_line(conn)?;
    let mut parts = status_line.split_whitespace();
    let version = parts.next().unwrap_or_default().to_string();
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut headers = Vec::new();
    loop {
        let line = read_line(conn)?;
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let mut answer = Answer {
        status,
        headers,
        body: Vec::new(),
        close: version == "HTTP/1.0",
    };
    if let Some(c) = answer.header("connection") {
        answer.close = c.eq_ignore_ascii_case("close");
    }
    let chunked = answer
        .header("transfer-encoding")
        .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"));
    if chunked {
        loop {
            let size_line = read_line(conn)?;
            let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| format!("bad chunk size {size_line:?}"))?;
            if size == 0 {
                // Trailers, then the empty line.
                while !read_line(conn)?.is_empty() {}
                break;
            }
            let mut chunk = vec![0; size];
            conn.read_exact(&mut chunk)
                .map_err(|e| format!("read chunk: {e}"))?;
            answer.body.extend_from_slice(&chunk);
            read_line(conn)?;
        }
    } else if let Some(len) = answer.header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| format!("bad Content-Length {len:?}"))?;
        answer.body = vec![0; len];
        conn.read_exact(&mut answer.body)
            .map_err(|e| format!("read body: {e}"))?;
    } else if status != 204 && status != 304 && !(100..200).contains(&status) {
        conn.read_to_end(&mut answer.body)
            .map_err(|e| format!("read body: {e}"))?;
        answer.close = true;
    }
    Ok(answer)
}

/// Everything a load client recorded.
#[derive(Debug, Clone)]
pub struct Report {
    /// In sending order.
    pub samples: Vec<Sample>,
    pub started_ms: i64,
    pub finished_ms: i64,
}

impl Report {
    /// Requests that did not get a 200.
    pub fn failed(&self) -> Vec<&Sample> {
        self.samples.iter().filter(|s| !s.ok()).collect()
    }

    /// Requests that got no HTTP answer at all (refused, reset, timed out).
    pub fn unanswered(&self) -> Vec<&Sample> {
        self.samples.iter().filter(|s| s.status == 0).collect()
    }

    /// Requests answered by `release` (from `/whoami`).
    pub fn on(&self, release: &str) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| s.release.as_deref() == Some(release))
            .collect()
    }

    /// Requests sent in `[from_ms, to_ms)`.
    pub fn between(&self, from_ms: i64, to_ms: i64) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| s.sent_ms >= from_ms && s.sent_ms < to_ms)
            .collect()
    }

    /// Successful answers per release.
    pub fn per_release(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for s in &self.samples {
            if let Some(r) = &s.release {
                *counts.entry(r.clone()).or_insert(0) += 1;
            }
        }
        counts
    }

    /// The sending time from which every request was answered by `release`: the first request
    /// after the last one that was not (None when the last request was not answered by it).
    pub fn all_on_since(&self, release: &str) -> Option<i64> {
        let last_other = self
            .samples
            .iter()
            .rposition(|s| s.release.as_deref() != Some(release));
        match last_other {
            Some(i) if i + 1 == self.samples.len() => None,
            Some(i) => Some(self.samples[i + 1].sent_ms),
            None => self.samples.first().map(|s| s.sent_ms),
        }
    }

    /// Requests per second over the run.
    pub fn rate(&self) -> f64 {
        let secs = (self.finished_ms - self.started_ms).max(1) as f64 / 1000.0;
        self.samples.len() as f64 / secs
    }

    /// p99 of the successful requests' durations.
    pub fn p99(&self) -> Duration {
        let mut took: Vec<Duration> = self
            .samples
            .iter()
            .filter(|s| s.ok())
            .map(|s| s.took)
            .collect();
        if took.is_empty() {
            return Duration::ZERO;
        }
        took.sort();
        took[((took.len() as f64 * 0.99).ceil() as usize).clamp(1, took.len()) - 1]
    }

    /// The sessions of cookie-keeping users: (client, session) → the releases that answered,
    /// in order.
    pub fn sessions(&self) -> HashMap<(usize, usize), Vec<(i64, String)>> {
        let mut sessions: HashMap<(usize, usize), Vec<(i64, String)>> = HashMap::new();
        for s in &self.samples {
            if let Some(r) = &s.release {
                sessions
                    .entry((s.client, s.session))
                    .or_default()
                    .push((s.sent_ms, r.clone()));
            }
        }
        sessions
    }

    /// A few lines for the test's output.
    pub fn describe(&self) -> String {
        let failed = self.failed();
        let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
        for s in &failed {
            *statuses.entry(s.status).or_insert(0) += 1;
        }
        let mut out = format!(
            "{} requests in {:.1}s ({:.0}/s), p99 {} ms, per release {:?}, {} failed {:?}",
            self.samples.len(),
            (self.finished_ms - self.started_ms) as f64 / 1000.0,
            self.rate(),
            self.p99().as_millis(),
            self.per_release(),
            failed.len(),
            statuses
        );
        for s in failed.iter().take(5) {
            out.push_str(&format!(
                "\n  at {} (+{} ms): {} {:?} from {:?}",
                s.sent_ms,
                s.sent_ms - self.started_ms,
                s.status,
                s.error,
                s.replica
            ));
        }
        out
    }
}
