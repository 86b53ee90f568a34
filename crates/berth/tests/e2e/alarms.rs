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
fn validate_and_up_name_a_target_secret_that_is_not_set() {
    let mut stack = Stack::new(
        "alarms-secret",
        &(web(1, "") + "\n[notify.chat]\nkind = \"slack\"\nurl_secret = \"SLACK_URL\"\n"),
    );
    let stderr = stack.berth(&["validate"]).fails().to_string();
    assert!(
        stderr.contains("notification target `chat` needs secret `SLACK_URL`, which is not set in environment `default`"),
        "{stderr}"
    );
    let n = stack.up();
    let status = stack.wait_daemon_exit(n, Duration::from_secs(30));
    assert!(!status.success());
    let stderr = stack.daemon_stderr(n);
    assert!(
        stderr.contains("target `chat` needs the secret `SLACK_URL`, which is not set; set it with `berth secrets set SLACK_URL`"),
        "{stderr}"
    );
    assert!(
        stack.app_processes("app.py").is_empty(),
        "nothing was started"
    );
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

/// `python3 -m aiosmtpd` writing every message into a Maildir; stopped on drop.
struct SmtpSink {
    child: std::process::Child,
    port: u16,
    maildir: std::path::PathBuf,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SmtpSink {
    /// None (outside CI) when aiosmtpd is not installed.
    fn start(maildir: std::path::PathBuf) -> Option<SmtpSink> {
        let present = std::process::Command::new("python3")
            .args(["-c", "import aiosmtpd"])
            .status()
            .is_ok_and(|s| s.success());
        if !present {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "aiosmtpd is missing under CI (python3 -m pip install aiosmtpd)"
            );
            eprintln!("skipped: aiosmtpd is missing (python3 -m pip install aiosmtpd; Debian: python3-aiosmtpd)");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new("python3")
            .args([
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &format!("127.0.0.1:{port}"),
                "-c",
                "aiosmtpd.handlers.Mailbox",
            ])
            .arg(&maildir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start aiosmtpd");
        let sink = SmtpSink {
            child,
            port,
            maildir,
        };
        wait_for("aiosmtpd to listen", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        Some(sink)
    }

    /// The messages received so far.
    fn messages(&self) -> Vec<String> {
        std::fs::read_dir(self.maildir.join("new"))
            .map(|entries| {
                entries
                    .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[test]
fn an_alarm_goes_to_alarm_and_back_with_a_webhook_and_an_email() {
    let folder = tempfile::tempdir().unwrap();
    let Some(smtp) = SmtpSink::start(folder.path().join("mail")) else {
        return;
    };
    let hook = HookSink::start();
    let spec = web(1, "")
        + &format!(
            r#"
[[route]]
path = "/"
service = "web"

[alarms]
defaults = false

[[alarm]]
name = "web-busy"
description = "more than 10 requests per second"
metric = "requests"
service = "web"
statistic = "max"
comparison = ">"
threshold = 10
period = "10s"
missing = "notBreaching"

[notify.hook]
kind = "webhook"
url = "http://127.0.0.1:{hook}/hook"

[notify.mail]
kind = "email"
host = "127.0.0.1"
port = {smtp}
starttls = false
from = "berth@example.com"
to = ["ops@example.com"]
"#,
            hook = hook.port,
            smtp = smtp.port
        );
    let mut stack = Stack::new("alarm-cycle", &spec);
    let n = stack.up_with_env(&[("BERTH_METRICS_INTERVAL", "1s")]);
    stack.wait_up_line(n);
    stack.wait_healthy("web", 1);
    let port = stack.edge_port;
    wait_for("the edge to route to web", Duration::from_secs(15), || {
        matches!(http(port, "GET", "/whoami", b""), Ok((200, _))).then_some(())
    });

    // 40 requests per second: above the threshold in the next evaluation (every 10 s).
    let load = crate::load::Load::start(crate::load::LoadOptions {
        rate: 40,
        threads: 2,
        max_requests: 2_400,
        max_duration: Duration::from_secs(60),
        ..crate::load::LoadOptions::whoami(port)
    });
    let alarm = hook.wait_subject("/hook", "ALARM: web-busy", Duration::from_secs(45));
    assert_eq!(alarm["event"], "alarm");
    assert_eq!(alarm["details"]["state"], "ALARM");
    assert!(
        alarm["details"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("Threshold Crossed: 1 out of the last 1 datapoints ["),
        "{alarm}"
    );
    let list: Value = serde_json::from_str(stack.berth(&["alarms", "--json"]).ok()).unwrap();
    assert_eq!(list["evaluating"], true);
    assert_eq!(list["alarms"][0]["name"], "web-busy");
    assert_eq!(list["alarms"][0]["state"], "ALARM");
    let report = load.stop();
    assert!(
        report.samples.len() > report.failed().len(),
        "the load got no answer"
    );

    // No more requests: back to OK at a later evaluation.
    let ok = hook.wait_subject("/hook", "OK: web-busy", Duration::from_secs(45));
    assert_eq!(ok["details"]["previous"], "ALARM");
    let mail = wait_for("both emails", Duration::from_secs(20), || {
        let messages = smtp.messages();
        (messages.len() >= 2).then_some(messages)
    });
    for subject in ["ALARM: web-busy", "OK: web-busy"] {
        let header = format!("Subject: [berth e2e-alarm-cycle] {subject}");
        assert!(
            mail.iter().any(|m| m.contains(&header)),
            "no email with {header:?}: {mail:?}"
        );
    }
    assert!(mail.iter().all(|m| m.contains("ops@example.com")));
    let list: Value = serde_json::from_str(stack.berth(&["alarms", "--json"]).ok()).unwrap();
    assert_eq!(list["alarms"][0]["state"], "OK");
    let states: Vec<&str> = list["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["state"].as_str().unwrap())
        .collect();
    assert!(states.ends_with(&["ALARM", "OK"]), "{states:?}");
    // The transitions are events too.
    assert!(stack
        .events()
        .iter()
        .any(|(subject, message)| subject == "alarm"
            && message.starts_with("alarm web-busy is ALARM")));
}

#[test]
fn an_alarm_that_fires_during_a_deploy_rolls_it_back() {
    let body = |version: &str| {
        web(
            1,
            &format!(
                r#"env = {{ APP_VERSION = "{version}" }}
[service.web.deploy]
strategy = "bluegreen"
[service.web.deploy.analysis]
window = "40s"
min_requests = 20"#
            ),
        ) + r#"
[[route]]
path = "/"
service = "web"

[alarms]
defaults = false

[[alarm]]
name = "web-busy"
metric = "requests"
service = "web"
statistic = "max"
comparison = ">"
threshold = 10
period = "10s"
missing = "notBreaching"
"#
    };
    let mut stack = Stack::new("alarm-deploy", &body("1"));
    let n = stack.up_with_env(&[("BERTH_METRICS_INTERVAL", "1s")]);
    stack.wait_up_line(n);
    stack.wait_healthy("web", 1);
    let port = stack.edge_port;
    wait_for("the edge to route to web", Duration::from_secs(15), || {
        matches!(http(port, "GET", "/whoami", b""), Ok((200, _))).then_some(())
    });
    // Quiet: the alarm is OK before the deploy.
    wait_for("web-busy to be OK", Duration::from_secs(30), || {
        let list: Value = serde_json::from_str(stack.berth(&["alarms", "--json"]).ok()).ok()?;
        (list["alarms"][0]["state"] == "OK").then_some(())
    });

    stack.write_spec("alarm-deploy", &body("2"));
    let spec = stack.spec_str().to_string();
    let deploy = std::thread::spawn(move || {
        let mut command = berth_command();
        command.args(["-f", &spec, "deploy", "web", "--json"]);
        run(command, Duration::from_secs(120))
    });
    // The traffic grows during the deploy: the alarm fires inside the analysis window.
    let load = crate::load::Load::start(crate::load::LoadOptions {
        rate: 40,
        threads: 2,
        max_requests: 2_400,
        max_duration: Duration::from_secs(60),
        ..crate::load::LoadOptions::whoami(port)
    });
    let out = deploy.join().unwrap();
    let _ = load.stop();
    let record: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON record ({e}): {}\n{}", out.stdout, out.stderr));
    assert_eq!(record["state"], "rolled_back", "{record}");
    assert_eq!(record["verdict"]["rule"], "alarm", "{record}");
    assert!(
        record["verdict"]["message"]
            .as_str()
            .unwrap()
            .starts_with("alarm web-busy went to ALARM during the analysis: Threshold Crossed"),
        "{record}"
    );
}

#[test]
fn a_failed_backup_is_notified() {
    let hook = HookSink::start();
    let folder = tempfile::tempdir().unwrap();
    // The destination lies under a regular file: the backup cannot be written.
    let blocker = folder.path().join("not-a-folder");
    std::fs::write(&blocker, "x").unwrap();
    let spec = web(1, r#"volumes = ["uploads"]"#)
        + &format!(
            r#"
[volume.uploads]

[backup]
destination = "{dest}"

[notify.hook]
kind = "webhook"
url = "http://127.0.0.1:{port}/hook"
events = ["backup"]
"#,
            dest = blocker.join("backups").display(),
            port = hook.port
        );
    let mut stack = Stack::new("alarms-backup", &spec);
    stack.up_and_wait();
    let out = stack.berth(&["backup", "now"]);
    assert!(!out.success(), "the backup should fail: {}", out.stdout);
    let doc = wait_for("the backup notification", Duration::from_secs(20), || {
        hook.received()
            .into_iter()
            .find(|(_, doc)| doc["event"] == "backup")
            .map(|(_, doc)| doc)
    });
    assert!(
        doc["subject"].as_str().unwrap().ends_with(" failed"),
        "{doc}"
    );
    assert_eq!(doc["details"]["reason"], "manual");
    assert!(!doc["details"]["error"].as_str().unwrap().is_empty());
}
