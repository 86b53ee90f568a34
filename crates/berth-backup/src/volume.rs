//! Volumes as zstd-compressed tar archives: written while hashing, checked by reading every
//! entry, restored into a fresh folder that then replaces the volume in one rename.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::stream::{create_private, sync_dir, HashingWriter};

/// zstd's default level, like `zstd` on the command line.
const LEVEL: i32 = 3;

/// Archives the content of `dir` into `out`; returns (bytes, sha256) of the archive.
pub(crate) fn archive(dir: &Path, out: &Path) -> Result<(u64, String)> {
    let file = create_private(out)?;
    let hashing = HashingWriter::new(BufWriter::with_capacity(1 << 20, file));
    let mut encoder = zstd::Encoder::new(hashing, LEVEL)?;
    // One worker besides this thread: tar reads files while zstd compresses.
    let _ = encoder.multithread(2);
    encoder.include_checksum(true)?;
    let mut builder = tar::Builder::new(encoder);
    builder.follow_symlinks(false);
    builder.mode(tar::HeaderMode::Complete);
    builder
        .append_dir_all(".", dir)
        .with_context(|| format!("cannot archive {}", dir.display()))?;
    let encoder = builder.into_inner()?;
    let hashing = encoder.finish()?;
    let (buffered, bytes, sha) = hashing.finish();
    let file = buffered.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()
        .with_context(|| format!("cannot write {}", out.display()))?;
    Ok((bytes, sha))
}

/// Reads every entry of the archive (decompressing all of it): a damaged archive fails.
pub(crate) fn check(archive: &Path) -> Result<u64> {
    let file = File::open(archive).with_context(|| format!("cannot open {}", archive.display()))?;
    let mut tar = tar::Archive::new(zstd::Decoder::new(file)?);
    let mut files = 0;
    for entry in tar.entries()? {
        let mut entry = entry.with_context(|| format!("{} is damaged", archive.display()))?;
        io::copy(&mut entry, &mut io::sink())
            .with_context(|| format!("{} is damaged", archive.display()))?;
        files += 1;
    }
    // The tar reader stops at its end marker; reading the zstd stream to its end makes the
    // decoder verify the frame's checksum (a flipped byte in file data may decode silently).
    io::copy(&mut tar.into_inner(), &mut io::sink())
        .with_context(|| format!("{} is damaged", archive.display()))?;
    Ok(files)
}

/// Replaces the folder `target` with the archive's content: extracted beside it first, then
/// swapped in by renames, so a failed extraction leaves `target` as it was.
pub(crate) fn restore(archive: &Path, target: &Path) -> Result<()> {
    let parent = target
        .parent()
        .context("a volume folder has a parent")?
        .to_path_buf();
    fs::create_dir_all(&parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let name = target
        .file_name()
        .context("a volume folder has a name")?
        .to_string_lossy()
        .into_owned();
    let fresh = parent.join(format!(".{name}.restoring"));
    let old = parent.join(format!(".{name}.replaced"));
    for leftover in [&fresh, &old] {
        remove_dir(leftover)?;
    }
    fs::create_dir(&fresh).with_context(|| format!("cannot create {}", fresh.display()))?;
    let unpacked = (|| -> Result<()> {
        let file =
            File::open(archive).with_context(|| format!("cannot open {}", archive.display()))?;
        let mut tar = tar::Archive::new(zstd::Decoder::new(file)?);
        tar.set_preserve_permissions(true);
        tar.set_preserve_mtime(true);
        tar.set_overwrite(true);
        tar.unpack(&fresh)
            .with_context(|| format!("cannot extract {}", archive.display()))?;
        // To the end of the zstd stream, so its checksum is verified before the swap.
        io::copy(&mut tar.into_inner(), &mut io::sink())
            .with_context(|| format!("{} is damaged", archive.display()))?;
        Ok(())
    })();
    if let Err(e) = unpacked {
        let _ = remove_dir(&fresh);
        return Err(e);
    }
    if target.exists() {
        fs::rename(target, &old)
            .with_context(|| format!("cannot move {} aside", target.display()))?;
    }
    if let Err(e) = fs::rename(&fresh, target) {
        if old.exists() {
            let _ = fs::rename(&old, target);
        }
        bail!(
            "cannot move the restored volume into {}: {e}",
            target.display()
        );
    }
    sync_dir(&parent);
    remove_dir(&old)
}

fn remove_dir(path: &PathBuf) -> Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
    }
}

/// Reads a file completely (used by tests and checks).
#[allow(dead_code)]
pub(crate) fn read_all(path: &Path) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    File::open(path)?.read_to_end(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    #[test]
    fn a_volume_round_trips_with_modes_and_links() {
        let dir = tempfile::tempdir().unwrap();
        let vol = dir.path().join("uploads");
        fs::create_dir_all(vol.join("a/b")).unwrap();
        fs::write(vol.join("a/b/file.txt"), "content").unwrap();
        fs::write(vol.join("run.sh"), "#!/bin/sh").unwrap();
        fs::set_permissions(vol.join("run.sh"), fs::Permissions::from_mode(0o750)).unwrap();
        symlink("a/b/file.txt", vol.join("link")).unwrap();
        fs::write(vol.join("big.bin"), vec![7u8; 3 << 20]).unwrap();

        let out = dir.path().join("uploads.tar.zst");
        let (bytes, sha) = archive(&vol, &out).unwrap();
        assert_eq!(crate::stream::hash_file(&out).unwrap(), (bytes, sha));
        assert!(bytes < 1 << 20, "not compressed: {bytes}");
        assert!(check(&out).unwrap() >= 5);

        fs::remove_dir_all(&vol).unwrap();
        restore(&out, &vol).unwrap();
        assert_eq!(
            fs::read_to_string(vol.join("a/b/file.txt")).unwrap(),
            "content"
        );
        assert_eq!(
            fs::read_link(vol.join("link")).unwrap(),
            Path::new("a/b/file.txt")
        );
        let mode = fs::metadata(vol.join("run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o750);
        assert_eq!(fs::read(vol.join("big.bin")).unwrap().len(), 3 << 20);

        // Restoring over a live volume replaces its content; nothing is left beside it.
        fs::write(vol.join("new-since-backup"), "x").unwrap();
        restore(&out, &vol).unwrap();
        assert!(!vol.join("new-since-backup").exists());
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn a_damaged_archive_is_refused_and_the_volume_kept() {
        let dir = tempfile::tempdir().unwrap();
        let vol = dir.path().join("v");
        fs::create_dir_all(&vol).unwrap();
        for i in 0..50 {
            fs::write(vol.join(format!("f{i}")), format!("file {i} ").repeat(1000)).unwrap();
        }
        let out = dir.path().join("v.tar.zst");
        archive(&vol, &out).unwrap();
        let good = fs::read(&out).unwrap();
        // Anywhere in the archive, a flipped byte is caught (the frame checksum covers data that
        // would decode silently).
        for at in (1..20).map(|i| good.len() * i / 20) {
            let mut bytes = good.clone();
            bytes[at] ^= 0xff;
            fs::write(&out, bytes).unwrap();
            assert!(check(&out).is_err(), "flip at {at} of {}", good.len());
            let target = dir.path().join("v");
            assert!(restore(&out, &target).is_err(), "flip at {at}");
            assert_eq!(fs::read_dir(&target).unwrap().count(), 50);
        }
    }
}
