//! The certificates of a stack as one set the daemon drives: what to serve now, and a `tick`
//! that issues and renews what is due (decided by [`crate::policy`], then done), reporting
//! events for the daemon to log and record.
//!
//! State directory layout (all folders 0700, all files 0600):
//! ```text
//! STATE/ca/ca.pem, ca-key.pem          the local development CA
//! STATE/acme/account-HOST_PATH.json    ACME account credentials, one per directory URL
//! STATE/certs/NAME/cert.pem, key.pem   one folder per desired certificate (ACME or local)
//! STATE/certs/NAME/issuer               `local` or `acme DIRECTORY_URL`: who issued the pair
//! STATE/certs/NAME/failures.json       failed attempts since the last success (back-off)
//! ```
//! Certificates on disk are reused across restarts: a `tick` asks the ACME server nothing (does
//! not even load the account) unless a certificate is due.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use berth_model::routing::CertificateFiles;
use tracing::Instrument;

use crate::acme::{AcmeAccount, AcmeSettings, ChallengeSink};
use crate::error::{Result, TlsError};
use crate::files::{check_pair, write_private, CertInfo};
use crate::local::{LocalCa, CERT_FILE, KEY_FILE};
use crate::policy::{backoff, decide, Current, Failures, Renew, Why};

/// The file that records who issued a certificate folder's pair.
const ISSUER_FILE: &str = "issuer";

/// Where a certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Files the user manages; served as they are (the edge reloads them when they change and
    /// keeps the old pair while a new file is broken). Never issued or renewed here.
    Files { cert: PathBuf, key: PathBuf },
    /// Issued and renewed through ACME (HTTP-01).
    Acme,
    /// Signed by the local development CA.
    Local,
}

/// One certificate the stack wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// A stable name, used as the folder under `certs/` (letters, digits, `.`, `-`, `_`). Keep
    /// it when hosts change: the old certificate then keeps serving the hosts it covers while
    /// the new one is issued.
    pub name: String,
    /// Host names (or IP addresses) the certificate must cover; the first is the main one.
    pub hosts: Vec<String>,
    pub source: Source,
}

/// Where the set keeps its files and how it talks to ACME.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The stack's TLS state folder, e.g. `.berth/ENV/tls`.
    pub state_dir: PathBuf,
    pub acme: AcmeSettings,
}

/// What happened to a certificate during a [`Manager::tick`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertEvent {
    pub name: String,
    pub hosts: Vec<String>,
    /// `"acme"` or `"local"`.
    pub source: &'static str,
    pub kind: EventKind,
}

impl std::fmt::Display for CertEvent {
    /// One log line: `certificate web (acme: a.example, b.example) renewed, valid until ...`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "certificate {} ({}: {}) ",
            self.name,
            self.source,
            self.hosts.join(", ")
        )?;
        match &self.kind {
            EventKind::Issued { not_after } => {
                write!(
                    f,
                    "issued, valid until {}",
                    humantime::format_rfc3339_seconds(*not_after)
                )
            }
            EventKind::Renewed { not_after } => {
                write!(
                    f,
                    "renewed, valid until {}",
                    humantime::format_rfc3339_seconds(*not_after)
                )
            }
            EventKind::Failed {
                reason,
                attempts,
                retry_in,
                still_serving,
            } => {
                write!(
                    f,
                    "not issued (attempt {attempts}): {reason}; next attempt in {}",
                    humantime::format_duration(*retry_in)
                )?;
                if *still_serving {
                    f.write_str("; the current certificate keeps serving")?;
                }
                Ok(())
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// A first certificate (there was no usable one).
    Issued { not_after: SystemTime },
    /// A new certificate replaced a usable one (expiring, or missing a host).
    Renewed { not_after: SystemTime },
    /// The attempt failed. A still-valid certificate keeps serving; the next attempt is in
    /// `retry_in` (back-off).
    Failed {
        reason: String,
        attempts: u32,
        retry_in: Duration,
        /// Whether an older certificate is still served for these hosts.
        still_serving: bool,
    },
}

/// The decision for one certificate, before anything is done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub name: String,
    pub renew: Renew,
}

/// The certificate set. See the crate documentation for how the daemon drives it.
pub struct Manager {
    settings: Settings,
    desired: Vec<Desired>,
    failures: BTreeMap<String, Failures>,
    sink: Arc<dyn ChallengeSink>,
    account: Option<AcmeAccount>,
    local_ca: Option<LocalCa>,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("state_dir", &self.settings.state_dir)
            .field("desired", &self.desired)
            .field("failures", &self.failures)
            .finish_non_exhaustive()
    }
}

impl Manager {
    /// A set over `settings.state_dir`. Reads nothing from the network.
    pub fn new(
        settings: Settings,
        desired: Vec<Desired>,
        sink: Arc<dyn ChallengeSink>,
    ) -> Result<Manager> {
        let mut manager = Manager {
            settings,
            desired: Vec::new(),
            failures: BTreeMap::new(),
            sink,
            account: None,
            local_ca: None,
        };
        manager.set_desired(desired)?;
        Ok(manager)
    }

    /// Replaces the desired certificates (after a `berth.toml` change). Back-off state is kept
    /// for certificates whose hosts and source did not change.
    pub fn set_desired(&mut self, desired: Vec<Desired>) -> Result<()> {
        let mut names = std::collections::BTreeSet::new();
        for d in &desired {
            validate(d)?;
            if !names.insert(d.name.as_str()) {
                return Err(TlsError::Invalid {
                    name: d.name.clone(),
                    reason: "two certificates have this name".into(),
                });
            }
        }
        let mut failures = BTreeMap::new();
        for d in &desired {
            let unchanged = self.desired.iter().any(|old| old == d);
            let known = if unchanged {
                self.failures.get(&d.name).copied()
            } else if self.desired.iter().any(|old| old.name == d.name) {
                // Changed hosts or source: a fresh start, not the old back-off.
                None
            } else {
                read_failures(&self.failures_path(&d.name))
            };
            if let Some(f) = known {
                failures.insert(d.name.clone(), f);
            }
        }
        self.desired = desired;
        self.failures = failures;
        Ok(())
    }

    /// The folder of the certificate named `name`.
    pub fn cert_dir(&self, name: &str) -> PathBuf {
        self.settings.state_dir.join("certs").join(name)
    }

    /// The local CA's certificate (what users trust); it exists once a local certificate was
    /// issued. [`crate::trust_instructions`] says how to trust it.
    pub fn local_ca_cert(&self) -> PathBuf {
        self.settings.state_dir.join("ca").join("ca.pem")
    }

    fn failures_path(&self, name: &str) -> PathBuf {
        self.cert_dir(name).join("failures.json")
    }

    /// The certificates to serve at `now`, in the desired order: files as given, and for ACME
    /// and local certificates the pair on disk when it is valid and its key matches, for the
    /// desired hosts it covers. A certificate whose renewal fails is served until it expires.
    pub fn serving(&self, now: SystemTime) -> Vec<CertificateFiles> {
        self.desired
            .iter()
            .filter_map(|d| match &d.source {
                Source::Files { cert, key } => Some(CertificateFiles {
                    hosts: d.hosts.clone(),
                    cert: cert.clone(),
                    key: key.clone(),
                }),
                Source::Acme | Source::Local => {
                    let dir = self.cert_dir(&d.name);
                    let info = check_pair(&dir.join(CERT_FILE), &dir.join(KEY_FILE), now).ok()?;
                    let hosts: Vec<String> =
                        d.hosts.iter().filter(|h| info.covers(h)).cloned().collect();
                    (!hosts.is_empty()).then(|| CertificateFiles {
                        hosts,
                        cert: dir.join(CERT_FILE),
                        key: dir.join(KEY_FILE),
                    })
                }
            })
            .collect()
    }

    /// Who issues `d`'s certificate, as recorded in its folder's `issuer` file after each
    /// issuance: a change (local CA → ACME, staging → production) means a new certificate now.
    fn issuer(&self, d: &Desired) -> String {
        match d.source {
            Source::Acme => format!("acme {}", self.settings.acme.directory_url),
            Source::Local => "local".to_owned(),
            Source::Files { .. } => "files".to_owned(),
        }
    }

    fn observe(&self, d: &Desired, now: SystemTime) -> (Current, Option<CertInfo>) {
        let dir = self.cert_dir(&d.name);
        match check_pair(&dir.join(CERT_FILE), &dir.join(KEY_FILE), now) {
            Ok(info) => (
                Current::Usable {
                    validity: info.validity(),
                    covers_hosts: info.covers_all(&d.hosts),
                    same_issuer: fs::read_to_string(dir.join(ISSUER_FILE))
                        .is_ok_and(|issuer| issuer.trim() == self.issuer(d)),
                },
                Some(info),
            ),
            Err(_) => (Current::Unusable, None),
        }
    }

    /// What [`Manager::tick`] would do at `now`, one entry per ACME or local certificate.
    /// Reads the files; changes nothing.
    pub fn plan(&self, now: SystemTime) -> Vec<Planned> {
        self.desired
            .iter()
            .filter(|d| !matches!(d.source, Source::Files { .. }))
            .map(|d| Planned {
                name: d.name.clone(),
                renew: decide(
                    now,
                    self.observe(d, now).0,
                    self.failures.get(&d.name).copied(),
                ),
            })
            .collect()
    }

    /// How long until the next tick has something to do (zero: now); `None` when no
    /// certificate is managed here. The daemon can sleep this long, capped (e.g. at an hour,
    /// so a certificate removed by hand is noticed).
    pub fn next_due(&self, now: SystemTime) -> Option<Duration> {
        self.plan(now)
            .into_iter()
            .map(|p| match p.renew {
                Renew::Not(wait) | Renew::After(wait) => wait,
                Renew::Now(_) => Duration::ZERO,
            })
            .min()
    }

    /// Issues and renews the certificates that are due at `now`, one after the other, and says
    /// what happened. After a tick with an `Issued` or `Renewed` event, [`Manager::serving`]
    /// has changed: push the new table to the edge.
    pub async fn tick(&mut self, now: SystemTime) -> Vec<CertEvent> {
        let mut events = Vec::new();
        for d in self.desired.clone() {
            if matches!(d.source, Source::Files { .. }) {
                continue;
            }
            let (current, _) = self.observe(&d, now);
            let Renew::Now(why) = decide(now, current, self.failures.get(&d.name).copied()) else {
                continue;
            };
            let source = if d.source == Source::Acme {
                "acme"
            } else {
                "local"
            };
            // Instrumented, not entered: a span guard held across an await would make this
            // future !Send (and the daemon spawns it).
            let span = tracing::info_span!("certificate", name = %d.name, source, ?why);
            let kind = match self.issue(&d).instrument(span.clone()).await {
                Ok(info) => {
                    self.failures.remove(&d.name);
                    let _ = fs::remove_file(self.failures_path(&d.name));
                    span.in_scope(|| tracing::info!(hosts = ?d.hosts, "certificate issued"));
                    if why == Why::Missing {
                        EventKind::Issued {
                            not_after: info.not_after,
                        }
                    } else {
                        EventKind::Renewed {
                            not_after: info.not_after,
                        }
                    }
                }
                Err(e) => {
                    let attempts = self
                        .failures
                        .get(&d.name)
                        .map_or(1, |f| f.attempts.saturating_add(1));
                    let failures = Failures {
                        last: now,
                        attempts,
                    };
                    self.failures.insert(d.name.clone(), failures);
                    if let Ok(json) = serde_json::to_vec(&failures) {
                        let _ = write_private(&self.failures_path(&d.name), &json);
                    }
                    let reason = e.to_string();
                    let still_serving = current != Current::Unusable;
                    span.in_scope(|| {
                        tracing::warn!(%reason, attempts, still_serving, "certificate not issued")
                    });
                    EventKind::Failed {
                        reason,
                        attempts,
                        retry_in: backoff(attempts),
                        still_serving,
                    }
                }
            };
            events.push(CertEvent {
                name: d.name.clone(),
                hosts: d.hosts.clone(),
                source,
                kind,
            });
        }
        events
    }

    async fn issue(&mut self, d: &Desired) -> Result<CertInfo> {
        let dir = self.cert_dir(&d.name);
        let files = match d.source {
            Source::Local => {
                if self.local_ca.is_none() {
                    let ca_dir = self.settings.state_dir.join("ca");
                    self.local_ca = Some(LocalCa::load_or_create(&ca_dir)?);
                }
                let ca = self.local_ca.as_ref().expect("loaded above");
                ca.issue(&d.hosts, &dir)?
            }
            Source::Acme => {
                if self.account.is_none() {
                    let acme_dir = self.settings.state_dir.join("acme");
                    self.account =
                        Some(AcmeAccount::load_or_create(&self.settings.acme, &acme_dir).await?);
                }
                let account = self.account.as_ref().expect("loaded above");
                account.issue(&d.hosts, self.sink.as_ref(), &dir).await?
            }
            Source::Files { .. } => unreachable!("files are never issued"),
        };
        // After the pair: a crash in between leaves the old issuer recorded, so the certificate
        // is issued once more rather than taken for what it is not.
        write_private(&dir.join(ISSUER_FILE), self.issuer(d).as_bytes())?;
        check_pair(&files.cert, &files.key, SystemTime::now())
    }
}

fn validate(d: &Desired) -> Result<()> {
    let invalid = |reason: &str| {
        Err(TlsError::Invalid {
            name: d.name.clone(),
            reason: reason.to_owned(),
        })
    };
    let name_ok = !d.name.is_empty()
        && !d.name.starts_with('.')
        && d.name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !name_ok {
        return invalid("a name is letters, digits, '.', '-' and '_', not starting with '.'");
    }
    if d.hosts.is_empty() || d.hosts.iter().any(|h| h.trim().is_empty()) {
        return invalid("a certificate needs at least one host, and no empty one");
    }
    Ok(())
}

fn read_failures(path: &Path) -> Option<Failures> {
    serde_json::from_slice(&fs::read(path).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acme::ChallengeMap;

    const DAY: Duration = Duration::from_secs(24 * 3600);

    fn manager(state: &Path, hosts: &[&str]) -> Manager {
        Manager::new(
            Settings {
                state_dir: state.to_path_buf(),
                acme: AcmeSettings::default(),
            },
            vec![Desired {
                name: "web".into(),
                hosts: hosts.iter().map(|h| h.to_string()).collect(),
                source: Source::Local,
            }],
            Arc::new(ChallengeMap::default()),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn a_local_certificate_is_issued_once_and_reused_after_a_restart() {
        let state = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let mut m = manager(state.path(), &["app.localhost"]);
        assert!(m.serving(now).is_empty());
        assert_eq!(m.next_due(now), Some(Duration::ZERO));
        let events = m.tick(now).await;
        assert!(
            matches!(
                events[..],
                [CertEvent {
                    kind: EventKind::Issued { .. },
                    ..
                }]
            ),
            "{events:?}"
        );
        let serving = m.serving(now);
        assert_eq!(serving.len(), 1);
        assert_eq!(serving[0].hosts, ["app.localhost"]);
        assert!(m.local_ca_cert().exists());
        let before = fs::read(&serving[0].cert).unwrap();

        // A new manager (a restarted daemon) serves the same files and has nothing to do.
        let mut again = manager(state.path(), &["app.localhost"]);
        assert_eq!(again.serving(now), serving);
        assert!(again.tick(now).await.is_empty());
        assert_eq!(fs::read(&serving[0].cert).unwrap(), before);
        let wait = again.next_due(now).unwrap();
        assert!(wait > 300 * DAY && wait < 336 * DAY, "{wait:?}");

        // Within 30 days of expiry it is renewed.
        let late = now + 340 * DAY;
        assert!(matches!(
            again.tick(late).await[..],
            [CertEvent {
                kind: EventKind::Renewed { .. },
                ..
            }]
        ));
        assert_ne!(fs::read(&serving[0].cert).unwrap(), before);
    }

    #[tokio::test]
    async fn a_new_host_reissues_and_the_old_certificate_serves_meanwhile() {
        let state = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let mut m = manager(state.path(), &["a.localhost"]);
        m.tick(now).await;
        let changed = Desired {
            name: "web".into(),
            hosts: vec!["a.localhost".into(), "b.localhost".into()],
            source: Source::Local,
        };
        m.set_desired(vec![changed]).unwrap();
        // Before the tick: the old certificate, for the host it covers.
        assert_eq!(m.serving(now)[0].hosts, ["a.localhost"]);
        assert_eq!(
            m.plan(now)[0].renew,
            Renew::Now(crate::policy::Why::HostsChanged)
        );
        assert!(matches!(
            m.tick(now).await[..],
            [CertEvent {
                kind: EventKind::Renewed { .. },
                ..
            }]
        ));
        assert_eq!(m.serving(now)[0].hosts, ["a.localhost", "b.localhost"]);
    }

    #[tokio::test]
    async fn switching_from_the_local_ca_to_acme_reissues_and_serves_the_old_one_meanwhile() {
        let state = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let mut m = manager(state.path(), &["a.localhost"]);
        m.tick(now).await;
        let local = m.serving(now);
        let acme = Desired {
            name: "web".into(),
            hosts: vec!["a.localhost".into()],
            source: Source::Acme,
        };
        let mut m = Manager::new(
            Settings {
                state_dir: state.path().to_path_buf(),
                acme: AcmeSettings {
                    // Nothing listens there: the attempt fails fast.
                    directory_url: "https://127.0.0.1:9/directory".into(),
                    timeout: Duration::from_secs(10),
                    ..AcmeSettings::default()
                },
            },
            vec![acme],
            Arc::new(ChallengeMap::default()),
        )
        .unwrap();
        assert_eq!(m.plan(now)[0].renew, Renew::Now(Why::IssuerChanged));
        let events = m.tick(now).await;
        assert!(
            matches!(
                events[..],
                [CertEvent {
                    kind: EventKind::Failed {
                        still_serving: true,
                        ..
                    },
                    ..
                }]
            ),
            "{events:?}"
        );
        assert_eq!(m.serving(now), local);
    }

    #[tokio::test]
    async fn files_are_served_as_given_and_never_issued() {
        let state = tempfile::tempdir().unwrap();
        let files = Desired {
            name: "own".into(),
            hosts: vec!["example.test".into()],
            source: Source::Files {
                cert: "/etc/ssl/own.pem".into(),
                key: "/etc/ssl/own.key".into(),
            },
        };
        let mut m = Manager::new(
            Settings {
                state_dir: state.path().to_path_buf(),
                acme: AcmeSettings::default(),
            },
            vec![files],
            Arc::new(ChallengeMap::default()),
        )
        .unwrap();
        let now = SystemTime::now();
        assert_eq!(m.serving(now)[0].cert, Path::new("/etc/ssl/own.pem"));
        assert!(m.plan(now).is_empty());
        assert_eq!(m.next_due(now), None);
        assert!(m.tick(now).await.is_empty());
    }

    /// The daemon spawns the tick: its future must be Send.
    #[allow(dead_code)]
    fn tick_is_send(manager: &mut Manager) {
        fn send<T: Send>(_: &T) {}
        send(&manager.tick(SystemTime::now()));
    }

    #[test]
    fn an_event_reads_as_one_log_line() {
        let event = CertEvent {
            name: "web".into(),
            hosts: vec!["a.test".into(), "b.test".into()],
            source: "acme",
            kind: EventKind::Failed {
                reason: "acme validation of a.test failed: 404".into(),
                attempts: 2,
                retry_in: Duration::from_secs(120),
                still_serving: true,
            },
        };
        assert_eq!(
            event.to_string(),
            "certificate web (acme: a.test, b.test) not issued (attempt 2): acme validation of \
             a.test failed: 404; next attempt in 2m; the current certificate keeps serving"
        );
    }

    #[test]
    fn names_must_be_folders_and_unique() {
        let d = |name: &str| Desired {
            name: name.into(),
            hosts: vec!["a.test".into()],
            source: Source::Local,
        };
        let state = tempfile::tempdir().unwrap();
        let settings = Settings {
            state_dir: state.path().to_path_buf(),
            acme: AcmeSettings::default(),
        };
        let sink = Arc::new(ChallengeMap::default());
        for bad in ["", "../x", ".hidden", "a/b"] {
            assert!(Manager::new(settings.clone(), vec![d(bad)], sink.clone()).is_err());
        }
        let err = Manager::new(settings, vec![d("web"), d("web")], sink).unwrap_err();
        assert!(err.to_string().contains("two certificates"), "{err}");
    }
}
