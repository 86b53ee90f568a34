//! The replica shim: a tiny process (`berth shim DIR`) that owns one application process.
//!
//! The daemon starts a shim per replica instance, in its own session, so the application keeps
//! running when the daemon crashes or restarts (like containerd's shim or conmon). The shim:
//! reads its launch file (and deletes it: it holds secrets), applies resource limits, starts the
//! application in its own process group with piped output, writes every output line to the
//! replica's size-capped log file (timestamped, secrets redacted), forwards SIGTERM/SIGINT to the
//! application's process group, and when the application ends writes `exit.json` and exits.
//!
//! Files in the instance folder: `launch.json` (in, removed once read), `app.pid`, `limits.txt`,
//! `exit.json` (out, written atomically).

use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use berth_model::{ExitStatus, LaunchSpec};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::unistd::Pid;

use berth_logfile::LogFile;

use crate::limits;

pub const LAUNCH_FILE: &str = "launch.json";
pub const APP_PID_FILE: &str = "app.pid";
pub const EXIT_FILE: &str = "exit.json";
pub const LIMITS_FILE: &str = "limits.txt";

/// Runs the shim for the instance folder `dir`; returns the process exit code.
pub fn run(dir: &Path) -> i32 {
    match run_inner(dir) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("berth shim: {e:#}");
            let _ = write_atomic(
                &dir.join(EXIT_FILE),
                &serde_json::to_vec(&ExitStatus {
                    code: Some(127),
                    signal: None,
                })
                .unwrap_or_default(),
            );
            127
        }
    }
}

fn run_inner(dir: &Path) -> anyhow::Result<i32> {
    let launch_path = dir.join(LAUNCH_FILE);
    let launch: LaunchSpec = serde_json::from_slice(&fs::read(&launch_path)?)?;
    fs::remove_file(&launch_path)?;

    // Signals are handled by a dedicated thread with sigwait; block them everywhere else.
    let mut signals = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        signals.add(s);
    }
    signals.thread_block()?;

    // Orphans of the app become our children, so they can be waited for (see below).
    let _ = nix::sys::prctl::set_child_subreaper(true);

    let applied = limits::apply_to_self(&launch.cgroup, launch.memory, launch.cpu);
    write_atomic(&dir.join(LIMITS_FILE), applied.describe().as_bytes())?;

    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(shell_script(&launch.command))
        .current_dir(&launch.cwd)
        .env_clear()
        .envs(&launch.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let rlimit_as = applied.rlimit_as;
    // SAFETY: only async-signal-safe calls (sigprocmask, setrlimit) between fork and exec.
    unsafe {
        command.pre_exec(move || {
            SigSet::all()
                .thread_unblock()
                .map_err(std::io::Error::from)?;
            if let Some(bytes) = rlimit_as {
                nix::sys::resource::setrlimit(
                    nix::sys::resource::Resource::RLIMIT_AS,
                    bytes,
                    bytes,
                )
                .map_err(std::io::Error::from)?;
            }
            Ok(())
        });
    }
    let mut child = command.spawn()?;
    let app_pid = child.id();
    write_atomic(&dir.join(APP_PID_FILE), app_pid.to_string().as_bytes())?;

    let log = Arc::new(Mutex::new(LogFile::open(
        launch.log_file.clone(),
        launch.log_max_bytes,
        launch.log_keep,
    )?));
    let redact = Arc::new(launch.redact.clone());
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(spawn_reader(out, "stdout", log.clone(), redact.clone()));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(spawn_reader(err, "stderr", log.clone(), redact.clone()));
    }

    let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let stopping = stopping.clone();
        std::thread::spawn(move || loop {
            if let Ok(sig) = signals.wait() {
                stopping.store(true, std::sync::atomic::Ordering::SeqCst);
                // The whole group: a compound `sh -c` script stays the app's parent.
                let _ = kill(Pid::from_raw(-(app_pid as i32)), sig);
            }
        });
    }

    let first = child.wait()?;
    let exit = if stopping.load(std::sync::atomic::Ordering::SeqCst) {
        // Stopping: the shell may die of the forwarded signal at once while the app is still
        // shutting down. As a subreaper the shim inherits such orphans and waits for all of
        // them (the daemon SIGKILLs the group after `stop_timeout`); the last one's status counts.
        wait_for_all().unwrap_or(status_of(first))
    } else {
        // The app ended by itself (or was killed): the replica ended with it.
        status_of(first)
    };
    // Anything left in the group (daemonised children of the app) goes with it.
    let _ = kill(Pid::from_raw(-(app_pid as i32)), Signal::SIGKILL);
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    for reader in readers {
        while !reader.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    if let Ok(mut log) = log.lock() {
        let _ = log.flush();
    }
    limits::release_self(&launch.cgroup);
    write_atomic(&dir.join(EXIT_FILE), &serde_json::to_vec(&exit)?)?;
    Ok(exit.code.unwrap_or(128 + exit.signal.unwrap_or(0)))
}

fn status_of(status: std::process::ExitStatus) -> ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    ExitStatus {
        code: status.code(),
        signal: status.signal(),
    }
}

/// Reaps every remaining child (and adopted orphan) until none is left; returns how the last
/// one ended, if any was left.
fn wait_for_all() -> Option<ExitStatus> {
    use nix::sys::wait::{waitpid, WaitStatus};
    let mut last = None;
    loop {
        match waitpid(None, None) {
            Ok(WaitStatus::Exited(_, code)) => {
                last = Some(ExitStatus {
                    code: Some(code),
                    signal: None,
                })
            }
            Ok(WaitStatus::Signaled(_, signal, _)) => {
                last = Some(ExitStatus {
                    code: None,
                    signal: Some(signal as i32),
                })
            }
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return last, // ECHILD: nobody left
        }
    }
}

/// The script given to `sh -c`: a simple command is `exec`ed, so the app itself is the
/// replica's process (its pid in `berth ps`, the one signals reach); anything the shell must
/// keep running for (`;`, `&&`, pipes, assignments, builtins) is left as written.
pub fn shell_script(command: &str) -> String {
    let command = command.trim();
    let compound = command.contains([';', '&', '|', '(', ')', '\n', '<', '>', '`'])
        || command.starts_with('{')
        || command.starts_with('!');
    let first = command.split_whitespace().next().unwrap_or("");
    let builtin = matches!(
        first,
        "exec"
            | "cd"
            | "export"
            | "if"
            | "for"
            | "while"
            | "until"
            | "case"
            | "set"
            | "."
            | "source"
            | "eval"
    );
    if compound || builtin || first.contains('=') || first.is_empty() {
        command.to_string()
    } else {
        format!("exec {command}")
    }
}

fn spawn_reader(
    stream: impl Read + Send + 'static,
    name: &'static str,
    log: Arc<Mutex<LogFile>>,
    redact: Arc<Vec<String>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::with_capacity(64 * 1024, stream);
        let mut line = Vec::new();
        loop {
            line.clear();
            // Bound a line's length so an app printing without newlines cannot exhaust memory.
            match (&mut reader).take(64 * 1024).read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line);
                    let text = redact_line(text.trim_end_matches(['\n', '\r']), &redact);
                    let stamp = humantime::format_rfc3339_millis(SystemTime::now());
                    if let Ok(mut log) = log.lock() {
                        let _ = log.write_line(&format!("{stamp} {name} {text}"));
                    }
                }
            }
        }
    })
}

/// Replaces every secret value in `line` by `[redacted]`.
pub fn redact_line(line: &str, secrets: &[String]) -> String {
    let mut out = line.to_string();
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), "[redacted]");
        }
    }
    out
}

/// Writes `bytes` to `path` through a temporary file and a rename, mode 0600.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    {
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_commands_are_execed_and_compound_ones_kept() {
        assert_eq!(shell_script("python3 app.py"), "exec python3 app.py");
        assert_eq!(
            shell_script(".venv/bin/gunicorn app --bind 127.0.0.1:$PORT"),
            "exec .venv/bin/gunicorn app --bind 127.0.0.1:$PORT"
        );
        assert_eq!(shell_script("exec python3 app.py"), "exec python3 app.py");
        assert_eq!(shell_script("cd web && npm start"), "cd web && npm start");
        assert_eq!(shell_script("A=1 python3 app.py"), "A=1 python3 app.py");
        assert_eq!(shell_script("echo boom; exit 3"), "echo boom; exit 3");
        assert_eq!(shell_script("app | tee log"), "app | tee log");
    }

    #[test]
    fn redacts_every_occurrence_of_each_secret() {
        let secrets = vec!["s3cretpass".to_string(), "ab".to_string()];
        assert_eq!(
            redact_line("url=postgres://u:s3cretpass@h/db s3cretpass ab", &secrets),
            "url=postgres://u:[redacted]@h/db [redacted] ab"
        );
    }
}
