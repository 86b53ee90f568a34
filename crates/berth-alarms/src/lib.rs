//! Alarm evaluation, the CloudWatch model, as a pure function: an alarm of the spec, the
//! statistic of its metric for each of its last periods (`None`: no data in that period) and the
//! state it was in give the state it is in now, with a reason written like CloudWatch's
//! ("Threshold Crossed: 2 out of the last 2 datapoints [85.1, 90.3] were greater than the
//! threshold (80.0) ...").
//!
//! It never knows where datapoints come from (the metrics store), what time it is, or who is told
//! of a change (the daemon and `berth-notify`).
//!
//! The rules, after CloudWatch's "Configuring how CloudWatch alarms treat missing data":
//! - the window is the last `evaluation_periods` (N) datapoints; `datapoints_to_alarm` (M) of
//!   them breaching the threshold make ALARM;
//! - when at least M datapoints of the window are present, only they are evaluated and the
//!   missing-data treatment plays no part: ALARM when M or more breach, else OK;
//! - when fewer than M are present, the treatment fills the gaps, using as few missing datapoints
//!   as it can: `breaching` fills them as breaching (ALARM when every present datapoint breaches,
//!   including when none is present), `notBreaching` as within the threshold (OK), `ignore`
//!   keeps the current state, `missing` keeps the current state too, except that a window with no
//!   datapoint at all is INSUFFICIENT_DATA.
//!
//! One difference from CloudWatch: CloudWatch may look back further than N periods for present
//! datapoints when some are missing; Berth evaluates exactly the last N.

use std::fmt;

use berth_spec::alarm::{AlarmSpec, MissingData};
use serde::{Deserialize, Serialize};

/// The state of an alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AlarmState {
    #[serde(rename = "OK")]
    Ok,
    #[serde(rename = "ALARM")]
    Alarm,
    #[serde(rename = "INSUFFICIENT_DATA")]
    InsufficientData,
}

impl AlarmState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmState::Ok => "OK",
            AlarmState::Alarm => "ALARM",
            AlarmState::InsufficientData => "INSUFFICIENT_DATA",
        }
    }

    pub fn parse(text: &str) -> Option<AlarmState> {
        Some(match text {
            "OK" => AlarmState::Ok,
            "ALARM" => AlarmState::Alarm,
            "INSUFFICIENT_DATA" => AlarmState::InsufficientData,
            _ => return None,
        })
    }
}

impl fmt::Display for AlarmState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub state: AlarmState,
    /// Why the alarm is in `state` (meaningful when it changed; kept state: why it was kept).
    pub reason: String,
    /// Whether `state` differs from the previous state.
    pub changed: bool,
}

/// Evaluates `alarm` on `datapoints` (oldest first; the last `evaluation_periods` are used, a
/// shorter slice counts as missing datapoints before it) from the `previous` state (a new alarm
/// starts in INSUFFICIENT_DATA, like CloudWatch's).
pub fn evaluate(alarm: &AlarmSpec, datapoints: &[Option<f64>], previous: AlarmState) -> Evaluation {
    let n = alarm.evaluation_periods.max(1) as usize;
    let m = (alarm.datapoints_to_alarm.max(1) as usize).min(n);
    let mut window: Vec<Option<f64>> = vec![None; n.saturating_sub(datapoints.len())];
    window.extend_from_slice(&datapoints[datapoints.len().saturating_sub(n)..]);
    let present: Vec<f64> = window.iter().flatten().copied().collect();
    let breaching = present
        .iter()
        .filter(|value| alarm.comparison.breaches(**value, alarm.threshold))
        .count();
    let words = alarm.comparison.words();
    let threshold = number(alarm.threshold);
    let listed = list(&window);

    let crossed = |state: AlarmState, filled: usize| -> String {
        let total = present.len() + filled;
        let filled_note = if filled > 0 {
            format!(" ({filled} missing treated as breaching)")
        } else {
            String::new()
        };
        match state {
            AlarmState::Alarm => format!(
                "Threshold Crossed: {count} out of the last {total} datapoints {listed}{filled_note} {were} {words} the threshold ({threshold}) (minimum {m} {points} for OK -> ALARM transition).",
                count = breaching + filled,
                were = if breaching + filled == 1 { "was" } else { "were" },
                points = if m == 1 { "datapoint" } else { "datapoints" },
            ),
            _ => {
                let within = total - breaching - filled;
                let least = n - m + 1;
                format!(
                    "Threshold Crossed: {within} out of the last {total} datapoints {listed} {were} not {words} the threshold ({threshold}) (minimum {least} {points} for ALARM -> OK transition).",
                    were = if within == 1 { "was" } else { "were" },
                    points = if least == 1 { "datapoint" } else { "datapoints" },
                )
            }
        }
    };

    let (state, reason) = if present.len() >= m {
        if breaching >= m {
            (AlarmState::Alarm, crossed(AlarmState::Alarm, 0))
        } else {
            (AlarmState::Ok, crossed(AlarmState::Ok, 0))
        }
    } else {
        let missing = n - present.len();
        match alarm.missing {
            MissingData::Breaching => {
                let filled = m - present.len();
                if breaching == present.len() {
                    (AlarmState::Alarm, crossed(AlarmState::Alarm, filled))
                } else {
                    let within = present.len() - breaching;
                    (
                        AlarmState::Ok,
                        format!(
                            "Threshold Crossed: {within} out of the last {} datapoints {listed} {} not {words} the threshold ({threshold}); {missing} missing treated as breaching are too few for ALARM (minimum {m}).",
                            present.len(),
                            if within == 1 { "was" } else { "were" },
                        ),
                    )
                }
            }
            MissingData::NotBreaching => (
                AlarmState::Ok,
                format!(
                    "Threshold Crossed: {breaching} out of the last {n} datapoints {listed} {} {words} the threshold ({threshold}), missing treated as not breaching (minimum {m} for ALARM).",
                    if breaching == 1 { "was" } else { "were" },
                ),
            ),
            MissingData::Missing if present.is_empty() => (
                AlarmState::InsufficientData,
                format!(
                    "Insufficient Data: {n} {} unknown.",
                    if n == 1 { "datapoint was" } else { "datapoints were" }
                ),
            ),
            MissingData::Missing | MissingData::Ignore => (
                previous,
                format!(
                    "{missing} of the last {n} datapoints {listed} missing, fewer than {m} present: the state is kept (missing data: {}).",
                    match alarm.missing {
                        MissingData::Ignore => "ignore",
                        _ => "missing",
                    }
                ),
            ),
        }
    };
    Evaluation {
        changed: state != previous,
        state,
        reason,
    }
}

/// `[85.1, missing, 90.3]`.
fn list(window: &[Option<f64>]) -> String {
    let items: Vec<String> = window
        .iter()
        .map(|value| value.map_or_else(|| "missing".to_string(), number))
        .collect();
    format!("[{}]", items.join(", "))
}

/// A number as CloudWatch shows one: `80.0`, `85.1`, at most three decimals.
fn number(value: f64) -> String {
    let rounded = (value * 1000.0).round() / 1000.0;
    if rounded.fract() == 0.0 && rounded.abs() < 1e15 {
        format!("{rounded:.1}")
    } else {
        format!("{rounded}")
    }
}

#[cfg(test)]
mod tests;
