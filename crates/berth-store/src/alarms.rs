//! Alarm states per environment (state, reason, since when) and the history of their
//! transitions, trimmed to the newest [`MAX_ALARM_TRANSITIONS`]. States are strings here
//! (`OK`, `ALARM`, `INSUFFICIENT_DATA`): what they mean is `berth-alarms`'.

use anyhow::Context;
use berth_model::api::AlarmTransition;
use rusqlite::{params, OptionalExtension};

use crate::Store;

/// Transitions kept per environment; older ones are deleted as new ones arrive.
pub const MAX_ALARM_TRANSITIONS: u32 = 5_000;

/// The stored state of one alarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAlarm {
    pub name: String,
    pub state: String,
    pub reason: String,
    /// Unix seconds of the last transition.
    pub since: i64,
    /// Unix seconds of the last evaluation.
    pub evaluated_at: i64,
}

impl Store {
    /// Every stored alarm state of `env`, by name.
    pub fn alarm_states(&self, env: &str) -> anyhow::Result<Vec<StoredAlarm>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT name, state, reason, since, evaluated_at FROM alarm_states
             WHERE environment = ?1 ORDER BY name",
        )?;
        let rows = stmt.query_map(params![env], |r| {
            Ok(StoredAlarm {
                name: r.get(0)?,
                state: r.get(1)?,
                reason: r.get(2)?,
                since: r.get(3)?,
                evaluated_at: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The stored state of one alarm.
    pub fn alarm_state(&self, env: &str, name: &str) -> anyhow::Result<Option<StoredAlarm>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT name, state, reason, since, evaluated_at FROM alarm_states
                 WHERE environment = ?1 AND name = ?2",
            )?
            .query_row(params![env, name], |r| {
                Ok(StoredAlarm {
                    name: r.get(0)?,
                    state: r.get(1)?,
                    reason: r.get(2)?,
                    since: r.get(3)?,
                    evaluated_at: r.get(4)?,
                })
            })
            .optional()?)
    }

    /// Records an evaluation at `at`: a new state (a transition: state, reason and history row,
    /// in one transaction) when `state` differs from the stored one or none is stored; else only
    /// the evaluation time. Returns whether it was a transition.
    pub fn record_alarm_evaluation(
        &self,
        env: &str,
        name: &str,
        state: &str,
        reason: &str,
        at: i64,
    ) -> anyhow::Result<bool> {
        let tx = self.conn.unchecked_transaction()?;
        let previous: Option<String> = tx
            .prepare_cached("SELECT state FROM alarm_states WHERE environment = ?1 AND name = ?2")?
            .query_row(params![env, name], |r| r.get(0))
            .optional()?;
        if previous.as_deref() == Some(state) {
            tx.prepare_cached(
                "UPDATE alarm_states SET evaluated_at = ?3 WHERE environment = ?1 AND name = ?2",
            )?
            .execute(params![env, name, at])?;
            tx.commit()?;
            return Ok(false);
        }
        tx.prepare_cached(
            "INSERT INTO alarm_states (environment, name, state, reason, since, evaluated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)
             ON CONFLICT (environment, name) DO UPDATE SET
                 state = excluded.state, reason = excluded.reason,
                 since = excluded.since, evaluated_at = excluded.evaluated_at",
        )?
        .execute(params![env, name, state, reason, at])?;
        let seq: i64 = tx
            .prepare_cached(
                "INSERT INTO alarm_history (environment, seq, name, at, previous, state, reason)
                 VALUES (?1,
                         (SELECT COALESCE(MAX(seq), 0) + 1 FROM alarm_history WHERE environment = ?1),
                         ?2, ?3, ?4, ?5, ?6)
                 RETURNING seq",
            )?
            .query_row(
                params![
                    env,
                    name,
                    at,
                    previous.as_deref().unwrap_or("INSUFFICIENT_DATA"),
                    state,
                    reason
                ],
                |r| r.get(0),
            )
            .context("recording an alarm transition")?;
        tx.prepare_cached("DELETE FROM alarm_history WHERE environment = ?1 AND seq <= ?2")?
            .execute(params![env, seq - i64::from(MAX_ALARM_TRANSITIONS)])?;
        tx.commit()?;
        Ok(true)
    }

    /// The newest `limit` transitions of `env` (of one alarm when `name` is given), oldest first.
    pub fn alarm_history(
        &self,
        env: &str,
        name: Option<&str>,
        limit: usize,
    ) -> anyhow::Result<Vec<AlarmTransition>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = self.conn.prepare_cached(
            "SELECT name, at, previous, state, reason FROM alarm_history
             WHERE environment = ?1 AND (?2 IS NULL OR name = ?2)
             ORDER BY seq DESC LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![env, name, limit], |r| {
            Ok(AlarmTransition {
                alarm: r.get(0)?,
                at: r.get(1)?,
                previous: r.get(2)?,
                state: r.get(3)?,
                reason: r.get(4)?,
            })
        })?;
        let mut transitions: Vec<AlarmTransition> = rows.collect::<Result<_, _>>()?;
        transitions.reverse();
        Ok(transitions)
    }

    /// Forgets the states of `env`'s alarms that are not in `keep` (removed from the spec); their
    /// history stays until it is trimmed.
    pub fn forget_alarms_except(&self, env: &str, keep: &[String]) -> anyhow::Result<usize> {
        let stored = self.alarm_states(env)?;
        let mut forgotten = 0;
        for alarm in stored.iter().filter(|a| !keep.contains(&a.name)) {
            forgotten += self
                .conn
                .prepare_cached("DELETE FROM alarm_states WHERE environment = ?1 AND name = ?2")?
                .execute(params![env, alarm.name])?;
        }
        Ok(forgotten)
    }
}

#[cfg(test)]
mod tests {
    use crate::test_support::temp_store;

    #[test]
    fn transitions_are_recorded_once_with_their_history() {
        let (_dir, store) = temp_store();
        assert!(store.alarm_states("default").unwrap().is_empty());
        assert!(store
            .record_alarm_evaluation("default", "cpu", "OK", "fine", 100)
            .unwrap());
        // The same state again: no transition, only the evaluation time.
        assert!(!store
            .record_alarm_evaluation("default", "cpu", "OK", "still fine", 160)
            .unwrap());
        assert!(store
            .record_alarm_evaluation("default", "cpu", "ALARM", "Threshold Crossed", 220)
            .unwrap());
        store
            .record_alarm_evaluation("staging", "cpu", "ALARM", "x", 220)
            .unwrap();
        let cpu = store.alarm_state("default", "cpu").unwrap().unwrap();
        assert_eq!(
            (
                cpu.state.as_str(),
                cpu.reason.as_str(),
                cpu.since,
                cpu.evaluated_at
            ),
            ("ALARM", "Threshold Crossed", 220, 220)
        );
        let history = store.alarm_history("default", None, 10).unwrap();
        let states: Vec<(&str, &str, i64)> = history
            .iter()
            .map(|t| (t.previous.as_str(), t.state.as_str(), t.at))
            .collect();
        assert_eq!(
            states,
            [("INSUFFICIENT_DATA", "OK", 100), ("OK", "ALARM", 220)]
        );
        assert_eq!(
            store.alarm_history("default", Some("other"), 10).unwrap(),
            []
        );
        assert_eq!(
            store
                .alarm_history("default", Some("cpu"), 1)
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            store
                .forget_alarms_except("default", &["mem".to_string()])
                .unwrap(),
            1
        );
        assert!(store.alarm_states("default").unwrap().is_empty());
        assert_eq!(store.alarm_states("staging").unwrap().len(), 1);
    }

    #[test]
    fn history_is_trimmed() {
        let (_dir, store) = temp_store();
        let total = super::MAX_ALARM_TRANSITIONS as i64 + 10;
        for i in 0..total {
            let state = if i % 2 == 0 { "OK" } else { "ALARM" };
            store
                .record_alarm_evaluation("default", "flappy", state, "r", i)
                .unwrap();
        }
        let history = store.alarm_history("default", None, usize::MAX).unwrap();
        assert_eq!(history.len(), super::MAX_ALARM_TRANSITIONS as usize);
        assert_eq!(history.last().unwrap().at, total - 1);
    }
}
