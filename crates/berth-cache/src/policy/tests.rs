use std::time::{Duration, SystemTime};

use berth_spec::{CacheQuery, CacheRuleSpec, CacheSpec};
use http::{HeaderMap, HeaderValue, Method};

use super::*;

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

fn rule() -> Rule {
    Rule::new(&CacheRuleSpec {
        path: "/*".into(),
        default_ttl: Duration::from_secs(60),
        min_ttl: Duration::ZERO,
        max_ttl: Duration::from_secs(3600),
        ..Default::default()
    })
}

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

/// `storable` for a 200 arriving at `at(0)` for a request sent at `at(0)`.
fn store(
    rule: &Rule,
    request: &[(&str, &str)],
    response: &[(&str, &str)],
) -> Result<Freshness, Skip> {
    storable(
        rule,
        &headers(request),
        200,
        &headers(response),
        at(0),
        at(0),
    )
}

fn ttl(response: &[(&str, &str)]) -> Result<u64, Skip> {
    store(&rule(), &[], response).map(|f| f.ttl.as_secs())
}

#[test]
fn patterns_match_like_cloudfront() {
    let p = Pattern::new("/img/*");
    assert!(p.matches("/img/a.png"));
    assert!(p.matches("/img/a/b/c.png"));
    assert!(p.matches("/img/"));
    assert!(!p.matches("/img"));
    assert!(!p.matches("/images/a.png"));
    assert!(Pattern::new("/admin*").matches("/admin"));
    assert!(Pattern::new("/admin*").matches("/admin/users"));
    assert!(Pattern::new("/admin*").matches("/administrator"));
    assert!(!Pattern::new("/admin*").matches("/ADMIN"));
    assert!(Pattern::new("*.css").matches("/a/b/site.css"));
    assert!(!Pattern::new("*.css").matches("/a/b/site.css.map"));
    assert!(Pattern::new("/a?c").matches("/abc"));
    assert!(!Pattern::new("/a?c").matches("/ac"));
    assert!(Pattern::new("/cart").matches("/cart"));
    assert!(!Pattern::new("/cart").matches("/cart/1"));
    assert!(Pattern::new("/*/x/*.js").matches("/a/x/b/c.js"));
    assert!(Pattern::new("*").matches("/anything"));
}

#[test]
fn a_pathological_pattern_is_still_quick() {
    let p = Pattern::new("/*a*a*a*b");
    let path = format!("/{}", "a".repeat(20_000));
    let started = std::time::Instant::now();
    assert!(!p.matches(&path));
    assert!(started.elapsed() < Duration::from_secs(2));
}

fn rules(specs: &[(&str, u64)]) -> Rules {
    Rules::new(&CacheSpec {
        rules: specs
            .iter()
            .map(|(path, max)| CacheRuleSpec {
                path: path.to_string(),
                max_ttl: Duration::from_secs(*max),
                default_ttl: Duration::from_secs((*max).min(60)),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    })
}

#[test]
fn the_first_matching_rule_applies() {
    let rules = rules(&[("/img/*", 100), ("*.png", 200)]);
    assert_eq!(rules.select("/img/a.png").unwrap().spec.path, "/img/*");
    assert_eq!(rules.select("/x/a.png").unwrap().spec.path, "*.png");
    assert!(rules.select("/x/a.txt").is_none());
}

#[test]
fn never_rules_win_wherever_they_are_written() {
    // Cache deception: a long rule first cannot make an account page stored.
    let rules = rules(&[("*.css", 31_536_000), ("/account*", 0)]);
    assert!(rules.select("/account/x.css").is_none());
    assert!(rules.select("/static/x.css").is_some());
}

#[test]
fn the_references_rules() {
    let rules = Rules::new(&CacheSpec::default());
    for never in [
        "/admin",
        "/admin/x.css",
        "/cart",
        "/order/1",
        "/my-account",
        "/my-account/a.png",
    ] {
        assert!(rules.select(never).is_none(), "{never}");
    }
    let img = rules.select("/img/p/1.jpg").unwrap();
    assert_eq!(img.spec.path, "/img/*");
    assert_eq!(img.spec.default_ttl, Duration::from_secs(86_400));
    let css = rules.select("/themes/site.css").unwrap();
    assert_eq!(css.spec.default_ttl, Duration::from_secs(31_536_000));
    assert!(rules.select("/").is_none());
}

#[test]
fn only_get_and_head_use_the_cache() {
    let r = rule();
    let none = HeaderMap::new();
    assert_eq!(request_allowed(&r, &Method::GET, &none), Ok(()));
    assert_eq!(request_allowed(&r, &Method::HEAD, &none), Ok(()));
    for m in [
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
    ] {
        assert_eq!(request_allowed(&r, &m, &none), Err(Skip::Method), "{m}");
    }
}

#[test]
fn authorization_bypasses_unless_the_rule_allows_it() {
    let auth = headers(&[("authorization", "Bearer x")]);
    assert_eq!(
        request_allowed(&rule(), &Method::GET, &auth),
        Err(Skip::Authorization)
    );
    let mut allowing = rule();
    allowing.spec.authorization = true;
    assert_eq!(request_allowed(&allowing, &Method::GET, &auth), Ok(()));
    assert_eq!(
        store(&rule(), &[("authorization", "Bearer x")], &[]),
        Err(Skip::Authorization)
    );
    assert!(store(&allowing, &[("authorization", "Bearer x")], &[]).is_ok());
}

#[test]
fn range_requests_bypass() {
    assert_eq!(
        request_allowed(&rule(), &Method::GET, &headers(&[("range", "bytes=0-1")])),
        Err(Skip::Range)
    );
}

#[test]
fn unsafe_methods_invalidate() {
    for m in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
        assert!(invalidates(&m), "{m}");
    }
    for m in [Method::GET, Method::HEAD, Method::OPTIONS] {
        assert!(!invalidates(&m), "{m}");
    }
}

#[test]
fn cache_control_is_parsed() {
    let cc = CacheControl::parse(&headers(&[
        ("cache-control", "Public, MAX-AGE=60, s-maxage=\"30\""),
        (
            "cache-control",
            "must-revalidate, stale-if-error=5, stale-while-revalidate=7",
        ),
    ]));
    assert!(cc.public && cc.must_revalidate && !cc.private && !cc.no_store);
    assert_eq!(cc.max_age, Some(60));
    assert_eq!(cc.s_maxage, Some(30));
    assert_eq!(cc.stale_if_error, Some(5));
    assert_eq!(cc.stale_while_revalidate, Some(7));
    // Twice: the smaller value; garbage: 0.
    let cc = CacheControl::parse(&headers(&[("cache-control", "max-age=60, max-age=10")]));
    assert_eq!(cc.max_age, Some(10));
    let cc = CacheControl::parse(&headers(&[("cache-control", "max-age=soon")]));
    assert_eq!(cc.max_age, Some(0));
}

#[test]
fn no_store_private_and_no_cache_are_never_stored() {
    assert_eq!(ttl(&[("cache-control", "no-store")]), Err(Skip::NoStore));
    assert_eq!(
        ttl(&[("cache-control", "private, max-age=600")]),
        Err(Skip::Private)
    );
    assert_eq!(
        ttl(&[("cache-control", "private=\"x-user\"")]),
        Err(Skip::Private)
    );
    assert_eq!(ttl(&[("cache-control", "no-cache")]), Err(Skip::NoCache));
    assert_eq!(
        ttl(&[("cache-control", "public, no-store")]),
        Err(Skip::NoStore)
    );
}

#[test]
fn a_min_ttl_does_not_override_private() {
    let mut r = rule();
    r.spec.min_ttl = Duration::from_secs(30);
    assert_eq!(
        store(&r, &[], &[("cache-control", "private")]),
        Err(Skip::Private)
    );
}

#[test]
fn set_cookie_answers_are_never_stored_even_when_the_rule_keys_cookies() {
    assert_eq!(ttl(&[("set-cookie", "sid=1")]), Err(Skip::SetCookie));
    // `cookies = true` keys the request's Cookie; a cookieless visitor's key is shared by
    // every cookieless visitor, so the first one's session cookie must not be stored.
    let mut r = rule();
    r.spec.cookies = true;
    assert_eq!(
        store(
            &r,
            &[],
            &[
                ("cache-control", "public, max-age=60"),
                ("set-cookie", "sid=1")
            ]
        ),
        Err(Skip::SetCookie)
    );
    assert!(store(&r, &[("cookie", "a=1")], &[("cache-control", "max-age=60")]).is_ok());
}

#[test]
fn a_304_merge_never_takes_set_cookie() {
    let stored = headers(&[
        ("cache-control", "max-age=1"),
        ("etag", "\"v1\""),
        ("content-type", "text/plain"),
    ]);
    let merged = merge_not_modified(
        &stored,
        &headers(&[
            ("cache-control", "max-age=60"),
            ("set-cookie", "sid=first-visitor"),
            ("content-length", "0"),
            ("x-new", "a"),
            ("x-new", "b"),
        ]),
    );
    assert!(!merged.contains_key(header::SET_COOKIE), "{merged:?}");
    assert!(!merged.contains_key(header::CONTENT_LENGTH), "{merged:?}");
    assert_eq!(merged[header::CACHE_CONTROL], "max-age=60");
    assert_eq!(merged.get_all("x-new").iter().count(), 2);
    assert_eq!(merged[header::CONTENT_TYPE], "text/plain");
}

#[test]
fn a_304_merge_keeps_what_describes_the_stored_body() {
    // What the edge stored after compressing: its own Vary and a weakened ETag.
    let stored = headers(&[
        ("cache-control", "max-age=1"),
        ("etag", "W/\"v1\""),
        ("vary", "Accept-Encoding"),
        ("content-encoding", "br"),
    ]);
    let merged = merge_not_modified(
        &stored,
        &headers(&[
            ("cache-control", "max-age=60"),
            ("etag", "\"v1\""),
            ("vary", "Origin"),
            ("content-encoding", "identity"),
            ("content-length", "0"),
        ]),
    );
    assert_eq!(merged[header::VARY], "Accept-Encoding");
    assert_eq!(merged.get_all(header::VARY).iter().count(), 1);
    assert_eq!(merged[header::ETAG], "W/\"v1\"");
    assert_eq!(merged[header::CONTENT_ENCODING], "br");
    assert!(!merged.contains_key(header::CONTENT_LENGTH));
    assert_eq!(merged[header::CACHE_CONTROL], "max-age=60");
}

#[test]
fn vary_star_is_never_stored() {
    assert_eq!(ttl(&[("vary", "*")]), Err(Skip::VaryStar));
    assert_eq!(ttl(&[("vary", "accept, *")]), Err(Skip::VaryStar));
    assert!(ttl(&[("vary", "accept-encoding")]).is_ok());
}

#[test]
fn s_maxage_wins_over_max_age_and_expires() {
    assert_eq!(
        ttl(&[("cache-control", "max-age=100, s-maxage=200")]),
        Ok(200)
    );
    assert_eq!(ttl(&[("cache-control", "max-age=100")]), Ok(100));
    assert_eq!(
        ttl(&[
            ("cache-control", "max-age=100"),
            ("expires", &httpdate::fmt_http_date(at(500))),
        ]),
        Ok(100)
    );
}

#[test]
fn expires_is_counted_from_date() {
    let response = [
        ("date", httpdate::fmt_http_date(at(0))),
        ("expires", httpdate::fmt_http_date(at(120))),
    ];
    let response: Vec<(&str, &str)> = response.iter().map(|(n, v)| (*n, v.as_str())).collect();
    assert_eq!(ttl(&response), Ok(120));
    // An invalid Expires is in the past.
    assert_eq!(ttl(&[("expires", "0")]), Err(Skip::NoLifetime));
    let past = httpdate::fmt_http_date(at(0) - Duration::from_secs(10));
    assert_eq!(ttl(&[("expires", &past)]), Err(Skip::NoLifetime));
}

#[test]
fn lifetimes_are_clamped_into_the_rule() {
    // max_ttl 3600 caps a year.
    assert_eq!(ttl(&[("cache-control", "max-age=31536000")]), Ok(3600));
    let mut r = rule();
    r.spec.min_ttl = Duration::from_secs(30);
    assert_eq!(
        store(&r, &[], &[("cache-control", "max-age=5")]).map(|f| f.ttl.as_secs()),
        Ok(30)
    );
    // max-age=0 with min_ttl 0: not stored.
    assert_eq!(
        ttl(&[("cache-control", "max-age=0")]),
        Err(Skip::NoLifetime)
    );
}

#[test]
fn the_default_ttl_applies_without_an_explicit_lifetime() {
    assert_eq!(ttl(&[]), Ok(60));
    assert_eq!(ttl(&[("cache-control", "public")]), Ok(60));
}

#[test]
fn statuses_cacheable_by_default() {
    let r = rule();
    let none = HeaderMap::new();
    for status in [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501] {
        assert!(
            storable(&r, &none, status, &none, at(0), at(0)).is_ok(),
            "{status}"
        );
    }
    for status in [201, 302, 307, 400, 403, 500, 502, 503, 504] {
        assert_eq!(
            storable(&r, &none, status, &none, at(0), at(0)),
            Err(Skip::Status),
            "{status}"
        );
    }
    // With an explicit lifetime a 302 may be stored; a 206 or 304 never.
    let explicit = headers(&[("cache-control", "max-age=60")]);
    assert!(storable(&r, &none, 302, &explicit, at(0), at(0)).is_ok());
    assert_eq!(
        storable(&r, &none, 206, &explicit, at(0), at(0)),
        Err(Skip::Status)
    );
    assert_eq!(
        storable(&r, &none, 304, &explicit, at(0), at(0)),
        Err(Skip::Status)
    );
}

#[test]
fn errors_are_kept_only_as_long_as_they_say_else_ten_seconds() {
    let mut r = rule();
    r.spec.default_ttl = Duration::from_secs(365 * 86_400);
    r.spec.max_ttl = Duration::from_secs(365 * 86_400);
    r.spec.min_ttl = Duration::from_secs(3600);
    let none = HeaderMap::new();
    for status in [404, 405, 410, 414, 501] {
        let f = storable(&r, &none, status, &none, at(0), at(0)).unwrap();
        assert_eq!(f.ttl, ERROR_TTL, "{status}");
    }
    // The answer's own lifetime, not raised to min_ttl.
    let own = headers(&[("cache-control", "max-age=5")]);
    let f = storable(&r, &none, 404, &own, at(0), at(0)).unwrap();
    assert_eq!(f.ttl, Duration::from_secs(5));
    let long = headers(&[("cache-control", "max-age=600")]);
    let f = storable(&r, &none, 404, &long, at(0), at(0)).unwrap();
    assert_eq!(f.ttl, Duration::from_secs(600));
    // 2xx and 3xx keep the rule's lifetimes.
    for status in [200, 301, 308] {
        let f = storable(&r, &none, status, &none, at(0), at(0)).unwrap();
        assert_eq!(f.ttl, r.spec.default_ttl, "{status}");
    }
    let f = storable(&r, &none, 200, &own, at(0), at(0)).unwrap();
    assert_eq!(f.ttl, Duration::from_secs(3600));
}

#[test]
fn age_counts_against_the_lifetime() {
    let f = store(
        &rule(),
        &[],
        &[("cache-control", "max-age=100"), ("age", "40")],
    )
    .unwrap();
    assert_eq!(f.initial_age, Duration::from_secs(40));
    assert_eq!(f.state(Duration::from_secs(59)), State::Fresh);
    assert_eq!(f.state(Duration::from_secs(60)), State::StaleIfError);
    // Arrived already stale: not stored.
    assert_eq!(
        ttl(&[("cache-control", "max-age=100"), ("age", "100")]),
        Err(Skip::NoLifetime)
    );
}

#[test]
fn the_initial_age_is_corrected_for_date_and_delay() {
    let h = headers(&[("age", "10")]);
    // The request took 3 s: Age + 3.
    assert_eq!(initial_age(&h, None, at(0), at(3)), Duration::from_secs(13));
    // Date 20 s in the past: apparent age 20 wins.
    assert_eq!(
        initial_age(&h, Some(at(0)), at(19), at(20)),
        Duration::from_secs(20)
    );
    // A Date in the future counts as 0.
    assert_eq!(
        initial_age(&HeaderMap::new(), Some(at(50)), at(0), at(0)),
        Duration::ZERO
    );
}

#[test]
fn hostile_and_huge_numbers_neither_panic_nor_vanish() {
    // An Age past u64 seconds plus the round trip: no overflow, and arrived stale.
    let h = headers(&[("age", "18446744073709551615")]);
    let age = initial_age(&h, None, at(0), at(3));
    assert!(age >= Duration::from_secs(MAX_DELTA_SECONDS), "{age:?}");
    assert_eq!(
        ttl(&[
            ("cache-control", "max-age=60"),
            ("age", "18446744073709551615")
        ]),
        Err(Skip::NoLifetime)
    );
    let f = Freshness {
        ttl: Duration::from_secs(60),
        initial_age: Duration::MAX,
        stale_while_revalidate: Duration::from_secs(30),
        stale_if_error: Duration::ZERO,
    };
    assert_eq!(f.state(Duration::from_secs(5)), State::Expired);
    assert_eq!(f.keep_for(), Duration::from_secs(30));
    let long = Freshness {
        initial_age: Duration::ZERO,
        stale_while_revalidate: Duration::MAX,
        ..f
    };
    assert_eq!(long.keep_for(), Duration::MAX);
    // A max-age too large for any integer is 2^31 s (RFC 9111 1.2.2), not 0.
    let cc = CacheControl::parse(&headers(&[(
        "cache-control",
        "max-age=99999999999999999999, s-maxage=4294967296",
    )]));
    assert_eq!(cc.max_age, Some(MAX_DELTA_SECONDS));
    assert_eq!(cc.s_maxage, Some(MAX_DELTA_SECONDS));
    let mut r = rule();
    r.spec.max_ttl = Duration::from_secs(u64::from(u32::MAX));
    let f = store(
        &r,
        &[],
        &[("cache-control", "max-age=99999999999999999999")],
    )
    .unwrap();
    assert_eq!(f.ttl, Duration::from_secs(MAX_DELTA_SECONDS));
    // Not a number: 0 (stale at once).
    assert_eq!(
        CacheControl::parse(&headers(&[("cache-control", "max-age=-1")])).max_age,
        Some(0)
    );
}

#[test]
fn stale_windows_come_from_the_answer_or_the_rule() {
    let mut r = rule();
    r.spec.stale_if_error = Duration::from_secs(300);
    r.spec.stale_while_revalidate = Duration::from_secs(10);
    let f = store(&r, &[], &[("cache-control", "max-age=60")]).unwrap();
    assert_eq!(f.stale_if_error, Duration::from_secs(300));
    assert_eq!(f.stale_while_revalidate, Duration::from_secs(10));
    assert_eq!(f.state(Duration::from_secs(30)), State::Fresh);
    assert_eq!(f.state(Duration::from_secs(65)), State::StaleRevalidate);
    assert_eq!(f.state(Duration::from_secs(100)), State::StaleIfError);
    assert_eq!(f.state(Duration::from_secs(400)), State::Expired);
    assert_eq!(f.keep_for(), Duration::from_secs(360));
    let own = store(
        &r,
        &[],
        &[(
            "cache-control",
            "max-age=60, stale-if-error=5, stale-while-revalidate=1",
        )],
    )
    .unwrap();
    assert_eq!(own.stale_if_error, Duration::from_secs(5));
    assert_eq!(own.stale_while_revalidate, Duration::from_secs(1));
    // must-revalidate: never served stale, unless the answer says how long.
    let strict = store(&r, &[], &[("cache-control", "max-age=60, must-revalidate")]).unwrap();
    assert_eq!(strict.stale_if_error, Duration::ZERO);
    assert_eq!(strict.stale_while_revalidate, Duration::ZERO);
}

fn key(
    rule: &Rule,
    host: &str,
    path: &str,
    query: Option<&str>,
    request: &[(&str, &str)],
) -> String {
    primary_key(rule, false, host, path, query, &headers(request))
}

#[test]
fn the_key_holds_host_path_and_query() {
    let r = rule();
    assert_ne!(
        key(&r, "a.test", "/x", None, &[]),
        key(&r, "b.test", "/x", None, &[])
    );
    assert_eq!(
        key(&r, "A.test", "/x", None, &[]),
        key(&r, "a.test", "/x", None, &[])
    );
    assert_ne!(
        key(&r, "a.test", "/x", None, &[]),
        key(&r, "a.test", "/X", None, &[])
    );
    assert_ne!(
        key(&r, "a.test", "/x", Some("a=1"), &[]),
        key(&r, "a.test", "/x", None, &[])
    );
    assert_eq!(
        key(&r, "a.test", "/x", Some(""), &[]),
        key(&r, "a.test", "/x", None, &[])
    );
    assert_ne!(
        primary_key(&r, true, "a.test", "/x", None, &HeaderMap::new()),
        primary_key(&r, false, "a.test", "/x", None, &HeaderMap::new())
    );
}

#[test]
fn a_trusted_proxys_forwarded_headers_are_keyed() {
    let key = |pairs: &[(&str, &str)]| {
        let mut key = String::from("http://shop.test\n/");
        add_forwarded(&mut key, &headers(pairs));
        key
    };
    let plain = key(&[("x-forwarded-proto", "http")]);
    assert_ne!(plain, key(&[("x-forwarded-proto", "https")]));
    assert_ne!(plain, key(&[]));
    assert_ne!(
        key(&[("x-forwarded-host", "shop.test")]),
        key(&[("x-forwarded-host", "evil.test")])
    );
    assert_ne!(key(&[]), key(&[("x-forwarded-ssl", "on")]));
    assert_ne!(key(&[]), key(&[("forwarded", "proto=https")]));
    assert_ne!(key(&[]), key(&[("x-forwarded-prefix", "/app")]));
    assert_ne!(key(&[]), key(&[("x-forwarded-port", "443")]));
    // Values cannot be shifted from one header into another.
    assert_ne!(
        key(&[("x-forwarded-host", "a"), ("x-forwarded-port", "")]),
        key(&[("x-forwarded-host", ""), ("x-forwarded-port", "a")])
    );
}

#[test]
fn unkeyed_headers_do_not_change_the_key() {
    let r = rule();
    let plain = key(&r, "a.test", "/x", None, &[]);
    for (name, value) in [
        ("x-forwarded-host", "evil.test"),
        ("x-forwarded-proto", "https"),
        ("cookie", "sid=1"),
        ("user-agent", "x"),
    ] {
        assert_eq!(
            key(&r, "a.test", "/x", None, &[(name, value)]),
            plain,
            "{name}"
        );
    }
}

#[test]
fn query_handling_none_all_and_listed() {
    let mut r = rule();
    r.spec.query = CacheQuery::None;
    assert_eq!(cache_query(&r, Some("a=1&b=2")), None);
    assert_eq!(
        key(&r, "h", "/x", Some("a=1"), &[]),
        key(&r, "h", "/x", None, &[])
    );
    r.spec.query = CacheQuery::All;
    assert_eq!(cache_query(&r, Some("b=2&a=1")).as_deref(), Some("b=2&a=1"));
    r.spec.query = CacheQuery::Only(vec!["page".into(), "sort".into()]);
    assert_eq!(
        cache_query(&r, Some("utm=x&sort=asc&page=2")).as_deref(),
        Some("page=2&sort=asc")
    );
    assert_eq!(
        key(&r, "h", "/x", Some("page=2&sort=asc"), &[]),
        key(&r, "h", "/x", Some("sort=asc&utm=1&page=2"), &[])
    );
    // An encoded name is not the listed one: it is dropped (and not sent on).
    assert_eq!(cache_query(&r, Some("pa%67e=evil")), None);
    assert_eq!(cache_query(&r, Some("utm=1")), None);
}

#[test]
fn cookies_and_credentials_are_keyed_when_the_rule_lets_them_through() {
    let mut r = rule();
    r.spec.cookies = true;
    assert_ne!(
        key(&r, "h", "/x", None, &[("cookie", "sid=1")]),
        key(&r, "h", "/x", None, &[("cookie", "sid=2")])
    );
    r.spec.authorization = true;
    assert_ne!(
        key(&r, "h", "/x", None, &[("authorization", "Basic YTpi")]),
        key(&r, "h", "/x", None, &[("authorization", "Basic Yzpk")])
    );
}

#[test]
fn vary_names_are_normalised() {
    let v = vary_names(&headers(&[
        ("vary", "Accept-Encoding, accept"),
        ("vary", "ACCEPT"),
    ]))
    .unwrap();
    let names: Vec<&str> = v.iter().map(|n| n.as_str()).collect();
    assert_eq!(names, ["accept", "accept-encoding"]);
    assert_eq!(vary_names(&HeaderMap::new()), Some(vec![]));
}

#[test]
fn accept_encoding_picks_what_a_compressor_would() {
    assert_eq!(accept_encoding_choice("gzip, deflate, br"), "br");
    assert_eq!(accept_encoding_choice("br;q=1, gzip"), "br");
    assert_eq!(accept_encoding_choice("gzip, zstd"), "zstd");
    assert_eq!(accept_encoding_choice("gzip;q=1, br;q=0.5"), "gzip");
    assert_eq!(accept_encoding_choice("br;q=0, gzip"), "gzip");
    assert_eq!(accept_encoding_choice("deflate"), "identity");
    assert_eq!(accept_encoding_choice(""), "identity");
    assert_eq!(accept_encoding_choice("*"), "br");
    assert_eq!(accept_encoding_choice("GZIP"), "gzip");
}

#[test]
fn conditional_requests() {
    let stored = headers(&[
        ("etag", "\"v1\""),
        ("last-modified", &httpdate::fmt_http_date(at(0))),
    ]);
    assert!(not_modified(
        &headers(&[("if-none-match", "\"v1\"")]),
        &stored
    ));
    assert!(not_modified(
        &headers(&[("if-none-match", "W/\"v1\"")]),
        &stored
    ));
    assert!(not_modified(
        &headers(&[("if-none-match", "\"v0\", \"v1\"")]),
        &stored
    ));
    assert!(not_modified(&headers(&[("if-none-match", "*")]), &stored));
    assert!(!not_modified(
        &headers(&[("if-none-match", "\"v2\"")]),
        &stored
    ));
    let since = |t| headers(&[("if-modified-since", &httpdate::fmt_http_date(t))]);
    assert!(not_modified(&since(at(0)), &stored));
    assert!(not_modified(&since(at(10)), &stored));
    assert!(!not_modified(
        &since(at(0) - Duration::from_secs(1)),
        &stored
    ));
    // If-None-Match wins over If-Modified-Since.
    let both = headers(&[
        ("if-none-match", "\"v2\""),
        ("if-modified-since", &httpdate::fmt_http_date(at(10))),
    ]);
    assert!(!not_modified(&both, &stored));
    assert!(!not_modified(&HeaderMap::new(), &stored));
    assert!(!not_modified(
        &headers(&[("if-none-match", "\"v1\"")]),
        &HeaderMap::new()
    ));
}

#[test]
fn a_stored_coding_is_served_only_to_clients_that_take_it() {
    let gzip = headers(&[("content-encoding", "gzip")]);
    assert!(accepts_coding(
        &headers(&[("accept-encoding", "gzip, br")]),
        &gzip
    ));
    assert!(accepts_coding(&headers(&[("accept-encoding", "*")]), &gzip));
    assert!(!accepts_coding(
        &headers(&[("accept-encoding", "br")]),
        &gzip
    ));
    assert!(!accepts_coding(
        &headers(&[("accept-encoding", "gzip;q=0, br")]),
        &gzip
    ));
    assert!(!accepts_coding(&HeaderMap::new(), &gzip));
    // No coding, or identity: everyone.
    assert!(accepts_coding(&HeaderMap::new(), &HeaderMap::new()));
    assert!(accepts_coding(
        &HeaderMap::new(),
        &headers(&[("content-encoding", "identity")])
    ));
}

#[test]
fn one_byte_range_is_served_from_a_whole_stored_answer() {
    let stored = headers(&[
        ("etag", "\"v1\""),
        ("last-modified", "Mon, 30 Nov 2026 10:00:00 GMT"),
    ]);
    let ask = |pairs: &[(&str, &str)]| range_answer(&headers(pairs), &stored, 1000);
    let part = |first, last| RangeAnswer::Part { first, last };
    assert_eq!(ask(&[]), RangeAnswer::Whole);
    assert_eq!(ask(&[("range", "bytes=0-99")]), part(0, 99));
    assert_eq!(ask(&[("range", "bytes=900-")]), part(900, 999));
    assert_eq!(ask(&[("range", "bytes=-100")]), part(900, 999));
    assert_eq!(ask(&[("range", "bytes=-5000")]), part(0, 999));
    assert_eq!(ask(&[("range", "bytes=990-5000")]), part(990, 999));
    assert_eq!(ask(&[("range", "Bytes = 5-5")]), part(5, 5));
    // Past the end, or an empty suffix: 416.
    assert_eq!(ask(&[("range", "bytes=1000-")]), RangeAnswer::Unsatisfiable);
    assert_eq!(
        ask(&[("range", "bytes=1000-1001")]),
        RangeAnswer::Unsatisfiable
    );
    assert_eq!(ask(&[("range", "bytes=-0")]), RangeAnswer::Unsatisfiable);
    // Not served from the cache (the whole answer instead, as 14.2 allows): several ranges,
    // another unit, nonsense, a reversed range, two Range headers.
    for range in [
        "bytes=0-1,5-6",
        "items=0-1",
        "bytes=a-b",
        "bytes=5-1",
        "bytes=-",
        "bytes=+1-2",
        "bytes 0-1",
        "bytes=0-18446744073709551616",
    ] {
        assert_eq!(ask(&[("range", range)]), RangeAnswer::Whole, "{range}");
    }
    assert_eq!(
        ask(&[("range", "bytes=0-1"), ("range", "bytes=2-3")]),
        RangeAnswer::Whole
    );
}

#[test]
fn if_range_must_name_the_stored_answer_exactly() {
    let stored = headers(&[
        ("etag", "\"v1\""),
        ("last-modified", "Mon, 30 Nov 2026 10:00:00 GMT"),
    ]);
    let ask = |if_range: &str| {
        range_answer(
            &headers(&[("range", "bytes=0-9"), ("if-range", if_range)]),
            &stored,
            100,
        )
    };
    let part = RangeAnswer::Part { first: 0, last: 9 };
    assert_eq!(ask("\"v1\""), part);
    assert_eq!(ask("Mon, 30 Nov 2026 10:00:00 GMT"), part);
    assert_eq!(ask("\"v2\""), RangeAnswer::Whole);
    assert_eq!(ask("W/\"v1\""), RangeAnswer::Whole);
    assert_eq!(ask("Mon, 30 Nov 2026 10:00:01 GMT"), RangeAnswer::Whole);
    // A weak stored tag never matches strongly.
    let weak = headers(&[("etag", "W/\"v1\"")]);
    assert_eq!(
        range_answer(
            &headers(&[("range", "bytes=0-9"), ("if-range", "W/\"v1\"")]),
            &weak,
            100
        ),
        RangeAnswer::Whole
    );
    // Nothing stored to compare with.
    assert_eq!(
        range_answer(
            &headers(&[("range", "bytes=0-9"), ("if-range", "\"v1\"")]),
            &HeaderMap::new(),
            100
        ),
        RangeAnswer::Whole
    );
}
