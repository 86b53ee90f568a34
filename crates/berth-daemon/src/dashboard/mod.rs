//! The web dashboard: its page and assets (embedded in the binary with `include_bytes!`, uPlot
//! vendored under `assets/uplot/` with its licence) and the read-only JSON routes the page
//! reads (`/v1/status`, `/v1/deploys`, `/v1/releases`, `/v1/alarms`, `/v1/dashboard/backups`,
//! `/v1/dashboard/logs`), served on `observe.sock` beside the metrics routes; the edge's admin
//! listener forwards `/dashboard/*` and `/api/*` there.
//!
//! Everything here answers GET and nothing changes state: no route of the API socket that
//! mutates is reachable from here, and what the status leaves out what may hold secrets
//! (replicas' last lines, a held release's migration output). The replicas' logs (masked as
//! written) are served on their own route, which the edge forwards only with the admin token,
//! even on loopback. It must never know the token or the admin listener's rules: those are the
//! edge's.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use berth_model::api::{ApiError, ReleaseList, StackStatus};
use berth_model::DeployRecord;
use berth_model::Event;
use serde::{Deserialize, Serialize};

use crate::stack::Stack;

/// The page's Content-Security-Policy: its own scripts, styles and API only, no inline code,
/// never framed.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The read-only APIs the page may use beyond status, deploys, releases and metrics, as
/// `GET /v1/dashboard/features` tells it (so it never asks for a route that is not there: a
/// 404 would be a console error in the browser). `alarms`: `GET /v1/alarms` on this socket.
pub const FEATURES: &[(&str, bool)] = &[("alarms", true), ("backups", true)];

/// The embedded files: (name, content type, bytes).
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("assets/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("assets/app.css"),
    ),
    (
        "uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/uplot/uPlot.iife.min.js"),
    ),
    (
        "uPlot.min.css",
        "text/css; charset=utf-8",
        include_bytes!("assets/uplot/uPlot.min.css"),
    ),
    (
        "uPlot.LICENSE.txt",
        "text/plain; charset=utf-8",
        include_bytes!("assets/uplot/LICENSE"),
    ),
];

/// The embedded file called `name` (`""` is the page): (content type, bytes).
pub fn asset(name: &str) -> Option<(&'static str, &'static [u8])> {
    let name = if name.is_empty() { "index.html" } else { name };
    ASSETS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, t, b)| (*t, *b))
}

/// The dashboard's routes, for `observe.sock`.
pub fn routes<S: Clone + Send + Sync + 'static>(stack: Arc<Stack>) -> Router<S> {
    Router::new()
        .route("/dashboard/", get(|| serve_asset(String::new())))
        .route(
            "/dashboard/{name}",
            get(|Path(name): Path<String>| serve_asset(name)),
        )
        .route("/v1/dashboard/features", get(features))
        .route("/v1/status", get(status))
        .route("/v1/deploys", get(deploys))
        .route("/v1/releases", get(releases))
        .route("/v1/dashboard/backups", get(backups))
        .route("/v1/alarms", get(alarms))
        .route("/v1/dashboard/logs", get(logs))
        .with_state(stack)
}

async fn serve_asset(name: String) -> Response {
    let Some((content_type, bytes)) = asset(&name) else {
        return failure(
            StatusCode::NOT_FOUND,
            format!(
                "no dashboard file `{}`",
                name.chars().take(60).collect::<String>()
            ),
        );
    };
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn failure(status: StatusCode, message: String) -> Response {
    (status, Json(ApiError { error: message })).into_response()
}

/// The stack's status as `GET /v1/status` of the API socket answers it, without what may hold
/// secrets: the replicas' last log lines and a held release's migration output.
pub fn public_status(mut status: StackStatus) -> StackStatus {
    for replica in &mut status.replicas {
        replica.last_log.clear();
    }
    for service in &mut status.services {
        if service.held.is_some() {
            service.held =
                Some("its release's first migration failed (`berth status` shows the log)".into());
        }
    }
    status
}

async fn features() -> Json<serde_json::Map<String, serde_json::Value>> {
    Json(
        FEATURES
            .iter()
            .map(|(name, on)| (name.to_string(), serde_json::Value::Bool(*on)))
            .collect(),
    )
}

#[derive(Deserialize)]
struct LogsQuery {
    service: String,
    tail: Option<usize>,
}

/// The most log lines the page gets at once.
const LOG_LINES_SHOWN: usize = 500;

/// The newest lines of a service's replicas (as written: secret values masked), oldest first.
async fn logs(State(stack): State<Arc<Stack>>, Query(q): Query<LogsQuery>) -> Response {
    if !stack.spec.services.contains_key(&q.service) {
        return failure(
            StatusCode::NOT_FOUND,
            format!(
                "no service `{}`",
                q.service.chars().take(60).collect::<String>()
            ),
        );
    }
    let source = berth_supervisor::logs::LogSource::Replicas(stack.paths.replicas());
    let query = berth_supervisor::logs::LogQuery {
        service: q.service.clone(),
        replica: None,
        since: None,
        tail: Some(q.tail.unwrap_or(200).clamp(1, LOG_LINES_SHOWN)),
    };
    let read = tokio::task::spawn_blocking(move || {
        berth_supervisor::logs::read(&source, &query, crate::LOG_KEEP)
    })
    .await;
    match read {
        Ok(lines) => {
            let mut response =
                Json(serde_json::json!({ "service": q.service, "lines": lines })).into_response();
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(e) => failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reading logs: {e}"),
        ),
    }
}

async fn alarms(State(stack): State<Arc<Stack>>) -> Response {
    match crate::api::alarm_list(&stack) {
        Ok(list) => Json(list).into_response(),
        Err(e) => failure(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
    }
}

async fn status(State(stack): State<Arc<Stack>>) -> Json<StackStatus> {
    Json(public_status(crate::api::stack_status(&stack)))
}

#[derive(Deserialize)]
struct DeploysQuery {
    service: Option<String>,
    limit: Option<usize>,
}

async fn deploys(
    State(stack): State<Arc<Stack>>,
    Query(q): Query<DeploysQuery>,
) -> Result<Json<Vec<DeployRecord>>, Response> {
    let env = stack.env_name().to_string();
    let limit = q.limit.unwrap_or(20).min(200);
    stack
        .with_store(|s| s.deploys(&env, q.service.as_deref(), limit))
        .map(Json)
        .map_err(|e| failure(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))
}

#[derive(Deserialize)]
struct ReleasesQuery {
    service: Option<String>,
}

async fn releases(
    State(stack): State<Arc<Stack>>,
    Query(q): Query<ReleasesQuery>,
) -> Result<Json<ReleaseList>, Response> {
    if let Some(name) = &q.service {
        if !stack.spec.services.contains_key(name) {
            return Err(failure(
                StatusCode::NOT_FOUND,
                format!(
                    "no service `{}` in this stack",
                    name.chars().take(60).collect::<String>()
                ),
            ));
        }
    }
    let mut releases = stack
        .with_store(|s| s.releases(q.service.as_deref()))
        .map_err(|e| failure(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))?;
    // The page has no use for the server's folders.
    for release in &mut releases {
        release.dir.clear();
    }
    releases.truncate(50);
    Ok(Json(ReleaseList { releases }))
}

/// A backup as the page shows it: what it holds and how its last verification went.
#[derive(Debug, Serialize, PartialEq)]
pub struct BackupRow {
    pub id: String,
    pub reason: String,
    pub finished_at: i64,
    pub bytes: u64,
    pub parts: Vec<String>,
    /// `verified` or `failed`, from the newest verification event; None: never verified.
    pub verification: Option<String>,
    pub verified_at: Option<i64>,
}

/// `GET /v1/dashboard/backups`.
#[derive(Debug, Serialize)]
pub struct BackupsView {
    pub destination: String,
    pub schedule: Option<String>,
    /// Newest first, at most 20.
    pub backups: Vec<BackupRow>,
    /// Recent failures (id, reason, when; the error's first line), newest first.
    pub failures: Vec<(String, String, i64, String)>,
}

/// The newest verification of backup `id` among the events: (`verified` or `failed`, when).
pub fn verification(events: &[Event], id: &str) -> Option<(String, i64)> {
    let verified = format!("backup {id} verified");
    let failed = format!("backup {id} failed verification");
    events
        .iter()
        .filter(|e| e.subject == "backup")
        .filter_map(|e| {
            if e.message == verified {
                Some(("verified".to_string(), e.at))
            } else if e.message.starts_with(&failed) {
                Some(("failed".to_string(), e.at))
            } else {
                None
            }
        })
        .max_by_key(|(_, at)| *at)
}

async fn backups(State(stack): State<Arc<Stack>>) -> Result<Json<BackupsView>, Response> {
    let list = crate::backup::list(&stack)
        .await
        .map_err(|e| failure(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))?;
    let env = stack.env_name().to_string();
    let events = stack
        .with_store(|s| s.events(&env, 2000))
        .unwrap_or_default();
    let backups = list
        .backups
        .iter()
        .rev()
        .take(20)
        .map(|m| {
            let checked = verification(&events, &m.id);
            BackupRow {
                id: m.id.clone(),
                reason: m.reason.clone(),
                finished_at: m.finished_at,
                bytes: m.parts.iter().map(|p| p.bytes).sum(),
                parts: m.parts.iter().map(|p| p.name.clone()).collect(),
                verification: checked.as_ref().map(|(v, _)| v.clone()),
                verified_at: checked.map(|(_, at)| at),
            }
        })
        .collect();
    let failures = list
        .failures
        .iter()
        .rev()
        .take(10)
        .map(|f| {
            let first = f.error.lines().next().unwrap_or("");
            (
                f.id.clone(),
                f.reason.clone(),
                f.at,
                first.chars().take(200).collect(),
            )
        })
        .collect();
    Ok(Json(BackupsView {
        destination: list.destination,
        schedule: list.schedule,
        backups,
        failures,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_and_its_files_are_embedded_and_nothing_else_is_served() {
        let (kind, page) = asset("").unwrap();
        assert!(kind.starts_with("text/html"));
        let page = std::str::from_utf8(page).unwrap();
        // No inline script or style: the CSP forbids them.
        assert!(
            !page.contains("<script>") && !page.contains("style="),
            "{page}"
        );
        assert!(page.contains("src=\"app.js\"") && page.contains("src=\"uPlot.iife.min.js\""));
        assert!(asset("uPlot.iife.min.js").unwrap().1.len() > 10_000);
        assert!(std::str::from_utf8(asset("uPlot.LICENSE.txt").unwrap().1)
            .unwrap()
            .contains("MIT"));
        assert!(asset("../Cargo.toml").is_none());
        assert!(asset("mod.rs").is_none());
        assert!(CSP.contains("script-src 'self'") && !CSP.contains("unsafe"));
    }

    #[test]
    fn a_backups_verification_is_its_newest_verification_event() {
        let event = |at, subject: &str, message: &str| Event {
            at,
            level: berth_model::EventLevel::Info,
            subject: subject.into(),
            message: message.into(),
        };
        let events = vec![
            event(30, "backup", "backup b1 failed verification: checksum"),
            event(20, "backup", "backup b1 verified"),
            event(25, "backup", "backup b10 verified"),
            event(40, "web", "backup b2 verified"),
            event(10, "backup", "backup b2 verified"),
        ];
        assert_eq!(verification(&events, "b1"), Some(("failed".into(), 30)));
        assert_eq!(verification(&events, "b2"), Some(("verified".into(), 10)));
        assert_eq!(verification(&events, "b3"), None);
    }

    #[test]
    fn the_public_status_leaves_out_log_lines() {
        let status: StackStatus = serde_json::from_value(serde_json::json!({
            "stack": "s", "environment": "production", "daemon_pid": 1, "started_at": 0,
            "services": [{"name": "web", "desired": 1, "release": null, "healthy": 0,
                          "held": "migration said PASSWORD=hunter2"}],
            "accessories": [],
            "replicas": [{"service": "web", "replica": "web.1", "index": 1, "pid": null,
                          "port": null, "health": "unhealthy", "release": "r1", "started_at": null,
                          "restarts": 3, "last_exit": "exit 1",
                          "last_log": ["token=hunter2"], "limits": null}],
            "edge": null
        }))
        .unwrap();
        let public = serde_json::to_string(&public_status(status)).unwrap();
        assert!(!public.contains("hunter2"), "{public}");
        assert!(public.contains("migration failed"), "{public}");
    }
}
