//! Tests of fingerprints, creating releases and pruning them, on temporary folders.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_spec::{PortSpec, ReplicaCount, ServiceSpec};

use super::*;

fn service(source: &Path, build: Option<&str>) -> ServiceSpec {
    ServiceSpec {
        name: "web".into(),
        run: "python3 app.py".into(),
        build: build.map(str::to_string),
        source: source.to_path_buf(),
        port: PortSpec::Auto,
        replicas: ReplicaCount { min: 1, max: 1 },
        stop_timeout: Duration::from_secs(10),
        env: BTreeMap::from([("GREETING".to_string(), "hello".to_string())]),
        uses: vec![],
        depends_on: vec![],
        volumes: vec![],
        health: None,
        memory: None,
        cpu: None,
        balance: Default::default(),
        deregistration_delay: Duration::from_secs(30),
        sticky: None,
        deploy: Default::default(),
        secrets: Vec::new(),
        cron: Vec::new(),
        metrics: None,
        autoscale: None,
    }
}

/// A small app: files, a nested folder, an executable, a symlink and skipped folders.
fn write_app(root: &Path) {
    fs::create_dir_all(root.join("lib")).unwrap();
    fs::write(root.join("app.py"), "print('hi')\n").unwrap();
    fs::write(root.join("lib/util.py"), "X = 1\n").unwrap();
    fs::write(root.join("run.sh"), "#!/bin/sh\necho run\n").unwrap();
    fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    symlink("lib/util.py", root.join("util-link")).unwrap();
    symlink("/nonexistent/anywhere", root.join("dangling")).unwrap();
    for skipped in [
        ".git",
        "node_modules/pkg",
        "lib/__pycache__",
        ".berth/releases",
    ] {
        fs::create_dir_all(root.join(skipped)).unwrap();
        fs::write(root.join(skipped).join("junk"), "junk").unwrap();
    }
}

fn app() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("app");
    fs::create_dir(&source).unwrap();
    write_app(&source);
    (dir, source)
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

// ---- fingerprint ----

#[test]
fn same_tree_and_config_give_the_same_fingerprint() {
    let (_a, source_a) = app();
    let (_b, source_b) = app();
    let fp = fingerprint(&service(&source_a, None)).unwrap();
    assert_eq!(fp.len(), 64);
    assert!(fp.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(fp, fingerprint(&service(&source_a, None)).unwrap());
    assert_eq!(fp, fingerprint(&service(&source_b, None)).unwrap());
}

#[test]
fn any_change_to_files_or_config_changes_the_fingerprint() {
    let (_dir, source) = app();
    let base = service(&source, Some("make"));
    let fp = fingerprint(&base).unwrap();
    let differs = |spec: &ServiceSpec| assert_ne!(fingerprint(spec).unwrap(), fp);

    let mut env = base.clone();
    env.env.insert("GREETING".into(), "hellO".into());
    differs(&env);
    let mut env = base.clone();
    env.env.insert("EXTRA".into(), String::new());
    differs(&env);
    let mut run = base.clone();
    run.run.push(' ');
    differs(&run);
    let mut build = base.clone();
    build.build = None;
    differs(&build);
    build.build = Some(String::new());
    differs(&build);

    fs::write(source.join("app.py"), "print('hI')\n").unwrap();
    differs(&base);
    fs::write(source.join("app.py"), "print('hi')\n").unwrap();
    assert_eq!(fingerprint(&base).unwrap(), fp);

    fs::set_permissions(source.join("app.py"), fs::Permissions::from_mode(0o600)).unwrap();
    differs(&base);
    fs::set_permissions(source.join("app.py"), fs::Permissions::from_mode(0o644)).unwrap();
    // Back to the umask's usual mode: only when that is what it was made with.
    if fingerprint(&base).unwrap() == fp {
        fs::write(source.join("new.txt"), "").unwrap();
        differs(&base);
        fs::remove_file(source.join("new.txt")).unwrap();
        fs::create_dir(source.join("empty")).unwrap();
        differs(&base);
        fs::remove_dir(source.join("empty")).unwrap();
        assert_eq!(fingerprint(&base).unwrap(), fp);
    }

    fs::remove_file(source.join("util-link")).unwrap();
    symlink("lib/other.py", source.join("util-link")).unwrap();
    differs(&base);
}

#[test]
fn skipped_folders_and_link_targets_do_not_count() {
    let (_dir, source) = app();
    let spec = service(&source, None);
    let fp = fingerprint(&spec).unwrap();
    fs::write(source.join("node_modules/pkg/junk"), "changed").unwrap();
    fs::write(source.join(".git/HEAD"), "ref").unwrap();
    fs::create_dir_all(source.join("lib/target/debug")).unwrap();
    fs::write(source.join("lib/target/debug/out"), "bin").unwrap();
    fs::create_dir_all(source.join(".venv/bin")).unwrap();
    // The link is hashed as its text: what it points to is not read.
    fs::write(source.join("lib/util.py"), "X = 2\n").unwrap();
    let after = fingerprint(&spec).unwrap();
    // util.py itself changed, so compare against a tree with only that change.
    let (_other, other_source) = app();
    fs::write(other_source.join("lib/util.py"), "X = 2\n").unwrap();
    assert_eq!(after, fingerprint(&service(&other_source, None)).unwrap());
    assert_ne!(after, fp);
}

#[test]
fn a_missing_source_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = fingerprint(&service(&dir.path().join("nope"), None)).unwrap_err();
    assert!(format!("{err:#}").contains("nope"), "{err:#}");
}

// ---- create ----

#[tokio::test]
async fn create_copies_the_tree_and_runs_the_build() {
    let (dir, source) = app();
    let builder = ReleaseBuilder::new(dir.path().join(".berth/releases"));
    let spec = service(
        &source,
        Some("echo built > marker; echo \"greeting=$GREETING\"; echo to-stderr >&2"),
    );
    let mut lines = Vec::new();
    let release = builder
        .create(&spec, 3, "spec-hash", |line| lines.push(line.to_string()))
        .await
        .unwrap();

    let fp = fingerprint(&spec).unwrap();
    assert_eq!(release.id, ReleaseId(format!("r3-{}", &fp[..8])));
    assert_eq!(release.fingerprint, fp);
    assert_eq!(release.seq, 3);
    assert_eq!(release.service, "web");
    assert_eq!(release.spec_hash, "spec-hash");
    assert_eq!(release.source_rev, None);
    assert!(release.created_at > 0);
    let out = PathBuf::from(&release.dir);
    assert!(out.is_absolute());
    assert_eq!(out, builder.release_dir("web", &release.id));

    assert_eq!(
        names(&out),
        [
            ".berth-release-complete",
            "app.py",
            "build.log",
            "dangling",
            "lib",
            "marker",
            "run.sh",
            "util-link"
        ]
    );
    assert_eq!(names(&out.join("lib")), ["util.py"]);
    assert_eq!(fs::read_to_string(out.join("marker")).unwrap(), "built\n");
    assert_eq!(
        fs::read_to_string(out.join("app.py")).unwrap(),
        "print('hi')\n"
    );
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&out.join("run.sh")), 0o755);
    assert_eq!(mode(&out.join("app.py")), mode(&source.join("app.py")));
    assert_eq!(
        fs::read_link(out.join("util-link")).unwrap(),
        Path::new("lib/util.py")
    );
    assert_eq!(
        fs::read_link(out.join("dangling")).unwrap(),
        Path::new("/nonexistent/anywhere")
    );

    assert_eq!(lines, ["greeting=hello", "to-stderr"]);
    let log = fs::read_to_string(out.join(BUILD_LOG)).unwrap();
    assert_eq!(log, "greeting=hello\nto-stderr\n");
    // Only the release folder: no `.tmp` left behind; the release is marked complete.
    assert_eq!(names(out.parent().unwrap()), vec![release.id.0]);
    assert!(is_complete(&out));
}

#[tokio::test]
async fn a_service_without_build_is_just_copied() {
    let (dir, source) = app();
    let builder = ReleaseBuilder::new(dir.path().join("releases"));
    let release = builder
        .create(&service(&source, None), 1, "h", |_| {})
        .await
        .unwrap();
    let out = PathBuf::from(&release.dir);
    assert!(out.join("app.py").exists());
    assert!(!out.join(BUILD_LOG).exists());
}

#[tokio::test]
async fn the_build_sees_only_the_service_env_and_path_home_lang() {
    let (dir, source) = app();
    let builder = ReleaseBuilder::new(dir.path().join("releases"));
    let spec = service(
        &source,
        Some(
            "echo \"$GREETING|${HOME:-nohome}|${CARGO_PKG_NAME:-unset}\" > env.txt; command -v sh",
        ),
    );
    let release = builder.create(&spec, 1, "h", |_| {}).await.unwrap();
    let env = fs::read_to_string(Path::new(&release.dir).join("env.txt")).unwrap();
    let home = std::env::var("HOME").unwrap_or_else(|_| "nohome".into());
    // Cargo sets CARGO_PKG_NAME for the test process; the build must not inherit it.
    assert_eq!(env.trim(), format!("hello|{home}|unset"));
}

#[tokio::test]
async fn a_failed_build_leaves_no_release_and_reports_the_tail() {
    let (dir, source) = app();
    let builder = ReleaseBuilder::new(dir.path().join("releases"));
    let spec = service(
        &source,
        Some("for i in $(seq 1 30); do echo \"line-$i.\"; done; echo broken >&2; exit 3"),
    );
    let mut count = 0;
    let err = builder
        .create(&spec, 1, "h", |_| count += 1)
        .await
        .unwrap_err();
    let msg = format!("{err:#}");
    assert_eq!(count, 31);
    assert!(msg.contains("exit status: 3"), "{msg}");
    assert!(msg.ends_with("line-30.\nbroken"), "{msg}");
    assert!(
        msg.contains("line-30.") && msg.contains("line-12."),
        "{msg}"
    );
    assert!(!msg.contains("line-11."), "only the last 20 lines: {msg}");
    assert!(msg.contains("r1-"), "{msg}");
    assert!(names(&dir.path().join("releases/web")).is_empty());
}

#[tokio::test]
async fn leftover_tmp_folders_are_removed_by_the_next_create() {
    let (dir, source) = app();
    let builder = ReleaseBuilder::new(dir.path().join("releases"));
    let leftover = dir.path().join("releases/web/r7-deadbeef.tmp");
    fs::create_dir_all(leftover.join("sub")).unwrap();
    fs::write(leftover.join("sub/file"), "x").unwrap();
    fs::set_permissions(leftover.join("sub"), fs::Permissions::from_mode(0o500)).unwrap();
    let release = builder
        .create(&service(&source, None), 8, "h", |_| {})
        .await
        .unwrap();
    assert_eq!(names(&dir.path().join("releases/web")), [release.id.0]);
}

#[tokio::test]
async fn dropping_create_kills_the_build_and_what_it_started() {
    let (dir, source) = app();
    let builder = ReleaseBuilder::new(dir.path().join("releases"));
    let spec = service(
        &source,
        Some("echo $$ > shell.pid; sleep 60 & echo $! > sleep.pid; wait"),
    );
    let fp = fingerprint(&spec).unwrap();
    let tmp = dir.path().join(format!("releases/web/r1-{}", &fp[..8]));
    let outcome = tokio::time::timeout(Duration::from_secs(3), async {
        builder.create(&spec, 1, "h", |_| {}).await
    })
    .await;
    assert!(outcome.is_err(), "the build should still have been running");

    let read_pid = |name: &str| -> i32 {
        fs::read_to_string(tmp.join(name))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    for pid in [read_pid("shell.pid"), read_pid("sleep.pid")] {
        let mut gone = false;
        for _ in 0..100 {
            // Gone, or a zombie waiting to be reaped: either way, no longer running.
            match fs::read_to_string(format!("/proc/{pid}/stat")) {
                Err(_) => gone = true,
                Ok(stat) => {
                    gone = stat
                        .rsplit(')')
                        .next()
                        .unwrap()
                        .trim_start()
                        .starts_with('Z')
                }
            }
            if gone {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(gone, "process {pid} still running");
    }
    // The interrupted build never looks like a complete release.
    assert!(!is_complete(&tmp));
}

#[tokio::test]
async fn source_rev_comes_from_git() {
    let (dir, source) = app();
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(&source)
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(args)
            .output()
    };
    match git(&["init", "-q"]) {
        Ok(out) if out.status.success() => {}
        _ => return, // no git here: nothing to test
    }
    let builder = ReleaseBuilder::new(dir.path().join("releases"));
    // A repository without commits has no HEAD yet.
    let release = builder
        .create(&service(&source, None), 1, "h", |_| {})
        .await
        .unwrap();
    assert_eq!(release.source_rev, None);

    assert!(git(&["add", "app.py"]).unwrap().status.success());
    assert!(git(&["commit", "-q", "-m", "one"])
        .unwrap()
        .status
        .success());
    let head = String::from_utf8(git(&["rev-parse", "HEAD"]).unwrap().stdout).unwrap();
    let release = builder
        .create(&service(&source, None), 2, "h", |_| {})
        .await
        .unwrap();
    assert_eq!(release.source_rev.as_deref(), Some(head.trim()));
}

// ---- prune ----

#[test]
fn prune_keeps_exactly_the_listed_releases() {
    let dir = tempfile::tempdir().unwrap();
    let builder = ReleaseBuilder::new(dir.path());
    let web = dir.path().join("web");
    for name in [
        "r1-aaaaaaaa",
        "r2-bbbbbbbb",
        "r3-cccccccc",
        "r4-dddddddd",
        "r5-eeeeeeee.tmp",
    ] {
        fs::create_dir_all(web.join(name).join("sub")).unwrap();
        fs::write(web.join(name).join("sub/f"), "x").unwrap();
    }
    fs::write(web.join("notes.txt"), "not a release").unwrap();
    fs::create_dir_all(dir.path().join("worker/r1-aaaaaaaa")).unwrap();

    builder.prune(
        "web",
        &[
            ReleaseId("r1-aaaaaaaa".into()),
            ReleaseId("r3-cccccccc".into()),
        ],
    );
    assert_eq!(
        names(&web),
        ["notes.txt", "r1-aaaaaaaa", "r3-cccccccc", "r5-eeeeeeee.tmp"]
    );
    assert_eq!(names(&dir.path().join("worker")), ["r1-aaaaaaaa"]);

    builder.prune("web", &[]);
    assert_eq!(names(&web), ["notes.txt", "r5-eeeeeeee.tmp"]);
    // A service without releases is fine.
    builder.prune("nothing", &[]);
}

#[test]
fn release_id_shapes() {
    assert!(looks_like_release_id("r1-0a1b2c3d"));
    assert!(looks_like_release_id("r12-ffffffff"));
    for bad in ["r-abc", "r1-", "r1-xyz", "x1-abc", "r1-abc.tmp", "r1abc"] {
        assert!(!looks_like_release_id(bad), "{bad}");
    }
}
