//! The database engines' dump, check and restore commands. Every tool connects as the server's
//! administrator through the private unix socket in the accessory's `run/` folder (PostgreSQL's
//! `postgres` role with `trust`, MariaDB's `unix_socket` user), or with the password in the
//! environment (Redis's `REDISCLI_AUTH`): never a password in argv.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::process::Command;

use crate::stream::{run_to_file, run_tool};

/// Where an accessory's server listens and keeps its data.
#[derive(Clone)]
pub struct Server {
    /// The accessory's folder (`.berth/ENV/accessories/NAME`).
    pub dir: PathBuf,
    pub port: u16,
    /// The service database (postgres, mysql).
    pub database: String,
    /// The Redis password (redis only).
    pub password: Option<String>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("dir", &self.dir)
            .field("port", &self.port)
            .field("database", &self.database)
            .finish_non_exhaustive()
    }
}

impl Server {
    fn run_dir(&self) -> PathBuf {
        self.dir.join("run")
    }
}

// ----- PostgreSQL ---------------------------------------------------------------------------

/// The folder holding `pg_dump`, `pg_restore` and `psql`: the version that made the data folder
/// first, then the newest installed, then `PATH`.
fn postgres_bin(server: &Server) -> Result<PathBuf> {
    let version = std::fs::read_to_string(server.dir.join("data/PG_VERSION"))
        .ok()
        .map(|v| v.trim().to_string());
    let mut folders = Vec::new();
    if let Some(v) = &version {
        folders.push(PathBuf::from(format!("/usr/lib/postgresql/{v}/bin")));
    }
    let mut installed: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .collect();
    installed.sort_by_key(|b| std::cmp::Reverse(b.0));
    folders.extend(installed.into_iter().map(|(_, p)| p));
    folders.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    folders
        .into_iter()
        .find(|f| {
            ["pg_dump", "pg_restore", "psql"]
                .iter()
                .all(|p| f.join(p).is_file())
        })
        .context(
            "pg_dump, pg_restore and psql were not found (install the `postgresql-client` package)",
        )
}

fn pg(bin: &Path, program: &str, server: &Server, database: &str) -> Command {
    let mut command = Command::new(bin.join(program));
    command
        .arg("-h")
        .arg(server.run_dir())
        .arg("-p")
        .arg(server.port.to_string())
        .args(["-U", "postgres", "-d", database])
        .env_remove("PGPASSWORD")
        .env("PGAPPNAME", "berth-backup")
        .env("PGCONNECT_TIMEOUT", "10");
    command
}

/// `pg_dump -Fc` of the service database into `out`: one consistent snapshot (a repeatable-read
/// transaction), while writers keep writing.
pub(crate) async fn postgres_dump(server: &Server, out: &Path) -> Result<(u64, String)> {
    let bin = postgres_bin(server)?;
    let mut dump = pg(&bin, "pg_dump", server, &server.database);
    dump.args(["-Fc", "--compress=6"]);
    run_to_file(dump, "pg_dump", out).await
}

/// Restores the dump into a throwaway database on the same server, then drops it.
pub(crate) async fn postgres_test_restore(server: &Server, dump: &Path, tag: &str) -> Result<()> {
    let bin = postgres_bin(server)?;
    let scratch = format!(
        "berth_verify_{}",
        tag.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    );
    let sql = |statement: String| {
        let mut psql = pg(&bin, "psql", server, "postgres");
        psql.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", &statement]);
        psql
    };
    run_tool(
        sql(format!("DROP DATABASE IF EXISTS \"{scratch}\"")),
        "psql",
        None,
    )
    .await?;
    run_tool(sql(format!("CREATE DATABASE \"{scratch}\"")), "psql", None).await?;
    let mut restore = pg(&bin, "pg_restore", server, &scratch);
    restore
        .args(["--no-owner", "--exit-on-error", "--single-transaction"])
        .arg(dump);
    let restored = run_tool(restore, "pg_restore (test restore)", None).await;
    let dropped = run_tool(
        sql(format!("DROP DATABASE IF EXISTS \"{scratch}\"")),
        "psql",
        None,
    )
    .await;
    restored?;
    dropped?;
    Ok(())
}

/// Replaces the service database's content with the dump's, in one transaction.
pub(crate) async fn postgres_restore(server: &Server, dump: &Path) -> Result<()> {
    let bin = postgres_bin(server)?;
    // Connections left by stopped writers would block DROP TABLE.
    let mut kick = pg(&bin, "psql", server, "postgres");
    kick.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-c"]).arg(format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}' AND pid <> pg_backend_pid()",
        server.database.replace('\'', "''")
    ));
    run_tool(kick, "psql", None).await?;
    let mut restore = pg(&bin, "pg_restore", server, &server.database);
    restore
        .args([
            "--clean",
            "--if-exists",
            "--exit-on-error",
            "--single-transaction",
        ])
        .arg(dump);
    run_tool(restore, "pg_restore", None).await.map(|_| ())
}

// ----- MariaDB ------------------------------------------------------------------------------

fn mariadb(program: &[&str], server: &Server) -> Result<Command> {
    let found = program.iter().find_map(|p| which(p)).with_context(|| {
        format!(
            "{} was not found (install the `mariadb-client` package)",
            program[0]
        )
    })?;
    let me = nix_user_name();
    let mut command = Command::new(found);
    command
        .arg("--no-defaults")
        .arg("--protocol=socket")
        .arg(format!(
            "--socket={}",
            server.run_dir().join("mysqld.sock").display()
        ))
        .arg(format!("--user={me}"));
    Ok(command)
}

pub(crate) async fn mysql_dump(server: &Server, out: &Path) -> Result<(u64, String)> {
    let mut dump = mariadb(&["mariadb-dump", "mysqldump"], server)?;
    dump.args([
        "--single-transaction",
        "--routines",
        "--triggers",
        "--events",
        "--hex-blob",
    ])
    .arg(&server.database);
    run_to_file(dump, "mariadb-dump", out).await
}

pub(crate) async fn mysql_test_restore(server: &Server, dump: &Path, tag: &str) -> Result<()> {
    let scratch = format!(
        "berth_verify_{}",
        tag.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    );
    let sql = |statement: String| -> Result<Command> {
        let mut c = mariadb(&["mariadb", "mysql"], server)?;
        c.args(["--batch", "-e", &statement]);
        Ok(c)
    };
    run_tool(
        sql(format!(
            "DROP DATABASE IF EXISTS `{scratch}`; CREATE DATABASE `{scratch}`"
        ))?,
        "mariadb",
        None,
    )
    .await?;
    let mut load = mariadb(&["mariadb", "mysql"], server)?;
    load.arg(&scratch);
    let loaded = run_tool(load, "mariadb (test restore)", Some(dump)).await;
    let dropped = run_tool(
        sql(format!("DROP DATABASE IF EXISTS `{scratch}`"))?,
        "mariadb",
        None,
    )
    .await;
    loaded?;
    dropped?;
    Ok(())
}

pub(crate) async fn mysql_restore(server: &Server, dump: &Path) -> Result<()> {
    let mut load = mariadb(&["mariadb", "mysql"], server)?;
    load.arg(&server.database);
    run_tool(load, "mariadb (restore)", Some(dump))
        .await
        .map(|_| ())
}

// ----- Redis --------------------------------------------------------------------------------

fn redis_cli(server: &Server) -> Result<Command> {
    which("redis-cli").context("redis-cli was not found (install the `redis-tools` package)")?;
    Ok(redis_cli_on(&server.run_dir().join("redis.sock"), server))
}

fn redis_cli_on(socket: &Path, server: &Server) -> Command {
    let mut command = Command::new(which("redis-cli").unwrap_or_else(|| "redis-cli".into()));
    command.arg("-s").arg(socket).arg("--no-auth-warning");
    match &server.password {
        Some(password) => command.env("REDISCLI_AUTH", password),
        None => command.env_remove("REDISCLI_AUTH"),
    };
    command
}

async fn redis(server: &Server, args: &[&str]) -> Result<String> {
    let mut command = redis_cli(server)?;
    command.args(args);
    let out = run_tool(command, "redis-cli", None).await?;
    if out.starts_with("ERR") || out.starts_with("NOAUTH") || out.starts_with("WRONGPASS") {
        bail!("redis-cli {}: {}", args.join(" "), out.trim());
    }
    Ok(out)
}

/// `BGSAVE`, waits for it, then copies the RDB file.
pub(crate) async fn redis_dump(server: &Server, out: &Path) -> Result<(u64, String)> {
    let before = redis(server, &["LASTSAVE"]).await?;
    let answer = redis(server, &["BGSAVE"]).await?;
    if !answer.contains("started") && !answer.contains("scheduled") {
        bail!("BGSAVE was refused: {}", answer.trim());
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let info = redis(server, &["INFO", "persistence"]).await?;
        let in_progress = info.lines().any(|l| l.trim() == "rdb_bgsave_in_progress:1");
        let last = redis(server, &["LASTSAVE"]).await?;
        if !in_progress && last != before {
            if info
                .lines()
                .any(|l| l.trim() == "rdb_last_bgsave_status:err")
            {
                bail!("Redis could not write its RDB file (see its server.log)");
            }
            break;
        }
        if tokio::time::Instant::now() > deadline {
            bail!("BGSAVE did not finish within 10 minutes");
        }
    }
    let rdb = server.dir.join("data").join("dump.rdb");
    let mut cat = Command::new("cat");
    cat.arg(&rdb);
    run_to_file(cat, "copying dump.rdb", out).await
}

/// `redis-check-rdb` on the file, when the tool is installed.
pub(crate) async fn redis_check(file: &Path) -> Result<()> {
    let Some(check) = which("redis-check-rdb") else {
        return Ok(());
    };
    let mut command = Command::new(check);
    command.arg(file);
    run_tool(command, "redis-check-rdb", None).await.map(|_| ())
}

/// Replaces a stopped Redis server's data with the RDB file. The accessory runs with
/// `appendonly yes`, and Redis then loads its AOF, never `dump.rdb`; so the RDB file is loaded
/// by a one-off `redis-server` on a private socket with the AOF off, which then writes a fresh
/// AOF from it (`CONFIG SET appendonly yes`) and stops. The old AOF is kept aside until then.
pub(crate) async fn redis_restore_offline(server: &Server, file: &Path) -> Result<()> {
    let data = server.dir.join("data");
    let aside: Vec<(PathBuf, PathBuf)> = ["appendonlydir", "appendonly.aof"]
        .iter()
        .map(|n| (data.join(n), data.join(format!(".{n}.replaced"))))
        .filter(|(live, _)| live.exists())
        .collect();
    for (live, old) in &aside {
        let _ = std::fs::remove_dir_all(old);
        let _ = std::fs::remove_file(old);
        std::fs::rename(live, old)
            .with_context(|| format!("cannot move {} aside", live.display()))?;
    }
    let result = redis_load(server, &data, file).await;
    if result.is_err() {
        // Put the old data back: the server starts as it was.
        let _ = std::fs::remove_dir_all(data.join("appendonlydir"));
        for (live, old) in &aside {
            let _ = std::fs::rename(old, live);
        }
        return result;
    }
    for (_, old) in &aside {
        let _ = std::fs::remove_dir_all(old);
        let _ = std::fs::remove_file(old);
    }
    Ok(())
}

async fn redis_load(server: &Server, data: &Path, file: &Path) -> Result<()> {
    let program = which("redis-server")
        .context("redis-server was not found (install the `redis-server` package)")?;
    let target = data.join("dump.rdb");
    let temp = data.join(".dump.rdb.restoring");
    std::fs::copy(file, &temp).with_context(|| format!("cannot write {}", temp.display()))?;
    std::fs::rename(&temp, &target)
        .with_context(|| format!("cannot replace {}", target.display()))?;
    let socket = server.run_dir().join("restore.sock");
    let _ = std::fs::remove_file(&socket);
    let mut child = Command::new(program)
        .args([
            "--port",
            "0",
            "--unixsocketperm",
            "700",
            "--appendonly",
            "no",
        ])
        .args([
            "--save",
            "",
            "--daemonize",
            "no",
            "--dbfilename",
            "dump.rdb",
        ])
        .args(["--logfile", ""])
        .arg("--unixsocket")
        .arg(&socket)
        .arg("--dir")
        .arg(data)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start redis-server to load the backup")?;
    let one_off = Server {
        dir: server.dir.clone(),
        port: 0,
        database: String::new(),
        password: None,
    };
    let cli = |args: &[&str]| {
        let mut command = redis_cli_on(&socket, &one_off);
        command.args(args);
        command
    };
    let result = async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(out) = run_tool(cli(&["PING"]), "redis-cli", None).await {
                if out.contains("PONG") {
                    break;
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                bail!("redis-server could not load the backup ({status})");
            }
            if tokio::time::Instant::now() > deadline {
                bail!("redis-server did not load the backup within 2 minutes");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        run_tool(
            cli(&["CONFIG", "SET", "appendonly", "yes"]),
            "redis-cli",
            None,
        )
        .await?;
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let info = run_tool(cli(&["INFO", "persistence"]), "redis-cli", None).await?;
            let has = |line: &str| info.lines().any(|l| l.trim() == line);
            if has("aof_enabled:1")
                && has("aof_rewrite_in_progress:0")
                && has("aof_rewrite_scheduled:0")
            {
                if !has("aof_last_bgrewrite_status:ok") {
                    bail!("Redis could not write its AOF from the backup");
                }
                break;
            }
            if tokio::time::Instant::now() > deadline {
                bail!("Redis did not write its AOF within 2 minutes");
            }
        }
        let _ = run_tool(cli(&["SHUTDOWN", "NOSAVE"]), "redis-cli", None).await;
        let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
        Ok(())
    }
    .await;
    let _ = child.kill().await;
    let _ = std::fs::remove_file(&socket);
    result
}

// ----- helpers ------------------------------------------------------------------------------

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

fn nix_user_name() -> String {
    let uid = nix::unistd::geteuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(user)) => user.name,
        _ => uid.to_string(),
    }
}
