//! `[[service.NAME.cron]]`: scheduled one-off tasks of a service's current release.
//!
//! Decide, then do: [`decide`] is a pure function of the schedule, the last time looked at, the
//! time now and whether the entry's previous run still goes; the loop in [`spawn`] reads a clock,
//! asks it, and turns the answer into a run (a task, like `berth run --detach`, with its log in
//! `.berth/ENV/cron/SERVICE.N/`) or a skip event. Times that passed while nothing looked (the
//! daemon was down, the machine slept) are not caught up: several missed times make one run.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_model::EventLevel;
use chrono::{DateTime, Local, TimeZone};
use tracing::Instrument;

use crate::stack::Stack;
use crate::tasks;

/// Scheduled runs' logs kept per entry.
const LOGS_KEPT: usize = 20;

/// The test-only clock: when this variable names a file, the scheduler reads the time from it
/// (unix seconds) instead of the system clock, and looks every 50 ms. The end-to-end tests use
/// it to move time forward; nothing else sets it.
pub const TEST_CLOCK_VAR: &str = "BERTH_TEST_CLOCK_FILE";

/// What to do about one entry now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CronDecision<Tz: TimeZone> {
    /// No scheduled time in (last, now].
    Idle,
    /// A scheduled time came (`due`, the latest one if several did): run the entry.
    Start { due: DateTime<Tz> },
    /// A scheduled time came, but the previous run still goes: skip it (never two at once).
    Skip { due: DateTime<Tz> },
}

/// The decision for an entry with `schedule`, looked at last at `last` and now at `now`.
pub fn decide<Tz: TimeZone>(
    schedule: &croner::Cron,
    last: &DateTime<Tz>,
    now: &DateTime<Tz>,
    running: bool,
) -> CronDecision<Tz> {
    let mut due = None;
    let mut from = last.clone();
    // The latest scheduled time in (last, now]; bounded, since a schedule fires at most once a
    // minute and a long gap needs no more than its last time.
    for _ in 0..10_000 {
        match schedule.find_next_occurrence(&from, false) {
            Ok(next) if next <= *now => {
                from = next.clone();
                due = Some(next);
            }
            _ => break,
        }
    }
    match (due, running) {
        (None, _) => CronDecision::Idle,
        (Some(due), false) => CronDecision::Start { due },
        (Some(due), true) => CronDecision::Skip { due },
    }
}

/// One entry of the spec, with whether its run goes now.
struct Entry {
    service: String,
    index: usize,
    schedule_text: String,
    schedule: croner::Cron,
    run: String,
    running: Arc<AtomicBool>,
}

impl Entry {
    fn label(&self) -> String {
        format!(
            "cron {}[{}] `{}`",
            self.service, self.index, self.schedule_text
        )
    }
}

enum Clock {
    System,
    /// Test only (see [`TEST_CLOCK_VAR`]).
    File(PathBuf),
}

impl Clock {
    fn from_env() -> Clock {
        match std::env::var_os(TEST_CLOCK_VAR) {
            Some(path) => Clock::File(PathBuf::from(path)),
            None => Clock::System,
        }
    }

    fn now(&self) -> Option<DateTime<Local>> {
        match self {
            Clock::System => Some(Local::now()),
            Clock::File(path) => {
                let text = std::fs::read_to_string(path).ok()?;
                let secs: i64 = text.trim().parse().ok()?;
                Local.timestamp_opt(secs, 0).single()
            }
        }
    }

    fn tick(&self) -> Duration {
        match self {
            Clock::System => Duration::from_secs(1),
            Clock::File(_) => Duration::from_millis(50),
        }
    }
}

/// Starts the scheduler of the stack's cron entries (None when there are none).
pub fn spawn(stack: Arc<Stack>) -> Option<tokio::task::JoinHandle<()>> {
    let mut entries = Vec::new();
    for service in stack.spec.services.values() {
        for (index, cron) in service.cron.iter().enumerate() {
            match berth_spec::parse_schedule(&cron.schedule) {
                Ok(schedule) => entries.push(Entry {
                    service: service.name.clone(),
                    index,
                    schedule_text: cron.schedule.clone(),
                    schedule,
                    run: cron.run.clone(),
                    running: Arc::default(),
                }),
                // Validated with the spec; kept for safety.
                Err(e) => tracing::error!("cron {}[{index}]: {e}", service.name),
            }
        }
    }
    if entries.is_empty() {
        return None;
    }
    let clock = Clock::from_env();
    Some(tokio::spawn(async move {
        let mut last = loop {
            if let Some(now) = clock.now() {
                break now;
            }
            tokio::time::sleep(clock.tick()).await;
        };
        tracing::info!("cron: {} entries scheduled", entries.len());
        loop {
            tokio::time::sleep(clock.tick()).await;
            let Some(now) = clock.now() else { continue };
            for entry in &entries {
                let running = entry.running.load(Ordering::SeqCst);
                match decide(&entry.schedule, &last, &now, running) {
                    CronDecision::Idle => {}
                    CronDecision::Skip { due } => stack.record(
                        EventLevel::Warn,
                        &entry.service,
                        format!(
                            "{}: skipped the run due at {}: the previous run still goes",
                            entry.label(),
                            due.format("%Y-%m-%d %H:%M")
                        ),
                    ),
                    CronDecision::Start { due } => start(&stack, entry, due),
                }
            }
            last = last.max(now);
        }
    }))
}

/// Runs an entry once, as a task of the service's current release.
fn start(stack: &Arc<Stack>, entry: &Entry, due: DateTime<Local>) {
    let plan = match tasks::task_plan(stack, &entry.service, None) {
        Ok(plan) => plan,
        Err(refusal) => {
            let why = match refusal {
                tasks::TaskRefusal::NotFound(m) | tasks::TaskRefusal::Held(m) => m,
                tasks::TaskRefusal::Other(e) => format!("{e:#}"),
            };
            stack.record(
                EventLevel::Error,
                &entry.service,
                format!(
                    "{}: the run due at {due} did not start: {why}",
                    entry.label()
                ),
            );
            return;
        }
    };
    let dir = stack
        .paths
        .env_dir
        .join("cron")
        .join(format!("{}.{}", entry.service, entry.index));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        tracing::error!("cron: creating {}: {e}", dir.display());
    }
    let log = dir.join(format!("{}.log", due.format("%Y%m%dT%H%M%S")));
    entry.running.store(true, Ordering::SeqCst);
    let running = entry.running.clone();
    let stack = stack.clone();
    let label = entry.label();
    let service = entry.service.clone();
    let command = entry.run.clone();
    let span =
        tracing::info_span!("cron", service = %entry.service, entry = entry.index, due = %due);
    tokio::spawn(
        async move {
            let began = Instant::now();
            let outcome = tasks::run_logged(&plan, &command, &log, tasks::TASK_TIMEOUT).await;
            let (level, how) = match outcome {
                Ok(o) if o.success => (EventLevel::Info, o.how),
                Ok(o) => (
                    EventLevel::Error,
                    format!("failed ({}): {}", o.how, tasks::tail(&o)),
                ),
                Err(e) => (EventLevel::Error, format!("could not run: {e:#}")),
            };
            stack.record(
                level,
                &service,
                format!(
                    "{label}: run due at {} on {}: {how} after {:.1}s; log {}",
                    due.format("%Y-%m-%d %H:%M"),
                    plan.release.id,
                    began.elapsed().as_secs_f64(),
                    log.display()
                ),
            );
            prune_logs(&dir);
            running.store(false, Ordering::SeqCst);
            tracing::info!("run ended");
        }
        .instrument(span),
    );
}

/// Keeps the newest [`LOGS_KEPT`] logs of an entry (their names sort by time).
fn prune_logs(dir: &std::path::Path) {
    let Ok(read) = std::fs::read_dir(dir) else {
        return;
    };
    let mut logs: Vec<PathBuf> = read.flatten().map(|e| e.path()).collect();
    logs.sort();
    let excess = logs.len().saturating_sub(LOGS_KEPT);
    for old in &logs[..excess] {
        let _ = std::fs::remove_file(old);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 1, 2, h, m, s).unwrap()
    }

    fn every_5_minutes() -> croner::Cron {
        berth_spec::parse_schedule("*/5 * * * *").unwrap()
    }

    #[test]
    fn nothing_happens_between_scheduled_times() {
        let cron = every_5_minutes();
        assert_eq!(
            decide(&cron, &at(10, 0, 1), &at(10, 4, 59), false),
            CronDecision::Idle
        );
    }

    #[test]
    fn a_scheduled_time_that_came_starts_a_run_once() {
        let cron = every_5_minutes();
        assert_eq!(
            decide(&cron, &at(10, 4, 59), &at(10, 5, 0), false),
            CronDecision::Start { due: at(10, 5, 0) }
        );
        // The next look starts from the time already handled.
        assert_eq!(
            decide(&cron, &at(10, 5, 0), &at(10, 5, 1), false),
            CronDecision::Idle
        );
    }

    #[test]
    fn a_run_that_still_goes_makes_the_next_one_skip() {
        let cron = every_5_minutes();
        assert_eq!(
            decide(&cron, &at(10, 9, 59), &at(10, 10, 0), true),
            CronDecision::Skip { due: at(10, 10, 0) }
        );
    }

    #[test]
    fn missed_times_make_one_run_at_the_latest() {
        let cron = every_5_minutes();
        assert_eq!(
            decide(&cron, &at(10, 0, 30), &at(10, 31, 0), false),
            CronDecision::Start { due: at(10, 30, 0) }
        );
    }

    #[test]
    fn a_clock_that_went_back_does_nothing() {
        let cron = every_5_minutes();
        assert_eq!(
            decide(&cron, &at(10, 6, 0), &at(10, 1, 0), false),
            CronDecision::Idle
        );
    }
}
