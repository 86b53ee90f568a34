//! Desired replica counts set by `berth scale`, overriding the spec's count per environment.

use rusqlite::{params, OptionalExtension};

use crate::Store;

impl Store {
    /// Records that `env` should run `replicas` replicas of the service.
    pub fn set_desired_replicas(
        &self,
        env: &str,
        service: &str,
        replicas: u32,
    ) -> anyhow::Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO desired_replicas (environment, service, replicas) VALUES (?1, ?2, ?3)
                 ON CONFLICT (environment, service) DO UPDATE SET replicas = excluded.replicas",
            )?
            .execute(params![env, service, replicas])?;
        Ok(())
    }

    /// The replica count set by `berth scale`, if any.
    pub fn desired_replicas(&self, env: &str, service: &str) -> anyhow::Result<Option<u32>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT replicas FROM desired_replicas WHERE environment = ?1 AND service = ?2",
            )?
            .query_row(params![env, service], |r| r.get(0))
            .optional()?)
    }

    /// Drops the override: the spec's count applies again.
    pub fn clear_desired_replicas(&self, env: &str, service: &str) -> anyhow::Result<()> {
        self.conn
            .prepare_cached("DELETE FROM desired_replicas WHERE environment = ?1 AND service = ?2")?
            .execute(params![env, service])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::test_support::temp_store;

    #[test]
    fn set_get_clear_desired_replicas() {
        let (_dir, store) = temp_store();
        assert_eq!(store.desired_replicas("default", "web").unwrap(), None);
        store.set_desired_replicas("default", "web", 3).unwrap();
        store.set_desired_replicas("staging", "web", 1).unwrap();
        assert_eq!(store.desired_replicas("default", "web").unwrap(), Some(3));
        store.set_desired_replicas("default", "web", 0).unwrap();
        assert_eq!(store.desired_replicas("default", "web").unwrap(), Some(0));
        store.clear_desired_replicas("default", "web").unwrap();
        assert_eq!(store.desired_replicas("default", "web").unwrap(), None);
        assert_eq!(store.desired_replicas("staging", "web").unwrap(), Some(1));
        // Clearing twice is fine.
        store.clear_desired_replicas("default", "web").unwrap();
    }
}
