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

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use berth_model::{ExitStatus, LaunchSpec};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::unistd::Pid;

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

    let applied = limits::apply_to_self(&launch.cgroup, launch.memory, launch.cpu);
    write_atomic(&dir.join(LIMITS_FILE), applied.describe().as_bytes())?;

    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(&launch.command)
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

    std::thread::spawn(move || loop {
        if let Ok(sig) = signals.wait() {
            // The whole group: `sh -c` may not have exec'd the app.
            let _ = kill(Pid::from_raw(-(app_pid as i32)), sig);
        }
    });

    let status = child.wait()?;
    let exit = ExitStatus {
        code: status.code(),
        signal: status.signal(),
    };
    // Anything left in the group (background children of the app) goes with it.
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
                    if let Ok(mut log) = log.lock() {
                        let _ = log.write_line(name, &text);
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

/// A log file that rotates itself by size: `current.log` → `current.log.1` → ... `.N`.
pub struct LogFile {
    path: PathBuf,
    file: File,
    max_bytes: u64,
    keep: u32,
    written_since_check: u64,
}

impl LogFile {
    pub fn open(path: PathBuf, max_bytes: u64, keep: u32) -> std::io::Result<Self> {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(Self {
            path,
            file,
            max_bytes: max_bytes.max(4096),
            keep,
            written_since_check: 0,
        })
    }

    pub fn write_line(&mut self, stream: &str, text: &str) -> std::io::Result<()> {
        let stamp = humantime::format_rfc3339_millis(SystemTime::now());
        let line = format!("{stamp} {stream} {text}\n");
        self.file.write_all(line.as_bytes())?;
        self.written_since_check += line.len() as u64;
        if self.written_since_check >= 16 * 1024 {
            self.written_since_check = 0;
            self.rotate_if_needed()?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }

    /// Rotates when the file at `path` is too big; reopens when another writer (a sibling
    /// instance of the same replica) has rotated it already.
    fn rotate_if_needed(&mut self) -> std::io::Result<()> {
        let ours = self.file.metadata()?;
        let on_disk = fs::metadata(&self.path).ok();
        let same = on_disk
            .as_ref()
            .is_some_and(|m| m.ino() == ours.ino() && m.dev() == ours.dev());
        if same && ours.len() >= self.max_bytes {
            for i in (1..self.keep).rev() {
                let _ = fs::rename(rotated(&self.path, i), rotated(&self.path, i + 1));
            }
            if self.keep == 0 {
                let _ = fs::remove_file(&self.path);
            } else {
                fs::rename(&self.path, rotated(&self.path, 1))?;
            }
        }
        if !same || ours.len() >= self.max_bytes {
            self.file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
        }
        Ok(())
    }
}

/// `current.log` + 2 → `current.log.2`.
pub fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
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
    fn redacts_every_occurrence_of_each_secret() {
        let secrets = vec!["s3cretpass".to_string(), "ab".to_string()];
        assert_eq!(
            redact_line("url=postgres://u:s3cretpass@h/db s3cretpass ab", &secrets),
            "url=postgres://u:[redacted]@h/db [redacted] ab"
        );
    }

    #[test]
    fn log_file_rotates_by_size_and_keeps_n() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("current.log");
        let mut log = LogFile::open(path.clone(), 4096, 2).unwrap();
        let text = "x".repeat(1000);
        for _ in 0..200 {
            log.write_line("stdout", &text).unwrap();
        }
        assert!(path.exists());
        assert!(rotated(&path, 1).exists());
        assert!(rotated(&path, 2).exists());
        assert!(!rotated(&path, 3).exists());
        // Size stays bounded: checks happen every 16 KiB.
        assert!(fs::metadata(&path).unwrap().len() < 4096 + 17 * 1024);
    }
}
