//! Redis: `redis-server` reading a config file Berth writes on every start (mode 0600, since it
//! carries `requirepass`), and a readiness probe that authenticates over TCP.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use berth_spec::Engine;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Command;
use tokio::time::timeout;

use crate::binaries::{find, missing, BinSearch};
use crate::layout::{check_socket_path, Layout};
use crate::server::{command, own_pid_file, Probe, Target};

/// How long one readiness probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// One Redis installation.
#[derive(Debug, Clone)]
pub(crate) struct Redis {
    server: PathBuf,
}

impl Redis {
    pub fn locate(search: &BinSearch) -> Result<Self> {
        let folders = search.folders(Engine::Redis, None);
        let server = find(&folders, &["redis-server"])
            .ok_or_else(|| missing(Engine::Redis, "`redis-server`", &folders))?;
        Ok(Self { server })
    }

    pub fn program(&self) -> PathBuf {
        self.server.clone()
    }

    /// Writes the config file for this start.
    pub fn prepare(target: &Target<'_>) -> Result<()> {
        check_socket_path(&socket_path(target.layout))?;
        let path = config_path(target.layout);
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        // `mode` only applies to new files: tighten one left with looser permissions.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot set the mode of {}", path.display()))?;
        file.write_all(config(target.layout, target.port, target.password).as_bytes())
            .and_then(|()| file.sync_all())
            .with_context(|| format!("cannot write {}", path.display()))
    }

    pub fn start_command(&self, target: &Target<'_>) -> Command {
        let mut server = command(&self.server, target.layout, target.user);
        server.arg(config_path(target.layout));
        server
    }

    /// Ready once it answers `PING` after accepting the password.
    pub async fn probe(target: &Target<'_>) -> Probe {
        match timeout(PROBE_TIMEOUT, ping(target.port, target.password)).await {
            Ok(probe) => probe,
            Err(_) => Probe::NotYet("no answer to PING".into()),
        }
    }
}

impl Redis {
    /// `connected_clients` and `used_memory` from `INFO`.
    pub async fn stats(target: &Target<'_>) -> Result<crate::server::AccessoryStats> {
        let text = timeout(PROBE_TIMEOUT, info(target.port, target.password))
            .await
            .map_err(|_| anyhow!("no answer to INFO"))??;
        Ok(parse_info(&text))
    }
}

/// The most of an `INFO` answer read.
const INFO_LIMIT: usize = 1024 * 1024;

/// `AUTH` then `INFO` over TCP: the info text.
async fn info(port: u16, password: &str) -> Result<String> {
    use tokio::io::AsyncReadExt;
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .with_context(|| format!("cannot connect to 127.0.0.1:{port}"))?;
    let mut stream = BufReader::new(stream);
    let request = [command_frame(&["AUTH", password]), command_frame(&["INFO"])].concat();
    stream.get_mut().write_all(&request).await?;
    let mut auth = String::new();
    stream.read_line(&mut auth).await?;
    if !auth.starts_with("+OK") {
        return Err(anyhow!("AUTH refused"));
    }
    let mut header = String::new();
    stream.read_line(&mut header).await?;
    let len: usize = header
        .trim_end()
        .strip_prefix('$')
        .and_then(|n| n.parse().ok())
        .filter(|n| *n <= INFO_LIMIT)
        .ok_or_else(|| anyhow!("unexpected answer to INFO"))?;
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// The numbers of an `INFO` text.
fn parse_info(text: &str) -> crate::server::AccessoryStats {
    let field = |name: &str| {
        text.lines().find_map(|l| {
            let (key, value) = l.split_once(':')?;
            (key == name)
                .then(|| value.trim().parse::<u64>().ok())
                .flatten()
        })
    };
    crate::server::AccessoryStats {
        connections: field("connected_clients"),
        database_bytes: field("used_memory"),
    }
}

/// `AUTH` then `PING` over TCP.
async fn ping(port: u16, password: &str) -> Probe {
    let stream = match TcpStream::connect(("127.0.0.1", port)).await {
        Ok(stream) => stream,
        Err(e) => return Probe::NotYet(format!("cannot connect to 127.0.0.1:{port}: {e}")),
    };
    let mut stream = BufReader::new(stream);
    let request = [command_frame(&["AUTH", password]), command_frame(&["PING"])].concat();
    if let Err(e) = stream.get_mut().write_all(&request).await {
        return Probe::NotYet(format!("cannot talk to 127.0.0.1:{port}: {e}"));
    }
    let mut replies = Vec::new();
    for _ in 0..2 {
        let mut line = String::new();
        match stream.read_line(&mut line).await {
            Ok(0) => return Probe::NotYet("connection closed".into()),
            Ok(_) => replies.push(line.trim_end().to_string()),
            Err(e) => return Probe::NotYet(format!("cannot read from 127.0.0.1:{port}: {e}")),
        }
    }
    judge(&replies[0], &replies[1])
}

/// What the replies to `AUTH` and `PING` say about the server.
fn judge(auth: &str, ping: &str) -> Probe {
    if auth.starts_with("-WRONGPASS") || auth.starts_with("-ERR") {
        return Probe::Failed(anyhow!(
            "Redis refused the password from the accessory folder ({auth})"
        ));
    }
    if auth == "+OK" && ping == "+PONG" {
        Probe::Ready
    } else {
        // e.g. "-LOADING Redis is loading the dataset in memory"
        Probe::NotYet(format!("Redis answered {auth:?} / {ping:?}"))
    }
}

/// A RESP array of bulk strings.
fn command_frame(parts: &[&str]) -> Vec<u8> {
    let mut frame = format!("*{}\r\n", parts.len());
    for part in parts {
        frame.push_str(&format!("${}\r\n{part}\r\n", part.len()));
    }
    frame.into_bytes()
}

fn config_path(layout: &Layout) -> PathBuf {
    layout.dir.join("redis.conf")
}

fn socket_path(layout: &Layout) -> PathBuf {
    layout.run.join("redis.sock")
}

/// The config file's content.
fn config(layout: &Layout, port: u16, password: &str) -> String {
    format!(
        "# Written by Berth on every start of the accessory: edits are overwritten.\n\
         bind 127.0.0.1\n\
         port {port}\n\
         protected-mode yes\n\
         daemonize no\n\
         dir {data}\n\
         pidfile {pidfile}\n\
         unixsocket {socket}\n\
         unixsocketperm 700\n\
         logfile \"\"\n\
         appendonly yes\n\
         appendfsync everysec\n\
         save 3600 1 300 100 60 10000\n\
         requirepass {password}\n",
        data = quote(&layout.data),
        pidfile = quote(&own_pid_file(Engine::Redis, layout)),
        socket = quote(&socket_path(layout)),
    )
}

/// A double-quoted config string (redis understands `\\` and `\"` inside).
fn quote(path: &Path) -> String {
    let text = path.to_string_lossy();
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_binds_loopback_and_keeps_files_in_the_folder() {
        let layout = Layout::new(Path::new("/srv/my \"cache\""));
        let text = config(&layout, 6380, "Secret123");
        for line in [
            "bind 127.0.0.1",
            "port 6380",
            "dir \"/srv/my \\\"cache\\\"/data\"",
            "pidfile \"/srv/my \\\"cache\\\"/run/redis.pid\"",
            "appendonly yes",
            "requirepass Secret123",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} in\n{text}");
        }
    }

    #[test]
    fn resp_frames() {
        assert_eq!(
            command_frame(&["AUTH", "pw"]),
            b"*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n".to_vec()
        );
    }

    #[test]
    fn info_numbers() {
        let stats = parse_info("# Clients\r\nconnected_clients:4\r\n# Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\n");
        assert_eq!(
            (stats.connections, stats.database_bytes),
            (Some(4), Some(1_048_576))
        );
        assert_eq!(
            parse_info("nonsense"),
            crate::server::AccessoryStats::default()
        );
    }

    #[test]
    fn probe_replies() {
        assert!(matches!(judge("+OK", "+PONG"), Probe::Ready));
        assert!(matches!(
            judge("+OK", "-LOADING Redis is loading the dataset in memory"),
            Probe::NotYet(_)
        ));
        assert!(matches!(
            judge("-WRONGPASS invalid username-password pair", "-NOAUTH"),
            Probe::Failed(_)
        ));
    }

    #[tokio::test]
    async fn nobody_listening_is_not_ready_yet() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        assert!(matches!(ping(port, "pw").await, Probe::NotYet(_)));
    }
}
