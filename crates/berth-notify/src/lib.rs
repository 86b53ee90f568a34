//! Notifications: alarm state changes, deploy outcomes and failed backups sent to the stack's
//! `[notify.NAME]` targets: a JSON webhook, a Slack-compatible webhook, email over SMTP, a shell
//! command reading the JSON on its standard input.
//!
//! [`Notifier::send`] never waits: each target has its own bounded queue and worker task, so a
//! caller (the control loop, a deploy) only pays for a `try_send`, and a target that hangs or
//! refuses only delays its own queue. Every attempt has a timeout; failures are retried with
//! exponential back-off up to a cap. A full queue drops the notification for that target (and
//! says so). Secrets (a webhook URL with its token, the SMTP password) are [`Secret`]s: never
//! formatted, never in an error.
//!
//! Knows nothing of alarms' evaluation, the store or the daemon: it sends what it is handed.

mod channel;

use std::sync::Arc;
use std::time::Duration;

use berth_spec::alarm::{NotifyEvent, NotifyTarget, TargetKind, UrlSource};
use serde::Serialize;
use tokio::sync::mpsc;

pub use channel::deliver;

/// A value that is never shown: `Debug` and `Display` print `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// What is sent: the JSON document of webhooks and commands, the text of Slack and email.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notification {
    /// `alarm`, `deploy` or `backup`.
    pub event: NotifyEvent,
    pub stack: String,
    pub environment: String,
    /// One line: "ALARM: web-high-cpu", "deploy of web rolled back".
    pub subject: String,
    /// A few lines for humans (Slack, email).
    pub text: String,
    /// RFC 3339.
    pub at: String,
    /// The event's own fields (an alarm's name, state, previous state, reason, metric...).
    pub details: serde_json::Value,
    /// Only these targets (empty: every target that takes this event).
    #[serde(skip)]
    pub only: Vec<String>,
}

/// Where a target sends, with its secrets resolved.
#[derive(Debug, Clone)]
pub enum Channel {
    Webhook {
        url: Secret,
    },
    Slack {
        url: Secret,
    },
    Email {
        host: String,
        port: u16,
        from: String,
        to: Vec<String>,
        starttls: bool,
        credentials: Option<(String, Secret)>,
    },
    Command {
        run: String,
        timeout: Duration,
    },
}

/// A target ready to send.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub channel: Channel,
    pub events: Vec<NotifyEvent>,
}

impl Target {
    /// The target `name` of the spec, its secrets looked up with `secret` (a secret of the
    /// environment by name).
    pub fn resolve(
        name: &str,
        spec: &NotifyTarget,
        secret: impl Fn(&str) -> Option<String>,
    ) -> Result<Target, Error> {
        let missing = |secret_name: &str| Error::MissingSecret {
            target: name.to_string(),
            secret: secret_name.to_string(),
        };
        let url = |source: &UrlSource| match source {
            UrlSource::Inline(url) => Ok(Secret::new(url.clone())),
            UrlSource::Secret(secret_name) => secret(secret_name)
                .map(Secret::new)
                .ok_or_else(|| missing(secret_name)),
        };
        let channel = match &spec.kind {
            TargetKind::Webhook { url: source } => Channel::Webhook { url: url(source)? },
            TargetKind::Slack { url: source } => Channel::Slack { url: url(source)? },
            TargetKind::Email {
                host,
                port,
                from,
                to,
                starttls,
                user,
                password_secret,
            } => Channel::Email {
                host: host.clone(),
                port: *port,
                from: from.clone(),
                to: to.clone(),
                starttls: *starttls,
                credentials: match (user, password_secret) {
                    (Some(user), Some(secret_name)) => Some((
                        user.clone(),
                        secret(secret_name)
                            .map(Secret::new)
                            .ok_or_else(|| missing(secret_name))?,
                    )),
                    _ => None,
                },
            },
            TargetKind::Command { run, timeout } => Channel::Command {
                run: run.clone(),
                timeout: *timeout,
            },
        };
        Ok(Target {
            name: name.to_string(),
            channel,
            events: spec.events.clone(),
        })
    }
}

/// Why a delivery failed. Never holds a URL or a password.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    #[error("the endpoint answered HTTP {0}")]
    Status(u16),
    #[error("request failed: {0}")]
    Request(String),
    #[error("SMTP: {0}")]
    Smtp(String),
    #[error("command: {0}")]
    Command(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("target `{target}` needs the secret `{secret}`, which is not set")]
    MissingSecret { target: String, secret: String },
}

/// Attempts, their timeout and the back-off between them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts per notification and target, the first included.
    pub attempts: u32,
    /// The longest an attempt (an HTTP request, an SMTP session) may take; a command has its own
    /// `timeout`.
    pub attempt_timeout: Duration,
    /// The wait after the first failure; it doubles after each further one, up to `max_delay`.
    pub first_delay: Duration,
    pub max_delay: Duration,
    /// Notifications waiting per target; more are dropped (and reported).
    pub queue: usize,
}

impl Default for RetryPolicy {
    /// 5 attempts of at most 10 s, 2 s back-off doubling to 60 s, 64 waiting per target.
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            attempt_timeout: Duration::from_secs(10),
            first_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(60),
            queue: 64,
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1` after attempt `attempt` (1-based) failed.
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.first_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// What happened to one notification at one target.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Delivered {
        attempts: u32,
    },
    Failed {
        attempts: u32,
        error: Error,
    },
    /// The target's queue was full.
    Dropped,
}

/// One outcome, for the observer (the daemon records failures as events).
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub target: String,
    pub subject: String,
    pub outcome: Outcome,
}

/// Called from the workers with every outcome; must not block.
pub type Observer = Arc<dyn Fn(Delivery) + Send + Sync>;

/// The stack's targets, each with its queue and worker. Dropping it lets the workers finish
/// their queues and end.
pub struct Notifier {
    targets: Vec<(Target, mpsc::Sender<Arc<Notification>>)>,
    observer: Observer,
}

impl Notifier {
    /// Starts one worker task per target (on the current tokio runtime).
    pub fn start(targets: Vec<Target>, policy: RetryPolicy, observer: Observer) -> Notifier {
        let client = reqwest::Client::builder()
            // The whole attempt's timeout is the worker's (one error for every channel).
            .connect_timeout(policy.attempt_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        let targets = targets
            .into_iter()
            .map(|target| {
                let (sender, receiver) = mpsc::channel(policy.queue.max(1));
                tokio::spawn(worker(
                    target.clone(),
                    receiver,
                    policy,
                    client.clone(),
                    observer.clone(),
                ));
                (target, sender)
            })
            .collect();
        Notifier { targets, observer }
    }

    /// The names of the targets.
    pub fn target_names(&self) -> Vec<String> {
        self.targets.iter().map(|(t, _)| t.name.clone()).collect()
    }

    /// Queues `notification` for every target that takes its event (and is in its `only` list
    /// when that is not empty). Never waits; returns how many targets it was queued for.
    pub fn send(&self, notification: Notification) -> usize {
        let notification = Arc::new(notification);
        let mut queued = 0;
        for (target, sender) in &self.targets {
            if !target.events.contains(&notification.event)
                || (!notification.only.is_empty() && !notification.only.contains(&target.name))
            {
                continue;
            }
            match sender.try_send(notification.clone()) {
                Ok(()) => queued += 1,
                Err(_) => {
                    tracing::warn!(target = %target.name, subject = %notification.subject, "notification queue full: dropped");
                    (self.observer)(Delivery {
                        target: target.name.clone(),
                        subject: notification.subject.clone(),
                        outcome: Outcome::Dropped,
                    });
                }
            }
        }
        queued
    }
}

async fn worker(
    target: Target,
    mut receiver: mpsc::Receiver<Arc<Notification>>,
    policy: RetryPolicy,
    client: reqwest::Client,
    observer: Observer,
) {
    while let Some(notification) = receiver.recv().await {
        let mut attempt = 0;
        let outcome = loop {
            attempt += 1;
            let result = match &target.channel {
                // A command has its own timeout (and kills its process group when it expires).
                Channel::Command { .. } => deliver(&target.channel, &notification, &client).await,
                _ => tokio::time::timeout(
                    policy.attempt_timeout,
                    deliver(&target.channel, &notification, &client),
                )
                .await
                .unwrap_or(Err(Error::Timeout(policy.attempt_timeout))),
            };
            match result {
                Ok(()) => break Outcome::Delivered { attempts: attempt },
                Err(error) if attempt >= policy.attempts.max(1) => {
                    break Outcome::Failed {
                        attempts: attempt,
                        error,
                    }
                }
                Err(error) => {
                    let delay = policy.delay_after(attempt);
                    tracing::info!(target = %target.name, attempt, %error, ?delay, "notification failed; retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        };
        match &outcome {
            Outcome::Failed { attempts, error } => {
                tracing::warn!(target = %target.name, subject = %notification.subject, attempts, %error, "notification not delivered")
            }
            _ => {
                tracing::debug!(target = %target.name, subject = %notification.subject, "notification delivered")
            }
        }
        observer(Delivery {
            target: target.name.clone(),
            subject: notification.subject.clone(),
            outcome,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_spec::alarm::DEFAULT_SMTP_PORT;

    #[test]
    fn secrets_are_never_formatted() {
        let spec = NotifyTarget {
            kind: TargetKind::Email {
                host: "smtp.example.com".into(),
                port: DEFAULT_SMTP_PORT,
                from: "berth@example.com".into(),
                to: vec!["ops@example.com".into()],
                starttls: true,
                user: Some("berth".into()),
                password_secret: Some("SMTP_PASSWORD".into()),
            },
            events: NotifyEvent::ALL.to_vec(),
        };
        let target = Target::resolve("mail", &spec, |name| {
            (name == "SMTP_PASSWORD").then(|| "hunter2".to_string())
        })
        .unwrap();
        let shown = format!("{target:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("[redacted]"));
        let webhook = NotifyTarget {
            kind: TargetKind::Webhook {
                url: UrlSource::Secret("HOOK".into()),
            },
            events: vec![NotifyEvent::Alarm],
        };
        let error = Target::resolve("ops", &webhook, |_| None).unwrap_err();
        assert_eq!(
            error.to_string(),
            "target `ops` needs the secret `HOOK`, which is not set"
        );
        let target = Target::resolve("ops", &webhook, |_| {
            Some("https://hooks.example.com/T0KEN".into())
        })
        .unwrap();
        assert!(!format!("{target:?}").contains("T0KEN"));
    }

    #[test]
    fn back_off_doubles_up_to_the_cap() {
        let policy = RetryPolicy {
            first_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(10),
            ..RetryPolicy::default()
        };
        let delays: Vec<u64> = (1..=6).map(|a| policy.delay_after(a).as_secs()).collect();
        assert_eq!(delays, [2, 4, 8, 10, 10, 10]);
        assert_eq!(policy.delay_after(u32::MAX), Duration::from_secs(10));
    }
}
