//! The edge's response cache through the whole stack: `berth cache purge` over the daemon's API
//! (with its errors for bad input), and a deploy (and a rollback) purging its service's cached
//! answers when traffic is on one release again, so no visitor is served the other's pages.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

/// The hello app as `web`, answering `Cache-Control: public, max-age=3600`, behind a cache
/// with one rule for every path.
fn body(version: &str) -> String {
    format!(
        r#"
[service.web]
run = "python3 app.py"
source = "app"
port = "auto"
replicas = 1
stop_timeout = "5s"
env = {{ APP_VERSION = "{version}", CACHE_CONTROL = "public, max-age=3600" }}

[service.web.health]
path = "/health"
interval = "1s"
timeout = "1s"
healthy_threshold = 1
unhealthy_threshold = 2
grace_period = "2s"

[service.web.deploy]
strategy = "rolling"
[service.web.deploy.analysis]
window = "2s"

[[route]]
path = "/"
service = "web"

[cache]
max_size = "16M"
max_object = "1M"

[[cache.rule]]
path = "/*"
default_ttl = "1h"
"#
    )
}

/// GET `/whoami` through the edge: (status, X-Cache, version of the app that answered).
fn whoami(port: u16) -> Result<(u16, String, String), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET /whoami HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no answer: {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let x_cache = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("x-cache:")
                .map(|v| v.trim().to_uppercase())
        })
        .unwrap_or_else(|| "-".into());
    let version = serde_json::from_str::<Value>(body.trim())
        .ok()
        .and_then(|v| v["version"].as_str().map(str::to_string))
        .unwrap_or_default();
    Ok((status, x_cache, version))
}

#[test]
fn purge_by_cli_and_a_deploy_purges_its_service() {
    let mut stack = Stack::new("cache", &body("1"));
    stack.up_and_wait();
    stack.wait_healthy("web", 1);
    let port = stack.edge_port;
    let first = wait_for("the edge to route to web", Duration::from_secs(20), || {
        whoami(port).ok().filter(|(s, _, _)| *s == 200)
    });
    assert_eq!(first.1, "MISS", "{first:?}");
    assert_eq!(whoami(port).unwrap().1, "HIT");

    // Bad input is refused with a message.
    let unknown = stack.berth(&["cache", "purge", "--service", "nope"]);
    assert!(unknown.fails().contains("nope"), "{}", unknown.stderr);
    let bad = stack.berth(&["cache", "purge", "no-slash"]);
    assert!(
        bad.fails().contains("must start with `/`"),
        "{}",
        bad.stderr
    );

    // A prefix that does not match leaves the entry; the service's purge drops it.
    let out = stack.berth(&["cache", "purge", "--service", "web", "/img/"]);
    assert!(out.ok().contains("purged 0"), "{}", out.stdout);
    assert_eq!(whoami(port).unwrap().1, "HIT");
    let out = stack.berth(&["cache", "purge", "--service", "web", "--json"]);
    let purged: Value = serde_json::from_str(out.ok()).unwrap();
    assert_eq!(purged["purged"], 1, "{purged}");
    assert_eq!(whoami(port).unwrap().1, "MISS");
    let cached = whoami(port).unwrap();
    assert_eq!((cached.1.as_str(), cached.2.as_str()), ("HIT", "1"));

    // A deploy of version 2: once it is done, the cached version 1 is gone.
    stack.write_spec("cache", &body("2"));
    let deploy = stack.berth(&["deploy", "web"]);
    assert!(deploy.success(), "{}\n{}", deploy.stdout, deploy.stderr);
    let after = whoami(port).unwrap();
    assert_eq!(after.0, 200);
    assert_eq!(
        after.2, "2",
        "a cached answer of the old release: {after:?}"
    );
    assert_eq!(after.1, "MISS", "{after:?}");
    let record: Value = serde_json::from_str(stack.berth(&["deploys", "--json"]).ok()).unwrap();
    let steps = record[0]["steps"].to_string();
    assert!(steps.contains("purge the edge's cache"), "{steps}");
    assert_eq!(whoami(port).unwrap().1, "HIT");

    // A rollback to version 1 purges too.
    let rollback = stack.berth(&["rollback", "web"]);
    assert!(
        rollback.success(),
        "{}\n{}",
        rollback.stdout,
        rollback.stderr
    );
    let back = wait_for("the rollback to finish", Duration::from_secs(60), || {
        let list: Value = serde_json::from_str(stack.berth(&["deploys", "--json"]).ok()).ok()?;
        (list[0]["state"] != "running").then_some(list)
    });
    assert_eq!(back[0]["state"], "succeeded", "{}", back[0]);
    let after = whoami(port).unwrap();
    assert_eq!(
        (after.1.as_str(), after.2.as_str()),
        ("MISS", "1"),
        "a cached answer of the rolled-back release: {after:?}"
    );
}
