//! Processes: starting a server detached from Berth, recognising a live server from its pid,
//! signalling it and waiting for it to go, and running short-lived helper tools.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::{getpgid, Pid};
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::time::{sleep, timeout, Instant};

use crate::secret::redact;

/// How often a process is polled while waiting for it to exit.
const POLL_EVERY: Duration = Duration::from_millis(100);

/// A `PATH` for the tools and servers Berth starts (their environment is cleared).
pub(crate) const TOOL_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Starts `command` in its own session (so it survives Berth and its terminal), stdin from
/// `/dev/null`, stdout and stderr appended to `log`.
pub(crate) fn spawn_detached(command: &mut Command, log: &Path) -> Result<Child> {
    let out = open_log(log)?;
    let err = out
        .try_clone()
        .with_context(|| format!("cannot reopen {}", log.display()))?;
    command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(false);
    // SAFETY: the closure runs between fork and exec and only calls setsid(2), which is
    // async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            nix::unistd::setsid()?;
            Ok(())
        });
    }
    let program = command.as_std().get_program().to_owned();
    command
        .spawn()
        .with_context(|| format!("cannot start {}", Path::new(&program).display()))
}

/// Exit watchers of the servers this process started, by pid: `None` while running, then how
/// the server ended.
static EXITS: std::sync::Mutex<std::collections::BTreeMap<u32, watch::Receiver<Option<String>>>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// Keeps a started server's child handle: it is reaped when it ends and how it ended is kept
/// for [`wait_exit`].
pub(crate) fn keep_child(mut child: Child) {
    let Some(pid) = child.id() else { return };
    let (tx, rx) = watch::channel(None);
    EXITS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(pid, rx);
    tokio::spawn(async move {
        let how = match child.wait().await {
            Ok(status) => describe_exit(status),
            Err(e) => format!("ended (waiting for it failed: {e})"),
        };
        let _ = tx.send(Some(how));
    });
}

/// Waits until `pid` ends: for a server this process started, returns how (`signal 9
/// (SIGKILL)`); for another one (adopted), polls `alive` and returns None.
pub(crate) async fn wait_exit(pid: u32, alive: impl Fn() -> bool) -> Option<String> {
    let watcher = EXITS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&pid)
        .cloned();
    if let Some(mut rx) = watcher {
        let how = rx
            .wait_for(|s| s.is_some())
            .await
            .ok()
            .and_then(|s| s.clone());
        EXITS.lock().unwrap_or_else(|e| e.into_inner()).remove(&pid);
        return how;
    }
    while alive() {
        sleep(ADOPTED_POLL).await;
    }
    None
}

/// How often a server this process did not start is checked for life.
const ADOPTED_POLL: Duration = Duration::from_millis(100);

/// `exit 1`, `signal 9 (SIGKILL)`.
pub(crate) fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(signal)) => match Signal::try_from(signal) {
            Ok(name) => format!("signal {signal} ({name})"),
            Err(_) => format!("signal {signal}"),
        },
        (None, None) => "ended (status unknown)".into(),
    }
}

/// Opens (creating, mode 0600) the log file for appending.
pub(crate) fn open_log(log: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(log)
        .with_context(|| format!("cannot open {}", log.display()))
}

/// Current size of `path` (0 when missing): where the output of the next start begins.
pub(crate) fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// The last `lines` lines of `path` from byte `from` on, with `secret` masked.
pub(crate) fn log_tail(path: &Path, from: u64, lines: usize, secret: &str) -> String {
    let mut text = String::new();
    if let Ok(mut file) = File::open(path) {
        if file.seek(SeekFrom::Start(from)).is_ok() {
            let mut bytes = Vec::new();
            if file.read_to_end(&mut bytes).is_ok() {
                text = String::from_utf8_lossy(&bytes).into_owned();
            }
        }
    }
    let all: Vec<&str> = text.lines().collect();
    let tail = all[all.len().saturating_sub(lines)..].join("\n");
    redact(&tail, secret)
}

/// The pid on the first line of a pid file (server pid files may carry more lines).
pub(crate) fn read_pid_file(path: &Path) -> Option<u32> {
    let text = fs::read_to_string(path).ok()?;
    text.lines()
        .next()?
        .trim()
        .parse()
        .ok()
        .filter(|&pid| pid > 1)
}

/// Whether `pid` is a process that has not exited (zombies count as exited).
pub(crate) fn is_running(pid: u32) -> bool {
    match process_state(pid) {
        Some(state) => !matches!(state, 'Z' | 'X' | 'x'),
        None => false,
    }
}

/// The one-letter state from `/proc/PID/stat`.
fn process_state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "PID (COMM) STATE ...": COMM may contain anything, so look after the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    after.trim_start().chars().next()
}

/// Whether `pid` is a live server of ours: its executable is named one of `exe_names` and its
/// working directory is `data_dir` (every supported server changes into its data folder, which
/// tells our server apart from another accessory's and from a recycled pid).
pub(crate) fn is_server_process(pid: u32, data_dir: &Path, exe_names: &[String]) -> bool {
    if !is_running(pid) {
        return false;
    }
    let Ok(exe) = fs::read_link(format!("/proc/{pid}/exe")) else {
        return false;
    };
    let exe = exe.to_string_lossy();
    let exe = exe.strip_suffix(" (deleted)").unwrap_or(&exe);
    let Some(name) = Path::new(exe).file_name() else {
        return false;
    };
    if !exe_names.iter().any(|n| name == n.as_str()) {
        return false;
    }
    let Ok(cwd) = fs::read_link(format!("/proc/{pid}/cwd")) else {
        return false;
    };
    let data_dir = fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    cwd == data_dir
}

/// Every live process of one of `exe_names` working in `data_dir` (see [`is_server_process`]),
/// lowest pid first.
pub(crate) fn server_processes(data_dir: &Path, exe_names: &[String]) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return vec![];
    };
    let mut pids: Vec<u32> = entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != std::process::id() && is_server_process(pid, data_dir, exe_names))
        .collect();
    pids.sort_unstable();
    pids
}

/// Sends `signal` to `pid`; a process that is already gone is not an error.
pub(crate) fn signal(pid: u32, signal: Signal) -> Result<()> {
    match kill(Pid::from_raw(pid as i32), signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot send {signal} to process {pid}")),
    }
}

/// Kills `pid` and, when it leads its own process group (as the servers Berth starts do),
/// every process of that group.
pub(crate) fn kill_hard(pid: u32) -> Result<()> {
    let target = Pid::from_raw(pid as i32);
    if getpgid(Some(target)) == Ok(target) {
        match killpg(target, Signal::SIGKILL) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => return Ok(()),
            Err(_) => {}
        }
    }
    signal(pid, Signal::SIGKILL)
}

/// SIGKILLs the process group `pid` led, if anything of it is left, and waits (up to `limit`)
/// until no live (non-zombie) process of it remains.
pub(crate) async fn kill_group(pid: u32, limit: Duration) {
    if killpg(Pid::from_raw(pid as i32), Signal::SIGKILL).is_err() {
        return;
    }
    let deadline = Instant::now() + limit;
    while group_has_live_members(pid) && Instant::now() < deadline {
        sleep(Duration::from_millis(10)).await;
    }
}

/// Whether a process that is not a zombie belongs to process group `pgid`.
fn group_has_live_members(pgid: u32) -> bool {
    let Ok(entries) = fs::read_dir("/proc") else {
        return false;
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .any(|pid| {
            let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // "PID (COMM) STATE PPID PGRP ...", COMM may hold anything: parse after the last ')'.
            let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
                return false;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            fields
                .first()
                .is_some_and(|s| !matches!(*s, "Z" | "X" | "x"))
                && fields.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(pgid)
        })
}

/// Waits up to `limit` for `pid` to exit; returns whether it did.
pub(crate) async fn wait_for_exit(pid: u32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if !is_running(pid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        sleep(POLL_EVERY).await;
    }
}

/// A command line for messages: the program's file name and its arguments.
fn describe(command: &Command) -> String {
    let std = command.as_std();
    let program = PathBuf::from(std.get_program());
    let name = program
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let args: Vec<String> = std
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    format!("{name} {}", args.join(" ")).trim().to_string()
}

/// Runs a helper tool to completion with `input` on its stdin, within `limit`. Fails when it
/// cannot start, times out or exits non-zero; the error quotes its output with `secret` masked.
pub(crate) async fn run_tool(
    mut command: Command,
    input: Option<&str>,
    limit: Duration,
    secret: &str,
) -> Result<Output> {
    let what = describe(&command);
    command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) if e.kind() == ErrorKind::NotFound => bail!("cannot run `{what}`: not found"),
        Err(e) => return Err(e).with_context(|| format!("cannot run `{what}`")),
    };
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        let bytes = input.as_bytes().to_vec();
        // Write concurrently with reading the output so that neither side can block the other.
        tokio::spawn(async move {
            let _ = stdin.write_all(&bytes).await;
            let _ = stdin.shutdown().await;
        });
    }
    let output = match timeout(limit, child.wait_with_output()).await {
        Ok(output) => output.with_context(|| format!("cannot run `{what}`"))?,
        Err(_) => bail!("`{what}` did not finish within {}s", limit.as_secs()),
    };
    if !output.status.success() {
        let mut text = String::from_utf8_lossy(&output.stderr).trim().to_string();
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !stdout.trim().is_empty() {
            text = format!("{}\n{text}", stdout.trim());
        }
        bail!(
            "`{what}` failed ({}):\n{}",
            output.status,
            redact(text.trim(), secret)
        );
    }
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_process_is_running_and_not_a_stranger() {
        let me = std::process::id();
        assert!(is_running(me));
        assert!(!is_running(u32::MAX / 2));
        let cwd = std::env::current_dir().unwrap();
        // The test binary is not named like a server.
        assert!(!is_server_process(me, &cwd, &["postgres".into()]));
    }

    #[tokio::test]
    async fn servers_are_recognised_by_executable_and_folder() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let mut cmd = Command::new("sleep");
        cmd.arg("30").current_dir(dir.path());
        let child = spawn_detached(&mut cmd, &log).unwrap();
        let pid = child.id().unwrap();
        // Its own session: it leads its process group.
        let group = getpgid(Some(Pid::from_raw(pid as i32))).unwrap();
        assert_eq!(group.as_raw() as u32, pid);
        let names = ["sleep".to_string()];
        assert!(is_server_process(pid, dir.path(), &names));
        assert!(!is_server_process(pid, Path::new("/"), &names));
        assert!(!is_server_process(
            pid,
            dir.path(),
            &["redis-server".into()]
        ));
        kill_hard(pid).unwrap();
        assert!(wait_for_exit(pid, Duration::from_secs(5)).await);
        assert!(!is_server_process(pid, dir.path(), &names));
        drop(child);
    }

    #[test]
    fn pid_files_and_log_tails() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        fs::write(&pid_file, "1234\n/data\n").unwrap();
        assert_eq!(read_pid_file(&pid_file), Some(1234));
        fs::write(&pid_file, "garbage").unwrap();
        assert_eq!(read_pid_file(&pid_file), None);
        assert_eq!(read_pid_file(&dir.path().join("missing")), None);

        let log = dir.path().join("log");
        fs::write(&log, "old\n").unwrap();
        let from = file_len(&log);
        fs::write(&log, "old\none\ntwo secret\nthree\n").unwrap();
        assert_eq!(log_tail(&log, from, 2, "secret"), "two ********\nthree");
        assert_eq!(log_tail(&log, from, 10, ""), "one\ntwo secret\nthree");
    }

    #[tokio::test]
    async fn tools_get_stdin_and_failures_are_redacted() {
        let out = run_tool(
            {
                let mut c = Command::new("cat");
                c.arg("-");
                c
            },
            Some("hello"),
            Duration::from_secs(5),
            "",
        )
        .await
        .unwrap();
        assert_eq!(out.stdout, b"hello");

        let mut c = Command::new("sh");
        c.args(["-c", "cat >&2; exit 3"]);
        let err = run_tool(c, Some("pw is hunter2"), Duration::from_secs(5), "hunter2")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("pw is ********"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");

        let err = run_tool(
            Command::new("/nonexistent/tool"),
            None,
            Duration::from_secs(5),
            "",
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("not found"), "{err}");

        let mut c = Command::new("sleep");
        c.arg("10");
        let err = run_tool(c, None, Duration::from_millis(200), "")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("did not finish"), "{err}");
    }
}
