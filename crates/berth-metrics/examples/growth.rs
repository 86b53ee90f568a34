//! The store's disk use per replica, simulated with the real store: one replica's series (cpu,
//! memory, fds, restarts and APP_SERIES of its own metrics) written every 10 s for DAYS days of
//! simulated time, maintenance every simulated 10 minutes (the daemon: every minute); prints the file
//! size at the end of each day. `bench/metrics.sh` runs it.
//!
//!   cargo run --release -p berth-metrics --example growth -- [DAYS] [APP_SERIES]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use berth_metrics::{Config, Sample, Store};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let days: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(8);
    let app_series: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(2);
    let dir = std::env::temp_dir().join(format!("berth-metrics-growth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("metrics.db");
    let store = Store::open(&path, Config::default()).unwrap();
    let start = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let labels = [
        ("service", "web"),
        ("replica", "web.1"),
        ("release", "r1-abc"),
    ];
    let owner = "replica:web.1";
    let began = Instant::now();
    let mut write_time = Duration::ZERO;
    let rounds_per_day = 8_640u64;
    println!("day,series,bytes,bytes_per_series");
    for round in 0..days * rounds_per_day {
        let at: SystemTime = start + Duration::from_secs(round * 10);
        let x = round as f64;
        let mut batch = vec![
            Sample::value("cpu_percent", &labels, owner, 3.0 + (x * 0.1).sin()),
            Sample::value("memory_bytes", &labels, owner, 40e6 + (x % 97.0) * 4096.0),
            Sample::value("open_fds", &labels, owner, 12.0 + (x % 3.0)),
            Sample::value("restarts", &labels[..2], owner, 0.0),
        ];
        for i in 0..app_series {
            batch.push(Sample::value(
                &format!("app:metric_{i}"),
                &labels[..2],
                owner,
                x * (i + 1) as f64,
            ));
        }
        let t = Instant::now();
        store.write(at, &batch).unwrap();
        write_time += t.elapsed();
        if round % 60 == 59 {
            store.maintain(at).unwrap();
        }
        if (round + 1) % rounds_per_day == 0 {
            store.maintain(at).unwrap();
            let bytes = store.bytes().unwrap();
            let series = 4 + app_series;
            println!(
                "{},{series},{bytes},{}",
                (round + 1) / rounds_per_day,
                bytes / series as u64
            );
        }
    }
    let rounds = days * rounds_per_day;
    eprintln!(
        "{rounds} rounds in {:.1}s; one write of {} samples took {:.0} µs on average",
        began.elapsed().as_secs_f64(),
        4 + app_series,
        write_time.as_secs_f64() * 1e6 / rounds as f64
    );
    let _ = std::fs::remove_dir_all(&dir);
}
