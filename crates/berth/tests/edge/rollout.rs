//! What a deploy needs from the edge: the private test route to a release without weight, the
//! release-affinity cookie during a split, and per-release counters in which failures count
//! against the release that failed.

use berth_edge::ControlRequest;
use berth_spec::Balance;
use bytes::Bytes;
use hyper::Method;

use crate::backend::Backend;
use crate::harness::*;

fn split(
    old: &Backend,
    new: &Backend,
    old_weight: u32,
    new_weight: u32,
) -> berth_model::routing::ServicePool {
    berth_model::routing::ServicePool {
        balance: Balance::RoundRobin,
        sticky: None,
        groups: vec![
            group("r1", old_weight, vec![target(old, "r1")]),
            group("r2", new_weight, vec![target(new, "r2")]),
        ],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_route_reaches_a_release_without_weight_only_with_the_key() {
    let edge = EdgeProcess::start().await;
    let old = Backend::start("web.1").await;
    let new = Backend::start("web.2").await;
    edge.push(&one_service(1, "web", split(&old, &new, 100, 0)))
        .await;

    let keyed = [("x-berth-release", "r2"), ("x-berth-test-key", TEST_KEY)];
    for _ in 0..10 {
        let reply = edge
            .send(
                Method::GET,
                "app.test",
                "/echo-headers",
                &keyed,
                Bytes::new(),
            )
            .await;
        assert_eq!(reply.status.as_u16(), 200);
        assert_eq!(reply.backend(), "web.2");
        // The test-route headers are not passed on to the app.
        let seen = reply.text();
        assert!(!seen.contains("x-berth-test-key"), "{seen}");
        assert!(!seen.contains(TEST_KEY), "{seen}");
    }
    // A wrong key, or none, is an ordinary request: weights decide.
    let wrong = [("x-berth-release", "r2"), ("x-berth-test-key", "nope")];
    for headers in [&wrong[..], &keyed[..1]] {
        for _ in 0..10 {
            let reply = edge
                .send(Method::GET, "app.test", "/", headers, Bytes::new())
                .await;
            assert_eq!(reply.backend(), "web.1");
        }
    }
    // Users never reach the weightless release.
    let counts = spread(&edge, "app.test", "/", 100, 4).await;
    assert_eq!(counts.get("web.2"), None, "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_stays_on_the_release_it_landed_on_while_traffic_is_split() {
    let edge = EdgeProcess::start().await;
    let old = Backend::start("web.1").await;
    let new = Backend::start("web.2").await;
    edge.push(&one_service(1, "web", split(&old, &new, 50, 50)))
        .await;

    let mut landed = std::collections::BTreeMap::new();
    for _ in 0..20 {
        let first = edge.get("app.test", "/").await;
        let cookie = first
            .header_all("set-cookie")
            .into_iter()
            .find(|c| c.starts_with("berth-release-web="))
            .expect("an affinity cookie while traffic is split");
        let pair = cookie.split(';').next().unwrap().to_string();
        let backend = first.backend();
        *landed.entry(backend.clone()).or_insert(0) += 1;
        for _ in 0..10 {
            let reply = edge
                .send(
                    Method::GET,
                    "app.test",
                    "/",
                    &[("cookie", &pair)],
                    Bytes::new(),
                )
                .await;
            assert_eq!(reply.backend(), backend, "{pair} moved");
        }
    }
    assert_eq!(
        landed.len(),
        2,
        "both releases took new clients: {landed:?}"
    );

    // Rolled back: the new release has no weight, so its clients move back, and no cookie is
    // set once traffic is no longer split.
    edge.push(&one_service(2, "web", split(&old, &new, 100, 0)))
        .await;
    for _ in 0..10 {
        let reply = edge
            .send(
                Method::GET,
                "app.test",
                "/",
                &[("cookie", "berth-release-web=r2")],
                Bytes::new(),
            )
            .await;
        assert_eq!(reply.backend(), "web.1");
        assert!(reply
            .header_all("set-cookie")
            .iter()
            .all(|c| !c.starts_with("berth-release-web=")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_count_against_the_release_that_failed() {
    let edge = EdgeProcess::start().await;
    let old = Backend::start("web.1").await;
    let new = Backend::start("web.2").await;
    edge.push(&one_service(1, "web", split(&old, &new, 0, 100)))
        .await;
    for _ in 0..8 {
        edge.get("app.test", "/").await;
    }
    for _ in 0..4 {
        assert_eq!(edge.get("app.test", "/fail").await.status.as_u16(), 500);
    }
    // The new release's replica goes away: a POST that cannot connect would be sent to
    // another replica, but the old release has weight 0 (a retry stays within the weights), so
    // it gets the edge's 502, and it counts against r2 too.
    let gone = new.addr;
    drop(new);
    let dead = berth_model::routing::Target {
        replica: "web.2".into(),
        release: "r2".into(),
        addr: gone,
        draining: false,
    };
    let pool = berth_model::routing::ServicePool {
        balance: Balance::RoundRobin,
        sticky: None,
        groups: vec![
            group("r1", 0, vec![target(&old, "r1")]),
            group("r2", 100, vec![dead]),
        ],
    };
    edge.push(&one_service(2, "web", pool)).await;
    let reply = edge
        .send(Method::POST, "app.test", "/", &[], Bytes::from_static(b"x"))
        .await;
    assert_eq!(reply.status.as_u16(), 502);

    let answer = edge
        .call(&ControlRequest::Traffic {
            service: Some("web".into()),
        })
        .await;
    let r2 = answer
        .traffic
        .iter()
        .find(|t| t.release == "r2")
        .unwrap_or_else(|| panic!("no r2 in {:?}", answer.traffic));
    assert_eq!(r2.requests, 13, "{r2:?}");
    assert_eq!(r2.errors, 5, "{r2:?}");
    assert_eq!(r2.latency.iter().sum::<u64>(), 13);
    assert!(answer
        .traffic
        .iter()
        .all(|t| t.release != "r1" || t.requests == 0));
}
