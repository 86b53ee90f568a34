//! Backups: consistent dumps of the accessories (PostgreSQL `pg_dump -Fc`, MariaDB
//! `mariadb-dump --single-transaction`, Redis's RDB file after `BGSAVE`) and zstd-compressed tar
//! archives of volumes, described by a manifest (sha256 and size of every part, releases, spec
//! hash, times), kept in a local folder or an S3-compatible bucket, verified, restored and rotated.
//!
//! A backup is complete exactly when its manifest exists, and the manifest is written last: in a
//! local folder the backup is assembled in `.ID.partial/` and renamed to `ID/`; in a bucket the
//! parts are uploaded first and `ID/manifest.json` last. An interrupted backup never looks
//! complete.
//!
//! This crate knows the layout of an accessory folder that `berth-accessories` keeps (`run/`
//! sockets, `data/`) to connect as the server's administrator, never a password on a command
//! line; it knows nothing of services, the supervisor, the store or the daemon.

pub mod api;
mod destination;
mod engines;
mod manifest;
mod retention;
mod run;
mod stream;
mod volume;

pub use destination::{Destination, Listing};
pub use engines::Server;
pub use manifest::{Manifest, PartKind, PartRecord, MANIFEST_FILE};
pub use retention::{expired, Candidate};
pub use run::{
    check_checksums, create, new_id, restore_part, verify, BackupRequest, RestoreTarget, Source,
    VerifyReport,
};

/// A problem with a backup's content (as opposed to a failing tool or disk).
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("backup {id}: checksum mismatch in part `{part}` ({file}): the manifest says sha256 {expected}, the file has {found}; the archive is damaged — nothing was restored")]
    Checksum {
        id: String,
        part: String,
        file: String,
        expected: String,
        found: String,
    },
    #[error("backup {id}: part `{part}` ({file}) is missing")]
    MissingPart {
        id: String,
        part: String,
        file: String,
    },
    #[error("no complete backup `{0}` (see `berth backup list`)")]
    NotFound(String),
}
