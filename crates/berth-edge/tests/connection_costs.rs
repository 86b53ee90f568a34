//! The heap an idle keep-alive client connection holds in the edge, counted in-process.
//!
//! A counting global allocator (this test binary's own) tracks the bytes live on the heap. The
//! edge serves on a worker-like single-threaded runtime (as `run_worker` does), proxying to a
//! small backend on loopback; clients open connections, send one `GET /` each, read the answer
//! and stay open and idle. The bytes that stay live per connection are what 10,000 idle
//! connections cost times 10,000 (less the socket buffers, which the kernel holds). nginx keeps
//! about 330-540 bytes of RSS per idle connection in `bench/edge.sh`; the bound here leaves a
//! little room above what the edge holds today (1.3 KB in a debug build; see `docs/edge.md`,
//! "Memory per connection"), and fails well before the 7.5 KB a connection cost before.
//! The same run counts the allocations of one small proxied request on a warm connection (41
//! today), so a change that adds many to the hot path shows.
//!
//! One test in this binary: the count is process-wide, and a second test running beside it
//! would be counted too.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::TcpStream;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_edge::server::{serve_public, Connections};
use berth_edge::Edge;
use loopback::{backend, get, table};
use tokio::sync::{mpsc, oneshot, watch};

#[path = "support/loopback.rs"]
mod loopback;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static ALLOCATIONS: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is passed on to the system allocator unchanged; only sizes are counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Idle connections measured: enough that per-connection costs dwarf one-off ones.
const CONNECTIONS: usize = 400;
/// Heap bytes an idle plain keep-alive connection may hold.
const BOUND: isize = 1536;
/// Requests counted for the allocations of one.
const REQUESTS: usize = 200;
/// Allocations a proxied request may make (a small `GET` and its small answer).
const MAX_ALLOCATIONS: f64 = 64.0;

/// What the edge's runtime reports when asked: open connections and live heap bytes, read on
/// the edge's own thread between two polls of its tasks (no connection is mid-request then).
type Probe = oneshot::Sender<(usize, isize, isize)>;

#[test]
fn an_idle_keep_alive_connection_holds_little_heap() {
    let backend = backend();
    let edge = Edge::new(table(backend, 60_000), None);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("edge listener");
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(Connections::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let (probe_tx, mut probe_rx) = mpsc::channel::<Probe>(1);
    let worker = {
        let connections = connections.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let serving = tokio::spawn(serve_public(
                    edge,
                    listener,
                    false,
                    connections.clone(),
                    stop_rx,
                ));
                while let Some(probe) = probe_rx.recv().await {
                    let _ = probe.send((
                        connections.open(),
                        LIVE.load(Ordering::Relaxed),
                        ALLOCATIONS.load(Ordering::Relaxed),
                    ));
                }
                let _ = serving.await;
            });
        })
    };
    let probe = || {
        let (tx, rx) = oneshot::channel();
        probe_tx
            .blocking_send(tx)
            .expect("the edge runtime is gone");
        rx.blocking_recv().expect("no answer from the edge runtime")
    };
    // Until the edge has seen `want` connections (accepting is asynchronous).
    let wait_open = |want: usize| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (open, live, _) = probe();
            if open == want {
                return live;
            }
            assert!(
                Instant::now() < deadline,
                "{open} connections open, want {want}"
            );
            std::thread::yield_now();
        }
    };

    // Warm-up: the first requests fill the pools, lazy statics and the metrics' label sets.
    let mut clients = Vec::with_capacity(CONNECTIONS);
    for _ in 0..16 {
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        get(&mut c);
        get(&mut c);
        clients.push(c);
    }
    clients.clear();
    let before = wait_open(0);

    for _ in 0..CONNECTIONS {
        let mut c = TcpStream::connect(addr).expect("connecting to the edge");
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        get(&mut c);
        clients.push(c);
    }
    let idle = wait_open(CONNECTIONS);
    let per_connection = (idle - before) / CONNECTIONS as isize;
    eprintln!(
        "{CONNECTIONS} idle keep-alive connections: {} bytes of heap, {per_connection} per connection",
        idle - before
    );

    // Idle connections still serve (the wait for a request holds no buffer, and must work),
    // and a request on a warm keep-alive connection allocates only so often.
    for c in clients.iter_mut().take(8) {
        get(c);
    }
    let client = &mut clients[0];
    let (_, _, allocations_before) = probe();
    for _ in 0..REQUESTS {
        get(client);
    }
    let (_, _, allocations_after) = probe();
    // The probe's own allocations (a channel per probe) are in the count: a few, over 200.
    let per_request = (allocations_after - allocations_before) as f64 / REQUESTS as f64;
    eprintln!("{per_request:.1} allocations per proxied request (GET /, 3-byte answer)");
    clients.clear();
    wait_open(0);
    let _ = stop_tx.send(true);
    drop(probe_tx);
    worker.join().expect("the edge thread");

    assert!(
        per_request <= MAX_ALLOCATIONS,
        "a proxied request makes {per_request:.1} allocations (bound {MAX_ALLOCATIONS})"
    );
    assert!(
        per_connection <= BOUND,
        "an idle keep-alive connection holds {per_connection} bytes of heap (bound {BOUND})"
    );
}
