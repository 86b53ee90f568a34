//! Runs the measuring tool's logic over the CRS corpus and the shop corpus and holds the
//! numbers reached so far, so a change that loses detection or adds false positives fails.
//!
//! The corpus lives outside the repository (`../shared/waf-corpus` beside the checkout). When
//! it is absent the corpus test fails under `CI=true` and is skipped with a message otherwise.

mod support;

use berth_waf::{Waf, WafConfig};
use support::{benign, corpus};

#[test]
fn shop_corpus_is_under_half_a_percent_blocked() {
    let waf = Waf::new(WafConfig::default()).unwrap();
    let shop = benign::shop_requests();
    assert!(
        shop.len() >= 300,
        "the shop corpus has {} requests",
        shop.len()
    );
    let blocked: Vec<_> = shop
        .iter()
        .filter(|c| c.inspect(&waf).is_blocked())
        .map(|c| c.test.clone())
        .collect();
    assert!(
        blocked.len() * 200 < shop.len(),
        "{} of {} shop requests blocked: {blocked:?}",
        blocked.len(),
        shop.len()
    );
}

#[test]
fn crs_corpus_numbers_hold() {
    let dir = corpus::default_corpus_dir();
    if !dir.exists() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("the WAF corpus is missing at {}", dir.display());
        }
        eprintln!("skipped: no WAF corpus at {}", dir.display());
        return;
    }
    let waf = Waf::new(WafConfig::default()).unwrap();
    let cases = corpus::load_crs(&dir).unwrap();
    let (dev, held, all) = corpus::tally(&waf, &cases);
    eprintln!(
        "{}",
        dev.render("CRS corpus, development half (hash of file and test name)")
    );
    eprintln!("{}", held.render("CRS corpus, held-out half"));
    eprintln!("{}", all.render("CRS corpus, all"));
    // Floors: issue 13's targets (SQLi and XSS 90%, the others 80%), which the detectors reach
    // on the whole corpus (see docs/waf.md); PHP is held at what it reaches.
    let floors = [
        ("sqli", 0.91),
        ("xss", 0.90),
        ("lfi", 0.80),
        ("rce", 0.80),
        ("php", 0.90),
    ];
    for (fam, floor) in floors {
        let (b, t) = all.get(fam, true);
        assert!(t > 0, "no {fam} attack cases loaded");
        assert!(
            b as f64 >= floor * t as f64,
            "{fam}: {b}/{t} attacks blocked, below the floor of {floor}"
        );
    }
    // The held-out half (never looked at while writing rules) must not fall far behind; for
    // SQLi it is held at what the context-aware grammar reaches (160/185, see docs/waf.md).
    let (hb, ht) = held.total(true);
    assert!(
        hb as f64 >= 0.85 * ht as f64,
        "held-out half: {hb}/{ht} attacks blocked"
    );
    let (sb, st) = held.get("sqli", true);
    assert!(
        sb as f64 >= 0.86 * st as f64,
        "held-out half, sqli: {sb}/{st} attacks blocked"
    );
    // Near-miss benign cases: fewer than ModSecurity's 162/548 (30%), by a margin.
    let (fb, ft) = all.total(false);
    assert!(ft > 400, "only {ft} benign cases loaded");
    assert!(
        fb * 100 < ft * 15,
        "{fb}/{ft} near-miss benign cases blocked"
    );
}

#[test]
fn remembering_clean_values_never_changes_a_verdict() {
    let dir = corpus::default_corpus_dir();
    let mut cases = benign::shop_requests();
    if dir.exists() {
        cases.extend(corpus::load_crs(&dir).unwrap());
    }
    let warm = Waf::new(WafConfig::default()).unwrap();
    let cold = Waf::new(WafConfig {
        remember_clean_values: false,
        ..WafConfig::default()
    })
    .unwrap();
    // Twice over, so the second pass meets every value remembered by the first.
    for round in 0..2 {
        for c in &cases {
            assert_eq!(
                c.inspect(&warm),
                c.inspect(&cold),
                "round {round}: {}",
                c.test
            );
        }
    }
}
