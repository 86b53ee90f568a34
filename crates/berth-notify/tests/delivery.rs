//! Deliveries to real endpoints on loopback: HTTP servers in the test (one that records, one
//! that hangs, a port that refuses, one that fails twice), a real SMTP server (aiosmtpd) and
//! real shell commands.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use berth_notify::{
    Channel, Delivery, Error, Notification, Notifier, Outcome, RetryPolicy, Secret, Target,
};
use berth_spec::alarm::NotifyEvent;
use tokio::sync::mpsc;

type Received = Arc<Mutex<Vec<(String, String, String)>>>; // (path, content-type, body)

/// An HTTP server recording every POST; `fail_first` answers 500 to that many requests first.
async fn recorder(fail_first: usize) -> (SocketAddr, Received) {
    let received: Received = Arc::default();
    let state = (received.clone(), Arc::new(Mutex::new(fail_first)));
    async fn record(
        State((received, failing)): State<(Received, Arc<Mutex<usize>>)>,
        uri: axum::http::Uri,
        headers: HeaderMap,
        body: String,
    ) -> StatusCode {
        {
            let mut failing = failing.lock().unwrap();
            if *failing > 0 {
                *failing -= 1;
                return StatusCode::INTERNAL_SERVER_ERROR;
            }
        }
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        received
            .lock()
            .unwrap()
            .push((uri.path().to_string(), content_type, body));
        StatusCode::NO_CONTENT
    }
    let app = Router::new()
        .route("/{*path}", post(record))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (address, received)
}

/// A server that accepts connections and never answers.
async fn hanging() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    address
}

/// A loopback port nothing listens on.
fn refusing() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

fn observer() -> (berth_notify::Observer, mpsc::UnboundedReceiver<Delivery>) {
    let (sender, receiver) = mpsc::unbounded_channel();
    (
        Arc::new(move |delivery| {
            let _ = sender.send(delivery);
        }),
        receiver,
    )
}

fn notification(subject: &str) -> Notification {
    Notification {
        event: NotifyEvent::Alarm,
        stack: "shop".into(),
        environment: "production".into(),
        subject: subject.into(),
        text: "Threshold Crossed: 2 out of the last 2 datapoints [85.1, 90.3]".into(),
        at: "2026-11-30T05:00:00Z".into(),
        details: serde_json::json!({ "alarm": "web-high-cpu", "state": "ALARM" }),
        only: Vec::new(),
    }
}

fn webhook(name: &str, url: String) -> Target {
    Target {
        name: name.into(),
        channel: Channel::Webhook {
            url: Secret::new(url),
        },
        events: vec![NotifyEvent::Alarm],
    }
}

/// The next deliveries until every name in `names` has one, within `limit`.
async fn collect(
    receiver: &mut mpsc::UnboundedReceiver<Delivery>,
    names: &[&str],
    limit: Duration,
) -> Vec<Delivery> {
    collect_until(
        receiver,
        |got| names.iter().all(|n| got.iter().any(|d| d.target == *n)),
        limit,
    )
    .await
}

/// The next deliveries until `done` holds for them, within `limit`.
async fn collect_until(
    receiver: &mut mpsc::UnboundedReceiver<Delivery>,
    done: impl Fn(&[Delivery]) -> bool,
    limit: Duration,
) -> Vec<Delivery> {
    let mut got: Vec<Delivery> = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    while !done(&got) {
        match tokio::time::timeout_at(deadline, receiver.recv()).await {
            Ok(Some(delivery)) => got.push(delivery),
            _ => panic!("not all deliveries within {limit:?}: {got:?}"),
        }
    }
    got
}

#[tokio::test]
async fn a_hung_and_a_refusing_endpoint_do_not_delay_the_others() {
    let (good, received) = recorder(0).await;
    let hung = hanging().await;
    let refused = refusing();
    let folder = tempfile::tempdir().unwrap();
    let out = folder.path().join("notification.json");
    let targets = vec![
        webhook("hung", format!("http://{hung}/hook")),
        webhook("refused", format!("http://{refused}/hook/T0KEN")),
        webhook("hook", format!("http://{good}/hook")),
        Target {
            name: "chat".into(),
            channel: Channel::Slack {
                url: Secret::new(format!("http://{good}/slack")),
            },
            events: vec![NotifyEvent::Alarm],
        },
        Target {
            name: "script".into(),
            channel: Channel::Command {
                run: format!("cat >> '{}'", out.display()),
                timeout: Duration::from_secs(5),
            },
            events: vec![NotifyEvent::Alarm],
        },
        // Takes only deploys: gets nothing here.
        Target {
            name: "deploys".into(),
            channel: Channel::Webhook {
                url: Secret::new(format!("http://{good}/deploys")),
            },
            events: vec![NotifyEvent::Deploy],
        },
    ];
    let policy = RetryPolicy {
        attempts: 2,
        attempt_timeout: Duration::from_millis(1500),
        first_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(1),
        queue: 8,
    };
    let (observe, mut deliveries) = observer();
    let notifier = Notifier::start(targets, policy, observe);

    let started = Instant::now();
    assert_eq!(notifier.send(notification("ALARM: web-high-cpu")), 5);
    assert_eq!(notifier.send(notification("OK: web-high-cpu")), 5);
    let send_took = started.elapsed();
    assert!(
        send_took < Duration::from_millis(50),
        "send waited {send_took:?}"
    );

    // Both notifications reach the three working targets long before the hung one times out.
    let working = |d: &Delivery| ["hook", "chat", "script"].contains(&d.target.as_str());
    let all = collect_until(
        &mut deliveries,
        |got| got.iter().filter(|d| working(d)).count() == 6,
        Duration::from_secs(2),
    )
    .await;
    let got: Vec<&Delivery> = all.iter().filter(|d| working(d)).collect();
    let prompt = started.elapsed();
    // Before the hung targets first attempt even timed out.
    assert!(prompt < Duration::from_millis(1200), "took {prompt:?}");
    for delivery in &got {
        assert_eq!(
            delivery.outcome,
            Outcome::Delivered { attempts: 1 },
            "{delivery:?}"
        );
    }
    let received = received.lock().unwrap().clone();
    let hooks: Vec<serde_json::Value> = received
        .iter()
        .filter(|(path, _, _)| path == "/hook")
        .map(|(_, content_type, body)| {
            assert_eq!(content_type, "application/json");
            serde_json::from_str(body).unwrap()
        })
        .collect();
    assert_eq!(hooks.len(), 2);
    assert_eq!(hooks[0]["event"], "alarm");
    assert_eq!(hooks[0]["subject"], "ALARM: web-high-cpu");
    assert_eq!(hooks[0]["details"]["state"], "ALARM");
    assert_eq!(hooks[1]["subject"], "OK: web-high-cpu");
    let slack: serde_json::Value = serde_json::from_str(
        &received
            .iter()
            .find(|(path, _, _)| path == "/slack")
            .unwrap()
            .2,
    )
    .unwrap();
    assert!(slack["text"]
        .as_str()
        .unwrap()
        .starts_with("*ALARM: web-high-cpu*\n"));
    assert!(received.iter().all(|(path, _, _)| path != "/deploys"));
    let written = std::fs::read_to_string(&out).unwrap();
    assert!(
        written.contains("\"subject\":\"ALARM: web-high-cpu\""),
        "{written}"
    );

    // The refusing and the hung targets fail after their attempts, the token never shown.
    let mut failures: Vec<Delivery> = all.into_iter().filter(|d| !working(d)).collect();
    let rest = collect_until(
        &mut deliveries,
        |got| got.len() + failures.len() == 4,
        Duration::from_secs(15),
    )
    .await;
    failures.extend(rest);
    assert_eq!(failures.iter().filter(|d| d.target == "hung").count(), 2);
    for delivery in &failures {
        let Outcome::Failed { attempts, error } = &delivery.outcome else {
            panic!("{delivery:?}");
        };
        assert_eq!(*attempts, 2);
        assert!(!error.to_string().contains("T0KEN"), "{error}");
        if delivery.target == "hung" {
            assert_eq!(*error, Error::Timeout(Duration::from_millis(1500)));
        } else {
            assert!(error.to_string().contains("refused"), "{error}");
        }
    }
}

#[tokio::test]
async fn failures_are_retried_with_back_off() {
    let (flaky, received) = recorder(2).await;
    let policy = RetryPolicy {
        attempts: 5,
        attempt_timeout: Duration::from_secs(2),
        first_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(1),
        queue: 8,
    };
    let (observe, mut deliveries) = observer();
    let notifier = Notifier::start(
        vec![webhook("flaky", format!("http://{flaky}/h"))],
        policy,
        observe,
    );
    let started = Instant::now();
    notifier.send(notification("ALARM: x"));
    let got = collect(&mut deliveries, &["flaky"], Duration::from_secs(5)).await;
    assert_eq!(got[0].outcome, Outcome::Delivered { attempts: 3 });
    // 100 ms after the first failure, 200 ms after the second.
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(received.lock().unwrap().len(), 1);

    // An endpoint answering 500 every time: all attempts, then failed with the status.
    let (broken, _) = recorder(usize::MAX).await;
    let policy = RetryPolicy {
        attempts: 3,
        first_delay: Duration::from_millis(10),
        ..policy
    };
    let (observe, mut deliveries) = observer();
    let notifier = Notifier::start(
        vec![webhook("broken", format!("http://{broken}/h"))],
        policy,
        observe,
    );
    notifier.send(notification("ALARM: y"));
    let got = collect(&mut deliveries, &["broken"], Duration::from_secs(5)).await;
    assert_eq!(
        got[0].outcome,
        Outcome::Failed {
            attempts: 3,
            error: Error::Status(500)
        }
    );
}

#[tokio::test]
async fn a_full_queue_drops_instead_of_waiting() {
    let hung = hanging().await;
    let policy = RetryPolicy {
        attempts: 1,
        attempt_timeout: Duration::from_secs(5),
        queue: 1,
        ..RetryPolicy::default()
    };
    let (observe, mut deliveries) = observer();
    let notifier = Notifier::start(
        vec![webhook("hung", format!("http://{hung}/h"))],
        policy,
        observe,
    );
    let started = Instant::now();
    // One in flight (hung), one waiting, the rest dropped: never a wait.
    let mut queued = 0;
    for i in 0..5 {
        queued += notifier.send(notification(&format!("n{i}")));
        tokio::task::yield_now().await;
    }
    assert!(started.elapsed() < Duration::from_millis(50));
    assert!((1..=2).contains(&queued), "{queued}");
    let dropped = collect(&mut deliveries, &["hung"], Duration::from_secs(1)).await;
    assert_eq!(dropped[0].outcome, Outcome::Dropped);
}

fn process_alive(pid: i32) -> bool {
    // A zombie is not alive: it ran to its end (or was killed) and waits for its parent.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            !stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

#[tokio::test]
async fn commands_get_the_json_and_are_killed_at_their_timeout() {
    let folder = tempfile::tempdir().unwrap();
    let pid_file = folder.path().join("sleep.pid");
    let command = |name: &str, run: String, timeout: Duration| Target {
        name: name.into(),
        channel: Channel::Command { run, timeout },
        events: vec![NotifyEvent::Alarm],
    };
    let targets = vec![
        command(
            "slow",
            format!("sleep 30 & echo $! > '{}'; wait", pid_file.display()),
            Duration::from_millis(300),
        ),
        command(
            "failing",
            "read -r line; echo \"no luck with $BERTH_NOTIFY_EVENT\" >&2; exit 3".into(),
            Duration::from_secs(5),
        ),
    ];
    let policy = RetryPolicy {
        attempts: 1,
        ..RetryPolicy::default()
    };
    let (observe, mut deliveries) = observer();
    let notifier = Notifier::start(targets, policy, observe);
    let started = Instant::now();
    notifier.send(notification("ALARM: z"));
    let got = collect(
        &mut deliveries,
        &["slow", "failing"],
        Duration::from_secs(5),
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(3));
    for delivery in got {
        match delivery.target.as_str() {
            "slow" => assert_eq!(
                delivery.outcome,
                Outcome::Failed {
                    attempts: 1,
                    error: Error::Timeout(Duration::from_millis(300))
                }
            ),
            _ => {
                let Outcome::Failed {
                    error: Error::Command(message),
                    ..
                } = delivery.outcome
                else {
                    panic!("{delivery:?}");
                };
                assert!(message.contains("3"), "{message}");
                assert!(message.contains("no luck with alarm"), "{message}");
            }
        }
    }
    // The command's own child (the sleep) went with its process group.
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    while process_alive(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!process_alive(pid), "sleep {pid} outlived its command");
}

/// `python3 -m aiosmtpd` writing every message into a Maildir; stopped on drop.
struct SmtpSink {
    child: std::process::Child,
    port: u16,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn smtp_sink(maildir: &Path) -> Option<SmtpSink> {
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
    let port = refusing().port();
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
        .arg(maildir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start aiosmtpd");
    let sink = SmtpSink { child, port };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "aiosmtpd did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(sink)
}

#[tokio::test]
async fn email_reaches_a_real_smtp_server() {
    let folder = tempfile::tempdir().unwrap();
    let maildir = folder.path().join("mail");
    let Some(sink) = smtp_sink(&maildir) else {
        return;
    };
    let target = Target {
        name: "mail".into(),
        channel: Channel::Email {
            host: "127.0.0.1".into(),
            port: sink.port,
            from: "berth@example.com".into(),
            to: vec!["ops@example.com".into(), "dev@example.org".into()],
            starttls: false,
            credentials: None,
        },
        events: vec![NotifyEvent::Alarm],
    };
    let (observe, mut deliveries) = observer();
    let notifier = Notifier::start(vec![target], RetryPolicy::default(), observe);
    notifier.send(notification("ALARM: web-high-cpu"));
    let got = collect(&mut deliveries, &["mail"], Duration::from_secs(10)).await;
    assert_eq!(got[0].outcome, Outcome::Delivered { attempts: 1 });
    let messages: Vec<String> = std::fs::read_dir(maildir.join("new"))
        .unwrap()
        .map(|entry| std::fs::read_to_string(entry.unwrap().path()).unwrap())
        .collect();
    assert_eq!(messages.len(), 1);
    let message = &messages[0];
    assert!(
        message.contains("Subject: [berth shop] ALARM: web-high-cpu"),
        "{message}"
    );
    assert!(message.contains("ops@example.com") && message.contains("dev@example.org"));
    assert!(message.contains("Threshold Crossed"), "{message}");
    drop(sink);
}
