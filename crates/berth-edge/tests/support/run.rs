//! Runs a property a bounded number of times on a thread of its own, under a watchdog: a
//! failure panics with proptest's minimal failing input, a run that does not end in time panics
//! as a hang (instead of stalling `cargo test`).

#![allow(dead_code)]

use std::sync::mpsc;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};

/// What a property may take before it counts as a hang (each takes well under a second when
/// the machine is not busy; the generous margin is for a loaded machine).
pub const WATCHDOG: Duration = Duration::from_secs(120);

pub fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // Failures are pinned by hand as named tests, not kept in proptest-regressions/ files.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Runs `cases` cases of `strategy` through `test`.
pub fn check<S>(cases: u32, strategy: S, test: fn(S::Value) -> Result<(), TestCaseError>)
where
    S: Strategy + Send + 'static,
    S::Value: std::fmt::Debug,
{
    let (done, wait) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        let mut runner = TestRunner::new(config(cases));
        let result = runner.run(&strategy, test).map_err(|e| e.to_string());
        let _ = done.send(());
        result
    });
    match wait.recv_timeout(WATCHDOG) {
        Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
            Ok(Ok(())) => {}
            Ok(Err(failure)) => panic!("{failure}"),
            Err(panic) => std::panic::resume_unwind(panic),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("no result in {WATCHDOG:?}: the codec hangs on some input")
        }
    }
}
