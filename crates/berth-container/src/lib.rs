//! Container replicas through a Docker-compatible engine (Docker, or Podman's Docker API
//! service), spoken to with `bollard` over a local unix socket.
//!
//! - [`engine`]: which socket, connecting with one clear error per way it can fail (no engine,
//!   not running, no permission), images (build from a context folder with a `target`, pull,
//!   tag, inspect), containers by label.
//! - [`image`]: a release's image: built or pulled once, tagged with the release id and pinned by
//!   its id (a content digest), recorded in the release folder.
//! - [`plan`]: pure functions from a [`berth_model::LaunchSpec`] to the container to create
//!   (name, labels, env, loopback port, bind mounts, limits); tested without an engine.
//! - [`driver`]: the [`berth_model::Driver`] for container replicas: start, wait, stop (the engine
//!   sends SIGTERM, then SIGKILL), remove, logs streamed into the replica's log file (redacted, as
//!   the shim writes them), re-adoption by process record.
//!
//! Knows nothing of the daemon, the store or the edge; the supervisor decides when containers run.

pub mod driver;
pub mod engine;
pub mod image;
pub mod plan;

pub use driver::ContainerDriver;
pub use engine::{resolve_socket, Engine};
pub use image::{ensure_release_image, ReleaseImage, IMAGE_FILE};

use std::path::PathBuf;

/// Everything that can go wrong talking to the container engine, each with the fix.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error(
        "no container engine socket found (looked at {tried}); start Podman's Docker API service \
         (`podman system service --time=0 unix:///run/podman/podman.sock &`) or Docker \
         (`systemctl start docker`), or name the socket with [containers] socket = \"...\" or DOCKER_HOST"
    )]
    NoSocket { tried: String },
    #[error(
        "DOCKER_HOST={0} is not a unix socket; Berth talks to a local engine only: \
         set DOCKER_HOST=unix:///path/to/socket or [containers] socket"
    )]
    NotUnix(String),
    #[error(
        "permission denied on the container engine socket {}; run berth as a user allowed to use \
         it (root, or a member of the `docker` group), or point [containers] socket at a socket \
         of your own (`podman system service --time=0 unix://$XDG_RUNTIME_DIR/podman.sock`)",
        .socket.display()
    )]
    Permission { socket: PathBuf },
    #[error(
        "the container engine at {} is not running ({reason}); start it: \
         `podman system service --time=0 unix://{}` (Podman) or `systemctl start docker` (Docker)",
        .socket.display(), .socket.display()
    )]
    NotRunning { socket: PathBuf, reason: String },
    #[error("building the image of `{service}` failed: {reason}")]
    Build { service: String, reason: String },
    #[error(
        "image `{reference}` is not in the engine and could not be pulled: {reason}; check the \
         name and tag, or build it with a Dockerfile (dockerfile = \"Dockerfile\")"
    )]
    Pull { reference: String, reason: String },
    #[error(
        "pushing {reference} failed: {reason}; check the repository name and that the registry is \
         reachable, give credentials (--username with --password-stdin) if it needs them, and for \
         a registry without TLS mark it insecure (Podman: [[registry]] insecure = true in \
         /etc/containers/registries.conf; Docker: insecure-registries in daemon.json)"
    )]
    Push { reference: String, reason: String },
    #[error("{context}: {source}")]
    Engine {
        context: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl ContainerError {
    pub(crate) fn engine(
        context: impl Into<String>,
    ) -> impl FnOnce(bollard::errors::Error) -> Self {
        let context = context.into();
        move |source| ContainerError::Engine { context, source }
    }

    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| ContainerError::Io { context, source }
    }
}

/// Whether an engine error is a 404 (no such image or container).
pub(crate) fn is_not_found(error: &bollard::errors::Error) -> bool {
    matches!(
        error,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}
