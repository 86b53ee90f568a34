//! TLS in the spec: `[edge] tls_listen`, `hsts` and `redirect_https`, the `[[certificate]]`
//! tables (files, ACME or the local development CA) and `[acme]`. Read key by key with
//! diagnostics at the value; certificate files must exist when the spec is loaded.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::raw::{Located, RawSpec};
use crate::report::Problems;

/// Let's Encrypt's production directory, the default `[acme] directory`.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// The default `hsts`: a year, the value the references' security guides use.
pub const DEFAULT_HSTS: &str = "max-age=31536000";

/// TLS on the edge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TlsSpec {
    /// `[edge] tls_listen`: the TLS listeners (none: no TLS).
    pub listen: Vec<SocketAddr>,
    pub certificates: Vec<CertificateSpec>,
    pub acme: AcmeSpec,
    /// `Strict-Transport-Security` sent over TLS for hosts with a certificate; `""` turns it
    /// off.
    pub hsts: Option<String>,
    /// Plain requests for a host with a certificate are redirected to HTTPS (301).
    pub redirect_https: bool,
}

impl Default for TlsSpec {
    fn default() -> Self {
        Self {
            listen: Vec::new(),
            certificates: Vec::new(),
            acme: AcmeSpec::default(),
            hsts: Some(DEFAULT_HSTS.to_string()),
            redirect_https: true,
        }
    }
}

/// One `[[certificate]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateSpec {
    /// Host names it serves (`*.example.com` for subdomains; not with ACME's HTTP-01).
    pub hosts: Vec<String>,
    pub source: CertificateSource,
}

/// Where a certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertificateSource {
    /// PEM files (absolute paths), reloaded when they change.
    Files { cert: PathBuf, key: PathBuf },
    /// Issued and renewed by ACME (`[acme]`).
    Acme,
    /// Issued by Berth's local development CA.
    Local,
}

/// `[acme]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AcmeSpec {
    /// The ACME directory URL (RFC 8555).
    pub directory: String,
    /// The account's contact address.
    pub email: Option<String>,
    /// An extra root certificate to trust for the ACME server's own HTTPS (a private or test
    /// ACME server); absolute.
    pub ca: Option<PathBuf>,
}

impl Default for AcmeSpec {
    fn default() -> Self {
        Self {
            directory: LETS_ENCRYPT.to_string(),
            email: None,
            ca: None,
        }
    }
}

/// `[[certificate]]` as written.
#[derive(Debug, Clone)]
pub(crate) struct RawCertificate {
    pub hosts: Vec<Located<String>>,
    pub cert: Option<Located<String>>,
    pub key: Option<Located<String>>,
    pub acme: bool,
    pub local: bool,
}

/// `[acme]` as written.
#[derive(Debug, Clone, Default)]
pub(crate) struct RawAcme {
    pub directory: Option<String>,
    pub email: Option<String>,
    pub ca: Option<Located<String>>,
}

/// Checks what needs the file system: certificate files and the ACME root exist; and that TLS
/// listeners have certificates.
pub(crate) fn check_tls(raw: &RawSpec, folder: &Path, problems: &mut Problems) {
    for certificate in &raw.certificates {
        for file in [&certificate.cert, &certificate.key].into_iter().flatten() {
            if !folder.join(&file.value).is_file() {
                problems.push(
                    file.span.clone(),
                    format!("no file \"{}\"", file.value),
                    Some("paths are relative to the folder of berth.toml".into()),
                );
            }
        }
    }
    if let Some(ca) = &raw.acme.ca {
        if !folder.join(&ca.value).is_file() {
            problems.push(
                ca.span.clone(),
                format!("no file \"{}\"", ca.value),
                Some("paths are relative to the folder of berth.toml".into()),
            );
        }
    }
    if let Some(listen) = &raw.tls_listen {
        if !listen.value.is_empty() && raw.certificates.is_empty() {
            problems.push(
                listen.span.clone(),
                "`edge.tls_listen` is set but no [[certificate]] is declared",
                Some(r#"add one, e.g. [[certificate]] hosts = ["localhost"] local = true"#.into()),
            );
        }
    }
}

/// The effective TLS settings.
pub(crate) fn build(raw: &RawSpec, folder: &Path) -> TlsSpec {
    let defaults = TlsSpec::default();
    TlsSpec {
        listen: raw
            .tls_listen
            .as_ref()
            .map(|l| l.value.clone())
            .unwrap_or_default(),
        certificates: raw
            .certificates
            .iter()
            .map(|c| CertificateSpec {
                hosts: c.hosts.iter().map(|h| h.value.clone()).collect(),
                source: match (&c.cert, &c.key) {
                    (Some(cert), Some(key)) => CertificateSource::Files {
                        cert: folder.join(&cert.value),
                        key: folder.join(&key.value),
                    },
                    _ if c.acme => CertificateSource::Acme,
                    _ => CertificateSource::Local,
                },
            })
            .collect(),
        acme: AcmeSpec {
            directory: raw
                .acme
                .directory
                .clone()
                .unwrap_or_else(|| LETS_ENCRYPT.to_string()),
            email: raw.acme.email.clone(),
            ca: raw.acme.ca.as_ref().map(|ca| folder.join(&ca.value)),
        },
        hsts: match &raw.hsts {
            Some(text) if text.is_empty() => None,
            Some(text) => Some(text.clone()),
            None => defaults.hsts,
        },
        redirect_https: raw.redirect_https.unwrap_or(defaults.redirect_https),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_acme_and_defaults_are_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tls")).unwrap();
        std::fs::write(dir.path().join("tls/shop.pem"), "x").unwrap();
        std::fs::write(dir.path().join("tls/shop.key"), "x").unwrap();
        let file = dir.path().join("berth.toml");
        let source = r#"
[edge]
tls_listen = ["127.0.0.1:8443"]
hsts = ""

[[certificate]]
hosts = ["Shop.example.com", "*.shop.example.com"]
cert = "tls/shop.pem"
key = "tls/shop.key"

[[certificate]]
hosts = ["api.example.com"]
acme = true

[[certificate]]
hosts = ["localhost"]
local = true

[acme]
email = "ops@example.com"

[service.web]
run = "python3 app.py"
port = "auto"
"#;
        let spec = crate::parse(&file, source, None).unwrap();
        let tls = &spec.tls;
        assert_eq!(tls.listen, vec!["127.0.0.1:8443".parse().unwrap()]);
        assert_eq!(tls.hsts, None, "an empty hsts turns it off");
        assert!(tls.redirect_https);
        assert_eq!(tls.certificates.len(), 3);
        assert_eq!(
            tls.certificates[0].hosts,
            vec!["shop.example.com", "*.shop.example.com"]
        );
        let folder = dir.path().canonicalize().unwrap();
        assert_eq!(
            tls.certificates[0].source,
            CertificateSource::Files {
                cert: folder.join("tls/shop.pem"),
                key: folder.join("tls/shop.key"),
            }
        );
        assert_eq!(tls.certificates[1].source, CertificateSource::Acme);
        assert_eq!(tls.certificates[2].source, CertificateSource::Local);
        assert_eq!(tls.acme.directory, LETS_ENCRYPT);
        assert_eq!(tls.acme.email.as_deref(), Some("ops@example.com"));

        let plain = crate::parse(&file, "[service.web]\nrun = \"x\"\n", None).unwrap();
        assert!(plain.tls.listen.is_empty() && plain.tls.certificates.is_empty());
        assert_eq!(plain.tls.hsts.as_deref(), Some(DEFAULT_HSTS));
    }
}
