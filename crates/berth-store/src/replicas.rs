//! Replica process records: what a restarted daemon needs to find and adopt running replicas.

use anyhow::Context;
use berth_model::{ProcessRecord, ReleaseId, ReplicaKey};
use rusqlite::params;

use crate::Store;

/// A replica as recorded when it was started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredReplica {
    pub key: ReplicaKey,
    pub release: ReleaseId,
    pub port: Option<u16>,
    pub record: ProcessRecord,
}

impl Store {
    /// Records (or replaces) the process running a replica slot in `env`.
    pub fn put_replica(
        &self,
        env: &str,
        key: &ReplicaKey,
        release: &ReleaseId,
        port: Option<u16>,
        record: &ProcessRecord,
    ) -> anyhow::Result<()> {
        let record = serde_json::to_string(record)?;
        self.conn
            .prepare_cached(
                "INSERT INTO replicas (environment, service, slot, release_id, port, record)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (environment, service, slot) DO UPDATE SET
                     release_id = excluded.release_id,
                     port = excluded.port,
                     record = excluded.record",
            )?
            .execute(params![
                env,
                key.service,
                key.index,
                release.0,
                port,
                record
            ])
            .with_context(|| format!("recording replica {key}"))?;
        Ok(())
    }

    /// Forgets a replica slot's process (nothing happens if there is none).
    pub fn remove_replica(&self, env: &str, key: &ReplicaKey) -> anyhow::Result<()> {
        self.conn
            .prepare_cached(
                "DELETE FROM replicas WHERE environment = ?1 AND service = ?2 AND slot = ?3",
            )?
            .execute(params![env, key.service, key.index])?;
        Ok(())
    }

    /// Every replica recorded in `env`, ordered by service then slot.
    pub fn replicas(&self, env: &str) -> anyhow::Result<Vec<StoredReplica>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT service, slot, release_id, port, record FROM replicas
             WHERE environment = ?1 ORDER BY service, slot",
        )?;
        let rows = stmt.query_map([env], |r| {
            Ok((
                ReplicaKey::new(r.get::<_, String>(0)?, r.get(1)?),
                ReleaseId(r.get(2)?),
                r.get::<_, Option<u16>>(3)?,
                r.get::<_, String>(4)?,
            ))
        })?;
        let mut replicas = Vec::new();
        for row in rows {
            let (key, release, port, record) = row?;
            let record = serde_json::from_str(&record)
                .with_context(|| format!("reading the process record of replica {key}"))?;
            replicas.push(StoredReplica {
                key,
                release,
                port,
                record,
            });
        }
        Ok(replicas)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::test_support::temp_store;

    fn record(pid: u32) -> ProcessRecord {
        ProcessRecord {
            supervisor_pid: pid,
            supervisor_start: 123_456,
            app_pid: pid + 1,
            app_start: 0,
            instance_dir: PathBuf::from(format!("/stack/.berth/run/web.1-{pid}")),
            started_at: 1_700_000_000,
            limits: Some("memory 256 MiB".into()),
            container: None,
        }
    }

    #[test]
    fn put_list_replace_remove_replicas() {
        let (_dir, store) = temp_store();
        assert!(store.replicas("default").unwrap().is_empty());

        let web1 = ReplicaKey::new("web", 1);
        let web2 = ReplicaKey::new("web", 2);
        let worker1 = ReplicaKey::new("worker", 1);
        let r1 = ReleaseId("r1-aaaaaaaa".into());
        let r2 = ReleaseId("r2-bbbbbbbb".into());
        store
            .put_replica("default", &web2, &r1, Some(8001), &record(20))
            .unwrap();
        store
            .put_replica("default", &worker1, &r1, None, &record(30))
            .unwrap();
        store
            .put_replica("default", &web1, &r1, Some(8000), &record(10))
            .unwrap();
        store
            .put_replica("staging", &web1, &r1, Some(9000), &record(40))
            .unwrap();

        let listed = store.replicas("default").unwrap();
        let keys: Vec<_> = listed.iter().map(|r| r.key.clone()).collect();
        assert_eq!(keys, vec![web1.clone(), web2.clone(), worker1.clone()]);
        assert_eq!(
            listed[0],
            StoredReplica {
                key: web1.clone(),
                release: r1.clone(),
                port: Some(8000),
                record: record(10),
            }
        );
        assert_eq!(listed[2].port, None);

        // Replacing a slot's process.
        store
            .put_replica("default", &web1, &r2, Some(8005), &record(50))
            .unwrap();
        let listed = store.replicas("default").unwrap();
        assert_eq!(listed.len(), 3);
        assert_eq!(listed[0].release, r2);
        assert_eq!(listed[0].port, Some(8005));
        assert_eq!(listed[0].record, record(50));

        store.remove_replica("default", &web1).unwrap();
        store.remove_replica("default", &web1).unwrap();
        let keys: Vec<_> = store
            .replicas("default")
            .unwrap()
            .into_iter()
            .map(|r| r.key)
            .collect();
        assert_eq!(keys, vec![web2, worker1]);
        assert_eq!(store.replicas("staging").unwrap().len(), 1);
    }
}
