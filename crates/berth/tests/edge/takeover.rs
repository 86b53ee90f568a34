//! The graceful upgrade: a new edge process takes the listening sockets over from the running
//! one (`berth edge --takeover`) while clients keep sending requests on kept-alive connections.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_edge::ControlRequest;
use berth_spec::Balance;
use hyper::StatusCode;

use crate::backend::Backend;
use crate::harness::*;

/// What the clients saw.
#[derive(Default)]
struct Tally {
    ok: AtomicUsize,
    /// Requests sent again because their connection closed before any byte of an answer
    /// (what a browser does for an idempotent request).
    retried: AtomicUsize,
    /// Connections the edge closed with `Connection: close` on an answer.
    told_to_close: AtomicUsize,
    failures: Mutex<Vec<String>>,
}

/// Keep-alive GETs on one connection at a time, a new one when the edge closes it, until
/// `stop` or `max` requests.
async fn client(
    listen: std::net::SocketAddr,
    id: usize,
    max: usize,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) {
    let request = b"GET /?ms=2 HTTP/1.1\r\nHost: app.test\r\n\r\n";
    let mut conn: Option<RawConn> = None;
    for i in 0..max {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let mut attempts = 0;
        loop {
            attempts += 1;
            let c = match conn.as_mut() {
                Some(c) => c,
                None => conn.insert(RawConn::connect(listen).await),
            };
            let outcome = match c.send(request).await {
                Ok(()) => c.read_response("GET").await,
                Err(e) => Err(e),
            };
            match outcome {
                Ok(answer) => {
                    if answer.status == 200 && answer.text() == "web.1" {
                        tally.ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        tally.failures.lock().unwrap().push(format!(
                            "client {id} request {i}: {} {}",
                            answer.head.lines().next().unwrap_or(""),
                            answer.text()
                        ));
                    }
                    if answer.says_close() {
                        tally.told_to_close.fetch_add(1, Ordering::Relaxed);
                        conn = None;
                    }
                    break;
                }
                // The one case a real client retries: closed before any answer byte.
                Err(RawError::ClosedBeforeAnswer(why)) if attempts == 1 => {
                    tally.retried.fetch_add(1, Ordering::Relaxed);
                    eprintln!("client {id} request {i}: retried ({why})");
                    conn = None;
                }
                Err(e) => {
                    tally.failures.lock().unwrap().push(format!(
                        "client {id} request {i} (attempt {attempts}): {e:?}"
                    ));
                    conn = None;
                    break;
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeover_under_load_fails_no_request() {
    const CLIENTS: usize = 4;
    const MAX_PER_CLIENT: usize = 3000;
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend::start("web.1").await;
    let mut old = EdgeProcess::start_in(dir.path()).await;
    old.push(&one_service(
        5,
        "web",
        pool(Balance::LeastOutstanding, vec![target(&backend, "r1")]),
    ))
    .await;

    // A kept-alive connection that goes idle before the takeover.
    let mut idle = RawConn::connect(old.listen).await;
    let answer = idle
        .exchange("GET", b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await;
    assert_eq!(answer.status, 200, "{}", answer.head);

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            tokio::spawn(client(
                old.listen,
                id,
                MAX_PER_CLIENT,
                stop.clone(),
                tally.clone(),
            ))
        })
        .collect();
    let started = Instant::now();

    // Under load, a new edge takes over.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let before = tally.ok.load(Ordering::Relaxed);
    let new = EdgeProcess::start_takeover(dir.path()).await;
    let took_over_at = started.elapsed();
    assert_eq!(
        new.listen, old.listen,
        "the new edge listens where the old did"
    );
    assert_eq!(new.call(&ControlRequest::Status).await.version, 5);

    // The old one lets its connections finish and exits, while the clients go on.
    let exit_deadline = Instant::now() + Duration::from_secs(35);
    while !old.has_exited() && Instant::now() < exit_deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let old_exited_after = started.elapsed() - took_over_at;
    assert!(
        old.has_exited(),
        "the old edge did not exit within 35s of the takeover:\n{}",
        old.log_text()
    );
    // Load goes on to ~3 s in all, and at least 500 ms after the old edge is gone.
    let until = (started + Duration::from_secs(3)).max(Instant::now() + Duration::from_millis(500));
    tokio::time::sleep_until(until.into()).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        tokio::time::timeout(Duration::from_secs(30), c)
            .await
            .expect("clients end")
            .expect("client task");
    }
    let status = old.wait_exit(Duration::from_secs(1)).await;

    let ok = tally.ok.load(Ordering::Relaxed);
    let retried = tally.retried.load(Ordering::Relaxed);
    let told_to_close = tally.told_to_close.load(Ordering::Relaxed);
    let failures = tally.failures.lock().unwrap().clone();
    eprintln!(
        "takeover at {took_over_at:?}; old edge exited {old_exited_after:?} later ({status}); \
         {ok} OK ({before} before the takeover), {retried} retried, \
         {told_to_close} closes announced, {} failed",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} requests failed across the takeover; first: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(status.success(), "the old edge exited with {status}");
    assert!(
        idle.closed_within(Duration::from_millis(100)).await,
        "the old edge closed its idle kept-alive connection before exiting"
    );
    assert!(
        old_exited_after >= Duration::from_millis(500),
        "the old edge gives an idle connection a moment for a request on its way \
         (it exited {old_exited_after:?} after the takeover)"
    );
    assert!(
        before >= 50 && ok >= before + 200,
        "too little load to mean anything: {ok} OK, {before} before the takeover"
    );
    assert!(
        told_to_close >= 1,
        "the old edge's kept-alive connections end with Connection: close"
    );

    // The new edge serves, on the same address, for new clients.
    let mut conn = RawConn::connect(new.listen).await;
    let answer = conn
        .exchange("GET", b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await;
    assert_eq!(answer.status, 200, "{}", answer.head);
    assert_eq!(new.get("app.test", "/").await.status, StatusCode::OK);
    let served = new
        .metric("berth_edge_client_connections")
        .await
        .expect("the new edge's admin listener");
    assert!(served >= 1.0, "the new edge holds the client connection");
    assert_eq!(new.call(&ControlRequest::Status).await.pid, new.pid);
}
