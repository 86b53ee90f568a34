//! Releases and which one is current per environment and service.

use anyhow::Context;
use berth_model::{Release, ReleaseId};
use rusqlite::{params, OptionalExtension, Row};

use crate::Store;

const RELEASE_COLUMNS: &str =
    "id, service, seq, created_at, fingerprint, source_rev, spec_hash, dir";

fn release_from_row(row: &Row<'_>) -> rusqlite::Result<Release> {
    Ok(Release {
        id: ReleaseId(row.get(0)?),
        service: row.get(1)?,
        seq: row.get(2)?,
        created_at: row.get(3)?,
        fingerprint: row.get(4)?,
        source_rev: row.get(5)?,
        spec_hash: row.get(6)?,
        dir: row.get(7)?,
    })
}

impl Store {
    /// The sequence number for the service's next release: one more than any it has had, even
    /// releases since deleted. It is not reserved: two calls before an insert return the same.
    pub fn next_release_seq(&self, service: &str) -> anyhow::Result<u32> {
        let last: Option<u32> = self
            .conn
            .prepare_cached(
                "SELECT MAX(s) FROM (
                     SELECT MAX(seq) AS s FROM releases WHERE service = ?1
                     UNION ALL
                     SELECT last_seq FROM release_seqs WHERE service = ?1
                 )",
            )?
            .query_row([service], |r| r.get(0))?;
        let last = last.unwrap_or(0);
        last.checked_add(1)
            .with_context(|| format!("{service} has run out of release numbers"))
    }

    /// Records a new release. Fails if the service already has one with that id or sequence number.
    pub fn insert_release(&self, release: &Release) -> anyhow::Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        tx.prepare_cached(&format!(
            "INSERT INTO releases ({RELEASE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
        ))?
        .execute(params![
            release.id.0,
            release.service,
            release.seq,
            release.created_at,
            release.fingerprint,
            release.source_rev,
            release.spec_hash,
            release.dir,
        ])
        .with_context(|| format!("recording release {} of {}", release.id, release.service))?;
        tx.prepare_cached(
            "INSERT INTO release_seqs (service, last_seq) VALUES (?1, ?2)
             ON CONFLICT (service) DO UPDATE SET last_seq = MAX(last_seq, excluded.last_seq)",
        )?
        .execute(params![release.service, release.seq])?;
        tx.commit()?;
        Ok(())
    }

    /// One release of a service.
    pub fn release(&self, service: &str, id: &ReleaseId) -> anyhow::Result<Option<Release>> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {RELEASE_COLUMNS} FROM releases WHERE service = ?1 AND id = ?2"
            ))?
            .query_row(params![service, id.0], release_from_row)
            .optional()?)
    }

    /// The releases of one service (newest first), or of all services (newest first, by
    /// creation time).
    pub fn releases(&self, service: Option<&str>) -> anyhow::Result<Vec<Release>> {
        let rows = match service {
            Some(service) => self
                .conn
                .prepare_cached(&format!(
                    "SELECT {RELEASE_COLUMNS} FROM releases WHERE service = ?1 ORDER BY seq DESC"
                ))?
                .query_map([service], release_from_row)?
                .collect::<Result<Vec<_>, _>>()?,
            None => self
                .conn
                .prepare_cached(&format!(
                    "SELECT {RELEASE_COLUMNS} FROM releases
                     ORDER BY created_at DESC, service, seq DESC"
                ))?
                .query_map([], release_from_row)?
                .collect::<Result<Vec<_>, _>>()?,
        };
        Ok(rows)
    }

    /// The newest release of the service with this fingerprint (same source and config), if any.
    pub fn find_release_by_fingerprint(
        &self,
        service: &str,
        fingerprint: &str,
    ) -> anyhow::Result<Option<Release>> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {RELEASE_COLUMNS} FROM releases
                 WHERE service = ?1 AND fingerprint = ?2 ORDER BY seq DESC LIMIT 1"
            ))?
            .query_row(params![service, fingerprint], release_from_row)
            .optional()?)
    }

    /// Forgets a release (nothing happens if there is none). Fails while the release is current
    /// in some environment.
    pub fn delete_release(&self, service: &str, id: &ReleaseId) -> anyhow::Result<()> {
        let current_in: Option<String> = self
            .conn
            .prepare_cached(
                "SELECT environment FROM current_releases
                 WHERE service = ?1 AND release_id = ?2 ORDER BY environment LIMIT 1",
            )?
            .query_row(params![service, id.0], |r| r.get(0))
            .optional()?;
        if let Some(env) = current_in {
            anyhow::bail!(
                "release {id} of {service} is the current release of environment {env}; \
                 it cannot be deleted"
            );
        }
        self.conn
            .prepare_cached("DELETE FROM releases WHERE service = ?1 AND id = ?2")?
            .execute(params![service, id.0])
            .with_context(|| format!("deleting release {id} of {service}"))?;
        Ok(())
    }

    /// Makes `id` the current release of the service in `env`. The release must be recorded.
    pub fn set_current_release(
        &self,
        env: &str,
        service: &str,
        id: &ReleaseId,
    ) -> anyhow::Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO current_releases (environment, service, release_id)
                 VALUES (?1, ?2, ?3)
                 ON CONFLICT (environment, service) DO UPDATE SET release_id = excluded.release_id",
            )?
            .execute(params![env, service, id.0])
            .with_context(|| {
                format!("making {id} the current release of {service} in {env} (is it recorded?)")
            })?;
        Ok(())
    }

    /// The current release of the service in `env`, if it has one.
    pub fn current_release(&self, env: &str, service: &str) -> anyhow::Result<Option<ReleaseId>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT release_id FROM current_releases WHERE environment = ?1 AND service = ?2",
            )?
            .query_row(params![env, service], |r| r.get(0).map(ReleaseId))
            .optional()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::temp_store;

    fn release(service: &str, seq: u32, fingerprint: &str, created_at: i64) -> Release {
        Release {
            id: ReleaseId(format!("r{seq}-{}", &fingerprint[..8])),
            service: service.into(),
            seq,
            created_at,
            fingerprint: fingerprint.into(),
            source_rev: (seq > 1).then(|| "abc123".to_string()),
            spec_hash: format!("spec{seq}"),
            dir: format!("/stack/.berth/releases/{service}/r{seq}"),
        }
    }

    #[test]
    fn insert_get_and_list_releases() {
        let (_dir, store) = temp_store();
        assert_eq!(store.next_release_seq("web").unwrap(), 1);
        assert!(store.releases(None).unwrap().is_empty());

        let r1 = release("web", 1, "aaaaaaaa11", 100);
        let r2 = release("web", 2, "bbbbbbbb22", 200);
        let w1 = release("worker", 1, "cccccccc33", 150);
        for r in [&r1, &r2, &w1] {
            store.insert_release(r).unwrap();
        }
        assert_eq!(store.next_release_seq("web").unwrap(), 3);
        assert_eq!(store.next_release_seq("worker").unwrap(), 2);
        assert_eq!(store.next_release_seq("other").unwrap(), 1);

        assert_eq!(store.release("web", &r2.id).unwrap(), Some(r2.clone()));
        assert_eq!(store.release("worker", &r2.id).unwrap(), None);
        assert_eq!(
            store.releases(Some("web")).unwrap(),
            vec![r2.clone(), r1.clone()]
        );
        assert_eq!(
            store.releases(None).unwrap(),
            vec![r2.clone(), w1, r1.clone()]
        );

        // Same id again is refused.
        assert!(store.insert_release(&r1).is_err());
    }

    #[test]
    fn find_by_fingerprint() {
        let (_dir, store) = temp_store();
        let r1 = release("web", 1, "aaaaaaaa11", 100);
        store.insert_release(&r1).unwrap();
        store
            .insert_release(&release("web", 2, "bbbbbbbb22", 200))
            .unwrap();
        assert_eq!(
            store
                .find_release_by_fingerprint("web", "aaaaaaaa11")
                .unwrap(),
            Some(r1)
        );
        assert_eq!(
            store
                .find_release_by_fingerprint("worker", "aaaaaaaa11")
                .unwrap(),
            None
        );
        assert_eq!(
            store.find_release_by_fingerprint("web", "zzz").unwrap(),
            None
        );
    }

    #[test]
    fn deleting_the_newest_release_does_not_reuse_its_number() {
        let (_dir, store) = temp_store();
        let r1 = release("web", 1, "aaaaaaaa11", 100);
        let r2 = release("web", 2, "bbbbbbbb22", 200);
        store.insert_release(&r1).unwrap();
        store.insert_release(&r2).unwrap();
        store.delete_release("web", &r2.id).unwrap();
        assert_eq!(store.release("web", &r2.id).unwrap(), None);
        assert_eq!(store.releases(Some("web")).unwrap(), vec![r1]);
        assert_eq!(store.next_release_seq("web").unwrap(), 3);
        // Deleting what is not there is fine.
        store.delete_release("web", &r2.id).unwrap();
    }

    #[test]
    fn current_release_per_environment() {
        let (_dir, store) = temp_store();
        let r1 = release("web", 1, "aaaaaaaa11", 100);
        let r2 = release("web", 2, "bbbbbbbb22", 200);
        store.insert_release(&r1).unwrap();
        store.insert_release(&r2).unwrap();

        assert_eq!(store.current_release("default", "web").unwrap(), None);
        store.set_current_release("default", "web", &r1.id).unwrap();
        store.set_current_release("staging", "web", &r2.id).unwrap();
        assert_eq!(
            store.current_release("default", "web").unwrap(),
            Some(r1.id.clone())
        );
        store.set_current_release("default", "web", &r2.id).unwrap();
        assert_eq!(
            store.current_release("default", "web").unwrap(),
            Some(r2.id.clone())
        );
        assert_eq!(
            store.current_release("staging", "web").unwrap(),
            Some(r2.id.clone())
        );
        assert_eq!(store.current_release("staging", "worker").unwrap(), None);

        // r1 is no longer current anywhere; r2 is.
        store.delete_release("web", &r1.id).unwrap();
        let err = store.delete_release("web", &r2.id).unwrap_err();
        assert!(err.to_string().contains("current"), "{err}");

        // An unknown release cannot be made current.
        assert!(store
            .set_current_release("default", "web", &ReleaseId("r9-deadbeef".into()))
            .is_err());
    }
}
