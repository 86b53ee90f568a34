//! The metric catalogue: every series name Berth collects, with its labels and meaning. Alarms
//! (`[[alarm]] metric = ...`) are checked against it, and the metrics collector writes the same
//! strings, so a name is spelled once, here. Knows nothing of how a metric is collected or stored.

/// One metric of the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricName {
    pub name: &'static str,
    /// The labels its series carry (an alarm may filter on them).
    pub labels: &'static [&'static str],
    pub unit: &'static str,
}

pub const CPU_PERCENT: &str = "cpu_percent";
pub const MEMORY_BYTES: &str = "memory_bytes";
pub const OPEN_FDS: &str = "open_fds";
pub const RESTARTS: &str = "restarts";
pub const REPLICAS: &str = "replicas";
pub const REQUESTS: &str = "requests";
pub const ERRORS_4XX: &str = "errors_4xx";
pub const ERRORS_5XX: &str = "errors_5xx";
pub const LATENCY_MS: &str = "latency_ms";
pub const ACTIVE_CONNECTIONS: &str = "active_connections";
pub const WAF_BLOCKED: &str = "waf_blocked";
pub const RATE_LIMITED: &str = "rate_limited";
pub const ACCESSORY_UP: &str = "accessory_up";
pub const ACCESSORY_CONNECTIONS: &str = "accessory_connections";
pub const DATABASE_BYTES: &str = "database_bytes";
pub const HOST_CPU_PERCENT: &str = "host_cpu_percent";
pub const HOST_MEMORY_PERCENT: &str = "host_memory_percent";
pub const HOST_DISK_PERCENT: &str = "host_disk_percent";
pub const HOST_LOAD1: &str = "host_load1";
/// The prefix of a replica's own Prometheus metrics: `app:NAME`.
pub const APP_PREFIX: &str = "app:";

const REPLICA: &[&str] = &["service", "replica", "release"];
const SERVICE_RELEASE: &[&str] = &["service", "release"];

/// The catalogue (without the open-ended `app:NAME` family).
pub const CATALOGUE: &[MetricName] = &[
    MetricName {
        name: CPU_PERCENT,
        labels: REPLICA,
        unit: "% of one core used by the replica",
    },
    MetricName {
        name: MEMORY_BYTES,
        labels: REPLICA,
        unit: "resident memory, bytes",
    },
    MetricName {
        name: OPEN_FDS,
        labels: REPLICA,
        unit: "open file descriptors",
    },
    MetricName {
        name: RESTARTS,
        labels: &["service", "replica"],
        unit: "restarts so far (counter)",
    },
    MetricName {
        name: REPLICAS,
        labels: &["service"],
        unit: "live replicas of the service",
    },
    MetricName {
        name: REQUESTS,
        labels: SERVICE_RELEASE,
        unit: "requests per second",
    },
    MetricName {
        name: ERRORS_4XX,
        labels: SERVICE_RELEASE,
        unit: "4xx answers per second",
    },
    MetricName {
        name: ERRORS_5XX,
        labels: SERVICE_RELEASE,
        unit: "5xx answers per second",
    },
    MetricName {
        name: LATENCY_MS,
        labels: SERVICE_RELEASE,
        unit: "latency, milliseconds",
    },
    MetricName {
        name: ACTIVE_CONNECTIONS,
        labels: &[],
        unit: "the edge's open client connections",
    },
    MetricName {
        name: WAF_BLOCKED,
        labels: &["service"],
        unit: "WAF blocks per second",
    },
    MetricName {
        name: RATE_LIMITED,
        labels: &[],
        unit: "rate-limit refusals per second",
    },
    MetricName {
        name: ACCESSORY_UP,
        labels: &["accessory"],
        unit: "1 up, 0 down",
    },
    MetricName {
        name: ACCESSORY_CONNECTIONS,
        labels: &["accessory"],
        unit: "client connections of the server",
    },
    MetricName {
        name: DATABASE_BYTES,
        labels: &["accessory"],
        unit: "database size, bytes",
    },
    MetricName {
        name: HOST_CPU_PERCENT,
        labels: &[],
        unit: "host CPU busy %",
    },
    MetricName {
        name: HOST_MEMORY_PERCENT,
        labels: &[],
        unit: "host memory used %",
    },
    MetricName {
        name: HOST_DISK_PERCENT,
        labels: &[],
        unit: "disk used % of the filesystem holding .berth",
    },
    MetricName {
        name: HOST_LOAD1,
        labels: &[],
        unit: "1-minute load average",
    },
];

/// The labels of an application metric's series besides the app's own.
pub const APP_LABELS: &[&str] = &["service", "replica"];

/// The catalogue entry of `name`; `app:NAME` gives an entry with the replica labels (the app's
/// own labels are not known in advance). `None`: not a metric Berth knows.
pub fn lookup(name: &str) -> Option<MetricName> {
    if let Some(app) = name.strip_prefix(APP_PREFIX) {
        return is_prometheus_name(app).then_some(MetricName {
            name: APP_PREFIX,
            labels: APP_LABELS,
            unit: "the application's own metric",
        });
    }
    CATALOGUE.iter().copied().find(|metric| metric.name == name)
}

/// The names of the catalogue, for suggestions.
pub fn names() -> Vec<&'static str> {
    CATALOGUE.iter().map(|metric| metric.name).collect()
}

/// A Prometheus metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_prometheus_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_names_are_unique_and_looked_up() {
        let mut all = names();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), CATALOGUE.len());
        assert_eq!(lookup("cpu_percent").unwrap().labels, REPLICA);
        assert!(lookup("cpu").is_none());
        assert_eq!(lookup("app:orders_total").unwrap().labels, APP_LABELS);
        assert!(lookup("app:").is_none());
        assert!(lookup("app:9lives").is_none());
    }
}
