//! The web dashboard: its page and assets (embedded in the binary with `include_bytes!`, uPlot
//! vendored under `assets/uplot/` with its licence) and the read-only JSON routes the page
//! reads (`/v1/status`, `/v1/deploys`, `/v1/releases`), served on `observe.sock` beside the
//! metrics routes; the edge's admin listener forwards `/dashboard/*` and `/api/*` there.
//!
//! Everything here answers GET and nothing changes state: no route of the API socket that
//! mutates is reachable from here, and what the page reads leaves out what may hold secrets
//! (replicas' log tails, a held release's migration output). It must never know the token or
//! the admin listener's rules: those are the edge's.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use berth_model::api::{ApiError, ReleaseList, StackStatus};
use berth_model::DeployRecord;
use serde::Deserialize;

use crate::stack::Stack;

/// The page's Content-Security-Policy: its own scripts, styles and API only, no inline code,
/// never framed.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The read-only APIs the page may use beyond status, deploys, releases and metrics, as
/// `GET /v1/dashboard/features` tells it (so it never asks for a route that is not there: a
/// 404 would be a console error in the browser). `alarms`: `GET /v1/alarms` on this socket.
pub const FEATURES: &[(&str, bool)] = &[("alarms", false)];

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
