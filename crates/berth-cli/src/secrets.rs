//! `berth secrets set|get|list|rm|history`: through the daemon's API when it runs (so `set` can
//! restart the services that use the secret), else on the environment's store file directly.
//! A value is read from a prompt without echo, standard input or `--from-file`, never from the
//! command line, and printed only by `get --reveal`.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use berth_model::StatePaths;
use berth_secrets::api::{RevealedSecret, SecretChanged, SecretHistory, SecretList, SetSecret};
use berth_secrets::{validate_name, SecretStore};
use clap::Subcommand;

use crate::client::ApiClient;
use crate::SpecFile;

#[derive(Debug, Subcommand)]
pub enum SecretsAction {
    /// Set a secret (a new version); the value comes from a prompt, standard input or a file.
    Set {
        name: String,
        /// Read the value from this file (as is).
        #[arg(long)]
        from_file: Option<PathBuf>,
        /// Inject it as a file (its path in NAME_FILE) instead of the variable NAME.
        #[arg(long)]
        as_file: bool,
        /// Restart the services that use it (rolling) so they get the new version now.
        #[arg(long)]
        restart: bool,
        #[command(flatten)]
        spec: SpecFile,
    },
    /// Print a secret's current value (only with --reveal).
    Get {
        name: String,
        /// Really print the value.
        #[arg(long)]
        reveal: bool,
        #[command(flatten)]
        spec: SpecFile,
    },
    /// Names, versions and dates of the secrets; never values.
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        spec: SpecFile,
    },
    /// Remove a secret (its history stays; releases that pinned it keep their version).
    Rm {
        name: String,
        #[command(flatten)]
        spec: SpecFile,
    },
    /// Every version of a secret, with the releases that run it.
    History {
        name: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        spec: SpecFile,
    },
}

impl SecretsAction {
    pub fn spec(&self) -> &SpecFile {
        match self {
            SecretsAction::Set { spec, .. }
            | SecretsAction::Get { spec, .. }
            | SecretsAction::List { spec, .. }
            | SecretsAction::Rm { spec, .. }
            | SecretsAction::History { spec, .. } => spec,
        }
    }
}

/// Where the secrets are: the daemon, or the store file when no daemon runs.
enum Access {
    Daemon(ApiClient),
    File(SecretStore, String),
}

async fn access(client: ApiClient, spec_file: &Path, env: Option<&str>) -> anyhow::Result<Access> {
    if tokio::net::UnixStream::connect(client.socket())
        .await
        .is_ok()
    {
        return Ok(Access::Daemon(client));
    }
    let file = std::fs::canonicalize(spec_file)
        .with_context(|| format!("{}: no such spec", spec_file.display()))?;
    let environment = env.unwrap_or("default").to_string();
    let paths = StatePaths::new(&file, &environment);
    Ok(Access::File(
        SecretStore::new(&paths.root, &paths.env_dir, &environment),
        environment,
    ))
}

pub async fn run(
    client: ApiClient,
    spec_file: &Path,
    env: Option<&str>,
    action: SecretsAction,
) -> anyhow::Result<()> {
    let access = access(client, spec_file, env).await?;
    match action {
        SecretsAction::Set {
            name,
            from_file,
            as_file,
            restart,
            ..
        } => {
            validate_name(&name)?;
            let value = read_value(&name, from_file.as_deref())?;
            set(access, &name, value, as_file, restart).await
        }
        SecretsAction::Get { name, reveal, .. } => {
            if !reveal {
                bail!("refusing to print secret `{name}` without --reveal (`berth secrets list` shows names and versions)");
            }
            let value = match access {
                Access::Daemon(client) => {
                    let revealed: RevealedSecret = client
                        .get(&format!("/v1/secrets/{}?reveal=true", encode(&name)))
                        .await?;
                    revealed.value
                }
                Access::File(store, _) => {
                    let secrets = store.read()?;
                    let current = secrets
                        .current(&name)
                        .ok_or_else(|| berth_secrets::SecretsError::NotFound(name.clone()))?;
                    current.value().unwrap_or_default().to_string()
                }
            };
            println!("{value}");
            Ok(())
        }
        SecretsAction::List { json, .. } => {
            let list = match access {
                Access::Daemon(client) => client.get::<SecretList>("/v1/secrets").await?,
                Access::File(store, environment) => SecretList {
                    environment,
                    secrets: store
                        .read()?
                        .list()
                        .into_iter()
                        .map(|info| berth_secrets::api::SecretListed {
                            info,
                            used_by: Vec::new(),
                        })
                        .collect(),
                },
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(());
            }
            println!(
                "{:<32} {:>7}  {:<20}  {:<7}  USED BY",
                "NAME", "VERSION", "UPDATED", "AS FILE"
            );
            for s in &list.secrets {
                println!(
                    "{:<32} {:>7}  {:<20}  {:<7}  {}",
                    s.info.name,
                    s.info.version,
                    date(s.info.updated_at),
                    if s.info.as_file { "yes" } else { "no" },
                    s.used_by.join(", ")
                );
            }
            Ok(())
        }
        SecretsAction::Rm { name, .. } => {
            let version = match access {
                Access::Daemon(client) => {
                    let response = client
                        .send("DELETE", &format!("/v1/secrets/{}", encode(&name)), None)
                        .await?;
                    let bytes = http_body_util::BodyExt::collect(response.into_body())
                        .await?
                        .to_bytes();
                    serde_json::from_slice::<SecretChanged>(&bytes)?.version
                }
                Access::File(store, _) => {
                    store.update(|s| s.remove(&name, berth_model::now_unix()))?
                }
            };
            println!(
                "berth: secret {name} removed (version {version} is the removal; history kept)"
            );
            Ok(())
        }
        SecretsAction::History { name, json, .. } => {
            let history = match access {
                Access::Daemon(client) => {
                    client
                        .get::<SecretHistory>(&format!("/v1/secrets/{}/history", encode(&name)))
                        .await?
                }
                Access::File(store, _) => SecretHistory {
                    versions: store.read()?.history(&name)?,
                    name,
                },
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&history)?);
                return Ok(());
            }
            println!("{:>7}  {:<20}  {:<8}  PINNED BY", "VERSION", "CREATED", "");
            for v in &history.versions {
                let what = if v.removed {
                    "removed"
                } else if v.as_file {
                    "file"
                } else {
                    ""
                };
                println!(
                    "{:>7}  {:<20}  {:<8}  {}",
                    v.version,
                    date(v.created_at),
                    what,
                    v.pinned_by.join(", ")
                );
            }
            Ok(())
        }
    }
}

async fn set(
    access: Access,
    name: &str,
    value: String,
    as_file: bool,
    restart: bool,
) -> anyhow::Result<()> {
    match access {
        Access::File(store, environment) => {
            let version =
                store.update(|s| Ok(s.set(name, &value, as_file, berth_model::now_unix())))?;
            println!("berth: secret {name} set (version {version}, environment {environment})");
            if restart {
                println!("berth: no daemon runs: services get it when the stack starts");
            }
            Ok(())
        }
        Access::Daemon(client) => {
            let body = serde_json::to_vec(&SetSecret { value, as_file })?;
            let response = client
                .send("PUT", &format!("/v1/secrets/{}", encode(name)), Some(body))
                .await?;
            let bytes = http_body_util::BodyExt::collect(response.into_body())
                .await?
                .to_bytes();
            let changed: SecretChanged = serde_json::from_slice(&bytes)?;
            println!("berth: secret {name} set (version {})", changed.version);
            if changed.used_by.is_empty() {
                return Ok(());
            }
            let services = changed.used_by.join(", ");
            let go = restart
                || (std::io::stdin().is_terminal()
                    && confirm(&format!(
                        "{services} use {name}: restart them now (rolling)? [y/N] "
                    ))?);
            if !go {
                println!(
                    "berth: {services} keep the version they started with; `berth secrets set {name} --restart` (or answering yes) restarts them with the new one"
                );
                return Ok(());
            }
            let done: SecretChanged = client
                .post(
                    &format!("/v1/secrets/{}/restart", encode(name)),
                    &serde_json::json!({}),
                )
                .await?;
            println!(
                "berth: restarted {} with version {}",
                done.restarted.join(", "),
                done.version
            );
            Ok(())
        }
    }
}

/// The value: from `--from-file`, else a prompt without echo on a terminal, else all of
/// standard input (one trailing newline dropped).
fn read_value(name: &str, from_file: Option<&Path>) -> anyhow::Result<String> {
    let value = if let Some(file) = from_file {
        let bytes =
            std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        String::from_utf8(bytes)
            .map_err(|_| anyhow::anyhow!("{} is not UTF-8 text", file.display()))?
    } else if std::io::stdin().is_terminal() {
        rpassword::prompt_password(format!("value of {name} (not shown): "))
            .context("reading the value")?
    } else {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the value from standard input (it must be UTF-8 text)")?;
        if text.ends_with('\n') {
            text.pop();
            if text.ends_with('\r') {
                text.pop();
            }
        }
        text
    };
    if value.is_empty() {
        bail!("the value of {name} is empty; nothing was set");
    }
    Ok(value)
}

/// Asks a yes/no question on the terminal.
pub(crate) fn confirm(question: &str) -> anyhow::Result<bool> {
    use std::io::Write;
    eprint!("{question}");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS` (UTC).
pub(crate) fn date(unix: i64) -> String {
    let t =
        time::OffsetDateTime::from_unix_timestamp(unix).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// For `berth validate`: fails, naming each, when a service declares a secret, or a notification
/// target names one (`url_secret`, `password_secret`), that is not set in the environment's
/// store (the same checks `berth up` makes before it starts anything).
pub fn check_declared(spec: &berth_spec::Spec) -> anyhow::Result<()> {
    use berth_spec::alarm::{TargetKind, UrlSource};
    let mut declared: Vec<(String, &str)> = spec
        .services
        .values()
        .flat_map(|s| {
            s.secrets
                .iter()
                .map(|n| (format!("service `{}` declares", s.name), n.as_str()))
        })
        .collect();
    for (name, target) in &spec.notify {
        let secret = match &target.kind {
            TargetKind::Webhook {
                url: UrlSource::Secret(secret),
            }
            | TargetKind::Slack {
                url: UrlSource::Secret(secret),
            } => Some(secret.as_str()),
            TargetKind::Email {
                password_secret, ..
            } => password_secret.as_deref(),
            _ => None,
        };
        if let Some(secret) = secret {
            declared.push((format!("notification target `{name}` needs"), secret));
        }
    }
    if declared.is_empty() {
        return Ok(());
    }
    let paths = StatePaths::new(&spec.path, &spec.environment);
    let secrets = SecretStore::new(&paths.root, &paths.env_dir, &spec.environment)
        .read()
        .context("cannot check the declared secrets")?;
    let missing: Vec<String> = declared
        .iter()
        .filter(|(_, name)| !secrets.contains(name))
        .map(|(who, name)| format!("{who} secret `{name}`"))
        .collect();
    if !missing.is_empty() {
        bail!(
            "{}, which is not set in environment `{}` (set it with `berth secrets set NAME`)",
            missing.join("; "),
            spec.environment
        );
    }
    Ok(())
}
