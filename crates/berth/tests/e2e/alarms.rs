//! Alarms and notifications with the real binary: `berth validate` diagnostics, `berth alarms`
//! on a running stack, a deploy outcome delivered to a webhook and a command target.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

/// A loopback HTTP server on a thread that records each POSTed JSON document and answers 204.
/// (Ends with the test process; it holds no child.)
pub struct HookSink {
    pub port: u16,
    received: Arc<Mutex<Vec<(String, Value)>>>,
}

impl HookSink {
    pub fn start() -> HookSink {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let received: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
        let sink = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                let path = request_line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_string();
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':') {
                        if name.eq_ignore_ascii_case("content-length") {
                            length = value.trim().parse().unwrap_or(0);
                        }
                    }
                }
                let mut body = vec![0; length.min(1 << 20)];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                if let Ok(doc) = serde_json::from_slice::<Value>(&body) {
                    sink.lock().unwrap().push((path, doc));
                }
                let _ = stream.write_all(
                    b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        });
        HookSink { port, received }
    }

    /// The documents received so far.
    pub fn received(&self) -> Vec<(String, Value)> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until a document with `subject` arrived at `path`; returns it.
    #[track_caller]
    pub fn wait_subject(&self, path: &str, subject: &str, timeout: Duration) -> Value {
        wait_for(
            &format!("a notification \"{subject}\" at {path}"),
            timeout,
            || {
                self.received()
                    .into_iter()
                    .find(|(p, doc)| p == path && doc["subject"] == subject)
                    .map(|(_, doc)| doc)
            },
        )
    }
}

#[test]
fn validate_points_at_bad_alarms_and_targets() {
    let stack = Stack::new(
        "alarms-validate",
        r#"
[service.web]
run = "python3 app.py"
source = "app"
port = "auto"

[[alarm]]
name = "slow"
metric = "latency_msec"
service = "web"
comparison = ">"
threshold = 500
evaluation_periods = 2
datapoints_to_alarm = 3
notify = ["opz"]

[notify.ops]
kind = "webhook"
url = "https://hooks.example.com/T0KEN"

[notify.mail]
kind = "email"
host = "smtp.example.com"
from = "not an address"
to = ["ops@example.com"]
"#,
    );
    let out = stack.berth(&["validate"]);
    let stderr = out.fails();
    let spec = stack.spec_str();
    for expected in [
        format!("{spec}:15:10: error: unknown metric `latency_msec` in `alarm[0].metric`"),
        "did you mean `latency_ms`?".to_string(),
        format!("{spec}:20:23: error: `alarm[0].datapoints_to_alarm` (3) is greater than `evaluation_periods` (2)"),
        format!("{spec}:21:11: error: unknown notification target `opz`"),
        "did you mean `ops`?".to_string(),
        format!("{spec}:30:8: error: `notify.mail.from`: \"not an address\" is not an email address"),
    ] {
        assert!(stderr.contains(&expected), "{expected:?} not in:\n{stderr}");
    }
}

#[test]
fn alarms_are_listed_and_a_deploy_outcome_is_notified() {
    let hook = HookSink::start();
    let folder = tempfile::tempdir().unwrap();
    let script_out = folder.path().join("deploys.jsonl");
    let targets = format!(
        r#"
[[route]]
path = "/"
service = "web"

[[alarm]]
name = "web-busy"
metric = "requests"
service = "web"
statistic = "max"
comparison = ">"
threshold = 100
period = "10s"

[notify.hook]
kind = "webhook"
url = "http://127.0.0.1:{port}/hook"

[notify.script]
kind = "command"
run = "cat >> '{out}'; echo >> '{out}'"
events = ["deploy"]
"#,
        port = hook.port,
        out = script_out.display()
    );
    let mut stack = Stack::new("alarms", &format!("{}{targets}", web(1, "")));
    stack.up_and_wait();
    stack.wait_healthy("web", 1);

    // `berth alarms --json`: the references' two alarms for `web` and the written one.
    let out = stack.berth(&["alarms", "--json"]);
    let list: Value = serde_json::from_str(out.ok()).unwrap();
    let names: Vec<&str> = list["alarms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web-high-cpu", "web-5xx", "web-busy"]);
    let cpu = &list["alarms"][0];
    assert_eq!(
        cpu["condition"],
        "avg cpu_percent{service=web} > 80 for 2 of 2 periods of 5m"
    );
    assert_eq!(cpu["default"], true);
    assert_eq!(
        list["alarms"][2]["condition"],
        "max requests{service=web} > 100 for 1 of 1 periods of 10s"
    );
    for alarm in list["alarms"].as_array().unwrap() {
        assert_eq!(alarm["state"], "INSUFFICIENT_DATA");
    }
    let table = stack.berth(&["alarms"]);
    assert!(table.ok().starts_with("ALARM"), "{}", table.stdout);
    assert!(table.stdout.contains("web-busy"), "{}", table.stdout);

    // A deploy that fails (its build exits 3) goes to both targets.
    stack.write_spec(
        "alarms",
        &format!("{}{targets}", web(1, "build = \"exit 3\"")),
    );
    let deploy = stack.berth(&["deploy", "web"]);
    assert!(
        !deploy.success(),
        "the deploy should fail: {}",
        deploy.stdout
    );
    let doc = hook.wait_subject("/hook", "deploy 1 of web failed", Duration::from_secs(20));
    assert_eq!(doc["event"], "deploy");
    assert_eq!(doc["stack"], "e2e-alarms");
    assert_eq!(doc["details"]["service"], "web");
    assert_eq!(doc["details"]["state"], "failed");
    assert_eq!(doc["details"]["verdict"]["rule"], "build");
    let line = wait_for(
        "the command target's output",
        Duration::from_secs(20),
        || {
            std::fs::read_to_string(&script_out)
                .ok()
                .filter(|text| text.ends_with('\n'))
        },
    );
    let from_script: Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(from_script["subject"], "deploy 1 of web failed");
}
