//! `[[alarm]]`, `[alarms]` and `[notify.NAME]`: read key by key; `check_alarms` then checks the
//! names they refer to (services, accessories, targets) against the whole spec.

use std::collections::BTreeMap;
use std::time::Duration;

use toml::de::DeValue;

use super::{Value, Walker};
use crate::alarm::{
    AlarmSpec, Comparison, MissingData, NotifyEvent, NotifyTarget, Statistic, TargetKind,
    UrlSource, DEFAULT_COMMAND_TIMEOUT, DEFAULT_PERIOD, DEFAULT_SMTP_PORT,
};
use crate::metric_names;
use crate::raw::{Located, RawAlarm, RawAlarms, RawSpec};
use crate::report::Problems;
use crate::units::{closest, list};

const ALARM_KEYS: &[&str] = &[
    "name",
    "description",
    "metric",
    "service",
    "labels",
    "statistic",
    "comparison",
    "threshold",
    "period",
    "evaluation_periods",
    "datapoints_to_alarm",
    "missing",
    "notify",
];
const ALARMS_KEYS: &[&str] = &["defaults", "notify"];
const NOTIFY_KEYS: &[&str] = &[
    "kind",
    "events",
    "url",
    "url_secret",
    "host",
    "port",
    "from",
    "to",
    "starttls",
    "user",
    "password_secret",
    "run",
    "timeout",
];
const KINDS: &[&str] = &["webhook", "slack", "email", "command"];
/// The shortest period: the collector's finest resolution.
const MIN_PERIOD: Duration = Duration::from_secs(10);
/// The longest look-back of an alarm (periods x evaluation periods), as CloudWatch's one day.
const MAX_LOOKBACK: Duration = Duration::from_secs(24 * 3600);
const ALARM_EXAMPLE: &str = r#"[[alarm]] name = "web-slow" metric = "latency_ms" service = "web" statistic = "p99" comparison = ">" threshold = 500"#;

impl Walker<'_> {
    pub(super) fn alarms_table(&mut self, value: &Value<'_>) -> RawAlarms {
        let mut alarms = RawAlarms::default();
        let Some(table) = self.table(value, "alarms", "[alarms] defaults = false") else {
            return alarms;
        };
        for (key, value) in table.iter() {
            match key.get_ref().as_ref() {
                "defaults" => {
                    alarms.defaults = self.boolean(value, "alarms.defaults", "defaults = false")
                }
                "notify" => {
                    alarms.notify =
                        Some(self.name_list(value, "alarms.notify", r#"notify = ["ops"]"#))
                }
                other => self.unknown_key(key, other, ALARMS_KEYS, "[alarms]"),
            }
        }
        alarms
    }

    pub(super) fn alarm_list(&mut self, value: &Value<'_>) -> Vec<RawAlarm> {
        let Some(items) = self.array(value, "alarm", ALARM_EXAMPLE) else {
            return Vec::new();
        };
        let mut alarms = Vec::new();
        for (i, item) in items.iter().enumerate() {
            if let Some(alarm) = self.alarm(i, item) {
                alarms.push(alarm);
            }
        }
        alarms
    }

    fn alarm(&mut self, index: usize, item: &Value<'_>) -> Option<RawAlarm> {
        let path = format!("alarm[{index}]");
        let table = self.table(item, &path, ALARM_EXAMPLE)?;
        let mut ok = true;
        let mut name: Option<Located<String>> = None;
        let mut description = None;
        let mut metric: Option<Located<String>> = None;
        let mut labels: BTreeMap<String, Located<String>> = BTreeMap::new();
        let mut statistic = Statistic::Avg;
        let mut comparison = None;
        let mut threshold = None;
        let mut period = DEFAULT_PERIOD;
        let mut evaluation_periods: Option<Located<u32>> = None;
        let mut datapoints: Option<Located<u32>> = None;
        let mut missing = MissingData::Missing;
        let mut notify = None;
        for (key, value) in table.iter() {
            let key_path = format!("{path}.{}", key.get_ref());
            match key.get_ref().as_ref() {
                "name" => {
                    name = self.string(value, &key_path, r#"name = "web-high-cpu""#);
                    if let Some(n) = &name {
                        if !crate::units::is_valid_name(&n.value) {
                            self.problems.push(
                                n.span.clone(),
                                format!("invalid alarm name `{}`", n.value),
                                Some(crate::units::NAME_RULE.into()),
                            );
                            ok = false;
                        }
                    }
                }
                "description" => {
                    description = self
                        .string(value, &key_path, r#"description = "checkout is slow""#)
                        .map(|d| d.value)
                }
                "metric" => {
                    let Some(text) = self.string(value, &key_path, r#"metric = "cpu_percent""#)
                    else {
                        ok = false;
                        continue;
                    };
                    if metric_names::lookup(&text.value).is_none() {
                        let names = metric_names::names();
                        let hint = if text.value.starts_with(metric_names::APP_PREFIX) {
                            "an application metric is `app:` and a Prometheus name, e.g. app:orders_total".to_string()
                        } else {
                            match closest(&text.value, &names) {
                                Some(s) => format!("did you mean `{s}`?"),
                                None => format!(
                                    "the metrics are {}, or app:NAME for an application's own",
                                    list(&names)
                                ),
                            }
                        };
                        self.problems.push(
                            text.span.clone(),
                            format!("unknown metric `{}` in `{key_path}`", text.value),
                            Some(hint),
                        );
                        ok = false;
                    }
                    metric = Some(text);
                }
                "service" => {
                    if let Some(text) = self.string(value, &key_path, r#"service = "web""#) {
                        labels.insert("service".into(), text);
                    }
                }
                "labels" => {
                    let Some(inner) =
                        self.table(value, &key_path, r#"labels = { accessory = "db" }"#)
                    else {
                        ok = false;
                        continue;
                    };
                    for (label, value) in inner.iter() {
                        let label_path = format!("{key_path}.{}", label.get_ref());
                        if let Some(text) = self.string(value, &label_path, r#"service = "web""#) {
                            let label_name = label.get_ref().to_string();
                            if labels.contains_key(&label_name) {
                                self.problems.push(
                                    label.span(),
                                    format!("label `{label_name}` is given twice in `{path}`"),
                                    Some("write it once, as `service = ...` or in `labels`".into()),
                                );
                                ok = false;
                            }
                            labels.insert(
                                label_name,
                                Located {
                                    value: text.value,
                                    span: label.span(),
                                },
                            );
                        }
                    }
                }
                "statistic" => match self.choice(value, &key_path, Statistic::NAMES) {
                    Some(text) => statistic = Statistic::parse(&text).unwrap_or(Statistic::Avg),
                    None => ok = false,
                },
                "comparison" => match self.choice(value, &key_path, Comparison::NAMES) {
                    Some(text) => comparison = Comparison::parse(&text),
                    None => ok = false,
                },
                "threshold" => {
                    threshold = self.threshold(value, &key_path);
                    ok &= threshold.is_some();
                }
                "period" => {
                    match self.positive_duration(value, &key_path, r#"period = "5m""#) {
                        Some(p) if p < MIN_PERIOD || p.subsec_nanos() != 0 => {
                            self.problems.push(
                            value.span(),
                            format!(
                                "`{key_path}` must be whole seconds and at least 10s, found {}",
                                humantime::format_duration(p)
                            ),
                            Some("metrics are kept every 10 seconds at best; e.g. period = \"1m\"".into()),
                        );
                            ok = false;
                        }
                        Some(p) => period = p,
                        None => ok = false,
                    }
                }
                "evaluation_periods" => {
                    evaluation_periods = self.count(value, &key_path, 1, "evaluation_periods = 2");
                    ok &= evaluation_periods.is_some();
                }
                "datapoints_to_alarm" => {
                    datapoints = self.count(value, &key_path, 1, "datapoints_to_alarm = 2");
                    ok &= datapoints.is_some();
                }
                "missing" => match self.choice(value, &key_path, MissingData::NAMES) {
                    Some(text) => missing = MissingData::parse(&text).unwrap_or_default(),
                    None => ok = false,
                },
                "notify" => {
                    notify = Some(self.name_list(value, &key_path, r#"notify = ["ops"]"#));
                }
                other => self.unknown_key(key, other, ALARM_KEYS, "[[alarm]]"),
            }
        }
        let mut absent = Vec::new();
        if name.is_none() && !table.iter().any(|(k, _)| k.get_ref() == "name") {
            absent.push("name");
        }
        if metric.is_none() && !table.iter().any(|(k, _)| k.get_ref() == "metric") {
            absent.push("metric");
        }
        if comparison.is_none() && !table.iter().any(|(k, _)| k.get_ref() == "comparison") {
            absent.push("comparison");
        }
        if threshold.is_none() && !table.iter().any(|(k, _)| k.get_ref() == "threshold") {
            absent.push("threshold");
        }
        if !absent.is_empty() {
            self.problems.push(
                item.span(),
                format!("`{path}` has no `{}`", absent.join("`, `")),
                Some(format!("an alarm needs a name, a metric, a comparison and a threshold, e.g. {ALARM_EXAMPLE}")),
            );
            return None;
        }
        let evaluation = evaluation_periods.as_ref().map_or(1, |e| e.value);
        let to_alarm = datapoints.as_ref().map_or(evaluation, |d| d.value);
        if let Some(d) = &datapoints {
            if d.value > evaluation {
                self.problems.push(
                    d.span.clone(),
                    format!(
                        "`{path}.datapoints_to_alarm` ({}) is greater than `evaluation_periods` ({evaluation})",
                        d.value
                    ),
                    Some("an alarm looks at `evaluation_periods` periods and needs `datapoints_to_alarm` of them breaching: M <= N".into()),
                );
                ok = false;
            }
        }
        if let Some(e) = &evaluation_periods {
            if period.saturating_mul(e.value) > MAX_LOOKBACK {
                self.problems.push(
                    e.span.clone(),
                    format!(
                        "`{path}` looks back {} (period x evaluation_periods), more than a day",
                        humantime::format_duration(period.saturating_mul(e.value))
                    ),
                    Some("shorten the period or the number of periods".into()),
                );
                ok = false;
            }
        }
        let (name, metric) = (name?, metric?);
        if let Some(known) = metric_names::lookup(&metric.value) {
            if !metric.value.starts_with(metric_names::APP_PREFIX) {
                for (label, value) in &labels {
                    if !known.labels.contains(&label.as_str()) {
                        let hint = if known.labels.is_empty() {
                            format!("`{}` has no labels: remove the filter", metric.value)
                        } else {
                            format!(
                                "the labels of `{}` are {}",
                                metric.value,
                                list(known.labels)
                            )
                        };
                        self.problems.push(
                            value.span.clone(),
                            format!("`{}` has no label `{label}`", metric.value),
                            Some(hint),
                        );
                        ok = false;
                    }
                }
            }
        }
        // Even when something above was wrong (and the parse fails), the alarm is kept so that
        // `check_alarms` also reports what it refers to.
        let _ = ok;
        Some(RawAlarm {
            span: item.span(),
            name_span: name.span.clone(),
            labels: labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            notify: notify.clone().unwrap_or_default(),
            spec: AlarmSpec {
                name: name.value,
                description,
                metric: metric.value,
                labels: labels.into_iter().map(|(k, v)| (k, v.value)).collect(),
                statistic,
                comparison: comparison.unwrap_or(Comparison::Greater),
                threshold: threshold.unwrap_or_default(),
                period,
                evaluation_periods: evaluation,
                datapoints_to_alarm: to_alarm,
                missing,
                notify: notify
                    .unwrap_or_default()
                    .into_iter()
                    .map(|n| n.value)
                    .collect(),
                default: false,
            },
        })
    }

    /// A string that must be one of `choices` (did-you-mean on a typo).
    fn choice(&mut self, value: &Value<'_>, path: &str, choices: &[&str]) -> Option<String> {
        let key = path.rsplit('.').next().unwrap_or(path);
        let text = self.string(value, path, &format!("{key} = \"{}\"", choices[0]))?;
        if choices.contains(&text.value.as_str()) {
            return Some(text.value);
        }
        let hint = match closest(&text.value, choices) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("one of {}", list(choices)),
        };
        self.problems.push(
            text.span,
            format!("invalid `{path}` \"{}\"", text.value),
            Some(hint),
        );
        None
    }

    /// A finite number (integer or float).
    fn threshold(&mut self, value: &Value<'_>, path: &str) -> Option<f64> {
        let number = match value.get_ref() {
            DeValue::Integer(integer) => i128::from_str_radix(integer.as_str(), integer.radix())
                .ok()
                .map(|n| n as f64),
            DeValue::Float(float) => float.as_str().replace('_', "").parse::<f64>().ok(),
            _ => None,
        };
        match number {
            Some(n) if n.is_finite() => Some(n),
            _ => {
                let written = self.source.get(value.span()).unwrap_or("...");
                self.problems.push(
                    value.span(),
                    format!("`{path}` must be a finite number, found {written}"),
                    Some("e.g. threshold = 80 or threshold = 0.5 (no quotes, no unit)".into()),
                );
                None
            }
        }
    }

    pub(super) fn notify_targets(
        &mut self,
        value: &Value<'_>,
    ) -> (BTreeMap<String, Located<NotifyTarget>>, Vec<String>) {
        let mut targets = BTreeMap::new();
        let mut declared = Vec::new();
        for (name, table) in self.named_tables(value, "notify") {
            declared.push(name.value.clone());
            if let Some(target) = self.notify_target(&name.value, table) {
                targets.insert(
                    name.value,
                    Located {
                        value: target,
                        span: name.span,
                    },
                );
            }
        }
        (targets, declared)
    }

    fn notify_target(&mut self, name: &str, value: &Value<'_>) -> Option<NotifyTarget> {
        let path = format!("notify.{name}");
        let table = self.table(
            value,
            &path,
            r#"[notify.ops] kind = "webhook" url = "https://...""#,
        )?;
        let mut ok = true;
        let mut kind: Option<String> = None;
        let mut events = NotifyEvent::ALL.to_vec();
        let mut url: Option<UrlSource> = None;
        let mut host = None;
        let mut port = DEFAULT_SMTP_PORT;
        let mut from: Option<String> = None;
        let mut to: Vec<String> = Vec::new();
        let mut starttls = true;
        let mut user = None;
        let mut password_secret = None;
        let mut run = None;
        let mut timeout = DEFAULT_COMMAND_TIMEOUT;
        let mut written: Vec<String> = Vec::new();
        for (key, value) in table.iter() {
            let key_name = key.get_ref().to_string();
            let key_path = format!("{path}.{key_name}");
            written.push(key_name.clone());
            match key_name.as_str() {
                "kind" => {
                    kind = self.choice(value, &key_path, KINDS);
                    ok &= kind.is_some();
                }
                "events" => {
                    let names = self.name_list(value, &key_path, r#"events = ["alarm", "deploy"]"#);
                    events.clear();
                    for n in names {
                        match NotifyEvent::parse(&n.value) {
                            Some(e) if !events.contains(&e) => events.push(e),
                            Some(_) => {}
                            None => {
                                self.problems.push(
                                    n.span,
                                    format!("unknown event kind `{}` in `{key_path}`", n.value),
                                    Some(format!("one of {}", list(NotifyEvent::NAMES))),
                                );
                                ok = false;
                            }
                        }
                    }
                }
                "url" => {
                    let Some(text) = self.string(
                        value,
                        &key_path,
                        r#"url = "https://hooks.example.com/berth""#,
                    ) else {
                        ok = false;
                        continue;
                    };
                    if let Err(why) = check_url(&text.value) {
                        // The URL may hold a token: it is not repeated in the message.
                        self.problems.push(
                            text.span,
                            format!("`{key_path}` is not a valid http(s) URL: {why}"),
                            Some("e.g. url = \"https://hooks.slack.com/services/...\"; a URL holding a token is better kept as url_secret = \"SECRET_NAME\"".into()),
                        );
                        ok = false;
                    } else {
                        url = Some(UrlSource::Inline(text.value));
                    }
                }
                "url_secret" => match self.secret_name(value, &key_path) {
                    Some(s) => url = Some(UrlSource::Secret(s)),
                    None => ok = false,
                },
                "host" => {
                    host = self
                        .string(value, &key_path, r#"host = "smtp.example.com""#)
                        .map(|h| h.value);
                    if host
                        .as_ref()
                        .is_some_and(|h| h.is_empty() || h.contains(char::is_whitespace))
                    {
                        self.problems.push(
                            value.span(),
                            format!("`{key_path}` is not a host name"),
                            Some("e.g. host = \"smtp.example.com\"".into()),
                        );
                        ok = false;
                    }
                }
                "port" => match self.port_number(value, &key_path) {
                    Some(p) => port = p,
                    None => ok = false,
                },
                "from" => {
                    from = self.email(value, &key_path);
                    ok &= from.is_some();
                }
                "to" => {
                    let Some(items) = self.array(value, &key_path, r#"to = ["ops@example.com"]"#)
                    else {
                        ok = false;
                        continue;
                    };
                    for item in items {
                        match self.email(item, &key_path) {
                            Some(address) => to.push(address),
                            None => ok = false,
                        }
                    }
                }
                "starttls" => match self.boolean(value, &key_path, "starttls = true") {
                    Some(b) => starttls = b,
                    None => ok = false,
                },
                "user" => {
                    user = self
                        .string(value, &key_path, r#"user = "berth""#)
                        .map(|u| u.value)
                }
                "password_secret" => {
                    password_secret = self.secret_name(value, &key_path);
                    ok &= password_secret.is_some();
                }
                "run" => {
                    run = self
                        .string(value, &key_path, r#"run = "logger -t berth""#)
                        .map(|r| r.value);
                    if run.as_ref().is_some_and(|r| r.trim().is_empty()) {
                        self.problems.push(
                            value.span(),
                            format!("`{key_path}` must not be empty"),
                            Some(
                                "give the command that receives the JSON on its standard input"
                                    .into(),
                            ),
                        );
                        ok = false;
                    }
                }
                "timeout" => match self.positive_duration(value, &key_path, r#"timeout = "30s""#) {
                    Some(t) => timeout = t,
                    None => ok = false,
                },
                "password" => {
                    self.problems.push(
                        key.span(),
                        format!("`{key_path}`: a password is never written in berth.toml"),
                        Some("keep it in the secrets store (`berth secrets set SMTP_PASSWORD`) and write password_secret = \"SMTP_PASSWORD\"".into()),
                    );
                    ok = false;
                }
                other => self.unknown_key(key, other, NOTIFY_KEYS, &format!("[{path}]")),
            }
        }
        let Some(kind) = kind else {
            if !written.iter().any(|w| w == "kind") {
                self.problems.push(
                    value.span(),
                    format!("`[{path}]` has no `kind`"),
                    Some(format!("kind is one of {}", list(KINDS))),
                );
            }
            return None;
        };
        // Keys that do not belong to the kind are mistakes, not silently unused settings.
        let belongs: &[&str] = match kind.as_str() {
            "webhook" | "slack" => &["kind", "events", "url", "url_secret"],
            "email" => &[
                "kind",
                "events",
                "host",
                "port",
                "from",
                "to",
                "starttls",
                "user",
                "password_secret",
            ],
            _ => &["kind", "events", "run", "timeout"],
        };
        for (key, _) in table.iter() {
            let k = key.get_ref().as_ref();
            if NOTIFY_KEYS.contains(&k) && !belongs.contains(&k) {
                self.problems.push(
                    key.span(),
                    format!("`{k}` does not apply to a `{kind}` target ([{path}])"),
                    Some(format!("the keys of a {kind} target are {}", list(belongs))),
                );
                ok = false;
            }
        }
        let need = |missing: &[&str], this: &mut Self| {
            this.problems.push(
                value.span(),
                format!("`[{path}]` ({kind}) has no `{}`", missing.join("` or `")),
                Some(match kind.as_str() {
                    "email" => "an email target needs host, from and to, e.g. host = \"smtp.example.com\" from = \"berth@example.com\" to = [\"ops@example.com\"]".to_string(),
                    "command" => "a command target needs run = \"...\"".to_string(),
                    _ => "give url = \"https://...\" or url_secret = \"SECRET_NAME\"".to_string(),
                }),
            );
        };
        let target = match kind.as_str() {
            "webhook" | "slack" => {
                if written.iter().any(|w| w == "url") && written.iter().any(|w| w == "url_secret") {
                    self.problems.push(
                        value.span(),
                        format!("`[{path}]` has both `url` and `url_secret`"),
                        Some("keep one".into()),
                    );
                    return None;
                }
                let Some(url) = url else {
                    if !written.iter().any(|w| w == "url" || w == "url_secret") {
                        need(&["url", "url_secret"], self);
                    }
                    return None;
                };
                if kind == "slack" {
                    TargetKind::Slack { url }
                } else {
                    TargetKind::Webhook { url }
                }
            }
            "email" => {
                let missing: Vec<&str> = [
                    ("host", host.is_none()),
                    ("from", from.is_none()),
                    ("to", to.is_empty()),
                ]
                .iter()
                .filter(|(k, absent)| *absent && !written.iter().any(|w| w == k))
                .map(|(k, _)| *k)
                .collect();
                if !missing.is_empty() {
                    need(&missing, self);
                    return None;
                }
                if user.is_some() != password_secret.is_some() && ok {
                    self.problems.push(value.span(), format!("`[{path}]` has `user` without `password_secret` or the other way round"), Some("SMTP authentication needs both, or neither".into()));
                    return None;
                }
                TargetKind::Email {
                    host: host?,
                    port,
                    from: from?,
                    to,
                    starttls,
                    user,
                    password_secret,
                }
            }
            _ => {
                let Some(run) = run else {
                    if !written.iter().any(|w| w == "run") {
                        need(&["run"], self);
                    }
                    return None;
                };
                TargetKind::Command { run, timeout }
            }
        };
        ok.then_some(NotifyTarget {
            kind: target,
            events,
        })
    }

    fn secret_name(&mut self, value: &Value<'_>, path: &str) -> Option<String> {
        let text = self.string(value, path, r#"password_secret = "SMTP_PASSWORD""#)?;
        let valid = text
            .value
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && text
                .value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            self.problems.push(
                text.span,
                format!("`{path}` must name a secret, found \"{}\"", text.value),
                Some("secret names are like environment variables: letters, digits and `_`, e.g. SMTP_PASSWORD".into()),
            );
            return None;
        }
        Some(text.value)
    }

    fn email(&mut self, value: &Value<'_>, path: &str) -> Option<String> {
        let text = self.string(value, path, r#""ops@example.com""#)?;
        if is_email(&text.value) {
            return Some(text.value);
        }
        self.problems.push(
            text.span,
            format!("`{path}`: \"{}\" is not an email address", text.value),
            Some("e.g. ops@example.com (one address per string)".into()),
        );
        None
    }
}

/// Whether `text` is a plain `local@domain` address (what SMTP's MAIL FROM / RCPT TO accept).
fn is_email(text: &str) -> bool {
    let Some((local, domain)) = text.rsplit_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c))
        && !local.starts_with('.')
        && !local.ends_with('.');
    let domain_ok = !domain.is_empty()
        && domain.len() <= 253
        && domain.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    local_ok && domain_ok
}

/// Why `text` is not an http(s) URL with a host (the text itself is never part of the answer).
fn check_url(text: &str) -> Result<(), &'static str> {
    let url = url::Url::parse(text).map_err(|_| "it does not parse")?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("the scheme must be http or https");
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("it has no host");
    }
    Ok(())
}

/// Checks the names alarms refer to: targets, services and accessories; and unique alarm names.
pub(crate) fn check_alarms(raw: &RawSpec, problems: &mut Problems) {
    let targets: Vec<&str> = raw.notify_declared.iter().map(String::as_str).collect();
    let services: Vec<&str> = raw.services.keys().map(String::as_str).collect();
    let accessories: Vec<&str> = raw.accessories.keys().map(String::as_str).collect();
    let check_target = |name: &Located<String>, problems: &mut Problems| {
        if !targets.contains(&name.value.as_str()) {
            let hint = match closest(&name.value, &targets) {
                Some(s) => format!("did you mean `{s}`?"),
                None if targets.is_empty() => {
                    "declare it: [notify.NAME] kind = \"webhook\" url = \"https://...\"".into()
                }
                None => format!("the targets are {}", list(&targets)),
            };
            problems.push(
                name.span.clone(),
                format!("unknown notification target `{}`", name.value),
                Some(hint),
            );
        }
    };
    if let Some(notify) = &raw.alarms_table.notify {
        for name in notify {
            check_target(name, problems);
        }
    }
    let defaults = raw.alarms_table.defaults.unwrap_or(true);
    let mut seen: Vec<String> = Vec::new();
    if defaults {
        for (name, service) in &raw.services {
            let takes_traffic = !matches!(service.port, crate::types::PortSpec::None);
            seen.extend(
                crate::alarm::default_alarms(name, takes_traffic)
                    .into_iter()
                    .map(|a| a.name),
            );
        }
    }
    for alarm in &raw.alarms {
        for name in &alarm.notify {
            check_target(name, problems);
        }
        if seen.contains(&alarm.spec.name) {
            let hint = if alarm.spec.name.ends_with("-high-cpu")
                || alarm.spec.name.ends_with("-5xx")
            {
                "this is the name of a default alarm; rename yours, or write [alarms] defaults = false"
            } else {
                "alarm names are unique; rename one"
            };
            problems.push(
                alarm.name_span.clone(),
                format!("alarm `{}` is defined twice", alarm.spec.name),
                Some(hint.into()),
            );
        }
        seen.push(alarm.spec.name.clone());
        for (label, value) in &alarm.labels {
            let (known, kind) = match label.as_str() {
                "service" => (&services, "service"),
                "accessory" => (&accessories, "accessory"),
                _ => continue,
            };
            if !known.contains(&value.value.as_str()) {
                let hint = match closest(&value.value, known) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("the {kind}s are {}", list(known)),
                };
                problems.push(
                    value.span.clone(),
                    format!(
                        "alarm `{}` watches unknown {kind} `{}`",
                        alarm.spec.name, value.value
                    ),
                    Some(hint),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use crate::alarm::{Comparison, MissingData, NotifyEvent, Statistic, TargetKind, UrlSource};

    fn messages(source: &str) -> Vec<String> {
        match crate::parse(Path::new("berth.toml"), source, None) {
            Ok(_) => Vec::new(),
            Err(diagnostics) => diagnostics
                .items
                .into_iter()
                .map(|item| {
                    format!(
                        "{}:{}: {} | {}",
                        item.line,
                        item.col,
                        item.message,
                        item.hint.unwrap_or_default()
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn the_references_alarms_are_defaults_that_can_be_switched_off() {
        let source = "[service.web]\nrun = \"x\"\nport = \"auto\"\n[service.worker]\nrun = \"y\"\n";
        let spec = crate::parse(Path::new("berth.toml"), source, None).unwrap();
        let names: Vec<&str> = spec.alarms.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["web-high-cpu", "web-5xx", "worker-high-cpu"]);
        let cpu = &spec.alarms[0];
        assert_eq!(
            (
                cpu.metric.as_str(),
                cpu.statistic,
                cpu.comparison,
                cpu.threshold
            ),
            ("cpu_percent", Statistic::Avg, Comparison::Greater, 80.0)
        );
        assert_eq!(
            (cpu.period, cpu.evaluation_periods, cpu.datapoints_to_alarm),
            (Duration::from_secs(300), 2, 2)
        );
        assert_eq!(cpu.labels["service"], "web");
        // Ten 5xx in 300 s, as a per-second rate.
        assert!((spec.alarms[1].threshold * 300.0 - 10.0).abs() < 1e-9);
        let off = format!("{source}[alarms]\ndefaults = false\n");
        let spec = crate::parse(Path::new("berth.toml"), &off, None).unwrap();
        assert!(spec.alarms.is_empty());
    }

    #[test]
    fn alarms_and_every_target_kind_are_read() {
        let source = r#"
[service.web]
run = "x"
port = "auto"

[alarms]
notify = ["ops"]

[[alarm]]
name = "web-slow"
metric = "latency_ms"
service = "web"
statistic = "p99"
comparison = "ge"
threshold = 500.5
period = "1m"
evaluation_periods = 5
datapoints_to_alarm = 3
missing = "notBreaching"
notify = ["ops", "mail"]

[[alarm]]
name = "orders"
metric = "app:orders_total"
labels = { service = "web", shop = "eu" }
comparison = "<"
threshold = 1

[notify.ops]
kind = "webhook"
url = "https://hooks.example.com/x"
events = ["alarm"]

[notify.chat]
kind = "slack"
url_secret = "SLACK_URL"

[notify.mail]
kind = "email"
host = "127.0.0.1"
port = 2525
from = "berth@example.com"
to = ["ops@example.com", "dev@example.org"]
starttls = false
user = "berth"
password_secret = "SMTP_PASSWORD"

[notify.log]
kind = "command"
run = "cat >> /tmp/alarms.json"
timeout = "5s"
"#;
        let spec =
            crate::parse(Path::new("berth.toml"), source, None).unwrap_or_else(|e| panic!("{e}"));
        let slow = spec.alarms.iter().find(|a| a.name == "web-slow").unwrap();
        assert_eq!(slow.statistic, Statistic::P99);
        assert_eq!(slow.comparison, Comparison::GreaterOrEqual);
        assert_eq!((slow.evaluation_periods, slow.datapoints_to_alarm), (5, 3));
        assert_eq!(slow.missing, MissingData::NotBreaching);
        assert_eq!(slow.notify, ["ops", "mail"]);
        let orders = spec.alarms.iter().find(|a| a.name == "orders").unwrap();
        assert_eq!(orders.labels.len(), 2);
        assert_eq!(
            (orders.evaluation_periods, orders.datapoints_to_alarm),
            (1, 1)
        );
        assert_eq!(orders.period, Duration::from_secs(300));
        // The default alarms go to the `[alarms] notify` targets.
        assert_eq!(spec.alarms[0].notify, ["ops"]);
        assert_eq!(spec.notify["ops"].events, [NotifyEvent::Alarm]);
        // An inline URL may hold a token: never shown by Debug.
        assert!(!format!("{spec:?}").contains("hooks.example.com/x"));
        assert_eq!(
            spec.notify["chat"].kind,
            TargetKind::Slack {
                url: UrlSource::Secret("SLACK_URL".into())
            }
        );
        assert_eq!(spec.notify["chat"].events.len(), 3);
        assert!(matches!(
            &spec.notify["mail"].kind,
            TargetKind::Email { port: 2525, starttls: false, to, password_secret: Some(p), .. }
                if to.len() == 2 && p == "SMTP_PASSWORD"
        ));
        assert_eq!(
            spec.notify["log"].kind,
            TargetKind::Command {
                run: "cat >> /tmp/alarms.json".into(),
                timeout: Duration::from_secs(5)
            }
        );
    }

    #[test]
    fn bad_alarms_are_diagnostics_with_hints() {
        let source = r#"[service.web]
run = "x"
[[alarm]]
name = "a"
metric = "cpu_precent"
comparison = ">"
threshold = "80"
[[alarm]]
name = "b"
metric = "cpu_percent"
service = "wbe"
comparison = "bigger"
threshold = 1
period = "5x"
evaluation_periods = 2
datapoints_to_alarm = 3
notify = ["opz"]
[[alarm]]
name = "c"
metric = "host_load1"
service = "web"
comparison = ">"
threshold = 1
period = "1s"
[[alarm]]
name = "web-high-cpu"
metric = "cpu_percent"
comparison = ">"
[notify.ops]
kind = "webhook"
url = "ftp://secret-token@example.com"
"#;
        let got = messages(source);
        let expected = [
            "5:10: unknown metric `cpu_precent` in `alarm[0].metric` | did you mean `cpu_percent`?",
            "7:13: `alarm[0].threshold` must be a finite number, found \"80\"",
            "11:11: alarm `b` watches unknown service `wbe` | did you mean `web`?",
            "12:14: invalid `alarm[1].comparison` \"bigger\"",
            "14:10: invalid duration \"5x\" for `alarm[1].period`",
            "16:23: `alarm[1].datapoints_to_alarm` (3) is greater than `evaluation_periods` (2)",
            "17:11: unknown notification target `opz` | did you mean `ops`?",
            "21:11: `host_load1` has no label `service`",
            "24:10: `alarm[2].period` must be whole seconds and at least 10s, found 1s",
            "`alarm[3]` has no `threshold`",
            "31:7: `notify.ops.url` is not a valid http(s) URL: the scheme must be http or https",
        ];
        for want in expected {
            assert!(
                got.iter().any(|g| g.contains(want)),
                "missing {want:?} in:\n{}",
                got.join("\n")
            );
        }
        // A URL may hold a token: it is never repeated in a message.
        assert!(got.iter().all(|g| !g.contains("secret-token")), "{got:?}");
    }

    #[test]
    fn bad_targets_are_diagnostics() {
        let source = r#"[notify.mail]
kind = "email"
host = "smtp.example.com"
from = "berth at example.com"
to = ["ops@example.com", "@x"]
password = "hunter2"
[notify.hook]
kind = "slack"
[notify.cmd]
kind = "command"
run = "x"
url = "https://example.com"
[notify.what]
kind = "pager"
[alarms]
notify = ["nobody"]
"#;
        let got = messages(source);
        let expected = [
            "4:8: `notify.mail.from`: \"berth at example.com\" is not an email address",
            "5:26: `notify.mail.to`: \"@x\" is not an email address",
            "6:1: `notify.mail.password`: a password is never written in berth.toml | keep it in the secrets store",
            "`[notify.hook]` (slack) has no `url` or `url_secret`",
            "12:1: `url` does not apply to a `command` target ([notify.cmd])",
            "14:8: invalid `notify.what.kind` \"pager\"",
            "16:11: unknown notification target `nobody`",
        ];
        for want in expected {
            assert!(
                got.iter().any(|g| g.contains(want)),
                "missing {want:?} in:\n{}",
                got.join("\n")
            );
        }
        assert!(got.iter().all(|g| !g.contains("hunter2")), "{got:?}");
    }
}
