//! Container replicas end to end, against a real Podman (Debian's `podman` with `runc`, configured
//! as `.ci/run` does) through its Docker API service, which the test starts on a socket of its
//! own and stops. The image is built by `berth up` from a Dockerfile in the stack folder whose
//! base is a static busybox (`busybox-static`): no registry is needed. The stack serves through
//! the edge; rolling, blue/green and canary deploys of a changed image under a steady loopback
//! load fail no request; a daemon killed with SIGKILL leaves the containers serving and the next
//! `berth up` adopts them; `berth down` removes the containers and keeps the volume.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;
use crate::load::{now_ms, Load, LoadOptions};

/// Podman's Docker API service on a temporary socket; stopped on drop.
struct PodmanService {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for PodmanService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts Podman's API service, or (outside CI) returns `None` naming the Debian packages when
/// Podman or a static busybox is missing. Under `CI=true` a missing tool fails the test.
fn podman_service() -> Option<PodmanService> {
    podman_service_with(&[])
}

/// [`podman_service`] with more variables in the service's environment.
fn podman_service_with(env: &[(&str, &Path)]) -> Option<PodmanService> {
    let missing = if Command::new("podman").arg("--version").output().is_err() {
        Some("podman (apt-get install podman runc)")
    } else if !Path::new("/bin/busybox").is_file() {
        Some("a static busybox (apt-get install busybox-static)")
    } else {
        None
    };
    if let Some(what) = missing {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true and {what} is missing"
        );
        eprintln!("skipping: {what} is not installed");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("podman.sock");
    let child = Command::new("podman")
        .args(["system", "service", "--time=0"])
        .arg(format!("unix://{}", socket.display()))
        .envs(env.iter().map(|(k, v)| (*k, *v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting podman system service");
    let service = PodmanService {
        child,
        socket,
        _dir: dir,
    };
    wait_for("podman's API socket", Duration::from_secs(20), || {
        std::os::unix::net::UnixStream::connect(&service.socket)
            .ok()
            .map(|_| ())
    });
    Some(service)
}

/// Removes (through the podman CLI) every container labelled with the stack, whatever the test
/// left; runs after the stack's own cleanup.
struct Containers(String);

impl Containers {
    fn ids(&self) -> Vec<String> {
        let out = Command::new("podman")
            .args(["ps", "-aq", "--filter"])
            .arg(format!("label=berth.stack={}", self.0))
            .output()
            .expect("podman ps");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect()
    }

    fn running(&self) -> usize {
        let out = Command::new("podman")
            .args(["ps", "-q", "--filter"])
            .arg(format!("label=berth.stack={}", self.0))
            .output()
            .expect("podman ps");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .count()
    }
}

impl Drop for Containers {
    fn drop(&mut self) {
        let ids = self.ids();
        if !ids.is_empty() {
            let _ = Command::new("podman")
                .args(["rm", "-f", "-t", "0"])
                .args(&ids)
                .output();
        }
        // Untag the stack's release images (never `rmi -f` by id: two stacks with the same
        // content share an image, and forcing would remove the other's containers).
        let images = Command::new("podman")
            .args(["images", "--format", "{{.Repository}}:{{.Tag}}", "--filter"])
            .arg(format!("reference=berth/{}-web", self.0))
            .output();
        if let Ok(images) = images {
            let names: Vec<String> = String::from_utf8_lossy(&images.stdout)
                .split_whitespace()
                .map(str::to_string)
                .collect();
            if !names.is_empty() {
                let _ = Command::new("podman").arg("rmi").args(&names).output();
            }
        }
    }
}

const DOCKERFILE: &str = r#"FROM scratch AS base
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]

FROM base AS web
COPY www /www
CMD ["/bin/sh", "-c", "echo \"web $BERTH_REPLICA up on $PORT with token $API_TOKEN\"; exec httpd -f -p \"$PORT\" -h /www"]
"#;

/// `/cgi-bin/whoami`: the JSON the load client reads (release, version), plus the replica and
/// whether the volume is mounted.
const WHOAMI: &str = r#"#!/bin/sh
printf 'Content-Type: application/json\r\n\r\n'
key=$(head -c 11 "$TLS_KEY_FILE")
( echo x >> "$TLS_KEY_FILE" ) 2>/dev/null && key_mode=writable || key_mode=read-only
printf '{"release":"%s","version":"%s","replica":"%s","volume":"%s","key":"%s","key_mode":"%s"}\n' "$BERTH_RELEASE" "$(cat /www/version)" "$BERTH_REPLICA" "$(test -d "$UPLOADS_DIR" && echo mounted)" "$key" "$key_mode"
"#;

/// The stack; `extra` goes into `[service.web]`.
fn body(socket: &Path, extra: &str) -> String {
    format!(
        r#"
[containers]
socket = "{}"

[service.web]
dockerfile = "Dockerfile"
target = "web"
source = "app"
port = "auto"
replicas = 2
memory = "64M"
stop_timeout = "5s"
volumes = ["uploads"]
{extra}

[service.web.health]
path = "/health"
interval = "1s"
timeout = "1s"
healthy_threshold = 1
unhealthy_threshold = 2
grace_period = "2s"

[service.web.deploy]
strategy = "rolling"
max_surge = 1
[service.web.deploy.analysis]
window = "3s"
min_requests = 20
# The judge's latency rule has tests of its own; here two container tests and their CGI forks
# share 2 cores, so a new group's first seconds may be slower without being worse.
latency_margin = "1s"

[volume.uploads]

[[route]]
path = "/"
service = "web"
"#,
        socket.display()
    )
}

const TOKEN: &str = "tok-3f9a1c77e2b54d0c8a16";

fn write_version(stack: &Stack, version: &str) {
    fs::write(stack.path().join("app/www/version"), version).unwrap();
}

/// `GET /cgi-bin/whoami` through the edge, parsed.
fn whoami(port: u16) -> Option<Value> {
    match http(port, "GET", "/cgi-bin/whoami", b"") {
        Ok((200, body)) => serde_json::from_str(&body).ok(),
        _ => None,
    }
}

/// The image a release runs, from its release folder.
fn release_image(stack: &Stack, release: &str) -> String {
    let file = stack
        .path()
        .join(".berth/releases/web")
        .join(release)
        .join(".berth-image.json");
    let v: Value = serde_json::from_slice(&fs::read(&file).unwrap()).unwrap();
    v["id"].as_str().unwrap().to_string()
}

/// A stack named `e2e-NAME` with `body`, whose `app/` holds the Dockerfile, a static busybox
/// and the `www` folder (version 1).
fn container_stack(name: &str, body: &str) -> Stack {
    let stack = Stack::new(name, body);
    let app = stack.path().join("app");
    fs::copy("/bin/busybox", app.join("busybox")).unwrap();
    fs::write(app.join("Dockerfile"), DOCKERFILE).unwrap();
    fs::create_dir_all(app.join("www/cgi-bin")).unwrap();
    fs::write(app.join("www/health"), "ok\n").unwrap();
    fs::write(app.join("www/cgi-bin/whoami"), WHOAMI).unwrap();
    fs::set_permissions(
        app.join("www/cgi-bin/whoami"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    write_version(&stack, "1");
    stack
}

/// 100 requests/s of `GET /cgi-bin/whoami` through the edge, once it gets answers.
fn start_load(port: u16) -> Load {
    let load = Load::start(LoadOptions {
        path: "/cgi-bin/whoami".into(),
        rate: 100,
        threads: 4,
        max_requests: 6_000,
        max_duration: Duration::from_secs(60),
        ..LoadOptions::whoami(port)
    });
    wait_for("the load to get going", Duration::from_secs(10), || {
        (load.count() >= 100).then_some(())
    });
    load
}

#[test]
fn container_replicas_serve_deploy_without_errors_survive_the_daemon_and_go_down() {
    let Some(podman) = podman_service() else {
        return;
    };
    let containers = Containers("e2e-containers".into());
    let mut stack = container_stack(
        "containers",
        &body(&podman.socket, r#"secrets = ["API_TOKEN", "TLS_KEY"]"#),
    );
    let app = stack.path().join("app");
    stack.set_secret("API_TOKEN", TOKEN, &[]).ok();
    stack
        .set_secret("TLS_KEY", "-----BEGIN KEY-----\nabc\n", &["--as-file"])
        .ok();

    // Up: the image is built from the Dockerfile, two containers serve through the edge.
    let started = Instant::now();
    stack.up_and_wait();
    let list = stack.wait_healthy("web", 2);
    println!(
        "[containers] up with 2 healthy containers in {:?}",
        started.elapsed()
    );
    let r1 = list[0].release.clone();
    assert!(
        list.iter()
            .all(|r| r.limits.as_deref() == Some("memory 64 MiB (container)")),
        "{list:#?}"
    );
    assert_eq!(containers.running(), 2);
    let port = stack.edge_port;
    let answer = wait_for("the edge to route to web", Duration::from_secs(15), || {
        whoami(port)
    });
    assert_eq!(answer["release"], r1.as_str(), "{answer}");
    assert_eq!(answer["version"], "1", "{answer}");
    assert_eq!(answer["volume"], "mounted", "{answer}");
    // The secret file is mounted read-only at the path $TLS_KEY_FILE names.
    assert_eq!(answer["key"], "-----BEGIN ", "{answer}");
    assert_eq!(answer["key_mode"], "read-only", "{answer}");
    // Published on loopback only: the replica's own port answers on 127.0.0.1.
    assert!(matches!(
        http(list[0].port(), "GET", "/health", b""),
        Ok((200, _))
    ));
    // The container's output is in the replica's log.
    let log = wait_for("the replica log", Duration::from_secs(10), || {
        let log = stack.replica_log("web.1");
        log.contains("up on").then_some(log)
    });
    assert!(log.contains("stdout web web.1 up on"), "{log}");
    // The secret in the environment, printed by the app, is masked in the log.
    assert!(log.contains("with token [redacted]"), "{log}");
    assert!(!log.contains(TOKEN), "{log}");

    // A rolling deploy of a changed image under load: no request fails.
    write_version(&stack, "2");
    let load = start_load(port);
    let t0 = now_ms();
    let out = stack.berth(&["deploy", "web", "--json"]);
    let t1 = now_ms();
    std::thread::sleep(Duration::from_secs(1));
    let report = load.stop();
    println!(
        "[containers] rolling deploy took {} ms; load: {}",
        t1 - t0,
        report.describe()
    );
    assert!(
        out.success(),
        "the deploy failed:\n{}\n{}",
        out.stdout,
        out.stderr
    );
    let record: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(record["state"], "succeeded", "{record}");
    let r2 = record["to_release"].as_str().unwrap().to_string();
    assert_ne!(r2, r1);
    assert_ne!(
        release_image(&stack, &r1),
        release_image(&stack, &r2),
        "the changed context makes a new image"
    );
    let failed = report.failed();
    assert!(report.samples.len() >= 300, "{}", report.describe());
    assert!(
        failed.is_empty(),
        "{} of {} requests failed during the deploy; first: {:?}\nedge log:\n{}\ndaemon:\n{}",
        failed.len(),
        report.samples.len(),
        failed.first(),
        fs::read_to_string(stack.state().join("edge/edge.log")).unwrap_or_default(),
        stack.daemon_stderr(0)
    );
    assert!(!report.on(&r1).is_empty() && !report.on(&r2).is_empty());
    assert!(report
        .on(&r2)
        .iter()
        .all(|s| s.version.as_deref() == Some("2")));
    assert!(report
        .between(t1, i64::MAX)
        .iter()
        .all(|s| s.release.as_deref() == Some(r2.as_str())));
    wait_for("the old containers to go", Duration::from_secs(15), || {
        (containers.running() == 2).then_some(())
    });

    // A Dockerfile that fails to build: the deploy stops at its release step with the build's
    // error, and what runs is not touched.
    let good = fs::read_to_string(app.join("Dockerfile")).unwrap();
    fs::write(
        app.join("Dockerfile"),
        good.replace(
            "COPY www /www",
            "RUN [\"/bin/sh\", \"-c\", \"echo cannot build; exit 3\"]",
        ),
    )
    .unwrap();
    let running: Vec<String> = containers.ids();
    let out = stack.berth(&["deploy", "web", "--json"]);
    assert!(!out.success(), "{}", out.stdout);
    let record: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(record["state"], "failed", "{record}");
    let text = record.to_string();
    assert!(
        text.contains("building the image of `web` failed"),
        "{text}"
    );
    assert!(text.contains("cannot build"), "{text}");
    assert_eq!(
        containers.ids(),
        running,
        "the running containers were not touched"
    );
    assert_eq!(whoami(port).unwrap()["release"], r2.as_str());
    fs::write(app.join("Dockerfile"), good).unwrap();

    // The daemon dies hard: the containers keep serving; the next `berth up` adopts them.
    let before: Vec<String> = containers.ids();
    stack.signal_daemon(0, libc::SIGKILL);
    stack.wait_daemon_exit(0, Duration::from_secs(10));
    assert_eq!(whoami(port).unwrap()["release"], r2.as_str());
    let n = stack.up();
    stack.wait_up_line(n);
    assert!(
        stack
            .daemon_stdout(n)
            .contains("adopted 2 running replica(s)"),
        "{}",
        stack.daemon_stdout(n)
    );
    let adopted = stack.wait_healthy("web", 2);
    assert!(adopted.iter().all(|r| r.release == r2));
    let mut after = containers.ids();
    let mut before = before;
    before.sort();
    after.sort();
    assert_eq!(before, after, "the same containers, none restarted");
    assert_eq!(whoami(port).unwrap()["version"], "2");

    // `berth down`: containers removed, the volume kept.
    stack.berth(&["down"]).ok();
    stack.wait_daemon_exit(n, Duration::from_secs(30));
    assert!(containers.ids().is_empty(), "{:?}", containers.ids());
    assert!(stack.state().join("volumes/uploads").is_dir());
    drop(stack);
    drop(containers);
    drop(podman);
}

#[test]
fn an_engine_that_is_not_running_stops_berth_up_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("podman.sock");
    let mut stack = Stack::new("containers-no-engine", &body(&socket, ""));
    fs::write(stack.path().join("app/Dockerfile"), DOCKERFILE).unwrap();
    let n = stack.up();
    let status = stack.wait_daemon_exit(n, Duration::from_secs(20));
    assert!(!status.success());
    let err = stack.daemon_stderr(n);
    assert!(err.contains("service `web` runs in containers"), "{err}");
    assert!(err.contains("is not running"), "{err}");
    assert!(err.contains("podman system service"), "{err}");
    // Nothing was started: no replica, no edge.
    assert!(stack.edges().is_empty());
    assert!(!stack.state().join("replicas").exists());
}

#[test]
fn a_bluegreen_deploy_of_container_replicas_fails_no_request() {
    deploy_under_load(
        "bluegreen",
        "strategy = \"bluegreen\"\ntermination_wait = \"1s\"\n[[service.web.deploy.check]]\npath = \"/cgi-bin/whoami\"\nstatus = 200\ncontains = \"release\"",
    );
}

#[test]
fn a_canary_deploy_of_container_replicas_fails_no_request() {
    deploy_under_load(
        "canary",
        "strategy = \"canary\"\ntermination_wait = \"1s\"\nsteps = [{ weight = 25, pause = \"2s\" }, { weight = 50, pause = \"2s\" }]\n[[service.web.deploy.check]]\npath = \"/health\"\nstatus = 200",
    );
}

/// A stack of 2 container replicas deployed with `deploy` (the start of
/// `[service.web.deploy]`) under 100 requests/s: no request fails, the new release carries
/// everything once the deploy returned, the old group is retired.
fn deploy_under_load(strategy: &str, deploy: &str) {
    let Some(podman) = podman_service() else {
        return;
    };
    let name = format!("containers-{strategy}");
    let containers = Containers(format!("e2e-{name}"));
    let spec = body(&podman.socket, "").replace("strategy = \"rolling\"\nmax_surge = 1", deploy);
    assert!(spec.contains(strategy), "{spec}");
    let mut stack = container_stack(&name, &spec);
    stack.up_and_wait();
    let r1 = stack.wait_healthy("web", 2)[0].release.clone();
    let port = stack.edge_port;
    wait_for("the edge to route to web", Duration::from_secs(15), || {
        whoami(port)
    });

    write_version(&stack, "2");
    let load = start_load(port);
    let t0 = now_ms();
    let out = stack.berth(&["deploy", "web", "--json"]);
    let t1 = now_ms();
    std::thread::sleep(Duration::from_secs(1));
    let report = load.stop();
    println!(
        "[containers] {strategy} deploy took {} ms; load: {}",
        t1 - t0,
        report.describe()
    );
    assert!(
        out.success(),
        "the deploy failed:\n{}\n{}",
        out.stdout,
        out.stderr
    );
    let record: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(record["state"], "succeeded", "{record}");
    assert_eq!(record["strategy"], strategy, "{record}");
    let r2 = record["to_release"].as_str().unwrap().to_string();
    assert_ne!(r2, r1);
    let failed = report.failed();
    assert!(report.samples.len() >= 300, "{}", report.describe());
    assert!(
        failed.is_empty(),
        "{} of {} requests failed during the deploy; first: {:?}\nedge log:\n{}\ndaemon:\n{}",
        failed.len(),
        report.samples.len(),
        failed.first(),
        fs::read_to_string(stack.state().join("edge/edge.log")).unwrap_or_default(),
        stack.daemon_stderr(0)
    );
    assert!(report.on(&r2).iter().all(|s| s.sent_ms >= t0));
    assert!(report
        .between(t1, i64::MAX)
        .iter()
        .all(|s| s.release.as_deref() == Some(r2.as_str())));
    // The old group is retired after `termination_wait`: two containers remain.
    wait_for(
        "the old group to be retired",
        Duration::from_secs(20),
        || (containers.running() == 2).then_some(()),
    );
    stack.berth(&["down"]).ok();
    stack.wait_daemon_exit(0, Duration::from_secs(30));
    assert!(containers.ids().is_empty(), "{:?}", containers.ids());
    drop(stack);
    drop(containers);
    drop(podman);
}

/// Removes an image tag from Podman's store on drop (the tag a push leaves there).
struct Untag(String);

impl Drop for Untag {
    fn drop(&mut self) {
        let _ = Command::new("podman").args(["rmi", &self.0]).output();
    }
}

/// Debian's `docker-registry` (the CNCF distribution registry) on a loopback port of its own,
/// storing in a temporary folder; stopped on drop.
struct Registry {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Registry {
    /// Starts it, or (outside CI) returns `None` naming the package; under `CI=true` a missing
    /// registry fails the test.
    fn start() -> Option<Registry> {
        if !Path::new("/usr/bin/docker-registry").is_file() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true and docker-registry is missing (apt-get install docker-registry)"
            );
            eprintln!("skipping: apt-get install docker-registry");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = free_fixed_port();
        let config = dir.path().join("config.yml");
        fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        // Plain HTTP on loopback: the engine must be told it is a registry without TLS.
        fs::write(
            dir.path().join("registries.conf"),
            format!("[[registry]]\nlocation = \"127.0.0.1:{port}\"\ninsecure = true\n"),
        )
        .unwrap();
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting docker-registry");
        let registry = Registry { child, port, dir };
        wait_for("the registry", Duration::from_secs(15), || {
            matches!(http(port, "GET", "/v2/", b""), Ok((200, _))).then_some(())
        });
        Some(registry)
    }

    fn registries_conf(&self) -> PathBuf {
        self.dir.path().join("registries.conf")
    }
}

/// `berth release push` sends a container release's image to a registry as REPOSITORY:RELEASE
/// and prints the digest the registry holds; a bad repository, a process service or an
/// unreachable registry each get a clear error.
#[test]
fn a_release_image_is_pushed_to_a_registry_with_its_digest() {
    let Some(registry) = Registry::start() else {
        return;
    };
    let Some(podman) =
        podman_service_with(&[("CONTAINERS_REGISTRIES_CONF", &registry.registries_conf())])
    else {
        return;
    };
    let spec = body(&podman.socket, "").replace("replicas = 2", "replicas = 1");
    let mut stack = container_stack("containers-push", &spec);
    let _containers = Containers("e2e-containers-push".into());
    stack.up_and_wait();
    let release = stack.wait_healthy("web", 1)[0].release.clone();

    let repository = format!("127.0.0.1:{}/e2e/web", registry.port);
    let _pushed = Untag(format!("{repository}:{release}"));
    let out = stack.berth(&["release", "push", "web", "--to", &repository, "--json"]);
    let pushed: Value = serde_json::from_str(out.ok()).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    assert_eq!(pushed["reference"], format!("{repository}:{release}"));
    let digest = pushed["digest"].as_str().unwrap().to_string();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    // The registry has the tag, and the manifest under it is the digest printed.
    let (status, tags) = http(registry.port, "GET", "/v2/e2e/web/tags/list", b"").unwrap();
    assert_eq!(status, 200);
    assert!(tags.contains(&release), "{tags}");
    let manifest = Command::new("curl")
        .args(["-sI", "-H"])
        .arg("Accept: application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json")
        .arg(format!(
            "http://127.0.0.1:{}/v2/e2e/web/manifests/{release}",
            registry.port
        ))
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&manifest.stdout).to_lowercase();
    assert!(
        head.contains(&format!("docker-content-digest: {digest}")),
        "{head}"
    );
    assert!(stack
        .events()
        .iter()
        .any(|(_, m)| m.contains(&format!("pushed as {repository}:{release}"))));

    // Mistakes: each a clear error, nothing pushed.
    let bad = stack.berth(&["release", "push", "web", "--to", "Shop/Web:latest"]);
    assert!(bad.fails().contains("is not a repository name"), "{bad:?}");
    let unknown = stack.berth(&[
        "release",
        "push",
        "web",
        "--release",
        "r9-nope",
        "--to",
        &repository,
    ]);
    assert!(
        unknown.fails().contains("has no release r9-nope"),
        "{unknown:?}"
    );
    let closed = free_fixed_port();
    let unreachable = stack.berth(&[
        "release",
        "push",
        "web",
        "--to",
        &format!("127.0.0.1:{closed}/e2e/web"),
    ]);
    assert!(
        unreachable.fails().contains("registry is reachable"),
        "{unreachable:?}"
    );
}

/// A container release that never passes its health checks is rolled back under load: no user
/// request fails, the old containers keep serving, and the new ones are gone.
#[test]
fn a_container_release_failing_its_health_checks_is_rolled_back_under_load() {
    let Some(podman) = podman_service() else {
        return;
    };
    let containers = Containers("e2e-containers-rollback".into());
    let mut stack = container_stack("containers-rollback", &body(&podman.socket, ""));
    stack.up_and_wait();
    let r1 = stack.wait_healthy("web", 2)[0].release.clone();
    let port = stack.edge_port;
    wait_for("the edge to route to web", Duration::from_secs(15), || {
        whoami(port)
    });
    let before: Vec<String> = containers.ids();
    assert_eq!(before.len(), 2, "{before:?}");

    // Release 2 has no /health: its containers start, answer, and never turn healthy.
    write_version(&stack, "2");
    fs::remove_file(stack.path().join("app/www/health")).unwrap();
    let load = start_load(port);
    let out = stack.berth(&["deploy", "web", "--json"]);
    std::thread::sleep(Duration::from_secs(1));
    let report = load.stop();
    println!("[containers] failing release: {}", report.describe());
    assert!(!out.success(), "the deploy succeeded:\n{}", out.stdout);
    let record: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(record["state"], "rolled_back", "{record}");
    assert_eq!(record["verdict"]["rule"], "health", "{record}");
    assert!(report.samples.len() >= 300, "{}", report.describe());
    assert!(
        report.failed().is_empty(),
        "{} requests failed: {}",
        report.failed().len(),
        report.describe()
    );
    assert!(
        report
            .samples
            .iter()
            .all(|s| s.release.as_deref() == Some(r1.as_str())),
        "a user reached the failing release: {}",
        report.describe()
    );
    // The same two containers serve; the failing ones were stopped and removed.
    wait_for("only the old containers", Duration::from_secs(20), || {
        (containers.ids() == before).then_some(())
    });
    let serving = stack.wait_healthy("web", 2);
    assert!(serving.iter().all(|r| r.release == r1), "{serving:?}");
    drop(stack);
    drop(containers);
    drop(podman);
}
