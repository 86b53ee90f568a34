//! Measures the WAF on the OWASP CRS regression corpus and on the shop corpus.
//!
//! `cargo run --release -p berth-waf --example corpus -- [CORPUS_DIR] [-v]`
//! (default: `../shared/waf-corpus` beside the repository checkout). `-v` lists missed attacks
//! and blocked benign cases. `--shop-only N` times the shop corpus alone, by kind of request,
//! best of N passes (for profiling).

#[path = "../tests/support/benign.rs"]
mod benign;
#[path = "../tests/support/corpus.rs"]
mod corpus;

use berth_waf::{Waf, WafConfig};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let verbose = args.iter().any(|a| a == "-v");
    let waf = Waf::new(WafConfig::default()).expect("default config");
    // The same rules, without remembering clean values between requests.
    let cold = Waf::new(WafConfig {
        remember_clean_values: false,
        ..WafConfig::default()
    })
    .expect("config");
    let shop = benign::shop_requests();

    if let Some(n) = args
        .iter()
        .position(|a| a == "--shop-only")
        .and_then(|p| args.get(p + 1))
        .and_then(|n| n.parse().ok())
    {
        let both = |set: &[corpus::Case]| {
            (
                corpus::ns_per_request(&waf, set, n),
                corpus::ns_per_request(&cold, set, n),
            )
        };
        let (w, c) = both(&shop);
        println!("shop: {w:.0} ns/request ({c:.0} with every value inspected)");
        let ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
        let plain = corpus::Case::new(
            "shop",
            0,
            "plain-get".into(),
            false,
            "GET",
            "/products/oak-table-lamp?variant=40001",
            vec![
                ("Host".into(), "shop.example".into()),
                ("User-Agent".into(), ua.into()),
                (
                    "Accept".into(),
                    "text/html,application/xhtml+xml,*/*;q=0.8".into(),
                ),
                ("Accept-Language".into(), "en-GB,en;q=0.9".into()),
                ("Accept-Encoding".into(), "gzip, deflate, br".into()),
            ],
            None,
        );
        let (w, c) = both(&vec![plain; 100]);
        println!(
            "  {:<14} {w:>6.0} ns/request ({c:.0} with every value inspected)",
            "plain GET"
        );
        let mut kinds: Vec<String> = shop
            .iter()
            .map(|c| c.test.rsplit_once('-').unwrap().0.to_string())
            .collect();
        kinds.sort();
        kinds.dedup();
        for k in kinds {
            let set: Vec<_> = shop
                .iter()
                .filter(|c| c.test.rsplit_once('-').unwrap().0 == k)
                .cloned()
                .collect();
            let (w, c) = both(&set);
            println!(
                "  {k:<14} {w:>6.0} ns/request ({c:.0} with every value inspected; {} requests)",
                set.len()
            );
        }
        return;
    }

    let dir = args
        .iter()
        .find(|a| !a.starts_with('-'))
        .map(std::path::PathBuf::from)
        .unwrap_or_else(corpus::default_corpus_dir);
    let cases = corpus::load_crs(&dir).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    let (dev, held, all) = corpus::tally(&waf, &cases);
    println!(
        "{}",
        dev.render("CRS corpus, development half (hash of file and test name)")
    );
    println!("{}", held.render("CRS corpus, held-out half"));
    println!("{}", all.render("CRS corpus, all"));

    let mut fp = Vec::new();
    for c in &shop {
        let v = c.inspect(&waf);
        if v.is_blocked() {
            fp.push(format!("{} {:?}", c.test, v.findings()));
        }
    }
    println!(
        "shop corpus: {}/{} blocked ({})",
        fp.len(),
        shop.len(),
        corpus::pct(fp.len(), shop.len())
    );
    for f in fp.iter().take(20) {
        println!("  FP {f}");
    }

    let attacks: Vec<_> = cases.iter().filter(|c| c.attack).cloned().collect();
    let benign: Vec<_> = cases.iter().filter(|c| !c.attack).cloned().collect();
    let rounds = 20;
    println!();
    for (label, w) in [
        ("repeated values remembered", &waf),
        ("every value inspected", &cold),
    ] {
        println!(
            "time per request, {label}: shop {:.0} ns, CRS benign {:.0} ns, CRS attacks {:.0} ns",
            corpus::ns_per_request(w, &shop, rounds),
            corpus::ns_per_request(w, &benign, rounds),
            corpus::ns_per_request(w, &attacks, rounds),
        );
    }
    if verbose {
        // Only the development half is shown: the held-out half stays unseen while improving.
        println!("\nmissed attacks (development half):");
        for c in cases.iter().filter(|c| c.attack && corpus::is_dev(c)) {
            if !c.inspect(&waf).is_blocked() {
                println!("  {} {}", c.test, describe(c));
            }
        }
        println!("\nnear-miss benign blocked (development half):");
        for c in cases.iter().filter(|c| !c.attack && corpus::is_dev(c)) {
            let v = c.inspect(&waf);
            if v.is_blocked() {
                let f = &v.findings()[0];
                println!("  {} {} {} {}", c.test, f.rule_id, f.location, describe(c));
            }
        }
        println!(
            "\n(held-out half: {} missed, {} near-miss benign blocked; not listed)",
            held.missed.len(),
            held.false_positives.len()
        );
    }
}

/// The parts of a case that carry its payload, on one line.
fn describe(c: &corpus::Case) -> String {
    let mut s = String::from_utf8_lossy(&c.path).into_owned();
    if let Some(q) = &c.query {
        s.push('?');
        s.push_str(&String::from_utf8_lossy(q));
    }
    for (n, v) in &c.headers {
        let n = String::from_utf8_lossy(n);
        if !matches!(
            n.to_ascii_lowercase().as_str(),
            "host" | "accept" | "content-type" | "content-length"
        ) {
            s.push_str(&format!(" [{n}: {}]", String::from_utf8_lossy(v)));
        }
    }
    if let Some(b) = &c.body {
        s.push_str(&format!(" BODY {}", String::from_utf8_lossy(b)));
    }
    s.chars().take(400).collect()
}
