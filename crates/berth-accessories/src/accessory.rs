//! [`Accessory`]: the lifecycle of one accessory server — adopt a live one, or initialise,
//! start (detached), wait for and provision a new one; stop it gracefully, then forcibly.

use std::fs;
use std::io::ErrorKind;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::process::Child;
use tokio::time::{sleep, Instant};
use tracing::{info, warn};

use crate::binaries::BinSearch;
use crate::config::{connection_url, engine_label, AccessoryConfig, RunningAccessory};
use crate::layout::Layout;
use crate::lock::FolderLock;
use crate::port;
use crate::process::{
    self, file_len, is_running, is_server_process, kill_hard, log_tail, read_pid_file,
    server_processes, signal, spawn_detached, wait_for_exit,
};
use crate::secret;
use crate::server::{exe_names, own_pid_file, stop_signal, Probe, Server, Target};
use crate::user::ServerUser;

/// How long a server may take to accept connections, by default.
const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a server gets for a graceful stop when Berth restarts it on its own.
const RESTART_STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a killed server may take to disappear.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// Pause between two readiness probes.
const PROBE_EVERY: Duration = Duration::from_millis(250);

/// Log lines quoted in errors.
const LOG_TAIL_LINES: usize = 20;

/// One accessory server of a stack, run as a local process.
///
/// An `Accessory` holds no process handle: every call looks at the accessory folder and the
/// live processes, so a new `Accessory` (in a new Berth process) finds the server an earlier
/// one started.
#[derive(Debug, Clone)]
pub struct Accessory {
    config: AccessoryConfig,
    search: BinSearch,
    start_timeout: Duration,
    /// The password kept by the caller (Berth's secrets store); `None`: the `password` file.
    password: Option<GivenPassword>,
}

/// A password handed in with [`Accessory::with_password`]; `Debug` hides it.
#[derive(Clone)]
struct GivenPassword(String);

impl std::fmt::Debug for GivenPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GivenPassword(********)")
    }
}

impl Accessory {
    pub fn new(config: AccessoryConfig) -> Self {
        Self {
            config,
            search: BinSearch::default(),
            start_timeout: DEFAULT_START_TIMEOUT,
            password: None,
        }
    }

    /// Looks for the engine's programs in these folders only, instead of Debian's PostgreSQL
    /// folders, `PATH` and the `sbin` folders.
    pub fn with_bin_dirs(mut self, dirs: Vec<PathBuf>) -> Self {
        self.search = BinSearch { only: Some(dirs) };
        self
    }

    /// How long a starting server may take to accept connections (default 60 s).
    pub fn with_start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// Uses `password` (kept by the caller, e.g. in the secrets store) instead of the generated
    /// one in the accessory's `password` file. Provisioning sets it on every start, so a changed
    /// password takes effect when the server is started or adopted.
    pub fn with_password(mut self, password: String) -> Self {
        self.password = Some(GivenPassword(password));
        self
    }

    /// The password file of an accessory folder written by earlier Berth versions, if any: its
    /// content is the password the live server may still have.
    pub fn legacy_password(dir: &std::path::Path) -> Result<Option<String>> {
        secret::load(&Layout::new(dir).password_file)
    }

    pub fn config(&self) -> &AccessoryConfig {
        &self.config
    }

    /// The server's log (its stdout and stderr, and the output of its init tool).
    pub fn log_file(&self) -> PathBuf {
        Layout::new(&self.config.dir).log
    }

    /// Returns the live server, starting it first when none runs: a live server is adopted
    /// (never doubled); else the data folder is initialised if empty (never wiped), the server
    /// is started detached from Berth, waited for, and the database and user are created with
    /// the generated password (idempotently, on every call).
    pub async fn ensure_running(&self) -> Result<RunningAccessory> {
        self.ensure_running_inner().await.with_context(|| {
            format!(
                "cannot run accessory `{}` ({})",
                self.config.name,
                self.label()
            )
        })
    }

    /// The live server, if there is one; no side effects.
    pub fn adopt(&self) -> Option<RunningAccessory> {
        let layout = self.existing_layout()?;
        let pid = self.live_pid(&layout, None)?;
        let port = port::read(&layout.port_file).ok()??;
        let password = match &self.password {
            Some(given) => given.0.clone(),
            None => secret::load(&layout.password_file).ok()??,
        };
        Some(self.running(pid, port, &password))
    }

    /// Connections and database size as the running server reports them (an error when no
    /// server runs or it does not answer in a few seconds).
    pub async fn stats(&self) -> Result<crate::server::AccessoryStats> {
        let layout = self
            .existing_layout()
            .ok_or_else(|| anyhow::anyhow!("accessory `{}` has no folder", self.config.name))?;
        let port = port::read(&layout.port_file)
            .ok()
            .flatten()
            .ok_or_else(|| anyhow::anyhow!("accessory `{}` has no port", self.config.name))?;
        let password = match &self.password {
            Some(given) => given.0.clone(),
            None => secret::load(&layout.password_file)?.unwrap_or_default(),
        };
        let server = Server::locate(self.config.engine, &self.search, &layout)?;
        let user = ServerUser::current();
        let target = self.target(&layout, &user, port, &password);
        server.stats(&target).await
    }

    /// Whether a server of this accessory is running.
    pub fn is_alive(&self) -> bool {
        self.existing_layout()
            .and_then(|layout| self.live_pid(&layout, None))
            .is_some()
    }

    /// Waits until the server `running` names ends (however it ends: a crash, a kill, a stop)
    /// and returns how, when this process started it (`signal 9 (SIGKILL)`); None for a server
    /// an earlier process started, whose status nobody can read.
    pub async fn wait_exit(&self, running: &RunningAccessory) -> Option<String> {
        let pid = running.pid;
        process::wait_exit(pid, || {
            self.existing_layout()
                .and_then(|layout| self.live_pid(&layout, None))
                == Some(pid)
        })
        .await
    }

    /// After server `pid` died: kills what is left of its process group (PostgreSQL's backends
    /// outlive a killed postmaster for a moment and keep its shared memory, which stops a new
    /// server from starting), as the engine's own crash recovery would.
    pub async fn kill_leftovers(&self, pid: u32) {
        process::kill_group(pid, KILL_WAIT).await;
    }

    /// Stops the server, if one runs: a graceful shutdown (PostgreSQL's "fast" mode, SIGTERM
    /// for the others), then SIGKILL to its whole process group after `timeout`. Data stays.
    pub async fn stop(&self, timeout: Duration) -> Result<()> {
        let Some(layout) = self.existing_layout() else {
            return Ok(());
        };
        let result = async {
            let _lock = FolderLock::acquire(&layout.lock_file, self.lock_wait()).await?;
            if let Some(pid) = self.live_pid(&layout, None) {
                self.stop_pid(pid, timeout).await?;
            }
            remove_file(&layout.pid_file)
        }
        .await;
        result.with_context(|| {
            format!(
                "cannot stop accessory `{}` ({})",
                self.config.name,
                self.label()
            )
        })
    }

    /// The value injected into the services that use this accessory: its connection URL.
    pub fn env_value(&self, running: &RunningAccessory) -> String {
        running.url.clone()
    }

    async fn ensure_running_inner(&self) -> Result<RunningAccessory> {
        let engine = self.config.engine;
        let layout = Layout::create_dir(&self.config.dir)?;
        let _lock = FolderLock::acquire(&layout.lock_file, self.lock_wait()).await?;
        let server = Server::locate(engine, &self.search, &layout)?;
        let user = ServerUser::for_engine(engine)?;
        layout.create_server_dirs(&user, self.label())?;
        let password = match &self.password {
            Some(given) => given.0.clone(),
            None => secret::load_or_create(&layout.password_file)?,
        };

        if let Some(pid) = self.live_pid(&layout, Some(&server)) {
            if let Some(running) = self
                .try_adopt(&layout, &user, &server, pid, &password)
                .await?
            {
                return Ok(running);
            }
        }

        self.stop_strays(&layout, &server).await?;
        let port = port::resolve(self.config.port, &layout.port_file)?;
        let target = self.target(&layout, &user, port, &password);
        if !server.is_initialized(&layout) {
            info!(accessory = %self.config.name, dir = %layout.data.display(), "initialising the data folder");
            server.init(&layout, &user).await?;
        }
        server.prepare(&target)?;
        let log_start = file_len(&layout.log);
        let mut child = spawn_detached(&mut server.start_command(&target), &layout.log)?;
        let Some(pid) = child.id() else {
            bail!("{} exited at once", self.label());
        };
        fs::write(&layout.pid_file, format!("{pid}\n"))
            .with_context(|| format!("cannot write {}", layout.pid_file.display()))?;
        if let Err(e) = self
            .wait_ready(&server, &target, Some(&mut child), pid, log_start)
            .await
        {
            // Leave nothing half-started behind. While `child` is not reaped, its pid cannot
            // name another process.
            if matches!(child.try_wait(), Ok(None)) {
                let _ = self.stop_pid(pid, Duration::from_secs(5)).await;
            }
            let _ = remove_file(&layout.pid_file);
            return Err(e);
        }
        server.provision(&target).await?;
        info!(accessory = %self.config.name, pid, port, "started");
        process::keep_child(child);
        Ok(self.running(pid, port, &password))
    }

    /// Takes over the live server `pid`; `None` when it must be restarted instead (it runs on
    /// another port than the configured one, or refuses the stored password).
    async fn try_adopt(
        &self,
        layout: &Layout,
        user: &ServerUser,
        server: &Server,
        pid: u32,
        password: &str,
    ) -> Result<Option<RunningAccessory>> {
        let recorded = port::read(&layout.port_file)?;
        let port = match recorded {
            Some(port) if self.config.port.is_none_or(|p| p == port) => port,
            _ => {
                info!(accessory = %self.config.name, pid, "restarting: the configured port changed");
                self.stop_pid(pid, RESTART_STOP_TIMEOUT).await?;
                return Ok(None);
            }
        };
        let target = self.target(layout, user, port, password);
        let log_start = file_len(&layout.log);
        if let Err(e) = self.wait_ready(server, &target, None, pid, log_start).await {
            warn!(accessory = %self.config.name, pid, "restarting a live server that is not usable: {e:#}");
            self.stop_pid(pid, RESTART_STOP_TIMEOUT).await?;
            return Ok(None);
        }
        server.provision(&target).await?;
        info!(accessory = %self.config.name, pid, port, "adopted a running server");
        Ok(Some(self.running(pid, port, password)))
    }

    /// Probes until the server accepts connections, it dies, or the start timeout passes.
    async fn wait_ready(
        &self,
        server: &Server,
        target: &Target<'_>,
        mut child: Option<&mut Child>,
        pid: u32,
        log_start: u64,
    ) -> Result<()> {
        let layout = target.layout;
        let tail = || {
            let text = log_tail(&layout.log, log_start, LOG_TAIL_LINES, target.password);
            if text.trim().is_empty() {
                format!("{} has nothing new", layout.log.display())
            } else {
                format!("last lines of {}:\n{text}", layout.log.display())
            }
        };
        let deadline = Instant::now() + self.start_timeout;
        loop {
            let exited = match child.as_deref_mut() {
                Some(child) => child.try_wait()?.map(|status| status.to_string()),
                None => (!is_running(pid)).then(|| "gone".to_string()),
            };
            if let Some(status) = exited {
                bail!(
                    "{} stopped while starting ({status}); {}",
                    self.label(),
                    tail()
                );
            }
            let reason = match server.probe(target).await {
                Probe::Ready => return Ok(()),
                Probe::NotYet(reason) => reason,
                Probe::Failed(e) => return Err(e),
            };
            if Instant::now() >= deadline {
                bail!(
                    "{} did not accept connections on port {} within {}s ({}); {}",
                    self.label(),
                    target.port,
                    self.start_timeout.as_secs(),
                    secret::redact(&reason, target.password),
                    tail()
                );
            }
            sleep(PROBE_EVERY).await;
        }
    }

    /// Stops the processes of the engine's program still working in the data folder when no
    /// server is adopted there: what a Berth process that died hard left running and no pid
    /// file names (Redis loading a backup for a restore, a server started just before the
    /// death). A new server must not start beside them on the same data.
    async fn stop_strays(&self, layout: &Layout, server: &Server) -> Result<()> {
        let mut names: Vec<String> = exe_names(self.config.engine)
            .iter()
            .map(|n| n.to_string())
            .collect();
        if let Some(name) = server.program().file_name() {
            names.push(name.to_string_lossy().into_owned());
        }
        for pid in server_processes(&layout.data, &names) {
            // A group's members (PostgreSQL's backends) may go with their leader.
            if !is_running(pid) {
                continue;
            }
            warn!(accessory = %self.config.name, pid, "a server process no pid file names works in {}: stopping it before starting the server", layout.data.display());
            self.stop_pid(pid, RESTART_STOP_TIMEOUT).await?;
        }
        Ok(())
    }

    /// Asks `pid` to shut down, then kills its process group after `timeout`.
    async fn stop_pid(&self, pid: u32, timeout: Duration) -> Result<()> {
        signal(pid, stop_signal(self.config.engine))?;
        if wait_for_exit(pid, timeout).await {
            info!(accessory = %self.config.name, pid, "stopped");
            return Ok(());
        }
        warn!(accessory = %self.config.name, pid, "did not stop within {}s: killing it", timeout.as_secs());
        kill_hard(pid)?;
        if wait_for_exit(pid, KILL_WAIT).await {
            Ok(())
        } else {
            bail!(
                "process {pid} survived SIGKILL for {}s",
                KILL_WAIT.as_secs()
            )
        }
    }

    /// The pid of this accessory's live server: the one Berth recorded or the one the server
    /// recorded itself, if it is a live process of the engine's program working in our data
    /// folder.
    fn live_pid(&self, layout: &Layout, server: Option<&Server>) -> Option<u32> {
        let engine = self.config.engine;
        let mut names: Vec<String> = exe_names(engine).iter().map(|n| n.to_string()).collect();
        let located = match server {
            Some(server) => Some(server.program()),
            None => Server::locate(engine, &self.search, layout)
                .ok()
                .map(|s| s.program()),
        };
        if let Some(name) = located.as_deref().and_then(|p| p.file_name()) {
            names.push(name.to_string_lossy().into_owned());
        }
        [layout.pid_file.clone(), own_pid_file(engine, layout)]
            .iter()
            .filter_map(|file| read_pid_file(file))
            .find(|&pid| is_server_process(pid, &layout.data, &names))
    }

    /// The layout of the accessory folder if it exists (creating nothing).
    fn existing_layout(&self) -> Option<Layout> {
        let dir = fs::canonicalize(&self.config.dir).ok()?;
        Some(Layout::new(&dir))
    }

    fn target<'a>(
        &'a self,
        layout: &'a Layout,
        user: &'a ServerUser,
        port: u16,
        password: &'a str,
    ) -> Target<'a> {
        Target {
            layout,
            user,
            port,
            password,
            database: &self.config.database,
            login: &self.config.user,
        }
    }

    fn running(&self, pid: u32, port: u16, password: &str) -> RunningAccessory {
        let c = &self.config;
        RunningAccessory {
            pid,
            port,
            url: connection_url(c.engine, &c.user, password, port, &c.database),
        }
    }

    fn label(&self) -> &'static str {
        engine_label(self.config.engine)
    }

    /// How long to wait for another Berth process working on the same accessory.
    fn lock_wait(&self) -> Duration {
        self.start_timeout * 2 + Duration::from_secs(60)
    }
}

fn remove_file(path: &std::path::Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_spec::Engine;

    fn config(dir: PathBuf) -> AccessoryConfig {
        AccessoryConfig {
            name: "cache".into(),
            engine: Engine::Redis,
            database: "cache".into(),
            user: "cache".into(),
            port: None,
            dir,
        }
    }

    #[tokio::test]
    async fn nothing_running_in_a_missing_folder_and_nothing_created() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cache");
        let acc = Accessory::new(config(dir.clone()));
        assert!(acc.adopt().is_none());
        assert!(!acc.is_alive());
        acc.stop(Duration::from_secs(1)).await.unwrap();
        assert!(!dir.exists());
        assert_eq!(acc.log_file(), dir.join("server.log"));
    }

    #[tokio::test]
    async fn a_stale_pid_file_is_not_a_server() {
        let root = tempfile::tempdir().unwrap();
        let acc = Accessory::new(config(root.path().to_path_buf()));
        fs::create_dir_all(root.path().join("run")).unwrap();
        // Our own pid: alive, but neither a redis-server nor working in the data folder.
        fs::write(
            root.path().join("run/server.pid"),
            std::process::id().to_string(),
        )
        .unwrap();
        fs::write(root.path().join("port"), "6379").unwrap();
        fs::write(root.path().join("password"), "abc").unwrap();
        assert!(acc.adopt().is_none());
        assert!(!acc.is_alive());
    }

    #[test]
    fn env_value_is_the_url() {
        let acc = Accessory::new(config(PathBuf::from("/nonexistent")));
        let running = acc.running(10, 6390, "pw");
        assert_eq!(running.url, "redis://:pw@127.0.0.1:6390/0");
        assert_eq!(acc.env_value(&running), running.url);
    }
}
