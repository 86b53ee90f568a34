//! The files and folders inside an accessory's folder, and their creation with the right owner
//! and mode.

use std::fs::{self, DirBuilder};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::user::ServerUser;

/// The longest path a unix socket can have on Linux (`sun_path` minus its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Paths inside one accessory folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    pub dir: PathBuf,
    /// The server's data folder.
    pub data: PathBuf,
    /// Sockets and pid files; mode 0700, owned by the server's user.
    pub run: PathBuf,
    /// The server's stdout and stderr.
    pub log: PathBuf,
    pub port_file: PathBuf,
    pub password_file: PathBuf,
    /// The pid Berth recorded when it started the server.
    pub pid_file: PathBuf,
    pub lock_file: PathBuf,
}

impl Layout {
    /// The layout of the folder `dir` (made absolute against the current directory).
    pub fn new(dir: &Path) -> Self {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        Self {
            data: dir.join("data"),
            run: dir.join("run"),
            log: dir.join("server.log"),
            port_file: dir.join("port"),
            password_file: dir.join("password"),
            pid_file: dir.join("run").join("server.pid"),
            lock_file: dir.join("lock"),
            dir,
        }
    }

    /// Creates the accessory folder (mode 0755, so that a server running as another user can
    /// pass through it) and returns the layout of its canonical path.
    pub fn create_dir(dir: &Path) -> Result<Self> {
        let layout = Self::new(dir);
        if !layout.dir.exists() {
            DirBuilder::new()
                .recursive(true)
                .create(&layout.dir)
                .with_context(|| format!("cannot create {}", layout.dir.display()))?;
            // Explicitly, whatever the umask.
            fs::set_permissions(&layout.dir, fs::Permissions::from_mode(0o755))
                .with_context(|| format!("cannot set the mode of {}", layout.dir.display()))?;
        }
        let canonical = fs::canonicalize(&layout.dir)
            .with_context(|| format!("cannot resolve {}", layout.dir.display()))?;
        Ok(Self::new(&canonical))
    }

    /// Creates `data/` and `run/` for `user`: mode 0700, owned by it. An existing `run/` is
    /// tightened and handed over too; an existing `data/` is only handed over while empty (a
    /// server's data is never touched).
    pub fn create_server_dirs(&self, user: &ServerUser, engine_label: &str) -> Result<()> {
        user.check_traversable(&self.dir, engine_label)?;
        for folder in [&self.data, &self.run] {
            match DirBuilder::new().mode(0o700).create(folder) {
                Ok(()) => user.give(folder)?,
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    let meta = fs::metadata(folder)
                        .with_context(|| format!("cannot inspect {}", folder.display()))?;
                    if !meta.is_dir() {
                        bail!("{} exists but is not a folder", folder.display());
                    }
                    let owned = meta.uid() == user.uid.as_raw();
                    if folder == &self.run || (!owned && is_empty_dir(folder)?) {
                        fs::set_permissions(folder, fs::Permissions::from_mode(0o700))
                            .with_context(|| {
                                format!("cannot set the mode of {}", folder.display())
                            })?;
                        user.give(folder)?;
                    }
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot create {}", folder.display()))
                }
            }
        }
        Ok(())
    }
}

/// Whether `dir` holds nothing (a missing folder counts as empty).
pub(crate) fn is_empty_dir(dir: &Path) -> Result<bool> {
    match fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(true),
        Err(e) => Err(e).with_context(|| format!("cannot list {}", dir.display())),
    }
}

/// Fails with a clear message when `socket` is too long to be a unix socket path.
pub(crate) fn check_socket_path(socket: &Path) -> Result<()> {
    let len = socket.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        bail!(
            "the unix socket path {} is {len} bytes long, more than the {MAX_SOCKET_PATH} \
             Linux allows: put the accessory folder at a shorter path",
            socket.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_live_inside_the_folder() {
        let layout = Layout::new(Path::new("/srv/acc/db"));
        assert_eq!(layout.data, Path::new("/srv/acc/db/data"));
        assert_eq!(layout.run, Path::new("/srv/acc/db/run"));
        assert_eq!(layout.pid_file, Path::new("/srv/acc/db/run/server.pid"));
        assert_eq!(layout.password_file, Path::new("/srv/acc/db/password"));
    }

    #[test]
    fn relative_folders_become_absolute() {
        assert!(Layout::new(Path::new("acc/db")).dir.is_absolute());
    }

    #[test]
    fn server_dirs_are_private() {
        let root = tempfile::tempdir().unwrap();
        let layout = Layout::create_dir(&root.path().join("a").join("db")).unwrap();
        let me = ServerUser::current();
        layout.create_server_dirs(&me, "Redis").unwrap();
        for folder in [&layout.data, &layout.run] {
            let mode = fs::metadata(folder).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "{}", folder.display());
        }
        // Idempotent, and data is left alone once it holds something.
        fs::write(layout.data.join("keep"), "x").unwrap();
        layout.create_server_dirs(&me, "Redis").unwrap();
        assert!(layout.data.join("keep").exists());
        assert!(is_empty_dir(&layout.run).unwrap());
        assert!(!is_empty_dir(&layout.data).unwrap());
        assert!(is_empty_dir(&layout.dir.join("missing")).unwrap());
    }

    #[test]
    fn long_socket_paths_are_refused() {
        check_socket_path(Path::new("/tmp/x/run/.s.PGSQL.5432")).unwrap();
        let long = PathBuf::from(format!("/{}/run/mysqld.sock", "d".repeat(120)));
        let err = check_socket_path(&long).unwrap_err().to_string();
        assert!(err.contains("shorter path"), "{err}");
    }
}
