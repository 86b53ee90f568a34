//! PostgreSQL: `initdb` once, `postgres` in the foreground, `pg_isready` to wait, `psql` over
//! the private unix socket to create the login and database.
//!
//! Authentication: `trust` on the unix socket (which lives in the accessory's `run/` folder,
//! mode 0700, so only the server's user and root can reach it) and `scram-sha-256` on
//! 127.0.0.1, so services connect over TCP with the generated password.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use berth_spec::Engine;
use tokio::process::Command;

use crate::binaries::{find_folder_with_all, missing, BinSearch};
use crate::layout::{check_socket_path, is_empty_dir, Layout};
use crate::process::run_tool;
use crate::server::{command, log_output, Probe, Target};
use crate::user::ServerUser;

/// The programs Berth needs, all from one installation.
const PROGRAMS: [&str; 4] = ["postgres", "initdb", "psql", "pg_isready"];

/// The superuser created by `initdb`, reached over the socket without a password.
const SUPERUSER: &str = "postgres";

/// How long `initdb` may take.
const INIT_TIMEOUT: Duration = Duration::from_secs(300);

/// How long one provisioning or probing tool run may take.
const TOOL_TIMEOUT: Duration = Duration::from_secs(30);

/// `pg_hba.conf`, replacing the one `initdb` writes.
const HBA_CONF: &str = "\
# Written by Berth. Local connections come through the unix socket in the accessory's
# private run/ folder; TCP is limited to 127.0.0.1 and needs the generated password.
# TYPE  DATABASE  USER  ADDRESS        METHOD
local   all       all                  trust
host    all       all   127.0.0.1/32   scram-sha-256
";

/// One PostgreSQL installation (its `bin` folder).
#[derive(Debug, Clone)]
pub(crate) struct Postgres {
    bin: PathBuf,
}

impl Postgres {
    /// Finds an installation: preferably the major version that initialised the data folder.
    pub fn locate(search: &BinSearch, layout: &Layout) -> Result<Self> {
        let version = fs::read_to_string(layout.data.join("PG_VERSION")).ok();
        let folders = search.folders(Engine::Postgres, version.as_deref().map(str::trim));
        let bin = find_folder_with_all(&folders, &PROGRAMS).ok_or_else(|| {
            missing(
                Engine::Postgres,
                "`postgres`, `initdb`, `psql` and `pg_isready` (in one folder)",
                &folders,
            )
        })?;
        Ok(Self { bin })
    }

    pub fn program(&self) -> PathBuf {
        self.bin.join("postgres")
    }

    pub fn is_initialized(layout: &Layout) -> bool {
        layout.data.join("PG_VERSION").is_file()
    }

    /// Runs `initdb` on the (empty) data folder and installs Berth's `pg_hba.conf`.
    pub async fn init(&self, layout: &Layout, user: &ServerUser) -> Result<()> {
        anyhow::ensure!(
            is_empty_dir(&layout.data)?,
            "{} is not empty but holds no PostgreSQL cluster (no PG_VERSION); \
             Berth never deletes data: move its content away to start afresh",
            layout.data.display()
        );
        let mut initdb = command(&self.bin.join("initdb"), layout, user);
        initdb
            .arg("-D")
            .arg(&layout.data)
            .args(["-U", SUPERUSER, "--auth=trust", "-E", "UTF8"])
            .arg("--locale=C.UTF-8");
        let output = run_tool(initdb, None, INIT_TIMEOUT, "")
            .await
            .context("initdb failed")?;
        log_output(layout, "initdb", &output)?;
        let hba = layout.data.join("pg_hba.conf");
        // The file exists (owned by the server's user); rewriting it keeps its owner.
        fs::write(&hba, HBA_CONF).with_context(|| format!("cannot write {}", hba.display()))
    }

    pub fn prepare(target: &Target<'_>) -> Result<()> {
        check_socket_path(&socket_path(target))
    }

    pub fn start_command(&self, target: &Target<'_>) -> Command {
        let mut postgres = command(&self.program(), target.layout, target.user);
        postgres
            .arg("-D")
            .arg(&target.layout.data)
            .arg("-p")
            .arg(target.port.to_string())
            .arg("-k")
            .arg(&target.layout.run)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "unix_socket_permissions=0700",
                "-c",
                "password_encryption=scram-sha-256",
            ]);
        postgres
    }

    pub async fn probe(&self, target: &Target<'_>) -> Probe {
        let mut ready = self.client("pg_isready", target);
        ready.args(["-q", "-t", "2"]);
        match run_tool(ready, None, TOOL_TIMEOUT, "").await {
            Ok(_) => Probe::Ready,
            Err(e) => Probe::NotYet(e.to_string()),
        }
    }

    /// Backends of every database, and the size of the accessory's database.
    pub async fn stats(&self, target: &Target<'_>) -> Result<crate::server::AccessoryStats> {
        let mut psql = self.client("psql", target);
        psql.args(["-X", "-q", "-t", "-A", "-c"]).arg(format!(
            "SELECT (SELECT sum(numbackends) FROM pg_stat_database), pg_database_size({})",
            literal(target.database)
        ));
        let output = run_tool(psql, None, STATS_TIMEOUT, "").await?;
        Ok(parse_stats(&String::from_utf8_lossy(&output.stdout)))
    }

    /// Creates the login (or resets its password) and the database it owns.
    pub async fn provision(&self, target: &Target<'_>) -> Result<()> {
        let mut psql = self.client("psql", target);
        psql.args(["-X", "-q", "-v", "ON_ERROR_STOP=1"]);
        let script = provisioning_script(target.login, target.database, target.password);
        run_tool(psql, Some(&script), TOOL_TIMEOUT, target.password)
            .await
            .context("cannot create the PostgreSQL database and user")?;
        Ok(())
    }

    /// A client tool connected as the superuser through the private socket.
    fn client(&self, program: &str, target: &Target<'_>) -> Command {
        // The client runs as Berth's user: root may enter the run folder, and a non-root
        // Berth runs the server as itself.
        let mut client = command(
            &self.bin.join(program),
            target.layout,
            &ServerUser::current(),
        );
        client
            .arg("-h")
            .arg(&target.layout.run)
            .arg("-p")
            .arg(target.port.to_string())
            .args(["-U", SUPERUSER, "-d", "postgres"])
            .env("PGAPPNAME", "berth")
            .env("PGCONNECT_TIMEOUT", "5");
        client
    }
}

fn socket_path(target: &Target<'_>) -> PathBuf {
    target.layout.run.join(format!(".s.PGSQL.{}", target.port))
}

/// The psql script creating `login` (if missing), setting its password and creating
/// `database` owned by it (if missing). `CREATE DATABASE` cannot run in a transaction or a
/// function, so it is generated and run on its own with `\gexec`.
fn provisioning_script(login: &str, database: &str, password: &str) -> String {
    let (login_lit, login_id) = (literal(login), ident(login));
    let (db_lit, db_id) = (literal(database), ident(database));
    let password = literal(password);
    format!(
        "SELECT 'CREATE ROLE ' || {login_id_lit} || ' LOGIN' \
         WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {login_lit})\\gexec\n\
         ALTER ROLE {login_id} WITH LOGIN PASSWORD {password};\n\
         SELECT 'CREATE DATABASE ' || {db_id_lit} || ' OWNER ' || {login_id_lit} \
         WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = {db_lit})\\gexec\n",
        login_id_lit = literal(&login_id),
        db_id_lit = literal(&db_id),
    )
}

/// How long a stats query may take.
const STATS_TIMEOUT: Duration = Duration::from_secs(5);

/// `psql -tA` output `CONNECTIONS|BYTES`.
fn parse_stats(text: &str) -> crate::server::AccessoryStats {
    let mut fields = text.trim().split('|');
    let mut next = || fields.next().and_then(|f| f.trim().parse::<u64>().ok());
    crate::server::AccessoryStats {
        connections: next(),
        database_bytes: next(),
    }
}

/// A SQL string literal (standard_conforming_strings is on by default).
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A quoted SQL identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_from_psql() {
        let stats = parse_stats("3|7746083\n");
        assert_eq!(
            (stats.connections, stats.database_bytes),
            (Some(3), Some(7_746_083))
        );
        assert_eq!(
            parse_stats("garbage"),
            crate::server::AccessoryStats::default()
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(ident("my-db"), "\"my-db\"");
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn provisioning_is_idempotent_sql() {
        let script = provisioning_script("app-user", "shop", "Secret123");
        assert_eq!(
            script,
            "SELECT 'CREATE ROLE ' || '\"app-user\"' || ' LOGIN' WHERE NOT EXISTS \
             (SELECT FROM pg_roles WHERE rolname = 'app-user')\\gexec\n\
             ALTER ROLE \"app-user\" WITH LOGIN PASSWORD 'Secret123';\n\
             SELECT 'CREATE DATABASE ' || '\"shop\"' || ' OWNER ' || '\"app-user\"' WHERE NOT \
             EXISTS (SELECT FROM pg_database WHERE datname = 'shop')\\gexec\n"
        );
    }

    #[test]
    fn hba_trusts_only_the_socket() {
        let rules: Vec<&str> = HBA_CONF
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .collect();
        assert_eq!(rules.len(), 2);
        assert!(rules[0].starts_with("local") && rules[0].ends_with("trust"));
        assert!(rules[1].contains("127.0.0.1/32") && rules[1].ends_with("scram-sha-256"));
    }
}
