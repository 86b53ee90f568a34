//! The master key: 32 random bytes, written as 64 hex digits, from `BERTH_MASTER_KEY` or the
//! 0600 file `master.key` in the stack's state folder (created on the first `set`).

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::{Result, SecretsError};

/// The environment variable that may hold the master key (64 hex digits).
pub const MASTER_KEY_ENV: &str = "BERTH_MASTER_KEY";

/// The key file's name in the state folder (`.berth/`).
const KEY_FILE: &str = "master.key";

/// The key that seals a stack's secrets. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey {
    bytes: [u8; 32],
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey(id {})", hex::encode(self.id()))
    }
}

impl MasterKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        Self { bytes }
    }

    /// Reads a key written as 64 hex digits (surrounding whitespace ignored).
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        let decoded = hex::decode(text).map_err(|_| {
            SecretsError::BadKey(format!(
                "expected 64 hex digits (32 bytes), got {} characters that are not all hex",
                text.len()
            ))
        })?;
        let bytes: [u8; 32] = decoded.try_into().map_err(|d: Vec<u8>| {
            SecretsError::BadKey(format!(
                "expected 32 bytes (64 hex digits), got {}",
                d.len()
            ))
        })?;
        Ok(Self { bytes })
    }

    /// The key as 64 hex digits (to copy it somewhere safe).
    pub fn to_hex(&self) -> String {
        hex::encode(self.bytes)
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// A short public fingerprint that tells a wrong key from a damaged file.
    pub(crate) fn id(&self) -> [u8; 8] {
        let digest = Sha256::new()
            .chain_update(b"berth master key id\0")
            .chain_update(self.bytes)
            .finalize();
        digest[..8].try_into().expect("8 bytes")
    }

    /// The key file in the state folder `root` (`.berth/`).
    pub fn file(root: &Path) -> PathBuf {
        root.join(KEY_FILE)
    }

    /// The key from `BERTH_MASTER_KEY`, else from `root/master.key`; `None` when neither is set.
    pub fn load(root: &Path) -> Result<Option<Self>> {
        if let Some(value) = std::env::var_os(MASTER_KEY_ENV) {
            let value = value.to_string_lossy();
            return Self::parse(&value)
                .map(Some)
                .map_err(|e| SecretsError::BadKey(format!("{MASTER_KEY_ENV}: {e}")));
        }
        let path = Self::file(root);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(SecretsError::io(&path, e)),
        };
        tighten(&path)?;
        Self::parse(&text)
            .map(Some)
            .map_err(|e| SecretsError::BadKey(format!("{}: {e}", path.display())))
    }

    /// Like [`MasterKey::load`], but creates `root/master.key` (mode 0600) with a new key when
    /// there is none.
    pub fn load_or_create(root: &Path) -> Result<Self> {
        if let Some(key) = Self::load(root)? {
            return Ok(key);
        }
        fs::create_dir_all(root).map_err(|e| SecretsError::io(root, e))?;
        let path = Self::file(root);
        let key = Self::generate();
        let mut file = match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(file) => file,
            // Another process made one first: use it.
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                return Self::load(root)?
                    .ok_or_else(|| SecretsError::BadKey(format!("{} vanished", path.display())))
            }
            Err(e) => return Err(SecretsError::io(&path, e)),
        };
        file.write_all(format!("{}\n", key.to_hex()).as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| SecretsError::io(&path, e))?;
        crate::store::sync_dir(root);
        Ok(key)
    }
}

/// Makes the key file readable by its owner only.
fn tighten(path: &Path) -> Result<()> {
    let mode = fs::metadata(path)
        .map_err(|e| SecretsError::io(path, e))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))
            .map_err(|e| SecretsError::io(path, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_debug_shows_no_key() {
        let key = MasterKey::generate();
        assert_eq!(MasterKey::parse(&key.to_hex()).unwrap(), key);
        assert!(!format!("{key:?}").contains(&key.to_hex()));
        assert_ne!(MasterKey::generate(), key);
    }

    #[test]
    fn bad_keys_are_explained() {
        let e = MasterKey::parse("abc").unwrap_err().to_string();
        assert!(e.contains("64 hex digits"), "{e}");
        let e = MasterKey::parse("zz").unwrap_err().to_string();
        assert!(e.contains("hex"), "{e}");
    }

    #[test]
    fn the_key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        // The variable would win over the file; this test is about the file.
        if std::env::var_os(MASTER_KEY_ENV).is_some() {
            return;
        }
        assert!(MasterKey::load(dir.path()).unwrap().is_none());
        let key = MasterKey::load_or_create(dir.path()).unwrap();
        let mode = fs::metadata(MasterKey::file(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(MasterKey::load_or_create(dir.path()).unwrap(), key);
    }
}
