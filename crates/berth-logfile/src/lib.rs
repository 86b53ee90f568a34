//! A size-capped log file that rotates itself: `current.log` → `current.log.1` → ... `.N`.
//!
//! Several writers may append to the same path (two instances of one replica during a rolling
//! replacement): each notices a rotation done by another and reopens the new file.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Opens `path` for appending, readable by its owner only (logs hold paths, query strings and
/// client addresses); an existing file that others could read is made private too.
fn open_private(path: &Path) -> std::io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    if file.metadata()?.permissions().mode() & 0o077 != 0 {
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
    }
    Ok(file)
}

/// A log file that rotates itself by size: `current.log` → `current.log.1` → ... `.N`.
pub struct LogFile {
    path: PathBuf,
    file: File,
    max_bytes: u64,
    keep: u32,
    written_since_check: u64,
}

impl LogFile {
    pub fn open(path: PathBuf, max_bytes: u64, keep: u32) -> std::io::Result<Self> {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let file = open_private(&path)?;
        Ok(Self {
            path,
            file,
            max_bytes: max_bytes.max(4096),
            keep,
            written_since_check: 0,
        })
    }

    /// Appends whole lines (each ending in a newline) in one write.
    pub fn write_chunk(&mut self, lines: &[u8]) -> std::io::Result<()> {
        self.file.write_all(lines)?;
        self.written_since_check += lines.len() as u64;
        if self.written_since_check >= 16 * 1024 {
            self.written_since_check = 0;
            self.rotate_if_needed()?;
        }
        Ok(())
    }

    /// Appends `line` and a newline.
    pub fn write_line(&mut self, line: &str) -> std::io::Result<()> {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        self.file.write_all(&bytes)?;
        self.written_since_check += bytes.len() as u64;
        if self.written_since_check >= 16 * 1024 {
            self.written_since_check = 0;
            self.rotate_if_needed()?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Each `write` appends its bytes whole (a logger's formatted event), rotating as needed.
impl Write for LogFile {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.write_chunk(bytes)?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl LogFile {
    /// Rotates when the file at `path` is too big; reopens when another writer (a sibling
    /// instance of the same replica) has rotated it already.
    fn rotate_if_needed(&mut self) -> std::io::Result<()> {
        let ours = self.file.metadata()?;
        let on_disk = fs::metadata(&self.path).ok();
        let same = on_disk
            .as_ref()
            .is_some_and(|m| m.ino() == ours.ino() && m.dev() == ours.dev());
        if same && ours.len() >= self.max_bytes {
            for i in (1..self.keep).rev() {
                let _ = fs::rename(rotated(&self.path, i), rotated(&self.path, i + 1));
            }
            if self.keep == 0 {
                let _ = fs::remove_file(&self.path);
            } else {
                fs::rename(&self.path, rotated(&self.path, 1))?;
            }
        }
        if !same || ours.len() >= self.max_bytes {
            self.file = open_private(&self.path)?;
        }
        Ok(())
    }
}

/// `current.log` + 2 → `current.log.2`.
pub fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_file_rotates_by_size_and_keeps_n() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("current.log");
        let mut log = LogFile::open(path.clone(), 4096, 2).unwrap();
        let text = "x".repeat(1000);
        for _ in 0..200 {
            log.write_line(&text).unwrap();
        }
        assert!(path.exists());
        assert!(rotated(&path, 1).exists());
        assert!(rotated(&path, 2).exists());
        assert!(!rotated(&path, 3).exists());
        // Size stays bounded: checks happen every 16 KiB.
        assert!(fs::metadata(&path).unwrap().len() < 4096 + 17 * 1024);
        for file in [path.clone(), rotated(&path, 1)] {
            let mode = fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", file.display());
        }
    }

    #[test]
    fn a_logger_writing_through_io_write_is_capped_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("edge.log");
        let mut log = LogFile::open(path.clone(), 4096, 1).unwrap();
        let event = format!("{}\n", "y".repeat(300));
        for _ in 0..2000 {
            write!(log, "{event}").unwrap();
        }
        let total: u64 = [path.clone(), rotated(&path, 1)]
            .iter()
            .map(|p| fs::metadata(p).map_or(0, |m| m.len()))
            .sum();
        assert!(
            total < 2 * (4096 + 17 * 1024),
            "{total} bytes for 600 KB written"
        );
        assert!(!rotated(&path, 2).exists());
    }

    #[test]
    fn a_log_file_others_could_read_is_made_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        fs::write(&path, "old\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        LogFile::open(path.clone(), 4096, 2).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
