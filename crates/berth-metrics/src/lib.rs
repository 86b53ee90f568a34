//! Berth's metrics history: an embedded time-series store on SQLite, and the Prometheus text
//! format (reading a replica's `/metrics`, writing Berth's own).
//!
//! It owns the metrics database (`.berth/ENV/metrics.db`), its downsampling tiers, its size
//! bound and its series caps, and answers [`Query`]s by [`Statistic`]. It must never know where
//! samples come from (the daemon's collector decides that), nor alarms or HTTP; of the spec it
//! takes only the `Statistic` vocabulary.
//!
//! Why our own store on SQLite rather than an embedded time-series database: Berth already
//! ships SQLite (rusqlite, bundled) for its state, WAL mode survives a `kill -9` mid-write by
//! construction, and the volumes are small (tens of series per replica every 10 s). The embedded
//! Rust TSDBs we weighed either lack downsampling and a byte bound (tsink, a write-ahead log plus
//! memory-mapped blocks with its own crash story) or are servers/engines far larger than the
//! need (InfluxDB IOx, GreptimeDB, Prometheus's TSDB is Go). A few hundred lines over SQLite
//! give exactly the tiers, the bound and the caps, tested here.
//!
//! How percentiles stay right over any period: each interval of a series keeps count, sum, min,
//! max and a sparse histogram of its values (log buckets 9% wide, [`agg`]). Those merge exactly,
//! so a 1-hour interval holds the same distribution as its 360 raw ones, and p50/p99 over any
//! period (or over several series merged) are read from the merged histogram, within a bucket's
//! width and clamped to the period's min and max. The edge's latency histograms are stored as
//! histograms, so `latency_ms` p99 is the p99 of requests, not of per-interval averages.

pub mod agg;
pub mod prom;
pub mod query;
mod store;

use std::collections::BTreeMap;
use std::time::Duration;

pub use agg::Agg;
pub use query::{parse_statistic, statistic_of, Points, Query, Statistic};
pub use store::{Latest, MaintainReport, Store, WriteReport};

/// The store's errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("metrics database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("metrics database: {0}")]
    Io(#[from] std::io::Error),
    #[error("metrics store: {0}")]
    Config(String),
    #[error("bad metrics query: {0}")]
    Query(String),
    #[error("unknown statistic `{0}`: one of avg, sum, min, max, p50, p99, count")]
    UnknownStatistic(String),
}

/// One downsampling tier: intervals of `step`, kept for `retention`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tier {
    pub step: Duration,
    pub retention: Duration,
}

impl Tier {
    /// 10 s for a day, 1 min for a week, 1 h for a year.
    pub fn defaults() -> Vec<Tier> {
        vec![
            Tier {
                step: Duration::from_secs(10),
                retention: Duration::from_secs(86_400),
            },
            Tier {
                step: Duration::from_secs(60),
                retention: Duration::from_secs(7 * 86_400),
            },
            Tier {
                step: Duration::from_secs(3_600),
                retention: Duration::from_secs(365 * 86_400),
            },
        ]
    }
}

/// The store's bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Finest first.
    pub tiers: Vec<Tier>,
    /// The database file's bound (enforced by [`Store::maintain`]; the WAL adds at most 4 MiB).
    pub max_bytes: u64,
    /// Series one owner (a replica, the edge, the host) may create; beyond, new ones are dropped.
    pub max_series_per_owner: usize,
    /// Series in all.
    pub max_series: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            tiers: Tier::defaults(),
            max_bytes: 256 * 1024 * 1024,
            max_series_per_owner: 500,
            max_series: 20_000,
        }
    }
}

/// What one sample carries.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    /// One value (a gauge, a rate).
    Value(f64),
    /// Many values at once: (value, how many), e.g. the latencies of an interval's requests.
    Histogram(Vec<(f64, u64)>),
}

/// One sample of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Who the series belongs to for the series cap: `replica:web.1`, `edge`, `host`, ...
    pub owner: String,
    pub value: Observation,
}

impl Sample {
    pub fn value(name: &str, labels: &[(&str, &str)], owner: &str, value: f64) -> Sample {
        Sample {
            name: name.to_string(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            owner: owner.to_string(),
            value: Observation::Value(value),
        }
    }
}
