//! Builds the effective [`Spec`] from a [`RawSpec`] that passed every check: applies the defaults
//! of `docs/berth-toml.md`, resolves paths, and merges the selected environment's overrides.
//!
//! Variables are merged from the least to the most specific: the stack's `[env]`, the
//! environment's `env`, the service's `env`, then the environment's `env` for that service.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use crate::check::{default_volume_env, merge_replicas, replica_count};
use crate::raw::{RawEnvironment, RawHealth, RawSpec, RawSticky};
use crate::types::PortSpec;
use crate::types::{
    AccessorySpec, EdgeSpec, HealthSpec, ReplicaCount, RouteSpec, ServiceSpec, Spec, StackSpec,
    StickySpec, VolumeSpec,
};

/// Default `stack.keep_releases`.
pub(crate) const DEFAULT_KEEP_RELEASES: u32 = 5;
/// Default `stop_timeout`.
pub(crate) const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Default health `interval`.
pub(crate) const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(30);
/// Default health `timeout`.
pub(crate) const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(5);
/// Default health `healthy_threshold` and `unhealthy_threshold`.
pub(crate) const DEFAULT_HEALTH_THRESHOLD: u32 = 2;
/// Default health `grace_period`.
pub(crate) const DEFAULT_HEALTH_GRACE: Duration = Duration::from_secs(60);

/// The effective spec of `raw` for `environment` (`None` or `"default"`: no overrides), read from
/// the file at `path`. `raw` must have passed `check` with no problem.
pub(crate) fn build(raw: &RawSpec, path: &Path, environment: Option<&str>) -> Spec {
    let folder = spec_folder(path);
    let absolute_path = match path.file_name() {
        Some(file_name) => folder.join(file_name),
        None => folder.clone(),
    };
    let environment = environment.unwrap_or("default");
    let empty = RawEnvironment::default();
    let overrides = raw.environments.get(environment).unwrap_or(&empty);

    let mut stack_env = raw.env.clone();
    stack_env.extend(overrides.env.clone());

    let services = raw
        .services
        .iter()
        .map(|(name, service)| {
            let service_override = overrides.services.get(name);
            let replicas = match service_override {
                Some(over) => merge_replicas(&service.replicas, &over.replicas),
                None => service.replicas.clone(),
            };
            let mut env = stack_env.clone();
            env.extend(service.env.clone());
            if let Some(over) = service_override {
                env.extend(over.env.clone());
            }
            let source = service.source.as_deref().unwrap_or(".");
            let spec = ServiceSpec {
                name: name.clone(),
                run: service.run.clone().unwrap_or_default(),
                build: service.build.clone(),
                source: normalize(&folder.join(source)),
                port: service.port,
                replicas: replica_count(&replicas).unwrap_or(ReplicaCount { min: 1, max: 1 }),
                stop_timeout: service.stop_timeout.unwrap_or(DEFAULT_STOP_TIMEOUT),
                env,
                uses: service.uses.iter().map(|used| used.value.clone()).collect(),
                depends_on: service
                    .depends_on
                    .iter()
                    .map(|dependency| dependency.value.clone())
                    .collect(),
                volumes: service
                    .volumes
                    .iter()
                    .map(|used| used.value.clone())
                    .collect(),
                health: service
                    .health
                    .as_ref()
                    .map(|health| health_spec(&health.value)),
                memory: service_override
                    .and_then(|over| over.memory)
                    .or(service.memory),
                cpu: service_override.and_then(|over| over.cpu).or(service.cpu),
                balance: service.balance.unwrap_or_default(),
                deregistration_delay: service
                    .deregistration_delay
                    .unwrap_or(ServiceSpec::DEFAULT_DEREGISTRATION_DELAY),
                sticky: service
                    .sticky
                    .as_ref()
                    .map(|sticky| sticky_spec(&sticky.value)),
                deploy: service
                    .deploy
                    .as_ref()
                    .map(|deploy| deploy.value.clone())
                    .unwrap_or_default(),
                secrets: service.secrets.iter().map(|s| s.value.clone()).collect(),
                cron: service.cron.clone(),
                metrics: service.metrics.clone(),
                autoscale: replica_count(&replicas)
                    .ok()
                    .filter(|count| count.min < count.max)
                    .map(|_| {
                        service
                            .autoscale
                            .as_ref()
                            .map(|autoscale| autoscale.value.clone())
                            .unwrap_or_default()
                    }),
                container: container_spec(&service.container),
            };
            (name.clone(), spec)
        })
        .collect();

    let accessories = raw
        .accessories
        .iter()
        .filter_map(|(name, accessory)| {
            let engine = accessory.engine?;
            let spec = AccessorySpec {
                name: name.clone(),
                engine,
                database: accessory.database.clone().unwrap_or_else(|| name.clone()),
                user: accessory.user.clone().unwrap_or_else(|| name.clone()),
                port: accessory.port,
                env: accessory
                    .env
                    .clone()
                    .unwrap_or_else(|| engine.default_env().to_string()),
            };
            Some((name.clone(), spec))
        })
        .collect();

    let volumes = raw
        .volumes
        .iter()
        .map(|(name, volume)| {
            let spec = VolumeSpec {
                name: name.clone(),
                env: volume
                    .env
                    .clone()
                    .unwrap_or_else(|| default_volume_env(name)),
            };
            (name.clone(), spec)
        })
        .collect();

    let routes = raw
        .routes
        .iter()
        .filter_map(|route| {
            Some(RouteSpec {
                host: route.host.as_ref().map(|host| host.value.clone()),
                path: route
                    .path
                    .as_ref()
                    .map_or_else(|| "/".to_string(), |path| path.value.clone()),
                service: route.service.as_ref()?.value.clone(),
                headers: route.headers.clone(),
                compress: route.compress,
            })
        })
        .collect();

    let stack_name = match &raw.stack_name {
        Some(name) => name.value.clone(),
        None => folder.file_name().map_or_else(
            || "stack".to_string(),
            |name| name.to_string_lossy().into_owned(),
        ),
    };

    Spec {
        path: absolute_path,
        environment: environment.to_string(),
        stack: StackSpec {
            name: stack_name,
            keep_releases: raw.keep_releases.unwrap_or(DEFAULT_KEEP_RELEASES),
        },
        edge: EdgeSpec {
            listen: raw
                .listen
                .clone()
                .unwrap_or_else(|| vec![EdgeSpec::DEFAULT_LISTEN]),
            admin: raw.admin.unwrap_or(EdgeSpec::DEFAULT_ADMIN),
            max_body: raw.max_body.unwrap_or(EdgeSpec::DEFAULT_MAX_BODY),
            max_header: raw.max_header.unwrap_or(EdgeSpec::DEFAULT_MAX_HEADER),
            connect_timeout: raw
                .connect_timeout
                .unwrap_or(EdgeSpec::DEFAULT_CONNECT_TIMEOUT),
            header_timeout: raw
                .header_timeout
                .unwrap_or(EdgeSpec::DEFAULT_HEADER_TIMEOUT),
            idle_timeout: raw.idle_timeout.unwrap_or(EdgeSpec::DEFAULT_IDLE_TIMEOUT),
            request_timeout: raw
                .request_timeout
                .unwrap_or(EdgeSpec::DEFAULT_REQUEST_TIMEOUT),
            access_log: raw.access_log.unwrap_or(EdgeSpec::DEFAULT_ACCESS_LOG),
            trusted_proxies: raw.trusted_proxies.clone().unwrap_or_default(),
            rate_limits: {
                let global = match raw.global_rate_limit {
                    None => Some(EdgeSpec::default_rate_limit()),
                    Some(None) => None,
                    Some(Some((count, period))) => Some(crate::types::RateLimitSpec {
                        path: "/".into(),
                        interval: period / count,
                        burst: count,
                    }),
                };
                global
                    .into_iter()
                    .chain(raw.rate_limits.iter().cloned())
                    .collect()
            },
            limit_exempt: raw
                .limit_exempt
                .clone()
                .unwrap_or_else(EdgeSpec::default_limit_exempt),
            max_connections_per_ip: raw
                .max_connections_per_ip
                .unwrap_or(EdgeSpec::DEFAULT_MAX_CONNECTIONS_PER_IP),
            allow: raw.allow.clone(),
            response_headers: {
                let mut headers: BTreeMap<String, String> =
                    EdgeSpec::default_response_headers().into_iter().collect();
                for (name, value) in raw.response_headers.iter().flatten() {
                    headers.insert(name.clone(), value.clone());
                }
                headers.into_iter().filter(|(_, v)| !v.is_empty()).collect()
            },
            hide_server: raw.hide_server.unwrap_or(false),
            workers: raw.workers.flatten(),
            pin_workers: raw.pin_workers.unwrap_or(false),
            compress: {
                let defaults = crate::compress::CompressSpec::default();
                crate::compress::CompressSpec {
                    enabled: raw.compress.enabled.unwrap_or(defaults.enabled),
                    min_size: raw.compress.min_size.unwrap_or(defaults.min_size),
                    types: raw.compress.types.clone().unwrap_or(defaults.types),
                    algorithms: raw
                        .compress
                        .algorithms
                        .clone()
                        .unwrap_or(defaults.algorithms),
                }
            },
            maintenance_allow: raw
                .maintenance_allow
                .clone()
                .unwrap_or_else(EdgeSpec::default_limit_exempt),
            waf: raw.waf.clone().unwrap_or_default(),
            cache: raw.cache.clone(),
        },
        tls: crate::tls::build(raw, &folder),
        containers: crate::types::ContainersSpec {
            socket: raw.container_socket.as_ref().map(PathBuf::from),
        },
        env: stack_env,
        services,
        accessories,
        volumes,
        routes,
        environments: raw.environments.keys().cloned().collect(),
        backup: raw
            .backup
            .as_ref()
            .map(|backup| backup.value.clone())
            .unwrap_or_default(),
        alarms: alarms(raw),
        notify: raw
            .notify
            .iter()
            .map(|(name, target)| (name.clone(), target.value.clone()))
            .collect(),
    }
}

/// The default alarms (unless switched off), then the written ones.
fn alarms(raw: &RawSpec) -> Vec<crate::alarm::AlarmSpec> {
    let mut alarms = Vec::new();
    if raw.alarms_table.defaults.unwrap_or(true) {
        let notify: Vec<String> = raw
            .alarms_table
            .notify
            .iter()
            .flatten()
            .map(|name| name.value.clone())
            .collect();
        for (name, service) in &raw.services {
            let takes_traffic = !matches!(service.port, PortSpec::None);
            for mut alarm in crate::alarm::default_alarms(name, takes_traffic) {
                alarm.notify = notify.clone();
                alarms.push(alarm);
            }
        }
    }
    alarms.extend(raw.alarms.iter().map(|alarm| alarm.spec.clone()));
    alarms
}

fn health_spec(health: &RawHealth) -> HealthSpec {
    HealthSpec {
        path: health.path.clone().unwrap_or_else(|| "/".to_string()),
        interval: health.interval.unwrap_or(DEFAULT_HEALTH_INTERVAL),
        timeout: health.timeout.unwrap_or(DEFAULT_HEALTH_TIMEOUT),
        healthy_threshold: health.healthy_threshold.unwrap_or(DEFAULT_HEALTH_THRESHOLD),
        unhealthy_threshold: health
            .unhealthy_threshold
            .unwrap_or(DEFAULT_HEALTH_THRESHOLD),
        grace_period: health.grace_period.unwrap_or(DEFAULT_HEALTH_GRACE),
    }
}

fn sticky_spec(sticky: &RawSticky) -> StickySpec {
    StickySpec {
        cookie: sticky.cookie.clone().unwrap_or_default(),
        duration: sticky.duration.unwrap_or(StickySpec::DEFAULT_DURATION),
    }
}

/// The absolute folder holding the spec file: canonical when it exists.
pub(crate) fn spec_folder(path: &Path) -> PathBuf {
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    if let Ok(canonical) = folder.canonicalize() {
        return canonical;
    }
    let absolute = std::path::absolute(folder).unwrap_or_else(|_| folder.to_path_buf());
    normalize(&absolute)
}

/// Removes `.` components and resolves `..` lexically (the path need not exist).
fn normalize(path: &Path) -> PathBuf {
    let mut normalized = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if normalized.file_name().is_some() {
                    normalized.pop();
                } else if !normalized.has_root() {
                    normalized.push(component);
                }
            }
            other => normalized.push(other),
        }
    }
    if normalized.as_os_str().is_empty() {
        normalized.push(".");
    }
    normalized
}

/// The container of a service, when it has `image` or `dockerfile` (checked: not both).
fn container_spec(raw: &crate::raw::RawContainer) -> Option<crate::types::ContainerSpec> {
    use crate::types::{ContainerSpec, ImageSource};
    let image = match (&raw.image, &raw.dockerfile) {
        (Some(image), _) => ImageSource::Pull {
            reference: image.value.clone(),
        },
        (None, Some(dockerfile)) => ImageSource::Build {
            dockerfile: dockerfile.value.clone(),
            target: raw.target.as_ref().map(|t| t.value.clone()),
        },
        (None, None) => return None,
    };
    Some(ContainerSpec {
        image,
        network: raw.network.as_ref().map(|n| n.value).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_lexically() {
        assert_eq!(normalize(Path::new("/a/b/./c")), PathBuf::from("/a/b/c"));
        assert_eq!(normalize(Path::new("/a/b/../c")), PathBuf::from("/a/c"));
        assert_eq!(normalize(Path::new("/a/.")), PathBuf::from("/a"));
        assert_eq!(normalize(Path::new("/..")), PathBuf::from("/"));
    }

    #[test]
    fn spec_folder_is_absolute_even_when_missing() {
        let folder = spec_folder(Path::new("no/such/dir/berth.toml"));
        assert!(folder.is_absolute());
        assert!(folder.ends_with("no/such/dir"));
        assert!(spec_folder(Path::new("berth.toml")).is_absolute());
    }
}
