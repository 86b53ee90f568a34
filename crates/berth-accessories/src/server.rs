//! What differs between engines, behind one type: where the programs are, how a data folder is
//! initialised, how the server is started, probed, provisioned and stopped.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Output;

use anyhow::{Context, Result};
use berth_spec::Engine;
use nix::sys::signal::Signal;
use tokio::process::Command;

use crate::binaries::BinSearch;
use crate::layout::Layout;
use crate::mysql::Mysql;
use crate::postgres::Postgres;
use crate::process::{open_log, TOOL_PATH};
use crate::redis::Redis;
use crate::user::ServerUser;

/// The answer of a readiness probe.
#[derive(Debug)]
pub(crate) enum Probe {
    /// The server accepts connections.
    Ready,
    /// Not yet; the reason is shown if the wait times out.
    NotYet(String),
    /// The server is up but something is wrong that waiting will not fix.
    Failed(anyhow::Error),
}

/// What a running server says about itself (for the metrics collector); None when the engine
/// did not say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AccessoryStats {
    /// Client connections open now.
    pub connections: Option<u64>,
    /// The size of the accessory's database (PostgreSQL `pg_database_size`, MariaDB's tables
    /// and indexes, Redis's `used_memory`: its dataset lives in memory).
    pub database_bytes: Option<u64>,
}

/// Everything an engine needs to know about the server being started or provisioned.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'a> {
    pub layout: &'a Layout,
    pub user: &'a ServerUser,
    pub port: u16,
    pub password: &'a str,
    /// The database to create (postgres, mysql).
    pub database: &'a str,
    /// The login to create (postgres, mysql).
    pub login: &'a str,
}

/// The located programs of one engine.
#[derive(Debug, Clone)]
pub(crate) enum Server {
    Postgres(Postgres),
    Mysql(Mysql),
    Redis(Redis),
}

impl Server {
    /// Finds `engine`'s programs; the error names the Debian package to install.
    pub fn locate(engine: Engine, search: &BinSearch, layout: &Layout) -> Result<Self> {
        Ok(match engine {
            Engine::Postgres => Self::Postgres(Postgres::locate(search, layout)?),
            Engine::Mysql => Self::Mysql(Mysql::locate(search)?),
            Engine::Redis => Self::Redis(Redis::locate(search)?),
        })
    }

    /// The server program (canonical path).
    pub fn program(&self) -> PathBuf {
        let program = match self {
            Self::Postgres(pg) => pg.program(),
            Self::Mysql(my) => my.program(),
            Self::Redis(redis) => redis.program(),
        };
        std::fs::canonicalize(&program).unwrap_or(program)
    }

    /// Whether the data folder has been initialised.
    pub fn is_initialized(&self, layout: &Layout) -> bool {
        match self {
            Self::Postgres(_) => Postgres::is_initialized(layout),
            Self::Mysql(_) => Mysql::is_initialized(layout),
            Self::Redis(_) => true,
        }
    }

    /// Initialises an empty data folder.
    pub async fn init(&self, layout: &Layout, user: &ServerUser) -> Result<()> {
        match self {
            Self::Postgres(pg) => pg.init(layout, user).await,
            Self::Mysql(my) => my.init(layout, user).await,
            Self::Redis(_) => Ok(()),
        }
    }

    /// Writes what the server reads at start (redis: its config file) and checks paths.
    pub fn prepare(&self, target: &Target<'_>) -> Result<()> {
        match self {
            Self::Postgres(_) => Postgres::prepare(target),
            Self::Mysql(_) => Mysql::prepare(target),
            Self::Redis(_) => Redis::prepare(target),
        }
    }

    /// The command that runs the server in the foreground.
    pub fn start_command(&self, target: &Target<'_>) -> Command {
        match self {
            Self::Postgres(pg) => pg.start_command(target),
            Self::Mysql(my) => my.start_command(target),
            Self::Redis(redis) => redis.start_command(target),
        }
    }

    /// Whether the server accepts connections yet.
    pub async fn probe(&self, target: &Target<'_>) -> Probe {
        match self {
            Self::Postgres(pg) => pg.probe(target).await,
            Self::Mysql(my) => my.probe(target).await,
            Self::Redis(_) => Redis::probe(target).await,
        }
    }

    /// Connections and database size, asked of the running server.
    pub async fn stats(&self, target: &Target<'_>) -> Result<AccessoryStats> {
        match self {
            Self::Postgres(pg) => pg.stats(target).await,
            Self::Mysql(my) => my.stats(target).await,
            Self::Redis(_) => Redis::stats(target).await,
        }
    }

    /// Creates the database and login with the password, idempotently.
    pub async fn provision(&self, target: &Target<'_>) -> Result<()> {
        match self {
            Self::Postgres(pg) => pg.provision(target).await,
            Self::Mysql(my) => my.provision(target).await,
            Self::Redis(_) => Ok(()),
        }
    }
}

/// The file names a running server's executable may have (Debian's `redis-server` is a
/// symlink to `redis-check-rdb`).
pub(crate) fn exe_names(engine: Engine) -> &'static [&'static str] {
    match engine {
        Engine::Postgres => &["postgres", "postmaster"],
        Engine::Mysql => &["mariadbd", "mysqld"],
        Engine::Redis => &["redis-server", "redis-check-rdb"],
    }
}

/// The signal asking the server for a quick but clean shutdown (for PostgreSQL SIGINT, the
/// "fast" mode of `pg_ctl stop`; SIGTERM would wait for every client to disconnect).
pub(crate) fn stop_signal(engine: Engine) -> Signal {
    match engine {
        Engine::Postgres => Signal::SIGINT,
        Engine::Mysql | Engine::Redis => Signal::SIGTERM,
    }
}

/// The pid file the server itself writes.
pub(crate) fn own_pid_file(engine: Engine, layout: &Layout) -> PathBuf {
    match engine {
        Engine::Postgres => layout.data.join("postmaster.pid"),
        Engine::Mysql => layout.run.join("mysqld.pid"),
        Engine::Redis => layout.run.join("redis.pid"),
    }
}

/// A command for `program` with a cleared environment (Berth's variables stay out of the
/// servers), run from the accessory folder as `user`.
pub(crate) fn command(program: &Path, layout: &Layout, user: &ServerUser) -> Command {
    let mut command = Command::new(program);
    command
        .env_clear()
        .env("PATH", TOOL_PATH)
        .current_dir(&layout.dir);
    user.apply(&mut command);
    command
}

/// Appends a finished tool's output to the accessory's log, for the record.
pub(crate) fn log_output(layout: &Layout, what: &str, output: &Output) -> Result<()> {
    let mut log = open_log(&layout.log)?;
    writeln!(log, "--- berth: {what}")
        .and_then(|()| log.write_all(&output.stdout))
        .and_then(|()| log.write_all(&output.stderr))
        .with_context(|| format!("cannot write {}", layout.log.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_engine_has_its_own_files_and_signals() {
        let layout = Layout::new(Path::new("/srv/db"));
        assert_eq!(
            own_pid_file(Engine::Postgres, &layout),
            Path::new("/srv/db/data/postmaster.pid")
        );
        assert_eq!(
            own_pid_file(Engine::Redis, &layout),
            Path::new("/srv/db/run/redis.pid")
        );
        assert_eq!(stop_signal(Engine::Postgres), Signal::SIGINT);
        assert_eq!(stop_signal(Engine::Mysql), Signal::SIGTERM);
        assert!(exe_names(Engine::Mysql).contains(&"mariadbd"));
    }

    #[test]
    fn commands_run_with_a_clean_environment_from_the_folder() {
        let layout = Layout::new(Path::new("/srv/db"));
        let cmd = command(Path::new("/bin/true"), &layout, &ServerUser::current());
        let std = cmd.as_std();
        assert_eq!(std.get_current_dir(), Some(Path::new("/srv/db")));
        let envs: Vec<_> = std.get_envs().collect();
        assert_eq!(envs.len(), 1, "{envs:?}");
    }
}
