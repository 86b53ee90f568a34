//! The local-process driver: every replica is a shim process (see [`crate::shim`]) that owns
//! the application process, started in its own session so both outlive the daemon.

use std::collections::HashMap;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_model::driver::DriverError;
use berth_model::{Driver, ExitStatus, LaunchSpec, ProcessRecord};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::sync::watch;

use crate::shim::{self, write_atomic, APP_PID_FILE, EXIT_FILE, LAUNCH_FILE, LIMITS_FILE};

/// How often the shim of a replica this daemon did not start is checked: its exit takes it out
/// of the edge's pool, so it is noticed within this.
const ADOPTED_POLL: Duration = Duration::from_millis(50);

/// Runs replicas as local processes through `berth shim`.
pub struct LocalProcessDriver {
    /// The `berth` executable that provides the `shim` subcommand.
    shim_program: PathBuf,
    /// Exit watchers by supervisor pid: `None` while running.
    exits: Mutex<HashMap<u32, watch::Receiver<Option<ExitStatus>>>>,
}

impl LocalProcessDriver {
    pub fn new(shim_program: PathBuf) -> Arc<Self> {
        Arc::new(Self {
            shim_program,
            exits: Mutex::new(HashMap::new()),
        })
    }

    /// Returns (creating if needed) the exit watcher of a process this daemon did not start.
    fn watcher(&self, record: &ProcessRecord) -> watch::Receiver<Option<ExitStatus>> {
        let mut exits = self.exits.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(rx) = exits.get(&record.supervisor_pid) {
            return rx.clone();
        }
        let (tx, rx) = watch::channel(None);
        exits.insert(record.supervisor_pid, rx.clone());
        let record = record.clone();
        tokio::spawn(async move {
            process_ended(record.supervisor_pid, record.supervisor_start, ADOPTED_POLL).await;
            // The shim is gone; its application must not outlive it unwatched.
            kill_group_if_alive(record.app_pid, record.app_start);
            let _ = tx.send(Some(read_exit(&record.instance_dir)));
        });
        rx
    }
}

#[async_trait::async_trait]
impl Driver for LocalProcessDriver {
    async fn start(&self, launch: &LaunchSpec) -> Result<ProcessRecord, DriverError> {
        let start_error = |reason: String| DriverError::Start {
            key: launch.key.to_string(),
            reason,
        };
        let dir = &launch.instance_dir;
        fs::create_dir_all(dir)?;
        for stale in [APP_PID_FILE, EXIT_FILE, LIMITS_FILE] {
            let _ = fs::remove_file(dir.join(stale));
        }
        let json = serde_json::to_vec(launch).map_err(|e| start_error(e.to_string()))?;
        write_atomic(&dir.join(LAUNCH_FILE), &json)?;
        let shim_log = fs::File::create(dir.join("shim.log"))?;

        let mut command = tokio::process::Command::new(&self.shim_program);
        command
            .arg("shim")
            .arg(dir)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(shim_log);
        // SAFETY: setsid is async-signal-safe.
        unsafe {
            command.as_std_mut().pre_exec(|| {
                nix::unistd::setsid().map_err(std::io::Error::from)?;
                Ok(())
            });
        }
        let mut child = command.spawn()?;
        let shim_pid = child
            .id()
            .ok_or_else(|| start_error("shim exited at once".into()))?;
        let supervisor_start = proc_start_ticks(shim_pid).unwrap_or(0);

        // Wait for the shim to report the application's pid (or to fail).
        let deadline = Instant::now() + Duration::from_secs(10);
        let app_pid = loop {
            if let Ok(text) = fs::read_to_string(dir.join(APP_PID_FILE)) {
                if let Ok(pid) = text.trim().parse::<u32>() {
                    break pid;
                }
            }
            if let Ok(Some(_)) = child.try_wait() {
                let log = fs::read_to_string(dir.join("shim.log")).unwrap_or_default();
                let _ = fs::remove_file(dir.join(LAUNCH_FILE));
                return Err(start_error(format!("the shim failed: {}", log.trim())));
            }
            if Instant::now() > deadline {
                let _ = child.start_kill();
                let _ = fs::remove_file(dir.join(LAUNCH_FILE));
                return Err(start_error(
                    "the shim did not start the process within 10s".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let app_start = proc_start_ticks(app_pid).unwrap_or(0);
        let limits = fs::read_to_string(dir.join(LIMITS_FILE))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| s != "none");

        let (tx, rx) = watch::channel(None);
        self.exits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(shim_pid, rx);
        let instance_dir = dir.clone();
        tokio::spawn(async move {
            let _ = child.wait().await;
            kill_group_if_alive(app_pid, app_start);
            let _ = tx.send(Some(read_exit(&instance_dir)));
        });

        Ok(ProcessRecord {
            supervisor_pid: shim_pid,
            supervisor_start,
            app_pid,
            app_start,
            instance_dir: dir.clone(),
            started_at: berth_model::now_unix(),
            limits,
            container: None,
        })
    }

    async fn wait(&self, record: &ProcessRecord) -> ExitStatus {
        let mut rx = self.watcher(record);
        loop {
            if let Some(status) = *rx.borrow_and_update() {
                self.exits
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&record.supervisor_pid);
                return status;
            }
            if rx.changed().await.is_err() {
                return read_exit(&record.instance_dir);
            }
        }
    }

    async fn stop(&self, record: &ProcessRecord, timeout: Duration) -> ExitStatus {
        let mut rx = self.watcher(record);
        if process_matches(record.supervisor_pid, record.supervisor_start) {
            let _ = kill(Pid::from_raw(record.supervisor_pid as i32), Signal::SIGTERM);
        } else {
            // No shim to forward the signal: ask the application directly.
            signal_group(record.app_pid, record.app_start, Signal::SIGTERM);
        }
        let ended = tokio::time::timeout(timeout, async {
            rx.wait_for(|s| s.is_some()).await.is_ok()
        })
        .await;
        if ended.is_err() {
            kill_group_if_alive(record.app_pid, record.app_start);
            if process_matches(record.supervisor_pid, record.supervisor_start) {
                let _ = kill(Pid::from_raw(record.supervisor_pid as i32), Signal::SIGKILL);
            }
        }
        self.wait(record).await
    }

    fn is_running(&self, record: &ProcessRecord) -> bool {
        process_matches(record.supervisor_pid, record.supervisor_start)
    }

    fn tail_log(&self, record: &ProcessRecord, n: usize) -> Vec<String> {
        let log = record
            .instance_dir
            .parent()
            .map(|p| p.join("current.log"))
            .unwrap_or_default();
        tail_lines(&log, n)
    }
}

/// The last `n` lines of a text file (reads at most the last 64 KiB).
pub fn tail_lines(path: &Path, n: usize) -> Vec<String> {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = fs::File::open(path) else {
        return vec![];
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut buf = Vec::new();
    let _ = file.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn read_exit(dir: &Path) -> ExitStatus {
    fs::read(dir.join(EXIT_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(ExitStatus {
            code: None,
            signal: None,
        })
}

/// SIGKILLs the process group led by `pid` (started at `start` clock ticks; 0: unknown), if
/// that group still has members.
fn kill_group_if_alive(pid: u32, start: u64) -> bool {
    signal_group(pid, start, Signal::SIGKILL)
}

/// Signals the process group led by `pid`, unless `pid` now names another process than the
/// one that started at `start` (pids are reused; a dead leader whose group still has members
/// keeps its pid from being reused, so a missing leader is no reason to hold back). Returns
/// whether a signal was sent.
fn signal_group(pid: u32, start: u64, signal: Signal) -> bool {
    if start != 0 && proc_start_ticks(pid).is_some_and(|now| now != start) {
        return false;
    }
    kill(Pid::from_raw(-(pid as i32)), signal).is_ok()
}

/// The parent of a process (field 4 of `/proc/PID/stat`).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Start time of a process in clock ticks since boot (field 22 of `/proc/PID/stat`).
pub fn proc_start_ticks(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: parse after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// Whether `pid` is alive (not a zombie) and is the very process that started at `start`.
pub fn process_matches(pid: u32, start: u64) -> bool {
    proc_start_ticks(pid).is_some_and(|t| start == 0 || t == start)
}

/// Waits until the process `pid` that started at `start` (clock ticks; 0: any) has ended (a
/// zombie has): told by the kernel through a pidfd, and checked in `/proc` every `poll` as
/// well (for a kernel without pidfds, or a pidfd that never wakes).
pub async fn process_ended(pid: u32, start: u64, poll: Duration) {
    // Opened before the check: if `pid` names the process now, the pidfd names it for good
    // (the pid may be reused later, the pidfd never is).
    let pidfd = open_pidfd(pid);
    if !process_matches(pid, start) {
        return;
    }
    let exit = async {
        // SAFETY: an OwnedFd names one open descriptor for as long as it lives, and the
        // AsyncFd owns it.
        let registered = pidfd.and_then(|fd| unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE).ok()
        });
        match registered {
            Some(fd) => {
                let _ = fd.readable().await;
            }
            None => std::future::pending().await,
        }
    };
    let polled = async {
        while process_matches(pid, start) {
            tokio::time::sleep(poll).await;
        }
    };
    tokio::select! {
        () = exit => {}
        () = polled => {}
    }
}

/// A pidfd for `pid` (readable once the process has ended), if the kernel has them.
fn open_pidfd(pid: u32) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the descriptor was just returned by the kernel and is owned by nobody else.
    Some(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}

/// Re-export for the binary: `berth shim DIR`.
pub fn run_shim(dir: &Path) -> i32 {
    shim::run(dir)
}

/// A shim process found running, by its command line `PROGRAM shim DIR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningShim {
    pub pid: u32,
    /// Its start time in clock ticks since boot (guards the signals against pid reuse).
    pub start: u64,
    pub instance_dir: PathBuf,
}

/// The instance folder a command line names when it is `PROGRAM shim DIR`.
fn shim_dir_of(cmdline: &[u8]) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let args: Vec<&[u8]> = cmdline
        .strip_suffix(b"\0")
        .unwrap_or(cmdline)
        .split(|&b| b == 0)
        .collect();
    match args.as_slice() {
        [_, sub, dir] if *sub == b"shim" => Some(PathBuf::from(std::ffi::OsStr::from_bytes(dir))),
        _ => None,
    }
}

/// Every live shim process of this user (found in `/proc` by its command line).
pub fn running_shims() -> Vec<RunningShim> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return vec![];
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let instance_dir = shim_dir_of(&cmdline)?;
            let start = proc_start_ticks(pid)?;
            Some(RunningShim {
                pid,
                start,
                instance_dir,
            })
        })
        .collect()
}

/// The shims of instance folders under `replicas_dir` that no record names: replicas a daemon
/// started and died before recording (their processes hold ports, memory and, for a release
/// being rolled back, serve nothing anyone asked for).
pub fn stray_shims(
    running: &[RunningShim],
    replicas_dir: &Path,
    recorded: &std::collections::HashSet<PathBuf>,
) -> Vec<RunningShim> {
    running
        .iter()
        .filter(|shim| {
            shim.instance_dir.starts_with(replicas_dir) && !recorded.contains(&shim.instance_dir)
        })
        .cloned()
        .collect()
}

/// Stops a shim this daemon did not start and has no record of: SIGTERM (the shim forwards it
/// to its application's group), then after `timeout` SIGKILL to the group and the shim.
pub async fn stop_shim(shim: &RunningShim, timeout: Duration) {
    let alive = || process_matches(shim.pid, shim.start);
    if !alive() {
        return;
    }
    let _ = kill(Pid::from_raw(shim.pid as i32), Signal::SIGTERM);
    let deadline = Instant::now() + timeout;
    while alive() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let app_pid = fs::read_to_string(shim.instance_dir.join(APP_PID_FILE))
        .ok()
        .and_then(|text| text.trim().parse::<u32>().ok());
    if alive() {
        // Only the group of the shim's own child: a pid read from a file may name another
        // process by now.
        if let Some(app_pid) = app_pid.filter(|&pid| parent_of(pid) == Some(shim.pid)) {
            kill_group_if_alive(app_pid, 0);
        }
        let _ = kill(Pid::from_raw(shim.pid as i32), Signal::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[tokio::test]
    async fn the_end_of_a_process_is_told_by_the_kernel_without_waiting_for_a_poll() {
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let pid = child.id();
        let start = proc_start_ticks(pid).unwrap();
        let ended = tokio::spawn(process_ended(pid, start, Duration::from_secs(3600)));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!ended.is_finished());
        let killed = Instant::now();
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        tokio::time::timeout(Duration::from_secs(10), ended)
            .await
            .expect("the end was not told")
            .unwrap();
        println!("told {:?} after the kill", killed.elapsed());
        assert_eq!(
            parent_of(std::process::id()),
            Some(std::os::unix::process::parent_id())
        );
        // A zombie (not reaped yet) counts as ended; so does a pid that names another process.
        process_ended(pid, start, Duration::from_secs(3600)).await;
        child.wait().unwrap();
        process_ended(pid, start, Duration::from_secs(3600)).await;
    }

    #[test]
    fn a_group_is_signalled_only_while_its_leader_is_the_recorded_process() {
        use std::os::unix::process::CommandExt as _;
        let mut leader = std::process::Command::new("sleep")
            .arg("60")
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = leader.id();
        let start = proc_start_ticks(pid).unwrap();
        // A record naming this pid with another start time: the pid was reused, hands off.
        assert!(!kill_group_if_alive(pid, start + 1));
        assert_eq!(
            leader.try_wait().unwrap(),
            None,
            "another process's group was killed"
        );
        assert!(kill_group_if_alive(pid, start));
        let status = leader.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL)
        );
    }

    #[test]
    fn a_shim_is_known_by_its_command_line() {
        assert_eq!(
            shim_dir_of(b"/usr/bin/berth\0shim\0/s/.berth/default/replicas/web.1/run-2\0"),
            Some(PathBuf::from("/s/.berth/default/replicas/web.1/run-2"))
        );
        assert_eq!(shim_dir_of(b"/usr/bin/berth\0up\0"), None);
        assert_eq!(shim_dir_of(b"/usr/bin/berth\0shim\0a\0b\0"), None);
        assert_eq!(shim_dir_of(b"python3\0app.py\0"), None);
        assert_eq!(shim_dir_of(b""), None);
    }

    #[test]
    fn strays_are_the_unrecorded_shims_of_this_stack_only() {
        let shim = |pid, dir: &str| RunningShim {
            pid,
            start: 1,
            instance_dir: PathBuf::from(dir),
        };
        let running = [
            shim(10, "/a/.berth/default/replicas/web.3/run-1"),
            shim(11, "/a/.berth/default/replicas/web.6/run-1"),
            // Another environment or stack of the same user.
            shim(12, "/a/.berth/staging/replicas/web.6/run-1"),
            shim(13, "/b/.berth/default/replicas/web.6/run-1"),
        ];
        let recorded: HashSet<PathBuf> =
            [PathBuf::from("/a/.berth/default/replicas/web.3/run-1")].into();
        let strays = stray_shims(&running, Path::new("/a/.berth/default/replicas"), &recorded);
        assert_eq!(strays, vec![running[1].clone()]);
    }
}
