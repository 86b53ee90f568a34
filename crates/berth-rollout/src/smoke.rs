//! Smoke checks: HTTP requests to one release through the edge's private test route
//! (`X-Berth-Release` + `X-Berth-Test-Key`), whatever its traffic weight, so a new group is
//! checked before any user reaches it.

use std::net::SocketAddr;
use std::time::Duration;

use berth_spec::SmokeCheck;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;

/// Where smoke checks go: the edge, with the host of one of the service's routes.
#[derive(Debug, Clone)]
pub struct SmokeTarget {
    pub edge: SocketAddr,
    /// The `Host` header: a host that routes to the service (or the edge's address).
    pub host: String,
    /// The path prefix of that route (`/` usually); checks' paths are appended to it when the
    /// route is not `/`.
    pub test_key: String,
}

/// How long one check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `check` against `release`; Ok(detail) or Err(why).
pub async fn run(
    target: &SmokeTarget,
    release: &str,
    check: &SmokeCheck,
) -> Result<String, String> {
    let attempt = async {
        let stream = tokio::net::TcpStream::connect(target.edge)
            .await
            .map_err(|e| format!("connecting to the edge at {}: {e}", target.edge))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP handshake with the edge: {e}"))?;
        tokio::spawn(conn);
        let request = Request::get(check.path.as_str())
            .header("host", target.host.as_str())
            .header("x-berth-release", release)
            .header("x-berth-test-key", target.test_key.as_str())
            .header("user-agent", "berth-smoke-check")
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("bad check path {}: {e}", check.path))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("GET {}: {e}", check.path))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("GET {}: reading the body: {e}", check.path))?
            .to_bytes();
        if status != check.status {
            return Err(format!(
                "GET {} answered {status}, expected {}",
                check.path, check.status
            ));
        }
        if let Some(needle) = &check.contains {
            if !String::from_utf8_lossy(&body).contains(needle.as_str()) {
                return Err(format!(
                    "GET {} answered {status} without \"{needle}\" in its body",
                    check.path
                ));
            }
        }
        Ok(format!("GET {} → {status}", check.path))
    };
    match tokio::time::timeout(CHECK_TIMEOUT, attempt).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "GET {} got no answer within {}s",
            check.path,
            CHECK_TIMEOUT.as_secs()
        )),
    }
}

/// Runs every check; the first failure ends it.
pub async fn run_all(
    target: &SmokeTarget,
    release: &str,
    checks: &[SmokeCheck],
) -> Result<String, String> {
    let mut passed = Vec::new();
    for check in checks {
        passed.push(run(target, release, check).await?);
    }
    Ok(passed.join(", "))
}
