//! Releases: immutable, built snapshots of a service's source.

use std::fmt;

use serde::{Deserialize, Serialize};

/// `r3-1a2b3c4d`: a per-service sequence number and the start of the content hash.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ReleaseId(pub String);

impl fmt::Display for ReleaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One release of one service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Release {
    pub id: ReleaseId,
    pub service: String,
    pub seq: u32,
    /// Unix seconds.
    pub created_at: i64,
    /// sha256 of the source tree plus the service's run/build/env: same fingerprint, same release.
    pub fingerprint: String,
    /// `git rev-parse HEAD` of the source when it is a git work tree.
    pub source_rev: Option<String>,
    /// sha256 of the effective spec the release was made from.
    pub spec_hash: String,
    /// Absolute path of the release folder.
    pub dir: String,
}
