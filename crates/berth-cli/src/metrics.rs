//! `berth metrics NAME`: a metric's series from the daemon's store (`GET /v1/metrics`), as a
//! table of points (one series, or all merged) or a summary per series.

use std::fmt::Write;

use berth_model::metrics::MetricsAnswer;

use crate::client::ApiClient;
use crate::commands::encode;

#[derive(Debug, clap::Args)]
pub struct MetricsArgs {
    /// The metric: cpu_percent, memory_bytes, requests, latency_ms, errors_5xx, host_load1,
    /// app:NAME, ... (see docs/observe.md).
    pub name: String,
    /// Only this service's series.
    #[arg(long)]
    pub service: Option<String>,
    /// Only this replica's (web.2).
    #[arg(long)]
    pub replica: Option<String>,
    /// Only this release's.
    #[arg(long)]
    pub release: Option<String>,
    /// Only this accessory's.
    #[arg(long)]
    pub accessory: Option<String>,
    /// How far back: 10m, 6h, 7d.
    #[arg(long, default_value = "10m")]
    pub since: String,
    /// The period of each point: 10s, 1m, 1h [default: about 300 points].
    #[arg(long)]
    pub step: Option<String>,
    /// avg, sum, min, max, p50, p99 or count.
    #[arg(long, default_value = "avg")]
    pub statistic: String,
    /// All matching series merged into one.
    #[arg(long)]
    pub merged: bool,
    /// The daemon's answer as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub spec: crate::SpecFile,
}

/// The API path of a query.
pub fn path(args: &MetricsArgs) -> String {
    let mut path = format!(
        "/v1/metrics?name={}&since={}&statistic={}",
        encode(&args.name),
        encode(&args.since),
        encode(&args.statistic)
    );
    for (key, value) in [
        ("service", &args.service),
        ("replica", &args.replica),
        ("release", &args.release),
        ("accessory", &args.accessory),
        ("step", &args.step),
    ] {
        if let Some(value) = value {
            let _ = write!(path, "&{key}={}", encode(value));
        }
    }
    if args.merged {
        path.push_str("&merged=true");
    }
    path
}

pub async fn metrics(client: &ApiClient, args: &MetricsArgs) -> anyhow::Result<()> {
    let answer: MetricsAnswer = client.get(&path(args)).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        print!("{}", render(&answer));
    }
    Ok(())
}

fn clock(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second]"
            ))
            .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

fn number(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v.abs() >= 1e6 => format!("{v:.0}"),
        Some(v) => format!("{v:.2}"),
    }
}

fn label_text(labels: &std::collections::BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return "(all)".into();
    }
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One series: a row per point. Several: a row per series with its last, min, avg and max.
pub fn render(answer: &MetricsAnswer) -> String {
    let mut out = format!(
        "{} {} per {}s, {} to {} UTC\n",
        answer.name,
        answer.statistic,
        answer.step,
        clock(answer.from),
        clock(answer.to)
    );
    match answer.series.as_slice() {
        [] => out.push_str("no data\n"),
        [one] => {
            let _ = writeln!(out, "{}", label_text(&one.labels));
            for (t, v) in &one.points {
                let _ = writeln!(out, "{}  {}", clock(*t), number(*v));
            }
        }
        many => {
            let width = many
                .iter()
                .map(|s| label_text(&s.labels).len())
                .max()
                .unwrap_or(6)
                .max(6);
            let _ = writeln!(
                out,
                "{:<width$}  {:>12}  {:>12}  {:>12}  {:>12}",
                "SERIES", "LAST", "MIN", "AVG", "MAX"
            );
            for s in many {
                let values: Vec<f64> = s.points.iter().filter_map(|p| p.1).collect();
                let last = s.points.iter().rev().find_map(|p| p.1);
                let min = values.iter().copied().reduce(f64::min);
                let max = values.iter().copied().reduce(f64::max);
                let avg =
                    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64);
                let _ = writeln!(
                    out,
                    "{:<width$}  {:>12}  {:>12}  {:>12}  {:>12}",
                    label_text(&s.labels),
                    number(last),
                    number(min),
                    number(avg),
                    number(max)
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_model::metrics::MetricSeries;
    use std::collections::BTreeMap;

    #[test]
    fn one_series_is_a_row_per_point_several_a_summary_each() {
        let series = |replica: &str, values: &[Option<f64>]| MetricSeries {
            labels: BTreeMap::from([("replica".to_string(), replica.to_string())]),
            points: values
                .iter()
                .enumerate()
                .map(|(i, v)| (1_800_000_000 + 10 * i as i64, *v))
                .collect(),
        };
        let mut answer = MetricsAnswer {
            name: "cpu_percent".into(),
            statistic: "avg".into(),
            from: 1_800_000_000,
            to: 1_800_000_030,
            step: 10,
            series: vec![series("web.1", &[Some(1.0), None, Some(3.5)])],
        };
        let text = render(&answer);
        assert!(text.contains("2027-01-15 08:00:00  1.00\n"), "{text}");
        assert!(text.contains("08:00:10  -\n"), "{text}");
        answer
            .series
            .push(series("web.2", &[Some(10.0), Some(30.0), None]));
        let text = render(&answer);
        assert!(text.contains("replica=web.2"), "{text}");
        assert!(
            text.lines().any(|l| l.starts_with("replica=web.2")
                && l.ends_with("30.00")
                && l.contains("20.00")),
            "{text}"
        );
        answer.series.clear();
        assert!(render(&answer).ends_with("no data\n"));
    }

    #[test]
    fn the_query_path_is_encoded() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: MetricsArgs,
        }
        let cli = Cli::parse_from([
            "x",
            "app:orders total",
            "--service",
            "web&x=1",
            "--statistic",
            "p99",
            "--merged",
        ]);
        let path = path(&cli.args);
        assert_eq!(
            path,
            "/v1/metrics?name=app%3Aorders%20total&since=10m&statistic=p99&service=web%26x%3D1&merged=true"
        );
    }
}
