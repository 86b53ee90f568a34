//! Autoscaling end to end: a service with `min`/`max` and a requests target follows a bounded
//! loopback load that rises and falls, and no request fails while replicas come and go.

use std::time::{Duration, Instant};

use crate::harness::*;
use crate::load::{Load, LoadOptions};

fn body() -> String {
    r#"
[service.web]
run = "python3 app.py"
source = "app"
port = "auto"
min = 1
max = 3
stop_timeout = "5s"
deregistration_delay = "1s"

[service.web.health]
path = "/health"
interval = "1s"
timeout = "1s"
healthy_threshold = 1
unhealthy_threshold = 2
grace_period = "2s"

[service.web.autoscale]
cpu = false
requests_per_replica = 1200
interval = "1s"
scale_out_cooldown = "3s"
scale_in_cooldown = "4s"
stabilization = "4s"

[[route]]
path = "/"
service = "web"
"#
    .into()
}

/// Replica counts as `berth ps` shows them over time: (seconds since the start, live, healthy),
/// one entry per change.
struct Timeline {
    start: Instant,
    changes: Vec<(f64, usize, usize)>,
}

impl Timeline {
    fn look(&mut self, stack: &Stack) -> (usize, usize) {
        let replicas = stack.replicas("web");
        let healthy = replicas.iter().filter(|r| r.health == "healthy").count();
        let now = (replicas.len(), healthy);
        if self.changes.last().map(|c| (c.1, c.2)) != Some(now) {
            self.changes
                .push((self.start.elapsed().as_secs_f64(), now.0, now.1));
        }
        now
    }

    /// Looks every 250 ms until `done` says so or `timeout` passes; panics then.
    fn until(
        &mut self,
        stack: &Stack,
        what: &str,
        timeout: Duration,
        done: impl Fn(usize, usize) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        loop {
            let (live, healthy) = self.look(stack);
            if done(live, healthy) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what} within {}s; timeline: {}",
                timeout.as_secs(),
                self.describe()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn describe(&self) -> String {
        self.changes
            .iter()
            .map(|(t, live, healthy)| format!("{t:.1}s: {live} live / {healthy} healthy"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[test]
fn replicas_follow_a_load_that_rises_and_falls_and_no_request_fails() {
    let mut stack = Stack::new("autoscale", &body());
    stack.up_and_wait();
    stack.wait_healthy("web", 1);
    let port = stack.edge_port;
    wait_for("the edge to route to web", Duration::from_secs(15), || {
        matches!(http(port, "GET", "/whoami", b""), Ok((200, _))).then_some(())
    });
    let mut timeline = Timeline {
        start: Instant::now(),
        changes: Vec::new(),
    };
    // A base of 10 requests/s for the whole test: 600 per replica per minute at one replica,
    // half the target, so nothing scales on it alone.
    let base = Load::start(LoadOptions {
        rate: 10,
        threads: 2,
        max_requests: 1_500,
        max_duration: Duration::from_secs(100),
        ..LoadOptions::whoami(port)
    });
    timeline.look(&stack);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        timeline.look(&stack).0,
        1,
        "scaled without load: {}",
        timeline.describe()
    );

    // The rise: 50 more per second, 3,600 per replica per minute at one replica → 3 (max).
    let burst = Load::start(LoadOptions {
        rate: 50,
        threads: 4,
        max_requests: 2_500,
        max_duration: Duration::from_secs(40),
        ..LoadOptions::whoami(port)
    });
    timeline.until(
        &stack,
        "3 healthy replicas under the burst",
        Duration::from_secs(25),
        |live, healthy| live == 3 && healthy == 3,
    );
    // At 3 replicas the load is 1,200 per replica per minute: on target, the count holds.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(timeline.look(&stack).0, 3, "{}", timeline.describe());
    let burst = burst.stop();

    // The fall: back to the base load, 200 per replica per minute → 1 after the 4 s
    // stabilization window and scale-in cooldown, drained through the edge under load.
    timeline.until(
        &stack,
        "back to 1 replica after the burst",
        Duration::from_secs(30),
        |live, _| live == 1,
    );
    std::thread::sleep(Duration::from_secs(2));
    let base = base.stop();
    println!("[autoscale] replica timeline: {}", timeline.describe());
    println!("[autoscale] base load: {}", base.describe());
    println!("[autoscale] burst load: {}", burst.describe());

    for (what, report) in [("base", &base), ("burst", &burst)] {
        assert!(
            report.failed().is_empty(),
            "{what}: {} of {} requests failed while scaling: {}",
            report.failed().len(),
            report.samples.len(),
            report.describe()
        );
    }
    assert!(burst.samples.len() >= 300, "{}", burst.describe());
    let events: Vec<String> = stack
        .events()
        .into_iter()
        .filter(|(subject, message)| subject == "web" && message.starts_with("autoscale:"))
        .map(|(_, message)| message)
        .collect();
    println!("[autoscale] events: {events:#?}");
    // Up in one or more steps to 3, then down in one or more steps to 1, each with the numbers
    // that led to it.
    let steps: Vec<(u32, u32)> = events
        .iter()
        .map(|m| {
            let counts = m
                .trim_start_matches("autoscale: ")
                .split(" replicas")
                .next()
                .unwrap_or_default();
            let (from, to) = counts.split_once(" → ").unwrap_or(("0", "0"));
            (from.parse().unwrap_or(0), to.parse().unwrap_or(0))
        })
        .collect();
    let peak = steps.iter().position(|(_, to)| *to == 3);
    assert!(
        peak.is_some_and(|peak| steps[..=peak].iter().all(|(from, to)| to > from)
            && steps[peak + 1..].iter().all(|(from, to)| to < from))
            && steps.last().is_some_and(|(_, to)| *to == 1)
            && events
                .iter()
                .all(|m| m.contains("/replica/min vs target 1200/replica/min")),
        "{events:#?}"
    );
}
