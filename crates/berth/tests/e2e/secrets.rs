//! Secrets end to end: a declared secret that is missing stops `berth up` before anything
//! starts; values reach the replicas as variables or files at the version their release pinned
//! (`set --restart` moves them on); values never show in argv, logs, API answers or files; a
//! wrong master key or a tampered store is a clear error that changes nothing.

use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::harness::*;

const TOKEN_V1: &str = "tok-9f2c1e7a-first-VALUE";
const TOKEN_V2: &str = "tok-51d0b3aa-second-VALUE";
const CERT: &str = "-----BEGIN KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END KEY-----\n";

const LEAK_PY: &str = r#"
import hashlib, os
token = os.environ["API_TOKEN"]
cert = open(os.environ["TLS_KEY_FILE"]).read()
print("token-sha=" + hashlib.sha256(token.encode()).hexdigest(), flush=True)
print("cert-sha=" + hashlib.sha256(cert.encode()).hexdigest(), flush=True)
print("cert-env=" + str("TLS_KEY" in os.environ), flush=True)
print("leak token=" + token, flush=True)
"#;

fn sha(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn secrets_are_injected_at_pinned_versions_and_never_leak() {
    let mut stack = Stack::new(
        "secrets-inject",
        &service(
            "web",
            "python3 leak_secret.py; exec python3 app.py",
            1,
            "secrets = [\"API_TOKEN\", \"TLS_KEY\"]",
        ),
    );
    stack.write_app("leak_secret.py", LEAK_PY);

    // Missing secrets: validate says so, and nothing starts.
    let out = stack.berth(&["validate"]);
    assert!(
        out.fails()
            .contains("service `web` declares secret `API_TOKEN`"),
        "{}",
        out.stderr
    );
    let mut up = berth_command();
    up.args(["up", "-f", stack.spec_str()]);
    let failed = run(up, Duration::from_secs(60));
    let err = failed.fails();
    assert!(
        err.contains("service `web` declares secret `API_TOKEN`")
            && err.contains("berth secrets set")
            && err.contains("nothing was started"),
        "{err}"
    );
    assert!(stack.processes().is_empty(), "{:?}", stack.processes());

    // Set them before the stack runs: straight into the store.
    stack
        .set_secret("API_TOKEN", &format!("{TOKEN_V1}\n"), &[])
        .ok();
    let cert = stack.path().join("key.pem");
    std::fs::write(&cert, CERT).unwrap();
    stack
        .berth(&[
            "secrets",
            "set",
            "TLS_KEY",
            "--as-file",
            "--from-file",
            cert.to_str().unwrap(),
        ])
        .ok();
    stack.berth(&["validate"]).ok();
    let bad = stack.set_secret("bad-name", "x", &[]);
    assert!(
        bad.fails().contains("not a valid secret name"),
        "{}",
        bad.stderr
    );

    let daemon = stack.up_and_wait();
    let first = stack.wait_healthy("web", 1);
    let logs = wait_for("the leak lines", Duration::from_secs(15), || {
        let text = stack.berth(&["logs", "web"]).ok().to_string();
        text.contains("leak token=").then_some(text)
    });
    assert!(
        logs.contains(&format!("token-sha={}", sha(TOKEN_V1))),
        "{logs}"
    );
    assert!(logs.contains(&format!("cert-sha={}", sha(CERT))), "{logs}");
    assert!(
        logs.contains("cert-env=False"),
        "a file secret is not a variable: {logs}"
    );
    assert!(logs.contains("leak token=[redacted]"), "{logs}");
    assert!(!logs.contains(TOKEN_V1), "{logs}");

    // The file is private.
    let files: Vec<_> = std::fs::read_dir(stack.state().join("secrets/web"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let mode = std::os::unix::fs::PermissionsExt::mode(&files[0].metadata().unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);

    // Values only with --reveal.
    let get = stack.berth(&["secrets", "get", "API_TOKEN"]);
    assert!(get.fails().contains("--reveal"), "{}", get.stderr);
    assert!(!get.stderr.contains(TOKEN_V1));
    assert_eq!(
        stack
            .berth(&["secrets", "get", "API_TOKEN", "--reveal"])
            .ok(),
        format!("{TOKEN_V1}\n")
    );

    // A new version: without --restart the replica keeps the pinned one...
    let out = stack.set_secret("API_TOKEN", TOKEN_V2, &[]);
    assert!(out.ok().contains("version 2"), "{}", out.stdout);
    assert!(out.stdout.contains("keep the version"), "{}", out.stdout);
    stack.berth(&["restart", "web"]).ok();
    let restarted = stack.wait_healthy("web", 1);
    assert_ne!(restarted[0].pid, first[0].pid);
    let logs = wait_for("a second start", Duration::from_secs(15), || {
        let text = stack.berth(&["logs", "web"]).ok().to_string();
        (text.matches("leak token=").count() == 2).then_some(text)
    });
    assert_eq!(
        logs.matches(&sha(TOKEN_V1)).count(),
        2,
        "the pin was not kept: {logs}"
    );

    // ...and with --restart it moves on, rolling.
    let out = stack.set_secret("API_TOKEN", TOKEN_V2, &["--restart"]);
    assert!(
        out.ok().contains("restarted web with version 3"),
        "{}",
        out.stdout
    );
    let logs = wait_for("the third start", Duration::from_secs(15), || {
        let text = stack.berth(&["logs", "web"]).ok().to_string();
        (text.matches("leak token=").count() == 3).then_some(text)
    });
    assert!(
        logs.contains(&format!("token-sha={}", sha(TOKEN_V2))),
        "{logs}"
    );
    assert!(!logs.contains(TOKEN_V2), "{logs}");

    let history = stack.berth(&["secrets", "history", "API_TOKEN", "--json"]);
    let history: serde_json::Value = serde_json::from_str(history.ok()).unwrap();
    let versions = history["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 3);
    assert!(
        versions[2]["pinned_by"].as_array().unwrap().len() == 1,
        "{history:#}"
    );

    // Nowhere to be seen: argv, command output, files.
    for secret in [TOKEN_V1, TOKEN_V2, CERT] {
        for (pid, cmdline) in all_cmdlines() {
            assert!(
                !contains(&cmdline, secret.as_bytes()),
                "a secret is in the command line of pid {pid}"
            );
        }
        for args in [
            &["ps", "--json"][..],
            &["status", "--json"],
            &["events", "--json"],
            &["releases", "--json"],
            &["secrets", "list", "--json"],
            &["secrets", "list"],
            &["secrets", "history", "API_TOKEN"],
            &["logs", "web"],
        ] {
            let out = stack.berth(args);
            assert!(
                !out.ok().contains(secret) && !out.stderr.contains(secret),
                "`berth {args:?}` shows a secret"
            );
        }
        let mut found = Vec::new();
        walk_files(&stack.path().join(".berth"), &mut |path, bytes| {
            if contains(bytes, secret.as_bytes())
                && !path.starts_with(stack.state().join("secrets"))
            {
                found.push(path.display().to_string());
            }
        });
        assert!(found.is_empty(), "files holding a secret: {found:?}");
    }

    stack.berth(&["down"]).ok();
    stack.wait_daemon_exit(daemon, Duration::from_secs(40));
    for n in 0..stack.daemons.len() {
        let all = stack.daemon_stdout(n) + &stack.daemon_stderr(n);
        assert!(
            !all.contains(TOKEN_V1) && !all.contains(TOKEN_V2),
            "berth up printed a secret"
        );
    }

    // A wrong key: a clear error, and the store stays as it was.
    let store = stack.state().join("secrets.enc");
    let before = std::fs::read(&store).unwrap();
    let mut wrong = berth_command();
    wrong
        .arg("-f")
        .arg(&stack.spec)
        .args(["secrets", "list"])
        .env("BERTH_MASTER_KEY", "00".repeat(32));
    let out = run(wrong, CMD_TIMEOUT);
    assert!(
        out.fails().contains("master key does not match"),
        "{}",
        out.stderr
    );
    let mut wrong = berth_command();
    wrong
        .arg("-f")
        .arg(&stack.spec)
        .args(["up"])
        .env("BERTH_MASTER_KEY", "00".repeat(32));
    let out = run(wrong, Duration::from_secs(60));
    assert!(
        out.fails().contains("master key does not match"),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read(&store).unwrap(), before);

    // A tampered store: a clear error, nothing changed by a write attempt.
    let mut tampered = before.clone();
    let at = tampered.len() - 30;
    tampered[at] ^= 0x20;
    std::fs::write(&store, &tampered).unwrap();
    let out = stack.set_secret("OTHER", "value", &[]);
    assert!(out.fails().contains("tampered"), "{}", out.stderr);
    assert_eq!(std::fs::read(&store).unwrap(), tampered);
    std::fs::write(&store, &before).unwrap();
    stack.berth(&["secrets", "list"]).ok();
}

fn walk_files(dir: &std::path::Path, visit: &mut dyn FnMut(&std::path::Path, &[u8])) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            // Accessory data (a database's own files) and releases are not Berth's writing.
            if path.ends_with("data") || path.ends_with("releases") {
                continue;
            }
            walk_files(&path, visit);
        } else if meta.is_file() {
            if let Ok(bytes) = std::fs::read(&path) {
                visit(&path, &bytes);
            }
        }
    }
}
