//! The keep-alive limit of a client connection (`idle_timeout`), counted from the end of its
//! last request: the edge keeps one timer per connection and re-arms it lazily (a request only
//! notes when it ended), so a connection busy more often than the limit must stay open however
//! long it lives, and one that stops must be closed once the limit has passed, not before.

#[path = "support/loopback.rs"]
mod loopback;

use std::io::Read;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_edge::server::{serve_public, Connections};
use berth_edge::Edge;
use loopback::{backend, get, table};
use tokio::sync::watch;

const IDLE_MS: u64 = 400;

#[test]
fn a_connection_closes_idle_timeout_after_its_last_request_however_long_it_lived() {
    let edge = Edge::new(table(backend(), IDLE_MS), None);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("edge listener");
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = watch::channel(false);
    let worker = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let connections = Arc::new(Connections::default());
            serve_public(edge, listener, false, connections, stop_rx).await;
        });
    });

    let mut client = TcpStream::connect(addr).expect("connecting to the edge");
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let opened = Instant::now();
    get(&mut client);
    // Requests 150 ms apart (under the limit) for well over the limit in all: still served.
    // (The pacing is the point of the test, so these waits are fixed.)
    while opened.elapsed() < Duration::from_millis(3 * IDLE_MS) {
        std::thread::sleep(Duration::from_millis(150));
        get(&mut client);
    }
    let last = Instant::now();
    let mut byte = [0u8; 1];
    let read = client.read(&mut byte);
    let idle = last.elapsed();
    assert!(
        matches!(read, Ok(0)),
        "the edge should close an idle connection, read gave {read:?} after {idle:?}"
    );
    assert!(
        idle >= Duration::from_millis(IDLE_MS - 50),
        "closed after {idle:?} idle, before the {IDLE_MS} ms limit"
    );
    assert!(
        idle <= Duration::from_millis(IDLE_MS + 1500),
        "closed only after {idle:?} idle (limit {IDLE_MS} ms)"
    );

    let _ = stop_tx.send(true);
    worker.join().expect("the edge thread");
}
