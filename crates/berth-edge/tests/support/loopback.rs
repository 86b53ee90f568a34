//! A keep-alive backend on loopback, a routing table to it, and a client request that allocates
//! nothing itself: what the in-process edge tests (`connection_costs.rs`, `idle_timer.rs`) share.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

use berth_model::RoutingTable;

const ANSWER: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-type: text/plain\r\n\r\nok\n";

/// A keep-alive backend on loopback answering every request with `ok\n` (a thread per
/// connection; the edge pools a few).
pub fn backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("backend listener");
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut have = 0;
                loop {
                    match stream.read(&mut buf[have..]) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => have += n,
                    }
                    while let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
                        if stream.write_all(ANSWER).is_err() {
                            return;
                        }
                        buf.copy_within(end + 4..have, 0);
                        have -= end + 4;
                    }
                    if have == buf.len() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// A table routing everything to `backend`, with the keep-alive limit `idle_ms`.
pub fn table(backend: SocketAddr, idle_ms: u64) -> RoutingTable {
    serde_json::from_value(serde_json::json!({
        "version": 1,
        "routes": [{"host": null, "path": "/", "service": "backend", "headers": {}}],
        "services": {"backend": {"balance": "least_outstanding", "sticky": null, "groups": [
            {"release": "*", "weight": 100, "targets": [
                {"replica": "backend.1", "release": "r1", "addr": backend.to_string(), "draining": false}
            ]}
        ]}},
        "settings": {
            "max_body": 67108864, "max_header": 65536,
            "connect_timeout": {"secs": 5, "nanos": 0}, "header_timeout": {"secs": 10, "nanos": 0},
            "idle_timeout": {"secs": idle_ms / 1000, "nanos": (idle_ms % 1000) * 1_000_000}, "request_timeout": {"secs": 60, "nanos": 0},
            "access_log": false,
            "rate_limits": [{"path": "/", "interval": {"secs": 0, "nanos": 150000000}, "burst": 2000}],
            "limit_exempt": ["127.0.0.0/8"],
            "max_connections_per_ip": 256,
            "response_headers": [["x-content-type-options", "nosniff"]]
        }
    }))
    .expect("a routing table")
}

/// One `GET /` on `stream`, its whole answer read (allocating nothing itself, so the count of
/// allocations is the edge's).
pub fn get(stream: &mut TcpStream) {
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: costs-test\r\n\r\n")
        .expect("sending a request");
    let mut answer = [0u8; 2048];
    let mut have = 0;
    loop {
        let n = stream
            .read(&mut answer[have..])
            .expect("reading the answer");
        assert!(n > 0, "the edge closed the connection");
        have += n;
        let got = &answer[..have];
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = &got[..end];
            assert!(
                head.starts_with(b"HTTP/1.1 200 "),
                "answer: {:?}",
                String::from_utf8_lossy(got)
            );
            assert!(
                !head.windows(5).any(|w| w.eq_ignore_ascii_case(b"close")),
                "answer: {:?}",
                String::from_utf8_lossy(got)
            );
            if have >= end + 4 + 3 {
                assert_eq!(&got[end + 4..], b"ok\n");
                return;
            }
        }
    }
}
