//! What protects the edge from its clients: `[[rate_limit]]`, `[[allow]]`, the address lists of
//! `[edge]` (`trusted_proxies`, `limit_exempt`) and the response headers (`[edge.headers]`, a
//! route's `headers`), read key by key with diagnostics at the value.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{Value, Walker};
use crate::raw::Located;
use crate::types::{AllowSpec, RateLimitSpec};
use crate::units;

const RATE_LIMIT_KEYS: &[&str] = &["path", "rate", "burst"];
const ALLOW_KEYS: &[&str] = &["path", "from"];

/// `"10/s"`, `"2000/5m"`, `"1/2s"`: (requests, period).
pub(crate) fn parse_rate(text: &str) -> Option<(u32, Duration)> {
    let (count, period) = text.split_once('/')?;
    let count: u32 = count.trim().parse().ok().filter(|n| *n > 0)?;
    let period = period.trim();
    // "s", "m", "h" alone mean one of them.
    let period = match period {
        "s" | "m" | "h" => units::parse_duration(&format!("1{period}"))?,
        other => units::parse_duration(other)?,
    };
    (!period.is_zero()).then_some((count, period))
}

impl Walker<'_> {
    /// A list of IP addresses or CIDR ranges.
    pub(super) fn networks(
        &mut self,
        value: &Value<'_>,
        path: &str,
        example: &str,
    ) -> Option<Vec<ipnet::IpNet>> {
        let items = self.array(value, path, example)?;
        let mut networks = Vec::new();
        for item in items {
            let Some(text) = self.string(item, path, example) else {
                continue;
            };
            let parsed = text.value.parse::<ipnet::IpNet>().ok().or_else(|| {
                text.value
                    .parse::<std::net::IpAddr>()
                    .ok()
                    .map(ipnet::IpNet::from)
            });
            match parsed {
                Some(network) => networks.push(network),
                None => self.problems.push(
                    text.span,
                    format!("invalid address or range \"{}\" in `{path}`", text.value),
                    Some(format!("an IP address or a CIDR range, e.g. {example}")),
                ),
            }
        }
        (networks.len() == items.len()).then_some(networks)
    }

    /// A table of header names to values (`[edge.headers]`, a route's `headers`).
    pub(super) fn headers(
        &mut self,
        value: &Value<'_>,
        path: &str,
    ) -> Option<BTreeMap<String, String>> {
        let example = r#"headers = { "X-Frame-Options" = "DENY" }"#;
        let table = self.table(value, path, example)?;
        let mut headers = BTreeMap::new();
        for (key, value) in table.iter() {
            let name = key.get_ref().to_ascii_lowercase();
            let valid_name = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !valid_name {
                self.problems.push(
                    key.span(),
                    format!("invalid header name `{}` in `{path}`", key.get_ref()),
                    Some("header names are letters, digits and -, e.g. X-Frame-Options".into()),
                );
                continue;
            }
            if matches!(
                name.as_str(),
                "content-length" | "transfer-encoding" | "connection" | "set-cookie"
            ) {
                self.problems.push(
                    key.span(),
                    format!("`{name}` cannot be set in `{path}`"),
                    Some(
                        "the edge writes the framing itself; cookies come from the application"
                            .into(),
                    ),
                );
                continue;
            }
            let Some(text) = self.string(value, &format!("{path}.{name}"), example) else {
                continue;
            };
            if text
                .value
                .bytes()
                .any(|b| b < 0x20 && b != b'\t' || b == 0x7f)
            {
                self.problems.push(
                    text.span,
                    format!("the value of `{name}` in `{path}` has control characters"),
                    None,
                );
                continue;
            }
            headers.insert(name, text.value);
        }
        Some(headers)
    }

    pub(super) fn rate_limits(&mut self, value: &Value<'_>) -> Vec<RateLimitSpec> {
        let example = r#"[[rate_limit]] path = "/login" rate = "1/s" burst = 3"#;
        let Some(items) = self.array(value, "rate_limit", example) else {
            return Vec::new();
        };
        let mut limits = Vec::new();
        for (index, item) in items.iter().enumerate() {
            let label = format!("rate_limit[{}]", index + 1);
            let Some(table) = self.table(item, &label, "[[rate_limit]]") else {
                continue;
            };
            let mut path = "/".to_string();
            let mut rate: Option<(u32, Duration)> = None;
            let mut burst: Option<u32> = None;
            for (key, value) in table.iter() {
                match key.get_ref().as_ref() {
                    "path" => {
                        if let Some(text) =
                            self.string(value, &format!("{label}.path"), r#"path = "/login""#)
                        {
                            if text.value.starts_with('/') {
                                path = text.value;
                            } else {
                                self.problems.push(
                                    text.span,
                                    format!("`{label}.path` must start with `/`"),
                                    Some(format!(r#"write path = "/{}""#, text.value)),
                                );
                            }
                        }
                    }
                    "rate" => {
                        let Some(text) =
                            self.string(value, &format!("{label}.rate"), r#"rate = "10/s""#)
                        else {
                            continue;
                        };
                        rate = parse_rate(&text.value);
                        if rate.is_none() {
                            self.problems.push(
                                text.span,
                                format!("invalid rate \"{}\" for `{label}.rate`", text.value),
                                Some(
                                    r#"requests per period, e.g. "10/s", "2000/5m" or "1/2s""#
                                        .into(),
                                ),
                            );
                        }
                    }
                    "burst" => {
                        burst = self
                            .count(value, &format!("{label}.burst"), 1, "burst = 20")
                            .map(|b| b.value)
                    }
                    other => self.unknown_key(key, other, RATE_LIMIT_KEYS, "[[rate_limit]]"),
                }
            }
            let Some((count, period)) = rate else {
                if !table.iter().any(|(k, _)| k.get_ref() == "rate") {
                    self.problems.push(
                        item.span(),
                        format!("{label} has no `rate`"),
                        Some(r#"rate = "10/s" (requests per period)"#.into()),
                    );
                }
                continue;
            };
            limits.push(RateLimitSpec {
                path,
                interval: period / count,
                // Without a burst, the whole count may come at once (a window of `period`).
                burst: burst.unwrap_or(count),
            });
        }
        limits
    }

    pub(super) fn allow_rules(&mut self, value: &Value<'_>) -> Vec<AllowSpec> {
        let example = r#"[[allow]] path = "/admin" from = ["10.0.0.0/8"]"#;
        let Some(items) = self.array(value, "allow", example) else {
            return Vec::new();
        };
        let mut rules = Vec::new();
        for (index, item) in items.iter().enumerate() {
            let label = format!("allow[{}]", index + 1);
            let Some(table) = self.table(item, &label, "[[allow]]") else {
                continue;
            };
            let (mut path, mut from): (Option<Located<String>>, Option<Vec<ipnet::IpNet>>) =
                (None, None);
            for (key, value) in table.iter() {
                match key.get_ref().as_ref() {
                    "path" => {
                        path = self.string(value, &format!("{label}.path"), r#"path = "/admin""#);
                        if let Some(text) = &path {
                            if !text.value.starts_with('/') {
                                self.problems.push(
                                    text.span.clone(),
                                    format!("`{label}.path` must start with `/`"),
                                    Some(format!(r#"write path = "/{}""#, text.value)),
                                );
                                path = None;
                            }
                        }
                    }
                    "from" => {
                        from = self.networks(
                            value,
                            &format!("{label}.from"),
                            r#"from = ["10.0.0.0/8", "192.0.2.7"]"#,
                        )
                    }
                    other => self.unknown_key(key, other, ALLOW_KEYS, "[[allow]]"),
                }
            }
            for (name, missing) in [("path", path.is_none()), ("from", from.is_none())] {
                if missing && !table.iter().any(|(k, _)| k.get_ref() == name) {
                    self.problems.push(
                        item.span(),
                        format!("{label} has no `{name}`"),
                        Some(example.into()),
                    );
                }
            }
            if let (Some(path), Some(from)) = (path, from) {
                rules.push(AllowSpec {
                    path: path.value,
                    from,
                });
            }
        }
        rules
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_as_requests_per_period() {
        assert_eq!(parse_rate("10/s"), Some((10, Duration::from_secs(1))));
        assert_eq!(
            parse_rate("2000/5m"),
            Some((2000, Duration::from_secs(300)))
        );
        assert_eq!(parse_rate("1/2s"), Some((1, Duration::from_secs(2))));
        assert_eq!(parse_rate(" 3 / h "), Some((3, Duration::from_secs(3600))));
        for bad in ["", "10", "0/s", "-1/s", "10/", "10/0s", "ten/s", "10/x"] {
            assert_eq!(parse_rate(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn edge_workers_are_a_count_or_auto_and_pinning_a_switch() {
        let parse = |edge: &str| {
            crate::parse(
                std::path::Path::new("/tmp/berth.toml"),
                &format!("[edge]\n{edge}\n[service.web]\nrun = \"app\"\nport = 8000\n"),
                None,
            )
        };
        let spec = parse("workers = 4\npin_workers = true").unwrap();
        assert_eq!((spec.edge.workers, spec.edge.pin_workers), (Some(4), true));
        let spec = parse("workers = \"auto\"").unwrap();
        assert_eq!((spec.edge.workers, spec.edge.pin_workers), (None, false));
        for (bad, expected) in [
            ("workers = 0", "berth.toml:2:11"),
            ("workers = 1000", "at most 256"),
            ("workers = \"many\"", "must be a number or \"auto\""),
            ("pin_workers = \"yes\"", "edge.pin_workers"),
        ] {
            let error = parse(bad).unwrap_err().to_string();
            assert!(error.contains(expected), "{bad}: {error}");
        }
    }
}
