//! Files of the state directory: private folders, atomic 0600 writes, and what a certificate
//! file on disk says about itself (names, validity, whether the key file belongs to it).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{Result, TlsError};

/// Creates `dir` (and its parents) with mode 0700 for the folders this crate creates.
pub(crate) fn private_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| TlsError::io("create folder", dir, e))
}

/// Writes `contents` to `path` with mode 0600: first to a temporary name in the same folder
/// (synced), then renamed over `path`, so a reader sees the old file or the new one, never half
/// of one.
pub(crate) fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    let tmp = temp_name(path);
    let written = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        // The mode of `open` applies only when the file is created; a leftover temporary file
        // from a crash could have other bits.
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    written.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        TlsError::io("write", path, e)
    })
}

fn temp_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// What a certificate file says about itself: the first certificate of the PEM file (the leaf).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// DNS names and IP addresses of the subject alternative names, as written.
    pub names: Vec<String>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl CertInfo {
    /// Whether the certificate names `host` (exactly, or by a `*.` wildcard one label deep).
    pub fn covers(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.names.iter().any(|name| {
            let name = name.to_ascii_lowercase();
            if name == host {
                return true;
            }
            match (name.strip_prefix("*."), host.split_once('.')) {
                (Some(suffix), Some((label, rest))) => !label.is_empty() && rest == suffix,
                _ => false,
            }
        })
    }

    /// Whether the certificate names every one of `hosts`.
    pub fn covers_all(&self, hosts: &[String]) -> bool {
        hosts.iter().all(|h| self.covers(h))
    }

    /// The certificate's validity, for the renewal policy.
    pub fn validity(&self) -> crate::policy::Validity {
        crate::policy::Validity {
            not_before: self.not_before,
            not_after: self.not_after,
        }
    }
}

/// Reads the leaf certificate of a PEM file.
pub fn read_cert(path: &Path) -> Result<CertInfo> {
    let pem = fs::read(path).map_err(|e| TlsError::io("read", path, e))?;
    let der = first_cert(&pem).ok_or_else(|| bad(path, "no PEM certificate in the file"))?;
    cert_info(&der).map_err(|reason| bad(path, &reason))
}

fn first_cert(pem: &[u8]) -> Option<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem).next()?.ok()
}

fn bad(path: &Path, reason: &str) -> TlsError {
    TlsError::BadFile {
        path: path.to_path_buf(),
        reason: reason.to_owned(),
    }
}

pub(crate) fn cert_info(der: &[u8]) -> Result<CertInfo, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::DNSName(dns) => names.push(dns.to_string()),
                x509_parser::extensions::GeneralName::IPAddress(ip) => {
                    if let Some(ip) = ip_from_bytes(ip) {
                        names.push(ip.to_string());
                    }
                }
                _ => {}
            }
        }
    }
    let validity = cert.validity();
    Ok(CertInfo {
        names,
        not_before: system_time(validity.not_before.timestamp()),
        not_after: system_time(validity.not_after.timestamp()),
    })
}

fn ip_from_bytes(bytes: &[u8]) -> Option<std::net::IpAddr> {
    match bytes.len() {
        4 => Some(<[u8; 4]>::try_from(bytes).ok()?.into()),
        16 => Some(<[u8; 16]>::try_from(bytes).ok()?.into()),
        _ => None,
    }
}

fn system_time(unix: i64) -> SystemTime {
    if unix >= 0 {
        UNIX_EPOCH + Duration::from_secs(unix as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(unix.unsigned_abs())
    }
}

/// Reads a certificate and its key file and checks that they belong together and that the
/// certificate has not expired at `now`: what Berth wrote itself must pass this before it is served.
pub fn check_pair(cert: &Path, key: &Path, now: SystemTime) -> Result<CertInfo> {
    let pem = fs::read(cert).map_err(|e| TlsError::io("read", cert, e))?;
    let der = first_cert(&pem).ok_or_else(|| bad(cert, "no PEM certificate in the file"))?;
    let info = cert_info(&der).map_err(|reason| bad(cert, &reason))?;
    if now >= info.not_after {
        return Err(bad(cert, "the certificate has expired"));
    }
    // A `not_before` a little after `now` is normal right after issuance (pebble does not
    // backdate, and the caller's `now` may predate the tick that issued): not a reason to
    // withhold a certificate.
    let key_pem = fs::read(key).map_err(|e| TlsError::io("read", key, e))?;
    // Never put the key's bytes or a parser message quoting them into an error.
    let key_der =
        PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| bad(key, "no PEM private key"))?;
    let pair = rcgen::KeyPair::try_from(&key_der)
        .map_err(|_| bad(key, "the private key cannot be loaded"))?;
    let (_, parsed) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| bad(cert, &format!("not an X.509 certificate: {e}")))?;
    if parsed.public_key().subject_public_key.data.as_ref() != pair.public_key_raw() {
        return Err(bad(
            key,
            "the private key does not belong to the certificate",
        ));
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_private_is_0600_and_replaces_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        write_private(&path, b"one").unwrap();
        write_private(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn wildcards_cover_one_label() {
        let info = CertInfo {
            names: vec!["*.example.test".into(), "example.test".into()],
            not_before: UNIX_EPOCH,
            not_after: UNIX_EPOCH,
        };
        assert!(info.covers("a.example.test"));
        assert!(info.covers("EXAMPLE.test"));
        assert!(!info.covers("a.b.example.test"));
        assert!(!info.covers("other.test"));
    }
}
