//! Backups in the control plane: what `[backup]` asks for turned into sources (the running
//! accessories' servers, the volume folders), `backup_now` (one at a time, rotation after
//! success, failures recorded as error events and kept for `berth backup list`), the scheduler,
//! verify, and restore (writers stopped, parts restored, writers started again), and the
//! `/v1/backups` endpoints.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use anyhow::{anyhow, bail, Context};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
pub use berth_backup::api::BackupSummary;
use berth_backup::api::{BackupList, BackupNow, FailedBackup, RestoreReport, RestoreRequest};
use berth_backup::{
    check_checksums, expired, Candidate, Destination, PartKind, PartRecord, RestoreTarget, Server,
    Source, VerifyReport,
};
use berth_model::EventLevel;
use berth_spec::{BackupDestination, Engine};

use crate::api::ApiState;
use crate::secrets::{failure, ApiFailure};
use crate::stack::Stack;

/// Failures kept for `berth backup list`.
const FAILURES_KEPT: usize = 20;

/// One backup, verify or restore at a time in this daemon.
fn exclusive() -> &'static tokio::sync::Mutex<()> {
    static LOCK: OnceLock<tokio::sync::Mutex<()>> = OnceLock::new();
    LOCK.get_or_init(|| tokio::sync::Mutex::new(()))
}

/// Where this environment's backups go: `[backup] destination`, by default
/// `.berth/backups/ENV/`. S3 credentials come from the secrets `AWS_ACCESS_KEY_ID` and
/// `AWS_SECRET_ACCESS_KEY` when both are set, else from the daemon's environment.
pub fn destination(stack: &Stack) -> anyhow::Result<Destination> {
    match &stack.spec.backup.destination {
        BackupDestination::Local(None) => Ok(Destination::Local(
            stack.paths.root.join("backups").join(stack.env_name()),
        )),
        BackupDestination::Local(Some(dir)) => {
            let base = stack
                .spec
                .path
                .parent()
                .unwrap_or(std::path::Path::new("/"));
            Ok(Destination::Local(base.join(dir)))
        }
        BackupDestination::S3 {
            bucket,
            prefix,
            endpoint,
            region,
        } => {
            let secrets = crate::secrets::store(&stack.paths, stack.env_name()).read()?;
            let value = |n: &str| {
                secrets
                    .current(n)
                    .and_then(|v| v.value())
                    .map(str::to_string)
            };
            let credentials = value("AWS_ACCESS_KEY_ID").zip(value("AWS_SECRET_ACCESS_KEY"));
            Destination::s3(
                bucket,
                prefix,
                endpoint.as_deref(),
                region.as_deref(),
                credentials,
            )
        }
    }
}

fn scratch(stack: &Stack) -> PathBuf {
    stack.paths.env_dir.join("backup-scratch")
}

fn failures_file(stack: &Stack) -> PathBuf {
    stack.paths.env_dir.join("backup-failures.json")
}

/// The running server of each accessory, by name.
fn servers(stack: &Stack) -> anyhow::Result<BTreeMap<String, (Engine, Server)>> {
    let secrets = crate::secrets::store(&stack.paths, stack.env_name()).read()?;
    let mut servers = BTreeMap::new();
    for (name, accessory) in &stack.accessories {
        let Some(running) = accessory.adopt() else {
            continue;
        };
        let config = accessory.config();
        let password = secrets
            .current(&berth_secrets::accessory_password_name(name))
            .and_then(|v| v.value())
            .map(str::to_string);
        servers.insert(
            name.clone(),
            (
                config.engine,
                Server {
                    dir: std::path::absolute(&config.dir)?,
                    port: running.port,
                    database: config.database.clone(),
                    password: (config.engine == Engine::Redis)
                        .then_some(password)
                        .flatten(),
                },
            ),
        );
    }
    Ok(servers)
}

/// What `[backup]` asks for: the chosen (default: all) accessories and volumes.
fn sources(stack: &Stack) -> anyhow::Result<Vec<Source>> {
    let backup = &stack.spec.backup;
    let servers = servers(stack)?;
    let mut sources = Vec::new();
    let accessories: Vec<String> = match &backup.accessories {
        Some(list) => list.clone(),
        None => stack.spec.accessories.keys().cloned().collect(),
    };
    for name in accessories {
        let (engine, server) = servers
            .get(&name)
            .cloned()
            .ok_or_else(|| anyhow!("accessory `{name}` is not running, so it cannot be dumped"))?;
        sources.push(match engine {
            Engine::Postgres => Source::Postgres { name, server },
            Engine::Mysql => Source::Mysql { name, server },
            Engine::Redis => Source::Redis { name, server },
        });
    }
    let volumes: Vec<String> = match &backup.volumes {
        Some(list) => list.clone(),
        None => stack.spec.volumes.keys().cloned().collect(),
    };
    for name in volumes {
        let dir = stack.paths.volume(&name);
        if !dir.is_dir() {
            bail!("volume `{name}` has no folder ({})", dir.display());
        }
        sources.push(Source::Volume { name, dir });
    }
    if sources.is_empty() {
        bail!(
            "nothing to back up: the spec has no accessories or volumes (or [backup] selects none)"
        );
    }
    Ok(sources)
}

/// Makes a backup of the stack now (`reason`: `manual`, `schedule`, `pre-deploy`...), then
/// rotates. A failure is recorded as an error event and kept for `berth backup list`.
pub async fn backup_now(stack: &Stack, reason: &str) -> anyhow::Result<BackupSummary> {
    let _one = exclusive().lock().await;
    let id = berth_backup::new_id(berth_model::now_unix());
    let result = make(stack, &id, reason).await;
    match &result {
        Ok(summary) => stack.record(
            EventLevel::Info,
            "backup",
            format!(
                "backup {id} ({reason}) complete: {} parts, {} bytes, in {}",
                summary.parts, summary.total_bytes, summary.destination
            ),
        ),
        Err(e) => {
            let error = format!("{e:#}");
            stack.record(
                EventLevel::Error,
                "backup",
                format!("backup {id} ({reason}) failed: {error}"),
            );
            if let Err(e) = remember_failure(stack, &id, reason, &error) {
                tracing::warn!("cannot record the failed backup: {e:#}");
            }
            if let Some(alarms) = crate::alarms::AlarmContext::of(stack) {
                alarms.backup_failed(&id, reason, &error);
            }
        }
    }
    result
}

async fn make(stack: &Stack, id: &str, reason: &str) -> anyhow::Result<BackupSummary> {
    let destination = destination(stack)?;
    let env = stack.env_name().to_string();
    let mut releases = BTreeMap::new();
    for service in stack.spec.services.keys() {
        if let Some(release) = stack.with_store(|s| s.current_release(&env, service))? {
            releases.insert(service.clone(), release.to_string());
        }
    }
    let request = berth_backup::BackupRequest {
        id: id.to_string(),
        stack: stack.spec.stack.name.clone(),
        environment: env,
        reason: reason.to_string(),
        spec_hash: stack.spec.hash(),
        releases,
        sources: sources(stack)?,
        scratch: scratch(stack),
    };
    let manifest = berth_backup::create(&destination, request).await?;
    let rotated = rotate(stack, &destination).await.unwrap_or_else(|e| {
        tracing::warn!("backup rotation failed: {e:#}");
        Vec::new()
    });
    Ok(BackupSummary {
        id: manifest.id.clone(),
        destination: destination.label(),
        total_bytes: manifest.total_bytes(),
        parts: manifest.parts.len(),
        rotated,
    })
}

/// Deletes the backups past retention (never the newest).
async fn rotate(stack: &Stack, destination: &Destination) -> anyhow::Result<Vec<String>> {
    let listing = destination.list().await?;
    let candidates: Vec<Candidate> = listing
        .complete
        .iter()
        .map(|m| Candidate {
            id: m.id.clone(),
            finished_at: m.finished_at,
        })
        .collect();
    let gone = expired(
        &candidates,
        &stack.spec.backup.retention,
        berth_model::now_unix(),
    );
    for id in &gone {
        if let Some(manifest) = listing.complete.iter().find(|m| &m.id == id) {
            destination.delete(manifest).await?;
            stack.record(
                EventLevel::Info,
                "backup",
                format!("backup {id} rotated out"),
            );
        }
    }
    Ok(gone)
}

fn read_failures(stack: &Stack) -> Vec<FailedBackup> {
    std::fs::read(failures_file(stack))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn remember_failure(stack: &Stack, id: &str, reason: &str, error: &str) -> anyhow::Result<()> {
    let mut failures = read_failures(stack);
    failures.push(FailedBackup {
        id: id.to_string(),
        reason: reason.to_string(),
        at: berth_model::now_unix(),
        error: error.to_string(),
    });
    let start = failures.len().saturating_sub(FAILURES_KEPT);
    let path = failures_file(stack);
    let temp = path.with_extension("json.tmp");
    std::fs::write(&temp, serde_json::to_vec_pretty(&failures[start..])?)?;
    std::fs::rename(&temp, &path)?;
    Ok(())
}

/// The backups of this environment.
pub async fn list(stack: &Stack) -> anyhow::Result<BackupList> {
    let destination = destination(stack)?;
    let listing = destination.list().await?;
    Ok(BackupList {
        destination: destination.label(),
        backups: listing.complete,
        incomplete: listing.incomplete,
        failures: read_failures(stack),
        schedule: stack
            .spec
            .backup
            .scheduled
            .then(|| stack.spec.backup.schedule.clone()),
    })
}

/// Checks a backup's checksums and test-restores its dumps.
pub async fn verify(stack: &Stack, id: &str) -> anyhow::Result<VerifyReport> {
    let _one = exclusive().lock().await;
    let destination = destination(stack)?;
    let servers = servers(stack)?
        .into_iter()
        .map(|(name, (_, server))| (name, server))
        .collect();
    let result = berth_backup::verify(&destination, id, &scratch(stack), &servers).await;
    match &result {
        Ok(_) => stack.record(EventLevel::Info, "backup", format!("backup {id} verified")),
        Err(e) => {
            stack.record(
                EventLevel::Error,
                "backup",
                format!("backup {id} failed verification: {e:#}"),
            );
            if let Some(alarms) = crate::alarms::AlarmContext::of(stack) {
                alarms.backup_failed(id, "verification", &format!("{e:#}"));
            }
        }
    }
    result
}

/// Restores a backup (`only`: `db` or `volume`): checks the checksums of the parts first
/// (nothing is touched when one is wrong), stops the services that use them, restores each
/// part, and starts the services again, also when a part failed.
pub async fn restore(stack: &Stack, id: &str, only: Option<&str>) -> anyhow::Result<RestoreReport> {
    let _one = exclusive().lock().await;
    let destination = destination(stack)?;
    let (folder, manifest) = destination.fetch(id, &scratch(stack)).await?;
    let parts: Vec<&PartRecord> = manifest
        .parts
        .iter()
        .filter(|p| match only {
            None => true,
            Some("db") => p.kind.is_database(),
            Some("volume") => !p.kind.is_database(),
            Some(_) => false,
        })
        .collect();
    if let Some(other) = only.filter(|o| !matches!(*o, "db" | "volume")) {
        bail!("--only takes `db` or `volume`, not `{other}`");
    }
    if parts.is_empty() {
        bail!(
            "backup {id} holds no part to restore{}",
            only.map(|o| format!(" for --only {o}")).unwrap_or_default()
        );
    }
    for part in &parts {
        let known = if part.kind.is_database() {
            stack.spec.accessories.contains_key(&part.name)
        } else {
            stack.spec.volumes.contains_key(&part.name)
        };
        if !known {
            bail!(
                "backup {id} holds `{}`, which is no longer in the spec; nothing was restored",
                part.name
            );
        }
    }
    check_checksums(&folder, &manifest, &parts)?;

    let writers: BTreeSet<String> = stack
        .spec
        .services
        .values()
        .filter(|s| {
            parts.iter().any(|p| {
                if p.kind.is_database() {
                    s.uses.contains(&p.name)
                } else {
                    s.volumes.contains(&p.name)
                }
            })
        })
        .map(|s| s.name.clone())
        .collect();
    stack.record(
        EventLevel::Warn,
        "backup",
        format!(
            "restoring backup {id}: stopping {}",
            writers.iter().cloned().collect::<Vec<_>>().join(", ")
        ),
    );
    let mut stop_errors = Vec::new();
    for service in &writers {
        let plan = stack.current_plan(service)?;
        if let Err(e) = stack.supervisor.converge(&plan, 0, false).await {
            stop_errors.push(format!("{service}: {e:#}"));
        }
    }
    let restored = if stop_errors.is_empty() {
        restore_parts(stack, &folder, &parts).await
    } else {
        Err(anyhow!(
            "cannot stop the writers: {}",
            stop_errors.join("; ")
        ))
    };
    // Writers come back whatever happened.
    let mut start_errors = Vec::new();
    for service in writers.iter().filter(|s| stack.held(s).is_none()) {
        let spec = &stack.spec.services[service];
        let started = match stack.current_plan(service) {
            Ok(plan) => {
                stack
                    .supervisor
                    .converge(&plan, stack.desired(spec), false)
                    .await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = started {
            start_errors.push(format!("{service}: {e:#}"));
        }
    }
    if matches!(destination, Destination::S3 { .. }) {
        let _ = std::fs::remove_dir_all(&folder);
    }
    let restored = restored.with_context(|| format!("restoring backup {id}"))?;
    if !start_errors.is_empty() {
        bail!(
            "backup {id} was restored, but starting the services again failed: {}",
            start_errors.join("; ")
        );
    }
    stack.record(
        EventLevel::Info,
        "backup",
        format!("backup {id} restored: {}", restored.join(", ")),
    );
    Ok(RestoreReport {
        id: id.to_string(),
        restored,
        services: writers.into_iter().collect(),
    })
}

async fn restore_parts(
    stack: &Stack,
    folder: &std::path::Path,
    parts: &[&PartRecord],
) -> anyhow::Result<Vec<String>> {
    let mut restored = Vec::new();
    for part in parts {
        match part.kind {
            PartKind::Volume => {
                let target = RestoreTarget::Folder(stack.paths.volume(&part.name));
                berth_backup::restore_part(folder, part, &target).await?;
            }
            PartKind::Postgres | PartKind::Mysql => {
                let (_, server) = servers(stack)?
                    .remove(&part.name)
                    .ok_or_else(|| anyhow!("accessory `{}` is not running", part.name))?;
                berth_backup::restore_part(folder, part, &RestoreTarget::Server(server)).await?;
            }
            PartKind::Redis => {
                // Redis loads its RDB file when it starts (and writes it when it stops).
                let (_, server) = servers(stack)?
                    .remove(&part.name)
                    .ok_or_else(|| anyhow!("accessory `{}` is not running", part.name))?;
                let accessory = &stack.accessories[&part.name];
                // Stopped on purpose: its keeper must not start it again meanwhile.
                let _hold = stack.accessory_watch.hold(&part.name);
                accessory.stop(std::time::Duration::from_secs(30)).await?;
                let placed =
                    berth_backup::restore_part(folder, part, &RestoreTarget::Server(server)).await;
                stack.start_accessories().await?;
                placed?;
            }
        }
        restored.push(part.name.clone());
    }
    Ok(restored)
}

/// Runs `backup_now` on `[backup] schedule` (local time) while the daemon runs.
pub fn spawn_scheduler(stack: Arc<Stack>) -> Option<tokio::task::JoinHandle<()>> {
    if !stack.spec.backup.scheduled {
        return None;
    }
    let cron = match berth_spec::parse_schedule(&stack.spec.backup.schedule) {
        Ok(cron) => cron,
        Err(e) => {
            tracing::error!("backup schedule: {e}");
            return None;
        }
    };
    Some(tokio::spawn(async move {
        loop {
            let now = chrono::Local::now();
            let Ok(next) = cron.find_next_occurrence(&now, false) else {
                tracing::error!(
                    "backup schedule `{}` never fires",
                    stack.spec.backup.schedule
                );
                return;
            };
            let wait = (next - now).to_std().unwrap_or_default();
            tracing::info!("next scheduled backup at {next}");
            tokio::time::sleep(wait).await;
            if let Err(e) = backup_now(&stack, "schedule").await {
                tracing::error!("scheduled backup failed: {e:#}");
            }
        }
    }))
}

// ----- API ----------------------------------------------------------------------------------

/// `/v1/backups` routes, merged into the daemon's router.
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/v1/backups", get(list_handler).post(now_handler))
        .route("/v1/backups/{id}/verify", post(verify_handler))
        .route("/v1/backups/{id}/restore", post(restore_handler))
}

fn backup_failure(e: anyhow::Error) -> ApiFailure {
    let status = match e.downcast_ref::<berth_backup::BackupError>() {
        Some(berth_backup::BackupError::NotFound(_)) => StatusCode::NOT_FOUND,
        Some(_) => StatusCode::UNPROCESSABLE_ENTITY,
        None => StatusCode::INTERNAL_SERVER_ERROR,
    };
    failure(status, format!("{e:#}"))
}

async fn list_handler(State(state): State<ApiState>) -> Result<Json<BackupList>, ApiFailure> {
    Ok(Json(list(&state.stack).await?))
}

async fn now_handler(
    State(state): State<ApiState>,
    body: Option<Json<BackupNow>>,
) -> Result<Json<BackupSummary>, ApiFailure> {
    let reason = body
        .and_then(|Json(b)| b.reason)
        .unwrap_or_else(|| "manual".into());
    backup_now(&state.stack, &reason)
        .await
        .map(Json)
        .map_err(backup_failure)
}

async fn verify_handler(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<VerifyReport>, ApiFailure> {
    verify(&state.stack, &id)
        .await
        .map(Json)
        .map_err(backup_failure)
}

async fn restore_handler(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    body: Option<Json<RestoreRequest>>,
) -> Result<Json<RestoreReport>, ApiFailure> {
    let only = body.and_then(|Json(b)| b.only);
    restore(&state.stack, &id, only.as_deref())
        .await
        .map(Json)
        .map_err(backup_failure)
}
