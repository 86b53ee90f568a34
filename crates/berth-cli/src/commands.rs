//! What each client command does: ask the daemon, print the answer.

use std::io::Write;

use anyhow::Context;
use berth_model::api::{EventList, ReleaseList, ScaleRequest, ServiceStatus, StackStatus};
use http_body_util::BodyExt;

use crate::client::ApiClient;
use crate::render;

/// `berth validate`: exit code 0 when the spec is valid, 1 otherwise.
pub fn validate(file: &std::path::Path, env: Option<&str>) -> i32 {
    match berth_spec::load(file, env) {
        Ok(spec) => {
            if let Err(e) = crate::secrets::check_declared(&spec) {
                eprintln!("{}: error: {e:#}", file.display());
                return 1;
            }
            println!(
                "{}: ok ({} services, {} accessories, {} volumes, {} routes; environment {})",
                file.display(),
                spec.services.len(),
                spec.accessories.len(),
                spec.volumes.len(),
                spec.routes.len(),
                spec.environment
            );
            0
        }
        Err(diagnostics) => {
            eprint!("{diagnostics}");
            eprintln!("{} problem(s) found", diagnostics.items.len());
            1
        }
    }
}

pub async fn ps(client: &ApiClient, json: bool) -> anyhow::Result<()> {
    let status: StackStatus = client.get("/v1/status").await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status.replicas)?);
    } else {
        print!("{}", render::ps(&status, berth_model::now_unix()));
    }
    Ok(())
}

pub async fn status(client: &ApiClient, json: bool) -> anyhow::Result<()> {
    let status: StackStatus = client.get("/v1/status").await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", render::ps(&status, berth_model::now_unix()));
    }
    Ok(())
}

pub async fn logs(
    client: &ApiClient,
    service: &str,
    follow: bool,
    replica: Option<u32>,
    since: Option<&str>,
    tail: Option<usize>,
) -> anyhow::Result<()> {
    let mut path = format!("/v1/logs?service={}&follow={follow}", encode(service));
    if let Some(r) = replica {
        path.push_str(&format!("&replica={r}"));
    }
    if let Some(s) = since {
        path.push_str(&format!("&since={}", encode(s)));
    }
    if let Some(t) = tail {
        path.push_str(&format!("&tail={t}"));
    }
    let response = client.send("GET", &path, None).await?;
    let mut body = response.into_body();
    let mut stdout = std::io::stdout();
    while let Some(frame) = body.frame().await {
        let frame = frame.context("reading logs")?;
        if let Some(data) = frame.data_ref() {
            if stdout.write_all(data).is_err() {
                break; // e.g. piped into `head`
            }
            let _ = stdout.flush();
        }
    }
    Ok(())
}

pub async fn scale(client: &ApiClient, service: &str, replicas: u32) -> anyhow::Result<()> {
    let status: ServiceStatus = client
        .post(
            &format!("/v1/services/{}/scale", encode(service)),
            &ScaleRequest { replicas },
        )
        .await?;
    println!(
        "{}: {} replicas wanted, {} healthy now",
        status.name, status.desired, status.healthy
    );
    Ok(())
}

/// `berth release push SERVICE --to REPOSITORY`: the daemon pushes the release's image (the
/// current release unless one is named) and says what the registry holds.
pub async fn release_push(client: &ApiClient, action: &crate::ReleaseAction) -> anyhow::Result<()> {
    let crate::ReleaseAction::Push {
        service,
        repository,
        release,
        username,
        password_stdin,
        json,
        ..
    } = action;
    let release = match release {
        Some(release) => release.clone(),
        None => {
            let status: berth_model::api::StackStatus = client.get("/v1/status").await?;
            status
                .services
                .iter()
                .find(|s| &s.name == service)
                .and_then(|s| s.release.clone())
                .ok_or_else(|| {
                    anyhow::anyhow!("`{service}` has no current release; name one with --release")
                })?
        }
    };
    let password = if *password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("reading the registry password from standard input")?;
        Some(line.trim_end_matches(['\r', '\n']).to_string())
    } else {
        None
    };
    let request = berth_model::api::PushRequest {
        repository: repository.clone(),
        username: username.clone(),
        password,
    };
    let pushed: berth_model::api::PushResponse = client
        .post(
            &format!(
                "/v1/services/{}/releases/{}/push",
                encode(service),
                encode(&release)
            ),
            &request,
        )
        .await?;
    if *json {
        println!("{}", serde_json::to_string_pretty(&pushed)?);
    } else {
        println!(
            "pushed {release} of {service} as {} ({})",
            pushed.reference, pushed.digest
        );
    }
    Ok(())
}

/// `berth cache purge [--service S] [PATH-PREFIX]`.
pub async fn cache(client: &ApiClient, action: &crate::CacheAction) -> anyhow::Result<()> {
    use berth_model::api::{PurgeRequest, PurgeResult};
    let crate::CacheAction::Purge {
        service,
        prefix,
        json,
        ..
    } = action;
    let request = PurgeRequest {
        service: service.clone(),
        prefix: prefix.clone(),
    };
    let result: PurgeResult = client.post("/v1/cache/purge", &request).await?;
    if *json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        println!(
            "purged {} cached answers{}{}",
            result.purged,
            service
                .as_deref()
                .map(|s| format!(" of {s}"))
                .unwrap_or_default(),
            prefix
                .as_deref()
                .map(|p| format!(" under {p}"))
                .unwrap_or_default()
        );
    }
    Ok(())
}

/// `berth maintenance on|off|status`.
pub async fn maintenance(
    client: &ApiClient,
    action: &crate::MaintenanceAction,
) -> anyhow::Result<()> {
    use berth_model::api::{MaintenanceRequest, MaintenanceStatus};
    let status: MaintenanceStatus = match action {
        crate::MaintenanceAction::On {
            services, message, ..
        } => {
            let request = MaintenanceRequest {
                on: true,
                services: services.clone(),
                message: message.clone(),
            };
            client.post("/v1/maintenance", &request).await?
        }
        crate::MaintenanceAction::Off { .. } => {
            let request = MaintenanceRequest {
                on: false,
                services: Vec::new(),
                message: None,
            };
            client.post("/v1/maintenance", &request).await?
        }
        crate::MaintenanceAction::Status { json: true, .. } => {
            let status: MaintenanceStatus = client.get("/v1/maintenance").await?;
            println!("{}", serde_json::to_string_pretty(&status)?);
            return Ok(());
        }
        crate::MaintenanceAction::Status { .. } => client.get("/v1/maintenance").await?,
    };
    match (status.on, status.services.is_empty()) {
        (false, _) => println!("maintenance: off"),
        (true, true) => println!("maintenance: on for every service"),
        (true, false) => println!("maintenance: on for {}", status.services.join(", ")),
    }
    if let Some(message) = &status.message {
        println!("message: {message}");
    }
    Ok(())
}

pub async fn restart(client: &ApiClient, service: &str) -> anyhow::Result<()> {
    let status: ServiceStatus = client
        .post(&format!("/v1/services/{}/restart", encode(service)), &())
        .await?;
    println!(
        "{}: restarted, {} of {} healthy",
        status.name, status.healthy, status.desired
    );
    Ok(())
}

pub async fn down(client: &ApiClient) -> anyhow::Result<()> {
    let _: serde_json::Value = client.post("/v1/down", &()).await?;
    // The daemon removes its socket once everything is stopped.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while client.socket().exists() {
        if std::time::Instant::now() > deadline {
            anyhow::bail!("the daemon is still stopping after 120s");
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    println!("stack stopped; accessory data and volumes are kept");
    Ok(())
}

/// `berth alarms [--json]`.
pub async fn alarms(client: &ApiClient, json: bool) -> anyhow::Result<()> {
    let list: berth_model::api::AlarmList = client.get("/v1/alarms").await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        print!("{}", render::alarms(&list, berth_model::now_unix()));
    }
    Ok(())
}

pub async fn events(client: &ApiClient, limit: usize, json: bool) -> anyhow::Result<()> {
    let list: EventList = client.get(&format!("/v1/events?limit={limit}")).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&list.events)?);
    } else {
        print!("{}", render::events(&list.events));
    }
    Ok(())
}

pub async fn releases(client: &ApiClient, service: Option<&str>, json: bool) -> anyhow::Result<()> {
    let path = match service {
        Some(s) => format!("/v1/releases?service={}", encode(s)),
        None => "/v1/releases".to_string(),
    };
    let list: ReleaseList = client.get(&path).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&list.releases)?);
    } else {
        let deploys: Vec<berth_model::DeployRecord> = client
            .get("/v1/deploys?limit=1000")
            .await
            .unwrap_or_default();
        let status: Option<StackStatus> = client.get("/v1/status").await.ok();
        let current: Vec<(String, String)> = status
            .map(|s| {
                s.services
                    .into_iter()
                    .filter_map(|svc| Some((svc.name, svc.release?)))
                    .collect()
            })
            .unwrap_or_default();
        print!(
            "{}",
            render::releases(&list.releases, &deploys, &current, berth_model::now_unix())
        );
    }
    Ok(())
}

/// Percent-encodes a query or path value.
pub(crate) fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
