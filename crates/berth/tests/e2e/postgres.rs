//! Stacks with a PostgreSQL accessory: adoption after a daemon crash, data that outlives the
//! daemon, and the generated password kept secret. One server at a time (`postgres_lock`).

use std::path::Path;
use std::time::Duration;

use crate::harness::*;

const NO_DAEMON: &str = "no berth daemon is running";

fn visits(port: u16, method: &str) -> u64 {
    let (status, body) = http(port, method, "/visits", b"").unwrap();
    let expected = if method == "POST" { 201 } else { 200 };
    assert_eq!(status, expected, "{method} /visits: {body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    json["visits"].as_u64().unwrap_or_else(|| panic!("{json}"))
}

fn db_stack(name: &str, web_service: &str) -> Stack {
    let body = format!("{web_service}\n[accessory.db]\nengine = \"postgres\"\n");
    Stack::new(name, &body)
}

#[test]
fn a_restarted_daemon_adopts_its_replicas_and_data_survives() {
    let _one_postgres = postgres_lock();
    let mut stack = db_stack("adopt", &web(2, "use = [\"db\"]"));
    let first = stack.up_and_wait();
    let before = stack.wait_healthy("web", 2);
    let servers = stack.postmasters();
    assert_eq!(servers.len(), 1, "{servers:?}");
    let server = servers[0].pid;
    let edges = stack.edges();
    assert_eq!(edges.len(), 1, "{edges:?}");
    let edge = edges[0].pid;
    for i in 1..=3 {
        assert_eq!(visits(before[i as usize % 2].port(), "POST"), i);
    }

    // The daemon dies hard: replicas and the database server live on.
    stack.signal_daemon(first, libc::SIGKILL);
    let status = stack.wait_daemon_exit(first, Duration::from_secs(10));
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    for r in &before {
        assert!(alive(r.pid()), "{} died with the daemon", r.replica);
    }
    assert!(alive(server), "the database server died with the daemon");
    assert!(alive(edge), "the edge died with the daemon");
    assert_eq!(visits(before[0].port(), "GET"), 3);
    let ps = stack.berth(&["ps"]);
    assert!(ps.fails().contains(NO_DAEMON), "{}", ps.stderr);

    // A new daemon adopts them: same processes, no duplicates.
    let second = stack.up_with_env(&[("BERTH_METRICS_INTERVAL", "1s")]);
    stack.wait_up_line(second);
    let out = stack.daemon_stdout(second);
    assert!(out.contains("adopted 2 running replica(s)"), "{out}");
    let after = stack.wait_healthy("web", 2);
    let key = |r: &Replica| (r.replica.clone(), r.pid, r.port, r.release.clone());
    assert_eq!(
        after.iter().map(key).collect::<Vec<_>>(),
        before.iter().map(key).collect::<Vec<_>>(),
        "the replicas were not adopted as they were"
    );
    // The collector asks the adopted server for its connections and its database's size.
    wait_for("the database's metrics", Duration::from_secs(20), || {
        let metric = |name: &str| -> Option<f64> {
            let out = stack.berth(&[
                "metrics",
                name,
                "--accessory",
                "db",
                "--since",
                "1m",
                "--json",
            ]);
            let v: serde_json::Value = serde_json::from_str(out.ok()).ok()?;
            v["series"][0]["points"]
                .as_array()?
                .iter()
                .rev()
                .find_map(|p| p[1].as_f64())
        };
        (metric("accessory_up") == Some(1.0)
            && metric("accessory_connections").is_some_and(|n| n >= 1.0)
            && metric("database_bytes").is_some_and(|n| n > 1_000_000.0))
        .then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    let later = stack.wait_healthy("web", 2);
    assert_eq!(
        later.iter().map(key).collect::<Vec<_>>(),
        before.iter().map(key).collect::<Vec<_>>(),
        "adopted replicas were replaced afterwards"
    );
    assert_eq!(
        stack.app_processes("app.py").len(),
        2,
        "{:?}",
        stack.app_processes("app.py")
    );
    let servers = stack.postmasters();
    assert_eq!(
        servers.iter().map(|p| p.pid).collect::<Vec<_>>(),
        [server],
        "the database server was not adopted: {servers:?}"
    );
    assert_eq!(
        stack.edges().iter().map(|p| p.pid).collect::<Vec<_>>(),
        [edge],
        "the edge was not adopted"
    );
    let releases = stack.berth(&["releases", "--json"]);
    let releases: serde_json::Value = serde_json::from_str(releases.ok()).unwrap();
    assert_eq!(
        releases.as_array().unwrap().len(),
        1,
        "no new release for an unchanged app: {releases:#}"
    );
    assert_eq!(visits(after[1].port(), "GET"), 3);
    assert_eq!(visits(after[1].port(), "POST"), 4);

    // The adopted replicas are supervised: a killed one comes back.
    signal(after[0].pid(), libc::SIGKILL);
    wait_for(
        "adopted web.1 to be restarted",
        Duration::from_secs(30),
        || {
            let list = stack.replicas("web");
            list.iter()
                .find(|r| r.replica == "web.1")
                .filter(|r| {
                    r.health == "healthy"
                        && r.restarts >= 1
                        && r.pid.is_some_and(|p| p != after[0].pid())
                })
                .cloned()
        },
    );
    assert_eq!(stack.app_processes("app.py").len(), 2);

    // Down stops everything, database included; the data stays.
    stack.berth(&["down"]).ok();
    let status = stack.wait_daemon_exit(second, Duration::from_secs(40));
    assert_eq!(status.code(), Some(0));
    assert!(
        !alive(server),
        "berth down left the database server running"
    );
    assert!(
        stack.processes().is_empty(),
        "processes left: {:?}",
        stack.processes()
    );

    stack.up_and_wait();
    let again = stack.wait_healthy("web", 2);
    assert_eq!(visits(again[0].port(), "GET"), 4);
    assert_eq!(visits(again[1].port(), "POST"), 5);
    assert_eq!(stack.postmasters().len(), 1);
}

const LEAK_PY: &str = r#"
import os, sys, urllib.parse
url = os.environ["DATABASE_URL"]
print("leak url=" + url, flush=True)
print("leak password=" + (urllib.parse.urlsplit(url).password or "NONE"), flush=True)
print("leak stderr url=" + url, file=sys.stderr, flush=True)
"#;

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Files under `dir` whose content holds `secret` (skipping `skip` folders and files).
fn files_holding(dir: &Path, secret: &[u8], skip: &[&Path], found: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if skip.iter().any(|s| path == *s) {
            continue;
        }
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            files_holding(&path, secret, skip, found);
        } else if meta.is_file() {
            if let Ok(bytes) = std::fs::read(&path) {
                if contains(&bytes, secret) {
                    found.push(path.display().to_string());
                }
            }
        }
    }
}

#[test]
fn the_database_password_never_leaks() {
    let _one_postgres = postgres_lock();
    let mut stack = db_stack(
        "secrets",
        &service(
            "web",
            "python3 leak.py; exec python3 app.py",
            1,
            "use = [\"db\"]",
        ),
    );
    stack.write_app("leak.py", LEAK_PY);
    let daemon = stack.up_and_wait();
    let list = stack.wait_healthy("web", 1);
    // The app really got a working URL.
    assert_eq!(visits(list[0].port(), "POST"), 1);

    let db = stack.state().join("accessories").join("db");
    // The generated password lives in the encrypted secrets store, not in a plain file.
    assert!(!db.join("password").exists(), "a plain-text password file");
    let password = stack
        .berth(&["secrets", "get", "accessory.db.password", "--reveal"])
        .ok()
        .to_string();
    let password = password.trim();
    assert!(password.len() >= 16, "a weak password: {password:?}");
    let secret = password.as_bytes();

    // Not in any process's command line.
    for (pid, cmdline) in all_cmdlines() {
        assert!(
            !contains(&cmdline, secret),
            "the password is in the command line of pid {pid}: {}",
            String::from_utf8_lossy(&cmdline).replace('\0', " ")
        );
    }

    // Not in what the commands print.
    let logs = wait_for(
        "the leak lines in berth logs",
        Duration::from_secs(15),
        || {
            let out = stack.berth(&["logs", "web"]);
            let text = out.ok().to_string();
            (text.contains("leak url=") && text.contains("leak stderr url=")).then_some(text)
        },
    );
    for args in [
        &["ps"][..],
        &["ps", "--json"],
        &["events", "--json"],
        &["events"],
        &["releases", "--json"],
    ] {
        let out = stack.berth(args);
        assert!(
            !out.ok().contains(password) && !out.stderr.contains(password),
            "`berth {args:?}` prints the password"
        );
    }
    // The app printed it: the captured log shows it masked.
    assert!(
        !logs.contains(password),
        "berth logs shows the password:\n{logs}"
    );
    assert!(logs.contains("leak url=[redacted]"), "{logs}");
    assert!(logs.contains("leak password=[redacted]"), "{logs}");
    assert!(logs.contains("stderr leak stderr url=[redacted]"), "{logs}");

    // Not in any file Berth wrote (but the password file and the server's data).
    let mut found = Vec::new();
    files_holding(
        &stack.path().join(".berth"),
        secret,
        &[&db.join("password"), &db.join("data")],
        &mut found,
    );
    assert!(found.is_empty(), "files holding the password: {found:?}");

    // A new daemon (the old one killed) adopts the server and still masks the password in
    // the output of a replica it starts.
    stack.signal_daemon(daemon, libc::SIGKILL);
    stack.wait_daemon_exit(daemon, Duration::from_secs(10));
    let daemon2 = stack.up_and_wait();
    signal(list[0].pid(), libc::SIGKILL);
    let restarted = wait_for("web.1 to be restarted", Duration::from_secs(30), || {
        stack
            .replicas("web")
            .into_iter()
            .find(|r| r.health == "healthy" && r.restarts >= 1 && r.pid != list[0].pid)
    });
    assert_eq!(visits(restarted.port(), "POST"), 2);
    let logs = wait_for(
        "the second start's leak lines",
        Duration::from_secs(15),
        || {
            let text = stack.berth(&["logs", "web"]).ok().to_string();
            (text.matches("leak stderr url=").count() == 2).then_some(text)
        },
    );
    assert!(
        !logs.contains(password),
        "berth logs shows the password:\n{logs}"
    );
    assert_eq!(logs.matches("leak url=[redacted]").count(), 2, "{logs}");
    assert_eq!(
        logs.matches("leak password=[redacted]").count(),
        2,
        "{logs}"
    );
    for (pid, cmdline) in all_cmdlines() {
        assert!(
            !contains(&cmdline, secret),
            "the password is in the command line of pid {pid}"
        );
    }

    // Nor in berth's own output, up to its exit.
    stack.berth(&["down"]).ok();
    let status = stack.wait_daemon_exit(daemon2, Duration::from_secs(40));
    assert_eq!(status.code(), Some(0));
    for n in [daemon, daemon2] {
        let (out, err) = (stack.daemon_stdout(n), stack.daemon_stderr(n));
        assert!(
            !out.contains(password),
            "berth up's stdout holds the password:\n{out}"
        );
        assert!(
            !err.contains(password),
            "berth up's stderr holds the password:\n{err}"
        );
    }
    let mut found = Vec::new();
    files_holding(
        &stack.path().join(".berth"),
        secret,
        &[&db.join("password"), &db.join("data")],
        &mut found,
    );
    assert!(found.is_empty(), "files holding the password: {found:?}");
}
