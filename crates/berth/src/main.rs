//! The `berth` binary: parses the command line and dispatches to the daemon (`up`), the replica
//! shim (`shim`) or the API client (everything else). No logic lives here.

use std::process::ExitCode;

/// mimalloc instead of glibc malloc: the edge allocates per request and holds thousands of
/// connection buffers; glibc's arenas kept about twice the memory and cost more CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use berth_cli::client::ApiClient;
use berth_cli::{commands, deploy, Cli, Command, DeployAction};
use clap::Parser;

/// The edge's own log: at most this big before it rotates, and this many old files kept.
const EDGE_LOG_BYTES: u64 = 20 * 1024 * 1024;
const EDGE_LOGS_KEPT: u32 = 3;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        // The shim must stay small and single-purpose: no runtime, no logging setup.
        Command::Shim { dir } => {
            return ExitCode::from(berth_supervisor::shim::run(dir).clamp(0, 255) as u8)
        }
        Command::Validate { .. } => {
            return ExitCode::from(commands::validate(&cli.spec_file(), cli.env.as_deref()) as u8)
        }
        _ => {}
    }
    // A client must not be able to write the edge's log at will: rustls warns once per odd
    // handshake (an IP address as SNI, as wrk and some scanners send), so its level is `error`
    // unless BERTH_LOG names rustls itself.
    let directives = std::env::var("BERTH_LOG").unwrap_or_else(|_| "info".into());
    let directives = if directives.contains("rustls") {
        directives
    } else {
        format!("{directives},rustls=error")
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&directives)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rustls=error"));
    // The edge logs what clients make it log (WAF findings): into a size-capped file of its
    // own, never an ever-growing one (its stderr, for a panic, goes to the same file).
    let edge_log = match &cli.command {
        Command::Edge { dir, .. } => {
            berth_edge::no_huge_pages();
            berth_logfile::LogFile::open(dir.join("edge.log"), EDGE_LOG_BYTES, EDGE_LOGS_KEPT).ok()
        }
        _ => None,
    };
    match edge_log {
        Some(file) => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::sync::Mutex::new(file))
            .with_ansi(false)
            .init(),
        None => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth: error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => match e.downcast_ref::<deploy::Exit>() {
            // The command already said why.
            Some(deploy::Exit(code)) => ExitCode::from(*code),
            None => {
                eprintln!("berth: error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Edge {
        dir,
        listen,
        tls_listen,
        admin,
        takeover,
        workers,
        pin_workers,
    } = cli.command
    {
        return berth_edge::run(berth_edge::EdgeOptions {
            dir,
            listen,
            tls_listen,
            admin,
            takeover,
            workers: workers.map(|n| n as usize),
            pin_workers,
        })
        .await;
    }
    let spec_file = cli.spec_file();
    if let Command::Up { .. } = cli.command {
        let program = std::env::current_exe()?;
        return berth_daemon::up(berth_daemon::UpOptions {
            spec_file,
            environment: cli.env,
            program,
        })
        .await;
    }
    let client = ApiClient::for_spec(&spec_file, cli.env.as_deref())?;
    match cli.command {
        Command::Ps { json, .. } => commands::ps(&client, json).await,
        Command::Status { json, .. } => commands::status(&client, json).await,
        Command::Logs {
            service,
            follow,
            replica,
            since,
            tail,
            ..
        } => commands::logs(&client, &service, follow, replica, since.as_deref(), tail).await,
        Command::Scale {
            service, replicas, ..
        } => commands::scale(&client, &service, replicas).await,
        Command::Restart { service, .. } => commands::restart(&client, &service).await,
        Command::Maintenance { action } => commands::maintenance(&client, &action).await,
        Command::Cache { action } => commands::cache(&client, &action).await,
        Command::Down { .. } => commands::down(&client).await,
        Command::Events { limit, json, .. } => commands::events(&client, limit, json).await,
        Command::Alarms { json, .. } => commands::alarms(&client, json).await,
        Command::Metrics(args) => berth_cli::metrics::metrics(&client, &args).await,
        Command::Top(args) => berth_cli::top::top(&client, &args).await,
        Command::Release { action } => commands::release_push(&client, &action).await,
        Command::Releases { service, json, .. } => {
            commands::releases(&client, service.as_deref(), json).await
        }
        Command::Deploy {
            action: Some(DeployAction::Watch { id, json, .. }),
            ..
        } => deploy::watch(&client, id, json).await,
        Command::Deploy {
            action: Some(DeployAction::Cancel { id, json, .. }),
            ..
        } => deploy::cancel(&client, id, json).await,
        Command::Deploy {
            action: None,
            services,
            strategy,
            source,
            rev,
            detach,
            json,
            force,
            ..
        } => {
            deploy::deploy(
                &client,
                deploy::DeployOptions {
                    services,
                    strategy,
                    source,
                    rev,
                    detach,
                    json,
                    force,
                },
            )
            .await
        }
        Command::Deploys { service, json, .. } => {
            deploy::list(&client, service.as_deref(), json).await
        }
        Command::Rollback {
            service, to, json, ..
        } => deploy::rollback(&client, service, to, json).await,
        Command::Secrets { action } => {
            berth_cli::secrets::run(client, &spec_file, cli.env.as_deref(), action).await
        }
        Command::Backup { action } => berth_cli::backup::run(&client, action).await,
        Command::Run {
            service,
            release,
            detach,
            command,
            ..
        } => {
            berth_cli::run::run(
                &client,
                berth_cli::run::RunOptions {
                    service,
                    release,
                    detach,
                    command,
                },
            )
            .await
        }
        Command::Restore(args) => berth_cli::backup::restore(&client, args).await,
        Command::Up { .. }
        | Command::Shim { .. }
        | Command::Validate { .. }
        | Command::Edge { .. } => {
            unreachable!("dispatched above")
        }
    }
}
