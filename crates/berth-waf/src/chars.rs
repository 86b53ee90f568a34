//! A one-pass summary of which punctuation a value holds, so detectors whose syntax is absent
//! are not run at all.

pub(crate) const QUOTE: u32 = 1 << 0;
pub(crate) const LT: u32 = 1 << 1;
pub(crate) const GT: u32 = 1 << 2;
pub(crate) const EQ: u32 = 1 << 3;
pub(crate) const PAREN: u32 = 1 << 4;
pub(crate) const SEMI: u32 = 1 << 5;
pub(crate) const PIPE: u32 = 1 << 6;
pub(crate) const AMP: u32 = 1 << 7;
pub(crate) const BACKTICK: u32 = 1 << 8;
pub(crate) const DOLLAR: u32 = 1 << 9;
pub(crate) const PERCENT: u32 = 1 << 10;
pub(crate) const SLASH: u32 = 1 << 11;
pub(crate) const BACKSLASH: u32 = 1 << 12;
pub(crate) const DOT: u32 = 1 << 13;
pub(crate) const COLON: u32 = 1 << 14;
pub(crate) const NEWLINE: u32 = 1 << 15;
pub(crate) const HASH: u32 = 1 << 16;
pub(crate) const DASH: u32 = 1 << 17;
pub(crate) const STAR: u32 = 1 << 18;
pub(crate) const QUESTION: u32 = 1 << 19;
pub(crate) const BRACE: u32 = 1 << 20;
pub(crate) const BRACKET: u32 = 1 << 21;
pub(crate) const AT: u32 = 1 << 22;
pub(crate) const SPACE: u32 = 1 << 23;
pub(crate) const PLUS: u32 = 1 << 24;
pub(crate) const TILDE: u32 = 1 << 25;
pub(crate) const BANG: u32 = 1 << 26;

const fn class(c: u8) -> u32 {
    match c {
        b'\'' | b'"' | b'`' => {
            if c == b'`' {
                QUOTE | BACKTICK
            } else {
                QUOTE
            }
        }
        b'<' => LT,
        b'>' => GT,
        b'=' => EQ,
        b'(' | b')' => PAREN,
        b';' => SEMI,
        b'|' => PIPE,
        b'&' => AMP,
        b'$' => DOLLAR,
        b'%' => PERCENT,
        b'/' => SLASH,
        b'\\' => BACKSLASH,
        b'.' => DOT,
        b':' => COLON,
        b'\n' | b'\r' => NEWLINE,
        b'#' => HASH,
        b'-' => DASH,
        b'*' => STAR,
        b'?' => QUESTION,
        b'{' | b'}' => BRACE,
        b'[' | b']' => BRACKET,
        b'@' => AT,
        b' ' | b'\t' | 0x0b | 0x0c => SPACE,
        b'+' => PLUS,
        b'~' => TILDE,
        b'!' => BANG,
        _ => 0,
    }
}

static TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = class(i as u8);
        i += 1;
    }
    t
};

#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Chars(u32);

impl Chars {
    pub(crate) fn any(self, set: u32) -> bool {
        self.0 & set != 0
    }
}

pub(crate) fn summary(s: &[u8]) -> Chars {
    let mut m = 0u32;
    for &c in s {
        m |= TABLE[c as usize];
    }
    Chars(m)
}
