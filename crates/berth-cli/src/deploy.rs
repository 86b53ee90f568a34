//! `berth deploy`, `berth deploys`, `berth deploy watch|cancel` and `berth rollback`: start a
//! deploy through the daemon and follow its record, printing each step with its timing, and
//! exit 0 only when the new release carries all the traffic.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::bail;
use berth_model::api::StackStatus;
use berth_model::deploy::{DeployRequest, DeployStarted, StepState};
use berth_model::{DeployRecord, DeployState};

use crate::client::ApiClient;
use crate::render;

/// Ends the process with this code, after the command printed why (no extra error line).
#[derive(Debug)]
pub struct Exit(pub u8);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}", self.0)
    }
}

impl std::error::Error for Exit {}

/// Exit code of a deploy that failed before traffic moved.
pub const EXIT_FAILED: u8 = 1;
/// Exit code of a deploy that was rolled back.
pub const EXIT_ROLLED_BACK: u8 = 2;

pub struct DeployOptions {
    pub services: Vec<String>,
    pub strategy: Option<String>,
    pub source: Option<std::path::PathBuf>,
    pub rev: Option<String>,
    pub detach: bool,
    pub json: bool,
    pub force: bool,
}

/// `berth deploy [SERVICE...]`: each service in turn; the first that does not succeed stops it.
pub async fn deploy(client: &ApiClient, options: DeployOptions) -> anyhow::Result<()> {
    let services = if options.services.is_empty() {
        let status: StackStatus = client.get("/v1/status").await?;
        status.services.into_iter().map(|s| s.name).collect()
    } else {
        options.services.clone()
    };
    if (options.source.is_some() || options.rev.is_some()) && services.len() != 1 {
        bail!("--source and --rev apply to one service: name it (`berth deploy web --rev v2`)");
    }
    let mut records = Vec::new();
    for service in services {
        let request = DeployRequest {
            service: service.clone(),
            strategy: options.strategy.clone(),
            source: options
                .source
                .as_ref()
                .map(std::path::absolute)
                .transpose()?,
            rev: options.rev.clone(),
            force: options.force,
        };
        let started: DeployStarted = client.post("/v1/deploys", &request).await?;
        let Some(record) = started.deploy else {
            let release = started.unchanged.unwrap_or_default();
            progress(
                options.json,
                &format!("berth: {service}: nothing to deploy: {release} already carries all the traffic"),
            );
            continue;
        };
        if options.detach {
            progress(
                options.json,
                &format!(
                    "berth: deploy {} of {service} started; `berth deploy watch {}` follows it",
                    record.id, record.id
                ),
            );
            records.push(record);
            continue;
        }
        progress(
            options.json,
            &format!(
                "berth: deploy {} of {service} ({}), {} → new release",
                record.id,
                record.strategy,
                record
                    .from_release
                    .as_ref()
                    .map(|r| r.to_string())
                    .unwrap_or_else(|| "-".into())
            ),
        );
        let record = follow(client, record.id, options.json).await?;
        let state = record.state;
        records.push(record);
        if state != DeployState::Succeeded {
            break;
        }
    }
    finish(&records, options.json, options.detach)
}

/// Prints the JSON of the records (with `--json`) and turns the last one's state into the exit.
fn finish(records: &[DeployRecord], json: bool, detached: bool) -> anyhow::Result<()> {
    if json {
        let out = if records.len() == 1 {
            serde_json::to_string_pretty(&records[0])?
        } else {
            serde_json::to_string_pretty(records)?
        };
        println!("{out}");
    }
    match records.last() {
        Some(last) if !detached => {
            progress(json, &format!("berth: {}", last.summary()));
            match last.state {
                DeployState::Succeeded => Ok(()),
                DeployState::RolledBack => Err(Exit(EXIT_ROLLED_BACK).into()),
                _ => Err(Exit(EXIT_FAILED).into()),
            }
        }
        _ => Ok(()),
    }
}

/// Progress goes to stdout, or to stderr when stdout carries JSON.
fn progress(json: bool, line: &str) {
    if json {
        eprintln!("{line}");
    } else {
        println!("{line}");
        let _ = std::io::stdout().flush();
    }
}

/// Polls a deploy's record, printing its steps as they start and end, until it is over.
pub async fn follow(client: &ApiClient, id: u64, json: bool) -> anyhow::Result<DeployRecord> {
    let tty = !json && std::io::stdout().is_terminal();
    let mut printed_start = 0usize;
    let mut printed_end = 0usize;
    let mut failures = 0;
    let began = Instant::now();
    loop {
        let record: DeployRecord = match client.get(&format!("/v1/deploys/{id}")).await {
            Ok(r) => {
                failures = 0;
                r
            }
            Err(e) => {
                // The daemon may be restarting; it resolves the deploy when it comes back.
                failures += 1;
                if failures > 40 {
                    return Err(e);
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        while printed_end < record.steps.len() {
            let step = &record.steps[printed_end];
            if printed_start <= printed_end && step.state == StepState::Running {
                if tty {
                    print!("  … {}\r", step.name);
                } else {
                    progress(json, &format!("  … {}", step.name));
                }
                let _ = std::io::stdout().flush();
                printed_start = printed_end + 1;
            }
            if step.state == StepState::Running {
                break;
            }
            let mark = match step.state {
                StepState::Done => "✓",
                StepState::Failed => "✗",
                StepState::Skipped => "-",
                StepState::Running => "…",
            };
            let took = step
                .finished_ms
                .map(|f| format!("{:.1}s", (f - step.started_ms) as f64 / 1000.0))
                .unwrap_or_default();
            let detail = if step.detail.is_empty() {
                String::new()
            } else {
                format!("  {}", step.detail)
            };
            let line = format!("  {mark} {} ({took}){detail}", step.name);
            if tty {
                println!("\x1b[2K{line}");
            } else {
                progress(json, &line);
            }
            if let Some(numbers) = &step.analysis {
                for line in judgment_lines(numbers) {
                    progress(json, &line);
                }
            }
            printed_end += 1;
            printed_start = printed_start.max(printed_end);
        }
        if tty {
            if let Some(step) = record.steps.get(printed_end) {
                let secs = (berth_model::deploy::now_ms() - step.started_ms) as f64 / 1000.0;
                print!(
                    "\x1b[2K  {} {} ({secs:.0}s)\r",
                    spinner(began.elapsed()),
                    step.name
                );
                let _ = std::io::stdout().flush();
            }
        }
        if record.state.is_final() {
            return Ok(record);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The analysis' numbers under a judged step: one line per route pattern.
fn judgment_lines(j: &berth_model::deploy::Judgment) -> Vec<String> {
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.0}ms"));
    let num = |v: Option<f64>, f: fn(f64) -> String| v.map_or_else(|| "-".to_string(), f);
    let mut lines = vec![format!(
        "      {}: new {} req ({} 5xx), old {} req ({} 5xx){} in {:.1}s; p99 {} vs {}",
        j.outcome,
        j.canary_requests,
        j.canary_errors,
        j.baseline_requests,
        j.baseline_errors,
        if j.adjacent_baseline {
            " (old: its last window)"
        } else {
            ""
        },
        j.window_ms as f64 / 1000.0,
        ms(j.canary_p99_ms),
        ms(j.baseline_p99_ms),
    )];
    for r in j.routes.iter().take(8) {
        lines.push(format!(
            "      {:<16} new {:>5} old {:>5}  median {:>6} vs {:>6}  p99 {:>6} vs {:>6}  U {} p {} delta {}{}",
            r.route,
            r.canary_requests,
            r.baseline_requests,
            ms(r.canary_median_ms),
            ms(r.baseline_median_ms),
            ms(r.canary_p99_ms),
            ms(r.baseline_p99_ms),
            num(r.u, |v| format!("{v:.0}")),
            num(r.p_value, |v| format!("{v:.1e}")),
            num(r.cliffs_delta, |v| format!("{v:+.2}")),
            if r.judged { "" } else { "  (too few to compare)" },
        ));
    }
    if j.routes.len() > 8 {
        lines.push(format!("      ... {} more routes", j.routes.len() - 8));
    }
    lines
}

fn spinner(elapsed: Duration) -> char {
    ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'][(elapsed.as_millis() / 100 % 10) as usize]
}

/// `berth deploy watch ID`.
pub async fn watch(client: &ApiClient, id: u64, json: bool) -> anyhow::Result<()> {
    let record: DeployRecord = client.get(&format!("/v1/deploys/{id}")).await?;
    progress(
        json,
        &format!(
            "berth: deploy {} of {} ({})",
            record.id, record.service, record.strategy
        ),
    );
    let record = follow(client, id, json).await?;
    finish(&[record], json, false)
}

/// `berth deploy cancel ID`: asks for the rollback, then follows it.
pub async fn cancel(client: &ApiClient, id: u64, json: bool) -> anyhow::Result<()> {
    let _: DeployRecord = client
        .post(&format!("/v1/deploys/{id}/cancel"), &())
        .await?;
    progress(json, &format!("berth: deploy {id}: rolling back"));
    let record = follow(client, id, json).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&record)?);
    }
    progress(json, &format!("berth: {}", record.summary()));
    Ok(())
}

/// `berth deploys`.
pub async fn list(client: &ApiClient, service: Option<&str>, json: bool) -> anyhow::Result<()> {
    let path = match service {
        Some(s) => format!("/v1/deploys?service={s}&limit=50"),
        None => "/v1/deploys?limit=50".to_string(),
    };
    let records: Vec<DeployRecord> = client.get(&path).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&records)?);
        return Ok(());
    }
    let now = berth_model::now_unix();
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|d| {
            let release = |r: &Option<berth_model::ReleaseId>| {
                r.as_ref()
                    .map(|r| r.to_string())
                    .unwrap_or_else(|| "-".into())
            };
            vec![
                d.id.to_string(),
                d.service.clone(),
                if d.rollback {
                    format!("{} (rollback)", d.strategy)
                } else {
                    d.strategy.clone()
                },
                release(&d.from_release),
                release(&d.to_release),
                d.state.to_string(),
                format!("{} ago", render::short_duration(now - d.started_at)),
                d.finished_at
                    .map(|f| render::short_duration(f - d.started_at))
                    .unwrap_or_else(|| "-".into()),
                d.verdict
                    .as_ref()
                    .map(|v| format!("{}: {}", v.rule, v.message))
                    .unwrap_or_default(),
            ]
        })
        .collect();
    print!(
        "{}",
        render::table(
            &["ID", "SERVICE", "STRATEGY", "FROM", "TO", "STATE", "STARTED", "TOOK", "VERDICT"],
            &rows
        )
    );
    Ok(())
}

/// `berth rollback [SERVICE] [--to RELEASE]`.
pub async fn rollback(
    client: &ApiClient,
    service: Option<String>,
    to: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    let service = match service {
        Some(s) => s,
        None => {
            let status: StackStatus = client.get("/v1/status").await?;
            match status.services.as_slice() {
                [one] => one.name.clone(),
                _ => bail!("name the service to roll back (`berth rollback web`)"),
            }
        }
    };
    let body = serde_json::json!({ "service": service, "to": to });
    let started: DeployStarted = client.post("/v1/rollback", &body).await?;
    let Some(record) = started.deploy else {
        progress(
            json,
            &format!(
                "berth: {service} already runs {}",
                started.unchanged.unwrap_or_default()
            ),
        );
        return Ok(());
    };
    progress(
        json,
        &format!(
            "berth: rollback {} of {service} to {}",
            record.id,
            record
                .to_release
                .as_ref()
                .map(|r| r.to_string())
                .unwrap_or_default()
        ),
    );
    let record = if record.state.is_final() {
        for step in &record.steps {
            progress(json, &format!("  ✓ {}  {}", step.name, step.detail));
        }
        record
    } else {
        follow(client, record.id, json).await?
    };
    finish(&[record], json, false)
}
