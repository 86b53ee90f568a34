//! One delivery attempt per channel: the HTTP POST of a webhook, the SMTP session of an email,
//! the run of a command. Errors name what failed, never the URL or a password.

use std::process::Stdio;
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio::io::AsyncWriteExt;

use crate::{Channel, Error, Notification};

/// The most of a failed command's standard error kept in its error.
const STDERR_TAIL: usize = 300;

/// One attempt to deliver `notification` through `channel`.
pub async fn deliver(
    channel: &Channel,
    notification: &Notification,
    client: &reqwest::Client,
) -> Result<(), Error> {
    match channel {
        Channel::Webhook { url } => {
            let body = serde_json::to_vec(notification).unwrap_or_default();
            post(client, url.expose(), body).await
        }
        Channel::Slack { url } => {
            let text = format!("*{}*\n{}", notification.subject, notification.text);
            let body = serde_json::to_vec(&serde_json::json!({ "text": text })).unwrap_or_default();
            post(client, url.expose(), body).await
        }
        Channel::Email {
            host,
            port,
            from,
            to,
            starttls,
            credentials,
        } => email(host, *port, from, to, *starttls, credentials, notification).await,
        Channel::Command { run, timeout } => command(run, *timeout, notification).await,
    }
}

async fn post(client: &reqwest::Client, url: &str, body: Vec<u8>) -> Result<(), Error> {
    let response = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        // reqwest's errors carry the URL (and so a webhook's token): it is taken out.
        .map_err(|e| Error::Request(chain(&e.without_url())))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(Error::Status(status.as_u16()))
    }
}

/// An error and its causes, `a: b: c` (reqwest's own message says little: "error sending
/// request"; the cause says "Connection refused").
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

async fn email(
    host: &str,
    port: u16,
    from: &str,
    to: &[String],
    starttls: bool,
    credentials: &Option<(String, crate::Secret)>,
    notification: &Notification,
) -> Result<(), Error> {
    let smtp = |e: &dyn std::fmt::Display| Error::Smtp(e.to_string());
    let mut message = Message::builder()
        .from(from.parse().map_err(|e| smtp(&e))?)
        .subject(format!(
            "[berth {}] {}",
            notification.stack, notification.subject
        ));
    for address in to {
        message = message.to(address.parse().map_err(|e| smtp(&e))?);
    }
    let json = serde_json::to_string_pretty(notification).unwrap_or_default();
    let message = message
        .header(ContentType::TEXT_PLAIN)
        .body(format!("{}\n\n{json}\n", notification.text))
        .map_err(|e| smtp(&e))?;
    let mut transport = if starttls {
        AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host).map_err(|e| smtp(&e))?
    } else {
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
    }
    .port(port);
    if let Some((user, password)) = credentials {
        transport = transport.credentials(Credentials::new(
            user.clone(),
            password.expose().to_string(),
        ));
    }
    transport
        .build()
        .send(message)
        .await
        .map(|_| ())
        .map_err(|e| smtp(&e))
}

async fn command(run: &str, timeout: Duration, notification: &Notification) -> Result<(), Error> {
    let json = serde_json::to_vec(notification).unwrap_or_default();
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(run)
        .env("BERTH_NOTIFY_EVENT", notification.event.as_str())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::Command(format!("cannot start sh: {e}")))?;
    let pid = child.id();
    let mut stdin = child.stdin.take();
    let run = async {
        if let Some(stdin) = stdin.as_mut() {
            // A command that does not read its input is not an error.
            let _ = stdin.write_all(&json).await;
        }
        drop(stdin.take());
        child.wait_with_output().await
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(Ok(output)) if output.status.success() => Ok(()),
        Ok(Ok(output)) => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let tail: String = stderr
                .trim()
                .chars()
                .rev()
                .take(STDERR_TAIL)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            Err(Error::Command(format!("{}: {tail}", output.status)))
        }
        Ok(Err(e)) => Err(Error::Command(e.to_string())),
        Err(_) => {
            // The whole process group: `sh -c` may have started children.
            if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            Err(Error::Timeout(timeout))
        }
    }
}
