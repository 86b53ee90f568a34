//! The OS user a server runs as: the current user, except PostgreSQL under root, which refuses
//! to run as root and is run as the `postgres` system user instead. For such a foreign user,
//! the folders Berth creates are handed over to it and every parent folder must let it in.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use berth_spec::Engine;
use nix::unistd::{chown, geteuid, Gid, Uid, User};
use tokio::process::Command;

/// The system user PostgreSQL is run as when Berth runs as root.
const POSTGRES_SYSTEM_USER: &str = "postgres";

/// Who a server (and its init tool) runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerUser {
    pub uid: Uid,
    pub gid: Gid,
    /// The login name (the uid as text when the user has no passwd entry).
    pub name: String,
}

impl ServerUser {
    /// The user to run `engine` as, from Berth's point of view.
    pub fn for_engine(engine: Engine) -> Result<Self> {
        let euid = geteuid();
        if euid.is_root() && engine == Engine::Postgres {
            let user = User::from_name(POSTGRES_SYSTEM_USER)
                .context("cannot look up the postgres user")?
                .ok_or_else(|| {
                    anyhow!(
                        "PostgreSQL refuses to run as root and there is no `{POSTGRES_SYSTEM_USER}` \
                         system user to run it as: install the Debian package `postgresql` \
                         (which creates it) or run Berth as a non-root user"
                    )
                })?;
            return Ok(Self {
                uid: user.uid,
                gid: user.gid,
                name: user.name,
            });
        }
        Ok(Self::current())
    }

    /// The user Berth itself runs as.
    pub fn current() -> Self {
        let uid = geteuid();
        match User::from_uid(uid) {
            Ok(Some(user)) => Self {
                uid,
                gid: user.gid,
                name: user.name,
            },
            _ => Self {
                uid,
                gid: nix::unistd::getegid(),
                name: uid.to_string(),
            },
        }
    }

    /// Whether this is someone other than Berth's own user.
    pub fn is_foreign(&self) -> bool {
        self.uid != geteuid()
    }

    /// Makes `command` run as this user (a no-op for Berth's own user).
    pub fn apply(&self, command: &mut Command) {
        if self.is_foreign() {
            command.uid(self.uid.as_raw()).gid(self.gid.as_raw());
        }
    }

    /// Hands `path` over to this user (a no-op for Berth's own user).
    pub fn give(&self, path: &Path) -> Result<()> {
        if self.is_foreign() {
            chown(path, Some(self.uid), Some(self.gid))
                .with_context(|| format!("cannot give {} to user {}", path.display(), self.name))?;
        }
        Ok(())
    }

    /// Checks that this user can enter `dir` and every folder above it. The error names the
    /// first folder it cannot enter.
    pub fn check_traversable(&self, dir: &Path, engine_label: &str) -> Result<()> {
        if !self.is_foreign() {
            return Ok(());
        }
        for folder in dir.ancestors() {
            let meta = fs::metadata(folder)
                .with_context(|| format!("cannot inspect {}", folder.display()))?;
            if !can_traverse(self.uid, self.gid, meta.uid(), meta.gid(), meta.mode()) {
                bail!(
                    "{engine_label} runs as the user `{}`, which cannot enter {} \
                     (owner uid {}, mode {:04o}): make it traversable (e.g. `chmod o+x {}`) \
                     or put the accessory folder elsewhere",
                    self.name,
                    folder.display(),
                    meta.uid(),
                    meta.mode() & 0o7777,
                    folder.display()
                );
            }
        }
        Ok(())
    }
}

/// Whether a process with exactly `uid`/`gid` (no supplementary groups: they are dropped when
/// switching users) may search a folder with the given owner and mode.
fn can_traverse(uid: Uid, gid: Gid, owner: u32, group: u32, mode: u32) -> bool {
    if uid.is_root() {
        return true;
    }
    if uid.as_raw() == owner {
        mode & 0o100 != 0
    } else if gid.as_raw() == group {
        mode & 0o010 != 0
    } else {
        mode & 0o001 != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn traversal_follows_the_owner_group_other_classes() {
        let (uid, gid) = (Uid::from_raw(1000), Gid::from_raw(1000));
        assert!(can_traverse(uid, gid, 1000, 0, 0o700));
        assert!(!can_traverse(uid, gid, 1000, 1000, 0o070)); // the owner class decides
        assert!(can_traverse(uid, gid, 0, 1000, 0o710));
        assert!(!can_traverse(uid, gid, 0, 1000, 0o701)); // the group class decides
        assert!(can_traverse(uid, gid, 0, 0, 0o711));
        assert!(!can_traverse(uid, gid, 0, 0, 0o770));
        assert!(can_traverse(Uid::from_raw(0), gid, 5, 5, 0o000));
    }

    #[test]
    fn the_current_user_needs_no_handover() {
        let me = ServerUser::current();
        assert!(!me.is_foreign());
        let dir = tempfile::tempdir().unwrap();
        me.give(dir.path()).unwrap();
        me.check_traversable(dir.path(), "Redis").unwrap();
    }

    #[test]
    fn a_foreign_user_is_stopped_by_a_closed_folder() {
        if !geteuid().is_root() {
            eprintln!("skipped: needs root to create a folder another user cannot enter");
            return;
        }
        let nobody = ServerUser {
            uid: Uid::from_raw(65534),
            gid: Gid::from_raw(65534),
            name: "nobody".into(),
        };
        let closed = tempfile::tempdir().unwrap(); // owned by root
        fs::set_permissions(closed.path(), fs::Permissions::from_mode(0o700)).unwrap();
        let inner = closed.path().join("acc");
        fs::create_dir(&inner).unwrap();
        let err = nobody
            .check_traversable(&inner, "PostgreSQL")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("cannot enter {} ", closed.path().display())),
            "{err}"
        );
        assert!(err.contains("`nobody`"), "{err}");
    }
}
