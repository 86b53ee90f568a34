//! `[[service.NAME.cron]]`: scheduled one-off tasks of a service's current release, each a
//! `schedule` (five-field cron, local time) and a `run` command.

use super::{Value, Walker};
use crate::backup::parse_schedule;
use crate::types::CronSpec;

const CRON_KEYS: &[&str] = &["schedule", "run"];
const SCHEDULE_HINT: &str = r#"five fields: minute hour day-of-month month day-of-week, e.g. "*/15 * * * *" (every 15 minutes)"#;

impl Walker<'_> {
    pub(super) fn cron(&mut self, service: &str, value: &Value<'_>) -> Vec<CronSpec> {
        let path = format!("service.{service}.cron");
        let example = "[[service.NAME.cron]] schedule = \"0 3 * * *\" run = \"python3 manage.py clearsessions\"";
        let Some(items) = self.array(value, &path, example) else {
            return Vec::new();
        };
        let mut entries = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let item_path = format!("{path}[{i}]");
            let Some(table) = self.table(
                item,
                &item_path,
                r#"{ schedule = "0 3 * * *", run = "python3 job.py" }"#,
            ) else {
                continue;
            };
            let mut schedule = None;
            let mut run = None;
            let mut written: Vec<String> = Vec::new();
            for (key, value) in table.iter() {
                written.push(key.get_ref().to_string());
                match key.get_ref().as_ref() {
                    "schedule" => {
                        let Some(text) = self.string(
                            value,
                            &format!("{item_path}.schedule"),
                            r#"schedule = "0 3 * * *""#,
                        ) else {
                            continue;
                        };
                        match parse_schedule(&text.value) {
                            Ok(_) => schedule = Some(text.value),
                            Err(e) => self.problems.push(
                                text.span,
                                format!(
                                    "invalid cron schedule \"{}\" for `{item_path}.schedule`: {e}",
                                    text.value
                                ),
                                Some(SCHEDULE_HINT.into()),
                            ),
                        }
                    }
                    "run" => {
                        let Some(text) = self.string(
                            value,
                            &format!("{item_path}.run"),
                            r#"run = "python3 job.py""#,
                        ) else {
                            continue;
                        };
                        if text.value.trim().is_empty() {
                            self.problems.push(
                                text.span,
                                format!("`{item_path}.run` must not be empty"),
                                Some("give the command the task runs".into()),
                            );
                        } else {
                            run = Some(text.value);
                        }
                    }
                    other => self.unknown_key(key, other, CRON_KEYS, &format!("[[{path}]]")),
                }
            }
            let missing: Vec<&str> = [("schedule", schedule.is_none()), ("run", run.is_none())]
                .iter()
                .filter(|(key, absent)| *absent && !written.iter().any(|w| w == key))
                .map(|(key, _)| *key)
                .collect();
            if !missing.is_empty() {
                self.problems.push(
                    item.span(),
                    format!("`{item_path}` has no `{}`", missing.join("` or `")),
                    Some(r#"each entry needs both, e.g. schedule = "0 3 * * *" and run = "python3 job.py""#.into()),
                );
            }
            if let (Some(schedule), Some(run)) = (schedule, run) {
                entries.push(CronSpec { schedule, run });
            }
        }
        entries
    }
}

#[cfg(test)]
mod tests {
    use crate::types::CronSpec;

    #[test]
    fn cron_entries_are_read_in_order() {
        let toml = r#"
[service.web]
run = "python3 app.py"

[[service.web.cron]]
schedule = "*/15 * * * *"
run = "python3 manage.py clearsessions"

[[service.web.cron]]
schedule = "0 3 * * 1-5"
run = "python3 report.py"
"#;
        let spec = crate::parse(std::path::Path::new("/tmp/berth.toml"), toml, None).unwrap();
        assert_eq!(
            spec.services["web"].cron,
            [
                CronSpec {
                    schedule: "*/15 * * * *".into(),
                    run: "python3 manage.py clearsessions".into()
                },
                CronSpec {
                    schedule: "0 3 * * 1-5".into(),
                    run: "python3 report.py".into()
                }
            ]
        );
        // Cron entries are not part of the release: they do not change its fingerprint input.
        let without = crate::parse(
            std::path::Path::new("/tmp/berth.toml"),
            "[service.web]\nrun = \"python3 app.py\"\n",
            None,
        )
        .unwrap();
        assert!(without.services["web"].cron.is_empty());
    }
}
