//! Keeps the accessory servers alive while the daemon runs: one task per accessory waits for its
//! server to end; a death that nobody asked for is recorded (on the accessory, with how it ended,
//! and on every service that uses or `depends_on` it), what is left of the server is killed, and
//! it is started again with the [`RestartPolicy`] back-off: `ensure_running` waits for readiness
//! and re-checks the database and user, so the services' URLs keep working. Deliberate stops
//! (shutdown, a Redis restore) hold the keeper off.
//!
//! Owns the accessories' supervision state shown by `berth status`; knows nothing of replicas or
//! the edge (services learn of an outage as events, and their status shows it).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_model::{EventLevel, RestartPolicy, RestartVerdict};
use tracing::Instrument;

use crate::stack::Stack;

/// How accessories are restarted: at once, then with the replicas' back-off.
pub const ACCESSORY_RESTARTS: RestartPolicy = RestartPolicy::KEEP_ALIVE;

/// How often a held accessory is looked at again.
const HELD_POLL: Duration = Duration::from_millis(200);

/// The supervision state of every accessory (lives in the [`Stack`]).
#[derive(Default)]
pub struct AccessoryWatch {
    states: Mutex<BTreeMap<String, Watched>>,
    /// Accessories stopped on purpose for a while (a restore): not restarted meanwhile.
    held: Mutex<BTreeSet<String>>,
    /// Set when the stack stops: no more restarts.
    stopping: AtomicBool,
}

/// What `berth status` shows of one accessory's supervision.
#[derive(Debug, Clone, Default)]
pub struct Watched {
    /// None while up; `restarting` or `crash-looping` while down.
    pub down: Option<&'static str>,
    pub restarts: u32,
    pub last_exit: Option<String>,
}

impl AccessoryWatch {
    pub fn get(&self, name: &str) -> Watched {
        self.states
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
            .unwrap_or_default()
    }

    /// The accessories that are down now (died and not back yet).
    pub fn down(&self) -> BTreeSet<String> {
        self.states
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, w)| w.down.is_some())
            .map(|(name, _)| name.clone())
            .collect()
    }

    fn update(&self, name: &str, f: impl FnOnce(&mut Watched)) {
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        f(states.entry(name.to_string()).or_default());
    }

    /// No more restarts: the stack stops its accessories.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// Holds the keeper of `name` off until the guard is dropped (the server is stopped and
    /// started on purpose meanwhile).
    pub fn hold(self: &Arc<Self>, name: &str) -> Hold {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string());
        Hold {
            watch: self.clone(),
            name: name.to_string(),
        }
    }

    fn held(&self, name: &str) -> bool {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(name)
    }
}

/// See [`AccessoryWatch::hold`].
pub struct Hold {
    watch: Arc<AccessoryWatch>,
    name: String,
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.watch
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.name);
    }
}

/// The services that feel an outage of `accessory` (they use it or depend on it).
pub fn dependents(spec: &berth_spec::Spec, accessory: &str) -> Vec<String> {
    spec.services
        .values()
        .filter(|s| s.dependencies().contains(&accessory))
        .map(|s| s.name.clone())
        .collect()
}

/// Starts one keeper per accessory (after they were started or adopted).
pub fn spawn_all(stack: &Arc<Stack>) {
    for name in stack.accessories.keys() {
        let span = tracing::info_span!("accessory", name = %name);
        tokio::spawn(keep(stack.clone(), name.clone()).instrument(span));
    }
}

async fn keep(stack: Arc<Stack>, name: String) {
    let accessory = &stack.accessories[&name];
    let watch = stack.accessory_watch.clone();
    let mut crashes = 0;
    loop {
        if watch.stopping() {
            return;
        }
        let (pid, how, ran) = match accessory.adopt() {
            Some(running) => {
                let since = Instant::now();
                let how = accessory.wait_exit(&running).await;
                (Some(running.pid), how, since.elapsed())
            }
            None => (None, None, Duration::ZERO),
        };
        if watch.stopping() {
            return;
        }
        if watch.held(&name) {
            // Stopped on purpose: look again once the hold ends.
            while watch.held(&name) && !watch.stopping() {
                tokio::time::sleep(HELD_POLL).await;
            }
            continue;
        }
        let died_at = Instant::now();
        if let Some(pid) = pid {
            accessory.kill_leftovers(pid).await;
        }
        let how = match (pid, how) {
            (_, Some(how)) => how,
            (Some(_), None) => "ended (status unknown: started by an earlier daemon)".into(),
            (None, None) => "not running".into(),
        };
        let mut verdict = ACCESSORY_RESTARTS.after_death(crashes, ran);
        note_death(&stack, &name, pid, &how, verdict);
        loop {
            crashes = verdict.crashes;
            tokio::time::sleep(verdict.delay).await;
            if watch.stopping() {
                return;
            }
            if watch.held(&name) {
                break;
            }
            match accessory.ensure_running().await {
                Ok(running) => {
                    stack.set_accessory_running(&name, &running);
                    let took = died_at.elapsed().as_millis();
                    watch.update(&name, |w| {
                        w.down = None;
                        w.restarts += 1;
                    });
                    tracing::info!(
                        "accessory {name}: restarted, pid {} port {}, {took} ms after its death",
                        running.pid,
                        running.port
                    );
                    stack.record(
                        EventLevel::Info,
                        &name,
                        format!(
                            "restarted: pid {} port {}; ready, database and user checked, {took} ms after the death",
                            running.pid, running.port
                        ),
                    );
                    for service in dependents(&stack.spec, &name) {
                        stack.record(
                            EventLevel::Info,
                            &service,
                            format!("dependency `{name}` is back after {took} ms"),
                        );
                    }
                    break;
                }
                Err(e) => {
                    verdict = ACCESSORY_RESTARTS.after_failed_start(crashes);
                    // The error names the engine and quotes its log with the password masked.
                    let message = format!(
                        "restart failed: {e:#}; next try in {:.1}s",
                        verdict.delay.as_secs_f32()
                    );
                    tracing::error!("accessory {name}: {message}");
                    stack.record(EventLevel::Error, &name, message);
                    watch.update(&name, |w| w.down = Some(down_state(verdict)));
                }
            }
        }
    }
}

fn down_state(verdict: RestartVerdict) -> &'static str {
    if verdict.crash_looping {
        "crash-looping"
    } else {
        "restarting"
    }
}

/// Logs and records a death: on the accessory, and on every service that feels it.
fn note_death(stack: &Stack, name: &str, pid: Option<u32>, how: &str, verdict: RestartVerdict) {
    let what = match pid {
        Some(pid) => format!("pid {pid} died: {how}"),
        None => "found not running".to_string(),
    };
    let looping = if verdict.crash_looping {
        format!(
            " (crash-looping: {} quick deaths in a row)",
            verdict.crashes
        )
    } else {
        String::new()
    };
    let next = if verdict.delay.is_zero() {
        "restarting it now".to_string()
    } else {
        format!("restarting it in {:.1}s", verdict.delay.as_secs_f32())
    };
    tracing::error!("accessory {name}: {what}{looping}; {next}");
    stack.record(EventLevel::Error, name, format!("{what}{looping}; {next}"));
    for service in dependents(&stack.spec, name) {
        stack.record(
            EventLevel::Warn,
            &service,
            format!("dependency `{name}` is down ({what})"),
        );
    }
    stack.accessory_watch.update(name, |w| {
        w.down = Some(down_state(verdict));
        w.last_exit = Some(how.to_string());
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hold_lasts_as_long_as_its_guard() {
        let watch = Arc::new(AccessoryWatch::default());
        let hold = watch.hold("cache");
        assert!(watch.held("cache"));
        assert!(!watch.held("db"));
        drop(hold);
        assert!(!watch.held("cache"));
    }

    #[test]
    fn down_lists_only_accessories_not_back_yet() {
        let watch = AccessoryWatch::default();
        watch.update("db", |w| w.down = Some("restarting"));
        watch.update("cache", |w| w.restarts = 2);
        assert_eq!(watch.down(), BTreeSet::from(["db".to_string()]));
        watch.update("db", |w| w.down = None);
        assert!(watch.down().is_empty());
        assert_eq!(watch.get("cache").restarts, 2);
    }
}
