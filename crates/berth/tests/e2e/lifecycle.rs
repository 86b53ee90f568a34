//! Starting and stopping a stack: `berth up`, `berth down`, signals, one daemon per stack.

use std::collections::HashSet;
use std::time::Duration;

use crate::harness::*;

const NO_DAEMON: &str = "no berth daemon is running";

#[test]
fn up_serves_healthy_replicas_and_down_stops_them() {
    let body = format!(
        "{}\n[volume.uploads]\n",
        web(2, "volumes = [\"uploads\"]\nenv = { APP_VERSION = \"7\" }")
    );
    let mut stack = Stack::new("basic", &body);
    let daemon = stack.up_and_wait();

    let replicas = stack.wait_healthy("web", 2);
    let names: Vec<&str> = replicas.iter().map(|r| r.replica.as_str()).collect();
    assert_eq!(names, ["web.1", "web.2"]);
    let ports: HashSet<u16> = replicas.iter().map(|r| r.port()).collect();
    let pids: HashSet<u32> = replicas.iter().map(|r| r.pid()).collect();
    assert_eq!(ports.len(), 2, "ports must differ: {replicas:#?}");
    assert_eq!(pids.len(), 2, "pids must differ: {replicas:#?}");
    assert!(!replicas[0].release.is_empty());
    assert_eq!(replicas[0].release, replicas[1].release);
    for r in &replicas {
        assert!(
            alive(r.pid()),
            "{} pid {} is not running",
            r.replica,
            r.pid()
        );
        assert_eq!(r.restarts, 0, "{r:?}");
        assert!(r.last_exit.is_none(), "{r:?}");
    }

    // Each replica answers on its own port with its own name and Berth's variables.
    for r in &replicas {
        let who = get_json(r.port(), "/whoami");
        assert_eq!(who["replica"], r.replica.as_str(), "{who}");
        assert_eq!(who["port"], r.port(), "{who}");
        assert_eq!(who["release"], r.release.as_str(), "{who}");
        assert_eq!(who["service"], "web", "{who}");
        assert_eq!(who["env"], "default", "{who}");
        assert_eq!(who["version"], "7", "service env reaches the app: {who}");
    }
    // Exactly two app processes run.
    assert_eq!(stack.app_processes("app.py").len(), 2);

    // The volume is shared: written through one replica, read through the other.
    let (status, answer) = http(
        replicas[0].port(),
        "PUT",
        "/files/note.txt",
        b"shared by replicas",
    )
    .unwrap();
    assert_eq!(status, 201, "{answer}");
    let (status, content) = http(replicas[1].port(), "GET", "/files/note.txt", b"").unwrap();
    assert_eq!((status, content.as_str()), (200, "shared by replicas"));
    let on_disk = stack.state().join("volumes/uploads/note.txt");
    assert_eq!(
        std::fs::read_to_string(&on_disk).unwrap(),
        "shared by replicas"
    );

    // The table, with -f after the subcommand this time.
    let table = berth(&["ps", "-f", stack.spec_str()]);
    let table = table.ok();
    for r in &replicas {
        let row = table
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(r.replica.as_str()))
            .unwrap_or_else(|| panic!("no row for {} in:\n{table}", r.replica));
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[0], "web", "{row}");
        assert_eq!(cells[2], r.pid().to_string(), "{row}");
        assert_eq!(cells[3], r.port().to_string(), "{row}");
        assert_eq!(cells[4], "healthy", "{row}");
        assert_eq!(cells[5], r.release, "{row}");
    }
    assert!(
        table
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["web", "2/2", &replicas[0].release]),
        "no service summary `web 2/2 RELEASE` in:\n{table}"
    );

    // `berth down` stops everything, then returns; the daemon exits 0.
    let down = stack.berth(&["down"]);
    assert!(down.ok().contains("stack stopped"), "{}", down.stdout);
    for r in &replicas {
        assert!(
            !alive(r.pid()),
            "{} (pid {}) still runs after `berth down` returned",
            r.replica,
            r.pid()
        );
    }
    assert!(
        stack.app_processes("app.py").is_empty(),
        "app processes left after `berth down`: {:?}",
        stack.app_processes("app.py")
    );
    let status = stack.wait_daemon_exit(daemon, Duration::from_secs(15));
    assert_eq!(
        status.code(),
        Some(0),
        "berth up after berth down: {status}"
    );
    assert!(
        stack.processes().is_empty(),
        "processes left: {:?}",
        stack.processes()
    );
    assert!(!stack.socket().exists(), "the API socket is left behind");

    let ps = stack.berth(&["ps"]);
    assert!(ps.fails().contains(NO_DAEMON), "{}", ps.stderr);
}

#[test]
fn sigterm_stops_replicas_gracefully_and_exits_zero() {
    let body = format!(
        "{}\n[service.worker]\nrun = \"python3 worker.py\"\nsource = \"app\"\nstop_timeout = \"5s\"\n",
        web(2, "")
    );
    let mut stack = Stack::new("sigterm", &body);
    let daemon = stack.up_and_wait();
    let web = stack.wait_healthy("web", 2);
    let worker = stack.wait_healthy("worker", 1);
    assert_eq!(worker[0].port, None, "a service without port gets none");
    assert_eq!(stack.app_processes("worker.py").len(), 1);

    stack.signal_daemon(daemon, libc::SIGTERM);
    let status = stack.wait_daemon_exit(daemon, Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "berth up on SIGTERM: {status}");

    for r in web.iter().chain(&worker) {
        assert!(
            !alive(r.pid()),
            "{} (pid {}) outlived the daemon",
            r.replica,
            r.pid()
        );
    }
    assert!(
        stack.processes().is_empty(),
        "processes left after SIGTERM: {:?}",
        stack.processes()
    );
    assert!(!stack.socket().exists(), "the API socket is left behind");

    assert!(
        stack.daemon_stderr(daemon).contains("stopping"),
        "{}",
        stack.daemon_stderr(daemon)
    );

    let ps = stack.berth(&["ps"]);
    assert!(ps.fails().contains(NO_DAEMON), "{}", ps.stderr);
}

#[test]
fn a_second_up_for_a_running_stack_fails_at_once() {
    let mut stack = Stack::new("twice", &web(1, ""));
    let first = stack.up_and_wait();
    let before = stack.wait_healthy("web", 1);

    let second = stack.up();
    let status = stack.wait_daemon_exit(second, Duration::from_secs(15));
    assert_eq!(status.code(), Some(1), "the second berth up: {status}");
    let err = stack.daemon_stderr(second);
    assert!(
        err.contains("already runs"),
        "stderr of the second up:\n{err}"
    );
    assert!(
        !stack.daemon_stdout(second).contains("is up"),
        "{}",
        stack.daemon_stdout(second)
    );

    // The first daemon and its replica are untouched.
    assert!(stack.daemons[first].child.try_wait().unwrap().is_none());
    assert!(
        stack.socket().exists(),
        "the second up removed the API socket"
    );
    let after = stack.wait_healthy("web", 1);
    assert_eq!(after[0].pid, before[0].pid);
    assert_eq!(after[0].restarts, 0);
    assert_eq!(stack.app_processes("app.py").len(), 1);

    // Ctrl-C stops it like SIGTERM.
    stack.signal_daemon(first, libc::SIGINT);
    let status = stack.wait_daemon_exit(first, Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "berth up on SIGINT: {status}");
    assert!(!alive(before[0].pid()));
    assert!(stack.processes().is_empty(), "{:?}", stack.processes());
}

/// Stopping a replica sends SIGTERM and allows `stop_timeout` before SIGKILL, so an app that
/// handles SIGTERM finishes on its own. The hello app then logs "got SIGTERM, shutting down"
/// and "web.N stopped" and exits 0; the worker logs "got SIGTERM, exiting".
#[test]
fn stopping_lets_apps_shut_down_gracefully() {
    let body = format!(
        "{}\n[service.worker]\nrun = \"python3 worker.py\"\nsource = \"app\"\nstop_timeout = \"5s\"\n",
        web(1, "")
    );
    let mut stack = Stack::new("graceful", &body);
    let daemon = stack.up_and_wait();
    stack.wait_healthy("web", 1);
    stack.wait_healthy("worker", 1);
    wait_for(
        "the worker's first heartbeat",
        Duration::from_secs(10),
        || {
            stack
                .replica_log("worker.1")
                .contains("heartbeat #1")
                .then_some(())
        },
    );

    stack.signal_daemon(daemon, libc::SIGTERM);
    let status = stack.wait_daemon_exit(daemon, Duration::from_secs(30));
    assert_eq!(status.code(), Some(0));

    let log = stack.replica_log("web.1");
    assert!(
        log.contains("web.1 got SIGTERM, shutting down"),
        "web.1:\n{log}"
    );
    assert!(log.contains("web.1 stopped"), "web.1:\n{log}");
    let log = stack.replica_log("worker.1");
    assert!(
        log.contains("worker.1 got SIGTERM, exiting"),
        "worker.1:\n{log}"
    );
    let events = stack.daemon_stderr(daemon);
    assert!(
        events.contains("web.1: stopped: exit 0"),
        "the app should exit 0 on its own:\n{events}"
    );
}

/// `berth up` prints its "is up" line once every replica had its first health verdict: the
/// replicas are then healthy (or reported on stderr as not healthy).
#[test]
fn the_up_line_comes_after_the_first_health_verdicts() {
    let body = format!(
        "{}{}",
        web(2, "env = { BOOT_MS = \"1500\" }"),
        r#"
[service.sick]
run = "python3 app.py"
source = "app"
port = "auto"
env = { FAIL_HEALTH = "1" }

[service.sick.health]
path = "/health"
interval = "1s"
timeout = "1s"
healthy_threshold = 1
unhealthy_threshold = 1
grace_period = "1s"
"#
    );
    let mut stack = Stack::new("upline", &body);
    let daemon = stack.up_and_wait();
    let web = stack.replicas("web");
    assert_eq!(
        web.len(),
        2,
        "`is up` printed before the replicas exist: {web:#?}"
    );
    assert!(
        web.iter().all(|r| r.health == "healthy"),
        "`is up` printed before the replicas are healthy: {web:#?}"
    );
    let err = stack.daemon_stderr(daemon);
    assert!(
        err.contains("berth: warning: sick.1 is not healthy"),
        "no warning about sick.1 before `is up`:\n{err}"
    );
}
