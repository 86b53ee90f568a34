//! The collector's reads: `/proc` and cgroup files, and HTTP GETs with a size limit and a
//! timeout (a replica's `/metrics`, the edge's admin listener). No decisions here: what the
//! numbers mean is [`super::sample`]'s.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::Request;
use hyper_util::rt::TokioIo;

use super::sample::{self, ProcStat, Usage};

/// Every process's `/proc/PID/stat` (processes that end while being read are skipped).
pub fn read_procs() -> Vec<ProcStat> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| {
        let entry = entry.ok()?;
        let name = entry.file_name();
        let name = name.to_str()?;
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let text = std::fs::read_to_string(entry.path().join("stat")).ok()?;
        sample::parse_proc_stat(&text)
    })
    .collect()
}

/// Clock ticks per second and the page size.
pub fn units() -> (f64, u64) {
    use nix::unistd::{sysconf, SysconfVar};
    let ticks = sysconf(SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100);
    let page = sysconf(SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096);
    (ticks.max(1) as f64, page.max(1) as u64)
}

fn count_fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as u64)
        .unwrap_or(0)
}

/// What the replica whose application runs as `pid` uses: its cgroup's counters when it is in
/// one of Berth's (memory limits), else the sum over its process tree.
pub fn replica_usage(pid: u32, procs: &[ProcStat], (ticks, page): (f64, u64)) -> Option<Usage> {
    let tree = sample::process_tree(pid, procs);
    if tree.is_empty() {
        return None;
    }
    let open_fds = tree.iter().map(|p| count_fds(p.pid)).sum();
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .ok()
        .and_then(|text| sample::berth_cgroup(&text));
    if let Some(cgroup) = cgroup {
        let dir = Path::new("/sys/fs/cgroup").join(cgroup.trim_start_matches('/'));
        let cpu = std::fs::read_to_string(dir.join("cpu.stat"))
            .ok()
            .and_then(|t| sample::cgroup_cpu_seconds(&t));
        let memory = std::fs::read_to_string(dir.join("memory.current"))
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok());
        if let (Some(cpu_seconds), Some(memory_bytes)) = (cpu, memory) {
            return Some(Usage {
                cpu_seconds,
                memory_bytes,
                open_fds,
            });
        }
    }
    Some(Usage {
        cpu_seconds: tree.iter().map(|p| p.cpu_ticks).sum::<u64>() as f64 / ticks,
        memory_bytes: tree.iter().map(|p| p.rss_pages).sum::<u64>() * page,
        open_fds,
    })
}

/// The host's numbers (disk: the file system holding `state_dir`).
pub fn host(state_dir: &Path) -> sample::HostReading {
    let cpu = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|t| sample::parse_host_cpu(&t));
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| sample::parse_memory_percent(&t));
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| sample::parse_load1(&t));
    let disk = nix::sys::statvfs::statvfs(state_dir).ok().and_then(|s| {
        let blocks = s.blocks() as f64;
        let free = s.blocks_free() as f64;
        let available = s.blocks_available() as f64;
        let used = blocks - free;
        (used + available > 0.0).then(|| used / (used + available) * 100.0)
    });
    sample::HostReading {
        cpu,
        memory_percent: memory,
        disk_percent: disk,
        load1: load,
    }
}

/// Why a GET gave nothing.
#[derive(Debug, thiserror::Error)]
pub enum GetError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("answered more than {0} bytes; cut off and ignored")]
    TooLarge(usize),
    #[error("answered HTTP {0}")]
    Status(u16),
    #[error("{0}")]
    Http(String),
}

/// GETs `path` from `address` (HTTP/1.1, `Connection: close`) and returns the body as text
/// (invalid UTF-8 replaced),
/// refusing bodies over `limit` bytes and anything slower than `timeout` in all.
pub async fn get_text(
    address: SocketAddr,
    path: &str,
    limit: usize,
    timeout: Duration,
    extra_header: Option<(&str, &str)>,
) -> Result<String, GetError> {
    let attempt = async {
        let stream = tokio::net::TcpStream::connect(address)
            .await
            .map_err(|e| GetError::Http(format!("connect: {e}")))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| GetError::Http(format!("handshake: {e}")))?;
        let conn = tokio::spawn(conn);
        let mut request = Request::get(path)
            .header("host", address.to_string())
            .header("user-agent", "berth-collector")
            .header("accept", "text/plain")
            .header("connection", "close");
        if let Some((name, value)) = extra_header {
            request = request.header(name, value);
        }
        let request = request
            .body(Empty::<bytes::Bytes>::new())
            .map_err(|e| GetError::Http(format!("request: {e}")))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| GetError::Http(format!("request: {e}")))?;
        let status = response.status().as_u16();
        if status != 200 {
            conn.abort();
            return Err(GetError::Status(status));
        }
        if response
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n > limit as u64)
        {
            conn.abort();
            return Err(GetError::TooLarge(limit));
        }
        let body = Limited::new(response.into_body(), limit)
            .collect()
            .await
            .map_err(|e| {
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    GetError::TooLarge(limit)
                } else {
                    GetError::Http(format!("body: {e}"))
                }
            });
        conn.abort();
        // Bytes that are not UTF-8 spoil only their own lines (the parser skips and counts them).
        Ok(String::from_utf8_lossy(&body?.to_bytes()).into_owned())
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or(Err(GetError::Timeout(timeout)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server on loopback that answers every connection with `answer` (then closes).
    async fn serve(answer: Vec<u8>) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            for _ in 0..4 {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let mut buf = [0u8; 1024];
                let _ = socket.read(&mut buf).await;
                let _ = socket.write_all(&answer).await;
                let _ = socket.shutdown().await;
            }
        });
        (address, task)
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_cut_off_with_or_without_a_length() {
        let big = "x 1\n".repeat(100_000);
        let with_length = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{big}",
            big.len()
        );
        let (address, task) = serve(with_length.into_bytes()).await;
        let err = get_text(address, "/metrics", 64 * 1024, Duration::from_secs(5), None)
            .await
            .unwrap_err();
        assert!(matches!(err, GetError::TooLarge(_)), "{err}");
        task.abort();
        let chunked = format!(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{big}\r\n0\r\n\r\n",
            big.len()
        );
        let (address, task) = serve(chunked.into_bytes()).await;
        let err = get_text(address, "/metrics", 64 * 1024, Duration::from_secs(5), None)
            .await
            .unwrap_err();
        assert!(matches!(err, GetError::TooLarge(_)), "{err}");
        task.abort();
    }

    #[tokio::test]
    async fn garbage_silence_and_errors_are_errors_not_panics() {
        let (address, task) = serve(b"\x00\xff garbage\r\n\r\n".to_vec()).await;
        assert!(get_text(address, "/", 1024, Duration::from_secs(5), None)
            .await
            .is_err());
        task.abort();
        let (address, task) =
            serve(b"HTTP/1.1 500 Oops\r\ncontent-length: 0\r\n\r\n".to_vec()).await;
        let err = get_text(address, "/", 1024, Duration::from_secs(5), None)
            .await
            .unwrap_err();
        assert!(matches!(err, GetError::Status(500)), "{err}");
        task.abort();
        // Accepts and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let err = get_text(address, "/", 1024, Duration::from_millis(300), None)
            .await
            .unwrap_err();
        assert!(matches!(err, GetError::Timeout(_)), "{err}");
        let (address, task) =
            serve(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nup 1".to_vec()).await;
        assert_eq!(
            get_text(address, "/", 1024, Duration::from_secs(5), None)
                .await
                .unwrap(),
            "up 1"
        );
        task.abort();
    }

    #[test]
    fn this_process_has_a_tree_with_memory_and_fds() {
        // Use some CPU first (bounded), so the counter has moved.
        let start = std::time::Instant::now();
        let mut usage = replica_usage(std::process::id(), &read_procs(), units()).unwrap();
        while usage.cpu_seconds == 0.0 && start.elapsed() < Duration::from_secs(5) {
            let mut x = 0u64;
            for i in 0..5_000_000u64 {
                x = x.wrapping_mul(31).wrapping_add(i);
            }
            std::hint::black_box(x);
            usage = replica_usage(std::process::id(), &read_procs(), units()).unwrap();
        }
        assert!(usage.memory_bytes > 1_000_000, "{usage:?}");
        assert!(usage.open_fds >= 3, "{usage:?}");
        assert!(usage.cpu_seconds > 0.0, "{usage:?}");
        let h = host(Path::new("/"));
        assert!(
            h.cpu.is_some()
                && h.memory_percent.is_some()
                && h.disk_percent.is_some()
                && h.load1.is_some()
        );
    }
}
