//! A real ACME server for tests: `pebble` and `pebble-challtestsrv` (Debian package `pebble`)
//! on loopback, started per test and killed when dropped. Only with the `testing` feature: the
//! crate's own ACME tests and the end-to-end tests of `berth up` use it.
//!
//! `pebble-challtestsrv` answers every DNS A query with 127.0.0.1, so any name reaches
//! loopback; pebble's HTTP-01 validation connects to the port the caller names (the edge's
//! plain listener, or a test's own challenge server).

use std::fs;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::acme::AcmeSettings;
use crate::{LocalCa, Settings};

/// The validity pebble gives its certificates here, like Let's Encrypt's.
pub const VALIDITY_DAYS: u32 = 90;

/// A child process killed and reaped when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn find(binary: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(binary))
        .find(|p| p.is_file())
}

pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits (bounded) until something listens on `addr`.
pub fn wait_listening(addr: SocketAddr, what: &str, log: &Path) {
    // Generous: pebble makes its keys first, slowly on a loaded machine.
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} does not listen on {addr}; its log:\n{}",
            fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// pebble and its DNS server, started for one test.
pub struct Pebble {
    pub directory_url: String,
    pub management: SocketAddr,
    /// The CA that signed pebble's own HTTPS certificate.
    pub server_root: PathBuf,
    pebble: Option<Proc>,
    _dns: Proc,
}

impl Pebble {
    /// Starts pebble whose HTTP-01 validation connects to 127.0.0.1:`http_port`. `None` (and a
    /// message) when pebble is not installed, outside CI.
    pub fn start(dir: &Path, http_port: u16) -> Option<Pebble> {
        let (Some(pebble), Some(challtestsrv)) = (find("pebble"), find("pebble-challtestsrv"))
        else {
            let message = "pebble and pebble-challtestsrv are not installed (Debian package \
                           `pebble`: apt-get install pebble)";
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{message}");
            }
            eprintln!("skipped: {message}");
            return None;
        };

        // pebble's own HTTPS certificate, from a throwaway CA the client is told to trust.
        let ca = LocalCa::load_or_create(&dir.join("pebble-ca")).unwrap();
        let tls = ca
            .issue(
                &["127.0.0.1".into(), "localhost".into()],
                &dir.join("pebble-tls"),
            )
            .unwrap();

        let dns_port = free_port();
        let dns_management = free_port();
        let dns_log = dir.join("challtestsrv.log");
        let dns = Proc(
            Command::new(challtestsrv)
                .args(["-management", &format!("127.0.0.1:{dns_management}")])
                .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
                .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
                .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
                .stdin(Stdio::null())
                .stdout(fs::File::create(&dns_log).unwrap())
                .stderr(fs::File::create(dir.join("challtestsrv.err")).unwrap())
                .spawn()
                .unwrap(),
        );
        wait_listening(
            format!("127.0.0.1:{dns_management}").parse().unwrap(),
            "pebble-challtestsrv",
            &dns_log,
        );

        let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let management: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": listen.to_string(),
                "managementListenAddress": management.to_string(),
                "certificate": tls.cert,
                "privateKey": tls.key,
                "httpPort": http_port,
                "tlsPort": free_port(),
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false,
                "certificateValidityPeriod": u64::from(VALIDITY_DAYS) * 24 * 3600,
            }
        });
        let config_path = dir.join("pebble.json");
        fs::write(&config_path, config.to_string()).unwrap();
        let log = dir.join("pebble.log");
        let pebble = Proc(
            Command::new(pebble)
                .arg("-config")
                .arg(&config_path)
                .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
                // Validate at once; always validate afresh (no authorization reuse, so a
                // renewal really answers challenges); no random badNonce (instant-acme retries
                // them, but the tests stay deterministic).
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_AUTHZREUSE", "0")
                .env("PEBBLE_WFE_NONCEREJECT", "0")
                .stdin(Stdio::null())
                .stdout(fs::File::create(&log).unwrap())
                .stderr(fs::File::create(dir.join("pebble.err")).unwrap())
                .spawn()
                .unwrap(),
        );
        wait_listening(listen, "pebble", &log);
        wait_listening(management, "pebble's management interface", &log);
        Some(Pebble {
            directory_url: format!("https://{listen}/dir"),
            management,
            server_root: ca.cert_path().to_path_buf(),
            pebble: Some(pebble),
            _dns: dns,
        })
    }

    pub fn settings(&self, state_dir: &Path) -> Settings {
        Settings {
            state_dir: state_dir.to_path_buf(),
            acme: AcmeSettings {
                directory_url: self.directory_url.clone(),
                contact: vec!["mailto:ops@berth.test".into()],
                server_root: Some(self.server_root.clone()),
                timeout: Duration::from_secs(60),
            },
        }
    }

    pub fn stop(&mut self) {
        self.pebble = None;
    }
}
