//! The container engine: which unix socket, connecting to it, images, containers by label.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::auth::DockerCredentials;
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateImageOptionsBuilder, ListContainersOptionsBuilder,
    PushImageOptionsBuilder, RemoveContainerOptionsBuilder, TagImageOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;

use crate::{is_not_found, ContainerError};

/// Sockets tried when neither the spec nor `DOCKER_HOST` names one: Docker's, then rootful
/// Podman's.
pub const DEFAULT_SOCKETS: &[&str] = &["/var/run/docker.sock", "/run/podman/podman.sock"];

/// How long connecting and a ping may take.
const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// The socket to use: `[containers] socket`, else `DOCKER_HOST` (`unix://` only), else the first
/// of [`DEFAULT_SOCKETS`] that exists. Pure but for `exists`.
pub fn resolve_socket(
    configured: Option<&Path>,
    docker_host: Option<&str>,
    exists: impl Fn(&Path) -> bool,
) -> Result<PathBuf, ContainerError> {
    if let Some(path) = configured {
        return Ok(path.to_path_buf());
    }
    if let Some(host) = docker_host.filter(|h| !h.is_empty()) {
        return match host.strip_prefix("unix://") {
            Some(path) => Ok(PathBuf::from(path)),
            None if host.starts_with('/') => Ok(PathBuf::from(host)),
            None => Err(ContainerError::NotUnix(host.to_string())),
        };
    }
    DEFAULT_SOCKETS
        .iter()
        .map(PathBuf::from)
        .find(|p| exists(p))
        .ok_or_else(|| ContainerError::NoSocket {
            tried: DEFAULT_SOCKETS.join(", "),
        })
}

/// A connected engine.
#[derive(Clone)]
pub struct Engine {
    pub(crate) docker: Docker,
    socket: PathBuf,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("socket", &self.socket)
            .finish()
    }
}

impl Engine {
    /// Connects to the engine at `socket` and pings it; each way this can fail is its own
    /// error naming the fix.
    pub async fn connect(socket: &Path) -> Result<Self, ContainerError> {
        // A plain connect first: it tells a missing socket, a refused one and a forbidden one
        // apart, which the HTTP client folds into one error.
        let probe = tokio::time::timeout(PING_TIMEOUT, tokio::net::UnixStream::connect(socket));
        match probe.await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                return Err(ContainerError::Permission {
                    socket: socket.to_path_buf(),
                })
            }
            Ok(Err(e)) => {
                return Err(ContainerError::NotRunning {
                    socket: socket.to_path_buf(),
                    reason: e.to_string(),
                })
            }
            Err(_) => {
                return Err(ContainerError::NotRunning {
                    socket: socket.to_path_buf(),
                    reason: "connecting timed out".into(),
                })
            }
        }
        // Streams (wait, logs, build) last as long as a container or a build does: the client's
        // timeout (which bounds getting an answer's head) is long; short calls bound themselves.
        let docker = Docker::connect_with_unix(
            &socket.to_string_lossy(),
            24 * 3600,
            bollard::API_DEFAULT_VERSION,
        )
        .map_err(|e| ContainerError::NotRunning {
            socket: socket.to_path_buf(),
            reason: e.to_string(),
        })?;
        match tokio::time::timeout(PING_TIMEOUT, docker.ping()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                return Err(ContainerError::NotRunning {
                    socket: socket.to_path_buf(),
                    reason: format!("it does not answer the Docker API: {e}"),
                })
            }
            Err(_) => {
                return Err(ContainerError::NotRunning {
                    socket: socket.to_path_buf(),
                    reason: "no answer to a ping within 5s".into(),
                })
            }
        }
        Ok(Self {
            docker,
            socket: socket.to_path_buf(),
        })
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The id (`sha256:...`) of an image the engine has, or `None`.
    pub async fn image_id(&self, reference: &str) -> Result<Option<String>, ContainerError> {
        match self.docker.inspect_image(reference).await {
            Ok(image) => Ok(image.id),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(ContainerError::engine(format!(
                "inspecting image {reference}"
            ))(e)),
        }
    }

    /// The registry digests of an image (`name@sha256:...`), empty for a local build.
    pub async fn repo_digests(&self, reference: &str) -> Result<Vec<String>, ContainerError> {
        let image = self
            .docker
            .inspect_image(reference)
            .await
            .map_err(ContainerError::engine(format!(
                "inspecting image {reference}"
            )))?;
        Ok(image.repo_digests.unwrap_or_default())
    }

    /// Builds `dockerfile` (relative to `context`) up to `target`, tagged `tag`; every output line
    /// goes to `log`. Returns the image id. `service` names the failure.
    pub async fn build(
        &self,
        service: &str,
        context: &Path,
        dockerfile: &str,
        target: Option<&str>,
        tag: &str,
        mut log: impl FnMut(&str),
    ) -> Result<String, ContainerError> {
        let build_error = |reason: String| ContainerError::Build {
            service: service.to_string(),
            reason,
        };
        if !context.join(dockerfile).is_file() {
            return Err(build_error(format!(
                "there is no {dockerfile} in {}; give its path relative to the source folder in dockerfile = \"...\"",
                context.display()
            )));
        }
        let tar = {
            let folder = context.to_path_buf();
            tokio::task::spawn_blocking(move || context_tar(&folder))
                .await
                .map_err(|e| build_error(format!("packing the context panicked: {e}")))?
                .map_err(ContainerError::io(format!(
                    "packing the build context {}",
                    context.display()
                )))?
        };
        let mut options = BuildImageOptionsBuilder::new()
            .dockerfile(dockerfile)
            .t(tag)
            .rm(true)
            .forcerm(true);
        if let Some(target) = target {
            options = options.target(target);
        }
        let mut stream =
            self.docker
                .build_image(options.build(), None, Some(bollard::body_full(tar.into())));
        let mut last_lines: Vec<String> = Vec::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(detail) = info.error_detail.and_then(|d| d.message) {
                        return Err(build_error(with_tail(&detail, &last_lines)));
                    }
                    for line in info.stream.iter().flat_map(|s| s.lines()) {
                        let line = line.trim_end();
                        if !line.is_empty() {
                            log(line);
                            last_lines.push(line.to_string());
                            if last_lines.len() > 10 {
                                last_lines.remove(0);
                            }
                        }
                    }
                }
                Err(bollard::errors::Error::DockerStreamError { error }) => {
                    return Err(build_error(with_tail(&error, &last_lines)));
                }
                Err(e) => return Err(build_error(with_tail(&e.to_string(), &last_lines))),
            }
        }
        self.image_id(tag).await?.ok_or_else(|| {
            build_error(with_tail(
                "the engine reported no error but has no image tagged with the release",
                &last_lines,
            ))
        })
    }

    /// Makes sure the engine has `reference`: present already, or pulled. Returns its id.
    pub async fn pull(
        &self,
        reference: &str,
        mut log: impl FnMut(&str),
    ) -> Result<String, ContainerError> {
        if let Some(id) = self.image_id(reference).await? {
            return Ok(id);
        }
        let pull_error = |reason: String| ContainerError::Pull {
            reference: reference.to_string(),
            reason,
        };
        let options = CreateImageOptionsBuilder::new()
            .from_image(reference)
            .build();
        let mut stream = self.docker.create_image(Some(options), None, None);
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(message) = info.error_detail.and_then(|d| d.message) {
                        return Err(pull_error(message));
                    }
                    if let Some(status) = info.status {
                        log(&status);
                    }
                }
                Err(e) => return Err(pull_error(e.to_string())),
            }
        }
        self.image_id(reference)
            .await?
            .ok_or_else(|| pull_error("the engine has no such image after the pull".into()))
    }

    /// Tags image `id` as `repo:tag`.
    pub async fn tag(&self, id: &str, repo: &str, tag: &str) -> Result<(), ContainerError> {
        let options = TagImageOptionsBuilder::new().repo(repo).tag(tag).build();
        self.docker
            .tag_image(id, Some(options))
            .await
            .map_err(ContainerError::engine(format!(
                "tagging {id} as {repo}:{tag}"
            )))
    }

    /// Tags image `id` as `repository:tag` and pushes that to its registry, with `credentials`
    /// (user, password) when given; returns the digest the registry stored (`sha256:...`).
    /// The password goes to the engine only, in the request's auth header; no error or log
    /// line holds it.
    pub async fn push(
        &self,
        id: &str,
        repository: &str,
        tag: &str,
        credentials: Option<(String, String)>,
        mut log: impl FnMut(&str),
    ) -> Result<String, ContainerError> {
        let reference = format!("{repository}:{tag}");
        let push_error = |reason: String| ContainerError::Push {
            reference: reference.clone(),
            reason,
        };
        self.tag(id, repository, tag).await?;
        let credentials = credentials.map(|(username, password)| DockerCredentials {
            username: Some(username),
            password: Some(password),
            ..Default::default()
        });
        let options = PushImageOptionsBuilder::new().tag(tag).build();
        let mut stream = self
            .docker
            .push_image(repository, Some(options), credentials);
        let mut digest = None;
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(message) = info.error_detail.and_then(|d| d.message) {
                        return Err(push_error(message));
                    }
                    if let Some(status) = info.status {
                        if let Some(found) = pushed_digest(&status) {
                            digest = Some(found);
                        }
                        log(&status);
                    }
                }
                Err(e) => return Err(push_error(e.to_string())),
            }
        }
        digest.ok_or_else(|| push_error("the engine reported no digest for the push".into()))
    }

    /// Ids of the containers (running or not) that carry all of `labels`.
    pub async fn containers_labelled(
        &self,
        labels: &[(&str, &str)],
    ) -> Result<Vec<(String, HashMap<String, String>)>, ContainerError> {
        let filter: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let filters = HashMap::from([("label", filter)]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let found = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(ContainerError::engine("listing containers"))?;
        Ok(found
            .into_iter()
            .filter_map(|c| Some((c.id?, c.labels.unwrap_or_default())))
            .collect())
    }

    /// Removes a container, stopping it first if needed; a missing one is fine.
    pub async fn remove_container(&self, id: &str) -> Result<(), ContainerError> {
        let options = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(false)
            .build();
        match self.docker.remove_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(ContainerError::engine(format!("removing container {id}"))(
                e,
            )),
        }
    }
}

/// The reason, with the last lines of build output when there are some.
fn with_tail(reason: &str, lines: &[String]) -> String {
    let reason = reason.trim();
    if lines.is_empty() {
        reason.to_string()
    } else {
        format!("{reason}\n  last output:\n    {}", lines.join("\n    "))
    }
}

/// The build context: every file of `dir` as an uncompressed tar. Symlinks stay symlinks.
fn context_tar(dir: &Path) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    builder.mode(tar::HeaderMode::Deterministic);
    builder.append_dir_all(".", dir)?;
    builder.into_inner()
}

/// The digest in a push's final status line (`TAG: digest: sha256:... size: N`, as Docker and
/// Podman print it).
fn pushed_digest(status: &str) -> Option<String> {
    let (_, rest) = status.split_once("digest: ")?;
    let digest = rest.split_whitespace().next()?;
    (digest.starts_with("sha256:") && digest.len() == 71).then(|| digest.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_is_the_configured_one_then_docker_host_then_the_usual_places() {
        let none = |_: &Path| false;
        let podman = |p: &Path| p == Path::new("/run/podman/podman.sock");
        let configured = Path::new("/srv/engine.sock");
        assert_eq!(
            resolve_socket(Some(configured), Some("unix:///x.sock"), none).unwrap(),
            configured
        );
        assert_eq!(
            resolve_socket(None, Some("unix:///x.sock"), none).unwrap(),
            Path::new("/x.sock")
        );
        assert_eq!(
            resolve_socket(None, None, podman).unwrap(),
            Path::new("/run/podman/podman.sock")
        );
        assert_eq!(
            resolve_socket(None, Some(""), podman).unwrap(),
            Path::new("/run/podman/podman.sock")
        );
        let err = resolve_socket(None, Some("tcp://10.0.0.1:2375"), podman).unwrap_err();
        assert!(err.to_string().contains("not a unix socket"), "{err}");
        let err = resolve_socket(None, None, none).unwrap_err().to_string();
        assert!(err.contains("podman system service"), "{err}");
        assert!(err.contains("/var/run/docker.sock"), "{err}");
    }

    #[tokio::test]
    async fn a_socket_nobody_listens_on_says_the_engine_is_not_running() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("engine.sock");
        let err = Engine::connect(&missing).await.unwrap_err().to_string();
        assert!(err.contains("is not running"), "{err}");
        assert!(err.contains("podman system service"), "{err}");

        // A socket file whose listener is gone: refused.
        let stale = dir.path().join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
        let err = Engine::connect(&stale).await.unwrap_err().to_string();
        assert!(err.contains("is not running"), "{err}");

        // Something that is not an engine listens: the ping fails.
        let other = dir.path().join("other.sock");
        let listener = tokio::net::UnixListener::bind(&other).unwrap();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                use tokio::io::AsyncWriteExt;
                let _ = conn
                    .write_all(b"HTTP/1.1 500 Nope\r\ncontent-length: 0\r\n\r\n")
                    .await;
            }
        });
        let err = Engine::connect(&other).await.unwrap_err().to_string();
        assert!(err.contains("does not answer the Docker API"), "{err}");
    }

    #[test]
    fn the_context_tar_holds_every_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::create_dir(dir.path().join("bin")).unwrap();
        std::fs::write(dir.path().join("bin/app"), "x").unwrap();
        let tar = context_tar(dir.path()).unwrap();
        let mut archive = tar::Archive::new(&tar[..]);
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert!(names.iter().any(|n| n.ends_with("Dockerfile")), "{names:?}");
        assert!(names.iter().any(|n| n.ends_with("bin/app")), "{names:?}");
    }

    #[test]
    fn the_digest_is_read_from_the_push_status() {
        let digest = format!("sha256:{}", "b2".repeat(32));
        assert_eq!(
            super::pushed_digest(&format!("r1: digest: {digest} size: 737")),
            Some(digest)
        );
        for other in ["Pushing 3 layers", "digest: sha256:short size: 1", ""] {
            assert_eq!(super::pushed_digest(other), None, "{other}");
        }
    }
}
