//! Writing parts while hashing them, hashing a file, and running a tool whose output is a part.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::process::Stdio;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

/// A writer that counts and hashes what passes through it.
pub(crate) struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// The inner writer, the byte count and the hex sha256.
    pub fn finish(self) -> (W, u64, String) {
        (self.inner, self.bytes, hex::encode(self.hasher.finalize()))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The size and hex sha256 of a file.
pub(crate) fn hash_file(path: &Path) -> Result<(u64, String)> {
    let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok((bytes, hex::encode(hasher.finalize())))
}

/// Runs `command`, writing its standard output to `out` (created, mode 0600) while hashing it.
/// Returns (bytes, sha256). A failure quotes the tool's last error lines.
pub(crate) async fn run_to_file(
    mut command: Command,
    what: &str,
    out: &Path,
) -> Result<(u64, String)> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start {what}"))?;
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let errors = tokio::spawn(async move {
        let mut text = Vec::new();
        let _ = stderr.read_to_end(&mut text).await;
        text
    });
    let file = create_private(out)?;
    let mut file = tokio::fs::File::from_std(file);
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = stdout
            .read(&mut buf)
            .await
            .with_context(|| format!("reading the output of {what}"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
        file.write_all(&buf[..n])
            .await
            .with_context(|| format!("cannot write {}", out.display()))?;
    }
    file.sync_all()
        .await
        .with_context(|| format!("cannot write {}", out.display()))?;
    let status = child.wait().await?;
    let errors = errors.await.unwrap_or_default();
    if !status.success() {
        bail!("{what} failed ({status}): {}", tail(&errors));
    }
    Ok((bytes, hex::encode(hasher.finalize())))
}

/// Runs `command` to completion (its input from `input`, if any); a failure quotes its last
/// error lines.
pub(crate) async fn run_tool(
    mut command: Command,
    what: &str,
    input: Option<&Path>,
) -> Result<String> {
    command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    match input {
        Some(path) => {
            let file =
                File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
            command.stdin(Stdio::from(file));
        }
        None => {
            command.stdin(Stdio::null());
        }
    }
    let output = command
        .output()
        .await
        .with_context(|| format!("cannot start {what}"))?;
    if !output.status.success() {
        let mut text = output.stderr.clone();
        if text.is_empty() {
            text = output.stdout.clone();
        }
        bail!("{what} failed ({}): {}", output.status, tail(&text));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The last few lines of a tool's output, for an error message.
fn tail(output: &[u8]) -> String {
    let text = String::from_utf8_lossy(output);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(8);
    let tail = lines[start..].join("\n");
    if tail.is_empty() {
        "no output".into()
    } else {
        tail
    }
}

/// Creates `path` for writing, readable by its owner only (parts hold a database's data).
pub(crate) fn create_private(path: &Path) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))
}

/// Makes new entries and renames in `dir` durable (best effort).
pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashing_writer_matches_hash_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut w = HashingWriter::new(File::create(&path).unwrap());
        w.write_all(b"hello world").unwrap();
        let (_, bytes, sha) = w.finish();
        assert_eq!(bytes, 11);
        assert_eq!(hash_file(&path).unwrap(), (11, sha.clone()));
        assert_eq!(
            sha,
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
    }

    #[tokio::test]
    async fn a_failing_tool_is_quoted() {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo part; echo oops >&2; exit 3"]);
        let e = run_to_file(cmd, "the tool", &dir.path().join("x"))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("the tool failed") && e.contains("oops"), "{e}");
    }
}
