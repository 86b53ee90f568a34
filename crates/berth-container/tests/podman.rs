//! The container driver against a real Podman (Debian's `podman`, `runc`, `busybox-static`),
//! through its Docker API service, which the test starts on a socket of its own and stops.
//! Images are built from a local context (a static busybox): no registry is needed.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_container::{ContainerDriver, Engine};
use berth_model::{BindMount, ContainerLaunch, Driver, LaunchSpec, ReleaseId, ReplicaKey};

/// Podman's Docker API service on a temporary socket, stopped on drop.
struct Podman {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the service, or (outside CI) returns `None` with a message when Podman or a static
/// busybox is missing. Under `CI=true` a missing tool fails the test.
fn podman() -> Option<Podman> {
    let missing = if Command::new("podman").arg("--version").output().is_err() {
        Some("podman (apt-get install podman runc)")
    } else if !Path::new("/bin/busybox").is_file() {
        Some("a static busybox (apt-get install busybox-static)")
    } else {
        None
    };
    if let Some(what) = missing {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("CI=true and {what} is missing");
        }
        eprintln!("skipping: {what} is not installed");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("podman.sock");
    let child = Command::new("podman")
        .args(["system", "service", "--time=0"])
        .arg(format!("unix://{}", socket.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting podman system service");
    let podman = Podman {
        child,
        socket,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !podman.socket.exists() {
        assert!(Instant::now() < deadline, "podman's socket did not appear");
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(podman)
}

/// A build context: static busybox, a Dockerfile whose command serves `/www` on `$PORT` and
/// prints a line with `$GREETING`.
fn context(dir: &Path, body: &str) {
    std::fs::copy("/bin/busybox", dir.join("busybox")).unwrap();
    std::fs::write(
        dir.join("Dockerfile"),
        r#"FROM scratch AS base
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]

FROM base AS web
COPY srv /srv
CMD ["/bin/sh", "-c", "mkdir -p /www; echo \"greeting $GREETING\"; cp /srv/index.html /www/ 2>/dev/null || echo none > /www/index.html; exec httpd -f -p $PORT -h /www"]

FROM base AS broken
RUN ["/bin/sh", "-c", "echo about to fail; exit 3"]
"#,
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("srv")).unwrap();
    std::fs::write(dir.join("srv/index.html"), body).unwrap();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let status = answer.split_whitespace().nth(1)?;
    (status == "200").then_some(answer)
}

fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_replica_builds_runs_serves_logs_and_is_removed() {
    let Some(podman) = podman() else { return };
    let engine = Engine::connect(&podman.socket).await.unwrap();

    let work = tempfile::tempdir().unwrap();
    let ctx = work.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    context(&ctx, "hello from the image");
    let tag = format!("berth/test-podman:{}", std::process::id());

    // A failing stage: the error says so and carries the output.
    let err = engine
        .build("web", &ctx, "Dockerfile", Some("broken"), &tag, |_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("building the image of `web` failed"), "{err}");
    assert!(err.contains("about to fail"), "{err}");
    // A Dockerfile that is not there.
    let err = engine
        .build("web", &ctx, "nope/Dockerfile", None, &tag, |_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("there is no nope/Dockerfile"), "{err}");
    // An image that exists nowhere (no registry is reachable): one error naming the fix.
    let err = engine
        .pull("localhost:1/berth-no-such-image:1", |_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("could not be pulled"), "{err}");

    let mut lines = Vec::new();
    let id = engine
        .build("web", &ctx, "Dockerfile", Some("web"), &tag, |l| {
            lines.push(l.to_string())
        })
        .await
        .unwrap();
    assert!(id.starts_with("sha256:") || id.len() == 64, "{id}");
    assert!(!lines.is_empty());
    assert_eq!(
        engine.image_id(&tag).await.unwrap().as_deref(),
        Some(id.as_str())
    );

    let volume = work.path().join("volume");
    std::fs::create_dir(&volume).unwrap();
    let secret = work.path().join("KEY.v1");
    std::fs::write(&secret, "s3cret-value-123").unwrap();
    let replicas = work.path().join("replicas/web.1");
    let port = free_port();
    let launch = LaunchSpec {
        key: ReplicaKey::new("web".to_string(), 1),
        release: ReleaseId("r1-00000000".into()),
        command: String::new(),
        cwd: ctx.clone(),
        env: BTreeMap::from([
            ("PORT".to_string(), port.to_string()),
            ("GREETING".to_string(), "s3cret-value-123 hi".to_string()),
            ("PATH".to_string(), "/nonexistent".to_string()),
        ]),
        port: Some(port),
        instance_dir: replicas.join("run-1"),
        log_file: replicas.join("current.log"),
        log_max_bytes: 1 << 20,
        log_keep: 2,
        memory: Some(64 * 1024 * 1024),
        cpu: Some(0.5),
        cgroup: String::new(),
        redact: vec!["s3cret-value-123".into()],
        container: Some(ContainerLaunch {
            image: id.clone(),
            network: "bridge".into(),
            mounts: vec![
                BindMount {
                    source: volume.clone(),
                    target: volume.clone(),
                    read_only: false,
                },
                BindMount {
                    source: secret.clone(),
                    target: secret.clone(),
                    read_only: true,
                },
            ],
            labels: BTreeMap::from([
                (
                    "berth.stack".to_string(),
                    format!("t{}", std::process::id()),
                ),
                ("berth.env".to_string(), "default".to_string()),
            ]),
            stop_timeout: Duration::from_secs(5),
        }),
    };
    let driver = ContainerDriver::new(engine.clone(), 1 << 20, 2);
    let record = driver.start(&launch).await.unwrap();
    let container = record.container.clone().unwrap();
    assert!(record.app_pid > 0);
    assert!(driver.is_running(&record));
    assert_eq!(
        record.limits.as_deref(),
        Some("memory 64 MiB, cpu 0.5 (container)")
    );

    // Served on the published loopback port, from the image.
    let answer = wait_for("the container to serve", Duration::from_secs(15), || {
        get(port, "/index.html")
    });
    assert!(answer.contains("hello from the image"), "{answer}");
    // Published on 127.0.0.1 only: podman's port listing names the loopback address.
    let ports = Command::new("podman")
        .args(["port", &container])
        .output()
        .unwrap();
    let ports = String::from_utf8_lossy(&ports.stdout);
    assert!(ports.contains(&format!("127.0.0.1:{port}")), "{ports}");
    assert!(!ports.contains("0.0.0.0"), "{ports}");

    // The output is in the replica's log file, with the secret masked.
    let log = wait_for("the log line", Duration::from_secs(10), || {
        let log = std::fs::read_to_string(&launch.log_file).ok()?;
        log.contains("greeting").then_some(log)
    });
    assert!(log.contains("stdout greeting [redacted] hi"), "{log}");
    assert!(!log.contains("s3cret-value-123"), "{log}");

    // The secret file is mounted read-only, the volume read-write.
    let inspect = Command::new("podman")
        .args([
            "inspect",
            "--format",
            "{{range .Mounts}}{{.Destination}}={{.RW}} {{end}}",
            &container,
        ])
        .output()
        .unwrap();
    let mounts = String::from_utf8_lossy(&inspect.stdout);
    assert!(
        mounts.contains(&format!("{}=false", secret.display())),
        "{mounts}"
    );
    assert!(
        mounts.contains(&format!("{}=true", volume.display())),
        "{mounts}"
    );

    // Labels let a restarted daemon find it.
    let labelled = engine
        .containers_labelled(&[("berth.stack", &format!("t{}", std::process::id()))])
        .await
        .unwrap();
    assert_eq!(labelled.len(), 1);
    assert_eq!(labelled[0].0, container);

    // A second driver (a restarted daemon) adopts it from the record and stops it.
    let adopter = ContainerDriver::new(engine.clone(), 1 << 20, 2);
    assert!(adopter.is_running(&record));
    let started = Instant::now();
    let status = adopter.stop(&record, Duration::from_secs(5)).await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "SIGTERM reached httpd through the init: {:?}",
        started.elapsed()
    );
    assert!(!adopter.is_running(&record), "{status}");
    // Removed once ended; the volume folder stays.
    let left = engine
        .containers_labelled(&[("berth.stack", &format!("t{}", std::process::id()))])
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
    assert!(volume.is_dir());
    // The first driver's watcher sees the end too.
    let status = tokio::time::timeout(Duration::from_secs(10), driver.wait(&record))
        .await
        .unwrap();
    assert!(!status.success() || status.code == Some(0), "{status}");

    let _ = Command::new("podman").args(["rmi", "-f", &tag]).output();
}

#[tokio::test]
async fn a_stopped_engine_is_named_with_the_fix() {
    let Some(podman) = podman() else { return };
    let socket = podman.socket.clone();
    Engine::connect(&socket).await.unwrap();
    drop(podman);
    let err = Engine::connect(&socket).await.unwrap_err().to_string();
    assert!(err.contains("is not running"), "{err}");
    assert!(err.contains("podman system service"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_no_record_names_are_removed_by_label() {
    let Some(podman) = podman() else { return };
    let engine = Engine::connect(&podman.socket).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let ctx = work.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    context(&ctx, "stray");
    let tag = format!("berth/test-strays:{}", std::process::id());
    let id = engine
        .build("web", &ctx, "Dockerfile", Some("web"), &tag, |_| {})
        .await
        .unwrap();
    let stack = format!("s{}", std::process::id());
    let replicas = work.path().join("replicas/web.1");
    let launch = LaunchSpec {
        key: ReplicaKey::new("web".to_string(), 1),
        release: ReleaseId("r1-00000000".into()),
        command: String::new(),
        cwd: ctx.clone(),
        env: BTreeMap::from([("PORT".to_string(), free_port().to_string())]),
        port: None,
        instance_dir: replicas.join("run-1"),
        log_file: replicas.join("current.log"),
        log_max_bytes: 1 << 20,
        log_keep: 2,
        memory: None,
        cpu: None,
        cgroup: String::new(),
        redact: vec![],
        container: Some(ContainerLaunch {
            image: id,
            network: "bridge".into(),
            mounts: vec![],
            labels: BTreeMap::from([
                ("berth.stack".to_string(), stack.clone()),
                ("berth.env".to_string(), "default".to_string()),
            ]),
            stop_timeout: Duration::from_secs(2),
        }),
    };
    let driver = ContainerDriver::new(engine.clone(), 1 << 20, 2);
    let record = driver.start(&launch).await.unwrap();
    let container = record.container.clone().unwrap();
    // Recorded: kept. Another environment of the same stack: not looked at.
    assert_eq!(
        driver
            .remove_strays(&stack, "default", std::slice::from_ref(&container))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        driver.remove_strays(&stack, "staging", &[]).await.unwrap(),
        0
    );
    assert!(driver.is_running(&record));
    // No record names it: removed, and its watcher sees the end.
    assert_eq!(
        driver.remove_strays(&stack, "default", &[]).await.unwrap(),
        1
    );
    let status = tokio::time::timeout(Duration::from_secs(15), driver.wait(&record))
        .await
        .expect("the removed container's end is seen");
    assert!(!status.success(), "{status}");
    assert!(!driver.is_running(&record));
    let _ = Command::new("podman").args(["rmi", &tag]).output();
}
