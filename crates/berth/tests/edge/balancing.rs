//! Which replica gets a request: round robin, least outstanding, release weights, stickiness.

use std::time::Duration;

use berth_spec::Balance;
use bytes::Bytes;
use hyper::{Method, StatusCode};

use crate::backend::Backend;
use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_requests_evenly() {
    let edge = EdgeProcess::start().await;
    let backends = [
        Backend::start("web.1").await,
        Backend::start("web.2").await,
        Backend::start("web.3").await,
    ];
    let targets = backends.iter().map(|b| target(b, "r1")).collect();
    edge.push(&one_service(1, "web", pool(Balance::RoundRobin, targets)))
        .await;

    let counts = spread(&edge, "app.test", "/", 300, 4).await;
    for b in &backends {
        let n = counts.get(&b.name).copied().unwrap_or(0);
        assert!(
            (95..=105).contains(&n),
            "{} got {n} of 300 requests: {counts:?}",
            b.name
        );
        assert_eq!(b.hits(), n, "{} counted {} hits", b.name, b.hits());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_outstanding_avoids_the_busy_replica() {
    let edge = EdgeProcess::start().await;
    let a = Backend::start("web.1").await;
    let b = Backend::start("web.2").await;
    // A alone first, so that the slow requests all land on it.
    edge.push(&one_service(
        1,
        "web",
        pool(Balance::LeastOutstanding, vec![target(&a, "r1")]),
    ))
    .await;
    let mut slow = Vec::new();
    for _ in 0..5 {
        let http = edge.http.clone();
        let url = edge.url("/?ms=2500");
        slow.push(tokio::spawn(async move {
            http.send(build_request(
                &url,
                Method::GET,
                "app.test",
                &[],
                Bytes::new(),
            ))
            .await
        }));
    }
    edge.wait_in_flight("web.1", 5, Duration::from_secs(5))
        .await;

    // Same replica (same stats), now with an idle peer listed after it.
    edge.push(&one_service(
        2,
        "web",
        pool(
            Balance::LeastOutstanding,
            vec![target(&a, "r1"), target(&b, "r1")],
        ),
    ))
    .await;
    assert_eq!(edge.in_flight().await.get("web.1"), Some(&5));
    for i in 0..20 {
        let reply = edge.get("app.test", "/").await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(
            reply.backend(),
            "web.2",
            "request {i} went to the replica with 5 in flight"
        );
    }
    for task in slow {
        let reply = task.await.unwrap();
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.backend(), "web.1");
    }
    // Once A is idle again, it takes its share.
    edge.wait_in_flight("web.1", 0, Duration::from_secs(3))
        .await;
    let counts = spread(&edge, "app.test", "/", 20, 1).await;
    assert!(
        counts.get("web.1").copied().unwrap_or(0) >= 5,
        "idle A got too little: {counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_weights_split_traffic_and_a_new_table_moves_it_at_once() {
    let edge = EdgeProcess::start().await;
    let old = Backend::start("web.1").await;
    let new = Backend::start("web.2").await;
    let weighted = |version, w1, w2| {
        one_service(
            version,
            "web",
            berth_model::routing::ServicePool {
                balance: Balance::LeastOutstanding,
                sticky: None,
                groups: vec![
                    group("r1", w1, vec![target(&old, "r1")]),
                    group("r2", w2, vec![target(&new, "r2")]),
                ],
            },
        )
    };
    edge.push(&weighted(1, 90, 10)).await;
    let counts = spread(&edge, "app.test", "/", 1000, 4).await;
    let to_new = counts.get("web.2").copied().unwrap_or(0);
    assert_eq!(counts.values().sum::<usize>(), 1000);
    assert!(
        (70..=130).contains(&to_new),
        "r2 (weight 10) got {to_new} of 1000: {counts:?}"
    );

    edge.push(&weighted(2, 0, 100)).await;
    let counts = spread(&edge, "app.test", "/", 100, 4).await;
    assert_eq!(
        counts.get("web.2").copied(),
        Some(100),
        "after 0/100 every request must go to r2: {counts:?}"
    );

    // An older table is ignored: the edge keeps version 2 and its weights.
    let answer = edge
        .call(&berth_edge::ControlRequest::Table {
            table: Box::new(weighted(1, 100, 0)),
        })
        .await;
    assert_eq!(answer.version, 2, "an older table replaced a newer one");
    let counts = spread(&edge, "app.test", "/", 40, 2).await;
    assert_eq!(counts.get("web.2").copied(), Some(40), "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_sessions_follow_the_app_cookie_until_the_replica_drains() {
    let edge = EdgeProcess::start().await;
    let backends = [
        Backend::start("shop.1").await,
        Backend::start("shop.2").await,
    ];
    let targets = |drain: Option<&str>| {
        backends
            .iter()
            .map(|b| {
                if Some(b.name.as_str()) == drain {
                    draining(b, "r1")
                } else {
                    target(b, "r1")
                }
            })
            .collect::<Vec<_>>()
    };
    edge.push(&one_service(
        1,
        "shop",
        sticky_pool(targets(None), "PrestaShopSession", 86400),
    ))
    .await;

    // Without the application cookie there is no stickiness cookie, and requests spread.
    let plain = edge.get("shop.test", "/").await;
    assert!(
        plain
            .header_all("set-cookie")
            .iter()
            .all(|c| !c.starts_with("berth-sticky-")),
        "{:?}",
        plain.headers
    );
    let spread_counts = spread(&edge, "shop.test", "/", 20, 1).await;
    assert_eq!(
        spread_counts.len(),
        2,
        "without a cookie: {spread_counts:?}"
    );

    // The app sets its cookie: the edge adds its own naming that replica.
    let first = edge.get("shop.test", "/set-cookie").await;
    assert_eq!(first.status, StatusCode::OK);
    let x = first.backend();
    let cookies = first.header_all("set-cookie");
    assert!(
        cookies.iter().any(|c| c.starts_with("PrestaShopSession=")),
        "the app cookie is passed on: {cookies:?}"
    );
    let sticky = cookies
        .iter()
        .find(|c| c.starts_with("berth-sticky-shop="))
        .unwrap_or_else(|| panic!("no berth-sticky-shop cookie in {cookies:?}"));
    let value = sticky
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("berth-sticky-shop=");
    assert_eq!(
        value, x,
        "the sticky cookie names the replica that answered"
    );
    assert!(sticky.contains("Max-Age=86400"), "{sticky}");

    let cookie = format!("PrestaShopSession=sess-{x}; berth-sticky-shop={value}");
    for i in 0..20 {
        let reply = edge
            .send(
                Method::GET,
                "shop.test",
                "/",
                &[("cookie", &cookie)],
                Bytes::new(),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.backend(), x, "sticky request {i} left {x}");
    }

    // X drains: the same client now goes elsewhere, without errors.
    edge.push(&one_service(
        2,
        "shop",
        sticky_pool(targets(Some(&x)), "PrestaShopSession", 86400),
    ))
    .await;
    for i in 0..20 {
        let reply = edge
            .send(
                Method::GET,
                "shop.test",
                "/",
                &[("cookie", &cookie)],
                Bytes::new(),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_ne!(reply.backend(), x, "request {i} went to draining {x}");
    }
}
