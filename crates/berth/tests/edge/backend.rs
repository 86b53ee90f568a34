//! Test backends: small HTTP/1.1 servers on loopback that name themselves in `x-backend` (and in
//! the body of `/`), with per-path behaviours:
//!
//! - `?ms=N` on any path: sleep N ms before answering;
//! - `/set-cookie`: sets the application cookie `PrestaShopSession`;
//! - `/echo-headers`: the request headers as a JSON object;
//! - `/echo-body`: the length of the request body;
//! - `/big?n=N`: a body of N bytes of a known pattern ([`pattern`]);
//! - `/ws`: a WebSocket handshake, then echoes frames;
//! - `/fail`: answers 500.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use crate::ws;

pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Backend {
    pub async fn start(name: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind backend");
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let shared_name: Arc<str> = Arc::from(name);
        let counter = hits.clone();
        let task = tokio::spawn(async move {
            // Aborting this task drops the set, which aborts every connection too.
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                while connections.try_join_next().is_some() {}
                let name = shared_name.clone();
                let hits = counter.clone();
                connections.spawn(async move {
                    let service = service_fn(move |req| {
                        let name = name.clone();
                        let hits = hits.clone();
                        async move { Ok::<_, Infallible>(handle(&name, &hits, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Backend {
            name: name.to_string(),
            addr,
            hits,
            task,
        }
    }

    /// Requests this backend received.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::Relaxed)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The byte at position `i` of a `/big` body.
pub fn pattern(i: usize) -> u8 {
    b'a' + (i % 26) as u8
}

fn param(query: &str, name: &str) -> Option<u64> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| v.parse().ok())
}

async fn handle(name: &str, hits: &AtomicUsize, req: Request<Incoming>) -> Response<Full<Bytes>> {
    hits.fetch_add(1, Ordering::Relaxed);
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    if let Some(ms) = param(&query, "ms") {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let mut response = match path.as_str() {
        "/set-cookie" => {
            let mut r = Response::new(Full::new(Bytes::from(name.to_string())));
            r.headers_mut().append(
                header::SET_COOKIE,
                HeaderValue::from_str(&format!("PrestaShopSession=sess-{name}; Path=/; HttpOnly"))
                    .unwrap(),
            );
            r
        }
        "/echo-headers" => {
            let mut seen: BTreeMap<String, String> = BTreeMap::new();
            for (k, v) in req.headers() {
                let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                seen.entry(k.as_str().to_string())
                    .and_modify(|e| {
                        e.push_str(", ");
                        e.push_str(&v);
                    })
                    .or_insert(v);
            }
            let mut r = Response::new(Full::new(Bytes::from(serde_json::to_vec(&seen).unwrap())));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        "/fail" => {
            let mut r = Response::new(Full::new(Bytes::from(name.to_string())));
            *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            r
        }
        "/echo-body" => match req.into_body().collect().await {
            Ok(body) => Response::new(Full::new(Bytes::from(body.to_bytes().len().to_string()))),
            Err(e) => {
                let mut r = Response::new(Full::new(Bytes::from(format!("body error: {e}"))));
                *r.status_mut() = StatusCode::BAD_REQUEST;
                r
            }
        },
        "/big" => {
            let n = param(&query, "n").unwrap_or(1024) as usize;
            let body: Vec<u8> = (0..n).map(pattern).collect();
            Response::new(Full::new(Bytes::from(body)))
        }
        "/ws" => websocket(req),
        _ => Response::new(Full::new(Bytes::from(name.to_string()))),
    };
    response
        .headers_mut()
        .insert("x-backend", HeaderValue::from_str(name).unwrap());
    response
}

/// Answers a WebSocket handshake with 101 and echoes frames on the upgraded connection.
fn websocket(mut req: Request<Incoming>) -> Response<Full<Bytes>> {
    let key = req
        .headers()
        .get("sec-websocket-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let upgrade_ok = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let Some(key) = key.filter(|_| upgrade_ok) else {
        let mut r = Response::new(Full::new(Bytes::from("not a websocket handshake")));
        *r.status_mut() = StatusCode::BAD_REQUEST;
        return r;
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            let _ = ws::echo(TokioIo::new(upgraded)).await;
        }
    });
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(
        "sec-websocket-accept",
        HeaderValue::from_str(&ws::accept_key(&key)).unwrap(),
    );
    r
}
