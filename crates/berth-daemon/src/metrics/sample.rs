//! The collector's decisions, pure: `/proc` and cgroup text → numbers, counters → rates,
//! the edge's cumulative per-release counters → per-interval samples. Every function here takes
//! what was read (and the time, as seconds of a monotonic clock) and returns samples; the I/O is
//! in [`super::read`].

use std::collections::{BTreeMap, HashMap};

use berth_metrics::{Observation, Sample};
use berth_model::traffic::{latency_bucket_upper, ReleaseTraffic};

/// One process as `/proc/PID/stat` describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: u32,
    pub ppid: u32,
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
    /// Resident pages.
    pub rss_pages: u64,
}

/// Reads `/proc/PID/stat` (the command name may hold spaces and parentheses: fields are counted
/// after the last `)`).
pub fn parse_proc_stat(text: &str) -> Option<ProcStat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid: u32 = text[..open].trim().parse().ok()?;
    let fields: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // fields[0] is the state (field 3 of proc(5)); ppid is 4, utime 14, stime 15, rss 24.
    let at = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<i64>().ok());
    Some(ProcStat {
        pid,
        ppid: at(4)?.max(0) as u32,
        cpu_ticks: (at(14)?.max(0) + at(15)?.max(0)) as u64,
        rss_pages: at(24)?.max(0) as u64,
    })
}

/// `root` and every process below it.
pub fn process_tree(root: u32, procs: &[ProcStat]) -> Vec<ProcStat> {
    let mut children: HashMap<u32, Vec<&ProcStat>> = HashMap::new();
    for p in procs {
        children.entry(p.ppid).or_default().push(p);
    }
    let mut out: Vec<ProcStat> = procs.iter().filter(|p| p.pid == root).copied().collect();
    let mut i = 0;
    while i < out.len() && out.len() < 10_000 {
        if let Some(kids) = children.get(&out[i].pid) {
            out.extend(kids.iter().map(|p| **p));
        }
        i += 1;
    }
    out
}

/// The cgroup v2 path a process is in (`0::/berth/...`), when it is one of Berth's.
pub fn berth_cgroup(proc_cgroup: &str) -> Option<String> {
    proc_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::trim)
        .filter(|p| p.contains("/berth/") || p.starts_with("/berth"))
        .filter(|p| !p.contains(".."))
        .map(str::to_string)
}

/// `usage_usec` of a cgroup v2 `cpu.stat`, in seconds.
pub fn cgroup_cpu_seconds(cpu_stat: &str) -> Option<f64> {
    cpu_stat.lines().find_map(|l| {
        let v = l.strip_prefix("usage_usec ")?;
        v.trim().parse::<u64>().ok().map(|us| us as f64 / 1e6)
    })
}

/// What a replica used, as read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    /// CPU time used so far, in seconds (cumulative).
    pub cpu_seconds: f64,
    pub memory_bytes: u64,
    pub open_fds: u64,
}

/// `/proc/stat`'s first line: (busy, total) jiffies.
pub fn parse_host_cpu(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    if v.len() < 4 {
        return None;
    }
    // user nice system idle iowait irq softirq steal (guest is inside user).
    let total: u64 = v.iter().take(8).sum();
    let idle = v[3] + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// Percent of memory in use from `/proc/meminfo` (MemTotal - MemAvailable).
pub fn parse_memory_percent(meminfo: &str) -> Option<f64> {
    let field = |name: &str| {
        meminfo.lines().find_map(|l| {
            let rest = l.strip_prefix(name)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse::<f64>().ok()
        })
    };
    let total = field("MemTotal")?;
    let available = field("MemAvailable")?;
    (total > 0.0).then(|| (total - available) / total * 100.0)
}

/// The 1-minute load from `/proc/loadavg`.
pub fn parse_load1(loadavg: &str) -> Option<f64> {
    loadavg.split_whitespace().next()?.parse().ok()
}

/// Counter → rate per second, remembering the last value of each key; None for the first
/// reading and after a reset (the counter went down).
#[derive(Debug, Default)]
pub struct Rates {
    last: HashMap<String, (f64, f64)>,
}

impl Rates {
    pub fn rate(&mut self, key: &str, at: f64, value: f64) -> Option<f64> {
        let previous = self.last.insert(key.to_string(), (at, value));
        let (then, before) = previous?;
        let dt = at - then;
        (dt > 0.0 && value >= before).then(|| (value - before) / dt)
    }

    /// Forgets keys not seen since `before` (replicas and releases that are gone).
    pub fn forget_older_than(&mut self, before: f64) {
        self.last.retain(|_, (at, _)| *at >= before);
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A replica as the collector sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaSeen {
    pub service: String,
    pub replica: String,
    pub release: String,
    pub restarts: u32,
    /// None when it has no live process now.
    pub usage: Option<(u32, Usage)>,
}

/// The samples of the replicas: cpu % (rate of CPU seconds over the interval, per pid so a
/// restart starts afresh), memory, fds, restarts; and `replicas` per service (live ones).
pub fn replica_samples(rates: &mut Rates, at: f64, seen: &[ReplicaSeen]) -> Vec<Sample> {
    let mut out = Vec::new();
    let mut live: BTreeMap<&str, u32> = BTreeMap::new();
    for r in seen {
        let owner = format!("replica:{}", r.replica);
        let with_release = labels(&[
            ("service", &r.service),
            ("replica", &r.replica),
            ("release", &r.release),
        ]);
        out.push(Sample {
            name: "restarts".into(),
            labels: labels(&[("service", &r.service), ("replica", &r.replica)]),
            owner: owner.clone(),
            value: Observation::Value(r.restarts as f64),
        });
        let entry = live.entry(&r.service).or_insert(0);
        let Some((pid, usage)) = r.usage else {
            continue;
        };
        *entry += 1;
        let key = format!("cpu/{}/{pid}", r.replica);
        if let Some(per_second) = rates.rate(&key, at, usage.cpu_seconds) {
            out.push(Sample {
                name: "cpu_percent".into(),
                labels: with_release.clone(),
                owner: owner.clone(),
                value: Observation::Value(per_second * 100.0),
            });
        }
        for (name, value) in [
            ("memory_bytes", usage.memory_bytes as f64),
            ("open_fds", usage.open_fds as f64),
        ] {
            out.push(Sample {
                name: name.into(),
                labels: with_release.clone(),
                owner: owner.clone(),
                value: Observation::Value(value),
            });
        }
    }
    for (service, count) in live {
        out.push(Sample {
            name: "replicas".into(),
            labels: labels(&[("service", service)]),
            owner: "stack".into(),
            value: Observation::Value(count as f64),
        });
    }
    out
}

/// The middle of a latency bucket, in milliseconds.
fn bucket_ms(index: usize) -> f64 {
    let upper = latency_bucket_upper(index) as f64;
    let lower = if index == 0 {
        0.0
    } else {
        latency_bucket_upper(index - 1) as f64
    };
    (lower + upper) / 2.0 / 1000.0
}

/// The edge's per-release counters between two readings: `requests` and `errors_5xx` per
/// second, `latency_ms` as the interval's histogram. Remembers the reading in `last`.
pub fn traffic_samples(
    last: &mut HashMap<(String, String), (f64, ReleaseTraffic)>,
    at: f64,
    traffic: &[ReleaseTraffic],
) -> Vec<Sample> {
    let mut out = Vec::new();
    for now in traffic {
        let key = (now.service.clone(), now.release.clone());
        let previous = last.insert(key, (at, now.clone()));
        let Some((then, before)) = previous else {
            continue;
        };
        let dt = at - then;
        if dt <= 0.0 {
            continue;
        }
        let window = now.since(&before);
        let l = labels(&[("service", &now.service), ("release", &now.release)]);
        for (name, count) in [("requests", window.requests), ("errors_5xx", window.errors)] {
            out.push(Sample {
                name: name.into(),
                labels: l.clone(),
                owner: "edge".into(),
                value: Observation::Value(count as f64 / dt),
            });
        }
        let histogram: Vec<(f64, u64)> = window
            .latency
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, n)| (bucket_ms(i), *n))
            .collect();
        if !histogram.is_empty() {
            out.push(Sample {
                name: "latency_ms".into(),
                labels: l,
                owner: "edge".into(),
                value: Observation::Histogram(histogram),
            });
        }
    }
    last.retain(|_, (t, _)| *t >= at);
    out
}

/// What the edge's Prometheus text adds: `errors_4xx` per (service, release),
/// `active_connections`, `waf_blocked` per service and `rate_limited`, per second.
pub fn edge_prometheus_samples(
    rates: &mut Rates,
    at: f64,
    samples: &[berth_metrics::prom::PromSample],
) -> Vec<Sample> {
    let mut out = Vec::new();
    for s in samples {
        let get = |k: &str| s.labels.get(k).map(String::as_str).unwrap_or("");
        match s.name.as_str() {
            "berth_edge_requests_total" if get("status") == "4xx" => {
                let key = format!("4xx/{}/{}", get("service"), get("release"));
                if let Some(rate) = rates.rate(&key, at, s.value) {
                    out.push(Sample {
                        name: "errors_4xx".into(),
                        labels: labels(&[("service", get("service")), ("release", get("release"))]),
                        owner: "edge".into(),
                        value: Observation::Value(rate),
                    });
                }
            }
            "berth_edge_client_connections" => out.push(Sample {
                name: "active_connections".into(),
                labels: BTreeMap::new(),
                owner: "edge".into(),
                value: Observation::Value(s.value),
            }),
            "berth_edge_blocked_total" if get("reason") == "rate_limit" => {
                if let Some(rate) = rates.rate("rate_limited", at, s.value) {
                    out.push(Sample {
                        name: "rate_limited".into(),
                        labels: BTreeMap::new(),
                        owner: "edge".into(),
                        value: Observation::Value(rate),
                    });
                }
            }
            "berth_edge_waf_blocked_total" => {
                let key = format!("waf/{}", get("service"));
                if let Some(rate) = rates.rate(&key, at, s.value) {
                    out.push(Sample {
                        name: "waf_blocked".into(),
                        labels: labels(&[("service", get("service"))]),
                        owner: "edge".into(),
                        value: Observation::Value(rate),
                    });
                }
            }
            _ => {}
        }
    }
    out
}

/// A replica's own metrics as `app:NAME` series, labelled with the service and replica (an
/// app label of the same name is kept as `exported_NAME`, as Prometheus does).
pub fn app_samples(
    service: &str,
    replica: &str,
    samples: Vec<berth_metrics::prom::PromSample>,
) -> Vec<Sample> {
    samples
        .into_iter()
        .map(|s| {
            let mut l: BTreeMap<String, String> = s
                .labels
                .into_iter()
                .map(|(k, v)| {
                    if k == "service" || k == "replica" {
                        (format!("exported_{k}"), v)
                    } else {
                        (k, v)
                    }
                })
                .collect();
            l.insert("service".into(), service.into());
            l.insert("replica".into(), replica.into());
            Sample {
                name: format!("app:{}", s.name),
                labels: l,
                owner: format!("replica:{replica}"),
                value: Observation::Value(s.value),
            }
        })
        .collect()
}

/// `accessory_up`: 1 up, 0 down.
pub fn accessory_up(name: &str, up: bool) -> Sample {
    Sample::value(
        "accessory_up",
        &[("accessory", name)],
        &format!("accessory:{name}"),
        if up { 1.0 } else { 0.0 },
    )
}

/// What an accessory's server said: `accessory_connections`, `database_bytes`.
pub fn accessory_samples(name: &str, stats: &berth_accessories::AccessoryStats) -> Vec<Sample> {
    let owner = format!("accessory:{name}");
    [
        ("accessory_connections", stats.connections),
        ("database_bytes", stats.database_bytes),
    ]
    .into_iter()
    .filter_map(|(metric, value)| {
        Some(Sample::value(
            metric,
            &[("accessory", name)],
            &owner,
            value? as f64,
        ))
    })
    .collect()
}

/// The host as read.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct HostReading {
    /// (busy, total) jiffies of `/proc/stat`.
    pub cpu: Option<(u64, u64)>,
    pub memory_percent: Option<f64>,
    pub disk_percent: Option<f64>,
    pub load1: Option<f64>,
}

/// The host's samples from what was read (CPU as a rate of the busy jiffies).
pub fn host_samples(last_cpu: &mut Option<(u64, u64)>, host: &HostReading) -> Vec<Sample> {
    let HostReading {
        cpu,
        memory_percent,
        disk_percent,
        load1,
    } = *host;
    let mut out = Vec::new();
    let mut push = |name: &str, value: Option<f64>| {
        if let Some(v) = value {
            out.push(Sample::value(name, &[], "host", v));
        }
    };
    if let (Some((busy, total)), Some((busy0, total0))) = (cpu, *last_cpu) {
        if total > total0 && busy >= busy0 {
            push(
                "host_cpu_percent",
                Some((busy - busy0) as f64 / (total - total0) as f64 * 100.0),
            );
        }
    }
    if cpu.is_some() {
        *last_cpu = cpu;
    }
    push("host_memory_percent", memory_percent);
    push("host_disk_percent", disk_percent);
    push("host_load1", load1);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_model::traffic::latency_bucket;

    fn value(samples: &[Sample], name: &str) -> Option<f64> {
        samples
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| match s.value {
                Observation::Value(v) => Some(v),
                _ => None,
            })
    }

    #[test]
    fn proc_stat_with_a_hostile_command_name() {
        let text = "4242 (gun) corn (x) R 4200 4242 4200 0 -1 4194560 1500 0 0 0 250 50 0 0 20 0 3 0 100 200000000 2048 18446744073709551615";
        let p = parse_proc_stat(text).unwrap();
        assert_eq!(
            (p.pid, p.ppid, p.cpu_ticks, p.rss_pages),
            (4242, 4200, 300, 2048)
        );
        assert_eq!(parse_proc_stat("garbage"), None);
        assert_eq!(parse_proc_stat("12 (x) R 1"), None);
    }

    #[test]
    fn the_tree_is_the_root_and_all_below_it() {
        let p = |pid, ppid| ProcStat {
            pid,
            ppid,
            cpu_ticks: 1,
            rss_pages: 1,
        };
        let procs = [p(1, 0), p(10, 1), p(11, 10), p(12, 11), p(13, 10), p(20, 1)];
        let mut tree: Vec<u32> = process_tree(10, &procs).iter().map(|p| p.pid).collect();
        tree.sort();
        assert_eq!(tree, vec![10, 11, 12, 13]);
        assert!(process_tree(99, &procs).is_empty());
    }

    #[test]
    fn only_berths_own_cgroups_are_read() {
        assert_eq!(
            berth_cgroup("0::/berth/shop-production/web.1-3\n").as_deref(),
            Some("/berth/shop-production/web.1-3")
        );
        assert_eq!(berth_cgroup("0::/user.slice/session-1.scope\n"), None);
        assert_eq!(berth_cgroup("0::/berth/../../etc\n"), None);
        assert_eq!(
            cgroup_cpu_seconds("usage_usec 2500000\nuser_usec 1\n"),
            Some(2.5)
        );
    }

    #[test]
    fn cpu_is_a_rate_per_process_and_restarts_start_afresh() {
        let mut rates = Rates::default();
        let seen = |pid: u32, cpu: f64| {
            vec![ReplicaSeen {
                service: "web".into(),
                replica: "web.1".into(),
                release: "r1".into(),
                restarts: 2,
                usage: Some((
                    pid,
                    Usage {
                        cpu_seconds: cpu,
                        memory_bytes: 1000,
                        open_fds: 7,
                    },
                )),
            }]
        };
        let first = replica_samples(&mut rates, 0.0, &seen(100, 5.0));
        assert_eq!(value(&first, "cpu_percent"), None);
        assert_eq!(value(&first, "memory_bytes"), Some(1000.0));
        assert_eq!(value(&first, "restarts"), Some(2.0));
        assert_eq!(value(&first, "replicas"), Some(1.0));
        let second = replica_samples(&mut rates, 10.0, &seen(100, 7.5));
        assert_eq!(value(&second, "cpu_percent"), Some(25.0));
        // A new process (restart): no rate from the old one's counter.
        let third = replica_samples(&mut rates, 20.0, &seen(200, 0.1));
        assert_eq!(value(&third, "cpu_percent"), None);
        // A replica without a live process is not counted in `replicas`.
        let mut gone = seen(1, 0.0);
        gone[0].usage = None;
        let fourth = replica_samples(&mut rates, 30.0, &gone);
        assert_eq!(value(&fourth, "replicas"), Some(0.0));
        assert_eq!(value(&fourth, "memory_bytes"), None);
    }

    #[test]
    fn edge_counters_become_rates_and_a_latency_histogram() {
        let mut last = HashMap::new();
        let mut reading = ReleaseTraffic {
            service: "web".into(),
            release: "r1".into(),
            requests: 100,
            errors: 1,
            latency: vec![0; 108],
            routes: vec![],
        };
        assert!(traffic_samples(&mut last, 0.0, std::slice::from_ref(&reading)).is_empty());
        reading.requests += 50;
        reading.errors += 5;
        reading.latency[latency_bucket(2_000)] += 49;
        reading.latency[latency_bucket(400_000)] += 1;
        let out = traffic_samples(&mut last, 10.0, &[reading.clone()]);
        assert_eq!(value(&out, "requests"), Some(5.0));
        assert_eq!(value(&out, "errors_5xx"), Some(0.5));
        let Observation::Histogram(h) = &out.iter().find(|s| s.name == "latency_ms").unwrap().value
        else {
            panic!()
        };
        assert_eq!(h.iter().map(|(_, n)| n).sum::<u64>(), 50);
        assert!(h.iter().any(|(ms, _)| (1.8..2.4).contains(ms)), "{h:?}");
        assert!(h.iter().any(|(ms, _)| (350.0..450.0).contains(ms)), "{h:?}");
        // An edge restart (counters from zero): the new counts are taken whole.
        reading.requests = 20;
        reading.errors = 0;
        let out = traffic_samples(&mut last, 20.0, &[reading]);
        assert_eq!(value(&out, "requests"), Some(2.0));
    }

    #[test]
    fn the_edges_prometheus_text_gives_4xx_connections_and_blocks() {
        let text = r#"berth_edge_requests_total{service="web",release="r1",status="4xx"} 10
berth_edge_requests_total{service="web",release="r1",status="2xx"} 99
berth_edge_client_connections 3
berth_edge_blocked_total{reason="waf"} 4
berth_edge_waf_blocked_total{service="web"} 4
berth_edge_blocked_total{reason="rate_limit"} 0
"#;
        let mut rates = Rates::default();
        let first =
            edge_prometheus_samples(&mut rates, 0.0, &berth_metrics::prom::parse(text).samples);
        assert_eq!(value(&first, "active_connections"), Some(3.0));
        assert_eq!(value(&first, "errors_4xx"), None);
        let later = text
            .replace("} 10", "} 30")
            .replace("\"web\"} 4", "\"web\"} 14")
            .replace("} 0\n", "} 5\n");
        let second = edge_prometheus_samples(
            &mut rates,
            10.0,
            &berth_metrics::prom::parse(&later).samples,
        );
        assert_eq!(value(&second, "errors_4xx"), Some(2.0));
        assert_eq!(value(&second, "waf_blocked"), Some(1.0));
        assert_eq!(value(&second, "rate_limited"), Some(0.5));
        let s = second.iter().find(|s| s.name == "errors_4xx").unwrap();
        assert_eq!(s.labels["release"], "r1");
        let s = second.iter().find(|s| s.name == "waf_blocked").unwrap();
        assert_eq!(s.labels["service"], "web");
    }

    #[test]
    fn app_metrics_keep_their_labels_but_not_ours() {
        let parsed = berth_metrics::prom::parse("orders_total{shop=\"a\",service=\"fake\"} 7\n");
        let out = app_samples("web", "web.1", parsed.samples);
        assert_eq!(out[0].name, "app:orders_total");
        assert_eq!(out[0].labels["service"], "web");
        assert_eq!(out[0].labels["exported_service"], "fake");
        assert_eq!(out[0].labels["shop"], "a");
        assert_eq!(out[0].owner, "replica:web.1");
    }

    #[test]
    fn accessory_numbers_are_labelled_by_accessory() {
        let stats = berth_accessories::AccessoryStats {
            connections: Some(3),
            database_bytes: None,
        };
        let out = accessory_samples("db", &stats);
        assert_eq!(out.len(), 1);
        assert_eq!(value(&out, "accessory_connections"), Some(3.0));
        assert_eq!(out[0].labels["accessory"], "db");
        assert_eq!(
            value(&[accessory_up("db", false)], "accessory_up"),
            Some(0.0)
        );
    }

    #[test]
    fn host_numbers_from_proc() {
        let stat = "cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3 4\n";
        assert_eq!(parse_host_cpu(stat), Some((200, 1000)));
        let meminfo = "MemTotal:       1000 kB\nMemFree:  100 kB\nMemAvailable:    250 kB\n";
        assert_eq!(parse_memory_percent(meminfo), Some(75.0));
        assert_eq!(parse_load1("0.52 0.40 0.30 1/200 999\n"), Some(0.52));
        let mut last = None;
        let first = host_samples(
            &mut last,
            &HostReading {
                cpu: Some((200, 1000)),
                memory_percent: Some(75.0),
                disk_percent: Some(40.0),
                load1: Some(0.5),
            },
        );
        assert_eq!(value(&first, "host_cpu_percent"), None);
        let second = host_samples(
            &mut last,
            &HostReading {
                cpu: Some((300, 1400)),
                ..Default::default()
            },
        );
        assert_eq!(value(&second, "host_cpu_percent"), Some(25.0));
    }
}
