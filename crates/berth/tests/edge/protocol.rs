//! What passes through: forwarding headers, WebSocket, HTTP/2 with prior knowledge; and the
//! admin listener.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{Method, Request, StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::harness::*;
use crate::ws;
use berth_spec::Balance;

fn seen_headers(reply: &Reply) -> BTreeMap<String, String> {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    serde_json::from_slice(&reply.body).expect("echo-headers JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_reach_the_backend_and_the_client() {
    let (edge, backend) = one_backend_edge("web.1").await;

    let reply = edge
        .send(
            Method::GET,
            "shop.test",
            "/echo-headers",
            &[
                ("connection", "x-hop"),
                ("x-hop", "secret"),
                ("x-kept", "1"),
            ],
            Bytes::new(),
        )
        .await;
    assert_eq!(reply.version, Version::HTTP_11);
    let seen = seen_headers(&reply);
    let get = |name: &str| seen.get(name).cloned().unwrap_or_default();
    assert_eq!(get("x-forwarded-for"), "127.0.0.1", "{seen:?}");
    assert_eq!(get("x-forwarded-proto"), "http", "{seen:?}");
    assert_eq!(get("x-forwarded-host"), "shop.test", "{seen:?}");
    assert_eq!(
        get("host"),
        "shop.test",
        "the original Host is kept: {seen:?}"
    );
    assert!(get("via").contains("berth"), "{seen:?}");
    let generated = get("x-request-id");
    assert!(generated.len() >= 8, "a request id is generated: {seen:?}");
    assert_eq!(get("x-kept"), "1");
    assert!(
        !seen.contains_key("x-hop"),
        "a header named by Connection is hop-by-hop: {seen:?}"
    );
    // The client sees the same id, and Via.
    assert_eq!(reply.header("x-request-id"), Some(generated.as_str()));
    assert!(
        reply.header("via").is_some_and(|v| v.contains("berth")),
        "{:?}",
        reply.headers
    );

    // Another request gets another id.
    let again = seen_headers(&edge.get("shop.test", "/echo-headers").await);
    assert_ne!(again.get("x-request-id"), Some(&generated));

    // A client's own request id and forwarding headers are not believed: any client could
    // forge them.
    let forged = [
        ("x-request-id", "client-chosen-42"),
        ("x-forwarded-for", "203.0.113.9"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "evil.test"),
    ];
    let reply = edge
        .send(
            Method::GET,
            "shop.test",
            "/echo-headers",
            &forged,
            Bytes::new(),
        )
        .await;
    let seen = seen_headers(&reply);
    let id = seen.get("x-request-id").cloned().unwrap_or_default();
    assert_ne!(id, "client-chosen-42", "{seen:?}");
    assert_eq!(reply.header("x-request-id"), Some(id.as_str()));
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1", "{seen:?}");
    assert_eq!(seen["x-forwarded-proto"], "http", "{seen:?}");
    assert_eq!(seen["x-forwarded-host"], "shop.test", "{seen:?}");

    // From a trusted proxy they are kept (its address appended to X-Forwarded-For), and a
    // malformed id is still replaced.
    let mut trusting = one_service(
        4,
        "web",
        pool(Balance::LeastOutstanding, vec![target(&backend, "r1")]),
    );
    trusting.settings.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    edge.push(&trusting).await;
    let reply = edge
        .send(
            Method::GET,
            "shop.test",
            "/echo-headers",
            &forged,
            Bytes::new(),
        )
        .await;
    let seen = seen_headers(&reply);
    assert_eq!(seen["x-request-id"], "client-chosen-42", "{seen:?}");
    assert_eq!(reply.header("x-request-id"), Some("client-chosen-42"));
    assert_eq!(
        seen["x-forwarded-for"], "203.0.113.9, 127.0.0.1",
        "{seen:?}"
    );
    assert_eq!(seen["x-forwarded-proto"], "https", "{seen:?}");
    assert_eq!(seen["x-forwarded-host"], "evil.test", "{seen:?}");
    let reply = edge
        .send(
            Method::GET,
            "shop.test",
            "/echo-headers",
            &[("x-request-id", "has spaces and \"quotes\"")],
            Bytes::new(),
        )
        .await;
    let seen = seen_headers(&reply);
    assert!(!seen["x-request-id"].contains(' '), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_frames_are_echoed_through_the_edge() {
    let (edge, _backend) = one_backend_edge("ws.1").await;
    let stream = TcpStream::connect(edge.listen).await.unwrap();
    let mut stream = BufReader::new(stream);
    let key = ws::base64(b"berth-edge-test!");
    let handshake = format!(
        "GET /ws HTTP/1.1\r\nHost: app.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream
        .get_mut()
        .write_all(handshake.as_bytes())
        .await
        .unwrap();

    let mut head = Vec::new();
    let read_head = async {
        loop {
            let mut line = String::new();
            if stream.read_line(&mut line).await.unwrap() == 0 || line == "\r\n" {
                break;
            }
            head.push(line.trim_end().to_string());
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read_head)
        .await
        .expect("handshake answer");
    assert!(head[0].starts_with("HTTP/1.1 101"), "{head:?}");
    let header = |name: &str| {
        head.iter()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
    };
    assert_eq!(header("sec-websocket-accept"), Some(ws::accept_key(&key)));
    assert!(header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")));

    // While the tunnel is open, it counts as in flight to its replica.
    assert_eq!(edge.in_flight().await.get("ws.1"), Some(&1));

    let exchange = async {
        let mask = Some([0x12, 0x34, 0x56, 0x78]);
        ws::write_frame(&mut stream, ws::OP_TEXT, b"hello through berth", mask)
            .await
            .unwrap();
        assert_eq!(
            ws::read_frame(&mut stream).await.unwrap(),
            (ws::OP_TEXT, b"hello through berth".to_vec())
        );
        for size in [1000usize, 70_000] {
            let payload: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            ws::write_frame(&mut stream, ws::OP_BINARY, &payload, mask)
                .await
                .unwrap();
            let (op, echoed) = ws::read_frame(&mut stream).await.unwrap();
            assert_eq!(op, ws::OP_BINARY);
            assert!(echoed == payload, "a {size}-byte frame came back changed");
        }
        ws::write_frame(&mut stream, ws::OP_CLOSE, &1000u16.to_be_bytes(), mask)
            .await
            .unwrap();
        let (op, _) = ws::read_frame(&mut stream).await.unwrap();
        assert_eq!(op, ws::OP_CLOSE);
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .expect("echo within 10s");
    drop(stream);
    edge.wait_in_flight("ws.1", 0, Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_with_prior_knowledge_is_served() {
    let (edge, _backend) = one_backend_edge("h2.1").await;
    let tcp = TcpStream::connect(edge.listen).await.unwrap();
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("h2c handshake");
    let driver = tokio::spawn(connection);

    // Several streams at once on the one connection.
    let mut streams = Vec::new();
    for path in ["/", "/?ms=200", "/echo-headers", "/big?n=100000"] {
        let mut sender = sender.clone();
        let uri = format!("http://app.test{path}");
        streams.push(tokio::spawn(async move {
            let request = Request::builder()
                .uri(uri)
                .body(Empty::<Bytes>::new())
                .unwrap();
            let response = tokio::time::timeout(REQUEST_LIMIT, sender.send_request(request))
                .await
                .expect("h2 answer in time")
                .expect("h2 answer");
            let (parts, body) = response.into_parts();
            let body = body.collect().await.expect("h2 body").to_bytes();
            (parts, body)
        }));
    }
    let mut answers = Vec::new();
    for s in streams {
        answers.push(s.await.unwrap());
    }
    for (parts, _) in &answers {
        assert_eq!(parts.status, StatusCode::OK);
        assert_eq!(parts.version, Version::HTTP_2);
        assert_eq!(parts.headers.get("x-backend").unwrap(), "h2.1");
    }
    assert_eq!(answers[0].1, Bytes::from_static(b"h2.1"));
    let seen: BTreeMap<String, String> = serde_json::from_slice(&answers[2].1).unwrap();
    assert_eq!(
        seen.get("host").map(String::as_str),
        Some("app.test"),
        "{seen:?}"
    );
    assert_eq!(
        seen.get("x-forwarded-host").map(String::as_str),
        Some("app.test")
    );
    assert_eq!(answers[3].1.len(), 100_000);
    drop(sender);
    driver.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_listener_serves_metrics_and_health() {
    let (edge, _backend) = one_backend_edge("web.1").await;
    for _ in 0..5 {
        assert_eq!(edge.get("app.test", "/").await.status, StatusCode::OK);
    }
    let health = edge.admin_get("/healthz").await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.text().trim(), "ok");
    assert_eq!(edge.admin_get("/nope").await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        edge.admin_get_as("localhost:9090", "/healthz").await.status,
        StatusCode::OK
    );
    // A page in a local browser that reached the admin listener through DNS rebinding (its
    // own name resolving to 127.0.0.1) reads nothing there.
    for host in ["evil.test", "evil.test:9090", "127.0.0.1.evil.test", "a b"] {
        for path in ["/metrics", "/table", "/healthz"] {
            let reply = edge.admin_get_as(host, path).await;
            assert_eq!(reply.status, StatusCode::FORBIDDEN, "{host} {path}");
            assert!(!reply.text().contains("127.0.0.1"), "{}", reply.text());
        }
    }

    // The counter is written when a response body ends: allow it a moment.
    let mut counted = 0.0;
    let mut metrics = String::new();
    for _ in 0..50 {
        let reply = edge.admin_get("/metrics").await;
        assert_eq!(reply.status, StatusCode::OK);
        metrics = reply.text();
        counted = metrics
            .lines()
            .filter(|l| {
                l.starts_with("berth_edge_requests_total{")
                    && l.contains("service=\"web\"")
                    && l.contains("status=\"2xx\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        if counted >= 5.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    assert!(
        counted >= 5.0,
        "berth_edge_requests_total for service web counted {counted}:\n{metrics}"
    );
    assert!(
        metrics.contains("berth_edge_routing_table_version 3"),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("berth_edge_upstream_healthy{")
                && l.contains("replica=\"web.1\"")
                && l.ends_with(" 1")),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_socket_speaks_json_lines() {
    let (edge, _backend) = one_backend_edge("web.1").await;
    let status = control_line(&edge.socket(), r#"{"op":"status"}"#)
        .await
        .unwrap();
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["ok"], true);
    assert_eq!(status["pid"], edge.pid);
    assert_eq!(status["version"], 3);
    assert_eq!(status["listen"][0], edge.listen.to_string());
    assert_eq!(status["admin"], edge.admin.to_string());

    let bad = control_line(&edge.socket(), r#"{"op":"no-such-op"}"#)
        .await
        .unwrap();
    let bad: serde_json::Value = serde_json::from_str(&bad).unwrap();
    assert_eq!(bad["ok"], false, "{bad}");
    assert!(bad["error"].as_str().is_some_and(|e| !e.is_empty()));

    // The edge keeps serving after a bad control line.
    assert_eq!(edge.get("app.test", "/").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_gets_one_json_access_log_line() {
    let (edge, _backend) = one_backend_edge("web.1").await;
    let reply = edge
        .send(
            Method::GET,
            "shop.test",
            "/hello?q=%22x%22",
            &[],
            Bytes::new(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let id = reply.header("x-request-id").unwrap_or_default().to_string();
    assert!(id.len() >= 16, "{:?}", reply.headers);
    let missing = edge.get("nowhere.test", "/").await;
    assert_eq!(
        missing.status,
        StatusCode::OK,
        "the route has no host: any host matches"
    );

    // Lines are written in chunks, at least every 200 ms.
    let log = edge.dir.join("access.log");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let line = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains(&id)) {
            break line.to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no line in {}: {text}",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let v: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
    assert_eq!(v["client"], "127.0.0.1", "{line}");
    assert_eq!(v["host"], "shop.test", "{line}");
    assert_eq!(v["method"], "GET", "{line}");
    assert_eq!(v["path"], "/hello?q=%22x%22", "{line}");
    assert_eq!(v["status"], 200, "{line}");
    assert_eq!(v["bytes"], reply.body.len() as u64, "{line}");
    assert!(v["duration_ms"].as_f64().is_some_and(|d| d > 0.0), "{line}");
    assert_eq!(v["service"], "web", "{line}");
    assert_eq!(v["upstream"], "web.1", "{line}");
    assert_eq!(v["release"], "r1", "{line}");
    assert_eq!(v["request_id"], id.as_str(), "{line}");
    let time = v["time"].as_str().unwrap_or_default();
    // RFC 3339 UTC with milliseconds: 2026-11-23T22:32:52.123Z
    assert!(
        time.len() == 24 && &time[10..11] == "T" && &time[19..20] == "." && time.ends_with('Z'),
        "{line}"
    );
}
