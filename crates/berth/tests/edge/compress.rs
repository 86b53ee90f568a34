//! Response compression through the real edge: text answers come back in the coding the client
//! asked for and decode to the replica's bytes; answers that must not be compressed pass byte
//! for byte; a slow stream and server-sent events reach the client as they are sent.

use berth_model::routing::EdgeSettings;
use berth_spec::Balance;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Method;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::io::{Read, Write};

use crate::backend::{page_text, pattern, Backend};
use crate::harness::*;

fn decode(coding: &str, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match coding {
        "gzip" => {
            flate2::read::GzDecoder::new(bytes)
                .read_to_end(&mut out)
                .expect("gzip");
        }
        "br" => {
            brotli::Decompressor::new(bytes, 4096)
                .read_to_end(&mut out)
                .expect("br");
        }
        "zstd" => out = zstd::stream::decode_all(bytes).expect("zstd"),
        other => panic!("unexpected coding {other}"),
    }
    out
}

async fn get(edge: &EdgeProcess, host: &str, path: &str, accept: &str) -> Reply {
    edge.send(
        Method::GET,
        host,
        path,
        &[("accept-encoding", accept)],
        Bytes::new(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_answers_come_back_compressed_as_asked_and_decode_to_the_original() {
    let (edge, _backend) = one_backend_edge("web.1").await;
    let original = page_text(20_000);
    for (accept, coding) in [
        ("gzip", "gzip"),
        ("br", "br"),
        ("zstd", "zstd"),
        ("gzip, deflate, br, zstd", "br"),
        ("gzip;q=1, br;q=0.5", "gzip"),
        ("br;q=0, zstd, gzip", "zstd"),
    ] {
        let reply = get(&edge, "shop.test", "/page?n=20000", accept).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("content-encoding"), Some(coding), "{accept}");
        assert_eq!(reply.header("content-length"), None, "{accept}");
        assert_eq!(reply.header("etag"), Some("W/\"page-20000\""), "{accept}");
        assert_eq!(
            reply.header_all("vary"),
            ["Origin, Accept-Encoding"],
            "{accept}"
        );
        assert!(
            reply.body.len() * 3 < original.len(),
            "{accept}: {} bytes for {}",
            reply.body.len(),
            original.len()
        );
        assert!(
            decode(coding, &reply.body) == original,
            "{accept}: the decoded body differs"
        );
    }
    // Other compressible types.
    for content_type in ["application/json", "image/svg+xml", "text/css"] {
        let reply = get(
            &edge,
            "shop.test",
            &format!("/page?n=5000&type={content_type}"),
            "gzip",
        )
        .await;
        assert_eq!(
            reply.header("content-encoding"),
            Some("gzip"),
            "{content_type}"
        );
        assert!(
            decode("gzip", &reply.body) == page_text(5000),
            "{content_type}"
        );
    }
    // A client that asks for nothing gets the replica's bytes, and caches learn it varies.
    let reply = edge.get("shop.test", "/page?n=20000").await;
    assert_eq!(reply.header("content-encoding"), None);
    assert_eq!(reply.header("content-length"), Some("20000"));
    assert_eq!(reply.header("etag"), Some("\"page-20000\""));
    assert_eq!(reply.header_all("vary"), ["Origin, Accept-Encoding"]);
    assert!(reply.body == original);
    // HEAD: the head of the uncompressed answer, no body.
    let reply = edge
        .send(
            Method::HEAD,
            "shop.test",
            "/page?n=20000",
            &[("accept-encoding", "gzip, br")],
            Bytes::new(),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-encoding"), None);
    assert_eq!(reply.header("content-length"), Some("20000"));
    assert!(reply.body.is_empty());

    // What went through the encoders is on the metrics page.
    let metrics = edge.admin_get("/metrics").await.text();
    for coding in ["gzip", "br", "zstd"] {
        let value = |name: &str| {
            let key = format!("berth_edge_{name}_total{{algorithm=\"{coding}\"}}");
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(key.as_str()))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or_else(|| panic!("{key} missing from\n{metrics}"))
        };
        let (answers, input, output) = (
            value("compressed_responses"),
            value("compress_in_bytes"),
            value("compress_out_bytes"),
        );
        assert!(answers >= 1.0, "{coding}: {answers} answers");
        assert!(input >= 20_000.0, "{coding}: {input} bytes in");
        assert!(
            output > 0.0 && output * 3.0 < input,
            "{coding}: {output} of {input}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_that_must_not_be_compressed_pass_byte_for_byte() {
    let edge = EdgeProcess::start().await;
    let backend = Backend::start("web.1").await;
    let mut routes = vec![route(None, "/", "web")];
    let mut plain_route = route(Some("plain.test"), "/", "web");
    plain_route.compress = Some(false);
    routes.push(plain_route);
    let web = pool(Balance::LeastOutstanding, vec![target(&backend, "r1")]);
    let mut t = table(
        3,
        routes.clone(),
        vec![("web", web.clone())],
        EdgeSettings::default(),
    );
    edge.push(&t).await;

    let accept = "gzip, deflate, br, zstd";
    for (path, encoding, why) in [
        ("/page?n=20000&type=image/png", None, "an image"),
        (
            "/page?n=20000&type=application/octet-stream",
            None,
            "binary",
        ),
        (
            "/page?n=20000&cc=public,no-transform,max-age=60",
            None,
            "no-transform",
        ),
        ("/page?n=20000&cc=no-transform", None, "no-transform alone"),
        (
            "/page?n=20000&encoding=gzip",
            Some("gzip"),
            "encoded already",
        ),
        ("/page?n=999", None, "under the minimum"),
    ] {
        let reply = get(&edge, "shop.test", path, accept).await;
        assert_eq!(reply.status, 200, "{why}");
        assert_eq!(reply.header("content-encoding"), encoding, "{why}");
        let n: usize = path
            .split("n=")
            .nth(1)
            .and_then(|rest| rest.split('&').next())
            .and_then(|n| n.parse().ok())
            .unwrap();
        assert_eq!(
            reply.header("content-length"),
            Some(n.to_string().as_str()),
            "{why}"
        );
        assert!(reply.body == page_text(n), "{why}: the body changed");
        assert_eq!(
            reply.header("etag"),
            Some(format!("\"page-{n}\"").as_str()),
            "{why}"
        );
    }
    // A route with `compress = false`.
    let reply = get(&edge, "plain.test", "/page?n=20000", accept).await;
    assert_eq!(reply.header("content-encoding"), None);
    assert_eq!(reply.header_all("vary"), ["Origin"]);
    assert!(reply.body == page_text(20_000));
    // The edge switched off: nothing compressed, not even on the other routes.
    t.version = 4;
    t.settings.compress.enabled = false;
    edge.push(&t).await;
    let reply = get(&edge, "shop.test", "/page?n=20000", accept).await;
    assert_eq!(reply.header("content-encoding"), None);
    assert!(reply.body == page_text(20_000));
    // ...unless a route says so.
    t.version = 5;
    t.routes[1].compress = Some(true);
    edge.push(&t).await;
    let reply = get(&edge, "plain.test", "/page?n=20000", accept).await;
    assert_eq!(reply.header("content-encoding"), Some("br"));
    assert!(decode("br", &reply.body) == page_text(20_000));
}

/// Sends a GET and reads the answer's body frame by frame, decoding as it goes: the
/// `Content-Encoding`, the decoded bytes after each frame, and the whole decoded body.
async fn arrivals(
    edge: &EdgeProcess,
    path: &str,
    accept: &str,
) -> (Option<String>, Vec<usize>, Vec<u8>) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let request = build_request(
        &edge.url(path),
        Method::GET,
        "shop.test",
        &[("accept-encoding", accept)],
        Bytes::new(),
    );
    let response = tokio::time::timeout(REQUEST_LIMIT, client.request(request))
        .await
        .expect("an answer in time")
        .expect("an answer");
    let encoding = response
        .headers()
        .get("content-encoding")
        .map(|v| v.to_str().unwrap().to_string());
    let sink = Sink::default();
    let mut decoder: Box<dyn Write + Send> = match encoding.as_deref() {
        Some("gzip") => Box::new(flate2::write::GzDecoder::new(sink.clone())),
        Some("br") => Box::new(brotli::DecompressorWriter::new(sink.clone(), 4096)),
        Some("zstd") => Box::new(zstd::stream::write::Decoder::new(sink.clone()).unwrap()),
        _ => Box::new(sink.clone()),
    };
    let mut body = response.into_body();
    let mut counts = Vec::new();
    while let Some(frame) = tokio::time::timeout(REQUEST_LIMIT, body.frame())
        .await
        .expect("the next frame in time")
    {
        let Ok(data) = frame.expect("a frame").into_data() else {
            continue;
        };
        decoder.write_all(&data).unwrap();
        decoder.flush().unwrap();
        counts.push(sink.0.lock().unwrap().len());
    }
    drop(decoder);
    let decoded = sink.0.lock().unwrap().clone();
    (encoding, counts, decoded)
}

/// Where a decoder writes, readable while it decodes.
#[derive(Clone, Default)]
struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_stream_and_server_sent_events_arrive_as_they_are_sent() {
    let (edge, _backend) = one_backend_edge("web.1").await;
    // Three frames of 2,000 bytes, 400 ms apart, no length: compressed, and each frame is
    // decodable on its own before the next one is sent (the edge flushes when the replica
    // pauses). Had the edge waited for more, the first count would be 4,000 or 6,000.
    let expected: Vec<u8> = (0..6_000).map(pattern).collect();
    for coding in ["gzip", "br", "zstd"] {
        let (encoding, counts, decoded) = arrivals(
            &edge,
            "/stream?frames=3&size=2000&gap=400&type=text/plain",
            coding,
        )
        .await;
        assert_eq!(encoding.as_deref(), Some(coding));
        assert!(decoded == expected, "{coding}: the decoded stream differs");
        let first = counts.iter().copied().find(|&n| n > 0);
        assert_eq!(first, Some(2_000), "{coding}: decoded per frame {counts:?}");
        assert!(
            counts.contains(&4_000),
            "{coding}: decoded per frame {counts:?}"
        );
    }
    // Server-sent events are never compressed, and go out as they come.
    let (encoding, counts, decoded) = arrivals(
        &edge,
        "/stream?frames=3&size=100&gap=400&type=text/event-stream",
        "gzip, br, zstd",
    )
    .await;
    assert_eq!(encoding, None);
    assert!(decoded == (0..300).map(pattern).collect::<Vec<u8>>());
    assert_eq!(counts.first(), Some(&100), "{counts:?}");
    assert!(counts.contains(&200), "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compressed_answer_is_chunked_for_http11_and_ends_with_the_connection_for_http10() {
    let (edge, _backend) = one_backend_edge("web.1").await;
    let original = page_text(20_000);
    let mut conn = RawConn::connect(edge.listen).await;
    let answer = conn
        .exchange(
            "GET",
            b"GET /page?n=20000 HTTP/1.1\r\nHost: shop.test\r\nAccept-Encoding: gzip\r\n\r\n",
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.head);
    assert_eq!(answer.framing, "chunked", "{}", answer.head);
    assert_eq!(answer.header("content-length"), None, "{}", answer.head);
    assert!(decode("gzip", &answer.body) == original);
    // The connection goes on: the next answer (not compressible) on it is whole.
    let next = conn
        .exchange(
            "GET",
            b"GET /big?n=3 HTTP/1.1\r\nHost: shop.test\r\nAccept-Encoding: gzip\r\n\r\n",
        )
        .await;
    assert_eq!(next.body, b"abc");

    let mut conn = RawConn::connect(edge.listen).await;
    let answer = conn
        .exchange(
            "GET",
            b"GET /page?n=20000 HTTP/1.0\r\nHost: shop.test\r\nAccept-Encoding: br\r\n\r\n",
        )
        .await;
    assert_eq!(answer.framing, "close", "{}", answer.head);
    assert_eq!(
        answer.header("content-encoding"),
        Some("br"),
        "{}",
        answer.head
    );
    assert!(decode("br", &answer.body) == original);
}
