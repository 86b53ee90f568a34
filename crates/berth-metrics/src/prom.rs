//! The Prometheus text exposition format: [`parse`] reads what a replica's `/metrics` or the
//! edge's admin listener answers (every line checked, bounded names and labels, a bad line
//! skipped and counted, never a panic), [`encode`] writes the store's newest values for a
//! scraper. Pure: the caller reads the bytes (with its own size limit) and writes them out.
//!
//! A small parser rather than the `prometheus-parse` crate: that crate pulls regex and chrono,
//! has no bounds on what it keeps, and has not been released since 2022; the format's sample
//! lines are simple enough to check by hand (tests below, including garbage).

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::store::Latest;

/// Longest metric or label name kept.
pub const MAX_NAME: usize = 200;
/// Most labels one sample may carry.
pub const MAX_LABELS: usize = 32;
/// Longest label value kept.
pub const MAX_LABEL_VALUE: usize = 1024;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct PromSample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// What [`parse`] found.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Parsed {
    pub samples: Vec<PromSample>,
    /// Lines that were neither comments nor valid samples.
    pub bad_lines: usize,
    /// The first of them (shortened), for the log.
    pub first_bad: Option<String>,
}

/// Reads the text format. Comments (`# HELP`, `# TYPE`) and blank lines are skipped; a sample
/// with a non-finite value (`NaN`, `+Inf`) is skipped quietly; a malformed line is counted.
pub fn parse(text: &str) -> Parsed {
    let mut parsed = Parsed::default();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_line(line) {
            Some(Some(sample)) => parsed.samples.push(sample),
            Some(None) => {}
            None => {
                parsed.bad_lines += 1;
                if parsed.first_bad.is_none() {
                    parsed.first_bad = Some(line.chars().take(80).collect());
                }
            }
        }
    }
    parsed
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// None: malformed; Some(None): valid but not kept (non-finite value).
fn parse_line(line: &str) -> Option<Option<PromSample>> {
    let name_end = line.find(|c: char| !is_name_char(c)).unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() || name.len() > MAX_NAME || !name.starts_with(is_name_start) {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = after;
        loop {
            rest = rest.trim_start();
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let key_end = rest.find(|c: char| !is_name_char(c))?;
            let key = &rest[..key_end];
            if key.is_empty() || key.len() > MAX_NAME || !key.starts_with(is_name_start) {
                return None;
            }
            rest = rest[key_end..].trim_start().strip_prefix('=')?.trim_start();
            rest = rest.strip_prefix('"')?;
            let mut value = String::new();
            let mut chars = rest.char_indices();
            let end = loop {
                let (i, c) = chars.next()?;
                match c {
                    '"' => break i,
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        other => {
                            value.push('\\');
                            value.push(other);
                        }
                    },
                    c => value.push(c),
                }
                if value.len() > MAX_LABEL_VALUE {
                    return None;
                }
            };
            rest = &rest[end + 1..];
            if labels.len() >= MAX_LABELS {
                return None;
            }
            labels.insert(key.to_string(), value);
            rest = rest.trim_start();
            if let Some(after) = rest.strip_prefix(',') {
                rest = after;
            } else if !rest.starts_with('}') {
                return None;
            }
        }
    }
    if !rest.starts_with([' ', '\t']) {
        return None;
    }
    let mut fields = rest.split_whitespace();
    let value = fields.next()?;
    let value: f64 = match value {
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().ok()?,
    };
    if let Some(ts) = fields.next() {
        ts.parse::<i64>().ok()?;
    }
    if fields.next().is_some() {
        return None;
    }
    if !value.is_finite() {
        return Some(None);
    }
    Some(Some(PromSample {
        name: name.to_string(),
        labels,
        value,
    }))
}

/// Writes the newest values as gauges `berth_NAME{labels}`: the interval's average, and for
/// `latency_ms` its p50 and p99 as `berth_latency_ms_p50` / `_p99`. `app:` series (a replica's
/// own metrics, which the replica exposes itself) are left out.
pub fn encode(latest: &[Latest]) -> String {
    let mut out = String::new();
    let mut last_name = String::new();
    for Latest { name, labels, agg } in latest {
        if name.starts_with("app:") || !name.chars().all(is_name_char) {
            continue;
        }
        let metric = format!("berth_{name}");
        if *name != last_name {
            let _ = writeln!(out, "# TYPE {metric} gauge");
            if name == "latency_ms" {
                let _ = writeln!(out, "# TYPE {metric}_p50 gauge");
                let _ = writeln!(out, "# TYPE {metric}_p99 gauge");
            }
            last_name = name.clone();
        }
        let labels = encode_labels(labels);
        if let Some(avg) = agg.avg() {
            let _ = writeln!(out, "{metric}{labels} {avg}");
        }
        if name == "latency_ms" {
            for (suffix, q) in [("p50", 0.5), ("p99", 0.99)] {
                if let Some(v) = agg.quantile(q) {
                    let _ = writeln!(out, "{metric}_{suffix}{labels} {v}");
                }
            }
        }
    }
    out
}

fn encode_labels(labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = labels
        .iter()
        .filter(|(k, _)| k.chars().all(is_name_char) && k.starts_with(is_name_start))
        .map(|(k, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
        .collect();
    format!("{{{}}}", parts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agg::Agg;

    #[test]
    fn reads_what_prometheus_client_writes() {
        let text = r#"# HELP orders_total Orders placed
# TYPE orders_total counter
orders_total{shop="main",currency="EUR"} 1027
orders_total{shop="b\"x\\y\nz"} 3 1700000000000
process_resident_memory_bytes 2.3e+07
request_seconds_bucket{le="+Inf"} 12
temperature NaN
up{} 1
"#;
        let parsed = parse(text);
        assert_eq!(parsed.bad_lines, 0, "{:?}", parsed.first_bad);
        assert_eq!(parsed.samples.len(), 5);
        assert_eq!(parsed.samples[0].labels["currency"], "EUR");
        assert_eq!(parsed.samples[0].value, 1027.0);
        assert_eq!(parsed.samples[1].labels["shop"], "b\"x\\y\nz");
        assert_eq!(parsed.samples[2].value, 2.3e7);
        assert_eq!(parsed.samples[3].labels["le"], "+Inf");
        assert_eq!(parsed.samples[4].name, "up");
    }

    #[test]
    fn garbage_is_counted_never_a_panic() {
        let long_name = "a".repeat(MAX_NAME + 1);
        let many_labels: String = (0..40).map(|i| format!("l{i}=\"v\",")).collect();
        let long_value = format!("x{{l=\"{}\"}} 1", "v".repeat(MAX_LABEL_VALUE + 5));
        let lines = [
            "<html>not metrics</html>".to_string(),
            "x{l=\"unterminated} 1".to_string(),
            "x{l=v} 1".to_string(),
            "x 1 2 3".to_string(),
            "x notanumber".to_string(),
            "1x 1".to_string(),
            format!("{long_name} 1"),
            format!("x{{{many_labels}}} 1"),
            long_value,
            "x{".to_string(),
            "x{l=\"\\".to_string(),
            "é 1".to_string(),
            "ok 1".to_string(),
        ];
        let parsed = parse(&lines.join("\n"));
        assert_eq!(parsed.samples.len(), 1);
        assert_eq!(parsed.bad_lines, lines.len() - 1);
        assert_eq!(
            parsed.first_bad.as_deref(),
            Some("<html>not metrics</html>")
        );
        // Arbitrary bytes as text.
        let noise: String = (0..5000u32)
            .map(|i| char::from_u32((i * 7919) % 0x2FF).unwrap_or('x'))
            .collect();
        let _ = parse(&noise);
    }

    #[test]
    fn encodes_the_newest_values_as_gauges() {
        let mut lat = Agg::default();
        lat.add(2.0, 99);
        lat.add(300.0, 1);
        let latest = vec![
            Latest {
                name: "cpu_percent".to_string(),
                labels: BTreeMap::from([("service".to_string(), "web\"1".to_string())]),
                agg: Agg::value(12.5),
            },
            Latest {
                name: "latency_ms".to_string(),
                labels: BTreeMap::new(),
                agg: lat,
            },
            Latest {
                name: "app:orders".to_string(),
                labels: BTreeMap::new(),
                agg: Agg::value(1.0),
            },
        ];
        let text = encode(&latest);
        assert!(
            text.contains("berth_cpu_percent{service=\"web\\\"1\"} 12.5\n"),
            "{text}"
        );
        assert!(text.contains("berth_latency_ms_p99 "), "{text}");
        assert!(!text.contains("orders"), "{text}");
        // What we write, we read back.
        let back = parse(&text);
        assert_eq!(back.bad_lines, 0);
        assert_eq!(back.samples[0].labels["service"], "web\"1");
    }
}
