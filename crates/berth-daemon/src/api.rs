//! The daemon's local API: HTTP over a unix socket in the state folder (mode 0600: only the
//! owner of the stack can drive it). Every `berth` command but `validate` and `up` is a client.
//!
//! ```text
//! GET  /v1/status                       the stack: services, accessories, replicas
//! GET  /v1/events?limit=N               recent events
//! GET  /v1/releases?service=NAME        releases, newest first
//! POST /v1/services/NAME/scale          {"replicas": N}
//! POST /v1/services/NAME/restart        rolling restart
//! GET  /v1/logs?service=&replica=&since=&tail=&follow=
//! POST /v1/down                         stop the stack and the daemon
//! POST /v1/deploys                      {"service", "strategy"?, "source"?, "rev"?, "force"?}
//! GET  /v1/deploys?service=&limit=      deploy records, newest first
//! GET  /v1/deploys/ID                   one deploy record
//! POST /v1/deploys/ID/cancel            roll a running deploy back
//! POST /v1/rollback                     {"service", "to"?}
//! POST /v1/tasks/environment            {"service", "release"?}: folder and env of a task
//! POST /v1/tasks/ended                  `berth run` reports how its task ended (an event)
//! POST /v1/tasks                        {"service", "release"?, "command", "user"}: detached
//! ```

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use berth_model::api::{
    AccessoryStatus, ApiError, EventList, MaintenanceRequest, MaintenanceStatus, ReleaseList,
    ScaleRequest, ServiceStatus, StackStatus,
};
use berth_model::Health;
use berth_supervisor::logs::{self, LogQuery, LogSource};
use serde::Deserialize;
use tokio::sync::Notify;

use crate::deploy::DeployRefusal;
use crate::stack::Stack;
use berth_model::deploy::{DeployRequest, DeployStarted};
use berth_model::DeployRecord;

#[derive(Clone)]
pub struct ApiState {
    pub stack: Arc<Stack>,
    /// Notified when `POST /v1/down` asks the daemon to stop.
    pub shutdown: Arc<Notify>,
}

/// An error answer: a status and a message for the user.
pub struct ApiFailure(StatusCode, String);

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        (self.0, Json(ApiError { error: self.1 })).into_response()
    }
}

impl From<anyhow::Error> for ApiFailure {
    fn from(e: anyhow::Error) -> Self {
        ApiFailure(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"))
    }
}

fn bad_request(message: impl Into<String>) -> ApiFailure {
    ApiFailure(StatusCode::BAD_REQUEST, message.into())
}

fn not_found(message: impl Into<String>) -> ApiFailure {
    ApiFailure(StatusCode::NOT_FOUND, message.into())
}

pub fn router(state: ApiState) -> Router {
    let metrics = match state.stack.metrics.get() {
        Some(metrics) => crate::metrics::api::routes(metrics.clone()),
        None => crate::metrics::api::unavailable(),
    };
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/events", get(events))
        .route("/v1/alarms", get(alarms))
        .route("/v1/releases", get(releases))
        .route("/v1/services/{name}/scale", post(scale))
        .route("/v1/services/{name}/restart", post(restart))
        .route("/v1/services/{name}/releases/{id}/push", post(release_push))
        .route("/v1/logs", get(logs_handler))
        .route("/v1/down", post(down))
        .route("/v1/deploys", post(deploy_start).get(deploy_list))
        .route("/v1/deploys/{id}", get(deploy_get))
        .route("/v1/deploys/{id}/cancel", post(deploy_cancel))
        .route("/v1/rollback", post(rollback))
        .route("/v1/tasks/environment", post(task_environment))
        .route("/v1/tasks/ended", post(task_ended))
        .route("/v1/tasks", post(task_detached))
        .route(
            "/v1/maintenance",
            post(maintenance_set).get(maintenance_get),
        )
        .route("/v1/cache/purge", post(cache_purge))
        .merge(crate::secrets::routes())
        .merge(crate::backup::routes())
        .merge(metrics)
        .fallback(|| async { not_found("no such API endpoint") })
        .with_state(state)
}

pub fn stack_status(stack: &Stack) -> StackStatus {
    let replicas = stack.supervisor.board().snapshot();
    let down = stack.accessory_watch.down();
    let env = stack.env_name().to_string();
    let services = stack
        .spec
        .services
        .values()
        .map(|s| ServiceStatus {
            name: s.name.clone(),
            desired: stack.desired(s),
            release: stack
                .with_store(|st| st.current_release(&env, &s.name))
                .ok()
                .flatten()
                .map(|r| r.to_string()),
            healthy: replicas
                .iter()
                .filter(|r| r.service == s.name && r.health == Health::Healthy)
                .count() as u32,
            dependencies_down: s
                .dependencies()
                .into_iter()
                .filter(|d| down.contains(*d))
                .map(str::to_string)
                .collect(),
            held: stack.held(&s.name),
        })
        .collect();
    let accessories = stack
        .accessories
        .iter()
        .map(|(name, accessory)| {
            let running = accessory.adopt();
            let watched = stack.accessory_watch.get(name);
            // Down until its keeper saw it ready (a restarted server may run before it is).
            let state = match (watched.down, &running) {
                (Some(down), _) => down,
                (None, Some(_)) => "running",
                (None, None) => "stopped",
            };
            AccessoryStatus {
                name: name.clone(),
                engine: format!("{:?}", stack.spec.accessories[name].engine).to_lowercase(),
                pid: running.as_ref().map(|r| r.pid),
                port: running.as_ref().map(|r| r.port),
                state: state.to_string(),
                restarts: watched.restarts,
                last_exit: watched.last_exit,
            }
        })
        .collect();
    StackStatus {
        stack: stack.spec.stack.name.clone(),
        environment: env,
        daemon_pid: std::process::id(),
        started_at: stack.started_at,
        services,
        accessories,
        replicas,
        edge: stack.edge.get().map(|e| e.status()),
    }
}

async fn status(State(state): State<ApiState>) -> Json<StackStatus> {
    Json(stack_status(&state.stack))
}

#[derive(Deserialize)]
struct EventsQuery {
    limit: Option<usize>,
}

async fn events(
    State(state): State<ApiState>,
    Query(q): Query<EventsQuery>,
) -> Result<Json<EventList>, ApiFailure> {
    let env = state.stack.env_name().to_string();
    let events = state
        .stack
        .with_store(|s| s.events(&env, q.limit.unwrap_or(100).min(10_000)))?;
    Ok(Json(EventList { events }))
}

async fn alarms(
    State(state): State<ApiState>,
) -> Result<Json<berth_model::api::AlarmList>, ApiFailure> {
    Ok(Json(alarm_list(&state.stack)?))
}

/// The alarms with their states and the newest transitions (`GET /v1/alarms`, here and on the
/// dashboard's read-only socket).
pub(crate) fn alarm_list(stack: &Stack) -> anyhow::Result<berth_model::api::AlarmList> {
    let evaluating = stack
        .evaluating_alarms
        .load(std::sync::atomic::Ordering::Relaxed);
    let env = stack.env_name().to_string();
    let (stored, history) = stack.with_store(|s| {
        Ok((
            s.alarm_states(&env)?,
            s.alarm_history(&env, None, crate::alarms::HISTORY_SHOWN)?,
        ))
    })?;
    Ok(crate::alarms::list(
        &stack.spec.alarms,
        &stored,
        history,
        evaluating,
    ))
}

#[derive(Deserialize)]
struct ReleasesQuery {
    service: Option<String>,
}

async fn releases(
    State(state): State<ApiState>,
    Query(q): Query<ReleasesQuery>,
) -> Result<Json<ReleaseList>, ApiFailure> {
    if let Some(name) = &q.service {
        known_service(&state, name)?;
    }
    let releases = state
        .stack
        .with_store(|s| s.releases(q.service.as_deref()))?;
    Ok(Json(ReleaseList { releases }))
}

fn known_service<'a>(
    state: &'a ApiState,
    name: &str,
) -> Result<&'a berth_spec::ServiceSpec, ApiFailure> {
    state.stack.spec.services.get(name).ok_or_else(|| {
        let known: Vec<&str> = state
            .stack
            .spec
            .services
            .keys()
            .map(|s| s.as_str())
            .collect();
        not_found(format!(
            "no service `{name}` in this stack (services: {})",
            known.join(", ")
        ))
    })
}

fn maintenance_status(
    maintenance: Option<&berth_model::routing::Maintenance>,
) -> MaintenanceStatus {
    match maintenance {
        Some(m) => MaintenanceStatus {
            on: true,
            services: m.services.clone(),
            message: m.message.clone(),
        },
        None => MaintenanceStatus {
            on: false,
            services: Vec::new(),
            message: None,
        },
    }
}

async fn maintenance_get(
    State(state): State<ApiState>,
) -> Result<Json<MaintenanceStatus>, ApiFailure> {
    let link = state.stack.edge.get().ok_or_else(|| {
        ApiFailure(
            StatusCode::SERVICE_UNAVAILABLE,
            "the edge is not up yet".into(),
        )
    })?;
    Ok(Json(maintenance_status(link.maintenance().as_ref())))
}

/// Drops the edge's cached answers of a service (all when none) under a path prefix (all when
/// none). Only here, on the owner's 0600 API socket: the admin listener has no purge.
async fn cache_purge(
    State(state): State<ApiState>,
    body: Result<Json<berth_model::api::PurgeRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<berth_model::api::PurgeResult>, ApiFailure> {
    let Json(request) = body.map_err(|e| {
        bad_request(format!(
            "expected {{\"service\": \"NAME\", \"prefix\": \"/PATH\"}} (both optional): {e}"
        ))
    })?;
    if let Some(name) = &request.service {
        known_service(&state, name)?;
    }
    if let Some(prefix) = &request.prefix {
        if !prefix.starts_with('/')
            || prefix.len() > 2048
            || prefix.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(bad_request(
                "the path prefix must start with `/` and hold no spaces or control characters",
            ));
        }
    }
    let link = state.stack.edge.get().ok_or_else(|| {
        ApiFailure(
            StatusCode::SERVICE_UNAVAILABLE,
            "the edge is not up yet".into(),
        )
    })?;
    let purged = link
        .purge_cache(request.service.as_deref(), request.prefix.as_deref())
        .await
        .map_err(|e| {
            ApiFailure(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the edge did not purge: {e:#}"),
            )
        })?;
    state.stack.record(
        berth_model::EventLevel::Info,
        "edge",
        format!(
            "cache purge of {} under {}: {purged} answers",
            request.service.as_deref().unwrap_or("every service"),
            request.prefix.as_deref().unwrap_or("/")
        ),
    );
    Ok(Json(berth_model::api::PurgeResult { purged }))
}

/// Turns maintenance mode on or off: the edge answers 503 with the message (and
/// `Retry-After`) for the services named (all when none), except to `[edge]
/// maintenance_allow`; kept across restarts.
async fn maintenance_set(
    State(state): State<ApiState>,
    body: Result<Json<MaintenanceRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<MaintenanceStatus>, ApiFailure> {
    let Json(request) = body.map_err(|e| {
        bad_request(format!(
            "expected {{\"on\": true|false, \"services\": [...], \"message\": \"...\"}}: {e}"
        ))
    })?;
    for name in &request.services {
        known_service(&state, name)?;
    }
    if let Some(message) = &request.message {
        if message.chars().count() > 1000 {
            return Err(bad_request("the message is longer than 1000 characters"));
        }
        if message.chars().any(|c| c.is_control() && c != '\n') {
            return Err(bad_request("the message has control characters"));
        }
    }
    let stack = state.stack.clone();
    let link = stack.edge.get().ok_or_else(|| {
        ApiFailure(
            StatusCode::SERVICE_UNAVAILABLE,
            "the edge is not up yet".into(),
        )
    })?;
    let maintenance = request.on.then(|| berth_model::routing::Maintenance {
        services: request.services.clone(),
        message: request.message.clone(),
        allow: stack.spec.edge.maintenance_allow.clone(),
    });
    link.set_maintenance(&stack.paths.env_dir, maintenance.clone())
        .await
        .map_err(|e| ApiFailure(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))?;
    let what = if request.services.is_empty() {
        "every service".to_string()
    } else {
        request.services.join(", ")
    };
    stack.record(
        berth_model::EventLevel::Info,
        "edge",
        if request.on {
            format!("maintenance on for {what}")
        } else {
            "maintenance off".to_string()
        },
    );
    Ok(Json(maintenance_status(maintenance.as_ref())))
}

async fn scale(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    body: Result<Json<ScaleRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<ServiceStatus>, ApiFailure> {
    let Json(request) =
        body.map_err(|e| bad_request(format!("expected {{\"replicas\": N}}: {e}")))?;
    let service = known_service(&state, &name)?.clone();
    let (min, max) = (service.replicas.min, service.replicas.max);
    if min != max && !(min..=max).contains(&request.replicas) {
        return Err(bad_request(format!(
            "`{name}` runs between {min} and {max} replicas (min/max in berth.toml); asked for {}",
            request.replicas
        )));
    }
    if request.replicas > 64 {
        return Err(bad_request(
            "at most 64 replicas per service on one machine",
        ));
    }
    let stack = state.stack.clone();
    refuse_during_deploy(&stack, &name)?;
    let env = stack.env_name().to_string();
    stack.with_store(|s| s.set_desired_replicas(&env, &name, request.replicas))?;
    stack.record(
        berth_model::EventLevel::Info,
        &name,
        format!("scaled to {}", request.replicas),
    );
    let plan = stack.current_plan(&name)?;
    stack
        .supervisor
        .converge(&plan, request.replicas, false)
        .await
        .map_err(|e| ApiFailure(StatusCode::CONFLICT, format!("{e:#}")))?;
    service_status(&stack, &name)
}

/// Pushes a container release's image to a registry (for the scale-out engines, which run
/// images). Refused for a process service or a release that has no image here.
async fn release_push(
    State(state): State<ApiState>,
    Path((name, id)): Path<(String, String)>,
    body: Result<Json<berth_model::api::PushRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<berth_model::api::PushResponse>, ApiFailure> {
    let Json(request) = body.map_err(|e| {
        bad_request(format!(
            "expected {{\"repository\": \"registry/name\", \"username\": ..., \"password\": ...}}: {e}"
        ))
    })?;
    let service = known_service(&state, &name)?.clone();
    if service.container.is_none() {
        return Err(bad_request(format!(
            "`{name}` runs local processes, not containers: only a service with `image` or `dockerfile` has an image to push"
        )));
    }
    let repository = request.repository.trim();
    if !valid_repository(repository) {
        return Err(bad_request(format!(
            "`{repository}` is not a repository name: lowercase `registry[:port]/path`, e.g. registry.example.com/shop/web, without a tag (the tag is the release id)"
        )));
    }
    let credentials = match (request.username, request.password) {
        (Some(user), Some(password)) => Some((user, password)),
        (None, None) => None,
        _ => {
            return Err(bad_request(
                "give both a username and a password, or neither",
            ))
        }
    };
    let stack = state.stack.clone();
    let release_id = berth_model::ReleaseId(id.clone());
    let release = stack
        .with_store(|s| s.release(&name, &release_id))?
        .ok_or_else(|| {
            not_found(format!(
                "`{name}` has no release {id} (see `berth releases`)"
            ))
        })?;
    let image = berth_container::image::ReleaseImage::read(std::path::Path::new(&release.dir))
        .ok_or_else(|| {
            ApiFailure(
                StatusCode::CONFLICT,
                format!("release {id} of `{name}` has no image yet (it was never started here)"),
            )
        })?;
    let containers = stack.containers.as_ref().ok_or_else(|| {
        ApiFailure(
            StatusCode::SERVICE_UNAVAILABLE,
            "this daemon runs without a container engine".into(),
        )
    })?;
    let digest = containers
        .engine()
        .push(&image.id, repository, &id, credentials, |line| {
            tracing::debug!("push {name} {id}: {line}")
        })
        .await
        .map_err(|e| ApiFailure(StatusCode::BAD_GATEWAY, e.to_string()))?;
    let reference = format!("{repository}:{id}");
    stack.record(
        berth_model::EventLevel::Info,
        &name,
        format!("release {id} pushed as {reference} ({digest})"),
    );
    Ok(Json(berth_model::api::PushResponse { reference, digest }))
}

/// A repository reference without a tag or digest: `[registry[:port]/]path`, lowercase path
/// components of letters, digits and `._-`.
fn valid_repository(repository: &str) -> bool {
    let (first, rest) = match repository.split_once('/') {
        Some(parts) => parts,
        None => ("", repository),
    };
    let registry_ok = first.is_empty()
        || first
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:".contains(&b));
    let path = if first.contains(['.', ':']) || first == "localhost" {
        rest
    } else {
        repository
    };
    registry_ok
        && !path.is_empty()
        && repository.len() <= 255
        && path.split('/').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        })
}

async fn restart(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<ServiceStatus>, ApiFailure> {
    let service = known_service(&state, &name)?.clone();
    let stack = state.stack.clone();
    refuse_during_deploy(&stack, &name)?;
    let plan = stack.current_plan(&name)?;
    stack.record(berth_model::EventLevel::Info, &name, "rolling restart");
    stack
        .supervisor
        .converge(&plan, stack.desired(&service), true)
        .await
        .map_err(|e| ApiFailure(StatusCode::CONFLICT, format!("{e:#}")))?;
    service_status(&stack, &name)
}

#[derive(Deserialize)]
struct LogsQuery {
    service: String,
    replica: Option<u32>,
    /// A duration back from now: `5m`.
    since: Option<String>,
    tail: Option<usize>,
    follow: Option<bool>,
}

async fn logs_handler(
    State(state): State<ApiState>,
    Query(q): Query<LogsQuery>,
) -> Result<Response, ApiFailure> {
    let source = if q.service == "edge" {
        LogSource::File {
            label: "edge".into(),
            path: crate::edge::edge_dir(&state.stack.paths).join("access.log"),
        }
    } else {
        known_service(&state, &q.service)?;
        LogSource::Replicas(state.stack.paths.replicas())
    };
    let since = match &q.since {
        Some(text) => {
            let back = humantime::parse_duration(text)
                .map_err(|e| bad_request(format!("--since {text}: {e} (try 30s, 5m, 2h)")))?;
            Some(SystemTime::now() - back)
        }
        None => None,
    };
    let query = LogQuery {
        service: q.service.clone(),
        replica: q.replica,
        since,
        tail: q.tail,
    };
    let keep = crate::LOG_KEEP;
    let past = tokio::task::spawn_blocking({
        let source = source.clone();
        let query = query.clone();
        move || logs::read(&source, &query, keep)
    })
    .await
    .map_err(|e| anyhow::anyhow!(e))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<String>(256);
    let follow = q.follow.unwrap_or(false);
    tokio::spawn(async move {
        for line in past {
            if tx.send(format!("{line}\n")).await.is_err() {
                return;
            }
        }
        if follow {
            logs::follow(source, query, tx).await;
        }
    });
    let stream =
        tokio_stream::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(rx), |line| {
            Ok::<_, std::convert::Infallible>(line)
        });
    Ok(Response::builder()
        .header("content-type", "text/plain; charset=utf-8")
        .body(Body::from_stream(stream))
        .map_err(|e| anyhow::anyhow!(e))?)
}

/// One service's line of the stack status.
fn service_status(stack: &Stack, name: &str) -> Result<Json<ServiceStatus>, ApiFailure> {
    stack_status(stack)
        .services
        .into_iter()
        .find(|s| s.name == name)
        .map(Json)
        .ok_or_else(|| not_found("service vanished"))
}

async fn down(State(state): State<ApiState>) -> (StatusCode, Json<serde_json::Value>) {
    // Answer first; the daemon stops everything once the answer is out.
    let shutdown = state.shutdown.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        shutdown.notify_one();
    });
    (
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "stopping": state.stack.spec.stack.name })),
    )
}

impl From<crate::tasks::TaskRefusal> for ApiFailure {
    fn from(refusal: crate::tasks::TaskRefusal) -> Self {
        use crate::tasks::TaskRefusal;
        match refusal {
            TaskRefusal::NotFound(m) => not_found(m),
            TaskRefusal::Held(m) => ApiFailure(StatusCode::CONFLICT, m),
            TaskRefusal::Other(e) => e.into(),
        }
    }
}

/// The folder and environment of a task (secret values included; never logged).
async fn task_environment(
    State(state): State<ApiState>,
    Json(request): Json<berth_model::api::TaskRequest>,
) -> Result<Json<berth_model::api::TaskEnvironment>, ApiFailure> {
    let plan = crate::tasks::task_plan(&state.stack, &request.service, request.release.as_deref())?;
    Ok(Json(crate::tasks::environment(&plan)))
}

async fn task_ended(
    State(state): State<ApiState>,
    Json(ended): Json<berth_model::api::TaskEnded>,
) -> Result<Json<serde_json::Value>, ApiFailure> {
    let plan = crate::tasks::task_plan(&state.stack, &ended.service, Some(&ended.release))?;
    crate::tasks::record_ended(&state.stack, &plan, &ended);
    Ok(Json(serde_json::json!({})))
}

async fn task_detached(
    State(state): State<ApiState>,
    Json(request): Json<berth_model::api::DetachedTaskRequest>,
) -> Result<Json<berth_model::api::DetachedTask>, ApiFailure> {
    let plan = crate::tasks::task_plan(&state.stack, &request.service, request.release.as_deref())?;
    Ok(Json(crate::tasks::spawn_detached(
        &state.stack,
        plan,
        request.command,
        request.user,
    )?))
}

fn refuse_during_deploy(stack: &Stack, service: &str) -> Result<(), ApiFailure> {
    if let Some(reason) = stack.held(service) {
        return Err(ApiFailure(
            StatusCode::CONFLICT,
            format!("`{service}` is held: {reason}; fix it and `berth deploy {service}`"),
        ));
    }
    match stack.deploys.running(service) {
        Some(id) => Err(ApiFailure(
            StatusCode::CONFLICT,
            format!("deploy {id} of `{service}` is running; wait for it (`berth deploy watch {id}`) or cancel it"),
        )),
        None => Ok(()),
    }
}

impl From<DeployRefusal> for ApiFailure {
    fn from(refusal: DeployRefusal) -> Self {
        match refusal {
            DeployRefusal::Conflict(m) => ApiFailure(StatusCode::CONFLICT, m),
            DeployRefusal::NotFound(m) => ApiFailure(StatusCode::NOT_FOUND, m),
            DeployRefusal::Invalid(m) => ApiFailure(StatusCode::UNPROCESSABLE_ENTITY, m),
            DeployRefusal::Internal(e) => e.into(),
        }
    }
}

async fn deploy_start(
    State(state): State<ApiState>,
    body: Result<Json<DeployRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<DeployStarted>), ApiFailure> {
    let Json(request) = body.map_err(|e| {
        bad_request(format!(
            "expected {{\"service\": NAME, \"strategy\"?, \"source\"?, \"rev\"?, \"force\"?}}: {e}"
        ))
    })?;
    if request.source.is_some() && request.rev.is_some() {
        return Err(bad_request("give --source or --rev, not both"));
    }
    let started = state.stack.start_deploy(request).await?;
    let status = if started.deploy.is_some() {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(started)))
}

#[derive(Deserialize)]
struct DeployListQuery {
    service: Option<String>,
    limit: Option<usize>,
}

async fn deploy_list(
    State(state): State<ApiState>,
    Query(q): Query<DeployListQuery>,
) -> Result<Json<Vec<DeployRecord>>, ApiFailure> {
    let env = state.stack.env_name().to_string();
    let limit = q.limit.unwrap_or(20).min(1000);
    Ok(Json(state.stack.with_store(|s| {
        s.deploys(&env, q.service.as_deref(), limit)
    })?))
}

async fn deploy_get(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<DeployRecord>, ApiFailure> {
    let id: u64 = id
        .parse()
        .map_err(|_| bad_request(format!("`{id}` is not a deploy number")))?;
    let env = state.stack.env_name().to_string();
    state
        .stack
        .with_store(|s| s.deploy(id))?
        .filter(|d| d.env == env)
        .map(Json)
        .ok_or_else(|| not_found(format!("no deploy {id} (see `berth deploys`)")))
}

async fn deploy_cancel(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<DeployRecord>), ApiFailure> {
    let Json(record) = deploy_get(State(state.clone()), Path(id)).await?;
    if record.state.is_final() {
        return Err(ApiFailure(
            StatusCode::CONFLICT,
            format!("deploy {} already ended: {}", record.id, record.state),
        ));
    }
    if !state.stack.deploys.cancel(record.id) {
        return Err(ApiFailure(
            StatusCode::CONFLICT,
            format!("deploy {} is not running in this daemon", record.id),
        ));
    }
    Ok((StatusCode::ACCEPTED, Json(record)))
}

#[derive(Deserialize)]
struct RollbackRequest {
    service: String,
    to: Option<String>,
}

async fn rollback(
    State(state): State<ApiState>,
    body: Result<Json<RollbackRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<DeployStarted>), ApiFailure> {
    let Json(request) =
        body.map_err(|e| bad_request(format!("expected {{\"service\": NAME, \"to\"?}}: {e}")))?;
    known_service(&state, &request.service)?;
    let started = state
        .stack
        .rollback(&request.service, request.to.map(berth_model::ReleaseId))
        .await?;
    let status = if started.deploy.is_some() {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(started)))
}

#[cfg(test)]
mod tests {
    use super::valid_repository;

    #[test]
    fn repositories_are_names_without_a_tag() {
        for good in [
            "registry.example.com/shop/web",
            "127.0.0.1:5000/shop/web",
            "localhost/web",
            "shop/web",
            "web",
            "ghcr.io/acme/my_app-2",
        ] {
            assert!(valid_repository(good), "{good}");
        }
        for bad in [
            "",
            "registry.example.com/",
            "Shop/Web",
            "shop/web:latest",
            "shop/web@sha256:00",
            "shop//web",
            "reg istry/web",
            "shop/web;rm -rf",
        ] {
            assert!(!valid_repository(bad), "{bad}");
        }
    }
}
