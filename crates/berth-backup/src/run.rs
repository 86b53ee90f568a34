//! Making, verifying and restoring backups.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rand::Rng;
use time::OffsetDateTime;

use crate::destination::Destination;
use crate::engines::{self, Server};
use crate::manifest::{Manifest, PartKind, PartRecord};
use crate::stream::hash_file;
use crate::{volume, BackupError};

/// One thing to back up.
#[derive(Debug, Clone)]
pub enum Source {
    Postgres { name: String, server: Server },
    Mysql { name: String, server: Server },
    Redis { name: String, server: Server },
    Volume { name: String, dir: PathBuf },
}

impl Source {
    pub fn name(&self) -> &str {
        match self {
            Source::Postgres { name, .. }
            | Source::Mysql { name, .. }
            | Source::Redis { name, .. }
            | Source::Volume { name, .. } => name,
        }
    }

    pub fn kind(&self) -> PartKind {
        match self {
            Source::Postgres { .. } => PartKind::Postgres,
            Source::Mysql { .. } => PartKind::Mysql,
            Source::Redis { .. } => PartKind::Redis,
            Source::Volume { .. } => PartKind::Volume,
        }
    }

    fn file_name(&self) -> String {
        let prefix = if self.kind() == PartKind::Volume {
            "volume"
        } else {
            "accessory"
        };
        format!("{prefix}-{}.{}", self.name(), self.kind().extension())
    }
}

/// What to back up, and the facts recorded in the manifest.
#[derive(Debug, Clone)]
pub struct BackupRequest {
    pub id: String,
    pub stack: String,
    pub environment: String,
    pub reason: String,
    pub spec_hash: String,
    pub releases: BTreeMap<String, String>,
    pub sources: Vec<Source>,
    /// A private folder on this machine for staging (bucket destinations) and downloads.
    pub scratch: PathBuf,
}

/// A new backup id: the UTC time (sortable) and a random suffix.
pub fn new_id(now: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp(now).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let suffix: u16 = rand::rng().random();
    format!(
        "{:04}{:02}{:02}-{:02}{:02}{:02}-{suffix:04x}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Makes a backup: every part into the staging folder, then the manifest, then it is published
/// in one step. On failure the staging folder is removed and nothing looks complete.
pub async fn create(destination: &Destination, request: BackupRequest) -> Result<Manifest> {
    std::fs::create_dir_all(&request.scratch)
        .with_context(|| format!("cannot create {}", request.scratch.display()))?;
    if let Destination::Local(dir) = destination {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    for id in destination.clean_partials(&request.scratch) {
        tracing::info!("removed the interrupted backup {id}");
    }
    let staging = destination.staging_dir(&request.id, &request.scratch);
    std::fs::create_dir_all(&staging)
        .with_context(|| format!("cannot create {}", staging.display()))?;
    let started_at = now();
    let result = async {
        let mut parts = Vec::new();
        for source in &request.sources {
            let file = source.file_name();
            let out = staging.join(&file);
            let (bytes, sha256) = dump(source, &out)
                .await
                .with_context(|| format!("backing up `{}`", source.name()))?;
            tracing::info!("backup {}: {} ({bytes} bytes)", request.id, file);
            parts.push(PartRecord {
                name: source.name().to_string(),
                kind: source.kind(),
                file,
                bytes,
                sha256,
            });
        }
        let manifest = Manifest {
            format: Manifest::FORMAT,
            id: request.id.clone(),
            stack: request.stack.clone(),
            environment: request.environment.clone(),
            reason: request.reason.clone(),
            started_at,
            finished_at: now(),
            spec_hash: request.spec_hash.clone(),
            releases: request.releases.clone(),
            parts,
        };
        destination.publish(&staging, &manifest).await?;
        Ok(manifest)
    }
    .await;
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    result
}

async fn dump(source: &Source, out: &Path) -> Result<(u64, String)> {
    match source {
        Source::Postgres { server, .. } => engines::postgres_dump(server, out).await,
        Source::Mysql { server, .. } => engines::mysql_dump(server, out).await,
        Source::Redis { server, .. } => engines::redis_dump(server, out).await,
        Source::Volume { dir, .. } => {
            let (dir, out) = (dir.clone(), out.to_path_buf());
            tokio::task::spawn_blocking(move || volume::archive(&dir, &out)).await?
        }
    }
}

/// Compares every selected part's sha256 and size with the manifest.
pub fn check_checksums(folder: &Path, manifest: &Manifest, parts: &[&PartRecord]) -> Result<()> {
    for part in parts {
        let path = folder.join(&part.file);
        if !path.is_file() {
            return Err(BackupError::MissingPart {
                id: manifest.id.clone(),
                part: part.name.clone(),
                file: part.file.clone(),
            }
            .into());
        }
        let (bytes, sha256) = hash_file(&path)?;
        if sha256 != part.sha256 || bytes != part.bytes {
            return Err(BackupError::Checksum {
                id: manifest.id.clone(),
                part: part.name.clone(),
                file: part.file.clone(),
                expected: part.sha256.clone(),
                found: sha256,
            }
            .into());
        }
    }
    Ok(())
}

/// What `verify` did with each part.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct VerifyReport {
    pub id: String,
    /// (part name, what was checked).
    pub parts: Vec<(String, String)>,
}

/// Verifies a backup: every checksum, then a test restore of each database dump into a
/// throwaway database on the running server (`servers`, by accessory name), an RDB check, and a
/// full read of each volume archive.
pub async fn verify(
    destination: &Destination,
    id: &str,
    scratch: &Path,
    servers: &BTreeMap<String, Server>,
) -> Result<VerifyReport> {
    let (folder, manifest) = destination.fetch(id, scratch).await?;
    let all: Vec<&PartRecord> = manifest.parts.iter().collect();
    check_checksums(&folder, &manifest, &all)?;
    let mut report = VerifyReport {
        id: id.to_string(),
        parts: Vec::new(),
    };
    for part in &manifest.parts {
        let path = folder.join(&part.file);
        let server = servers.get(&part.name);
        let done = match (part.kind, server) {
            (PartKind::Postgres, Some(server)) => {
                engines::postgres_test_restore(server, &path, id)
                    .await
                    .with_context(|| format!("test restore of `{}`", part.name))?;
                "checksum ok, test restore into a throwaway database ok"
            }
            (PartKind::Mysql, Some(server)) => {
                engines::mysql_test_restore(server, &path, id)
                    .await
                    .with_context(|| format!("test restore of `{}`", part.name))?;
                "checksum ok, test restore into a throwaway database ok"
            }
            (PartKind::Postgres | PartKind::Mysql, None) => {
                "checksum ok; no running server of this accessory for a test restore"
            }
            (PartKind::Redis, _) => {
                engines::redis_check(&path).await?;
                "checksum ok, RDB file checked"
            }
            (PartKind::Volume, _) => {
                let p = path.clone();
                let files = tokio::task::spawn_blocking(move || volume::check(&p)).await??;
                report.parts.push((
                    part.name.clone(),
                    format!("checksum ok, archive read ({files} entries)"),
                ));
                continue;
            }
        };
        report.parts.push((part.name.clone(), done.to_string()));
    }
    if matches!(destination, Destination::S3 { .. }) {
        let _ = std::fs::remove_dir_all(&folder);
    }
    Ok(report)
}

/// Where a part is restored to.
#[derive(Debug, Clone)]
pub enum RestoreTarget {
    /// A running database server (postgres, mysql) or a stopped Redis (its RDB file is
    /// replaced; it loads it when started).
    Server(Server),
    /// A volume folder (replaced whole).
    Folder(PathBuf),
}

/// Restores one part from a fetched backup folder whose checksums were checked.
pub async fn restore_part(folder: &Path, part: &PartRecord, target: &RestoreTarget) -> Result<()> {
    let path = folder.join(&part.file);
    match (part.kind, target) {
        (PartKind::Postgres, RestoreTarget::Server(server)) => {
            engines::postgres_restore(server, &path).await
        }
        (PartKind::Mysql, RestoreTarget::Server(server)) => {
            engines::mysql_restore(server, &path).await
        }
        (PartKind::Redis, RestoreTarget::Server(server)) => {
            engines::redis_restore_offline(server, &path).await
        }
        (PartKind::Volume, RestoreTarget::Folder(dir)) => {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || volume::restore(&path, &dir)).await?
        }
        (kind, target) => anyhow::bail!("cannot restore a {kind:?} part into {target:?}"),
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(scratch: &Path, vol: &Path) -> BackupRequest {
        BackupRequest {
            id: new_id(1_795_489_200),
            stack: "shop".into(),
            environment: "default".into(),
            reason: "manual".into(),
            spec_hash: "abc".into(),
            releases: BTreeMap::from([("web".into(), "r1-abcdef12".into())]),
            sources: vec![Source::Volume {
                name: "uploads".into(),
                dir: vol.to_path_buf(),
            }],
            scratch: scratch.to_path_buf(),
        }
    }

    #[test]
    fn ids_sort_by_time() {
        let a = new_id(1_795_489_200);
        assert!(a.starts_with("20261124-030000-"), "{a}");
        assert!(new_id(1_795_489_201) > a);
    }

    #[tokio::test]
    async fn a_local_backup_is_complete_only_with_its_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let vol = dir.path().join("vol");
        std::fs::create_dir_all(&vol).unwrap();
        std::fs::write(vol.join("a.txt"), "A").unwrap();
        let dest = Destination::Local(dir.path().join("backups"));
        // An interrupted backup: a partial folder without a manifest.
        std::fs::create_dir_all(dir.path().join("backups/.20200101-000000-0000.partial")).unwrap();
        assert_eq!(
            dest.list().await.unwrap().incomplete,
            ["20200101-000000-0000"]
        );

        let manifest = create(&dest, request(&dir.path().join("scratch"), &vol))
            .await
            .unwrap();
        let listing = dest.list().await.unwrap();
        assert_eq!(listing.complete, std::slice::from_ref(&manifest));
        assert!(listing.incomplete.is_empty(), "partials are cleaned up");
        assert_eq!(manifest.parts[0].file, "volume-uploads.tar.zst");

        let report = verify(
            &dest,
            &manifest.id,
            &dir.path().join("scratch"),
            &BTreeMap::new(),
        )
        .await
        .unwrap();
        assert!(report.parts[0].1.contains("checksum ok"), "{report:?}");

        // One flipped byte: verify names the part and the checksum.
        let part = dir
            .path()
            .join("backups")
            .join(&manifest.id)
            .join(&manifest.parts[0].file);
        let mut bytes = std::fs::read(&part).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 1;
        std::fs::write(&part, bytes).unwrap();
        let e = verify(
            &dest,
            &manifest.id,
            &dir.path().join("scratch"),
            &BTreeMap::new(),
        )
        .await
        .unwrap_err();
        assert!(
            format!("{e:#}").contains("checksum mismatch in part `uploads`"),
            "{e:#}"
        );

        dest.delete(&manifest).await.unwrap();
        assert!(dest.list().await.unwrap().complete.is_empty());
    }

    #[tokio::test]
    async fn a_failed_backup_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let dest = Destination::Local(dir.path().join("backups"));
        let mut req = request(
            &dir.path().join("scratch"),
            &dir.path().join("missing-volume"),
        );
        req.sources.push(Source::Volume {
            name: "other".into(),
            dir: dir.path().join("missing"),
        });
        assert!(create(&dest, req).await.is_err());
        let listing = dest.list().await.unwrap();
        assert!(
            listing.complete.is_empty() && listing.incomplete.is_empty(),
            "{listing:?}"
        );
    }
}
