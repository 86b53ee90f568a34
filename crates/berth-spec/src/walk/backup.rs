//! `[backup]` and a service's `secrets = [...]`: read key by key, with the references' defaults
//! for what is not written; `check_backup` checks the accessory and volume names against the spec.

use std::path::PathBuf;

use super::{Value, Walker};
use crate::backup::{parse_schedule, BackupDestination, BackupSpec, RetentionSpec};
use crate::raw::{Located, RawSpec};
use crate::report::Problems;
use crate::units::closest;

const BACKUP_KEYS: &[&str] = &[
    "schedule",
    "accessories",
    "volumes",
    "keep_daily",
    "keep_weekly",
    "keep_monthly",
    "max_age",
    "destination",
    "endpoint",
    "region",
];

impl Walker<'_> {
    pub(super) fn backup(&mut self, value: &Value<'_>) -> Option<Located<BackupSpec>> {
        let table = self.table(value, "backup", r#"[backup] schedule = "0 3 * * *""#)?;
        let mut backup = BackupSpec {
            scheduled: true,
            ..BackupSpec::default()
        };
        let mut retention = RetentionSpec {
            daily: 0,
            weekly: 0,
            monthly: 0,
            max_age: None,
        };
        let mut any_retention = false;
        let (mut endpoint, mut region) = (None, None);
        let mut destination: Option<Located<String>> = None;
        for (key, value) in table.iter() {
            match key.get_ref().as_ref() {
                "schedule" => {
                    if let Some(text) =
                        self.string(value, "backup.schedule", r#"schedule = "0 3 * * *""#)
                    {
                        match parse_schedule(&text.value) {
                            Ok(_) => backup.schedule = text.value,
                            Err(e) => self.problems.push(
                                text.span,
                                format!("invalid cron schedule \"{}\": {e}", text.value),
                                Some(
                                    r#"five fields: minute hour day-of-month month day-of-week, e.g. "0 3 * * *" (daily at 03:00)"#
                                        .into(),
                                ),
                            ),
                        }
                    }
                }
                "accessories" => {
                    backup.accessories = Some(
                        self.name_list(value, "backup.accessories", r#"accessories = ["db"]"#)
                            .into_iter()
                            .map(|n| n.value)
                            .collect(),
                    );
                }
                "volumes" => {
                    backup.volumes = Some(
                        self.name_list(value, "backup.volumes", r#"volumes = ["uploads"]"#)
                            .into_iter()
                            .map(|n| n.value)
                            .collect(),
                    );
                }
                name @ ("keep_daily" | "keep_weekly" | "keep_monthly") => {
                    any_retention = true;
                    let example = format!("{name} = 7");
                    if let Some(count) = self.count(value, &format!("backup.{name}"), 0, &example) {
                        match name {
                            "keep_daily" => retention.daily = count.value,
                            "keep_weekly" => retention.weekly = count.value,
                            _ => retention.monthly = count.value,
                        }
                    }
                }
                "max_age" => {
                    any_retention = true;
                    retention.max_age =
                        self.positive_duration(value, "backup.max_age", r#"max_age = "30d""#);
                }
                "destination" => {
                    destination = self.string(
                        value,
                        "backup.destination",
                        r#"destination = "/var/backups/shop" or "s3://bucket/shop""#,
                    );
                }
                "endpoint" => {
                    endpoint = self
                        .string(
                            value,
                            "backup.endpoint",
                            r#"endpoint = "http://127.0.0.1:9000""#,
                        )
                        .map(|e| e.value);
                }
                "region" => {
                    region = self
                        .string(value, "backup.region", r#"region = "eu-west-1""#)
                        .map(|r| r.value);
                }
                other => self.unknown_key(key, other, BACKUP_KEYS, "[backup]"),
            }
        }
        if any_retention {
            backup.retention = retention;
        }
        if let Some(destination) = destination {
            backup.destination = self.destination(destination, endpoint, region);
        } else if endpoint.is_some() || region.is_some() {
            self.problems.push(
                value.span(),
                "`backup.endpoint` and `backup.region` only apply to an S3 destination",
                Some(r#"add destination = "s3://BUCKET/PREFIX", or remove them"#.into()),
            );
        }
        Some(Located {
            value: backup,
            span: value.span(),
        })
    }

    fn destination(
        &mut self,
        text: Located<String>,
        endpoint: Option<String>,
        region: Option<String>,
    ) -> BackupDestination {
        if let Some(rest) = text.value.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                self.problems.push(
                    text.span,
                    "`backup.destination` names no bucket",
                    Some(r#"e.g. destination = "s3://my-backups/shop""#.into()),
                );
            }
            return BackupDestination::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
                endpoint,
                region,
            };
        }
        if text.value.contains("://") {
            self.problems.push(
                text.span.clone(),
                format!("unsupported backup destination \"{}\"", text.value),
                Some(r#"use a folder ("/var/backups/shop") or "s3://BUCKET/PREFIX""#.into()),
            );
        } else if text.value.trim().is_empty() {
            self.problems.push(
                text.span.clone(),
                "`backup.destination` must not be empty",
                Some("remove it to keep backups in .berth/backups/".into()),
            );
        }
        if endpoint.is_some() || region.is_some() {
            self.problems.push(
                text.span.clone(),
                "`backup.endpoint` and `backup.region` only apply to an S3 destination",
                Some(r#"write destination = "s3://BUCKET/PREFIX", or remove them"#.into()),
            );
        }
        BackupDestination::Local(Some(PathBuf::from(text.value)))
    }

    /// `secrets = ["SECRET_KEY", ...]` of a service: names like environment variables.
    pub(super) fn secret_names(&mut self, value: &Value<'_>, path: &str) -> Vec<Located<String>> {
        let names = self.name_list(value, path, r#"secrets = ["SECRET_KEY"]"#);
        let mut seen: Vec<&str> = Vec::new();
        for name in &names {
            let valid = name
                .value
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name
                    .value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                self.problems.push(
                    name.span.clone(),
                    format!("`{}` is not a valid secret name", name.value),
                    Some(
                        "secret names are like environment variables: letters, digits and `_`, e.g. DB_PASSWORD"
                            .into(),
                    ),
                );
            } else if seen.contains(&name.value.as_str()) {
                self.problems.push(
                    name.span.clone(),
                    format!("secret `{}` is listed twice in `{path}`", name.value),
                    Some("remove one".into()),
                );
            }
            seen.push(&name.value);
        }
        names
    }
}

/// Checks that `[backup]` names only accessories and volumes of the spec.
pub(crate) fn check_backup(raw: &RawSpec, problems: &mut Problems) {
    let Some(backup) = &raw.backup else {
        return;
    };
    let check =
        |names: &Option<Vec<String>>, known: Vec<&str>, what: &str, problems: &mut Problems| {
            for name in names.iter().flatten() {
                if !known.contains(&name.as_str()) {
                    let hint = match closest(name, &known) {
                        Some(near) => format!("did you mean `{near}`?"),
                        None if known.is_empty() => format!("the spec declares no {what}"),
                        None => format!("declared {what}: {}", known.join(", ")),
                    };
                    problems.push(
                        backup.span.clone(),
                        format!("[backup] names the unknown {what} `{name}`"),
                        Some(hint),
                    );
                }
            }
        };
    check(
        &backup.value.accessories,
        raw.accessories.keys().map(String::as_str).collect(),
        "accessory",
        problems,
    );
    check(
        &backup.value.volumes,
        raw.volumes.keys().map(String::as_str).collect(),
        "volume",
        problems,
    );
}
