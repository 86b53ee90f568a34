//! Running a release's `build` command: once, in the release folder, with its output captured.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::process::Command;

/// Lines of output quoted in the error of a failed build.
const TAIL_LINES: usize = 20;

/// Variables the build inherits from Berth's own environment (the service's env wins).
const INHERITED_VARS: &[&str] = &["PATH", "HOME", "LANG"];

/// Once the build's shell has exited, how long to wait for its output pipes to close.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(5);

/// The file, in the release folder, holding the build's output.
pub const BUILD_LOG: &str = "build.log";

/// Kills the build's whole process group (the shell and everything it started) when dropped,
/// so that abandoning a build leaves nothing running.
struct ProcessGroupGuard(Option<Pid>);

impl ProcessGroupGuard {
    fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            // ESRCH (nothing left in the group) is the usual, fine outcome.
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}

impl Drop for ProcessGroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `command` with `sh -c` in `dir`, writing its output (stdout and stderr, merged by line)
/// to `dir/build.log` and passing each line to `log`. Fails with the exit status and the last
/// lines of output if the command fails.
pub(crate) async fn run_build(
    command: &str,
    dir: &Path,
    env: &BTreeMap<String, String>,
    log: &mut impl FnMut(&str),
) -> anyhow::Result<()> {
    let log_path = dir.join(BUILD_LOG);
    let mut log_file = BufWriter::new(
        tokio::fs::File::create(&log_path)
            .await
            .with_context(|| format!("creating {}", log_path.display()))?,
    );

    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .current_dir(dir)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    for var in INHERITED_VARS {
        if let Some(value) = std::env::var_os(var) {
            cmd.env(var, value);
        }
    }
    cmd.envs(env);
    let mut child = cmd.spawn().context("starting the build command with sh")?;
    let mut group = ProcessGroupGuard(child.id().map(|pid| Pid::from_raw(pid as i32)));

    let mut stdout = BufReader::new(child.stdout.take().context("build stdout")?);
    let mut stderr = BufReader::new(child.stderr.take().context("build stderr")?);
    let (mut out_buf, mut err_buf) = (Vec::new(), Vec::new());
    let (mut out_open, mut err_open) = (true, true);
    let mut status = None;
    let mut drain_deadline = None;
    let mut tail = VecDeque::with_capacity(TAIL_LINES);

    let mut emit = |buf: &mut Vec<u8>, log_file: &mut Vec<u8>| {
        while matches!(buf.last(), Some(b'\n' | b'\r')) {
            buf.pop();
        }
        let line = String::from_utf8_lossy(buf).into_owned();
        buf.clear();
        log_file.extend_from_slice(line.as_bytes());
        log_file.push(b'\n');
        log(&line);
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    };

    while out_open || err_open || status.is_none() {
        let mut pending = Vec::new();
        tokio::select! {
            // `read_until` keeps partial lines in the buffer across cancellations.
            read = stdout.read_until(b'\n', &mut out_buf), if out_open => {
                if read.context("reading build output")? == 0 {
                    out_open = false;
                } else {
                    emit(&mut out_buf, &mut pending);
                }
            }
            read = stderr.read_until(b'\n', &mut err_buf), if err_open => {
                if read.context("reading build output")? == 0 {
                    err_open = false;
                } else {
                    emit(&mut err_buf, &mut pending);
                }
            }
            exit = child.wait(), if status.is_none() => {
                status = Some(exit.context("waiting for the build")?);
                // Whatever the build left running in the background goes with it.
                group.kill();
                drain_deadline = Some(tokio::time::Instant::now() + DRAIN_AFTER_EXIT);
            }
            _ = sleep_until(drain_deadline), if drain_deadline.is_some() => {
                tracing::warn!("build output still open {DRAIN_AFTER_EXIT:?} after the build exited; not waiting longer");
                break;
            }
        }
        if !pending.is_empty() {
            log_file
                .write_all(&pending)
                .await
                .with_context(|| format!("writing {}", log_path.display()))?;
        }
    }
    log_file
        .flush()
        .await
        .with_context(|| format!("writing {}", log_path.display()))?;

    let status = status.context("build status")?;
    if status.success() {
        return Ok(());
    }
    let tail: Vec<String> = tail.into();
    if tail.is_empty() {
        anyhow::bail!("build failed ({status}), with no output");
    }
    anyhow::bail!(
        "build failed ({status}); last {} lines of output:\n{}",
        tail.len(),
        tail.join("\n")
    )
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
