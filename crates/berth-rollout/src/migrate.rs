//! Migrations: the service's `migrate` command, run once as a one-off task from the new
//! release's folder with the service's env, before any traffic moves. Its output goes to a log
//! file (secret values masked); a failure or a timeout stops the deploy. The daemon also runs
//! its other one-off tasks without a terminal (`berth run --detach`, cron entries) with [`run`].

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// What a migration did.
#[derive(Debug)]
pub struct MigrationOutcome {
    pub success: bool,
    /// `exit 0`, `exit 3`, `timed out after 600s`.
    pub how: String,
    /// Its last lines of output (masked).
    pub tail: Vec<String>,
}

/// Runs `command` with `sh -c` in `dir` with exactly `env`, writing its output to `log`.
pub async fn run(
    command: &str,
    dir: &Path,
    env: &BTreeMap<String, String>,
    redact: &[String],
    log: &Path,
    timeout: Duration,
) -> anyhow::Result<MigrationOutcome> {
    let mut cmd = tokio::process::Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(command)
        .current_dir(dir)
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // Its own process group, so a timeout stops everything it started.
    // SAFETY: setpgid is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setpgid(nix::unistd::Pid::from_raw(0), nix::unistd::Pid::from_raw(0))
                .map_err(std::io::Error::from)
        });
    }
    let mut child = cmd.spawn()?;
    let pid = child.id();
    let mut out = tokio::fs::File::create(log).await?;
    let (lines_tx, mut lines_rx) = tokio::sync::mpsc::unbounded_channel::<(&'static str, String)>();
    for (name, stream) in [
        (
            "stdout",
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        ),
        (
            "stderr",
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        ),
    ] {
        let Some(stream) = stream else { continue };
        let tx = lines_tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if tx.send((name, line)).is_err() {
                    break;
                }
            }
        });
    }
    drop(lines_tx);
    let mut tail: Vec<String> = Vec::new();
    let collect = async {
        while let Some((name, line)) = lines_rx.recv().await {
            let mut line = line;
            for secret in redact.iter().filter(|s| s.len() >= 4) {
                line = line.replace(secret.as_str(), "[redacted]");
            }
            // Like a replica's log: a timestamp and the stream before each line.
            let stamp = humantime::format_rfc3339_millis(std::time::SystemTime::now());
            let _ = out
                .write_all(format!("{stamp} {name} {line}\n").as_bytes())
                .await;
            tail.push(line);
            if tail.len() > 10 {
                tail.remove(0);
            }
        }
    };
    let finished = tokio::time::timeout(timeout, async {
        collect.await;
        child.wait().await
    })
    .await;
    let _ = out.flush().await;
    match finished {
        Ok(status) => {
            let status = status?;
            let how = match status.code() {
                Some(code) => format!("exit {code}"),
                None => "killed by a signal".into(),
            };
            Ok(MigrationOutcome {
                success: status.success(),
                how,
                tail,
            })
        }
        Err(_) => {
            if let Some(pid) = pid {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = child.wait().await;
            Ok(MigrationOutcome {
                success: false,
                how: format!("timed out after {}s", timeout.as_secs()),
                tail,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_migration_runs_in_the_release_with_the_env_and_masks_secrets() {
        let dir = tempfile_dir();
        let env: BTreeMap<String, String> = [(
            "DATABASE_URL".to_string(),
            "postgres://u:hunter22@x/db".to_string(),
        )]
        .into();
        let log = dir.join("migrate.log");
        let outcome = run(
            "pwd; echo url=$DATABASE_URL; echo oops >&2; exit 3",
            &dir,
            &env,
            &["hunter22".to_string()],
            &log,
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert!(!outcome.success);
        assert_eq!(outcome.how, "exit 3");
        let written = std::fs::read_to_string(&log).unwrap();
        assert!(written.contains(dir.to_str().unwrap()), "{written}");
        assert!(
            written.contains("url=postgres://u:[redacted]@x/db"),
            "{written}"
        );
        assert!(!written.contains("hunter22"));
        assert!(written.contains(" stderr oops"), "{written}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_migration_that_hangs_is_stopped() {
        let dir = tempfile_dir();
        let outcome = run(
            "sleep 30",
            &dir,
            &BTreeMap::new(),
            &[],
            &dir.join("log"),
            Duration::from_millis(300),
        )
        .await
        .unwrap();
        assert!(!outcome.success);
        assert!(outcome.how.starts_with("timed out"), "{}", outcome.how);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "berth-migrate-test-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir.canonicalize().unwrap()
    }
}
