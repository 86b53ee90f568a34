//! A small HTTP/1.1 client for the daemon's unix-socket API.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use berth_model::api::ApiError;
use berth_model::StatePaths;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Where the daemon of a stack environment listens.
pub struct ApiClient {
    socket: PathBuf,
    stack_dir: PathBuf,
    environment: String,
}

impl ApiClient {
    /// The client for the spec file `file` and environment `env`.
    pub fn for_spec(file: &Path, env: Option<&str>) -> anyhow::Result<Self> {
        let file = std::fs::canonicalize(file).with_context(|| {
            format!(
                "{}: no such spec (run berth in the folder holding berth.toml or pass -f FILE)",
                file.display()
            )
        })?;
        let environment = env.unwrap_or("default").to_string();
        let paths = StatePaths::new(&file, &environment);
        Ok(Self {
            socket: paths.socket(),
            stack_dir: file.parent().map(Path::to_path_buf).unwrap_or_default(),
            environment,
        })
    }

    fn no_daemon(&self) -> anyhow::Error {
        anyhow!(
            "no berth daemon is running for the stack in {} (environment `{}`): start it with `berth up`",
            self.stack_dir.display(),
            self.environment
        )
    }

    /// Sends a request and returns the raw response (for streaming bodies).
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<Response<Incoming>> {
        let stream = match tokio::net::UnixStream::connect(&self.socket).await {
            Ok(s) => s,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                return Err(self.no_daemon())
            }
            Err(e) => {
                return Err(anyhow!(e).context(format!("connecting to {}", self.socket.display())))
            }
        };
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "berth")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        let response = sender.send_request(request).await?;
        if !response.status().is_success() {
            let status = response.status();
            let bytes = response.into_body().collect().await?.to_bytes();
            let message = serde_json::from_slice::<ApiError>(&bytes)
                .map(|e| e.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).to_string());
            bail!("{message} (HTTP {})", status.as_u16());
        }
        Ok(response)
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let response = self.send("GET", path, None).await?;
        let bytes = response.into_body().collect().await?.to_bytes();
        serde_json::from_slice(&bytes).context("reading the daemon's answer")
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let response = self
            .send("POST", path, Some(serde_json::to_vec(body)?))
            .await?;
        let bytes = response.into_body().collect().await?.to_bytes();
        serde_json::from_slice(&bytes).context("reading the daemon's answer")
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }
}
