//! The local certificate authority for development: made once in a folder of the state
//! directory (its key 0600), it signs a leaf certificate for the hosts of a stack so browsers
//! that trust it see a valid certificate for `app.localhost` and friends.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use berth_model::routing::CertificateFiles;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::error::{Result, TlsError};
use crate::files::{private_dir, write_private};

/// How long the CA is valid: long, since users install it by hand.
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How long a leaf is valid; the policy renews it 30 days before the end.
pub const LEAF_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// Leaves start a little in the past so a client whose clock lags accepts them.
const BACKDATE: Duration = Duration::from_secs(3600);

const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca-key.pem";
/// File names of a certificate and its key inside their folder (local CA and ACME alike).
pub(crate) const CERT_FILE: &str = "cert.pem";
pub(crate) const KEY_FILE: &str = "key.pem";

/// A development CA stored as `ca.pem` and `ca-key.pem` (both 0600) in its folder.
pub struct LocalCa {
    cert_path: PathBuf,
    cert_pem: String,
    key_pem: String,
}

impl std::fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key never appears in a log line.
        f.debug_struct("LocalCa")
            .field("cert_path", &self.cert_path)
            .finish_non_exhaustive()
    }
}

impl LocalCa {
    /// Loads the CA of `dir`, or makes one there when the folder has none. A folder with only one
    /// of the two files is an error rather than a reason to make a new CA: users may trust the
    /// old certificate.
    pub fn load_or_create(dir: &Path) -> Result<LocalCa> {
        let cert_path = dir.join(CA_CERT);
        let key_path = dir.join(CA_KEY);
        match (cert_path.exists(), key_path.exists()) {
            (true, true) => {
                let cert_pem = fs::read_to_string(&cert_path)
                    .map_err(|e| TlsError::io("read", &cert_path, e))?;
                let key_pem = fs::read_to_string(&key_path)
                    .map_err(|e| TlsError::io("read", &key_path, e))?;
                let ca = LocalCa {
                    cert_path,
                    cert_pem,
                    key_pem,
                };
                // Fails early on a damaged pair rather than at the first leaf.
                ca.issuer()?;
                Ok(ca)
            }
            (false, false) => Self::create(dir, cert_path, key_path),
            _ => Err(TlsError::BadFile {
                path: dir.to_path_buf(),
                reason: format!(
                    "the local CA folder has only one of {CA_CERT} and {CA_KEY}; remove the folder \
                     to make a new CA (and trust the new one again)"
                ),
            }),
        }
    }

    fn create(dir: &Path, cert_path: PathBuf, key_path: PathBuf) -> Result<LocalCa> {
        private_dir(dir)?;
        let key = KeyPair::generate().map_err(TlsError::generate("the local CA key"))?;
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "Berth local development CA");
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Berth (development only)");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = SystemTime::now();
        params.not_before = (now - BACKDATE).into();
        params.not_after = (now + CA_VALIDITY).into();
        let cert = params
            .self_signed(&key)
            .map_err(TlsError::generate("the local CA certificate"))?;
        let key_pem = key.serialize_pem();
        // Key first: a cert without its key would block `load_or_create` forever.
        write_private(&key_path, key_pem.as_bytes())?;
        write_private(&cert_path, cert.pem().as_bytes())?;
        tracing::info!(ca = %cert_path.display(), "made the local development CA");
        Ok(LocalCa {
            cert_path,
            cert_pem: cert.pem(),
            key_pem,
        })
    }

    fn issuer(&self) -> Result<Issuer<'static, KeyPair>> {
        let key = KeyPair::from_pem(&self.key_pem).map_err(|_| TlsError::BadFile {
            path: self.cert_path.with_file_name(CA_KEY),
            reason: "the local CA key cannot be loaded".into(),
        })?;
        Issuer::from_ca_cert_pem(&self.cert_pem, key).map_err(|e| TlsError::BadFile {
            path: self.cert_path.clone(),
            reason: format!("the local CA certificate cannot be loaded: {e}"),
        })
    }

    /// The CA certificate's path (what users trust).
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// The CA certificate in PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Issues a leaf for `hosts` (DNS names, `*.` wildcards or IP addresses) valid from now for
    /// [`LEAF_VALIDITY`], and writes `cert.pem` and `key.pem` (0600, written under temporary
    /// names and renamed) into `dir`. Whether a new leaf is needed at all is the policy's call
    /// ([`crate::policy::decide`]); the manager asks it first.
    pub fn issue(&self, hosts: &[String], dir: &Path) -> Result<CertificateFiles> {
        self.issue_at(hosts, dir, SystemTime::now(), LEAF_VALIDITY)
    }

    /// Issues a leaf into `dir` only when the policy says so: no usable pair there, a host
    /// missing from it, or within 30 days of expiry at `now`. Returns the files and whether a
    /// new leaf was written.
    pub fn ensure(
        &self,
        hosts: &[String],
        dir: &Path,
        now: SystemTime,
    ) -> Result<(CertificateFiles, bool)> {
        let current = match crate::files::check_pair(&dir.join(CERT_FILE), &dir.join(KEY_FILE), now)
        {
            Ok(info) => crate::policy::Current::Usable {
                validity: info.validity(),
                covers_hosts: info.covers_all(hosts),
                same_issuer: true,
            },
            Err(_) => crate::policy::Current::Unusable,
        };
        match crate::policy::decide(now, current, None) {
            crate::policy::Renew::Now(_) => Ok((self.issue(hosts, dir)?, true)),
            _ => Ok((
                CertificateFiles {
                    hosts: hosts.to_vec(),
                    cert: dir.join(CERT_FILE),
                    key: dir.join(KEY_FILE),
                },
                false,
            )),
        }
    }

    pub(crate) fn issue_at(
        &self,
        hosts: &[String],
        dir: &Path,
        now: SystemTime,
        validity: Duration,
    ) -> Result<CertificateFiles> {
        if hosts.is_empty() {
            return Err(TlsError::Invalid {
                name: dir.display().to_string(),
                reason: "a certificate needs at least one host".into(),
            });
        }
        let issuer = self.issuer()?;
        let key = KeyPair::generate().map_err(TlsError::generate("a leaf key"))?;
        let mut params = CertificateParams::new(hosts.to_vec())
            .map_err(TlsError::generate("a leaf certificate"))?;
        params
            .distinguished_name
            .push(DnType::CommonName, &hosts[0]);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = (now - BACKDATE).into();
        params.not_after = (now + validity).into();
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(TlsError::generate("a leaf certificate"))?;
        write_pair(dir, &cert.pem(), &key.serialize_pem(), hosts)
    }
}

/// Writes a certificate (chain) and its key into `dir` as `cert.pem` and `key.pem`, both 0600
/// and each replaced atomically. The key goes first: the edge reloads on a changed certificate
/// file and keeps the old pair while the two do not match.
pub(crate) fn write_pair(
    dir: &Path,
    cert_pem: &str,
    key_pem: &str,
    hosts: &[String],
) -> Result<CertificateFiles> {
    private_dir(dir)?;
    let cert = dir.join(CERT_FILE);
    let key = dir.join(KEY_FILE);
    write_private(&key, key_pem.as_bytes())?;
    write_private(&cert, cert_pem.as_bytes())?;
    Ok(CertificateFiles {
        hosts: hosts.to_vec(),
        cert,
        key,
    })
}

/// What to tell a user so their machine and browsers trust the local CA.
pub fn trust_instructions(ca_cert: &Path) -> String {
    let path = ca_cert.display();
    format!(
        "Berth signs development certificates with its local CA:\n  {path}\n\
         To trust it on this machine (Debian, Ubuntu):\n  \
         sudo cp {path} /usr/local/share/ca-certificates/berth-local-ca.crt && sudo update-ca-certificates\n\
         Firefox keeps its own list: Settings > Privacy & Security > Certificates > View \
         Certificates > Authorities > Import, choose the file above and tick \"Trust this CA to \
         identify websites\". Chrome and Chromium on Linux read the NSS database: \
         `certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n berth-local-ca -i {path}` \
         (package libnss3-tools), or Settings > Privacy and security > Security > Manage \
         certificates > Authorities > Import.\n\
         Anyone with the CA's key ({key}, 0600) can make certificates this machine trusts: \
         use it for development only and never copy the key.\n",
        key = ca_cert.with_file_name(CA_KEY).display(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::{check_pair, read_cert};
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;

    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls_pki_types::pem::PemObject;

    fn hosts(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// Verifies the leaf of `cert` for `host` with rustls's WebPKI verifier and `root` as the
    /// only trust anchor: what a browser that trusts the CA does.
    pub(crate) fn verify(root_pem: &[u8], cert: &Path, host: &str) -> Result<(), rustls::Error> {
        let mut roots = rustls::RootCertStore::empty();
        for root in CertificateDer::pem_slice_iter(root_pem) {
            roots.add(root.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
        let chain: Vec<_> = CertificateDer::pem_file_iter(cert)
            .unwrap()
            .map(|c| c.unwrap())
            .collect();
        verifier
            .verify_server_cert(
                &chain[0],
                &chain[1..],
                &ServerName::try_from(host.to_string()).unwrap(),
                &[],
                UnixTime::now(),
            )
            .map(|_| ())
    }

    #[test]
    fn the_ca_is_made_once_with_a_private_key() {
        let dir = tempfile::tempdir().unwrap();
        let ca_dir = dir.path().join("ca");
        let ca = LocalCa::load_or_create(&ca_dir).unwrap();
        assert_eq!(mode(&ca_dir.join(CA_KEY)), 0o600);
        assert_eq!(mode(&ca_dir), 0o700);
        let again = LocalCa::load_or_create(&ca_dir).unwrap();
        assert_eq!(ca.cert_pem(), again.cert_pem());
        assert!(!format!("{again:?}").contains("PRIVATE"));
    }

    #[test]
    fn a_half_ca_folder_is_an_error_not_a_new_ca() {
        let dir = tempfile::tempdir().unwrap();
        LocalCa::load_or_create(dir.path()).unwrap();
        fs::remove_file(dir.path().join(CA_KEY)).unwrap();
        let err = LocalCa::load_or_create(dir.path()).unwrap_err().to_string();
        assert!(err.contains("remove the folder"), "{err}");
    }

    #[test]
    fn a_leaf_chains_to_the_ca_for_its_hosts_only() {
        let dir = tempfile::tempdir().unwrap();
        let ca = LocalCa::load_or_create(&dir.path().join("ca")).unwrap();
        let leaf_dir = dir.path().join("certs/web");
        let files = ca
            .issue(
                &hosts(&["app.localhost", "*.app.localhost", "127.0.0.1"]),
                &leaf_dir,
            )
            .unwrap();
        assert_eq!(mode(&files.cert), 0o600);
        assert_eq!(mode(&files.key), 0o600);
        let root = ca.cert_pem().as_bytes();
        verify(root, &files.cert, "app.localhost").unwrap();
        verify(root, &files.cert, "api.app.localhost").unwrap();
        verify(root, &files.cert, "127.0.0.1").unwrap();
        assert!(verify(root, &files.cert, "other.localhost").is_err());
        // A CA made elsewhere does not vouch for it.
        let other = LocalCa::load_or_create(&dir.path().join("other")).unwrap();
        assert!(verify(other.cert_pem().as_bytes(), &files.cert, "app.localhost").is_err());
        // The pair on disk belongs together and is valid now.
        check_pair(&files.cert, &files.key, SystemTime::now()).unwrap();
    }

    #[test]
    fn a_leaf_reissued_for_new_hosts_replaces_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let ca = LocalCa::load_or_create(&dir.path().join("ca")).unwrap();
        let leaf_dir = dir.path().join("certs/web");
        let first = ca.issue(&hosts(&["a.localhost"]), &leaf_dir).unwrap();
        let before = fs::read(&first.cert).unwrap();
        let second = ca
            .issue(&hosts(&["a.localhost", "b.localhost"]), &leaf_dir)
            .unwrap();
        assert_eq!(first.cert, second.cert);
        assert_ne!(before, fs::read(&second.cert).unwrap());
        let info = read_cert(&second.cert).unwrap();
        assert!(info.covers_all(&hosts(&["a.localhost", "b.localhost"])));
        verify(ca.cert_pem().as_bytes(), &second.cert, "b.localhost").unwrap();
    }

    #[test]
    fn ensure_reissues_only_for_new_hosts_or_near_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let ca = LocalCa::load_or_create(&dir.path().join("ca")).unwrap();
        let leaf_dir = dir.path().join("certs/web");
        let now = SystemTime::now();
        let day = Duration::from_secs(24 * 3600);
        let a = hosts(&["a.localhost"]);
        assert!(ca.ensure(&a, &leaf_dir, now).unwrap().1, "first: issued");
        assert!(!ca.ensure(&a, &leaf_dir, now).unwrap().1, "fresh: kept");
        assert!(!ca.ensure(&a, &leaf_dir, now + 300 * day).unwrap().1);
        assert!(
            ca.ensure(&a, &leaf_dir, now + 340 * day).unwrap().1,
            "near expiry"
        );
        let ab = hosts(&["a.localhost", "b.localhost"]);
        assert!(ca.ensure(&ab, &leaf_dir, now).unwrap().1, "new host");
        assert!(!ca.ensure(&ab, &leaf_dir, now).unwrap().1);
    }

    #[test]
    fn the_trust_text_names_the_file_and_the_commands() {
        let text = trust_instructions(Path::new("/srv/app/.berth/tls/ca/ca.pem"));
        assert!(text
            .contains("sudo cp /srv/app/.berth/tls/ca/ca.pem /usr/local/share/ca-certificates/"));
        assert!(text.contains("sudo update-ca-certificates"));
        assert!(text.contains("Firefox"));
        assert!(text.contains("Chrome"));
    }
}
