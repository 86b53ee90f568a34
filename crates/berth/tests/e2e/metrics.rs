//! The metrics history: a stack under a bounded loopback load fills the store (requests from
//! the edge, CPU from the replicas, the app's own `/metrics`), the query API answers on the
//! daemon's socket and through the edge's admin listener, and the points survive a daemon
//! killed with SIGKILL.

use std::time::Duration;

use serde_json::Value;

use crate::harness::*;
use crate::load::{Load, LoadOptions};

/// `berth metrics ... --json`, parsed.
fn metrics(stack: &Stack, args: &[&str]) -> Value {
    let mut all = vec!["metrics"];
    all.extend_from_slice(args);
    all.push("--json");
    let out = stack.berth(&all);
    serde_json::from_str(out.ok()).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

/// The non-null values of every series of an answer.
fn values(answer: &Value) -> Vec<f64> {
    answer["series"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["points"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p[1].as_f64())
        .collect()
}

#[test]
fn the_history_fills_under_load_and_survives_a_killed_daemon() {
    let spec = web(2, r#"metrics = { path = "/metrics" }"#)
        + "\n[[route]]\npath = \"/\"\nservice = \"web\"\n";
    let mut stack = Stack::new("metrics", &spec);
    let first = stack.up_with_env(&[("BERTH_METRICS_INTERVAL", "1s")]);
    stack.wait_up_line(first);
    stack.wait_healthy("web", 2);
    let port = stack.edge_port;
    wait_for("the edge to route to web", Duration::from_secs(15), || {
        matches!(http(port, "GET", "/whoami", b""), Ok((200, _))).then_some(())
    });
    let load = Load::start(LoadOptions {
        rate: 40,
        threads: 2,
        max_requests: 1_200,
        max_duration: Duration::from_secs(30),
        ..LoadOptions::whoami(stack.edge_port)
    });

    // Requests (edge), CPU (replicas) and the app's own counter arrive within seconds.
    let requests = wait_for("requests in the history", Duration::from_secs(20), || {
        let answer = metrics(
            &stack,
            &[
                "requests",
                "--service",
                "web",
                "--since",
                "2m",
                "--step",
                "1s",
            ],
        );
        values(&answer).iter().any(|v| *v > 0.0).then_some(answer)
    });
    assert_eq!(requests["series"][0]["labels"]["service"], "web");
    wait_for(
        "cpu_percent of both replicas",
        Duration::from_secs(20),
        || {
            let answer = metrics(
                &stack,
                &["cpu_percent", "--service", "web", "--since", "2m"],
            );
            let series = answer["series"].as_array().cloned().unwrap_or_default();
            (series.len() == 2 && !values(&answer).is_empty()).then_some(())
        },
    );
    wait_for("latency p99", Duration::from_secs(20), || {
        let answer = metrics(
            &stack,
            &[
                "latency_ms",
                "--service",
                "web",
                "--since",
                "2m",
                "--statistic",
                "p99",
                "--merged",
            ],
        );
        values(&answer).iter().any(|v| *v > 0.0).then_some(())
    });
    wait_for("the app's own metric", Duration::from_secs(20), || {
        let answer = metrics(
            &stack,
            &[
                "app:hello_requests_total",
                "--service",
                "web",
                "--since",
                "2m",
            ],
        );
        values(&answer).iter().any(|v| *v > 0.0).then_some(())
    });
    let report = load.stop();
    assert!(report.samples.iter().filter(|s| s.ok()).count() > 10);

    // The same through the edge's admin listener (forwarded to the daemon), and in /metrics.
    let (status, body) = http(
        stack.admin_port,
        "GET",
        "/api/metrics?name=requests&service=web&since=2m&merged=true",
        b"",
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let through_edge: Value = serde_json::from_str(&body).unwrap();
    assert!(values(&through_edge).iter().any(|v| *v > 0.0), "{body}");
    let (status, body) = http(stack.admin_port, "GET", "/api/metrics?name=nope", b"").unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("unknown metric"), "{body}");
    let (status, body) = http(stack.admin_port, "GET", "/metrics", b"").unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("berth_edge_requests_total"), "{body}");
    assert!(body.contains("berth_cpu_percent{"), "{body}");
    assert!(body.trim_end().ends_with("# EOF"), "{body}");

    // What the store held before the daemon died: every datapoint of the load's window.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let window = |stack: &Stack| {
        let path = format!(
            "/api/metrics?name=requests&service=web&statistic=count&merged=true&step=120s&from={}&to={now}",
            now - 120
        );
        let (status, body) = http(stack.admin_port, "GET", &path, b"").unwrap();
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        values(&v).first().copied().unwrap_or(0.0)
    };
    let before = window(&stack);
    assert!(before > 0.0);

    stack.signal_daemon(first, libc::SIGKILL);
    stack.wait_daemon_exit(first, Duration::from_secs(10));
    let second = stack.up_with_env(&[("BERTH_METRICS_INTERVAL", "1s")]);
    stack.wait_up_line(second);
    let after = window(&stack);
    assert!(
        after >= before,
        "points lost across the restart: {before} before, {after} after"
    );
    let cpu = metrics(
        &stack,
        &["cpu_percent", "--service", "web", "--since", "5m"],
    );
    assert!(!values(&cpu).is_empty());
}
