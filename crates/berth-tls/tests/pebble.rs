//! ACME against a real pebble (Debian package `pebble`) on loopback.
//!
//! Each test starts its own `pebble-challtestsrv` (a DNS server that answers every A query with
//! 127.0.0.1, so `*.berth.test` names reach loopback) and `pebble` (ACME on random ports, its
//! HTTPS certificate signed by a throwaway local CA that the client trusts through
//! `AcmeSettings::server_root`, `-dnsserver` pointing at challtestsrv, `httpPort` at the test's
//! own HTTP-01 server). That server answers `/.well-known/acme-challenge/TOKEN` from the
//! `ChallengeMap` the manager publishes into, as the edge does from its table. Both processes
//! are killed when the test ends. Without pebble the tests are skipped, except under CI=true
//! where that is a failure.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use berth_model::routing::CertificateFiles;
use berth_tls::acme::{account_file, ChallengeMap};
use berth_tls::policy::Renew;
use berth_tls::testing::{Pebble, VALIDITY_DAYS};
use berth_tls::{CertEvent, Desired, EventKind, Manager, Source};
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DAY: Duration = Duration::from_secs(24 * 3600);
const HOSTS: [&str; 2] = ["app.berth.test", "www.berth.test"];

/// The HTTP-01 answers, served on loopback like the edge's plain listener would.
struct ChallengeServer {
    port: u16,
    /// When set, every challenge request gets a 404 (validation fails).
    fail: Arc<AtomicBool>,
    /// Requests answered so far.
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ChallengeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn challenge_server(map: Arc<ChallengeMap>) -> ChallengeServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let fail = Arc::new(AtomicBool::new(false));
    let requests = Arc::new(AtomicUsize::new(0));
    let (f, r) = (fail.clone(), requests.clone());
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let (map, fail, requests) = (map.clone(), f.clone(), r.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head);
                let path = head.split_whitespace().nth(1).unwrap_or("");
                let answer = path
                    .strip_prefix("/.well-known/acme-challenge/")
                    .and_then(|token| map.get(token))
                    .filter(|_| !fail.load(Ordering::SeqCst));
                let response = match answer {
                    Some(body) => format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    ),
                    None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
                };
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
                requests.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    ChallengeServer {
        port,
        fail,
        requests,
        task,
    }
}

/// pebble's root CA (made afresh at each start), from its management interface.
async fn pebble_root(pebble: &Pebble) -> Vec<u8> {
    {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(&pebble.server_root).unwrap())
            .unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(pebble.management)
            .await
            .unwrap();
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        tls.write_all(b"GET /roots/0 HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .unwrap();
        let mut response = Vec::new();
        // pebble closes after an HTTP/1.0 answer; a TLS close without close_notify is fine here.
        let _ = tls.read_to_end(&mut response).await;
        let at = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("an HTTP answer");
        assert!(response.starts_with(b"HTTP/1.0 200") || response.starts_with(b"HTTP/1.1 200"));
        response[at + 4..].to_vec()
    }
}

fn desired() -> Vec<Desired> {
    vec![Desired {
        name: "web".into(),
        hosts: HOSTS.iter().map(|h| h.to_string()).collect(),
        source: Source::Acme,
    }]
}

/// Verifies the served chain for `host` against `root` as a client would (WebPKI), and does a
/// real TLS handshake with a server configured from the files.
async fn verify(root_pem: &[u8], files: &CertificateFiles, host: &str) {
    let mut roots = rustls::RootCertStore::empty();
    for root in CertificateDer::pem_slice_iter(root_pem) {
        roots.add(root.unwrap()).unwrap();
    }
    let roots = Arc::new(roots);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    assert!(
        chain.len() >= 2,
        "pebble sends the leaf and its intermediate"
    );
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        roots.clone(),
        provider.clone(),
    )
    .build()
    .unwrap();
    let name = ServerName::try_from(host.to_string()).unwrap();
    verifier
        .verify_server_cert(&chain[0], &chain[1..], &name, &[], UnixTime::now())
        .unwrap_or_else(|e| panic!("{host}: {e}"));

    // Serve the files and connect: the handshake succeeds only with the right key and chain.
    let key = PrivateKeyDer::from_pem_file(&files.key).unwrap();
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let (a, b) = tokio::io::duplex(64 * 1024);
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let (served, connected) = tokio::join!(acceptor.accept(a), connector.connect(name, b));
    served.unwrap();
    connected.unwrap_or_else(|e| panic!("handshake for {host}: {e}"));
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn only_event(events: &[CertEvent]) -> &EventKind {
    assert_eq!(events.len(), 1, "{events:?}");
    &events[0].kind
}

#[tokio::test]
async fn issues_a_certificate_that_chains_to_pebbles_root() {
    let dir = tempfile::tempdir().unwrap();
    let map = Arc::new(ChallengeMap::default());
    let server = challenge_server(map.clone()).await;
    let Some(pebble) = Pebble::start(dir.path(), server.port) else {
        return;
    };
    let state = dir.path().join("state");
    let settings = pebble.settings(&state);
    let mut manager = Manager::new(settings.clone(), desired(), map.clone()).unwrap();
    let now = SystemTime::now();
    assert!(manager.serving(now).is_empty());

    let events = manager.tick(now).await;
    let EventKind::Issued { not_after } = only_event(&events) else {
        panic!("{events:?}");
    };
    let lifetime = not_after.duration_since(now).unwrap();
    assert!(lifetime > (VALIDITY_DAYS - 1) * DAY && lifetime <= VALIDITY_DAYS * DAY);
    // pebble validated through our server, and every challenge was withdrawn afterwards.
    assert!(server.requests.load(Ordering::SeqCst) >= HOSTS.len());
    assert!(map.snapshot().is_empty());

    let serving = manager.serving(now);
    assert_eq!(serving.len(), 1);
    assert_eq!(serving[0].hosts, HOSTS);
    let root = pebble_root(&pebble).await;
    for host in HOSTS {
        verify(&root, &serving[0], host).await;
    }
    assert_eq!(mode(&serving[0].cert), 0o600);
    assert_eq!(mode(&serving[0].key), 0o600);
    let account = account_file(&state.join("acme"), &settings.acme.directory_url);
    assert_eq!(mode(&account), 0o600);
    // Nothing more to do until 30 days before expiry.
    assert!(matches!(manager.plan(now)[0].renew, Renew::Not(wait) if wait > 59 * DAY));
}

#[tokio::test]
async fn renews_30_days_before_expiry_and_a_failed_renewal_keeps_the_old_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let map = Arc::new(ChallengeMap::default());
    let server = challenge_server(map.clone()).await;
    let Some(pebble) = Pebble::start(dir.path(), server.port) else {
        return;
    };
    let state = dir.path().join("state");
    let settings = pebble.settings(&state);
    let mut manager = Manager::new(settings.clone(), desired(), map.clone()).unwrap();
    let now = SystemTime::now();
    assert!(matches!(
        only_event(&manager.tick(now).await),
        EventKind::Issued { .. }
    ));
    let first = manager.serving(now);
    let first_cert = fs::read(&first[0].cert).unwrap();
    let first_key = fs::read(&first[0].key).unwrap();
    let account = account_file(&state.join("acme"), &settings.acme.directory_url);
    let account_before = fs::read(&account).unwrap();

    // 61 days on (the injected clock), the certificate is inside its renewal window; the
    // challenge answers fail, so pebble refuses.
    let later = now + 61 * DAY;
    assert!(matches!(manager.plan(later)[0].renew, Renew::Now(_)));
    server.fail.store(true, Ordering::SeqCst);
    let events = manager.tick(later).await;
    let EventKind::Failed {
        reason,
        attempts,
        retry_in,
        still_serving,
    } = only_event(&events)
    else {
        panic!("{events:?}");
    };
    eprintln!("the renewal failed as it should: {reason}");
    assert!(reason.contains("berth.test"), "{reason}");
    assert_eq!(
        (*attempts, *retry_in, *still_serving),
        (1, Duration::from_secs(60), true)
    );
    assert!(
        map.snapshot().is_empty(),
        "challenges withdrawn after a failure too"
    );
    // The old certificate stays on disk and is still served, unchanged.
    assert_eq!(manager.serving(later), first);
    assert_eq!(fs::read(&first[0].cert).unwrap(), first_cert);
    assert_eq!(fs::read(&first[0].key).unwrap(), first_key);
    // Backing off: the next tick within the minute asks nothing.
    let requests = server.requests.load(Ordering::SeqCst);
    assert_eq!(
        manager.plan(later + Duration::from_secs(30))[0].renew,
        Renew::After(Duration::from_secs(30))
    );
    assert!(manager
        .tick(later + Duration::from_secs(30))
        .await
        .is_empty());
    assert_eq!(server.requests.load(Ordering::SeqCst), requests);

    // After the back-off, with the answers working again, it renews.
    server.fail.store(false, Ordering::SeqCst);
    let retry = later + Duration::from_secs(60);
    let events = manager.tick(retry).await;
    assert!(
        matches!(only_event(&events), EventKind::Renewed { .. }),
        "{events:?}"
    );
    let renewed = manager.serving(retry);
    assert_eq!(renewed, first, "same files, new contents");
    assert_ne!(fs::read(&renewed[0].cert).unwrap(), first_cert);
    assert_ne!(fs::read(&renewed[0].key).unwrap(), first_key, "a fresh key");
    let root = pebble_root(&pebble).await;
    for host in HOSTS {
        verify(&root, &renewed[0], host).await;
    }
    // The stored account was used, not a new one.
    assert_eq!(fs::read(&account).unwrap(), account_before);
    assert!(!state.join("certs/web/failures.json").exists());
}

#[tokio::test]
async fn a_restart_reuses_stored_certificates_without_asking_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let map = Arc::new(ChallengeMap::default());
    let server = challenge_server(map.clone()).await;
    let Some(mut pebble) = Pebble::start(dir.path(), server.port) else {
        return;
    };
    let state = dir.path().join("state");
    let settings = pebble.settings(&state);
    let now = SystemTime::now();
    let first = {
        let mut manager = Manager::new(settings.clone(), desired(), map.clone()).unwrap();
        assert!(matches!(
            only_event(&manager.tick(now).await),
            EventKind::Issued { .. }
        ));
        manager.serving(now)
    };
    let cert = fs::read(&first[0].cert).unwrap();

    // The ACME server is gone: any request to it would fail and show as a Failed event.
    pebble.stop();
    let requests = server.requests.load(Ordering::SeqCst);
    let mut restarted = Manager::new(settings.clone(), desired(), map.clone()).unwrap();
    assert_eq!(restarted.serving(now), first);
    assert!(matches!(restarted.plan(now)[0].renew, Renew::Not(_)));
    let an_hour_later = now + Duration::from_secs(3600);
    assert!(restarted.tick(now).await.is_empty());
    assert!(restarted.tick(an_hour_later).await.is_empty());
    assert_eq!(fs::read(&first[0].cert).unwrap(), cert);
    assert_eq!(server.requests.load(Ordering::SeqCst), requests);

    // The proof that the server is really unreachable: a due renewal now fails, and the stored
    // certificate keeps serving.
    let events = restarted.tick(now + 61 * DAY).await;
    assert!(
        matches!(
            only_event(&events),
            EventKind::Failed {
                still_serving: true,
                ..
            }
        ),
        "{events:?}"
    );
    assert_eq!(restarted.serving(now + 61 * DAY), first);

    // A restart during the back-off keeps backing off (the failures are stored).
    let again = Manager::new(settings, desired(), map).unwrap();
    assert!(matches!(
        again.plan(now + 61 * DAY)[0].renew,
        Renew::After(_)
    ));
}

/// A sink that cannot reach the edge.
struct Unreachable;

#[async_trait::async_trait]
impl berth_tls::ChallengeSink for Unreachable {
    async fn publish(&self, _token: &str, _key_authorization: &str) -> Result<(), String> {
        Err("the edge's control socket does not answer".into())
    }

    async fn withdraw(&self, _token: &str) {}
}

#[tokio::test]
async fn a_challenge_that_cannot_be_published_is_never_submitted() {
    let dir = tempfile::tempdir().unwrap();
    let server = challenge_server(Arc::new(ChallengeMap::default())).await;
    let Some(pebble) = Pebble::start(dir.path(), server.port) else {
        return;
    };
    let state = dir.path().join("state");
    let mut manager =
        Manager::new(pebble.settings(&state), desired(), Arc::new(Unreachable)).unwrap();
    let now = SystemTime::now();
    let events = manager.tick(now).await;
    let EventKind::Failed {
        reason,
        still_serving,
        ..
    } = only_event(&events)
    else {
        panic!("{events:?}");
    };
    assert!(reason.contains("cannot publish"), "{reason}");
    assert!(!still_serving);
    // pebble was never told to validate, so it never asked.
    assert_eq!(server.requests.load(Ordering::SeqCst), 0);
    assert!(manager.serving(now).is_empty());
}
