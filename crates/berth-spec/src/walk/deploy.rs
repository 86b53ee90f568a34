//! `[service.NAME.deploy]`, its `[[...deploy.check]]` smoke checks and its `analysis` rules:
//! read key by key into a [`DeploySpec`] with the references' defaults for what is not written.

use super::{type_name, Value, Walker};
use crate::types::{
    Amount, AnalysisSpec, CanaryStep, DeploySpec, Inconclusive, SmokeCheck, Strategy,
};
use crate::units::closest;
use toml::de::DeValue;

const DEPLOY_KEYS: &[&str] = &[
    "strategy",
    "migrate",
    "migrate_timeout",
    "max_surge",
    "max_unavailable",
    "min_healthy_percent",
    "maximum_percent",
    "termination_wait",
    "steps",
    "backup",
    "check",
    "analysis",
];
const STRATEGIES: &[&str] = &["rolling", "bluegreen", "canary"];
const STEP_KEYS: &[&str] = &["weight", "pause"];
const CHECK_KEYS: &[&str] = &["path", "status", "contains"];
const ANALYSIS_KEYS: &[&str] = &[
    "window",
    "health_window",
    "error_rate",
    "latency_factor",
    "latency_margin",
    "min_requests",
    "min_route_requests",
    "significance",
    "min_effect",
    "max_wait",
    "inconclusive",
];

impl Walker<'_> {
    pub(super) fn deploy(&mut self, service: &str, value: &Value<'_>) -> Option<DeploySpec> {
        let label = format!("[service.{service}.deploy]");
        let table = self.table(
            value,
            &format!("service.{service}.deploy"),
            r#"deploy = { strategy = "canary" }"#,
        )?;
        let path = |key: &str| format!("service.{service}.deploy.{key}");
        let mut deploy = DeploySpec::default();
        let mut surge_form: Option<(&str, std::ops::Range<usize>)> = None;
        let mut ecs_form: Option<&str> = None;
        for (key, value) in table.iter() {
            match key.get_ref().as_ref() {
                "strategy" => {
                    if let Some(strategy) = self.strategy(value, &path("strategy")) {
                        deploy.strategy = strategy;
                    }
                }
                "migrate" => {
                    let command =
                        self.string(value, &path("migrate"), r#"migrate = "python3 migrate.py""#);
                    if let Some(command) = command {
                        if command.value.trim().is_empty() {
                            self.problems.push(
                                command.span,
                                format!("`{}` must not be empty", path("migrate")),
                                Some("remove it, or give the migration command".into()),
                            );
                        } else {
                            deploy.migrate = Some(command.value);
                        }
                    }
                }
                "migrate_timeout" => {
                    if let Some(d) = self.positive_duration(
                        value,
                        &path("migrate_timeout"),
                        r#"migrate_timeout = "10m""#,
                    ) {
                        deploy.migrate_timeout = d;
                    }
                }
                name @ ("max_surge" | "max_unavailable") => {
                    surge_form.get_or_insert((
                        if name == "max_surge" {
                            "max_surge"
                        } else {
                            "max_unavailable"
                        },
                        value.span(),
                    ));
                    if let Some(amount) = self.amount(value, &path(name)) {
                        if name == "max_surge" {
                            deploy.max_surge = amount;
                        } else {
                            deploy.max_unavailable = amount;
                        }
                    }
                }
                name @ ("min_healthy_percent" | "maximum_percent") => {
                    ecs_form.get_or_insert(if name == "min_healthy_percent" {
                        "min_healthy_percent"
                    } else {
                        "maximum_percent"
                    });
                    let example = format!("{name} = 100");
                    let Some(percent) = self.count(value, &path(name), 0, &example) else {
                        continue;
                    };
                    if name == "min_healthy_percent" {
                        if percent.value > 100 {
                            self.problems.push(
                                percent.span,
                                format!("`{}` must be at most 100", path(name)),
                                Some("e.g. min_healthy_percent = 100 (the references')".into()),
                            );
                        } else {
                            deploy.max_unavailable = Amount::Percent(100 - percent.value);
                        }
                    } else if percent.value < 100 {
                        self.problems.push(
                            percent.span,
                            format!("`{}` must be at least 100", path(name)),
                            Some("e.g. maximum_percent = 200 (the references')".into()),
                        );
                    } else {
                        deploy.max_surge = Amount::Percent(percent.value - 100);
                    }
                }
                "termination_wait" => {
                    if let Some(d) = self.duration(
                        value,
                        &path("termination_wait"),
                        r#"termination_wait = "5m""#,
                    ) {
                        deploy.termination_wait = d;
                    }
                }
                "steps" => {
                    if let Some(steps) = self.steps(value, &path("steps")) {
                        deploy.steps = steps;
                    }
                }
                "backup" => {
                    if let Some(b) = self.boolean(value, &path("backup"), "backup = true") {
                        deploy.backup = b;
                    }
                }
                "check" => deploy.checks = self.checks(service, value),
                "analysis" => {
                    if let Some(analysis) = self.analysis(service, value) {
                        deploy.analysis = analysis;
                    }
                }
                other => self.unknown_key(key, other, DEPLOY_KEYS, &label),
            }
        }
        if let (Some((surge_key, span)), Some(ecs_key)) = (surge_form, ecs_form) {
            self.problems.push(
                span,
                format!("{label} sets both `{surge_key}` and `{ecs_key}`"),
                Some(
                    "use either max_surge/max_unavailable or min_healthy_percent/maximum_percent"
                        .into(),
                ),
            );
        }
        if deploy.max_surge == Amount::Count(0) && deploy.max_unavailable == Amount::Count(0)
            || deploy.max_surge == Amount::Percent(0)
                && matches!(
                    deploy.max_unavailable,
                    Amount::Count(0) | Amount::Percent(0)
                )
        {
            self.problems.push(
                value.span(),
                format!("{label}: a rolling deploy with no surge and no unavailability can never replace a replica"),
                Some("allow a surge (max_surge = 1) or some unavailability (max_unavailable = 1)".into()),
            );
        }
        Some(deploy)
    }

    fn strategy(&mut self, value: &Value<'_>, path: &str) -> Option<Strategy> {
        let text = self.string(value, path, r#"strategy = "canary""#)?;
        if let Some(strategy) = Strategy::parse(&text.value) {
            return Some(strategy);
        }
        let typed = text.value.to_ascii_lowercase();
        let suggestion = match typed.as_str() {
            "blue/green" | "blue-green" | "blue_green" | "bg" => Some("bluegreen"),
            "rollingupdate" | "rolling_update" | "rolling-update" => Some("rolling"),
            _ => closest(&typed, STRATEGIES),
        };
        let did_you_mean = suggestion
            .map(|s| format!(r#"did you mean "{s}"? "#))
            .unwrap_or_default();
        self.problems.push(
            text.span,
            format!("unknown deploy strategy \"{}\" for `{path}`", text.value),
            Some(format!(
                r#"{did_you_mean}the strategies are "rolling" (the default), "bluegreen" and "canary""#
            )),
        );
        None
    }

    /// `2` or `"25%"`.
    fn amount(&mut self, value: &Value<'_>, path: &str) -> Option<Amount> {
        let name = path.rsplit('.').next().unwrap_or(path);
        let hint =
            format!(r#"write a replica count or a percentage, e.g. {name} = 1 or {name} = "25%""#);
        match value.get_ref() {
            DeValue::Integer(_) => {
                let example = format!("{name} = 1");
                self.count(value, path, 0, &example)
                    .map(|n| Amount::Count(n.value))
            }
            DeValue::String(text) => {
                let percent = text
                    .trim()
                    .strip_suffix('%')
                    .and_then(|n| n.trim().parse::<u32>().ok());
                match percent {
                    Some(p) if p <= 100 => Some(Amount::Percent(p)),
                    _ => {
                        self.problems.push(
                            value.span(),
                            format!("invalid amount \"{text}\" for `{path}`"),
                            Some(hint),
                        );
                        None
                    }
                }
            }
            other => {
                self.problems.push(
                    value.span(),
                    format!(
                        "`{path}` must be a count or a percentage, found {}",
                        type_name(other)
                    ),
                    Some(hint),
                );
                None
            }
        }
    }

    fn steps(&mut self, value: &Value<'_>, path: &str) -> Option<Vec<CanaryStep>> {
        let example = r#"steps = [{ weight = 10, pause = "15m" }, { weight = 50, pause = "5m" }]"#;
        let items = self.array(value, path, example)?;
        let mut steps: Vec<CanaryStep> = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let item_path = format!("{path}[{i}]");
            let Some(table) = self.table(item, &item_path, r#"{ weight = 10, pause = "15m" }"#)
            else {
                ok = false;
                continue;
            };
            let mut weight = None;
            let mut pause = None;
            for (key, value) in table.iter() {
                match key.get_ref().as_ref() {
                    "weight" => {
                        weight = self.count(value, &format!("{item_path}.weight"), 1, "weight = 10")
                    }
                    "pause" => {
                        pause =
                            self.duration(value, &format!("{item_path}.pause"), r#"pause = "5m""#)
                    }
                    other => self.unknown_key(key, other, STEP_KEYS, &item_path),
                }
            }
            let missing = weight.is_none() && pause.is_none();
            match (weight, pause) {
                (Some(w), Some(p)) => {
                    if w.value >= 100 {
                        self.problems.push(
                            w.span,
                            format!("`{item_path}.weight` must be below 100"),
                            Some(
                                "the last step, 100%, is implied: list the steps before it".into(),
                            ),
                        );
                        ok = false;
                    } else if steps.last().is_some_and(|last| last.weight >= w.value) {
                        self.problems.push(
                            w.span,
                            format!("`{item_path}.weight` must be larger than the step before it"),
                            Some("list the steps in increasing order, e.g. 10, 25, 50, 75".into()),
                        );
                        ok = false;
                    } else {
                        steps.push(CanaryStep {
                            weight: w.value,
                            pause: p,
                        });
                    }
                }
                _ => {
                    if missing || ok {
                        self.problems.push(
                            item.span(),
                            format!("`{item_path}` needs both `weight` and `pause`"),
                            Some(r#"e.g. { weight = 10, pause = "15m" }"#.into()),
                        );
                    }
                    ok = false;
                }
            }
        }
        ok.then_some(steps)
    }

    fn checks(&mut self, service: &str, value: &Value<'_>) -> Vec<SmokeCheck> {
        let path = format!("service.{service}.deploy.check");
        let example = "[[service.NAME.deploy.check]] path = \"/health\" status = 200";
        let Some(items) = self.array(value, &path, example) else {
            return Vec::new();
        };
        let mut checks = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let item_path = format!("{path}[{i}]");
            let Some(table) = self.table(item, &item_path, r#"{ path = "/health" }"#) else {
                continue;
            };
            let mut check = SmokeCheck {
                path: String::new(),
                status: 200,
                contains: None,
            };
            for (key, value) in table.iter() {
                match key.get_ref().as_ref() {
                    "path" => {
                        if let Some(text) =
                            self.string(value, &format!("{item_path}.path"), r#"path = "/""#)
                        {
                            if text.value.starts_with('/') {
                                check.path = text.value;
                            } else {
                                self.problems.push(
                                    text.span,
                                    format!("`{item_path}.path` must start with `/`"),
                                    Some(format!(r#"write path = "/{}""#, text.value)),
                                );
                            }
                        }
                    }
                    "status" => {
                        let status =
                            self.integer(value, &format!("{item_path}.status"), "status = 200");
                        match status {
                            Some(s @ 100..=599) => check.status = s as u16,
                            Some(s) => self.problems.push(
                                value.span(),
                                format!("`{item_path}.status` must be an HTTP status, found {s}"),
                                Some("e.g. status = 200".into()),
                            ),
                            None => {}
                        }
                    }
                    "contains" => {
                        check.contains = self
                            .string(
                                value,
                                &format!("{item_path}.contains"),
                                r#"contains = "ok""#,
                            )
                            .map(|t| t.value);
                    }
                    other => self.unknown_key(key, other, CHECK_KEYS, &item_path),
                }
            }
            if check.path.is_empty() {
                if !table.contains_key("path") {
                    self.problems.push(
                        item.span(),
                        format!("`{item_path}` has no `path`"),
                        Some(r#"add the path to request, e.g. path = "/health""#.into()),
                    );
                }
                continue;
            }
            checks.push(check);
        }
        checks
    }

    fn analysis(&mut self, service: &str, value: &Value<'_>) -> Option<AnalysisSpec> {
        let label = format!("[service.{service}.deploy.analysis]");
        let table = self.table(
            value,
            &format!("service.{service}.deploy.analysis"),
            r#"analysis = { error_rate = 5.0 }"#,
        )?;
        let path = |key: &str| format!("service.{service}.deploy.analysis.{key}");
        let mut analysis = AnalysisSpec::default();
        for (key, value) in table.iter() {
            match key.get_ref().as_ref() {
                "window" => {
                    if let Some(d) =
                        self.positive_duration(value, &path("window"), r#"window = "5m""#)
                    {
                        analysis.window = d;
                    }
                }
                "health_window" => {
                    if let Some(d) = self.positive_duration(
                        value,
                        &path("health_window"),
                        r#"health_window = "2m""#,
                    ) {
                        analysis.health_window = d;
                    }
                }
                "latency_margin" => {
                    if let Some(d) =
                        self.duration(value, &path("latency_margin"), r#"latency_margin = "25ms""#)
                    {
                        analysis.latency_margin = d;
                    }
                }
                "error_rate" => {
                    if let Some(rate) = self.number(value, &path("error_rate"), "error_rate = 5.0")
                    {
                        if (0.0..=100.0).contains(&rate) {
                            analysis.error_rate = rate;
                        } else {
                            self.problems.push(
                                value.span(),
                                format!("`{}` is a percentage: 0 to 100", path("error_rate")),
                                Some("e.g. error_rate = 5.0 (the references')".into()),
                            );
                        }
                    }
                }
                "latency_factor" => {
                    if let Some(factor) =
                        self.number(value, &path("latency_factor"), "latency_factor = 3.0")
                    {
                        if factor >= 1.0 {
                            analysis.latency_factor = factor;
                        } else {
                            self.problems.push(
                                value.span(),
                                format!("`{}` must be at least 1", path("latency_factor")),
                                Some("e.g. latency_factor = 3.0 (the references')".into()),
                            );
                        }
                    }
                }
                "min_requests" => {
                    if let Some(n) =
                        self.count(value, &path("min_requests"), 1, "min_requests = 50")
                    {
                        analysis.min_requests = u64::from(n.value);
                    }
                }
                "min_route_requests" => {
                    if let Some(n) = self.count(
                        value,
                        &path("min_route_requests"),
                        1,
                        "min_route_requests = 20",
                    ) {
                        analysis.min_route_requests = u64::from(n.value);
                    }
                }
                "significance" => {
                    if let Some(p) =
                        self.number(value, &path("significance"), "significance = 0.01")
                    {
                        if p > 0.0 && p < 0.5 {
                            analysis.significance = p;
                        } else {
                            self.problems.push(
                                value.span(),
                                format!(
                                    "`{}` is a probability: over 0 and under 0.5",
                                    path("significance")
                                ),
                                Some("e.g. significance = 0.01 (the default)".into()),
                            );
                        }
                    }
                }
                "min_effect" => {
                    if let Some(d) = self.number(value, &path("min_effect"), "min_effect = 0.33") {
                        if d > 0.0 && d <= 1.0 {
                            analysis.min_effect = d;
                        } else {
                            self.problems.push(
                                value.span(),
                                format!(
                                    "`{}` is a Cliff's delta: over 0, at most 1",
                                    path("min_effect")
                                ),
                                Some(
                                    "e.g. min_effect = 0.33 (the default: a medium effect)".into(),
                                ),
                            );
                        }
                    }
                }
                "max_wait" => {
                    if let Some(d) = self.duration(value, &path("max_wait"), r#"max_wait = "5m""#) {
                        analysis.max_wait = d;
                    }
                }
                "inconclusive" => {
                    if let Some(text) =
                        self.string(value, &path("inconclusive"), r#"inconclusive = "rollback""#)
                    {
                        match text.value.as_str() {
                            "rollback" => analysis.inconclusive = Inconclusive::Rollback,
                            "pause" => analysis.inconclusive = Inconclusive::Pause,
                            other => {
                                let did_you_mean = closest(other, &["rollback", "pause"])
                                    .map(|s| format!(r#"did you mean "{s}"? "#))
                                    .unwrap_or_default();
                                self.problems.push(
                                    text.span,
                                    format!(
                                        "unknown value \"{other}\" for `{}`",
                                        path("inconclusive")
                                    ),
                                    Some(format!(
                                        r#"{did_you_mean}it is "rollback" (the default) or "pause""#
                                    )),
                                );
                            }
                        }
                    }
                }
                other => self.unknown_key(key, other, ANALYSIS_KEYS, &label),
            }
        }
        Some(analysis)
    }

    /// A float or an integer.
    pub(super) fn number(&mut self, value: &Value<'_>, path: &str, example: &str) -> Option<f64> {
        match value.get_ref() {
            DeValue::Float(f) => f.as_str().parse::<f64>().ok(),
            DeValue::Integer(_) => self.integer(value, path, example).map(|n| n as f64),
            _ => {
                self.wrong_type(value, path, "a number", example);
                None
            }
        }
    }
}
