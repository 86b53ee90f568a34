//! Releases: immutable snapshots of an app folder, built once, identified by content.
//!
//! A release of service `web` lives in `.berth/releases/web/r{seq}-{fingerprint[..8]}`. It is
//! copied into a `.tmp` sibling, renamed into place, and built there (builds such as Python
//! virtualenvs record absolute paths, so they must run where the release will live); only once
//! the build succeeded is the [`COMPLETE_MARKER`] file written. A folder without the marker is
//! never used and is removed by the next create.

mod build;
mod tree;

use std::path::{Path, PathBuf};

use anyhow::Context;
use berth_model::{Release, ReleaseId};
use berth_spec::ServiceSpec;

pub use build::BUILD_LOG;
pub use tree::SKIPPED_DIRS;

/// Suffix of a release folder still being copied.
const TMP_SUFFIX: &str = ".tmp";

/// Written into a release folder once its build succeeded.
pub const COMPLETE_MARKER: &str = ".berth-release-complete";

/// Whether `dir` holds a complete (copied and built) release.
pub fn is_complete(dir: &Path) -> bool {
    dir.join(COMPLETE_MARKER).is_file()
}

/// sha256 (hex) of the service's source tree plus its `run`, `build` and `env`: the same source
/// and config always give the same fingerprint, and any changed byte, mode or variable changes it.
///
/// Skips [`SKIPPED_DIRS`]; symlinks are hashed as their target text, never followed. Blocking.
pub fn fingerprint(service: &ServiceSpec) -> anyhow::Result<String> {
    tree::hash_tree(service, None)
        .with_context(|| format!("fingerprinting the source of {}", service.name))
}

/// Makes and prunes the releases of a stack.
#[derive(Debug, Clone)]
pub struct ReleaseBuilder {
    /// The stack's `.berth/releases`.
    pub releases_dir: PathBuf,
}

impl ReleaseBuilder {
    pub fn new(releases_dir: impl Into<PathBuf>) -> Self {
        Self {
            releases_dir: releases_dir.into(),
        }
    }

    /// The folder of a service's release (whether or not it exists).
    pub fn release_dir(&self, service: &str, id: &ReleaseId) -> PathBuf {
        self.releases_dir.join(service).join(&id.0)
    }

    /// Makes release `r{seq}-{fingerprint[..8]}` of the service: snapshots its source, runs its
    /// `build` command there once (each output line goes to `log` and to `build.log`), and moves
    /// the folder into place. A failed build returns an error with the exit status and the last
    /// lines of output, and leaves no release folder.
    ///
    /// Creates for one service must not run concurrently: each removes leftover `.tmp` folders.
    /// Dropping the future kills the build and everything it started.
    pub async fn create(
        &self,
        service: &ServiceSpec,
        seq: u32,
        spec_hash: &str,
        mut log: impl FnMut(&str),
    ) -> anyhow::Result<Release> {
        check_service_name(&service.name)?;
        let releases_dir = std::path::absolute(&self.releases_dir)
            .with_context(|| format!("resolving {}", self.releases_dir.display()))?;
        let service_dir = releases_dir.join(&service.name);
        {
            let service_dir = service_dir.clone();
            blocking(move || {
                std::fs::create_dir_all(&service_dir)
                    .with_context(|| format!("creating {}", service_dir.display()))?;
                remove_leftover_tmp_dirs(&service_dir)
            })
            .await?;
        }

        let source_rev = git_head(&service.source).await;
        let fingerprint = {
            let service = service.clone();
            blocking(move || fingerprint(&service)).await?
        };
        let id = ReleaseId(format!("r{seq}-{}", &fingerprint[..8]));
        let final_dir = service_dir.join(&id.0);
        let tmp_dir = service_dir.join(format!("{id}{TMP_SUFFIX}"));

        let made = self
            .make_in(service, &id, &fingerprint, &tmp_dir, &final_dir, &mut log)
            .await;
        if let Err(err) = made {
            for dir in [tmp_dir.clone(), final_dir.clone()] {
                let path = dir.clone();
                if let Err(cleanup) = blocking(move || remove_path(&path)).await {
                    tracing::warn!("could not remove {}: {cleanup:#}", dir.display());
                }
            }
            return Err(err.context(format!("making release {id} of {}", service.name)));
        }

        Ok(Release {
            id,
            service: service.name.clone(),
            seq,
            created_at: berth_model::now_unix(),
            fingerprint,
            source_rev,
            spec_hash: spec_hash.to_string(),
            dir: final_dir.to_string_lossy().into_owned(),
        })
    }

    /// Copies, builds and renames into place (the part of [`create`](Self::create) after which a
    /// failure must clean `tmp_dir` up).
    async fn make_in(
        &self,
        service: &ServiceSpec,
        id: &ReleaseId,
        fingerprint: &str,
        tmp_dir: &Path,
        final_dir: &Path,
        log: &mut impl FnMut(&str),
    ) -> anyhow::Result<()> {
        let copied = {
            let (service, tmp_dir, final_dir) = (
                service.clone(),
                tmp_dir.to_path_buf(),
                final_dir.to_path_buf(),
            );
            blocking(move || {
                if final_dir.exists() {
                    // Made by an earlier create whose release was never recorded (the sequence
                    // number comes from the store, so a recorded release is never remade).
                    tracing::warn!(
                        "replacing unrecorded release folder {}",
                        final_dir.display()
                    );
                    remove_path(&final_dir)?;
                }
                std::fs::create_dir(&tmp_dir)
                    .with_context(|| format!("creating {}", tmp_dir.display()))?;
                tree::hash_tree(&service, Some(&tmp_dir))
                    .with_context(|| format!("copying the source of {}", service.name))
            })
            .await?
        };
        anyhow::ensure!(
            copied == fingerprint,
            "the source of {} changed while release {id} was being made; try again",
            service.name
        );

        {
            let (tmp_dir, final_dir) = (tmp_dir.to_path_buf(), final_dir.to_path_buf());
            blocking(move || {
                std::fs::rename(&tmp_dir, &final_dir).with_context(|| {
                    format!("moving {} to {}", tmp_dir.display(), final_dir.display())
                })
            })
            .await?;
        }

        if let Some(command) = service.build.as_deref().filter(|c| !c.trim().is_empty()) {
            build::run_build(command, final_dir, &service.env, log).await?;
        }
        let marker = final_dir.join(COMPLETE_MARKER);
        blocking(move || {
            std::fs::write(&marker, b"").with_context(|| format!("writing {}", marker.display()))
        })
        .await
    }

    /// Deletes the service's release folders whose id is not in `keep`. Folders being made
    /// (`.tmp`) and anything not named like a release are left alone; failures are logged.
    /// Blocking.
    pub fn prune(&self, service: &str, keep: &[ReleaseId]) {
        if let Err(err) = check_service_name(service) {
            tracing::warn!("not pruning releases: {err:#}");
            return;
        }
        let service_dir = self.releases_dir.join(service);
        let listing = match std::fs::read_dir(&service_dir) {
            Ok(listing) => listing,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return,
            Err(err) => {
                tracing::warn!("could not list {}: {err}", service_dir.display());
                return;
            }
        };
        for dirent in listing.flatten() {
            let name = dirent.file_name();
            let Some(name) = name.to_str() else { continue };
            if !looks_like_release_id(name) || keep.iter().any(|k| k.0 == name) {
                continue;
            }
            if !dirent.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let path = dirent.path();
            match std::fs::remove_dir_all(&path) {
                Ok(()) => tracing::info!("removed release {name} of {service}"),
                Err(err) => tracing::warn!("could not remove {}: {err}", path.display()),
            }
        }
    }
}

/// `r{digits}-{hex}`, as made by [`ReleaseBuilder::create`].
fn looks_like_release_id(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('r') else {
        return false;
    };
    let Some((seq, hash)) = rest.split_once('-') else {
        return false;
    };
    !seq.is_empty()
        && seq.bytes().all(|b| b.is_ascii_digit())
        && !hash.is_empty()
        && hash.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A service name becomes a folder name: refuse anything that could leave the releases folder.
fn check_service_name(name: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0']),
        "invalid service name {name:?}"
    );
    Ok(())
}

/// Removes folders left by creates that failed or were interrupted: `.tmp` copies, and release
/// folders whose build never completed.
fn remove_leftover_tmp_dirs(service_dir: &Path) -> anyhow::Result<()> {
    let listing = std::fs::read_dir(service_dir)
        .with_context(|| format!("listing {}", service_dir.display()))?;
    for dirent in listing {
        let dirent = dirent.with_context(|| format!("listing {}", service_dir.display()))?;
        let name = dirent.file_name().to_string_lossy().to_string();
        let unfinished = looks_like_release_id(&name) && !is_complete(&dirent.path());
        if name.ends_with(TMP_SUFFIX) || unfinished {
            tracing::info!("removing unfinished release {}", dirent.path().display());
            remove_path(&dirent.path())?;
        }
    }
    Ok(())
}

/// Removes a file, symlink or folder tree; nothing to remove is fine. Folders made read-only by
/// a build are made writable first.
fn remove_path(path: &Path) -> anyhow::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err).with_context(|| format!("removing {}", path.display())),
    };
    let result = if meta.is_dir() {
        std::fs::remove_dir_all(path).or_else(|_| {
            make_dirs_writable(path);
            std::fs::remove_dir_all(path)
        })
    } else {
        std::fs::remove_file(path)
    };
    result.with_context(|| format!("removing {}", path.display()))
}

fn make_dirs_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::symlink_metadata(dir) {
        if meta.is_dir() {
            let mode = meta.permissions().mode() | 0o700;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode));
            if let Ok(listing) = std::fs::read_dir(dir) {
                for dirent in listing.flatten() {
                    make_dirs_writable(&dirent.path());
                }
            }
        }
    }
}

/// `git rev-parse HEAD` of the source when it is in a git work tree with a commit, else `None`.
async fn git_head(source: &Path) -> Option<String> {
    let output = tokio::process::Command::new("git")
        .arg("-C")
        .arg(source)
        .args(["rev-parse", "--verify", "--quiet", "HEAD"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let rev = String::from_utf8(output.stdout).ok()?.trim().to_string();
    (!rev.is_empty()).then_some(rev)
}

/// Runs blocking file work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .context("release file work panicked")?
}

#[cfg(test)]
mod tests;
