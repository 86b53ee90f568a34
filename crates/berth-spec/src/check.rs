//! The checks that need the whole spec: references between services, accessories, volumes and
//! routes, replica bounds (also after each environment's overrides are merged), clashing injected
//! variables and the `--env` name. See "What `berth validate` checks" in `docs/berth-toml.md`.

use std::collections::BTreeMap;
use std::ops::Range;

use crate::raw::{Located, RawEnvironment, RawService, RawSpec, ReplicaFields};
use crate::report::Problems;
use crate::types::{PortSpec, ReplicaCount};
use crate::units::{closest, list};

/// Why a set of replica fields does not give a replica count.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ReplicaError {
    /// `replicas` together with `min` or `max`; the span is that of `min` or `max`.
    FixedAndBounds(Range<usize>),
    /// `min` above `max`.
    MinAboveMax { min: u32, max: u32 },
}

/// The replica count given by `fields`: `replicas = n` is `n..=n`; `min` alone is `min..=min`
/// (at least 1); `max` alone is `1..=max`; nothing is `1..=1`.
pub(crate) fn replica_count(fields: &ReplicaFields) -> Result<ReplicaCount, ReplicaError> {
    let value = |field: &Option<Located<u32>>| field.as_ref().map(|located| located.value);
    match (
        value(&fields.replicas),
        value(&fields.min),
        value(&fields.max),
    ) {
        (Some(_), Some(_), _) | (Some(_), None, Some(_)) => {
            let bound = fields.min.as_ref().or(fields.max.as_ref());
            Err(ReplicaError::FixedAndBounds(
                bound.map_or(0..0, |bound| bound.span.clone()),
            ))
        }
        (Some(count), None, None) => Ok(ReplicaCount {
            min: count,
            max: count,
        }),
        (None, Some(min), Some(max)) if min > max => Err(ReplicaError::MinAboveMax { min, max }),
        (None, Some(min), Some(max)) => Ok(ReplicaCount { min, max }),
        (None, Some(min), None) => Ok(ReplicaCount {
            min,
            max: min.max(1),
        }),
        (None, None, Some(max)) => Ok(ReplicaCount { min: 1, max }),
        (None, None, None) => Ok(ReplicaCount { min: 1, max: 1 }),
    }
}

/// The fields of `base` with an environment's `over` applied: its `replicas` replaces the count;
/// its `min` or `max` replaces that bound (a fixed base count giving both bounds).
pub(crate) fn merge_replicas(base: &ReplicaFields, over: &ReplicaFields) -> ReplicaFields {
    if over.replicas.is_some() {
        return ReplicaFields {
            replicas: over.replicas.clone(),
            min: None,
            max: None,
        };
    }
    if over.min.is_none() && over.max.is_none() {
        return base.clone();
    }
    let (base_min, base_max) = match &base.replicas {
        Some(count) => (Some(count.clone()), Some(count.clone())),
        None => (base.min.clone(), base.max.clone()),
    };
    ReplicaFields {
        replicas: None,
        min: over.min.clone().or(base_min),
        max: over.max.clone().or(base_max),
    }
}

/// Runs every whole-spec check on `raw`, and checks that `environment` is declared.
pub(crate) fn check(
    source: &str,
    raw: &RawSpec,
    environment: Option<&str>,
    problems: &mut Problems,
) {
    let mut checker = Checker {
        source,
        raw,
        problems,
    };
    for (name, service) in &raw.services {
        checker.service(name, service);
    }
    checker.routes();
    crate::walk::check_backup(raw, checker.problems);
    crate::walk::check_alarms(raw, checker.problems);
    for (name, declared) in &raw.environments {
        checker.environment(name, declared);
    }
    if let Some(wanted) = environment {
        checker.selected_environment(wanted);
    }
}

struct Checker<'a> {
    source: &'a str,
    raw: &'a RawSpec,
    problems: &'a mut Problems,
}

impl Checker<'_> {
    fn service(&mut self, name: &str, service: &RawService) {
        let label = format!("[service.{name}]");
        match replica_count(&service.replicas) {
            Ok(_) => {}
            Err(ReplicaError::FixedAndBounds(span)) => self.problems.push(
                span,
                format!("`replicas` together with `min`/`max` in {label}"),
                Some(
                    "use either a fixed count (replicas = N) or autoscaling bounds (min/max), not both"
                        .into(),
                ),
            ),
            Err(ReplicaError::MinAboveMax { min, max }) => {
                let span = service.replicas.min.as_ref().map_or(0..0, |min| min.span.clone());
                self.problems.push(
                    span,
                    format!("`min` ({min}) is greater than `max` ({max}) in {label}"),
                    Some("lower `min` or raise `max`".into()),
                );
            }
        }

        if let Some(autoscale) = &service.autoscale {
            let bounded = |fields: &ReplicaFields| {
                replica_count(fields).is_ok_and(|count| count.min < count.max)
            };
            let anywhere = bounded(&service.replicas)
                || self.raw.environments.values().any(|environment| {
                    environment.services.get(name).is_some_and(|over| {
                        bounded(&merge_replicas(&service.replicas, &over.replicas))
                    })
                });
            if !anywhere {
                self.problems.push(
                    autoscale.span.clone(),
                    format!(
                        "{label} has a fixed replica count, so `[service.{name}.autoscale]` would never scale it"
                    ),
                    Some("give bounds instead of a count, e.g. min = 2 and max = 6".into()),
                );
            }
        }

        if let Some(health) = &service.health {
            if service.port == PortSpec::None {
                self.problems.push(
                    health.span.clone(),
                    format!("health check on service `{name}`, which has no port"),
                    Some(format!(
                        r#"a health check needs a port: add port = "auto" to {label}, or remove its health check"#
                    )),
                );
            }
        }

        if let Some(sticky) = &service.sticky {
            if service.port == PortSpec::None {
                self.problems.push(
                    sticky.span.clone(),
                    format!("sticky sessions on service `{name}`, which has no port"),
                    Some(format!(
                        r#"stickiness pins requests to a replica, so it needs a port: add port = "auto" to {label}, or remove its sticky table"#
                    )),
                );
            }
        }

        let accessory_names: Vec<&str> = self.raw.accessories.keys().map(String::as_str).collect();
        for dependency in &service.depends_on {
            if !self.raw.accessories.contains_key(&dependency.value) {
                self.unknown_reference(dependency, ("accessory", "accessories"), &accessory_names);
            }
        }
        let mut injected: BTreeMap<String, &str> = BTreeMap::new();
        let bridged = service.container.is_container()
            && service
                .container
                .network
                .as_ref()
                .is_none_or(|n| n.value == crate::types::ContainerNetwork::Bridge);
        for used in &service.uses {
            let Some(accessory) = self.raw.accessories.get(&used.value) else {
                self.unknown_reference(used, ("accessory", "accessories"), &accessory_names);
                continue;
            };
            if bridged {
                self.problems.push(
                    used.span.clone(),
                    format!(
                        "container service `{name}` on a bridge network cannot reach accessory `{}`, which listens on the host's loopback",
                        used.value
                    ),
                    Some(format!(r#"add network = "host" to {label}"#)),
                );
            }
            let variable = match (&accessory.env, accessory.engine) {
                (Some(variable), _) => variable.clone(),
                (None, Some(engine)) => engine.default_env().to_string(),
                (None, None) => continue,
            };
            match injected.get(&variable) {
                Some(&first) if first != used.value => self.problems.push(
                    used.span.clone(),
                    format!(
                        "accessories `{first}` and `{}` both inject `{variable}` into service `{name}`",
                        used.value
                    ),
                    Some(format!(
                        r#"give one of them another variable, e.g. env = "{}_URL" in [accessory.{}]"#,
                        env_prefix(&used.value),
                        used.value
                    )),
                ),
                Some(_) => {}
                None => {
                    injected.insert(variable, &used.value);
                }
            }
        }

        let volume_names: Vec<&str> = self.raw.volumes.keys().map(String::as_str).collect();
        let mut injected: BTreeMap<String, &str> = BTreeMap::new();
        for used in &service.volumes {
            let Some(volume) = self.raw.volumes.get(&used.value) else {
                self.unknown_reference(used, ("volume", "volumes"), &volume_names);
                continue;
            };
            let variable = volume
                .env
                .clone()
                .unwrap_or_else(|| default_volume_env(&used.value));
            match injected.get(&variable) {
                Some(&first) if first != used.value => self.problems.push(
                    used.span.clone(),
                    format!(
                        "volumes `{first}` and `{}` both set `{variable}` for service `{name}`",
                        used.value
                    ),
                    Some(format!(
                        r#"give one of them another variable, e.g. env = "{}" in [volume.{}]"#,
                        default_volume_env(&used.value),
                        used.value
                    )),
                ),
                Some(_) => {}
                None => {
                    injected.insert(variable, &used.value);
                }
            }
        }
    }

    /// Reports `reference`, a name of an undeclared `kind` (plural `kinds`).
    fn unknown_reference(
        &mut self,
        reference: &Located<String>,
        (kind, kinds): (&str, &str),
        declared: &[&str],
    ) {
        self.problems.push(
            reference.span.clone(),
            format!("unknown {kind} `{}`", reference.value),
            Some(names_hint(&reference.value, declared, kind, kinds)),
        );
    }

    fn routes(&mut self) {
        let service_names: Vec<&str> = self.raw.services.keys().map(String::as_str).collect();
        // (host, path) → (service, where the first route for it starts)
        let mut seen: BTreeMap<(Option<String>, String), (&str, usize)> = BTreeMap::new();
        for route in &self.raw.routes {
            let Some(target) = &route.service else {
                continue;
            };
            match self.raw.services.get(&target.value) {
                None => {
                    self.unknown_reference(target, ("service", "services"), &service_names);
                }
                Some(service) if service.port == PortSpec::None => self.problems.push(
                    target.span.clone(),
                    format!("route to service `{}`, which has no port", target.value),
                    Some(format!(
                        r#"only services with a port can receive requests: add port = "auto" to [service.{}] or route to another service"#,
                        target.value
                    )),
                ),
                Some(_) => {}
            }
            let host = route
                .host
                .as_ref()
                .map(|host| host.value.to_ascii_lowercase());
            let path = route
                .path
                .as_ref()
                .map_or_else(|| "/".to_string(), |path| path.value.clone());
            let key = (host.clone(), path.clone());
            match seen.get(&key) {
                Some(&(first, first_start)) if first != target.value => {
                    let span = route
                        .path
                        .as_ref()
                        .or(route.host.as_ref())
                        .map_or_else(|| route.span.clone(), |located| located.span.clone());
                    let host = host.map_or("any host".to_string(), |host| format!("host `{host}`"));
                    self.problems.push(
                        span,
                        format!(
                            "{host} and path `{path}` are already routed to `{first}`, not `{}`",
                            target.value
                        ),
                        Some(format!(
                            "the other route is at line {}; give the routes different hosts or paths, or remove one",
                            line_of(self.source, first_start)
                        )),
                    );
                }
                Some(_) => {}
                None => {
                    seen.insert(key, (&target.value, route.span.start));
                }
            }
        }
    }

    fn environment(&mut self, environment: &str, declared: &RawEnvironment) {
        let service_names: Vec<&str> = self.raw.services.keys().map(String::as_str).collect();
        for (name, service_override) in &declared.services {
            let Some(service) = self.raw.services.get(name) else {
                let hint = names_hint(name, &service_names, "service", "services");
                self.problems.push(
                    service_override.name_span.clone(),
                    format!("environment `{environment}` overrides unknown service `{name}`"),
                    Some(hint),
                );
                continue;
            };
            let over = &service_override.replicas;
            if let Err(ReplicaError::FixedAndBounds(span)) = replica_count(over) {
                self.problems.push(
                    span,
                    format!(
                        "`replicas` together with `min`/`max` in [environment.{environment}.service.{name}]"
                    ),
                    Some(
                        "use either a fixed count (replicas = N) or autoscaling bounds (min/max), not both"
                            .into(),
                    ),
                );
                continue;
            }
            if replica_count(&service.replicas).is_err() {
                // The base is wrong already, and reported.
                continue;
            }
            let merged = merge_replicas(&service.replicas, over);
            if let Err(ReplicaError::MinAboveMax { min, max }) = replica_count(&merged) {
                let span = over
                    .min
                    .as_ref()
                    .or(over.max.as_ref())
                    .map_or(0..0, |bound| bound.span.clone());
                self.problems.push(
                    span,
                    format!(
                        "`min` ({min}) is greater than `max` ({max}) for service `{name}` in environment `{environment}`"
                    ),
                    Some(format!(
                        "the override is merged over [service.{name}], giving min = {min} and max = {max}; lower `min` or raise `max`"
                    )),
                );
            }
        }
    }

    fn selected_environment(&mut self, wanted: &str) {
        if wanted == "default" || self.raw.environments.contains_key(wanted) {
            return;
        }
        let declared: Vec<&str> = self.raw.environments.keys().map(String::as_str).collect();
        let hint = if declared.is_empty() {
            format!("no environment is declared; add [environment.{wanted}] or leave out --env")
        } else {
            let suggestion = closest(wanted, &declared)
                .map(|suggestion| format!("did you mean `{suggestion}`? "))
                .unwrap_or_default();
            format!(
                "{suggestion}the declared environments are {} (and `default`, without overrides)",
                list(&declared)
            )
        };
        self.problems
            .push(0..0, format!("unknown environment `{wanted}`"), Some(hint));
    }
}

/// "did you mean `x`?" when `typed` is close to one of the `declared` names, else which names
/// are declared.
fn names_hint(typed: &str, declared: &[&str], kind: &str, kinds: &str) -> String {
    if let Some(suggestion) = closest(typed, declared) {
        return format!("did you mean `{suggestion}`?");
    }
    match declared {
        [] => format!("no {kind} is declared; declare it as [{kind}.{typed}]"),
        [only] => format!("the only declared {kind} is `{only}`"),
        _ => format!("the declared {kinds} are {}", list(declared)),
    }
}

/// `NAME` upper-cased with `-` as `_`: the stem of the variables Berth names after a resource.
pub(crate) fn env_prefix(name: &str) -> String {
    name.to_ascii_uppercase().replace('-', "_")
}

/// The variable carrying a volume's path when its `env` is not set: `NAME_DIR`.
pub(crate) fn default_volume_env(volume: &str) -> String {
    format!("{}_DIR", env_prefix(volume))
}

/// The 1-based line of byte `offset` in `source`.
fn line_of(source: &str, offset: usize) -> usize {
    source.as_bytes()[..offset.min(source.len())]
        .iter()
        .filter(|&&byte| byte == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn located(value: u32) -> Option<Located<u32>> {
        Some(Located { value, span: 0..1 })
    }

    fn fields(replicas: Option<u32>, min: Option<u32>, max: Option<u32>) -> ReplicaFields {
        ReplicaFields {
            replicas: replicas.and_then(located),
            min: min.and_then(located),
            max: max.and_then(located),
        }
    }

    #[test]
    fn replica_counts() {
        let count = |min, max| Ok(ReplicaCount { min, max });
        assert_eq!(replica_count(&fields(None, None, None)), count(1, 1));
        assert_eq!(replica_count(&fields(Some(3), None, None)), count(3, 3));
        assert_eq!(replica_count(&fields(None, Some(2), None)), count(2, 2));
        assert_eq!(replica_count(&fields(None, Some(0), None)), count(0, 1));
        assert_eq!(replica_count(&fields(None, None, Some(4))), count(1, 4));
        assert_eq!(replica_count(&fields(None, Some(2), Some(4))), count(2, 4));
        assert_eq!(
            replica_count(&fields(None, Some(5), Some(4))),
            Err(ReplicaError::MinAboveMax { min: 5, max: 4 })
        );
        assert!(matches!(
            replica_count(&fields(Some(2), None, Some(4))),
            Err(ReplicaError::FixedAndBounds(_))
        ));
    }

    #[test]
    fn merging_overrides() {
        let merged = |base, over| replica_count(&merge_replicas(&base, &over));
        let count = |min, max| Ok(ReplicaCount { min, max });
        // replicas replaces everything
        assert_eq!(
            merged(fields(None, Some(2), Some(4)), fields(Some(6), None, None)),
            count(6, 6)
        );
        // a bound replaces that bound of a fixed count
        assert_eq!(
            merged(fields(Some(2), None, None), fields(None, None, Some(6))),
            count(2, 6)
        );
        // min alone over nothing
        assert_eq!(
            merged(fields(None, None, None), fields(None, Some(3), None)),
            count(3, 3)
        );
        // min above the base's max
        assert_eq!(
            merged(fields(None, Some(2), Some(4)), fields(None, Some(5), None)),
            Err(ReplicaError::MinAboveMax { min: 5, max: 4 })
        );
        // no replica override keeps the base
        assert_eq!(
            merged(fields(None, Some(2), Some(4)), fields(None, None, None)),
            count(2, 4)
        );
    }

    #[test]
    fn variable_names() {
        assert_eq!(default_volume_env("user-uploads"), "USER_UPLOADS_DIR");
        assert_eq!(line_of("a\nb\nc", 4), 3);
    }
}
