//! Helpers for the integration tests: accessory folders under /tmp, finding installed
//! programs, talking to the servers with their own clients, and watching every process's
//! command line for a leaked password.

#![allow(dead_code)]

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use berth_accessories::{Accessory, AccessoryConfig};
use berth_spec::Engine;

/// A fresh folder under /tmp that other users (the `postgres` user) may pass through.
pub fn tempdir(prefix: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

pub fn config(engine: Engine, dir: &Path) -> AccessoryConfig {
    AccessoryConfig {
        name: "acc".into(),
        engine,
        database: "shop".into(),
        user: "app".into(),
        port: None,
        dir: dir.to_path_buf(),
    }
}

/// The first executable `name` in PATH, the sbin folders or Debian's PostgreSQL folders.
pub fn program(name: &str) -> Option<PathBuf> {
    let mut folders: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .collect();
    folders.sort();
    folders.reverse();
    let path = std::env::var("PATH").unwrap_or_default();
    folders.extend(std::env::split_paths(&path));
    folders.extend(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from));
    folders
        .into_iter()
        .map(|f| f.join(name))
        .find(|p| p.is_file())
}

/// Whether the engine's server and test client are installed; prints why not.
pub fn installed(engine: Engine) -> bool {
    let needed: &[&str] = match engine {
        Engine::Postgres => &["postgres", "psql"],
        Engine::Mysql => &["mariadbd", "mariadb"],
        Engine::Redis => &["redis-server", "redis-cli"],
    };
    for name in needed {
        if program(name).is_none() {
            // Under CI a missing server is a failure, never a quiet pass.
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "`{name}` is not installed (CI installs postgresql, mariadb-server and redis-server)"
            );
            eprintln!("skipped: `{name}` is not installed (apt-get install postgresql mariadb-server redis-server)");
            return false;
        }
    }
    true
}

/// The parts of a connection URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub scheme: String,
    pub user: String,
    pub password: String,
    pub host: String,
    pub port: u16,
    pub path: String,
}

pub fn parse_url(url: &str) -> Url {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (userinfo, rest) = rest.split_once('@').unwrap();
    let (user, password) = userinfo.split_once(':').unwrap();
    let (hostport, path) = rest.split_once('/').unwrap();
    let (host, port) = hostport.split_once(':').unwrap();
    Url {
        scheme: scheme.into(),
        user: user.into(),
        password: password.into(),
        host: host.into(),
        port: port.parse().unwrap(),
        path: path.into(),
    }
}

/// Runs one statement (or redis command) with the engine's own client over TCP, the password
/// passed through the environment; returns trimmed stdout, or Err(stderr).
pub fn client(engine: Engine, url: &str, statement: &str) -> Result<String, String> {
    let url = parse_url(url);
    let port = url.port.to_string();
    let mut cmd = match engine {
        Engine::Postgres => {
            let mut c = Command::new(program("psql").unwrap());
            c.args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1"])
                .args([
                    "-h", &url.host, "-p", &port, "-U", &url.user, "-d", &url.path,
                ])
                .args(["-c", statement])
                .env("PGPASSWORD", &url.password)
                .env("PGCONNECT_TIMEOUT", "5");
            c
        }
        Engine::Mysql => {
            let mut c = Command::new(program("mariadb").unwrap());
            c.args(["--no-defaults", "--protocol=tcp", "-N", "-B"])
                .args([
                    "-h", &url.host, "-P", &port, "-u", &url.user, "-D", &url.path,
                ])
                .args(["-e", statement])
                .env("MYSQL_PWD", &url.password);
            c
        }
        Engine::Redis => {
            assert_eq!(url.path, "0");
            let mut c = Command::new(program("redis-cli").unwrap());
            c.args(["--no-auth-warning", "-h", &url.host, "-p", &port])
                .args(statement.split_whitespace())
                .env("REDISCLI_AUTH", &url.password);
            c
        }
    };
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    // redis-cli exits 0 on command errors; they come back as "(error) ..." or "ERR ...".
    if out.status.success() && !stdout.starts_with("NOAUTH") && !stdout.contains("ERR") {
        Ok(stdout)
    } else {
        Err(format!(
            "{}{}",
            stdout,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A write then a read-back statement for each engine.
pub fn write_statement(engine: Engine, value: &str) -> String {
    match engine {
        Engine::Postgres | Engine::Mysql => format!(
            "CREATE TABLE IF NOT EXISTS notes (v VARCHAR(100)); INSERT INTO notes VALUES ('{value}')"
        ),
        Engine::Redis => format!("RPUSH notes {value}"),
    }
}

pub fn read_statement(engine: Engine) -> String {
    match engine {
        Engine::Postgres | Engine::Mysql => "SELECT v FROM notes ORDER BY v".into(),
        Engine::Redis => "LRANGE notes 0 -1".into(),
    }
}

/// Every process's command line, NULs as spaces.
pub fn all_cmdlines() -> Vec<String> {
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| fs::read(e.path().join("cmdline")).ok())
        .map(|bytes| String::from_utf8_lossy(&bytes).replace('\0', " "))
        .collect()
}

/// Collects every distinct command line seen on the machine until stopped.
pub struct CmdlineWatcher {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<HashSet<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl CmdlineWatcher {
    pub fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(HashSet::new()));
        let thread = {
            let (stop, seen) = (stop.clone(), seen.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let now = all_cmdlines();
                    seen.lock().unwrap().extend(now);
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        };
        Self {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    /// Stops watching; returns what was seen.
    pub fn finish(mut self) -> HashSet<String> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

/// The number of servers working in `data`: processes there whose parent is not (PostgreSQL
/// and Redis fork helpers that share the folder).
pub fn servers_in(data: &Path) -> usize {
    let data = fs::canonicalize(data).unwrap();
    let inside: HashSet<u32> = fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|&pid| fs::read_link(format!("/proc/{pid}/cwd")).ok().as_deref() == Some(&data))
        .collect();
    inside
        .iter()
        .filter(|&&pid| {
            let state = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            !state.is_empty() && !inside.contains(&parent_of(pid))
        })
        .count()
}

/// The parent pid of `pid`.
pub fn parent_of(pid: u32) -> u32 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().nth(1))
        .and_then(|ppid| ppid.parse().ok())
        .unwrap_or(0)
}

pub fn owner_and_mode(path: &Path) -> (u32, u32) {
    let meta = fs::metadata(path).unwrap();
    (meta.uid(), meta.mode() & 0o7777)
}

/// Kills whatever server of `config` still runs when a test fails half-way.
pub struct KillOnDrop(pub AccessoryConfig);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(running) = Accessory::new(self.0.clone()).adopt() {
            let pid = nix::unistd::Pid::from_raw(running.pid as i32);
            let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}
