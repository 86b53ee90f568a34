//! Secrets in the control plane: the declared secrets must exist before anything starts; the
//! accessories' passwords live in the store (adopting the `password` file an earlier Berth
//! wrote); replicas get the versions their release pinned, as variables or 0600 files, and every
//! injected value joins the redaction list; the `/v1/secrets` endpoints never answer a value
//! except `GET /v1/secrets/NAME?reveal=true`.

use std::collections::BTreeMap;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};

use anyhow::{anyhow, Context};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use berth_model::{EventLevel, Release, StatePaths};
use berth_secrets::api::{
    RevealedSecret, SecretChanged, SecretHistory, SecretList, SecretListed, SetSecret,
};
use berth_secrets::{accessory_password_name, validate_name, SecretStore, Secrets};
use berth_spec::{ServiceSpec, Spec};
use serde::Deserialize;

use crate::api::ApiState;
use crate::stack::Stack;

/// Values shorter than this are not masked in logs: masking "1" or "on" would mangle every line.
pub const MIN_REDACTED_LEN: usize = 4;

/// The secrets store of the stack environment `paths` belongs to.
pub fn store(paths: &StatePaths, environment: &str) -> SecretStore {
    SecretStore::new(&paths.root, &paths.env_dir, environment)
}

/// Fails, naming each one, when a service declares a secret that does not exist.
pub fn check_declared(spec: &Spec, paths: &StatePaths) -> anyhow::Result<()> {
    let declared: Vec<(&str, &str)> = spec
        .services
        .values()
        .flat_map(|s| s.secrets.iter().map(|n| (s.name.as_str(), n.as_str())))
        .collect();
    if declared.is_empty() {
        return Ok(());
    }
    let secrets = store(paths, &spec.environment)
        .read()
        .context("reading the secrets store")?;
    let unset: Vec<&(&str, &str)> = declared
        .iter()
        .filter(|(_, name)| !secrets.contains(name))
        .collect();
    let Some((_, first)) = unset.first() else {
        return Ok(());
    };
    let missing: Vec<String> = unset
        .iter()
        .map(|(service, name)| format!("service `{service}` declares secret `{name}`"))
        .collect();
    let env_flag = if spec.environment == "default" {
        String::new()
    } else {
        format!(" --env {}", spec.environment)
    };
    Err(anyhow!(
        "{}, which is not set in environment `{}`; set it with `berth secrets set {first}{env_flag}`; nothing was started",
        missing.join("; "),
        spec.environment
    ))
}

/// The password of every accessory, from the store; generated (or taken over from the
/// accessory's `password` file, which is then removed) when the store has none yet.
pub fn accessory_passwords(
    spec: &Spec,
    paths: &StatePaths,
) -> anyhow::Result<BTreeMap<String, String>> {
    if spec.accessories.is_empty() {
        return Ok(BTreeMap::new());
    }
    let store = store(paths, &spec.environment);
    let mut legacy_files = Vec::new();
    let passwords = store
        .update(|secrets| {
            let mut passwords = BTreeMap::new();
            for name in spec.accessories.keys() {
                let key = accessory_password_name(name);
                let password = match secrets.current(&key).and_then(|v| v.value()) {
                    Some(password) => password.to_string(),
                    None => {
                        let dir = paths.accessory(name);
                        let password = match berth_accessories::Accessory::legacy_password(&dir) {
                            Ok(Some(old)) => {
                                legacy_files.push(dir.join("password"));
                                old
                            }
                            _ => generate_password(),
                        };
                        secrets.set(&key, &password, false, berth_model::now_unix());
                        password
                    }
                };
                passwords.insert(name.clone(), password);
            }
            Ok(passwords)
        })
        .context("keeping the accessories' passwords in the secrets store")?;
    // The store holds them now (written and fsynced): the plain-text copies go.
    for file in legacy_files {
        let _ = std::fs::remove_file(file);
    }
    Ok(passwords)
}

/// Hands the stored passwords to the stack's accessories.
pub fn attach_passwords(stack: &mut Stack, passwords: BTreeMap<String, String>) {
    for (name, password) in passwords {
        if let Some(accessory) = stack.accessories.remove(&name) {
            stack
                .accessories
                .insert(name, accessory.with_password(password));
        }
    }
}

/// 32 random alphanumerics (no quoting needed anywhere).
fn generate_password() -> String {
    use rand::distr::Alphanumeric;
    use rand::Rng;
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

/// Adds the secrets `service` declares, at the versions `release` pinned (pinning the current
/// ones on its first start), to `env`; returns the values to mask in its logs.
pub fn inject(
    stack: &Stack,
    service: &ServiceSpec,
    release: &Release,
    env: &mut BTreeMap<String, String>,
) -> anyhow::Result<Vec<String>> {
    let mut redact: Vec<String> = Vec::new();
    if service.secrets.is_empty() {
        return Ok(redact);
    }
    let store = store(&stack.paths, stack.env_name());
    let release_id = release.id.to_string();
    let secrets = store.read()?;
    let pinned = secrets.pins(&service.name, &release_id);
    let complete = pinned.is_some_and(|p| service.secrets.iter().all(|n| p.contains_key(n)));
    let (secrets, pins) = if complete {
        let pins = pinned.cloned().unwrap_or_default();
        (secrets, pins)
    } else {
        let pins = store
            .update(|s| s.pin_missing(&service.name, &release_id, &service.secrets))
            .with_context(|| format!("pinning the secrets of `{}`", service.name))?;
        (store.read()?, pins)
    };
    for name in &service.secrets {
        let version = secrets.version(name, pins[name])?;
        let value = version
            .value()
            .ok_or_else(|| anyhow!("secret `{name}` version {} was removed", version.version))?;
        if version.as_file {
            let path = write_secret_file(stack, &service.name, name, version.version, value)?;
            env.insert(format!("{name}_FILE"), path.display().to_string());
        } else {
            env.insert(name.clone(), value.to_string());
        }
        if value.len() >= MIN_REDACTED_LEN {
            redact.push(value.to_string());
        }
    }
    Ok(redact)
}

/// `.berth/ENV/secrets/SERVICE/NAME.vN`, mode 0600 in a 0700 folder; written once per version.
fn write_secret_file(
    stack: &Stack,
    service: &str,
    name: &str,
    version: u32,
    value: &str,
) -> anyhow::Result<std::path::PathBuf> {
    let dir = stack.paths.env_dir.join("secrets").join(service);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{name}.v{version}"));
    if path.exists() {
        return Ok(path);
    }
    let temp = dir.join(format!(".{name}.v{version}.tmp"));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)
        .with_context(|| format!("writing {}", temp.display()))?;
    std::io::Write::write_all(&mut file, value.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Services of the spec that declare `name`.
fn used_by(stack: &Stack, name: &str) -> Vec<String> {
    stack
        .spec
        .services
        .values()
        .filter(|s| s.secrets.iter().any(|n| n == name))
        .map(|s| s.name.clone())
        .collect()
}

/// Moves the current release of each service declaring `name` to the secrets' current versions
/// and replaces its replicas one at a time.
pub async fn restart_users(stack: &Stack, name: &str) -> anyhow::Result<Vec<String>> {
    let services = used_by(stack, name);
    let store = store(&stack.paths, stack.env_name());
    for service_name in &services {
        let service = &stack.spec.services[service_name];
        if stack.held(service_name).is_some() {
            continue; // no replica runs; its next release pins the new version
        }
        let plan = stack.current_plan(service_name)?;
        let release = plan.release.id.to_string();
        store.update(|s| s.pin(service_name, &release, &service.secrets))?;
        let plan = stack.current_plan(service_name)?;
        stack.record(
            EventLevel::Info,
            service_name,
            format!("rolling restart for a new version of secret {name}"),
        );
        stack
            .supervisor
            .converge(&plan, stack.desired(service), true)
            .await
            .with_context(|| format!("restarting `{service_name}`"))?;
    }
    Ok(services)
}

// ----- API ----------------------------------------------------------------------------------

/// `/v1/secrets` routes, merged into the daemon's router.
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/v1/secrets", get(list))
        .route("/v1/secrets/{name}", get(reveal).put(set).delete(remove))
        .route("/v1/secrets/{name}/history", get(history))
        .route("/v1/secrets/{name}/restart", post(restart))
}

/// An error answer of the secrets and backup endpoints: a status and a message that never
/// holds a secret value.
pub(crate) struct ApiFailure(pub StatusCode, pub String);

impl axum::response::IntoResponse for ApiFailure {
    fn into_response(self) -> axum::response::Response {
        (self.0, Json(berth_model::api::ApiError { error: self.1 })).into_response()
    }
}

impl From<anyhow::Error> for ApiFailure {
    fn from(e: anyhow::Error) -> Self {
        ApiFailure(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"))
    }
}

pub(crate) fn failure(status: StatusCode, e: impl std::fmt::Display) -> ApiFailure {
    ApiFailure(status, e.to_string())
}

fn secrets_failure(e: berth_secrets::SecretsError) -> ApiFailure {
    use berth_secrets::SecretsError::*;
    let status = match &e {
        NotFound(_) | NoVersion { .. } => StatusCode::NOT_FOUND,
        BadName(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    failure(status, e)
}

fn read(stack: &Stack) -> Result<Secrets, ApiFailure> {
    store(&stack.paths, stack.env_name())
        .read()
        .map_err(secrets_failure)
}

async fn list(State(state): State<ApiState>) -> Result<Json<SecretList>, ApiFailure> {
    let secrets = read(&state.stack)?;
    Ok(Json(SecretList {
        environment: state.stack.env_name().to_string(),
        secrets: secrets
            .list()
            .into_iter()
            .map(|info| SecretListed {
                used_by: used_by(&state.stack, &info.name),
                info,
            })
            .collect(),
    }))
}

async fn history(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<SecretHistory>, ApiFailure> {
    let versions = read(&state.stack)?
        .history(&name)
        .map_err(secrets_failure)?;
    Ok(Json(SecretHistory { name, versions }))
}

#[derive(Deserialize)]
struct RevealQuery {
    reveal: Option<bool>,
}

async fn reveal(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    Query(q): Query<RevealQuery>,
) -> Result<Json<RevealedSecret>, ApiFailure> {
    if q.reveal != Some(true) {
        return Err(failure(
            StatusCode::BAD_REQUEST,
            "values are shown only when asked for: add ?reveal=true (berth secrets get NAME --reveal)",
        ));
    }
    let secrets = read(&state.stack)?;
    let current = secrets
        .current(&name)
        .ok_or_else(|| secrets_failure(berth_secrets::SecretsError::NotFound(name.clone())))?;
    Ok(Json(RevealedSecret {
        version: current.version,
        value: current.value().unwrap_or_default().to_string(),
        name,
    }))
}

async fn set(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    body: Result<Json<SetSecret>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<SecretChanged>, ApiFailure> {
    // The rejection's text could quote the body (the value): never pass it on.
    let Json(request) = body.map_err(|_| {
        failure(
            StatusCode::BAD_REQUEST,
            "expected {\"value\": \"...\", \"as_file\": false}",
        )
    })?;
    validate_name(&name).map_err(secrets_failure)?;
    let version = store(&state.stack.paths, state.stack.env_name())
        .update(|s| {
            Ok(s.set(
                &name,
                &request.value,
                request.as_file,
                berth_model::now_unix(),
            ))
        })
        .map_err(secrets_failure)?;
    state.stack.record(
        EventLevel::Info,
        "secrets",
        format!("{name} set (version {version})"),
    );
    Ok(Json(SecretChanged {
        used_by: used_by(&state.stack, &name),
        name,
        version,
        restarted: Vec::new(),
    }))
}

async fn remove(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<SecretChanged>, ApiFailure> {
    let version = store(&state.stack.paths, state.stack.env_name())
        .update(|s| s.remove(&name, berth_model::now_unix()))
        .map_err(secrets_failure)?;
    state.stack.record(
        EventLevel::Info,
        "secrets",
        format!("{name} removed (version {version})"),
    );
    Ok(Json(SecretChanged {
        used_by: used_by(&state.stack, &name),
        name,
        version,
        restarted: Vec::new(),
    }))
}

async fn restart(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<SecretChanged>, ApiFailure> {
    let secrets = read(&state.stack)?;
    let version = secrets
        .current(&name)
        .map(|v| v.version)
        .ok_or_else(|| secrets_failure(berth_secrets::SecretsError::NotFound(name.clone())))?;
    let restarted = restart_users(&state.stack, &name)
        .await
        .map_err(|e| failure(StatusCode::CONFLICT, format!("{e:#}")))?;
    Ok(Json(SecretChanged {
        used_by: restarted.clone(),
        name,
        version,
        restarted,
    }))
}
