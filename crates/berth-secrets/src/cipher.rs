//! The sealed file format: `BERTHSEC` | format (1 byte) | key id (8) | nonce (12) | AES-256-GCM
//! ciphertext and tag. The header and the environment's name are authenticated as associated
//! data, so a file copied from another environment or with an edited header is refused too.

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, Key, KeyInit, Nonce};
use rand::RngCore;

use crate::{MasterKey, Result, SecretsError};

const MAGIC: &[u8; 8] = b"BERTHSEC";
const FORMAT: u8 = 1;
const HEADER_LEN: usize = 8 + 1 + 8 + 12;

/// Encrypts `plain` for environment `environment` with a fresh random nonce.
pub(crate) fn seal(key: &MasterKey, environment: &str, plain: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; 12];
    rand::rng().fill_bytes(&mut nonce);
    let mut out = Vec::with_capacity(HEADER_LEN + plain.len() + 16);
    out.extend_from_slice(MAGIC);
    out.push(FORMAT);
    out.extend_from_slice(&key.id());
    out.extend_from_slice(&nonce);
    let aad = associated_data(&out, environment);
    let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key.bytes()));
    let sealed = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plain,
                aad: &aad,
            },
        )
        .expect("AES-GCM encryption of an in-memory buffer cannot fail");
    out.extend_from_slice(&sealed);
    out
}

/// Decrypts a sealed file's bytes; `path` only names the file in errors.
pub(crate) fn open(
    key: &MasterKey,
    environment: &str,
    bytes: &[u8],
    path: &std::path::Path,
) -> Result<Vec<u8>> {
    let path_text = || path.display().to_string();
    if bytes.len() < HEADER_LEN + 16 || &bytes[..8] != MAGIC {
        return Err(SecretsError::Tampered { path: path_text() });
    }
    if bytes[8] != FORMAT {
        return Err(SecretsError::Format(format!(
            "{}: written by a newer Berth (format {}); upgrade Berth to read it",
            path.display(),
            bytes[8]
        )));
    }
    if bytes[9..17] != key.id() {
        return Err(SecretsError::WrongKey { path: path_text() });
    }
    let header = &bytes[..HEADER_LEN];
    let aad = associated_data(header, environment);
    let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key.bytes()));
    cipher
        .decrypt(
            Nonce::from_slice(&bytes[17..HEADER_LEN]),
            Payload {
                msg: &bytes[HEADER_LEN..],
                aad: &aad,
            },
        )
        .map_err(|_| SecretsError::Tampered { path: path_text() })
}

fn associated_data(header: &[u8], environment: &str) -> Vec<u8> {
    let mut aad = header.to_vec();
    aad.extend_from_slice(b"\0env=");
    aad.extend_from_slice(environment.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn sealed_text_opens_with_the_same_key_and_environment_only() {
        let key = MasterKey::generate();
        let sealed = seal(&key, "prod", b"hello secret");
        assert!(!sealed.windows(12).any(|w| w == b"hello secret"));
        let path = Path::new("s.enc");
        assert_eq!(open(&key, "prod", &sealed, path).unwrap(), b"hello secret");
        assert!(matches!(
            open(&MasterKey::generate(), "prod", &sealed, path),
            Err(SecretsError::WrongKey { .. })
        ));
        assert!(matches!(
            open(&key, "staging", &sealed, path),
            Err(SecretsError::Tampered { .. })
        ));
    }

    #[test]
    fn any_flipped_bit_is_detected() {
        let key = MasterKey::generate();
        let sealed = seal(&key, "e", b"value");
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(open(&key, "e", &bad, Path::new("x")).is_err(), "byte {i}");
        }
        assert!(open(&key, "e", &sealed[..10], Path::new("x")).is_err());
    }
}
