//! [`SecretStore`]: the sealed file of one environment, read whole and replaced whole
//! (temporary file, fsync, rename, fsync of the folder) under an exclusive lock.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::{cipher, MasterKey, Result, Secrets, SecretsError};

/// The secrets of one stack environment.
#[derive(Debug, Clone)]
pub struct SecretStore {
    /// `.berth/`: where `master.key` lives.
    root: PathBuf,
    file: PathBuf,
    lock: PathBuf,
    environment: String,
}

impl SecretStore {
    /// The store of `environment`, kept in `env_dir` (`.berth/ENV/`), keyed from `root`
    /// (`.berth/`) or `BERTH_MASTER_KEY`.
    pub fn new(root: &Path, env_dir: &Path, environment: &str) -> Self {
        Self {
            root: root.to_path_buf(),
            file: env_dir.join("secrets.enc"),
            lock: env_dir.join("secrets.lock"),
            environment: environment.to_string(),
        }
    }

    /// The sealed file.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Decrypts the store; an empty one when the file does not exist yet.
    pub fn read(&self) -> Result<Secrets> {
        match self.read_bytes()? {
            None => Ok(Secrets::default()),
            Some(bytes) => {
                let key = self.existing_key()?;
                self.decode(&key, &bytes)
            }
        }
    }

    /// Reads, changes with `change` and writes back the store, holding the lock throughout.
    /// When `change` fails nothing is written. The master key is created on the first write.
    pub fn update<T>(&self, change: impl FnOnce(&mut Secrets) -> Result<T>) -> Result<T> {
        let _lock = self.lock()?;
        let (key, mut secrets) = match self.read_bytes()? {
            Some(bytes) => {
                let key = self.existing_key()?;
                let secrets = self.decode(&key, &bytes)?;
                (key, secrets)
            }
            None => (MasterKey::load_or_create(&self.root)?, Secrets::default()),
        };
        let outcome = change(&mut secrets)?;
        let plain = serde_json::to_vec(&secrets)
            .map_err(|e| SecretsError::Format(format!("cannot encode the secrets: {e}")))?;
        self.write_atomically(&cipher::seal(&key, &self.environment, &plain))?;
        Ok(outcome)
    }

    fn existing_key(&self) -> Result<MasterKey> {
        MasterKey::load(&self.root)?.ok_or_else(|| SecretsError::NoKey {
            path: self.file.display().to_string(),
            key_file: MasterKey::file(&self.root).display().to_string(),
        })
    }

    fn read_bytes(&self) -> Result<Option<Vec<u8>>> {
        match fs::read(&self.file) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(SecretsError::io(&self.file, e)),
        }
    }

    fn decode(&self, key: &MasterKey, bytes: &[u8]) -> Result<Secrets> {
        let plain = cipher::open(key, &self.environment, bytes, &self.file)?;
        serde_json::from_slice(&plain).map_err(|e| {
            SecretsError::Format(format!(
                "{}: decrypted but not readable ({e}); restore it from a backup",
                self.file.display()
            ))
        })
    }

    fn lock(&self) -> Result<Flock<File>> {
        if let Some(dir) = self.lock.parent() {
            fs::create_dir_all(dir).map_err(|e| SecretsError::io(dir, e))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&self.lock)
            .map_err(|e| SecretsError::io(&self.lock, e))?;
        Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, errno)| SecretsError::io(&self.lock, errno.into()))
    }

    fn write_atomically(&self, bytes: &[u8]) -> Result<()> {
        let dir = self.file.parent().unwrap_or(Path::new("."));
        let temp = dir.join(format!(".secrets.enc.{}.tmp", std::process::id()));
        let result = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&temp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            fs::rename(&temp, &self.file)
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&temp);
            return Err(SecretsError::io(&self.file, e));
        }
        sync_dir(dir);
        Ok(())
    }
}

/// Makes a rename or a new file in `dir` durable (best effort: some file systems refuse).
pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn store(dir: &Path) -> SecretStore {
        SecretStore::new(dir, &dir.join("default"), "default")
    }

    #[test]
    fn values_survive_a_reopen_and_are_not_in_the_file() {
        if std::env::var_os(crate::MASTER_KEY_ENV).is_some() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        assert!(s.read().unwrap().list().is_empty());
        s.update(|x| Ok(x.set("TOKEN", "s3cr3t-token-value", false, 1)))
            .unwrap();
        let raw = fs::read(s.file()).unwrap();
        assert!(!raw.windows(5).any(|w| w == b"s3cr3"));
        let mode = fs::metadata(s.file()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = store(dir.path()).read().unwrap();
        assert_eq!(
            again.current("TOKEN").unwrap().value(),
            Some("s3cr3t-token-value")
        );
    }

    #[test]
    fn a_wrong_key_or_a_flipped_byte_changes_nothing() {
        if std::env::var_os(crate::MASTER_KEY_ENV).is_some() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        s.update(|x| Ok(x.set("A", "1", false, 1))).unwrap();
        let good = fs::read(s.file()).unwrap();

        // Another key.
        let key_file = MasterKey::file(dir.path());
        let real_key = fs::read_to_string(&key_file).unwrap();
        fs::write(&key_file, MasterKey::generate().to_hex()).unwrap();
        let e = s.update(|x| Ok(x.set("A", "2", false, 2))).unwrap_err();
        assert!(matches!(e, SecretsError::WrongKey { .. }), "{e}");
        assert!(e.to_string().contains("nothing was changed"), "{e}");
        assert_eq!(fs::read(s.file()).unwrap(), good);
        fs::write(&key_file, real_key).unwrap();

        // A flipped byte.
        let mut bad = good.clone();
        let last = bad.len() - 20;
        bad[last] ^= 0x40;
        fs::write(s.file(), &bad).unwrap();
        let e = s.read().unwrap_err();
        assert!(matches!(e, SecretsError::Tampered { .. }), "{e}");
        assert!(s.update(|x| Ok(x.set("A", "3", false, 3))).is_err());
        assert_eq!(fs::read(s.file()).unwrap(), bad);

        // No key at all.
        fs::write(s.file(), &good).unwrap();
        fs::remove_file(&key_file).unwrap();
        let e = s.read().unwrap_err();
        assert!(matches!(e, SecretsError::NoKey { .. }), "{e}");
        assert!(s.update(|x| Ok(x.set("A", "4", false, 4))).is_err());
        assert!(
            !key_file.exists(),
            "a new key was made for an existing store"
        );
    }

    #[test]
    fn a_failed_change_writes_nothing() {
        if std::env::var_os(crate::MASTER_KEY_ENV).is_some() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        s.update(|x| Ok(x.set("A", "1", false, 1))).unwrap();
        let before = fs::read(s.file()).unwrap();
        let e = s.update(|x| x.remove("MISSING", 2)).unwrap_err();
        assert!(matches!(e, SecretsError::NotFound(_)));
        assert_eq!(fs::read(s.file()).unwrap(), before);
        let leftovers: Vec<_> = fs::read_dir(dir.path().join("default"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }
}
