//! The `berth` command line: arguments, the API client, and what each command prints.
//!
//! `validate` works on the spec alone; `up` and `shim` are run by the binary itself (they are
//! the daemon and the replica shim); every other command is a client of the running daemon's
//! API on its unix socket.

pub mod client;
pub mod commands;
pub mod render;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "berth", version, about = "Deploy and run a web stack: edge, replicas, databases, releases.")]
pub struct Cli {
    /// The stack's spec.
    #[arg(short = 'f', long = "file", global = true, default_value = "berth.toml", env = "BERTH_FILE")]
    pub file: PathBuf,
    /// The environment (its `[environment.NAME]` overrides and its own state).
    #[arg(long = "env", global = true, env = "BERTH_ENV")]
    pub env: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the spec; print every problem as FILE:LINE:COL with a hint.
    Validate,
    /// Run the stack in the foreground: accessories, releases, replicas, the API.
    Up,
    /// Services, replicas, health, release, ports.
    Ps {
        /// One JSON object per replica.
        #[arg(long)]
        json: bool,
    },
    /// Show a service's captured output.
    Logs {
        service: String,
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
    Scale { service: String, replicas: u32 },
    /// Restart a service's replicas one at a time, each new one healthy before an old one stops.
    Restart { service: String },
    /// Stop the stack (replicas and accessories); data of accessories and volumes stays.
    Down,
    /// Recent events of the stack.
    Events {
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Releases, newest first.
    Releases {
        service: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// (internal) Supervise one replica process.
    #[command(hide = true)]
    Shim { dir: PathBuf },
}
