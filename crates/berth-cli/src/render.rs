//! Plain-text rendering of what the daemon answers: tables for people, JSON for scripts.

use berth_model::api::StackStatus;
use berth_model::{Event, Release, ReplicaStatus};

/// Left-aligned columns, two spaces apart.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let text: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        out.push_str(text.join("  ").trim_end());
        out.push('\n');
    };
    line(header.to_vec(), &mut out);
    for row in rows {
        line(row.iter().map(|s| s.as_str()).collect(), &mut out);
    }
    out
}

/// `1h2m`, `3m4s`, `12s`.
pub fn short_duration(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        3600..=86399 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86400, (s % 86400) / 3600),
    }
}

pub fn ps(status: &StackStatus, now: i64) -> String {
    let mut out = format!(
        "stack {} (environment {}), daemon pid {}, up {}\n\n",
        status.stack,
        status.environment,
        status.daemon_pid,
        short_duration(now - status.started_at)
    );
    if let Some(edge) = &status.edge {
        let listen: Vec<String> = edge.listen.iter().map(|a| format!("http://{a}")).collect();
        let restarts = match (edge.restarts, &edge.last_exit) {
            (0, _) => String::new(),
            (n, Some(how)) => format!("; {n} restart(s), last death: {how}"),
            (n, None) => format!("; {n} restart(s)"),
        };
        out.push_str(&format!(
            "edge {}: {} (metrics on {}){restarts}\n\n",
            match edge.pid {
                Some(pid) if edge.state == "running" || edge.state.is_empty() =>
                    format!("pid {pid}"),
                Some(pid) => format!("pid {pid}, {}", edge.state),
                None => edge.state.clone(),
            },
            listen.join(", "),
            edge.admin
                .map_or("-".into(), |a| format!("http://{a}/metrics"))
        ));
    }
    let rows: Vec<Vec<String>> = status
        .replicas
        .iter()
        .map(|r| replica_row(r, now))
        .collect();
    out.push_str(&table(
        &[
            "SERVICE", "REPLICA", "PID", "PORT", "HEALTH", "RELEASE", "UPTIME", "RESTARTS",
            "LIMITS",
        ],
        &rows,
    ));
    for r in status
        .replicas
        .iter()
        .filter(|r| r.last_exit.is_some() && r.health.as_str() != "healthy")
    {
        out.push_str(&format!(
            "\n{} last exit: {}\n",
            r.replica,
            r.last_exit.as_deref().unwrap_or("")
        ));
        for line in &r.last_log {
            out.push_str(&format!("  {line}\n"));
        }
    }
    let services: Vec<Vec<String>> = status
        .services
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                format!("{}/{}", s.healthy, s.desired),
                s.release.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    out.push('\n');
    out.push_str(&table(&["SERVICE", "HEALTHY", "RELEASE"], &services));
    for s in &status.services {
        if let Some(reason) = &s.held {
            out.push_str(&format!("{}: not serving: {reason}\n", s.name));
        }
    }
    for s in status
        .services
        .iter()
        .filter(|s| !s.dependencies_down.is_empty())
    {
        let down: Vec<String> = s
            .dependencies_down
            .iter()
            .map(|d| format!("`{d}`"))
            .collect();
        out.push_str(&format!(
            "{}: dependency {} down\n",
            s.name,
            down.join(", ")
        ));
    }
    if !status.accessories.is_empty() {
        let rows: Vec<Vec<String>> = status
            .accessories
            .iter()
            .map(|a| {
                vec![
                    a.name.clone(),
                    a.engine.clone(),
                    opt(a.pid),
                    opt(a.port),
                    match (a.restarts, &a.last_exit) {
                        (0, _) => a.state.clone(),
                        (n, Some(how)) => {
                            format!("{} ({n} restart(s), last death: {how})", a.state)
                        }
                        (n, None) => format!("{} ({n} restart(s))", a.state),
                    },
                ]
            })
            .collect();
        out.push('\n');
        out.push_str(&table(
            &["ACCESSORY", "ENGINE", "PID", "PORT", "STATE"],
            &rows,
        ));
    }
    out
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

fn replica_row(r: &ReplicaStatus, now: i64) -> Vec<String> {
    vec![
        r.service.clone(),
        r.replica.clone(),
        opt(r.pid),
        opt(r.port),
        r.health.to_string(),
        r.release.clone(),
        r.started_at.map_or("-".into(), |t| short_duration(now - t)),
        r.restarts.to_string(),
        r.limits.clone().unwrap_or_else(|| "-".into()),
    ]
}

pub fn events(events: &[Event]) -> String {
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(e.at.max(0) as u64);
            vec![
                humantime::format_rfc3339_seconds(at).to_string(),
                format!("{:?}", e.level).to_lowercase(),
                e.subject.clone(),
                e.message.clone(),
            ]
        })
        .collect();
    table(&["TIME", "LEVEL", "SUBJECT", "MESSAGE"], &rows)
}

/// Releases with their deploy outcome: the state of the newest deploy to each (`deploys` newest
/// first), and which one is current.
pub fn releases(
    releases: &[Release],
    deploys: &[berth_model::DeployRecord],
    current: &[(String, String)],
    now: i64,
) -> String {
    let rows: Vec<Vec<String>> = releases
        .iter()
        .map(|r| {
            let outcome = deploys
                .iter()
                .find(|d| d.service == r.service && d.to_release.as_ref() == Some(&r.id))
                .map(|d| {
                    let verdict = d
                        .verdict
                        .as_ref()
                        .map(|v| format!(" ({})", v.rule))
                        .unwrap_or_default();
                    format!("deploy {}: {}{verdict}", d.id, d.state)
                })
                .unwrap_or_else(|| "-".into());
            let is_current = current
                .iter()
                .any(|(service, release)| service == &r.service && release == &r.id.0);
            vec![
                r.service.clone(),
                if is_current {
                    format!("{} *", r.id)
                } else {
                    r.id.to_string()
                },
                format!("{} ago", short_duration(now - r.created_at)),
                r.source_rev
                    .clone()
                    .map(|s| s.chars().take(12).collect())
                    .unwrap_or_else(|| "-".into()),
                outcome,
            ]
        })
        .collect();
    let mut out = table(
        &["SERVICE", "RELEASE", "CREATED", "SOURCE", "DEPLOY"],
        &rows,
    );
    if !current.is_empty() {
        out.push_str("(* carries the traffic)\n");
    }
    out
}

/// `berth alarms`: one row per alarm (state, since when, condition), then each one's reason.
pub fn alarms(list: &berth_model::api::AlarmList, now: i64) -> String {
    if list.alarms.is_empty() {
        return "no alarms (the defaults are off and the spec has no [[alarm]])\n".to_string();
    }
    let rows: Vec<Vec<String>> = list
        .alarms
        .iter()
        .map(|a| {
            let since = a.since.map_or_else(
                || "-".to_string(),
                |at| {
                    let ago = std::time::Duration::from_secs((now - at).max(0) as u64);
                    format!("{} ago", humantime::format_duration(ago))
                },
            );
            vec![a.name.clone(), a.state.clone(), since, a.condition.clone()]
        })
        .collect();
    let mut out = table(&["ALARM", "STATE", "SINCE", "CONDITION"], &rows);
    if !list.evaluating {
        out.push_str("\nnot evaluated: this daemon has no metrics source\n");
    }
    out.push('\n');
    for a in &list.alarms {
        out.push_str(&format!("{}: {}\n", a.name, a.reason));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let t = table(&["A", "BB"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "A    BB\nxxx  y\n");
    }

    #[test]
    fn durations_are_short() {
        assert_eq!(short_duration(5), "5s");
        assert_eq!(short_duration(125), "2m5s");
        assert_eq!(short_duration(7260), "2h1m");
    }

    #[test]
    fn alarms_show_state_since_and_reason() {
        let list = berth_model::api::AlarmList {
            alarms: vec![berth_model::api::AlarmView {
                name: "web-high-cpu".into(),
                description: None,
                condition: "avg cpu_percent{service=web} > 80 for 2 of 2 periods of 5m".into(),
                state: "ALARM".into(),
                reason: "Threshold Crossed: 2 out of the last 2 datapoints [85.1, 90.3]".into(),
                since: Some(1_000),
                evaluated_at: Some(1_100),
                default: true,
            }],
            evaluating: false,
            history: vec![],
        };
        let text = super::alarms(&list, 1_125);
        assert!(
            text.starts_with(
                "ALARM         STATE  SINCE      CONDITION\nweb-high-cpu  ALARM  2m 5s ago  avg"
            ),
            "{text}"
        );
        assert!(text.contains("not evaluated: this daemon has no metrics source"));
        assert!(text.ends_with(
            "web-high-cpu: Threshold Crossed: 2 out of the last 2 datapoints [85.1, 90.3]\n"
        ));
    }
}
