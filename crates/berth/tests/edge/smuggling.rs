//! Issue 10, finding by finding: request smuggling, a client taking a replica out of rotation,
//! and framing conformance, each sent as raw bytes to the real `berth edge` in front of a
//! [`Recorder`] that keeps the exact bytes it received. Besides each finding's own check, no
//! request the replica receives may carry bytes of two clients' requests.

use std::time::{Duration, Instant};

use berth_edge::ControlRequest;
use berth_model::routing::EdgeSettings;
use berth_spec::Balance;

use crate::harness::*;
use crate::recorder::{Mode, Recorded, Recorder};

const HOST: &str = "Host: app.test\r\n";
/// How long the recorder may take to see what the edge forwards.
const SEEN_WITHIN: Duration = Duration::from_secs(5);

/// An edge with the recorder `rec.1` as the only replica of service `web`, behind every host.
async fn recorded_edge(mode: Mode, settings: EdgeSettings) -> (EdgeProcess, Recorder) {
    let edge = EdgeProcess::start().await;
    let recorder = Recorder::start("rec.1", mode).await;
    edge.push(&table(
        1,
        vec![route(None, "/", "web")],
        vec![(
            "web",
            pool(Balance::LeastOutstanding, vec![recorder.target("rec.1")]),
        )],
        settings,
    ))
    .await;
    (edge, recorder)
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\n{HOST}\r\n").into_bytes()
}

/// The framing headers a recorded request carried, in order.
fn framing(r: &Recorded) -> Vec<(String, String)> {
    r.headers()
        .into_iter()
        .filter(|(n, _)| n == "content-length" || n == "transfer-encoding")
        .collect()
}

fn cl(n: &str) -> Vec<(String, String)> {
    vec![("content-length".to_string(), n.to_string())]
}

fn te_chunked() -> Vec<(String, String)> {
    vec![("transfer-encoding".to_string(), "chunked".to_string())]
}

/// Each request the replica received carries the markers of exactly one client (markers are
/// strings only that client's request contains, in its head or its body).
fn assert_unmixed(recorder: &Recorder, clients: &[&[&str]]) {
    for r in recorder.requests() {
        let raw = String::from_utf8_lossy(&r.raw()).into_owned();
        let owners: Vec<usize> = clients
            .iter()
            .enumerate()
            .filter(|(_, markers)| markers.iter().any(|m| raw.contains(m)))
            .map(|(i, _)| i)
            .collect();
        assert!(
            owners.len() == 1,
            "a request the replica received belongs to clients {owners:?} (of {clients:?}): \
             {raw:?}\n{}",
            recorder.dump()
        );
    }
}

/// The recorded request whose request line is `line`.
fn recorded<'a>(requests: &'a [Recorded], line: &str, recorder: &Recorder) -> &'a Recorded {
    requests
        .iter()
        .find(|r| r.request_line() == line)
        .unwrap_or_else(|| panic!("the replica never got {line:?}:\n{}", recorder.dump()))
}

/// The `berth_edge_upstream_healthy` line of `replica` on the admin `/metrics` page (read on
/// a connection of its own, closed after: the tests here shorten `idle_timeout`).
async fn upstream_healthy(edge: &EdgeProcess, replica: &str) -> String {
    let answer = raw_exchange(
        edge.admin,
        format!(
            "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            edge.admin
        )
        .as_bytes(),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(raw_status(&answer), 200, "{answer}");
    answer
        .lines()
        .find(|l| {
            l.starts_with("berth_edge_upstream_healthy{") && l.contains(&format!("\"{replica}\""))
        })
        .unwrap_or_else(|| panic!("no upstream_healthy line for {replica}:\n{answer}"))
        .to_string()
}

/// The errors the edge counted against the recorder's release (`r1` of `web`): what the
/// rollout's error-rate rule reads.
async fn release_errors(edge: &EdgeProcess) -> u64 {
    let answer = edge
        .call(&ControlRequest::Traffic {
            service: Some("web".to_string()),
        })
        .await;
    let release = answer
        .traffic
        .iter()
        .find(|t| t.release == "r1" && t.requests > 0)
        .unwrap_or_else(|| panic!("no traffic for release r1: {:?}", answer.traffic));
    release.errors
}

/// Sends `request` on `conn` and reads its answer: `"STATUS BODY"`, or what went wrong (the
/// caller shows it beside what the replica received).
async fn ask(conn: &mut RawConn, method: &str, request: &[u8]) -> String {
    if let Err(e) = conn.send(request).await {
        return format!("{e:?}");
    }
    match conn.read_response(method).await {
        Ok(answer) => format!("{} {}", answer.status, answer.text()),
        Err(e) => format!("{e:?}"),
    }
}

/// Sends `request` on a new connection: the edge answers `status`, says close, and closes.
async fn refused(edge: &EdgeProcess, what: &str, request: &[u8], status: u16) {
    let mut conn = RawConn::connect(edge.listen).await;
    let answer = conn.exchange("POST", request).await;
    assert_eq!(
        answer.status,
        status,
        "{what}: {}{}",
        answer.head,
        answer.text()
    );
    assert!(answer.says_close(), "{what}: {}", answer.head);
    assert!(
        conn.closed_within(Duration::from_secs(3)).await,
        "{what}: the connection stays open"
    );
}

/// Sends `GET /sentinel` and waits until the replica has it; the replica must then have
/// received nothing else (the requests before it were refused by the edge).
async fn only_the_sentinel_reached(edge: &EdgeProcess, recorder: &Recorder) {
    let mut conn = RawConn::connect(edge.listen).await;
    let answer = conn.exchange("GET", &get("/sentinel")).await;
    assert_eq!(answer.status, 200, "{}", answer.head);
    assert_eq!(answer.text(), "/sentinel");
    let requests = recorder.wait_requests(1, SEEN_WITHIN).await;
    let lines: Vec<&str> = requests.iter().map(Recorded::request_line).collect();
    assert_eq!(
        lines,
        ["GET /sentinel HTTP/1.1"],
        "no part of a refused request reaches the replica:\n{}",
        recorder.dump()
    );
}

const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: app.test\r\n\r\n";

// ---- HIGH 1: a list-form Content-Length desyncs a pooled replica connection ----

/// `PUT /early` with `Content-Length: 5, 5` reaches the replica with one `content-length: 5`
/// and its 5 bytes, so the next requests (from another client, and from the same one) arrive
/// whole. The replica answers before it reads a body, as in the issue: with the old edge it
/// read `GET /` of the next request as the PUT's body and then `next… HTTP/1.1` as a request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn high1_a_list_content_length_is_sent_as_one_length_with_its_body() {
    let (edge, recorder) = recorded_edge(Mode::AnswerBeforeBody, EdgeSettings::default()).await;
    let mut first = RawConn::connect(edge.listen).await;
    let put = ask(
        &mut first,
        "PUT",
        format!("PUT /early HTTP/1.1\r\n{HOST}Content-Length: 5, 5\r\n\r\nhello").as_bytes(),
    )
    .await;
    // Another client, then the same one again (same edge worker: the same pooled connection).
    let mut other = RawConn::connect(edge.listen).await;
    let next1 = ask(&mut other, "GET", &get("/next1")).await;
    let next2 = ask(&mut first, "GET", &get("/next2")).await;
    assert_eq!(
        [put, next1, next2],
        ["200 /early", "200 /next1", "200 /next2"],
        "each client gets the answer to its own request:\n{}",
        recorder.dump()
    );

    let requests = recorder.wait_requests(3, SEEN_WITHIN).await;
    let put = recorded(&requests, "PUT /early HTTP/1.1", &recorder);
    assert_eq!(framing(put), cl("5"), "{:?}", put.head);
    assert!(put.complete, "{put:?}");
    assert_eq!(put.body, b"hello", "{put:?}");
    for line in ["GET /next1 HTTP/1.1", "GET /next2 HTTP/1.1"] {
        let next = recorded(&requests, line, &recorder);
        assert!(
            next.head.starts_with(&format!("{line}\r\n")),
            "{:?}",
            next.head
        );
        assert_eq!(framing(next), vec![], "{:?}", next.head);
        assert!(next.complete && next.body.is_empty(), "{next:?}");
    }
    assert_eq!(
        requests.len(),
        3,
        "exactly the three requests:\n{}",
        recorder.dump()
    );
    assert_unmixed(&recorder, &[&["/early", "hello"], &["/next1"], &["/next2"]]);
}

/// The full poisoning sequence of the issue. `L` is the length of the head the edge forwards
/// for `A2` (measured with a probe of the same shape). A1 asks for an L-byte body with
/// `Content-Length: L, L`; A2 carries in its body a request and the start of another,
/// `GET /POISON … X-Ignore: `, which the old edge left on the pooled connection for the next
/// client's head to complete. Here every client must get the answer to its own request, and the
/// replica must never see `GET /POISON` with a victim's cookie.
///
/// A1, A2 and the first victim are separate client connections that the edge serves on one
/// worker, hence over one pooled replica connection (as in the issue): found first by sending
/// one GET on each of several connections, one at a time, and taking the largest group that
/// one replica connection answered (`x-conn`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn high1_the_poisoning_sequence_gives_every_client_its_own_answer() {
    let (edge, recorder) = recorded_edge(Mode::AnswerBeforeBody, EdgeSettings::default()).await;
    let a2_body = "GET /a2-inner HTTP/1.1\r\nHost: x\r\n\r\nGET /POISON HTTP/1.1\r\nX-Ignore: ";
    assert_eq!(a2_body.len(), 67);
    let a2_head = "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 67\r\n\r\n";

    // Client connections, each answered once, one at a time: those the edge serves on one
    // worker share that worker's one pooled replica connection.
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let count = (3 * workers).max(6);
    let mut conns = Vec::new();
    let mut upstream = Vec::new();
    for i in 0..count {
        let mut conn = RawConn::connect(edge.listen).await;
        let answer = conn
            .exchange(
                "GET",
                format!("GET /warm{i} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
            )
            .await;
        assert_eq!(answer.status, 200, "{}", answer.head);
        upstream.push(answer.header("x-conn").unwrap_or("-").to_string());
        conns.push(conn);
    }
    // The replica connection that served the most client connections (workers accept in
    // whatever order the kernel wakes them; with `count` ≥ 3 × workers one has ≥ 3).
    let shared = upstream
        .iter()
        .max_by_key(|c| upstream.iter().filter(|d| d == c).count())
        .cloned()
        .unwrap_or_default();
    let group: Vec<usize> = (0..count).filter(|&i| upstream[i] == shared).collect();
    assert!(
        group.len() >= 3,
        "three client connections over one replica connection: {upstream:?}"
    );
    let (a1_at, a2_at, v1_at) = (group[0], group[1], group[2]);
    let mut victim_order = vec![v1_at];
    victim_order.extend((0..count).filter(|i| ![a1_at, a2_at, v1_at].contains(i)));

    let probe = format!("{a2_head}{}", "z".repeat(67));
    let answer = ask(&mut conns[a2_at], "POST", probe.as_bytes()).await;
    assert_eq!(answer, "200 /x", "the probe:\n{}", recorder.dump());
    let l = recorder.wait_requests(count + 1, SEEN_WITHIN).await[count]
        .head
        .len();

    let a1 = format!(
        "GET /early HTTP/1.1\r\nHost: x\r\nContent-Length: {l}, {l}\r\n\r\n{}",
        "q".repeat(l)
    );
    let a2 = format!("{a2_head}{a2_body}");
    let mut answers = vec![(
        "200 /early".to_string(),
        ask(&mut conns[a1_at], "GET", a1.as_bytes()).await,
    )];
    answers.push((
        "200 /x".to_string(),
        ask(&mut conns[a2_at], "POST", a2.as_bytes()).await,
    ));
    for (n, &at) in victim_order.iter().enumerate() {
        let i = n + 1;
        let request =
            format!("GET /victim{i} HTTP/1.1\r\nHost: x\r\nCookie: sid=VICTIM{i}\r\n\r\n");
        let answer = ask(&mut conns[at], "GET", request.as_bytes()).await;
        answers.push((format!("200 /victim{i}"), answer));
    }
    let victims = victim_order.len();
    let report = format!("(expected, got): {answers:#?}\n{}", recorder.dump());
    for (expected, got) in &answers {
        assert_eq!(got, expected, "a client got another's answer:\n{report}");
    }

    let requests = recorder
        .wait_requests(count + 3 + victims, SEEN_WITHIN)
        .await;
    for r in &requests {
        assert!(
            !(r.request_line().starts_with("GET /POISON") && r.head.contains("VICTIM")),
            "the attacker's request ran with a victim's cookie: {:?}\n{report}",
            r.head
        );
    }
    let mut expected: Vec<String> = (0..count)
        .map(|i| format!("GET /warm{i} HTTP/1.1"))
        .collect();
    expected.extend([
        "POST /x HTTP/1.1".to_string(),
        "GET /early HTTP/1.1".to_string(),
        "POST /x HTTP/1.1".to_string(),
    ]);
    expected.extend((1..=victims).map(|i| format!("GET /victim{i} HTTP/1.1")));
    let lines: Vec<&str> = requests.iter().map(Recorded::request_line).collect();
    assert_eq!(lines, expected, "{report}");
    let a1_seen = &requests[count + 1];
    assert_eq!(framing(a1_seen), cl(&l.to_string()), "{:?}", a1_seen.head);
    assert_eq!(a1_seen.body, "q".repeat(l).as_bytes(), "{report}");
    assert_eq!(requests[count + 2].body, a2_body.as_bytes(), "{report}");

    let mut clients: Vec<Vec<String>> = (0..count).map(|i| vec![format!("/warm{i} ")]).collect();
    clients.extend([
        vec!["zzzzzzzz".into()],
        vec!["/early".into(), "qqqqqqqq".into()],
        vec!["a2-inner".into(), "POISON".into()],
    ]);
    clients.extend((1..=victims).map(|i| vec![format!("/victim{i} "), format!("VICTIM{i}\r")]));
    let clients: Vec<Vec<&str>> = clients
        .iter()
        .map(|c| c.iter().map(String::as_str).collect())
        .collect();
    let clients: Vec<&[&str]> = clients.iter().map(Vec::as_slice).collect();
    assert_unmixed(&recorder, &clients);
}

// ---- HIGH 2: Content-Length and Transfer-Encoding reach the replica together ----

/// Whatever framing the client used, the replica gets one framing header, the edge's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn high2_the_replica_gets_one_framing_header_the_edges() {
    let (edge, recorder) = recorded_edge(Mode::ReadBodyFirst, EdgeSettings::default()).await;
    let mut conn = RawConn::connect(edge.listen).await;
    let answer = conn
        .exchange(
            "POST",
            format!("POST /a HTTP/1.1\r\n{HOST}Content-Length: 5, 5\r\n\r\nhello").as_bytes(),
        )
        .await;
    assert_eq!(answer.status, 200, "{}\n{}", answer.head, recorder.dump());
    assert_eq!(answer.text(), "/a");
    let answer = conn
        .exchange(
            "POST",
            format!(
                "POST /chunked HTTP/1.1\r\n{HOST}Transfer-Encoding: chunked\r\n\r\n\
                 3\r\nwor\r\n2\r\nld\r\n0\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
    assert_eq!(answer.status, 200, "{}\n{}", answer.head, recorder.dump());
    assert_eq!(answer.text(), "/chunked");

    let requests = recorder.wait_requests(2, SEEN_WITHIN).await;
    let length = recorded(&requests, "POST /a HTTP/1.1", &recorder);
    assert_eq!(framing(length), cl("5"), "{:?}", length.head);
    assert_eq!(length.wire_body, b"hello", "{length:?}");
    let chunked = recorded(&requests, "POST /chunked HTTP/1.1", &recorder);
    assert_eq!(framing(chunked), te_chunked(), "{:?}", chunked.head);
    assert!(chunked.complete, "{chunked:?}");
    assert_eq!(chunked.body, b"world", "{chunked:?}");
    assert_eq!(requests.len(), 2, "{}", recorder.dump());
    assert_unmixed(&recorder, &[&["/a ", "hello"], &["/chunked", "wor"]]);
}

// ---- MEDIUM: any single client takes a replica out of rotation ----

/// `idle_timeout` 2 s and `request_timeout` 1 s: the client's pace is bounded by the former
/// only (the old edge counted the upload in `request_timeout`, answered 504 and ejected the
/// replica).
fn slow_client_settings() -> EdgeSettings {
    EdgeSettings {
        idle_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(1),
        ..EdgeSettings::default()
    }
}

/// Uploads that send one byte and stall (one chunked, one with a length): 408 for each client
/// after `idle_timeout` (not 504 after `request_timeout`, which is shorter here), the upload
/// never looks complete to the replica, and the only replica still serves the next client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn medium_a_stalled_upload_is_408_for_its_client_and_the_replica_stays_in() {
    let settings = slow_client_settings();
    let idle = settings.idle_timeout;
    let (edge, recorder) = recorded_edge(Mode::ReadBodyFirst, settings).await;
    let cases = [
        (
            "/stalled-chunked",
            "Transfer-Encoding: chunked\r\n\r\n1\r\nh\r\n",
            te_chunked(),
        ),
        ("/stalled-length", "Content-Length: 10\r\n\r\nh", cl("10")),
    ];
    let mut conns = Vec::new();
    for (path, rest, _) in &cases {
        let mut conn = RawConn::connect(edge.listen).await;
        conn.send(format!("POST {path} HTTP/1.1\r\n{HOST}{rest}").as_bytes())
            .await
            .unwrap();
        conns.push(conn);
    }
    let sent = Instant::now();
    // The edge passed both requests on: the replica is part of these exchanges.
    recorder
        .wait_for("both stalled requests' heads", SEEN_WITHIN, |r| {
            r.len() >= 2
        })
        .await;
    for (conn, (path, _, _)) in conns.iter_mut().zip(&cases) {
        let answer = conn.read_response("POST").await;
        let took = sent.elapsed();
        let answer = answer.unwrap_or_else(|e| panic!("{path}: no answer: {e:?}"));
        assert_eq!(
            answer.status,
            408,
            "{path}, after {took:?}: {}{}",
            answer.head,
            answer.text()
        );
        assert!(
            took >= idle - Duration::from_millis(100) && took < idle + Duration::from_millis(2500),
            "{path}: 408 after {took:?}, with idle_timeout {idle:?}"
        );
        assert!(answer.says_close(), "{path}: {}", answer.head);
        assert!(conn.closed_within(Duration::from_secs(3)).await, "{path}");
    }

    // The replica's side: each cut upload ended with its connection, never made to look whole.
    let requests = recorder
        .wait_for("both stalled uploads ended", SEEN_WITHIN, |r| {
            r.len() >= 2 && r.iter().all(|r| r.error.is_some() || r.complete)
        })
        .await;
    for (path, _, expected) in &cases {
        let cut = recorded(&requests, &format!("POST {path} HTTP/1.1"), &recorder);
        assert!(
            !cut.complete,
            "the replica got a complete body for an upload the client never finished: {cut:?}"
        );
        assert_eq!(&framing(cut), expected, "{:?}", cut.head);
        recorder.wait_ended(cut.conn, SEEN_WITHIN).await;
    }

    // Another client, the same single replica: served, and the replica is still in rotation.
    let mut next = RawConn::connect(edge.listen).await;
    let answer = next.exchange("GET", &get("/after")).await;
    assert_eq!(
        (answer.status, answer.text().as_str()),
        (200, "/after"),
        "{}",
        answer.head
    );
    assert_eq!(answer.header("x-backend"), Some("rec.1"));
    let healthy = upstream_healthy(&edge, "rec.1").await;
    assert!(
        healthy.ends_with(" 1"),
        "the replica was ejected: {healthy}"
    );
    assert_eq!(
        release_errors(&edge).await,
        0,
        "errors counted against the release"
    );
    recorder.wait_requests(3, SEEN_WITHIN).await;
    assert_unmixed(
        &recorder,
        &[&["/stalled-chunked"], &["/stalled-length"], &["/after"]],
    );
}

/// An upload that keeps sending, a byte every 400 ms (under `idle_timeout`) for 2 s (over
/// `request_timeout`), is served whole: the replica is not blamed for the client's pace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn medium_a_slow_upload_that_keeps_sending_is_served() {
    let (edge, recorder) = recorded_edge(Mode::ReadBodyFirst, slow_client_settings()).await;
    let mut slow = RawConn::connect(edge.listen).await;
    slow.send(
        format!("POST /slow HTTP/1.1\r\n{HOST}Transfer-Encoding: chunked\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let started = Instant::now();
    for byte in b"slow!" {
        slow.send(&[b'1', b'\r', b'\n', *byte, b'\r', b'\n'])
            .await
            .unwrap_or_else(|e| panic!("the edge cut the upload off: {e:?}"));
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let answer = ask(&mut slow, "POST", b"0\r\n\r\n").await;
    let took = started.elapsed();
    assert_eq!(
        answer,
        "200 /slow",
        "an upload of {took:?}:\n{}",
        recorder.dump()
    );
    let requests = recorder.wait_requests(1, SEEN_WITHIN).await;
    assert!(requests[0].complete, "{:?}", requests[0]);
    assert_eq!(requests[0].body, b"slow!");
    let healthy = upstream_healthy(&edge, "rec.1").await;
    assert!(
        healthy.ends_with(" 1"),
        "the replica was ejected: {healthy}"
    );
    assert_eq!(
        release_errors(&edge).await,
        0,
        "errors counted against the release"
    );
    assert_eq!(ask(&mut slow, "GET", &get("/after")).await, "200 /after");
    assert_unmixed(&recorder, &[&["/slow"], &["/after"]]);
}

/// A GET with `Content-Length: 5, 5` and its 5 bytes: answered, and the next request too (the
/// old edge sent no body, the replica waited for it, and the 504 ejected the only replica).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn medium_a_get_with_a_list_content_length_is_served_and_so_is_the_next() {
    let settings = EdgeSettings {
        request_timeout: Duration::from_secs(3),
        ..EdgeSettings::default()
    };
    let (edge, recorder) = recorded_edge(Mode::ReadBodyFirst, settings).await;
    let mut conn = RawConn::connect(edge.listen).await;
    let answer = conn
        .exchange(
            "GET",
            format!("GET /get-body HTTP/1.1\r\n{HOST}Content-Length: 5, 5\r\n\r\nhello").as_bytes(),
        )
        .await;
    assert_eq!(
        (answer.status, answer.text().as_str()),
        (200, "/get-body"),
        "{}\n{}",
        answer.head,
        recorder.dump()
    );
    let mut next = RawConn::connect(edge.listen).await;
    let answer = next.exchange("GET", &get("/after")).await;
    assert_eq!(
        (answer.status, answer.text().as_str()),
        (200, "/after"),
        "{}",
        answer.head
    );
    let requests = recorder.wait_requests(2, SEEN_WITHIN).await;
    let with_body = recorded(&requests, "GET /get-body HTTP/1.1", &recorder);
    assert_eq!(framing(with_body), cl("5"), "{:?}", with_body.head);
    assert_eq!(with_body.body, b"hello");
    let healthy = upstream_healthy(&edge, "rec.1").await;
    assert!(
        healthy.ends_with(" 1"),
        "the replica was ejected: {healthy}"
    );
    assert_eq!(
        release_errors(&edge).await,
        0,
        "errors counted against the release"
    );
    assert_unmixed(&recorder, &[&["/get-body", "hello"], &["/after"]]);
}

// ---- LOW: conformance ----

/// Transfer codings the edge cannot pass on faithfully are 501; two `Transfer-Encoding`
/// headers are 400. Nothing of them reaches the replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_codings_other_than_chunked_are_501_and_two_te_headers_400() {
    let (edge, recorder) = recorded_edge(Mode::ReadBodyFirst, EdgeSettings::default()).await;
    refused(
        &edge,
        "Transfer-Encoding: gzip, chunked",
        format!(
            "POST /gzip HTTP/1.1\r\n{HOST}Transfer-Encoding: gzip, chunked\r\n\r\n\
             0\r\n\r\n{SMUGGLED}"
        )
        .as_bytes(),
        501,
    )
    .await;
    refused(
        &edge,
        "Transfer-Encoding: identity, then Transfer-Encoding: chunked",
        format!(
            "POST /two-te HTTP/1.1\r\n{HOST}Transfer-Encoding: identity\r\n\
             Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"
        )
        .as_bytes(),
        400,
    )
    .await;
    only_the_sentinel_reached(&edge, &recorder).await;
}

/// Chunk-size lines ending in a bare LF are read, and the replica gets the body re-chunked
/// with CRLF (the recorder reads chunks strictly); the connection carries on after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_chunk_size_lines_with_a_bare_lf_are_accepted_and_rechunked() {
    let (edge, recorder) = recorded_edge(Mode::ReadBodyFirst, EdgeSettings::default()).await;
    let mut conn = RawConn::connect(edge.listen).await;
    let answer = conn
        .exchange(
            "POST",
            format!(
                "POST /lf HTTP/1.1\r\n{HOST}Transfer-Encoding: chunked\r\n\r\n\
                 5\nhello\r\n6;ext=1\nworld!\r\n0\n\r\n"
            )
            .as_bytes(),
        )
        .await;
    assert_eq!(
        (answer.status, answer.text().as_str()),
        (200, "/lf"),
        "{}\n{}",
        answer.head,
        recorder.dump()
    );
    let next = conn.exchange("GET", &get("/lf-next")).await;
    assert_eq!((next.status, next.text().as_str()), (200, "/lf-next"));

    let requests = recorder.wait_requests(2, SEEN_WITHIN).await;
    let lf = recorded(&requests, "POST /lf HTTP/1.1", &recorder);
    assert_eq!(framing(lf), te_chunked(), "{:?}", lf.head);
    assert!(lf.complete, "not a valid CRLF chunked body: {lf:?}");
    assert_eq!(lf.body, b"helloworld!");
    let wire = &lf.wire_body;
    assert!(
        wire.iter()
            .enumerate()
            .all(|(i, b)| *b != b'\n' || (i > 0 && wire[i - 1] == b'\r')),
        "a bare LF went on to the replica: {:?}",
        String::from_utf8_lossy(wire)
    );
    assert_unmixed(&recorder, &[&["/lf "], &["/lf-next"]]);
}

/// An HTTP/1.1 request names its host exactly once: two `Host` headers or none are 400 (an
/// HTTP/1.0 request may have none).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_http11_needs_exactly_one_host() {
    let (edge, recorder) = recorded_edge(Mode::ReadBodyFirst, EdgeSettings::default()).await;
    refused(
        &edge,
        "two Host headers",
        b"GET /two-hosts HTTP/1.1\r\nHost: app.test\r\nHost: evil.test\r\n\r\n",
        400,
    )
    .await;
    refused(
        &edge,
        "no Host on HTTP/1.1",
        b"GET /no-host HTTP/1.1\r\nAccept: */*\r\n\r\n",
        400,
    )
    .await;
    only_the_sentinel_reached(&edge, &recorder).await;

    let mut conn = RawConn::connect(edge.listen).await;
    let answer = conn
        .exchange("GET", b"GET /http10 HTTP/1.0\r\nAccept: */*\r\n\r\n")
        .await;
    assert_eq!(
        (answer.status, answer.text().as_str()),
        (200, "/http10"),
        "{}",
        answer.head
    );
    recorder.wait_requests(2, SEEN_WITHIN).await;
    assert_unmixed(&recorder, &[&["/sentinel"], &["/http10"]]);
}

/// `Connection: Host` does not strip `Host` (the replica would get an HTTP/1.1 request with
/// none); other headers `Connection` names are still dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_connection_host_keeps_the_host_header() {
    let (edge, recorder) = recorded_edge(Mode::ReadBodyFirst, EdgeSettings::default()).await;
    let mut conn = RawConn::connect(edge.listen).await;
    let answer = conn
        .exchange(
            "GET",
            format!("GET /conn-host HTTP/1.1\r\n{HOST}Connection: Host, X-Hop\r\nX-Hop: 1\r\n\r\n")
                .as_bytes(),
        )
        .await;
    assert_eq!(
        (answer.status, answer.text().as_str()),
        (200, "/conn-host"),
        "{}",
        answer.head
    );
    let requests = recorder.wait_requests(1, SEEN_WITHIN).await;
    let seen = &requests[0];
    assert_eq!(seen.header_all("host"), ["app.test"], "{:?}", seen.head);
    assert_eq!(
        seen.header_all("x-hop"),
        Vec::<String>::new(),
        "{:?}",
        seen.head
    );
}

/// Identical `Content-Length` values, however written, reach the replica as one
/// `content-length: 5` (the old edge forwarded them as received).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_identical_content_lengths_reach_the_replica_as_one() {
    let (edge, recorder) = recorded_edge(Mode::ReadBodyFirst, EdgeSettings::default()).await;
    let cases = [
        ("/two-lines", "Content-Length: 5\r\nContent-Length: 5\r\n"),
        ("/leading-zero", "Content-Length: 05\r\n"),
        ("/list", "Content-Length: 5,5\r\n"),
    ];
    let mut conn = RawConn::connect(edge.listen).await;
    for (path, lengths) in cases {
        let answer = conn
            .exchange(
                "POST",
                format!("POST {path} HTTP/1.1\r\n{HOST}{lengths}\r\nhello").as_bytes(),
            )
            .await;
        assert_eq!(
            (answer.status, answer.text().as_str()),
            (200, path),
            "{}\n{}",
            answer.head,
            recorder.dump()
        );
    }
    let requests = recorder.wait_requests(cases.len(), SEEN_WITHIN).await;
    for (path, _) in cases {
        let seen = recorded(&requests, &format!("POST {path} HTTP/1.1"), &recorder);
        assert_eq!(framing(seen), cl("5"), "{path}: {:?}", seen.head);
        assert_eq!(seen.wire_body, b"hello", "{path}: {seen:?}");
    }
    assert_eq!(requests.len(), cases.len(), "{}", recorder.dump());
    assert_unmixed(
        &recorder,
        &[&["/two-lines"], &["/leading-zero"], &["/list"]],
    );
}

/// `Content-Length` values that disagree or are not numbers, `Transfer-Encoding` beside
/// `Content-Length` or on HTTP/1.0: 400 and a close; nothing of them reaches the replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_disagreeing_or_invalid_lengths_and_misplaced_te_are_400() {
    let (edge, recorder) = recorded_edge(Mode::ReadBodyFirst, EdgeSettings::default()).await;
    let cases = [
        ("two values", "HTTP/1.1", "Content-Length: 5, 6\r\n"),
        (
            "two headers",
            "HTTP/1.1",
            "Content-Length: 5\r\nContent-Length: 6\r\n",
        ),
        ("a sign", "HTTP/1.1", "Content-Length: +5\r\n"),
        ("not a number", "HTTP/1.1", "Content-Length: 5x\r\n"),
        ("an empty item", "HTTP/1.1", "Content-Length: 5,\r\n"),
        (
            "TE and CL",
            "HTTP/1.1",
            "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        ),
        (
            "TE on HTTP/1.0",
            "HTTP/1.0",
            "Transfer-Encoding: chunked\r\n",
        ),
    ];
    for (what, version, framing) in cases {
        refused(
            &edge,
            what,
            format!("POST /refused {version}\r\n{HOST}{framing}\r\n0\r\n\r\n{SMUGGLED}").as_bytes(),
            400,
        )
        .await;
    }
    only_the_sentinel_reached(&edge, &recorder).await;
}

/// A client's `X-Request-Id` is not taken (no client is a trusted proxy by default; the
/// trusted-proxy case is `protocol.rs`'s): the replica gets the edge's own id (one), and the
/// answer names that same id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_a_clients_request_id_is_not_trusted() {
    let (edge, recorder) = recorded_edge(Mode::ReadBodyFirst, EdgeSettings::default()).await;
    let mut conn = RawConn::connect(edge.listen).await;
    let mut ids = Vec::new();
    for path in ["/rid1", "/rid2"] {
        let answer = conn
            .exchange(
                "GET",
                format!("GET {path} HTTP/1.1\r\n{HOST}X-Request-Id: forged\r\n\r\n").as_bytes(),
            )
            .await;
        assert_eq!((answer.status, answer.text().as_str()), (200, path));
        let requests = recorder
            .wait_for(path, SEEN_WITHIN, |r| {
                r.iter()
                    .any(|r| r.request_line() == format!("GET {path} HTTP/1.1"))
            })
            .await;
        let seen = recorded(&requests, &format!("GET {path} HTTP/1.1"), &recorder);
        let sent_on = seen.header_all("x-request-id");
        assert_eq!(sent_on.len(), 1, "{:?}", seen.head);
        let id = sent_on[0].clone();
        assert!(
            !id.is_empty() && !id.contains("forged"),
            "the replica got the client's id: {:?}",
            seen.head
        );
        let answered: Vec<&str> = answer
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("x-request-id"))
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(
            answered,
            [id.as_str()],
            "the answer names another id: {}",
            answer.head
        );
        ids.push(id);
    }
    assert_ne!(ids[0], ids[1], "two requests, one id");
    assert_unmixed(&recorder, &[&["/rid1"], &["/rid2"]]);
}

/// An answer with both `Content-Length: 5` and `Transfer-Encoding: chunked`: read as chunked
/// (the client gets `hello world` whole), and the connection it came on is closed, never used
/// for the next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_an_answer_with_both_framings_is_read_chunked_and_its_connection_closed() {
    let (edge, recorder) = recorded_edge(Mode::ReadBodyFirst, EdgeSettings::default()).await;
    let mut conn = RawConn::connect(edge.listen).await;
    let answer = conn.exchange("GET", &get("/both-framings")).await;
    assert_eq!(answer.status, 200, "{}", answer.head);
    assert_eq!(answer.text(), "hello world", "{}", answer.head);
    assert!(
        answer.header("content-length").is_none_or(|v| v == "11"),
        "{}",
        answer.head
    );
    recorder.wait_ended(0, SEEN_WITHIN).await;

    // The same client connection, hence the same edge worker and its pool.
    let next = conn.exchange("GET", &get("/after-both")).await;
    assert_eq!(
        (next.status, next.text().as_str()),
        (200, "/after-both"),
        "{}",
        next.head
    );
    let requests = recorder.wait_requests(2, SEEN_WITHIN).await;
    assert_eq!(
        recorder.accepted(),
        2,
        "a new connection for the next request:\n{}",
        recorder.dump()
    );
    let after = recorded(&requests, "GET /after-both HTTP/1.1", &recorder);
    assert_eq!(after.conn, 1, "{}", recorder.dump());
    assert_eq!(
        String::from_utf8_lossy(&recorder.stream(0)),
        String::from_utf8_lossy(&requests[0].raw()),
        "nothing else went on the first connection"
    );
    assert_unmixed(&recorder, &[&["/both-framings"], &["/after-both"]]);
}

/// Bytes a replica sends beyond its answer (a body to `HEAD`, more than its `Content-Length`,
/// here a whole second answer) are never read as the answer to the next request: the
/// connection they came on is not used again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answer_bytes_nobody_asked_for_never_answer_the_next_request() {
    let (edge, recorder) = recorded_edge(Mode::ReadBodyFirst, EdgeSettings::default()).await;
    let mut conn = RawConn::connect(edge.listen).await;
    let head = format!("HEAD /head-body HTTP/1.1\r\n{HOST}\r\n");
    let answers = [
        ("200 ", ask(&mut conn, "HEAD", head.as_bytes()).await),
        ("200 /next1", ask(&mut conn, "GET", &get("/next1")).await),
        ("200 hello", ask(&mut conn, "GET", &get("/extra")).await),
        ("200 /next2", ask(&mut conn, "GET", &get("/next2")).await),
    ];
    for (expected, got) in &answers {
        assert_eq!(got, expected, "{answers:?}\n{}", recorder.dump());
    }
    let requests = recorder.wait_requests(4, SEEN_WITHIN).await;
    let on = |line: &str| recorded(&requests, line, &recorder).conn;
    assert_ne!(
        on("HEAD /head-body HTTP/1.1"),
        on("GET /next1 HTTP/1.1"),
        "{}",
        recorder.dump()
    );
    assert_ne!(
        on("GET /extra HTTP/1.1"),
        on("GET /next2 HTTP/1.1"),
        "{}",
        recorder.dump()
    );
    assert_unmixed(
        &recorder,
        &[&["/head-body"], &["/next1"], &["/extra"], &["/next2"]],
    );
}
