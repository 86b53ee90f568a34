//! Walks the spanned TOML tree of a `berth.toml` by hand, key by key, into a [`RawSpec`].
//!
//! Every unknown key, wrong type and unparsable value is recorded as a [`Problem`] and the walk
//! goes on, so one run reports everything that is wrong with the file's shape. Checks that need
//! the whole spec (routes, references, replica bounds...) are in `check`.

use std::collections::BTreeMap;
use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::raw::{
    Located, RawAccessory, RawEnvironment, RawHealth, RawOverride, RawRoute, RawService, RawSpec,
    RawSticky, RawVolume,
};
use crate::report::Problems;
use crate::types::{Balance, Engine, PortSpec};
use crate::units::{self, closest, list};

mod alarm;
mod autoscale;
mod backup;
mod cache;
mod compress;
mod container;
mod cron;
mod deploy;
mod limits;
mod metrics;
mod tls;
mod waf;

pub(crate) use alarm::check_alarms;
pub(crate) use backup::check_backup;

type Value<'i> = Spanned<DeValue<'i>>;
type Key<'i> = Spanned<std::borrow::Cow<'i, str>>;

const TOP_KEYS: &[&str] = &[
    "stack",
    "edge",
    "env",
    "service",
    "accessory",
    "volume",
    "route",
    "certificate",
    "acme",
    "rate_limit",
    "allow",
    "waf",
    "cache",
    "environment",
    "backup",
    "containers",
    "alarm",
    "alarms",
    "notify",
];
const STACK_KEYS: &[&str] = &["name", "keep_releases"];
const EDGE_KEYS: &[&str] = &[
    "listen",
    "admin",
    "max_body",
    "max_header",
    "connect_timeout",
    "header_timeout",
    "idle_timeout",
    "request_timeout",
    "access_log",
    "trusted_proxies",
    "tls_listen",
    "hsts",
    "redirect_https",
    "rate_limit",
    "limit_exempt",
    "max_connections_per_ip",
    "headers",
    "hide_server",
    "maintenance_allow",
    "workers",
    "pin_workers",
    "compress",
    "compress_min_size",
    "compress_types",
    "compress_algorithms",
];
const SERVICE_KEYS: &[&str] = &[
    "run",
    "build",
    "source",
    "port",
    "replicas",
    "min",
    "max",
    "stop_timeout",
    "env",
    "use",
    "depends_on",
    "volumes",
    "memory",
    "cpu",
    "health",
    "balance",
    "deregistration_delay",
    "sticky",
    "deploy",
    "secrets",
    "cron",
    "metrics",
    "autoscale",
    "image",
    "dockerfile",
    "target",
    "network",
];
const HEALTH_KEYS: &[&str] = &[
    "path",
    "interval",
    "timeout",
    "healthy_threshold",
    "unhealthy_threshold",
    "grace_period",
];
const STICKY_KEYS: &[&str] = &["cookie", "duration"];
const BALANCES: &[&str] = &["least_outstanding", "round_robin"];
const ACCESSORY_KEYS: &[&str] = &["engine", "database", "user", "port", "env"];
const ENGINES: &[&str] = &["postgres", "mysql", "redis"];
const VOLUME_KEYS: &[&str] = &["env"];
const ROUTE_KEYS: &[&str] = &["host", "path", "service", "headers", "compress"];
const ENVIRONMENT_KEYS: &[&str] = &["env", "service"];
const OVERRIDE_KEYS: &[&str] = &["replicas", "min", "max", "memory", "cpu", "env"];

/// Reads the document `root` of `source` into a [`RawSpec`], recording problems.
pub(crate) fn walk(source: &str, root: &DeTable<'_>, problems: &mut Problems) -> RawSpec {
    let mut walker = Walker { source, problems };
    walker.top(root)
}

struct Walker<'a> {
    source: &'a str,
    problems: &'a mut Problems,
}

/// The article and name of a TOML value's type, for messages.
fn type_name(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// The span covering `key = value`.
fn entry_span(key: &Key<'_>, value: &Value<'_>) -> Range<usize> {
    let (key, value) = (key.span(), value.span());
    key.start.min(value.start)..key.end.max(value.end)
}

impl Walker<'_> {
    // ----- tables -------------------------------------------------------------------------

    fn top(&mut self, root: &DeTable<'_>) -> RawSpec {
        let mut spec = RawSpec::default();
        for (key, value) in root.iter() {
            match key.get_ref().as_ref() {
                "stack" => self.stack(value, &mut spec),
                "edge" => self.edge(value, &mut spec),
                "env" => spec.env = self.env_map(value, "env"),
                "service" => {
                    for (name, table) in self.named_tables(value, "service") {
                        let service = self.service(&name, table);
                        spec.services.insert(name.value, service);
                    }
                }
                "accessory" => {
                    for (name, table) in self.named_tables(value, "accessory") {
                        let accessory = self.accessory(&name.value, table);
                        spec.accessories.insert(name.value, accessory);
                    }
                }
                "volume" => {
                    for (name, table) in self.named_tables(value, "volume") {
                        let volume = self.volume(&name.value, table);
                        spec.volumes.insert(name.value, volume);
                    }
                }
                "route" => spec.routes = self.routes(value),
                "certificate" => spec.certificates = self.certificates(value),
                "rate_limit" => spec.rate_limits = self.rate_limits(value),
                "allow" => spec.allow = self.allow_rules(value),
                "waf" => spec.waf = self.waf(value),
                "cache" => spec.cache = self.cache(value),
                "acme" => spec.acme = self.acme(value),
                "backup" => spec.backup = self.backup(value),
                "containers" => spec.container_socket = self.containers(value),
                "alarm" => spec.alarms = self.alarm_list(value),
                "alarms" => spec.alarms_table = self.alarms_table(value),
                "notify" => {
                    let (targets, declared) = self.notify_targets(value);
                    spec.notify = targets;
                    spec.notify_declared = declared;
                }
                "environment" => {
                    for (name, table) in self.named_tables(value, "environment") {
                        if name.value == "default" {
                            self.problems.push(
                                name.span.clone(),
                                "the environment `default` cannot be declared",
                                Some(
                                    "`default` is the stack without overrides; pick another name"
                                        .into(),
                                ),
                            );
                        }
                        let environment = self.environment(&name.value, table);
                        spec.environments.insert(name.value, environment);
                    }
                }
                other => self.unknown_key(key, other, TOP_KEYS, "the top level"),
            }
        }
        spec
    }

    fn stack(&mut self, value: &Value<'_>, spec: &mut RawSpec) {
        let Some(table) = self.table(value, "stack", "[stack]") else {
            return;
        };
        for (key, value) in table.iter() {
            match key.get_ref().as_ref() {
                "name" => {
                    spec.stack_name = self.string(value, "stack.name", r#"name = "hello""#);
                    if let Some(name) = &spec.stack_name {
                        if name.value.trim().is_empty() {
                            self.problems.push(
                                name.span.clone(),
                                "`stack.name` must not be empty",
                                Some("remove it to use the folder's name".into()),
                            );
                        }
                    }
                }
                "keep_releases" => {
                    spec.keep_releases = self
                        .count(value, "stack.keep_releases", 1, "keep_releases = 5")
                        .map(|count| count.value);
                }
                other => self.unknown_key(key, other, STACK_KEYS, "[stack]"),
            }
        }
    }

    fn edge(&mut self, value: &Value<'_>, spec: &mut RawSpec) {
        let Some(table) = self.table(value, "edge", "[edge]") else {
            return;
        };
        for (key, value) in table.iter() {
            match key.get_ref().as_ref() {
                "listen" => {
                    let example = r#"listen = ["127.0.0.1:8080"]"#;
                    let Some(items) = self.array(value, "edge.listen", example) else {
                        continue;
                    };
                    if items.is_empty() {
                        self.problems.push(
                            value.span(),
                            "`edge.listen` must name at least one address",
                            Some(format!("e.g. {example}")),
                        );
                        continue;
                    }
                    let mut addresses = Vec::new();
                    for item in items {
                        if let Some(address) = self.address(item, "edge.listen", example) {
                            addresses.push(address);
                        }
                    }
                    if addresses.len() == items.len() {
                        spec.listen = Some(addresses);
                    }
                }
                "admin" => {
                    spec.admin = self.address(value, "edge.admin", r#"admin = "127.0.0.1:9090""#)
                }
                "max_body" => {
                    spec.max_body = self.size(value, "edge.max_body", r#"max_body = "64M""#);
                }
                "max_header" => {
                    spec.max_header = self.size(value, "edge.max_header", r#"max_header = "64K""#);
                }
                "connect_timeout" => {
                    spec.connect_timeout = self.positive_duration(
                        value,
                        "edge.connect_timeout",
                        r#"connect_timeout = "5s""#,
                    );
                }
                "header_timeout" => {
                    spec.header_timeout = self.positive_duration(
                        value,
                        "edge.header_timeout",
                        r#"header_timeout = "10s""#,
                    );
                }
                "idle_timeout" => {
                    spec.idle_timeout = self.positive_duration(
                        value,
                        "edge.idle_timeout",
                        r#"idle_timeout = "60s""#,
                    );
                }
                "request_timeout" => {
                    spec.request_timeout = self.positive_duration(
                        value,
                        "edge.request_timeout",
                        r#"request_timeout = "60s""#,
                    );
                }
                "access_log" => {
                    spec.access_log = self.boolean(value, "edge.access_log", "access_log = true");
                }
                "tls_listen" => {
                    let example = r#"tls_listen = ["0.0.0.0:443"]"#;
                    let Some(items) = self.array(value, "edge.tls_listen", example) else {
                        continue;
                    };
                    let mut addresses = Vec::new();
                    for item in items {
                        if let Some(address) = self.address(item, "edge.tls_listen", example) {
                            addresses.push(address);
                        }
                    }
                    if addresses.len() == items.len() {
                        spec.tls_listen = Some(Located {
                            value: addresses,
                            span: value.span(),
                        });
                    }
                }
                "hsts" => {
                    spec.hsts = self
                        .string(
                            value,
                            "edge.hsts",
                            r#"hsts = "max-age=31536000; includeSubDomains""#,
                        )
                        .map(|h| h.value);
                }
                "redirect_https" => {
                    spec.redirect_https =
                        self.boolean(value, "edge.redirect_https", "redirect_https = true");
                }
                "rate_limit" => {
                    let example = r#"rate_limit = "2000/5m""#;
                    let Some(text) = self.string(value, "edge.rate_limit", example) else {
                        continue;
                    };
                    if text.value == "off" {
                        spec.global_rate_limit = Some(None);
                    } else {
                        match limits::parse_rate(&text.value) {
                            Some(rate) => spec.global_rate_limit = Some(Some(rate)),
                            None => self.problems.push(
                                text.span,
                                format!("invalid rate \"{}\" for `edge.rate_limit`", text.value),
                                Some(r#"requests per period per client, e.g. "2000/5m" or "10/s"; "off" for none"#.into()),
                            ),
                        }
                    }
                }
                "limit_exempt" => {
                    spec.limit_exempt = self.networks(
                        value,
                        "edge.limit_exempt",
                        r#"limit_exempt = ["127.0.0.0/8", "10.0.0.0/8"]"#,
                    );
                }
                "max_connections_per_ip" => {
                    spec.max_connections_per_ip = self
                        .count(
                            value,
                            "edge.max_connections_per_ip",
                            0,
                            "max_connections_per_ip = 256",
                        )
                        .map(|c| c.value);
                }
                "headers" => spec.response_headers = self.headers(value, "edge.headers"),
                "maintenance_allow" => {
                    spec.maintenance_allow = self.networks(
                        value,
                        "edge.maintenance_allow",
                        r#"maintenance_allow = ["127.0.0.1", "10.0.0.0/8"]"#,
                    );
                }
                "hide_server" => {
                    spec.hide_server =
                        self.boolean(value, "edge.hide_server", "hide_server = true");
                }
                "workers" => {
                    const HINT: &str = r#"a number of threads from 1 to 256, or "auto" (one per core the edge may run on, the default)"#;
                    match value.get_ref() {
                        DeValue::String(text) if text == "auto" => spec.workers = Some(None),
                        DeValue::String(_) => {
                            self.problems.push(
                                value.span(),
                                "`edge.workers` must be a number or \"auto\"",
                                Some(HINT.into()),
                            );
                        }
                        _ => {
                            if let Some(count) = self.count(value, "edge.workers", 1, "workers = 4")
                            {
                                if count.value > 256 {
                                    self.problems.push(
                                        value.span(),
                                        format!(
                                            "`edge.workers` is at most 256, found {}",
                                            count.value
                                        ),
                                        Some(HINT.into()),
                                    );
                                } else {
                                    spec.workers = Some(Some(count.value));
                                }
                            }
                        }
                    }
                }
                "pin_workers" => {
                    spec.pin_workers =
                        self.boolean(value, "edge.pin_workers", "pin_workers = true");
                }
                "compress" => {
                    spec.compress.enabled =
                        self.boolean(value, "edge.compress", "compress = false");
                }
                "compress_min_size" => {
                    spec.compress.min_size = self.size(
                        value,
                        "edge.compress_min_size",
                        r#"compress_min_size = "1K""#,
                    );
                }
                "compress_types" => spec.compress.types = self.compress_types(value),
                "compress_algorithms" => {
                    spec.compress.algorithms = self.compress_algorithms(value);
                }
                "trusted_proxies" => {
                    spec.trusted_proxies = self.networks(
                        value,
                        "edge.trusted_proxies",
                        r#"trusted_proxies = ["10.0.0.0/8", "192.0.2.7"]"#,
                    );
                }
                other => self.unknown_key(key, other, EDGE_KEYS, "[edge]"),
            }
        }
    }

    fn service(&mut self, name: &Located<String>, value: &Value<'_>) -> RawService {
        let label = format!("[service.{}]", name.value);
        let mut service = RawService::new();
        let Some(table) = self.table(value, &format!("service.{}", name.value), &label) else {
            // Read a broken service as permissively as possible: it exists and has a port.
            service.port = PortSpec::Auto;
            service.run = Some(String::new());
            return service;
        };
        let path = |key: &str| format!("service.{}.{key}", name.value);
        let mut metrics_span = None;
        for (key, value) in table.iter() {
            match key.get_ref().as_ref() {
                "run" => {
                    let run = self.string(value, &path("run"), r#"run = "python3 app.py""#);
                    if let Some(run) = &run {
                        if run.value.trim().is_empty() {
                            self.problems.push(
                                run.span.clone(),
                                format!("`{}` must not be empty", path("run")),
                                Some(r#"give the command that starts the service, e.g. run = "python3 app.py""#.into()),
                            );
                        }
                    }
                    // An empty command was reported; keep it so "no `run`" is not reported too.
                    service.run = Some(run.map_or(String::new(), |run| run.value));
                    service.run_span = Some(entry_span(key, value));
                }
                "build" => {
                    service.build = self
                        .string(
                            value,
                            &path("build"),
                            r#"build = "pip install -r requirements.txt""#,
                        )
                        .map(|build| build.value);
                    service.build_span = Some(entry_span(key, value));
                }
                "image" | "dockerfile" | "target" | "network" => {
                    self.container_key(&name.value, key, value, &mut service.container);
                }
                "source" => {
                    service.source = self
                        .string(value, &path("source"), r#"source = ".""#)
                        .map(|source| source.value);
                }
                "port" => service.port = self.service_port(value, &path("port")),
                "replicas" => {
                    service.replicas.replicas = self.count_entry(key, value, &path("replicas"), 1);
                }
                "min" => service.replicas.min = self.count_entry(key, value, &path("min"), 0),
                "max" => service.replicas.max = self.count_entry(key, value, &path("max"), 1),
                "stop_timeout" => {
                    service.stop_timeout =
                        self.duration(value, &path("stop_timeout"), r#"stop_timeout = "10s""#);
                }
                "env" => service.env = self.env_map(value, &path("env")),
                "use" => {
                    service.uses = self.name_list(value, &path("use"), r#"use = ["db"]"#);
                }
                "depends_on" => {
                    service.depends_on =
                        self.name_list(value, &path("depends_on"), r#"depends_on = ["db"]"#);
                }
                "volumes" => {
                    service.volumes =
                        self.name_list(value, &path("volumes"), r#"volumes = ["uploads"]"#);
                }
                "memory" => {
                    service.memory = self.size(value, &path("memory"), r#"memory = "256M""#)
                }
                "cpu" => service.cpu = self.cpu(value, &path("cpu")),
                "health" => {
                    let health = self.health(&name.value, value);
                    service.health = health.map(|health| Located {
                        value: health,
                        span: value.span(),
                    });
                }
                "balance" => service.balance = self.balance(value, &path("balance")),
                "deregistration_delay" => {
                    service.deregistration_delay = self.duration(
                        value,
                        &path("deregistration_delay"),
                        r#"deregistration_delay = "30s""#,
                    );
                }
                "sticky" => {
                    let sticky = self.sticky(&name.value, value);
                    service.sticky = sticky.map(|sticky| Located {
                        value: sticky,
                        span: value.span(),
                    });
                }
                "deploy" => {
                    service.deploy = self.deploy(&name.value, value).map(|deploy| Located {
                        value: deploy,
                        span: value.span(),
                    });
                }
                "secrets" => service.secrets = self.secret_names(value, &path("secrets")),
                "cron" => service.cron = self.cron(&name.value, value),
                "metrics" => {
                    metrics_span = Some(value.span());
                    service.metrics = self.app_metrics(&name.value, value);
                }
                "autoscale" => {
                    service.autoscale =
                        self.autoscale(&name.value, value).map(|autoscale| Located {
                            value: autoscale,
                            span: key.span(),
                        });
                }
                other => self.unknown_key(key, other, SERVICE_KEYS, &label),
            }
        }
        if let (Some(_), Some(span)) = (&service.metrics, metrics_span) {
            if !service.port.has_port() {
                self.problems.push(
                    span,
                    format!(
                        "service `{}` has no port, so there are no metrics to scrape",
                        name.value
                    ),
                    Some(r#"give the service a port (port = "auto"), or remove `metrics`"#.into()),
                );
            }
        }
        if let Some(deploy) = &service.deploy {
            let strategy = deploy.value.strategy;
            if strategy != crate::types::Strategy::Rolling && !service.port.has_port() {
                self.problems.push(
                    deploy.span.clone(),
                    format!(
                        "service `{}` has no port, so it cannot be deployed {strategy}: traffic weights and smoke checks go through the edge",
                        name.value
                    ),
                    Some(r#"use strategy = "rolling" for a worker, or give the service a port"#.into()),
                );
            }
        }
        if service.container.is_container() || service.container.target.is_some() {
            self.check_container(&name.value, &service);
        } else if service.run.is_none() {
            self.problems.push(
                value.span(),
                format!("service `{}` has no `run` command", name.value),
                Some(format!(
                    r#"add the command that starts it to {label}, e.g. run = "python3 app.py", or give it an image = "..." or a dockerfile = "Dockerfile""#
                )),
            );
        }
        service
    }

    fn service_port(&mut self, value: &Value<'_>, path: &str) -> PortSpec {
        let hint = || {
            Some(r#"write port = "auto" (Berth picks one per replica) or a number such as port = 8000"#.to_string())
        };
        match value.get_ref() {
            DeValue::String(text) if text == "auto" => PortSpec::Auto,
            DeValue::Integer(_) => match self.port_number(value, path) {
                Some(port) => PortSpec::Fixed(port),
                None => PortSpec::Auto,
            },
            DeValue::String(text) => {
                self.problems.push(
                    value.span(),
                    format!("`{path}` must be \"auto\" or a port number, found \"{text}\""),
                    hint(),
                );
                PortSpec::Auto
            }
            other => {
                self.problems.push(
                    value.span(),
                    format!(
                        "`{path}` must be \"auto\" or a port number, found {}",
                        type_name(other)
                    ),
                    hint(),
                );
                PortSpec::Auto
            }
        }
    }

    fn health(&mut self, service: &str, value: &Value<'_>) -> Option<RawHealth> {
        let label = format!("[service.{service}.health]");
        let table = self.table(value, &format!("service.{service}.health"), &label)?;
        let path = |key: &str| format!("service.{service}.health.{key}");
        let mut health = RawHealth::default();
        let mut has_path = false;
        for (key, value) in table.iter() {
            match key.get_ref().as_ref() {
                "path" => {
                    has_path = true;
                    let text = self.string(value, &path("path"), r#"path = "/health""#);
                    if let Some(text) = text {
                        if text.value.starts_with('/') {
                            health.path = Some(text.value);
                        } else {
                            self.problems.push(
                                text.span,
                                format!("`{}` must start with `/`", path("path")),
                                Some(format!(r#"write path = "/{}""#, text.value)),
                            );
                        }
                    }
                }
                "interval" => {
                    health.interval =
                        self.positive_duration(value, &path("interval"), r#"interval = "30s""#);
                }
                "timeout" => {
                    health.timeout =
                        self.positive_duration(value, &path("timeout"), r#"timeout = "5s""#);
                }
                "healthy_threshold" => {
                    health.healthy_threshold = self
                        .count(
                            value,
                            &path("healthy_threshold"),
                            1,
                            "healthy_threshold = 2",
                        )
                        .map(|count| count.value);
                }
                "unhealthy_threshold" => {
                    health.unhealthy_threshold = self
                        .count(
                            value,
                            &path("unhealthy_threshold"),
                            1,
                            "unhealthy_threshold = 2",
                        )
                        .map(|count| count.value);
                }
                "grace_period" => {
                    health.grace_period =
                        self.duration(value, &path("grace_period"), r#"grace_period = "60s""#);
                }
                other => self.unknown_key(key, other, HEALTH_KEYS, &label),
            }
        }
        if !has_path {
            self.problems.push(
                value.span(),
                format!("{label} has no `path`"),
                Some(r#"add the path to probe, e.g. path = "/health""#.into()),
            );
        }
        Some(health)
    }

    fn balance(&mut self, value: &Value<'_>, path: &str) -> Option<Balance> {
        let text = self.string(value, path, r#"balance = "round_robin""#)?;
        if let Some(balance) = Balance::ALL
            .into_iter()
            .find(|balance| balance.as_str() == text.value)
        {
            return Some(balance);
        }
        let typed = text.value.to_ascii_lowercase();
        let suggestion = match typed.as_str() {
            "least_outstanding_requests"
            | "least-outstanding-requests"
            | "least_conn"
            | "leastconn"
            | "least_connections"
            | "least-connections"
            | "lor" => Some("least_outstanding"),
            "rr" | "roundrobin" => Some("round_robin"),
            _ => closest(&typed, BALANCES),
        };
        let did_you_mean = suggestion
            .map(|balance| format!(r#"did you mean "{balance}"? "#))
            .unwrap_or_default();
        self.problems.push(
            text.span,
            format!("unknown balancing algorithm \"{}\" for `{path}`", text.value),
            Some(format!(
                r#"{did_you_mean}the algorithms are "least_outstanding" (the default: the replica with the fewest requests in flight) and "round_robin""#
            )),
        );
        None
    }

    fn sticky(&mut self, service: &str, value: &Value<'_>) -> Option<RawSticky> {
        let label = format!("[service.{service}.sticky]");
        let example = r#"sticky = { cookie = "PrestaShopSession" }"#;
        let table = self.table(value, &format!("service.{service}.sticky"), example)?;
        let path = |key: &str| format!("service.{service}.sticky.{key}");
        let mut sticky = RawSticky::default();
        let mut has_cookie = false;
        for (key, value) in table.iter() {
            match key.get_ref().as_ref() {
                "cookie" => {
                    has_cookie = true;
                    let Some(cookie) =
                        self.string(value, &path("cookie"), r#"cookie = "PrestaShopSession""#)
                    else {
                        continue;
                    };
                    if units::is_cookie_name(&cookie.value) {
                        sticky.cookie = Some(cookie.value);
                    } else {
                        let message = if cookie.value.is_empty() {
                            format!("`{}` must not be empty", path("cookie"))
                        } else {
                            format!(
                                "invalid cookie name \"{}\" for `{}`",
                                cookie.value,
                                path("cookie")
                            )
                        };
                        self.problems
                            .push(cookie.span, message, Some(units::COOKIE_RULE.into()));
                    }
                }
                "duration" => {
                    sticky.duration =
                        self.positive_duration(value, &path("duration"), r#"duration = "1d""#);
                }
                other => self.unknown_key(key, other, STICKY_KEYS, &label),
            }
        }
        if !has_cookie {
            self.problems.push(
                value.span(),
                format!("{label} has no `cookie`"),
                Some(
                    r#"add the application cookie whose presence starts stickiness, e.g. cookie = "PrestaShopSession""#
                        .into(),
                ),
            );
        }
        Some(sticky)
    }

    fn accessory(&mut self, name: &str, value: &Value<'_>) -> RawAccessory {
        let label = format!("[accessory.{name}]");
        let mut accessory = RawAccessory::default();
        let Some(table) = self.table(value, &format!("accessory.{name}"), &label) else {
            return accessory;
        };
        let path = |key: &str| format!("accessory.{name}.{key}");
        let mut has_engine = false;
        for (key, value) in table.iter() {
            match key.get_ref().as_ref() {
                "engine" => {
                    has_engine = true;
                    accessory.engine = self.engine(value, &path("engine"));
                }
                "database" => {
                    accessory.database = self
                        .string(value, &path("database"), r#"database = "hello""#)
                        .map(|text| text.value);
                }
                "user" => {
                    accessory.user = self
                        .string(value, &path("user"), r#"user = "hello""#)
                        .map(|text| text.value);
                }
                "port" => accessory.port = self.port_number(value, &path("port")),
                "env" => {
                    accessory.env = self
                        .string(value, &path("env"), r#"env = "DATABASE_URL""#)
                        .map(|text| text.value);
                }
                other => self.unknown_key(key, other, ACCESSORY_KEYS, &label),
            }
        }
        if !has_engine {
            self.problems.push(
                value.span(),
                format!("accessory `{name}` has no `engine`"),
                Some(format!(
                    r#"add engine = "postgres", "mysql" or "redis" to {label}"#
                )),
            );
        }
        accessory
    }

    fn engine(&mut self, value: &Value<'_>, path: &str) -> Option<Engine> {
        let text = self.string(value, path, r#"engine = "postgres""#)?;
        match text.value.as_str() {
            "postgres" => return Some(Engine::Postgres),
            "mysql" => return Some(Engine::Mysql),
            "redis" => return Some(Engine::Redis),
            _ => {}
        }
        let hint = match text.value.to_ascii_lowercase().as_str() {
            "mariadb" => r#"MariaDB is engine = "mysql""#.to_string(),
            "postgresql" | "pg" => r#"did you mean "postgres"?"#.to_string(),
            typed => match closest(typed, ENGINES) {
                Some(engine) => format!(r#"did you mean "{engine}"?"#),
                None => r#"the engines are "postgres", "mysql" (MariaDB) and "redis""#.to_string(),
            },
        };
        self.problems.push(
            text.span,
            format!("unknown engine \"{}\" for `{path}`", text.value),
            Some(hint),
        );
        None
    }

    fn volume(&mut self, name: &str, value: &Value<'_>) -> RawVolume {
        let label = format!("[volume.{name}]");
        let mut volume = RawVolume::default();
        let Some(table) = self.table(value, &format!("volume.{name}"), &label) else {
            return volume;
        };
        for (key, value) in table.iter() {
            match key.get_ref().as_ref() {
                "env" => {
                    volume.env = self
                        .string(
                            value,
                            &format!("volume.{name}.env"),
                            r#"env = "UPLOADS_DIR""#,
                        )
                        .map(|text| text.value);
                }
                other => self.unknown_key(key, other, VOLUME_KEYS, &label),
            }
        }
        volume
    }

    fn routes(&mut self, value: &Value<'_>) -> Vec<RawRoute> {
        let DeValue::Array(items) = value.get_ref() else {
            self.problems.push(
                value.span(),
                format!(
                    "`route` must be an array of tables, found {}",
                    type_name(value.get_ref())
                ),
                Some("write each route as its own [[route]] table".into()),
            );
            return Vec::new();
        };
        let mut routes = Vec::new();
        for (index, item) in items.iter().enumerate() {
            let path = |key: &str| format!("route[{}].{key}", index + 1);
            let Some(table) = self.table(item, &format!("route[{}]", index + 1), "[[route]]")
            else {
                continue;
            };
            let mut route = RawRoute {
                span: item.span(),
                host: None,
                path: None,
                service: None,
                headers: Default::default(),
                compress: None,
            };
            for (key, value) in table.iter() {
                match key.get_ref().as_ref() {
                    "host" => {
                        route.host =
                            self.string(value, &path("host"), r#"host = "shop.example.com""#);
                        if let Some(host) = &route.host {
                            if host.value.is_empty() || host.value.contains(['/', ' ']) {
                                self.problems.push(
                                    host.span.clone(),
                                    format!("invalid host \"{}\" for `{}`", host.value, path("host")),
                                    Some(r#"hosts look like "shop.example.com" or "*.example.com"; leave `host` out to match any host"#.into()),
                                );
                                route.host = None;
                            }
                        }
                    }
                    "path" => {
                        route.path = self.string(value, &path("path"), r#"path = "/""#);
                        if let Some(prefix) = &route.path {
                            if !prefix.value.starts_with('/') {
                                self.problems.push(
                                    prefix.span.clone(),
                                    format!("`{}` must start with `/`", path("path")),
                                    Some(format!(r#"write path = "/{}""#, prefix.value)),
                                );
                                route.path = None;
                            }
                        }
                    }
                    "service" => {
                        route.service = self.string(value, &path("service"), r#"service = "web""#);
                    }
                    "headers" => {
                        route.headers = self.headers(value, &path("headers")).unwrap_or_default();
                    }
                    "compress" => {
                        route.compress = self.boolean(value, &path("compress"), "compress = false");
                    }
                    other => self.unknown_key(key, other, ROUTE_KEYS, "[[route]]"),
                }
            }
            if route.service.is_none() && !table.iter().any(|(key, _)| key.get_ref() == "service") {
                self.problems.push(
                    item.span(),
                    "route has no `service`",
                    Some(r#"add the service it sends requests to, e.g. service = "web""#.into()),
                );
            }
            routes.push(route);
        }
        routes
    }

    fn environment(&mut self, name: &str, value: &Value<'_>) -> RawEnvironment {
        let label = format!("[environment.{name}]");
        let mut environment = RawEnvironment::default();
        let Some(table) = self.table(value, &format!("environment.{name}"), &label) else {
            return environment;
        };
        for (key, value) in table.iter() {
            match key.get_ref().as_ref() {
                "env" => environment.env = self.env_map(value, &format!("environment.{name}.env")),
                "service" => {
                    let prefix = format!("environment.{name}.service");
                    for (service, table) in self.named_tables(value, &prefix) {
                        let service_override = self.service_override(name, &service, table);
                        environment.services.insert(service.value, service_override);
                    }
                }
                other => self.unknown_key(key, other, ENVIRONMENT_KEYS, &label),
            }
        }
        environment
    }

    fn service_override(
        &mut self,
        environment: &str,
        service: &Located<String>,
        value: &Value<'_>,
    ) -> RawOverride {
        let prefix = format!("environment.{environment}.service.{}", service.value);
        let label = format!("[{prefix}]");
        let mut service_override = RawOverride {
            name_span: service.span.clone(),
            ..RawOverride::default()
        };
        let Some(table) = self.table(value, &prefix, &label) else {
            return service_override;
        };
        let path = |key: &str| format!("{prefix}.{key}");
        for (key, value) in table.iter() {
            let replicas = &mut service_override.replicas;
            match key.get_ref().as_ref() {
                "replicas" => {
                    replicas.replicas = self.count_entry(key, value, &path("replicas"), 1)
                }
                "min" => replicas.min = self.count_entry(key, value, &path("min"), 0),
                "max" => replicas.max = self.count_entry(key, value, &path("max"), 1),
                "memory" => {
                    service_override.memory =
                        self.size(value, &path("memory"), r#"memory = "512M""#);
                }
                "cpu" => service_override.cpu = self.cpu(value, &path("cpu")),
                "env" => service_override.env = self.env_map(value, &path("env")),
                other if SERVICE_KEYS.contains(&other) => {
                    self.problems.push(
                        key.span(),
                        format!("`{other}` cannot be overridden per environment"),
                        Some(format!(
                            "an environment can override {} of a service; set `{other}` in [service.{}]",
                            list(OVERRIDE_KEYS),
                            service.value
                        )),
                    );
                }
                other => self.unknown_key(key, other, OVERRIDE_KEYS, &label),
            }
        }
        service_override
    }

    // ----- shared shapes ------------------------------------------------------------------

    /// The entries of a table of named tables (`[service.NAME]`...), checking each name.
    fn named_tables<'v, 'i>(
        &mut self,
        value: &'v Value<'i>,
        path: &str,
    ) -> Vec<(Located<String>, &'v Value<'i>)> {
        let example = format!("[{path}.NAME]");
        let Some(table) = self.table(value, path, &example) else {
            return Vec::new();
        };
        let kind = path.rsplit('.').next().unwrap_or(path);
        let mut entries = Vec::new();
        for (key, value) in table.iter() {
            let name = key.get_ref().as_ref();
            if !units::is_valid_name(name) {
                self.problems.push(
                    key.span(),
                    format!("invalid {kind} name `{name}`"),
                    Some(units::NAME_RULE.into()),
                );
            }
            entries.push((
                Located {
                    value: name.to_string(),
                    span: key.span(),
                },
                value,
            ));
        }
        entries
    }

    /// A table of variables: string keys to string values.
    fn env_map(&mut self, value: &Value<'_>, path: &str) -> BTreeMap<String, String> {
        let mut map = BTreeMap::new();
        let Some(table) = self.table(value, path, r#"{ NAME = "value" }"#) else {
            return map;
        };
        for (key, value) in table.iter() {
            let name = key.get_ref().as_ref();
            match value.get_ref() {
                DeValue::String(text) => {
                    map.insert(name.to_string(), text.to_string());
                }
                other => {
                    let written = self.source.get(value.span()).unwrap_or("...");
                    let hint = match other {
                        DeValue::Integer(_) | DeValue::Float(_) | DeValue::Boolean(_) => {
                            format!(r#"variables are strings: write {name} = "{written}""#)
                        }
                        _ => format!(r#"variables are strings, e.g. {name} = "value""#),
                    };
                    self.problems.push(
                        value.span(),
                        format!(
                            "`{path}.{name}` must be a string, found {}",
                            type_name(other)
                        ),
                        Some(hint),
                    );
                }
            }
        }
        map
    }

    /// An array of names (`use`, `volumes`), kept in the order written.
    fn name_list(&mut self, value: &Value<'_>, path: &str, example: &str) -> Vec<Located<String>> {
        let Some(items) = self.array(value, path, example) else {
            return Vec::new();
        };
        items
            .iter()
            .filter_map(|item| self.string(item, path, example))
            .collect()
    }

    // ----- scalars ------------------------------------------------------------------------

    /// Reports that `value` (at `path`) should have been `expected`.
    fn wrong_type(&mut self, value: &Value<'_>, path: &str, expected: &str, example: &str) {
        self.problems.push(
            value.span(),
            format!(
                "`{path}` must be {expected}, found {}",
                type_name(value.get_ref())
            ),
            Some(format!("e.g. {example}")),
        );
    }

    fn table<'v, 'i>(
        &mut self,
        value: &'v Value<'i>,
        path: &str,
        example: &str,
    ) -> Option<&'v DeTable<'i>> {
        match value.get_ref() {
            DeValue::Table(table) => Some(table),
            _ => {
                self.wrong_type(value, path, "a table", example);
                None
            }
        }
    }

    fn array<'v, 'i>(
        &mut self,
        value: &'v Value<'i>,
        path: &str,
        example: &str,
    ) -> Option<&'v [Value<'i>]> {
        match value.get_ref() {
            DeValue::Array(items) => Some(items),
            _ => {
                self.wrong_type(value, path, "an array", example);
                None
            }
        }
    }

    fn string(&mut self, value: &Value<'_>, path: &str, example: &str) -> Option<Located<String>> {
        match value.get_ref() {
            DeValue::String(text) => Some(Located {
                value: text.to_string(),
                span: value.span(),
            }),
            _ => {
                self.wrong_type(value, path, "a string", example);
                None
            }
        }
    }

    fn boolean(&mut self, value: &Value<'_>, path: &str, example: &str) -> Option<bool> {
        match value.get_ref() {
            DeValue::Boolean(boolean) => Some(*boolean),
            DeValue::String(text) if matches!(text.as_ref(), "true" | "false") => {
                self.problems.push(
                    value.span(),
                    format!("`{path}` must be a boolean, found a string"),
                    Some(format!(
                        "write {} = {text}, without quotes",
                        path.rsplit('.').next().unwrap_or(path)
                    )),
                );
                None
            }
            _ => {
                self.wrong_type(value, path, "a boolean", example);
                None
            }
        }
    }

    /// An integer, or `None` after reporting; `example` is used in the hint.
    fn integer(&mut self, value: &Value<'_>, path: &str, example: &str) -> Option<i128> {
        match value.get_ref() {
            DeValue::Integer(integer) => {
                i128::from_str_radix(integer.as_str(), integer.radix()).ok()
            }
            _ => {
                self.wrong_type(value, path, "an integer", example);
                None
            }
        }
    }

    /// An integer of at least `least`.
    fn count(
        &mut self,
        value: &Value<'_>,
        path: &str,
        least: u32,
        example: &str,
    ) -> Option<Located<u32>> {
        let number = self.integer(value, path, example)?;
        match u32::try_from(number) {
            Ok(count) if count >= least => Some(Located {
                value: count,
                span: value.span(),
            }),
            _ if number < i128::from(least) => {
                self.problems.push(
                    value.span(),
                    format!("`{path}` must be at least {least}, found {number}"),
                    Some(format!("e.g. {example}")),
                );
                None
            }
            _ => {
                self.problems.push(
                    value.span(),
                    format!("`{path}` is too large: {number}"),
                    Some(format!("e.g. {example}")),
                );
                None
            }
        }
    }

    /// A replica count (`replicas`, `min`, `max`) whose span covers `key = value`.
    fn count_entry(
        &mut self,
        key: &Key<'_>,
        value: &Value<'_>,
        path: &str,
        least: u32,
    ) -> Option<Located<u32>> {
        let name = path.rsplit('.').next().unwrap_or(path);
        let example = format!("{name} = 2");
        self.count(value, path, least, &example)
            .map(|count| Located {
                value: count.value,
                span: entry_span(key, value),
            })
    }

    fn port_number(&mut self, value: &Value<'_>, path: &str) -> Option<u16> {
        let number = self.integer(value, path, "port = 8000")?;
        match u16::try_from(number) {
            Ok(port) if port > 0 => Some(port),
            _ => {
                self.problems.push(
                    value.span(),
                    format!("`{path}` must be a port number from 1 to 65535, found {number}"),
                    Some("e.g. port = 8000".into()),
                );
                None
            }
        }
    }

    fn duration(
        &mut self,
        value: &Value<'_>,
        path: &str,
        example: &str,
    ) -> Option<std::time::Duration> {
        let DeValue::String(text) = value.get_ref() else {
            let hint = match value.get_ref() {
                DeValue::Integer(_) | DeValue::Float(_) => format!(
                    "write a string with a unit, e.g. {example}; {}",
                    units::DURATION_EXAMPLES
                ),
                _ => format!("e.g. {example}"),
            };
            self.problems.push(
                value.span(),
                format!(
                    "`{path}` must be a duration string, found {}",
                    type_name(value.get_ref())
                ),
                Some(hint),
            );
            return None;
        };
        let duration = units::parse_duration(text);
        if duration.is_none() {
            self.problems.push(
                value.span(),
                format!("invalid duration \"{text}\" for `{path}`"),
                Some(units::DURATION_EXAMPLES.into()),
            );
        }
        duration
    }

    fn positive_duration(
        &mut self,
        value: &Value<'_>,
        path: &str,
        example: &str,
    ) -> Option<std::time::Duration> {
        let duration = self.duration(value, path, example)?;
        if duration.is_zero() {
            self.problems.push(
                value.span(),
                format!("`{path}` must be longer than zero"),
                Some(format!("e.g. {example}")),
            );
            return None;
        }
        Some(duration)
    }

    fn size(&mut self, value: &Value<'_>, path: &str, example: &str) -> Option<u64> {
        let size = match value.get_ref() {
            DeValue::String(text) => match units::parse_size(text) {
                Some(size) => size,
                None => {
                    self.problems.push(
                        value.span(),
                        format!("invalid size \"{text}\" for `{path}`"),
                        Some(units::SIZE_EXAMPLES.into()),
                    );
                    return None;
                }
            },
            DeValue::Integer(_) => {
                let number = self.integer(value, path, example)?;
                match u64::try_from(number) {
                    Ok(size) => size,
                    Err(_) => {
                        self.problems.push(
                            value.span(),
                            format!("invalid size {number} for `{path}`"),
                            Some(units::SIZE_EXAMPLES.into()),
                        );
                        return None;
                    }
                }
            }
            _ => {
                self.problems.push(
                    value.span(),
                    format!(
                        "`{path}` must be a size, found {}",
                        type_name(value.get_ref())
                    ),
                    Some(format!("e.g. {example}; {}", units::SIZE_EXAMPLES)),
                );
                return None;
            }
        };
        if size == 0 {
            self.problems.push(
                value.span(),
                format!("`{path}` must be larger than zero"),
                Some(format!("e.g. {example}")),
            );
            return None;
        }
        Some(size)
    }

    fn cpu(&mut self, value: &Value<'_>, path: &str) -> Option<f64> {
        let cores = match value.get_ref() {
            DeValue::Integer(integer) => i128::from_str_radix(integer.as_str(), integer.radix())
                .ok()
                .map(|n| n as f64),
            DeValue::Float(float) => float.as_str().replace('_', "").parse::<f64>().ok(),
            _ => None,
        };
        match cores {
            Some(cores) if cores.is_finite() && cores > 0.0 => Some(cores),
            _ => {
                let written = self.source.get(value.span()).unwrap_or("...");
                self.problems.push(
                    value.span(),
                    format!("`{path}` must be a positive number of cores, found {written}"),
                    Some("e.g. cpu = 0.5 (half a core) or cpu = 2".into()),
                );
                None
            }
        }
    }

    fn address(
        &mut self,
        value: &Value<'_>,
        path: &str,
        example: &str,
    ) -> Option<std::net::SocketAddr> {
        let text = self.string(value, path, example)?;
        let address = units::parse_socket_addr(&text.value);
        if address.is_none() {
            self.problems.push(
                text.span,
                format!("invalid address \"{}\" for `{path}`", text.value),
                Some(units::ADDRESS_EXAMPLES.into()),
            );
        }
        address
    }

    // ----- keys ---------------------------------------------------------------------------

    fn unknown_key(&mut self, key: &Key<'_>, typed: &str, valid: &[&str], table: &str) {
        let hint = match closest(typed, valid) {
            Some(suggestion) => format!("did you mean `{suggestion}`?"),
            None => format!("the keys of {table} are {}", list(valid)),
        };
        self.problems.push(
            key.span(),
            format!("unknown key `{typed}` in {table}"),
            Some(hint),
        );
    }
}
