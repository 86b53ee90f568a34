//! Which releases were migrated (their `migrate` command succeeded) in each environment.

use rusqlite::{params, OptionalExtension};

use crate::Store;

impl Store {
    /// Records that release `release` of `service` was migrated in `env` at `at` (unix seconds).
    pub fn mark_migrated(
        &self,
        env: &str,
        service: &str,
        release: &str,
        at: i64,
    ) -> anyhow::Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO migrated_releases (environment, service, release_id, at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (environment, service, release_id) DO NOTHING",
            )?
            .execute(params![env, service, release, at])?;
        Ok(())
    }

    /// Whether release `release` of `service` was migrated in `env`.
    pub fn is_migrated(&self, env: &str, service: &str, release: &str) -> anyhow::Result<bool> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT 1 FROM migrated_releases
                 WHERE environment = ?1 AND service = ?2 AND release_id = ?3",
            )?
            .query_row(params![env, service, release], |_| Ok(()))
            .optional()?
            .is_some())
    }
}

#[cfg(test)]
mod tests {
    use crate::test_support::temp_store;

    #[test]
    fn a_release_is_migrated_per_environment() {
        let (_dir, store) = temp_store();
        assert!(!store.is_migrated("default", "web", "r1-aaaa").unwrap());
        store
            .mark_migrated("default", "web", "r1-aaaa", 10)
            .unwrap();
        // Twice is fine.
        store
            .mark_migrated("default", "web", "r1-aaaa", 11)
            .unwrap();
        assert!(store.is_migrated("default", "web", "r1-aaaa").unwrap());
        assert!(!store.is_migrated("staging", "web", "r1-aaaa").unwrap());
        assert!(!store.is_migrated("default", "web", "r2-bbbb").unwrap());
        assert!(!store.is_migrated("default", "api", "r1-aaaa").unwrap());
    }
}
