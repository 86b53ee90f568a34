//! Events: each environment's history, trimmed to the newest [`MAX_EVENTS_PER_ENVIRONMENT`].

use anyhow::Context;
use berth_model::{Event, EventLevel};
use rusqlite::params;

use crate::Store;

/// Events kept per environment; older ones are deleted as new ones arrive.
pub const MAX_EVENTS_PER_ENVIRONMENT: u32 = 10_000;

fn level_to_str(level: EventLevel) -> &'static str {
    match level {
        EventLevel::Info => "info",
        EventLevel::Warn => "warn",
        EventLevel::Error => "error",
    }
}

fn level_from_str(level: &str) -> Option<EventLevel> {
    match level {
        "info" => Some(EventLevel::Info),
        "warn" => Some(EventLevel::Warn),
        "error" => Some(EventLevel::Error),
        _ => None,
    }
}

impl Store {
    /// Appends an event to `env`'s history, deleting the oldest beyond the limit.
    pub fn push_event(&self, env: &str, event: &Event) -> anyhow::Result<()> {
        self.push_event_keeping(env, event, MAX_EVENTS_PER_ENVIRONMENT)
    }

    fn push_event_keeping(&self, env: &str, event: &Event, keep: u32) -> anyhow::Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        // Both statements are primary-key range lookups: cost does not grow with the history.
        let seq: i64 = tx
            .prepare_cached(
                "INSERT INTO events (environment, seq, at, level, subject, message)
                 VALUES (?1,
                         (SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE environment = ?1),
                         ?2, ?3, ?4, ?5)
                 RETURNING seq",
            )?
            .query_row(
                params![
                    env,
                    event.at,
                    level_to_str(event.level),
                    event.subject,
                    event.message
                ],
                |r| r.get(0),
            )
            .context("recording an event")?;
        tx.prepare_cached("DELETE FROM events WHERE environment = ?1 AND seq <= ?2")?
            .execute(params![env, seq - i64::from(keep)])?;
        tx.commit()?;
        Ok(())
    }

    /// The newest `limit` events of `env`, oldest first (newest last).
    pub fn events(&self, env: &str, limit: usize) -> anyhow::Result<Vec<Event>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = self.conn.prepare_cached(
            "SELECT at, level, subject, message FROM events
             WHERE environment = ?1 ORDER BY seq DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![env, limit], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        let mut events = Vec::new();
        for row in rows {
            let (at, level, subject, message) = row?;
            let level = level_from_str(&level)
                .with_context(|| format!("unknown event level {level:?} in the database"))?;
            events.push(Event {
                at,
                level,
                subject,
                message,
            });
        }
        events.reverse();
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::temp_store;

    fn event(n: i64) -> Event {
        Event {
            at: 1_700_000_000 + n,
            level: match n % 3 {
                0 => EventLevel::Info,
                1 => EventLevel::Warn,
                _ => EventLevel::Error,
            },
            subject: format!("web.{n}"),
            message: format!("event {n}"),
        }
    }

    #[test]
    fn events_come_back_newest_last() {
        let (_dir, store) = temp_store();
        assert!(store.events("default", 10).unwrap().is_empty());
        for n in 0..5 {
            store.push_event("default", &event(n)).unwrap();
        }
        store.push_event("staging", &event(99)).unwrap();

        let all = store.events("default", 100).unwrap();
        assert_eq!(all, (0..5).map(event).collect::<Vec<_>>());
        assert_eq!(
            store.events("default", 2).unwrap(),
            vec![event(3), event(4)]
        );
        assert_eq!(store.events("default", 0).unwrap(), vec![]);
        assert_eq!(store.events("staging", 10).unwrap(), vec![event(99)]);
    }

    #[test]
    fn old_events_are_trimmed_per_environment() {
        let (_dir, store) = temp_store();
        for n in 0..25 {
            store.push_event_keeping("default", &event(n), 10).unwrap();
        }
        for n in 0..3 {
            store.push_event_keeping("staging", &event(n), 10).unwrap();
        }
        let kept = store.events("default", 100).unwrap();
        assert_eq!(kept, (15..25).map(event).collect::<Vec<_>>());
        assert_eq!(store.events("staging", 100).unwrap().len(), 3);
        let rows: i64 = store
            .conn
            .query_row(
                "SELECT COUNT(*) FROM events WHERE environment = 'default'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(rows, 10);
    }

    #[test]
    fn the_real_limit_is_ten_thousand() {
        let (_dir, store) = temp_store();
        let total = MAX_EVENTS_PER_ENVIRONMENT as i64 + 5;
        for n in 0..total {
            store.push_event("default", &event(n)).unwrap();
        }
        let kept = store.events("default", usize::MAX).unwrap();
        assert_eq!(kept.len(), MAX_EVENTS_PER_ENVIRONMENT as usize);
        assert_eq!(kept.first(), Some(&event(5)));
        assert_eq!(kept.last(), Some(&event(total - 1)));
    }
}
