//! Where a stack keeps its state: `.berth/` beside `berth.toml`, one folder per environment.
//!
//! ```text
//! .berth/state.db                    the store (all environments)
//! .berth/releases/SERVICE/ID/        release folders (shared: promotion reuses them)
//! .berth/ENV/api.sock                the daemon's API
//! .berth/ENV/daemon.lock             held by the running daemon
//! .berth/ENV/accessories/NAME/       an accessory's data, port and password
//! .berth/ENV/volumes/NAME/           a shared volume
//! .berth/ENV/replicas/REPLICA/       a replica's log files and its current instance
//! ```

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatePaths {
    pub root: PathBuf,
    pub env_dir: PathBuf,
}

impl StatePaths {
    /// `spec_file` should be absolute; `environment` is `default` when none was asked for.
    pub fn new(spec_file: &Path, environment: &str) -> Self {
        let dir = spec_file.parent().unwrap_or(Path::new("."));
        let root = dir.join(".berth");
        Self {
            env_dir: root.join(environment),
            root,
        }
    }

    pub fn db(&self) -> PathBuf {
        self.root.join("state.db")
    }
    pub fn releases(&self) -> PathBuf {
        self.root.join("releases")
    }
    pub fn socket(&self) -> PathBuf {
        self.env_dir.join("api.sock")
    }
    pub fn lock(&self) -> PathBuf {
        self.env_dir.join("daemon.lock")
    }
    pub fn accessory(&self, name: &str) -> PathBuf {
        self.env_dir.join("accessories").join(name)
    }
    pub fn volume(&self, name: &str) -> PathBuf {
        self.env_dir.join("volumes").join(name)
    }
    pub fn replicas(&self) -> PathBuf {
        self.env_dir.join("replicas")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_beside_the_spec() {
        let p = StatePaths::new(Path::new("/srv/shop/berth.toml"), "staging");
        assert_eq!(p.db(), Path::new("/srv/shop/.berth/state.db"));
        assert_eq!(p.socket(), Path::new("/srv/shop/.berth/staging/api.sock"));
        assert_eq!(
            p.volume("uploads"),
            Path::new("/srv/shop/.berth/staging/volumes/uploads")
        );
    }
}
