//! The store: one SQLite database (`.berth/ENV/metrics.db`) in WAL mode. Every sample is added
//! to its interval in every tier at once (10 s, 1 min, 1 h by default), so downsampling is a
//! merge at write time and needs no background job; `maintain` drops what is older than each
//! tier's retention, series left without points, and, when the file would outgrow its bound, the
//! oldest points of the finest tier that still spans more than two intervals.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use rusqlite::{params, Connection, OptionalExtension};

use crate::agg::Agg;
use crate::query::{self, unix, Points, Query};
use crate::{Config, Error, Observation, Sample};

/// The schema this code writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    labels TEXT NOT NULL,
    owner TEXT NOT NULL,
    UNIQUE (name, labels)
);
CREATE TABLE IF NOT EXISTS points (
    tier INTEGER NOT NULL,
    series INTEGER NOT NULL,
    t INTEGER NOT NULL,
    count INTEGER NOT NULL,
    sum REAL NOT NULL,
    min REAL NOT NULL,
    max REAL NOT NULL,
    hist BLOB NOT NULL,
    PRIMARY KEY (tier, series, t)
) WITHOUT ROWID;
";

/// A series' newest raw interval (see [`Store::latest`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Latest {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub agg: Agg,
}

/// What a write did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WriteReport {
    pub written: usize,
    /// Samples of new series refused by a cap, per owner (the caller logs them).
    pub refused: BTreeMap<String, usize>,
}

/// What `maintain` did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MaintainReport {
    /// Points older than their tier's retention.
    pub expired: usize,
    /// Points dropped to keep the size bound.
    pub trimmed: usize,
    /// Series removed because no point of theirs is left.
    pub series_removed: usize,
    /// Bytes the database file takes afterwards.
    pub bytes: u64,
}

struct Inner {
    conn: Connection,
    /// (name, labels as JSON) → series id.
    series: HashMap<(String, String), i64>,
    per_owner: HashMap<String, usize>,
    /// Owners already refused a series since the last `maintain` (logged once each).
    refused_owners: HashSet<String>,
}

/// The time-series store.
pub struct Store {
    inner: Mutex<Inner>,
    config: Config,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (creating it if needed) the database at `path`.
    pub fn open(path: impl AsRef<Path>, config: Config) -> Result<Store, Error> {
        let path = path.as_ref();
        if config.tiers.is_empty() {
            return Err(Error::Config("at least one tier is needed".into()));
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        make_private(path)?;
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(Error::Config(format!(
                "{} was written by a newer berth (schema {version}, this one knows {SCHEMA_VERSION})",
                path.display()
            )));
        }
        if version == 0 {
            // Before the first table: freed pages can then be given back to the file system.
            conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL;")?;
        }
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "journal_size_limit", 4 * 1024 * 1024)?;
        conn.execute_batch(SCHEMA)?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        let mut inner = Inner {
            conn,
            series: HashMap::new(),
            per_owner: HashMap::new(),
            refused_owners: HashSet::new(),
        };
        inner.load_series()?;
        Ok(Store {
            inner: Mutex::new(inner),
            config,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds `samples` taken at `at`, in one transaction. A sample of a new series whose owner
    /// already has `max_series_per_owner` series (or when the store has `max_series`) is refused
    /// and counted in the report.
    pub fn write(&self, at: SystemTime, samples: &[Sample]) -> Result<WriteReport, Error> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let now = unix(at);
        let mut report = WriteReport::default();
        let tx = inner.conn.transaction()?;
        for sample in samples {
            let agg = sample.value.to_agg();
            if agg.is_empty() {
                continue;
            }
            let labels = serde_json::to_string(&sample.labels).unwrap_or_default();
            let key = (sample.name.clone(), labels);
            let id = match inner.series.get(&key) {
                Some(id) => *id,
                None => {
                    let owned = inner.per_owner.get(&sample.owner).copied().unwrap_or(0);
                    if owned >= self.config.max_series_per_owner
                        || inner.series.len() >= self.config.max_series
                    {
                        *report.refused.entry(sample.owner.clone()).or_insert(0) += 1;
                        if inner.refused_owners.insert(sample.owner.clone()) {
                            tracing::warn!(
                                "metrics: `{}` has {owned} series (cap {} per owner, {} in all); new series such as `{}` are dropped",
                                sample.owner,
                                self.config.max_series_per_owner,
                                self.config.max_series,
                                sample.name.chars().take(80).collect::<String>()
                            );
                        }
                        continue;
                    }
                    tx.execute(
                        "INSERT INTO series (name, labels, owner) VALUES (?1, ?2, ?3)",
                        params![key.0, key.1, sample.owner],
                    )?;
                    let id = tx.last_insert_rowid();
                    inner.series.insert(key, id);
                    *inner.per_owner.entry(sample.owner.clone()).or_insert(0) += 1;
                    id
                }
            };
            for (tier, spec) in self.config.tiers.iter().enumerate() {
                let step = spec.step.as_secs().max(1) as i64;
                let t = now - now.rem_euclid(step);
                let mut merged = read_point(&tx, tier, id, t)?.unwrap_or_default();
                merged.merge(&agg);
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO points (tier, series, t, count, sum, min, max, hist)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?
                .execute(params![
                    tier as i64,
                    id,
                    t,
                    merged.count as i64,
                    merged.sum,
                    merged.min,
                    merged.max,
                    merged.encode_hist()
                ])?;
            }
            report.written += 1;
        }
        tx.commit()?;
        Ok(report)
    }

    /// Drops expired points and empty series, keeps the file within `max_bytes`, gives freed
    /// pages back to the file system. Call it every minute or so.
    pub fn maintain(&self, now: SystemTime) -> Result<MaintainReport, Error> {
        let mut inner = self.lock();
        let mut report = MaintainReport::default();
        let now = unix(now);
        let ids: Vec<i64> = inner.series.values().copied().collect();
        {
            let tx = inner.conn.transaction()?;
            for (tier, spec) in self.config.tiers.iter().enumerate() {
                let cutoff = now - spec.retention.as_secs() as i64;
                let mut delete = tx.prepare_cached(
                    "DELETE FROM points WHERE tier = ?1 AND series = ?2 AND t < ?3",
                )?;
                for id in &ids {
                    report.expired += delete.execute(params![tier as i64, id, cutoff])?;
                }
            }
            tx.commit()?;
        }
        // The size bound: the oldest quarter of the finest tier that spans more than two of
        // its intervals, again while over the bound (at most 64 rounds).
        for _ in 0..64 {
            if inner.used_bytes()? <= self.config.max_bytes {
                break;
            }
            let mut trimmed = false;
            for (tier, spec) in self.config.tiers.iter().enumerate() {
                let step = spec.step.as_secs().max(1) as i64;
                let span: Option<(i64, i64)> = inner
                    .conn
                    .query_row(
                        "SELECT min(t), max(t) FROM points WHERE tier = ?1",
                        params![tier as i64],
                        |r| Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, Option<i64>>(1)?)),
                    )
                    .map(|(a, b)| a.zip(b))?;
                let Some((oldest, newest)) = span else {
                    continue;
                };
                if newest - oldest < 2 * step {
                    continue;
                }
                let cut = oldest + ((newest - oldest) / 4).max(step);
                let n = inner.conn.execute(
                    "DELETE FROM points WHERE tier = ?1 AND t < ?2",
                    params![tier as i64, cut],
                )?;
                report.trimmed += n;
                trimmed = true;
                break;
            }
            if !trimmed {
                tracing::warn!(
                    "metrics: {} is over its bound of {} bytes with nothing left to trim (too many series for the bound)",
                    self.path.display(),
                    self.config.max_bytes
                );
                break;
            }
        }
        if report.trimmed > 0 {
            tracing::warn!(
                "metrics: {} points dropped, oldest first, to keep {} within {} bytes",
                report.trimmed,
                self.path.display(),
                self.config.max_bytes
            );
        }
        report.series_removed = inner.remove_empty_series(self.config.tiers.len())?;
        {
            // One page per step: run it to its end.
            let mut vacuum = inner.conn.prepare("PRAGMA incremental_vacuum")?;
            let mut rows = vacuum.query([])?;
            while rows.next()?.is_some() {}
        }
        // Keep the WAL small too: what it holds is in the database file after this.
        let _ = inner
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        inner.refused_owners.clear();
        report.bytes = inner.file_bytes()?;
        Ok(report)
    }

    /// The bytes the database file (and its WAL) take on disk.
    pub fn bytes(&self) -> Result<u64, Error> {
        let inner = self.lock();
        let wal = std::fs::metadata(wal_path(&self.path))
            .map(|m| m.len())
            .unwrap_or(0);
        Ok(inner.file_bytes()? + wal)
    }

    /// The names stored, sorted.
    pub fn names(&self) -> Vec<String> {
        let inner = self.lock();
        let mut names: Vec<String> = inner
            .series
            .keys()
            .map(|(n, _)| n.clone())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        names.sort();
        names
    }

    /// How many series there are.
    pub fn series_count(&self) -> usize {
        self.lock().series.len()
    }

    /// One `Points` per series of `query.name` matching its labels.
    pub fn query(&self, query: &Query) -> Result<Vec<Points>, Error> {
        let n = query::periods(query)?;
        let inner = self.lock();
        let mut out = Vec::new();
        for (labels, id) in inner.matching(query) {
            let periods = inner.periods(&self.config, &[id], query, n)?;
            let (from, step) = (unix(query.from), query.step.as_secs() as i64);
            out.push(Points {
                labels,
                points: query::points(from, step, query.statistic, &periods),
            });
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }

    /// The statistic over all matching series merged into one per period (what an alarm on a
    /// service watches). Its labels are the query's filters.
    pub fn query_merged(&self, query: &Query) -> Result<Points, Error> {
        let n = query::periods(query)?;
        let inner = self.lock();
        let ids: Vec<i64> = inner
            .matching(query)
            .into_iter()
            .map(|(_, id)| id)
            .collect();
        let periods = inner.periods(&self.config, &ids, query, n)?;
        let (from, step) = (unix(query.from), query.step.as_secs() as i64);
        Ok(Points {
            labels: query.labels.clone(),
            points: query::points(from, step, query.statistic, &periods),
        })
    }

    /// Every `wanted` series' newest raw interval that may hold a sample taken within `max_age`
    /// before `now` (series that stopped, e.g. of a replica gone, are left out).
    pub fn latest(
        &self,
        now: SystemTime,
        max_age: Duration,
        wanted: impl Fn(&str) -> bool,
    ) -> Result<Vec<Latest>, Error> {
        let inner = self.lock();
        // A raw interval is stamped with its start: one that began up to a step before
        // `now - max_age` may still hold a sample that recent.
        let step = self.config.tiers[0].step.as_secs() as i64;
        let since = unix(now) - max_age.as_secs() as i64 - step;
        let mut out = Vec::new();
        let mut stmt = inner.conn.prepare_cached(
            "SELECT t FROM points WHERE tier = 0 AND series = ?1 ORDER BY t DESC LIMIT 1",
        )?;
        for ((name, labels), id) in inner.series.iter().filter(|((name, _), _)| wanted(name)) {
            let t: Option<i64> = stmt.query_row(params![id], |r| r.get(0)).optional()?;
            let Some(t) = t.filter(|t| *t >= since) else {
                continue;
            };
            if let Some(agg) = read_point(&inner.conn, 0, *id, t)? {
                let labels = serde_json::from_str(labels).unwrap_or_default();
                out.push(Latest {
                    name: name.clone(),
                    labels,
                    agg,
                });
            }
        }
        out.sort_by(|a, b| (&a.name, &a.labels).cmp(&(&b.name, &b.labels)));
        Ok(out)
    }
}

impl Inner {
    fn load_series(&mut self) -> Result<(), Error> {
        self.series.clear();
        self.per_owner.clear();
        let mut stmt = self
            .conn
            .prepare("SELECT id, name, labels, owner FROM series")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        for row in rows {
            let (id, name, labels, owner) = row?;
            self.series.insert((name, labels), id);
            *self.per_owner.entry(owner).or_insert(0) += 1;
        }
        Ok(())
    }

    fn used_bytes(&self) -> Result<u64, Error> {
        let pages: i64 = self.conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        let free: i64 = self
            .conn
            .query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
        let size: i64 = self.conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        Ok(((pages - free).max(0) * size) as u64)
    }

    fn file_bytes(&self) -> Result<u64, Error> {
        let pages: i64 = self.conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        let size: i64 = self.conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        Ok((pages * size) as u64)
    }

    fn remove_empty_series(&mut self, tiers: usize) -> Result<usize, Error> {
        let ids: Vec<i64> = self.series.values().copied().collect();
        let mut empty = Vec::new();
        {
            let mut any = self
                .conn
                .prepare_cached("SELECT 1 FROM points WHERE tier = ?1 AND series = ?2 LIMIT 1")?;
            for id in ids {
                let mut found = false;
                for tier in 0..tiers {
                    if any.exists(params![tier as i64, id])? {
                        found = true;
                        break;
                    }
                }
                if !found {
                    empty.push(id);
                }
            }
        }
        if empty.is_empty() {
            return Ok(0);
        }
        let tx = self.conn.transaction()?;
        for id in &empty {
            tx.execute("DELETE FROM series WHERE id = ?1", params![id])?;
        }
        tx.commit()?;
        self.load_series()?;
        Ok(empty.len())
    }

    /// Series of the query's name whose labels include all of the query's.
    fn matching(&self, query: &Query) -> Vec<(BTreeMap<String, String>, i64)> {
        self.series
            .iter()
            .filter(|((name, _), _)| *name == query.name)
            .filter_map(|((_, labels), id)| {
                let labels: BTreeMap<String, String> = serde_json::from_str(labels).ok()?;
                query
                    .labels
                    .iter()
                    .all(|(k, v)| labels.get(k) == Some(v))
                    .then_some((labels, *id))
            })
            .collect()
    }

    /// The periods of `query` over the series `ids` merged.
    fn periods(
        &self,
        config: &Config,
        ids: &[i64],
        query: &Query,
        n: u64,
    ) -> Result<Vec<Agg>, Error> {
        let (from, to, step) = (
            unix(query.from),
            unix(query.to),
            query.step.as_secs() as i64,
        );
        let mut oldest = Vec::with_capacity(config.tiers.len());
        {
            let mut stmt = self
                .conn
                .prepare_cached("SELECT min(t) FROM points WHERE tier = ?1 AND series = ?2")?;
            for tier in 0..config.tiers.len() {
                let mut min: Option<i64> = None;
                for id in ids {
                    let t: Option<i64> = stmt.query_row(params![tier as i64, id], |r| r.get(0))?;
                    min = match (min, t) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
                oldest.push(min);
            }
        }
        let mut rows = Vec::new();
        let mut stmt = self.conn.prepare_cached(
            "SELECT t, count, sum, min, max, hist FROM points
             WHERE tier = ?1 AND series = ?2 AND t >= ?3 AND t < ?4",
        )?;
        for (tier, start, end) in query::plan_tiers(&config.tiers, &oldest, from, to) {
            for id in ids {
                let found = stmt.query_map(params![tier as i64, id, start, end], row_agg)?;
                for row in found {
                    rows.push(row?);
                }
            }
        }
        Ok(query::bucket_rows(from, step, n, rows))
    }
}

fn row_agg(r: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, Agg)> {
    let hist: Vec<u8> = r.get(5)?;
    Ok((
        r.get(0)?,
        Agg {
            count: r.get::<_, i64>(1)?.max(0) as u64,
            sum: r.get(2)?,
            min: r.get(3)?,
            max: r.get(4)?,
            hist: Agg::decode_hist(&hist).unwrap_or_default(),
        },
    ))
}

fn read_point(conn: &Connection, tier: usize, id: i64, t: i64) -> Result<Option<Agg>, Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT t, count, sum, min, max, hist FROM points WHERE tier = ?1 AND series = ?2 AND t = ?3",
    )?;
    Ok(stmt
        .query_row(params![tier as i64, id, t], row_agg)
        .optional()?
        .map(|(_, agg)| agg))
}

fn wal_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// Creates the database file readable by its owner only (series name replicas and services).
fn make_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map(|_| ())
}

impl Observation {
    fn to_agg(&self) -> Agg {
        match self {
            Observation::Value(v) => {
                let mut agg = Agg::default();
                agg.add(*v, 1);
                agg
            }
            Observation::Histogram(values) => {
                let mut agg = Agg::default();
                for (v, n) in values {
                    agg.add(*v, *n);
                }
                agg
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Statistic, Tier};
    use std::time::UNIX_EPOCH;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn query(
        name: &str,
        labels: &[(&str, &str)],
        from: u64,
        to: u64,
        step: u64,
        st: Statistic,
    ) -> Query {
        Query {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            from: at(from),
            to: at(to),
            step: Duration::from_secs(step),
            statistic: st,
        }
    }

    fn values(points: &Points) -> Vec<Option<f64>> {
        points.points.iter().map(|p| p.1).collect()
    }

    const T0: u64 = 1_800_000_000; // a multiple of 3600

    #[test]
    fn samples_are_downsampled_and_an_hour_reads_the_same_from_every_tier() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("m.db"), Config::default()).unwrap();
        // One hour of cpu at 10 s: 0, 1, 2, ... 359.
        for i in 0..360u64 {
            let s = Sample::value(
                "cpu_percent",
                &[("service", "web"), ("replica", "web.1")],
                "replica:web.1",
                i as f64,
            );
            store.write(at(T0 + i * 10), &[s]).unwrap();
        }
        let raw = store
            .query(&query(
                "cpu_percent",
                &[],
                T0,
                T0 + 3600,
                3600,
                Statistic::Avg,
            ))
            .unwrap();
        assert_eq!(values(&raw[0]), vec![Some(179.5)]);
        // The same from the minute tier (as when the raw one is gone) and from the hour tier.
        let inner = store.lock();
        let ids: Vec<i64> = inner.series.values().copied().collect();
        for tier in 1..3 {
            let rows: i64 = inner
                .conn
                .query_row(
                    "SELECT count(*) FROM points WHERE tier = ?1",
                    params![tier],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(rows, if tier == 1 { 60 } else { 1 });
            let agg = read_point(&inner.conn, 2, ids[0], T0 as i64)
                .unwrap()
                .unwrap();
            assert_eq!((agg.count, agg.min, agg.max), (360, 0.0, 359.0));
            assert_eq!(agg.avg(), Some(179.5));
            let p99 = agg.quantile(0.99).unwrap();
            assert!((340.0..=359.0).contains(&p99), "{p99}");
        }
        drop(inner);
        // Per minute: six values each.
        let minutes = store
            .query(&query("cpu_percent", &[], T0, T0 + 120, 60, Statistic::Max))
            .unwrap();
        assert_eq!(values(&minutes[0]), vec![Some(5.0), Some(11.0)]);
        let count = store
            .query(&query(
                "cpu_percent",
                &[],
                T0,
                T0 + 60,
                60,
                Statistic::Count,
            ))
            .unwrap();
        assert_eq!(values(&count[0]), vec![Some(6.0)]);
    }

    #[test]
    fn expired_raw_points_are_served_by_the_coarser_tiers() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("m.db"), Config::default()).unwrap();
        for i in 0..360u64 {
            let s = Sample::value("host_load1", &[], "host", 2.0);
            store.write(at(T0 + i * 10), &[s]).unwrap();
        }
        // Two days later: the raw tier has expired, minutes and hours remain.
        let report = store.maintain(at(T0 + 2 * 86_400)).unwrap();
        assert_eq!(report.expired, 360);
        let q = query("host_load1", &[], T0, T0 + 3600, 600, Statistic::Count);
        let pts = store.query(&q).unwrap();
        assert_eq!(values(&pts[0]), vec![Some(60.0); 6]);
        // Eight days later only the hour is left.
        store.maintain(at(T0 + 8 * 86_400)).unwrap();
        let pts = store
            .query(&query(
                "host_load1",
                &[],
                T0,
                T0 + 3600,
                3600,
                Statistic::Avg,
            ))
            .unwrap();
        assert_eq!(values(&pts[0]), vec![Some(2.0)]);
        // After a year and a day nothing, and the series is gone too.
        let report = store.maintain(at(T0 + 366 * 86_400)).unwrap();
        assert_eq!(report.series_removed, 1);
        assert!(store.query(&q).unwrap().is_empty());
    }

    #[test]
    fn merged_series_give_one_answer_and_histograms_give_true_percentiles() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("m.db"), Config::default()).unwrap();
        for (release, fast, slow) in [("r1", 990u64, 10u64), ("r2", 900, 100)] {
            let s = Sample {
                name: "latency_ms".into(),
                labels: BTreeMap::from([
                    ("service".into(), "web".into()),
                    ("release".into(), release.into()),
                ]),
                owner: "edge".into(),
                value: Observation::Histogram(vec![(5.0, fast), (800.0, slow)]),
            };
            store.write(at(T0), &[s]).unwrap();
        }
        let q = query(
            "latency_ms",
            &[("service", "web")],
            T0,
            T0 + 10,
            10,
            Statistic::P99,
        );
        let each = store.query(&q).unwrap();
        assert_eq!(each.len(), 2);
        let r1 = each[0].points[0].1.unwrap();
        assert!(r1 < 6.0, "r1 p99 {r1}"); // 1% slow: the 99th is still fast
        let merged = store.query_merged(&q).unwrap();
        let p99 = merged.points[0].1.unwrap();
        assert!((740.0..=800.0).contains(&p99), "{p99}");
        assert_eq!(merged.labels["service"], "web");
        let count = store
            .query_merged(&Query {
                statistic: Statistic::Count,
                ..q.clone()
            })
            .unwrap();
        assert_eq!(count.points[0].1, Some(2000.0));
        // A filter that matches nothing: periods of None.
        let none = store
            .query_merged(&query(
                "latency_ms",
                &[("service", "api")],
                T0,
                T0 + 20,
                10,
                Statistic::Avg,
            ))
            .unwrap();
        assert_eq!(values(&none), vec![None, None]);
    }

    #[test]
    fn a_flood_of_series_is_cut_off_per_owner_and_the_file_stays_in_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            max_bytes: 1024 * 1024,
            max_series_per_owner: 50,
            ..Config::default()
        };
        let store = Store::open(dir.path().join("m.db"), config).unwrap();
        let flood: Vec<Sample> = (0..10_000)
            .map(|i| Sample::value("app:x", &[("id", &i.to_string())], "replica:web.1", 1.0))
            .collect();
        let report = store.write(at(T0), &flood).unwrap();
        assert_eq!(report.written, 50);
        assert_eq!(report.refused["replica:web.1"], 9_950);
        // Another owner is not hurt.
        let ok = store
            .write(
                at(T0),
                &[Sample::value("cpu_percent", &[], "replica:web.2", 1.0)],
            )
            .unwrap();
        assert_eq!(ok.written, 1);
        // Fill well past the bound: 100 series for 3 hours at 10 s.
        for step in 0..1_080u64 {
            let batch: Vec<Sample> = (0..100)
                .map(|i| {
                    Sample::value(
                        "cpu_percent",
                        &[("replica", &format!("r{i}"))],
                        &format!("o{}", i % 10),
                        step as f64,
                    )
                })
                .collect();
            store.write(at(T0 + step * 10), &batch).unwrap();
            if step % 360 == 359 {
                store.maintain(at(T0 + step * 10)).unwrap();
            }
        }
        let report = store.maintain(at(T0 + 10_800)).unwrap();
        let on_disk = std::fs::metadata(store.path()).unwrap().len();
        assert!(on_disk <= 1024 * 1024, "{on_disk} bytes");
        assert!(report.bytes <= 1024 * 1024);
        // The newest raw points survived the trimming, the oldest went.
        let recent = store
            .query_merged(&query(
                "cpu_percent",
                &[],
                T0 + 10_700,
                T0 + 10_800,
                100,
                Statistic::Max,
            ))
            .unwrap();
        assert_eq!(recent.points[0].1, Some(1_079.0));
        let inner = store.lock();
        let oldest_raw: i64 = inner
            .conn
            .query_row("SELECT min(t) FROM points WHERE tier = 0", [], |r| r.get(0))
            .unwrap();
        assert!(oldest_raw > T0 as i64, "nothing raw was trimmed");
    }

    #[test]
    fn points_and_caps_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.db");
        let config = Config {
            max_series_per_owner: 2,
            ..Config::default()
        };
        {
            let store = Store::open(&path, config.clone()).unwrap();
            let batch = [
                Sample::value(
                    "cpu_percent",
                    &[("replica", "web.1")],
                    "replica:web.1",
                    40.0,
                ),
                Sample::value(
                    "memory_bytes",
                    &[("replica", "web.1")],
                    "replica:web.1",
                    1e6,
                ),
            ];
            store.write(at(T0), &batch).unwrap();
        }
        let store = Store::open(&path, config).unwrap();
        let pts = store
            .query(&query(
                "cpu_percent",
                &[("replica", "web.1")],
                T0,
                T0 + 10,
                10,
                Statistic::Avg,
            ))
            .unwrap();
        assert_eq!(values(&pts[0]), vec![Some(40.0)]);
        // The owner's count was reloaded: a third series is refused.
        let report = store
            .write(
                at(T0 + 10),
                &[Sample::value("open_fds", &[], "replica:web.1", 9.0)],
            )
            .unwrap();
        assert_eq!(report.written, 0);
        assert_eq!(store.names(), vec!["cpu_percent", "memory_bytes"]);
    }

    #[test]
    fn the_newest_interval_of_live_series_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("m.db"), Config::default()).unwrap();
        store
            .write(
                at(T0),
                &[Sample::value(
                    "open_fds",
                    &[("replica", "gone.1")],
                    "o",
                    5.0,
                )],
            )
            .unwrap();
        for (t, v) in [(T0 + 100, 1.0), (T0 + 111, 2.0), (T0 + 115, 4.0)] {
            store
                .write(
                    at(t),
                    &[Sample::value(
                        "cpu_percent",
                        &[("replica", "web.1")],
                        "o",
                        v,
                    )],
                )
                .unwrap();
        }
        let latest = store
            .latest(at(T0 + 116), Duration::from_secs(3), |_| true)
            .unwrap();
        assert_eq!(latest.len(), 1, "{latest:?}");
        assert_eq!(latest[0].name, "cpu_percent");
        assert_eq!(latest[0].agg.avg(), Some(3.0));
        let none = store.latest(at(T0 + 116), Duration::from_secs(3), |n| n != "cpu_percent");
        assert!(none.unwrap().is_empty());
    }

    #[test]
    fn a_file_from_a_newer_berth_is_refused_not_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.db");
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        let err = Store::open(&path, Config::default()).unwrap_err();
        assert!(err.to_string().contains("newer berth"), "{err}");
    }

    #[test]
    fn default_tiers_are_finest_first() {
        let tiers = Tier::defaults();
        assert!(tiers
            .windows(2)
            .all(|w| w[0].step < w[1].step && w[0].retention < w[1].retention));
    }

    /// The writer `survives_a_kill_mid_write` starts and kills (run only by it).
    #[test]
    #[ignore = "started by survives_a_kill_mid_write"]
    fn writer_child() {
        let Ok(path) = std::env::var("BERTH_METRICS_TEST_DB") else {
            return;
        };
        let store = Store::open(&path, Config::default()).unwrap();
        for step in 0..1_000_000u64 {
            let batch: Vec<Sample> = (0..50)
                .map(|i| {
                    Sample::value(
                        "cpu_percent",
                        &[("replica", &format!("r{i}"))],
                        "o",
                        step as f64,
                    )
                })
                .collect();
            store.write(at(T0 + step), &batch).unwrap();
        }
    }

    #[test]
    fn survives_a_kill_mid_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.db");
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "store::tests::writer_child",
                "--nocapture",
            ])
            .env("BERTH_METRICS_TEST_DB", &path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Wait (bounded) until it has written a good number of batches, then SIGKILL it.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            assert!(
                std::time::Instant::now() < deadline,
                "the writer wrote nothing"
            );
            assert!(
                child.try_wait().unwrap().is_none(),
                "the writer ended early"
            );
            let rows = Connection::open(&path)
                .and_then(|c| {
                    c.query_row("SELECT count(*) FROM points WHERE tier = 0", [], |r| {
                        r.get::<_, i64>(0)
                    })
                })
                .unwrap_or(0);
            if rows >= 50 * 40 {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let store = Store::open(&path, Config::default()).unwrap();
        let check: String = store
            .lock()
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
        // Every committed batch is whole: all 50 series have the same newest raw time.
        let inner = store.lock();
        let newest: Vec<i64> = inner
            .conn
            .prepare("SELECT max(t) FROM points WHERE tier = 0 GROUP BY series")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        drop(inner);
        assert_eq!(newest.len(), 50);
        assert!(
            newest.iter().all(|t| *t == newest[0]),
            "a torn batch: {newest:?}"
        );
        // And it takes writes again.
        store
            .write(
                at(T0 + 10_000_000),
                &[Sample::value("cpu_percent", &[("replica", "r0")], "o", 1.0)],
            )
            .unwrap();
    }
}
