//! The accessory's TCP port: the configured one, or a free loopback port chosen on first start
//! and persisted in the accessory folder so that the URL stays the same across restarts.

use std::fs;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;

use anyhow::{bail, Context, Result};

/// The port to start the server on: `configured` when set, else the persisted one, else a free
/// loopback port. The result is written to `port_file`.
pub(crate) fn resolve(configured: Option<u16>, port_file: &Path) -> Result<u16> {
    let port = match (configured, read(port_file)?) {
        (Some(port), _) => port,
        (None, Some(port)) => port,
        (None, None) => free_loopback_port()?,
    };
    if read(port_file)? != Some(port) {
        fs::write(port_file, format!("{port}\n"))
            .with_context(|| format!("cannot write {}", port_file.display()))?;
    }
    Ok(port)
}

/// The port recorded in `port_file`, `None` when the file does not exist.
pub(crate) fn read(port_file: &Path) -> Result<Option<u16>> {
    match fs::read_to_string(port_file) {
        Ok(text) => match text.trim().parse::<u16>() {
            Ok(port) if port > 0 => Ok(Some(port)),
            _ => bail!(
                "{} does not hold a port number (found {:?}); fix or delete it",
                port_file.display(),
                text.trim()
            ),
        },
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", port_file.display())),
    }
}

/// A port on 127.0.0.1 that nobody listens on right now.
fn free_loopback_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context("cannot find a free port on 127.0.0.1")?;
    Ok(listener.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_free_port_is_chosen_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("port");
        let port = resolve(None, &file).unwrap();
        assert!(port > 0);
        assert_eq!(read(&file).unwrap(), Some(port));
        assert_eq!(resolve(None, &file).unwrap(), port);
        // The chosen port is actually free.
        TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
    }

    #[test]
    fn the_configured_port_wins_and_is_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("port");
        fs::write(&file, "4000\n").unwrap();
        assert_eq!(resolve(Some(4100), &file).unwrap(), 4100);
        assert_eq!(read(&file).unwrap(), Some(4100));
    }

    #[test]
    fn a_garbled_port_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("port");
        fs::write(&file, "eighty").unwrap();
        let err = resolve(None, &file).unwrap_err().to_string();
        assert!(err.contains("does not hold a port number"), "{err}");
    }
}
