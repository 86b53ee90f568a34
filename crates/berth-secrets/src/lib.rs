//! Secrets: an encrypted, versioned store of named values per stack environment.
//!
//! ```text
//! .berth/master.key          the master key (32 random bytes, hex, mode 0600), unless
//!                            BERTH_MASTER_KEY holds it
//! .berth/ENV/secrets.enc     the environment's secrets: every version of every value, and the
//!                            versions each release pinned; one AES-256-GCM sealed document
//! .berth/ENV/secrets.lock    serialises read-modify-write between Berth processes
//! ```
//!
//! Every `set` adds a version; `rm` adds a tombstone, so history and the versions a release
//! pinned stay readable (a rollback returns to the old values). Writes go to a temporary file
//! that is fsynced and renamed over the old one, so a crash leaves the old or the new store,
//! never half of one. A wrong key or a tampered file is an error that changes nothing.
//!
//! This crate never prints, logs or formats a value: [`Version`]'s `Debug` hides it, and no
//! error message carries one. It knows nothing of services' processes, the daemon or the API.

pub mod api;
mod cipher;
mod document;
mod key;
mod store;

pub use document::{
    accessory_password_name, validate_name, Pins, SecretInfo, Secrets, Version, VersionInfo,
};
pub use key::{MasterKey, MASTER_KEY_ENV};
pub use store::SecretStore;

/// What can go wrong with the secrets store. No variant ever carries a secret value.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("{path}: the master key does not match the one this file was written with (check BERTH_MASTER_KEY or .berth/master.key); nothing was changed")]
    WrongKey { path: String },
    #[error("{path}: the file is damaged or was tampered with (authentication failed); nothing was changed — restore it from a backup")]
    Tampered { path: String },
    #[error("{path} holds encrypted secrets but there is no master key: set {env} or put the key back in {key_file}", env = MASTER_KEY_ENV)]
    NoKey { path: String, key_file: String },
    #[error("bad master key: {0}")]
    BadKey(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{0}` is not a valid secret name: use letters, digits and `_`, starting with a letter or `_` (like an environment variable), at most 128 characters")]
    BadName(String),
    #[error("no secret `{0}` (see `berth secrets list`)")]
    NotFound(String),
    #[error("secret `{name}` has no version {version} (see `berth secrets history {name}`)")]
    NoVersion { name: String, version: u32 },
    #[error("{0}")]
    Format(String),
}

impl SecretsError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        SecretsError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

pub type Result<T, E = SecretsError> = std::result::Result<T, E>;
