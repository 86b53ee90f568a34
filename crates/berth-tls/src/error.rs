//! The crate's one error type. Messages name the file or the ACME step and never carry key
//! material: private keys and the account key are only ever written to their 0600 files.

use std::path::PathBuf;

/// Everything that can go wrong while loading, issuing or storing a certificate.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file or folder of the state directory could not be read or written.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A certificate or key file exists but is not usable (not PEM, expired, key does not
    /// match the certificate, ...).
    #[error("{}: {reason}", path.display())]
    BadFile { path: PathBuf, reason: String },
    /// Key or certificate generation failed (rcgen).
    #[error("cannot generate {what}: {source}")]
    Generate {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },
    /// An ACME request failed: the step names what was being done.
    #[error("acme {step}: {source}")]
    Acme {
        step: &'static str,
        #[source]
        source: instant_acme::Error,
    },
    /// The ACME server refused to validate a host (the reason is the server's problem text).
    #[error("acme validation of {host} failed: {reason}")]
    Validation { host: String, reason: String },
    /// The challenge sink could not publish an HTTP-01 answer, so the server was not asked to
    /// validate (that would count as a failed validation against the account's rate limit).
    #[error("cannot publish the acme challenge for {host}: {reason}")]
    Publish { host: String, reason: String },
    /// The whole issuance took longer than allowed.
    #[error("acme issuance for {hosts} did not finish within {seconds} s")]
    Timeout { hosts: String, seconds: u64 },
    /// A desired certificate is not well formed (no hosts, a name that cannot be a folder).
    #[error("certificate {name:?}: {reason}")]
    Invalid { name: String, reason: String },
}

impl TlsError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        TlsError::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn generate(what: &'static str) -> impl FnOnce(rcgen::Error) -> Self {
        move |source| TlsError::Generate { what, source }
    }

    pub(crate) fn acme(step: &'static str) -> impl FnOnce(instant_acme::Error) -> Self {
        move |source| TlsError::Acme { step, source }
    }
}

pub type Result<T, E = TlsError> = std::result::Result<T, E>;
