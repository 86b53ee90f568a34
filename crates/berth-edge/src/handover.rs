//! Graceful upgrade: a new edge process (a new `berth` binary) takes the listening sockets over
//! from the running one, so not one connection is refused. The old edge passes its listener file
//! descriptors over `handover.sock` (SCM_RIGHTS); both accept for a moment; once the new one says
//! it serves, the old one stops accepting, lets its open connections finish, and exits.

use std::io::{BufRead, BufReader, IoSlice, IoSliceMut, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use anyhow::{bail, Context};
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// What travels with the descriptors: which is which.
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    public: Vec<SocketAddr>,
    admin: SocketAddr,
}

/// Listeners received from the old edge.
pub struct TakenOver {
    pub public: Vec<std::net::TcpListener>,
    pub admin: std::net::TcpListener,
    /// Tell the old edge we serve (it then stops accepting).
    confirm: UnixStream,
}

impl TakenOver {
    pub fn confirm(mut self) -> anyhow::Result<()> {
        self.confirm.write_all(b"serving\n")?;
        Ok(())
    }
}

/// Serves one handover on `socket` (a blocking thread): sends the descriptors of `public` and
/// `admin`, waits for the new edge to say it serves, then asks this edge to stop.
pub fn offer(
    socket: &Path,
    public: Vec<(RawFd, SocketAddr)>,
    admin: (RawFd, SocketAddr),
    stop: watch::Sender<bool>,
) -> anyhow::Result<()> {
    let _ = std::fs::remove_file(socket);
    let listener =
        UnixListener::bind(socket).with_context(|| format!("binding {}", socket.display()))?;
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            match hand_over(&mut conn, &public, admin) {
                Ok(()) => {
                    tracing::info!("listening sockets handed over; stopping");
                    let _ = stop.send(true);
                    return;
                }
                Err(e) => tracing::warn!("handover failed: {e:#}"),
            }
        }
    });
    Ok(())
}

fn hand_over(
    conn: &mut UnixStream,
    public: &[(RawFd, SocketAddr)],
    admin: (RawFd, SocketAddr),
) -> anyhow::Result<()> {
    let mut request = [0u8; 9];
    conn.read_exact(&mut request)?;
    if &request != b"takeover\n" {
        bail!("unexpected handover request");
    }
    let manifest = Manifest {
        public: public.iter().map(|(_, a)| *a).collect(),
        admin: admin.1,
    };
    let mut payload = serde_json::to_vec(&manifest)?;
    payload.push(b'\n');
    let fds: Vec<RawFd> = public.iter().map(|(fd, _)| *fd).chain([admin.0]).collect();
    sendmsg::<()>(
        conn.as_raw_fd(),
        &[IoSlice::new(&payload)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )?;
    // Keep accepting until the new edge serves.
    conn.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    let mut line = String::new();
    BufReader::new(conn).read_line(&mut line)?;
    if line.trim() != "serving" {
        bail!("the new edge did not confirm ({line:?})");
    }
    Ok(())
}

/// Takes the listeners over from the edge serving `socket`.
pub fn take(socket: &Path) -> anyhow::Result<TakenOver> {
    let mut conn = UnixStream::connect(socket)
        .with_context(|| format!("connecting to the running edge at {}", socket.display()))?;
    conn.write_all(b"takeover\n")?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut space = nix::cmsg_space!([RawFd; 16]);
    let (received, fds) = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::empty(),
        )?;
        let mut fds = Vec::new();
        for cmsg in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(r) = cmsg {
                fds.extend(r);
            }
        }
        (msg.bytes, fds)
    };
    let manifest: Manifest = serde_json::from_slice(buf[..received].trim_ascii_end())
        .context("reading the handover manifest")?;
    if fds.len() != manifest.public.len() + 1 {
        bail!(
            "expected {} descriptors, got {}",
            manifest.public.len() + 1,
            fds.len()
        );
    }
    // SAFETY: the descriptors were just received and are owned by nobody else in this process.
    let mut listeners: Vec<std::net::TcpListener> = fds
        .iter()
        .map(|fd| unsafe { std::net::TcpListener::from_raw_fd(*fd) })
        .collect();
    let admin = listeners.pop().context("no admin listener")?;
    for l in listeners.iter().chain([&admin]) {
        l.set_nonblocking(true)?;
    }
    Ok(TakenOver {
        public: listeners,
        admin,
        confirm: conn,
    })
}
