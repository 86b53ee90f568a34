//! Container services: `image`, `dockerfile`, `target` and `network` of a `[service.NAME]`, and
//! `[containers] socket`. A service with `image` or `dockerfile` runs its replicas as containers
//! of that image, so what only a local process has (`run`, `build`) conflicts with them.

use super::{entry_span, Key, Value, Walker};
use crate::raw::{Located, RawContainer, RawService};
use crate::types::ContainerNetwork;
use crate::units::closest;

const CONTAINERS_KEYS: &[&str] = &["socket"];
const NETWORKS: &[&str] = &["bridge", "host"];

impl Walker<'_> {
    /// `[containers]`: returns the `socket` written, if any.
    pub(super) fn containers(&mut self, value: &Value<'_>) -> Option<String> {
        let table = self.table(
            value,
            "containers",
            r#"[containers] socket = "/run/podman/podman.sock""#,
        )?;
        let mut socket = None;
        for (key, value) in table.iter() {
            match key.get_ref().as_ref() {
                "socket" => {
                    let Some(text) = self.string(
                        value,
                        "containers.socket",
                        r#"socket = "/run/podman/podman.sock""#,
                    ) else {
                        continue;
                    };
                    let path = text
                        .value
                        .strip_prefix("unix://")
                        .unwrap_or(&text.value)
                        .to_string();
                    if !path.starts_with('/') {
                        self.problems.push(
                            text.span,
                            format!(
                                "`containers.socket` must be an absolute path to a unix socket, not \"{}\"",
                                text.value
                            ),
                            Some(
                                r#"e.g. socket = "/run/podman/podman.sock" (Podman) or "/var/run/docker.sock" (Docker); only local unix sockets are supported"#
                                    .into(),
                            ),
                        );
                        continue;
                    }
                    socket = Some(path);
                }
                other => self.unknown_key(key, other, CONTAINERS_KEYS, "[containers]"),
            }
        }
        socket
    }

    /// One of `image`, `dockerfile`, `target`, `network` in `[service.NAME]`.
    pub(super) fn container_key(
        &mut self,
        service: &str,
        key: &Key<'_>,
        value: &Value<'_>,
        into: &mut RawContainer,
    ) {
        let name = key.get_ref().as_ref();
        let path = format!("service.{service}.{name}");
        let span = entry_span(key, value);
        let example = match name {
            "image" => r#"image = "registry.example.com/shop:1.4""#,
            "dockerfile" => r#"dockerfile = "Dockerfile""#,
            "target" => r#"target = "production""#,
            _ => r#"network = "bridge""#,
        };
        let Some(text) = self.string(value, &path, example) else {
            return;
        };
        if text.value.trim().is_empty() {
            self.problems.push(
                text.span,
                format!("`{path}` must not be empty"),
                Some(format!("e.g. {example}")),
            );
            return;
        }
        if text
            .value
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
            && name != "dockerfile"
        {
            self.problems.push(
                text.span,
                format!("`{path}` must not contain spaces: \"{}\"", text.value),
                Some(format!("e.g. {example}")),
            );
            return;
        }
        let located = Located {
            value: text.value.clone(),
            span,
        };
        match name {
            "image" => into.image = Some(located),
            "dockerfile" => {
                let relative = std::path::Path::new(&text.value);
                let escapes = relative.is_absolute()
                    || relative
                        .components()
                        .any(|c| matches!(c, std::path::Component::ParentDir));
                if escapes {
                    self.problems.push(
                        text.span,
                        format!(
                            "`{path}` must be a path inside the service's source folder, not \"{}\"",
                            text.value
                        ),
                        Some(
                            "the source folder is the build context: give the Dockerfile's path relative to it, e.g. dockerfile = \"Dockerfile\", or move `source` up"
                                .into(),
                        ),
                    );
                    return;
                }
                into.dockerfile = Some(located);
            }
            "target" => into.target = Some(located),
            _ => match text.value.as_str() {
                "bridge" => {
                    into.network = Some(Located {
                        value: ContainerNetwork::Bridge,
                        span: located.span,
                    })
                }
                "host" => {
                    into.network = Some(Located {
                        value: ContainerNetwork::Host,
                        span: located.span,
                    })
                }
                other => {
                    let hint = match closest(other, NETWORKS) {
                        Some(near) => format!(r#"did you mean "{near}"?"#),
                        None => r#"network = "bridge" (own network, port published on 127.0.0.1) or "host""#.into(),
                    };
                    self.problems.push(
                        text.span,
                        format!("unknown network \"{other}\" in `{path}`"),
                        Some(hint),
                    );
                }
            },
        }
    }

    /// What a container service must not have, and what it needs.
    pub(super) fn check_container(&mut self, name: &str, service: &RawService) {
        let container = &service.container;
        let label = format!("[service.{name}]");
        if let (Some(image), Some(_)) = (&container.image, &container.dockerfile) {
            self.problems.push(
                image.span.clone(),
                format!("service `{name}` has both `image` and `dockerfile`"),
                Some(
                    "give one: image = \"...\" runs an existing image, dockerfile = \"Dockerfile\" builds one from the source folder"
                        .into(),
                ),
            );
        }
        if let Some(target) = &container.target {
            if container.dockerfile.is_none() {
                self.problems.push(
                    target.span.clone(),
                    format!("`target` in {label}, which has no `dockerfile`"),
                    Some(
                        "`target` picks a stage of a multi-stage Dockerfile: add dockerfile = \"Dockerfile\", or remove `target`"
                            .into(),
                    ),
                );
            }
        }
        if !container.is_container() {
            return;
        }
        let kind = if container.image.is_some() {
            "image"
        } else {
            "dockerfile"
        };
        if let Some(span) = &service.run_span {
            self.problems.push(
                span.clone(),
                format!("service `{name}` has both `run` and `{kind}`"),
                Some(
                    "a container runs its image's CMD/ENTRYPOINT: remove `run` (set the command in the Dockerfile), or remove the image to run a local process"
                        .into(),
                ),
            );
        }
        if let Some(span) = &service.build_span {
            self.problems.push(
                span.clone(),
                format!("service `{name}` has both `build` and `{kind}`"),
                Some(
                    "a container image is built by its Dockerfile (RUN steps): remove `build`"
                        .into(),
                ),
            );
        }
        if let Some(deploy) = &service.deploy {
            if deploy.value.migrate.is_some() {
                self.problems.push(
                    deploy.span.clone(),
                    format!("`deploy.migrate` on container service `{name}` is not supported yet"),
                    Some(
                        "run the migration from the image's entrypoint, or keep the service a local process"
                            .into(),
                    ),
                );
            }
        }
        if !service.cron.is_empty() {
            self.problems.push(
                service.run_span.clone().unwrap_or(0..0),
                format!("`cron` on container service `{name}` is not supported yet"),
                Some("keep scheduled tasks on a local-process service".into()),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::types::{ContainerNetwork, ImageSource};

    fn parse(toml: &str) -> Result<crate::Spec, String> {
        crate::parse(std::path::Path::new("/tmp/berth.toml"), toml, None).map_err(|d| d.to_string())
    }

    #[test]
    fn image_and_dockerfile_services_are_read() {
        let spec = parse(
            r#"
[containers]
socket = "unix:///run/podman/podman.sock"

[service.shop]
image = "prestashop/prestashop:8.1"
port = "auto"
network = "host"

[service.web]
dockerfile = "docker/Dockerfile"
target = "production"
port = "auto"
"#,
        )
        .unwrap();
        assert_eq!(
            spec.containers.socket.as_deref(),
            Some(std::path::Path::new("/run/podman/podman.sock"))
        );
        let shop = spec.services["shop"].container.as_ref().unwrap();
        assert_eq!(
            shop.image,
            ImageSource::Pull {
                reference: "prestashop/prestashop:8.1".into()
            }
        );
        assert_eq!(shop.network, ContainerNetwork::Host);
        let web = spec.services["web"].container.as_ref().unwrap();
        assert_eq!(
            web.image,
            ImageSource::Build {
                dockerfile: "docker/Dockerfile".into(),
                target: Some("production".into())
            }
        );
        assert_eq!(web.network, ContainerNetwork::Bridge);
        assert_eq!(spec.services["web"].run, "");
        // A process service has no container.
        let plain = parse("[service.web]\nrun = \"python3 app.py\"\n").unwrap();
        assert!(plain.services["web"].container.is_none());
        assert!(plain.containers.socket.is_none());
    }

    #[test]
    fn conflicting_keys_are_diagnosed_at_the_key() {
        let err = parse(
            r#"[service.web]
image = "nginx:1.25"
dockerfile = "Dockerfile"
run = "python3 app.py"
build = "make"
"#,
        )
        .unwrap_err();
        assert!(err.contains("has both `image` and `dockerfile`"), "{err}");
        assert!(err.contains("has both `run` and `image`"), "{err}");
        assert!(err.contains("has both `build` and `image`"), "{err}");
        assert!(err.contains("berth.toml:2:1"), "{err}");
        assert!(err.contains("berth.toml:4:1"), "{err}");
    }

    #[test]
    fn bad_values_are_diagnosed() {
        let err = parse(
            "[service.web]\ndockerfile = \"../Dockerfile\"\nnetwork = \"hots\"\n[containers]\nsocket = \"docker.sock\"\nsokcet = 1\n",
        )
        .unwrap_err();
        assert!(
            err.contains("must be a path inside the service's source folder"),
            "{err}"
        );
        assert!(err.contains("unknown network \"hots\""), "{err}");
        assert!(err.contains(r#"did you mean "host"?"#), "{err}");
        assert!(
            err.contains("must be an absolute path to a unix socket"),
            "{err}"
        );
        assert!(err.contains("sokcet"), "{err}");

        let err = parse("[service.web]\nrun = \"app\"\ntarget = \"prod\"\n").unwrap_err();
        assert!(
            err.contains("`target` in [service.web], which has no `dockerfile`"),
            "{err}"
        );

        let err = parse("[service.web]\nport = \"auto\"\n").unwrap_err();
        assert!(err.contains("or give it an image"), "{err}");

        let err = parse("[service.web]\nimage = \"\"\n").unwrap_err();
        assert!(err.contains("must not be empty"), "{err}");
    }

    #[test]
    fn a_bridged_container_cannot_use_a_host_accessory() {
        let toml = r#"
[accessory.db]
engine = "postgres"

[service.web]
image = "shop:1"
use = ["db"]
"#;
        let err = parse(toml).unwrap_err();
        assert!(err.contains("cannot reach accessory `db`"), "{err}");
        assert!(err.contains(r#"network = "host""#), "{err}");
        let ok = toml.replace("use = [\"db\"]", "use = [\"db\"]\nnetwork = \"host\"");
        parse(&ok).unwrap();
    }
}
