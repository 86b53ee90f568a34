//! `[service.NAME.autoscale]`: the targets (`cpu`, `requests_per_replica`, each a number or
//! `false`), `tolerance`, `interval`, the cooldowns and the stabilization window.

use super::{DeValue, Value, Walker};
use crate::autoscale::AutoscaleSpec;

const AUTOSCALE_KEYS: &[&str] = &[
    "cpu",
    "requests_per_replica",
    "tolerance",
    "interval",
    "scale_out_cooldown",
    "scale_in_cooldown",
    "stabilization",
];

impl Walker<'_> {
    pub(super) fn autoscale(&mut self, service: &str, value: &Value<'_>) -> Option<AutoscaleSpec> {
        let label = format!("[service.{service}.autoscale]");
        let path = |key: &str| format!("service.{service}.autoscale.{key}");
        let table = self.table(
            value,
            &format!("service.{service}.autoscale"),
            "[service.NAME.autoscale] cpu = 70",
        )?;
        let mut spec = AutoscaleSpec::default();
        for (key, value) in table.iter() {
            match key.get_ref().as_ref() {
                "cpu" => {
                    spec.cpu = self.target(value, &path("cpu"), "cpu = 70", 1.0, 1000.0);
                }
                "requests_per_replica" => {
                    spec.requests_per_replica = self.target(
                        value,
                        &path("requests_per_replica"),
                        "requests_per_replica = 1000",
                        1.0,
                        1e9,
                    );
                }
                "tolerance" => {
                    if let Some(tolerance) = self.fraction(value, &path("tolerance")) {
                        spec.tolerance = tolerance;
                    }
                }
                "interval" => {
                    if let Some(interval) =
                        self.duration(value, &path("interval"), r#"interval = "15s""#)
                    {
                        if interval < std::time::Duration::from_secs(1) {
                            self.problems.push(
                                value.span(),
                                format!("`{}` must be at least 1s", path("interval")),
                                Some(r#"e.g. interval = "15s" (the default)"#.into()),
                            );
                        } else {
                            spec.interval = interval;
                        }
                    }
                }
                "scale_out_cooldown" => {
                    if let Some(d) = self.duration(
                        value,
                        &path("scale_out_cooldown"),
                        r#"scale_out_cooldown = "60s""#,
                    ) {
                        spec.scale_out_cooldown = d;
                    }
                }
                "scale_in_cooldown" => {
                    if let Some(d) = self.duration(
                        value,
                        &path("scale_in_cooldown"),
                        r#"scale_in_cooldown = "5m""#,
                    ) {
                        spec.scale_in_cooldown = d;
                    }
                }
                "stabilization" => {
                    if let Some(d) =
                        self.duration(value, &path("stabilization"), r#"stabilization = "5m""#)
                    {
                        spec.stabilization = d;
                    }
                }
                other => self.unknown_key(key, other, AUTOSCALE_KEYS, &label),
            }
        }
        if spec.cpu.is_none() && spec.requests_per_replica.is_none() {
            self.problems.push(
                value.span(),
                format!("{label} switches off both targets, so nothing would drive scaling"),
                Some(
                    "keep `cpu` or `requests_per_replica`, or give the service a fixed `replicas` count"
                        .into(),
                ),
            );
        }
        Some(spec)
    }

    /// A target: a number in `low..=high`, or `false` (this signal does not drive scaling).
    fn target(
        &mut self,
        value: &Value<'_>,
        path: &str,
        example: &str,
        low: f64,
        high: f64,
    ) -> Option<f64> {
        if let DeValue::Boolean(false) = value.get_ref() {
            return None;
        }
        if let DeValue::Boolean(true) = value.get_ref() {
            self.problems.push(
                value.span(),
                format!("`{path}` is a target value or `false`, not `true`"),
                Some(format!("e.g. {example}")),
            );
            return None;
        }
        let number = self.number(value, path, example)?;
        if !(low..=high).contains(&number) {
            self.problems.push(
                value.span(),
                format!("`{path}` must be between {low} and {high}, found {number}"),
                Some(format!("e.g. {example}, or `false` to switch it off")),
            );
            return None;
        }
        Some(number)
    }

    /// A fraction in `0.0..0.5`.
    fn fraction(&mut self, value: &Value<'_>, path: &str) -> Option<f64> {
        let number = self.number(value, path, "tolerance = 0.1")?;
        if !(0.0..0.5).contains(&number) {
            self.problems.push(
                value.span(),
                format!("`{path}` must be at least 0 and below 0.5, found {number}"),
                Some("a fraction of the target, e.g. tolerance = 0.1 (10%, the default)".into()),
            );
            return None;
        }
        Some(number)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use crate::autoscale::AutoscaleSpec;

    fn parse(toml: &str) -> Result<crate::Spec, crate::Diagnostics> {
        crate::parse(Path::new("/tmp/berth.toml"), toml, None)
    }

    #[test]
    fn a_service_with_min_below_max_scales_on_the_references_targets() {
        let spec = parse("[service.web]\nrun = \"app\"\nport = 8000\nmin = 2\nmax = 6\n").unwrap();
        assert_eq!(
            spec.services["web"].autoscale,
            Some(AutoscaleSpec::default())
        );
        let fixed = parse("[service.web]\nrun = \"app\"\nport = 8000\nreplicas = 2\n").unwrap();
        assert_eq!(fixed.services["web"].autoscale, None);
    }

    #[test]
    fn the_table_sets_targets_windows_and_switches_one_off() {
        let spec = parse(
            r#"
[service.web]
run = "app"
port = 8000
min = 1
max = 4
[service.web.autoscale]
cpu = false
requests_per_replica = 600
tolerance = 0.2
interval = "2s"
scale_out_cooldown = "4s"
scale_in_cooldown = "10s"
stabilization = "8s"
"#,
        )
        .unwrap();
        let autoscale = spec.services["web"].autoscale.clone().unwrap();
        assert_eq!(autoscale.cpu, None);
        assert_eq!(autoscale.requests_per_replica, Some(600.0));
        assert_eq!(autoscale.tolerance, 0.2);
        assert_eq!(autoscale.interval, Duration::from_secs(2));
        assert_eq!(autoscale.scale_out_cooldown, Duration::from_secs(4));
        assert_eq!(autoscale.scale_in_cooldown, Duration::from_secs(10));
        assert_eq!(autoscale.stabilization, Duration::from_secs(8));
    }

    #[test]
    fn bad_autoscale_tables_point_at_the_value() {
        let error = parse(
            r#"
[service.web]
run = "app"
port = 8000
min = 1
max = 4
[service.web.autoscale]
cpu = 0
tolerance = 0.7
requests_per_replica = true
interval = "100ms"
scale_in = "5m"
"#,
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("berth.toml:8:7"), "{error}");
        assert!(
            error.contains("`service.web.autoscale.cpu` must be between 1 and 1000"),
            "{error}"
        );
        assert!(
            error.contains("`service.web.autoscale.tolerance` must be at least 0 and below 0.5"),
            "{error}"
        );
        assert!(error.contains("not `true`"), "{error}");
        assert!(error.contains("must be at least 1s"), "{error}");
        assert!(error.contains("scale_in_cooldown"), "did you mean: {error}");
    }

    #[test]
    fn both_targets_off_or_a_fixed_count_is_an_error() {
        let error = parse(
            "[service.web]\nrun = \"app\"\nport = 8000\nmin = 1\nmax = 3\n[service.web.autoscale]\ncpu = false\nrequests_per_replica = false\n",
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("switches off both targets"), "{error}");
        let error = parse(
            "[service.web]\nrun = \"app\"\nport = 8000\nreplicas = 2\n[service.web.autoscale]\ncpu = 50\n",
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("berth.toml:5:1"), "{error}");
        assert!(error.contains("has a fixed replica count"), "{error}");
    }
}
