//! TLS on the edge's TLS listeners: the rustls server configuration (TLS 1.2 and 1.3, ALPN `h2`
//! and `http/1.1`, session resumption by ID cache and by tickets) and the certificate store
//! that picks a certificate by the client's SNI.
//!
//! Certificates come as PEM files named in the routing table (the daemon decides where they
//! come from: files of the spec, ACME, the local CA). They are loaded when a table names them
//! and again whenever a file changes on disk ([`CertStore::refresh`], called every few seconds);
//! a file that fails to load keeps the certificate that was serving, so a renewal gone wrong
//! never takes a host off the air.
//!
//! Crypto: rustls with *ring*, the provider the rest of the binary already links (object_store's
//! client); aws-lc-rs would add a second C library and its build to every build of Berth.
//!
//! Knows nothing of ACME, the daemon or HTTP.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use berth_model::routing::{CertificateFiles, TlsTable};
use rustls::crypto::ring as provider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

/// Why a certificate could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: no certificate in the file")]
    NoCertificate { path: PathBuf },
    #[error("{path}: no private key in the file")]
    NoKey { path: PathBuf },
    #[error("{path}: {why}")]
    BadKey { path: PathBuf, why: String },
    #[error("building the TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// One loaded certificate and what it was loaded from.
struct Loaded {
    files: CertificateFiles,
    modified: (Option<SystemTime>, Option<SystemTime>),
    key: Arc<CertifiedKey>,
}

/// The certificates being served, by host name.
#[derive(Default)]
struct Served {
    /// Exact names (lower case).
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` stored as `example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    /// For a client that sends no SNI or an unknown name.
    default: Option<Arc<CertifiedKey>>,
    /// Host names served (for the HTTPS redirect).
    names: Vec<String>,
}

/// The certificate store behind every TLS listener.
#[derive(Default)]
pub struct CertStore {
    served: ArcSwap<Served>,
    /// What the last table asked for, with what is loaded of it.
    loaded: Mutex<Vec<Loaded>>,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore")
            .field("names", &self.served.load().names)
            .finish()
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl CertStore {
    /// Serves the certificates `tls` names (in its order). Files already loaded and unchanged
    /// are kept as they are; one that fails to load keeps its previous version if it had one
    /// (else its hosts get no certificate) and is reported.
    pub fn apply(&self, tls: &TlsTable) -> Vec<TlsError> {
        let mut errors = Vec::new();
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = Vec::with_capacity(tls.certificates.len());
        for files in &tls.certificates {
            let stamp = (modified(&files.cert), modified(&files.key));
            let previous = loaded
                .iter()
                .position(|l| l.files.cert == files.cert && l.files.key == files.key);
            if let Some(at) = previous {
                if loaded[at].modified == stamp {
                    let mut kept = loaded.remove(at);
                    kept.files = files.clone();
                    next.push(kept);
                    continue;
                }
            }
            match load(files) {
                Ok(key) => next.push(Loaded {
                    files: files.clone(),
                    modified: stamp,
                    key,
                }),
                Err(e) => {
                    // Keep serving what was there (a renewal half written, a bad new file).
                    if let Some(at) = previous {
                        let mut kept = loaded.remove(at);
                        kept.files = files.clone();
                        next.push(kept);
                    }
                    errors.push(e);
                }
            }
        }
        let mut served = Served::default();
        for entry in &next {
            if served.default.is_none() {
                served.default = Some(entry.key.clone());
            }
            for host in &entry.files.hosts {
                let host = host.to_ascii_lowercase();
                served.names.push(host.clone());
                match host.strip_prefix("*.") {
                    Some(parent) => {
                        served
                            .wildcard
                            .entry(parent.to_string())
                            .or_insert_with(|| entry.key.clone());
                    }
                    None => {
                        served
                            .exact
                            .entry(host)
                            .or_insert_with(|| entry.key.clone());
                    }
                }
            }
        }
        *loaded = next;
        self.served.store(Arc::new(served));
        errors
    }

    /// Reloads files that changed on disk since they were loaded.
    pub fn refresh(&self) -> Vec<TlsError> {
        let changed = {
            let loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
            loaded
                .iter()
                .any(|l| l.modified != (modified(&l.files.cert), modified(&l.files.key)))
        };
        if !changed {
            return Vec::new();
        }
        let certificates = {
            let loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
            loaded.iter().map(|l| l.files.clone()).collect()
        };
        self.apply(&TlsTable {
            certificates,
            ..TlsTable::default()
        })
    }

    /// Whether a certificate is served for `host`.
    pub fn covers(&self, host: &str) -> bool {
        let served = self.served.load();
        let host = host.to_ascii_lowercase();
        served.exact.contains_key(&host)
            || host
                .split_once('.')
                .is_some_and(|(_, parent)| served.wildcard.contains_key(parent))
    }

    /// Whether any certificate is loaded.
    pub fn is_empty(&self) -> bool {
        self.served.load().default.is_none()
    }

    fn pick(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let served = self.served.load();
        if let Some(name) = sni {
            let name = name.to_ascii_lowercase();
            if let Some(key) = served.exact.get(&name) {
                return Some(key.clone());
            }
            if let Some((_, parent)) = name.split_once('.') {
                if let Some(key) = served.wildcard.get(parent) {
                    return Some(key.clone());
                }
            }
        }
        served.default.clone()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.pick(hello.server_name())
    }
}

/// Loads a PEM chain and its key.
fn load(files: &CertificateFiles) -> Result<Arc<CertifiedKey>, TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_path_buf(),
            source,
        })
    };
    let cert_pem = read(&files.cert)?;
    let chain: Vec<_> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: files.cert.clone(),
        });
    }
    let key_pem = read(&files.key)?;
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| TlsError::BadKey {
            path: files.key.clone(),
            why: e.to_string(),
        })?
        .ok_or_else(|| TlsError::NoKey {
            path: files.key.clone(),
        })?;
    let signing = provider::sign::any_supported_type(&key).map_err(|e| TlsError::BadKey {
        path: files.key.clone(),
        why: e.to_string(),
    })?;
    let certified = CertifiedKey::new(chain, signing);
    // The key must be the certificate's (rustls checks the public keys match).
    certified.keys_match().map_err(|e| TlsError::BadKey {
        path: files.key.clone(),
        why: format!("the key does not match the certificate: {e}"),
    })?;
    Ok(Arc::new(certified))
}

/// The rustls configuration of the TLS listeners over `store`.
pub fn server_config(store: Arc<CertStore>) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(store);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // Resumption: a session-ID cache for TLS 1.2 clients and tickets (rotating keys) for all.
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(64 * 1024);
    config.ticketer = provider::Ticketer::new()?;
    config.send_tls13_tickets = 2;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate for `names`, written as PEM files in `dir`.
    fn write_cert(dir: &Path, stem: &str, names: &[&str]) -> CertificateFiles {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = rcgen::generate_simple_self_signed(names.clone()).unwrap();
        let cert_path = dir.join(format!("{stem}.pem"));
        let key_path = dir.join(format!("{stem}.key"));
        std::fs::write(&cert_path, cert.cert.pem()).unwrap();
        std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
        CertificateFiles {
            hosts: names,
            cert: cert_path,
            key: key_path,
        }
    }

    fn table(certificates: Vec<CertificateFiles>) -> TlsTable {
        TlsTable {
            certificates,
            ..TlsTable::default()
        }
    }

    fn der(key: &Arc<CertifiedKey>) -> Vec<u8> {
        key.cert[0].as_ref().to_vec()
    }

    #[test]
    fn sni_picks_exact_then_wildcard_then_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let shop = write_cert(dir.path(), "shop", &["shop.example"]);
        let any = write_cert(dir.path(), "any", &["*.example"]);
        let store = CertStore::default();
        assert!(store.apply(&table(vec![shop, any])).is_empty());
        let shop_der = der(&store.pick(Some("shop.example")).unwrap());
        let any_der = der(&store.pick(Some("api.example")).unwrap());
        assert_ne!(shop_der, any_der);
        assert_eq!(der(&store.pick(Some("SHOP.example")).unwrap()), shop_der);
        assert_eq!(
            der(&store.pick(None).unwrap()),
            shop_der,
            "the first is the default"
        );
        assert_eq!(der(&store.pick(Some("other.test")).unwrap()), shop_der);
        assert!(store.covers("shop.example") && store.covers("api.example"));
        assert!(!store.covers("example") && !store.covers("a.b.example"));
    }

    #[test]
    fn a_changed_file_is_reloaded_and_a_broken_one_keeps_the_old_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_cert(dir.path(), "shop", &["shop.example"]);
        let store = CertStore::default();
        assert!(store.apply(&table(vec![files.clone()])).is_empty());
        let first = der(&store.pick(Some("shop.example")).unwrap());
        assert!(store.refresh().is_empty(), "nothing changed");

        // Renewed: a new certificate in the same files.
        std::thread::sleep(std::time::Duration::from_millis(20));
        write_cert(dir.path(), "shop", &["shop.example"]);
        let bump = SystemTime::now() + std::time::Duration::from_secs(2);
        std::fs::File::options()
            .write(true)
            .open(&files.cert)
            .unwrap()
            .set_modified(bump)
            .unwrap();
        assert!(store.refresh().is_empty());
        let second = der(&store.pick(Some("shop.example")).unwrap());
        assert_ne!(first, second, "the renewed certificate serves");

        // A broken write: the old one keeps serving, and the error is reported.
        std::fs::write(&files.cert, "not a certificate").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&files.cert)
            .unwrap()
            .set_modified(bump + std::time::Duration::from_secs(2))
            .unwrap();
        let errors = store.refresh();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(der(&store.pick(Some("shop.example")).unwrap()), second);
    }

    #[test]
    fn a_key_that_is_not_the_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = write_cert(dir.path(), "a", &["a.example"]);
        let b = write_cert(dir.path(), "b", &["b.example"]);
        let mixed = CertificateFiles {
            hosts: vec!["a.example".into()],
            cert: a.cert,
            key: b.key,
        };
        let store = CertStore::default();
        let errors = store.apply(&table(vec![mixed]));
        assert_eq!(errors.len(), 1);
        assert!(store.is_empty());
    }

    #[test]
    fn the_configuration_offers_h2_and_http1() {
        let config = server_config(Arc::new(CertStore::default())).unwrap();
        assert_eq!(config.alpn_protocols[0], b"h2");
        assert_eq!(config.alpn_protocols[1], b"http/1.1");
    }
}
