//! `berth run SERVICE [--release R] [--detach] -- COMMAND...`: a one-off task of a release.
//!
//! Attached (the default), this process runs the task as its own child with the folder and
//! environment the daemon hands over its 0600 socket (see `berth_daemon::tasks` for why the CLI
//! runs it rather than the daemon): the task inherits the terminal when there is one
//! (`manage.py createsuperuser`, a shell) and the pipes otherwise; its exit status becomes
//! berth's. The environment's values go to the task's environment only, never to argv (`ps`)
//! or to anything printed. With `--detach` the daemon runs it, keeps its log and prints an id.

use std::time::Instant;

use anyhow::Context;
use berth_model::api::{
    DetachedTask, DetachedTaskRequest, TaskEnded, TaskEnvironment, TaskRequest,
};

use crate::client::ApiClient;
use crate::deploy::Exit;

pub struct RunOptions {
    pub service: String,
    pub release: Option<String>,
    pub detach: bool,
    pub command: Vec<String>,
}

/// The shell command line for the words after `--`: one word is a command line as written
/// (`berth run web -- 'echo $HOME'`); several are quoted one by one, so they reach the program
/// exactly as given (`berth run web -- python3 -c 'print(1)'`).
pub fn command_line(words: &[String]) -> String {
    match words {
        [one] => one.clone(),
        words => words
            .iter()
            .map(|w| shell_quote(w))
            .collect::<Vec<_>>()
            .join(" "),
    }
}

fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The OS user running berth, for the event.
fn os_user() -> String {
    let uid = nix::unistd::getuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| format!("uid {uid}"))
}

pub async fn run(client: &ApiClient, options: RunOptions) -> anyhow::Result<()> {
    let line = command_line(&options.command);
    if options.detach {
        let task: DetachedTask = client
            .post(
                "/v1/tasks",
                &DetachedTaskRequest {
                    service: options.service.clone(),
                    release: options.release.clone(),
                    command: line,
                    user: os_user(),
                },
            )
            .await?;
        println!(
            "berth: task {} of `{}` ({}) started; log {}",
            task.id, options.service, task.release, task.log
        );
        println!("{}", task.id);
        return Ok(());
    }
    let task: TaskEnvironment = client
        .post(
            "/v1/tasks/environment",
            &TaskRequest {
                service: options.service.clone(),
                release: options.release.clone(),
            },
        )
        .await?;
    let began = Instant::now();
    let mut child = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(&line)
        .current_dir(&task.dir)
        .env_clear()
        .envs(&task.env)
        .spawn()
        .with_context(|| format!("starting `{line}` in {}", task.dir))?;
    drop(task.env);
    // The terminal's Ctrl-C and Ctrl-\ are for the task (it shares the foreground process
    // group); berth waits for it and reports how it ended.
    let _ignore = IgnoreInterrupts::new();
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .context("waiting for the task")??;
    drop(_ignore);
    use std::os::unix::process::ExitStatusExt;
    let (how, code) = match (status.code(), status.signal()) {
        (Some(code), _) => (format!("exit {code}"), code.clamp(0, 255) as u8),
        (None, Some(signal)) => (
            format!("signal {signal}"),
            (128 + signal).clamp(0, 255) as u8,
        ),
        (None, None) => ("ended".to_string(), 1),
    };
    let ended = TaskEnded {
        service: task.service,
        release: task.release,
        command: line,
        user: os_user(),
        how,
        success: status.success(),
        seconds: began.elapsed().as_secs_f64(),
    };
    if let Err(e) = client
        .post::<_, serde_json::Value>("/v1/tasks/ended", &ended)
        .await
    {
        eprintln!("berth: warning: could not record the task's end: {e:#}");
    }
    if code != 0 {
        return Err(Exit(code).into());
    }
    Ok(())
}

/// SIGINT and SIGQUIT ignored while it lives (restored when dropped).
struct IgnoreInterrupts {
    old: Vec<(nix::sys::signal::Signal, nix::sys::signal::SigHandler)>,
}

impl IgnoreInterrupts {
    fn new() -> Self {
        use nix::sys::signal::{signal, SigHandler, Signal};
        let mut old = Vec::new();
        for sig in [Signal::SIGINT, Signal::SIGQUIT] {
            // SAFETY: installing SIG_IGN has no handler code to be unsafe in.
            if let Ok(previous) = unsafe { signal(sig, SigHandler::SigIgn) } {
                old.push((sig, previous));
            }
        }
        IgnoreInterrupts { old }
    }
}

impl Drop for IgnoreInterrupts {
    fn drop(&mut self) {
        for (sig, previous) in self.old.drain(..) {
            // SAFETY: puts back the handler that was there.
            let _ = unsafe { nix::sys::signal::signal(sig, previous) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_word_is_a_command_line_several_are_quoted() {
        assert_eq!(command_line(&["echo $HOME".into()]), "echo $HOME");
        assert_eq!(
            command_line(&[
                "python3".into(),
                "-c".into(),
                "print('a b')".into(),
                "x=1".into()
            ]),
            r#"python3 -c 'print('\''a b'\'')' x=1"#
        );
        assert_eq!(command_line(&["ls".into(), "".into()]), "ls ''");
    }
}
