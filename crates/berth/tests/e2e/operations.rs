//! Day-to-day operations on a running stack: scale, rolling restart, logs.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::harness::*;

fn pids(list: &[Replica]) -> HashSet<u32> {
    list.iter().map(Replica::pid).collect()
}

#[test]
fn scale_up_and_down_then_rolling_restart() {
    let mut stack = Stack::new("scale", &web(2, ""));
    let daemon = stack.up_and_wait();
    let two = stack.wait_healthy("web", 2);

    let out = stack.berth(&["scale", "web", "3"]);
    assert!(
        out.ok().contains("web: 3 replicas wanted"),
        "{}",
        out.stdout
    );
    let three = stack.wait_healthy("web", 3);
    assert_eq!(
        three.iter().map(|r| r.replica.as_str()).collect::<Vec<_>>(),
        ["web.1", "web.2", "web.3"]
    );
    assert_eq!(three[0].pid, two[0].pid, "scaling up must not touch web.1");
    assert_eq!(three[1].pid, two[1].pid, "scaling up must not touch web.2");
    assert_eq!(
        three.iter().map(|r| r.port()).collect::<HashSet<_>>().len(),
        3
    );
    assert_eq!(stack.app_processes("app.py").len(), 3);
    let who = get_json(three[2].port(), "/whoami");
    assert_eq!(who["replica"], "web.3");
    let table = stack.berth(&["ps"]);
    assert!(
        table
            .ok()
            .lines()
            .any(|l| l.starts_with("web ") && l.contains(" 3/3 ")),
        "{}",
        table.stdout
    );

    // Scaling down returns once the extra replicas are gone; the oldest one is kept.
    stack.berth(&["scale", "web", "1"]).ok();
    let one = stack.replicas("web");
    assert_eq!(one.len(), 1, "{one:#?}");
    assert_eq!(one[0].replica, "web.1");
    assert_eq!(one[0].pid, two[0].pid);
    assert_eq!(one[0].health, "healthy");
    for r in &three[1..] {
        assert!(
            !alive(r.pid()),
            "{} (pid {}) still runs",
            r.replica,
            r.pid()
        );
    }
    assert_eq!(stack.app_processes("app.py").len(), 1);

    // A rolling restart replaces every replica, and ends with the desired count, healthy.
    stack.berth(&["scale", "web", "2"]).ok();
    let before = stack.wait_healthy("web", 2);
    let out = stack.berth(&["restart", "web"]);
    assert!(
        out.ok().contains("web: restarted, 2 of 2 healthy"),
        "{}",
        out.stdout
    );
    let after = stack.replicas("web");
    assert_eq!(after.len(), 2, "{after:#?}");
    assert!(after.iter().all(|r| r.health == "healthy"), "{after:#?}");
    assert!(
        pids(&after).is_disjoint(&pids(&before)),
        "every pid must change: before {before:#?} after {after:#?}"
    );
    for r in &before {
        assert!(
            !alive(r.pid()),
            "{} (pid {}) still runs",
            r.replica,
            r.pid()
        );
    }
    for r in &after {
        let who = get_json(r.port(), "/whoami");
        assert_eq!(who["replica"], r.replica.as_str());
    }
    assert_eq!(stack.app_processes("app.py").len(), 2);

    // Down to zero and back.
    stack.berth(&["scale", "web", "0"]).ok();
    assert!(stack.replicas("web").is_empty());
    assert!(stack.app_processes("app.py").is_empty());
    stack.berth(&["scale", "web", "1"]).ok();
    let back = stack.wait_healthy("web", 1);
    assert_eq!(
        get_json(back[0].port(), "/whoami")["replica"],
        back[0].replica.as_str()
    );

    // Unknown services and absurd counts are refused.
    let err = stack.berth(&["scale", "web", "65"]);
    assert!(err.fails().contains("at most 64"), "{}", err.stderr);
    let err = stack.berth(&["scale", "nope", "2"]);
    assert!(err.fails().contains("no service `nope`"), "{}", err.stderr);
    let err = stack.berth(&["restart", "nope"]);
    assert!(err.fails().contains("no service `nope`"), "{}", err.stderr);

    // The scaled count outlives the daemon (the spec says 2).
    stack.berth(&["scale", "web", "1"]).ok();
    stack.berth(&["down"]).ok();
    stack.wait_daemon_exit(daemon, Duration::from_secs(15));
    stack.up_and_wait();
    let again = stack.wait_healthy("web", 1);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(stack.replicas("web").len(), 1, "{again:#?}");
}

#[test]
fn logs_show_app_output_per_replica() {
    let mut stack = Stack::new("logs", &web(2, ""));
    stack.up_and_wait();
    let list = stack.wait_healthy("web", 2);
    let (one, two) = (&list[0], &list[1]);
    assert_eq!(
        http(one.port(), "GET", "/whoami?marker=m-one", b"")
            .unwrap()
            .0,
        200
    );
    assert_eq!(
        http(two.port(), "GET", "/whoami?marker=m-two", b"")
            .unwrap()
            .0,
        200
    );

    let all = wait_for(
        "both markers in berth logs",
        Duration::from_secs(15),
        || {
            let out = stack.berth(&["logs", "web"]);
            let text = out.ok().to_string();
            (text.contains("marker=m-one") && text.contains("marker=m-two")).then_some(text)
        },
    );
    for line in all.lines() {
        assert!(
            line.starts_with("web.1 | ") || line.starts_with("web.2 | "),
            "line without a replica prefix: {line:?}"
        );
    }
    let line_with = |text: &str, needle: &str| -> String {
        text.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{text}"))
            .to_string()
    };
    let l = line_with(&all, "marker=m-one");
    assert!(
        l.starts_with("web.1 | ") && l.contains(" stdout web.1 GET /whoami"),
        "{l}"
    );
    let l = line_with(&all, "marker=m-two");
    assert!(
        l.starts_with("web.2 | ") && l.contains(" stdout web.2 GET /whoami"),
        "{l}"
    );
    for r in &list {
        let l = line_with(&all, &format!("listening on http://127.0.0.1:{}", r.port()));
        assert!(l.starts_with(&format!("{} | ", r.replica)), "{l}");
    }

    // --replica filters (with --file after the subcommand: -f means --follow here).
    let only = berth(&["logs", "web", "--file", stack.spec_str(), "--replica", "1"]);
    let only = only.ok();
    assert!(!only.is_empty());
    assert!(only.lines().all(|l| l.starts_with("web.1 | ")), "{only}");
    assert!(
        only.contains("marker=m-one") && !only.contains("marker=m-two"),
        "{only}"
    );

    // --tail N: the last N lines.
    let tail = stack.berth(&["logs", "web", "--tail", "3"]);
    let lines: Vec<&str> = tail.ok().lines().collect();
    assert_eq!(lines.len(), 3, "{}", tail.stdout);
    assert!(lines.iter().all(|l| l.starts_with("web.")), "{lines:?}");

    let since = stack.berth(&["logs", "web", "--since", "1h"]);
    assert!(since.ok().contains("marker=m-one"), "{}", since.stdout);
    let bad = stack.berth(&["logs", "web", "--since", "yesterday"]);
    assert!(bad.fails().contains("--since"), "{}", bad.stderr);
    let unknown = stack.berth(&["logs", "nosuch"]);
    assert!(
        unknown.fails().contains("no service `nosuch`"),
        "{}",
        unknown.stderr
    );

    // -f follows: a line written after the command started shows up.
    let mut follow = berth_command();
    follow
        .arg("-f")
        .arg(&stack.spec)
        .args(["logs", "web", "-f", "--tail", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = follow.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    stack.extra.push(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut next_request = Instant::now();
    let found = loop {
        // The follower may not be watching yet: repeat the request until its line shows up.
        if Instant::now() >= next_request {
            http(two.port(), "GET", "/whoami?marker=m-follow", b"").unwrap();
            next_request = Instant::now() + Duration::from_secs(2);
        }
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) if line.contains("marker=m-follow") => break line,
            Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(e) => panic!("berth logs -f ended: {e}"),
        }
        assert!(
            Instant::now() < deadline,
            "berth logs -f never showed the new line"
        );
    };
    assert!(found.starts_with("web.2 | "), "{found}");
}

/// The edge and the supervisor together: a rolling restart and scaling under a steady loopback
/// load through the edge lose no request (new replicas healthy before old ones drain; a
/// draining replica finishes what it has before its SIGTERM).
#[test]
fn rolling_restart_and_scaling_under_load_through_the_edge_fail_no_request() {
    let spec = format!(
        "{}\n[[route]]\npath = \"/\"\nservice = \"web\"\n",
        web(3, "")
    );
    let mut stack = Stack::new("zero-downtime", &spec);
    stack.up_and_wait();
    let before = stack.wait_healthy("web", 3);
    let port = stack.edge_port;
    wait_for("the edge to route to web", Duration::from_secs(10), || {
        matches!(http(port, "GET", "/whoami", b""), Ok((200, _))).then_some(())
    });

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            let tx = tx.clone();
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(90);
                let (mut ok, mut failed) = (0u32, Vec::new());
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline
                {
                    match http(port, "GET", "/whoami", b"") {
                        Ok((200, _)) => ok += 1,
                        Ok((status, body)) => failed.push(format!("{status}: {body}")),
                        Err(e) => failed.push(e),
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                tx.send((ok, failed)).unwrap();
            })
        })
        .collect();
    drop(tx);

    std::thread::sleep(Duration::from_millis(500));
    stack.berth(&["restart", "web"]).ok();
    stack.berth(&["scale", "web", "2"]).ok();
    stack.berth(&["scale", "web", "4"]).ok();
    let after = stack.wait_healthy("web", 4);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let (mut ok, mut failed) = (0, Vec::new());
    for (o, f) in rx {
        ok += o;
        failed.extend(f);
    }
    assert!(
        ok > 200,
        "too little traffic to mean anything: {ok} requests"
    );
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}",
        failed.len(),
        ok as usize + failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(
        pids(&after).is_disjoint(&pids(&before)),
        "every replica was replaced"
    );
}
