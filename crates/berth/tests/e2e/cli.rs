//! The command line without a running stack: `validate`, a bad spec given to `up`, and client
//! commands when no daemon runs.

use std::time::Duration;

use crate::harness::*;

const TYPO_SPEC: &str = r#"[stack]
name = "bad"

[service.web]
run = "python3 app.py"
port = "auto"
replicas = 2
stop_timout = "5s"
"#;

const SEMANTIC_SPEC: &str = r#"[stack]
name = "bad"

[service.web]
run = "python3 app.py"
port = "auto"
use = ["dbx"]
memory = "12Q"

[accessory.db]
engine = "postgres"
"#;

#[test]
fn validate_reports_problems_with_their_place_and_a_hint() {
    let stack = Stack::new("validate", &web(2, ""));
    let good = berth(&["validate", "-f", stack.spec_str()]);
    assert!(good.ok().contains("ok (1 services"), "{}", good.stdout);
    assert!(good.stderr.is_empty(), "{}", good.stderr);

    let bad_dir = stack.path().join("bad");
    std::fs::create_dir(&bad_dir).unwrap();
    let bad = bad_dir.join("berth.toml");
    std::fs::write(&bad, TYPO_SPEC).unwrap();
    let bad = bad.to_str().unwrap();
    for args in [["validate", "-f", bad], ["-f", bad, "validate"]] {
        let out = berth(&args);
        let err = out.fails();
        assert!(
            err.contains("berth.toml:8:1: error: unknown key `stop_timout`"),
            "{args:?}:\n{err}"
        );
        assert!(err.contains("did you mean `stop_timeout`"), "{err}");
        assert!(
            err.contains("stop_timout = \"5s\""),
            "the snippet is missing:\n{err}"
        );
        assert!(
            err.contains("^^^^^^^^^^^"),
            "the span is not underlined:\n{err}"
        );
    }

    // Checks beyond the types: every problem is reported, not just the first.
    std::fs::write(bad_dir.join("berth.toml"), SEMANTIC_SPEC).unwrap();
    let out = berth(&["validate", "-f", bad]);
    let err = out.fails();
    assert!(
        err.contains("berth.toml:7:8: error: unknown accessory `dbx`"),
        "{err}"
    );
    assert!(err.contains("did you mean `db`"), "{err}");
    assert!(
        err.contains("berth.toml:8:10: error: invalid size \"12Q\""),
        "{err}"
    );
    assert!(err.contains("2 problem(s) found"), "{err}");

    // `berth up` refuses a bad spec and starts nothing.
    std::fs::write(bad_dir.join("berth.toml"), TYPO_SPEC).unwrap();
    let mut up = berth_command();
    up.args(["up", "-f", bad]);
    let out = run(up, Duration::from_secs(30));
    let err = out.fails();
    assert!(err.contains("berth.toml:8:1: error:"), "{err}");
    assert!(err.contains("nothing was started"), "{err}");
    assert!(!out.stdout.contains("is up"), "{}", out.stdout);
    assert!(!bad_dir.join(".berth/default/api.sock").exists());
    assert!(stack.processes().is_empty(), "{:?}", stack.processes());
}

#[test]
fn client_commands_without_a_daemon_fail_clearly() {
    let stack = Stack::new("nodaemon", &web(1, ""));
    let commands: [&[&str]; 9] = [
        &["ps"],
        &["ps", "--json"],
        &["logs", "web"],
        &["scale", "web", "2"],
        &["restart", "web"],
        &["down"],
        &["events"],
        &["events", "--json"],
        &["releases"],
    ];
    for args in commands {
        let out = stack.berth(args);
        let err = out.fails();
        assert!(
            err.contains("no berth daemon is running") && err.contains("berth up"),
            "berth {args:?}:\n{err}"
        );
        assert!(
            out.stdout.is_empty(),
            "berth {args:?} printed: {}",
            out.stdout
        );
    }
    // Asking did not start anything nor leave a socket behind.
    assert!(!stack.socket().exists());
    assert!(stack.processes().is_empty(), "{:?}", stack.processes());

    let out = berth(&["ps", "-f", "/nonexistent/berth-e2e/berth.toml"]);
    assert!(out.fails().contains("no such spec"), "{}", out.stderr);
}
