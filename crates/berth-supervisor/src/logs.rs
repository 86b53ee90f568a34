//! Reading replica logs back: `berth logs SERVICE [--replica N] [--since D] [-f]`.
//!
//! Each line in a replica's log file is `TIMESTAMP STREAM TEXT` (written by the shim); lines of
//! several replicas are merged by time and prefixed with the replica's name.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use berth_logfile::rotated;

/// Where log lines come from: the replicas of a service, or one named file (the edge's
/// access log).
#[derive(Debug, Clone)]
pub enum LogSource {
    Replicas(PathBuf),
    File { label: String, path: PathBuf },
}

impl LogSource {
    /// The current files of this source for a query: (label, path).
    pub fn files(&self, query: &LogQuery) -> Vec<(String, PathBuf)> {
        match self {
            LogSource::Replicas(dir) => replica_logs(dir, query),
            LogSource::File { label, path } => vec![(label.clone(), path.clone())],
        }
    }
}

/// Which log lines to read.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    pub service: String,
    /// A replica number; None means every replica of the service.
    pub replica: Option<u32>,
    /// Only lines at or after this time.
    pub since: Option<SystemTime>,
    /// Only the last N lines (after `since`).
    pub tail: Option<usize>,
}

/// The log files of the replicas a query names: (replica name, current log path).
pub fn replica_logs(replicas_dir: &Path, query: &LogQuery) -> Vec<(String, PathBuf)> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir(replicas_dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let Some((service, index)) = name.rsplit_once('.') else {
            continue;
        };
        if service != query.service {
            continue;
        }
        if let Some(wanted) = query.replica {
            if index.parse::<u32>().ok() != Some(wanted) {
                continue;
            }
        }
        found.push((name, entry.path().join("current.log")));
    }
    found.sort();
    found
}

/// The time of a line: its first word, or the `time` field of a JSON line.
fn line_time(line: &str) -> Option<SystemTime> {
    if line.starts_with('{') {
        let value: serde_json::Value = serde_json::from_str(line).ok()?;
        return humantime::parse_rfc3339(value.get("time")?.as_str()?).ok();
    }
    humantime::parse_rfc3339(line.split(' ').next()?).ok()
}

/// Reads the matching lines of every rotated file and the current one, merged by time.
pub fn read(source: &LogSource, query: &LogQuery, keep: u32) -> Vec<String> {
    let mut lines: Vec<(SystemTime, String)> = Vec::new();
    for (replica, current) in source.files(query) {
        let mut files: Vec<PathBuf> = (1..=keep).rev().map(|i| rotated(&current, i)).collect();
        files.push(current);
        for file in files {
            let Ok(text) = fs::read_to_string(&file) else {
                continue;
            };
            for line in text.lines() {
                let at = line_time(line).unwrap_or(SystemTime::UNIX_EPOCH);
                if query.since.is_some_and(|since| at < since) {
                    continue;
                }
                lines.push((at, format!("{replica} | {line}")));
            }
        }
    }
    lines.sort_by_key(|(at, _)| *at);
    let skip = query.tail.map_or(0, |n| lines.len().saturating_sub(n));
    lines.into_iter().skip(skip).map(|(_, l)| l).collect()
}

/// Follows the log files of a query: yields new lines as they are written, including files of
/// replicas that appear later, across rotations. Ends when `out` is closed.
pub async fn follow(source: LogSource, query: LogQuery, out: tokio::sync::mpsc::Sender<String>) {
    // Per file: (inode, offset) of what was already sent; start at the current end.
    let mut seen: std::collections::HashMap<PathBuf, (u64, u64)> = Default::default();
    for (_, path) in source.files(&query) {
        if let Ok(m) = fs::metadata(&path) {
            seen.insert(path, (m.ino(), m.len()));
        }
    }
    loop {
        for (replica, path) in source.files(&query) {
            let Ok(meta) = fs::metadata(&path) else {
                continue;
            };
            let (ino, offset) = seen.get(&path).copied().unwrap_or((meta.ino(), 0));
            // Rotated since last time: the new file is read from its start.
            let offset = if ino != meta.ino() || meta.len() < offset {
                0
            } else {
                offset
            };
            if meta.len() == offset {
                seen.insert(path, (meta.ino(), offset));
                continue;
            }
            let Ok(mut file) = fs::File::open(&path) else {
                continue;
            };
            let _ = file.seek(SeekFrom::Start(offset));
            let mut buf = Vec::new();
            let _ = file.take(1024 * 1024).read_to_end(&mut buf);
            // Only whole lines; a partial last line waits for its newline.
            let whole = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            for line in String::from_utf8_lossy(&buf[..whole]).lines() {
                if out.send(format!("{replica} | {line}\n")).await.is_err() {
                    return;
                }
            }
            seen.insert(path, (meta.ino(), offset + whole as u64));
        }
        if out.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_replicas_by_time_and_filters() {
        let dir = tempfile::tempdir().unwrap();
        for (replica, lines) in [
            (
                "web.1",
                "2026-01-01T00:00:01.000Z stdout a\n2026-01-01T00:00:03.000Z stdout c\n",
            ),
            ("web.2", "2026-01-01T00:00:02.000Z stderr b\n"),
            ("worker.1", "2026-01-01T00:00:02.500Z stdout w\n"),
        ] {
            fs::create_dir_all(dir.path().join(replica)).unwrap();
            fs::write(dir.path().join(replica).join("current.log"), lines).unwrap();
        }
        let mut q = LogQuery {
            service: "web".into(),
            ..Default::default()
        };
        let source = LogSource::Replicas(dir.path().to_path_buf());
        let all = read(&source, &q, 3);
        assert_eq!(all.len(), 3);
        assert!(all[0].starts_with("web.1 |") && all[0].ends_with(" a"));
        assert!(all[1].starts_with("web.2 |") && all[1].ends_with(" b"));
        q.replica = Some(2);
        assert_eq!(read(&source, &q, 3).len(), 1);
        q.replica = None;
        q.since = humantime::parse_rfc3339("2026-01-01T00:00:02Z").ok();
        assert_eq!(read(&source, &q, 3).len(), 2);
        q.since = None;
        q.tail = Some(1);
        assert!(read(&source, &q, 3)[0].ends_with(" c"));
    }
}
