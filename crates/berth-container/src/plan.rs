//! The container to create for a replica, as pure functions of its [`LaunchSpec`]: name, labels,
//! environment, the port published on 127.0.0.1 only, bind mounts, limits.

use std::collections::HashMap;

use berth_model::{ContainerLaunch, LaunchSpec};
use bollard::models::{ContainerCreateBody, HostConfig, PortBinding, RestartPolicy};

/// Labels every Berth container carries (with `berth.service`, `berth.replica` and
/// `berth.release`, which the supervisor adds per replica).
pub const LABEL_STACK: &str = "berth.stack";
pub const LABEL_ENV: &str = "berth.env";
pub use berth_supervisor::replica::{LABEL_RELEASE, LABEL_REPLICA, LABEL_SERVICE};

/// Variables of the daemon's own environment that must not reach a container: the image sets
/// its own (its `PATH` above all).
pub const HOST_ONLY_ENV: &[&str] = &["PATH", "LANG", "LC_ALL", "TZ", "HOME"];

/// Keeps `[a-z0-9_.-]`, lowercases, replaces the rest by `-`.
fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '_' | '.' | '-' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '-',
        })
        .collect()
}

/// The repository a service's release images are tagged in: `berth/STACK-SERVICE`.
pub fn image_repo(stack: &str, service: &str) -> String {
    format!("berth/{}-{}", sanitize(stack), sanitize(service))
}

/// `berth-STACK-ENV-web.1-run-3`: unique per replica instance, readable in `podman ps`.
pub fn container_name(launch: &LaunchSpec, container: &ContainerLaunch) -> String {
    let label = |key: &str| container.labels.get(key).map_or("x", String::as_str);
    let instance = launch
        .instance_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(
        "berth-{}-{}-{}-{}",
        sanitize(label(LABEL_STACK)),
        sanitize(label(LABEL_ENV)),
        sanitize(&launch.key.to_string()),
        sanitize(&instance)
    )
}

/// What `limits` reads in `berth ps` for a container replica.
pub fn limits_text(launch: &LaunchSpec) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(memory) = launch.memory {
        parts.push(format!("memory {} MiB", memory / (1024 * 1024)));
    }
    if let Some(cpu) = launch.cpu {
        parts.push(format!("cpu {cpu}"));
    }
    (!parts.is_empty()).then(|| format!("{} (container)", parts.join(", ")))
}

/// The body of `POST /containers/create` for a replica.
pub fn create_body(launch: &LaunchSpec, container: &ContainerLaunch) -> ContainerCreateBody {
    let env: Vec<String> = launch
        .env
        .iter()
        .filter(|(k, _)| !HOST_ONLY_ENV.contains(&k.as_str()))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let host_network = container.network == "host";
    let (exposed, bindings) = match launch.port {
        Some(port) if !host_network => {
            let key = format!("{port}/tcp");
            let binding = PortBinding {
                host_ip: Some("127.0.0.1".into()),
                host_port: Some(port.to_string()),
            };
            (
                Some(vec![key.clone()]),
                Some(HashMap::from([(key, Some(vec![binding]))])),
            )
        }
        _ => (None, None),
    };
    let binds: Vec<String> = container
        .mounts
        .iter()
        .map(|m| {
            format!(
                "{}:{}:{}",
                m.source.display(),
                m.target.display(),
                if m.read_only { "ro" } else { "rw" }
            )
        })
        .collect();
    let stop_secs = container.stop_timeout.as_secs().max(1) as i64;
    ContainerCreateBody {
        image: Some(container.image.clone()),
        env: Some(env),
        labels: Some(container.labels.clone().into_iter().collect()),
        exposed_ports: exposed,
        stop_timeout: Some(stop_secs),
        host_config: Some(HostConfig {
            network_mode: Some(container.network.clone()),
            port_bindings: bindings,
            binds: (!binds.is_empty()).then_some(binds),
            memory: launch.memory.map(|m| m as i64),
            nano_cpus: launch.cpu.map(|c| (c * 1e9) as i64),
            // A small init as PID 1: signals reach the application even when the image's
            // command is a shell, and zombies are reaped.
            init: Some(true),
            // Berth restarts replicas itself (with back-off and events); the engine must not.
            restart_policy: Some(RestartPolicy {
                name: Some(bollard::models::RestartPolicyNameEnum::NO),
                maximum_retry_count: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Cuts a byte stream into lines (at most 64 KiB each, as the shim does).
#[derive(Debug, Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

const MAX_LINE: usize = 64 * 1024;

impl LineSplitter {
    /// Adds `bytes`; returns the lines completed by them, without their end of line.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        for &b in bytes {
            if b == b'\n' {
                lines.push(self.take());
            } else {
                self.pending.push(b);
                if self.pending.len() >= MAX_LINE {
                    lines.push(self.take());
                }
            }
        }
        lines
    }

    /// What is left when the stream ended without a final newline.
    pub fn finish(&mut self) -> Option<String> {
        (!self.pending.is_empty()).then(|| self.take())
    }

    fn take(&mut self) -> String {
        let text = String::from_utf8_lossy(&self.pending)
            .trim_end_matches('\r')
            .to_string();
        self.pending.clear();
        text
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;
    use std::time::Duration;

    use berth_model::{BindMount, ReleaseId, ReplicaKey};

    use super::*;

    fn launch(network: &str) -> (LaunchSpec, ContainerLaunch) {
        let container = ContainerLaunch {
            image: "sha256:abc".into(),
            network: network.into(),
            mounts: vec![
                BindMount {
                    source: "/s/.berth/default/volumes/uploads".into(),
                    target: "/s/.berth/default/volumes/uploads".into(),
                    read_only: false,
                },
                BindMount {
                    source: "/s/.berth/default/secrets/web/KEY.v1".into(),
                    target: "/s/.berth/default/secrets/web/KEY.v1".into(),
                    read_only: true,
                },
            ],
            labels: BTreeMap::from([
                (LABEL_STACK.to_string(), "Shop".to_string()),
                (LABEL_ENV.to_string(), "default".to_string()),
            ]),
            stop_timeout: Duration::from_secs(10),
        };
        let launch = LaunchSpec {
            key: ReplicaKey::new("web".to_string(), 2),
            release: ReleaseId("r3-abcdef12".into()),
            command: String::new(),
            cwd: PathBuf::from("/s/.berth/releases/web/r3-abcdef12"),
            env: BTreeMap::from([
                ("PATH".to_string(), "/usr/local/bin:/usr/bin".to_string()),
                ("HOME".to_string(), "/root".to_string()),
                ("PORT".to_string(), "41000".to_string()),
                ("GREETING".to_string(), "hi there".to_string()),
            ]),
            port: Some(41000),
            instance_dir: PathBuf::from("/s/.berth/default/replicas/web.2/run-3"),
            log_file: PathBuf::from("/s/.berth/default/replicas/web.2/current.log"),
            log_max_bytes: 1024,
            log_keep: 3,
            memory: Some(256 * 1024 * 1024),
            cpu: Some(0.5),
            cgroup: "berth/shop-default/web.2-3".into(),
            redact: vec![],
            container: Some(container.clone()),
        };
        (launch, container)
    }

    #[test]
    fn a_bridged_replica_publishes_its_port_on_loopback_only() {
        let (launch, container) = launch("bridge");
        let body = create_body(&launch, &container);
        let host = body.host_config.as_ref().unwrap();
        let bindings = host.port_bindings.as_ref().unwrap();
        let binding = bindings["41000/tcp"].as_ref().unwrap();
        assert_eq!(binding.len(), 1);
        assert_eq!(binding[0].host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(binding[0].host_port.as_deref(), Some("41000"));
        assert_eq!(body.exposed_ports, Some(vec!["41000/tcp".to_string()]));
        assert_eq!(host.network_mode.as_deref(), Some("bridge"));
        assert_eq!(host.memory, Some(256 * 1024 * 1024));
        assert_eq!(host.nano_cpus, Some(500_000_000));
        assert_eq!(host.init, Some(true));
        assert_eq!(body.image.as_deref(), Some("sha256:abc"));
        assert_eq!(body.stop_timeout, Some(10));
    }

    #[test]
    fn host_variables_stay_out_and_the_spec_ones_go_in() {
        let (launch, container) = launch("host");
        let body = create_body(&launch, &container);
        let env = body.env.unwrap();
        assert_eq!(env, vec!["GREETING=hi there", "PORT=41000"]);
        let host = body.host_config.unwrap();
        // The host's network: nothing to publish.
        assert!(host.port_bindings.is_none());
        assert_eq!(host.network_mode.as_deref(), Some("host"));
        assert_eq!(
            host.binds.unwrap(),
            vec![
                "/s/.berth/default/volumes/uploads:/s/.berth/default/volumes/uploads:rw",
                "/s/.berth/default/secrets/web/KEY.v1:/s/.berth/default/secrets/web/KEY.v1:ro",
            ]
        );
    }

    #[test]
    fn names_and_repositories_are_what_engines_accept() {
        let (launch, container) = launch("bridge");
        assert_eq!(
            container_name(&launch, &container),
            "berth-shop-default-web.2-run-3"
        );
        assert_eq!(image_repo("My Shop", "Web"), "berth/my-shop-web");
        assert_eq!(
            limits_text(&launch).as_deref(),
            Some("memory 256 MiB, cpu 0.5 (container)")
        );
    }

    #[test]
    fn lines_are_cut_at_newlines_and_bounded() {
        let mut lines = LineSplitter::default();
        assert_eq!(lines.push(b"one\r\ntw"), vec!["one"]);
        assert_eq!(lines.push(b"o\nthree"), vec!["two"]);
        assert_eq!(lines.finish().as_deref(), Some("three"));
        assert_eq!(lines.finish(), None);
        let long = vec![b'x'; MAX_LINE + 10];
        let cut = lines.push(&long);
        assert_eq!(cut.len(), 1);
        assert_eq!(cut[0].len(), MAX_LINE);
        assert_eq!(lines.finish().map(|l| l.len()), Some(10));
    }
}
