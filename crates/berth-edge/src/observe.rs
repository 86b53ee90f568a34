//! What the admin listener shows of the control plane's metrics without knowing its store: the
//! daemon serves its read-only metrics API on `observe.sock` in the edge's folder; the admin
//! listener forwards `/api/metrics` (and `/api/metrics/names`) there and adds the daemon's
//! newest values to its own `/metrics`. When the admin listener is not on loopback, every path
//! but `/healthz` needs `Authorization: Bearer TOKEN` (the token is in `admin.token` in the
//! edge's folder, 0600, made once).

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::Request;
use hyper_util::rt::TokioIo;

/// The most a forwarded answer may hold.
pub const FORWARD_LIMIT: usize = 32 * 1024 * 1024;
/// How long a forwarded request may take.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `/metrics` waits for the daemon's part (without it, the edge's own is served).
pub const METRICS_WAIT: Duration = Duration::from_secs(2);

/// The admin listener's link to the daemon's metrics and its access rule.
#[derive(Debug, Clone)]
pub struct Observe {
    pub socket: PathBuf,
    /// Required when the admin listener is not on loopback.
    pub token: Option<String>,
}

impl Observe {
    /// For an edge in `dir` whose admin listener is `admin`: the token is read (or made) only
    /// when the listener is reachable from other hosts.
    pub fn new(dir: &Path, admin: std::net::SocketAddr) -> std::io::Result<Observe> {
        let token = if admin.ip().is_loopback() {
            None
        } else {
            Some(load_or_create_token(&dir.join("admin.token"))?)
        };
        Ok(Observe {
            socket: dir.join("observe.sock"),
            token,
        })
    }

    /// Whether a request with this `Authorization` header may read `path`.
    pub fn allowed(&self, path: &str, authorization: Option<&[u8]>) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        if path == "/healthz" {
            return true;
        }
        let Some(given) = authorization.and_then(|h| h.strip_prefix(b"Bearer ")) else {
            return false;
        };
        constant_time_eq(given.trim_ascii(), token.as_bytes())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Reads the token file, or writes a new random one (0600) when there is none.
pub fn load_or_create_token(path: &Path) -> std::io::Result<String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Ok(text) = std::fs::read_to_string(path) {
        let token = text.trim().to_string();
        if token.len() >= 32 {
            return Ok(token);
        }
    }
    let bytes: [u8; 32] = rand::random();
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = path.with_extension("token.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(token.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(token)
}

/// Where an admin path is forwarded on the daemon's socket (None: not a forwarded path).
pub fn forwarded_path(path: &str, query: Option<&str>) -> Option<String> {
    let target = match path {
        "/api/metrics" => "/v1/metrics",
        "/api/metrics/names" => "/v1/metrics/names",
        _ => return None,
    };
    Some(match query {
        Some(q) if !q.is_empty() => format!("{target}?{q}"),
        _ => target.to_string(),
    })
}

/// The edge's OpenMetrics text with the daemon's Prometheus text put before its `# EOF`.
pub fn merge_metrics(edge: String, daemon: &str) -> String {
    if daemon.trim().is_empty() {
        return edge;
    }
    let (head, eof) = match edge.rfind("# EOF") {
        Some(at) => (&edge[..at], &edge[at..]),
        None => (edge.as_str(), ""),
    };
    let mut out = String::with_capacity(edge.len() + daemon.len() + 1);
    out.push_str(head);
    out.push_str(daemon);
    if !daemon.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(eof);
    out
}

/// GETs `path` on the daemon's socket: (status, content type, body).
pub async fn get(
    socket: &Path,
    path: &str,
    timeout: Duration,
) -> Result<(u16, String, Bytes), String> {
    let attempt = async {
        let stream = tokio::net::UnixStream::connect(socket)
            .await
            .map_err(|e| format!("the daemon's metrics socket: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let conn = tokio::spawn(conn);
        let request = Request::get(path)
            .header("host", "localhost")
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("request: {e}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json")
            .to_string();
        let body = Limited::new(response.into_body(), FORWARD_LIMIT)
            .collect()
            .await
            .map_err(|e| format!("answer: {e}"))?
            .to_bytes();
        conn.abort();
        Ok((status, content_type, body))
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or_else(|_| Err("the daemon did not answer in time".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_needed_off_loopback_and_compared_whole() {
        let dir = tempfile::tempdir().unwrap();
        let open = Observe::new(dir.path(), "127.0.0.1:9090".parse().unwrap()).unwrap();
        assert!(open.allowed("/metrics", None));
        assert!(!dir.path().join("admin.token").exists());
        let guarded = Observe::new(dir.path(), "0.0.0.0:9090".parse().unwrap()).unwrap();
        let token = guarded.token.clone().unwrap();
        assert_eq!(token.len(), 64);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("admin.token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(guarded.allowed("/healthz", None));
        assert!(!guarded.allowed("/metrics", None));
        assert!(!guarded.allowed("/api/metrics", Some(b"Bearer wrong")));
        assert!(!guarded.allowed(
            "/api/metrics",
            Some(&format!("Bearer {}", &token[..63]).into_bytes())
        ));
        assert!(!guarded.allowed("/api/metrics", Some(token.as_bytes())));
        assert!(guarded.allowed(
            "/api/metrics",
            Some(&format!("Bearer {token}").into_bytes())
        ));
        // The same token next time.
        let again = Observe::new(dir.path(), "[::]:9090".parse().unwrap()).unwrap();
        assert_eq!(again.token, Some(token));
    }

    #[test]
    fn only_the_metrics_paths_are_forwarded() {
        assert_eq!(
            forwarded_path("/api/metrics", Some("name=requests&service=web")).as_deref(),
            Some("/v1/metrics?name=requests&service=web")
        );
        assert_eq!(
            forwarded_path("/api/metrics/names", None).as_deref(),
            Some("/v1/metrics/names")
        );
        assert_eq!(forwarded_path("/api/secrets", None), None);
        assert_eq!(forwarded_path("/api/metrics/../down", None), None);
    }

    #[test]
    fn the_daemons_values_go_before_eof() {
        let merged = merge_metrics(
            "# TYPE a counter\na_total 1\n# EOF\n".into(),
            "# TYPE berth_x gauge\nberth_x 2\n",
        );
        assert_eq!(
            merged,
            "# TYPE a counter\na_total 1\n# TYPE berth_x gauge\nberth_x 2\n# EOF\n"
        );
        assert_eq!(merge_metrics("a 1\n".into(), ""), "a 1\n");
    }
}
