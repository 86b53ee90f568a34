//! The pre-deploy backup (`deploy.backup = true`): a plain dump of each database accessory the
//! service uses, into `.berth/ENV/deploys/ID-backup/`, recorded with the deploy. Full backups
//! with manifests, retention and restore are `berth backup`'s.

use std::process::Stdio;

use anyhow::{bail, Context};
use berth_spec::{Engine, ServiceSpec};

use crate::stack::Stack;

/// Dumps the accessories `service` uses; returns a line for the deploy record.
pub async fn dump(stack: &Stack, service: &ServiceSpec, deploy: u64) -> anyhow::Result<String> {
    let dir = stack
        .paths
        .env_dir
        .join("deploys")
        .join(format!("{deploy}-backup"));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut done = Vec::new();
    for name in &service.uses {
        let Some(spec) = stack.spec.accessories.get(name) else {
            continue;
        };
        let Some(url) = stack.accessory_url(name) else {
            bail!("accessory `{name}` is not running");
        };
        let file = dir.join(format!("{name}.dump"));
        let tmp = file.with_extension("partial");
        let mut command = match spec.engine {
            Engine::Postgres => pg_dump_command(&url, &tmp),
            Engine::Mysql => {
                let Some((user, password, host, port, database)) = parse_url(&url) else {
                    bail!("cannot read the URL of `{name}`");
                };
                let mut c = tokio::process::Command::new("mariadb-dump");
                c.arg("--single-transaction")
                    .arg(format!("--user={user}"))
                    .arg(format!("--host={host}"))
                    .arg(format!("--port={port}"))
                    .arg(format!("--result-file={}", tmp.display()))
                    .arg(database)
                    .env("MYSQL_PWD", password);
                c
            }
            Engine::Redis => continue,
        };
        let output = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .await
            .with_context(|| format!("running the dump of `{name}`"))?;
        if !output.status.success() {
            let err = String::from_utf8_lossy(&output.stderr).replace(&url, "[redacted]");
            bail!("dumping `{name}` failed: {}", err.trim());
        }
        std::fs::rename(&tmp, &file)?;
        let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        done.push(format!("{name} ({} KiB)", size.div_ceil(1024)));
    }
    if done.is_empty() {
        return Ok("no database accessory to dump".into());
    }
    Ok(format!("{} in {}", done.join(", "), dir.display()))
}

/// `pg_dump` with the connection given in the environment (PGHOST, PGPORT, PGUSER, PGPASSWORD,
/// PGDATABASE), so no password appears in `ps`.
fn pg_dump_command(url: &str, out: &std::path::Path) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(berth_accessories_tool("pg_dump"));
    c.arg("--format=custom").arg("--file").arg(out);
    if let Some((user, password, host, port, database)) = parse_url(url) {
        c.env("PGUSER", user)
            .env("PGPASSWORD", password)
            .env("PGHOST", host)
            .env("PGPORT", port)
            .env("PGDATABASE", database);
    }
    c
}

/// The Debian PostgreSQL 15 tools when present (they match the server), else from PATH.
fn berth_accessories_tool(name: &str) -> std::path::PathBuf {
    let debian = std::path::Path::new("/usr/lib/postgresql/15/bin").join(name);
    if debian.exists() {
        debian
    } else {
        name.into()
    }
}

/// `scheme://user:password@host:port/database` → its parts.
fn parse_url(url: &str) -> Option<(String, String, String, String, String)> {
    let rest = url.split_once("://")?.1;
    let (userinfo, hostpart) = rest.rsplit_once('@')?;
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let (hostport, database) = hostpart.split_once('/')?;
    let (host, port) = hostport.rsplit_once(':')?;
    let database = database.split('?').next().unwrap_or(database);
    Some((
        user.to_string(),
        password.to_string(),
        host.to_string(),
        port.to_string(),
        database.to_string(),
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_a_database_url() {
        assert_eq!(
            super::parse_url("postgres://app:pw@127.0.0.1:5433/app?sslmode=disable"),
            Some((
                "app".into(),
                "pw".into(),
                "127.0.0.1".into(),
                "5433".into(),
                "app".into()
            ))
        );
        assert_eq!(super::parse_url("redis://127.0.0.1:6379/0"), None);
    }
}
