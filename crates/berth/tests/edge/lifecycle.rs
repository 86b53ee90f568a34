//! Replicas coming and going under load, draining, and the edge's own restart.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_edge::ControlRequest;
use berth_model::routing::EdgeSettings;
use berth_spec::Balance;
use bytes::Bytes;
use hyper::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::backend::{pattern, Backend};
use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_failed_requests_while_replicas_come_and_go() {
    const TOTAL: usize = 2000;
    const CLIENTS: usize = 4;
    let edge = EdgeProcess::start().await;
    let mut next_id = 1;
    let mut active: VecDeque<Backend> = VecDeque::new();
    for _ in 0..2 {
        active.push_back(Backend::start(&format!("web.{next_id}")).await);
        next_id += 1;
    }
    let mut draining_one: Option<Backend> = None;
    let mut retired: Vec<(Instant, Backend)> = Vec::new();
    let mut version = 1;
    let build = |version: u64, active: &VecDeque<Backend>, drain: &Option<Backend>| {
        let mut targets: Vec<_> = active.iter().map(|b| target(b, "r1")).collect();
        targets.extend(drain.iter().map(|b| draining(b, "r1")));
        one_service(version, "web", pool(Balance::LeastOutstanding, targets))
    };
    edge.push(&build(version, &active, &draining_one)).await;

    let sent = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let answered_by = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
    let started = Instant::now();
    let time_limit = Duration::from_secs(25);
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let http = edge.http.clone();
        let base = edge.url("");
        let (sent, done, failures, answered_by) = (
            sent.clone(),
            done.clone(),
            failures.clone(),
            answered_by.clone(),
        );
        clients.push(tokio::spawn(async move {
            loop {
                let i = sent.fetch_add(1, Ordering::Relaxed);
                if i >= TOTAL || started.elapsed() > time_limit {
                    break;
                }
                let path = if i % 2 == 0 { "/" } else { "/?ms=10" };
                let request = build_request(
                    &format!("{base}{path}"),
                    Method::GET,
                    "app.test",
                    &[],
                    Bytes::new(),
                );
                match http.try_send(request).await {
                    Ok(reply) if reply.status == StatusCode::OK => {
                        *answered_by
                            .lock()
                            .unwrap()
                            .entry(reply.backend())
                            .or_default() += 1;
                    }
                    Ok(reply) => failures.lock().unwrap().push(format!(
                        "request {i}: {} {}",
                        reply.status,
                        reply.text()
                    )),
                    Err(e) => failures.lock().unwrap().push(format!("request {i}: {e}")),
                }
            }
            done.store(true, Ordering::Relaxed);
        }));
    }

    // Every 100 ms a new table: add a replica, mark the oldest draining, remove it once
    // nothing is in flight to it (and stop it a little later).
    let (mut added, mut drained, mut removed, mut pushes) = (0, 0, 0, 1);
    while !done.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        retired.retain(|(since, _)| since.elapsed() < Duration::from_millis(300));
        if let Some(d) = &draining_one {
            let in_flight = edge.in_flight().await;
            if in_flight.get(&d.name).copied().unwrap_or(0) == 0 {
                retired.push((Instant::now(), draining_one.take().unwrap()));
                removed += 1;
            }
        } else if active.len() < 3 {
            active.push_back(Backend::start(&format!("web.{next_id}")).await);
            next_id += 1;
            added += 1;
        } else {
            draining_one = active.pop_front();
            drained += 1;
        }
        version += 1;
        edge.push(&build(version, &active, &draining_one)).await;
        pushes += 1;
    }
    for c in clients {
        c.await.unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    let answered_by = answered_by.lock().unwrap().clone();
    let ok: usize = answered_by.values().sum();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed while replicas changed; first: {:?}",
        failures.len(),
        ok + failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(
        ok >= 1000,
        "only {ok} requests in {time_limit:?}; the test did not exercise enough"
    );
    assert!(
        pushes >= 10 && added >= 2 && drained >= 2 && removed >= 2,
        "too little churn: {pushes} tables, {added} added, {drained} drained, {removed} removed"
    );
    assert!(
        answered_by.len() >= 4,
        "requests should have reached old and new replicas: {answered_by:?}"
    );
    eprintln!(
        "churn: {ok} requests OK in {:?}, {pushes} tables, {added} added, {removed} removed",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_lets_a_slow_request_finish() {
    const SIZE: usize = 300_000;
    let edge = EdgeProcess::start().await;
    let a = Backend::start("web.1").await;
    let b = Backend::start("web.2").await;
    edge.push(&one_service(
        1,
        "web",
        pool(Balance::LeastOutstanding, vec![target(&a, "r1")]),
    ))
    .await;
    let slow = {
        let http = edge.http.clone();
        let url = edge.url(&format!("/big?ms=2000&n={SIZE}"));
        tokio::spawn(async move {
            http.send(build_request(
                &url,
                Method::GET,
                "app.test",
                &[],
                Bytes::new(),
            ))
            .await
        })
    };
    edge.wait_in_flight("web.1", 1, Duration::from_secs(3))
        .await;

    edge.push(&one_service(
        2,
        "web",
        pool(
            Balance::LeastOutstanding,
            vec![draining(&a, "r1"), target(&b, "r1")],
        ),
    ))
    .await;
    assert_eq!(
        edge.in_flight().await.get("web.1"),
        Some(&1),
        "the slow request counts while A drains"
    );
    assert!(!slow.is_finished(), "the slow request ended too early");
    for i in 0..10 {
        let reply = edge.get("app.test", "/").await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.backend(), "web.2", "request {i} went to draining A");
    }

    let reply = slow.await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.backend(), "web.1");
    assert_eq!(reply.body.len(), SIZE, "the full body arrives");
    assert!(
        reply.body.iter().enumerate().all(|(i, b)| *b == pattern(i)),
        "the body is intact"
    );
    edge.wait_in_flight("web.1", 0, Duration::from_secs(3))
        .await;
    assert_eq!(a.hits(), 1, "A got no new request while draining");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_edge_serves_the_last_table_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend::start("web.1").await;
    let table = one_service(
        7,
        "web",
        pool(Balance::LeastOutstanding, vec![target(&backend, "r1")]),
    );
    {
        let mut first = EdgeProcess::start_in(dir.path()).await;
        first.push(&table).await;
        assert_eq!(first.get("app.test", "/").await.status, StatusCode::OK);
        let answer = first.call(&ControlRequest::Stop).await;
        assert_eq!(answer.pid, first.pid);
        let status = first.wait_exit(Duration::from_secs(15)).await;
        assert!(status.success(), "the stopped edge exited with {status}");
    }
    assert!(dir.path().join("table.json").exists());

    let second = EdgeProcess::start_in(dir.path()).await;
    let status = second.call(&ControlRequest::Status).await;
    assert_eq!(
        status.version, 7,
        "the new edge starts from the table on disk"
    );
    let reply = second.get("app.test", "/").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.backend(), "web.1");
    let on_admin = second.admin_get("/table").await;
    assert_eq!(on_admin.status, StatusCode::OK);
    let served: berth_model::RoutingTable = serde_json::from_slice(&on_admin.body).unwrap();
    // All of it, but for the test route's key.
    let mut shown = table.clone();
    shown.test_key = table.test_key.as_ref().map(|_| "(hidden)".to_string());
    assert_eq!(served, shown);
}

/// Opens a connection, sends half a request's headers, and measures how long until the edge
/// hangs up (bounded by `within`).
async fn slow_client_disconnected_after(edge: &EdgeProcess, within: Duration) -> Option<Duration> {
    let mut stream = TcpStream::connect(edge.listen).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\nX-Slow: 1\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    match tokio::time::timeout(within, stream.read_to_end(&mut buf)).await {
        Ok(_) => Some(started.elapsed()),
        Err(_) => None,
    }
}

fn short_header_timeout(version: u64, backend: &Backend) -> berth_model::RoutingTable {
    let mut t = one_service(
        version,
        "web",
        pool(Balance::LeastOutstanding, vec![target(backend, "r1")]),
    );
    t.settings = EdgeSettings {
        header_timeout: Duration::from_secs(1),
        ..EdgeSettings::default()
    };
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_timeout_from_the_table_on_disk_cuts_a_slow_client() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend::start("web.1").await;
    std::fs::write(
        dir.path().join("table.json"),
        serde_json::to_vec(&short_header_timeout(1, &backend)).unwrap(),
    )
    .unwrap();
    let edge = EdgeProcess::start_in(dir.path()).await;
    let after = slow_client_disconnected_after(&edge, Duration::from_secs(5)).await;
    assert!(
        after.is_some_and(|d| d < Duration::from_millis(3500)),
        "a client that never finished its headers was kept for {after:?} (header_timeout 1s)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn header_timeout_of_a_pushed_table_cuts_a_slow_client() {
    let edge = EdgeProcess::start().await;
    let backend = Backend::start("web.1").await;
    edge.push(&short_header_timeout(1, &backend)).await;
    let after = slow_client_disconnected_after(&edge, Duration::from_secs(5)).await;
    assert!(
        after.is_some_and(|d| d < Duration::from_millis(3500)),
        "a client that never finished its headers was kept for {after:?} (header_timeout 1s)"
    );
}

/// A kept-alive connection waiting for its next request is governed by `idle_timeout`, not by
/// `header_timeout` (which is for a request head that has started to arrive).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_lives_until_idle_timeout_not_header_timeout() {
    let edge = EdgeProcess::start().await;
    let backend = Backend::start("web.1").await;
    let mut table = short_header_timeout(1, &backend);
    table.settings.idle_timeout = Duration::from_secs(3);
    edge.push(&table).await;

    let mut stream = TcpStream::connect(edge.listen).await.unwrap();
    let request = b"GET / HTTP/1.1\r\nHost: web.test\r\n\r\n";
    stream.write_all(request).await.unwrap();
    let first = read_answer_raw(&mut stream).await.unwrap();
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");

    // Idle for twice the header timeout: the connection still serves.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stream.write_all(request).await.unwrap();
    let second = read_answer_raw(&mut stream).await.unwrap();
    assert!(
        second.starts_with("HTTP/1.1 200"),
        "idle 2s (header_timeout 1s, idle_timeout 3s): {second}"
    );

    // Idle past idle_timeout: closed by the edge.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let closed = read_answer_raw(&mut stream).await;
    assert_eq!(
        closed,
        Ok(String::new()),
        "the idle connection should have been closed"
    );
}

/// One read of an answer (empty when the edge closed the connection).
async fn read_answer_raw(stream: &mut TcpStream) -> Result<String, String> {
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .map_err(|_| "no answer".to_string())?
        .map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&buf[..n]).to_string())
}
