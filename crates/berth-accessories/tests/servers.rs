//! End-to-end lifecycle of real PostgreSQL, MariaDB and Redis servers: first start from a
//! Berth process that then exits, adoption, a write and read through the URL, secrets kept out
//! of command lines and logs, stop, restart with the data, port and password kept.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use berth_accessories::{Accessory, AccessoryConfig};
use berth_spec::Engine;
use common::*;

const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// Environment variables that turn `helper_start_then_exit` into a short-lived Berth process.
const HELPER_ENGINE: &str = "BERTH_ACCESSORIES_TEST_ENGINE";
const HELPER_DIR: &str = "BERTH_ACCESSORIES_TEST_DIR";

fn engine_name(engine: Engine) -> &'static str {
    match engine {
        Engine::Postgres => "postgres",
        Engine::Mysql => "mysql",
        Engine::Redis => "redis",
    }
}

/// Not a test of its own: run by `start_in_a_process_that_exits` (in a child process of the
/// test binary) to play a Berth process that starts an accessory and then dies.
#[tokio::test]
#[ignore = "helper run by the lifecycle tests in a separate process"]
async fn helper_start_then_exit() {
    let (Ok(engine), Ok(dir)) = (std::env::var(HELPER_ENGINE), std::env::var(HELPER_DIR)) else {
        return;
    };
    let engine = match engine.as_str() {
        "postgres" => Engine::Postgres,
        "mysql" => Engine::Mysql,
        _ => Engine::Redis,
    };
    let running = Accessory::new(config(engine, &PathBuf::from(dir)))
        .ensure_running()
        .await
        .unwrap();
    println!("helper started pid {}", running.pid);
}

/// Starts the accessory from a separate process which exits right away.
fn start_in_a_process_that_exits(config: &AccessoryConfig) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "helper_start_then_exit",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(HELPER_ENGINE, engine_name(config.engine))
        .env(HELPER_DIR, &config.dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "helper failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn lifecycle(engine: Engine) {
    if !installed(engine) {
        return;
    }
    let root = tempdir("berth-acc-");
    let dir = root.path().join("acc");
    let config = config(engine, &dir);
    let _cleanup = KillOnDrop(config.clone());
    let watcher = CmdlineWatcher::start();

    // A Berth process starts the server and dies; the server lives on, on its own.
    start_in_a_process_that_exits(&config);
    let berth = Accessory::new(config.clone());
    let first = berth
        .adopt()
        .expect("the server outlives the Berth process");
    assert!(berth.is_alive());
    assert_ne!(parent_of(first.pid), std::process::id());

    // A new Berth process adopts it rather than starting a second one.
    let again = berth.ensure_running().await.unwrap();
    assert_eq!(again, first);
    assert_eq!(servers_in(&dir.join("data")), 1);

    // The URL works: write and read through the engine's own client over TCP.
    let url = berth.env_value(&first);
    let parts = parse_url(&url);
    assert_eq!((parts.host.as_str(), parts.port), ("127.0.0.1", first.port));
    client(engine, &url, &write_statement(engine, "first")).unwrap();

    // The server reports its connections and its database's size (the metrics collector's).
    let stats = berth.stats().await.unwrap();
    assert!(
        stats.connections.is_some_and(|n| n >= 1),
        "{engine:?}: {stats:?}"
    );
    assert!(
        stats.database_bytes.is_some_and(|n| n > 0),
        "{engine:?}: {stats:?}"
    );
    assert_eq!(
        client(engine, &url, &read_statement(engine)).unwrap(),
        "first"
    );

    // The password is the one stored, private, and required.
    let password = fs::read_to_string(dir.join("password")).unwrap();
    let password = password.trim();
    assert_eq!(password.len(), 32);
    assert_eq!(parts.password, password);
    assert_eq!(owner_and_mode(&dir.join("password")).1, 0o600);
    let wrong = url.replace(password, "wrongwrongwrongwrongwrongwrong12");
    assert!(client(engine, &wrong, &read_statement(engine)).is_err());
    assert_eq!(
        fs::read_to_string(dir.join("port")).unwrap().trim(),
        first.port.to_string()
    );

    // Stop: gone, data kept.
    berth.stop(STOP_TIMEOUT).await.unwrap();
    assert!(!berth.is_alive());
    assert!(berth.adopt().is_none());
    assert_eq!(servers_in(&dir.join("data")), 0);
    berth.stop(STOP_TIMEOUT).await.unwrap(); // stopping a stopped accessory is fine

    // Start again in this process: same port, same password, data still there.
    let second = berth.ensure_running().await.unwrap();
    assert_ne!(second.pid, first.pid);
    assert_eq!(second.port, first.port);
    assert_eq!(second.url, first.url);
    assert_eq!(
        client(engine, &url, &read_statement(engine)).unwrap(),
        "first"
    );

    // Berth forgets everything (a new Accessory value): the same server is found.
    drop(berth);
    let berth = Accessory::new(config.clone());
    assert_eq!(berth.adopt(), Some(second.clone()));
    assert_eq!(berth.ensure_running().await.unwrap(), second);
    assert_eq!(servers_in(&dir.join("data")), 1);

    // No process ever carried the password on its command line; the log does not hold it.
    let seen = watcher.finish();
    assert!(
        seen.len() > 10,
        "the watcher saw only {} command lines",
        seen.len()
    );
    let leaks: Vec<&String> = seen.iter().filter(|c| c.contains(password)).collect();
    assert!(leaks.is_empty(), "password in command lines: {leaks:?}");
    let log = fs::read_to_string(berth.log_file()).unwrap();
    assert!(!log.contains(password));
    assert!(!format!("{second:?}").contains(password));

    berth.stop(STOP_TIMEOUT).await.unwrap();
    assert!(!berth.is_alive());
}

#[tokio::test]
async fn postgres_lifecycle() {
    lifecycle(Engine::Postgres).await;
}

#[tokio::test]
async fn mysql_lifecycle() {
    lifecycle(Engine::Mysql).await;
}

#[tokio::test]
async fn redis_lifecycle() {
    lifecycle(Engine::Redis).await;
}

/// As root, PostgreSQL runs as `postgres`, which gets its folders; the socket folder is
/// private; the data is only reachable with the password over TCP.
#[tokio::test]
async fn postgres_files_belong_to_the_server_user() {
    if !installed(Engine::Postgres) {
        return;
    }
    let root = tempdir("berth-acc-");
    let dir = root.path().join("db");
    let config = config(Engine::Postgres, &dir);
    let _cleanup = KillOnDrop(config.clone());
    let db = Accessory::new(config);
    db.ensure_running().await.unwrap();
    let server_uid = if nix::unistd::geteuid().is_root() {
        nix::unistd::User::from_name("postgres")
            .unwrap()
            .unwrap()
            .uid
            .as_raw()
    } else {
        nix::unistd::geteuid().as_raw()
    };
    assert_eq!(owner_and_mode(&dir.join("run")), (server_uid, 0o700));
    assert_eq!(owner_and_mode(&dir.join("data")), (server_uid, 0o700));
    let hba = fs::read_to_string(dir.join("data/pg_hba.conf")).unwrap();
    assert!(hba.contains("scram-sha-256"));
    // Provisioning again (e.g. after a Berth restart) is harmless.
    db.ensure_running().await.unwrap();
    db.stop(STOP_TIMEOUT).await.unwrap();
}

/// A configured port wins; changing it restarts the server on the new port.
#[tokio::test]
async fn redis_moves_to_a_newly_configured_port() {
    if !installed(Engine::Redis) {
        return;
    }
    let root = tempdir("berth-acc-");
    let mut config = config(Engine::Redis, &root.path().join("cache"));
    let _cleanup = KillOnDrop(config.clone());
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    config.port = Some(free());
    let first = Accessory::new(config.clone())
        .ensure_running()
        .await
        .unwrap();
    assert_eq!(Some(first.port), config.port);
    client(Engine::Redis, &first.url, "SET k v").unwrap();

    config.port = Some(free());
    let cache = Accessory::new(config.clone());
    let second = cache.ensure_running().await.unwrap();
    assert_eq!(Some(second.port), config.port);
    assert_ne!(second.pid, first.pid);
    assert_eq!(client(Engine::Redis, &second.url, "GET k").unwrap(), "v");
    cache.stop(STOP_TIMEOUT).await.unwrap();
}

#[tokio::test]
async fn missing_programs_name_the_package_to_install() {
    let root = tempdir("berth-acc-");
    let empty = root.path().join("empty-bin");
    fs::create_dir(&empty).unwrap();
    for (engine, package) in [
        (Engine::Postgres, "postgresql"),
        (Engine::Mysql, "mariadb-server"),
        (Engine::Redis, "redis-server"),
    ] {
        let acc = Accessory::new(config(engine, &root.path().join(engine_name(engine))))
            .with_bin_dirs(vec![empty.clone()]);
        let err = format!("{:#}", acc.ensure_running().await.unwrap_err());
        eprintln!("{err}");
        assert!(err.contains("is not installed"), "{err}");
        assert!(err.contains(&format!("apt-get install {package}")), "{err}");
        assert!(err.contains("empty-bin"), "{err}");
    }
}

/// As root, a folder the `postgres` user cannot enter is named in the error.
#[tokio::test]
async fn postgres_needs_traversable_parent_folders() {
    if !nix::unistd::geteuid().is_root() || !installed(Engine::Postgres) {
        eprintln!("skipped: only root runs PostgreSQL as another user");
        return;
    }
    let root = tempdir("berth-acc-");
    fs::set_permissions(root.path(), fs::Permissions::from_mode(0o700)).unwrap();
    let acc = Accessory::new(config(Engine::Postgres, &root.path().join("db")));
    let err = format!("{:#}", acc.ensure_running().await.unwrap_err());
    eprintln!("{err}");
    assert!(
        err.contains(&format!("cannot enter {} ", root.path().display())),
        "{err}"
    );
    assert!(err.contains("`postgres`"), "{err}");
}

/// A server that cannot start is reported with the end of its log.
#[tokio::test]
async fn a_failed_start_quotes_the_server_log() {
    if !installed(Engine::Redis) {
        return;
    }
    let root = tempdir("berth-acc-");
    // Something already listens on the configured port.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = config(Engine::Redis, &root.path().join("cache"));
    config.port = Some(busy.local_addr().unwrap().port());
    let _cleanup = KillOnDrop(config.clone());
    let acc = Accessory::new(config).with_start_timeout(Duration::from_secs(10));
    let err = format!("{:#}", acc.ensure_running().await.unwrap_err());
    eprintln!("{err}");
    assert!(err.contains("last lines of"), "{err}");
    assert!(
        err.to_lowercase().contains("address already in use"),
        "{err}"
    );
    let password = fs::read_to_string(root.path().join("cache/password")).unwrap();
    assert!(!err.contains(password.trim()), "{err}");
    assert!(!acc.is_alive());
}

/// A server that ignores the polite request is killed after the timeout.
#[tokio::test]
async fn a_stuck_server_is_killed_after_the_timeout() {
    if !installed(Engine::Redis) {
        return;
    }
    let root = tempdir("berth-acc-");
    let config = config(Engine::Redis, &root.path().join("cache"));
    let _cleanup = KillOnDrop(config.clone());
    let cache = Accessory::new(config);
    let running = cache.ensure_running().await.unwrap();
    // Frozen: SIGTERM stays pending, SIGKILL still works.
    let pid = nix::unistd::Pid::from_raw(running.pid as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let started = std::time::Instant::now();
    cache.stop(Duration::from_millis(500)).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert!(!cache.is_alive());
    assert_eq!(servers_in(&root.path().join("cache/data")), 0);
}

/// A data folder holding something that is not a cluster is reported, never overwritten.
#[tokio::test]
async fn foreign_data_is_never_wiped() {
    for engine in [Engine::Postgres, Engine::Mysql] {
        if !installed(engine) {
            continue;
        }
        let root = tempdir("berth-acc-");
        let dir = root.path().join("db");
        fs::create_dir_all(dir.join("data")).unwrap();
        fs::write(dir.join("data/precious.txt"), "keep me").unwrap();
        let acc = Accessory::new(config(engine, &dir));
        let err = format!("{:#}", acc.ensure_running().await.unwrap_err());
        eprintln!("{err}");
        assert!(err.contains("is not empty"), "{err}");
        assert!(err.contains("never deletes data"), "{err}");
        assert_eq!(
            fs::read_to_string(dir.join("data/precious.txt")).unwrap(),
            "keep me"
        );
        assert!(!acc.is_alive());
    }
}

/// A server that never accepts connections is given up on after the start timeout, reported
/// with its log, and not left running.
#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let root = tempdir("berth-acc-");
    let bin = root.path().join("bin");
    fs::create_dir(&bin).unwrap();
    let fake = bin.join("redis-server");
    fs::write(
        &fake,
        "#!/bin/sh\necho 'fake redis: not listening'\nexec sleep 60\n",
    )
    .unwrap();
    fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
    let dir = root.path().join("cache");
    let acc = Accessory::new(config(Engine::Redis, &dir))
        .with_bin_dirs(vec![bin])
        .with_start_timeout(Duration::from_secs(2));
    let err = format!("{:#}", acc.ensure_running().await.unwrap_err());
    eprintln!("{err}");
    assert!(err.contains("did not accept connections"), "{err}");
    assert!(err.contains("fake redis: not listening"), "{err}");
    assert!(!dir.join("run/server.pid").exists());
    // The fake ran from the accessory folder; nothing is left there.
    assert_eq!(servers_in(&dir), 0);
}
