//! Where backups live: a local folder (default) or an S3-compatible bucket. In both, a backup is
//! the folder `ID/` holding its parts and, written last, `manifest.json`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload, WriteMultipart};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::manifest::{Manifest, MANIFEST_FILE};
use crate::stream::sync_dir;

/// Uploads of parts larger than this go in pieces of this size.
const UPLOAD_PIECE: usize = 16 << 20;

/// A place that keeps backups.
#[derive(Clone)]
pub enum Destination {
    Local(PathBuf),
    S3 {
        store: Arc<dyn ObjectStore>,
        /// `s3://bucket/prefix`, for messages.
        label: String,
        prefix: String,
    },
}

impl std::fmt::Debug for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.label())
    }
}

/// What a destination holds.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// Complete backups, oldest first.
    pub complete: Vec<Manifest>,
    /// Backups that were started but never finished (no manifest): never used for anything.
    pub incomplete: Vec<String>,
}

impl Destination {
    /// An S3-compatible bucket. Credentials: `credentials` when given, else the usual `AWS_*`
    /// variables.
    pub fn s3(
        bucket: &str,
        prefix: &str,
        endpoint: Option<&str>,
        region: Option<&str>,
        credentials: Option<(String, String)>,
    ) -> Result<Self> {
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_region(region.unwrap_or("us-east-1"));
        if let Some(endpoint) = endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        if let Some((id, secret)) = credentials {
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
        }
        let store = builder
            .build()
            .with_context(|| format!("cannot use the bucket s3://{bucket}"))?;
        Ok(Destination::S3 {
            store: Arc::new(store),
            label: format!("s3://{bucket}/{prefix}"),
            prefix: prefix.trim_matches('/').to_string(),
        })
    }

    pub fn label(&self) -> String {
        match self {
            Destination::Local(dir) => dir.display().to_string(),
            Destination::S3 { label, .. } => label.clone(),
        }
    }

    /// Where a backup being made is assembled: in the destination folder itself (renamed when
    /// complete), or for a bucket in `scratch`.
    pub(crate) fn staging_dir(&self, id: &str, scratch: &Path) -> PathBuf {
        match self {
            Destination::Local(dir) => dir.join(format!(".{id}.partial")),
            Destination::S3 { .. } => scratch.join(format!(".{id}.partial")),
        }
    }

    /// Removes what interrupted backups left (`.ID.partial` folders, in the destination and in
    /// `scratch`); only one backup runs at a time per environment, and this runs before it.
    pub(crate) fn clean_partials(&self, scratch: &Path) -> Vec<String> {
        let mut removed = Vec::new();
        let mut dirs = vec![scratch.to_path_buf()];
        if let Destination::Local(dir) = self {
            dirs.push(dir.clone());
        }
        for dir in dirs {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if let Some(id) = name
                    .strip_prefix('.')
                    .and_then(|n| n.strip_suffix(".partial"))
                {
                    if std::fs::remove_dir_all(entry.path()).is_ok() {
                        removed.push(id.to_string());
                    }
                }
            }
        }
        removed
    }

    /// Makes a staged backup complete: the manifest is written last.
    pub(crate) async fn publish(&self, staging: &Path, manifest: &Manifest) -> Result<()> {
        let manifest_json = serde_json::to_vec_pretty(manifest)?;
        match self {
            Destination::Local(dir) => {
                let path = staging.join(MANIFEST_FILE);
                let mut file = crate::stream::create_private(&path)?;
                std::io::Write::write_all(&mut file, &manifest_json)?;
                file.sync_all()?;
                sync_dir(staging);
                let target = dir.join(&manifest.id);
                if target.exists() {
                    bail!("{} exists already", target.display());
                }
                std::fs::rename(staging, &target).with_context(|| {
                    format!(
                        "cannot rename {} to {}",
                        staging.display(),
                        target.display()
                    )
                })?;
                sync_dir(dir);
                Ok(())
            }
            Destination::S3 { store, prefix, .. } => {
                for part in &manifest.parts {
                    let key = object_key(prefix, &manifest.id, &part.file);
                    upload(store.as_ref(), &staging.join(&part.file), &key)
                        .await
                        .with_context(|| format!("uploading {} to {}", part.file, self.label()))?;
                }
                store
                    .put(
                        &object_key(prefix, &manifest.id, MANIFEST_FILE),
                        PutPayload::from(manifest_json),
                    )
                    .await
                    .with_context(|| format!("uploading the manifest to {}", self.label()))?;
                let _ = std::fs::remove_dir_all(staging);
                Ok(())
            }
        }
    }

    /// The complete and the incomplete backups.
    pub async fn list(&self) -> Result<Listing> {
        let mut listing = Listing::default();
        match self {
            Destination::Local(dir) => {
                let entries = match std::fs::read_dir(dir) {
                    Ok(entries) => entries,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(listing),
                    Err(e) => {
                        return Err(e).with_context(|| format!("cannot list {}", dir.display()))
                    }
                };
                for entry in entries.flatten() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if let Some(id) = name
                        .strip_prefix('.')
                        .and_then(|n| n.strip_suffix(".partial"))
                    {
                        listing.incomplete.push(id.to_string());
                        continue;
                    }
                    if !entry.path().is_dir() {
                        continue;
                    }
                    match std::fs::read(entry.path().join(MANIFEST_FILE)) {
                        Ok(bytes) => match serde_json::from_slice::<Manifest>(&bytes) {
                            Ok(m) if m.id == name => listing.complete.push(m),
                            _ => listing.incomplete.push(name),
                        },
                        Err(_) => listing.incomplete.push(name),
                    }
                }
            }
            Destination::S3 { store, prefix, .. } => {
                let base = (!prefix.is_empty()).then(|| ObjectPath::from(prefix.as_str()));
                let found = store
                    .list_with_delimiter(base.as_ref())
                    .await
                    .with_context(|| format!("cannot list {}", self.label()))?;
                for folder in found.common_prefixes {
                    let Some(id) = folder.filename().map(str::to_string) else {
                        continue;
                    };
                    let key = object_key(prefix, &id, MANIFEST_FILE);
                    match store.get(&key).await {
                        Ok(got) => {
                            let bytes = got.bytes().await?;
                            match serde_json::from_slice::<Manifest>(&bytes) {
                                Ok(m) if m.id == id => listing.complete.push(m),
                                _ => listing.incomplete.push(id),
                            }
                        }
                        Err(object_store::Error::NotFound { .. }) => listing.incomplete.push(id),
                        Err(e) => return Err(e).with_context(|| format!("reading {key}")),
                    }
                }
            }
        }
        listing
            .complete
            .sort_by(|a, b| a.finished_at.cmp(&b.finished_at).then(a.id.cmp(&b.id)));
        listing.incomplete.sort();
        Ok(listing)
    }

    /// A complete backup's folder on this machine (downloaded into `scratch` for a bucket) and
    /// its manifest.
    pub async fn fetch(&self, id: &str, scratch: &Path) -> Result<(PathBuf, Manifest)> {
        if id.is_empty() || id.contains('/') || id.starts_with('.') {
            return Err(crate::BackupError::NotFound(id.to_string()).into());
        }
        match self {
            Destination::Local(dir) => {
                let folder = dir.join(id);
                let bytes = std::fs::read(folder.join(MANIFEST_FILE))
                    .map_err(|_| crate::BackupError::NotFound(id.to_string()))?;
                let manifest: Manifest = serde_json::from_slice(&bytes)
                    .with_context(|| format!("backup {id}: the manifest is not readable"))?;
                Ok((folder, manifest))
            }
            Destination::S3 { store, prefix, .. } => {
                let got = store
                    .get(&object_key(prefix, id, MANIFEST_FILE))
                    .await
                    .map_err(|_| crate::BackupError::NotFound(id.to_string()))?;
                let manifest: Manifest = serde_json::from_slice(&got.bytes().await?)
                    .with_context(|| format!("backup {id}: the manifest is not readable"))?;
                let folder = scratch.join(format!("fetched-{id}"));
                let _ = std::fs::remove_dir_all(&folder);
                std::fs::create_dir_all(&folder)?;
                for part in &manifest.parts {
                    download(
                        store.as_ref(),
                        &object_key(prefix, id, &part.file),
                        &folder.join(&part.file),
                    )
                    .await
                    .with_context(|| format!("downloading {} from {}", part.file, self.label()))?;
                }
                Ok((folder, manifest))
            }
        }
    }

    /// Deletes a backup (its manifest first, so it stops looking complete at once).
    pub async fn delete(&self, manifest: &Manifest) -> Result<()> {
        match self {
            Destination::Local(dir) => {
                let folder = dir.join(&manifest.id);
                let _ = std::fs::remove_file(folder.join(MANIFEST_FILE));
                std::fs::remove_dir_all(&folder)
                    .with_context(|| format!("cannot delete {}", folder.display()))
            }
            Destination::S3 { store, prefix, .. } => {
                store
                    .delete(&object_key(prefix, &manifest.id, MANIFEST_FILE))
                    .await?;
                for part in &manifest.parts {
                    store
                        .delete(&object_key(prefix, &manifest.id, &part.file))
                        .await?;
                }
                Ok(())
            }
        }
    }
}

fn object_key(prefix: &str, id: &str, file: &str) -> ObjectPath {
    if prefix.is_empty() {
        ObjectPath::from(format!("{id}/{file}"))
    } else {
        ObjectPath::from(format!("{prefix}/{id}/{file}"))
    }
}

async fn upload(store: &dyn ObjectStore, file: &Path, key: &ObjectPath) -> Result<()> {
    let mut input = tokio::fs::File::open(file)
        .await
        .with_context(|| format!("cannot open {}", file.display()))?;
    let size = input.metadata().await?.len();
    if size <= UPLOAD_PIECE as u64 {
        let mut bytes = Vec::with_capacity(size as usize);
        input.read_to_end(&mut bytes).await?;
        store.put(key, PutPayload::from(bytes)).await?;
        return Ok(());
    }
    let upload = store.put_multipart(key).await?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, UPLOAD_PIECE);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = input.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        writer.wait_for_capacity(4).await?;
        writer.write(&buf[..n]);
    }
    writer.finish().await?;
    Ok(())
}

async fn download(store: &dyn ObjectStore, key: &ObjectPath, file: &Path) -> Result<()> {
    let mut stream = store.get(key).await?.into_stream();
    let out = crate::stream::create_private(file)?;
    let mut out = tokio::fs::File::from_std(out);
    while let Some(chunk) = stream.next().await {
        out.write_all(&chunk?).await?;
    }
    out.sync_all().await?;
    Ok(())
}
