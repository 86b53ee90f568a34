//! `berth top`: the dashboard's numbers in the terminal, refreshed live (ratatui). It reads the
//! same JSON as the dashboard (`/v1/status`, `/v1/deploys`, `/v1/metrics`) from the daemon's API
//! socket; [`View::build`] turns the answers into rows (pure, tested), [`draw`] lays them out.
//! `--once` prints one frame as text and exits (scripts, tests, a terminal that is not one).

use std::collections::BTreeMap;
use std::time::Duration;

use berth_model::api::StackStatus;
use berth_model::metrics::MetricsAnswer;
use berth_model::DeployRecord;
use ratatui::backend::{Backend, TestBackend};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Paragraph, Row, Table};
use ratatui::{Frame, Terminal};

use crate::client::ApiClient;
use crate::commands::encode;

#[derive(Debug, clap::Args)]
pub struct TopArgs {
    /// Seconds between refreshes.
    #[arg(long, default_value_t = 2)]
    pub interval: u64,
    /// Print one frame and exit.
    #[arg(long)]
    pub once: bool,
    #[command(flatten)]
    pub spec: crate::SpecFile,
}

/// The newest numbers of a service (None: no data in the last minute).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceNumbers {
    pub requests: Option<f64>,
    pub errors_5xx: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// What the daemon answered, per refresh.
#[derive(Debug, Clone)]
pub struct Answers {
    pub status: StackStatus,
    pub deploys: Vec<DeployRecord>,
    pub services: BTreeMap<String, ServiceNumbers>,
    pub cpu: MetricsAnswer,
    pub memory: MetricsAnswer,
}

/// The rows on screen.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    pub title: String,
    pub services: Vec<[String; 7]>,
    pub replicas: Vec<[String; 6]>,
    pub deploys: Vec<String>,
}

/// The newest non-null value of each series, by the value of `label`.
fn newest_by(answer: &MetricsAnswer, label: &str) -> BTreeMap<String, f64> {
    answer
        .series
        .iter()
        .filter_map(|s| {
            let key = s.labels.get(label)?.clone();
            let value = s.points.iter().rev().find_map(|(_, v)| *v)?;
            Some((key, value))
        })
        .collect()
}

/// The newest non-null value of an answer's first series.
pub fn newest(answer: &MetricsAnswer) -> Option<f64> {
    answer
        .series
        .first()?
        .points
        .iter()
        .rev()
        .find_map(|(_, v)| *v)
}

fn number(value: Option<f64>, digits: usize) -> String {
    value.map_or_else(|| "-".into(), |v| format!("{v:.digits$}"))
}

fn bytes(value: Option<f64>) -> String {
    let Some(mut v) = value else {
        return "-".into();
    };
    let mut unit = 0;
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    while v >= 1024.0 && unit < units.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", units[unit])
}

impl View {
    pub fn build(answers: &Answers) -> View {
        let status = &answers.status;
        let cpu = newest_by(&answers.cpu, "replica");
        let memory = newest_by(&answers.memory, "replica");
        let services = status
            .services
            .iter()
            .map(|s| {
                let n = answers.services.get(&s.name).cloned().unwrap_or_default();
                [
                    s.name.clone(),
                    s.release.clone().unwrap_or_else(|| "-".into()),
                    format!("{}/{}", s.healthy, s.desired),
                    number(n.requests, 1),
                    number(n.errors_5xx, 2),
                    number(n.p50_ms, 1),
                    number(n.p99_ms, 1),
                ]
            })
            .collect();
        let replicas = status
            .replicas
            .iter()
            .map(|r| {
                [
                    r.replica.clone(),
                    format!("{:?}", r.health).to_lowercase(),
                    r.release.clone(),
                    number(cpu.get(&r.replica).copied(), 1),
                    bytes(memory.get(&r.replica).copied()),
                    r.restarts.to_string(),
                ]
            })
            .collect();
        let deploys = answers
            .deploys
            .iter()
            .map(|d| {
                let done = d
                    .steps
                    .iter()
                    .filter(|s| s.state != berth_model::deploy::StepState::Running)
                    .count();
                let current = d
                    .steps
                    .iter()
                    .find(|s| s.state == berth_model::deploy::StepState::Running);
                let mut line = format!(
                    "deploy {} of {} ({}): {}",
                    d.id,
                    d.service,
                    d.strategy,
                    d.state.as_str()
                );
                if let Some(step) = current {
                    line += &format!(", step {} of {}: {}", done + 1, d.steps.len(), step.name);
                    if !step.detail.is_empty() {
                        line += &format!(" ({})", step.detail);
                    }
                } else if let Some(verdict) = &d.verdict {
                    line += &format!(": {} {}", verdict.rule, verdict.message);
                }
                line
            })
            .collect();
        View {
            title: format!("berth top: {} ({})", status.stack, status.environment),
            services,
            replicas,
            deploys,
        }
    }
}

/// Lays the view out on a frame.
pub fn draw(frame: &mut Frame, view: &View) {
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let head = Style::default().fg(Color::DarkGray);
    let areas = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(view.services.len() as u16 + 3),
        Constraint::Length(view.replicas.len() as u16 + 3),
        Constraint::Min(3),
    ])
    .split(frame.area());
    frame.render_widget(
        Paragraph::new(Line::styled(format!("{}   (q quits)", view.title), bold)),
        areas[0],
    );
    let services = Table::new(
        view.services.iter().map(|r| Row::new(r.clone())),
        [
            Constraint::Length(14),
            Constraint::Length(14),
            Constraint::Length(8),
            Constraint::Length(9),
            Constraint::Length(8),
            Constraint::Length(9),
            Constraint::Length(9),
        ],
    )
    .header(
        Row::new([
            "SERVICE", "RELEASE", "HEALTHY", "REQ/S", "5XX/S", "P50 MS", "P99 MS",
        ])
        .style(head),
    )
    .block(Block::default().borders(Borders::TOP).title("services"));
    frame.render_widget(services, areas[1]);
    let replicas = Table::new(
        view.replicas.iter().map(|r| Row::new(r.clone())),
        [
            Constraint::Length(14),
            Constraint::Length(10),
            Constraint::Length(14),
            Constraint::Length(8),
            Constraint::Length(11),
            Constraint::Length(9),
        ],
    )
    .header(
        Row::new([
            "REPLICA", "HEALTH", "RELEASE", "CPU %", "MEMORY", "RESTARTS",
        ])
        .style(head),
    )
    .block(Block::default().borders(Borders::TOP).title("replicas"));
    frame.render_widget(replicas, areas[2]);
    let deploys = Paragraph::new(
        view.deploys
            .iter()
            .map(|d| Line::raw(d.clone()))
            .collect::<Vec<_>>(),
    )
    .block(Block::default().borders(Borders::TOP).title("deploys"));
    frame.render_widget(deploys, areas[3]);
}

/// One frame as text, `width` columns wide.
pub fn render_text(view: &View, width: u16) -> String {
    let height = (view.services.len() + view.replicas.len() + view.deploys.len() + 12) as u16;
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("a test backend");
    terminal
        .draw(|frame| draw(frame, view))
        .expect("drawing on a test backend");
    let buffer = terminal.backend().buffer().clone();
    let mut out = String::new();
    for y in 0..buffer.area.height {
        let line: String = (0..buffer.area.width)
            .map(|x| buffer[(x, y)].symbol())
            .collect();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out.trim_end().to_string() + "\n"
}

async fn metric(client: &ApiClient, query: &str) -> anyhow::Result<MetricsAnswer> {
    client
        .get(&format!("/v1/metrics?since=1m&step=10s&{query}"))
        .await
}

/// Asks the daemon for everything one frame shows.
pub async fn fetch(client: &ApiClient) -> anyhow::Result<Answers> {
    let status: StackStatus = client.get("/v1/status").await?;
    let recent: Vec<DeployRecord> = client.get("/v1/deploys?limit=5").await?;
    let mut services = BTreeMap::new();
    for s in &status.services {
        let name = encode(&s.name);
        let q =
            |m: &str, stat: &str| format!("name={m}&service={name}&statistic={stat}&merged=true");
        services.insert(
            s.name.clone(),
            ServiceNumbers {
                requests: newest(&metric(client, &q("requests", "avg")).await?),
                errors_5xx: newest(&metric(client, &q("errors_5xx", "avg")).await?),
                p50_ms: newest(&metric(client, &q("latency_ms", "p50")).await?),
                p99_ms: newest(&metric(client, &q("latency_ms", "p99")).await?),
            },
        );
    }
    Ok(Answers {
        cpu: metric(client, "name=cpu_percent").await?,
        memory: metric(client, "name=memory_bytes").await?,
        status,
        deploys: recent,
        services,
    })
}

pub async fn top(client: &ApiClient, args: &TopArgs) -> anyhow::Result<()> {
    if args.once {
        let view = View::build(&fetch(client).await?);
        print!("{}", render_text(&view, 100));
        return Ok(());
    }
    let interval = Duration::from_secs(args.interval.max(1));
    let mut terminal = ratatui::init();
    let result = live(client, &mut terminal, interval).await;
    ratatui::restore();
    result
}

async fn live<B: Backend>(
    client: &ApiClient,
    terminal: &mut Terminal<B>,
    interval: Duration,
) -> anyhow::Result<()> {
    use ratatui::crossterm::event::{self, Event, KeyCode, KeyModifiers};
    loop {
        let view = View::build(&fetch(client).await?);
        terminal.draw(|frame| draw(frame, &view))?;
        // Keys until the next refresh (polled in short slices so `q` answers at once).
        let deadline = std::time::Instant::now() + interval;
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            let wait = left.min(Duration::from_millis(100));
            // Nothing else runs in this command: blocking the thread 100 ms at most is fine.
            let ready = event::poll(wait)?;
            if !ready {
                continue;
            }
            if let Event::Key(key) = event::read()? {
                let ctrl_c =
                    key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
                if ctrl_c || matches!(key.code, KeyCode::Char('q') | KeyCode::Esc) {
                    return Ok(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(series: serde_json::Value) -> MetricsAnswer {
        serde_json::from_value(serde_json::json!({
            "name": "x", "statistic": "avg", "from": 0, "to": 30, "step": 10, "series": series
        }))
        .unwrap()
    }

    #[test]
    fn the_view_shows_the_newest_numbers_per_service_and_replica() {
        let status: StackStatus = serde_json::from_value(serde_json::json!({
            "stack": "shop", "environment": "production", "daemon_pid": 1, "started_at": 0,
            "services": [{"name": "web", "desired": 2, "release": "r3-ab", "healthy": 2}],
            "accessories": [],
            "replicas": [
                {"service": "web", "replica": "web.1", "index": 1, "pid": 10, "port": 1,
                 "health": "healthy", "release": "r3-ab", "started_at": 0, "restarts": 1,
                 "last_exit": null, "last_log": [], "limits": null},
                {"service": "web", "replica": "web.2", "index": 2, "pid": 11, "port": 2,
                 "health": "starting", "release": "r3-ab", "started_at": 0, "restarts": 0,
                 "last_exit": null, "last_log": [], "limits": null}],
            "edge": null
        }))
        .unwrap();
        let deploy: DeployRecord = serde_json::from_value(serde_json::json!({
            "id": 7, "service": "web", "env": "production", "strategy": "canary",
            "from_release": "r2-aa", "to_release": "r3-ab", "state": "running",
            "started_at": 0, "finished_at": null, "verdict": null,
            "steps": [
                {"name": "pre-flight", "state": "done", "started_ms": 0, "finished_ms": 1, "detail": "ok"},
                {"name": "canary 10%", "state": "running", "started_ms": 1, "finished_ms": null, "detail": "120 requests"}]
        }))
        .unwrap();
        let answers = Answers {
            status,
            deploys: vec![deploy],
            services: BTreeMap::from([(
                "web".to_string(),
                ServiceNumbers {
                    requests: Some(41.25),
                    errors_5xx: Some(0.0),
                    p50_ms: Some(3.5),
                    p99_ms: None,
                },
            )]),
            cpu: answer(serde_json::json!([
                {"labels": {"replica": "web.1"}, "points": [[0, 12.0], [10, 7.5], [20, null]]},
                {"labels": {"replica": "web.2"}, "points": [[0, null]]}])),
            memory: answer(serde_json::json!([
                {"labels": {"replica": "web.1"}, "points": [[0, 52428800.0]]}])),
        };
        let view = View::build(&answers);
        assert_eq!(
            view.services[0],
            ["web", "r3-ab", "2/2", "41.2", "0.00", "3.5", "-"].map(String::from)
        );
        assert_eq!(
            view.replicas[0],
            ["web.1", "healthy", "r3-ab", "7.5", "50.0 MiB", "1"].map(String::from)
        );
        assert_eq!(view.replicas[1][3], "-");
        assert_eq!(
            view.deploys[0],
            "deploy 7 of web (canary): running, step 2 of 2: canary 10% (120 requests)"
        );
        let text = render_text(&view, 100);
        assert!(text.contains("berth top: shop (production)"), "{text}");
        assert!(text.contains("41.2") && text.contains("50.0 MiB"), "{text}");
        assert!(text.contains("REQ/S") && text.contains("CPU %"), "{text}");
    }
}
