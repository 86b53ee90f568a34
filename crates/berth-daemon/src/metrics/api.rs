//! The read-only metrics API: `GET /v1/metrics` (a query, JSON), `GET /v1/metrics/names`, and
//! `GET /v1/metrics/prometheus` (the newest values in the Prometheus text format). Served on
//! the daemon's API socket and on `observe.sock`, which the edge's admin listener forwards to.
//! Parsing a query's parameters is a pure function ([`parse_query`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Query as Params, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use berth_metrics::{Query, Statistic};
use berth_model::api::ApiError;
use berth_model::metrics::{MetricSeries, MetricsAnswer};

use super::{Metrics, CATALOGUE};

/// Labels a query may filter on.
const FILTERS: &[&str] = &["service", "replica", "release", "accessory"];
/// Points a query gets when it names no step.
const DEFAULT_POINTS: u64 = 300;

/// The routes, on any router state.
pub fn routes<S: Clone + Send + Sync + 'static>(metrics: Arc<Metrics>) -> Router<S> {
    Router::new()
        .route("/v1/metrics", get(query))
        .route("/v1/metrics/names", get(names))
        .route("/v1/metrics/prometheus", get(prometheus))
        .with_state(metrics)
}

/// The same paths when the store could not be opened: 503 with a pointer to the events.
pub fn unavailable<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let answer = || async {
        failure(
            StatusCode::SERVICE_UNAVAILABLE,
            "the metrics store could not be opened when the daemon started; `berth events` says why".into(),
        )
    };
    Router::new()
        .route("/v1/metrics", get(answer))
        .route("/v1/metrics/names", get(answer))
        .route("/v1/metrics/prometheus", get(answer))
}

fn failure(status: StatusCode, message: String) -> Response {
    (status, Json(ApiError { error: message })).into_response()
}

/// A query read from its parameters, and whether the series are merged into one.
pub fn parse_query(
    params: &HashMap<String, String>,
    now: SystemTime,
) -> Result<(Query, bool), String> {
    for key in params.keys() {
        let known = ["name", "from", "to", "since", "step", "statistic", "merged"];
        if !known.contains(&key.as_str()) && !FILTERS.contains(&key.as_str()) {
            return Err(format!(
                "unknown parameter `{}`; the parameters are name, service, replica, release, accessory, since, from, to, step, statistic, merged",
                key.chars().take(40).collect::<String>()
            ));
        }
    }
    let name = params
        .get("name")
        .filter(|n| !n.is_empty())
        .ok_or("`name` is required, e.g. name=cpu_percent")?;
    let known = CATALOGUE.contains(&name.as_str())
        || name.strip_prefix("app:").is_some_and(|n| {
            !n.is_empty()
                && n.len() <= 200
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        });
    if !known {
        return Err(format!(
            "unknown metric `{}`; one of {} or app:NAME",
            name.chars().take(60).collect::<String>(),
            CATALOGUE.join(", ")
        ));
    }
    let time = |key: &str| -> Result<Option<SystemTime>, String> {
        let Some(text) = params.get(key) else {
            return Ok(None);
        };
        if let Ok(secs) = text.parse::<u64>() {
            return Ok(Some(UNIX_EPOCH + Duration::from_secs(secs)));
        }
        humantime::parse_duration(text)
            .map(|ago| Some(now.checked_sub(ago).unwrap_or(UNIX_EPOCH)))
            .map_err(|_| {
                format!(
                    "`{key}` must be unix seconds or a duration ago such as 10m, not `{}`",
                    text.chars().take(40).collect::<String>()
                )
            })
    };
    let to = time("to")?.unwrap_or(now);
    let since = match params.get("since") {
        Some(text) => Some(humantime::parse_duration(text).map_err(|_| {
            format!(
                "`since` must be a duration such as 10m or 24h, not `{}`",
                text.chars().take(40).collect::<String>()
            )
        })?),
        None => None,
    };
    let from = match (time("from")?, since) {
        (Some(_), Some(_)) => return Err("give `from` or `since`, not both".into()),
        (Some(from), None) => from,
        (None, Some(since)) => to.checked_sub(since).unwrap_or(UNIX_EPOCH),
        (None, None) => to
            .checked_sub(Duration::from_secs(3600))
            .unwrap_or(UNIX_EPOCH),
    };
    let range = to
        .duration_since(from)
        .map_err(|_| "`from` must be before `to`".to_string())?;
    let step = match params.get("step") {
        Some(text) => humantime::parse_duration(text).map_err(|_| {
            format!(
                "`step` must be a duration such as 10s or 5m, not `{}`",
                text.chars().take(40).collect::<String>()
            )
        })?,
        None => {
            // About DEFAULT_POINTS points, in whole multiples of 10 s.
            let secs = range.as_secs().div_ceil(DEFAULT_POINTS).max(1);
            Duration::from_secs(secs.div_ceil(10) * 10)
        }
    };
    let statistic: Statistic = params
        .get("statistic")
        .map(|s| berth_metrics::parse_statistic(s))
        .transpose()
        .map_err(|e: berth_metrics::Error| e.to_string())?
        .unwrap_or(Statistic::Avg);
    let merged = match params.get("merged").map(String::as_str) {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") | Some("") => true,
        Some(other) => {
            return Err(format!(
                "`merged` is true or false, not `{}`",
                other.chars().take(20).collect::<String>()
            ))
        }
    };
    let labels: BTreeMap<String, String> = FILTERS
        .iter()
        .filter_map(|k| params.get(*k).map(|v| (k.to_string(), v.clone())))
        .collect();
    Ok((
        Query {
            name: name.clone(),
            labels,
            from,
            to,
            step,
            statistic,
        },
        merged,
    ))
}

fn unix(t: SystemTime) -> i64 {
    berth_metrics::query::unix(t)
}

async fn query(
    State(metrics): State<Arc<Metrics>>,
    Params(params): Params<HashMap<String, String>>,
) -> Response {
    let (query, merged) = match parse_query(&params, SystemTime::now()) {
        Ok(parsed) => parsed,
        Err(message) => return failure(StatusCode::BAD_REQUEST, message),
    };
    let store = metrics.store.clone();
    let q = query.clone();
    let answer = tokio::task::spawn_blocking(move || {
        if merged {
            store.query_merged(&q).map(|p| vec![p])
        } else {
            store.query(&q)
        }
    })
    .await;
    let series = match answer {
        Ok(Ok(series)) => series,
        Ok(Err(berth_metrics::Error::Query(message))) => {
            return failure(StatusCode::BAD_REQUEST, message)
        }
        Ok(Err(e)) => return failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => return failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    Json(MetricsAnswer {
        name: query.name,
        statistic: query.statistic.to_string(),
        from: unix(query.from),
        to: unix(query.to),
        step: query.step.as_secs(),
        series: series
            .into_iter()
            .map(|p| MetricSeries {
                labels: p.labels,
                points: p.points.into_iter().map(|(t, v)| (unix(t), v)).collect(),
            })
            .collect(),
    })
    .into_response()
}

async fn names(State(metrics): State<Arc<Metrics>>) -> Response {
    let store = metrics.store.clone();
    match tokio::task::spawn_blocking(move || store.names()).await {
        Ok(names) => Json(names).into_response(),
        Err(e) => failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn prometheus(State(metrics): State<Arc<Metrics>>) -> Response {
    let store = metrics.store.clone();
    let max_age = metrics.interval * 3;
    match tokio::task::spawn_blocking(move || {
        store.latest(SystemTime::now(), max_age, |name| !name.starts_with("app:"))
    })
    .await
    {
        Ok(Ok(latest)) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            berth_metrics::prom::encode(&latest),
        )
            .into_response(),
        Ok(Err(e)) => failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const NOW: u64 = 1_800_000_000;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(NOW)
    }

    #[test]
    fn a_query_from_its_parameters() {
        let (q, merged) = parse_query(
            &params(&[
                ("name", "requests"),
                ("service", "web"),
                ("since", "10m"),
                ("step", "30s"),
                ("statistic", "p99"),
            ]),
            now(),
        )
        .unwrap();
        assert_eq!(q.name, "requests");
        assert_eq!(q.labels, BTreeMap::from([("service".into(), "web".into())]));
        assert_eq!(unix(q.from), NOW as i64 - 600);
        assert_eq!(unix(q.to), NOW as i64);
        assert_eq!(q.step, Duration::from_secs(30));
        assert_eq!(q.statistic, Statistic::P99);
        assert!(!merged);
        // Defaults: the last hour, about 300 points, avg.
        let (q, _) = parse_query(
            &params(&[("name", "app:orders_total"), ("merged", "true")]),
            now(),
        )
        .unwrap();
        assert_eq!(unix(q.from), NOW as i64 - 3600);
        assert_eq!(q.step, Duration::from_secs(20));
        assert_eq!(q.statistic, Statistic::Avg);
        // Absolute times.
        let (q, _) = parse_query(
            &params(&[
                ("name", "cpu_percent"),
                ("from", "1799990000"),
                ("to", "1h"),
            ]),
            now(),
        )
        .unwrap();
        assert_eq!(unix(q.from), 1_799_990_000);
        assert_eq!(unix(q.to), NOW as i64 - 3600);
    }

    #[test]
    fn bad_parameters_are_explained() {
        let err = |pairs: &[(&str, &str)]| parse_query(&params(pairs), now()).unwrap_err();
        assert!(err(&[]).contains("`name` is required"));
        assert!(err(&[("name", "cpu")]).contains("unknown metric `cpu`"));
        assert!(err(&[("name", "app:")]).contains("unknown metric"));
        assert!(err(&[("name", "app:a b")]).contains("unknown metric"));
        assert!(err(&[("name", "cpu_percent"), ("statistic", "p95")]).contains("unknown statistic"));
        assert!(err(&[("name", "cpu_percent"), ("since", "yesterday")]).contains("`since`"));
        assert!(err(&[("name", "cpu_percent"), ("step", "-1")]).contains("`step`"));
        assert!(err(&[("name", "cpu_percent"), ("from", "1m"), ("to", "2m")]).contains("before"));
        assert!(err(&[("name", "cpu_percent"), ("evil", "1")]).contains("unknown parameter"));
        assert!(
            err(&[("name", "cpu_percent"), ("since", "1m"), ("from", "1m")]).contains("not both")
        );
    }
}
