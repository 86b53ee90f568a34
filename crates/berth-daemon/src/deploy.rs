//! The deploy pipeline around the rollout engine: pre-flight, release (snapshot + build),
//! pre-deploy backup, migration, rollout with analysis, and the deploy record that keeps every
//! step, verdict and timing. One deploy per service and environment at a time; `berth deploy
//! cancel` rolls a running one back; a deploy found running when the daemon starts (it died
//! mid-deploy) is rolled back deterministically before anything else moves.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{anyhow, bail, Context};
use berth_model::deploy::{DeployRequest, DeployStarted, DeployStep, StepState, Verdict};
use berth_model::{DeployRecord, DeployState, EventLevel, Health, ReleaseId, TrafficControl};
use berth_rollout::{Journal, Outcome, Rollout, SmokeTarget};
use berth_spec::{ServiceSpec, Spec, Strategy};
use tokio::sync::watch;

use crate::stack::Stack;

/// What a deploy's pipeline works from.
struct Pipeline {
    /// The spec as read for this deploy.
    spec: Spec,
    /// The service's settings for the new release.
    service: ServiceSpec,
    strategy: Strategy,
    /// Go on when the current release is not healthy.
    force: bool,
    /// An existing release to deploy (a rollback), instead of making one.
    release: Option<ReleaseId>,
}

/// A deploy under way.
struct Running {
    id: u64,
    cancel: watch::Sender<bool>,
}

/// The deploys of this daemon.
#[derive(Default)]
pub struct Deploys {
    running: Mutex<HashMap<String, Running>>,
    /// Two migrations never run at once (they share the environment's databases).
    pub(crate) migrate_lock: tokio::sync::Mutex<()>,
}

impl Deploys {
    /// The running deploy of `service`, if any.
    pub fn running(&self, service: &str) -> Option<u64> {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(service)
            .map(|r| r.id)
    }

    /// Asks deploy `id` to roll back; false when it is not running here.
    pub fn cancel(&self, id: u64) -> bool {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        match running.values().find(|r| r.id == id) {
            Some(r) => {
                let _ = r.cancel.send(true);
                true
            }
            None => false,
        }
    }
}

/// Writes the rollout's steps into the deploy record and saves it.
struct RecordJournal {
    stack: Arc<Stack>,
    record: DeployRecord,
}

impl RecordJournal {
    fn save(&self) {
        if let Err(e) = self.stack.with_store(|s| s.update_deploy(&self.record)) {
            tracing::error!("saving deploy {}: {e:#}", self.record.id);
        }
    }

    fn step(&mut self, name: &str, state: StepState, detail: &str) {
        let i = self.begin(name);
        self.end(i, state, detail);
    }

    /// Ends the deploy `failed` (nothing moved) because `rule` fired.
    fn failed(&mut self, rule: &str, message: String) {
        self.finish(
            DeployState::Failed,
            Some(Verdict {
                rule: rule.into(),
                message,
            }),
        );
    }

    fn finish(&mut self, state: DeployState, verdict: Option<Verdict>) {
        self.record.state = state;
        self.record.verdict = verdict;
        self.record.finished_at = Some(berth_model::now_unix());
        self.save();
        let level = if state == DeployState::Succeeded {
            EventLevel::Info
        } else {
            EventLevel::Warn
        };
        let summary = self.record.summary();
        tracing::info!("{summary}");
        self.stack.record(level, &self.record.service, summary);
        if let Some(alarms) = crate::alarms::AlarmContext::of(&self.stack) {
            alarms.deploy_finished(&self.record);
        }
    }
}

impl Journal for RecordJournal {
    fn begin(&mut self, name: &str) -> usize {
        tracing::info!(
            "deploy {} ({}): {name}",
            self.record.id,
            self.record.service
        );
        let i = self.record.begin(name);
        self.save();
        i
    }

    fn end(&mut self, step: usize, state: StepState, detail: &str) {
        self.record.end(step, state, detail);
        self.save();
    }

    fn traffic(&mut self, requests: u64, errors: u64) {
        self.record.traffic.requests = requests;
        self.record.traffic.errors = errors;
    }

    fn judgment(&mut self, step: usize, numbers: &berth_model::deploy::Judgment) {
        if let Some(s) = self.record.steps.get_mut(step) {
            s.analysis = Some(numbers.clone());
        }
    }
}

impl Stack {
    /// Starts a deploy of one service (the pipeline runs in the background), or says that
    /// nothing changed.
    pub async fn start_deploy(
        self: &Arc<Self>,
        request: DeployRequest,
    ) -> Result<DeployStarted, DeployRefusal> {
        let name = request.service.clone();
        if let Some(id) = self.deploys.running(&name) {
            return Err(DeployRefusal::Conflict(format!(
                "deploy {id} of `{name}` is running: follow it with `berth deploy watch {id}` or roll it back with `berth deploy cancel {id}`"
            )));
        }
        // The spec as it is now on disk: a changed `env` or `run` is a new release.
        let spec = berth_spec::load(&self.spec.path, Some(self.env_name()))
            .map_err(|d| DeployRefusal::Invalid(d.to_string()))?;
        let Some(service) = spec.services.get(&name).cloned() else {
            return Err(DeployRefusal::NotFound(format!(
                "no service `{name}` in {}",
                self.spec.path.display()
            )));
        };
        if !self.spec.services.contains_key(&name) {
            return Err(DeployRefusal::Invalid(format!(
                "`{name}` is new in {}: new services start with `berth down` and `berth up`",
                self.spec.path.display()
            )));
        }
        let strategy = match &request.strategy {
            Some(text) => Strategy::parse(text).ok_or_else(|| {
                DeployRefusal::Invalid(format!(
                    "unknown strategy `{text}`: rolling, bluegreen or canary"
                ))
            })?,
            None => service.deploy.strategy,
        };
        if strategy != Strategy::Rolling && !service.port.has_port() {
            return Err(DeployRefusal::Invalid(format!(
                "`{name}` has no port: only a rolling deploy can replace a worker"
            )));
        }
        let source = self
            .deploy_source(&service, &request)
            .await
            .map_err(|e| DeployRefusal::Invalid(format!("{e:#}")))?;
        let mut service = service;
        if let Some(dir) = &source {
            service.source = dir.clone();
        }
        // Nothing to do when the release would be the one that carries all the traffic.
        let env = self.env_name().to_string();
        let current = self
            .with_store(|s| s.current_release(&env, &name))
            .map_err(DeployRefusal::Internal)?;
        let fingerprint = berth_release::fingerprint(&service).map_err(DeployRefusal::Internal)?;
        if let Some(current) = &current {
            let same = self
                .with_store(|s| s.release(&name, current))
                .map_err(DeployRefusal::Internal)?
                .is_some_and(|r| r.fingerprint == fingerprint);
            let split = self
                .with_store(|s| s.traffic_weights(&env))
                .map_err(DeployRefusal::Internal)?
                .contains_key(&name);
            if same && !split {
                // Settings outside the release (health, deploy...) apply from now on.
                if let Ok(json) = serde_json::to_string(&service) {
                    let _ = self.with_store(|s| s.put_release_spec(&name, current, &json));
                }
                return Ok(DeployStarted {
                    deploy: None,
                    unchanged: Some(current.to_string()),
                });
            }
        }
        let mut record = DeployRecord {
            id: 0,
            service: name.clone(),
            env: env.clone(),
            strategy: strategy.to_string(),
            from_release: current,
            to_release: None,
            state: DeployState::Running,
            started_at: berth_model::now_unix(),
            finished_at: None,
            verdict: None,
            steps: Vec::new(),
            traffic: Default::default(),
            rollback: false,
        };
        self.with_store(|s| s.insert_deploy(&mut record).map(|_| ()))
            .map_err(DeployRefusal::Internal)?;
        Ok(self.launch(
            record,
            Pipeline {
                spec,
                service,
                strategy,
                force: request.force,
                release: None,
            },
        ))
    }

    /// `--source DIR` as is; `--rev REV` exported with `git archive` into the state folder.
    async fn deploy_source(
        &self,
        service: &ServiceSpec,
        request: &DeployRequest,
    ) -> anyhow::Result<Option<PathBuf>> {
        if let Some(dir) = &request.source {
            let dir = std::path::absolute(dir)?;
            if !dir.is_dir() {
                bail!("--source {}: not a folder", dir.display());
            }
            return Ok(Some(dir));
        }
        let Some(rev) = &request.rev else {
            return Ok(None);
        };
        if rev.starts_with('-') || rev.contains(char::is_whitespace) {
            bail!("--rev {rev}: not a git revision");
        }
        let top = tokio::process::Command::new("git")
            .arg("-C")
            .arg(&service.source)
            .args(["rev-parse", "--show-toplevel"])
            .output()
            .await
            .context("running git")?;
        if !top.status.success() {
            bail!(
                "--rev needs the source of `{}` ({}) to be in a git repository",
                service.name,
                service.source.display()
            );
        }
        let top = PathBuf::from(String::from_utf8_lossy(&top.stdout).trim());
        let inside = service
            .source
            .strip_prefix(&top)
            .unwrap_or(std::path::Path::new(""));
        let commit = tokio::process::Command::new("git")
            .arg("-C")
            .arg(&top)
            .args(["rev-parse", "--verify", "--quiet"])
            .arg(format!("{rev}^{{commit}}"))
            .output()
            .await?;
        if !commit.status.success() {
            bail!("--rev {rev}: no such revision in {}", top.display());
        }
        let commit = String::from_utf8_lossy(&commit.stdout).trim().to_string();
        let out = self
            .paths
            .env_dir
            .join("sources")
            .join(&service.name)
            .join(&commit);
        if !out.is_dir() {
            let tmp = out.with_extension("tmp");
            let _ = std::fs::remove_dir_all(&tmp);
            std::fs::create_dir_all(&tmp)?;
            let archive = tokio::process::Command::new("sh")
                .arg("-c")
                .arg("git -C \"$1\" archive --format=tar \"$2\" | tar -x -C \"$3\"")
                .arg("sh")
                .arg(&top)
                .arg(&commit)
                .arg(&tmp)
                .status()
                .await?;
            if !archive.success() {
                bail!("exporting {rev} with git archive failed");
            }
            std::fs::rename(&tmp, &out)?;
        }
        Ok(Some(out.join(inside)))
    }

    /// Registers a deploy as running and runs its pipeline in the background.
    fn launch(self: &Arc<Self>, record: DeployRecord, pipeline: Pipeline) -> DeployStarted {
        let (cancel_tx, cancel_rx) = watch::channel(false);
        let name = record.service.clone();
        let id = record.id;
        self.deploys
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                name.clone(),
                Running {
                    id,
                    cancel: cancel_tx,
                },
            );
        let stack = self.clone();
        let started = record.clone();
        tokio::spawn(async move {
            stack.run_pipeline(record, pipeline, cancel_rx).await;
            let mut running = stack
                .deploys
                .running
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if running.get(&name).is_some_and(|r| r.id == id) {
                running.remove(&name);
            }
        });
        DeployStarted {
            deploy: Some(started),
            unchanged: None,
        }
    }

    /// The whole pipeline of one deploy; the record says how it ended.
    async fn run_pipeline(
        self: &Arc<Self>,
        record: DeployRecord,
        pipeline: Pipeline,
        cancel: watch::Receiver<bool>,
    ) {
        let Pipeline {
            spec,
            service,
            strategy,
            force,
            release,
        } = pipeline;
        let mut journal = RecordJournal {
            stack: self.clone(),
            record,
        };
        let name = service.name.clone();
        let desired = self.desired(&service);

        // 1. Pre-flight.
        let step = journal.begin("pre-flight");
        // A held release (its first migration failed) never served: nothing to keep or to
        // roll back to.
        let held = self.held(&name);
        let old_plan = journal
            .record
            .from_release
            .clone()
            .filter(|_| held.is_none())
            .and_then(|id| self.plan_for_release(&name, &id).ok());
        let old_healthy = match &old_plan {
            Some(plan) => self.healthy_of(&name, &plan.release.id.0),
            None => 0,
        };
        let mut notes = vec![format!(
            "spec valid; {old_healthy}/{desired} healthy on {}",
            journal
                .record
                .from_release
                .as_ref()
                .map(|r| r.to_string())
                .unwrap_or_else(|| "-".into())
        )];
        let stack_changes = stack_level_changes(&self.spec, &spec, &name);
        let others: Vec<&String> = spec
            .services
            .iter()
            .filter(|(other, s)| {
                other.as_str() != name
                    && self
                        .current_plan(other)
                        .is_ok_and(|plan| plan.service.env != s.env || plan.service.run != s.run)
            })
            .map(|(other, _)| other)
            .collect();
        if !others.is_empty() {
            notes.push(format!(
                "{} changed too: `berth deploy` them",
                others
                    .iter()
                    .map(|o| o.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if let Some(reason) = &held {
            notes.push(format!("replacing a held release ({reason})"));
        }
        if !stack_changes.is_empty() {
            notes.push(format!(
                "changes to {} apply at the next `berth up`",
                stack_changes.join(", ")
            ));
        }
        if old_healthy < desired && old_plan.is_some() {
            if !force {
                let message = format!(
                    "the current release has {old_healthy}/{desired} healthy replicas; fix it first or deploy with --force"
                );
                journal.end(step, StepState::Failed, &message);
                journal.failed("pre-flight", message);
                return;
            }
            notes.push("the current release is not healthy (--force)".into());
        }
        journal.end(step, StepState::Done, &notes.join("; "));

        // 2. The release.
        let step = journal.begin("release");
        let new_release = match release {
            Some(id) => self
                .with_store(|s| s.release(&name, &id))
                .and_then(|r| r.ok_or_else(|| anyhow!("release {id} of `{name}` is gone"))),
            None => self.release_for(&service).await,
        };
        // A release chosen by id may be a container release whose image the engine lost.
        let new_release = match new_release {
            Ok(r) => self.ensure_image(&service, &r).await.map(|()| r),
            Err(e) => Err(e),
        };
        let new_release = match new_release {
            Ok(r) => r,
            Err(e) => {
                let message = format!("{e:#}");
                journal.end(step, StepState::Failed, &message);
                journal.failed("build", message);
                return;
            }
        };
        journal.record.to_release = Some(new_release.id.clone());
        if journal.record.from_release.as_ref() == Some(&new_release.id) {
            journal.end(step, StepState::Done, "unchanged");
            journal.finish(DeployState::Succeeded, None);
            return;
        }
        if let Ok(json) = serde_json::to_string(&service) {
            let _ = self.with_store(|s| s.put_release_spec(&name, &new_release.id, &json));
        }
        journal.end(
            step,
            StepState::Done,
            &format!(
                "{}{}",
                new_release.id,
                new_release
                    .source_rev
                    .as_deref()
                    .map(|r| format!(" (git {})", &r[..r.len().min(12)]))
                    .unwrap_or_default()
            ),
        );
        let new_plan = match self.plan(&service, new_release.clone()) {
            Ok(p) => p,
            Err(e) => {
                journal.failed("pre-flight", format!("{e:#}"));
                return;
            }
        };

        // 3. Backup.
        if service.deploy.backup && !journal.record.rollback {
            let step = journal.begin("pre-deploy backup");
            match crate::backup::backup_now(self, &format!("pre-deploy {}", journal.record.id)).await {
                Ok(summary) => journal.end(
                    step,
                    StepState::Done,
                    &format!(
                        "backup {}: {} part(s), {} KiB in {} (`berth backup restore {}` brings it back)",
                        summary.id,
                        summary.parts,
                        summary.total_bytes.div_ceil(1024),
                        summary.destination,
                        summary.id
                    ),
                ),
                Err(e) => {
                    let message = format!("{e:#}");
                    journal.end(step, StepState::Failed, &message);
                    journal.failed("backup", message);
                    return;
                }
            }
        }

        // 4. Migration.
        let mut migrated = false;
        if let (Some(command), false) = (&service.deploy.migrate, journal.record.rollback) {
            let step = journal.begin(&format!("migrate: {command}"));
            let log = self
                .paths
                .env_dir
                .join("deploys")
                .join(format!("{}-migrate.log", journal.record.id));
            let began = Instant::now();
            let outcome = crate::tasks::migrate(self, &new_plan, command, &log).await;
            match outcome {
                Ok(o) if o.success => {
                    migrated = true;
                    journal.end(
                        step,
                        StepState::Done,
                        &format!(
                            "{} in {:.1}s; log {}",
                            o.how,
                            began.elapsed().as_secs_f64(),
                            log.display()
                        ),
                    );
                }
                Ok(o) => {
                    let message = format!(
                        "the migration failed ({}): {}",
                        o.how,
                        o.tail.last().map(String::as_str).unwrap_or("no output")
                    );
                    journal.end(
                        step,
                        StepState::Failed,
                        &format!("{message}; log {}", log.display()),
                    );
                    journal.failed("migration", format!("{message}; no traffic moved"));
                    return;
                }
                Err(e) => {
                    let message = format!("could not run the migration: {e:#}");
                    journal.end(step, StepState::Failed, &message);
                    journal.failed("migration", message);
                    return;
                }
            }
        }

        // 5-6. Rollout, analysis, post-deploy checks.
        let Some(traffic) = self.traffic_control() else {
            journal.failed("edge", "the edge is not running".into());
            return;
        };
        let rollout = Rollout {
            supervisor: self.supervisor.clone(),
            traffic: traffic.clone(),
            smoke: self.smoke_target(&name),
            old: old_plan,
            new: new_plan,
            desired,
            deploy: service.deploy.clone(),
            strategy,
            cancel,
            alarms: Some(crate::alarms::watch(
                &self.store,
                self.env_name(),
                &self.spec.alarms,
            )),
        };
        let outcome = rollout.run(&mut journal).await;
        // Traffic is on one release again (the new one, or the old one after a rollback):
        // what the edge cached from the other is dropped.
        self.purge_cache_of(&name, &mut journal).await;
        match outcome {
            Outcome::Succeeded { retire_at } => {
                let env = self.env_name().to_string();
                if let Err(e) =
                    self.with_store(|s| s.set_current_release(&env, &name, &new_release.id))
                {
                    tracing::error!("recording the current release of {name}: {e:#}");
                }
                self.set_held(&name, None);
                if let Some(at) = retire_at {
                    let old = journal
                        .record
                        .from_release
                        .as_ref()
                        .map(|r| r.to_string())
                        .unwrap_or_default();
                    let wait = at.saturating_duration_since(Instant::now());
                    journal.step(
                        &format!("keep {old} for an instant rollback"),
                        StepState::Done,
                        &format!(
                            "for {} more (`berth rollback {name}` switches back at once)",
                            humantime::format_duration(std::time::Duration::from_secs(
                                wait.as_secs()
                            ))
                        ),
                    );
                    self.spawn_retire(journal.record.id, name.clone(), new_release.id.clone(), at);
                }
                journal.finish(DeployState::Succeeded, None);
                self.prune_after_deploy(&name);
            }
            Outcome::RolledBack(verdict) => {
                if migrated {
                    journal.step(
                        "migrations stay applied",
                        StepState::Skipped,
                        &format!(
                            "Berth does not undo migrations; if the old release cannot work with the new schema, run your down-migration from the old release's folder, e.g. `cd {} && <down-migration command>`",
                            journal
                                .record
                                .from_release
                                .as_ref()
                                .and_then(|r| self.with_store(|s| s.release(&name, r)).ok().flatten())
                                .map(|r| r.dir)
                                .unwrap_or_default()
                        ),
                    );
                }
                journal.finish(DeployState::RolledBack, Some(verdict));
            }
        }
    }

    /// Drops the edge's cached answers of `service` (a journal step when the stack caches).
    async fn purge_cache_of(&self, service: &str, journal: &mut RecordJournal) {
        if self.spec.edge.cache.is_none() {
            return;
        }
        let Some(link) = self.edge.get() else { return };
        match link.purge_cache(Some(service), None).await {
            Ok(purged) => journal.step(
                "purge the edge's cache",
                StepState::Done,
                &format!("{purged} cached answers of {service} dropped"),
            ),
            Err(e) => journal.step(
                "purge the edge's cache",
                StepState::Failed,
                &format!("{e:#}"),
            ),
        }
    }

    fn prune_after_deploy(&self, name: &str) {
        if let Err(e) = self.prune_releases(name) {
            tracing::warn!("pruning releases of {name}: {e:#}");
        }
    }

    /// Stops the old group once the termination wait is over (unless a rollback took it back).
    fn spawn_retire(self: &Arc<Self>, id: u64, service: String, keep: ReleaseId, at: Instant) {
        let stack = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            // Checked under the service's lock, which a rollout holds from start to end.
            let lock = stack.supervisor.lock_service(&service);
            let _guard = lock.lock().await;
            let env = stack.env_name().to_string();
            let current = stack
                .with_store(|s| s.current_release(&env, &service))
                .ok()
                .flatten();
            if current.as_ref() != Some(&keep) || stack.deploys.running(&service).is_some() {
                return; // rolled back, or another deploy took over
            }
            let Some(traffic) = stack.traffic_control() else {
                return;
            };
            let stopped =
                berth_rollout::retire(&stack.supervisor, &traffic, &service, &keep.0).await;
            if let Ok(Some(mut record)) = stack.with_store(|s| s.deploy(id)) {
                record.steps.push(DeployStep {
                    name: "old group stopped".into(),
                    state: StepState::Done,
                    started_ms: berth_model::deploy::now_ms(),
                    finished_ms: Some(berth_model::deploy::now_ms()),
                    detail: format!("{stopped} replica(s)"),
                    analysis: None,
                });
                let _ = stack.with_store(|s| s.update_deploy(&record));
            }
            stack.prune_after_deploy(&service);
        });
    }

    /// Healthy replicas of `service` running `release`.
    fn healthy_of(&self, service: &str, release: &str) -> u32 {
        self.supervisor
            .board()
            .snapshot()
            .iter()
            .filter(|r| r.service == service && r.release == release && r.health == Health::Healthy)
            .count() as u32
    }

    pub fn traffic_control(&self) -> Option<Arc<dyn TrafficControl>> {
        self.edge
            .get()
            .map(|link| link.clone() as Arc<dyn TrafficControl>)
    }

    /// Where smoke checks of `service` go: the edge, with the host of the service's first route.
    fn smoke_target(&self, service: &str) -> Option<SmokeTarget> {
        let link = self.edge.get()?;
        let route = self.spec.routes.iter().find(|r| r.service == service)?;
        let mut edge = *link.listen.first()?;
        if edge.ip().is_unspecified() {
            edge.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let host = match &route.host {
            Some(h) if h.starts_with("*.") => format!("smoke-check{}", &h[1..]),
            Some(h) => h.clone(),
            None => edge.to_string(),
        };
        Some(SmokeTarget {
            edge,
            host,
            test_key: link.test_key().to_string(),
        })
    }

    /// `berth rollback`: back to `to` (default: the release before the current one). When that
    /// release's group is still up (a blue/green or canary termination wait), this is a traffic
    /// switch; otherwise a deploy of that release with the service's strategy, without build or
    /// migration.
    pub async fn rollback(
        self: &Arc<Self>,
        service: &str,
        to: Option<ReleaseId>,
    ) -> Result<DeployStarted, DeployRefusal> {
        if let Some(id) = self.deploys.running(service) {
            return Err(DeployRefusal::Conflict(format!(
                "deploy {id} of `{service}` is running: `berth deploy cancel {id}` rolls it back"
            )));
        }
        let Some(spec_service) = self.spec.services.get(service).cloned() else {
            return Err(DeployRefusal::NotFound(format!("no service `{service}`")));
        };
        let env = self.env_name().to_string();
        let current = self
            .with_store(|s| s.current_release(&env, service))
            .map_err(DeployRefusal::Internal)?
            .ok_or_else(|| DeployRefusal::NotFound(format!("`{service}` has no release")))?;
        let target = match to {
            Some(id) => id,
            None => self
                .previous_release(service, &current)
                .map_err(DeployRefusal::Internal)?
                .ok_or_else(|| {
                    DeployRefusal::NotFound(format!(
                        "`{service}` has no release before {current} to go back to"
                    ))
                })?,
        };
        if target == current {
            return Ok(DeployStarted {
                deploy: None,
                unchanged: Some(current.to_string()),
            });
        }
        let release = self
            .with_store(|s| s.release(service, &target))
            .map_err(DeployRefusal::Internal)?
            .filter(|r| berth_release::is_complete(std::path::Path::new(&r.dir)))
            .ok_or_else(|| {
                DeployRefusal::NotFound(format!(
                    "release {target} of `{service}` is not kept any more (see `berth releases`)"
                ))
            })?;
        let mut record = DeployRecord {
            id: 0,
            service: service.to_string(),
            env: env.clone(),
            strategy: "switch".into(),
            from_release: Some(current.clone()),
            to_release: Some(release.id.clone()),
            state: DeployState::Running,
            started_at: berth_model::now_unix(),
            finished_at: None,
            verdict: None,
            steps: Vec::new(),
            traffic: Default::default(),
            rollback: true,
        };
        // Instant: the target's group is still up.
        if self.healthy_of(service, &release.id.0) > 0 {
            self.with_store(|s| s.insert_deploy(&mut record).map(|_| ()))
                .map_err(DeployRefusal::Internal)?;
            let traffic = self
                .traffic_control()
                .ok_or_else(|| DeployRefusal::Internal(anyhow!("the edge is not running")))?;
            let mut journal = RecordJournal {
                stack: self.clone(),
                record,
            };
            let step = journal.begin(&format!("switch all traffic to {}", release.id));
            let began = Instant::now();
            match berth_rollout::switch_back(
                &self.supervisor,
                &traffic,
                service,
                &release.id.0,
                &current.0,
            )
            .await
            {
                Ok(true) => {
                    journal.end(
                        step,
                        StepState::Done,
                        &format!("in {}ms; {current} stopped", began.elapsed().as_millis()),
                    );
                    self.purge_cache_of(service, &mut journal).await;
                    let _ = self.with_store(|s| s.set_current_release(&env, service, &release.id));
                    journal.finish(DeployState::Succeeded, None);
                }
                Ok(false) | Err(_) => {
                    journal.end(step, StepState::Failed, "the group is no longer healthy");
                    journal.failed(
                        "health",
                        format!("{} has no healthy replica to switch to", release.id),
                    );
                }
            }
            return Ok(DeployStarted {
                deploy: Some(journal.record),
                unchanged: None,
            });
        }
        // Otherwise a deploy of the old release.
        let strategy = spec_service.deploy.strategy;
        record.strategy = strategy.to_string();
        self.with_store(|s| s.insert_deploy(&mut record).map(|_| ()))
            .map_err(DeployRefusal::Internal)?;
        let service_spec = self
            .release_service_spec(service, &release.id)
            .unwrap_or(spec_service);
        Ok(self.launch(
            record,
            Pipeline {
                spec: self.spec.clone(),
                service: service_spec,
                strategy,
                force: true,
                release: Some(release.id),
            },
        ))
    }

    /// The release that carried the traffic before `current`: the origin of the deploy that
    /// made `current` current, else the newest older release.
    fn previous_release(
        &self,
        service: &str,
        current: &ReleaseId,
    ) -> anyhow::Result<Option<ReleaseId>> {
        let env = self.env_name().to_string();
        let deploys = self.with_store(|s| s.deploys(&env, Some(service), 100))?;
        if let Some(d) = deploys
            .iter()
            .find(|d| d.state == DeployState::Succeeded && d.to_release.as_ref() == Some(current))
        {
            if let Some(from) = &d.from_release {
                return Ok(Some(from.clone()));
            }
        }
        let releases = self.with_store(|s| s.releases(Some(service)))?;
        let seq = releases.iter().find(|r| &r.id == current).map(|r| r.seq);
        Ok(releases
            .iter()
            .filter(|r| seq.is_some_and(|s| r.seq < s))
            .max_by_key(|r| r.seq)
            .map(|r| r.id.clone()))
    }

    /// Rolls back the deploys an earlier daemon left running (it died mid-deploy), then retires
    /// old groups whose termination wait was cut short. Runs before the stack converges, so
    /// traffic never points at a group that no longer exists.
    pub async fn resolve_interrupted_deploys(self: &Arc<Self>) -> anyhow::Result<()> {
        let env = self.env_name().to_string();
        let running = self.with_store(|s| s.running_deploys(&env))?;
        let Some(traffic) = self.traffic_control() else {
            return Ok(());
        };
        for record in running {
            let name = record.service.clone();
            let Some(service) = self.spec.services.get(&name).cloned() else {
                continue;
            };
            let mut journal = RecordJournal {
                stack: self.clone(),
                record,
            };
            let old = journal
                .record
                .from_release
                .clone()
                .and_then(|id| self.plan_for_release(&name, &id).ok());
            let new = journal
                .record
                .to_release
                .clone()
                .and_then(|id| self.plan_for_release(&name, &id).ok());
            for step in journal.record.steps.iter_mut() {
                if step.state == StepState::Running {
                    step.state = StepState::Failed;
                    step.finished_ms = Some(berth_model::deploy::now_ms());
                    step.detail = "interrupted: berth up stopped".into();
                }
            }
            let verdict = Verdict {
                rule: "interrupted".into(),
                message: "berth up stopped during the deploy; rolled back when it started again"
                    .into(),
            };
            match new {
                Some(new) => {
                    let (_tx, cancel) = watch::channel(false);
                    let rollout = Rollout {
                        supervisor: self.supervisor.clone(),
                        traffic: traffic.clone(),
                        smoke: None,
                        old,
                        new,
                        desired: self.desired(&service),
                        deploy: service.deploy.clone(),
                        strategy: service.deploy.strategy,
                        cancel,
                        alarms: None,
                    };
                    rollout.roll_back(&mut journal).await;
                    journal.finish(DeployState::RolledBack, Some(verdict));
                }
                None => journal.finish(DeployState::Failed, Some(verdict)),
            }
        }
        // Old groups kept for an instant rollback by a deploy that finished: retire them now.
        let weights = self.with_store(|s| s.traffic_weights(&env))?;
        for service in weights.keys() {
            if let Ok(Some(current)) = self.with_store(|s| s.current_release(&env, service)) {
                let lock = self.supervisor.lock_service(service);
                let _guard = lock.lock().await;
                berth_rollout::retire(&self.supervisor, &traffic, service, &current.0).await;
            }
        }
        Ok(())
    }
}

/// Why a deploy was not started.
#[derive(Debug)]
pub enum DeployRefusal {
    Conflict(String),
    NotFound(String),
    Invalid(String),
    Internal(anyhow::Error),
}

/// The parts of the stack (not of `service`) that differ between the running spec and the one
/// on disk: they need `berth down` + `berth up`.
fn stack_level_changes(running: &Spec, on_disk: &Spec, service: &str) -> Vec<String> {
    let mut changes = Vec::new();
    if running.routes != on_disk.routes {
        changes.push("routes".to_string());
    }
    if running.edge != on_disk.edge {
        changes.push("[edge]".to_string());
    }
    if running.accessories != on_disk.accessories {
        changes.push("accessories".to_string());
    }
    if running.volumes != on_disk.volumes {
        changes.push("volumes".to_string());
    }

    if let (Some(a), Some(b)) = (running.services.get(service), on_disk.services.get(service)) {
        if a.port != b.port || a.balance != b.balance || a.sticky != b.sticky {
            changes.push(format!("`{service}`'s port, balance or sticky"));
        }
    }
    changes
}
