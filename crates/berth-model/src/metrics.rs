//! The metrics query API's JSON (`GET /v1/metrics` on the daemon's socket, `/api/metrics` on
//! the edge's admin listener): a metric's series, one point per period.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The answer to a metrics query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsAnswer {
    pub name: String,
    pub statistic: String,
    /// Unix seconds: the first period's start, and the end (exclusive).
    pub from: i64,
    pub to: i64,
    /// The period, in seconds.
    pub step: u64,
    /// One per series (or one for all of them merged).
    pub series: Vec<MetricSeries>,
}

/// One series: its labels and `[unix seconds, value or null]` per period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSeries {
    pub labels: BTreeMap<String, String>,
    pub points: Vec<(i64, Option<f64>)>,
}
