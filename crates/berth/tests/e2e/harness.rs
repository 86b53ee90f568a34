//! The end-to-end harness: a stack folder under /tmp holding a `berth.toml` and a tiny app,
//! `berth up` run as a child process with its output captured to files, client commands run
//! with a deadline, polling helpers, plain HTTP to replicas, and a guard that always stops
//! everything a test started (the daemon, shims, apps and accessory servers).

#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The binary under test.
pub const BERTH: &str = env!("CARGO_BIN_EXE_berth");

/// How long a stack may take to come up (first health verdicts included).
pub const UP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a client command may take.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(120);

/// Tests that run a PostgreSQL accessory take this, so at most one server runs at a time.
pub static POSTGRES: Mutex<()> = Mutex::new(());

pub fn postgres_lock() -> std::sync::MutexGuard<'static, ()> {
    POSTGRES.lock().unwrap_or_else(|e| e.into_inner())
}

/// The example app shipped with Berth.
pub fn example(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/hello")
        .join(file)
}

/// `[service.web]` running the hello app from `app/`, with fast health checks. `extra` holds
/// more keys of the service table (`use = ["db"]`, `env = {...}`).
pub fn web(replicas: u32, extra: &str) -> String {
    service("web", "python3 app.py", replicas, extra)
}

/// A service with a port and fast health checks on `/health`.
pub fn service(name: &str, run: &str, replicas: u32, extra: &str) -> String {
    format!(
        r#"
[service.{name}]
run = "{run}"
source = "app"
port = "auto"
replicas = {replicas}
stop_timeout = "5s"
{extra}

[service.{name}.health]
path = "/health"
interval = "1s"
timeout = "1s"
healthy_threshold = 1
unhealthy_threshold = 2
grace_period = "5s"
"#
    )
}

/// The output of a finished command.
#[derive(Debug)]
pub struct Output {
    pub what: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Asserts the command succeeded; returns its stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert!(
            self.status.success(),
            "`{}` failed ({}):\nstdout:\n{}\nstderr:\n{}",
            self.what,
            self.status,
            self.stdout,
            self.stderr
        );
        &self.stdout
    }

    /// Asserts the command failed with exit code 1; returns its stderr.
    #[track_caller]
    pub fn fails(&self) -> &str {
        assert_eq!(
            self.status.code(),
            Some(1),
            "`{}` should exit 1 ({}):\nstdout:\n{}\nstderr:\n{}",
            self.what,
            self.status,
            self.stdout,
            self.stderr
        );
        &self.stderr
    }
}

/// Runs a command to completion within `timeout` (killed and reported otherwise).
pub fn run(mut command: Command, timeout: Duration) -> Output {
    let what = format!("{command:?}");
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {}s", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        what,
        status,
        stdout: out_reader.join().unwrap(),
        stderr: err_reader.join().unwrap(),
    }
}

/// A `berth` command with a clean environment for the spec selection.
pub fn berth_command() -> Command {
    let mut command = Command::new(BERTH);
    command.env_remove("BERTH_ENV").env_remove("BERTH_FILE");
    command
}

/// Runs `berth ARGS`.
pub fn berth(args: &[&str]) -> Output {
    let mut command = berth_command();
    command.args(args);
    run(command, CMD_TIMEOUT)
}

/// Polls `check` every 100 ms until it returns Some, for at most `timeout`.
#[track_caller]
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        if Instant::now() > deadline {
            panic!("timed out after {}s waiting for {what}", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One replica as `berth ps --json` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Replica {
    pub service: String,
    pub replica: String,
    pub index: u64,
    pub pid: Option<u32>,
    pub port: Option<u16>,
    pub health: String,
    pub release: String,
    pub started_at: Option<i64>,
    pub restarts: u64,
    pub last_exit: Option<String>,
    pub last_log: Vec<String>,
    /// The limits applied (`berth ps`'s LIMITS column).
    pub limits: Option<String>,
}

impl Replica {
    pub fn from_json(v: &Value) -> Self {
        let s = |k: &str| {
            v[k].as_str()
                .unwrap_or_else(|| panic!("`{k}` is not a string in {v}"))
                .to_string()
        };
        Self {
            service: s("service"),
            replica: s("replica"),
            index: v["index"].as_u64().expect("index"),
            pid: v["pid"].as_u64().map(|p| p as u32),
            port: v["port"].as_u64().map(|p| p as u16),
            health: s("health"),
            release: s("release"),
            started_at: v["started_at"].as_i64(),
            restarts: v["restarts"].as_u64().expect("restarts"),
            last_exit: v["last_exit"].as_str().map(str::to_string),
            last_log: v["last_log"]
                .as_array()
                .expect("last_log is an array")
                .iter()
                .map(|l| l.as_str().unwrap_or_default().to_string())
                .collect(),
            limits: v["limits"].as_str().map(str::to_string),
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
            .unwrap_or_else(|| panic!("{} has no pid: {self:?}", self.replica))
    }

    pub fn port(&self) -> u16 {
        self.port
            .unwrap_or_else(|| panic!("{} has no port: {self:?}", self.replica))
    }
}

/// A process found in /proc.
#[derive(Debug, Clone)]
pub struct Proc {
    pub pid: u32,
    pub argv: Vec<String>,
    pub cwd: Option<PathBuf>,
}

/// Every process whose command line can be read (zombies and kernel threads have none).
pub fn processes() -> Vec<Proc> {
    let mut found = Vec::new();
    for pid in proc_pids() {
        let Ok(raw) = fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        if raw.is_empty() {
            continue;
        }
        let argv = raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let cwd = fs::read_link(format!("/proc/{pid}/cwd")).ok();
        found.push(Proc { pid, argv, cwd });
    }
    found
}

/// The pids listed in /proc now.
fn proc_pids() -> Vec<u32> {
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// Raw command lines of every process (NULs kept as they are), for secret scans.
pub fn all_cmdlines() -> Vec<(u32, Vec<u8>)> {
    let mut found = Vec::new();
    for pid in proc_pids() {
        if let Ok(raw) = fs::read(format!("/proc/{pid}/cmdline")) {
            found.push((pid, raw));
        }
    }
    found
}

/// The parent of `pid`, from `/proc/PID/stat` (after the command name, which may hold spaces).
pub fn parent(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

/// Whether `pid` is a live process (a zombie counts as gone).
pub fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].trim_start().chars().next());
            !matches!(state, Some('Z') | Some('X') | None)
        }
        Err(_) => false,
    }
}

pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) has no memory-safety requirements.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// One HTTP/1.0 exchange with 127.0.0.1:`port`: (status, body).
pub fn http(port: u16, method: &str, path: &str, body: &[u8]) -> Result<(u16, String), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut request =
        format!("{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    if !body.is_empty() || method == "POST" || method == "PUT" {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .and_then(|()| stream.write_all(body))
        .map_err(|e| format!("write to {addr}: {e}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|e| format!("read from {addr}: {e}"))?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no complete answer from {addr}: {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line from {addr}: {head:?}"))?;
    Ok((status, body.to_string()))
}

/// GET that must answer 2xx; returns the body parsed as JSON.
#[track_caller]
pub fn get_json(port: u16, path: &str) -> Value {
    let (status, body) = http(port, "GET", path, b"").unwrap();
    assert!(
        (200..300).contains(&status),
        "GET {path} on {port}: {status} {body}"
    );
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

/// A loopback port below the kernel's ephemeral range (where `port = "auto"` replicas get
/// theirs), free now and handed out once per test run.
pub fn free_fixed_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 20000 + (std::process::id() % 100) as u16 * 100;
    let _ = NEXT.compare_exchange(0, base, Ordering::SeqCst, Ordering::SeqCst);
    loop {
        let port = NEXT.fetch_add(1, Ordering::SeqCst);
        assert!(port < 32000, "no free port left");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A `berth up` started by a test.
pub struct Daemon {
    pub child: Child,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    pub status: Option<ExitStatus>,
}

/// A stack folder and the daemons a test ran for it. Dropping it stops everything.
pub struct Stack {
    dir: tempfile::TempDir,
    pub spec: PathBuf,
    /// The edge's listener and admin ports (127.0.0.1), unique in this test run.
    pub edge_port: u16,
    pub admin_port: u16,
    pub daemons: Vec<Daemon>,
    /// Extra children (e.g. `berth logs -f`) to kill on drop.
    pub extra: Vec<Child>,
}

impl Stack {
    /// A stack folder under /tmp (mode 0755: the postgres server user must traverse it) with
    /// the hello app (`app.py`, `pg.py`, `worker.py`) in `app/` and a `berth.toml` made of a `[stack]`
    /// table named `e2e-NAME` followed by `body`.
    pub fn new(name: &str, body: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("berth-e2e-")
            .tempdir_in("/tmp")
            .expect("a temporary folder");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let app = dir.path().join("app");
        fs::create_dir(&app).unwrap();
        fs::create_dir(dir.path().join("logs")).unwrap();
        for file in ["app.py", "pg.py", "worker.py"] {
            fs::copy(example(file), app.join(file)).unwrap();
        }
        let spec = dir.path().join("berth.toml");
        let stack = Self {
            dir,
            spec,
            edge_port: free_fixed_port(),
            admin_port: free_fixed_port(),
            daemons: Vec::new(),
            extra: Vec::new(),
        };
        stack.write_spec(name, body);
        stack
    }

    /// Writes `berth.toml`: `[stack]` named `e2e-NAME`, `[edge]` on this stack's own ports,
    /// then `body`.
    pub fn write_spec(&self, name: &str, body: &str) {
        fs::write(
            &self.spec,
            format!(
                "[stack]\nname = \"e2e-{name}\"\n\n[edge]\nlisten = [\"127.0.0.1:{}\"]\nadmin = \"127.0.0.1:{}\"\n{body}",
                self.edge_port, self.admin_port
            ),
        )
        .unwrap();
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn spec_str(&self) -> &str {
        self.spec.to_str().unwrap()
    }

    /// Writes a file of the app (the source of every service in these specs).
    pub fn write_app(&self, file: &str, contents: &str) {
        fs::write(self.path().join("app").join(file), contents).unwrap();
    }

    /// `.berth/default`.
    pub fn state(&self) -> PathBuf {
        self.path().join(".berth").join("default")
    }

    pub fn socket(&self) -> PathBuf {
        self.state().join("api.sock")
    }

    /// Starts `berth up -f SPEC` in the background; returns its number.
    pub fn up(&mut self) -> usize {
        self.up_with_env(&[])
    }

    /// Starts `berth up -f SPEC` with more variables in its environment; returns its number.
    pub fn up_with_env(&mut self, env: &[(&str, &str)]) -> usize {
        let n = self.daemons.len();
        let stdout = self.path().join("logs").join(format!("up-{n}.out"));
        let stderr = self.path().join("logs").join(format!("up-{n}.err"));
        let mut command = berth_command();
        command
            .args(["up", "-f", self.spec_str()])
            .env("BERTH_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stdout).unwrap())
            .stderr(fs::File::create(&stderr).unwrap());
        let child = command.spawn().expect("starting berth up");
        self.daemons.push(Daemon {
            child,
            stdout,
            stderr,
            status: None,
        });
        n
    }

    /// Starts `berth up` and waits for its "is up" line; returns its number.
    pub fn up_and_wait(&mut self) -> usize {
        let n = self.up();
        self.wait_up_line(n);
        n
    }

    pub fn daemon_stdout(&self, n: usize) -> String {
        fs::read_to_string(&self.daemons[n].stdout).unwrap_or_default()
    }

    pub fn daemon_stderr(&self, n: usize) -> String {
        fs::read_to_string(&self.daemons[n].stderr).unwrap_or_default()
    }

    pub fn daemon_pid(&self, n: usize) -> u32 {
        self.daemons[n].child.id()
    }

    /// Waits for `berth: stack ... is up` on the daemon's stdout; fails if the daemon exits.
    #[track_caller]
    pub fn wait_up_line(&mut self, n: usize) {
        let deadline = Instant::now() + UP_TIMEOUT;
        loop {
            let out = self.daemon_stdout(n);
            if out
                .lines()
                .any(|l| l.starts_with("berth: stack") && l.contains("is up"))
            {
                return;
            }
            if let Some(status) = self.daemons[n].child.try_wait().unwrap() {
                self.daemons[n].status = Some(status);
                panic!(
                    "berth up exited ({status}) before the stack was up:\nstdout:\n{out}\nstderr:\n{}",
                    self.daemon_stderr(n)
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "berth up printed no `is up` line within {}s:\nstdout:\n{out}\nstderr:\n{}",
                    UP_TIMEOUT.as_secs(),
                    self.daemon_stderr(n)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends `sig` to daemon `n`.
    pub fn signal_daemon(&self, n: usize, sig: i32) {
        signal(self.daemon_pid(n), sig);
    }

    /// Waits (bounded) for daemon `n` to exit; returns its status.
    #[track_caller]
    pub fn wait_daemon_exit(&mut self, n: usize, timeout: Duration) -> ExitStatus {
        if let Some(status) = self.daemons[n].status {
            return status;
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.daemons[n].child.try_wait().unwrap() {
                self.daemons[n].status = Some(status);
                return status;
            }
            if Instant::now() > deadline {
                panic!(
                    "berth up (pid {}) still runs {}s later:\nstderr:\n{}",
                    self.daemon_pid(n),
                    timeout.as_secs(),
                    self.daemon_stderr(n)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs `berth -f SPEC ARGS`.
    /// `(subject, message)` of the stack's events (`berth events --json`), oldest first.
    pub fn events(&self) -> Vec<(String, String)> {
        let out = self.berth(&["events", "--json", "--limit", "1000"]);
        let v: Value =
            serde_json::from_str(out.ok()).unwrap_or_else(|e| panic!("{e}: {}", out.stdout));
        let list = v
            .as_array()
            .or_else(|| v["events"].as_array())
            .cloned()
            .unwrap_or_default();
        let mut all: Vec<(i64, String, String)> = list
            .iter()
            .map(|e| {
                (
                    e["at"].as_i64().unwrap_or_default(),
                    e["subject"].as_str().unwrap_or_default().to_string(),
                    e["message"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        all.sort_by_key(|e| e.0);
        all.into_iter().map(|(_, s, m)| (s, m)).collect()
    }

    /// `berth secrets set NAME [extra]` with `value` on standard input (never an argument).
    pub fn set_secret(&self, name: &str, value: &str, extra: &[&str]) -> Output {
        let mut child = berth_command()
            .arg("-f")
            .arg(&self.spec)
            .args(["secrets", "set", name])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(value.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        Output {
            what: format!("berth secrets set {name} {extra:?}"),
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub fn berth(&self, args: &[&str]) -> Output {
        let mut command = berth_command();
        command.arg("-f").arg(&self.spec).args(args);
        run(command, CMD_TIMEOUT)
    }

    /// `berth ps --json`, parsed; fails the test when the command fails.
    #[track_caller]
    pub fn ps(&self) -> Vec<Replica> {
        let out = self.berth(&["ps", "--json"]);
        let json: Value = serde_json::from_str(out.ok())
            .unwrap_or_else(|e| panic!("ps --json is not JSON: {e}: {}", out.stdout));
        json.as_array()
            .unwrap_or_else(|| panic!("ps --json is not an array: {json}"))
            .iter()
            .map(Replica::from_json)
            .collect()
    }

    /// The replicas of one service, in replica-number order.
    #[track_caller]
    pub fn replicas(&self, service: &str) -> Vec<Replica> {
        let mut list: Vec<Replica> = self
            .ps()
            .into_iter()
            .filter(|r| r.service == service)
            .collect();
        list.sort_by_key(|r| r.index);
        list
    }

    /// Waits until `service` has exactly `count` replicas, all healthy with a live pid;
    /// returns them.
    #[track_caller]
    pub fn wait_healthy(&self, service: &str, count: usize) -> Vec<Replica> {
        let deadline = Instant::now() + UP_TIMEOUT;
        let last = loop {
            let list = self.replicas(service);
            if list.len() == count
                && list
                    .iter()
                    .all(|r| r.health == "healthy" && r.pid.is_some_and(alive))
            {
                return list;
            }
            if Instant::now() > deadline {
                break list;
            }
            std::thread::sleep(Duration::from_millis(150));
        };
        panic!(
            "{service} did not reach {count} healthy replicas within {}s; last ps: {last:#?}",
            UP_TIMEOUT.as_secs()
        );
    }

    /// Processes started for this stack: their command line or working folder is inside it.
    pub fn processes(&self) -> Vec<Proc> {
        let dir = self.path().to_string_lossy().into_owned();
        let me = std::process::id();
        processes()
            .into_iter()
            .filter(|p| p.pid != me)
            .filter(|p| {
                p.argv.iter().any(|a| a.contains(&dir))
                    || p.cwd.as_ref().is_some_and(|c| c.starts_with(self.path()))
            })
            .collect()
    }

    /// The interpreters running `script` for this stack (not the `sh -c` around them).
    pub fn app_processes(&self, script: &str) -> Vec<Proc> {
        self.processes()
            .into_iter()
            .filter(|p| p.argv.len() >= 2 && p.argv[1] == script && p.argv[0].contains("python"))
            .collect()
    }

    /// PostgreSQL postmasters running on this stack's data folder. A backend the postmaster
    /// has just forked shows the postmaster's command line until it sets its title, so
    /// children of another match are not postmasters.
    pub fn postmasters(&self) -> Vec<Proc> {
        let matches: Vec<Proc> = self
            .processes()
            .into_iter()
            .filter(|p| {
                p.argv.first().is_some_and(|a| a.ends_with("postgres"))
                    && p.argv.iter().any(|a| a == "-D")
            })
            .collect();
        let pids: Vec<u32> = matches.iter().map(|p| p.pid).collect();
        matches
            .into_iter()
            .filter(|p| !parent(p.pid).is_some_and(|parent| pids.contains(&parent)))
            .collect()
    }

    /// The edge processes (`berth edge --dir ...`) of this stack.
    pub fn edges(&self) -> Vec<Proc> {
        self.processes()
            .into_iter()
            .filter(|p| p.argv.get(1).is_some_and(|a| a == "edge"))
            .collect()
    }

    /// Everything in a file of the replica's log folder (`current.log`).
    pub fn replica_log(&self, replica: &str) -> String {
        fs::read_to_string(
            self.state()
                .join("replicas")
                .join(replica)
                .join("current.log"),
        )
        .unwrap_or_default()
    }

    fn dump(&self) {
        for (n, d) in self.daemons.iter().enumerate() {
            eprintln!(
                "---- berth up #{n} stdout ----\n{}\n---- berth up #{n} stderr ----\n{}",
                fs::read_to_string(&d.stdout).unwrap_or_default(),
                fs::read_to_string(&d.stderr).unwrap_or_default()
            );
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump();
        }
        for child in &mut self.extra {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Graceful first: the daemon stops its replicas and accessories.
        for d in &mut self.daemons {
            if d.status.is_some() || d.child.try_wait().ok().flatten().is_some() {
                continue;
            }
            signal(d.child.id(), libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(40);
            loop {
                match d.child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() > deadline => {
                        let _ = d.child.kill();
                        let _ = d.child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
        // Then whatever is left: shims, apps, servers of this stack.
        for _ in 0..50 {
            let left = self.processes();
            if left.is_empty() {
                break;
            }
            for p in &left {
                signal(p.pid, libc::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
