//! Bounded property tests: `inspect` never panics on arbitrary bytes in any part, and its time
//! grows about linearly with the input.

use berth_waf::{Body, RequestParts, Waf, WafConfig};
use proptest::prelude::*;

fn waf() -> Waf {
    Waf::new(WafConfig::default()).unwrap()
}

const CONTENT_TYPES: &[&[u8]] = &[
    b"application/x-www-form-urlencoded",
    b"multipart/form-data; boundary=XX",
    b"application/json",
    b"application/xml",
    b"text/plain",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn never_panics(path in proptest::collection::vec(any::<u8>(), 0..200),
                    query in proptest::collection::vec(any::<u8>(), 0..300),
                    header in proptest::collection::vec(any::<u8>(), 0..200),
                    body in proptest::collection::vec(any::<u8>(), 0..600),
                    ct in 0..CONTENT_TYPES.len()) {
        let w = waf();
        let headers: [(&[u8], &[u8]); 3] = [(b"Cookie", &header), (b"User-Agent", &header), (b"X-Custom", &header)];
        let _ = w.inspect(&RequestParts {
            method: b"POST",
            path: &path,
            query: Some(&query),
            headers: &headers,
            body: Some(Body { content_type: CONTENT_TYPES[ct], bytes: &body }),
        });
    }

    #[test]
    fn never_panics_on_syntax_soup(s in "[-'\"`;|&$(){}<>/\\\\%=:#*!?@.a-z0-9 \\[\\]]{0,300}") {
        let w = waf();
        let b = s.as_bytes();
        let headers: [(&[u8], &[u8]); 1] = [(b"Cookie", b)];
        for ct in CONTENT_TYPES {
            let _ = w.inspect(&RequestParts { method: b"GET", path: b, query: Some(b), headers: &headers, body: Some(Body { content_type: ct, bytes: b }) });
        }
    }
}

#[test]
fn time_grows_about_linearly() {
    let w = waf();
    let unit = b"a=1' or <x on=1> ../ ;cat $(x) <?php (((([[[{{{ %25%32%37 /* -- ".repeat(4);
    let time = |n: usize| {
        let v = unit.repeat(n);
        let mut best = u128::MAX;
        for _ in 0..3 {
            let t = std::time::Instant::now();
            for ct in CONTENT_TYPES {
                std::hint::black_box(w.inspect(&RequestParts {
                    method: b"POST",
                    path: b"/x",
                    query: Some(&v),
                    headers: &[(b"X-Data", &v)],
                    body: Some(Body {
                        content_type: ct,
                        bytes: &v,
                    }),
                }));
            }
            best = best.min(t.elapsed().as_nanos());
        }
        best.max(1)
    };
    let small = time(8);
    let large = time(64);
    // 8x the input: allow up to 40x the time (noise, caches), far below quadratic's 64x.
    assert!(
        large < small * 40,
        "8x input took {}x the time ({small} ns -> {large} ns)",
        large / small
    );
}

/// Inputs built to make a scanner rescan: one short pattern repeated to the body limit. Each
/// must cost about what ordinary text of the same size costs.
#[test]
fn pathological_repetitions_stay_cheap() {
    let w = waf();
    let size = 64 * 1024;
    let cost = |v: &[u8]| {
        let mut best = u128::MAX;
        for _ in 0..3 {
            let t = std::time::Instant::now();
            for ct in CONTENT_TYPES {
                std::hint::black_box(w.inspect(&RequestParts {
                    method: b"POST",
                    path: b"/x",
                    query: None,
                    headers: &[(b"X-Data", v)],
                    body: Some(Body {
                        content_type: ct,
                        bytes: v,
                    }),
                }));
            }
            best = best.min(t.elapsed().as_nanos());
        }
        best.max(1)
    };
    let prose =
        b"The quick brown fox jumps over the lazy dog, twice; then it rests. ".repeat(size / 68);
    let base = cost(&prose);
    let patterns: &[&[u8]] = &[
        b"<a",
        b"<a on",
        b"alert(",
        b")(",
        b"$a[",
        b"for %a in (",
        b"if ",
        b"..",
        b"<?",
        b"on",
        b"/*",
        b"'",
        b"(",
        b"<<",
        b"{",
        b"[",
        b";cat ",
        b"&#",
        b"%25",
        b"\"",
        b"`",
        b"${",
        b"-- ",
        b"\n",
        b"a:",
        b"0x",
        b"javascript:",
        b"a&",
        b"a=b&",
        b"\"a\",",
        b"{\"a\":",
        b"--XX\r\n",
        b"--XX\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n",
        b"\\",
        b"o:1:",
        b"</",
        b"=",
        b"&",
        b"|",
        b"select ",
        b"union ",
        b"or 1=1 ",
        b"import {",
        b"import('",
        b" onfoo=",
        b"xor 1",
        b"[$ne]",
        b"-->",
        b") or ",
        b"function(",
        b"'-",
        b"![]+",
        b"1 in (",
        b"northwind..",
        b"@import ",
    ];
    let mut slow = Vec::new();
    for p in patterns {
        let v = p.repeat(size / p.len());
        let c = cost(&v);
        // Not a speed target (that is the bench's): a blow-up. A quadratic pass over 64 KiB is
        // seconds; the slack (50x ordinary text, +200 ms) keeps a loaded machine from failing
        // a linear one.
        if c > base * 50 + 200_000_000 {
            slow.push(format!("{:?}: {} µs", String::from_utf8_lossy(p), c / 1000));
        }
    }
    assert!(
        slow.is_empty(),
        "ordinary text: {} µs; too slow: {slow:?}",
        base / 1000
    );
}
