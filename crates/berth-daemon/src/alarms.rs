//! Alarms and notifications in the daemon: the stack's `[notify.NAME]` targets started as a
//! [`Notifier`] (secrets resolved from the environment's secrets store), the evaluation loop
//! (each alarm every `min(period, 60 s)`: its datapoints, `berth_alarms::evaluate`, the state and
//! its transition kept in the store, a notification when the alarm enters or leaves ALARM), and
//! the other news that goes out the same way: deploy outcomes and failed backups.
//!
//! Where datapoints come from is behind the [`Datapoints`] trait (the metrics store implements
//! it); this module never knows how metrics are collected or kept. It never blocks its callers:
//! sending is `Notifier::send` (a queue per target), reading datapoints runs on a blocking thread.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use berth_alarms::AlarmState;
use berth_model::api::{AlarmList, AlarmTransition, AlarmView};
use berth_model::{DeployRecord, DeployState, EventLevel};
use berth_notify::{Delivery, Notification, Notifier, Outcome, RetryPolicy, Target};
use berth_spec::alarm::{AlarmSpec, NotifyEvent, TargetKind, UrlSource};
use berth_spec::Spec;
use berth_store::Store;

use crate::stack::Stack;

/// The longest time between two evaluations of an alarm (CloudWatch evaluates every minute).
const MAX_EVALUATION_INTERVAL: Duration = Duration::from_secs(60);
/// Transitions shown by `GET /v1/alarms`.
pub const HISTORY_SHOWN: usize = 50;

/// The statistic of an alarm's metric per period.
pub trait Datapoints: Send + Sync {
    /// For each of `alarm`'s last `evaluation_periods` periods ending at `now`, oldest first, the
    /// statistic of its metric over the series its labels select (`None`: no data then).
    fn datapoints(&self, alarm: &AlarmSpec, now: SystemTime) -> anyhow::Result<Vec<Option<f64>>>;
}

/// What the alarm code of a running stack needs: its store, names and notifier.
#[derive(Clone)]
pub struct AlarmContext {
    pub store: Arc<Mutex<Store>>,
    pub stack: String,
    pub environment: String,
    pub notifier: Arc<Notifier>,
    /// Secret values masked in what is sent (accessory URLs and passwords in an error).
    pub redact: Vec<String>,
}

/// A state change, as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub alarm: String,
    pub previous: AlarmState,
    pub state: AlarmState,
    pub reason: String,
    /// Whether the targets were told (only changes into or out of ALARM are sent).
    pub notified: bool,
}

/// Whether a change from `previous` to `state` is news for the targets: entering or leaving
/// ALARM. (INSUFFICIENT_DATA <-> OK happens at every start and every quiet spell: recorded, not
/// sent.)
pub fn worth_telling(previous: AlarmState, state: AlarmState) -> bool {
    previous != state && (previous == AlarmState::Alarm || state == AlarmState::Alarm)
}

/// How often `alarm` is evaluated.
pub fn evaluation_interval(alarm: &AlarmSpec) -> Duration {
    alarm.period.min(MAX_EVALUATION_INTERVAL)
}

/// "avg cpu_percent{service=web} > 80 for 2 of 2 periods of 5m".
pub fn condition(alarm: &AlarmSpec) -> String {
    let labels = if alarm.labels.is_empty() {
        String::new()
    } else {
        let inner: Vec<String> = alarm
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!("{{{}}}", inner.join(","))
    };
    format!(
        "{} {}{labels} {} {} for {} of {} periods of {}",
        alarm.statistic,
        alarm.metric,
        alarm.comparison.as_str(),
        short(alarm.threshold),
        alarm.datapoints_to_alarm,
        alarm.evaluation_periods,
        humantime::format_duration(alarm.period)
    )
}

/// The targets of `spec`, their secrets read from the environment's secrets store (only when
/// one is needed). A target whose secret is not set is an error naming target and secret.
pub fn targets(spec: &Spec, paths: &berth_model::StatePaths) -> anyhow::Result<Vec<Target>> {
    let needs_secret = spec.notify.values().any(|t| match &t.kind {
        TargetKind::Webhook { url } | TargetKind::Slack { url } => {
            matches!(url, UrlSource::Secret(_))
        }
        TargetKind::Email {
            password_secret, ..
        } => password_secret.is_some(),
        TargetKind::Command { .. } => false,
    });
    let secrets = if needs_secret {
        Some(
            crate::secrets::store(paths, &spec.environment)
                .read()
                .context("reading the secrets store for the notification targets")?,
        )
    } else {
        None
    };
    let lookup = |name: &str| {
        secrets
            .as_ref()
            .and_then(|s| s.current(name))
            .and_then(|v| v.value())
            .map(str::to_string)
    };
    spec.notify
        .iter()
        .map(|(name, target)| {
            Target::resolve(name, target, lookup).map_err(|e| {
                anyhow::anyhow!(
                    "{e}; set it with `berth secrets set {}`",
                    match &e {
                        berth_notify::Error::MissingSecret { secret, .. } => secret.as_str(),
                        _ => "NAME",
                    }
                )
            })
        })
        .collect()
}

/// Starts the notifier of `stack` (its targets' workers); deliveries that fail are recorded as
/// warning events.
pub fn start_notifier(
    targets: Vec<Target>,
    store: Arc<Mutex<Store>>,
    environment: String,
) -> Arc<Notifier> {
    let observer = Arc::new(move |delivery: Delivery| {
        let message = match &delivery.outcome {
            Outcome::Delivered { .. } => return,
            Outcome::Failed { attempts, error } => format!(
                "notification \"{}\" to `{}` failed after {attempts} attempt(s): {error}",
                delivery.subject, delivery.target
            ),
            Outcome::Dropped => format!(
                "notification \"{}\" to `{}` dropped: its queue is full",
                delivery.subject, delivery.target
            ),
        };
        let event = berth_model::Event::new(EventLevel::Warn, "notify", message);
        // The observer runs on a worker: the store is locked briefly, never awaited.
        let store = store.lock().unwrap_or_else(|e| e.into_inner());
        let _ = store.push_event(&environment, &event);
    });
    Arc::new(Notifier::start(targets, RetryPolicy::default(), observer))
}

impl AlarmContext {
    /// The context of a running stack.
    pub fn of(stack: &Stack) -> Option<AlarmContext> {
        Some(AlarmContext {
            store: stack.store.clone(),
            stack: stack.spec.stack.name.clone(),
            environment: stack.env_name().to_string(),
            notifier: stack.notifier.get()?.clone(),
            redact: stack.redaction_list(),
        })
    }

    fn mask(&self, text: &str) -> String {
        berth_supervisor::shim::redact_line(text, &self.redact)
    }

    fn with_store<T>(&self, f: impl FnOnce(&Store) -> anyhow::Result<T>) -> anyhow::Result<T> {
        let store = self.store.lock().unwrap_or_else(|e| e.into_inner());
        f(&store)
    }

    /// Evaluates `alarm` on `datapoints` at `now` from its stored state (INSUFFICIENT_DATA when
    /// none), records the outcome and, on a change into or out of ALARM, notifies its targets.
    pub fn apply(
        &self,
        alarm: &AlarmSpec,
        datapoints: &[Option<f64>],
        now: SystemTime,
    ) -> anyhow::Result<Option<Change>> {
        let at = unix(now);
        let stored = self.with_store(|s| s.alarm_state(&self.environment, &alarm.name))?;
        let previous = stored
            .as_ref()
            .and_then(|s| AlarmState::parse(&s.state))
            .unwrap_or(AlarmState::InsufficientData);
        let evaluation = berth_alarms::evaluate(alarm, datapoints, previous);
        let transition = self.with_store(|s| {
            s.record_alarm_evaluation(
                &self.environment,
                &alarm.name,
                evaluation.state.as_str(),
                &evaluation.reason,
                at,
            )
        })?;
        if !transition {
            return Ok(None);
        }
        let notified = worth_telling(previous, evaluation.state);
        let level = match evaluation.state {
            AlarmState::Alarm => EventLevel::Warn,
            _ => EventLevel::Info,
        };
        let message = format!(
            "alarm {} is {} (was {}): {}",
            alarm.name, evaluation.state, previous, evaluation.reason
        );
        let event = berth_model::Event::new(level, "alarm", message);
        self.with_store(|s| s.push_event(&self.environment, &event))?;
        if notified {
            self.notifier.send(self.alarm_notification(
                alarm,
                previous,
                evaluation.state,
                &evaluation.reason,
                datapoints,
                now,
            ));
        }
        Ok(Some(Change {
            alarm: alarm.name.clone(),
            previous,
            state: evaluation.state,
            reason: evaluation.reason,
            notified,
        }))
    }

    fn alarm_notification(
        &self,
        alarm: &AlarmSpec,
        previous: AlarmState,
        state: AlarmState,
        reason: &str,
        datapoints: &[Option<f64>],
        now: SystemTime,
    ) -> Notification {
        let mut text = format!("{reason}\nCondition: {}", condition(alarm));
        if let Some(description) = &alarm.description {
            text = format!("{description}\n{text}");
        }
        Notification {
            event: NotifyEvent::Alarm,
            stack: self.stack.clone(),
            environment: self.environment.clone(),
            subject: format!("{state}: {}", alarm.name),
            text,
            at: rfc3339(now),
            details: serde_json::json!({
                "alarm": alarm.name,
                "description": alarm.description,
                "state": state.as_str(),
                "previous": previous.as_str(),
                "reason": reason,
                "metric": alarm.metric,
                "labels": alarm.labels,
                "statistic": alarm.statistic.as_str(),
                "comparison": alarm.comparison.as_str(),
                "threshold": alarm.threshold,
                "period_seconds": alarm.period.as_secs(),
                "evaluation_periods": alarm.evaluation_periods,
                "datapoints_to_alarm": alarm.datapoints_to_alarm,
                "datapoints": datapoints,
            }),
            only: alarm.notify.clone(),
        }
    }

    /// Tells the targets that take deploy news how `record` ended.
    pub fn deploy_finished(&self, record: &DeployRecord) {
        if record.state == DeployState::Running {
            return;
        }
        let mut text = self.mask(&record.summary());
        if let Some(verdict) = &record.verdict {
            text.push_str(&format!("\nRule: {}", verdict.rule));
        }
        self.notifier.send(Notification {
            event: NotifyEvent::Deploy,
            stack: self.stack.clone(),
            environment: self.environment.clone(),
            subject: format!(
                "deploy {} of {} {}",
                record.id,
                record.service,
                record.state.as_str().replace('_', " ")
            ),
            text,
            at: rfc3339(SystemTime::now()),
            details: serde_json::json!({
                "deploy": record.id,
                "service": record.service,
                "state": record.state.as_str(),
                "strategy": record.strategy,
                "from_release": record.from_release.as_ref().map(|r| r.to_string()),
                "to_release": record.to_release.as_ref().map(|r| r.to_string()),
                "rollback": record.rollback,
                "verdict": record.verdict.as_ref().map(|v| serde_json::json!({"rule": v.rule, "message": self.mask(&v.message)})),
                "started_at": record.started_at,
                "finished_at": record.finished_at,
            }),
            only: Vec::new(),
        });
    }

    /// Tells the targets that take backup news that backup `id` failed.
    pub fn backup_failed(&self, id: &str, reason: &str, error: &str) {
        let error = self.mask(error);
        self.notifier.send(Notification {
            event: NotifyEvent::Backup,
            stack: self.stack.clone(),
            environment: self.environment.clone(),
            subject: format!("backup {id} failed"),
            text: format!("backup {id} ({reason}) failed: {error}"),
            at: rfc3339(SystemTime::now()),
            details: serde_json::json!({ "backup": id, "reason": reason, "error": error }),
            only: Vec::new(),
        });
    }
}

/// The API's view of `alarms` given their stored states.
pub fn list(
    alarms: &[AlarmSpec],
    stored: &[berth_store::StoredAlarm],
    history: Vec<AlarmTransition>,
    evaluating: bool,
) -> AlarmList {
    let stored: BTreeMap<&str, &berth_store::StoredAlarm> =
        stored.iter().map(|s| (s.name.as_str(), s)).collect();
    let names: Vec<&str> = alarms.iter().map(|a| a.name.as_str()).collect();
    AlarmList {
        alarms: alarms
            .iter()
            .map(|alarm| {
                let state = stored.get(alarm.name.as_str());
                AlarmView {
                    name: alarm.name.clone(),
                    description: alarm.description.clone(),
                    condition: condition(alarm),
                    state: state.map_or_else(
                        || AlarmState::InsufficientData.to_string(),
                        |s| s.state.clone(),
                    ),
                    reason: state.map_or_else(
                        || {
                            if evaluating {
                                "not evaluated yet".to_string()
                            } else {
                                "not evaluated: this daemon has no metrics source".to_string()
                            }
                        },
                        |s| s.reason.clone(),
                    ),
                    since: state.map(|s| s.since),
                    evaluated_at: state.map(|s| s.evaluated_at),
                    default: alarm.default,
                }
            })
            .collect(),
        evaluating,
        history: history
            .into_iter()
            .filter(|t| names.contains(&t.alarm.as_str()))
            .collect(),
    }
}

/// Evaluates every alarm of the stack from `source`, each every [`evaluation_interval`], until
/// aborted. The first evaluation of each alarm is one interval after the start (a fresh daemon
/// has no datapoints yet).
pub fn spawn_evaluator(
    context: AlarmContext,
    alarms: Vec<AlarmSpec>,
    source: Arc<dyn Datapoints>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let names: Vec<String> = alarms.iter().map(|a| a.name.clone()).collect();
        if let Err(e) = context.with_store(|s| s.forget_alarms_except(&context.environment, &names))
        {
            tracing::warn!("forgetting removed alarms: {e:#}");
        }
        let start = tokio::time::Instant::now();
        let mut next: Vec<tokio::time::Instant> = alarms
            .iter()
            .map(|a| start + evaluation_interval(a))
            .collect();
        loop {
            let Some(soonest) = next.iter().min().copied() else {
                return;
            };
            tokio::time::sleep_until(soonest).await;
            let now = tokio::time::Instant::now();
            for (i, alarm) in alarms.iter().enumerate() {
                if next[i] > now {
                    continue;
                }
                next[i] = now + evaluation_interval(alarm);
                let (source, spec) = (source.clone(), alarm.clone());
                let wall = SystemTime::now();
                let points =
                    tokio::task::spawn_blocking(move || source.datapoints(&spec, wall)).await;
                let points = match points {
                    Ok(Ok(points)) => points,
                    Ok(Err(e)) => {
                        tracing::warn!("alarm {}: reading its datapoints: {e:#}", alarm.name);
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!("alarm {}: {e}", alarm.name);
                        continue;
                    }
                };
                match context.apply(alarm, &points, wall) {
                    Ok(Some(change)) => tracing::info!(
                        "alarm {}: {} -> {}: {}",
                        change.alarm,
                        change.previous,
                        change.state,
                        change.reason
                    ),
                    Ok(None) => {}
                    Err(e) => tracing::warn!("alarm {}: {e:#}", alarm.name),
                }
            }
        }
    })
}

/// A threshold for people: at most four decimals, no trailing zeros (`80`, `0.0333`).
fn short(value: f64) -> String {
    let text = format!("{value:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text.is_empty() || text == "-" {
        "0".to_string()
    } else {
        text.to_string()
    }
}

fn unix(at: SystemTime) -> i64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

/// The alarms of a deploy's analysis: an alarm watching the service (`service = ...`) that
/// entered ALARM since this watch was made (the deploy's start) counts against the new release.
/// One already in ALARM before the deploy does not (the deploy may be its fix).
pub fn watch(
    store: &Arc<Mutex<Store>>,
    environment: &str,
    alarms: &[AlarmSpec],
) -> Arc<dyn berth_rollout::AlarmWatch> {
    Arc::new(StoreWatch {
        store: store.clone(),
        environment: environment.to_string(),
        since: unix(SystemTime::now()),
        alarms: alarms
            .iter()
            .filter_map(|a| Some((a.labels.get("service")?.clone(), a.name.clone())))
            .collect(),
    })
}

struct StoreWatch {
    store: Arc<Mutex<Store>>,
    environment: String,
    since: i64,
    /// (service, alarm name).
    alarms: Vec<(String, String)>,
}

impl berth_rollout::AlarmWatch for StoreWatch {
    fn firing(&self, service: &str) -> Option<(String, String)> {
        let store = self.store.lock().unwrap_or_else(|e| e.into_inner());
        self.alarms
            .iter()
            .filter(|(s, _)| s == service)
            .filter_map(|(_, name)| store.alarm_state(&self.environment, name).ok().flatten())
            .find(|state| state.state == AlarmState::Alarm.as_str() && state.since >= self.since)
            .map(|state| (state.name, state.reason))
    }
}

/// The metrics store as the source of datapoints: per alarm period, the alarm's statistic over
/// every series its labels select merged into one (`Store::query_merged`).
pub struct MetricsDatapoints(pub Arc<berth_metrics::Store>);

impl Datapoints for MetricsDatapoints {
    fn datapoints(&self, alarm: &AlarmSpec, now: SystemTime) -> anyhow::Result<Vec<Option<f64>>> {
        let span = alarm.period.saturating_mul(alarm.evaluation_periods.max(1));
        let query = berth_metrics::Query {
            name: alarm.metric.clone(),
            labels: alarm.labels.clone(),
            from: now.checked_sub(span).unwrap_or(SystemTime::UNIX_EPOCH),
            to: now,
            step: alarm.period,
            statistic: alarm.statistic,
        };
        let points = self
            .0
            .query_merged(&query)
            .with_context(|| format!("querying {} for alarm {}", alarm.metric, alarm.name))?;
        Ok(points.points.into_iter().map(|(_, value)| value).collect())
    }
}

/// Starts evaluating the stack's alarms from its metrics store (None when the stack has no
/// alarm, or no metrics store was opened).
pub fn start_evaluation(stack: &Arc<Stack>) -> Option<tokio::task::JoinHandle<()>> {
    if stack.spec.alarms.is_empty() {
        return None;
    }
    let metrics = stack.metrics.get()?;
    let context = AlarmContext::of(stack)?;
    stack
        .evaluating_alarms
        .store(true, std::sync::atomic::Ordering::Relaxed);
    Some(spawn_evaluator(
        context,
        stack.spec.alarms.clone(),
        Arc::new(MetricsDatapoints(metrics.store.clone())),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_spec::alarm::{Comparison, MissingData, NotifyTarget, Statistic};

    type Received = Arc<Mutex<Vec<(String, serde_json::Value)>>>;

    /// A webhook endpoint on loopback recording every JSON document by path.
    async fn endpoint() -> (
        std::net::SocketAddr,
        Received,
        tokio::sync::mpsc::UnboundedReceiver<()>,
    ) {
        let received: Received = Arc::default();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let state = (received.clone(), tx);
        async fn record(
            axum::extract::State((received, tx)): axum::extract::State<(
                Received,
                tokio::sync::mpsc::UnboundedSender<()>,
            )>,
            uri: axum::http::Uri,
            axum::Json(body): axum::Json<serde_json::Value>,
        ) -> axum::http::StatusCode {
            received
                .lock()
                .unwrap()
                .push((uri.path().to_string(), body));
            let _ = tx.send(());
            axum::http::StatusCode::OK
        }
        let app = axum::Router::new()
            .route("/{*path}", axum::routing::post(record))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (address, received, rx)
    }

    fn cpu_alarm(notify: &[&str]) -> AlarmSpec {
        AlarmSpec {
            name: "web-high-cpu".into(),
            description: Some("CPU of web".into()),
            metric: "cpu_percent".into(),
            labels: [("service".to_string(), "web".to_string())].into(),
            statistic: Statistic::Avg,
            comparison: Comparison::Greater,
            threshold: 80.0,
            period: Duration::from_secs(300),
            evaluation_periods: 2,
            datapoints_to_alarm: 2,
            missing: MissingData::Missing,
            notify: notify.iter().map(|s| s.to_string()).collect(),
            default: true,
        }
    }

    fn webhook(name: &str, url: String, events: &[NotifyEvent]) -> Target {
        Target::resolve(
            name,
            &NotifyTarget {
                kind: TargetKind::Webhook {
                    url: UrlSource::Inline(url),
                },
                events: events.to_vec(),
            },
            |_| None,
        )
        .unwrap()
    }

    async fn wait_for(rx: &mut tokio::sync::mpsc::UnboundedReceiver<()>, count: usize) {
        for _ in 0..count {
            tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("a notification within 5 s");
        }
    }

    #[tokio::test]
    async fn state_changes_are_stored_and_alarm_news_is_sent() {
        let folder = tempfile::tempdir().unwrap();
        let store = Arc::new(Mutex::new(
            Store::open(folder.path().join("state.db")).unwrap(),
        ));
        let (address, received, mut arrivals) = endpoint().await;
        let targets = vec![
            webhook("ops", format!("http://{address}/ops"), NotifyEvent::ALL),
            // Not in the alarm's `notify`: hears of deploys and backups only.
            webhook("team", format!("http://{address}/team"), NotifyEvent::ALL),
            webhook(
                "deploys",
                format!("http://{address}/deploys"),
                &[NotifyEvent::Deploy],
            ),
        ];
        let context = AlarmContext {
            store: store.clone(),
            stack: "shop".into(),
            environment: "production".into(),
            notifier: start_notifier(targets, store.clone(), "production".into()),
            redact: vec!["s3cr3t-pw".into()],
        };
        let alarm = cpu_alarm(&["ops"]);
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let at = |minutes: u64| t0 + Duration::from_secs(minutes * 60);

        // First evaluation: INSUFFICIENT_DATA -> OK is recorded, not sent.
        let change = context
            .apply(&alarm, &[Some(50.0), Some(60.0)], at(0))
            .unwrap()
            .unwrap();
        assert_eq!(
            (change.previous, change.state, change.notified),
            (AlarmState::InsufficientData, AlarmState::Ok, false)
        );
        // Two breaching periods: ALARM, sent to `ops` only.
        let change = context
            .apply(&alarm, &[Some(85.1), Some(90.3)], at(5))
            .unwrap()
            .unwrap();
        assert_eq!((change.state, change.notified), (AlarmState::Alarm, true));
        assert_eq!(
            change.reason,
            "Threshold Crossed: 2 out of the last 2 datapoints [85.1, 90.3] were greater than the threshold (80.0) (minimum 2 datapoints for OK -> ALARM transition)."
        );
        // Still breaching: no change, nothing sent.
        assert_eq!(
            context
                .apply(&alarm, &[Some(90.3), Some(95.0)], at(10))
                .unwrap(),
            None
        );
        // Back under: OK, sent.
        let change = context
            .apply(&alarm, &[Some(95.0), Some(20.0)], at(15))
            .unwrap()
            .unwrap();
        assert_eq!(
            (change.previous, change.state, change.notified),
            (AlarmState::Alarm, AlarmState::Ok, true)
        );
        wait_for(&mut arrivals, 2).await;

        {
            let received = received.lock().unwrap();
            let paths: Vec<&str> = received.iter().map(|(p, _)| p.as_str()).collect();
            assert_eq!(paths, ["/ops", "/ops"]);
            let alarm_doc = &received[0].1;
            assert_eq!(alarm_doc["event"], "alarm");
            assert_eq!(alarm_doc["subject"], "ALARM: web-high-cpu");
            assert_eq!(alarm_doc["stack"], "shop");
            assert_eq!(alarm_doc["details"]["previous"], "OK");
            assert_eq!(alarm_doc["details"]["threshold"], 80.0);
            assert_eq!(
                alarm_doc["details"]["datapoints"],
                serde_json::json!([85.1, 90.3])
            );
            assert_eq!(received[1].1["subject"], "OK: web-high-cpu");
        }

        // The store has the state and the history; the list shows them.
        let (stored, history) = {
            let store = store.lock().unwrap();
            (
                store.alarm_states("production").unwrap(),
                store.alarm_history("production", None, 10).unwrap(),
            )
        };
        assert_eq!(stored[0].state, "OK");
        assert_eq!(stored[0].since, unix(at(15)));
        assert_eq!(stored[0].evaluated_at, unix(at(15)));
        let states: Vec<&str> = history.iter().map(|t| t.state.as_str()).collect();
        assert_eq!(states, ["OK", "ALARM", "OK"]);
        let other = cpu_alarm(&[]);
        let other = AlarmSpec {
            name: "never".into(),
            ..other
        };
        let view = list(&[alarm.clone(), other], &stored, history, true);
        assert_eq!(view.alarms[0].state, "OK");
        assert_eq!(
            view.alarms[0].condition,
            "avg cpu_percent{service=web} > 80 for 2 of 2 periods of 5m"
        );
        assert_eq!(view.alarms[1].state, "INSUFFICIENT_DATA");
        assert_eq!(view.alarms[1].reason, "not evaluated yet");
        assert_eq!(view.history.len(), 3);

        // A deploy outcome and a failed backup go to every target that takes them.
        let record: DeployRecord = serde_json::from_value(serde_json::json!({
            "id": 7, "service": "web", "env": "production", "strategy": "canary",
            "from_release": null, "to_release": null, "state": "rolled_back",
            "started_at": 100, "finished_at": 160,
            "verdict": {"rule": "error-rate", "message": "5xx 12% > 5%"}, "steps": []
        }))
        .unwrap();
        context.deploy_finished(&record);
        context.backup_failed(
            "20261130-0300",
            "schedule",
            "pg_dump: postgres://shop:s3cr3t-pw@127.0.0.1/shop: connection refused",
        );
        wait_for(&mut arrivals, 5).await;
        let received = received.lock().unwrap();
        let news: Vec<(&str, &str)> = received[2..]
            .iter()
            .map(|(p, doc)| (p.as_str(), doc["subject"].as_str().unwrap()))
            .collect();
        for expected in [
            ("/ops", "deploy 7 of web rolled back"),
            ("/team", "deploy 7 of web rolled back"),
            ("/deploys", "deploy 7 of web rolled back"),
            ("/ops", "backup 20261130-0300 failed"),
            ("/team", "backup 20261130-0300 failed"),
        ] {
            assert!(news.contains(&expected), "{expected:?} not in {news:?}");
        }
        assert_eq!(news.len(), 5);
        let backup = &received
            .iter()
            .find(|(p, d)| p == "/ops" && d["event"] == "backup")
            .unwrap()
            .1;
        assert_eq!(
            backup["details"]["error"],
            "pg_dump: postgres://shop:[redacted]@127.0.0.1/shop: connection refused"
        );
    }

    #[test]
    fn a_target_whose_secret_is_not_set_is_named() {
        let folder = tempfile::tempdir().unwrap();
        let toml = "[notify.chat]\nkind = \"slack\"\nurl_secret = \"SLACK_URL\"\n";
        let spec_path = folder.path().join("berth.toml");
        std::fs::write(&spec_path, toml).unwrap();
        let spec = berth_spec::load(&spec_path, None).unwrap();
        let paths = berth_model::StatePaths::new(&spec.path, &spec.environment);
        // An empty secrets store: the target cannot be resolved, and the error says what to do.
        let error = match targets(&spec, &paths) {
            Ok(_) => panic!("resolved without the secret"),
            Err(e) => format!("{e:#}"),
        };
        assert_eq!(
            error,
            "target `chat` needs the secret `SLACK_URL`, which is not set; set it with `berth secrets set SLACK_URL`"
        );
        crate::secrets::store(&paths, &spec.environment)
            .update(|s| {
                s.set("SLACK_URL", "https://hooks.example.com/T0KEN", false, 0);
                Ok(())
            })
            .unwrap();
        let resolved = targets(&spec, &paths).unwrap();
        assert_eq!(resolved.len(), 1);
        assert!(!format!("{resolved:?}").contains("T0KEN"));
    }

    #[test]
    fn only_changes_into_or_out_of_alarm_are_news() {
        use AlarmState::*;
        assert!(worth_telling(Ok, Alarm));
        assert!(worth_telling(InsufficientData, Alarm));
        assert!(worth_telling(Alarm, Ok));
        assert!(worth_telling(Alarm, InsufficientData));
        assert!(!worth_telling(InsufficientData, Ok));
        assert!(!worth_telling(Ok, InsufficientData));
        assert!(!worth_telling(Alarm, Alarm));
        let mut alarm = cpu_alarm(&[]);
        assert_eq!(evaluation_interval(&alarm), Duration::from_secs(60));
        alarm.period = Duration::from_secs(10);
        assert_eq!(evaluation_interval(&alarm), Duration::from_secs(10));
    }

    #[test]
    fn only_an_alarm_that_fires_during_the_deploy_counts_against_it() {
        let folder = tempfile::tempdir().unwrap();
        let store = Arc::new(Mutex::new(
            Store::open(folder.path().join("state.db")).unwrap(),
        ));
        let now = unix(SystemTime::now());
        let record = |name: &str, state: &str, at: i64| {
            store
                .lock()
                .unwrap()
                .record_alarm_evaluation("default", name, state, "Threshold Crossed", at)
                .unwrap();
        };
        // Already in ALARM before the deploy: its fix must be deployable.
        record("web-high-cpu", "ALARM", now - 600);
        let alarms = vec![
            cpu_alarm(&[]),
            AlarmSpec {
                name: "web-5xx".into(),
                ..cpu_alarm(&[])
            },
            AlarmSpec {
                name: "api-5xx".into(),
                labels: [("service".to_string(), "api".to_string())].into(),
                ..cpu_alarm(&[])
            },
        ];
        let watch = watch(&store, "default", &alarms);
        assert_eq!(watch.firing("web"), None);
        record("web-5xx", "OK", now);
        record("api-5xx", "ALARM", now + 1);
        assert_eq!(watch.firing("web"), None);
        record("web-5xx", "ALARM", now + 2);
        assert_eq!(
            watch.firing("web"),
            Some(("web-5xx".to_string(), "Threshold Crossed".to_string()))
        );
        assert_eq!(watch.firing("api").unwrap().0, "api-5xx");
        assert_eq!(watch.firing("worker"), None);
    }

    #[test]
    fn the_collector_writes_the_catalogue_of_the_spec() {
        assert_eq!(
            crate::metrics::CATALOGUE.to_vec(),
            berth_spec::metric_names::names()
        );
    }

    #[tokio::test]
    async fn datapoints_come_from_the_metrics_store_merged_over_the_service() {
        let folder = tempfile::tempdir().unwrap();
        let metrics = Arc::new(
            berth_metrics::Store::open(folder.path().join("metrics.db"), Default::default())
                .unwrap(),
        );
        let store = Arc::new(Mutex::new(
            Store::open(folder.path().join("state.db")).unwrap(),
        ));
        let (address, received, mut arrivals) = endpoint().await;
        let context = AlarmContext {
            store: store.clone(),
            stack: "shop".into(),
            environment: "default".into(),
            notifier: start_notifier(
                vec![webhook(
                    "ops",
                    format!("http://{address}/ops"),
                    NotifyEvent::ALL,
                )],
                store.clone(),
                "default".into(),
            ),
            redact: Vec::new(),
        };
        let alarm = AlarmSpec {
            period: Duration::from_secs(10),
            evaluation_periods: 3,
            datapoints_to_alarm: 2,
            ..cpu_alarm(&[])
        };
        let source = MetricsDatapoints(metrics.clone());
        // A whole number of 10 s intervals, so each write falls in the period meant.
        let base = unix(SystemTime::now()) / 10 * 10 - 600;
        let at =
            |seconds: i64| SystemTime::UNIX_EPOCH + Duration::from_secs((base + seconds) as u64);
        let write = |seconds: i64, web: [f64; 2], api: f64| {
            let samples = [
                berth_metrics::Sample::value(
                    "cpu_percent",
                    &[("service", "web"), ("replica", "web.1"), ("release", "r1")],
                    "replica:web.1",
                    web[0],
                ),
                berth_metrics::Sample::value(
                    "cpu_percent",
                    &[("service", "web"), ("replica", "web.2"), ("release", "r1")],
                    "replica:web.2",
                    web[1],
                ),
                berth_metrics::Sample::value(
                    "cpu_percent",
                    &[("service", "api"), ("replica", "api.1"), ("release", "r1")],
                    "replica:api.1",
                    api,
                ),
            ];
            metrics.write(at(seconds), &samples).unwrap();
        };
        write(5, [50.0, 60.0], 99.0);
        write(15, [90.0, 95.0], 99.0);
        write(25, [85.0, 88.0], 99.0);

        // Nothing yet in the window's first period: the three periods up to 10 s.
        assert_eq!(
            source.datapoints(&alarm, at(10)).unwrap(),
            [None, None, Some(55.0)]
        );
        let points = source.datapoints(&alarm, at(30)).unwrap();
        assert_eq!(points, [Some(55.0), Some(92.5), Some(86.5)]);
        let change = context.apply(&alarm, &points, at(30)).unwrap().unwrap();
        assert_eq!((change.state, change.notified), (AlarmState::Alarm, true));
        assert!(
            change.reason.starts_with(
                "Threshold Crossed: 2 out of the last 3 datapoints [55.0, 92.5, 86.5]"
            ),
            "{}",
            change.reason
        );

        // The load goes: two calm periods bring it back to OK.
        write(35, [20.0, 30.0], 99.0);
        write(45, [10.0, 10.0], 99.0);
        let points = source.datapoints(&alarm, at(50)).unwrap();
        assert_eq!(points, [Some(86.5), Some(25.0), Some(10.0)]);
        let change = context.apply(&alarm, &points, at(50)).unwrap().unwrap();
        assert_eq!(
            (change.previous, change.state),
            (AlarmState::Alarm, AlarmState::Ok)
        );
        wait_for(&mut arrivals, 2).await;
        let subjects: Vec<String> = received
            .lock()
            .unwrap()
            .iter()
            .map(|(_, doc)| doc["subject"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(subjects, ["ALARM: web-high-cpu", "OK: web-high-cpu"]);
    }
}
