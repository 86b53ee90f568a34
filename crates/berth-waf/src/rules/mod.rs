//! The small rule sets: path traversal / local file inclusion, remote command execution and PHP
//! injection. Each rule is a byte scan over the canonical, lower-cased value (one Aho-Corasick
//! pass finds the candidate words; the checks around a hit are plain code).

use aho_corasick::{AhoCorasick, MatchKind};

mod lfi;
mod php;
mod rce;

pub(crate) use lfi::SENSITIVE_FILES;
use php::{PHP_FUNCTIONS, PHP_MARKERS, PHP_WRAPPERS};
pub(crate) use rce::WINDOWS_MARKERS;
use rce::{STRONG_COMMANDS, WEAK_COMMANDS};

fn build(pats: &[&str]) -> AhoCorasick {
    AhoCorasick::builder()
        .match_kind(MatchKind::Standard)
        .kind(Some(aho_corasick::AhoCorasickKind::DFA))
        .build(pats)
        .expect("static patterns build")
}

pub(crate) struct Rules {
    pub(crate) lexicon: crate::lexicon::Lexicon,
    commands: WordSet,
    weak: WordSet,
    php_functions: AhoCorasick,
    php_markers: AhoCorasick,
    php_wrappers: AhoCorasick,
}

fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

impl Rules {
    pub(crate) fn new() -> Self {
        use crate::lexicon::{Family, Lexicon};
        Rules {
            lexicon: Lexicon::new(&[
                (Family::Sql, crate::sqli::SQL_ONLY_WORDS),
                (Family::File, SENSITIVE_FILES),
                (Family::Windows, WINDOWS_MARKERS),
                (Family::Js, crate::xss::SINKS),
                (Family::Hint, crate::lexicon::HINTS),
            ]),
            commands: WordSet::new(STRONG_COMMANDS.iter().chain(WEAK_COMMANDS)),
            weak: WordSet::new(WEAK_COMMANDS.iter()),
            php_functions: build(PHP_FUNCTIONS),
            php_markers: build(PHP_MARKERS),
            php_wrappers: build(PHP_WRAPPERS),
        }
    }
}

/// A word list with a cheap hash (FNV-1a; the words are short and fixed, no attacker controls
/// the table).
struct WordSet(std::collections::HashSet<&'static [u8], std::hash::BuildHasherDefault<Fnv>>);

#[derive(Default)]
struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

impl WordSet {
    fn new<'a>(words: impl Iterator<Item = &'a &'static str>) -> WordSet {
        WordSet(words.map(|w| w.as_bytes()).collect())
    }

    fn contains(&self, w: &[u8]) -> bool {
        w.len() <= 24 && self.0.contains(w)
    }
}
