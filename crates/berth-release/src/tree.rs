//! The source tree of a release: which entries belong to it, their fingerprint, and copying them.
//!
//! Walking, hashing and copying share one definition of the tree, so that a release folder holds
//! exactly what its fingerprint describes.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use berth_spec::ServiceSpec;
use sha2::{Digest, Sha256};

/// Folders never part of a release, at any depth: tool state, VCS data, caches, build output.
pub const SKIPPED_DIRS: &[&str] = &[
    ".berth",
    ".git",
    "__pycache__",
    ".venv",
    "node_modules",
    "target",
];

/// Bumped whenever what goes into a fingerprint changes, so old and new never collide.
const FINGERPRINT_VERSION: &[u8] = b"berth-release-fingerprint-v1";

/// One entry of a source tree, relative to its root.
#[derive(Debug)]
pub(crate) struct Entry {
    pub rel: PathBuf,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    pub kind: EntryKind,
}

#[derive(Debug)]
pub(crate) enum EntryKind {
    Dir,
    File {
        len: u64,
    },
    /// Recorded and copied as the link's text; never followed.
    Symlink {
        target: PathBuf,
    },
}

/// Lists the tree under `root` (not `root` itself), sorted by path bytes, so that every folder
/// comes before its contents. Skips [`SKIPPED_DIRS`] and special files (sockets, fifos, devices).
pub(crate) fn walk(root: &Path) -> anyhow::Result<Vec<Entry>> {
    let meta = fs::metadata(root)
        .with_context(|| format!("source folder {} is not readable", root.display()))?;
    anyhow::ensure!(meta.is_dir(), "source {} is not a folder", root.display());
    let mut entries = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(rel_dir) = pending.pop() {
        let dir = root.join(&rel_dir);
        let listing = fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?;
        for dirent in listing {
            let dirent = dirent.with_context(|| format!("listing {}", dir.display()))?;
            let name = dirent.file_name();
            let rel = rel_dir.join(&name);
            let path = root.join(&rel);
            let meta = fs::symlink_metadata(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let file_type = meta.file_type();
            let mode = meta.permissions().mode() & 0o7777;
            let kind = if file_type.is_symlink() {
                let target =
                    fs::read_link(&path).with_context(|| format!("reading {}", path.display()))?;
                EntryKind::Symlink { target }
            } else if file_type.is_dir() {
                if SKIPPED_DIRS.iter().any(|s| name.as_bytes() == s.as_bytes()) {
                    continue;
                }
                pending.push(rel.clone());
                EntryKind::Dir
            } else if file_type.is_file() {
                EntryKind::File { len: meta.len() }
            } else {
                tracing::debug!(path = %path.display(), "skipping special file in source");
                continue;
            };
            entries.push(Entry { rel, mode, kind });
        }
    }
    entries.sort_by(|a, b| {
        a.rel
            .as_os_str()
            .as_bytes()
            .cmp(b.rel.as_os_str().as_bytes())
    });
    Ok(entries)
}

/// sha256 with unambiguous framing: every variable-length field is length-prefixed.
struct FingerprintHasher(Sha256);

impl FingerprintHasher {
    fn new() -> Self {
        let mut hasher = Self(Sha256::new());
        hasher.field(FINGERPRINT_VERSION);
        hasher
    }

    fn field(&mut self, bytes: &[u8]) {
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
    }

    /// Hashes one entry; for a file, its contents are read from `root` and, when `copy_to` is
    /// given, written to the same relative path there as they are hashed.
    fn entry(&mut self, root: &Path, entry: &Entry, copy_to: Option<&Path>) -> anyhow::Result<()> {
        let tag: &[u8] = match entry.kind {
            EntryKind::Dir => b"dir",
            EntryKind::File { .. } => b"file",
            EntryKind::Symlink { .. } => b"symlink",
        };
        self.field(tag);
        self.field(entry.rel.as_os_str().as_bytes());
        self.0.update(entry.mode.to_le_bytes());
        match &entry.kind {
            EntryKind::Dir => {
                if let Some(dest) = copy_to {
                    let dest = dest.join(&entry.rel);
                    fs::create_dir(&dest)
                        .with_context(|| format!("creating {}", dest.display()))?;
                }
            }
            EntryKind::Symlink { target } => {
                self.field(target.as_os_str().as_bytes());
                if let Some(dest) = copy_to {
                    let dest = dest.join(&entry.rel);
                    std::os::unix::fs::symlink(target, &dest)
                        .with_context(|| format!("creating symlink {}", dest.display()))?;
                }
            }
            EntryKind::File { len } => {
                self.0.update(len.to_le_bytes());
                self.file_contents(root, entry, *len, copy_to)?;
            }
        }
        Ok(())
    }

    fn file_contents(
        &mut self,
        root: &Path,
        entry: &Entry,
        len: u64,
        copy_to: Option<&Path>,
    ) -> anyhow::Result<()> {
        let path = root.join(&entry.rel);
        let mut source =
            fs::File::open(&path).with_context(|| format!("reading {}", path.display()))?;
        let mut dest = match copy_to {
            Some(dest_root) => {
                let dest = dest_root.join(&entry.rel);
                let file = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&dest)
                    .with_context(|| format!("creating {}", dest.display()))?;
                Some((dest, file))
            }
            None => None,
        };
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0u64;
        loop {
            let n = match source.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
            };
            total += n as u64;
            self.0.update(&buf[..n]);
            if let Some((dest, file)) = &mut dest {
                file.write_all(&buf[..n])
                    .with_context(|| format!("writing {}", dest.display()))?;
            }
        }
        anyhow::ensure!(
            total == len,
            "{} changed while it was being read; try again",
            path.display()
        );
        if let Some((dest, file)) = dest {
            file.set_permissions(fs::Permissions::from_mode(entry.mode))
                .with_context(|| format!("setting the mode of {}", dest.display()))?;
        }
        Ok(())
    }

    /// The service settings that shape a release besides its files.
    fn config(&mut self, run: &str, build: Option<&str>, env: &BTreeMap<String, String>) {
        self.field(b"run");
        self.field(run.as_bytes());
        self.field(b"build");
        match build {
            None => self.0.update([0u8]),
            Some(build) => {
                self.0.update([1u8]);
                self.field(build.as_bytes());
            }
        }
        self.field(b"env");
        self.0.update((env.len() as u64).to_le_bytes());
        for (key, value) in env {
            self.field(key.as_bytes());
            self.field(value.as_bytes());
        }
    }

    fn finish(self) -> String {
        hex::encode(self.0.finalize())
    }
}

/// Fingerprints the service's source tree and config; when `copy_to` is given (an existing empty
/// folder), copies the tree there in the same pass, so the copy is exactly what was hashed.
pub(crate) fn hash_tree(service: &ServiceSpec, copy_to: Option<&Path>) -> anyhow::Result<String> {
    let root = &service.source;
    let entries = walk(root)?;
    let mut hasher = FingerprintHasher::new();
    for entry in &entries {
        hasher.entry(root, entry, copy_to)?;
    }
    hasher.config(&service.run, service.build.as_deref(), &service.env);
    if let Some(container) = &service.container {
        // Only when set, so the fingerprints of process services stay what they were.
        hasher.field(b"container");
        hasher.field(&serde_json::to_vec(container).context("hashing the container settings")?);
    }
    if let Some(dest) = copy_to {
        // Folder modes last (deepest first), so a read-only folder does not block its contents.
        for entry in entries.iter().rev() {
            if matches!(entry.kind, EntryKind::Dir) {
                let path = dest.join(&entry.rel);
                fs::set_permissions(&path, fs::Permissions::from_mode(entry.mode))
                    .with_context(|| format!("setting the mode of {}", path.display()))?;
            }
        }
    }
    Ok(hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_sorts_parents_before_children_and_skips() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::write(root.join("a.txt"), "x").unwrap();
        fs::write(root.join("a/b/c"), "y").unwrap();
        fs::create_dir_all(root.join("sub/node_modules/pkg")).unwrap();
        fs::write(root.join("sub/node_modules/pkg/i.js"), "z").unwrap();
        fs::write(root.join("target"), "a file named like a skipped folder").unwrap();
        std::os::unix::fs::symlink("a/b", root.join("link")).unwrap();

        let rels: Vec<_> = walk(root)
            .unwrap()
            .into_iter()
            .map(|e| e.rel.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            rels,
            ["a", "a.txt", "a/b", "a/b/c", "link", "sub", "target"]
        );
    }
}
