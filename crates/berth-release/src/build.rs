//! Running a release's `build` command: once, in the release folder, with its output captured.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use nix::fcntl::OFlag;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::{pipe2, Pid};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::unix::pipe;
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

/// Runs `command` with `sh -c` in `dir`, writing its output (stdout and stderr through one pipe,
/// in order) to `dir/build.log` and passing each line to `log`. Fails with the exit status and
/// the last lines of output if the command fails.
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

    // One pipe for stdout and stderr, as `2>&1` would: lines stay in the order they were written.
    let (output_read, output_write) =
        pipe2(OFlag::O_CLOEXEC).context("creating a pipe for the build output")?;
    let mut child = {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(command)
            .current_dir(dir)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::from(
                output_write
                    .try_clone()
                    .context("duplicating the build output pipe")?,
            ))
            .stderr(Stdio::from(output_write))
            .process_group(0)
            .kill_on_drop(true);
        for var in INHERITED_VARS {
            if let Some(value) = std::env::var_os(var) {
                cmd.env(var, value);
            }
        }
        cmd.envs(env);
        // `cmd` holds the pipe's write end: it must be gone for the output to end.
        cmd.spawn().context("starting the build command with sh")?
    };
    let mut group = ProcessGroupGuard(child.id().map(|pid| Pid::from_raw(pid as i32)));
    let mut output = BufReader::new(
        pipe::Receiver::from_owned_fd(output_read).context("reading the build output pipe")?,
    );

    let mut line = Vec::new();
    let mut output_open = true;
    let mut status = None;
    let mut drain_deadline = None;
    let mut tail = VecDeque::with_capacity(TAIL_LINES);
    while output_open || status.is_none() {
        tokio::select! {
            // `read_until` keeps a partial line in `line` if another branch wins.
            read = output.read_until(b'\n', &mut line), if output_open => {
                if read.context("reading the build output")? == 0 {
                    output_open = false;
                    continue;
                }
                while matches!(line.last(), Some(b'\n' | b'\r')) {
                    line.pop();
                }
                let text = String::from_utf8_lossy(&line).into_owned();
                line.clear();
                log_file
                    .write_all(format!("{text}\n").as_bytes())
                    .await
                    .with_context(|| format!("writing {}", log_path.display()))?;
                log(&text);
                if tail.len() == TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(text);
            }
            exit = child.wait(), if status.is_none() => {
                status = Some(exit.context("waiting for the build")?);
                // Whatever the build left running in the background goes with it.
                group.kill();
                drain_deadline = Some(tokio::time::Instant::now() + DRAIN_AFTER_EXIT);
            }
            _ = sleep_until(drain_deadline), if drain_deadline.is_some() => {
                tracing::warn!(
                    "build output still open {DRAIN_AFTER_EXIT:?} after the build exited; not \
                     waiting longer"
                );
                break;
            }
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
