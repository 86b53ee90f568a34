//! Graceful upgrade: a new edge process (a new `berth` binary) takes the listening sockets over
//! from the running one, so not one connection is refused. The old edge passes its listener file
//! descriptors over `handover.sock` (SCM_RIGHTS); both accept for a moment; once the new one says
//! it serves, the old one stops accepting, lets its open connections finish, and exits.
//!
//! The same socket lends the daemon a duplicate of the listeners (`sharefds`, the edge keeps
//! serving), and [`serve_once`] lets the daemon hand those duplicates to a new edge after the
//! old one died: connections that arrive meanwhile wait in the listen backlog instead of being
//! refused. Knows nothing of the daemon beyond these three requests.

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
    /// The TLS listeners among `public` (absent from edges before TLS: none).
    #[serde(default)]
    tls: Vec<SocketAddr>,
    admin: SocketAddr,
}

/// The handover socket's file name in the edge's folder.
pub const SOCKET_FILE: &str = "handover.sock";

/// The requests a handover socket answers (all 9 bytes long).
const TAKEOVER: &[u8; 9] = b"takeover\n";
const SHARE: &[u8; 9] = b"sharefds\n";

/// What one handover connection did.
enum Handed {
    /// A new edge took the sockets and serves: this one stops.
    Over,
    /// Duplicates were lent (to the daemon): this one keeps serving.
    Shared,
}

/// A listener's descriptor and the address it is bound to.
pub type Described = (RawFd, SocketAddr);

/// The listeners one handover passes: the public ones (the TLS ones among them named), then
/// the admin one.
#[derive(Debug, Clone)]
pub struct Handout {
    pub public: Vec<Described>,
    pub tls: Vec<SocketAddr>,
    pub admin: Described,
}

/// Duplicates of an edge's listeners, lent with [`share`] (close-on-exec).
pub struct Listeners {
    pub public: Vec<std::net::TcpListener>,
    /// The TLS listeners among `public`, by address.
    pub tls: Vec<SocketAddr>,
    pub admin: std::net::TcpListener,
}

impl Listeners {
    /// The descriptors and addresses, as [`serve_once`] takes them.
    pub fn fds(&self) -> anyhow::Result<Handout> {
        let public = self
            .public
            .iter()
            .map(|l| Ok((l.as_raw_fd(), l.local_addr()?)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Handout {
            public,
            tls: self.tls.clone(),
            admin: (self.admin.as_raw_fd(), self.admin.local_addr()?),
        })
    }
}

/// Listeners received from the old edge.
pub struct TakenOver {
    pub public: Vec<std::net::TcpListener>,
    /// The TLS listeners among `public`, by address.
    pub tls: Vec<SocketAddr>,
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
pub fn offer(socket: &Path, handout: Handout, stop: watch::Sender<bool>) -> anyhow::Result<()> {
    let _ = std::fs::remove_file(socket);
    let listener =
        UnixListener::bind(socket).with_context(|| format!("binding {}", socket.display()))?;
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            match hand_over(&mut conn, &handout) {
                Ok(Handed::Over) => {
                    tracing::info!("listening sockets handed over; stopping");
                    let _ = stop.send(true);
                    return;
                }
                Ok(Handed::Shared) => tracing::info!("lent duplicates of the listening sockets"),
                Err(e) => tracing::warn!("handover failed: {e:#}"),
            }
        }
    });
    Ok(())
}

fn hand_over(conn: &mut UnixStream, handout: &Handout) -> anyhow::Result<Handed> {
    let mut request = [0u8; 9];
    conn.read_exact(&mut request)?;
    if &request != TAKEOVER && &request != SHARE {
        bail!("unexpected handover request");
    }
    let manifest = Manifest {
        public: handout.public.iter().map(|(_, a)| *a).collect(),
        tls: handout.tls.clone(),
        admin: handout.admin.1,
    };
    let mut payload = serde_json::to_vec(&manifest)?;
    payload.push(b'\n');
    let fds: Vec<RawFd> = handout
        .public
        .iter()
        .map(|(fd, _)| *fd)
        .chain([handout.admin.0])
        .collect();
    sendmsg::<()>(
        conn.as_raw_fd(),
        &[IoSlice::new(&payload)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )?;
    if &request == SHARE {
        return Ok(Handed::Shared);
    }
    // Keep accepting until the new edge serves.
    conn.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    let mut line = String::new();
    BufReader::new(conn).read_line(&mut line)?;
    if line.trim() != "serving" {
        bail!("the new edge did not confirm ({line:?})");
    }
    Ok(Handed::Over)
}

/// Binds a handover socket (replacing a stale file) for [`serve_once`]: bound before the new
/// edge starts, so it finds it.
pub fn bind(socket: &Path) -> anyhow::Result<UnixListener> {
    let _ = std::fs::remove_file(socket);
    UnixListener::bind(socket).with_context(|| format!("binding {}", socket.display()))
}

/// Serves one takeover on `listener` (see [`bind`]) with listeners this process holds (the
/// daemon, after the edge that owned the socket died): waits up to `timeout` for the new edge,
/// passes the descriptors and returns once it says it serves. Blocking. The listeners stay open
/// here.
pub fn serve_once(
    listener: UnixListener,
    handout: &Handout,
    timeout: std::time::Duration,
) -> anyhow::Result<()> {
    listener.set_nonblocking(true)?;
    let deadline = std::time::Instant::now() + timeout;
    let mut conn = loop {
        match listener.accept() {
            Ok((conn, _)) => break conn,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if std::time::Instant::now() >= deadline {
                    bail!("no edge came for the listening sockets within {timeout:?}");
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(e) => return Err(e.into()),
        }
    };
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(timeout))?;
    match hand_over(&mut conn, handout)? {
        Handed::Over => Ok(()),
        Handed::Shared => bail!("asked to lend the sockets instead of taking them"),
    }
}

/// Borrows duplicates of the listeners of the edge serving `socket`; it keeps serving.
pub fn share(socket: &Path) -> anyhow::Result<Listeners> {
    let mut conn = UnixStream::connect(socket)
        .with_context(|| format!("connecting to the running edge at {}", socket.display()))?;
    conn.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    conn.write_all(SHARE)?;
    let (public, tls, admin) = receive(&conn, MsgFlags::MSG_CMSG_CLOEXEC)?;
    Ok(Listeners { public, tls, admin })
}

/// Reads the manifest and the descriptors (public listeners, then the admin one).
#[allow(clippy::type_complexity)]
fn receive(
    conn: &UnixStream,
    flags: MsgFlags,
) -> anyhow::Result<(
    Vec<std::net::TcpListener>,
    Vec<SocketAddr>,
    std::net::TcpListener,
)> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut space = nix::cmsg_space!([RawFd; 16]);
    let (received, fds) = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(conn.as_raw_fd(), &mut iov, Some(&mut space), flags)?;
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
    Ok((listeners, manifest.tls, admin))
}

/// Takes the listeners over from the edge serving `socket`.
pub fn take(socket: &Path) -> anyhow::Result<TakenOver> {
    let mut conn = UnixStream::connect(socket)
        .with_context(|| format!("connecting to the running edge at {}", socket.display()))?;
    conn.write_all(TAKEOVER)?;
    let (listeners, tls, admin) = receive(&conn, MsgFlags::empty())?;
    Ok(TakenOver {
        public: listeners,
        tls,
        admin,
        confirm: conn,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback() -> std::net::TcpListener {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap()
    }

    #[test]
    fn lent_duplicates_reach_a_new_edge_and_the_lender_keeps_serving() {
        let dir = tempfile::tempdir().unwrap();
        let (public, admin) = (loopback(), loopback());
        let (stop, stopped) = watch::channel(false);
        let socket = dir.path().join("handover.sock");
        let handout = Handout {
            public: vec![(public.as_raw_fd(), public.local_addr().unwrap())],
            tls: vec![public.local_addr().unwrap()],
            admin: (admin.as_raw_fd(), admin.local_addr().unwrap()),
        };
        offer(&socket, handout, stop).unwrap();

        let lent = share(&socket).unwrap();
        assert_eq!(
            lent.public[0].local_addr().unwrap(),
            public.local_addr().unwrap()
        );
        assert_eq!(
            lent.admin.local_addr().unwrap(),
            admin.local_addr().unwrap()
        );
        assert!(!*stopped.borrow(), "lending must not stop the edge");
        // Close-on-exec: the daemon's children must not inherit them.
        let flags = nix::fcntl::fcntl(&lent.admin, nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert!(flags & nix::fcntl::FdFlag::FD_CLOEXEC.bits() != 0);

        // The edge is gone; the holder hands the duplicates to the next one.
        let next = dir.path().join("next.sock");
        assert_eq!(lent.tls, vec![public.local_addr().unwrap()], "TLS is named");
        let handout = lent.fds().unwrap();
        let bound = bind(&next).unwrap();
        let server = std::thread::spawn(move || {
            serve_once(bound, &handout, std::time::Duration::from_secs(5))
        });
        let taken = take(&next).unwrap();
        assert_eq!(
            taken.public[0].local_addr().unwrap(),
            public.local_addr().unwrap()
        );
        assert_eq!(taken.tls, vec![public.local_addr().unwrap()]);
        taken.confirm().unwrap();
        server.join().unwrap().unwrap();
        drop(lent);
    }
}
