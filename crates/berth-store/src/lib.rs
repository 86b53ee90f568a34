//! Berth's durable state (SQLite): releases, current releases, replica counts, replica process
//! records, events, alarm states and their transitions. This is the only crate that knows SQL.
//!
//! One database file (`.berth/state.db`) is shared by all environments of a stack; rows that
//! belong to one environment carry an `environment` column. The [`Store`] is synchronous: callers
//! use it briefly (or from `spawn_blocking`), typically behind a `Mutex`.

mod alarms;
mod deploys;
mod events;
mod migrated;
mod migrations;
mod releases;
mod replicas;
mod scale;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use rusqlite::Connection;

pub use alarms::{StoredAlarm, MAX_ALARM_TRANSITIONS};
pub use events::MAX_EVENTS_PER_ENVIRONMENT;
pub use replicas::StoredReplica;

/// How long a statement waits for another process's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to the state database.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (creating it and its folder if needed) the database at `path`, and brings its schema
    /// up to date.
    pub fn open(path: impl AsRef<Path>) -> anyhow::Result<Store> {
        let path = path.as_ref();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        make_private(path).with_context(|| format!("restricting {}", path.display()))?;
        let mut conn = open_connection(path)
            .with_context(|| format!("opening the state database {}", path.display()))?;
        migrations::migrate(&mut conn, migrations::MIGRATIONS)
            .with_context(|| format!("updating the schema of {}", path.display()))?;
        Ok(Store {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// The database file this store was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Creates the database file readable by its owner only (it names every replica, release and
/// event of the stack), or makes an existing one so. SQLite gives its `-wal` and `-shm` files
/// the database file's permissions.
fn make_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    if file.metadata()?.permissions().mode() & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// Opens a connection with Berth's settings: busy timeout, WAL journal, foreign keys.
fn open_connection(path: &Path) -> anyhow::Result<Connection> {
    let conn = Connection::open(path)?;
    // First, so that the pragmas below wait for other processes' locks too.
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    anyhow::ensure!(
        mode.eq_ignore_ascii_case("wal"),
        "could not switch to WAL journal mode (got {mode:?})"
    );
    // Safe with WAL: a power loss may lose the last transactions, never corrupt the database.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    Ok(conn)
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::Store;

    /// A store in a fresh temporary folder (kept alive by the returned guard).
    pub fn temp_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join(".berth/state.db")).unwrap();
        (dir, store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<Store>();
        assert_send::<std::sync::Mutex<Store>>();
        fn assert_sync<T: Sync>() {}
        assert_sync::<std::sync::Mutex<Store>>();
    }

    #[test]
    fn open_sets_pragmas_and_creates_folder() {
        let (dir, store) = test_support::temp_store();
        assert!(dir.path().join(".berth/state.db").exists());
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join(".berth/state.db"))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600, "the state database is private");
        let mode: String = store
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let fk: i64 = store
            .conn
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .unwrap();
        assert_eq!(fk, 1);
        let timeout: i64 = store
            .conn
            .query_row("PRAGMA busy_timeout", [], |r| r.get(0))
            .unwrap();
        assert_eq!(timeout, 5000);
    }

    #[test]
    fn two_stores_share_one_file() {
        let (dir, a) = test_support::temp_store();
        let b = Store::open(dir.path().join(".berth/state.db")).unwrap();
        a.set_desired_replicas("default", "web", 3).unwrap();
        assert_eq!(b.desired_replicas("default", "web").unwrap(), Some(3));
    }
}
