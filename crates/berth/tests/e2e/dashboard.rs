//! The dashboard in a real browser: Debian's headless Chromium driven by playwright
//! (`dashboard.py`) loads the overview and the web service's page from the edge's admin
//! listener while a bounded loopback load runs; the pages log no console error (a CSP
//! violation would be one), the charts hold points of the running stack, and a deploy started
//! with `berth deploy --detach` appears with its progress and then its end. `berth top --once`
//! shows the same numbers in the terminal.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;
use crate::load::{Load, LoadOptions};

const DRIVER: &str = include_str!("dashboard.py");

/// Whether Chromium and playwright are here; under `CI=true` their absence fails the test.
fn browser_available() -> bool {
    let chromium = Path::new("/usr/bin/chromium").exists();
    let playwright = Command::new("python3")
        .args(["-c", "import playwright.sync_api"])
        .output()
        .is_ok_and(|o| o.status.success());
    if chromium && playwright {
        return true;
    }
    let missing = match (chromium, playwright) {
        (false, false) => {
            "chromium (apt-get install chromium) and playwright (pip install playwright)"
        }
        (false, true) => "chromium (apt-get install chromium)",
        _ => "playwright (pip install playwright)",
    };
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true and the browser test cannot run: install {missing}"
    );
    eprintln!("skipped: the dashboard test needs {missing}");
    false
}

fn spec() -> String {
    web(
        2,
        r#"env = { APP_VERSION = "1" }
volumes = ["uploads"]
[service.web.deploy]
strategy = "canary"
steps = [{ weight = 50, pause = "6s" }]
[service.web.deploy.analysis]
window = "2s"
"#,
    ) + "\n[volume.uploads]\n\n[[route]]\npath = \"/\"\nservice = \"web\"\n"
}

#[test]
fn the_dashboard_shows_the_stack_its_charts_and_a_running_deploy_in_chromium() {
    if !browser_available() {
        return;
    }
    let mut stack = Stack::new("dashboard", &spec());
    let n = stack.up_with_env(&[("BERTH_METRICS_INTERVAL", "1s")]);
    stack.wait_up_line(n);
    stack.wait_healthy("web", 2);
    let port = stack.edge_port;
    wait_for("the edge to route to web", Duration::from_secs(15), || {
        matches!(http(port, "GET", "/whoami", b""), Ok((200, _))).then_some(())
    });
    let load = Load::start(LoadOptions {
        rate: 30,
        threads: 2,
        max_requests: 3_000,
        max_duration: Duration::from_secs(100),
        ..LoadOptions::whoami(stack.edge_port)
    });
    let admin = stack.admin_port;
    wait_for("requests in the history", Duration::from_secs(20), || {
        let (status, body) = http(
            admin,
            "GET",
            "/api/metrics?name=requests&service=web&since=1m&merged=true",
            b"",
        )
        .ok()?;
        let v: Value = serde_json::from_str(&body).ok()?;
        let any = v["series"][0]["points"]
            .as_array()?
            .iter()
            .any(|p| p[1].as_f64().is_some_and(|x| x > 0.0));
        (status == 200 && any).then_some(())
    });

    // The page and its read-only JSON through the admin listener, with the page's headers;
    // what changes state is not reachable.
    let (status, page) = http(admin, "GET", "/dashboard/", b"").unwrap();
    assert_eq!(status, 200);
    assert!(page.contains("app.js"), "{page}");
    let headers = curl_headers(admin, "/dashboard/app.js");
    assert!(
        headers.contains("content-security-policy: default-src 'none'; script-src 'self'"),
        "{headers}"
    );
    let (status, body) = http(admin, "GET", "/api/status", b"").unwrap();
    assert_eq!(status, 200, "{body}");
    let status_json: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status_json["services"][0]["name"], "web");
    for path in [
        "/api/down",
        "/api/deploys/1/cancel",
        "/dashboard/../v1/down",
    ] {
        let (status, _) = http(admin, "POST", path, b"").unwrap();
        assert_eq!(status, 404, "{path}");
    }

    // `berth top --once`: the same numbers in the terminal.
    let top = wait_for(
        "berth top with a request rate",
        Duration::from_secs(20),
        || {
            let out = stack.berth(&["top", "--once"]);
            let line = out
                .ok()
                .lines()
                .find(|l| l.trim_start().starts_with("web "))?
                .to_string();
            // SERVICE RELEASE HEALTHY REQ/S ...: a rate, not "-".
            let rate = line.split_whitespace().nth(3)?.parse::<f64>().ok()?;
            (rate > 0.0).then(|| out.stdout.clone())
        },
    );
    println!("{top}");
    assert!(top.contains("berth top: e2e-dashboard (default)"), "{top}");
    assert!(top.contains("web.1") && top.contains("healthy"), "{top}");

    // A verified backup (of the volume).
    let out = stack.berth(&["backup", "now", "--json"]);
    let backup: Value = serde_json::from_str(out.ok()).unwrap();
    let backup_id = backup["id"].as_str().unwrap().to_string();
    stack.berth(&["backup", "verify", &backup_id]).ok();

    // A deploy from the CLI, then the browser.
    stack.write_spec(
        "dashboard",
        &spec().replace(r#"APP_VERSION = "1""#, r#"APP_VERSION = "2""#),
    );
    let out = stack.berth(&["deploy", "web", "--detach", "--json"]);
    assert!(out.success(), "{}\n{}", out.stdout, out.stderr);
    let started: Value = serde_json::from_str(&out.stdout).unwrap();
    let id = started["id"].as_u64().unwrap().to_string();

    let shots = std::env::var("BERTH_DASHBOARD_SHOTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| stack.path().join("logs"));
    std::fs::create_dir_all(&shots).unwrap();
    // The replicas' logs: the admin token is needed even on loopback.
    let token = std::fs::read_to_string(stack.state().join("edge/admin.token"))
        .expect("the edge's admin token")
        .trim()
        .to_string();
    let (status, _) = http(admin, "GET", "/api/logs?service=web", b"").unwrap();
    assert_eq!(status, 401, "logs without the token");
    let (_, session) = http(admin, "GET", "/api/session", b"").unwrap();
    assert_eq!(session.trim(), r#"{"logs":false}"#);
    let with_token = Command::new("curl")
        .args(["-s", "-H"])
        .arg(format!("Authorization: Bearer {token}"))
        .arg(format!(
            "http://127.0.0.1:{admin}/api/logs?service=web&tail=5"
        ))
        .output()
        .unwrap();
    let logs: Value = serde_json::from_slice(&with_token.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&with_token.stdout)));
    let lines = logs["lines"].as_array().expect("lines");
    assert!(
        !lines.is_empty()
            && lines.len() <= 5
            && lines
                .iter()
                .all(|l| l.as_str().is_some_and(|l| l.starts_with("web."))),
        "{logs}"
    );
    let driver = stack.path().join("dashboard.py");
    std::fs::write(&driver, DRIVER).unwrap();
    let mut command = Command::new("python3");
    command
        .arg(&driver)
        .arg(format!("http://127.0.0.1:{admin}"))
        .arg(&id)
        .arg(&backup_id)
        .arg(&shots)
        .arg(&token);
    let out = run(command, Duration::from_secs(150));
    let result: Value = serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "the browser driver printed no result ({e}):\n{}\n{}",
            out.stdout, out.stderr
        )
    });
    println!("{}", serde_json::to_string_pretty(&result).unwrap());
    let report = load.stop();
    assert!(out.success(), "the browser driver failed: {result}");

    assert_eq!(
        result["console_errors"],
        serde_json::json!([]),
        "console errors"
    );
    let backup_text = result["backup_text"].as_str().unwrap_or("");
    assert!(
        backup_text.contains("verified") && backup_text.contains("uploads"),
        "{result}"
    );
    // Two, or four while the canary's replicas run beside them.
    assert!(result["replicas"].as_u64().unwrap_or(0) >= 2, "{result}");
    let text = result["deploy_text"].as_str().unwrap();
    assert!(
        text.contains(&format!("deploy {id} of web")) && text.contains("step"),
        "{text}"
    );
    assert!(
        result["progress_max"]
            .as_str()
            .and_then(|m| m.parse::<u32>().ok())
            .is_some_and(|m| m >= 1),
        "{result}"
    );
    // The state the page ended on is the record's.
    let list = stack.berth(&["deploys", "--json"]);
    let list: Value =
        serde_json::from_str(list.ok()).unwrap_or_else(|e| panic!("{e}: {}", list.stdout));
    let record = list
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"].as_u64().is_some_and(|n| n.to_string() == id))
        .unwrap_or_else(|| panic!("no deploy {id} in {list}"));
    assert_eq!(result["deploy_final"], record["state"], "{result}");
    let charts = &result["charts"];
    for chart in ["requests", "cpu", "memory", "replicas", "latency"] {
        assert!(
            charts[chart]["points"].as_u64().unwrap_or(0) > 0 && charts[chart]["canvas"] == true,
            "chart {chart}: {charts}"
        );
    }
    assert!(
        charts["cpu"]["series"].as_u64().unwrap_or(0) >= 2,
        "{charts}"
    );
    assert!(result["releases"].as_u64().unwrap_or(0) >= 2, "{result}");
    assert!(
        result["range_24h_points"].as_u64().unwrap_or(0) > 0,
        "{result}"
    );
    assert_eq!(result["service_deploys"], 1, "{result}");
    assert_eq!(result["logs_locked"], true, "{result}");
    assert!(result["log_lines"].as_u64().unwrap_or(0) > 0, "{result}");
    assert!(
        result["log_text"].as_str().unwrap_or("").contains("web."),
        "{result}"
    );
    // The token does not stay in the address bar: the login link redirected.
    assert!(
        !result["login_url"].as_str().unwrap_or("").contains(&token),
        "{result}"
    );
    assert!(report.samples.iter().filter(|s| s.ok()).count() > 10);
}

/// The answer headers of GET `path` on the admin listener, lower-cased.
fn curl_headers(port: u16, path: &str) -> String {
    let out = Command::new("curl")
        .args(["-s", "-D", "-", "-o", "/dev/null", "--max-time", "5"])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .expect("curl (apt-get install curl)");
    String::from_utf8_lossy(&out.stdout).to_lowercase()
}
