//! What the edge refuses before a replica sees anything: rate limits (429 and recovery),
//! allowlists (403, through path tricks, with `X-Forwarded-For` believed only from trusted
//! proxies), connection limits per address, maintenance mode (503); and the security headers
//! it adds to answers.

use std::time::{Duration, Instant};

use berth_model::routing::{AllowRule, Maintenance, RateLimit, RoutingTable};
use berth_spec::Balance;
use bytes::Bytes;
use hyper::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::backend::Backend;
use crate::harness::*;

fn guarded_table(
    version: u64,
    backend: &Backend,
    edit: impl FnOnce(&mut RoutingTable),
) -> RoutingTable {
    let mut table = one_service(
        version,
        "web",
        pool(Balance::LeastOutstanding, vec![target(backend, "r1")]),
    );
    // Loopback is exempt by default; these tests are the clients to limit.
    table.settings.limit_exempt = Vec::new();
    edit(&mut table);
    table
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_answers_429_with_retry_after_and_recovers() {
    let edge = EdgeProcess::start().await;
    let backend = Backend::start("web.1").await;
    edge.push(&guarded_table(1, &backend, |t| {
        t.settings.rate_limits = vec![RateLimit {
            path: "/login".into(),
            interval: Duration::from_millis(700),
            burst: 3,
        }];
    }))
    .await;
    for i in 0..3 {
        assert_eq!(
            edge.get("app.test", "/login").await.status,
            StatusCode::OK,
            "login {i}"
        );
    }
    let limited = edge.get("app.test", "/login").await;
    assert_eq!(
        limited.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        limited.text()
    );
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "retry-after {retry}");
    // Other paths are not under this rule.
    assert_eq!(edge.get("app.test", "/shop").await.status, StatusCode::OK);
    // The limited request never reached the replica.
    assert_eq!(
        backend
            .paths()
            .iter()
            .filter(|p| p.starts_with("/login"))
            .count(),
        3
    );

    // One interval later there is room for one more.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let reply = edge.get("app.test", "/login").await;
        if reply.status == StatusCode::OK {
            break;
        }
        assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
        assert!(
            Instant::now() < deadline,
            "the limit never let a request through again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = edge.admin_get("/metrics").await.text();
    assert!(
        metrics.contains("berth_edge_blocked_total{reason=\"rate_limit\"}"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowlist_refuses_others_through_path_tricks_and_believes_only_trusted_proxies() {
    let edge = EdgeProcess::start().await;
    let backend = Backend::start("web.1").await;
    let rule = AllowRule {
        path: "/admin".into(),
        from: vec!["10.0.0.0/8".parse().unwrap()],
    };
    edge.push(&guarded_table(1, &backend, |t| {
        t.settings.allow = vec![rule.clone()]
    }))
    .await;
    for path in [
        "/admin",
        "/ADMIN/users",
        "//admin",
        "/%61dmin",
        "/x/../admin",
    ] {
        let reply = edge.get("app.test", path).await;
        assert_eq!(
            reply.status,
            StatusCode::FORBIDDEN,
            "{path}: {}",
            reply.text()
        );
    }
    assert_eq!(edge.get("app.test", "/shop").await.status, StatusCode::OK);
    // A client's own X-Forwarded-For is not believed...
    let forged = edge
        .send(
            Method::GET,
            "app.test",
            "/admin",
            &[("x-forwarded-for", "10.1.2.3")],
            Bytes::new(),
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(backend.paths().iter().all(|p| !p.contains("admin")));

    // ...a trusted proxy's is.
    edge.push(&guarded_table(2, &backend, |t| {
        t.settings.allow = vec![rule];
        t.settings.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    }))
    .await;
    let proxied = edge
        .send(
            Method::GET,
            "app.test",
            "/admin",
            &[("x-forwarded-for", "10.1.2.3")],
            Bytes::new(),
        )
        .await;
    assert_eq!(proxied.status, StatusCode::OK, "{}", proxied.text());
}

/// Whether the edge closes `stream` without an answer within `within`.
async fn closed_unanswered(stream: &mut TcpStream, within: Duration) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(within, stream.read(&mut byte)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_per_address_limit_are_closed() {
    let edge = EdgeProcess::start().await;
    let backend = Backend::start("web.1").await;
    edge.push(&guarded_table(1, &backend, |t| {
        t.settings.max_connections_per_ip = 2
    }))
    .await;
    let mut first = TcpStream::connect(edge.listen).await.unwrap();
    let mut second = TcpStream::connect(edge.listen).await.unwrap();
    // Both are counted once the edge accepted them: a request each proves it.
    for stream in [&mut first, &mut second] {
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        let n = stream.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    }
    let mut third = TcpStream::connect(edge.listen).await.unwrap();
    let _ = third
        .write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await;
    assert!(
        closed_unanswered(&mut third, Duration::from_secs(5)).await,
        "a third connection from one address was served"
    );
    drop(first);
    // The slot comes back when a connection ends.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut again = TcpStream::connect(edge.listen).await.unwrap();
        again
            .write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), again.read_to_end(&mut answer)).await;
        if answer.starts_with(b"HTTP/1.1 200") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the freed slot was not given back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_mode_answers_503_with_the_message_except_to_allowed_clients() {
    let edge = EdgeProcess::start().await;
    let backend = Backend::start("web.1").await;
    edge.push(&guarded_table(1, &backend, |t| {
        t.maintenance = Some(Maintenance {
            services: vec![],
            message: Some("Back at 5 <b>pm</b>".into()),
            allow: vec![],
        });
    }))
    .await;
    let reply = edge.get("app.test", "/").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(reply.header("retry-after").is_some());
    let text = reply.text();
    assert!(text.contains("Back at 5 &lt;b&gt;pm&lt;/b&gt;"), "{text}");
    assert_eq!(backend.hits(), 0);

    // The operator's own address gets through to check the site.
    edge.push(&guarded_table(2, &backend, |t| {
        t.maintenance = Some(Maintenance {
            services: vec!["web".into()],
            message: None,
            allow: vec!["127.0.0.1/32".parse().unwrap()],
        });
    }))
    .await;
    assert_eq!(edge.get("app.test", "/").await.status, StatusCode::OK);
    edge.push(&guarded_table(3, &backend, |_| {})).await;
    assert_eq!(edge.get("app.test", "/").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_carry_the_security_headers_and_routes_override_them() {
    let edge = EdgeProcess::start().await;
    let backend = Backend::start("web.1").await;
    edge.push(&guarded_table(1, &backend, |t| {
        t.settings.response_headers = vec![
            ("x-content-type-options".into(), "nosniff".into()),
            ("x-frame-options".into(), "SAMEORIGIN".into()),
        ];
        let mut admin = route(None, "/embed", "web");
        admin.headers.insert("x-frame-options".into(), "".into());
        admin.headers.insert(
            "content-security-policy".into(),
            "default-src 'self'".into(),
        );
        t.routes.push(admin);
    }))
    .await;
    let reply = edge.get("app.test", "/").await;
    assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(reply.header("x-frame-options"), Some("SAMEORIGIN"));
    // Error pages too.
    let missing = edge
        .send(
            Method::GET,
            "app.test",
            "/",
            &[("content-length", "x")],
            Bytes::new(),
        )
        .await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert_eq!(missing.header("x-content-type-options"), Some("nosniff"));
    // A route's own: one set, one default dropped.
    let embed = edge.get("app.test", "/embed").await;
    assert_eq!(embed.header("x-frame-options"), None);
    assert_eq!(
        embed.header("content-security-policy"),
        Some("default-src 'self'")
    );
    assert_eq!(embed.header("x-content-type-options"), Some("nosniff"));
}

fn waf_table(
    version: u64,
    backend: &Backend,
    edit: impl FnOnce(&mut berth_spec::WafSpec),
) -> RoutingTable {
    guarded_table(version, backend, |t| {
        let mut waf = berth_spec::WafSpec::default();
        edit(&mut waf);
        t.settings.waf = Some(waf);
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_waf_blocks_counts_or_lets_through_and_reads_bodies() {
    let edge = EdgeProcess::start().await;
    let backend = Backend::start("web.1").await;
    edge.push(&waf_table(1, &backend, |_| {})).await;
    let attack = "/search?q=1%27%20OR%20%271%27%3D%271";
    let blocked = edge.get("app.test", attack).await;
    assert_eq!(blocked.status, StatusCode::FORBIDDEN, "{}", blocked.text());
    assert!(blocked.text().contains("firewall"));
    assert!(backend.paths().iter().all(|p| !p.starts_with("/search")));
    // A shop's ordinary requests pass.
    for path in [
        "/search?q=O%27Brien%27s+shoes",
        "/products?sort=price&utm_source=news&state=NC",
        "/cart?item=r2",
    ] {
        assert_eq!(
            edge.get("app.test", path).await.status,
            StatusCode::OK,
            "{path}"
        );
    }

    // A form body is read (the first bytes) and still reaches the replica whole.
    let clean: String = (0..20_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let form = format!("comment=nice+shoes&filler={clean}");
    let reply = edge
        .send(
            Method::POST,
            "app.test",
            "/echo",
            &[("content-type", "application/x-www-form-urlencoded")],
            Bytes::from(form.clone()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, form.as_bytes(), "the body arrives byte-exact");
    let xss = edge
        .send(
            Method::POST,
            "app.test",
            "/echo",
            &[("content-type", "application/x-www-form-urlencoded")],
            Bytes::from_static(b"comment=%3Cscript%3Ealert(document.cookie)%3C%2Fscript%3E"),
        )
        .await;
    assert_eq!(xss.status, StatusCode::FORBIDDEN);

    // Count: logged and counted, not blocked; an exclusion skips a path; off is off.
    edge.push(&waf_table(2, &backend, |w| {
        w.modes.insert("sqli".into(), "count".into());
        w.exclusions.push(berth_spec::WafExclusion {
            path: "/admin/editor".into(),
            groups: vec!["xss".into()],
            targets: vec![],
        });
    }))
    .await;
    assert_eq!(edge.get("app.test", attack).await.status, StatusCode::OK);
    let editor = edge
        .send(
            Method::POST,
            "app.test",
            "/admin/editor/save",
            &[("content-type", "application/x-www-form-urlencoded")],
            Bytes::from_static(b"html=%3Cscript%3Ealert(1)%3C%2Fscript%3E"),
        )
        .await;
    assert_eq!(editor.status, StatusCode::OK, "excluded");
    let metrics = edge.admin_get("/metrics").await.text();
    assert!(
        metrics.contains("berth_edge_waf_findings_total{group=\"sqli\"")
            && metrics.contains("action=\"count\""),
        "{metrics}"
    );
    assert!(
        metrics.contains("berth_edge_blocked_total{reason=\"waf\"}"),
        "{metrics}"
    );
    // Per service too (the daemon's `waf_blocked` series).
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("berth_edge_waf_blocked_total{service=\"")
                && !l.ends_with(" 0")),
        "{metrics}"
    );
    edge.push(&guarded_table(3, &backend, |t| t.settings.waf = None))
        .await;
    assert_eq!(edge.get("app.test", attack).await.status, StatusCode::OK);
}

/// `oversize = "block"` refuses a body the WAF reads that is longer than `max_body` (by its
/// length or, chunked, by what arrives), and lets one within it through whole; the default
/// (`continue`) lets the longer one through whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_longer_than_the_waf_reads_is_refused_only_when_asked() {
    let edge = EdgeProcess::start().await;
    let backend = Backend::start("web.1").await;
    let form = |len: usize| -> String {
        let filler: String = (0..len)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        format!("comment={filler}")
    };
    let post = |body: String| {
        let edge = &edge;
        async move {
            edge.send(
                Method::POST,
                "app.test",
                "/echo",
                &[("content-type", "application/x-www-form-urlencoded")],
                Bytes::from(body),
            )
            .await
        }
    };
    edge.push(&waf_table(1, &backend, |w| w.max_body = 1024))
        .await;
    let long = post(form(3000)).await;
    assert_eq!(long.status, StatusCode::OK, "continue is the default");
    assert_eq!(long.body, form(3000).as_bytes());

    edge.push(&waf_table(2, &backend, |w| {
        w.max_body = 1024;
        w.oversize = berth_spec::WafOversize::Block;
    }))
    .await;
    let within = post(form(1000)).await;
    assert_eq!(within.status, StatusCode::OK);
    assert_eq!(within.body, form(1000).as_bytes(), "byte-exact");
    let long = post(form(3000)).await;
    assert_eq!(long.status, StatusCode::FORBIDDEN, "{}", long.text());
    assert!(long.text().contains("larger than the firewall inspects"));

    // Chunked, no length: cut by what arrives, also exactly at the limit.
    for (chunks, refused) in [
        (vec![600, 600], true),
        (vec![512, 512], false),
        (vec![512, 512, 1], true),
    ] {
        let mut raw = RawConn::connect(edge.listen).await;
        let mut request = b"POST /echo HTTP/1.1\r\nHost: app.test\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for len in &chunks {
            request.extend_from_slice(format!("{len:x}\r\n").as_bytes());
            request.extend(std::iter::repeat_n(b'a', *len));
            request.extend_from_slice(b"\r\n");
        }
        request.extend_from_slice(b"0\r\n\r\n");
        raw.send(&request).await.unwrap();
        let answer = raw.read_response("POST").await.unwrap();
        let expected = if refused { 403 } else { 200 };
        assert_eq!(answer.status, expected, "{chunks:?}");
    }
    let metrics = edge.admin_get("/metrics").await.text();
    assert!(metrics.contains("rule=\"oversize\""), "{metrics}");
}

/// The admin listener is open to every local user: `/table` shows the routing table without
/// the key of the private test route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_table_hides_the_test_route_key() {
    let edge = EdgeProcess::start().await;
    let backend = Backend::start("web.1").await;
    let key = "k3y-0f-the-test-route-e2e";
    edge.push(&guarded_table(1, &backend, |t| {
        t.test_key = Some(key.into())
    }))
    .await;
    let table = edge.admin_get("/table").await;
    assert_eq!(table.status, StatusCode::OK);
    assert!(!table.text().contains(key), "{}", table.text());
    assert!(table.text().contains("(hidden)"), "{}", table.text());
}

/// What a security review found, pinned: an HTTP/2 body without a length is read by the WAF;
/// two content types are refused; rate limits match the path as applications read it; other
/// client-identity headers are dropped; only WebSocket upgrades pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_waf_and_the_guards_cannot_be_sidestepped() {
    use http_body_util::StreamBody;
    use hyper::body::Frame;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let edge = EdgeProcess::start().await;
    let backend = Backend::start("web.1").await;
    edge.push(&waf_table(1, &backend, |_| {})).await;

    // HTTP/2 (prior knowledge), a form streamed in DATA frames with no content-length.
    let tcp = TcpStream::connect(edge.listen).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(connection);
    let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = vec![
        Ok(Frame::data(Bytes::from_static(
            b"q=1%27%20union%20select%20",
        ))),
        Ok(Frame::data(Bytes::from_static(
            b"password%20from%20users--",
        ))),
    ];
    let request = hyper::Request::builder()
        .method(Method::POST)
        .uri("http://app.test/search")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(StreamBody::new(futures_iter(frames)))
        .unwrap();
    assert!(request.headers().get("content-length").is_none());
    let answer = sender.send_request(request).await.unwrap();
    assert_eq!(answer.status(), StatusCode::FORBIDDEN);

    // Two content types.
    let reply = edge
        .send(
            Method::POST,
            "app.test",
            "/echo",
            &[
                ("content-type", "text/plain"),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            Bytes::from_static(b"q=%3Cscript%3Ealert(1)%3C%2Fscript%3E"),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);

    // Other identity headers never reach the replica from an untrusted client.
    let reply = edge
        .send(
            Method::GET,
            "app.test",
            "/echo-headers",
            &[
                ("forwarded", "for=10.0.0.1;proto=https"),
                ("x-real-ip", "10.0.0.1"),
            ],
            Bytes::new(),
        )
        .await;
    let seen: std::collections::BTreeMap<String, String> =
        serde_json::from_slice(&reply.body).unwrap();
    assert!(
        !seen.contains_key("forwarded") && !seen.contains_key("x-real-ip"),
        "{seen:?}"
    );

    // A non-WebSocket upgrade is not tunnelled.
    let reply = edge
        .send(
            Method::GET,
            "app.test",
            "/",
            &[("connection", "upgrade"), ("upgrade", "h2c")],
            Bytes::new(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_IMPLEMENTED);

    // Rate limits see `/LOGIN` and `/%6cogin` as `/login`.
    edge.push(&guarded_table(2, &backend, |t| {
        t.settings.rate_limits = vec![RateLimit {
            path: "/login".into(),
            interval: Duration::from_secs(60),
            burst: 1,
        }];
    }))
    .await;
    assert_eq!(edge.get("app.test", "/login").await.status, StatusCode::OK);
    for path in ["/LOGIN", "/%6cogin", "//login", "/x/../login"] {
        let reply = edge.get("app.test", path).await;
        assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS, "{path}");
    }
}

/// An iterator as a stream (for a body of frames with no known length).
fn futures_iter<T>(items: Vec<T>) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::iter(items)
}
