//! Backups end to end, with a real PostgreSQL and real files through the hello app: the
//! disaster-recovery drill (data folder and volume destroyed, restored), a corrupted archive
//! refused by verify and restore with the live data untouched, a backup killed half-way that
//! never looks complete, and an S3-compatible destination (a local moto server).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

fn drill_stack(name: &str, extra: &str) -> Stack {
    let body = format!(
        "{}\n[accessory.db]\nengine = \"postgres\"\n\n[volume.uploads]\n{extra}",
        web(2, "use = [\"db\"]\nvolumes = [\"uploads\"]")
    );
    Stack::new(name, &body)
}

fn visits(port: u16, method: &str) -> u64 {
    let (status, body) = http(port, method, "/visits", b"").unwrap();
    assert!(
        status == 200 || status == 201,
        "{method} /visits: {status} {body}"
    );
    let json: Value = serde_json::from_str(&body).unwrap();
    json["visits"].as_u64().unwrap_or_else(|| panic!("{json}"))
}

fn put_file(port: u16, name: &str, content: &[u8]) {
    let (status, body) = http(port, "PUT", &format!("/files/{name}"), content).unwrap();
    assert!(
        status == 200 || status == 201,
        "PUT /files/{name}: {status} {body}"
    );
}

fn get_file(port: u16, name: &str) -> (u16, String) {
    http(port, "GET", &format!("/files/{name}"), b"").unwrap()
}

/// A deterministic, poorly compressible text of `len` bytes.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b'a' + (x % 26) as u8
        })
        .collect()
}

/// `berth backup now --json`: the new backup's id.
fn backup_now(stack: &Stack) -> String {
    let out = stack.berth(&["backup", "now", "--json"]);
    let json: Value = serde_json::from_str(out.ok()).unwrap();
    json["id"].as_str().unwrap().to_string()
}

fn backup_list(stack: &Stack) -> Value {
    serde_json::from_str(stack.berth(&["backup", "list", "--json"]).ok()).unwrap()
}

fn backups_dir(stack: &Stack) -> PathBuf {
    stack.path().join(".berth/backups/default")
}

#[test]
fn disaster_recovery_drill() {
    let _one_postgres = postgres_lock();
    let mut stack = drill_stack("drill", "");
    let first = stack.up_and_wait();
    let replicas = stack.wait_healthy("web", 2);
    for i in 1..=5 {
        assert_eq!(visits(replicas[i as usize % 2].port(), "POST"), i);
    }
    let big = noise(3 << 20, 7);
    put_file(replicas[0].port(), "report.txt", b"quarterly numbers\n");
    put_file(replicas[1].port(), "big.bin", &big);

    let id = backup_now(&stack);
    let list = backup_list(&stack);
    let backup = &list["backups"][0];
    assert_eq!(backup["id"], id.as_str());
    let parts: Vec<&str> = backup["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["file"].as_str().unwrap())
        .collect();
    assert_eq!(parts, ["accessory-db.pgdump", "volume-uploads.tar.zst"]);
    for part in backup["parts"].as_array().unwrap() {
        assert_eq!(part["sha256"].as_str().unwrap().len(), 64, "{part}");
        assert!(part["bytes"].as_u64().unwrap() > 0, "{part}");
    }
    assert_eq!(
        backup["releases"]["web"].as_str().unwrap(),
        replicas[0].release
    );
    let verify = stack.berth(&["backup", "verify", &id]);
    assert!(
        verify
            .ok()
            .contains("test restore into a throwaway database ok"),
        "{}",
        verify.stdout
    );

    // The disaster: the stack stops, the database's folder and the volume are gone.
    stack.berth(&["down"]).ok();
    stack.wait_daemon_exit(first, Duration::from_secs(40));
    std::fs::remove_dir_all(stack.state().join("accessories/db")).unwrap();
    std::fs::remove_dir_all(stack.state().join("volumes/uploads")).unwrap();

    // A fresh start has an empty database and volume...
    stack.up_and_wait();
    let fresh = stack.wait_healthy("web", 2);
    assert_eq!(get_file(fresh[0].port(), "report.txt").0, 404);
    // ...until the backup is restored.
    let restore = stack.berth(&["restore", &id]);
    assert!(
        restore.fails().contains("pass --yes to confirm"),
        "{}",
        restore.stderr
    );
    let out = stack.berth(&["restore", &id, "--yes"]);
    assert!(out.ok().contains("restored: db, uploads"), "{}", out.stdout);
    let after = stack.wait_healthy("web", 2);
    for r in &after {
        assert_eq!(visits(r.port(), "GET"), 5, "{}", r.replica);
    }
    assert_eq!(
        get_file(after[0].port(), "report.txt"),
        (200, "quarterly numbers\n".to_string())
    );
    let (status, body) = get_file(after[1].port(), "big.bin");
    assert_eq!(status, 200);
    assert!(
        body.as_bytes() == big.as_slice(),
        "big.bin differs after the restore"
    );
    // And the app goes on from there.
    assert_eq!(visits(after[0].port(), "POST"), 6);
}

#[test]
fn a_corrupted_archive_is_refused_and_live_data_is_untouched() {
    let _one_postgres = postgres_lock();
    let mut stack = drill_stack("corrupt", "");
    stack.up_and_wait();
    let replicas = stack.wait_healthy("web", 2);
    assert_eq!(visits(replicas[0].port(), "POST"), 1);
    put_file(replicas[0].port(), "a.txt", b"version 1");
    let id = backup_now(&stack);

    // Live data moves on after the backup.
    assert_eq!(visits(replicas[0].port(), "POST"), 2);
    put_file(replicas[0].port(), "a.txt", b"version 2");

    for part in ["volume-uploads.tar.zst", "accessory-db.pgdump"] {
        let file = backups_dir(&stack).join(&id).join(part);
        let good = std::fs::read(&file).unwrap();
        let mut bad = good.clone();
        let middle = bad.len() / 2;
        bad[middle] ^= 0x01;
        std::fs::write(&file, &bad).unwrap();

        let verify = stack.berth(&["backup", "verify", &id]);
        let err = verify.fails();
        assert!(
            err.contains("checksum mismatch") && err.contains(part),
            "verify of a flipped byte in {part}: {err}"
        );
        let restore = stack.berth(&["backup", "restore", &id, "--yes"]);
        let err = restore.fails();
        assert!(
            err.contains("checksum mismatch") && err.contains("nothing was restored"),
            "restore with a flipped byte in {part}: {err}"
        );
        // Nothing was stopped or changed.
        let now = stack.wait_healthy("web", 2);
        assert_eq!(
            now.iter().map(|r| r.pid).collect::<Vec<_>>(),
            replicas.iter().map(|r| r.pid).collect::<Vec<_>>(),
            "the replicas were restarted by a refused restore"
        );
        assert_eq!(visits(now[1].port(), "GET"), 2);
        assert_eq!(
            get_file(now[1].port(), "a.txt"),
            (200, "version 2".to_string())
        );
        std::fs::write(&file, &good).unwrap();
    }
    // With the bytes back, the same backup restores.
    stack.berth(&["backup", "verify", &id]).ok();
    stack.berth(&["backup", "restore", &id, "--yes"]).ok();
    let after = stack.wait_healthy("web", 2);
    assert_eq!(visits(after[0].port(), "GET"), 1);
    assert_eq!(
        get_file(after[0].port(), "a.txt"),
        (200, "version 1".to_string())
    );
}

#[test]
fn a_backup_killed_half_way_never_looks_complete() {
    let _one_postgres = postgres_lock();
    let mut stack = drill_stack("killed", "");
    let daemon = stack.up_and_wait();
    stack.wait_healthy("web", 2);
    // A volume large enough that archiving it takes a while.
    let volume = stack.state().join("volumes/uploads");
    for i in 0..6 {
        std::fs::write(volume.join(format!("blob{i}.bin")), noise(40 << 20, i)).unwrap();
    }
    let mut backup = berth_command();
    backup
        .arg("-f")
        .arg(&stack.spec)
        .args(["backup", "now"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let client = backup.spawn().unwrap();
    stack.extra.push(client);
    let partial = wait_for(
        "the backup to be writing the volume archive",
        Duration::from_secs(60),
        || {
            let entries = std::fs::read_dir(backups_dir(&stack)).ok()?;
            entries.flatten().find_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let archive = e.path().join("volume-uploads.tar.zst");
                (name.ends_with(".partial") && archive.exists()).then(|| e.path())
            })
        },
    );
    stack.signal_daemon(daemon, libc::SIGKILL);
    stack.wait_daemon_exit(daemon, Duration::from_secs(10));

    assert!(partial.exists(), "the partial backup vanished");
    assert!(
        !partial.join("manifest.json").exists(),
        "an interrupted backup has a manifest"
    );
    let complete: Vec<PathBuf> = std::fs::read_dir(backups_dir(&stack))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("manifest.json").exists())
        .collect();
    assert!(
        complete.is_empty(),
        "complete-looking backups: {complete:?}"
    );

    // The next daemon lists it as incomplete, never as a backup; the next backup clears it.
    stack.up_and_wait();
    let list = backup_list(&stack);
    assert_eq!(list["backups"].as_array().unwrap().len(), 0, "{list:#}");
    assert_eq!(list["incomplete"].as_array().unwrap().len(), 1, "{list:#}");
    let text = stack.berth(&["backup", "list"]);
    assert!(text.ok().contains("incomplete"), "{}", text.stdout);
    let id = backup_now(&stack);
    let list = backup_list(&stack);
    assert_eq!(list["backups"][0]["id"], id.as_str());
    assert_eq!(list["incomplete"].as_array().unwrap().len(), 0, "{list:#}");
    assert!(!partial.exists());
}

#[test]
fn retention_rotates_old_backups_and_keeps_the_newest() {
    let mut stack = Stack::new(
        "rotate",
        &format!(
            "{}\n[volume.uploads]\n\n[backup]\nkeep_daily = 1\n",
            web(1, "volumes = [\"uploads\"]")
        ),
    );
    stack.up_and_wait();
    stack.wait_healthy("web", 1);
    let first = backup_now(&stack);
    std::thread::sleep(Duration::from_millis(1100));
    let second = backup_now(&stack);
    // keep_daily = 1: the newest of today stays, the older one of the same day goes.
    let list = backup_list(&stack);
    let ids: Vec<&str> = list["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [second.as_str()], "first was {first}");
    assert_eq!(list["schedule"], "0 3 * * *");
    assert!(!backups_dir(&stack).join(&first).exists());
}

/// A moto S3 server on a free loopback port, stopped on drop.
struct Moto {
    child: std::process::Child,
    port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_moto(log: &Path) -> Result<Moto, String> {
    let port = free_fixed_port();
    let child = Command::new("python3")
        .args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(log).unwrap())
        .stderr(std::fs::File::create(log.with_extension("err")).unwrap())
        .spawn()
        .map_err(|e| format!("cannot run python3 -m moto.server: {e}"))?;
    let mut moto = Moto { child, port };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = moto.child.try_wait() {
            let err = std::fs::read_to_string(log.with_extension("err")).unwrap_or_default();
            return Err(format!("moto.server exited ({status}): {err}"));
        }
        if http(port, "GET", "/", b"").is_ok() {
            return Ok(moto);
        }
        if std::time::Instant::now() > deadline {
            return Err("moto.server did not answer within 30s".into());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn backups_to_an_s3_compatible_bucket() {
    let _one_postgres = postgres_lock();
    let scratch = tempfile::tempdir().unwrap();
    let moto = match start_moto(&scratch.path().join("moto.log")) {
        Ok(moto) => moto,
        Err(reason) => {
            eprintln!(
                "SKIPPED backups_to_an_s3_compatible_bucket: {reason} (pip install 'moto[server]')"
            );
            return;
        }
    };
    let endpoint = format!("http://127.0.0.1:{}", moto.port);
    // The bucket, made with moto's own client library.
    let made = Command::new("python3")
        .args([
            "-c",
            &format!(
                "import boto3; boto3.client('s3', endpoint_url='{endpoint}', region_name='us-east-1', aws_access_key_id='AKIDTEST', aws_secret_access_key='s3cr3tKeyForMoto').create_bucket(Bucket='berth-backups')"
            ),
        ])
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );

    let mut stack = drill_stack(
        "s3",
        &format!(
            "\n[backup]\ndestination = \"s3://berth-backups/e2e/prod\"\nendpoint = \"{endpoint}\"\nregion = \"us-east-1\"\n"
        ),
    );
    // Credentials from the secrets store.
    for (name, value) in [
        ("AWS_ACCESS_KEY_ID", "AKIDTEST"),
        ("AWS_SECRET_ACCESS_KEY", "s3cr3tKeyForMoto"),
    ] {
        let mut set = berth_command();
        set.arg("-f")
            .arg(&stack.spec)
            .args(["secrets", "set", name])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = set.spawn().unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), value.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    stack.up_and_wait();
    let replicas = stack.wait_healthy("web", 2);
    assert_eq!(visits(replicas[0].port(), "POST"), 1);
    put_file(replicas[0].port(), "in-s3.txt", b"kept in a bucket");

    let id = backup_now(&stack);
    let list = backup_list(&stack);
    assert_eq!(list["destination"], "s3://berth-backups/e2e/prod");
    assert_eq!(list["backups"][0]["id"], id.as_str());
    assert!(
        !backups_dir(&stack).exists(),
        "an S3 backup was kept locally"
    );
    stack.berth(&["backup", "verify", &id]).ok();

    // Lose the volume, restore only it from the bucket.
    assert_eq!(visits(replicas[0].port(), "POST"), 2);
    std::fs::remove_dir_all(stack.state().join("volumes/uploads")).unwrap();
    let out = stack.berth(&["backup", "restore", &id, "--only", "volume", "--yes"]);
    assert!(out.ok().contains("restored: uploads"), "{}", out.stdout);
    let after = stack.wait_healthy("web", 2);
    assert_eq!(
        get_file(after[0].port(), "in-s3.txt"),
        (200, "kept in a bucket".to_string())
    );
    // The database was left as it was.
    assert_eq!(visits(after[0].port(), "GET"), 2);
    drop(stack);
    drop(moto);
}

/// Runs `program args` (a database client) and returns its stdout; `env` for passwords.
fn client(program: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut command = Command::new(program);
    command.args(args);
    for (k, v) in env {
        command.env(k, v);
    }
    let out = run(command, CMD_TIMEOUT);
    out.ok().to_string()
}

fn have(program: &str) -> bool {
    ["/usr/bin", "/usr/sbin", "/bin", "/sbin"]
        .iter()
        .any(|d| Path::new(d).join(program).exists())
}

#[test]
fn mariadb_and_redis_back_up_verify_and_restore() {
    if !(have("mariadbd") && have("mariadb-dump") && have("redis-server") && have("redis-cli")) {
        eprintln!("SKIPPED mariadb_and_redis_back_up_verify_and_restore: mariadb-server, mariadb-client or redis-server is not installed");
        return;
    }
    let mut stack = Stack::new(
        "engines",
        r#"
[service.worker]
run = "exec sleep 100000"
source = "app"
use = ["shop", "cache"]

[accessory.shop]
engine = "mysql"

[accessory.cache]
engine = "redis"
"#,
    );
    stack.up_and_wait();
    let run_dir = |name: &str| stack.state().join("accessories").join(name).join("run");
    let socket = format!("--socket={}", run_dir("shop").join("mysqld.sock").display());
    let sql = |statement: &str| {
        client(
            "mariadb",
            &[
                "--no-defaults",
                &socket,
                "--user=root",
                "--batch",
                "--skip-column-names",
                "shop",
                "-e",
                statement,
            ],
            &[],
        )
    };
    sql("CREATE TABLE orders (id INT PRIMARY KEY, item VARCHAR(50)); INSERT INTO orders VALUES (1, 'boat'), (2, 'oar')");
    let password = stack
        .berth(&["secrets", "get", "accessory.cache.password", "--reveal"])
        .ok()
        .trim()
        .to_string();
    let redis_socket = run_dir("cache").join("redis.sock");
    let redis = |args: &[&str]| {
        let mut all = vec!["-s", redis_socket.to_str().unwrap(), "--no-auth-warning"];
        all.extend_from_slice(args);
        client("redis-cli", &all, &[("REDISCLI_AUTH", password.as_str())])
    };
    redis(&["SET", "greeting", "ahoy"]);

    let id = backup_now(&stack);
    let list = backup_list(&stack);
    let kinds: Vec<&str> = list["backups"][0]["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["redis", "mysql"], "{list:#}");
    let verify = stack.berth(&["backup", "verify", &id]);
    assert!(
        verify.ok().contains("shop: checksum ok, test restore"),
        "{}",
        verify.stdout
    );
    assert!(
        verify
            .stdout
            .contains("cache: checksum ok, RDB file checked"),
        "{}",
        verify.stdout
    );

    // Changes after the backup are undone by the restore.
    sql("DELETE FROM orders WHERE id = 1; INSERT INTO orders VALUES (3, 'sail')");
    redis(&["SET", "greeting", "changed"]);
    redis(&["SET", "extra", "1"]);
    let out = stack.berth(&["restore", &id, "--only", "db", "--yes"]);
    assert!(out.ok().contains("restored"), "{}", out.stdout);
    assert_eq!(
        sql("SELECT id, item FROM orders ORDER BY id"),
        "1\tboat\n2\toar\n"
    );
    assert_eq!(redis(&["GET", "greeting"]), "ahoy\n");
    assert_eq!(redis(&["EXISTS", "extra"]), "0\n");
    // The worker that uses them runs again.
    stack.wait_healthy("worker", 1);
}
