use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};

use super::*;
use crate::policy::Freshness;

fn fresh(ttl: u64) -> Freshness {
    Freshness {
        ttl: Duration::from_secs(ttl),
        initial_age: Duration::ZERO,
        stale_while_revalidate: Duration::ZERO,
        stale_if_error: Duration::from_secs(10),
    }
}

fn object(body: &[u8], service: &str, path: &str, headers: &[(&str, &str)]) -> Object {
    let mut map = HeaderMap::new();
    for (n, v) in headers {
        map.append(
            HeaderName::from_bytes(n.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    Object::new(
        200,
        map,
        Bytes::copy_from_slice(body),
        service,
        path,
        fresh(60),
        Instant::now(),
    )
}

fn request(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (n, v) in pairs {
        map.append(
            HeaderName::from_bytes(n.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    map
}

#[test]
fn stored_answers_are_found_by_key() {
    let store = Store::new(1 << 20, 64 << 10);
    let none = HeaderMap::new();
    assert!(store.lookup("k", &none, Instant::now()).1.is_none());
    store.insert("k", &none, object(b"hello", "web", "/x", &[]));
    let (key, found) = store.lookup("k", &none, Instant::now());
    assert_eq!(key, "k");
    assert_eq!(&found.unwrap().body[..], b"hello");
    assert_eq!(store.usage().0, 1);
}

#[test]
fn the_byte_cap_holds() {
    let store = Store::new(1 << 20, 64 << 10);
    let none = HeaderMap::new();
    let body = vec![b'x'; 16 << 10];
    for i in 0..1000 {
        store.insert(&format!("k{i}"), &none, object(&body, "web", "/x", &[]));
    }
    let (entries, bytes) = store.usage();
    assert!(bytes <= 1 << 20, "{bytes} bytes in {entries} entries");
    assert!(entries > 10 && entries < 100, "{entries}");
}

#[test]
fn objects_over_max_object_are_not_stored() {
    let store = Store::new(1 << 20, 1024);
    let none = HeaderMap::new();
    assert!(store
        .insert("big", &none, object(&[0; 1025], "web", "/x", &[]))
        .is_none());
    assert!(store.lookup("big", &none, Instant::now()).1.is_none());
    assert!(store
        .insert("small", &none, object(&[0; 1024], "web", "/x", &[]))
        .is_some());
}

#[test]
fn the_largest_allowed_object_fits_whatever_the_shards() {
    // max_object at half of max_size must still be storable.
    let store = Store::new(16 << 20, 8 << 20);
    let none = HeaderMap::new();
    store.insert("big", &none, object(&vec![0; 8 << 20], "web", "/x", &[]));
    assert!(store.lookup("big", &none, Instant::now()).1.is_some());
}

#[test]
fn variants_are_kept_apart() {
    let store = Store::new(1 << 20, 64 << 10);
    let fr = request(&[("accept-language", "fr")]);
    let en = request(&[("accept-language", "en")]);
    store.insert(
        "k",
        &fr,
        object(b"bonjour", "web", "/", &[("vary", "Accept-Language")]),
    );
    store.insert(
        "k",
        &en,
        object(b"hello", "web", "/", &[("vary", "Accept-Language")]),
    );
    let now = Instant::now();
    assert_eq!(&store.lookup("k", &fr, now).1.unwrap().body[..], b"bonjour");
    assert_eq!(&store.lookup("k", &en, now).1.unwrap().body[..], b"hello");
    assert!(store
        .lookup("k", &request(&[("accept-language", "de")]), now)
        .1
        .is_none());
}

#[test]
fn accept_encoding_variants_are_normalised() {
    let store = Store::new(1 << 20, 64 << 10);
    let chrome = request(&[("accept-encoding", "gzip, deflate, br, zstd")]);
    let firefox = request(&[("accept-encoding", "gzip, deflate, br")]);
    let curl = request(&[("accept-encoding", "gzip")]);
    store.insert(
        "k",
        &firefox,
        object(b"br!", "web", "/", &[("vary", "accept-encoding")]),
    );
    let now = Instant::now();
    assert!(store.lookup("k", &firefox, now).1.is_some());
    assert!(store
        .lookup("k", &request(&[("accept-encoding", "br")]), now)
        .1
        .is_some());
    assert!(store.lookup("k", &chrome, now).1.is_some());
    assert!(store.lookup("k", &curl, now).1.is_none());
}

#[test]
fn invalidation_orphans_every_variant() {
    let store = Store::new(1 << 20, 64 << 10);
    let fr = request(&[("accept-language", "fr")]);
    store.insert(
        "k",
        &fr,
        object(b"bonjour", "web", "/", &[("vary", "accept-language")]),
    );
    store.invalidate("k");
    assert!(store.lookup("k", &fr, Instant::now()).1.is_none());
    // A new answer with the same Vary gets a new marker: the old variant stays unreachable.
    let en = request(&[("accept-language", "en")]);
    store.insert(
        "k",
        &en,
        object(b"hello", "web", "/", &[("vary", "accept-language")]),
    );
    assert!(store.lookup("k", &fr, Instant::now()).1.is_none());
}

#[test]
fn purges_by_service_and_prefix() {
    let store = Store::new(1 << 20, 64 << 10);
    let none = HeaderMap::new();
    store.insert("a", &none, object(b"1", "web", "/img/a.png", &[]));
    store.insert("b", &none, object(b"2", "web", "/css/b.css", &[]));
    store.insert("c", &none, object(b"3", "api", "/img/c.png", &[]));
    assert_eq!(store.purge(Some("web"), Some("/img/")), 1);
    let now = Instant::now();
    assert!(store.lookup("a", &none, now).1.is_none());
    assert!(store.lookup("b", &none, now).1.is_some());
    assert!(store.lookup("c", &none, now).1.is_some());
    assert_eq!(store.purge(Some("api"), None), 1);
    assert_eq!(store.purge(None, None), 1);
    assert_eq!(store.usage().0, 0);
}

#[test]
fn expired_objects_without_validators_are_dropped_on_lookup() {
    let store = Store::new(1 << 20, 64 << 10);
    let none = HeaderMap::new();
    let long_ago = Instant::now() - Duration::from_secs(3600);
    let mut old = object(b"x", "web", "/", &[]);
    old.stored_at = long_ago;
    store.insert("k", &none, old);
    assert!(store.lookup("k", &none, Instant::now()).1.is_none());
    // With an ETag it is kept, to be revalidated.
    let mut tagged = object(b"x", "web", "/", &[("etag", "\"1\"")]);
    tagged.stored_at = long_ago;
    store.insert("t", &none, tagged);
    let found = store.lookup("t", &none, Instant::now()).1.unwrap();
    assert_eq!(found.state(Instant::now()), State::Expired);
}

#[test]
fn one_refresh_at_a_time() {
    let o = object(b"x", "web", "/", &[]);
    assert!(o.claim_refresh());
    assert!(!o.claim_refresh());
    o.release_refresh();
    assert!(o.claim_refresh());
}

#[tokio::test(flavor = "current_thread")]
async fn concurrent_misses_make_one_fetch() {
    let store = Arc::new(Store::new(1 << 20, 64 << 10));
    let fetches = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let store = store.clone();
        let fetches = fetches.clone();
        tasks.push(tokio::spawn(async move {
            let none = HeaderMap::new();
            let (key, found) = store.lookup("k", &none, Instant::now());
            if let Some(found) = found {
                return found.body.clone();
            }
            match store.join(&key) {
                Flight::Leader(guard) => {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    // The replica takes a while.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let stored = store
                        .insert("k", &none, object(b"answer", "web", "/", &[]))
                        .unwrap();
                    drop(guard);
                    stored.body.clone()
                }
                Flight::Follower(done) => {
                    assert!(follow(done, Duration::from_secs(5)).await);
                    store
                        .lookup("k", &none, Instant::now())
                        .1
                        .unwrap()
                        .body
                        .clone()
                }
            }
        }));
    }
    for task in tasks {
        assert_eq!(&task.await.unwrap()[..], b"answer");
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn followers_wait_a_bounded_time_and_a_dropped_leader_frees_them() {
    let store = Store::new(1 << 20, 64 << 10);
    let guard = match store.join("k") {
        Flight::Leader(g) => g,
        Flight::Follower(_) => panic!("first is the leader"),
    };
    let Flight::Follower(done) = store.join("k") else {
        panic!("second follows");
    };
    let started = Instant::now();
    assert!(!follow(done.clone(), Duration::from_millis(50)).await);
    assert!(started.elapsed() < Duration::from_secs(2));
    drop(guard);
    assert!(follow(done, Duration::from_secs(5)).await);
    // The line is free again: the next request leads.
    assert!(matches!(store.join("k"), Flight::Leader(_)));
}

#[test]
fn a_variant_in_a_coding_the_client_does_not_take_is_a_miss() {
    // The application compressed with gzip for a "br, gzip" client; a "br"-only client keys
    // alike (both pick br) but must not get gzip.
    let store = Store::new(1 << 20, 64 << 10);
    let both = request(&[("accept-encoding", "br, gzip")]);
    let br = request(&[("accept-encoding", "br")]);
    store.insert(
        "k",
        &both,
        object(
            b"gz",
            "web",
            "/",
            &[("vary", "accept-encoding"), ("content-encoding", "gzip")],
        ),
    );
    assert!(store.lookup("k", &both, Instant::now()).1.is_some());
    assert!(store.lookup("k", &br, Instant::now()).1.is_none());
}

#[test]
fn a_coding_that_does_not_fit_the_variant_is_never_stored() {
    let store = Store::new(1 << 20, 1 << 16);
    let gzip = [("content-encoding", "gzip"), ("vary", "Accept-Encoding")];
    // A replica that ignores q-values, or reads x-gzip as gzip: the request's variant is
    // identity, the body gzip.
    for ae in ["gzip;q=0", "x-gzip", "gzip;q=0, identity", ""] {
        let req = request(&[("accept-encoding", ae)]);
        assert!(
            store
                .insert("k", &req, object(b"z", "web", "/a", &gzip))
                .is_none(),
            "{ae:?}"
        );
        assert!(
            store.lookup("k", &req, Instant::now()).1.is_none(),
            "{ae:?}"
        );
    }
    // A coding the request takes, in a compressed variant, or identity: stored.
    let req = request(&[("accept-encoding", "gzip")]);
    assert!(store
        .insert("k", &req, object(b"z", "web", "/a", &gzip))
        .is_some());
    let br = request(&[("accept-encoding", "gzip, br")]);
    assert!(store
        .insert("k", &br, object(b"z", "web", "/a", &gzip))
        .is_some());
    assert!(store
        .insert(
            "k",
            &br,
            object(b"p", "web", "/a", &[("vary", "Accept-Encoding")])
        )
        .is_some());
    // Keys with Accept-Encoding as sent (another compressor order): still only a coding the
    // request takes.
    let mut exact = Store::new(1 << 20, 1 << 16);
    exact.keep_exact(&http::header::ACCEPT_ENCODING);
    let q0 = request(&[("accept-encoding", "gzip;q=0")]);
    assert!(exact
        .insert("k", &q0, object(b"z", "web", "/a", &gzip))
        .is_none());
    assert!(exact
        .insert("k", &br, object(b"z", "web", "/a", &gzip))
        .is_some());
}

#[test]
fn fills_share_a_budget_of_bytes_given_back_on_drop() {
    let mut store = Store::new(64 << 20, 8 << 20);
    assert_eq!(store.fill_budget(), 16 << 20, "a quarter of max_size");
    assert_eq!(
        Store::default_fill_budget(4 << 20, 2 << 20),
        2 << 20,
        "at least max_object"
    );
    store.set_fill_budget(100_000);
    let mut first = FillPermit::default();
    assert!(store.reserve_fill(&mut first, 30_000));
    assert!(store.reserve_fill(&mut first, 30_000));
    assert_eq!(first.bytes(), 60_000);
    let mut second = FillPermit::default();
    assert!(store.reserve_fill(&mut second, 40_000));
    // Spent: a third fill (and the others' growth) is refused, the permits unchanged.
    let mut third = FillPermit::default();
    assert!(!store.reserve_fill(&mut third, 1));
    assert!(!store.reserve_fill(&mut first, 1));
    assert_eq!((first.bytes(), third.bytes()), (60_000, 0));
    assert_eq!(store.stats.over_budget.load(Ordering::Relaxed), 2);
    // More than the budget can ever give: refused without waiting.
    assert!(!store.reserve_fill(&mut third, u64::MAX));
    drop(first);
    assert!(store.reserve_fill(&mut third, 60_000));
}

#[test]
fn a_fill_that_started_before_a_purge_of_its_service_does_not_store() {
    let store = Store::new(1 << 20, 64 * 1024);
    let req = HeaderMap::new();
    let api = store.generation("api");
    let web = store.generation("web");
    store.purge(Some("web"), None);
    // Another service's purge does not matter; this one's does.
    assert!(store
        .insert_since(api, "k1", &req, object(b"a", "api", "/a", &[]))
        .is_some());
    assert!(store
        .insert_since(web, "k2", &req, object(b"w", "web", "/w", &[]))
        .is_none());
    assert!(store.lookup("k2", &req, Instant::now()).1.is_none());
    // A purge of every service counts for each; a fill noted after it stores.
    let api = store.generation("api");
    store.purge(None, Some("/other"));
    assert!(store
        .insert_since(api, "k3", &req, object(b"b", "api", "/b", &[]))
        .is_none());
    let api = store.generation("api");
    assert!(store
        .insert_since(api, "k3", &req, object(b"b", "api", "/b", &[]))
        .is_some());
    assert!(store.lookup("k3", &req, Instant::now()).1.is_some());
}
