//! The decrypted document: every version of every secret, and the versions each release pinned.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Result, SecretsError};

/// The versions of secrets a release runs with: name → version.
pub type Pins = BTreeMap<String, u32>;

/// All secrets of one environment, decrypted.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Secrets {
    #[serde(default)]
    secrets: BTreeMap<String, Secret>,
    /// service → release → pinned versions.
    #[serde(default)]
    pins: BTreeMap<String, BTreeMap<String, Pins>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Secret {
    versions: Vec<Version>,
}

/// One version of a secret. `Debug` hides the value.
#[derive(Clone, Serialize, Deserialize)]
pub struct Version {
    pub version: u32,
    /// Unix seconds.
    pub created_at: i64,
    /// `None`: the secret was removed in this version (a tombstone).
    value: Option<String>,
    /// Injected as a file (`NAME_FILE` points at it) instead of the variable `NAME`.
    #[serde(default)]
    pub as_file: bool,
}

impl std::fmt::Debug for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Version")
            .field("version", &self.version)
            .field("created_at", &self.created_at)
            .field("removed", &self.value.is_none())
            .field("as_file", &self.as_file)
            .finish_non_exhaustive()
    }
}

impl Version {
    /// The value; `None` for a removal.
    pub fn value(&self) -> Option<&str> {
        self.value.as_deref()
    }
}

/// What `berth secrets list` shows of a secret: never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretInfo {
    pub name: String,
    pub version: u32,
    pub updated_at: i64,
    pub versions: u32,
    pub as_file: bool,
}

/// One line of `berth secrets history NAME`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    pub version: u32,
    pub created_at: i64,
    pub removed: bool,
    pub as_file: bool,
    /// Releases that run with this version (`SERVICE@RELEASE`).
    pub pinned_by: Vec<String>,
}

/// The name under which Berth keeps an accessory's generated password.
pub fn accessory_password_name(accessory: &str) -> String {
    format!("accessory.{accessory}.password")
}

/// Checks a user-chosen secret name: like an environment variable (the accessories' own
/// `accessory.NAME.password` names are not accepted here).
pub fn validate_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let ok = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 128;
    if ok {
        Ok(())
    } else {
        Err(SecretsError::BadName(name.to_string()))
    }
}

impl Secrets {
    /// Adds a version of `name` holding `value`; returns its number.
    pub fn set(&mut self, name: &str, value: &str, as_file: bool, now: i64) -> u32 {
        let secret = self
            .secrets
            .entry(name.to_string())
            .or_insert_with(|| Secret {
                versions: Vec::new(),
            });
        let version = secret.versions.last().map_or(1, |v| v.version + 1);
        secret.versions.push(Version {
            version,
            created_at: now,
            value: Some(value.to_string()),
            as_file,
        });
        version
    }

    /// Removes `name` (a tombstone version: history and pinned versions stay readable).
    pub fn remove(&mut self, name: &str, now: i64) -> Result<u32> {
        if self.current(name).is_none() {
            return Err(SecretsError::NotFound(name.to_string()));
        }
        let secret = self.secrets.get_mut(name).expect("current() found it");
        let version = secret.versions.last().map_or(1, |v| v.version + 1);
        secret.versions.push(Version {
            version,
            created_at: now,
            value: None,
            as_file: false,
        });
        Ok(version)
    }

    /// The newest version of `name`, unless it was removed.
    pub fn current(&self, name: &str) -> Option<&Version> {
        self.secrets
            .get(name)?
            .versions
            .last()
            .filter(|v| v.value.is_some())
    }

    /// Whether `name` exists now.
    pub fn contains(&self, name: &str) -> bool {
        self.current(name).is_some()
    }

    /// Version `version` of `name`.
    pub fn version(&self, name: &str, version: u32) -> Result<&Version> {
        let secret = self
            .secrets
            .get(name)
            .ok_or_else(|| SecretsError::NotFound(name.to_string()))?;
        secret
            .versions
            .iter()
            .find(|v| v.version == version)
            .ok_or_else(|| SecretsError::NoVersion {
                name: name.to_string(),
                version,
            })
    }

    /// The secrets that exist now, by name.
    pub fn list(&self) -> Vec<SecretInfo> {
        self.secrets
            .iter()
            .filter_map(|(name, secret)| {
                let last = secret.versions.last().filter(|v| v.value.is_some())?;
                Some(SecretInfo {
                    name: name.clone(),
                    version: last.version,
                    updated_at: last.created_at,
                    versions: secret.versions.len() as u32,
                    as_file: last.as_file,
                })
            })
            .collect()
    }

    /// Every version of `name`, oldest first (removed secrets included).
    pub fn history(&self, name: &str) -> Result<Vec<VersionInfo>> {
        let secret = self
            .secrets
            .get(name)
            .ok_or_else(|| SecretsError::NotFound(name.to_string()))?;
        Ok(secret
            .versions
            .iter()
            .map(|v| VersionInfo {
                version: v.version,
                created_at: v.created_at,
                removed: v.value.is_none(),
                as_file: v.as_file,
                pinned_by: self
                    .pins
                    .iter()
                    .flat_map(|(service, releases)| {
                        releases
                            .iter()
                            .filter(|(_, pins)| pins.get(name) == Some(&v.version))
                            .map(move |(release, _)| format!("{service}@{release}"))
                    })
                    .collect(),
            })
            .collect())
    }

    /// The versions `release` of `service` pinned, if it pinned any yet.
    pub fn pins(&self, service: &str, release: &str) -> Option<&Pins> {
        self.pins.get(service)?.get(release)
    }

    /// Pins the current versions of `names` for `release` of `service` (replacing what it
    /// pinned before). Fails, pinning nothing, when one of them does not exist.
    pub fn pin(&mut self, service: &str, release: &str, names: &[String]) -> Result<Pins> {
        let mut pins = Pins::new();
        for name in names {
            let version = self
                .current(name)
                .ok_or_else(|| SecretsError::NotFound(name.clone()))?;
            pins.insert(name.clone(), version.version);
        }
        self.pins
            .entry(service.to_string())
            .or_default()
            .insert(release.to_string(), pins.clone());
        Ok(pins)
    }

    /// The versions `release` of `service` runs with: those it pinned, plus the current
    /// version of each of `names` it has not pinned yet (which are then pinned). Fails, changing
    /// nothing, when one of them is neither pinned nor exists.
    pub fn pin_missing(&mut self, service: &str, release: &str, names: &[String]) -> Result<Pins> {
        let mut pins = self.pins(service, release).cloned().unwrap_or_default();
        for name in names {
            if !pins.contains_key(name) {
                let version = self
                    .current(name)
                    .ok_or_else(|| SecretsError::NotFound(name.clone()))?;
                pins.insert(name.clone(), version.version);
            }
        }
        self.pins
            .entry(service.to_string())
            .or_default()
            .insert(release.to_string(), pins.clone());
        Ok(pins)
    }

    /// Forgets the pins of `service`'s releases other than `keep`.
    pub fn forget_pins_except(&mut self, service: &str, keep: &[String]) {
        if let Some(releases) = self.pins.get_mut(service) {
            releases.retain(|release, _| keep.contains(release));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_tombstones_and_pins() {
        let mut s = Secrets::default();
        assert_eq!(s.set("API_KEY", "one", false, 10), 1);
        assert_eq!(s.set("API_KEY", "two", true, 20), 2);
        let pins = s.pin("web", "r1", &["API_KEY".into()]).unwrap();
        assert_eq!(pins["API_KEY"], 2);
        assert_eq!(s.current("API_KEY").unwrap().value(), Some("two"));
        assert_eq!(s.remove("API_KEY", 30).unwrap(), 3);
        assert!(!s.contains("API_KEY"));
        assert!(s.list().is_empty());
        // A release that pinned version 2 still reads it.
        assert_eq!(s.version("API_KEY", 2).unwrap().value(), Some("two"));
        let history = s.history("API_KEY").unwrap();
        assert_eq!(history.len(), 3);
        assert_eq!(history[1].pinned_by, ["web@r1"]);
        assert!(history[2].removed);
        assert!(matches!(
            s.remove("API_KEY", 40),
            Err(SecretsError::NotFound(_))
        ));
        assert!(s.pin("web", "r2", &["API_KEY".into()]).is_err());
        assert!(s.pins("web", "r2").is_none());
    }

    #[test]
    fn debug_never_shows_a_value() {
        let mut s = Secrets::default();
        s.set("TOKEN", "very-secret-value", false, 1);
        assert!(!format!("{s:?}").contains("very-secret-value"));
    }

    #[test]
    fn names_are_like_variables() {
        for good in ["A", "_X", "DB_PASSWORD", "key2"] {
            validate_name(good).unwrap();
        }
        for bad in ["", "2A", "A-B", "a.b", "A B"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }
}
