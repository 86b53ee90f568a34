//! `berth maintenance`: the edge answers 503 with the operator's page and `Retry-After`, the
//! state outlives an edge restart and a `berth up` after a stop, and `off` opens the site again.

use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

/// A GET through the edge: (status, Retry-After, body).
fn through_edge(stack: &Stack) -> (u16, Option<String>, String) {
    let output = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "5", "-D", "-", "-H", "Host: shop.test"])
        .arg(format!("http://127.0.0.1:{}/whoami", stack.edge_port))
        .output()
        .expect("curl (apt-get install curl)");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let retry_after = text.lines().find_map(|l| {
        l.to_ascii_lowercase()
            .strip_prefix("retry-after:")
            .map(|v| v.trim().to_string())
    });
    (status, retry_after, text)
}

#[test]
fn maintenance_mode_is_served_by_the_edge_and_outlives_restarts() {
    let body = format!(
        "maintenance_allow = []\n{}\n[[route]]\npath = \"/\"\nservice = \"web\"\n",
        web(1, "")
    );
    let mut stack = Stack::new("maintenance", &body);
    stack.up_and_wait();
    stack.wait_healthy("web", 1);
    wait_for("the site to answer", Duration::from_secs(20), || {
        (through_edge(&stack).0 == 200).then_some(())
    });

    // Bad input: an unknown service is refused with a clear message.
    let unknown = stack.berth(&["maintenance", "on", "nope"]);
    assert!(unknown.fails().contains("nope"), "{}", unknown.stderr);

    stack
        .berth(&["maintenance", "on", "--message", "Back at 5 <pm>"])
        .ok();
    let (status, retry_after, page) = through_edge(&stack);
    assert_eq!(status, 503, "{page}");
    assert!(retry_after.is_some(), "{page}");
    assert!(page.contains("Back at 5 &lt;pm&gt;"), "{page}");
    let status: Value =
        serde_json::from_str(stack.berth(&["maintenance", "status", "--json"]).ok()).unwrap();
    assert_eq!(status["on"], true, "{status}");

    // Still on after the edge is killed and restarted by the daemon...
    let out = stack.berth(&["status", "--json"]);
    let edge: Value = serde_json::from_str(out.ok()).unwrap();
    let pid = edge["edge"]["pid"].as_u64().unwrap() as u32;
    signal(pid, libc::SIGKILL);
    wait_for("the restarted edge", Duration::from_secs(20), || {
        let out = stack.berth(&["status", "--json"]);
        let v: Value = serde_json::from_str(out.ok()).ok()?;
        let new = v["edge"]["pid"].as_u64()?;
        (new != u64::from(pid) && through_edge(&stack).0 != 0).then_some(())
    });
    assert_eq!(through_edge(&stack).0, 503);

    // ...and after a stop and a new `berth up`.
    stack.signal_daemon(0, libc::SIGTERM);
    stack.wait_daemon_exit(0, Duration::from_secs(30));
    stack.up_and_wait();
    stack.wait_healthy("web", 1);
    let (status, _, page) = wait_for("the edge after berth up", Duration::from_secs(20), || {
        let answer = through_edge(&stack);
        (answer.0 != 0).then_some(answer)
    });
    assert_eq!(status, 503, "{page}");

    stack.berth(&["maintenance", "off"]).ok();
    assert_eq!(through_edge(&stack).0, 200);
}
