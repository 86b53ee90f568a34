//! `berth backup now|list|verify|restore` and `berth restore ID`: clients of the daemon's
//! `/v1/backups` endpoints. A restore replaces live data, so it asks first (or takes `--yes`).

use std::io::IsTerminal;

use anyhow::bail;
use berth_backup::api::{BackupList, BackupNow, BackupSummary, RestoreReport, RestoreRequest};
use berth_backup::VerifyReport;
use clap::Subcommand;

use crate::client::ApiClient;
use crate::secrets::{confirm, date};
use crate::SpecFile;

#[derive(Debug, Subcommand)]
pub enum BackupAction {
    /// Back up the accessories and volumes now.
    Now {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        spec: SpecFile,
    },
    /// Complete backups (oldest first), interrupted ones, and recent failures.
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        spec: SpecFile,
    },
    /// Check a backup's checksums and test-restore its dumps into throwaway databases.
    Verify {
        id: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        spec: SpecFile,
    },
    /// Restore a backup: stops the services that write the data, restores, starts them again.
    Restore(RestoreArgs),
}

/// `berth backup restore ID` and `berth restore ID`.
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    pub id: String,
    /// Only the databases (`db`) or only the volumes (`volume`).
    #[arg(long, value_parser = ["db", "volume"])]
    pub only: Option<String>,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub spec: SpecFile,
}

impl BackupAction {
    pub fn spec(&self) -> &SpecFile {
        match self {
            BackupAction::Now { spec, .. }
            | BackupAction::List { spec, .. }
            | BackupAction::Verify { spec, .. } => spec,
            BackupAction::Restore(args) => &args.spec,
        }
    }
}

pub async fn run(client: &ApiClient, action: BackupAction) -> anyhow::Result<()> {
    match action {
        BackupAction::Now { json, .. } => {
            let summary: BackupSummary = client
                .post(
                    "/v1/backups",
                    &BackupNow {
                        reason: Some("manual".into()),
                    },
                )
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                println!(
                    "berth: backup {} complete: {} parts, {} in {}",
                    summary.id,
                    summary.parts,
                    size(summary.total_bytes),
                    summary.destination
                );
                if !summary.rotated.is_empty() {
                    println!("berth: rotated out: {}", summary.rotated.join(", "));
                }
            }
            Ok(())
        }
        BackupAction::List { json, .. } => {
            let list: BackupList = client.get("/v1/backups").await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(());
            }
            println!(
                "backups in {}{}",
                list.destination,
                list.schedule
                    .as_deref()
                    .map(|s| format!(" (schedule \"{s}\")"))
                    .unwrap_or_default()
            );
            println!(
                "{:<26} {:<10} {:<20} {:>10}  PARTS",
                "ID", "REASON", "FINISHED (UTC)", "SIZE"
            );
            for b in &list.backups {
                let parts: Vec<String> = b
                    .parts
                    .iter()
                    .map(|p| format!("{} ({:?})", p.name, p.kind).to_lowercase())
                    .collect();
                println!(
                    "{:<26} {:<10} {:<20} {:>10}  {}",
                    b.id,
                    b.reason,
                    date(b.finished_at),
                    size(b.total_bytes()),
                    parts.join(", ")
                );
            }
            for id in &list.incomplete {
                println!(
                    "{id:<26} incomplete (interrupted; never used, removed by the next backup)"
                );
            }
            for f in &list.failures {
                println!(
                    "{:<26} FAILED at {} ({}): {}",
                    f.id,
                    date(f.at),
                    f.reason,
                    f.error
                );
            }
            Ok(())
        }
        BackupAction::Verify { id, json, .. } => {
            let report: VerifyReport = client
                .post(&format!("/v1/backups/{id}/verify"), &serde_json::json!({}))
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                for (part, what) in &report.parts {
                    println!("{part}: {what}");
                }
                println!("berth: backup {id} is good");
            }
            Ok(())
        }
        BackupAction::Restore(args) => restore(client, args).await,
    }
}

pub async fn restore(client: &ApiClient, args: RestoreArgs) -> anyhow::Result<()> {
    if !args.yes {
        let what = match args.only.as_deref() {
            Some("db") => "the live databases",
            Some(_) => "the live volumes",
            None => "the live databases and volumes",
        };
        if !std::io::stdin().is_terminal() {
            bail!(
                "restoring backup {} replaces {what}: pass --yes to confirm",
                args.id
            );
        }
        if !confirm(&format!(
            "Restore backup {} over {what}? The services using them stop meanwhile. [y/N] ",
            args.id
        ))? {
            bail!("nothing was restored");
        }
    }
    let report: RestoreReport = client
        .post(
            &format!("/v1/backups/{}/restore", args.id),
            &RestoreRequest { only: args.only },
        )
        .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "berth: backup {} restored: {}; restarted {}",
            report.id,
            report.restored.join(", "),
            if report.services.is_empty() {
                "nothing".to_string()
            } else {
                report.services.join(", ")
            }
        );
    }
    Ok(())
}

fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
