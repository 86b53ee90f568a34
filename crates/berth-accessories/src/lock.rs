//! An exclusive `flock` on the accessory folder's `lock` file, so that two Berth processes do
//! not start (or stop) the same accessory at the same time.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use tokio::time::{sleep, Instant};

/// How often a busy lock is retried.
const RETRY_EVERY: Duration = Duration::from_millis(100);

/// Held while the lock is; released on drop (and by the kernel if the process dies).
#[derive(Debug)]
pub(crate) struct FolderLock {
    _lock: Flock<File>,
}

impl FolderLock {
    /// Takes the lock on `path`, waiting up to `wait` for another holder to release it.
    pub async fn acquire(path: &Path, wait: Duration) -> Result<Self> {
        let deadline = Instant::now() + wait;
        let mut file = open(path)?;
        loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => return Ok(Self { _lock: lock }),
                Err((returned, Errno::EWOULDBLOCK)) => {
                    if Instant::now() >= deadline {
                        bail!(
                            "{} is still locked by another Berth process after {}s",
                            path.display(),
                            wait.as_secs()
                        );
                    }
                    file = returned;
                    sleep(RETRY_EVERY).await;
                }
                Err((_, errno)) => {
                    return Err(errno).with_context(|| format!("cannot lock {}", path.display()))
                }
            }
        }
    }
}

fn open(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_holder_waits_then_gives_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let held = FolderLock::acquire(&path, Duration::ZERO).await.unwrap();
        let err = FolderLock::acquire(&path, Duration::from_millis(250))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("still locked"), "{err}");
        drop(held);
        FolderLock::acquire(&path, Duration::ZERO).await.unwrap();
    }
}
