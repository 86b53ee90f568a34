//! Deploys: the record of one run of a service's deploy pipeline (its steps, timings and
//! verdict), as stored, served by the API and printed by `berth deploy`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::ReleaseId;

/// Where a deploy stands. Only `Running` is not final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeployState {
    Running,
    /// The new release carries all the traffic.
    Succeeded,
    /// A rule fired (or the deploy was cancelled or interrupted) and the old release took the
    /// traffic back.
    RolledBack,
    /// It stopped before any traffic moved (pre-flight, build, migration, backup).
    Failed,
}

impl DeployState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeployState::Running => "running",
            DeployState::Succeeded => "succeeded",
            DeployState::RolledBack => "rolled_back",
            DeployState::Failed => "failed",
        }
    }

    pub fn is_final(self) -> bool {
        self != DeployState::Running
    }
}

impl std::fmt::Display for DeployState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    Running,
    Done,
    Failed,
    Skipped,
}

/// One step of the pipeline ("migrate", "start 4 replicas of r3", "canary 10%", ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeployStep {
    pub name: String,
    pub state: StepState,
    /// Milliseconds since the Unix epoch.
    pub started_ms: i64,
    pub finished_ms: Option<i64>,
    /// What happened, in a line ("4/4 healthy", "error rate 0.0% of 230 requests").
    pub detail: String,
    /// For a step the analysis judged (a canary step, the analysis window): the numbers of the
    /// last judgment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<Judgment>,
}

/// The numbers behind one judgment of the new release (the canary) against the old one (the
/// baseline) over the same time window: what `berth deploy watch` and `--json` show.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Judgment {
    /// `pass`, `fail` or `inconclusive`.
    pub outcome: String,
    /// The rule that decided (`error-rate`, `latency`, `latency-shift`, `too-few-requests`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Length of the window, in milliseconds.
    pub window_ms: u64,
    /// True when the baseline is the old release's last window rather than this one (after a
    /// full switch the old release takes no more traffic).
    #[serde(default)]
    pub adjacent_baseline: bool,
    pub canary_requests: u64,
    pub canary_errors: u64,
    pub baseline_requests: u64,
    pub baseline_errors: u64,
    /// Over the judged routes, the baseline weighted by the canary's route mix.
    pub canary_p99_ms: Option<f64>,
    pub baseline_p99_ms: Option<f64>,
    /// Combined over the judged routes (weighted by the canary's mix): Cliff's delta and the
    /// one-sided p-value (Stouffer's z of the routes' Mann-Whitney tests).
    pub cliffs_delta: Option<f64>,
    pub p_value: Option<f64>,
    pub routes: Vec<RouteJudgment>,
}

/// One route pattern's comparison (see [`Judgment`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RouteJudgment {
    pub route: String,
    pub canary_requests: u64,
    pub baseline_requests: u64,
    /// Whether both releases served enough requests of this route to compare them.
    pub judged: bool,
    /// Share of the canary's judged requests.
    pub weight: f64,
    pub canary_median_ms: Option<f64>,
    pub baseline_median_ms: Option<f64>,
    pub canary_p99_ms: Option<f64>,
    pub baseline_p99_ms: Option<f64>,
    /// Mann-Whitney U of the canary (pairs where the canary was slower, ties counted half).
    pub u: Option<f64>,
    /// One-sided (canary slower), normal approximation with tie correction.
    pub p_value: Option<f64>,
    /// P(canary slower) - P(canary faster), -1 to 1.
    pub cliffs_delta: Option<f64>,
    /// Canary median / baseline median.
    pub median_ratio: Option<f64>,
}

/// Which rule ended a deploy that did not succeed, with the numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// `health`, `error-rate`, `latency`, `smoke-check`, `migration`, `build`, `pre-flight`,
    /// `backup`, `cancelled`, `interrupted`, `alarm` (an alarm of the service went to ALARM).
    pub rule: String,
    pub message: String,
}

/// The new release's traffic during the deploy, as the edge counted it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeployTraffic {
    pub requests: u64,
    pub errors: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeployRecord {
    pub id: u64,
    pub service: String,
    pub env: String,
    pub strategy: String,
    pub from_release: Option<ReleaseId>,
    pub to_release: Option<ReleaseId>,
    pub state: DeployState,
    /// Unix seconds.
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub verdict: Option<Verdict>,
    pub steps: Vec<DeployStep>,
    /// User requests the new release answered during the deploy.
    #[serde(default)]
    pub traffic: DeployTraffic,
    /// Whether this deploy is a rollback to an earlier release (`berth rollback`).
    #[serde(default)]
    pub rollback: bool,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl DeployRecord {
    /// Starts a step and returns its index.
    pub fn begin(&mut self, name: impl Into<String>) -> usize {
        self.steps.push(DeployStep {
            name: name.into(),
            state: StepState::Running,
            started_ms: now_ms(),
            finished_ms: None,
            detail: String::new(),
            analysis: None,
        });
        self.steps.len() - 1
    }

    /// Ends step `index` in `state` with `detail`.
    pub fn end(&mut self, index: usize, state: StepState, detail: impl Into<String>) {
        if let Some(step) = self.steps.get_mut(index) {
            step.state = state;
            step.finished_ms = Some(now_ms());
            step.detail = detail.into();
        }
    }

    /// The one-line outcome printed last by `berth deploy`.
    pub fn summary(&self) -> String {
        let release = self
            .to_release
            .as_ref()
            .map(|r| r.to_string())
            .unwrap_or_else(|| "-".into());
        let took = self
            .finished_at
            .map(|f| format!(" in {}s", f - self.started_at))
            .unwrap_or_default();
        match (&self.state, &self.verdict) {
            (DeployState::Running, _) => {
                format!(
                    "deploy {} of {} ({release}) is running",
                    self.id, self.service
                )
            }
            (DeployState::Succeeded, _) => format!(
                "deploy {} of {} succeeded{took}: {release} carries all the traffic",
                self.id, self.service
            ),
            (state, Some(v)) => format!(
                "deploy {} of {} {}{took}: {}: {}",
                self.id,
                self.service,
                state.as_str().replace('_', " "),
                v.rule,
                v.message
            ),
            (state, None) => format!(
                "deploy {} of {} {}{took}",
                self.id,
                self.service,
                state.as_str().replace('_', " ")
            ),
        }
    }
}

/// What `berth deploy` asks for.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DeployRequest {
    pub service: String,
    /// Overrides the service's `deploy.strategy`.
    #[serde(default)]
    pub strategy: Option<String>,
    /// Deploy this folder instead of the service's `source`.
    #[serde(default)]
    pub source: Option<PathBuf>,
    /// Deploy this git revision of the service's source (`git archive`).
    #[serde(default)]
    pub rev: Option<String>,
    /// Go on even though the current release is not healthy.
    #[serde(default)]
    pub force: bool,
}

/// The answer to a deploy request: the deploy started, or nothing to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeployStarted {
    pub deploy: Option<DeployRecord>,
    /// Set when nothing changed: the release that already carries all the traffic.
    pub unchanged: Option<String>,
}
