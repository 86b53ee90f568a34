//! The `berth` command line: arguments, the API client, and what each command prints.
//!
//! `validate` works on the spec alone; `up` and `shim` are run by the binary itself (they are
//! the daemon and the replica shim); every other command is a client of the running daemon's
//! API on its unix socket.

pub mod backup;
pub mod client;
pub mod commands;
pub mod deploy;
pub mod metrics;
pub mod render;
pub mod run;
pub mod secrets;
pub mod top;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "berth",
    version,
    about = "Deploy and run a web stack: edge, replicas, databases, releases."
)]
pub struct Cli {
    /// The stack's spec [default: ./berth.toml, or $BERTH_FILE].
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// The environment (its `[environment.NAME]` overrides and its own state).
    #[arg(long = "env", global = true, env = "BERTH_ENV")]
    pub env: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the spec; print every problem as FILE:LINE:COL with a hint.
    Validate {
        #[command(flatten)]
        spec: SpecFile,
    },
    /// Run the stack in the foreground: accessories, releases, replicas, the API.
    Up {
        #[command(flatten)]
        spec: SpecFile,
    },
    /// Services, replicas, health, release, ports.
    Ps {
        #[command(flatten)]
        spec: SpecFile,
        /// One JSON object per replica.
        #[arg(long)]
        json: bool,
    },
    /// The whole stack: edge, services, accessories, replicas.
    Status {
        #[command(flatten)]
        spec: SpecFile,
        /// The daemon's answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a service's captured output (`edge` for the edge's access log).
    Logs {
        service: String,
        /// The stack's spec (`-f` is --follow here, like `docker compose logs -f`).
        #[arg(long = "file")]
        file: Option<PathBuf>,
        /// Keep printing new lines.
        #[arg(short, long)]
        follow: bool,
        /// Only this replica number (`2` for web.2).
        #[arg(long)]
        replica: Option<u32>,
        /// Only lines newer than this: 30s, 5m, 2h.
        #[arg(long)]
        since: Option<String>,
        /// Only the last N lines.
        #[arg(long)]
        tail: Option<usize>,
    },
    /// Set a service's replica count.
    Scale {
        service: String,
        replicas: u32,
        #[command(flatten)]
        spec: SpecFile,
    },
    /// Maintenance mode: the edge answers 503 with a page (and `Retry-After`) for the services
    /// named (all when none), except to `[edge] maintenance_allow`; kept across restarts.
    Maintenance {
        #[command(subcommand)]
        action: MaintenanceAction,
    },
    /// The edge's response cache (`[cache]` in berth.toml).
    Cache {
        #[command(subcommand)]
        action: CacheAction,
    },
    /// Restart a service's replicas one at a time, each new one healthy before an old one stops.
    Restart {
        service: String,
        #[command(flatten)]
        spec: SpecFile,
    },
    /// Stop the stack (replicas and accessories); data of accessories and volumes stays.
    Down {
        #[command(flatten)]
        spec: SpecFile,
    },
    /// Recent events of the stack.
    Events {
        #[command(flatten)]
        spec: SpecFile,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// The alarms with their state (OK, ALARM, INSUFFICIENT_DATA), reason and last transition.
    Alarms {
        #[command(flatten)]
        spec: SpecFile,
        #[arg(long)]
        json: bool,
    },
    /// Releases, newest first.
    /// One release: `berth release push` (a container release's image to a registry).
    Release {
        #[command(subcommand)]
        action: ReleaseAction,
    },
    Releases {
        service: Option<String>,
        #[command(flatten)]
        spec: SpecFile,
        #[arg(long)]
        json: bool,
    },
    /// Make a release of the services whose source or config changed and roll it out
    /// (the service's strategy: rolling, bluegreen or canary), with automatic rollback.
    #[command(args_conflicts_with_subcommands = true)]
    Deploy {
        #[command(subcommand)]
        action: Option<DeployAction>,
        /// The services to deploy [default: all of them, in order].
        services: Vec<String>,
        /// Override the service's `deploy.strategy`: rolling, bluegreen or canary.
        #[arg(long)]
        strategy: Option<String>,
        /// Deploy this folder instead of the service's `source`.
        #[arg(long, conflicts_with = "rev")]
        source: Option<PathBuf>,
        /// Deploy this git revision of the service's source.
        #[arg(long)]
        rev: Option<String>,
        /// Start it and return at once (`berth deploy watch ID` follows it).
        #[arg(long)]
        detach: bool,
        /// Print the deploy record as JSON (progress goes to stderr).
        #[arg(long)]
        json: bool,
        /// Deploy even though the current release is not healthy.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        spec: SpecFile,
    },
    /// Deploys, newest first, with their outcome.
    Deploys {
        service: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        spec: SpecFile,
    },
    /// Go back to the previous (or a named) release of a service; a traffic switch while the
    /// old group is still up after a blue/green or canary deploy.
    Rollback {
        service: Option<String>,
        /// The release to go back to (see `berth releases`).
        #[arg(long)]
        to: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        spec: SpecFile,
    },
    /// Run a one-off task of a service's release (its folder, env, accessory URLs, volumes and
    /// secrets): attached to this terminal, its exit status returned; or `--detach`ed, logged.
    Run {
        service: String,
        /// A release of the service (see `berth releases`) [default: the current one].
        #[arg(long)]
        release: Option<String>,
        /// Let the daemon run it, keep its log, and print its id.
        #[arg(long)]
        detach: bool,
        #[command(flatten)]
        spec: SpecFile,
        /// The command: one word is a shell command line, several are run as given.
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Encrypted, versioned secrets injected into the services that declare them.
    Secrets {
        #[command(subcommand)]
        action: secrets::SecretsAction,
    },
    /// Backups of the accessories and volumes: now, list, verify, restore.
    Backup {
        #[command(subcommand)]
        action: backup::BackupAction,
    },
    /// A metric's history from the daemon's store: `berth metrics cpu_percent --service web`.
    Metrics(metrics::MetricsArgs),
    /// The stack's numbers live in the terminal (the dashboard's, refreshed; q quits).
    Top(top::TopArgs),
    /// Restore a backup (the same as `berth backup restore ID`).
    Restore(backup::RestoreArgs),
    /// (internal) Run the edge proxy; `berth up` starts it.
    #[command(hide = true)]
    Edge {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long = "listen")]
        listen: Vec<std::net::SocketAddr>,
        /// A TLS listener (certificates from the routing table).
        #[arg(long = "tls-listen")]
        tls_listen: Vec<std::net::SocketAddr>,
        #[arg(long)]
        admin: std::net::SocketAddr,
        /// Take the listening sockets over from the edge running in DIR (graceful upgrade).
        #[arg(long)]
        takeover: bool,
        /// Worker threads (default: one per core the process may run on).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=256))]
        workers: Option<u32>,
        /// Pin worker i to the i-th core the process may run on.
        #[arg(long)]
        pin_workers: bool,
    },
    /// (internal) Supervise one replica process.
    #[command(hide = true)]
    Shim { dir: PathBuf },
}

#[derive(Debug, Subcommand)]
pub enum ReleaseAction {
    /// Push a container service's release image to a registry as REPOSITORY:RELEASE, for the
    /// scale-out engines (ECS, Kubernetes) to run; prints the registry's digest.
    Push {
        service: String,
        /// The repository, `registry[:port]/path` (the tag is the release id).
        #[arg(long = "to", value_name = "REPOSITORY")]
        repository: String,
        /// The release to push [default: the service's current one].
        #[arg(long)]
        release: Option<String>,
        /// The registry user; the password is read from standard input (never an argument,
        /// which `ps` would show).
        #[arg(long, requires = "password_stdin")]
        username: Option<String>,
        /// Read the registry password from standard input (with --username).
        #[arg(long, requires = "username")]
        password_stdin: bool,
        #[command(flatten)]
        spec: SpecFile,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum MaintenanceAction {
    /// Turn maintenance mode on.
    On {
        /// Services to put in maintenance (default: all).
        services: Vec<String>,
        /// The text of the page visitors see.
        #[arg(long)]
        message: Option<String>,
        #[command(flatten)]
        spec: SpecFile,
    },
    /// Turn maintenance mode off.
    Off {
        #[command(flatten)]
        spec: SpecFile,
    },
    /// Whether maintenance mode is on.
    Status {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        spec: SpecFile,
    },
}

#[derive(Debug, Subcommand)]
pub enum CacheAction {
    /// Drop cached answers: of one service (default: all) under a path prefix (default: all).
    Purge {
        /// Only this service's answers.
        #[arg(long)]
        service: Option<String>,
        /// Only answers whose path starts with this (e.g. `/img/`).
        prefix: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        spec: SpecFile,
    },
}

impl CacheAction {
    pub fn spec(&self) -> &SpecFile {
        match self {
            CacheAction::Purge { spec, .. } => spec,
        }
    }
}

impl MaintenanceAction {
    pub fn spec(&self) -> &SpecFile {
        match self {
            MaintenanceAction::On { spec, .. }
            | MaintenanceAction::Off { spec }
            | MaintenanceAction::Status { spec, .. } => spec,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum DeployAction {
    /// Follow a deploy until it ends.
    Watch {
        id: u64,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        spec: SpecFile,
    },
    /// Roll a running deploy back.
    Cancel {
        id: u64,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        spec: SpecFile,
    },
}

/// `-f FILE` given after the subcommand (`berth ps -f shop/berth.toml`).
#[derive(Debug, Clone, clap::Args)]
pub struct SpecFile {
    /// The stack's spec [default: ./berth.toml, or $BERTH_FILE].
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
}

impl Cli {
    /// The spec file: after the subcommand, else before it, else $BERTH_FILE, else berth.toml.
    pub fn spec_file(&self) -> PathBuf {
        let after = match &self.command {
            Command::Validate { spec }
            | Command::Up { spec }
            | Command::Ps { spec, .. }
            | Command::Status { spec, .. }
            | Command::Scale { spec, .. }
            | Command::Restart { spec, .. }
            | Command::Down { spec }
            | Command::Events { spec, .. }
            | Command::Alarms { spec, .. }
            | Command::Releases { spec, .. }
            | Command::Release {
                action: ReleaseAction::Push { spec, .. },
            }
            | Command::Deploys { spec, .. }
            | Command::Run { spec, .. }
            | Command::Rollback { spec, .. } => spec.file.clone(),
            Command::Deploy { action, spec, .. } => match action {
                Some(DeployAction::Watch { spec, .. } | DeployAction::Cancel { spec, .. }) => {
                    spec.file.clone()
                }
                None => spec.file.clone(),
            },
            Command::Logs { file, .. } => file.clone(),
            Command::Secrets { action } => action.spec().file.clone(),
            Command::Backup { action } => action.spec().file.clone(),
            Command::Metrics(args) => args.spec.file.clone(),
            Command::Top(args) => args.spec.file.clone(),
            Command::Maintenance { action } => action.spec().file.clone(),
            Command::Cache { action } => action.spec().file.clone(),
            Command::Restore(args) => args.spec.file.clone(),
            Command::Shim { .. } | Command::Edge { .. } => None,
        };
        after
            .or_else(|| self.file.clone())
            .or_else(|| std::env::var_os("BERTH_FILE").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("berth.toml"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_may_come_before_or_after_the_subcommand() {
        let cli = Cli::parse_from(["berth", "-f", "a.toml", "ps"]);
        assert_eq!(cli.spec_file(), PathBuf::from("a.toml"));
        let cli = Cli::parse_from(["berth", "ps", "-f", "b.toml", "--json"]);
        assert_eq!(cli.spec_file(), PathBuf::from("b.toml"));
        let cli = Cli::parse_from(["berth", "logs", "web", "-f", "--file", "c.toml"]);
        assert_eq!(cli.spec_file(), PathBuf::from("c.toml"));
        assert!(matches!(cli.command, Command::Logs { follow: true, .. }));
    }

    #[test]
    fn deploy_takes_services_or_an_action() {
        let cli = Cli::parse_from(["berth", "deploy", "web", "api", "--strategy", "canary"]);
        match cli.command {
            Command::Deploy {
                action: None,
                services,
                strategy,
                ..
            } => {
                assert_eq!(services, ["web", "api"]);
                assert_eq!(strategy.as_deref(), Some("canary"));
            }
            other => panic!("{other:?}"),
        }
        let cli = Cli::parse_from(["berth", "deploy", "watch", "7", "-f", "x.toml"]);
        assert!(matches!(
            cli.command,
            Command::Deploy {
                action: Some(DeployAction::Watch { id: 7, .. }),
                ..
            }
        ));
        assert_eq!(cli.spec_file(), PathBuf::from("x.toml"));
        assert!(Cli::try_parse_from(["berth", "deploy", "--source", "a", "--rev", "b"]).is_err());
    }

    #[test]
    fn run_takes_the_command_after_two_dashes() {
        let cli = Cli::parse_from([
            "berth",
            "run",
            "web",
            "-f",
            "x.toml",
            "--release",
            "r2-ab",
            "--",
            "python3",
            "-c",
            "print(1)",
        ]);
        assert_eq!(cli.spec_file(), PathBuf::from("x.toml"));
        match cli.command {
            Command::Run {
                service,
                release,
                detach,
                command,
                ..
            } => {
                assert_eq!(service, "web");
                assert_eq!(release.as_deref(), Some("r2-ab"));
                assert!(!detach);
                assert_eq!(command, ["python3", "-c", "print(1)"]);
            }
            other => panic!("{other:?}"),
        }
        // A command is required.
        assert!(Cli::try_parse_from(["berth", "run", "web"]).is_err());
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
