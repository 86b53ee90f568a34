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

/// A replica whose `/metrics` is hostile: `MODE=huge` answers 3 MiB, `MODE=flood` 3,000
/// distinct series, `MODE=garbage` bytes that are not the text format.
const HOSTILE_PY: &str = r#"
import os, http.server
MODE = os.environ.get("MODE", "")
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass
    def do_GET(self):
        if self.path == "/health":
            body = b"ok\n"
        elif MODE == "huge":
            body = b"x 1\n" * (3 * 1024 * 1024 // 4)
        elif MODE == "flood":
            body = "".join('flood{id="%d"} 1\n' % i for i in range(3000)).encode()
        else:
            body = b"\x00\xff<html>not metrics\n{{{ 1\nok_metric 7\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;

#[test]
fn hostile_metrics_are_cut_off_and_logged_and_the_collector_goes_on() {
    let mut spec = String::new();
    for mode in ["huge", "flood", "garbage"] {
        spec += &service(
            mode,
            "python3 hostile.py",
            1,
            &format!("env = {{ MODE = \"{mode}\" }}\nmetrics = {{ path = \"/metrics\" }}"),
        );
    }
    let mut stack = Stack::new("hostile-metrics", &spec);
    stack.write_app("hostile.py", HOSTILE_PY);
    let n = stack.up_with_env(&[("BERTH_METRICS_INTERVAL", "1s")]);
    stack.wait_up_line(n);
    for mode in ["huge", "flood", "garbage"] {
        stack.wait_healthy(mode, 1);
    }
    // Each is logged once, for what it is.
    wait_for(
        "the three problems in the daemon's log",
        Duration::from_secs(20),
        || {
            let log = stack.daemon_stderr(n);
            (log.contains("huge.1 /metrics: answered more than 1048576 bytes; cut off and ignored")
                && log.contains("replica:flood.1` has 500 series (cap 500 per owner")
                && log.contains("garbage.1 /metrics: 2 line(s) are not Prometheus text"))
            .then_some(())
        },
    );
    // The flood stopped at the cap; the garbage's one good line was kept; the huge one stored
    // nothing of its own.
    let flood = metrics(&stack, &["app:flood", "--since", "1m"]);
    let series = flood["series"].as_array().unwrap().len();
    assert!(
        series > 400 && series <= 500,
        "{series} series of the flood"
    );
    let good = metrics(
        &stack,
        &["app:ok_metric", "--service", "garbage", "--since", "1m"],
    );
    assert!(values(&good).contains(&7.0), "{good}");
    let names = stack.berth(&["metrics", "app:x", "--since", "1m", "--json"]);
    let none: Value = serde_json::from_str(names.ok()).unwrap();
    assert!(none["series"].as_array().unwrap().is_empty(), "{none}");
    // The collector goes on: new rounds keep coming for every replica.
    let rounds = |stack: &Stack| {
        let answer = metrics(
            stack,
            &[
                "restarts",
                "--service",
                "huge",
                "--since",
                "1m",
                "--statistic",
                "count",
                "--step",
                "60s",
            ],
        );
        values(&answer).iter().sum::<f64>()
    };
    let before = rounds(&stack);
    wait_for("more collector rounds", Duration::from_secs(15), || {
        (rounds(&stack) >= before + 3.0).then_some(())
    });
    let log = stack.daemon_stderr(n);
    assert_eq!(
        log.matches("huge.1 /metrics: answered more than").count(),
        1,
        "logged every round:\n{log}"
    );
}
