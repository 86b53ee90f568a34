//! The shapes `berth backup` and the daemon's `/v1/backups` endpoints exchange.

use serde::{Deserialize, Serialize};

use crate::Manifest;

/// A finished backup, in short.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupSummary {
    pub id: String,
    /// The destination it was written to (a folder or `s3://bucket/prefix`).
    pub destination: String,
    pub total_bytes: u64,
    pub parts: usize,
    /// Backups rotation deleted afterwards.
    #[serde(default)]
    pub rotated: Vec<String>,
}

/// A backup that failed (kept by the daemon for `berth backup list`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedBackup {
    pub id: String,
    pub reason: String,
    /// Unix seconds.
    pub at: i64,
    pub error: String,
}

/// `GET /v1/backups`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupList {
    pub destination: String,
    /// Complete backups, oldest first.
    pub backups: Vec<Manifest>,
    /// Interrupted backups (no manifest): never used.
    pub incomplete: Vec<String>,
    /// Recent failures, oldest first.
    pub failures: Vec<FailedBackup>,
    /// The schedule, when `[backup]` is in the spec.
    pub schedule: Option<String>,
}

/// `POST /v1/backups`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BackupNow {
    pub reason: Option<String>,
}

/// `POST /v1/backups/ID/restore`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RestoreRequest {
    /// `db` (accessories) or `volume`; `None`: everything in the backup.
    pub only: Option<String>,
}

/// What a restore did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestoreReport {
    pub id: String,
    /// Parts restored, by name.
    pub restored: Vec<String>,
    /// Services stopped during the restore and started again.
    pub services: Vec<String>,
}
