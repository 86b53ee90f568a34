//! The access log's writing: lines are gathered in memory and handed, 32 KiB at a time (or by
//! [`AccessLog::flush`] every 200 ms), to a thread of their own that writes and rotates the
//! file. A worker serving requests never waits on the disk: a rotation deletes the oldest
//! 50 MiB file, which took milliseconds and stalled every request of the worker that hit it
//! (the benchmark's p99 on the rows that ran after the first rotations).
//!
//! Owns: the buffer, the writer thread and its bounded queue. Must never know: HTTP, or what
//! a line says ([`crate::access_line`] formats it).

use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_logfile::LogFile;

use crate::access_line::AccessLine;

/// What the writer thread is given.
enum Job {
    /// Whole lines to append.
    Lines(Vec<u8>),
    /// Answer once everything queued before is written.
    Ack(mpsc::Sender<()>),
}

pub(crate) struct AccessLog {
    buffer: Mutex<Vec<u8>>,
    /// To the writer thread; `None` if it could not be started (lines are then written here,
    /// as before there was a thread).
    queue: Option<SyncSender<Job>>,
    /// The file until the writer thread takes it (kept here only if there is no such thread).
    file: Arc<Mutex<Option<LogFile>>>,
}

impl AccessLog {
    /// Lines gathered before they are handed on.
    const CHUNK: usize = 32 * 1024;
    /// Chunks queued for the writer at most (2 MiB): past that, a worker waits for the disk
    /// rather than lines being lost or memory growing without end.
    const QUEUED: usize = 64;

    pub(crate) fn new(file: LogFile) -> Self {
        let (queue, jobs) = mpsc::sync_channel(Self::QUEUED);
        // The thread takes the file from here when it starts; should it not start, the file
        // stays for the workers to write.
        let file = Arc::new(Mutex::new(Some(file)));
        let for_writer = file.clone();
        let started = std::thread::Builder::new()
            .name("edge-access-log".into())
            .spawn(move || {
                let taken = for_writer.lock().unwrap_or_else(|e| e.into_inner()).take();
                if let Some(file) = taken {
                    write_jobs(file, jobs);
                }
            });
        let queue = match started {
            Ok(_) => Some(queue),
            Err(e) => {
                tracing::warn!("access log: no writer thread ({e}); the workers write it");
                None
            }
        };
        Self {
            buffer: Mutex::new(Vec::with_capacity(Self::CHUNK * 2)),
            queue,
            file,
        }
    }

    pub(crate) fn append_line(&self, line: &AccessLine<'_>) {
        let full = {
            let mut buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
            line.write(&mut buffer);
            (buffer.len() >= Self::CHUNK)
                .then(|| std::mem::replace(&mut *buffer, Vec::with_capacity(Self::CHUNK * 2)))
        };
        if let Some(lines) = full {
            self.hand_on(lines);
        }
    }

    /// Hands what is buffered to the writer (without waiting for it to be written).
    pub(crate) fn flush(&self) {
        let lines = std::mem::take(&mut *self.buffer.lock().unwrap_or_else(|e| e.into_inner()));
        if !lines.is_empty() {
            self.hand_on(lines);
        }
    }

    /// [`Self::flush`], then waits (at most `limit`) until the writer has written it all.
    pub(crate) fn flush_and_wait(&self, limit: Duration) {
        self.flush();
        if let Some(queue) = &self.queue {
            let (done, written) = mpsc::channel();
            if queue.send(Job::Ack(done)).is_ok() {
                let _ = written.recv_timeout(limit);
            }
        }
    }

    fn hand_on(&self, lines: Vec<u8>) {
        match &self.queue {
            // A full queue blocks this worker until the writer catches up (the disk is the
            // limit then); a writer gone (it cannot be: it ends when the queue is dropped)
            // would lose the chunk.
            Some(queue) => {
                let _ = queue.send(Job::Lines(lines));
            }
            None => {
                if let Some(file) = self.file.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
                    let _ = file.write_chunk(&lines);
                }
            }
        }
    }
}

/// The writer thread: appends chunks (rotating the file as it fills) until the log is dropped.
fn write_jobs(mut file: LogFile, jobs: Receiver<Job>) {
    let mut failed = false;
    for job in jobs {
        match job {
            Job::Lines(lines) => match file.write_chunk(&lines) {
                Ok(()) => failed = false,
                Err(e) if !failed => {
                    failed = true;
                    tracing::warn!("access log: {e}");
                }
                Err(_) => {}
            },
            Job::Ack(done) => {
                let _ = done.send(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::SystemTime;

    fn line(path: &str) -> AccessLine<'_> {
        AccessLine {
            at: SystemTime::UNIX_EPOCH,
            client: IpAddr::V4(Ipv4Addr::LOCALHOST),
            host: "site",
            method: "GET",
            path,
            status: 200,
            bytes: 3,
            duration: Duration::from_millis(1),
            service: Some("web"),
            upstream: Some("web.1"),
            release: Some("r1"),
            request_id: "id",
        }
    }

    #[test]
    fn lines_reach_the_file_in_order_through_the_writer_and_rotate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        // 4 KiB files (the smallest LogFile keeps), two of them kept.
        let log = AccessLog::new(LogFile::open(path.clone(), 4096, 2).unwrap());
        let paths: Vec<String> = (0..2_000).map(|i| format!("/p/{i}")).collect();
        for path in &paths {
            log.append_line(&line(path));
        }
        log.flush_and_wait(Duration::from_secs(10));
        // What is left in the files is the newest lines, in the order they were written.
        let mut text = String::new();
        for name in ["access.log.2", "access.log.1", "access.log"] {
            text.push_str(&std::fs::read_to_string(dir.path().join(name)).unwrap_or_default());
        }
        let seen: Vec<u64> = text
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["path"].as_str().unwrap()[3..].parse().unwrap()
            })
            .collect();
        assert!(!seen.is_empty());
        assert_eq!(*seen.last().unwrap(), 1_999, "the last line is in the file");
        assert!(seen.windows(2).all(|w| w[1] == w[0] + 1), "in order");
        assert!(
            std::fs::metadata(dir.path().join("access.log.1")).is_ok(),
            "rotated"
        );
    }
}
