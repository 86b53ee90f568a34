//! What the client gets when something is wrong: its request, the route, or the replica.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use berth_model::routing::{EdgeSettings, Target};
use berth_spec::Balance;
use bytes::Bytes;
use hyper::{Method, StatusCode};

use crate::backend::Backend;
use crate::harness::*;

/// A loopback address where nothing listens (a port bound, then released).
async fn closed_port() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

fn dead(replica: &str, addr: SocketAddr) -> Target {
    Target {
        replica: replica.to_string(),
        release: "r1".into(),
        addr,
        draining: false,
    }
}

const MAX_HEADER: u64 = 4096;
const MAX_BODY: u64 = 1024;

/// One edge with a service per failure, each behind its own host.
struct Setup {
    edge: EdgeProcess,
    web: Backend,
    retry_ok: Backend,
    _slow: Backend,
}

async fn setup() -> Setup {
    let edge = EdgeProcess::start().await;
    let web = Backend::start("web.1").await;
    let retry_ok = Backend::start("retry.ok").await;
    let slow = Backend::start("slow.1").await;
    let settings = EdgeSettings {
        request_timeout: Duration::from_secs(1),
        max_header: MAX_HEADER,
        max_body: MAX_BODY,
        ..EdgeSettings::default()
    };
    let lo = Balance::LeastOutstanding;
    let t = table(
        1,
        vec![
            route(Some("web.test"), "/", "web"),
            route(Some("empty.test"), "/", "empty"),
            route(Some("dead.test"), "/", "dead"),
            route(Some("deadpost.test"), "/", "deadpost"),
            route(Some("retry.test"), "/", "retry"),
            route(Some("slow.test"), "/", "slow"),
        ],
        vec![
            ("web", pool(lo, vec![target(&web, "r1")])),
            ("empty", pool(lo, vec![])),
            ("dead", pool(lo, vec![dead("dead.1", closed_port().await)])),
            (
                "deadpost",
                pool(lo, vec![dead("deadpost.1", closed_port().await)]),
            ),
            (
                "retry",
                // The dead one first: round robin's first pick.
                pool(
                    Balance::RoundRobin,
                    vec![
                        dead("retry.dead", closed_port().await),
                        target(&retry_ok, "r1"),
                    ],
                ),
            ),
            ("slow", pool(lo, vec![target(&slow, "r1")])),
        ],
        settings,
    );
    edge.push(&t).await;
    Setup {
        edge,
        web,
        retry_ok,
        _slow: slow,
    }
}

fn assert_page(reply: &Reply, status: u16) {
    assert_eq!(reply.status.as_u16(), status, "{}", reply.text());
    let text = reply.text();
    assert!(
        text.contains(&status.to_string()) && text.contains("berth"),
        "the error page names its status: {text}"
    );
    assert!(
        reply.header("x-request-id").is_some(),
        "{:?}",
        reply.headers
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_and_upstream_failures_get_the_right_status() {
    let Setup {
        edge,
        web,
        retry_ok,
        _slow,
    } = setup().await;

    // Sanity: the good route works.
    let ok = edge.get("web.test", "/").await;
    assert_eq!(ok.status, StatusCode::OK);

    // No route for this host.
    assert_page(&edge.get("nowhere.test", "/").await, 404);

    // A routed service without replicas.
    let empty = edge.get("empty.test", "/").await;
    assert_page(&empty, 503);
    assert!(empty.header("retry-after").is_some(), "{:?}", empty.headers);

    // The only replica's port is closed.
    assert_page(&edge.get("dead.test", "/").await, 502);
    let post = edge
        .send(
            Method::POST,
            "deadpost.test",
            "/echo-body",
            &[],
            Bytes::from_static(b"payload"),
        )
        .await;
    assert_page(&post, 502);

    // A GET that could not connect is retried on the other replica.
    for i in 0..6 {
        let reply = edge.get("retry.test", "/").await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "retry request {i}: {}",
            reply.text()
        );
        assert_eq!(reply.backend(), "retry.ok");
    }
    assert_eq!(retry_ok.hits(), 6);
    // ... and the dead one was really tried: it is ejected now.
    let metrics = edge.admin_get("/metrics").await.text();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("berth_edge_upstream_healthy{") && l.contains("\"retry.dead\""))
        .unwrap_or_else(|| panic!("no upstream_healthy line for retry.dead:\n{metrics}"));
    assert!(
        line.ends_with(" 0"),
        "the dead replica was never tried: {line}"
    );

    // Slower than request_timeout (1 s).
    let started = Instant::now();
    let timeout = edge.get("slow.test", "/?ms=3000").await;
    let took = started.elapsed();
    assert_page(&timeout, 504);
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(2900),
        "504 after {took:?}, with request_timeout 1s"
    );
    assert_eq!(web.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_by_the_edge() {
    let Setup { edge, web, .. } = setup().await;

    // A request line that is not HTTP.
    let answer = raw_exchange(
        edge.listen,
        b"THIS IS NOT HTTP\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(raw_status(&answer), 400, "{answer:?}");

    // Headers over max_header.
    let big = "x".repeat(MAX_HEADER as usize + 100);
    let reply = edge
        .send(
            Method::GET,
            "web.test",
            "/",
            &[("x-big", &big)],
            Bytes::new(),
        )
        .await;
    assert_page(&reply, 431);

    // A Content-Length over max_body.
    let body = Bytes::from(vec![b'b'; MAX_BODY as usize * 2]);
    let reply = edge
        .send(Method::POST, "web.test", "/echo-body", &[], body)
        .await;
    assert_page(&reply, 413);

    // Within both limits, the same request goes through whole.
    let body = Bytes::from(vec![b'b'; MAX_BODY as usize / 2]);
    let reply = edge
        .send(Method::POST, "web.test", "/echo-body", &[], body)
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), (MAX_BODY / 2).to_string());
    assert_eq!(web.hits(), 1, "refused requests never reach the replica");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_over_max_body_is_413() {
    // The backends must outlive the request: keep the whole setup.
    let setup = setup().await;
    let edge = &setup.edge;
    let size = MAX_BODY as usize * 4;
    let mut request = format!(
        "POST /echo-body HTTP/1.1\r\nHost: web.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{size:x}\r\n"
    )
    .into_bytes();
    request.extend(std::iter::repeat_n(b'c', size));
    request.extend_from_slice(b"\r\n0\r\n\r\n");
    let answer = raw_exchange(edge.listen, &request, Duration::from_secs(5)).await;
    assert_eq!(raw_status(&answer), 413, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_stalls_mid_answer_is_cut_off_after_request_timeout() {
    // Kept whole: the backends live as long as the setup.
    let setup = setup().await;
    let edge = &setup.edge;
    let started = Instant::now();
    // The head and a first frame at once, the second frame 5 s later; request_timeout is 1 s.
    let answer = raw_exchange(
        edge.listen,
        b"GET /stream?frames=2&size=10&gap=5000 HTTP/1.1\r\nHost: slow.test\r\n\r\n",
        Duration::from_secs(8),
    )
    .await;
    let took = started.elapsed();
    assert_eq!(raw_status(&answer), 200, "{answer}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "the connection closed after {took:?}: {answer:?}"
    );
    assert!(
        !answer.ends_with("0\r\n\r\n"),
        "a cut answer must not look complete: {answer:?}"
    );
}

/// A replica that dies under GET load (its process gone: listener and every connection closed,
/// requests in flight cut) costs no GET: those that met its closed connections before any
/// answer byte, and those that could not connect, are sent to the other replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_dies_under_get_load_costs_no_get() {
    let edge = EdgeProcess::start().await;
    let survivor = Backend::start("web.1").await;
    let doomed = Backend::start("web.2").await;
    edge.push(&one_service(
        1,
        "web",
        pool(
            Balance::RoundRobin,
            vec![target(&survivor, "r1"), target(&doomed, "r1")],
        ),
    ))
    .await;

    const CLIENTS: usize = 8;
    const PER_CLIENT: usize = 60;
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let http = edge.http.clone();
        let url = edge.url("/?ms=15");
        let answered = answered.clone();
        clients.push(tokio::spawn(async move {
            let mut failed = Vec::new();
            for _ in 0..PER_CLIENT {
                let request = build_request(&url, Method::GET, "app.test", &[], Bytes::new());
                match http.try_send(request).await {
                    Ok(reply) if reply.status == StatusCode::OK => {}
                    Ok(reply) => failed.push(format!("{} {}", reply.status, reply.text())),
                    Err(e) => failed.push(e),
                }
                answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            failed
        }));
    }
    // Kill it once the load is well under way, with requests in flight on it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while answered.load(std::sync::atomic::Ordering::Relaxed) < CLIENTS * PER_CLIENT / 4 {
        assert!(Instant::now() < deadline, "the load did not get going");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let hits_before = doomed.hits();
    drop(doomed);

    let mut failed = Vec::new();
    for client in clients {
        failed.extend(client.await.expect("client task"));
    }
    assert!(hits_before > 0, "the dying replica took part of the load");
    assert!(
        failed.is_empty(),
        "{} GETs failed: {failed:?}",
        failed.len()
    );
    assert!(survivor.hits() > CLIENTS * PER_CLIENT / 2);
}

/// A replica that takes connections but closes them before answering (a dying process whose
/// listening socket still accepts): a GET goes to another replica; a POST is never sent twice
/// (the replica may have acted on it), so its client gets 502.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_closed_unanswered_goes_to_another_replica_but_a_post_is_never_sent_twice() {
    use crate::backend::{RawBackend, RawMode};
    let edge = EdgeProcess::start().await;
    let survivor = Backend::start("web.1").await;
    let dying = RawBackend::start("web.2", RawMode::CloseUnanswered).await;
    edge.push(&one_service(
        1,
        "web",
        pool(
            Balance::RoundRobin,
            vec![target(&survivor, "r1"), dying.target("web.2")],
        ),
    ))
    .await;
    for i in 0..10 {
        let reply = edge.get("app.test", "/").await;
        assert_eq!(reply.status, StatusCode::OK, "GET {i}: {}", reply.text());
        assert_eq!(reply.backend(), "web.1");
    }
    assert!(
        dying.accepted() > 0,
        "round robin sent GETs to the dying replica"
    );
    assert_eq!(dying.answered(), 0);

    // POSTs: those that meet the dying replica fail; none reaches the survivor after it.
    let survivor_before = survivor.hits();
    let dying_before = dying.accepted();
    let mut bad_gateway = 0;
    for _ in 0..6 {
        let reply = edge
            .send(
                Method::POST,
                "app.test",
                "/echo-body",
                &[],
                Bytes::from_static(b"write"),
            )
            .await;
        match reply.status.as_u16() {
            200 => {}
            502 => bad_gateway += 1,
            other => panic!("POST answered {other}: {}", reply.text()),
        }
    }
    let on_dying = dying.accepted() - dying_before;
    let on_survivor = survivor.hits() - survivor_before;
    assert!(on_dying > 0, "round robin sent POSTs to the dying replica");
    assert_eq!(
        bad_gateway, on_dying,
        "each POST the dying replica took failed, once"
    );
    assert_eq!(on_survivor + on_dying, 6, "no POST was sent twice");
}
