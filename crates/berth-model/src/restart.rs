//! The restart policy of the processes the daemon keeps alive besides replicas (the edge, the
//! accessory servers): after a death, how long to wait before starting it again and whether it
//! is crash-looping. A pure function of the crash count and how long the process ran ("decide,
//! then do"): the daemon's watchers turn the verdict into a sleep and a start. Knows nothing of
//! processes, clocks or events.

use std::time::Duration;

/// How a kept process is restarted: the first restart of a run of crashes can be immediate (the
/// edge: every second without it refuses traffic), later ones wait `first_delay`, doubling up
/// to `max_delay`. A process that ran `stable_after` or longer starts a new run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    pub immediate_first: bool,
    pub first_delay: Duration,
    pub max_delay: Duration,
    pub stable_after: Duration,
    /// Quick crashes in a row from which the process counts as crash-looping.
    pub crash_loop_after: u32,
}

impl RestartPolicy {
    /// The replicas' numbers (500 ms doubling to 30 s, stable after 30 s, crash-looping after
    /// 3 quick exits), with an immediate first restart.
    pub const KEEP_ALIVE: Self = Self {
        immediate_first: true,
        first_delay: Duration::from_millis(500),
        max_delay: Duration::from_secs(30),
        stable_after: Duration::from_secs(30),
        crash_loop_after: 3,
    };

    /// What to do after a death: `crashes_before` is the count of quick crashes in a row before
    /// this one, `ran` how long the process that died had run.
    pub fn after_death(&self, crashes_before: u32, ran: Duration) -> RestartVerdict {
        let crashes = if ran >= self.stable_after {
            1
        } else {
            crashes_before.saturating_add(1)
        };
        RestartVerdict {
            crashes,
            delay: self.delay(crashes),
            crash_looping: crashes >= self.crash_loop_after,
        }
    }

    /// After a failed start attempt (the process never ran): one more crash in the run.
    pub fn after_failed_start(&self, crashes_before: u32) -> RestartVerdict {
        let crashes = crashes_before.saturating_add(1);
        RestartVerdict {
            crashes,
            // A start that failed is never retried at once.
            delay: self.delay(crashes).max(self.first_delay),
            crash_looping: crashes >= self.crash_loop_after,
        }
    }

    /// The wait before restart number `crashes` (1-based) of a run.
    pub fn delay(&self, crashes: u32) -> Duration {
        let steps = if self.immediate_first {
            if crashes <= 1 {
                return Duration::ZERO;
            }
            crashes - 2
        } else {
            crashes.saturating_sub(1)
        };
        let factor = 2u32.saturating_pow(steps.min(16));
        self.first_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// The decision after a death.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartVerdict {
    /// Quick crashes in a row, this one included.
    pub crashes: u32,
    /// Wait this long, then start it again.
    pub delay: Duration,
    pub crash_looping: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: RestartPolicy = RestartPolicy::KEEP_ALIVE;
    const QUICK: Duration = Duration::from_secs(1);

    #[test]
    fn the_first_restart_is_immediate_then_the_delay_doubles_and_caps() {
        assert_eq!(P.delay(1), Duration::ZERO);
        assert_eq!(P.delay(2), Duration::from_millis(500));
        assert_eq!(P.delay(3), Duration::from_secs(1));
        assert_eq!(P.delay(4), Duration::from_secs(2));
        assert_eq!(P.delay(20), Duration::from_secs(30));
        assert_eq!(P.delay(u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn without_an_immediate_first_restart_it_starts_at_the_first_delay() {
        let p = RestartPolicy {
            immediate_first: false,
            ..P
        };
        assert_eq!(p.delay(1), Duration::from_millis(500));
        assert_eq!(p.delay(2), Duration::from_secs(1));
        assert_eq!(p.delay(0), Duration::from_millis(500));
    }

    #[test]
    fn quick_crashes_in_a_row_become_a_crash_loop() {
        let first = P.after_death(0, QUICK);
        assert_eq!(
            first,
            RestartVerdict {
                crashes: 1,
                delay: Duration::ZERO,
                crash_looping: false
            }
        );
        let second = P.after_death(first.crashes, QUICK);
        assert_eq!(second.crashes, 2);
        assert!(!second.crash_looping);
        let third = P.after_death(second.crashes, QUICK);
        assert_eq!(third.crashes, 3);
        assert!(third.crash_looping);
        assert_eq!(third.delay, Duration::from_secs(1));
    }

    #[test]
    fn a_process_that_ran_long_enough_starts_a_new_run() {
        let v = P.after_death(7, Duration::from_secs(30));
        assert_eq!(v.crashes, 1);
        assert_eq!(v.delay, Duration::ZERO);
        assert!(!v.crash_looping);
    }

    #[test]
    fn a_failed_start_is_never_retried_at_once() {
        let v = P.after_failed_start(0);
        assert_eq!(v.crashes, 1);
        assert_eq!(v.delay, Duration::from_millis(500));
        let v = P.after_failed_start(4);
        assert_eq!(v.delay, Duration::from_secs(4));
        assert!(v.crash_looping);
    }
}
