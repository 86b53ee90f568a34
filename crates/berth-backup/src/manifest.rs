//! The manifest: what a backup holds, with the sha256 and size of every part.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The manifest's file name inside a backup.
pub const MANIFEST_FILE: &str = "manifest.json";

/// What a complete backup holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub id: String,
    pub stack: String,
    pub environment: String,
    /// Why it was made: `manual`, `schedule`, `pre-deploy`...
    pub reason: String,
    /// Unix seconds.
    pub started_at: i64,
    pub finished_at: i64,
    /// The spec's hash at the time.
    pub spec_hash: String,
    /// The current release of each service at the time.
    pub releases: BTreeMap<String, String>,
    pub parts: Vec<PartRecord>,
}

/// One file of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRecord {
    /// The accessory's or volume's name.
    pub name: String,
    pub kind: PartKind,
    /// The file's name inside the backup.
    pub file: String,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartKind {
    Postgres,
    Mysql,
    Redis,
    Volume,
}

impl PartKind {
    /// Whether the part is a database (`restore --only db`) rather than a volume.
    pub fn is_database(self) -> bool {
        self != PartKind::Volume
    }

    pub(crate) fn extension(self) -> &'static str {
        match self {
            PartKind::Postgres => "pgdump",
            PartKind::Mysql => "sql",
            PartKind::Redis => "rdb",
            PartKind::Volume => "tar.zst",
        }
    }
}

impl Manifest {
    pub const FORMAT: u32 = 1;

    pub fn total_bytes(&self) -> u64 {
        self.parts.iter().map(|p| p.bytes).sum()
    }
}
