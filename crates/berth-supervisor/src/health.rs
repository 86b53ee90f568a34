//! Active health checks: the HTTP probe, and the pure state machine that turns probe results
//! into a replica's [`Health`] (the target-group checks of the references: consecutive
//! successes to become healthy, consecutive failures to become unhealthy, a grace period).

use std::time::{Duration, Instant};

use berth_model::Health;
use berth_spec::HealthSpec;
use http_body_util::Empty;
use hyper::Request;
use hyper_util::rt::TokioIo;

/// While a replica is starting it is checked this often (or at `interval`, if shorter).
pub const STARTING_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Tracks one replica's health from its probe results.
#[derive(Debug, Clone)]
pub struct HealthTracker {
    spec: HealthSpec,
    started: Instant,
    successes: u32,
    failures: u32,
    health: Health,
}

impl HealthTracker {
    pub fn new(spec: HealthSpec, started: Instant) -> Self {
        Self {
            spec,
            started,
            successes: 0,
            failures: 0,
            health: Health::Starting,
        }
    }

    /// For a replica adopted from an earlier daemon: it was serving, so it keeps serving until
    /// its checks say otherwise (the edge never loses it during a control-plane restart).
    pub fn adopted(spec: HealthSpec, started: Instant) -> Self {
        Self {
            health: Health::Healthy,
            successes: spec.healthy_threshold,
            ..Self::new(spec, started)
        }
    }

    pub fn health(&self) -> Health {
        self.health
    }

    /// Records one probe result observed at `now`; returns the new health.
    pub fn observe(&mut self, ok: bool, now: Instant) -> Health {
        if ok {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            if self.successes >= self.spec.healthy_threshold.max(1) {
                self.health = Health::Healthy;
            }
        } else {
            self.successes = 0;
            let in_grace = self.health == Health::Starting
                && now.duration_since(self.started) < self.spec.grace_period;
            if !in_grace {
                self.failures = self.failures.saturating_add(1);
                if self.failures >= self.spec.unhealthy_threshold.max(1) {
                    self.health = Health::Unhealthy;
                }
            }
        }
        self.health
    }

    /// How long to wait before the next probe.
    pub fn next_delay(&self) -> Duration {
        match self.health {
            Health::Healthy => self.spec.interval,
            _ => self.spec.interval.min(STARTING_CHECK_INTERVAL),
        }
    }
}

/// One HTTP GET of `path` on `127.0.0.1:port`: Ok(status) when an answer came within
/// `timeout`, Err(reason) otherwise. 2xx and 3xx count as healthy.
pub async fn probe(port: u16, path: &str, timeout: Duration) -> Result<u16, String> {
    let attempt = async {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let conn = tokio::spawn(conn);
        let request = Request::get(path)
            .header("host", format!("127.0.0.1:{port}"))
            .header("user-agent", "berth-health-check")
            .header("connection", "close")
            .body(Empty::<bytes::Bytes>::new())
            .map_err(|e| format!("request: {e}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("request: {e}"))?;
        conn.abort();
        Ok(response.status().as_u16())
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "no answer within {}",
            humantime::format_duration(timeout)
        )),
    }
}

/// Whether an HTTP status counts as a passing check.
pub fn is_passing(status: u16) -> bool {
    (200..400).contains(&status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> HealthSpec {
        HealthSpec {
            path: "/health".into(),
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
            healthy_threshold: 2,
            unhealthy_threshold: 2,
            grace_period: Duration::from_secs(60),
        }
    }

    #[test]
    fn becomes_healthy_after_threshold_successes() {
        let t0 = Instant::now();
        let mut t = HealthTracker::new(spec(), t0);
        assert_eq!(t.observe(true, t0), Health::Starting);
        assert_eq!(t.observe(true, t0), Health::Healthy);
        assert_eq!(t.next_delay(), Duration::from_secs(30));
    }

    #[test]
    fn failures_during_grace_do_not_count() {
        let t0 = Instant::now();
        let mut t = HealthTracker::new(spec(), t0);
        for _ in 0..10 {
            assert_eq!(
                t.observe(false, t0 + Duration::from_secs(5)),
                Health::Starting
            );
        }
        assert_eq!(t.next_delay(), STARTING_CHECK_INTERVAL);
        let late = t0 + Duration::from_secs(61);
        assert_eq!(t.observe(false, late), Health::Starting);
        assert_eq!(t.observe(false, late), Health::Unhealthy);
    }

    #[test]
    fn healthy_replica_turns_unhealthy_after_consecutive_failures_only() {
        let t0 = Instant::now();
        let mut t = HealthTracker::new(spec(), t0);
        t.observe(true, t0);
        t.observe(true, t0);
        assert_eq!(t.observe(false, t0), Health::Healthy);
        assert_eq!(t.observe(true, t0), Health::Healthy);
        assert_eq!(t.observe(false, t0), Health::Healthy);
        assert_eq!(t.observe(false, t0), Health::Unhealthy);
    }

    #[tokio::test]
    async fn probe_reports_refused_connections() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let err = probe(port, "/health", Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(err.starts_with("connect"), "{err}");
    }
}
