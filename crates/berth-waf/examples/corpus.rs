//! Measures the WAF on the OWASP CRS regression corpus and on the shop corpus.
//!
//! `cargo run --release -p berth-waf --example corpus -- [CORPUS_DIR] [-v]`
//! (default: `../shared/waf-corpus` beside the repository checkout). `-v` lists missed attacks
//! and blocked benign cases.

#[path = "../tests/support/benign.rs"]
mod benign;
#[path = "../tests/support/corpus.rs"]
mod corpus;

use berth_waf::{Waf, WafConfig};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let verbose = args.iter().any(|a| a == "-v");
    let dir = args
        .iter()
        .find(|a| !a.starts_with('-'))
        .map(std::path::PathBuf::from)
        .unwrap_or_else(corpus::default_corpus_dir);
    let waf = Waf::new(WafConfig::default()).expect("default config");
    if let Some(n) = args
        .iter()
        .position(|a| a == "--shop-only")
        .and_then(|p| args.get(p + 1))
        .and_then(|n| n.parse().ok())
    {
        // For profiling: only the shop corpus, n rounds.
        let shop = benign::shop_requests();
        println!(
            "shop: {:.0} ns/request",
            corpus::ns_per_request(&waf, &shop, n)
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
            println!(
                "  {k:<12} {:>6.0} ns/request ({} requests)",
                corpus::ns_per_request(&waf, &set, n),
                set.len()
            );
        }
        return;
    }
    let cases = corpus::load_crs(&dir).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    let (dev, held, all) = corpus::tally(&waf, &cases);
    println!(
        "{}",
        dev.render("CRS corpus, development half (even rule ids)")
    );
    println!(
        "{}",
        held.render("CRS corpus, held-out half (odd rule ids)")
    );
    println!("{}", all.render("CRS corpus, all"));

    let shop = benign::shop_requests();
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
    let rounds = 20;
    println!(
        "\ntime per request: shop {:.0} ns, CRS benign {:.0} ns, CRS attacks {:.0} ns",
        corpus::ns_per_request(&waf, &shop, rounds),
        corpus::ns_per_request(
            &waf,
            &cases
                .iter()
                .filter(|c| !c.attack)
                .cloned()
                .collect::<Vec<_>>(),
            rounds
        ),
        corpus::ns_per_request(&waf, &attacks, rounds),
    );
    if verbose {
        println!("\nmissed (dev): {}", dev.missed.join(" "));
        println!("\nmissed (held-out): {}", held.missed.join(" "));
        println!("\nnear-miss benign blocked (dev):");
        for f in &dev.false_positives {
            println!("  {f}");
        }
        println!("\nnear-miss benign blocked (held-out):");
        for f in &held.false_positives {
            println!("  {f}");
        }
    }
}
