//! MariaDB (engine `mysql`): `mariadb-install-db` once, `mariadbd` in the foreground, the
//! `mariadb` client over the private unix socket to wait for it and to create the database
//! and login.
//!
//! The install creates `root@localhost` and `<server user>@localhost` with `unix_socket`
//! authentication, so Berth (running as that user) administers the server through the socket
//! in the accessory's `run/` folder without any password. Services log in over 127.0.0.1 with
//! the generated password; `--skip-name-resolve` keeps 127.0.0.1 from matching `localhost`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use berth_spec::Engine;
use nix::unistd::geteuid;
use tokio::process::Command;

use crate::binaries::{find, missing, BinSearch};
use crate::layout::{check_socket_path, is_empty_dir, Layout};
use crate::process::run_tool;
use crate::server::{command, log_output, Probe, Target};
use crate::user::ServerUser;

/// How long `mariadb-install-db` may take.
const INIT_TIMEOUT: Duration = Duration::from_secs(300);

/// How long one provisioning or probing tool run may take.
const TOOL_TIMEOUT: Duration = Duration::from_secs(30);

/// The host part of the services' account: TCP from loopback only.
const SERVICE_HOST: &str = "127.0.0.1";

/// One MariaDB installation.
#[derive(Debug, Clone)]
pub(crate) struct Mysql {
    server: PathBuf,
    install_db: PathBuf,
    client: PathBuf,
}

impl Mysql {
    pub fn locate(search: &BinSearch) -> Result<Self> {
        let folders = search.folders(Engine::Mysql, None);
        let lookup = |names: &[&str]| {
            find(&folders, names).ok_or_else(|| {
                let names: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
                missing(Engine::Mysql, &names.join(" or "), &folders)
            })
        };
        Ok(Self {
            server: lookup(&["mariadbd", "mysqld"])?,
            install_db: lookup(&["mariadb-install-db", "mysql_install_db"])?,
            client: lookup(&["mariadb", "mysql"])?,
        })
    }

    pub fn program(&self) -> PathBuf {
        self.server.clone()
    }

    pub fn is_initialized(layout: &Layout) -> bool {
        layout.data.join("mysql").is_dir()
    }

    /// Runs `mariadb-install-db` on the (empty) data folder.
    pub async fn init(&self, layout: &Layout, user: &ServerUser) -> Result<()> {
        anyhow::ensure!(
            is_empty_dir(&layout.data)?,
            "{} is not empty but holds no MariaDB system database (no mysql/ folder); \
             Berth never deletes data: move its content away to start afresh",
            layout.data.display()
        );
        let mut install = command(&self.install_db, layout, user);
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", layout.data.display()))
            .arg(format!("--user={}", user.name))
            .args(["--skip-test-db", "--auth-root-authentication-method=socket"]);
        let output = run_tool(install, None, INIT_TIMEOUT, "")
            .await
            .context("mariadb-install-db failed")?;
        log_output(layout, "mariadb-install-db", &output)
    }

    pub fn prepare(target: &Target<'_>) -> Result<()> {
        check_socket_path(&socket_path(target.layout))
    }

    pub fn start_command(&self, target: &Target<'_>) -> Command {
        let layout = target.layout;
        let mut server = command(&self.server, layout, target.user);
        server
            .arg("--no-defaults")
            .arg(format!("--datadir={}", layout.data.display()))
            .arg(format!("--socket={}", socket_path(layout).display()))
            .arg(format!("--port={}", target.port))
            .arg(format!(
                "--pid-file={}",
                crate::server::own_pid_file(Engine::Mysql, layout).display()
            ))
            .args(["--bind-address=127.0.0.1", "--skip-name-resolve"]);
        if geteuid().is_root() {
            // mariadbd refuses to run as root unless told to explicitly.
            server.arg(format!("--user={}", target.user.name));
        }
        server
    }

    pub async fn probe(&self, target: &Target<'_>) -> Probe {
        let mut client = self.admin_client(target);
        client.args(["--connect-timeout=2", "-e", "SELECT 1"]);
        match run_tool(client, None, TOOL_TIMEOUT, "").await {
            Ok(_) => Probe::Ready,
            Err(e) => Probe::NotYet(e.to_string()),
        }
    }

    /// `Threads_connected`, and the data and index bytes of the accessory's database.
    pub async fn stats(&self, target: &Target<'_>) -> Result<crate::server::AccessoryStats> {
        let mut client = self.admin_client(target);
        client.arg("--connect-timeout=2").arg("-e").arg(format!(
            "SHOW GLOBAL STATUS LIKE 'Threads_connected'; \
             SELECT COALESCE(SUM(data_length + index_length), 0) FROM information_schema.tables \
             WHERE table_schema = '{}'",
            target.database.replace('\\', "\\\\").replace('\'', "''")
        ));
        let output = run_tool(client, None, Duration::from_secs(5), "").await?;
        Ok(parse_stats(&String::from_utf8_lossy(&output.stdout)))
    }

    /// Creates the database and the services' account (or resets its password).
    pub async fn provision(&self, target: &Target<'_>) -> Result<()> {
        let script = provisioning_script(target.login, target.database, target.password);
        run_tool(
            self.admin_client(target),
            Some(&script),
            TOOL_TIMEOUT,
            target.password,
        )
        .await
        .context("cannot create the MariaDB database and user")?;
        Ok(())
    }

    /// The client, connected through the socket as the OS user Berth runs as (which the
    /// install gave `unix_socket` access).
    fn admin_client(&self, target: &Target<'_>) -> Command {
        let me = ServerUser::current();
        let mut client = command(&self.client, target.layout, &me);
        client
            .arg("--no-defaults")
            .arg("--protocol=socket")
            .arg(format!("--socket={}", socket_path(target.layout).display()))
            .arg(format!("--user={}", me.name))
            .args(["--batch", "--skip-column-names"]);
        client
    }
}

/// `Threads_connected\tN` then the size on its own line.
fn parse_stats(text: &str) -> crate::server::AccessoryStats {
    let mut stats = crate::server::AccessoryStats::default();
    for line in text.lines() {
        let mut fields = line.split('\t');
        match (fields.next(), fields.next()) {
            (Some("Threads_connected"), Some(n)) => stats.connections = n.trim().parse().ok(),
            (Some(n), None) => stats.database_bytes = n.trim().parse().ok(),
            _ => {}
        }
    }
    stats
}

fn socket_path(layout: &Layout) -> PathBuf {
    layout.run.join("mysqld.sock")
}

/// SQL creating `database` and `login@127.0.0.1` with all rights on it, idempotently.
fn provisioning_script(login: &str, database: &str, password: &str) -> String {
    let account = format!("{}@{}", literal(login), literal(SERVICE_HOST));
    let database = ident(database);
    let password = literal(password);
    format!(
        "CREATE DATABASE IF NOT EXISTS {database};\n\
         CREATE USER IF NOT EXISTS {account};\n\
         ALTER USER {account} IDENTIFIED BY {password};\n\
         GRANT ALL PRIVILEGES ON {database}.* TO {account};\n"
    )
}

/// A string literal (backslashes are escapes in MariaDB's default SQL mode).
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

/// A quoted identifier.
fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_from_the_client() {
        let stats = parse_stats("Threads_connected\t2\n49152\n");
        assert_eq!(
            (stats.connections, stats.database_bytes),
            (Some(2), Some(49_152))
        );
        assert_eq!(parse_stats(""), crate::server::AccessoryStats::default());
    }

    #[test]
    fn quoting() {
        assert_eq!(literal(r"a'b\c"), r"'a''b\\c'");
        assert_eq!(ident("my-db"), "`my-db`");
        assert_eq!(ident("a`b"), "`a``b`");
    }

    #[test]
    fn provisioning_is_idempotent_sql() {
        assert_eq!(
            provisioning_script("app", "shop-1", "Secret123"),
            "CREATE DATABASE IF NOT EXISTS `shop-1`;\n\
             CREATE USER IF NOT EXISTS 'app'@'127.0.0.1';\n\
             ALTER USER 'app'@'127.0.0.1' IDENTIFIED BY 'Secret123';\n\
             GRANT ALL PRIVILEGES ON `shop-1`.* TO 'app'@'127.0.0.1';\n"
        );
    }

    #[test]
    fn the_server_listens_on_loopback_with_its_files_in_the_folder() {
        let layout = Layout::new(std::path::Path::new("/srv/db"));
        let my = Mysql {
            server: "/usr/sbin/mariadbd".into(),
            install_db: "/usr/bin/mariadb-install-db".into(),
            client: "/usr/bin/mariadb".into(),
        };
        let user = ServerUser::current();
        let target = Target {
            layout: &layout,
            user: &user,
            port: 3307,
            password: "pw",
            database: "db",
            login: "app",
        };
        let cmd = my.start_command(&target);
        let args: Vec<String> = cmd
            .as_std()
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(args[0], "--no-defaults");
        for expected in [
            "--datadir=/srv/db/data",
            "--socket=/srv/db/run/mysqld.sock",
            "--port=3307",
            "--bind-address=127.0.0.1",
        ] {
            assert!(args.iter().any(|a| a == expected), "{expected} in {args:?}");
        }
        assert!(!args.iter().any(|a| a.contains("pw")), "{args:?}");
    }
}
