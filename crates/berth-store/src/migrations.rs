//! Schema migrations: an ordered list of SQL scripts; `PRAGMA user_version` counts those applied.
//!
//! Migrations are append-only: never edit one that has shipped, add a new one instead.

use anyhow::Context;
use rusqlite::{Connection, TransactionBehavior};

/// Every migration, in order; migration `i` (0-based) takes the schema to version `i + 1`.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: releases, current releases, scale overrides, replica records, events.
    r#"
    CREATE TABLE releases (
        service     TEXT    NOT NULL,
        id          TEXT    NOT NULL,
        seq         INTEGER NOT NULL,
        created_at  INTEGER NOT NULL,
        fingerprint TEXT    NOT NULL,
        source_rev  TEXT,
        spec_hash   TEXT    NOT NULL,
        dir         TEXT    NOT NULL,
        PRIMARY KEY (service, id),
        UNIQUE (service, seq)
    );
    CREATE INDEX releases_by_fingerprint ON releases (service, fingerprint);

    -- The highest sequence number ever used per service, so that deleting the newest release
    -- never lets its number be handed out again.
    CREATE TABLE release_seqs (
        service  TEXT    NOT NULL PRIMARY KEY,
        last_seq INTEGER NOT NULL
    );

    CREATE TABLE current_releases (
        environment TEXT NOT NULL,
        service     TEXT NOT NULL,
        release_id  TEXT NOT NULL,
        PRIMARY KEY (environment, service),
        FOREIGN KEY (service, release_id) REFERENCES releases (service, id)
    );

    CREATE TABLE desired_replicas (
        environment TEXT    NOT NULL,
        service     TEXT    NOT NULL,
        replicas    INTEGER NOT NULL,
        PRIMARY KEY (environment, service)
    );

    CREATE TABLE replicas (
        environment TEXT    NOT NULL,
        service     TEXT    NOT NULL,
        slot        INTEGER NOT NULL,
        release_id  TEXT    NOT NULL,
        port        INTEGER,
        record      TEXT    NOT NULL,
        PRIMARY KEY (environment, service, slot)
    );

    -- `seq` counts the events of one environment (1, 2, 3...), which makes keeping the newest N
    -- a single range delete on the primary key.
    CREATE TABLE events (
        environment TEXT    NOT NULL,
        seq         INTEGER NOT NULL,
        at          INTEGER NOT NULL,
        level       TEXT    NOT NULL,
        subject     TEXT    NOT NULL,
        message     TEXT    NOT NULL,
        PRIMARY KEY (environment, seq)
    );
    "#,
    // 2: deploys, the service settings each release was made with, traffic weights under way.
    r#"
    CREATE TABLE deploys (
        id          INTEGER PRIMARY KEY,
        environment TEXT    NOT NULL,
        service     TEXT    NOT NULL,
        state       TEXT    NOT NULL,
        record      TEXT    NOT NULL
    );
    CREATE INDEX deploys_by_service ON deploys (environment, service, state);

    CREATE TABLE release_specs (
        service    TEXT NOT NULL,
        release_id TEXT NOT NULL,
        spec       TEXT NOT NULL,
        PRIMARY KEY (service, release_id)
    );

    CREATE TABLE traffic_weights (
        environment TEXT NOT NULL,
        service     TEXT NOT NULL,
        weights     TEXT NOT NULL,
        PRIMARY KEY (environment, service)
    );
    "#,
    // 3: the releases whose `migrate` command succeeded, per environment (so `berth up` migrates
    // a release once, and a restart does not migrate it again).
    r#"
    CREATE TABLE migrated_releases (
        environment TEXT    NOT NULL,
        service     TEXT    NOT NULL,
        release_id  TEXT    NOT NULL,
        at          INTEGER NOT NULL,
        PRIMARY KEY (environment, service, release_id)
    );
    -- The releases current before this table existed ran (their migrations were applied by a
    -- deploy or by hand): `berth up` must not migrate them again.
    INSERT INTO migrated_releases (environment, service, release_id, at)
        SELECT environment, service, release_id, 0 FROM current_releases;
    "#,
    // 4: alarms: the state of each alarm per environment and the history of its transitions.
    r#"
    CREATE TABLE alarm_states (
        environment  TEXT    NOT NULL,
        name         TEXT    NOT NULL,
        state        TEXT    NOT NULL,
        reason       TEXT    NOT NULL,
        since        INTEGER NOT NULL,
        evaluated_at INTEGER NOT NULL,
        PRIMARY KEY (environment, name)
    );
    -- `seq` counts the transitions of one environment, like `events`.
    CREATE TABLE alarm_history (
        environment TEXT    NOT NULL,
        seq         INTEGER NOT NULL,
        name        TEXT    NOT NULL,
        at          INTEGER NOT NULL,
        previous    TEXT    NOT NULL,
        state       TEXT    NOT NULL,
        reason      TEXT    NOT NULL,
        PRIMARY KEY (environment, seq)
    );
    "#,
];

/// Applies the migrations of `migrations` the database has not seen yet, each in its own
/// transaction together with the `user_version` bump.
pub(crate) fn migrate(conn: &mut Connection, migrations: &[&str]) -> anyhow::Result<()> {
    let latest = migrations.len();
    loop {
        // IMMEDIATE: take the write lock before reading the version, so that two processes
        // opening the same new database do not both apply a migration.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version = user_version(&tx)?;
        anyhow::ensure!(
            version <= latest,
            "the database has schema version {version}, newer than this Berth knows ({latest}); \
             upgrade Berth"
        );
        if version == latest {
            return Ok(());
        }
        tx.execute_batch(migrations[version])
            .with_context(|| format!("applying migration {}", version + 1))?;
        tx.pragma_update(None, "user_version", (version + 1) as i64)?;
        tx.commit()?;
    }
}

/// The schema version recorded in the database.
pub(crate) fn user_version(conn: &Connection) -> anyhow::Result<usize> {
    let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    usize::try_from(v).context("negative user_version")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;

    fn table_names(conn: &Connection) -> Vec<String> {
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn opening_twice_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let store = Store::open(&path).unwrap();
        store.set_desired_replicas("default", "web", 2).unwrap();
        let tables = table_names(&store.conn);
        drop(store);

        let store = Store::open(&path).unwrap();
        assert_eq!(user_version(&store.conn).unwrap(), MIGRATIONS.len());
        assert_eq!(table_names(&store.conn), tables);
        assert_eq!(store.desired_replicas("default", "web").unwrap(), Some(2));
    }

    #[test]
    fn every_older_schema_upgrades_to_the_latest() {
        for n in 0..MIGRATIONS.len() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("state.db");
            {
                let mut conn = crate::open_connection(&path).unwrap();
                migrate(&mut conn, &MIGRATIONS[..n]).unwrap();
                assert_eq!(user_version(&conn).unwrap(), n);
            }
            let store = Store::open(&path).unwrap();
            assert_eq!(user_version(&store.conn).unwrap(), MIGRATIONS.len());
            store.set_desired_replicas("default", "web", 1).unwrap();
        }
    }

    #[test]
    fn the_releases_current_before_migrations_were_recorded_count_as_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let mut conn = crate::open_connection(&path).unwrap();
            migrate(&mut conn, &MIGRATIONS[..2]).unwrap();
            conn.execute_batch(
                "INSERT INTO releases (service, id, seq, fingerprint, dir, created_at, spec_hash, source_rev)
                     VALUES ('web', 'r1-aaaa', 1, 'f', '/x', 0, 'h', NULL);
                 INSERT INTO current_releases (environment, service, release_id)
                     VALUES ('default', 'web', 'r1-aaaa');",
            )
            .unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert!(store.is_migrated("default", "web", "r1-aaaa").unwrap());
        assert!(!store.is_migrated("staging", "web", "r1-aaaa").unwrap());
    }

    #[test]
    fn a_database_at_migration_n_gets_only_the_newer_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let mut conn = crate::open_connection(&path).unwrap();
        let v1 = "CREATE TABLE t (a INTEGER NOT NULL);";
        let v2 = "ALTER TABLE t ADD COLUMN b INTEGER NOT NULL DEFAULT 7;";
        migrate(&mut conn, &[v1]).unwrap();
        conn.execute("INSERT INTO t (a) VALUES (1)", []).unwrap();
        assert_eq!(user_version(&conn).unwrap(), 1);

        // Re-running migration 1 would fail ("table t already exists"): only 2 may run.
        migrate(&mut conn, &[v1, v2]).unwrap();
        assert_eq!(user_version(&conn).unwrap(), 2);
        let (a, b): (i64, i64) = conn
            .query_row("SELECT a, b FROM t", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap();
        assert_eq!((a, b), (1, 7));
        migrate(&mut conn, &[v1, v2]).unwrap();
    }

    #[test]
    fn a_failed_migration_leaves_the_previous_version() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = crate::open_connection(&dir.path().join("state.db")).unwrap();
        let v1 = "CREATE TABLE t (a INTEGER);";
        let broken = "CREATE TABLE u (a INTEGER); THIS IS NOT SQL;";
        migrate(&mut conn, &[v1]).unwrap();
        assert!(migrate(&mut conn, &[v1, broken]).is_err());
        assert_eq!(user_version(&conn).unwrap(), 1);
        assert!(!table_names(&conn).contains(&"u".to_string()));
    }

    #[test]
    fn a_newer_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let conn = crate::open_connection(&path).unwrap();
            conn.pragma_update(None, "user_version", 999).unwrap();
        }
        let err = Store::open(&path).unwrap_err();
        assert!(format!("{err:#}").contains("newer"), "{err:#}");
    }
}
