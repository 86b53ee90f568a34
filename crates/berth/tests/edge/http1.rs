//! The edge's own HTTP/1.x: its connection loop toward clients (`berth_edge::http1`) and its
//! pooled client toward replicas (`berth_edge::upstream`), pinned on the wire with raw TCP.

use std::time::{Duration, Instant};

use berth_model::routing::ServicePool;
use berth_spec::Balance;
use bytes::Bytes;
use hyper::{Method, StatusCode};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::backend::{pattern, RawBackend, RawMode};
use crate::harness::*;

const HOST: &str = "Host: app.test\r\n";

async fn edge_with(pool: ServicePool) -> EdgeProcess {
    let edge = EdgeProcess::start().await;
    edge.push(&one_service(1, "web", pool)).await;
    edge
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\n{HOST}\r\n").into_bytes()
}

fn patterned(range: std::ops::Range<usize>) -> Vec<u8> {
    range.map(pattern).collect()
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let (edge, backend) = one_backend_edge("web.1").await;
    let mut conn = RawConn::connect(edge.listen).await;
    // Four requests in one write: a slow one first, and one with a body in the middle.
    let mut requests = Vec::new();
    requests.extend(get("/big?n=7&ms=150"));
    requests.extend(get("/big?n=3"));
    requests.extend(format!("POST /echo HTTP/1.1\r\n{HOST}Content-Length: 5\r\n\r\nhello").bytes());
    requests.extend(get("/big?n=2"));
    conn.send(&requests).await.unwrap();

    let mut bodies = Vec::new();
    for method in ["GET", "GET", "POST", "GET"] {
        let answer = conn
            .read_response(method)
            .await
            .expect("a pipelined answer");
        assert_eq!(answer.status, 200, "{}", answer.head);
        bodies.push(answer.text());
    }
    assert_eq!(bodies, ["abcdefg", "abc", "hello", "ab"]);
    assert_eq!(backend.paths(), ["/big", "/big", "/echo", "/big"]);
    assert!(
        !conn.closed_within(Duration::from_millis(200)).await,
        "the connection stays open after the pipelined requests"
    );
    let again = conn.exchange("GET", &get("/big?n=4")).await;
    assert_eq!(again.text(), "abcd");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_is_answered_before_the_body_is_sent() {
    let (edge, backend) = one_backend_edge("web.1").await;
    let mut conn = RawConn::connect(edge.listen).await;
    conn.send(
        format!("PUT /echo HTTP/1.1\r\n{HOST}Expect: 100-continue\r\nContent-Length: 11\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    // Nothing of the body is sent until the edge says to go on.
    let interim = conn.read_response("PUT").await.expect("100 Continue");
    assert_eq!(interim.status, 100, "{}", interim.head);
    assert!(
        interim.head.starts_with("HTTP/1.1 100 Continue\r\n"),
        "{:?}",
        interim.head
    );
    assert!(
        conn.pending().is_empty(),
        "nothing follows 100 Continue yet"
    );
    conn.send(b"hello world").await.unwrap();
    let answer = conn.read_response("PUT").await.expect("the final answer");
    assert_eq!(answer.status, 200, "{}", answer.head);
    assert_eq!(answer.text(), "hello world");
    assert_eq!(answer.header("x-seen-content-length"), Some("11"));
    assert_eq!(
        answer.header("x-seen-expect"),
        Some("-"),
        "the edge answers Expect itself"
    );
    // The connection carries on.
    assert_eq!(conn.exchange("GET", &get("/big?n=3")).await.text(), "abc");
    assert_eq!(backend.paths(), ["/echo", "/big"]);

    // A body over max_body gets no 100 Continue: 413 at once, and the connection closes.
    let mut conn = RawConn::connect(edge.listen).await;
    let answer = conn
        .exchange(
            "PUT",
            format!(
                "PUT /echo HTTP/1.1\r\n{HOST}Expect: 100-continue\r\nContent-Length: {}\r\n\r\n",
                1u64 << 40
            )
            .as_bytes(),
        )
        .await;
    assert_eq!(answer.status, 413, "{}", answer.head);
    assert!(answer.says_close(), "{}", answer.head);
    assert!(conn.closed_within(Duration::from_secs(3)).await);
    assert_eq!(
        backend.paths().len(),
        2,
        "the 413 never reached the backend"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_and_large_bodies_arrive_byte_exact() {
    let (edge, _backend) = one_backend_edge("web.1").await;

    // Chunked, with an extension, a one-byte chunk, and a trailer.
    let mut conn = RawConn::connect(edge.listen).await;
    let answer = conn
        .exchange(
            "POST",
            format!(
                "POST /echo HTTP/1.1\r\n{HOST}Transfer-Encoding: chunked\r\n\r\n\
                 5;name=value\r\nhello\r\n1\r\n \r\n6\r\nworld!\r\n\
                 0\r\nX-Trailer: t\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.head);
    assert_eq!(answer.text(), "hello world!");
    assert_eq!(answer.header("x-seen-transfer-encoding"), Some("chunked"));
    // The trailer was consumed exactly: the next request on the connection is read right.
    assert_eq!(conn.exchange("GET", &get("/big?n=4")).await.text(), "abcd");

    // 1 MiB chunked in 64 KiB chunks on the same connection.
    let upload: Vec<u8> = (0..1usize << 20).map(|i| (i * 7 % 251) as u8).collect();
    let mut request =
        format!("POST /echo HTTP/1.1\r\n{HOST}Transfer-Encoding: chunked\r\n\r\n").into_bytes();
    for chunk in upload.chunks(64 * 1024) {
        request.extend(format!("{:x}\r\n", chunk.len()).bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let answer = conn.exchange("POST", &request).await;
    assert_eq!(answer.status, 200, "{}", answer.head);
    assert_eq!(answer.body.len(), upload.len());
    assert_eq!(
        sha(&answer.body),
        sha(&upload),
        "the chunked upload changed"
    );

    // 1 MiB with a Content-Length, through an ordinary client.
    let reply = edge
        .send(
            Method::POST,
            "app.test",
            "/echo",
            &[],
            Bytes::from(upload.clone()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.header("x-seen-content-length"), Some("1048576"));
    assert_eq!(sha(&reply.body), sha(&upload), "the upload changed");

    // 1 MiB down.
    let reply = edge.get("app.test", "/big?n=1048576").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("content-length"), Some("1048576"));
    assert_eq!(
        sha(&reply.body),
        sha(&patterned(0..1 << 20)),
        "the download changed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_without_length_is_chunked_for_http11_and_close_delimited_for_http10() {
    let (edge, _backend) = one_backend_edge("web.1").await;
    let expected = patterned(0..5 * 1000);

    let mut conn = RawConn::connect(edge.listen).await;
    let answer = conn
        .exchange("GET", &get("/stream?frames=5&size=1000&gap=20"))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.head);
    assert_eq!(answer.framing, "chunked", "{}", answer.head);
    assert_eq!(answer.header("content-length"), None);
    assert!(!answer.says_close(), "{}", answer.head);
    assert!(answer.body == expected, "the chunked body changed");
    assert!(
        answer.chunk_lines.len() >= 2,
        "streamed frames are passed on as they come: {:?}",
        answer.chunk_lines
    );
    assert_eq!(conn.exchange("GET", &get("/big?n=3")).await.text(), "abc");

    // HTTP/1.0 has no chunking: the body ends with the connection, whatever the client asked.
    for keep_alive in ["", "Connection: keep-alive\r\n"] {
        let mut conn = RawConn::connect(edge.listen).await;
        let answer = conn
            .exchange(
                "GET",
                format!("GET /stream?frames=5&size=1000&gap=20 HTTP/1.0\r\n{HOST}{keep_alive}\r\n")
                    .as_bytes(),
            )
            .await;
        assert_eq!(answer.status, 200, "{}", answer.head);
        assert_eq!(answer.framing, "close", "{keep_alive:?}: {}", answer.head);
        assert_eq!(answer.header("transfer-encoding"), None, "{}", answer.head);
        assert!(answer.says_close(), "{keep_alive:?}: {}", answer.head);
        assert!(
            answer.body == expected,
            "{keep_alive:?}: the body ended at {} bytes of {}",
            answer.body.len(),
            expected.len()
        );
    }

    // A streamed answer is not held back: its first bytes come before its last frame exists.
    let mut stream = TcpStream::connect(edge.listen).await.unwrap();
    stream
        .write_all(&get("/stream?frames=3&size=10&gap=600"))
        .await
        .unwrap();
    let started = Instant::now();
    let mut got = Vec::new();
    let first_body_byte = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&chunk[..n]);
            if let Some(at) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                if got.len() > at + 4 {
                    return started.elapsed();
                }
            }
        }
    })
    .await
    .expect("the first frame within 5s");
    assert!(
        first_body_byte < Duration::from_millis(500),
        "the first frame took {first_body_byte:?} (the last comes after 1.2s)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_delimited_answer_from_a_replica_reaches_the_client_whole() {
    let raw = RawBackend::start("raw.1", RawMode::CloseDelimited).await;
    let edge = edge_with(pool(Balance::LeastOutstanding, vec![raw.target("raw.1")])).await;
    let mut conn = RawConn::connect(edge.listen).await;
    for round in 0..3 {
        let answer = conn.exchange("GET", &get("/big?n=70000")).await;
        assert_eq!(answer.status, 200, "{}", answer.head);
        assert_eq!(answer.framing, "chunked", "round {round}: {}", answer.head);
        assert!(
            answer.body == patterned(0..70000),
            "round {round}: {} bytes",
            answer.body.len()
        );
    }
    assert_eq!(
        raw.accepted(),
        3,
        "a connection that ended an answer is never reused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_gets_the_get_headers_and_no_body() {
    let (edge, _backend) = one_backend_edge("web.1").await;
    let mut conn = RawConn::connect(edge.listen).await;
    let answer = conn
        .exchange(
            "HEAD",
            format!("HEAD /big?n=5000 HTTP/1.1\r\n{HOST}\r\n").as_bytes(),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.head);
    assert_eq!(
        answer.header("content-length"),
        Some("5000"),
        "{}",
        answer.head
    );
    // Not one body byte follows: nothing arrives, and the next answer is read from its start.
    assert!(
        !conn.closed_within(Duration::from_millis(300)).await,
        "the connection stays open after HEAD"
    );
    let next = conn.exchange("GET", &get("/big?n=3")).await;
    assert_eq!(next.status, 200, "{}", next.head);
    assert_eq!(next.text(), "abc");

    // HEAD of an answer of unknown length: no chunked body either.
    let answer = conn
        .exchange(
            "HEAD",
            format!("HEAD /stream?frames=3&size=100&gap=0 HTTP/1.1\r\n{HOST}\r\n").as_bytes(),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.head);
    assert!(!conn.closed_within(Duration::from_millis(300)).await);
    assert_eq!(conn.exchange("GET", &get("/big?n=2")).await.text(), "ab");
}

/// Sends `request` (a smuggling attempt whose tail is `GET /smuggled`) on a new connection;
/// the edge must answer 400, say close, and close.
async fn refused_and_closed(edge: &EdgeProcess, what: &str, request: &str) {
    let mut conn = RawConn::connect(edge.listen).await;
    let answer = conn.exchange("POST", request.as_bytes()).await;
    assert_eq!(answer.status, 400, "{what}: {}", answer.head);
    assert!(answer.says_close(), "{what}: {}", answer.head);
    assert!(
        conn.closed_within(Duration::from_secs(3)).await,
        "{what}: the connection stays open"
    );
}

const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: app.test\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_request_framing_is_refused_with_400_and_a_close() {
    let (edge, backend) = one_backend_edge("web.1").await;
    refused_and_closed(
        &edge,
        "Content-Length with Transfer-Encoding",
        &format!(
            "POST /echo HTTP/1.1\r\n{HOST}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n\
             0\r\n\r\n{SMUGGLED}"
        ),
    )
    .await;
    refused_and_closed(
        &edge,
        "Transfer-Encoding with Content-Length",
        &format!(
            "POST /echo HTTP/1.1\r\n{HOST}Transfer-Encoding: chunked\r\nContent-Length: 44\r\n\r\n\
             0\r\n\r\n{SMUGGLED}"
        ),
    )
    .await;
    refused_and_closed(
        &edge,
        "two Content-Length values",
        &format!(
            "POST /echo HTTP/1.1\r\n{HOST}Content-Length: 0\r\nContent-Length: {}\r\n\r\n{SMUGGLED}",
            SMUGGLED.len()
        ),
    )
    .await;
    refused_and_closed(
        &edge,
        "Transfer-Encoding not ending in chunked",
        &format!(
            "POST /echo HTTP/1.1\r\n{HOST}Transfer-Encoding: chunked\r\n\
             Transfer-Encoding: identity\r\n\r\n0\r\n\r\n{SMUGGLED}"
        ),
    )
    .await;
    refused_and_closed(
        &edge,
        "Transfer-Encoding on HTTP/1.0",
        &format!(
            "POST /echo HTTP/1.0\r\n{HOST}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"
        ),
    )
    .await;
    assert_eq!(
        backend.paths(),
        Vec::<String>::new(),
        "no part of a refused request reaches the backend"
    );
    // The edge still serves.
    assert_eq!(edge.get("app.test", "/").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_chunk_mid_body_ends_the_connection_and_smuggles_nothing() {
    let (edge, backend) = one_backend_edge("web.1").await;
    let mut conn = RawConn::connect(edge.listen).await;
    let answer = conn
        .exchange(
            "POST",
            format!(
                "POST /echo HTTP/1.1\r\n{HOST}Transfer-Encoding: chunked\r\n\r\n\
                 5\r\nhello\r\nzz\r\n{SMUGGLED}"
            )
            .as_bytes(),
        )
        .await;
    assert!(answer.says_close(), "{}", answer.head);
    assert!(
        conn.closed_within(Duration::from_secs(3)).await,
        "the connection must not be reused after a malformed body"
    );
    // Give a smuggled request time to arrive, were it forwarded.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !backend.paths().iter().any(|p| p == "/smuggled"),
        "the request after the malformed chunk reached the backend: {:?}",
        backend.paths()
    );
    // The client's request was malformed: the client is told so (not that the replica broke).
    assert_eq!(
        answer.status,
        400,
        "a malformed chunked body: {}{}",
        answer.head,
        answer.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http10_closes_unless_kept_alive_and_http11_closes_when_asked() {
    let (edge, _backend) = one_backend_edge("web.1").await;

    let mut conn = RawConn::connect(edge.listen).await;
    let answer = conn
        .exchange("GET", format!("GET / HTTP/1.0\r\n{HOST}\r\n").as_bytes())
        .await;
    assert_eq!(answer.status, 200, "{}", answer.head);
    assert_eq!(answer.text(), "web.1");
    assert!(
        answer.says_close(),
        "HTTP/1.0 without keep-alive: {}",
        answer.head
    );
    assert!(conn.closed_within(Duration::from_secs(3)).await);

    let mut conn = RawConn::connect(edge.listen).await;
    let keep = format!("GET / HTTP/1.0\r\n{HOST}Connection: keep-alive\r\n\r\n");
    for round in 0..2 {
        let answer = conn.exchange("GET", keep.as_bytes()).await;
        assert_eq!(answer.status, 200, "round {round}: {}", answer.head);
        assert_eq!(answer.text(), "web.1");
        assert_eq!(answer.framing, "length", "{}", answer.head);
        assert_eq!(
            answer.header("connection").map(str::to_ascii_lowercase),
            Some("keep-alive".to_string()),
            "round {round}: {}",
            answer.head
        );
    }
    assert!(!conn.closed_within(Duration::from_millis(200)).await);

    let mut conn = RawConn::connect(edge.listen).await;
    let answer = conn
        .exchange(
            "GET",
            format!("GET / HTTP/1.1\r\n{HOST}Connection: close\r\n\r\n").as_bytes(),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.head);
    assert!(answer.says_close(), "{}", answer.head);
    assert!(conn.closed_within(Duration::from_secs(3)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_kept_alive_and_reused() {
    const REQUESTS: usize = 200;
    let (edge, backend) = one_backend_edge("web.1").await;
    let mut conn = RawConn::connect(edge.listen).await;
    let post = format!("POST /echo HTTP/1.1\r\n{HOST}Content-Length: 4\r\n\r\nping").into_bytes();
    for i in 0..REQUESTS {
        // Length answers, answers to bodies, and chunked answers all give their connection back.
        let (method, request, body) = match i % 3 {
            0 => ("GET", get("/"), "web.1".to_string()),
            1 => ("POST", post.clone(), "ping".to_string()),
            // One frame: the test backend has no TCP_NODELAY, and a second small write of
            // its would wait for a delayed ACK (40 ms).
            _ => (
                "GET",
                get("/stream?frames=1&size=10"),
                "abcdefghij".to_string(),
            ),
        };
        let answer = conn.exchange(method, &request).await;
        assert_eq!(answer.status, 200, "request {i}: {}", answer.head);
        assert_eq!(answer.text(), body, "request {i}");
    }
    assert_eq!(backend.hits(), REQUESTS);
    let accepted = backend.accepted();
    assert!(
        accepted <= 5,
        "{REQUESTS} sequential requests took {accepted} backend connections"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_connections_the_replica_closed_are_not_used() {
    const REQUESTS: usize = 20;
    let raw = RawBackend::start("raw.1", RawMode::CloseAfter(Duration::from_millis(10))).await;
    let edge = edge_with(pool(Balance::LeastOutstanding, vec![raw.target("raw.1")])).await;
    let mut conn = RawConn::connect(edge.listen).await;
    for i in 0..REQUESTS {
        let answer = conn.exchange("GET", &get("/")).await;
        assert_eq!(
            answer.status,
            200,
            "request {i}: {}{}",
            answer.head,
            answer.text()
        );
        assert_eq!(answer.text(), "raw.1");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(raw.answered(), REQUESTS);
    assert_eq!(
        raw.accepted(),
        REQUESTS,
        "each answer's connection was closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_the_replica_dropped_on_a_pooled_connection_is_sent_again() {
    const REQUESTS: usize = 10;
    let raw = RawBackend::start("raw.1", RawMode::DropSecondRequest).await;
    let edge = edge_with(pool(Balance::LeastOutstanding, vec![raw.target("raw.1")])).await;
    let mut conn = RawConn::connect(edge.listen).await;
    for i in 0..REQUESTS {
        let answer = conn.exchange("GET", &get("/")).await;
        assert_eq!(
            answer.status,
            200,
            "request {i}: {}{}",
            answer.head,
            answer.text()
        );
        assert_eq!(answer.text(), "raw.1");
    }
    assert_eq!(raw.answered(), REQUESTS);
    // Each request after the first met a dropped pooled connection, then a new one.
    assert_eq!(raw.accepted(), REQUESTS);
}

/// The retry of a body-less request that met a dropped pooled connection must go out on a new
/// connection: a replica that closes idle connections tends to close several at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_after_a_dropped_pooled_connection_uses_a_new_connection() {
    let raw = RawBackend::start("raw.1", RawMode::DropSecondRequest).await;
    let edge = edge_with(pool(Balance::LeastOutstanding, vec![raw.target("raw.1")])).await;
    // Two requests at once: two upstream connections, both pooled afterwards.
    let mut a = RawConn::connect(edge.listen).await;
    let mut b = RawConn::connect(edge.listen).await;
    a.send(&get("/?ms=300")).await.unwrap();
    b.send(&get("/?ms=300")).await.unwrap();
    assert_eq!(a.read_response("GET").await.unwrap().status, 200);
    assert_eq!(b.read_response("GET").await.unwrap().status, 200);
    assert_eq!(raw.accepted(), 2);
    // Both pooled connections now drop the next request they get.
    let answer = a.exchange("GET", &get("/")).await;
    assert_eq!(
        answer.status,
        200,
        "a GET after the replica dropped its pooled connections: {}{} \
         (backend accepted {} connections, answered {})",
        answer.head,
        answer.text(),
        raw.accepted(),
        raw.answered()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_are_counted_and_stay_usable() {
    const CONNECTIONS: usize = 200;
    let (edge, backend) = one_backend_edge("web.1").await;
    let mut conns = Vec::with_capacity(CONNECTIONS);
    for i in 0..CONNECTIONS {
        let mut conn = RawConn::connect(edge.listen).await;
        let answer = conn.exchange("GET", &get("/")).await;
        assert_eq!(answer.status, 200, "connection {i}: {}", answer.head);
        conns.push(conn);
    }
    let open = edge.metric("berth_edge_client_connections").await;
    assert_eq!(
        open,
        Some(CONNECTIONS as f64),
        "berth_edge_client_connections with {CONNECTIONS} idle connections"
    );
    for (i, conn) in conns.iter_mut().enumerate() {
        let answer = conn.exchange("GET", &get("/big?n=3")).await;
        assert_eq!(answer.status, 200, "connection {i}, second request");
        assert_eq!(answer.text(), "abc");
    }
    assert_eq!(backend.hits(), 2 * CONNECTIONS);
    drop(conns);
    // Closed by the clients: the gauge comes down (bounded wait).
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let open = edge.metric("berth_edge_client_connections").await;
        if open == Some(0.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "berth_edge_client_connections stayed at {open:?} after the clients closed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A POST without a body (`Content-Length: 0`) that met a pooled connection the replica closed
/// unanswered is not sent again: the replica may have acted on it before closing (found by the
/// security review; the edge once resent any body-less request there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bodiless_post_on_a_dropped_pooled_connection_is_not_sent_again() {
    let raw = RawBackend::start("raw.1", RawMode::DropSecondRequest).await;
    let edge = edge_with(pool(Balance::LeastOutstanding, vec![raw.target("raw.1")])).await;
    let mut conn = RawConn::connect(edge.listen).await;
    assert_eq!(conn.exchange("GET", &get("/")).await.status, 200);
    assert_eq!(raw.accepted(), 1);
    let post = format!("POST /pay HTTP/1.1\r\n{HOST}Content-Length: 0\r\n\r\n").into_bytes();
    let answer = conn.exchange("POST", &post).await;
    assert_eq!(answer.status, 502, "{}{}", answer.head, answer.text());
    assert_eq!(
        raw.accepted(),
        1,
        "no second connection carried the POST again"
    );
    // A GET in the same place is sent again on a new connection.
    let answer = conn.exchange("GET", &get("/")).await;
    assert_eq!(answer.status, 200);
}
