//! What a query asks (`Query`, `Statistic`), what it gets (`Points`), and the pure parts of
//! answering it: which tier serves which part of the range, and how rows fall into periods.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::agg::Agg;
use crate::{Error, Tier};

/// The most periods one query may ask for.
pub const MAX_PERIODS: u64 = 20_000;

/// A question to the store: the `statistic` of the series named `name` whose labels match
/// `labels`, per `step` from `from` to `to`.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// From the catalogue (`cpu_percent`, `requests`, `app:orders_total`, ...).
    pub name: String,
    /// Equality filters; empty = all series of the name.
    pub labels: BTreeMap<String, String>,
    pub from: SystemTime,
    pub to: SystemTime,
    /// The period.
    pub step: Duration,
    pub statistic: Statistic,
}

/// How the datapoints of a period become one number: the spec's vocabulary (the same word in
/// an `[[alarm]]` and in a query).
pub use berth_spec::alarm::Statistic;

/// `text` as a statistic, case-insensitive.
pub fn parse_statistic(text: &str) -> Result<Statistic, Error> {
    Statistic::parse(&text.to_ascii_lowercase())
        .ok_or_else(|| Error::UnknownStatistic(text.chars().take(40).collect()))
}

/// The statistic of the datapoints in `agg`; None when there are none.
pub fn statistic_of(statistic: Statistic, agg: &Agg) -> Option<f64> {
    if agg.is_empty() {
        return None;
    }
    match statistic {
        Statistic::Avg => agg.avg(),
        Statistic::Sum => Some(agg.sum),
        Statistic::Min => Some(agg.min),
        Statistic::Max => Some(agg.max),
        Statistic::P50 => agg.quantile(0.5),
        Statistic::P99 => agg.quantile(0.99),
        Statistic::Count => Some(agg.count as f64),
    }
}

/// One series' answer: its labels and one point per period (its start, the statistic or None
/// when the period has no data).
#[derive(Debug, Clone, PartialEq)]
pub struct Points {
    pub labels: BTreeMap<String, String>,
    pub points: Vec<(SystemTime, Option<f64>)>,
}

/// Seconds since the epoch (0 before it).
pub fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The periods of a query: their count, after checking the query makes sense.
pub fn periods(query: &Query) -> Result<u64, Error> {
    let (from, to, step) = (
        unix(query.from),
        unix(query.to),
        query.step.as_secs() as i64,
    );
    if step < 1 {
        return Err(Error::Query("the step must be at least 1s".into()));
    }
    if to <= from {
        return Err(Error::Query("`to` must be after `from`".into()));
    }
    let n = ((to - from) as u64).div_ceil(step as u64);
    if n > MAX_PERIODS {
        return Err(Error::Query(format!(
            "{n} periods asked; at most {MAX_PERIODS} (use a longer step or a shorter range)"
        )));
    }
    Ok(n)
}

/// Which tier reads which time range: finest first, each tier from the oldest point it holds
/// (`oldest[i]`, None when empty) up to where the finer tier took over (a coarser tier serves
/// only its whole intervals before that, so nothing is counted twice). Returns
/// (tier index, from, to) with `to` exclusive, in seconds.
pub fn plan_tiers(
    tiers: &[Tier],
    oldest: &[Option<i64>],
    from: i64,
    to: i64,
) -> Vec<(usize, i64, i64)> {
    let mut out = Vec::new();
    let mut boundary = to;
    for i in 0..tiers.len() {
        if boundary <= from {
            break;
        }
        let Some(oldest) = oldest.get(i).copied().flatten() else {
            continue;
        };
        let start = from.max(oldest);
        if start >= boundary {
            continue;
        }
        out.push((i, start, boundary));
        // The next (coarser) tier serves whole intervals before this one's oldest point.
        boundary =
            start - start.rem_euclid(tiers.get(i + 1).map_or(1, |t| t.step.as_secs() as i64));
    }
    out
}

/// Puts `(t, agg)` rows into the periods of `query` (starting at `from`, `n` of them).
pub fn bucket_rows(
    from: i64,
    step: i64,
    n: u64,
    rows: impl IntoIterator<Item = (i64, Agg)>,
) -> Vec<Agg> {
    let mut periods = vec![Agg::default(); n as usize];
    for (t, agg) in rows {
        if t < from {
            continue;
        }
        let k = ((t - from) / step) as usize;
        if let Some(p) = periods.get_mut(k) {
            p.merge(&agg);
        }
    }
    periods
}

/// The points of `periods` for `statistic`.
pub fn points(
    from: i64,
    step: i64,
    statistic: Statistic,
    periods: &[Agg],
) -> Vec<(SystemTime, Option<f64>)> {
    periods
        .iter()
        .enumerate()
        .map(|(k, agg)| {
            let start = UNIX_EPOCH + Duration::from_secs((from + k as i64 * step).max(0) as u64);
            (start, statistic_of(statistic, agg))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiers() -> Vec<Tier> {
        Tier::defaults()
    }

    #[test]
    fn statistics_parse_and_print() {
        for name in Statistic::NAMES {
            assert_eq!(parse_statistic(name).unwrap().to_string(), *name);
        }
        assert_eq!(parse_statistic("P99").unwrap(), Statistic::P99);
        assert!(matches!(
            parse_statistic("p95"),
            Err(Error::UnknownStatistic(_))
        ));
    }

    #[test]
    fn the_finest_tier_serves_the_recent_part_and_coarser_ones_what_it_no_longer_holds() {
        let day = 86_400;
        let now = 100 * day;
        // Raw holds the last day, minutes the last week, hours everything.
        let oldest = [Some(now - day), Some(now - 7 * day), Some(now - 300 * day)];
        let plan = plan_tiers(&tiers(), &oldest, now - 3 * day, now);
        assert_eq!(plan[0], (0, now - day, now));
        assert_eq!(plan[1], (1, now - 3 * day, now - day));
        assert_eq!(plan.len(), 2);
        // A range inside the raw tier: raw only.
        let plan = plan_tiers(&tiers(), &oldest, now - 600, now);
        assert_eq!(plan, vec![(0, now - 600, now)]);
        // Nothing raw (e.g. cut by the size bound): minutes then hours.
        let oldest = [None, Some(now - 7 * day), Some(now - 300 * day)];
        let plan = plan_tiers(&tiers(), &oldest, now - 30 * day, now);
        assert_eq!(plan[0], (1, now - 7 * day, now));
        assert_eq!(plan[1], (2, now - 30 * day, now - 7 * day));
    }

    #[test]
    fn rows_fall_into_their_periods_and_empty_periods_are_none() {
        let rows = vec![
            (100, Agg::value(1.0)),
            (105, Agg::value(3.0)),
            (130, Agg::value(7.0)),
            (99, Agg::value(1e9)),
        ];
        let periods = bucket_rows(100, 10, 4, rows);
        let pts = points(100, 10, Statistic::Avg, &periods);
        let values: Vec<Option<f64>> = pts.iter().map(|p| p.1).collect();
        assert_eq!(values, vec![Some(2.0), None, None, Some(7.0)]);
        assert_eq!(unix(pts[3].0), 130);
    }

    #[test]
    fn silly_queries_are_refused() {
        let q = |from: u64, to: u64, step: u64| Query {
            name: "cpu_percent".into(),
            labels: BTreeMap::new(),
            from: UNIX_EPOCH + Duration::from_secs(from),
            to: UNIX_EPOCH + Duration::from_secs(to),
            step: Duration::from_secs(step),
            statistic: Statistic::Avg,
        };
        assert!(periods(&q(10, 5, 1)).is_err());
        assert!(periods(&q(0, 10, 0)).is_err());
        assert!(periods(&q(0, 10_000_000, 1)).is_err());
        assert_eq!(periods(&q(0, 25, 10)).unwrap(), 3);
    }
}
