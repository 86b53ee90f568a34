//! The accessory's generated password: made once, kept in a 0600 file, and scrubbed from any
//! text (tool output, logs) before it reaches an error message.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{bail, Context, Result};
use rand::distr::Alphanumeric;
use rand::Rng;

/// Length of a generated password (alphanumerics only, so it needs no quoting anywhere).
pub(crate) const PASSWORD_LEN: usize = 32;

/// What a secret is replaced with by [`redact`].
const MASK: &str = "********";

/// A fresh random password of [`PASSWORD_LEN`] alphanumerics.
pub(crate) fn generate_password() -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(PASSWORD_LEN)
        .map(char::from)
        .collect()
}

/// Reads the password kept in `path`, or generates one and stores it there (mode 0600) when the
/// file does not exist yet. A file readable by others is tightened to 0600.
pub(crate) fn load_or_create(path: &Path) -> Result<String> {
    if let Some(password) = load(path)? {
        tighten(path)?;
        return Ok(password);
    }
    let password = generate_password();
    let mut file = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(file) => file,
        // Lost a race with another writer: use what it stored.
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            return load(path)?.with_context(|| format!("{} is empty", path.display()))
        }
        Err(e) => return Err(e).with_context(|| format!("cannot create {}", path.display())),
    };
    file.write_all(format!("{password}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(password)
}

/// Makes `path` readable by its owner only.
fn tighten(path: &Path) -> Result<()> {
    let mode = fs::metadata(path)
        .with_context(|| format!("cannot inspect {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot restrict the permissions of {}", path.display()))?;
    }
    Ok(())
}

/// The password stored in `path`, `None` when the file does not exist (no side effects).
pub(crate) fn load(path: &Path) -> Result<Option<String>> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let password = text.trim();
    if password.is_empty() {
        bail!(
            "{} is empty; delete it to have a new password generated",
            path.display()
        );
    }
    if !password.bytes().all(|b| b.is_ascii_alphanumeric()) {
        bail!(
            "{} holds characters other than ASCII letters and digits; \
             delete it to have a new password generated",
            path.display()
        );
    }
    Ok(Some(password.to_string()))
}

/// `text` with every occurrence of `secret` masked.
pub(crate) fn redact(text: &str, secret: &str) -> String {
    if secret.is_empty() {
        return text.to_string();
    }
    text.replace(secret, MASK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_passwords_are_long_random_alphanumerics() {
        let a = generate_password();
        let b = generate_password();
        assert_eq!(a.len(), PASSWORD_LEN);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }

    #[test]
    fn password_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("password");
        let first = load_or_create(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load_or_create(&path).unwrap(), first);
        assert_eq!(load(&path).unwrap(), Some(first));
    }

    #[test]
    fn loose_permissions_are_tightened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("password");
        fs::write(&path, "abc123\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(load_or_create(&path).unwrap(), "abc123");
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn missing_empty_and_odd_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("password");
        assert_eq!(load(&path).unwrap(), None);
        fs::write(&path, "\n").unwrap();
        assert!(load(&path).unwrap_err().to_string().contains("is empty"));
        fs::write(&path, "it's").unwrap();
        assert!(load(&path).is_err());
    }

    #[test]
    fn redact_masks_every_occurrence() {
        assert_eq!(redact("a pw b pw", "pw"), "a ******** b ********");
        assert_eq!(redact("nothing", ""), "nothing");
    }
}
