//! The daemon's side of TLS certificates: turns the spec's `[[certificate]]` tables into what
//! `berth_tls::Manager` manages, drives its issuance and renewal, and hands the files it serves
//! and the ACME challenges it publishes to the edge link (which pushes them in the routing
//! table). Every issuance, renewal and failure is an event of subject `tls`.
//!
//! Knows nothing of how certificates are issued (berth-tls) or served (the edge).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use berth_model::routing::CertificateFiles;
use berth_model::{EventLevel, StatePaths};
use berth_spec::tls::CertificateSource;
use berth_spec::Spec;
use berth_tls::{
    AcmeSettings, ChallengeMap, ChallengeSink, Desired, EventKind, Manager, Settings, Source,
};

use crate::edge::EdgeLink;

/// The longest the certificate loop sleeps between two looks.
const MAX_SLEEP: Duration = Duration::from_secs(3600);

/// A certificate's folder name: its first host, with what a file name cannot hold replaced.
fn base_name(hosts: &[String]) -> String {
    let first = hosts.first().map_or("certificate", String::as_str);
    first
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The certificates the spec wants, in its order. Each is named after its first host (a folder
/// name), so it keeps its files when other hosts are added; a second certificate with the same
/// first host gets `-2` (or the next number no other certificate's name holds).
pub fn desired(spec: &Spec) -> Vec<Desired> {
    let bases: Vec<String> = spec
        .tls
        .certificates
        .iter()
        .map(|certificate| base_name(&certificate.hosts))
        .collect();
    let mut taken: BTreeSet<String> = BTreeSet::new();
    spec.tls
        .certificates
        .iter()
        .zip(&bases)
        .enumerate()
        .map(|(index, (certificate, base))| {
            // The first certificate with a base keeps it; later ones count up, past every name
            // already given and every base another certificate has.
            let first_with_base = bases.iter().position(|b| b == base) == Some(index);
            let name = if first_with_base && !taken.contains(base) {
                base.clone()
            } else {
                (2u32..)
                    .map(|n| format!("{base}-{n}"))
                    .find(|candidate| !taken.contains(candidate) && !bases.contains(candidate))
                    .unwrap_or_else(|| format!("{base}-{index}"))
            };
            taken.insert(name.clone());
            Desired {
                name,
                hosts: certificate.hosts.clone(),
                source: match &certificate.source {
                    CertificateSource::Files { cert, key } => Source::Files {
                        cert: cert.clone(),
                        key: key.clone(),
                    },
                    CertificateSource::Acme => Source::Acme,
                    CertificateSource::Local => Source::Local,
                },
            }
        })
        .collect()
}

/// Where the certificates live (`.berth/ENV/tls`) and how ACME is reached.
pub fn settings(spec: &Spec, paths: &StatePaths) -> Settings {
    Settings {
        state_dir: paths.env_dir.join("tls"),
        acme: AcmeSettings {
            directory_url: spec.tls.acme.directory.clone(),
            contact: spec
                .tls
                .acme
                .email
                .iter()
                .map(|email| format!("mailto:{email}"))
                .collect(),
            server_root: spec.tls.acme.ca.clone(),
            ..AcmeSettings::default()
        },
    }
}

/// The edge as the ACME client's challenge sink: a published challenge is answered by the edge
/// once the table carrying it was pushed.
struct EdgeChallenges {
    link: Arc<EdgeLink>,
    map: ChallengeMap,
    serving: Mutex<Vec<CertificateFiles>>,
}

impl EdgeChallenges {
    async fn push(&self) -> anyhow::Result<()> {
        let serving = self
            .serving
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        self.link.set_tls(serving, self.map.snapshot());
        self.link.push().await.map(|_| ())
    }

    fn set_serving(&self, serving: Vec<CertificateFiles>) {
        *self.serving.lock().unwrap_or_else(|e| e.into_inner()) = serving;
    }
}

#[async_trait]
impl ChallengeSink for EdgeChallenges {
    async fn publish(&self, token: &str, key_authorization: &str) -> Result<(), String> {
        self.map.publish(token, key_authorization).await?;
        self.push()
            .await
            .map_err(|e| format!("the edge did not take the challenge: {e:#}"))
    }

    async fn withdraw(&self, token: &str) {
        self.map.withdraw(token).await;
        if let Err(e) = self.push().await {
            tracing::warn!("withdrawing an ACME challenge from the edge: {e:#}");
        }
    }
}

/// Starts the certificate loop when the spec has certificates Berth issues (ACME or the local
/// CA): it serves what is on disk at once, then issues and renews what is due, for as long as
/// the daemon runs.
pub fn spawn(
    link: Arc<EdgeLink>,
    spec: &Spec,
    paths: &StatePaths,
    record: impl Fn(EventLevel, String) + Send + Sync + 'static,
) -> anyhow::Result<()> {
    let wanted = desired(spec);
    if wanted
        .iter()
        .all(|d| matches!(d.source, Source::Files { .. }))
    {
        // The edge link serves the spec's files by itself.
        return Ok(());
    }
    let sink = Arc::new(EdgeChallenges {
        link,
        map: ChallengeMap::default(),
        serving: Mutex::default(),
    });
    let mut manager = Manager::new(settings(spec, paths), wanted.clone(), sink.clone())?;
    let local = wanted.iter().any(|d| d.source == Source::Local);
    tokio::spawn(async move {
        let span = tracing::info_span!("certificates");
        let _entered = span.enter();
        let mut told_trust = false;
        loop {
            let now = SystemTime::now();
            sink.set_serving(manager.serving(now));
            if let Err(e) = sink.push().await {
                tracing::warn!("pushing the certificates to the edge: {e:#}");
            }
            let events = manager.tick(now).await;
            for event in &events {
                let level = match event.kind {
                    EventKind::Failed { .. } => {
                        tracing::error!("{event}");
                        EventLevel::Error
                    }
                    _ => {
                        tracing::info!("{event}");
                        EventLevel::Info
                    }
                };
                record(level, event.to_string());
            }
            if local && !told_trust && manager.local_ca_cert().is_file() {
                told_trust = true;
                tracing::info!(
                    "{}",
                    berth_tls::trust_instructions(&manager.local_ca_cert())
                );
            }
            if !events.is_empty() {
                sink.set_serving(manager.serving(SystemTime::now()));
                if let Err(e) = sink.push().await {
                    tracing::warn!("pushing the certificates to the edge: {e:#}");
                }
            }
            let wait = manager
                .next_due(SystemTime::now())
                .unwrap_or(MAX_SLEEP)
                .clamp(Duration::from_secs(1), MAX_SLEEP);
            tokio::time::sleep(wait).await;
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_are_named_after_their_first_host_uniquely() {
        let file = std::path::Path::new("/nonexistent/berth.toml");
        let source = r#"
[[certificate]]
hosts = ["shop.example.com", "www.shop.example.com"]
acme = true

[[certificate]]
hosts = ["*.dev.test"]
local = true

[[certificate]]
hosts = ["shop.example.com"]
local = true

[service.web]
run = "x"
port = "auto"
"#;
        let spec = berth_spec::parse(file, source, None).unwrap();
        let wanted = desired(&spec);
        let names: Vec<&str> = wanted.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(
            names,
            ["shop.example.com", "_.dev.test", "shop.example.com-2"]
        );
        assert_eq!(wanted[0].source, Source::Acme);
        assert_eq!(wanted[0].hosts.len(), 2);
        assert_eq!(wanted[1].source, Source::Local);
    }

    #[test]
    fn certificate_names_never_collide() {
        let file = std::path::Path::new("/tmp/berth.toml");
        let source = r#"
[[certificate]]
hosts = ["a.test"]
local = true

[[certificate]]
hosts = ["a.test", "b.test"]
local = true

[[certificate]]
hosts = ["a.test-2"]
local = true

[service.web]
run = "x"
port = "auto"
"#;
        let spec = berth_spec::parse(file, source, None).unwrap();
        let names: Vec<String> = desired(&spec).into_iter().map(|d| d.name).collect();
        assert_eq!(names, ["a.test", "a.test-3", "a.test-2"]);
    }
}
