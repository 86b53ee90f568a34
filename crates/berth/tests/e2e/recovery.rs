//! Replicas that die, crash-loop or fail their health check; what a daemon that died hard left
//! behind (unrecorded replicas, tasks).

use std::time::{Duration, Instant};

use crate::harness::*;

#[test]
fn a_killed_replica_is_restarted() {
    let mut stack = Stack::new("respawn", &web(2, ""));
    stack.up_and_wait();
    let before = stack.wait_healthy("web", 2);
    let (victim, other) = (&before[0], &before[1]);

    signal(victim.pid(), libc::SIGKILL);
    let after = wait_for(
        "web.1 to be restarted and healthy",
        Duration::from_secs(30),
        || {
            let list = stack.replicas("web");
            let r = list.iter().find(|r| r.replica == "web.1")?;
            (r.pid.is_some_and(|p| p != victim.pid() && alive(p))
                && r.health == "healthy"
                && r.restarts >= 1)
                .then_some(list)
        },
    );
    assert_eq!(after.len(), 2, "{after:#?}");
    let restarted = &after[0];
    assert_eq!(restarted.replica, "web.1");
    assert_eq!(restarted.restarts, 1, "{restarted:?}");
    assert_eq!(
        restarted.last_exit.as_deref(),
        Some("signal 9"),
        "{restarted:?}"
    );
    assert!(!alive(victim.pid()));
    let who = get_json(restarted.port(), "/whoami");
    assert_eq!(who["replica"], "web.1", "{who}");

    // The other replica was not touched.
    assert_eq!(after[1].replica, other.replica);
    assert_eq!(after[1].pid, other.pid);
    assert_eq!(after[1].restarts, 0);
    assert_eq!(after[1].health, "healthy");
    // No duplicate: still two app processes.
    assert_eq!(
        stack.app_processes("app.py").len(),
        2,
        "{:?}",
        stack.app_processes("app.py")
    );
}

#[test]
fn a_crash_looping_replica_is_failed_and_the_others_keep_running() {
    let body = format!(
        "{}\n[service.boom]\nrun = \"echo boom-marker; echo boom-on-stderr >&2; exit 3\"\nsource = \"app\"\n",
        web(1, "")
    );
    let mut stack = Stack::new("crashloop", &body);
    stack.up_and_wait();
    let web_before = stack.wait_healthy("web", 1);

    let check_web = |list: &[Replica]| {
        let w = list
            .iter()
            .find(|r| r.replica == "web.1")
            .unwrap_or_else(|| panic!("web.1 is gone: {list:#?}"));
        assert_eq!(w.health, "healthy", "web.1 suffered from boom: {w:?}");
        assert_eq!(w.pid, web_before[0].pid, "web.1 was restarted: {w:?}");
        assert_eq!(w.restarts, 0, "{w:?}");
    };

    let started = Instant::now();
    let failed = wait_for("boom.1 to be failed", Duration::from_secs(40), || {
        let list = stack.ps();
        check_web(&list);
        list.into_iter()
            .find(|r| r.replica == "boom.1" && r.health == "failed")
    });
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(failed.last_exit.as_deref(), Some("exit 3"), "{failed:?}");
    assert!(
        failed.last_log.iter().any(|l| l.contains("boom-marker")),
        "last_log lacks the app's output: {failed:?}"
    );
    assert!(failed.restarts >= 3, "{failed:?}");
    assert_eq!(
        failed.pid, None,
        "a failed replica waiting to restart has no process"
    );

    // The table explains the failure (retried: between two back-offs, boom.1 briefly runs).
    let table = wait_for(
        "ps to explain boom.1's exit",
        Duration::from_secs(15),
        || {
            let out = stack.berth(&["ps"]);
            let table = out.ok().to_string();
            table.contains("boom.1 last exit: exit 3").then_some(table)
        },
    );
    assert!(table.contains("boom-marker"), "{table}");

    // It keeps being retried (with back-off) and stays visible; web keeps serving meanwhile.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let list = stack.ps();
        check_web(&list);
        assert!(
            list.iter().any(|r| r.replica == "boom.1"),
            "boom.1 vanished from ps: {list:#?}"
        );
        let who = get_json(web_before[0].port(), "/whoami");
        assert_eq!(who["replica"], "web.1");
        std::thread::sleep(Duration::from_millis(300));
    }

    let events = stack.berth(&["events", "--json"]);
    let events: serde_json::Value = serde_json::from_str(events.ok()).unwrap();
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["subject"] == "boom.1"
                && e["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("crash-looping"))),
        "no crash-looping event for boom.1: {events:#}"
    );
}

#[test]
fn a_replica_failing_its_health_check_is_replaced() {
    let body = r#"
[service.web]
run = "python3 app.py"
source = "app"
port = "auto"
replicas = 1
stop_timeout = "5s"
env = { FAIL_HEALTH = "1" }

[service.web.health]
path = "/health"
interval = "1s"
timeout = "1s"
healthy_threshold = 1
unhealthy_threshold = 2
grace_period = "1s"
"#;
    let mut stack = Stack::new("unhealthy", body);
    stack.up_and_wait();

    let replaced = wait_for("web.1 to be replaced", Duration::from_secs(40), || {
        let list = stack.replicas("web");
        assert!(
            list.iter().all(|r| r.health != "healthy"),
            "a replica failing /health is shown healthy: {list:#?}"
        );
        list.into_iter()
            .find(|r| r.restarts >= 1 && r.last_exit.is_some())
    });
    let last_exit = replaced.last_exit.clone().unwrap();
    assert!(last_exit.contains("unhealthy"), "{replaced:?}");
    assert!(last_exit.contains("503"), "{replaced:?}");
    assert!(
        stack.app_processes("app.py").len() <= 1,
        "the unhealthy process was not stopped: {:?}",
        stack.app_processes("app.py")
    );
}

#[test]
fn a_replica_that_died_while_no_daemon_ran_is_replaced_on_up() {
    let mut stack = Stack::new("orphan", &web(2, ""));
    let first = stack.up_and_wait();
    let before = stack.wait_healthy("web", 2);

    stack.signal_daemon(first, libc::SIGKILL);
    stack.wait_daemon_exit(first, Duration::from_secs(10));
    signal(before[0].pid(), libc::SIGKILL);
    // Gone for good: the app and its shim (which lingers a moment to record the exit).
    wait_for(
        "web.1's app and shim to be gone",
        Duration::from_secs(10),
        || {
            let shims = stack
                .processes()
                .into_iter()
                .filter(|p| p.argv.get(1).is_some_and(|a| a == "shim"))
                .filter(|p| p.argv.iter().any(|a| a.contains("/replicas/web.1/")))
                .filter(|p| alive(p.pid))
                .count();
            (!alive(before[0].pid()) && stack.app_processes("app.py").len() == 1 && shims == 0)
                .then_some(())
        },
    );

    let second = stack.up_and_wait();
    let out = stack.daemon_stdout(second);
    assert!(out.contains("adopted 1 running replica(s)"), "{out}");
    let after = stack.wait_healthy("web", 2);
    let kept: Vec<&Replica> = after.iter().filter(|r| r.pid == before[1].pid).collect();
    assert_eq!(kept.len(), 1, "web.2 was not adopted: {after:#?}");
    assert_eq!(kept[0].replica, "web.2");
    let new: Vec<&Replica> = after.iter().filter(|r| r.pid != before[1].pid).collect();
    assert_eq!(new.len(), 1, "{after:#?}");
    assert_ne!(new[0].pid, before[0].pid);
    assert_eq!(
        stack.app_processes("app.py").len(),
        2,
        "{:?}",
        stack.app_processes("app.py")
    );
    assert_eq!(stack.edges().len(), 1, "{:?}", stack.edges());
    for r in &after {
        let who = get_json(r.port(), "/whoami");
        assert_eq!(who["replica"], r.replica.as_str());
    }
    // Not silently replaced: the death is an event, with the status its shim recorded.
    let events = stack.berth(&["events"]);
    let line = events
        .ok()
        .lines()
        .find(|l| l.contains("web.1") && l.contains("died while the daemon was down"))
        .unwrap_or_else(|| panic!("no event for web.1's death:\n{}", events.stdout));
    assert!(
        line.contains(&format!("process {} died", before[0].pid())) && line.contains("signal 9"),
        "{line}"
    );
}

#[test]
fn a_replica_its_daemon_died_before_recording_is_stopped_on_the_next_up() {
    let mut stack = Stack::new("unrecorded", &web(1, ""));
    let first = stack.up_and_wait();
    let before = stack.wait_healthy("web", 1);
    stack.signal_daemon(first, libc::SIGKILL);
    stack.wait_daemon_exit(first, Duration::from_secs(10));

    // What a daemon killed between starting a replica's shim and recording it leaves behind: a
    // shim and its application in a folder of the stack's replicas that no record names.
    let replica_dir = stack.state().join("replicas").join("web.7");
    let instance_dir = replica_dir.join("run-1");
    std::fs::create_dir_all(&instance_dir).unwrap();
    let marker = "sleep 617";
    let launch = berth_model::LaunchSpec {
        key: berth_model::ReplicaKey::new("web", 7),
        release: berth_model::ReleaseId("r9-unrecorded".into()),
        command: format!("exec {marker}"),
        cwd: stack.path().to_path_buf(),
        env: [("PATH".to_string(), "/usr/bin:/bin".to_string())].into(),
        port: None,
        instance_dir: instance_dir.clone(),
        log_file: replica_dir.join("current.log"),
        log_max_bytes: 1 << 20,
        log_keep: 1,
        memory: None,
        cpu: None,
        cgroup: "berth/e2e-unrecorded/web.7-1".into(),
        redact: vec![],
        container: None,
    };
    std::fs::write(
        instance_dir.join("launch.json"),
        serde_json::to_vec(&launch).unwrap(),
    )
    .unwrap();
    let mut shim = StopOnDrop(
        berth_command()
            .arg("shim")
            .arg(&instance_dir)
            .stdin(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let app_pid: u32 = wait_for("the stray's app to start", Duration::from_secs(10), || {
        std::fs::read_to_string(instance_dir.join("app.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    });
    assert!(alive(app_pid));

    let second = stack.up_and_wait();
    let out = stack.daemon_stdout(second);
    assert!(out.contains("adopted 1 running replica(s)"), "{out}");
    let exit = wait_for("the stray shim to end", Duration::from_secs(20), || {
        shim.0.try_wait().unwrap()
    });
    assert!(!alive(app_pid), "the stray's app {app_pid} still runs");
    println!("[unrecorded] the stray shim ended: {exit}");
    // The recorded replica was adopted, not touched.
    let after = stack.wait_healthy("web", 1);
    assert_eq!(after[0].pid, before[0].pid, "{after:#?}");
    assert!(
        stack
            .events()
            .iter()
            .any(|(_, message)| message.contains("no record names") && message.contains("web.7")),
        "no event for the stray: {:?}",
        stack.events()
    );
}

/// The live processes of process group `group`.
fn live_group(group: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // After the command name: state, ppid, pgrp.
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .map_or("", |(_, rest)| rest)
                .split_whitespace()
                .collect();
            fields.get(2) == Some(&group.to_string().as_str()) && alive(pid)
        })
        .collect()
}

#[test]
fn a_task_its_daemon_died_under_is_stopped_on_the_next_up() {
    let mut stack = Stack::new("task-orphan", &web(1, ""));
    let first = stack.up_and_wait();
    stack.wait_healthy("web", 1);
    // A quiet task (a write to its log pipe, gone with the daemon, would end it) with a child.
    let pid_file = stack.path().join("task.pid");
    let command = format!("echo $$ > '{}'; sleep 617; true", pid_file.display());
    stack
        .berth(&["run", "web", "--detach", "--", &command])
        .ok();
    let shell: u32 = wait_for("the task to start", Duration::from_secs(10), || {
        std::fs::read_to_string(&pid_file).ok()?.trim().parse().ok()
    });
    let group = wait_for("the task's child", Duration::from_secs(10), || {
        Some(live_group(shell)).filter(|g| g.len() == 2)
    });
    stack.signal_daemon(first, libc::SIGKILL);
    stack.wait_daemon_exit(first, Duration::from_secs(10));
    assert_eq!(live_group(shell), group, "the task outlives its daemon");

    let second = stack.up_and_wait();
    let out = stack.daemon_stdout(second);
    assert!(
        out.contains("stopped 2 task process(es) an earlier daemon left running"),
        "{out}"
    );
    wait_for("the task to end", Duration::from_secs(15), || {
        live_group(shell).is_empty().then_some(())
    });
    assert!(
        stack.events().iter().any(|(_, message)| {
            message.contains("a task of an earlier daemon")
                && message.contains(&format!("pid {shell},"))
        }),
        "no event for the task: {:?}",
        stack.events()
    );
    // The new daemon runs tasks as before.
    let out = stack.berth(&["run", "web", "--", "echo still-runs"]);
    assert_eq!(out.ok().trim(), "still-runs");
}

#[test]
fn berth_down_ends_a_detached_task_and_what_it_started() {
    let mut stack = Stack::new("task-down", &web(1, ""));
    let first = stack.up_and_wait();
    stack.wait_healthy("web", 1);
    let pid_file = stack.path().join("task.pid");
    let command = format!("echo $$ > '{}'; sleep 618; true", pid_file.display());
    stack
        .berth(&["run", "web", "--detach", "--", &command])
        .ok();
    let shell: u32 = wait_for("the task to start", Duration::from_secs(10), || {
        std::fs::read_to_string(&pid_file).ok()?.trim().parse().ok()
    });
    wait_for("the task's child", Duration::from_secs(10), || {
        Some(live_group(shell)).filter(|g| g.len() == 2)
    });
    stack.berth(&["down"]).ok();
    stack.wait_daemon_exit(first, Duration::from_secs(30));
    let left = live_group(shell);
    assert!(
        left.is_empty(),
        "the task's processes {left:?} outlive `berth down`"
    );
}

/// A shim a test started by hand: SIGTERMed (it stops its application) when the test ends.
struct StopOnDrop(std::process::Child);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            signal(self.0.id(), libc::SIGTERM);
            let _ = self.0.wait();
        }
    }
}
