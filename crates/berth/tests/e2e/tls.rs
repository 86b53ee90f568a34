//! HTTPS through `berth up`: a `[[certificate]]` from files, served on `tls_listen` to a real
//! client (curl, verifying the chain, over HTTP/2 and HTTP/1.1), the plain listener's redirect,
//! and TLS back on the same socket after the edge is killed and the daemon restarts it.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

/// A CA and a leaf for `shop.test` signed by it, as PEM files in `dir` (`ca.pem`,
/// `shop.pem`, `shop.key`).
fn write_certificates(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "berth e2e CA");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_params = rcgen::CertificateParams::new(vec!["shop.test".to_string()]).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("shop.pem"), leaf.pem()).unwrap();
    std::fs::write(dir.join("shop.key"), leaf_key.serialize_pem()).unwrap();
}

/// `curl` over HTTPS to `shop.test` on `port` (resolved to 127.0.0.1), verifying against
/// `ca`: (HTTP version, status, body). Err: curl failed (e.g. the connection was refused).
fn curl_https(
    ca: &Path,
    port: u16,
    path: &str,
    http2: bool,
) -> Result<(String, u16, String), String> {
    curl_https_to("shop.test", ca, port, path, http2)
}

/// [`curl_https`] to `host`.
fn curl_https_to(
    host: &str,
    ca: &Path,
    port: u16,
    path: &str,
    http2: bool,
) -> Result<(String, u16, String), String> {
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "5", "--cacert"])
        .arg(ca)
        .args([
            "--resolve",
            &format!("{host}:{port}:127.0.0.1"),
            if http2 { "--http2" } else { "--http1.1" },
            "-w",
            "\n%{http_version} %{http_code}",
            &format!("https://{host}:{port}{path}"),
        ])
        .output()
        .map_err(|e| format!("running curl: {e}"))?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, last) = text.rsplit_once('\n').unwrap_or(("", &text));
    let (version, code) = last.split_once(' ').unwrap_or(("", "0"));
    Ok((
        version.to_string(),
        code.parse().unwrap_or(0),
        body.to_string(),
    ))
}

fn edge_pid(stack: &Stack) -> Option<u64> {
    let out = stack.berth(&["status", "--json"]);
    let status: Value = serde_json::from_str(out.ok()).unwrap();
    status["edge"]["pid"].as_u64()
}

#[test]
fn https_from_certificate_files_survives_an_edge_restart() {
    if !have_curl() {
        return;
    }
    let tls_port = free_fixed_port();
    let body = format!(
        "tls_listen = [\"127.0.0.1:{tls_port}\"]\n\n[[certificate]]\nhosts = [\"shop.test\"]\ncert = \"tls/shop.pem\"\nkey = \"tls/shop.key\"\n{}\n[[route]]\npath = \"/\"\nservice = \"web\"\n",
        web(1, "")
    );
    // The files must exist before the spec is read.
    let probe = tempfile::tempdir().unwrap();
    write_certificates(probe.path());
    let mut stack = Stack::new("tls", &body);
    let tls_dir = stack.path().join("tls");
    std::fs::create_dir_all(&tls_dir).unwrap();
    for file in ["ca.pem", "shop.pem", "shop.key"] {
        std::fs::copy(probe.path().join(file), tls_dir.join(file)).unwrap();
    }
    stack.up_and_wait();
    stack.wait_healthy("web", 1);
    let ca = tls_dir.join("ca.pem");

    // HTTP/2 by ALPN, the chain verified by curl; then HTTP/1.1.
    let (version, code, body) = wait_for("HTTPS to answer", Duration::from_secs(20), || {
        curl_https(&ca, tls_port, "/whoami", true).ok()
    });
    assert_eq!((version.as_str(), code), ("2", 200), "{body}");
    let who: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(who["service"], "web", "{who}");
    let (version, code, _) = curl_https(&ca, tls_port, "/whoami", false).unwrap();
    assert_eq!((version.as_str(), code), ("1.1", 200));

    // The plain listener sends shop.test to HTTPS.
    let output = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{redirect_url}",
        ])
        .args(["-H", "Host: shop.test"])
        .arg(format!("http://127.0.0.1:{}/cart?x=1", stack.edge_port))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!("301 https://shop.test:{tls_port}/cart?x=1")
    );

    // kill -9 the edge: the daemon restarts it on the same sockets, TLS listener included.
    let old = edge_pid(&stack).expect("an edge pid");
    signal(old as u32, libc::SIGKILL);
    let (version, code, _) = wait_for(
        "HTTPS after the edge restart",
        Duration::from_secs(20),
        || {
            let new = edge_pid(&stack)?;
            if new == old {
                return None;
            }
            curl_https(&ca, tls_port, "/whoami", true).ok()
        },
    );
    assert_eq!((version.as_str(), code), ("2", 200));
}

/// curl is the real HTTPS client here: under CI its absence fails the test.
fn have_curl() -> bool {
    let found = Command::new("curl").arg("--version").output().is_ok();
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "curl is missing (apt-get install curl)"
        );
        eprintln!("skipped: curl is not installed (apt-get install curl)");
    }
    found
}

#[test]
fn a_local_ca_certificate_is_made_served_and_kept_across_a_restart() {
    if !have_curl() {
        return;
    }
    let tls_port = free_fixed_port();
    let body = format!(
        "tls_listen = [\"127.0.0.1:{tls_port}\"]\n\n[[certificate]]\nhosts = [\"shop.test\"]\nlocal = true\n{}\n[[route]]\npath = \"/\"\nservice = \"web\"\n",
        web(1, "")
    );
    let mut stack = Stack::new("tls-local", &body);
    stack.up_and_wait();
    stack.wait_healthy("web", 1);
    let ca = stack.state().join("tls/ca/ca.pem");
    let (version, code, _) = wait_for("HTTPS with the local CA", Duration::from_secs(30), || {
        if !ca.is_file() {
            return None;
        }
        curl_https(&ca, tls_port, "/whoami", true).ok()
    });
    assert_eq!((version.as_str(), code), ("2", 200));
    let issued = std::fs::read_dir(stack.state().join("tls/certs"))
        .unwrap()
        .count();
    assert_eq!(issued, 1);
    let served = std::fs::read(stack.state().join("tls/certs/shop.test/cert.pem")).unwrap();
    let key_mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(stack.state().join("tls/certs/shop.test/key.pem"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(key_mode & 0o777, 0o600, "the key is private");

    // Stop and start again: the same certificate is served, nothing issued anew.
    stack.signal_daemon(0, libc::SIGTERM);
    stack.wait_daemon_exit(0, Duration::from_secs(30));
    stack.up_and_wait();
    stack.wait_healthy("web", 1);
    let (_, code, _) = wait_for("HTTPS after the restart", Duration::from_secs(30), || {
        curl_https(&ca, tls_port, "/whoami", false).ok()
    });
    assert_eq!(code, 200);
    assert_eq!(
        std::fs::read(stack.state().join("tls/certs/shop.test/cert.pem")).unwrap(),
        served,
        "the stored certificate is reused"
    );
}

/// pebble's root (made afresh at each start), fetched from its management interface with curl.
fn pebble_root(pebble: &berth_tls::testing::Pebble, into: &Path) {
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(&pebble.server_root)
        .arg(format!("https://{}/roots/0", pebble.management))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::write(into, &output.stdout).unwrap();
}

#[test]
fn an_acme_certificate_is_issued_through_the_edge_and_reused_after_a_restart() {
    if !have_curl() {
        return;
    }
    let tls_port = free_fixed_port();
    let mut stack = Stack::new("tls-acme", "");
    // pebble validates HTTP-01 on the edge's plain listener; its DNS maps every name to
    // 127.0.0.1.
    let Some(mut pebble) =
        berth_tls::testing::Pebble::start(&stack.path().join("pebble"), stack.edge_port)
    else {
        return;
    };
    let tls_dir = stack.path().join("tls");
    std::fs::create_dir_all(&tls_dir).unwrap();
    std::fs::copy(&pebble.server_root, tls_dir.join("pebble-https.pem")).unwrap();
    let body = format!(
        "tls_listen = [\"127.0.0.1:{tls_port}\"]\n\n[[certificate]]\nhosts = [\"shop.berth.test\"]\nacme = true\n\n[acme]\ndirectory = \"{}\"\nemail = \"ops@berth.test\"\nca = \"tls/pebble-https.pem\"\n{}\n[[route]]\npath = \"/\"\nservice = \"web\"\n",
        pebble.directory_url,
        web(1, "")
    );
    stack.write_spec("tls-acme", &body);
    stack.up_and_wait();
    stack.wait_healthy("web", 1);
    let root = tls_dir.join("pebble-root.pem");
    pebble_root(&pebble, &root);

    // Issued through the edge (the challenge answered on its plain listener), then served.
    let https = |path: &str| curl_https_to("shop.berth.test", &root, tls_port, path, true);
    let (_, code, _) = wait_for(
        "the ACME certificate to be served",
        Duration::from_secs(60),
        || https("/whoami").ok(),
    );
    assert_eq!(code, 200);
    let events = stack.berth(&["events", "--json", "--limit", "200"]);
    assert!(events.ok().contains("issued"), "{}", events.stdout);
    let cert = stack.state().join("tls/certs/shop.berth.test/cert.pem");
    let issued = std::fs::read(&cert).unwrap();

    // pebble gone, the stack restarted: the stored certificate serves without asking it.
    pebble.stop();
    stack.signal_daemon(0, libc::SIGTERM);
    stack.wait_daemon_exit(0, Duration::from_secs(30));
    stack.up_and_wait();
    stack.wait_healthy("web", 1);
    let (_, code, _) = wait_for("HTTPS after the restart", Duration::from_secs(30), || {
        https("/whoami").ok()
    });
    assert_eq!(code, 200);
    assert_eq!(
        std::fs::read(&cert).unwrap(),
        issued,
        "the stored certificate is reused"
    );
}
