//! Deploy records, the service settings each release was made with, and the traffic weights of
//! rollouts under way (so a restarted daemon routes exactly as before it died).

use std::collections::BTreeMap;

use anyhow::Context;
use berth_model::{DeployRecord, DeployState, ReleaseId};
use rusqlite::{params, OptionalExtension};

use crate::Store;

impl Store {
    /// Records a new deploy; its id is assigned here and returned (also set in `record`).
    pub fn insert_deploy(&self, record: &mut DeployRecord) -> anyhow::Result<u64> {
        let tx = self.conn.unchecked_transaction()?;
        tx.prepare_cached(
            "INSERT INTO deploys (environment, service, state, record) VALUES (?1, ?2, ?3, '{}')",
        )?
        .execute(params![record.env, record.service, record.state.as_str()])?;
        record.id = tx.last_insert_rowid() as u64;
        tx.prepare_cached("UPDATE deploys SET record = ?2 WHERE id = ?1")?
            .execute(params![record.id as i64, serde_json::to_string(record)?])?;
        tx.commit()?;
        Ok(record.id)
    }

    /// Saves the deploy's current state.
    pub fn update_deploy(&self, record: &DeployRecord) -> anyhow::Result<()> {
        let changed = self
            .conn
            .prepare_cached("UPDATE deploys SET state = ?2, record = ?3 WHERE id = ?1")?
            .execute(params![
                record.id as i64,
                record.state.as_str(),
                serde_json::to_string(record)?
            ])?;
        anyhow::ensure!(changed == 1, "deploy {} is not recorded", record.id);
        Ok(())
    }

    pub fn deploy(&self, id: u64) -> anyhow::Result<Option<DeployRecord>> {
        let json: Option<String> = self
            .conn
            .prepare_cached("SELECT record FROM deploys WHERE id = ?1")?
            .query_row(params![id as i64], |r| r.get(0))
            .optional()?;
        json.map(|j| serde_json::from_str(&j).context("reading a deploy record"))
            .transpose()
    }

    /// The newest deploys of an environment (of one service, when given), newest first.
    pub fn deploys(
        &self,
        env: &str,
        service: Option<&str>,
        limit: usize,
    ) -> anyhow::Result<Vec<DeployRecord>> {
        let mut statement = self.conn.prepare_cached(
            "SELECT record FROM deploys WHERE environment = ?1 AND (?2 IS NULL OR service = ?2)
             ORDER BY id DESC LIMIT ?3",
        )?;
        let rows = statement.query_map(params![env, service, limit as i64], |r| {
            r.get::<_, String>(0)
        })?;
        rows.map(|row| Ok(serde_json::from_str(&row?)?)).collect()
    }

    /// Deploys still marked running (one per service at most, unless a daemon died mid-deploy).
    pub fn running_deploys(&self, env: &str) -> anyhow::Result<Vec<DeployRecord>> {
        let mut statement = self.conn.prepare_cached(
            "SELECT record FROM deploys WHERE environment = ?1 AND state = ?2 ORDER BY id",
        )?;
        let rows = statement.query_map(params![env, DeployState::Running.as_str()], |r| {
            r.get::<_, String>(0)
        })?;
        rows.map(|row| Ok(serde_json::from_str(&row?)?)).collect()
    }

    /// Keeps the service settings (`ServiceSpec` as JSON) a release was made with.
    pub fn put_release_spec(
        &self,
        service: &str,
        release: &ReleaseId,
        spec_json: &str,
    ) -> anyhow::Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO release_specs (service, release_id, spec) VALUES (?1, ?2, ?3)
                 ON CONFLICT (service, release_id) DO UPDATE SET spec = excluded.spec",
            )?
            .execute(params![service, release.0, spec_json])?;
        Ok(())
    }

    pub fn release_spec(
        &self,
        service: &str,
        release: &ReleaseId,
    ) -> anyhow::Result<Option<String>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT spec FROM release_specs WHERE service = ?1 AND release_id = ?2",
            )?
            .query_row(params![service, release.0], |r| r.get(0))
            .optional()?)
    }

    /// Records a service's release weights (empty: no split, the row is removed).
    pub fn set_traffic_weights(
        &self,
        env: &str,
        service: &str,
        weights: &BTreeMap<String, u32>,
    ) -> anyhow::Result<()> {
        if weights.is_empty() {
            self.conn
                .prepare_cached(
                    "DELETE FROM traffic_weights WHERE environment = ?1 AND service = ?2",
                )?
                .execute(params![env, service])?;
        } else {
            self.conn
                .prepare_cached(
                    "INSERT INTO traffic_weights (environment, service, weights) VALUES (?1, ?2, ?3)
                     ON CONFLICT (environment, service) DO UPDATE SET weights = excluded.weights",
                )?
                .execute(params![env, service, serde_json::to_string(weights)?])?;
        }
        Ok(())
    }

    /// Every service's recorded weights.
    pub fn traffic_weights(
        &self,
        env: &str,
    ) -> anyhow::Result<BTreeMap<String, BTreeMap<String, u32>>> {
        let mut statement = self.conn.prepare_cached(
            "SELECT service, weights FROM traffic_weights WHERE environment = ?1",
        )?;
        let rows = statement.query_map(params![env], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut out = BTreeMap::new();
        for row in rows {
            let (service, json) = row?;
            out.insert(service, serde_json::from_str(&json)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::temp_store;

    fn record(service: &str) -> DeployRecord {
        DeployRecord {
            id: 0,
            service: service.into(),
            env: "default".into(),
            strategy: "canary".into(),
            from_release: Some(ReleaseId("r1-a".into())),
            to_release: Some(ReleaseId("r2-b".into())),
            state: DeployState::Running,
            started_at: 1,
            finished_at: None,
            verdict: None,
            steps: vec![],
            traffic: Default::default(),
            rollback: false,
        }
    }

    #[test]
    fn deploys_are_numbered_updated_and_listed_newest_first() {
        let (_dir, store) = temp_store();
        let mut first = record("web");
        let mut second = record("api");
        assert_eq!(store.insert_deploy(&mut first).unwrap(), 1);
        assert_eq!(store.insert_deploy(&mut second).unwrap(), 2);
        assert_eq!(store.running_deploys("default").unwrap().len(), 2);
        first.state = DeployState::Succeeded;
        first.begin("switch");
        store.update_deploy(&first).unwrap();
        assert_eq!(store.deploy(1).unwrap().unwrap(), first);
        let running = store.running_deploys("default").unwrap();
        assert_eq!(running.len(), 1);
        assert_eq!(running[0].service, "api");
        let all = store.deploys("default", None, 10).unwrap();
        assert_eq!(all.iter().map(|d| d.id).collect::<Vec<_>>(), vec![2, 1]);
        assert_eq!(store.deploys("default", Some("web"), 10).unwrap().len(), 1);
        assert!(store.deploys("staging", None, 10).unwrap().is_empty());
        assert!(store.deploy(9).unwrap().is_none());
    }

    #[test]
    fn weights_round_trip_and_clear() {
        let (_dir, store) = temp_store();
        let weights: BTreeMap<String, u32> = [("r1".into(), 90), ("r2".into(), 10)].into();
        store
            .set_traffic_weights("default", "web", &weights)
            .unwrap();
        assert_eq!(store.traffic_weights("default").unwrap()["web"], weights);
        store
            .set_traffic_weights("default", "web", &BTreeMap::new())
            .unwrap();
        assert!(store.traffic_weights("default").unwrap().is_empty());
    }
}
