//! `[backup]`: when backups run (cron syntax), what they hold, how long they are kept and where
//! they go. Read by `walk::backup`; the daemon's scheduler and `berth backup` consume it.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[backup]`, with the references' defaults (daily at 03:00; 7 daily, 4 weekly, 12 monthly).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupSpec {
    /// Whether `[backup]` was written: only then does the daemon run backups on `schedule`
    /// (`berth backup now` works either way).
    pub scheduled: bool,
    /// Five-field cron expression, in the machine's local time.
    pub schedule: String,
    /// Accessories backed up; `None`: every accessory.
    pub accessories: Option<Vec<String>>,
    /// Volumes backed up; `None`: every volume.
    pub volumes: Option<Vec<String>>,
    pub retention: RetentionSpec,
    pub destination: BackupDestination,
}

/// Which backups rotation keeps; a backup kept by any rule stays, and the newest good backup
/// always stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionSpec {
    /// The newest backup of each of the last N days that have one.
    pub daily: u32,
    /// The newest backup of each of the last N ISO weeks that have one.
    pub weekly: u32,
    /// The newest backup of each of the last N months that have one.
    pub monthly: u32,
    /// Every backup younger than this.
    pub max_age: Option<Duration>,
}

/// Where backups are written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackupDestination {
    /// A folder on this machine; `None`: `.berth/backups/ENV/` beside the spec.
    Local(Option<PathBuf>),
    /// An S3-compatible bucket (`s3://bucket/prefix`); credentials come from the usual
    /// `AWS_*` variables or the secrets `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`.
    S3 {
        bucket: String,
        prefix: String,
        /// `endpoint = "http://127.0.0.1:9000"` for a non-AWS server (MinIO, moto...).
        endpoint: Option<String>,
        region: Option<String>,
    },
}

impl BackupSpec {
    pub const DEFAULT_SCHEDULE: &'static str = "0 3 * * *";
}

impl RetentionSpec {
    pub const DEFAULT: RetentionSpec = RetentionSpec {
        daily: 7,
        weekly: 4,
        monthly: 12,
        max_age: None,
    };
}

impl Default for BackupSpec {
    fn default() -> Self {
        Self {
            scheduled: false,
            schedule: Self::DEFAULT_SCHEDULE.to_string(),
            accessories: None,
            volumes: None,
            retention: RetentionSpec::DEFAULT,
            destination: BackupDestination::Local(None),
        }
    }
}

/// Checks a five-field cron expression (`minute hour day-of-month month day-of-week`).
pub fn parse_schedule(text: &str) -> Result<croner::Cron, String> {
    if text.split_whitespace().count() != 5 {
        return Err(format!(
            "expected 5 fields (minute hour day-of-month month day-of-week), found {}",
            text.split_whitespace().count()
        ));
    }
    croner::Cron::new(text).parse().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules() {
        parse_schedule("0 3 * * *").unwrap();
        parse_schedule("*/15 * * * 1-5").unwrap();
        assert!(parse_schedule("0 3 * *").unwrap_err().contains("5 fields"));
        assert!(parse_schedule("0 25 * * *").is_err());
        assert!(parse_schedule("0 0 3 * * *").is_err());
    }
}
