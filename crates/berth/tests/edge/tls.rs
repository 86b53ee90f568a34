//! TLS on the edge: certificates from files named in the table, picked by SNI, reloaded when
//! they change on disk; ALPN `h2` and `http/1.1` with a client that verifies the chain; the
//! plain listener's redirect to HTTPS, HSTS, and ACME HTTP-01 challenges.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_model::routing::{CertificateFiles, TlsTable};
use berth_model::RoutingTable;
use berth_spec::Balance;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{Request, StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

use crate::backend::Backend;
use crate::harness::*;

/// A certificate authority of the test, and leaf certificates it signs.
struct TestCa {
    cert: rcgen::Certificate,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    fn new() -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "berth test CA");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let issuer = rcgen::Issuer::new(params, key);
        Self { cert, issuer }
    }

    /// A leaf for `names` written to `dir/stem.pem` and `dir/stem.key`.
    fn leaf(&self, dir: &Path, stem: &str, names: &[&str]) -> CertificateFiles {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let params = rcgen::CertificateParams::new(names.clone()).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let files = CertificateFiles {
            hosts: names,
            cert: dir.join(format!("{stem}.pem")),
            key: dir.join(format!("{stem}.key")),
        };
        // Written whole, then renamed: the edge never reads half a file.
        let tmp = dir.join(format!("{stem}.tmp"));
        std::fs::write(&tmp, cert.pem()).unwrap();
        std::fs::rename(&tmp, &files.cert).unwrap();
        std::fs::write(&tmp, key.serialize_pem()).unwrap();
        std::fs::rename(&tmp, &files.key).unwrap();
        files
    }

    fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

/// A TLS connection to `addr` naming `host`, verified against `config`'s roots.
async fn connect(
    config: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    host: &str,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from(host.to_string()).unwrap();
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .unwrap_or_else(|e| panic!("TLS handshake naming {host}: {e}"))
}

fn peer_certificate(
    stream: &tokio_rustls::client::TlsStream<TcpStream>,
) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

fn served_der(files: &CertificateFiles) -> Vec<u8> {
    let pem = std::fs::read(&files.cert).unwrap();
    let pem = String::from_utf8(pem).unwrap();
    let body: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .concat();
    base64_decode(&body)
}

/// Standard base64 (the PEM body), decoded.
fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for b in text.bytes().filter(|b| *b != b'=') {
        let v = ALPHABET.iter().position(|a| *a == b).unwrap() as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// One GET over a TLS stream with HTTP/1.1 or HTTP/2 (by what ALPN chose).
async fn get_over(
    stream: tokio_rustls::client::TlsStream<TcpStream>,
    host: &str,
    path: &str,
) -> (StatusCode, Version, hyper::HeaderMap, Bytes) {
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    let io = TokioIo::new(stream);
    let request = Request::builder()
        .uri(if h2 {
            format!("https://{host}{path}")
        } else {
            path.to_string()
        })
        .header("host", host)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = if h2 {
        let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .unwrap();
        tokio::spawn(conn);
        sender.send_request(request).await.unwrap()
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        sender.send_request(request).await.unwrap()
    };
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.version, parts.headers, body)
}

fn tls_table(version: u64, backend: &Backend, tls: TlsTable) -> RoutingTable {
    let mut table = one_service(
        version,
        "web",
        pool(Balance::LeastOutstanding, vec![target(backend, "r1")]),
    );
    table.tls = tls;
    table
}

async fn tls_edge(dir: &Path) -> EdgeProcess {
    EdgeProcess::start_with_args(dir, &["--tls-listen", "127.0.0.1:0"]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_sni_alpn_h2_and_http1_verified_against_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let shop = ca.leaf(dir.path(), "shop", &["shop.test"]);
    let api = ca.leaf(dir.path(), "api", &["*.api.test"]);
    let edge = tls_edge(&dir.path().join("edge")).await;
    let backend = Backend::start("web.1").await;
    let tls = TlsTable {
        certificates: vec![shop.clone(), api.clone()],
        ..TlsTable::default()
    };
    edge.push(&tls_table(1, &backend, tls)).await;
    let addr = edge.tls_listen.expect("a TLS listener");

    // HTTP/1.1 by ALPN; the chain verifies for the name asked; the replica is told https.
    let stream = connect(ca.client_config(&[b"http/1.1"]), addr, "shop.test").await;
    assert_eq!(peer_certificate(&stream).as_ref(), served_der(&shop));
    let (status, version, _, body) = get_over(stream, "shop.test", "/echo-headers").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(version, Version::HTTP_11);
    let seen: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(seen["x-forwarded-proto"], "https", "{seen}");

    // HTTP/2 by ALPN, as a browser does; SNI picks the wildcard certificate.
    let stream = connect(ca.client_config(&[b"h2", b"http/1.1"]), addr, "v1.api.test").await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    assert_eq!(peer_certificate(&stream).as_ref(), served_der(&api));
    let (status, version, _, body) = get_over(stream, "v1.api.test", "/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(version, Version::HTTP_2);
    assert_eq!(&body[..], b"web.1");

    // Plain HTTP keeps working beside it.
    assert_eq!(edge.get("shop.test", "/").await.status, StatusCode::OK);
    assert!(edge.metric("berth_edge_tls_handshakes_total").await >= Some(2.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_replaced_on_disk_is_served_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let first = ca.leaf(dir.path(), "shop", &["shop.test"]);
    let edge = tls_edge(&dir.path().join("edge")).await;
    let backend = Backend::start("web.1").await;
    let tls = TlsTable {
        certificates: vec![first.clone()],
        ..TlsTable::default()
    };
    edge.push(&tls_table(1, &backend, tls)).await;
    let addr = edge.tls_listen.unwrap();
    let config = ca.client_config(&[b"http/1.1"]);
    let old = served_der(&first);
    assert_eq!(
        peer_certificate(&connect(config.clone(), addr, "shop.test").await).as_ref(),
        old
    );

    // Renewed in place (same paths), as a certificate manager does.
    std::thread::sleep(Duration::from_millis(1100)); // a new modification time
    let renewed = ca.leaf(dir.path(), "shop", &["shop.test"]);
    let new = served_der(&renewed);
    assert_ne!(old, new);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let served = peer_certificate(&connect(config.clone(), addr, "shop.test").await);
        if served.as_ref() == new {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the renewed certificate was not served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A broken file (a renewal gone wrong) keeps the last good certificate serving.
    std::fs::write(&renewed.cert, "-----BEGIN CERTIFICATE-----\nbroken\n").unwrap();
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let served = peer_certificate(&connect(config.clone(), addr, "shop.test").await);
        assert_eq!(served.as_ref(), new);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plain_listener_redirects_answers_acme_challenges_and_https_sends_hsts() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let shop = ca.leaf(dir.path(), "shop", &["shop.test"]);
    let edge = tls_edge(&dir.path().join("edge")).await;
    let backend = Backend::start("web.1").await;
    let mut tls = TlsTable {
        certificates: vec![shop],
        hsts: Some("max-age=31536000".into()),
        redirect_https: true,
        ..TlsTable::default()
    };
    tls.challenges
        .insert("tok-123".into(), "tok-123.thumbprint".into());
    edge.push(&tls_table(1, &backend, tls)).await;
    let port = edge.tls_listen.unwrap().port();

    let reply = edge.get("shop.test", "/cart?item=2").await;
    assert_eq!(reply.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        reply.header("location"),
        Some(format!("https://shop.test:{port}/cart?item=2").as_str())
    );
    // A host without a certificate is served over plain HTTP as before.
    assert_eq!(edge.get("other.test", "/").await.status, StatusCode::OK);

    // ACME HTTP-01: the challenge path is answered, never redirected.
    let reply = edge
        .get("shop.test", "/.well-known/acme-challenge/tok-123")
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), "tok-123.thumbprint");
    let reply = edge
        .get("shop.test", "/.well-known/acme-challenge/unknown")
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);

    let stream = connect(
        ca.client_config(&[b"http/1.1"]),
        edge.tls_listen.unwrap(),
        "shop.test",
    )
    .await;
    let (status, _, headers, _) = get_over(stream, "shop.test", "/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["strict-transport-security"], "max-age=31536000");
}

/// The graceful upgrade with TLS listeners: a new edge takes the sockets over (the hand-over
/// names which are TLS) while clients open TLS connections without a pause; not one fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeover_under_tls_load_fails_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let shop = ca.leaf(dir.path(), "shop", &["shop.test"]);
    let edge_dir = dir.path().join("edge");
    let mut old = tls_edge(&edge_dir).await;
    let backend = Backend::start("web.1").await;
    let tls = TlsTable {
        certificates: vec![shop],
        ..TlsTable::default()
    };
    old.push(&tls_table(1, &backend, tls)).await;
    let addr = old.tls_listen.unwrap();
    let config = ca.client_config(&[b"h2", b"http/1.1"]);

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for id in 0..4 {
        let (config, stop) = (config.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let (mut ok, mut failures) = (0usize, Vec::new());
            for i in 0..2000 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let attempt = async {
                    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
                    let name = ServerName::try_from("shop.test").unwrap();
                    let tls = tokio_rustls::TlsConnector::from(config.clone())
                        .connect(name, tcp)
                        .await
                        .map_err(|e| e.to_string())?;
                    Ok::<_, String>(get_over(tls, "shop.test", "/").await)
                };
                match tokio::time::timeout(Duration::from_secs(10), attempt).await {
                    Ok(Ok((status, _, _, body)))
                        if status == StatusCode::OK && &body[..] == b"web.1" =>
                    {
                        ok += 1
                    }
                    Ok(Ok((status, _, _, _))) => {
                        failures.push(format!("client {id} #{i}: {status}"))
                    }
                    Ok(Err(e)) => failures.push(format!("client {id} #{i}: {e}")),
                    Err(_) => failures.push(format!("client {id} #{i}: timed out")),
                }
            }
            (ok, failures)
        }));
    }
    // Load first, then the takeover in the middle of it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let new = EdgeProcess::start_with_args(&edge_dir, &["--takeover"]).await;
    assert_eq!(
        new.tls_listen,
        Some(addr),
        "the TLS listener was handed over as TLS"
    );
    let exited = old.wait_exit(Duration::from_secs(40)).await;
    assert!(exited.success(), "the old edge ended: {exited}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut failures) = (0, Vec::new());
    for client in clients {
        let (n, f) = client.await.unwrap();
        ok += n;
        failures.extend(f);
    }
    assert!(ok > 20, "too little load: {ok}");
    assert!(
        failures.is_empty(),
        "{} of {} TLS requests failed: {failures:?}",
        failures.len(),
        ok + failures.len()
    );
    // The new edge serves TLS on its own.
    let stream = connect(config, addr, "shop.test").await;
    assert_eq!(get_over(stream, "shop.test", "/").await.0, StatusCode::OK);
}
