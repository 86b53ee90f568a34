//! `[[alarm]]`, `[alarms]` and `[notify.NAME]`: the typed alarms of a stack (the CloudWatch
//! model: a metric's statistic per period compared with a threshold, M out of N periods, a
//! missing-data treatment) and where their notifications go. Also the references' default alarms
//! (CPU above 80 % for two 5-minute periods; more than ten 5xx in 5 minutes, for two periods).
//! Types only: evaluating an alarm is `berth-alarms`, sending is `berth-notify`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The statistic of a metric over one period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Statistic {
    Avg,
    Sum,
    Min,
    Max,
    P50,
    P99,
    Count,
}

impl Statistic {
    pub const NAMES: &'static [&'static str] = &["avg", "sum", "min", "max", "p50", "p99", "count"];

    pub fn parse(text: &str) -> Option<Statistic> {
        Some(match text {
            "avg" => Statistic::Avg,
            "sum" => Statistic::Sum,
            "min" => Statistic::Min,
            "max" => Statistic::Max,
            "p50" => Statistic::P50,
            "p99" => Statistic::P99,
            "count" => Statistic::Count,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Statistic::Avg => "avg",
            Statistic::Sum => "sum",
            Statistic::Min => "min",
            Statistic::Max => "max",
            Statistic::P50 => "p50",
            Statistic::P99 => "p99",
            Statistic::Count => "count",
        }
    }
}

impl fmt::Display for Statistic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a datapoint is compared with the threshold; a datapoint that compares true is breaching.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Comparison {
    #[serde(rename = ">")]
    Greater,
    #[serde(rename = ">=")]
    GreaterOrEqual,
    #[serde(rename = "<")]
    Less,
    #[serde(rename = "<=")]
    LessOrEqual,
}

impl Comparison {
    pub const NAMES: &'static [&'static str] = &[">", ">=", "<", "<=", "gt", "ge", "lt", "le"];

    pub fn parse(text: &str) -> Option<Comparison> {
        Some(match text {
            ">" | "gt" => Comparison::Greater,
            ">=" | "ge" => Comparison::GreaterOrEqual,
            "<" | "lt" => Comparison::Less,
            "<=" | "le" => Comparison::LessOrEqual,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Comparison::Greater => ">",
            Comparison::GreaterOrEqual => ">=",
            Comparison::Less => "<",
            Comparison::LessOrEqual => "<=",
        }
    }

    /// Whether `value` breaches `threshold`.
    pub fn breaches(self, value: f64, threshold: f64) -> bool {
        match self {
            Comparison::Greater => value > threshold,
            Comparison::GreaterOrEqual => value >= threshold,
            Comparison::Less => value < threshold,
            Comparison::LessOrEqual => value <= threshold,
        }
    }

    /// The words CloudWatch uses in a reason: "greater than", "less than or equal to"...
    pub fn words(self) -> &'static str {
        match self {
            Comparison::Greater => "greater than",
            Comparison::GreaterOrEqual => "greater than or equal to",
            Comparison::Less => "less than",
            Comparison::LessOrEqual => "less than or equal to",
        }
    }
}

/// CloudWatch's `treat_missing_data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum MissingData {
    /// All datapoints missing: INSUFFICIENT_DATA (the default).
    #[default]
    #[serde(rename = "missing")]
    Missing,
    /// A missing datapoint is within the threshold.
    #[serde(rename = "notBreaching")]
    NotBreaching,
    /// A missing datapoint breaches the threshold.
    #[serde(rename = "breaching")]
    Breaching,
    /// Missing datapoints keep the current state.
    #[serde(rename = "ignore")]
    Ignore,
}

impl MissingData {
    pub const NAMES: &'static [&'static str] = &["missing", "notBreaching", "breaching", "ignore"];

    pub fn parse(text: &str) -> Option<MissingData> {
        Some(match text {
            "missing" => MissingData::Missing,
            "notBreaching" => MissingData::NotBreaching,
            "breaching" => MissingData::Breaching,
            "ignore" => MissingData::Ignore,
            _ => return None,
        })
    }
}

/// One alarm of the effective spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlarmSpec {
    pub name: String,
    pub description: Option<String>,
    /// A name of the catalogue (`crate::metric_names`) or `app:NAME`.
    pub metric: String,
    /// Equality filters on the metric's labels (`service = "web"` is `labels.service`).
    pub labels: BTreeMap<String, String>,
    pub statistic: Statistic,
    pub comparison: Comparison,
    pub threshold: f64,
    pub period: Duration,
    pub evaluation_periods: u32,
    pub datapoints_to_alarm: u32,
    pub missing: MissingData,
    /// The `[notify.NAME]` targets told of its state changes (all targets when not written).
    pub notify: Vec<String>,
    /// One of the references' default alarms (switched off with `[alarms] defaults = false`).
    pub default: bool,
}

/// Which kinds of news a notification target receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyEvent {
    /// An alarm's state change.
    Alarm,
    /// A deploy's outcome (succeeded, rolled back, failed).
    Deploy,
    /// A failed backup.
    Backup,
}

impl NotifyEvent {
    pub const NAMES: &'static [&'static str] = &["alarm", "deploy", "backup"];
    pub const ALL: &'static [NotifyEvent] =
        &[NotifyEvent::Alarm, NotifyEvent::Deploy, NotifyEvent::Backup];

    pub fn parse(text: &str) -> Option<NotifyEvent> {
        Some(match text {
            "alarm" => NotifyEvent::Alarm,
            "deploy" => NotifyEvent::Deploy,
            "backup" => NotifyEvent::Backup,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NotifyEvent::Alarm => "alarm",
            NotifyEvent::Deploy => "deploy",
            NotifyEvent::Backup => "backup",
        }
    }
}

/// A URL written in the spec or kept in the secrets store (a webhook URL often holds a token,
/// so `Debug` never shows an inline one).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UrlSource {
    Inline(String),
    /// The name of a secret of the environment holding the URL.
    Secret(String),
}

impl fmt::Debug for UrlSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlSource::Inline(_) => f.write_str("Inline([redacted])"),
            UrlSource::Secret(name) => f.debug_tuple("Secret").field(name).finish(),
        }
    }
}

/// One `[notify.NAME]` target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotifyTarget {
    pub kind: TargetKind,
    /// What it receives (all kinds when not written).
    pub events: Vec<NotifyEvent>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// A JSON document POSTed to a URL.
    Webhook { url: UrlSource },
    /// A Slack-compatible incoming webhook (`{"text": ...}`).
    Slack { url: UrlSource },
    /// Email over SMTP; the password only ever comes from a secret.
    Email {
        host: String,
        port: u16,
        from: String,
        to: Vec<String>,
        starttls: bool,
        user: Option<String>,
        password_secret: Option<String>,
    },
    /// `sh -c RUN` with the JSON document on its standard input.
    Command { run: String, timeout: Duration },
}

impl TargetKind {
    pub fn name(&self) -> &'static str {
        match self {
            TargetKind::Webhook { .. } => "webhook",
            TargetKind::Slack { .. } => "slack",
            TargetKind::Email { .. } => "email",
            TargetKind::Command { .. } => "command",
        }
    }
}

/// The default period of an alarm (the references' 300 s).
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(300);
/// The default timeout of a command target.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// The default SMTP port (submission with STARTTLS).
pub const DEFAULT_SMTP_PORT: u16 = 587;

/// The references' alarms for one service: CPU above 80 % (average) for two 5-minute periods,
/// and, when the service takes traffic, more than ten 5xx answers in 5 minutes for two periods.
/// `errors_5xx` is a per-second rate, so "ten in 5 minutes" is an average above 10/300 per second.
pub fn default_alarms(service: &str, takes_traffic: bool) -> Vec<AlarmSpec> {
    let labels: BTreeMap<String, String> = [("service".to_string(), service.to_string())].into();
    let mut alarms = vec![AlarmSpec {
        name: format!("{service}-high-cpu"),
        description: Some(format!(
            "CPU of `{service}` above 80 % for two 5-minute periods"
        )),
        metric: crate::metric_names::CPU_PERCENT.to_string(),
        labels: labels.clone(),
        statistic: Statistic::Avg,
        comparison: Comparison::Greater,
        threshold: 80.0,
        period: DEFAULT_PERIOD,
        evaluation_periods: 2,
        datapoints_to_alarm: 2,
        missing: MissingData::Missing,
        notify: Vec::new(),
        default: true,
    }];
    if takes_traffic {
        alarms.push(AlarmSpec {
            name: format!("{service}-5xx"),
            description: Some(format!(
                "more than ten 5xx answers of `{service}` in 5 minutes, two periods in a row"
            )),
            metric: crate::metric_names::ERRORS_5XX.to_string(),
            labels,
            statistic: Statistic::Avg,
            comparison: Comparison::Greater,
            threshold: 10.0 / DEFAULT_PERIOD.as_secs_f64(),
            period: DEFAULT_PERIOD,
            evaluation_periods: 2,
            datapoints_to_alarm: 2,
            // No request in a period is no error: a quiet service is not an unknown one.
            missing: MissingData::NotBreaching,
            notify: Vec::new(),
            default: true,
        });
    }
    alarms
}
