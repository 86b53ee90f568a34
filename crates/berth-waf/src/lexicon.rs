//! One Aho-Corasick pass per value over every family's word list (SQL-only names, sensitive
//! files, Windows command forms), so a value is scanned once, not once per family.

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Family {
    Sql,
    File,
    Windows,
    Js,
    /// Words that only switch on a check (`xor`, `import`, `function`), so the check does not
    /// scan every value for them again.
    Hint,
}

/// The [`Family::Hint`] words.
pub(crate) const HINTS: &[&str] = &["xor", "import", "function"];

/// Bits for the hint words a value holds, as [`hint_bits`] gives them.
pub(crate) const HINT_XOR: u8 = 1;
pub(crate) const HINT_IMPORT: u8 = 2;
pub(crate) const HINT_FUNCTION: u8 = 4;

/// Which hint words `hits` hold.
pub(crate) fn hint_bits(hits: &[Hit]) -> u8 {
    hits.iter()
        .filter(|h| h.family == Family::Hint)
        .fold(0, |m, h| {
            m | match h.pattern {
                "xor" => HINT_XOR,
                "import" => HINT_IMPORT,
                _ => HINT_FUNCTION,
            }
        })
}

/// A word list match: which list, which entry, where.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Hit {
    pub family: Family,
    pub pattern: &'static str,
    pub start: usize,
    pub end: usize,
}

pub(crate) struct Lexicon {
    ac: AhoCorasick,
    tags: Vec<(Family, &'static str)>,
}

impl Lexicon {
    pub(crate) fn new(lists: &[(Family, &[&'static str])]) -> Lexicon {
        let tags: Vec<(Family, &'static str)> = lists
            .iter()
            .flat_map(|(f, l)| l.iter().map(move |p| (*f, *p)))
            .collect();
        let ac = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .kind(Some(AhoCorasickKind::DFA))
            .build(tags.iter().map(|(_, p)| p))
            .expect("static patterns build");
        Lexicon { ac, tags }
    }

    /// The matches in `s` (lower-cased), leftmost-longest, not overlapping.
    pub(crate) fn scan(&self, s: &[u8], out: &mut Vec<Hit>) {
        out.clear();
        for m in self.ac.find_iter(s) {
            let (family, pattern) = self.tags[m.pattern().as_usize()];
            out.push(Hit {
                family,
                pattern,
                start: m.start(),
                end: m.end(),
            });
        }
    }
}
