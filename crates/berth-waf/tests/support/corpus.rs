//! The measuring tool's logic, shared by `examples/corpus.rs` and `tests/corpus.rs`: load the
//! OWASP CRS regression cases (go-ftw YAML) and the shop corpus, send them through a [`Waf`],
//! count per family.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use berth_waf::{Body, RequestParts, Verdict, Waf};

/// One request, owned.
#[derive(Clone, Debug)]
pub struct Case {
    pub family: String,
    pub rule: u32,
    pub test: String,
    pub attack: bool,
    pub method: String,
    pub path: Vec<u8>,
    pub query: Option<Vec<u8>>,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: Option<Vec<u8>>,
}

impl Case {
    pub fn inspect(&self, waf: &Waf) -> Verdict {
        let headers: Vec<(&[u8], &[u8])> =
            self.headers.iter().map(|(n, v)| (&n[..], &v[..])).collect();
        let ct = self
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(b"content-type"))
            .map(|(_, v)| &v[..]);
        let body = match (&self.body, ct) {
            (Some(b), Some(ct)) => Some(Body {
                content_type: ct,
                bytes: b,
            }),
            _ => None,
        };
        waf.inspect(&RequestParts {
            method: self.method.as_bytes(),
            path: &self.path,
            query: self.query.as_deref(),
            headers: &headers,
            body,
        })
    }

    /// Builds a case from a request-target (`/p?q`), headers and body.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        family: &str,
        rule: u32,
        test: String,
        attack: bool,
        method: &str,
        uri: &str,
        headers: Vec<(String, String)>,
        body: Option<Vec<u8>>,
    ) -> Case {
        let (path, query) = match uri.find('?') {
            Some(p) => (
                uri.as_bytes()[..p].to_vec(),
                Some(uri.as_bytes()[p + 1..].to_vec()),
            ),
            None => (uri.as_bytes().to_vec(), None),
        };
        Case {
            family: family.to_string(),
            rule,
            test,
            attack,
            method: method.to_string(),
            path,
            query,
            headers: headers
                .into_iter()
                .map(|(n, v)| (n.into_bytes(), v.into_bytes()))
                .collect(),
            body,
        }
    }
}

/// The family of a CRS folder name (`REQUEST-942-APPLICATION-ATTACK-SQLI` → `sqli`).
fn family(dir: &str) -> Option<&'static str> {
    Some(match dir.get(8..11)? {
        "930" => "lfi",
        "932" => "rce",
        "933" => "php",
        "941" => "xss",
        "942" => "sqli",
        _ => return None,
    })
}

/// Go's `url.QueryEscape`, which go-ftw applies to `data` without `%` or `+`.
fn query_escape(s: &str) -> String {
    let mut o = String::new();
    for &b in s.as_bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                o.push(b as char)
            }
            b' ' => o.push('+'),
            _ => o.push_str(&format!("%{b:02X}")),
        }
    }
    o
}

fn yaml_str(y: &yaml_rust2::Yaml) -> Option<String> {
    use yaml_rust2::Yaml;
    match y {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Loads every case of the corpus folder, sent as go-ftw sends them (see its README):
/// `encoded_request`/`raw_request` cases are skipped; `data` without a `Content-Type` gets
/// `application/x-www-form-urlencoded` and is URL-encoded when it has no `%` or `+`;
/// multipart bodies get CRLF line ends.
pub fn load_crs(dir: &Path) -> Result<Vec<Case>, String> {
    use yaml_rust2::{Yaml, YamlLoader};
    let mut cases = Vec::new();
    let mut dirs: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("reading {}: {e}", dir.display()))?
        .flatten()
        .collect();
    dirs.sort_by_key(|d| d.file_name());
    for d in dirs {
        let name = d.file_name().to_string_lossy().into_owned();
        let Some(fam) = family(&name) else { continue };
        let mut files: Vec<_> = std::fs::read_dir(d.path())
            .map_err(|e| e.to_string())?
            .flatten()
            .collect();
        files.sort_by_key(|f| f.file_name());
        for f in files {
            let text = std::fs::read_to_string(f.path()).map_err(|e| e.to_string())?;
            let docs = YamlLoader::load_from_str(&text)
                .map_err(|e| format!("{}: {e}", f.path().display()))?;
            let doc = &docs[0];
            let rule = doc["rule_id"].as_i64().unwrap_or(0) as u32;
            let Some(tests) = doc["tests"].as_vec() else {
                continue;
            };
            for t in tests {
                let test_id = yaml_str(&t["test_id"]).unwrap_or_default();
                let Some(stages) = t["stages"].as_vec() else {
                    continue;
                };
                for st in stages {
                    let input = &st["input"];
                    if !input["encoded_request"].is_badvalue()
                        || !input["raw_request"].is_badvalue()
                    {
                        continue;
                    }
                    let log = &st["output"]["log"];
                    let expect = log["expect_ids"].as_vec().is_some_and(|v| !v.is_empty());
                    let no_expect = log["no_expect_ids"].as_vec().is_some_and(|v| !v.is_empty());
                    if !expect && !no_expect {
                        continue;
                    }
                    let method = yaml_str(&input["method"]).unwrap_or_else(|| "GET".into());
                    let uri = yaml_str(&input["uri"]).unwrap_or_else(|| "/".into());
                    let mut headers: Vec<(String, String)> = Vec::new();
                    if let Some(h) = input["headers"].as_hash() {
                        for (k, v) in h {
                            if let (Some(k), Some(v)) = (yaml_str(k), yaml_str(v)) {
                                headers.push((k, v));
                            }
                        }
                    }
                    let autocomplete = input["autocomplete_headers"].as_bool().unwrap_or(true);
                    let mut body = None;
                    if let Some(data) = yaml_str(&input["data"]) {
                        let ct = headers
                            .iter()
                            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
                            .map(|(_, v)| v.clone());
                        let data = match ct {
                            None if autocomplete => {
                                headers.push((
                                    "Content-Type".into(),
                                    "application/x-www-form-urlencoded".into(),
                                ));
                                if data.contains('%') || data.contains('+') {
                                    data
                                } else {
                                    query_escape(&data)
                                }
                            }
                            Some(ct) if ct.to_ascii_lowercase().starts_with("multipart/") => {
                                data.replace("\r\n", "\n").replace('\n', "\r\n")
                            }
                            _ => data,
                        };
                        body = Some(data.into_bytes());
                    }
                    let _ = Yaml::Null;
                    cases.push(Case::new(
                        fam,
                        rule,
                        format!("{rule}-{test_id}"),
                        expect,
                        &method,
                        &uri,
                        headers,
                        body,
                    ));
                }
            }
        }
    }
    Ok(cases)
}

/// Blocked / total per family and kind.
#[derive(Default, Debug, Clone)]
pub struct Tally {
    /// (family, attack) → (blocked, total)
    pub by: BTreeMap<(String, bool), (usize, usize)>,
    pub missed: Vec<String>,
    pub false_positives: Vec<String>,
}

impl Tally {
    pub fn add(&mut self, c: &Case, v: &Verdict) {
        let e = self.by.entry((c.family.clone(), c.attack)).or_default();
        e.1 += 1;
        if v.is_blocked() {
            e.0 += 1;
            if !c.attack {
                let f = &v.findings()[0];
                self.false_positives.push(format!(
                    "{} {} {} {}",
                    c.test,
                    f.rule_id,
                    f.location,
                    String::from_utf8_lossy(&c.path)
                ));
            }
        } else if c.attack {
            self.missed.push(c.test.clone());
        }
    }

    pub fn get(&self, family: &str, attack: bool) -> (usize, usize) {
        self.by
            .get(&(family.to_string(), attack))
            .copied()
            .unwrap_or((0, 0))
    }

    pub fn total(&self, attack: bool) -> (usize, usize) {
        self.by
            .iter()
            .filter(|((_, a), _)| *a == attack)
            .fold((0, 0), |acc, (_, v)| (acc.0 + v.0, acc.1 + v.1))
    }

    pub fn render(&self, title: &str) -> String {
        let mut s = format!("{title}\n  family  attacks blocked        near-miss benign blocked\n");
        for fam in ["sqli", "xss", "lfi", "rce", "php"] {
            let (ab, at) = self.get(fam, true);
            let (bb, bt) = self.get(fam, false);
            s.push_str(&format!(
                "  {fam:<6}  {:>4}/{:<4} {:>6}     {:>4}/{:<4} {:>6}\n",
                ab,
                at,
                pct(ab, at),
                bb,
                bt,
                pct(bb, bt)
            ));
        }
        let (ab, at) = self.total(true);
        let (bb, bt) = self.total(false);
        s.push_str(&format!(
            "  all     {:>4}/{:<4} {:>6}     {:>4}/{:<4} {:>6}\n",
            ab,
            at,
            pct(ab, at),
            bb,
            bt,
            pct(bb, bt)
        ));
        s
    }
}

pub fn pct(a: usize, b: usize) -> String {
    if b == 0 {
        "-".into()
    } else {
        format!("{:.1}%", 100.0 * a as f64 / b as f64)
    }
}

/// Which half a case belongs to: FNV-1a of its file and test name (`942100.yaml/942100-7`),
/// even hashes are the development half, odd ones are held out. Deterministic and independent
/// of the detectors, so the held-out half measures attacks nobody tuned for.
pub fn is_dev(c: &Case) -> bool {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in format!("{}.yaml/{}", c.rule, c.test).bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // FNV alone splits sequential test numbers unevenly; a SplitMix64 finalizer mixes every bit.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    h & 1 == 0
}

/// Splits by [`is_dev`]: (development half, held-out half, all).
pub fn tally(waf: &Waf, cases: &[Case]) -> (Tally, Tally, Tally) {
    let (mut dev, mut held, mut all) = (Tally::default(), Tally::default(), Tally::default());
    for c in cases {
        let v = c.inspect(waf);
        all.add(c, &v);
        if is_dev(c) {
            dev.add(c, &v);
        } else {
            held.add(c, &v);
        }
    }
    (dev, held, all)
}

/// Nanoseconds per request over `cases`: the best of `rounds` passes (the machine is shared;
/// the fastest pass is the one least disturbed by other work).
pub fn ns_per_request(waf: &Waf, cases: &[Case], rounds: usize) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..rounds.max(1) {
        let start = Instant::now();
        for c in cases {
            std::hint::black_box(c.inspect(waf));
        }
        best = best.min(start.elapsed().as_nanos() as f64 / cases.len().max(1) as f64);
    }
    best
}

/// The corpus folder beside the repository checkout (`../shared/waf-corpus`).
pub fn default_corpus_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/waf-corpus")
}
