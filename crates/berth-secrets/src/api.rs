//! The shapes `berth secrets` and the daemon's `/v1/secrets` endpoints exchange. Only
//! [`RevealedSecret`] carries a value, and only `GET /v1/secrets/NAME?reveal=true` returns it.

use serde::{Deserialize, Serialize};

use crate::{SecretInfo, VersionInfo};

/// `GET /v1/secrets`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SecretList {
    pub environment: String,
    pub secrets: Vec<SecretListed>,
}

/// One secret of the list, with the services that declare it. Never a value.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SecretListed {
    #[serde(flatten)]
    pub info: SecretInfo,
    pub used_by: Vec<String>,
}

/// `GET /v1/secrets/NAME/history`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SecretHistory {
    pub name: String,
    pub versions: Vec<VersionInfo>,
}

/// `PUT /v1/secrets/NAME`.
#[derive(Clone, Serialize, Deserialize)]
pub struct SetSecret {
    pub value: String,
    #[serde(default)]
    pub as_file: bool,
}

impl std::fmt::Debug for SetSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetSecret")
            .field("as_file", &self.as_file)
            .finish_non_exhaustive()
    }
}

/// The answer to a change (`PUT`, `DELETE`, restart).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SecretChanged {
    pub name: String,
    pub version: u32,
    /// Services declaring the secret: they get the new version when restarted.
    pub used_by: Vec<String>,
    /// Services restarted (rolling) with the new version.
    #[serde(default)]
    pub restarted: Vec<String>,
}

/// `GET /v1/secrets/NAME?reveal=true`.
#[derive(Clone, Serialize, Deserialize)]
pub struct RevealedSecret {
    pub name: String,
    pub version: u32,
    pub value: String,
}

impl std::fmt::Debug for RevealedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevealedSecret")
            .field("name", &self.name)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}
